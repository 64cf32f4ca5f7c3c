/* The pprof reader (see mprof_read.h): zlib's inflate, a protobuf decoder for the messages of
 * google/pprof proto/profile.proto, and the checks that let the tools index without fear.
 *
 * Decoding is a cursor over the bytes. Every length is checked against what is left before it
 * is used, varints longer than 10 bytes are rejected, and groups (wire types 3 and 4, unused by
 * profile.proto) are an error. Repeated scalar fields are accepted packed and unpacked. */
#include "mprof_read.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

enum { WIRE_VARINT = 0, WIRE_FIXED64 = 1, WIRE_LEN = 2, WIRE_FIXED32 = 5 };

typedef struct cur_s {
  const uint8_t* p;
  const uint8_t* end;
  const uint8_t* base; /* start of the whole message, for error offsets */
} cur_t;

typedef struct ctx_s {
  char* err;
  size_t errlen;
  int code; /* first error */
} ctx_t;

__attribute__((format(printf, 3, 4))) static int fail(ctx_t* c, int code, const char* fmt, ...) {
  if (c->code != 0) return c->code;
  c->code = code;
  if (c->err != NULL && c->errlen > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, c->errlen, fmt, ap);
    va_end(ap);
  }
  return code;
}

static int varint(ctx_t* c, cur_t* k, uint64_t* v) {
  uint64_t x = 0;
  for (int shift = 0; shift < 70; shift += 7) {
    if (k->p >= k->end)
      return fail(c, EINVAL, "not a pprof profile (truncated varint at byte %zu)",
                  (size_t)(k->p - k->base));
    uint8_t b = *k->p++;
    if (shift == 63 && b > 1)
      return fail(c, EINVAL, "not a pprof profile (varint too long at byte %zu)",
                  (size_t)(k->p - k->base));
    x |= (uint64_t)(b & 0x7f) << shift;
    if ((b & 0x80) == 0) {
      *v = x;
      return 0;
    }
  }
  return fail(c, EINVAL, "not a pprof profile (varint too long at byte %zu)",
              (size_t)(k->p - k->base));
}

/* Reads a tag; *field 0 is invalid in protobuf. */
static int tag(ctx_t* c, cur_t* k, uint32_t* field, int* wire) {
  uint64_t t;
  int e = varint(c, k, &t);
  if (e != 0) return e;
  if ((t >> 3) == 0 || (t >> 3) > 0x1fffffff)
    return fail(c, EINVAL, "not a pprof profile (bad field number at byte %zu)",
                (size_t)(k->p - k->base));
  *field = (uint32_t)(t >> 3);
  *wire = (int)(t & 7);
  return 0;
}

/* A length-delimited field's contents as a sub-cursor. */
static int sub(ctx_t* c, cur_t* k, cur_t* out) {
  uint64_t n;
  int e = varint(c, k, &n);
  if (e != 0) return e;
  if (n > (uint64_t)(k->end - k->p))
    return fail(c, EINVAL, "not a pprof profile (field length past the end at byte %zu)",
                (size_t)(k->p - k->base));
  out->p = k->p;
  out->end = k->p + n;
  out->base = k->base;
  k->p += n;
  return 0;
}

static int skip(ctx_t* c, cur_t* k, int wire) {
  uint64_t v;
  cur_t s;
  switch (wire) {
  case WIRE_VARINT:
    return varint(c, k, &v);
  case WIRE_FIXED64:
  case WIRE_FIXED32: {
    size_t n = wire == WIRE_FIXED64 ? 8 : 4;
    if ((size_t)(k->end - k->p) < n)
      return fail(c, EINVAL, "not a pprof profile (truncated fixed field at byte %zu)",
                  (size_t)(k->p - k->base));
    k->p += n;
    return 0;
  }
  case WIRE_LEN:
    return sub(c, k, &s);
  default:
    return fail(c, EINVAL, "not a pprof profile (wire type %d at byte %zu)", wire,
                (size_t)(k->p - k->base));
  }
}

