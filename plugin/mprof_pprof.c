/* pprof profile.proto output (see mprof_pprof.h).
 *
 * This file owns the mapping from a heap profile to pprof's message (field numbers from
 * google/pprof proto/profile.proto), the string and location tables built while writing, and the
 * gzip stream to the file descriptor. Top-level fields are independent in protobuf, so the
 * message is never held whole: each top-level field is appended to a buffer that is handed to
 * deflate whenever it passes FLUSH_AT bytes, and deflate's output goes to write(2) as it fills.
 * Output order: sample types, string table, scalar fields, mappings, samples, locations. Every
 * string is known before the first sample, so the string table can come early; locations are
 * numbered while the samples are written and listed last. */
#include "mprof_pprof.h"

#include "mprof_meta.h"
#include "mprof_mutex.h"
#include "mprof_symtab.h"
#include "mprof_pb.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#ifndef MPROF_PPROF_GZIP_LEVEL
#define MPROF_PPROF_GZIP_LEVEL Z_BEST_SPEED /* as Go's runtime/pprof: dumps should be quick */
#endif

#define FLUSH_AT ((size_t)64 << 10) /* bytes of encoded message handed to deflate at a time */
#define ZOUT_SIZE ((size_t)64 << 10)
#define MAX_COMMENTS 32 /* extra comments written per profile */

/* profile.proto field numbers. */
enum {
  PROFILE_SAMPLE_TYPE = 1,
  PROFILE_SAMPLE = 2,
  PROFILE_MAPPING = 3,
  PROFILE_LOCATION = 4,
  PROFILE_FUNCTION = 5,
  PROFILE_STRING_TABLE = 6,
  PROFILE_DROP_FRAMES = 7,
  PROFILE_TIME_NANOS = 9,
  PROFILE_PERIOD_TYPE = 11,
  PROFILE_PERIOD = 12,
  PROFILE_COMMENT = 13,
  PROFILE_DEFAULT_SAMPLE_TYPE = 14,
  VALUE_TYPE_TYPE = 1,
  VALUE_TYPE_UNIT = 2,
  SAMPLE_LOCATION_ID = 1,
  SAMPLE_VALUE = 2,
  SAMPLE_LABEL = 3,
  LABEL_KEY = 1,
  LABEL_STR = 2,
  LABEL_NUM = 3,
  LABEL_NUM_UNIT = 4,
  MAPPING_ID = 1,
  MAPPING_MEMORY_START = 2,
  MAPPING_MEMORY_LIMIT = 3,
  MAPPING_FILE_OFFSET = 4,
  MAPPING_FILENAME = 5,
  MAPPING_BUILD_ID = 6,
  LOCATION_ID = 1,
  LOCATION_MAPPING_ID = 2,
  LOCATION_ADDRESS = 3,
  LOCATION_LINE = 4,
  LINE_FUNCTION_ID = 1,
  FUNCTION_ID = 1,
  FUNCTION_NAME = 2,
  FUNCTION_SYSTEM_NAME = 3,
};

/* Strings every heap profile uses, interned first in this order. */
enum {
  S_EMPTY,
  S_ALLOC_OBJECTS,
  S_COUNT,
  S_ALLOC_SPACE,
  S_BYTES,
  S_INUSE_OBJECTS,
  S_INUSE_SPACE,
  S_SPACE,
  S_COMMENT,
  S_DROP_FRAMES,
  S_AGE_EPOCHS,
  S_EPOCHS,
  S_AGE_MIN_MS,
  S_MS,
  S_THREAD,
  S_NFIXED
};
static const char* const fixed_strings[S_NFIXED] = {
    "",
    "alloc_objects",
    "count",
    "alloc_space",
    "bytes",
    "inuse_objects",
    "inuse_space",
    "space",
    "mprof heap profile",
    MPROF_PPROF_DROP_FRAMES,
    "age_epochs",
    "epochs",
    "age_min_ms",
    "ms",
    "thread",
};

/* Strings every contention profile uses, interned first in this order. */
enum { M_EMPTY, M_CONTENTIONS, M_COUNT, M_DELAY, M_NANOSECONDS, M_COMMENT, M_NFIXED };
static const char* const mutex_fixed_strings[M_NFIXED] = {
    "", "contentions", "count", "delay", "nanoseconds", "mprof mutex profile",
};

/* Strings every thread snapshot uses, interned first in this order. */
enum {
  T_EMPTY,
  T_THREADS,
  T_COUNT,
  T_INUSE_SPACE,
  T_BYTES,
  T_ALLOC_SPACE,
  T_COMMENT,
  T_THREAD,
  T_STATE,
  T_TID,
  T_NFIXED
};
static const char* const threads_fixed_strings[T_NFIXED] = {
    "",       "threads", "count", "inuse_space", "bytes", "alloc_space", "mprof threads profile",
    "thread", "state",   "tid",
};

