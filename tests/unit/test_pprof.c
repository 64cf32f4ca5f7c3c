/* Tests for the pprof writer (plugin/mprof_pprof.c) and the mapping table (plugin/mprof_maps.c).
 *
 * Profiles are built from synthetic records whose pcs are return-address-like values inside the
 * pprof_test_* functions of this binary. Each written file is gunzipped and decoded here with a
 * small protobuf decoder and checked against the rules of profile.proto; when `go` is on PATH,
 * `go tool pprof` reads the same file and must name those functions with the right shares. */
#include "mprof_maps.h"
#include "mprof_meta.h"
#include "mprof_pprof.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

/* ---------------------------------------------------------------------------------------------
 * Call sites. Distinct bodies keep identical-code folding away; noinline/noclone keep each a
 * symbol of its own. PC_OFFSET bytes into each is still inside it (checked below).
 * ------------------------------------------------------------------------------------------- */
#if defined(__clang__)
#define TEST_FN static __attribute__((noinline, used))
#else
#define TEST_FN static __attribute__((noinline, noclone, used))
#endif
#define PC_OFFSET 16

static volatile unsigned sink;

TEST_FN void pprof_test_leaf_alloc_site(unsigned n) {
  for (unsigned i = 0; i < n; i++)
    sink += i * 3u + 1u;
  sink ^= 0x1111u;
  sink += n * 7u;
}

TEST_FN void pprof_test_other_alloc_site(unsigned n) {
  for (unsigned i = 0; i < n; i++)
    sink -= i * 5u + 2u;
  sink ^= 0x2222u;
  sink += n * 11u;
}

TEST_FN void pprof_test_middle_caller(unsigned n) {
  pprof_test_leaf_alloc_site(n);
  pprof_test_other_alloc_site(n + 1);
  sink ^= 0x3333u;
}

TEST_FN void pprof_test_root_caller(unsigned n) {
  pprof_test_middle_caller(n);
  pprof_test_leaf_alloc_site(n + 2);
  sink ^= 0x4444u;
}

#define PC(fn) ((uintptr_t) & (fn) + PC_OFFSET)

/* ---------------------------------------------------------------------------------------------
 * Reading back: gunzip and a decoder for the parts of profile.proto the writer produces.
 * ------------------------------------------------------------------------------------------- */
typedef struct vt_s {
  int64_t type, unit;
} vt_t;

typedef struct dsample_s {
  uint64_t locs[256];
  size_t nlocs;
  int64_t vals[8];
  size_t nvals;
  int64_t label_key, label_num, label_unit;
  size_t nlabels;
} dsample_t;

typedef struct dmapping_s {
  uint64_t id, start, limit, offset;
  int64_t filename, build_id;
} dmapping_t;

typedef struct dlocation_s {
  uint64_t id, mapping_id, address;
  size_t nlines;
  uint64_t function_id; /* of the last line */
} dlocation_t;

typedef struct dfunction_s {
  uint64_t id;
  int64_t name, system_name;
} dfunction_t;

typedef struct dprofile_s {
  vt_t sample_types[8];
  size_t nsample_types;
  dsample_t* samples;
  size_t nsamples;
  dmapping_t* mappings;
  size_t nmappings;
  dlocation_t* locations;
  size_t nlocations;
  char** strs;
  size_t nstrs;
  dfunction_t* functions;
  size_t nfunctions;
  int64_t drop_frames;
  int64_t time_nanos, period, default_sample_type;
  vt_t period_type;
  int64_t comments[4];
  size_t ncomments;
} dprofile_t;

typedef struct reader_s {
  const uint8_t* p;
  const uint8_t* end;
} reader_t;

static uint64_t rd_varint(reader_t* r) {
  uint64_t v = 0;
  for (unsigned shift = 0; shift < 70; shift += 7) {
    assert_true(r->p < r->end);
    uint8_t b = *r->p++;
    v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) return v;
  }
  fail_msg("varint longer than 10 bytes");
  return 0;
}

/* Reads a tag; returns false at the end of the message. */
static bool rd_tag(reader_t* r, uint32_t* field, unsigned* wire) {
  if (r->p == r->end) return false;
  uint64_t t = rd_varint(r);
  *field = (uint32_t)(t >> 3);
  *wire = (unsigned)(t & 7);
  assert_int_not_equal(*field, 0);
  return true;
}

static reader_t rd_len(reader_t* r) {
  uint64_t n = rd_varint(r);
  assert_true(n <= (uint64_t)(r->end - r->p));
  reader_t sub = {r->p, r->p + n};
  r->p += n;
  return sub;
}

static void rd_skip(reader_t* r, unsigned wire) {
  switch (wire) {
  case 0:
    rd_varint(r);
    break;
  case 1:
    assert_true(r->end - r->p >= 8);
    r->p += 8;
    break;
  case 2:
    rd_len(r);
    break;
  case 5:
    assert_true(r->end - r->p >= 4);
    r->p += 4;
    break;
  default:
    fail_msg("bad wire type %u", wire);
  }
}

/* A repeated varint field, packed (wire 2) or not (wire 0). */
static void rd_repeated(reader_t* r, unsigned wire, uint64_t* out, size_t* n, size_t max) {
  if (wire == 0) {
    assert_true(*n < max);
    out[(*n)++] = rd_varint(r);
    return;
  }
  assert_int_equal(wire, 2);
  reader_t sub = rd_len(r);
  while (sub.p < sub.end) {
    assert_true(*n < max);
    out[(*n)++] = rd_varint(&sub);
  }
}

static vt_t rd_value_type(reader_t r) {
  vt_t vt = {0, 0};
  uint32_t f;
  unsigned w;
  while (rd_tag(&r, &f, &w)) {
    if (f == 1 && w == 0)
      vt.type = (int64_t)rd_varint(&r);
    else if (f == 2 && w == 0)
      vt.unit = (int64_t)rd_varint(&r);
    else
      rd_skip(&r, w);
  }
  return vt;
}