/* A scalar field that must be a varint. */
static int scalar(ctx_t* c, cur_t* k, int wire, uint64_t* v) {
  if (wire != WIRE_VARINT)
    return fail(c, EINVAL, "not a pprof profile (wire type %d for an integer at byte %zu)", wire,
                (size_t)(k->p - k->base));
  return varint(c, k, v);
}

/* Growable arrays. */
static int grow(ctx_t* c, void** arr, size_t* cap, size_t n, size_t elem) {
  if (n < *cap) return 0;
  if (n >= MPROF_RD_MAX_ITEMS)
    return fail(c, EFBIG,
                "more than %zu entries in one list (samples, locations, functions, "
                "strings, or one sample's values; limit of this reader)",
                (size_t)MPROF_RD_MAX_ITEMS);
  size_t ncap = *cap ? *cap * 2 : 16;
  if (ncap > SIZE_MAX / elem) return fail(c, ENOMEM, "out of memory");
  void* p = realloc(*arr, ncap * elem);
  if (p == NULL) return fail(c, ENOMEM, "out of memory");
  *arr = p;
  *cap = ncap;
  return 0;
}

/* Appends one or several (packed) varints of a repeated scalar field. */
static int repeated(ctx_t* c, cur_t* k, int wire, uint64_t** arr, size_t* n, size_t* cap) {
  if (wire == WIRE_VARINT) {
    uint64_t v;
    int e = varint(c, k, &v);
    if (e == 0) e = grow(c, (void**)arr, cap, *n, sizeof **arr);
    if (e == 0) (*arr)[(*n)++] = v;
    return e;
  }
  if (wire != WIRE_LEN)
    return fail(c, EINVAL, "not a pprof profile (wire type %d for a repeated integer)", wire);
  cur_t s;
  int e = sub(c, k, &s);
  while (e == 0 && s.p < s.end) {
    uint64_t v;
    e = varint(c, &s, &v);
    if (e == 0) e = grow(c, (void**)arr, cap, *n, sizeof **arr);
    if (e == 0) (*arr)[(*n)++] = v;
  }
  return e;
}

typedef struct raw_sample_s {
  uint64_t* ids;
  size_t nids;
  uint64_t* values;
  size_t nvalues;
} raw_sample_t;

typedef struct raw_line_s {
  uint64_t function_id;
  int64_t line;
} raw_line_t;

typedef struct raw_location_s {
  raw_line_t* lines;
  size_t nlines;
} raw_location_t;

typedef struct state_s {
  ctx_t* c;
  mprof_rd_profile_t* p;
  size_t cap_types, cap_samples, cap_maps, cap_locs, cap_funcs, cap_strs, cap_comments;
  raw_sample_t* raw; /* parallel to p->samples while decoding */
  raw_location_t* rawlocs;
} state_t;

static int value_type(ctx_t* c, cur_t* k, mprof_rd_value_type_t* vt) {
  cur_t s;
  int e = sub(c, k, &s);
  while (e == 0 && s.p < s.end) {
    uint32_t f;
    int w;
    uint64_t v;
    e = tag(c, &s, &f, &w);
    if (e != 0) break;
    if (f == 1 || f == 2) {
      e = scalar(c, &s, w, &v);
      if (f == 1)
        vt->type = (int64_t)v;
      else
        vt->unit = (int64_t)v;
    } else {
      e = skip(c, &s, w);
    }
  }
  return e;
}

/* Label {key = 1, str = 2, num = 3, num_unit = 4}. */
static int label(state_t* st, cur_t* k, mprof_rd_sample_t* smp, size_t* cap) {
  ctx_t* c = st->c;
  int e = grow(c, (void**)&smp->labels, cap, smp->nlabels, sizeof *smp->labels);
  if (e != 0) return e;
  mprof_rd_label_t* lb = &smp->labels[smp->nlabels++];
  memset(lb, 0, sizeof *lb);
  cur_t s;
  e = sub(c, k, &s);
  while (e == 0 && s.p < s.end) {
    uint32_t f;
    int w;
    uint64_t v;
    e = tag(c, &s, &f, &w);
    if (e != 0) break;
    if (f >= 1 && f <= 4) {
      e = scalar(c, &s, w, &v);
      if (f == 1) lb->key = (int64_t)v;
      if (f == 2) lb->str = (int64_t)v;
      if (f == 3) lb->num = (int64_t)v;
      if (f == 4) lb->num_unit = (int64_t)v;
    } else {
      e = skip(c, &s, w);
    }
  }
  return e;
}