typedef struct loc_slot_s {
  uint64_t addr; /* call address (return address - 1) */
  uint64_t id;   /* location id, 0 while the slot is empty */
  int64_t fn;    /* string id of its function's name from the symbol table (= function id), 0 */
} loc_slot_t;

typedef struct writer_s {
  const char* const* fixed; /* strings interned first, in order */
  int nfixed;
  int fd;
  int err; /* first error; once set, nothing more is written */
  z_stream z;
  bool z_open;
  uint8_t* zout;      /* ZOUT_SIZE bytes of deflate output */
  mprof_pb_buf_t out; /* encoded top-level fields not yet handed to deflate */

  const char** strs; /* string table, index = string id; pointers into statics or maps */
  size_t nstrs, strs_cap;
  uint32_t* str_slots; /* open-addressing set of string id + 1 (0 = empty) */
  size_t str_slots_cap;

  loc_slot_t* locs; /* open-addressing map from address to location id */
  size_t locs_cap;  /* power of two */
  size_t nlocs;

  size_t nstrs_written; /* string table entries already encoded */

  const char* const* comments; /* the profile's extra comments (mprof_profile.h) */
  size_t ncomments;            /* at most MAX_COMMENTS are written */
  int64_t comment_ids[MAX_COMMENTS];

  const mprof_maps_t* maps;
  mprof_symtab_t* symtabs; /* symtabs[i] for maps->entries[i], loaded on first use */
  uint8_t* symtab_state;   /* 0 not tried, 1 loaded, 2 unavailable */
  uint64_t* map_ids;       /* mapping id of maps->entries[i] */
  int64_t* map_names;      /* string ids: filename of entry i at 2i, build id at 2i + 1 */
} writer_t;

/* zlib's memory comes from profiler memory; a header remembers the size mprof__meta_free needs.
 * 16 bytes keep the 16-byte alignment of mprof__meta_alloc. */
static voidpf z_alloc(voidpf opaque, uInt items, uInt size) {
  (void)opaque;
  if (size != 0 && items > (SIZE_MAX - 16) / size) return Z_NULL;
  size_t total = (size_t)items * size + 16;
  unsigned char* p = mprof__meta_alloc(total);
  if (p == NULL) return Z_NULL;
  memcpy(p, &total, sizeof total);
  return p + 16;
}

static void z_free(voidpf opaque, voidpf address) {
  (void)opaque;
  if (address == Z_NULL) return;
  unsigned char* p = (unsigned char*)address - 16;
  size_t total;
  memcpy(&total, p, sizeof total);
  mprof__meta_free(p, total);
}