static void rd_sample(reader_t r, dsample_t* s) {
  memset(s, 0, sizeof *s);
  uint32_t f;
  unsigned w;
  while (rd_tag(&r, &f, &w)) {
    if (f == 1) {
      rd_repeated(&r, w, s->locs, &s->nlocs, 256);
    } else if (f == 2) {
      uint64_t v[8];
      size_t n = s->nvals;
      for (size_t i = 0; i < n; i++)
        v[i] = (uint64_t)s->vals[i];
      rd_repeated(&r, w, v, &n, 8);
      for (size_t i = s->nvals; i < n; i++)
        s->vals[i] = (int64_t)v[i];
      s->nvals = n;
    } else if (f == 3 && w == 2) {
      reader_t l = rd_len(&r);
      s->nlabels++;
      uint32_t lf;
      unsigned lw;
      while (rd_tag(&l, &lf, &lw)) {
        if (lf == 1 && lw == 0)
          s->label_key = (int64_t)rd_varint(&l);
        else if (lf == 3 && lw == 0)
          s->label_num = (int64_t)rd_varint(&l);
        else if (lf == 4 && lw == 0)
          s->label_unit = (int64_t)rd_varint(&l);
        else
          rd_skip(&l, lw);
      }
    } else {
      rd_skip(&r, w);
    }
  }
}

static void rd_mapping(reader_t r, dmapping_t* m) {
  memset(m, 0, sizeof *m);
  uint32_t f;
  unsigned w;
  while (rd_tag(&r, &f, &w)) {
    if (w != 0) {
      rd_skip(&r, w);
      continue;
    }
    uint64_t v = rd_varint(&r);
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
    case 6:
      m->build_id = (int64_t)v;
      break;
    default:
      break;
    }
  }
}

static void rd_location(reader_t r, dlocation_t* l) {
  memset(l, 0, sizeof *l);
  uint32_t f;
  unsigned w;
  while (rd_tag(&r, &f, &w)) {
    if (f == 4) {
      l->nlines++;
      reader_t line = rd_len(&r);
      uint32_t lf;
      unsigned lw;
      while (rd_tag(&line, &lf, &lw)) {
        if (lw != 0) {
          rd_skip(&line, lw);
          continue;
        }
        uint64_t v = rd_varint(&line);
        if (lf == 1) l->function_id = v;
      }
      continue;
    }
    if (w != 0) {
      rd_skip(&r, w);
      continue;
    }
    uint64_t v = rd_varint(&r);
    if (f == 1) l->id = v;
    if (f == 2) l->mapping_id = v;
    if (f == 3) l->address = v;
  }
}

#define PUSH(arr, n, cap)                                                                          \
  do {                                                                                             \
    if ((n) == (cap)) {                                                                            \
      (cap) = (cap) ? 2 * (cap) : 64;                                                              \
      (arr) = realloc((arr), (cap) * sizeof *(arr));                                               \
      assert_non_null(arr);                                                                        \
    }                                                                                              \
  } while (0)

static void decode_profile(const uint8_t* data, size_t len, dprofile_t* p) {
  memset(p, 0, sizeof *p);
  size_t cap_s = 0, cap_m = 0, cap_l = 0, cap_str = 0, cap_f = 0;
  reader_t r = {data, data + len};
  uint32_t f;
  unsigned w;
  while (rd_tag(&r, &f, &w)) {
    switch (f) {
    case 1:
      assert_true(p->nsample_types < 8);
      p->sample_types[p->nsample_types++] = rd_value_type(rd_len(&r));
      break;
    case 2:
      PUSH(p->samples, p->nsamples, cap_s);
      rd_sample(rd_len(&r), &p->samples[p->nsamples++]);
      break;
    case 3:
      PUSH(p->mappings, p->nmappings, cap_m);
      rd_mapping(rd_len(&r), &p->mappings[p->nmappings++]);
      break;
    case 4:
      PUSH(p->locations, p->nlocations, cap_l);
      rd_location(rd_len(&r), &p->locations[p->nlocations++]);
      break;
    case 5: {
      PUSH(p->functions, p->nfunctions, cap_f);
      dfunction_t* fn = &p->functions[p->nfunctions++];
      memset(fn, 0, sizeof *fn);
      reader_t fr = rd_len(&r);
      uint32_t ff;
      unsigned fw;
      while (rd_tag(&fr, &ff, &fw)) {
        if (fw != 0) {
          rd_skip(&fr, fw);
          continue;
        }
        uint64_t v = rd_varint(&fr);
        if (ff == 1) fn->id = v;
        if (ff == 2) fn->name = (int64_t)v;
        if (ff == 3) fn->system_name = (int64_t)v;
      }
      break;
    }
    case 7:
      p->drop_frames = (int64_t)rd_varint(&r);
      break;
    case 6: {
      reader_t s = rd_len(&r);
      PUSH(p->strs, p->nstrs, cap_str);
      size_t n = (size_t)(s.end - s.p);
      char* str = malloc(n + 1);
      assert_non_null(str);
      memcpy(str, s.p, n);
      str[n] = '\0';
      p->strs[p->nstrs++] = str;
      break;
    }
    case 9:
      p->time_nanos = (int64_t)rd_varint(&r);
      break;
    case 11:
      p->period_type = rd_value_type(rd_len(&r));
      break;
    case 12:
      p->period = (int64_t)rd_varint(&r);
      break;
    case 13:
      assert_true(p->ncomments < 4);
      p->comments[p->ncomments++] = (int64_t)rd_varint(&r);
      break;
    case 14:
      p->default_sample_type = (int64_t)rd_varint(&r);
      break;
    default:
      rd_skip(&r, w);
      break;
    }
  }
}

static void free_profile(dprofile_t* p) {
  for (size_t i = 0; i < p->nstrs; i++)
    free(p->strs[i]);
  free(p->strs);
  free(p->samples);
  free(p->mappings);
  free(p->locations);
  free(p->functions);
}

