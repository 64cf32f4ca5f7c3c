/* libFuzzer harness for the pprof reader (tools/mprof_read.c) and the reports built on it
 * (tools/mprof_report.c, tools/mprof_flame.c).
 *
 * Checks, for any input: the reader returns 0 or EINVAL/ENOMEM/EFBIG with a one-line printable
 * reason; a profile it accepts has consistent indices (every sample names existing locations and
 * has one value per sample type, every line an existing function, every string index is in the
 * table); reading is deterministic; and symbolizing, the tables, the diff, the reconciliation
 * and the flame graph run on it without fault. An input that starts as an ELF object goes to the
 * DWARF line-table reader instead. Built by tests/reliability/CMakeLists.txt:
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Iplugin -Itools \
 *     tools/mprof_read.c tools/mprof_report.c tools/mprof_flame.c tools/mprof_dwarf.c plugin/mprof_symtab.c \
 *     plugin/mprof_meta.c plugin/mprof_lock.c tests/fuzz/fuzz_read.c -lz -lstdc++ -o /tmp/fuzz_read
 *   /tmp/fuzz_read -max_total_time=30 tests/fuzz/corpus/read */
#include "mprof_dwarf.h"
#include "mprof_read.h"
#include "mprof_report.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

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

/* An ELF object: its DWARF line table (tools/mprof_dwarf.c), which the reports read from the
 * files a profile's mappings name. Rows must come out sorted, files in range. */
static void check_dwarf(const uint8_t* data, size_t size) {
  mprof_dwarf_lines_t l;
  int e = mprof__dwarf_load(data, size, &l);
  if (e != 0 && e != EINVAL && e != ENOMEM) __builtin_trap();
  if (e == ENOMEM) return;
  for (size_t i = 0; i < l.n; i++) {
    if (i > 0 && l.rows[i].addr < l.rows[i - 1].addr) __builtin_trap();
    if (l.rows[i].file != UINT32_MAX && l.rows[i].file >= l.nfiles) __builtin_trap();
  }
  for (size_t i = 0; i < l.n; i += 1 + l.n / 16) {
    const char* f;
    uint32_t line;
    if (mprof__dwarf_find(&l, l.rows[i].addr, &f, &line) && strlen(f) > size + 4096)
      __builtin_trap();
  }
  mprof__dwarf_free(&l);
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
  if (mprof__stacks_build(&p, &s) == 0) {
    FILE* out = fopen("/dev/null", "w");
    if (out != NULL) {
      mprof_metric_t ms[] = {MPROF_INUSE, MPROF_ALLOC, MPROF_INUSE_OBJECTS};
      for (size_t i = 0; i < 3; i++) {
        mprof_top_opts_t o = {ms[i], 5, i == 1, i == 2, false};
        if (mprof__print_top(out, &s, &o) == 0 && ms[i] != MPROF_INUSE_OBJECTS)
          mprof__write_flame(out, &s, ms[i], "fuzz");
      }
      mprof__print_diff(out, &s, &s, 5, false, false);
      mprof__print_recon(out, &p, true);
      (void)mprof__total(&s, MPROF_INUSE);
      (void)mprof__sites_over(&s, MPROF_INUSE, 0);
      fclose(out);
    }
    mprof__stacks_free(&s);
  }
  mprof__rd_free(&p);
  return 0;
}
