/* libFuzzer harness for the control interface, mprof_ctl (plugin/mprof_ctl.c), driven through
 * the whole core (started with mprof__init_with_opts, fed samples through its callbacks).
 *
 * An input is a small program of ctl calls. Each call takes 4 header bytes, then its name:
 *
 *   byte 0  flags: 1 pass oldp, 2 pass oldlenp, 4 pass newp, 8 raw name (else a known name),
 *           16 mangle the known name (drop its last byte / add a byte), 32 record a sample first
 *   byte 1  *oldlenp (0..63; the buffer at oldp is exactly that big, so ASan sees overruns)
 *   byte 2  newlen (0..63; the buffer at newp is exactly that big, filled from the input)
 *   byte 3  known-name index, or length of the raw name that follows
 *
 * A write to prof.dump of a pointer-sized value passes one of a few paths (NULL, "", a file in a
 * private directory, a missing directory, a path under a regular file, /dev/null, a too-long
 * path) instead of raw pointer bytes.
 *
 * Checked for every call: the result is 0 or a documented code; an unknown name is ENOENT; a
 * write to a read-only name is EPERM; a read with the right size succeeds (for names that cannot
 * fail) and one with a wrong size is EINVAL with the caller's size left alone; a string value is
 * a readable, NUL-terminated string; opt.* values never change; reading never writes beyond
 * *oldlenp bytes (ASan). Build and run (tests/reliability/CMakeLists.txt does the same when
 * clang's libFuzzer works):
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Iplugin -Iinclude \
 *     plugin/mprof_*.c tests/fuzz/fuzz_ctl.c -lunwind -lz -lm -lpthread -o /tmp/fuzz_ctl
 *   /tmp/fuzz_ctl -max_total_time=30 /tmp/new-units tests/fuzz/corpus/ctl */
#include "mprof.h"
#include "mprof_conf.h"
#include "mprof_core.h"
#include "mprof_hooks.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int* argc, char*** argv);
int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

typedef enum { RO, RW, WO } access_t;

typedef struct {
  const char* name;
  size_t size;     /* size of the value */
  access_t access; /* documented direction */
  bool is_string;  /* value is a const char* */
  bool may_fail;   /* the operation itself can fail (dump) */
} known_t;

/* The documented names (docs/OPTIONS.md). opt.* names are added from the descriptors. */
static known_t known[64] = {
    {"version", sizeof(const char*), RO, true, false},
    {"allocator", sizeof(const char*), RO, true, false},
    {"epoch", sizeof(uint64_t), RW, false, false},
    {"prof.dump", sizeof(const char*), WO, false, true},
    {"prof.peak.dump", sizeof(const char*), WO, false, true},
    {"prof.active", sizeof(bool), RW, false, false},
    {"prof.lg_sample", sizeof(size_t), RO, false, false},
    {"prof.interval", sizeof(uint64_t), RO, false, false},
    {"stats.samples", sizeof(uint64_t), RO, false, false},
    {"stats.frees", sizeof(uint64_t), RO, false, false},
    {"stats.dropped_samples", sizeof(uint64_t), RO, false, false},
    {"stats.buckets", sizeof(uint64_t), RO, false, false},
    {"stats.sampled_blocks", sizeof(uint64_t), RO, false, false},
    {"stats.sampled_bytes_in_use", sizeof(uint64_t), RO, false, false},
    {"stats.metadata_bytes", sizeof(uint64_t), RO, false, false},
    {"stats.dumps", sizeof(uint64_t), RO, false, false},
    {"stats.dump_errors", sizeof(uint64_t), RO, false, false},
    {"prof.mutex.dump", sizeof(const char*), WO, false, true},
    {"prof.mutex_fraction", sizeof(unsigned), RW, false, false},
    {"prof.mutex_app", sizeof(bool), RW, false, false},
    {"stats.contentions", sizeof(uint64_t), RO, false, false},
    {"stats.contentions_lost", sizeof(uint64_t), RO, false, false},
    {"stats.contention_buckets", sizeof(uint64_t), RO, false, false},
    {"prof.threads.dump", sizeof(const char*), WO, false, true},
    {"stats.threads.longest_pause_ns", sizeof(uint64_t), RO, false, false},
    {"stats.threads.snapshot_ns", sizeof(uint64_t), RO, false, false},
};
static size_t nknown = 26;
static char opt_names[32][64];
static unsigned char opt_first[32][64]; /* opt.* values read at start-up */