static const char* str_at(const dprofile_t* p, int64_t i) {
  assert_true(i >= 0 && (size_t)i < p->nstrs);
  return p->strs[i];
}

/* Reads a whole file and gunzips it; the caller frees *out. */
static void gunzip_file(const char* path, uint8_t** out, size_t* out_len) {
  FILE* f = fopen(path, "rb");
  assert_non_null(f);
  size_t cap = 1 << 16, len = 0;
  uint8_t* gz = malloc(cap);
  assert_non_null(gz);
  size_t n;
  while ((n = fread(gz + len, 1, cap - len, f)) > 0) {
    len += n;
    if (len == cap) {
      cap *= 2;
      gz = realloc(gz, cap);
      assert_non_null(gz);
    }
  }
  fclose(f);
  assert_true(len > 2);
  assert_int_equal(gz[0], 0x1f); /* gzip magic, as pprof checks */
  assert_int_equal(gz[1], 0x8b);

  z_stream z;
  memset(&z, 0, sizeof z);
  assert_int_equal(inflateInit2(&z, 15 + 16), Z_OK);
  size_t ocap = 1 << 16, olen = 0;
  uint8_t* o = malloc(ocap);
  assert_non_null(o);
  z.next_in = gz;
  z.avail_in = (uInt)len;
  int ret;
  do {
    if (olen == ocap) {
      ocap *= 2;
      o = realloc(o, ocap);
      assert_non_null(o);
    }
    z.next_out = o + olen;
    z.avail_out = (uInt)(ocap - olen);
    ret = inflate(&z, Z_NO_FLUSH);
    assert_true(ret == Z_OK || ret == Z_STREAM_END);
    olen = ocap - z.avail_out;
  } while (ret != Z_STREAM_END);
  assert_int_equal(z.avail_in, 0); /* one gzip member, nothing after it */
  inflateEnd(&z);
  free(gz);
  *out = o;
  *out_len = olen;
}

static char tmp_path[PATH_MAX];

static int open_tmp(void) {
  const char* dir = getenv("TMPDIR");
  snprintf(tmp_path, sizeof tmp_path, "%s/mprof_test_pprof_XXXXXX", dir ? dir : "/tmp");
  int fd = mkstemp(tmp_path);
  assert_true(fd >= 0);
  return fd;
}

/* Writes prof to a temporary file (left at tmp_path) and decodes it into *out. */
static void write_and_decode(const mprof_heap_profile_t* prof, dprofile_t* out) {
  int fd = open_tmp();
  assert_int_equal(mprof__pprof_write_heap(fd, prof), 0);
  close(fd);
  uint8_t* data;
  size_t len;
  gunzip_file(tmp_path, &data, &len);
  decode_profile(data, len, out);
  free(data);
}

/* Checks what profile.proto requires of any profile, and what this writer promises. */
static void check_well_formed(const dprofile_t* p) {
  assert_true(p->nstrs >= 1);
  assert_string_equal(p->strs[0], "");
  for (size_t i = 1; i < p->nstrs; i++) {
    for (size_t j = 0; j < i; j++)
      assert_string_not_equal(p->strs[i], p->strs[j]);
  }

  static const char* const types[4][2] = {{"alloc_objects", "count"},
                                          {"alloc_space", "bytes"},
                                          {"inuse_objects", "count"},
                                          {"inuse_space", "bytes"}};
  assert_int_equal(p->nsample_types, 4);
  for (size_t i = 0; i < 4; i++) {
    assert_string_equal(str_at(p, p->sample_types[i].type), types[i][0]);
    assert_string_equal(str_at(p, p->sample_types[i].unit), types[i][1]);
  }
  assert_string_equal(str_at(p, p->default_sample_type), "inuse_space");
  assert_string_equal(str_at(p, p->period_type.type), "space");
  assert_string_equal(str_at(p, p->period_type.unit), "bytes");
  assert_true(p->ncomments >= 1);
  assert_string_equal(str_at(p, p->comments[0]), "mprof heap profile");
  for (size_t i = 0; i < p->nfunctions; i++) {
    const dfunction_t* fn = &p->functions[i];
    assert_int_not_equal(fn->id, 0);
    for (size_t j = 0; j < i; j++)
      assert_int_not_equal(p->functions[j].id, fn->id);
    assert_true(str_at(p, fn->name)[0] != '\0');
    assert_int_equal(fn->system_name, fn->name);
  }
  assert_string_equal(str_at(p, p->drop_frames), MPROF_PPROF_DROP_FRAMES);

  for (size_t i = 0; i < p->nmappings; i++) {
    const dmapping_t* m = &p->mappings[i];
    assert_int_equal(m->id, i + 1); /* nonzero and unique */
    assert_true(m->start < m->limit);
    assert_true(str_at(p, m->filename)[0] != '\0');
    str_at(p, m->build_id);
  }
  for (size_t i = 0; i < p->nlocations; i++) {
    const dlocation_t* l = &p->locations[i];
    assert_int_not_equal(l->id, 0);
    for (size_t j = 0; j < i; j++) {
      assert_int_not_equal(p->locations[j].id, l->id);
      assert_int_not_equal(p->locations[j].address, l->address); /* deduplicated */
    }
    assert_true(l->nlines <= 1); /* one Line naming the function, where the symtab has it */
    if (l->nlines == 1) {
      bool found = false;
      for (size_t k = 0; k < p->nfunctions; k++)
        found |= p->functions[k].id == l->function_id;
      assert_true(found);
    }
    if (l->mapping_id != 0) {
      assert_true(l->mapping_id <= p->nmappings);
      const dmapping_t* m = &p->mappings[l->mapping_id - 1];
      assert_true(m->start <= l->address && l->address < m->limit);
    }
  }
  for (size_t i = 0; i < p->nsamples; i++)
    assert_int_equal(p->samples[i].nvals, 4);
}

