/* libFuzzer harness for the pprof reader (tools/mprof_read.c) and the reports built on it
 * (tools/mprof_report.c, tools/mprof_flame.c).
 *
 * Checks, for any input: the reader returns 0 or EINVAL/ENOMEM/EFBIG with a one-line printable
 * reason; a profile it accepts has consistent indices (every sample names existing locations and
 * has one value per sample type, every line an existing function, every string index is in the
 * table); reading is deterministic; and symbolizing, the tables, the diff, the reconciliation
 * and the flame graph run on it without fault, and writing it symbolized gives a profile the
 * reader accepts again. An input that starts as an ELF object goes to the symbolizer instead
 * (tools/mprof_dwarf.c over elfutils' libdwfl): frames of addresses across its segments. Built by
 * tests/reliability/CMakeLists.txt:
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Iplugin -Itools \
 *     tools/mprof_read.c tools/mprof_report.c tools/mprof_flame.c tools/mprof_dwarf.c \
 *     tools/mprof_write.c plugin/mprof_pb.c plugin/mprof_meta.c plugin/mprof_lock.c \
 *     tests/fuzz/fuzz_read.c -lz -ldw -lelf -lstdc++ -o /tmp/fuzz_read
 *   /tmp/fuzz_read -max_total_time=30 tests/fuzz/corpus/read */
#include "mprof_dwarf.h"
#include "mprof_read.h"
#include "mprof_report.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

static void check_reason(const char* err) {
  size_t len = strnlen(err, 256);
  if (len == 0 || len >= 256) __builtin_trap();
  for (size_t i = 0; i < len; i++)
    if (err[i] < 0x20 || err[i] > 0x7e) __builtin_trap();
}

static void check_profile(const mprof_rd_profile_t* p) {
  if (p->nstrings == 0 || p->strings[0][0] != '\0') __builtin_trap();
  for (size_t i = 0; i < p->nsamples; i++) {
    if (p->samples[i].values == NULL && p->nsample_types > 0) __builtin_trap();
    for (size_t j = 0; j < p->samples[i].nlocs; j++)
      if (p->samples[i].locs[j] >= p->nlocations) __builtin_trap();
  }
  for (size_t i = 0; i < p->nlocations; i++) {
    const mprof_rd_location_t* l = &p->locations[i];
    if (l->mapping != SIZE_MAX && l->mapping >= p->nmappings) __builtin_trap();
    for (size_t j = 0; j < l->nlines; j++)
      if (l->lines[j].func >= p->nfunctions) __builtin_trap();
  }
  for (size_t i = 0; i < p->ncomments; i++)
    if (p->comments[i] < 0 || (size_t)p->comments[i] >= p->nstrings) __builtin_trap();
}

/* An ELF object: the frames the reports would take from the files a profile's mappings name.
 * Every frame has a name and a file string, at most the frames asked for. */
static void check_dwarf(const uint8_t* data, size_t size) {
  mprof_dw_t* d;
  int e = mprof__dw_open_mem(data, size, &d);
  if (e != 0) return;
  for (uint64_t off = 0; off < size + 4096; off += 1 + size / 32) {
    mprof_dw_frame_t f[MPROF_DW_MAX_FRAMES];
    int dw;
    size_t n = mprof__dw_frames(d, off, f, MPROF_DW_MAX_FRAMES, &dw);
    if (n > MPROF_DW_MAX_FRAMES) __builtin_trap();
    for (size_t i = 0; i < n; i++)
      if (f[i].func == NULL || f[i].file == NULL || strlen(f[i].func) > size + 4096)
        __builtin_trap();
  }
  mprof__dw_close(d);
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size >= 4 && memcmp(data, "\177ELF", 4) == 0) {
    check_dwarf(data, size);
    return 0;
  }
  mprof_rd_profile_t p, q;
  char err[256], err2[256];
  int e = mprof__rd_parse(data, size, &p, err, sizeof err);
  int e2 = mprof__rd_parse(data, size, &q, err2, sizeof err2);
  if (e != e2) __builtin_trap();
  if (e != 0) {
    if (e != EINVAL && e != ENOMEM && e != EFBIG) __builtin_trap();
    check_reason(err);
    if (strcmp(err, err2) != 0) __builtin_trap();
    return 0;
  }
  if (p.nsamples != q.nsamples || p.nlocations != q.nlocations || p.nstrings != q.nstrings)
    __builtin_trap();
  mprof__rd_free(&q);
  check_profile(&p);

  mprof_stacks_t s;
  if (mprof__stacks_build(&p, &s, NULL) == 0) {
    FILE* out = fopen("/dev/null", "w");
    if (out != NULL) {
      mprof_metric_t ms[] = {MPROF_INUSE, MPROF_ALLOC, MPROF_INUSE_OBJECTS};
      for (size_t i = 0; i < 3; i++) {
        mprof_top_opts_t o = {ms[i], 5, i == 1, i == 2, false, i == 0};
        if (mprof__print_top(out, &s, &o) == 0 && ms[i] != MPROF_INUSE_OBJECTS)
          mprof__write_flame(out, &s, ms[i], "fuzz");
      }
      mprof_top_opts_t d = {MPROF_ALLOC, 5, false, false, false, false};
      mprof__print_diff(out, &s, &s, &d);
      mprof__print_recon(out, &p, true);
      (void)mprof__total(&s, MPROF_INUSE);
      (void)mprof__sites_over(&s, MPROF_INUSE, 0);
      fclose(out);
    }
    char path[64];
    snprintf(path, sizeof path, "/tmp/fuzz_read.%d.pb.gz", (int)getpid());
    if (mprof__write_symbolized(path, &s) == 0) {
      mprof_rd_profile_t r;
      if (mprof__rd_file(path, &r, err, sizeof err) != 0) __builtin_trap();
      if (r.nsamples != p.nsamples || r.nlocations != p.nlocations) __builtin_trap();
      mprof__rd_free(&r);
    }
    remove(path);
    mprof__stacks_free(&s);
  }
  mprof__rd_free(&p);
  return 0;
}
