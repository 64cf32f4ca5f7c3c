/* Writing a symbolized profile (see mprof_report.h, mprof__write_symbolized): the profile as it
 * was read, with every location's Line entries replaced by the frames the command found (inlined
 * functions first, each with its file:line) and every mapping marked as symbolized, so that pprof
 * and the tools built on its format show what `mprof top` shows without the binaries. Field
 * numbers are profile.proto's. */
#include "mprof_report.h"

#include "mprof_pb.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

typedef struct strtab_s {
  const char** v;
  size_t n, cap;
  size_t* slots; /* open addressing: index + 1 */
  size_t nslots;
  int failed;
} strtab_t;

static uint64_t hash_str(const char* s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

/* Index of s in the table, adding it (s must outlive the table). */
static int64_t intern(strtab_t* t, const char* s) {
  if (t->failed) return 0;
  if (2 * (t->n + 1) > t->nslots) {
    size_t ns = t->nslots ? t->nslots * 2 : 1024;
    size_t* slots = calloc(ns, sizeof *slots);
    if (slots == NULL) {
      t->failed = 1;
      return 0;
    }
    for (size_t i = 0; i < t->n; i++) {
      size_t j = hash_str(t->v[i]) & (ns - 1);
      while (slots[j] != 0)
        j = (j + 1) & (ns - 1);
      slots[j] = i + 1;
    }
    free(t->slots);
    t->slots = slots;
    t->nslots = ns;
  }
  size_t j = hash_str(s) & (t->nslots - 1);
  for (; t->slots[j] != 0; j = (j + 1) & (t->nslots - 1))
    if (strcmp(t->v[t->slots[j] - 1], s) == 0) return (int64_t)t->slots[j] - 1;
  if (t->n == t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 1024;
    const char** v = realloc(t->v, cap * sizeof *v);
    if (v == NULL) {
      t->failed = 1;
      return 0;
    }
    t->v = v;
    t->cap = cap;
  }
  t->v[t->n] = s;
  t->slots[j] = ++t->n;
  return (int64_t)t->n - 1;
}

/* Functions, one per (name, system name, file): key strings joined, looked up by string id. */
typedef struct functab_s {
  int64_t* name; /* per function: name, system_name, filename string ids */
  int64_t* sys;
  int64_t* file;
  size_t n, cap;
  size_t* slots;
  size_t nslots;
  int failed;
} functab_t;

static uint64_t hash3(int64_t a, int64_t b, int64_t c) {
  uint64_t h = (uint64_t)a * 0x9e3779b97f4a7c15ull;
  h ^= (uint64_t)b * 0xc2b2ae3d27d4eb4full + (h << 6);
  h ^= (uint64_t)c * 0x165667b19e3779f9ull + (h >> 2);
  return h;
}

/* Function id (index + 1) of the triple, adding it. 0 on failure. */
static uint64_t func_id(functab_t* t, int64_t name, int64_t sys, int64_t file) {
  if (t->failed) return 0;
  if (2 * (t->n + 1) > t->nslots) {
    size_t ns = t->nslots ? t->nslots * 2 : 1024;
    size_t* slots = calloc(ns, sizeof *slots);
    if (slots == NULL) {
      t->failed = 1;
      return 0;
    }
    for (size_t i = 0; i < t->n; i++) {
      size_t j = hash3(t->name[i], t->sys[i], t->file[i]) & (ns - 1);
      while (slots[j] != 0)
        j = (j + 1) & (ns - 1);
      slots[j] = i + 1;
    }
    free(t->slots);
    t->slots = slots;
    t->nslots = ns;
  }
  size_t j = hash3(name, sys, file) & (t->nslots - 1);
  for (; t->slots[j] != 0; j = (j + 1) & (t->nslots - 1)) {
    size_t i = t->slots[j] - 1;
    if (t->name[i] == name && t->sys[i] == sys && t->file[i] == file) return i + 1;
  }
  if (t->n == t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 1024;
    int64_t* a = realloc(t->name, cap * sizeof *a);
    if (a != NULL) t->name = a;
    int64_t* b = realloc(t->sys, cap * sizeof *b);
    if (b != NULL) t->sys = b;
    int64_t* c = realloc(t->file, cap * sizeof *c);
    if (c != NULL) t->file = c;
    if (a == NULL || b == NULL || c == NULL) {
      t->failed = 1;
      return 0;
    }
    t->cap = cap;
  }
  t->name[t->n] = name;
  t->sys[t->n] = sys;
  t->file[t->n] = file;
  t->slots[j] = ++t->n;
  return t->n;
}

static void value_type(mprof_pb_buf_t* b, uint32_t field, strtab_t* st, const char* type,
                       const char* unit) {
  size_t tok = mprof__pb_begin(b, field);
  mprof__pb_int64(b, 1, intern(st, type));
  mprof__pb_int64(b, 2, intern(st, unit));
  mprof__pb_end(b, tok);
}

int mprof__write_symbolized(const char* path, const mprof_stacks_t* s) {
  const mprof_rd_profile_t* p = s->prof;
  strtab_t st = {0};
  functab_t ft = {0};
  mprof_pb_buf_t b = MPROF_PB_BUF_INIT;
  intern(&st, "");
  for (size_t i = 0; i < p->nsample_types; i++)
    value_type(&b, 1, &st, mprof__rd_str(p, p->sample_types[i].type),
               mprof__rd_str(p, p->sample_types[i].unit));
  uint64_t* ids = NULL;
  size_t idcap = 0;
  for (size_t i = 0; i < p->nsamples; i++) {
    const mprof_rd_sample_t* smp = &p->samples[i];
    if (smp->nlocs > idcap) {
      uint64_t* a = realloc(ids, smp->nlocs * sizeof *a);
      if (a == NULL) {
        b.failed = true;
        break;
      }
      ids = a;
      idcap = smp->nlocs;
    }
    for (size_t j = 0; j < smp->nlocs; j++)
      ids[j] = p->locations[smp->locs[j]].id;
    size_t tok = mprof__pb_begin(&b, 2);
    mprof__pb_packed_uint64(&b, 1, ids, smp->nlocs);
    mprof__pb_packed_int64(&b, 2, smp->values, p->nsample_types);
    for (size_t j = 0; j < smp->nlabels; j++) {
      size_t lt = mprof__pb_begin(&b, 3);
      mprof__pb_int64(&b, 1, intern(&st, mprof__rd_str(p, smp->labels[j].key)));
      if (smp->labels[j].str != 0)
        mprof__pb_int64(&b, 2, intern(&st, mprof__rd_str(p, smp->labels[j].str)));
      else
        mprof__pb_int64(&b, 3, smp->labels[j].num);
      if (smp->labels[j].num_unit != 0)
        mprof__pb_int64(&b, 4, intern(&st, mprof__rd_str(p, smp->labels[j].num_unit)));
      mprof__pb_end(&b, lt);
    }
    mprof__pb_end(&b, tok);
  }
  free(ids);
  for (size_t i = 0; i < p->nmappings; i++) {
    const mprof_rd_mapping_t* m = &p->mappings[i];
    size_t tok = mprof__pb_begin(&b, 3);
    mprof__pb_uint64(&b, 1, m->id);
    mprof__pb_uint64(&b, 2, m->start);
    mprof__pb_uint64(&b, 3, m->limit);
    mprof__pb_uint64(&b, 4, m->offset);
    mprof__pb_int64(&b, 5, intern(&st, mprof__rd_str(p, m->filename)));
    mprof__pb_int64(&b, 6, intern(&st, mprof__rd_str(p, m->build_id)));
    for (uint32_t f = 7; f <= 10; f++) /* functions, file names, lines, inline frames */
      mprof__pb_bool(&b, f, true);
    mprof__pb_end(&b, tok);
  }
  for (size_t i = 0; i < p->nlocations; i++) {
    const mprof_rd_location_t* l = &p->locations[i];
    const mprof_locframes_t* lf = &s->locs[i];
    size_t tok = mprof__pb_begin(&b, 4);
    mprof__pb_uint64(&b, 1, l->id);
    if (l->mapping_id != 0) mprof__pb_uint64(&b, 2, l->mapping_id);
    mprof__pb_uint64(&b, 3, l->address);
    for (size_t j = 0; j < lf->n; j++) {
      const mprof_frame_t* f = &lf->f[j];
      if (f->unnamed) continue; /* pprof names it from the mapping */
      uint64_t fid = func_id(&ft, intern(&st, f->func), intern(&st, f->raw), intern(&st, f->file));
      size_t lt = mprof__pb_begin(&b, 4);
      mprof__pb_uint64(&b, 1, fid);
      if (f->line > 0) mprof__pb_int64(&b, 2, f->line);
      mprof__pb_end(&b, lt);
    }
    mprof__pb_end(&b, tok);
  }
  for (size_t i = 0; i < ft.n; i++) {
    size_t tok = mprof__pb_begin(&b, 5);
    mprof__pb_uint64(&b, 1, i + 1);
    mprof__pb_int64(&b, 2, ft.name[i]);
    mprof__pb_int64(&b, 3, ft.sys[i]);
    mprof__pb_int64(&b, 4, ft.file[i]);
    mprof__pb_end(&b, tok);
  }
  /* Every string is interned before the table is written. */
  int64_t drop = p->drop_frames ? intern(&st, mprof__rd_str(p, p->drop_frames)) : 0;
  int64_t keep = p->keep_frames ? intern(&st, mprof__rd_str(p, p->keep_frames)) : 0;
  int64_t ptype = intern(&st, mprof__rd_str(p, p->period_type.type));
  int64_t punit = intern(&st, mprof__rd_str(p, p->period_type.unit));
  int64_t dflt = p->default_sample_type ? intern(&st, mprof__rd_str(p, p->default_sample_type)) : 0;
  int64_t* comments = calloc(p->ncomments ? p->ncomments : 1, sizeof *comments);
  if (comments == NULL) b.failed = true;
  for (size_t i = 0; comments != NULL && i < p->ncomments; i++)
    comments[i] = intern(&st, mprof__rd_str(p, p->comments[i]));
  for (size_t i = 0; i < st.n; i++)
    mprof__pb_string(&b, 6, st.v[i]);
  if (drop) mprof__pb_int64(&b, 7, drop);
  if (keep) mprof__pb_int64(&b, 8, keep);
  if (p->time_nanos) mprof__pb_int64(&b, 9, p->time_nanos);
  if (ptype || punit) {
    size_t tok = mprof__pb_begin(&b, 11);
    mprof__pb_int64(&b, 1, ptype);
    mprof__pb_int64(&b, 2, punit);
    mprof__pb_end(&b, tok);
  }
  if (p->period) mprof__pb_int64(&b, 12, p->period);
  if (comments != NULL) mprof__pb_packed_int64(&b, 13, comments, p->ncomments);
  if (dflt) mprof__pb_int64(&b, 14, dflt);
  free(comments);

  int err = 0;
  if (b.failed || st.failed || ft.failed) err = ENOMEM;
  if (err == 0) {
    gzFile gz = gzopen(path, "wb");
    if (gz == NULL) {
      err = errno ? errno : EIO;
    } else {
      size_t done = 0;
      while (err == 0 && done < b.len) {
        unsigned chunk = b.len - done > (1u << 30) ? (1u << 30) : (unsigned)(b.len - done);
        int n = gzwrite(gz, b.data + done, chunk);
        if (n <= 0) err = EIO;
        done += n > 0 ? (size_t)n : 0;
      }
      if (gzclose(gz) != Z_OK && err == 0) err = EIO;
    }
  }
  mprof__pb_free(&b);
  free(st.v);
  free(st.slots);
  free(ft.name);
  free(ft.sys);
  free(ft.file);
  free(ft.slots);
  return err;
}