static const dlocation_t* find_location(const dprofile_t* p, uint64_t id) {
  for (size_t i = 0; i < p->nlocations; i++) {
    if (p->locations[i].id == id) return &p->locations[i];
  }
  fail_msg("no location %llu", (unsigned long long)id);
  return NULL;
}

/* The sample's location ids resolve to the record's pcs - 1, leaf first, and its values are the
 * record's. */
static void check_sample_matches(const dprofile_t* p, const dsample_t* s,
                                 const mprof_heap_rec_t* rec) {
  assert_int_equal(s->nlocs, rec->npcs);
  for (size_t i = 0; i < rec->npcs; i++) {
    assert_int_equal(find_location(p, s->locs[i])->address, rec->pcs[i] - 1);
  }
  assert_int_equal(s->vals[0], rec->alloc_objects);
  assert_int_equal(s->vals[1], rec->alloc_bytes);
  assert_int_equal(s->vals[2], rec->inuse_objects);
  assert_int_equal(s->vals[3], rec->inuse_bytes);
  if (rec->alloc_objects > 0) {
    assert_int_equal(s->nlabels, 1);
    assert_string_equal(str_at(p, s->label_key), "bytes");
    assert_string_equal(str_at(p, s->label_unit), "bytes");
    assert_int_equal(s->label_num, rec->alloc_bytes / rec->alloc_objects);
  } else {
    assert_int_equal(s->nlabels, 0);
  }
}

static void self_exe(char* buf, size_t size) {
  ssize_t n = readlink("/proc/self/exe", buf, size - 1);
  assert_true(n > 0);
  buf[n] = '\0';
}

/* The profile used for the symbolization checks: in-use space 75 % under the leaf site, 25 %
 * under the other site, all of it under the middle and root callers. */
static uintptr_t stack_leaf[3], stack_other[3], stack_root_only[2];
static mprof_heap_rec_t sample_recs[3];
static mprof_heap_profile_t sample_prof;

static void build_sample_profile(void) {
  stack_leaf[0] = PC(pprof_test_leaf_alloc_site);
  stack_leaf[1] = PC(pprof_test_middle_caller);
  stack_leaf[2] = PC(pprof_test_root_caller);
  stack_other[0] = PC(pprof_test_other_alloc_site);
  stack_other[1] = PC(pprof_test_middle_caller);
  stack_other[2] = PC(pprof_test_root_caller);
  stack_root_only[0] = PC(pprof_test_leaf_alloc_site);
  stack_root_only[1] = PC(pprof_test_root_caller);
  sample_recs[0] = (mprof_heap_rec_t){stack_leaf, 3, 40, 163840, 30, 122880, 0, 0, 0, 0, NULL};
  sample_recs[1] = (mprof_heap_rec_t){stack_other, 3, 100, 81920, 50, 40960, 0, 0, 0, 0, NULL};
  sample_recs[2] = (mprof_heap_rec_t){stack_root_only, 2, 0, 0, 0, 0, 0, 0, 0, 0, NULL};
  sample_prof = (mprof_heap_profile_t){sample_recs, 3, 524288, 1700000000123456789, NULL, 0};
}

/* ---------------------------------------------------------------------------------------------
 * Tests
 * ------------------------------------------------------------------------------------------- */
static void test_call_sites_are_longer_than_the_pc_offset(void** state) {
  (void)state;
  /* The pcs are only return-address-like if PC_OFFSET - 1 is inside each function; nm gives the
   * sizes when it is available. */
  char exe[PATH_MAX], cmd[PATH_MAX + 64], line[512];
  self_exe(exe, sizeof exe);
  snprintf(cmd, sizeof cmd, "nm -S '%s' 2>/dev/null", exe);
  FILE* f = popen(cmd, "r");
  if (f == NULL) skip();
  int found = 0;
  while (fgets(line, sizeof line, f)) {
    unsigned long long addr, size;
    char type, name[256];
    if (sscanf(line, "%llx %llx %c %255s", &addr, &size, &type, name) != 4) continue;
    if (strncmp(name, "pprof_test_", 11) != 0) continue;
    assert_true(size >= PC_OFFSET);
    found++;
  }
  int rc = pclose(f);
  if (rc != 0 && found == 0) skip();
  assert_int_equal(found, 4);
}

static void test_written_profile_is_gzipped_and_well_formed(void** state) {
  (void)state;
  build_sample_profile();
  dprofile_t p;
  write_and_decode(&sample_prof, &p);
  unlink(tmp_path);
  check_well_formed(&p);
  assert_int_equal(p.period, 524288);
  assert_int_equal(p.time_nanos, 1700000000123456789);
  free_profile(&p);
}

static void test_samples_list_locations_leaf_first_with_all_four_values(void** state) {
  (void)state;
  build_sample_profile();
  dprofile_t p;
  write_and_decode(&sample_prof, &p);
  unlink(tmp_path);
  assert_int_equal(p.nsamples, 3);
  for (size_t i = 0; i < 3; i++)
    check_sample_matches(&p, &p.samples[i], &sample_recs[i]);
  /* Four distinct pcs in the three stacks: one location each, shared between samples. */
  assert_int_equal(p.nlocations, 4);
  assert_int_equal(p.samples[0].locs[1], p.samples[1].locs[1]);
  assert_int_equal(p.samples[0].locs[0], p.samples[2].locs[0]);
  free_profile(&p);
}

static const char* function_name_of(const dprofile_t* p, uint64_t loc_id) {
  const dlocation_t* l = find_location(p, loc_id);
  assert_non_null(l);
  for (size_t k = 0; k < p->nfunctions; k++)
    if (l->nlines == 1 && p->functions[k].id == l->function_id)
      return str_at(p, p->functions[k].name);
  return "";
}