static int sample(state_t* st, cur_t* k) {
  ctx_t* c = st->c;
  mprof_rd_profile_t* p = st->p;
  int e = grow(c, (void**)&p->samples, &st->cap_samples, p->nsamples, sizeof *p->samples);
  if (e == 0) {
    /* raw grows with samples: same capacity */
    raw_sample_t* r = realloc(st->raw, st->cap_samples * sizeof *r);
    if (r == NULL) return fail(c, ENOMEM, "out of memory");
    st->raw = r;
  }
  if (e != 0) return e;
  raw_sample_t* r = &st->raw[p->nsamples];
  memset(r, 0, sizeof *r);
  memset(&p->samples[p->nsamples], 0, sizeof p->samples[0]);
  p->nsamples++;
  size_t cap_ids = 0, cap_values = 0, cap_labels = 0;
  cur_t s;
  e = sub(c, k, &s);
  while (e == 0 && s.p < s.end) {
    uint32_t f;
    int w;
    e = tag(c, &s, &f, &w);
    if (e != 0) break;
    if (f == 1)
      e = repeated(c, &s, w, &r->ids, &r->nids, &cap_ids);
    else if (f == 2)
      e = repeated(c, &s, w, &r->values, &r->nvalues, &cap_values);
    else if (f == 3 && w == WIRE_LEN)
      e = label(st, &s, &p->samples[p->nsamples - 1], &cap_labels);
    else
      e = skip(c, &s, w);
  }
  return e;
}

static int mapping(state_t* st, cur_t* k) {
  ctx_t* c = st->c;
  mprof_rd_profile_t* p = st->p;
  int e = grow(c, (void**)&p->mappings, &st->cap_maps, p->nmappings, sizeof *p->mappings);
  if (e != 0) return e;
  mprof_rd_mapping_t* m = &p->mappings[p->nmappings++];
  memset(m, 0, sizeof *m);
  cur_t s;
  e = sub(c, k, &s);
  while (e == 0 && s.p < s.end) {
    uint32_t f;
    int w;
    uint64_t v = 0;
    e = tag(c, &s, &f, &w);
    if (e != 0) break;
    if (f >= 1 && f <= 6) {
      e = scalar(c, &s, w, &v);
      switch (f) {
      case 1:
        m->id = v;
        break;
      case 2:
        m->start = v;
        break;
      case 3:
        m->limit = v;
        break;
      case 4:
        m->offset = v;
        break;
      case 5:
        m->filename = (int64_t)v;
        break;
      default:
        m->build_id = (int64_t)v;
        break;
      }
    } else {
      e = skip(c, &s, w);
    }
  }
  return e;
}

static int line(ctx_t* c, cur_t* k, raw_location_t* rl, size_t* cap) {
  int e = grow(c, (void**)&rl->lines, cap, rl->nlines, sizeof *rl->lines);
  if (e != 0) return e;
  raw_line_t* l = &rl->lines[rl->nlines++];
  memset(l, 0, sizeof *l);
  cur_t s;
  e = sub(c, k, &s);
  while (e == 0 && s.p < s.end) {
    uint32_t f;
    int w;
    uint64_t v = 0;
    e = tag(c, &s, &f, &w);
    if (e != 0) break;
    if (f == 1 || f == 2) {
      e = scalar(c, &s, w, &v);
      if (f == 1)
        l->function_id = v;
      else
        l->line = (int64_t)v;
    } else {
      e = skip(c, &s, w);
    }
  }
  return e;
}