static const mprof_callbacks_t* cb;
static char dir[PATH_MAX];
static char paths[8][PATH_MAX + 64];
static uintptr_t next_ptr = 0x1000;

static size_t value_size(mprof_opt_type_t t) {
  switch (t) {
  case MPROF_OPT_BOOL:
    return sizeof(bool);
  case MPROF_OPT_SIZE:
    return sizeof(size_t);
  case MPROF_OPT_SSIZE:
    return sizeof(ssize_t);
  case MPROF_OPT_UNSIGNED:
    return sizeof(unsigned);
  case MPROF_OPT_STRING:
    return sizeof(const char*);
  }
  return 0;
}

static const known_t* find_known(const char* name) {
  for (size_t i = 0; i < nknown; i++)
    if (strcmp(known[i].name, name) == 0) return &known[i];
  return NULL;
}

int LLVMFuzzerInitialize(int* argc, char*** argv) {
  (void)argc;
  (void)argv;
  const char* tmp = getenv("TMPDIR");
  snprintf(dir, sizeof dir, "%s/mprof-fuzz-ctl.XXXXXX",
           tmp != NULL && tmp[0] == '/' ? tmp : "/tmp");
  if (mkdtemp(dir) == NULL) abort();
  mprof_opts_t o;
  mprof__opts_default(&o);
  o.lg_prof_sample = 0;
  o.prof_peak = true;
  snprintf(o.prof_prefix, sizeof o.prof_prefix, "%s/auto", dir);
  cb = mprof__init_with_opts(&o);
  if (cb == NULL) abort();
  for (size_t i = 0; i < mprof__opt_ndescs && nknown < 64 && i < 32; i++) {
    const mprof_opt_desc_t* d = &mprof__opt_descs[i];
    snprintf(opt_names[i], sizeof opt_names[i], "opt.%s", d->name);
    known[nknown++] =
        (known_t){opt_names[i], value_size(d->type), RO, d->type == MPROF_OPT_STRING, false};
    size_t len = value_size(d->type);
    if (mprof_ctl(opt_names[i], opt_first[i], &len, NULL, 0) != 0) abort();
  }
  /* Dump targets. A regular file stands in for a directory in one of them (ENOTDIR). */
  snprintf(paths[0], sizeof paths[0], "%s/out.pb.gz", dir);
  snprintf(paths[1], sizeof paths[1], "%s/missing/out.pb.gz", dir);
  snprintf(paths[2], sizeof paths[2], "%s/file", dir);
  FILE* f = fopen(paths[2], "w");
  if (f != NULL) fclose(f);
  snprintf(paths[2], sizeof paths[2], "%s/file/out.pb.gz", dir);
  snprintf(paths[3], sizeof paths[3], "/dev/null");
  memset(paths[4], 'a', PATH_MAX + 10);
  paths[4][0] = '/';
  paths[4][PATH_MAX + 10] = '\0';
  snprintf(paths[5], sizeof paths[5], "%s/%0300d", dir, 7); /* a component above NAME_MAX */
  /* Files accumulate in dir (automatic names): the caller removes TMPDIR when done. */
  return 0;
}

static void record_sample(size_t size) {
  mprof_sample_t rec;
  if (!mprof__sample_decide(size)) return;
  cb->on_alloc(&rec, (void*)next_ptr, size);
  next_ptr += 16;
  if ((size & 1) && rec.bucket != NULL) cb->on_free(&rec, (void*)(next_ptr - 16)); /* some die */
}