static void test_locations_are_named_from_the_symbol_table(void** state) {
  (void)state;
  build_sample_profile();
  dprofile_t p;
  write_and_decode(&sample_prof, &p);
  unlink(tmp_path);
  assert_string_equal(function_name_of(&p, p.samples[0].locs[0]), "pprof_test_leaf_alloc_site");
  assert_string_equal(function_name_of(&p, p.samples[0].locs[1]), "pprof_test_middle_caller");
  assert_string_equal(function_name_of(&p, p.samples[0].locs[2]), "pprof_test_root_caller");
  assert_string_equal(function_name_of(&p, p.samples[1].locs[0]), "pprof_test_other_alloc_site");
  assert_int_equal(p.nfunctions, 4); /* one Function per distinct name */
  free_profile(&p);
}

static void test_locations_point_into_the_main_executable_mapping(void** state) {
  (void)state;
  build_sample_profile();
  dprofile_t p;
  write_and_decode(&sample_prof, &p);
  unlink(tmp_path);
  char exe[PATH_MAX];
  self_exe(exe, sizeof exe);
  assert_true(p.nmappings >= 1);
  /* Mapping 1 is the main program, which holds every test function. */
  assert_string_equal(str_at(&p, p.mappings[0].filename), exe);
  for (size_t i = 0; i < p.nlocations; i++) {
    assert_int_equal(p.locations[i].mapping_id, 1);
  }
  /* A shared library's code is a mapping too (libc holds write(2)). */
  mprof_maps_t maps = MPROF_MAPS_INIT;
  assert_int_equal(mprof__maps_read(&maps), 0);
  assert_int_equal(p.nmappings, maps.n);
  mprof__maps_free(&maps);
  free_profile(&p);
}

static void test_mapping_build_id_is_written_as_hex_string(void** state) {
  (void)state;
  build_sample_profile();
  dprofile_t p;
  write_and_decode(&sample_prof, &p);
  unlink(tmp_path);
  const char* id = str_at(&p, p.mappings[0].build_id);
  assert_true(strlen(id) >= 16 && strlen(id) % 2 == 0);
  assert_int_equal(strspn(id, "0123456789abcdef"), strlen(id));
  free_profile(&p);
}

static void test_address_outside_every_mapping_gets_no_mapping_id(void** state) {
  (void)state;
  uintptr_t pcs[2] = {0x11, PC(pprof_test_leaf_alloc_site)};
  mprof_heap_rec_t rec = {pcs, 2, 1, 16, 1, 16, 0, 0, 0, 0, NULL};
  mprof_heap_profile_t prof = {&rec, 1, 1, 0, NULL, 0};
  dprofile_t p;
  write_and_decode(&prof, &p);
  unlink(tmp_path);
  check_well_formed(&p);
  assert_int_equal(p.nsamples, 1);
  check_sample_matches(&p, &p.samples[0], &rec);
  const dlocation_t* l = find_location(&p, p.samples[0].locs[0]);
  assert_int_equal(l->address, 0x10);
  assert_int_equal(l->mapping_id, 0);
  assert_int_equal(find_location(&p, p.samples[0].locs[1])->mapping_id, 1);
  assert_int_equal(p.period, 1);
  free_profile(&p);
}

static void test_empty_profile_is_still_a_valid_profile(void** state) {
  (void)state;
  mprof_heap_profile_t prof = {NULL, 0, 4096, 0, NULL, 0};
  dprofile_t p;
  write_and_decode(&prof, &p);
  unlink(tmp_path);
  check_well_formed(&p);
  assert_int_equal(p.nsamples, 0);
  assert_int_equal(p.nlocations, 0);
  assert_int_equal(p.period, 4096);
  free_profile(&p);
}

static void test_extra_comments_follow_the_first_in_order(void** state) {
  (void)state;
  const char* comments[] = {"mprof.estimated_inuse_bytes=123", "mprof.process_rss_bytes=456"};
  mprof_heap_profile_t prof = {NULL, 0, 4096, 0, comments, 2};
  dprofile_t p;
  write_and_decode(&prof, &p);
  unlink(tmp_path);
  check_well_formed(&p);
  assert_int_equal(p.ncomments, 3);
  assert_string_equal(str_at(&p, p.comments[1]), comments[0]);
  assert_string_equal(str_at(&p, p.comments[2]), comments[1]);
  free_profile(&p);
}

static void test_a_null_comment_is_rejected_with_einval(void** state) {
  (void)state;
  const char* comments[] = {"mprof.a=1", NULL};
  mprof_heap_profile_t prof = {NULL, 0, 4096, 0, comments, 2};
  int fd = open_tmp();
  assert_int_equal(mprof__pprof_write_heap(fd, &prof), EINVAL);
  close(fd);
  unlink(tmp_path);
}

/* 20 000 records of 64 frames drawn from 30 000 addresses: the location table grows several
 * times, and the output passes the writer's flush threshold many times over. */