static int location(state_t* st, cur_t* k) {
  ctx_t* c = st->c;
  mprof_rd_profile_t* p = st->p;
  int e = grow(c, (void**)&p->locations, &st->cap_locs, p->nlocations, sizeof *p->locations);
  if (e == 0) {
    raw_location_t* r = realloc(st->rawlocs, st->cap_locs * sizeof *r);
    if (r == NULL) return fail(c, ENOMEM, "out of memory");
    st->rawlocs = r;
  }
  if (e != 0) return e;
  mprof_rd_location_t* l = &p->locations[p->nlocations];
  raw_location_t* rl = &st->rawlocs[p->nlocations];
  memset(l, 0, sizeof *l);
  memset(rl, 0, sizeof *rl);
  p->nlocations++;
  size_t cap = 0;
  cur_t s;
  e = sub(c, k, &s);
  while (e == 0 && s.p < s.end) {
    uint32_t f;
    int w;
    uint64_t v = 0;
    e = tag(c, &s, &f, &w);
    if (e != 0) break;
    if (f == 1 || f == 2 || f == 3) {
      e = scalar(c, &s, w, &v);
      if (f == 1)
        l->id = v;
      else if (f == 2)
        l->mapping_id = v;
      else
        l->address = v;
    } else if (f == 4 && w == WIRE_LEN) {
      e = line(c, &s, rl, &cap);
    } else {
      e = skip(c, &s, w);
    }
  }
  return e;
}

static int function(state_t* st, cur_t* k) {
  ctx_t* c = st->c;
  mprof_rd_profile_t* p = st->p;
  int e = grow(c, (void**)&p->functions, &st->cap_funcs, p->nfunctions, sizeof *p->functions);
  if (e != 0) return e;
  mprof_rd_function_t* fn = &p->functions[p->nfunctions++];
  memset(fn, 0, sizeof *fn);
  cur_t s;
  e = sub(c, k, &s);
  while (e == 0 && s.p < s.end) {
    uint32_t f;
    int w;
    uint64_t v = 0;
    e = tag(c, &s, &f, &w);
    if (e != 0) break;
    if (f >= 1 && f <= 5) {
      e = scalar(c, &s, w, &v);
      switch (f) {
      case 1:
        fn->id = v;
        break;
      case 2:
        fn->name = (int64_t)v;
        break;
      case 3:
        fn->system_name = (int64_t)v;
        break;
      case 4:
        fn->filename = (int64_t)v;
        break;
      default:
        fn->start_line = (int64_t)v;
        break;
      }
    } else {
      e = skip(c, &s, w);
    }
  }
  return e;
}

static int string(state_t* st, cur_t* k) {
  ctx_t* c = st->c;
  mprof_rd_profile_t* p = st->p;
  cur_t s;
  int e = sub(c, k, &s);
  if (e == 0) e = grow(c, (void**)&p->strings, &st->cap_strs, p->nstrings, sizeof *p->strings);
  if (e != 0) return e;
  size_t n = (size_t)(s.end - s.p);
  char* str = malloc(n + 1);
  if (str == NULL) return fail(c, ENOMEM, "out of memory");
  memcpy(str, s.p, n);
  str[n] = '\0';
  p->strings[p->nstrings++] = str;
  return 0;
}