static int write_all(int fd, const uint8_t* p, size_t n) {
  while (n > 0) {
    ssize_t r = write(fd, p, n);
    if (r < 0) {
      if (errno == EINTR) continue;
      return errno != 0 ? errno : EIO;
    }
    if (r == 0) return EIO;
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

/* Hands the pending message bytes to deflate (finishing the stream when finish is set) and
 * writes out whatever deflate produces. */
static void pump(writer_t* w, bool finish) {
  if (w->err == 0 && w->out.failed) w->err = ENOMEM;
  if (w->err != 0) return;
  w->z.next_in = w->out.data;
  w->z.avail_in = (uInt)w->out.len; /* FLUSH_AT plus one record is far below 4 GiB */
  int flush = finish ? Z_FINISH : Z_NO_FLUSH;
  int ret;
  do {
    w->z.next_out = w->zout;
    w->z.avail_out = (uInt)ZOUT_SIZE;
    ret = deflate(&w->z, flush);
    if (ret == Z_STREAM_ERROR) {
      w->err = EIO;
      return;
    }
    int err = write_all(w->fd, w->zout, ZOUT_SIZE - w->z.avail_out);
    if (err != 0) {
      w->err = err;
      return;
    }
  } while (w->z.avail_out == 0 || (finish && ret != Z_STREAM_END));
  mprof__pb_clear(&w->out);
}

static void maybe_pump(writer_t* w) {
  if (w->out.len >= FLUSH_AT || w->out.failed) pump(w, false);
}

static uint64_t hash_u64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  return x;
}

static uint64_t hash_str(const char* s) {
  uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
  for (; *s != '\0'; s++)
    h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
  return h;
}

/* Grows the string set to hold twice the current strings and rehashes. */
static int grow_str_slots(writer_t* w) {
  size_t cap = w->str_slots_cap == 0 ? 64 : w->str_slots_cap * 2;
  uint32_t* slots = mprof__meta_alloc(cap * sizeof *slots);
  if (slots == NULL) return ENOMEM;
  for (size_t i = 0; i < w->str_slots_cap; i++) {
    uint32_t v = w->str_slots[i];
    if (v == 0) continue;
    size_t j = hash_str(w->strs[v - 1]) & (cap - 1);
    while (slots[j] != 0)
      j = (j + 1) & (cap - 1);
    slots[j] = v;
  }
  if (w->str_slots != NULL) mprof__meta_free(w->str_slots, w->str_slots_cap * sizeof *slots);
  w->str_slots = slots;
  w->str_slots_cap = cap;
  return 0;
}

/* Returns the string id of s, adding it to the table; s must outlive the writer. -1 on ENOMEM. */
static int64_t intern(writer_t* w, const char* s) {
  if (2 * (w->nstrs + 1) > w->str_slots_cap && grow_str_slots(w) != 0) return -1;
  size_t j = hash_str(s) & (w->str_slots_cap - 1);
  for (; w->str_slots[j] != 0; j = (j + 1) & (w->str_slots_cap - 1)) {
    uint32_t v = w->str_slots[j];
    if (strcmp(w->strs[v - 1], s) == 0) return (int64_t)v - 1;
  }
  if (w->nstrs == w->strs_cap) {
    size_t cap = w->strs_cap == 0 ? 64 : w->strs_cap * 2;
    const char** strs = mprof__meta_alloc(cap * sizeof *strs);
    if (strs == NULL) return -1;
    if (w->nstrs > 0) memcpy(strs, w->strs, w->nstrs * sizeof *strs);
    if (w->strs != NULL) mprof__meta_free(w->strs, w->strs_cap * sizeof *strs);
    w->strs = strs;
    w->strs_cap = cap;
  }
  w->strs[w->nstrs] = s;
  w->str_slots[j] = (uint32_t)++w->nstrs;
  return (int64_t)w->nstrs - 1;
}

static int grow_locs(writer_t* w) {
  size_t cap = w->locs_cap == 0 ? 4096 : w->locs_cap * 2;
  loc_slot_t* locs = mprof__meta_alloc(cap * sizeof *locs);
  if (locs == NULL) return ENOMEM;
  for (size_t i = 0; i < w->locs_cap; i++) {
    if (w->locs[i].id == 0) continue;
    size_t j = hash_u64(w->locs[i].addr) & (cap - 1);
    while (locs[j].id != 0)
      j = (j + 1) & (cap - 1);
    locs[j] = w->locs[i];
  }
  if (w->locs != NULL) mprof__meta_free(w->locs, w->locs_cap * sizeof *locs);
  w->locs = locs;
  w->locs_cap = cap;
  return 0;
}

/* Returns the location id of addr, numbering new addresses from 1; 0 on ENOMEM. */
static uint64_t location_id(writer_t* w, uint64_t addr) {
  if (2 * (w->nlocs + 1) > w->locs_cap && grow_locs(w) != 0) return 0;
  size_t j = hash_u64(addr) & (w->locs_cap - 1);
  for (; w->locs[j].id != 0; j = (j + 1) & (w->locs_cap - 1)) {
    if (w->locs[j].addr == addr) return w->locs[j].id;
  }
  w->locs[j].addr = addr;
  w->locs[j].id = ++w->nlocs;
  return w->nlocs;
}

static void write_value_type(writer_t* w, uint32_t field, int64_t type, int64_t unit) {
  size_t tok = mprof__pb_begin(&w->out, field);
  mprof__pb_int64(&w->out, VALUE_TYPE_TYPE, type);
  mprof__pb_int64(&w->out, VALUE_TYPE_UNIT, unit);
  mprof__pb_end(&w->out, tok);
}

/* Interns the fixed strings and every mapping's names, and numbers the mappings: the main
 * program's segments first (some pprof versions take mapping 1 as the main binary), then the
 * others in address order. */
static int prepare(writer_t* w) {
  for (int i = 0; i < w->nfixed; i++) {
    if (intern(w, w->fixed[i]) != i) return ENOMEM;
  }
  for (size_t i = 0; i < w->ncomments; i++) {
    w->comment_ids[i] = intern(w, w->comments[i]);
    if (w->comment_ids[i] < 0) return ENOMEM;
  }
  size_t n = w->maps->n;
  if (n == 0) return 0;
  w->map_ids = mprof__meta_alloc(n * sizeof *w->map_ids);
  w->map_names = mprof__meta_alloc(2 * n * sizeof *w->map_names);
  if (w->map_ids == NULL || w->map_names == NULL) return ENOMEM;
  uint64_t next = 1;
  for (int pass = 0; pass < 2; pass++) {
    for (size_t i = 0; i < n; i++) {
      if (w->maps->entries[i].is_main == (pass == 0)) w->map_ids[i] = next++;
    }
  }
  for (size_t i = 0; i < n; i++) {
    w->map_names[2 * i] = intern(w, w->maps->entries[i].path);
    w->map_names[2 * i + 1] = intern(w, w->maps->entries[i].build_id);
    if (w->map_names[2 * i] < 0 || w->map_names[2 * i + 1] < 0) return ENOMEM;
  }
  return 0;
}

/* Encodes the strings interned since the last call. string_table is a repeated field, so its
 * entries may come in several runs anywhere in the message, as long as they stay in order. */
static void write_new_strings(writer_t* w) {
  for (; w->nstrs_written < w->nstrs; w->nstrs_written++) {
    mprof__pb_string(&w->out, PROFILE_STRING_TABLE, w->strs[w->nstrs_written]);
    maybe_pump(w);
  }
}

static void write_header(writer_t* w, const mprof_heap_profile_t* prof) {
  write_value_type(w, PROFILE_SAMPLE_TYPE, S_ALLOC_OBJECTS, S_COUNT);
  write_value_type(w, PROFILE_SAMPLE_TYPE, S_ALLOC_SPACE, S_BYTES);
  write_value_type(w, PROFILE_SAMPLE_TYPE, S_INUSE_OBJECTS, S_COUNT);
  write_value_type(w, PROFILE_SAMPLE_TYPE, S_INUSE_SPACE, S_BYTES);
  write_new_strings(w);
  if (prof->time_nanos != 0) mprof__pb_int64(&w->out, PROFILE_TIME_NANOS, prof->time_nanos);
  write_value_type(w, PROFILE_PERIOD_TYPE, S_SPACE, S_BYTES);
  mprof__pb_int64(&w->out, PROFILE_PERIOD, (int64_t)prof->period);
  mprof__pb_int64(&w->out, PROFILE_DROP_FRAMES, S_DROP_FRAMES);
  mprof__pb_int64(&w->out, PROFILE_COMMENT, S_COMMENT);
  for (size_t i = 0; i < w->ncomments; i++)
    mprof__pb_int64(&w->out, PROFILE_COMMENT, w->comment_ids[i]);
  mprof__pb_int64(&w->out, PROFILE_DEFAULT_SAMPLE_TYPE, S_INUSE_SPACE);
}

static void write_mappings(writer_t* w) {
  /* In id order: the main program's entries, then the rest. */
  for (int pass = 0; pass < 2; pass++) {
    for (size_t i = 0; i < w->maps->n; i++) {
      const mprof_mapping_t* m = &w->maps->entries[i];
      if (m->is_main != (pass == 0)) continue;
      size_t tok = mprof__pb_begin(&w->out, PROFILE_MAPPING);
      mprof__pb_uint64(&w->out, MAPPING_ID, w->map_ids[i]);
      mprof__pb_uint64(&w->out, MAPPING_MEMORY_START, m->start);
      mprof__pb_uint64(&w->out, MAPPING_MEMORY_LIMIT, m->limit);
      if (m->offset != 0) mprof__pb_uint64(&w->out, MAPPING_FILE_OFFSET, m->offset);
      mprof__pb_int64(&w->out, MAPPING_FILENAME, w->map_names[2 * i]);
      if (m->build_id[0] != '\0')
        mprof__pb_int64(&w->out, MAPPING_BUILD_ID, w->map_names[2 * i + 1]);
      mprof__pb_end(&w->out, tok);
      maybe_pump(w);
    }
  }
}

/* A sample's location ids. Returns false (w->err set) when out of memory. */
static bool write_stack(writer_t* w, const uintptr_t* pcs, uint32_t npcs) {
  if (npcs == 0) return true;
  size_t ids = mprof__pb_begin(&w->out, SAMPLE_LOCATION_ID);
  for (uint32_t i = 0; i < npcs; i++) {
    /* A return address points after its call; pc - 1 is inside the call instruction. A pseudo
     * address (a named frame of the contention profile) is kept as it is. */
    uint64_t pc = (uint64_t)pcs[i];
    uint64_t id = location_id(w, mprof__mutex_pc_name(pcs[i]) != NULL ? pc : pc - 1);
    if (id == 0) {
      w->err = ENOMEM;
      return false;
    }
    mprof__pb_varint(&w->out, id);
  }
  mprof__pb_end(&w->out, ids);
  return true;
}

static void write_num_label(writer_t* w, int64_t key, int64_t num, int64_t unit) {
  size_t label = mprof__pb_begin(&w->out, SAMPLE_LABEL);
  mprof__pb_int64(&w->out, LABEL_KEY, key);
  mprof__pb_int64(&w->out, LABEL_NUM, num);
  mprof__pb_int64(&w->out, LABEL_NUM_UNIT, unit);
  mprof__pb_end(&w->out, label);
}

/* One sample per record. Thread names are interned here, after the string table's first run;
 * they are written with the names of the functions, in the table's last run. */
static void write_samples(writer_t* w, const mprof_heap_profile_t* prof) {
  for (size_t r = 0; r < prof->nrecs && w->err == 0; r++) {
    const mprof_heap_rec_t* rec = &prof->recs[r];
    size_t sample = mprof__pb_begin(&w->out, PROFILE_SAMPLE);
    if (!write_stack(w, rec->pcs, rec->npcs)) return;
    const int64_t values[4] = {rec->alloc_objects, rec->alloc_bytes, rec->inuse_objects,
                               rec->inuse_bytes};
    mprof__pb_packed_int64(&w->out, SAMPLE_VALUE, values, 4);
    /* The average object size, rounded, not truncated (from the unrounded sums where the
     * snapshot gives it: the quotient of two rounded figures is off by up to one). */
    if (rec->avg_bytes > 0)
      write_num_label(w, S_BYTES, rec->avg_bytes, S_BYTES);
    else if (rec->alloc_objects > 0)
      write_num_label(w, S_BYTES, (rec->alloc_bytes + rec->alloc_objects / 2) / rec->alloc_objects,
                      S_BYTES);
    else if (rec->inuse_objects > 0)
      write_num_label(w, S_BYTES, (rec->inuse_bytes + rec->inuse_objects / 2) / rec->inuse_objects,
                      S_BYTES);
    if (rec->labels & MPROF_REC_AGE) write_num_label(w, S_AGE_EPOCHS, rec->age_epochs, S_EPOCHS);
    if (rec->labels & MPROF_REC_AGE_TIME) write_num_label(w, S_AGE_MIN_MS, rec->age_min_ms, S_MS);
    if ((rec->labels & MPROF_REC_THREAD) && rec->thread != NULL) {
      int64_t str = intern(w, rec->thread);
      if (str < 0) {
        w->err = ENOMEM;
        return;
      }
      size_t label = mprof__pb_begin(&w->out, SAMPLE_LABEL);
      mprof__pb_int64(&w->out, LABEL_KEY, S_THREAD);
      mprof__pb_int64(&w->out, LABEL_STR, str);
      mprof__pb_end(&w->out, label);
    }
    mprof__pb_end(&w->out, sample);
    maybe_pump(w);
  }
}

/* Names every location from the symbol table of its mapped file, where there is one. A file
 * that cannot be read (gone, replaced, not ELF, the vDSO) just leaves its locations unnamed. */
static void symbolize(writer_t* w) {
  size_t n = w->maps->n;
  w->symtabs = mprof__meta_alloc(n * sizeof *w->symtabs);
  w->symtab_state = mprof__meta_alloc(n);
  if (w->symtabs == NULL || w->symtab_state == NULL) return; /* names are optional */
  for (size_t i = 0; i < w->locs_cap; i++) {
    loc_slot_t* l = &w->locs[i];
    if (l->id == 0) continue;
    const char* pseudo = mprof__mutex_pc_name((uintptr_t)l->addr);
    if (pseudo != NULL) { /* a lock's name or the sentinel: static storage */
      l->fn = intern(w, pseudo);
      if (l->fn < 0) {
        l->fn = 0;
        return;
      }
      continue;
    }
    ptrdiff_t m = mprof__maps_find(w->maps, (uintptr_t)l->addr);
    if (m < 0) continue;
    const mprof_mapping_t* map = &w->maps->entries[m];
    if (w->symtab_state[m] == 0) {
      w->symtab_state[m] = 2;
      if (map->path[0] == '/' && mprof__symtab_load(map->path, map->build_id, &w->symtabs[m]) == 0)
        w->symtab_state[m] = 1;
      /* The other entries of the same file share the table. */
      for (size_t k = 0; k < n; k++) {
        if (k != (size_t)m && w->maps->entries[k].path == map->path) w->symtab_state[k] = 3;
      }
    }
    const mprof_symtab_t* st = NULL;
    if (w->symtab_state[m] == 1) {
      st = &w->symtabs[m];
    } else if (w->symtab_state[m] == 3) {
      for (size_t k = 0; k < n && st == NULL; k++)
        if (w->symtab_state[k] == 1 && w->maps->entries[k].path == map->path) st = &w->symtabs[k];
    }
    const char* name = st ? mprof__symtab_find(st, l->addr - map->bias) : NULL;
    if (name != NULL) l->fn = intern(w, name);
    if (l->fn < 0) {
      l->fn = 0;
      return; /* out of memory: the rest stays unnamed */
    }
  }
}

static void close_symtabs(writer_t* w) {
  if (w->symtabs != NULL) {
    for (size_t i = 0; i < w->maps->n; i++)
      if (w->symtab_state != NULL && w->symtab_state[i] == 1) mprof__symtab_close(&w->symtabs[i]);
    mprof__meta_free(w->symtabs, w->maps->n * sizeof *w->symtabs);
  }
  if (w->symtab_state != NULL) mprof__meta_free(w->symtab_state, w->maps->n);
}

static void write_locations(writer_t* w) {
  for (size_t i = 0; i < w->locs_cap && w->err == 0; i++) {
    const loc_slot_t* l = &w->locs[i];
    if (l->id == 0) continue;
    size_t tok = mprof__pb_begin(&w->out, PROFILE_LOCATION);
    mprof__pb_uint64(&w->out, LOCATION_ID, l->id);
    ptrdiff_t m = mprof__maps_find(w->maps, (uintptr_t)l->addr);
    if (m >= 0) mprof__pb_uint64(&w->out, LOCATION_MAPPING_ID, w->map_ids[m]);
    mprof__pb_uint64(&w->out, LOCATION_ADDRESS, l->addr);
    if (l->fn > 0) {
      size_t line = mprof__pb_begin(&w->out, LOCATION_LINE);
      mprof__pb_uint64(&w->out, LINE_FUNCTION_ID, (uint64_t)l->fn);
      mprof__pb_end(&w->out, line);
    }
    mprof__pb_end(&w->out, tok);
    maybe_pump(w);
  }
}

/* One Function per distinct name, its id being the name's string id. The name is the symbol
 * as it is (C++ names mangled); pprof demangles it for display. */
static void write_functions(writer_t* w) {
  uint8_t* done = mprof__meta_alloc(w->nstrs);
  if (done == NULL) {
    w->err = ENOMEM;
    return;
  }
  for (size_t i = 0; i < w->locs_cap && w->err == 0; i++) {
    int64_t fn = w->locs[i].id != 0 ? w->locs[i].fn : 0;
    if (fn <= 0 || done[fn]) continue;
    done[fn] = 1;
    size_t tok = mprof__pb_begin(&w->out, PROFILE_FUNCTION);
    mprof__pb_uint64(&w->out, FUNCTION_ID, (uint64_t)fn);
    mprof__pb_int64(&w->out, FUNCTION_NAME, fn);
    mprof__pb_int64(&w->out, FUNCTION_SYSTEM_NAME, fn);
    mprof__pb_end(&w->out, tok);
    maybe_pump(w);
  }
  mprof__meta_free(done, w->nstrs);
}

static int check_profile(const mprof_heap_profile_t* prof) {
  if (prof == NULL || (prof->recs == NULL && prof->nrecs > 0)) return EINVAL;
  for (size_t i = 0; prof->comments != NULL && i < prof->ncomments; i++) {
    if (prof->comments[i] == NULL) return EINVAL;
  }
  for (size_t i = 0; i < prof->nrecs; i++) {
    if (prof->recs[i].pcs == NULL && prof->recs[i].npcs > 0) return EINVAL;
  }
  return 0;
}

static void write_mutex_header(writer_t* w, const mprof_mutex_profile_t* prof) {
  write_value_type(w, PROFILE_SAMPLE_TYPE, M_CONTENTIONS, M_COUNT);
  write_value_type(w, PROFILE_SAMPLE_TYPE, M_DELAY, M_NANOSECONDS);
  write_new_strings(w);
  if (prof->time_nanos != 0) mprof__pb_int64(&w->out, PROFILE_TIME_NANOS, prof->time_nanos);
  write_value_type(w, PROFILE_PERIOD_TYPE, M_CONTENTIONS, M_COUNT);
  mprof__pb_int64(&w->out, PROFILE_PERIOD, (int64_t)prof->period);
  mprof__pb_int64(&w->out, PROFILE_COMMENT, M_COMMENT);
}

static void write_mutex_samples(writer_t* w, const mprof_mutex_profile_t* prof) {
  for (size_t r = 0; r < prof->nrecs && w->err == 0; r++) {
    const mprof_mutex_rec_t* rec = &prof->recs[r];
    size_t sample = mprof__pb_begin(&w->out, PROFILE_SAMPLE);
    if (!write_stack(w, rec->pcs, rec->npcs)) return;
    const int64_t values[2] = {rec->contentions, rec->delay_ns};
    mprof__pb_packed_int64(&w->out, SAMPLE_VALUE, values, 2);
    mprof__pb_end(&w->out, sample);
    maybe_pump(w);
  }
}

static int check_mutex_profile(const mprof_mutex_profile_t* prof) {
  if (prof == NULL || (prof->recs == NULL && prof->nrecs > 0)) return EINVAL;
  for (size_t i = 0; i < prof->nrecs; i++) {
    if (prof->recs[i].pcs == NULL && prof->recs[i].npcs > 0) return EINVAL;
  }
  return 0;
}

/* The thread snapshot: sample types threads/count (the default), inuse_space/bytes and
 * alloc_space/bytes; one sample per thread with the labels thread, state and tid. */
static void write_threads_header(writer_t* w, const mprof_threads_profile_t* prof) {
  write_value_type(w, PROFILE_SAMPLE_TYPE, T_THREADS, T_COUNT);
  write_value_type(w, PROFILE_SAMPLE_TYPE, T_INUSE_SPACE, T_BYTES);
  write_value_type(w, PROFILE_SAMPLE_TYPE, T_ALLOC_SPACE, T_BYTES);
  write_new_strings(w);
  if (prof->time_nanos != 0) mprof__pb_int64(&w->out, PROFILE_TIME_NANOS, prof->time_nanos);
  write_value_type(w, PROFILE_PERIOD_TYPE, T_THREADS, T_COUNT);
  mprof__pb_int64(&w->out, PROFILE_PERIOD, 1);
  mprof__pb_int64(&w->out, PROFILE_COMMENT, T_COMMENT);
  for (size_t i = 0; i < w->ncomments; i++)
    mprof__pb_int64(&w->out, PROFILE_COMMENT, w->comment_ids[i]);
  mprof__pb_int64(&w->out, PROFILE_DEFAULT_SAMPLE_TYPE, T_THREADS);
}

static void write_str_label(writer_t* w, int64_t key, const char* value) {
  int64_t str = intern(w, value != NULL ? value : "");
  if (str < 0) {
    w->err = ENOMEM;
    return;
  }
  size_t label = mprof__pb_begin(&w->out, SAMPLE_LABEL);
  mprof__pb_int64(&w->out, LABEL_KEY, key);
  mprof__pb_int64(&w->out, LABEL_STR, str);
  mprof__pb_end(&w->out, label);
}

static void write_threads_samples(writer_t* w, const mprof_threads_profile_t* prof) {
  for (size_t r = 0; r < prof->nrecs && w->err == 0; r++) {
    const mprof_thread_rec_t* rec = &prof->recs[r];
    size_t sample = mprof__pb_begin(&w->out, PROFILE_SAMPLE);
    if (!write_stack(w, rec->pcs, rec->npcs)) return;
    const int64_t values[3] = {1, rec->inuse_bytes, rec->alloc_bytes};
    mprof__pb_packed_int64(&w->out, SAMPLE_VALUE, values, 3);
    write_str_label(w, T_THREAD, rec->name);
    write_str_label(w, T_STATE, rec->state);
    size_t label = mprof__pb_begin(&w->out, SAMPLE_LABEL);
    mprof__pb_int64(&w->out, LABEL_KEY, T_TID);
    mprof__pb_int64(&w->out, LABEL_NUM, rec->tid);
    mprof__pb_end(&w->out, label);
    mprof__pb_end(&w->out, sample);
    maybe_pump(w);
  }
}

static int check_threads_profile(const mprof_threads_profile_t* prof) {
  if (prof == NULL || (prof->recs == NULL && prof->nrecs > 0)) return EINVAL;
  for (size_t i = 0; prof->comments != NULL && i < prof->ncomments; i++) {
    if (prof->comments[i] == NULL) return EINVAL;
  }
  for (size_t i = 0; i < prof->nrecs; i++) {
    if (prof->recs[i].pcs == NULL && prof->recs[i].npcs > 0) return EINVAL;
  }
  return 0;
}

/* One profile of any kind: exactly one of heap, mutex and threads is not NULL. */
static int write_profile(int fd, const mprof_heap_profile_t* heap,
                         const mprof_mutex_profile_t* mutex, const mprof_maps_t* maps,
                         const mprof_threads_profile_t* threads) {
  int saved_errno = errno;
  writer_t w;
  memset(&w, 0, sizeof w);
  w.fd = fd;
  w.maps = maps;
  w.fixed = heap != NULL      ? fixed_strings
            : threads != NULL ? threads_fixed_strings
                              : mutex_fixed_strings;
  w.nfixed = heap != NULL ? S_NFIXED : threads != NULL ? T_NFIXED : M_NFIXED;
  mprof__pb_init(&w.out);

  w.err = maps == NULL      ? EINVAL
          : heap != NULL    ? check_profile(heap)
          : threads != NULL ? check_threads_profile(threads)
                            : check_mutex_profile(mutex);
  if (w.err == 0 && heap != NULL) { /* the contention profile has no comments of its own */
    w.comments = heap->comments;
    w.ncomments = heap->comments == NULL ? 0 : heap->ncomments;
    if (w.ncomments > MAX_COMMENTS) w.ncomments = MAX_COMMENTS;
  } else if (w.err == 0 && threads != NULL) {
    w.comments = threads->comments;
    w.ncomments = threads->comments == NULL ? 0 : threads->ncomments;
    if (w.ncomments > MAX_COMMENTS) w.ncomments = MAX_COMMENTS;
  }
  if (w.err != 0 || (w.err = prepare(&w)) != 0) goto out;
  w.zout = mprof__meta_alloc(ZOUT_SIZE);
  if (w.zout == NULL) {
    w.err = ENOMEM;
    goto out;
  }
  w.z.zalloc = z_alloc;
  w.z.zfree = z_free;
  w.z.opaque = Z_NULL;
  /* windowBits 15 + 16: a gzip wrapper around a 32 KiB-window deflate stream. */
  int zret = deflateInit2(&w.z, MPROF_PPROF_GZIP_LEVEL, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
  if (zret != Z_OK) {
    w.err = zret == Z_MEM_ERROR ? ENOMEM : EINVAL;
    goto out;
  }
  w.z_open = true;

  if (heap != NULL)
    write_header(&w, heap);
  else if (threads != NULL)
    write_threads_header(&w, threads);
  else
    write_mutex_header(&w, mutex);
  write_mappings(&w);
  if (heap != NULL)
    write_samples(&w, heap);
  else if (threads != NULL)
    write_threads_samples(&w, threads);
  else
    write_mutex_samples(&w, mutex);
  if (w.err == 0) symbolize(&w);
  write_locations(&w);
  if (w.err == 0) write_functions(&w);
  if (w.err == 0) write_new_strings(&w);
  pump(&w, true);

out:
  close_symtabs(&w);
  if (w.z_open) deflateEnd(&w.z);
  if (w.zout != NULL) mprof__meta_free(w.zout, ZOUT_SIZE);
  mprof__pb_free(&w.out);
  if (w.strs != NULL) mprof__meta_free(w.strs, w.strs_cap * sizeof *w.strs);
  if (w.str_slots != NULL) mprof__meta_free(w.str_slots, w.str_slots_cap * sizeof *w.str_slots);
  if (w.locs != NULL) mprof__meta_free(w.locs, w.locs_cap * sizeof *w.locs);
  if (w.map_ids != NULL) mprof__meta_free(w.map_ids, maps->n * sizeof *w.map_ids);
  if (w.map_names != NULL) mprof__meta_free(w.map_names, 2 * maps->n * sizeof *w.map_names);
  errno = saved_errno;
  return w.err;
}

int mprof__pprof_write_heap_maps(int fd, const mprof_heap_profile_t* prof,
                                 const mprof_maps_t* maps) {
  if (prof == NULL) return EINVAL;
  return write_profile(fd, prof, NULL, maps, NULL);
}

int mprof__pprof_write_mutex_maps(int fd, const mprof_mutex_profile_t* prof,
                                  const mprof_maps_t* maps) {
  if (prof == NULL) return EINVAL;
  return write_profile(fd, NULL, prof, maps, NULL);
}

static int write_with_maps(int fd, const mprof_heap_profile_t* heap,
                           const mprof_mutex_profile_t* mutex,
                           const mprof_threads_profile_t* threads) {
  int saved_errno = errno;
  mprof_maps_t maps = MPROF_MAPS_INIT;
  int err = mprof__maps_read(&maps);
  if (err == 0) {
    err = write_profile(fd, heap, mutex, &maps, threads);
    mprof__maps_free(&maps);
  }
  errno = saved_errno;
  return err;
}

int mprof__pprof_write_heap(int fd, const mprof_heap_profile_t* prof) {
  if (prof == NULL) return EINVAL;
  return write_with_maps(fd, prof, NULL, NULL);
}

int mprof__pprof_write_mutex(int fd, const mprof_mutex_profile_t* prof) {
  if (prof == NULL) return EINVAL;
  return write_with_maps(fd, NULL, prof, NULL);
}

int mprof__pprof_write_threads(int fd, const mprof_threads_profile_t* prof) {
  if (prof == NULL) return EINVAL;
  return write_with_maps(fd, NULL, NULL, prof);
}

int mprof__pprof_write_threads_maps(int fd, const mprof_threads_profile_t* prof,
                                    const mprof_maps_t* maps) {
  if (prof == NULL) return EINVAL;
  return write_profile(fd, NULL, NULL, maps, prof);
}