static void test_many_records_share_locations_through_the_hash_table(void** state) {
  (void)state;
  enum { NRECS = 20000, DEPTH = 64, NADDR = 30000 };
  uintptr_t* pcs = malloc(sizeof(uintptr_t) * NRECS * DEPTH);
  mprof_heap_rec_t* recs = calloc(NRECS, sizeof *recs);
  unsigned char* used = calloc(NADDR, 1);
  assert_non_null(pcs);
  assert_non_null(recs);
  assert_non_null(used);
  uint64_t x = 88172645463325252ull;
  size_t distinct = 0;
  for (size_t r = 0; r < NRECS; r++) {
    for (size_t d = 0; d < DEPTH; d++) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      size_t k = (size_t)(x % NADDR);
      if (!used[k]) distinct++;
      used[k] = 1;
      pcs[r * DEPTH + d] = 0x100000 + 48 * k + 1;
    }
    recs[r] = (mprof_heap_rec_t){&pcs[r * DEPTH],
                                 DEPTH,
                                 (int64_t)r + 1,
                                 32 * ((int64_t)r + 1),
                                 (int64_t)r % 3,
                                 32 * ((int64_t)r % 3),
                                 0,
                                 0,
                                 0,
                                 0,
                                 NULL};
  }
  mprof_heap_profile_t prof = {recs, NRECS, 512 << 10, 1, NULL, 0};
  dprofile_t p;
  write_and_decode(&prof, &p);
  unlink(tmp_path);
  assert_int_equal(p.nsamples, NRECS);
  assert_int_equal(p.nlocations, distinct);
  /* Index the locations by id to check every sample quickly. */
  uint64_t* addr_of = calloc(p.nlocations + 1, sizeof *addr_of);
  assert_non_null(addr_of);
  for (size_t i = 0; i < p.nlocations; i++) {
    assert_true(p.locations[i].id >= 1 && p.locations[i].id <= p.nlocations);
    assert_int_equal(addr_of[p.locations[i].id], 0); /* unique */
    addr_of[p.locations[i].id] = p.locations[i].address;
    assert_int_equal(p.locations[i].mapping_id, 0);
  }
  for (size_t r = 0; r < NRECS; r++) {
    const dsample_t* s = &p.samples[r];
    assert_int_equal(s->nlocs, DEPTH);
    for (size_t d = 0; d < DEPTH; d++)
      assert_int_equal(addr_of[s->locs[d]], recs[r].pcs[d] - 1);
    assert_int_equal(s->vals[1], recs[r].alloc_bytes);
    assert_int_equal(s->label_num, 32);
  }
  free(addr_of);
  free_profile(&p);
  free(used);
  free(recs);
  free(pcs);
}

static void test_writer_gives_back_its_profiler_memory(void** state) {
  (void)state;
  build_sample_profile();
  int fd = open("/dev/null", O_WRONLY);
  assert_true(fd >= 0);
  /* The first write may leave chunks for small blocks behind; the second must reuse them. */
  assert_int_equal(mprof__pprof_write_heap(fd, &sample_prof), 0);
  size_t before = mprof__meta_mapped_bytes();
  assert_int_equal(mprof__pprof_write_heap(fd, &sample_prof), 0);
  assert_int_equal(mprof__meta_mapped_bytes(), before);
  close(fd);
}

static void test_writing_to_dev_full_returns_enospc(void** state) {
  (void)state;
  build_sample_profile();
  int fd = open("/dev/full", O_WRONLY);
  if (fd < 0) skip();
  errno = 1234;
  assert_int_equal(mprof__pprof_write_heap(fd, &sample_prof), ENOSPC);
  assert_int_equal(errno, 1234); /* errno is the program's, not ours */
  close(fd);
}

static void test_writing_to_a_closed_fd_returns_ebadf(void** state) {
  (void)state;
  build_sample_profile();
  int fd = open("/dev/null", O_WRONLY);
  assert_true(fd >= 0);
  close(fd);
  assert_int_equal(mprof__pprof_write_heap(fd, &sample_prof), EBADF);
}

static void test_malformed_profile_is_rejected_with_einval(void** state) {
  (void)state;
  mprof_heap_profile_t no_recs = {NULL, 2, 1, 0, NULL, 0};
  assert_int_equal(mprof__pprof_write_heap(1, &no_recs), EINVAL);
  mprof_heap_rec_t rec = {NULL, 3, 1, 1, 1, 1, 0, 0, 0, 0, NULL};
  mprof_heap_profile_t no_pcs = {&rec, 1, 1, 0, NULL, 0};
  assert_int_equal(mprof__pprof_write_heap(1, &no_pcs), EINVAL);
  assert_int_equal(mprof__pprof_write_heap(1, NULL), EINVAL);
}

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

#ifndef UNDER_ASAN
/* Runs the writer in a child whose address space may grow by at most `slack` bytes; returns the
 * writer's result. */
static int write_with_address_space_slack(const mprof_heap_profile_t* prof, size_t slack) {
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int fd = open("/dev/null", O_WRONLY);
    FILE* f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    if (fd < 0 || f == NULL || fscanf(f, "%lu", &pages) != 1) _exit(255);
    fclose(f);
    struct rlimit rl;
    rl.rlim_cur = rl.rlim_max = pages * (rlim_t)sysconf(_SC_PAGESIZE) + slack;
    if (setrlimit(RLIMIT_AS, &rl) != 0) _exit(254);
    _exit(mprof__pprof_write_heap(fd, prof));
  }
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  return WEXITSTATUS(status);
}

#endif

static void test_out_of_memory_returns_enomem(void** state) {
  (void)state;
#ifdef UNDER_ASAN
  skip(); /* ASan's shadow memory does not live with a small RLIMIT_AS */
#else
  /* 300 000 distinct addresses need a location table of several MiB. */
  enum { NRECS = 3000, DEPTH = 100 };
  uintptr_t* pcs = malloc(sizeof(uintptr_t) * NRECS * DEPTH);
  mprof_heap_rec_t* recs = calloc(NRECS, sizeof *recs);
  assert_non_null(pcs);
  assert_non_null(recs);
  for (size_t i = 0; i < (size_t)NRECS * DEPTH; i++)
    pcs[i] = 0x1000 + 16 * i;
  for (size_t r = 0; r < NRECS; r++)
    recs[r] = (mprof_heap_rec_t){&pcs[r * DEPTH], DEPTH, 1, 8, 1, 8, 0, 0, 0, 0, NULL};
  mprof_heap_profile_t prof = {recs, NRECS, 1, 0, NULL, 0};
  /* No room at all: zlib's state cannot be had. */
  assert_int_equal(write_with_address_space_slack(&prof, 0), ENOMEM);
  /* Room for zlib and the buffers but not for the grown location table: fails midway. */
  assert_int_equal(write_with_address_space_slack(&prof, 2 << 20), ENOMEM);
  /* And plenty of room works. */
  assert_int_equal(write_with_address_space_slack(&prof, 256 << 20), 0);
  free(recs);
  free(pcs);
#endif
}