static int message(state_t* st, cur_t* k) {
  ctx_t* c = st->c;
  mprof_rd_profile_t* p = st->p;
  int e = 0;
  while (e == 0 && k->p < k->end) {
    uint32_t f;
    int w;
    uint64_t v = 0;
    e = tag(c, k, &f, &w);
    if (e != 0) break;
    bool len = w == WIRE_LEN;
    switch (f) {
    case 1:
      if (!len) goto bad;
      e = grow(c, (void**)&p->sample_types, &st->cap_types, p->nsample_types,
               sizeof *p->sample_types);
      if (e == 0) {
        mprof_rd_value_type_t* vt = &p->sample_types[p->nsample_types++];
        memset(vt, 0, sizeof *vt);
        e = value_type(c, k, vt);
      }
      break;
    case 2:
      e = len ? sample(st, k) : fail(c, EINVAL, "not a pprof profile (bad sample)");
      break;
    case 3:
      e = len ? mapping(st, k) : fail(c, EINVAL, "not a pprof profile (bad mapping)");
      break;
    case 4:
      e = len ? location(st, k) : fail(c, EINVAL, "not a pprof profile (bad location)");
      break;
    case 5:
      e = len ? function(st, k) : fail(c, EINVAL, "not a pprof profile (bad function)");
      break;
    case 6:
      e = len ? string(st, k) : fail(c, EINVAL, "not a pprof profile (bad string)");
      break;
    case 7:
      e = scalar(c, k, w, &v);
      p->drop_frames = (int64_t)v;
      break;
    case 8:
      e = scalar(c, k, w, &v);
      p->keep_frames = (int64_t)v;
      break;
    case 9:
      e = scalar(c, k, w, &v);
      p->time_nanos = (int64_t)v;
      break;
    case 11:
      if (!len) goto bad;
      e = value_type(c, k, &p->period_type);
      break;
    case 12:
      e = scalar(c, k, w, &v);
      p->period = (int64_t)v;
      break;
    case 13: {
      uint64_t* arr = (uint64_t*)p->comments;
      e = repeated(c, k, w, &arr, &p->ncomments, &st->cap_comments);
      p->comments = (int64_t*)arr;
      break;
    }
    case 14:
      e = scalar(c, k, w, &v);
      p->default_sample_type = (int64_t)v;
      break;
    default:
      e = skip(c, k, w);
      break;
    }
    continue;
  bad:
    e = fail(c, EINVAL, "not a pprof profile (field %u has wire type %d)", f, w);
  }
  return e;
}

static int cmp_map(const void* a, const void* b) {
  uint64_t x = ((const mprof_rd_mapping_t*)a)->id, y = ((const mprof_rd_mapping_t*)b)->id;
  return x < y ? -1 : x > y;
}
static int cmp_func(const void* a, const void* b) {
  uint64_t x = ((const mprof_rd_function_t*)a)->id, y = ((const mprof_rd_function_t*)b)->id;
  return x < y ? -1 : x > y;
}

/* Index of the element with `id` in an array sorted by id (the id is the first member), or
 * SIZE_MAX. */
static size_t find_id(const void* arr, size_t n, size_t elem, uint64_t id) {
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    uint64_t v;
    memcpy(&v, (const char*)arr + mid * elem, sizeof v);
    if (v == id) return mid;
    if (v < id)
      lo = mid + 1;
    else
      hi = mid;
  }
  return SIZE_MAX;
}

static bool str_ok(const mprof_rd_profile_t* p, int64_t i) {
  return i >= 0 && (uint64_t)i < p->nstrings;
}

/* Locations are sorted together with their raw lines. */
typedef struct loc_pair_s {
  mprof_rd_location_t loc;
  raw_location_t raw;
} loc_pair_t;
static int cmp_loc_pair(const void* a, const void* b) {
  uint64_t x = ((const loc_pair_t*)a)->loc.id, y = ((const loc_pair_t*)b)->loc.id;
  return x < y ? -1 : x > y;
}