static bool allowed(int err, const known_t* k) {
  if (err == 0 || err == ENOENT || err == EINVAL || err == EPERM || err == EAGAIN || err == EFAULT)
    return true;
  return k != NULL && k->may_fail &&
         (err == ENOTDIR || err == ENAMETOOLONG || err == EACCES || err == ENOSPC || err == EROFS ||
          err == EISDIR || err == ECANCELED);
}

static void one_call(uint8_t flags, size_t oldlen_in, size_t newlen, const char* name,
                     const uint8_t* val, size_t nval) {
  const known_t* k = find_known(name);
  unsigned char* oldp = (flags & 1) ? malloc(oldlen_in ? oldlen_in : 1) : NULL;
  size_t oldlen = oldlen_in;
  size_t* oldlenp = (flags & 2) ? &oldlen : NULL;
  unsigned char* newp = (flags & 4) ? malloc(newlen ? newlen : 1) : NULL;
  if (newp != NULL) {
    for (size_t i = 0; i < newlen; i++)
      newp[i] = nval ? val[i % nval] : 0;
    if (k != NULL && strcmp(k->name + strlen(k->name) - 4, "dump") == 0 &&
        newlen == sizeof(char*)) {
      unsigned which = nval ? val[0] % 8 : 0;
      const char* p = which < 6 ? paths[which] : which == 6 ? "" : NULL;
      memcpy(newp, &p, sizeof p);
    }
  }
  if (oldp != NULL) memset(oldp, 0xa5, oldlen_in ? oldlen_in : 1);

  int err = mprof_ctl(name, oldp, oldlenp, newp, newlen);

  if (!allowed(err, k)) __builtin_trap();
  bool reading = oldp != NULL && oldlenp != NULL;
  bool writing = newp != NULL || newlen != 0;
  if (oldp != NULL && oldlenp == NULL) {
    if (err != EINVAL) __builtin_trap();
  } else if (k == NULL) {
    if (err != ENOENT) __builtin_trap(); /* prof:true, so every documented name exists */
  } else {
    if (oldlenp != NULL && oldlen != oldlen_in) __builtin_trap(); /* the size is never changed */
    if (k->access == RO && writing && err != EPERM) __builtin_trap();
    if (k->access == WO && reading && err != EPERM) __builtin_trap();
    if (k->access != WO && !writing && reading) {
      if (oldlen_in == k->size && err != 0) __builtin_trap();
      if (oldlen_in != k->size && err != EINVAL) __builtin_trap();
    }
    if (err == 0 && reading && k->is_string) {
      const char* s;
      memcpy(&s, oldp, sizeof s);
      if (s == NULL || strlen(s) > PATH_MAX) __builtin_trap();
    }
    if (err == 0 && reading && strncmp(name, "opt.", 4) == 0) {
      for (size_t i = 0; i < 32; i++)
        if (strcmp(opt_names[i], name) == 0 && memcmp(opt_first[i], oldp, k->size) != 0)
          __builtin_trap();
    }
  }
  free(oldp);
  free(newp);
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  size_t pos = 0;
  for (int calls = 0; calls < 16 && pos + 4 <= size; calls++) {
    uint8_t flags = data[pos], oldlen = data[pos + 1] % 64, newlen = data[pos + 2] % 64;
    uint8_t sel = data[pos + 3];
    pos += 4;
    char name[96];
    if (flags & 8) {
      size_t n = sel % 64;
      if (n > size - pos) n = size - pos;
      memcpy(name, data + pos, n);
      name[n] = '\0'; /* an embedded NUL just makes it shorter */
      pos += n;
    } else {
      snprintf(name, sizeof name, "%s", known[sel % nknown].name);
      if (flags & 16) {
        size_t n = strlen(name);
        if (sel & 0x80)
          name[n - 1] = '\0';
        else if (n + 1 < sizeof name) {
          name[n] = (char)(pos < size ? data[pos] : 'x');
          name[n + 1] = '\0';
        }
      }
    }
    if (flags & 32) record_sample(1 + sel);
    size_t nval = size - pos < 8 ? size - pos : 8;
    one_call(flags, oldlen, newlen, name, data + pos, nval);
    pos += nval;
  }
  return 0;
}