typedef struct kmap_s {
  unsigned long long start, end, offset;
  char path[PATH_MAX];
} kmap_t;

/* The executable file mappings and the vDSO, as the kernel lists them. */
static size_t read_proc_maps(kmap_t* out, size_t max) {
  FILE* f = fopen("/proc/self/maps", "r");
  assert_non_null(f);
  char line[PATH_MAX + 128];
  size_t n = 0;
  while (fgets(line, sizeof line, f)) {
    kmap_t k;
    char perms[8];
    int path_at = 0;
    if (sscanf(line, "%llx-%llx %7s %llx %*s %*s %n", &k.start, &k.end, perms, &k.offset,
               &path_at) < 4)
      continue;
    if (perms[2] != 'x' || path_at == 0) continue;
    char* path = line + path_at;
    path[strcspn(path, "\n")] = '\0';
    if (path[0] != '/' && strcmp(path, "[vdso]") != 0) continue;
    snprintf(k.path, sizeof k.path, "%s", path);
    assert_true(n < max);
    out[n++] = k;
  }
  fclose(f);
  return n;
}

static void test_maps_match_proc_self_maps(void** state) {
  (void)state;
  enum { MAX = 512 };
  kmap_t* kmaps = malloc(MAX * sizeof *kmaps);
  assert_non_null(kmaps);
  size_t nk = read_proc_maps(kmaps, MAX);
  const unsigned long long page = (unsigned long long)sysconf(_SC_PAGESIZE);
  mprof_maps_t maps = MPROF_MAPS_INIT;
  assert_int_equal(mprof__maps_read(&maps), 0);
  assert_true(maps.n >= 2);
  for (size_t i = 1; i < maps.n; i++) {
    assert_true(maps.entries[i - 1].limit <= maps.entries[i].start);
  }
  /* Each entry is a segment inside one kernel mapping that the kernel widened to whole pages:
   * same file, same distance from the mapping start in memory and in the file. */
  bool saw_main = false;
  for (size_t i = 0; i < maps.n; i++) {
    const mprof_mapping_t* m = &maps.entries[i];
    const kmap_t* k = NULL;
    for (size_t j = 0; j < nk; j++) {
      if (kmaps[j].start <= m->start && m->start < kmaps[j].end) k = &kmaps[j];
    }
    if (k == NULL) fail_msg("no kernel mapping holds %s at %#lx", m->path, (unsigned long)m->start);
    assert_true(m->limit <= k->end && k->end - m->limit < page);
    assert_true(m->start - k->start < page);
    if (k->path[0] == '/') {
      assert_int_equal(m->offset - k->offset, m->start - k->start);
      char a[PATH_MAX], b[PATH_MAX];
      assert_non_null(realpath(k->path, a));
      assert_non_null(realpath(m->path, b));
      assert_string_equal(a, b);
    } else {
      assert_string_equal(m->path, "[vdso]");
    }
    saw_main |= m->is_main;
  }
  /* And every executable file mapping of the kernel's list is in the table. */
  for (size_t j = 0; j < nk; j++) {
    bool found = false;
    for (size_t i = 0; i < maps.n; i++) {
      found |= kmaps[j].start <= maps.entries[i].start && maps.entries[i].start < kmaps[j].end;
    }
    if (!found) fail_msg("kernel mapping %#llx %s missing", kmaps[j].start, kmaps[j].path);
  }
  assert_true(saw_main);
  assert_int_equal(nk, maps.n);
  mprof__maps_free(&maps);
  free(kmaps);
}

static void test_maps_find_locates_this_function_in_the_main_executable(void** state) {
  (void)state;
  mprof_maps_t maps = MPROF_MAPS_INIT;
  assert_int_equal(mprof__maps_read(&maps), 0);
  ptrdiff_t i = mprof__maps_find(&maps, (uintptr_t)&pprof_test_leaf_alloc_site);
  assert_true(i >= 0);
  assert_true(maps.entries[i].is_main);
  char exe[PATH_MAX];
  self_exe(exe, sizeof exe);
  assert_string_equal(maps.entries[i].path, exe);
  assert_int_equal(mprof__maps_find(&maps, 0), -1);
  assert_int_equal(mprof__maps_find(&maps, UINTPTR_MAX), -1);
  assert_int_equal(mprof__maps_find(&maps, maps.entries[0].start - 1), -1);
  assert_int_equal(mprof__maps_find(&maps, maps.entries[maps.n - 1].limit), -1);
  for (size_t k = 0; k < maps.n; k++) {
    assert_int_equal(mprof__maps_find(&maps, maps.entries[k].start), (ptrdiff_t)k);
    assert_int_equal(mprof__maps_find(&maps, maps.entries[k].limit - 1), (ptrdiff_t)k);
  }
  mprof__maps_free(&maps);
}

static void test_maps_build_id_matches_readelf(void** state) {
  (void)state;
  char exe[PATH_MAX], cmd[PATH_MAX + 64], line[512], want[160] = "";
  self_exe(exe, sizeof exe);
  snprintf(cmd, sizeof cmd, "readelf -n '%s' 2>/dev/null", exe);
  FILE* f = popen(cmd, "r");
  if (f == NULL) skip();
  while (fgets(line, sizeof line, f)) {
    char* s = strstr(line, "Build ID: ");
    if (s != NULL) sscanf(s + 10, "%159s", want);
  }
  pclose(f);
  if (want[0] == '\0') skip(); /* no readelf, or linked without --build-id */
  mprof_maps_t maps = MPROF_MAPS_INIT;
  assert_int_equal(mprof__maps_read(&maps), 0);
  ptrdiff_t i = mprof__maps_find(&maps, (uintptr_t)&pprof_test_leaf_alloc_site);
  assert_true(i >= 0);
  assert_string_equal(maps.entries[i].build_id, want);
  mprof__maps_free(&maps);
}

/* ---------------------------------------------------------------------------------------------
 * go tool pprof
 * ------------------------------------------------------------------------------------------- */