static int resolve(state_t* st) {
  ctx_t* c = st->c;
  mprof_rd_profile_t* p = st->p;
  if (p->nstrings == 0 || p->strings[0][0] != '\0')
    return fail(c, EINVAL, "not a pprof profile (string table missing or not starting with \"\")");
  for (size_t i = 0; i < p->nsample_types; i++)
    if (!str_ok(p, p->sample_types[i].type) || !str_ok(p, p->sample_types[i].unit))
      return fail(c, EINVAL, "not a pprof profile (sample type names a missing string)");
  if (!str_ok(p, p->period_type.type) || !str_ok(p, p->period_type.unit) ||
      !str_ok(p, p->drop_frames) || !str_ok(p, p->keep_frames) ||
      !str_ok(p, p->default_sample_type))
    return fail(c, EINVAL, "not a pprof profile (a field names a missing string)");
  for (size_t i = 0; i < p->ncomments; i++)
    if (!str_ok(p, p->comments[i]))
      return fail(c, EINVAL, "not a pprof profile (comment names a missing string)");

  if (p->nmappings > 1) qsort(p->mappings, p->nmappings, sizeof *p->mappings, cmp_map);
  for (size_t i = 0; i < p->nmappings; i++) {
    const mprof_rd_mapping_t* m = &p->mappings[i];
    if (m->id == 0 || (i > 0 && p->mappings[i - 1].id == m->id))
      return fail(c, EINVAL, "not a pprof profile (mapping id %llu zero or repeated)",
                  (unsigned long long)m->id);
    if (!str_ok(p, m->filename) || !str_ok(p, m->build_id))
      return fail(c, EINVAL, "not a pprof profile (mapping names a missing string)");
  }
  if (p->nfunctions > 1) qsort(p->functions, p->nfunctions, sizeof *p->functions, cmp_func);
  for (size_t i = 0; i < p->nfunctions; i++) {
    const mprof_rd_function_t* f = &p->functions[i];
    if (f->id == 0 || (i > 0 && p->functions[i - 1].id == f->id))
      return fail(c, EINVAL, "not a pprof profile (function id %llu zero or repeated)",
                  (unsigned long long)f->id);
    if (!str_ok(p, f->name) || !str_ok(p, f->system_name) || !str_ok(p, f->filename))
      return fail(c, EINVAL, "not a pprof profile (function names a missing string)");
  }

  /* Sort locations with their raw lines, then resolve. */
  if (p->nlocations > 0) {
    loc_pair_t* pairs = malloc(p->nlocations * sizeof *pairs);
    if (pairs == NULL) return fail(c, ENOMEM, "out of memory");
    for (size_t i = 0; i < p->nlocations; i++) {
      pairs[i].loc = p->locations[i];
      pairs[i].raw = st->rawlocs[i];
    }
    qsort(pairs, p->nlocations, sizeof *pairs, cmp_loc_pair);
    for (size_t i = 0; i < p->nlocations; i++) {
      p->locations[i] = pairs[i].loc;
      st->rawlocs[i] = pairs[i].raw;
    }
    free(pairs);
  }
  for (size_t i = 0; i < p->nlocations; i++) {
    mprof_rd_location_t* l = &p->locations[i];
    raw_location_t* rl = &st->rawlocs[i];
    if (l->id == 0 || (i > 0 && p->locations[i - 1].id == l->id))
      return fail(c, EINVAL, "not a pprof profile (location id %llu zero or repeated)",
                  (unsigned long long)l->id);
    l->mapping = SIZE_MAX;
    if (l->mapping_id != 0) {
      l->mapping = find_id(p->mappings, p->nmappings, sizeof *p->mappings, l->mapping_id);
      if (l->mapping == SIZE_MAX)
        return fail(c, EINVAL, "not a pprof profile (location %llu names a missing mapping)",
                    (unsigned long long)l->id);
    }
    if (rl->nlines > 0) {
      l->lines = calloc(rl->nlines, sizeof *l->lines);
      if (l->lines == NULL) return fail(c, ENOMEM, "out of memory");
      l->nlines = rl->nlines;
      for (size_t j = 0; j < rl->nlines; j++) {
        size_t f =
            find_id(p->functions, p->nfunctions, sizeof *p->functions, rl->lines[j].function_id);
        if (f == SIZE_MAX)
          return fail(c, EINVAL, "not a pprof profile (location %llu names a missing function)",
                      (unsigned long long)l->id);
        l->lines[j].func = f;
        l->lines[j].line = rl->lines[j].line;
      }
    }
  }
  for (size_t i = 0; i < p->nsamples; i++) {
    mprof_rd_sample_t* s = &p->samples[i];
    raw_sample_t* r = &st->raw[i];
    for (size_t j = 0; j < s->nlabels; j++) {
      const mprof_rd_label_t* lb = &s->labels[j];
      if (!str_ok(p, lb->key) || !str_ok(p, lb->str) || !str_ok(p, lb->num_unit))
        return fail(c, EINVAL,
                    "not a pprof profile (sample %zu has a label naming a missing string)", i);
    }
    if (r->nvalues != p->nsample_types)
      return fail(c, EINVAL, "not a pprof profile (sample %zu has %zu values for %zu sample types)",
                  i, r->nvalues, p->nsample_types);
    s->values = (int64_t*)r->values;
    r->values = NULL;
    if (r->nids > 0) {
      s->locs = malloc(r->nids * sizeof *s->locs);
      if (s->locs == NULL) return fail(c, ENOMEM, "out of memory");
      s->nlocs = r->nids;
      for (size_t j = 0; j < r->nids; j++) {
        s->locs[j] = find_id(p->locations, p->nlocations, sizeof *p->locations, r->ids[j]);
        if (s->locs[j] == SIZE_MAX)
          return fail(c, EINVAL, "not a pprof profile (sample %zu names a missing location)", i);
      }
    }
  }
  return 0;
}