static bool have_go(void) {
  return system("command -v go >/dev/null 2>&1") == 0;
}

/* Runs `go tool pprof <args> <file>` and returns its output (malloc'ed). */
static char* run_pprof(const char* args, const char* file) {
  char cmd[2 * PATH_MAX];
  snprintf(cmd, sizeof cmd, "go tool pprof %s '%s' 2>&1", args, file);
  FILE* f = popen(cmd, "r");
  assert_non_null(f);
  size_t cap = 1 << 16, len = 0, n;
  char* out = malloc(cap);
  assert_non_null(out);
  while ((n = fread(out + len, 1, cap - 1 - len, f)) > 0) {
    len += n;
    if (len == cap - 1) {
      cap *= 2;
      out = realloc(out, cap);
      assert_non_null(out);
    }
  }
  out[len] = '\0';
  int rc = pclose(f);
  if (rc != 0) fail_msg("go tool pprof %s failed (%d):\n%s", args, rc, out);
  return out;
}

/* The line of out that mentions name, copied to line. */
static void line_with(const char* out, const char* name, char* line, size_t size) {
  const char* s = strstr(out, name);
  if (s == NULL) fail_msg("'%s' not in pprof output:\n%s", name, out);
  const char* b = s;
  while (b > out && b[-1] != '\n')
    b--;
  size_t n = strcspn(b, "\n");
  if (n >= size) n = size - 1;
  memcpy(line, b, n);
  line[n] = '\0';
}

static void expect_in_line(const char* out, const char* name, const char* want) {
  char line[512];
  line_with(out, name, line, sizeof line);
  if (strstr(line, want) == NULL) fail_msg("expected '%s' in line: %s\n%s", want, line, out);
}

static void test_go_tool_pprof_top_names_functions_with_their_shares(void** state) {
  (void)state;
  if (!have_go()) skip();
  build_sample_profile();
  int fd = open_tmp();
  assert_int_equal(mprof__pprof_write_heap(fd, &sample_prof), 0);
  close(fd);

  /* inuse_space: 122880 of 163840 bytes (75 %) at the leaf site, 40960 (25 %) at the other. */
  char* out = run_pprof("-top -sample_index=inuse_space", tmp_path);
  expect_in_line(out, "pprof_test_leaf_alloc_site", "75.00%");
  expect_in_line(out, "pprof_test_leaf_alloc_site", "120kB");
  expect_in_line(out, "pprof_test_other_alloc_site", "25.00%");
  expect_in_line(out, "pprof_test_middle_caller", "100%");
  expect_in_line(out, "pprof_test_middle_caller", "160kB"); /* cum: flat is 0 */
  expect_in_line(out, "pprof_test_root_caller", "100%");
  expect_in_line(out, "Showing nodes", "160kB total");
  free(out);

  /* alloc_objects: 40 + 0 of 140 at the leaf site, 100 at the other. */
  out = run_pprof("-top -sample_index=alloc_objects", tmp_path);
  expect_in_line(out, "pprof_test_other_alloc_site", "71.43%");
  expect_in_line(out, "pprof_test_leaf_alloc_site", "28.57%");
  free(out);

  /* Without -sample_index the default type applies. */
  out = run_pprof("-top", tmp_path);
  expect_in_line(out, "Type:", "inuse_space");
  free(out);

  /* -raw shows the parsed profile: header, values in sample type order, the bytes label. */
  out = run_pprof("-raw", tmp_path);
  expect_in_line(out, "PeriodType:", "space bytes");
  expect_in_line(out, "Period:", "524288");
  expect_in_line(out, "alloc_objects/count", "inuse_space/bytes");
  expect_in_line(out, "40     163840", "122880");
  expect_in_line(out, "100      81920", "40960");
  expect_in_line(out, "bytes:[4096 bytes]", "bytes:[4096 bytes]"); /* 163840 / 40 */
  expect_in_line(out, "bytes:[819 bytes]", "bytes:[819 bytes]");   /* 81920 / 100 */
  expect_in_line(out, "pprof_test_leaf_alloc_site", "M=1");        /* symbolized in mapping 1 */
  expect_in_line(out, "Mappings", "Mappings");
  free(out);

  /* -tags lists the average object sizes. */
  out = run_pprof("-tags", tmp_path);
  expect_in_line(out, "4kB", "%");
  free(out);
  unlink(tmp_path);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_call_sites_are_longer_than_the_pc_offset),
      cmocka_unit_test(test_written_profile_is_gzipped_and_well_formed),
      cmocka_unit_test(test_samples_list_locations_leaf_first_with_all_four_values),
      cmocka_unit_test(test_locations_are_named_from_the_symbol_table),
      cmocka_unit_test(test_locations_point_into_the_main_executable_mapping),
      cmocka_unit_test(test_mapping_build_id_is_written_as_hex_string),
      cmocka_unit_test(test_address_outside_every_mapping_gets_no_mapping_id),
      cmocka_unit_test(test_empty_profile_is_still_a_valid_profile),
      cmocka_unit_test(test_extra_comments_follow_the_first_in_order),
      cmocka_unit_test(test_a_null_comment_is_rejected_with_einval),
      cmocka_unit_test(test_many_records_share_locations_through_the_hash_table),
      cmocka_unit_test(test_writer_gives_back_its_profiler_memory),
      cmocka_unit_test(test_writing_to_dev_full_returns_enospc),
      cmocka_unit_test(test_writing_to_a_closed_fd_returns_ebadf),
      cmocka_unit_test(test_malformed_profile_is_rejected_with_einval),
      cmocka_unit_test(test_out_of_memory_returns_enomem),
      cmocka_unit_test(test_maps_match_proc_self_maps),
      cmocka_unit_test(test_maps_find_locates_this_function_in_the_main_executable),
      cmocka_unit_test(test_maps_build_id_matches_readelf),
      cmocka_unit_test(test_go_tool_pprof_top_names_functions_with_their_shares),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