void mprof__rd_free(mprof_rd_profile_t* p) {
  for (size_t i = 0; i < p->nsamples; i++) {
    free(p->samples[i].locs);
    free(p->samples[i].values);
    free(p->samples[i].labels);
  }
  for (size_t i = 0; i < p->nlocations; i++)
    free(p->locations[i].lines);
  for (size_t i = 0; i < p->nstrings; i++)
    free(p->strings[i]);
  free(p->sample_types);
  free(p->samples);
  free(p->mappings);
  free(p->locations);
  free(p->functions);
  free(p->strings);
  free(p->comments);
  memset(p, 0, sizeof *p);
}

/* Inflates gzip data (one or more members) into a malloc'd buffer. */
static int gunzip(ctx_t* c, const uint8_t* data, size_t size, uint8_t** out, size_t* outlen) {
  z_stream z;
  memset(&z, 0, sizeof z);
  if (inflateInit2(&z, 15 + 16) != Z_OK) return fail(c, ENOMEM, "out of memory");
  size_t cap = size * 4 + 4096, len = 0;
  if (cap > MPROF_RD_MAX_BYTES) cap = MPROF_RD_MAX_BYTES;
  uint8_t* buf = malloc(cap);
  int e = 0;
  if (buf == NULL) {
    e = fail(c, ENOMEM, "out of memory");
    goto out;
  }
  z.next_in = (Bytef*)(uintptr_t)data;
  size_t left = size;
  for (;;) {
    if (len == cap) {
      if (cap >= MPROF_RD_MAX_BYTES) {
        e = fail(c, EFBIG, "profile larger than %zu bytes when decompressed",
                 (size_t)MPROF_RD_MAX_BYTES);
        goto out;
      }
      size_t ncap = cap * 2 > MPROF_RD_MAX_BYTES ? MPROF_RD_MAX_BYTES : cap * 2;
      uint8_t* nb = realloc(buf, ncap);
      if (nb == NULL) {
        e = fail(c, ENOMEM, "out of memory");
        goto out;
      }
      buf = nb;
      cap = ncap;
    }
    uInt in_chunk = left > (1u << 30) ? (1u << 30) : (uInt)left;
    z.avail_in = in_chunk;
    z.next_out = buf + len;
    z.avail_out = (uInt)(cap - len > (1u << 30) ? (1u << 30) : cap - len);
    uInt avail_out = z.avail_out;
    int r = inflate(&z, Z_NO_FLUSH);
    len += avail_out - z.avail_out;
    left -= in_chunk - z.avail_in;
    if (r == Z_STREAM_END) {
      /* Another gzip member may follow (concatenated files are one gzip stream). */
      if (left >= 2 && z.next_in[0] == 0x1f && z.next_in[1] == 0x8b) {
        if (inflateReset(&z) != Z_OK) {
          e = fail(c, EINVAL, "corrupt gzip data");
          goto out;
        }
        continue;
      }
      break;
    }
    if (r == Z_OK) continue;
    if (r == Z_BUF_ERROR && left > 0 && len == cap) continue; /* needs more output room */
    if (r == Z_MEM_ERROR)
      e = fail(c, ENOMEM, "out of memory");
    else if (r == Z_BUF_ERROR)
      e = fail(c, EINVAL, "truncated gzip data");
    else
      e = fail(c, EINVAL, "corrupt gzip data (%s)", z.msg ? z.msg : "inflate failed");
    goto out;
  }
out:
  inflateEnd(&z);
  if (e != 0) {
    free(buf);
    return e;
  }
  *out = buf;
  *outlen = len;
  return 0;
}

int mprof__rd_parse(const uint8_t* data, size_t size, mprof_rd_profile_t* out, char* err,
                    size_t errlen) {
  ctx_t c = {err, errlen, 0};
  if (err != NULL && errlen > 0) err[0] = '\0';
  memset(out, 0, sizeof *out);
  uint8_t* plain = NULL;
  size_t plainlen = size;
  const uint8_t* msg = data;
  if (size >= 2 && data[0] == 0x1f && data[1] == 0x8b) {
    int e = gunzip(&c, data, size, &plain, &plainlen);
    if (e != 0) return e;
    msg = plain;
  } else if (size > MPROF_RD_MAX_BYTES) {
    return fail(&c, EFBIG, "profile larger than %zu bytes", (size_t)MPROF_RD_MAX_BYTES);
  }
  if (plainlen == 0) {
    free(plain);
    return fail(&c, EINVAL, "empty file, not a pprof profile");
  }
  state_t st;
  memset(&st, 0, sizeof st);
  st.c = &c;
  st.p = out;
  cur_t k = {msg, msg + plainlen, msg};
  int e = message(&st, &k);
  if (e == 0) e = resolve(&st);
  if (e == 0 && out->nsample_types == 0)
    e = fail(&c, EINVAL, "not a pprof profile (no sample types)");
  for (size_t i = 0; st.raw != NULL && i < out->nsamples; i++) {
    free(st.raw[i].ids);
    free(st.raw[i].values);
  }
  for (size_t i = 0; st.rawlocs != NULL && i < out->nlocations; i++)
    free(st.rawlocs[i].lines);
  free(st.raw);
  free(st.rawlocs);
  free(plain);
  if (e != 0) mprof__rd_free(out);
  return e;
}

int mprof__rd_file(const char* path, mprof_rd_profile_t* out, char* err, size_t errlen) {
  memset(out, 0, sizeof *out);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    snprintf(err, errlen, "cannot open: %s", strerror(e));
    return e;
  }
  struct stat sb;
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    int e = errno != 0 && !S_ISREG(sb.st_mode) ? EINVAL : errno;
    close(fd);
    snprintf(err, errlen, "not a regular file");
    return e != 0 ? e : EINVAL;
  }
  if ((uint64_t)sb.st_size > MPROF_RD_MAX_BYTES) {
    close(fd);
    snprintf(err, errlen, "file larger than %zu bytes", (size_t)MPROF_RD_MAX_BYTES);
    return EFBIG;
  }
  size_t size = (size_t)sb.st_size;
  uint8_t* buf = malloc(size ? size : 1);
  if (buf == NULL) {
    close(fd);
    snprintf(err, errlen, "out of memory");
    return ENOMEM;
  }
  size_t got = 0;
  while (got < size) {
    ssize_t r = read(fd, buf + got, size - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += (size_t)r;
  }
  close(fd);
  int e = mprof__rd_parse(buf, got, out, err, errlen);
  free(buf);
  return e;
}

int mprof__rd_sample_index(const mprof_rd_profile_t* p, const char* type) {
  for (size_t i = 0; i < p->nsample_types; i++)
    if (strcmp(mprof__rd_str(p, p->sample_types[i].type), type) == 0) return (int)i;
  return -1;
}

const char* mprof__rd_str(const mprof_rd_profile_t* p, int64_t i) {
  return i >= 0 && (uint64_t)i < p->nstrings ? p->strings[i] : "";
}
