/* The pprof reader (tools/mprof_read.c) and the reports built on it (tools/mprof_report.c),
 * against what the core's writer (plugin/mprof_pprof.c) writes and against hand-encoded
 * messages, valid and broken. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <link.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "mprof_dwarf.h"
#include "mprof_maps.h"
#include "mprof_pb.h"
#include "mprof_pprof.h"
#include "mprof_read.h"
#include "mprof_report.h"

#if defined(__clang__)
#define TEST_FN static __attribute__((noinline, used))
#else
#define TEST_FN static __attribute__((noinline, noclone, used))
#endif
#define PC_OFFSET 16
#define PC(fn) ((uintptr_t) & (fn) + PC_OFFSET)

static volatile unsigned sink;

enum { LEAF_LINE = __LINE__ }; /* the function starts on the next line */
TEST_FN void read_test_leaf_site(unsigned n) {
  for (unsigned i = 0; i < n; i++)
    sink += i * 3u + 1u;
  sink ^= 0x1111u;
  sink += n * 7u;
}

TEST_FN void read_test_other_site(unsigned n) {
  for (unsigned i = 0; i < n; i++)
    sink -= i * 5u + 2u;
  sink ^= 0x2222u;
  sink += n * 11u;
}

TEST_FN void read_test_caller(unsigned n) {
  read_test_leaf_site(n);
  read_test_other_site(n + 1);
  sink ^= 0x3333u;
}

/* Writes a profile with the core's writer to a temporary file and reads it back. */
static char tmp_path[64];

static int write_with_core(const mprof_heap_profile_t* prof) {
  snprintf(tmp_path, sizeof tmp_path, "/tmp/mprof-test-read.XXXXXX");
  int fd = mkstemp(tmp_path);
  assert_true(fd >= 0);
  int err = mprof__pprof_write_heap(fd, prof);
  close(fd);
  return err;
}

static uintptr_t stack_a[2], stack_b[2];
static mprof_heap_rec_t recs[2];
static const char* comments[] = {"mprof.allocator=test 1.0", "mprof.estimated_inuse_bytes=4096",
                                 "mprof.allocator_committed_bytes=65536",
                                 "mprof.process_rss_bytes=1048576"};

static void core_profile(mprof_heap_profile_t* prof) {
  stack_a[0] = PC(read_test_leaf_site);
  stack_a[1] = PC(read_test_caller);
  stack_b[0] = PC(read_test_other_site);
  stack_b[1] = PC(read_test_caller);
  recs[0] = (mprof_heap_rec_t){stack_a, 2, 10, 40960, 1, 4096, 0, 0, 0, 0, NULL};
  recs[1] = (mprof_heap_rec_t){stack_b, 2, 3, 3000, 0, 0, 0, 0, 0, 0, NULL};
  *prof = (mprof_heap_profile_t){recs, 2, 524288, 1700000000000000000, comments, 4};
}

static void test_reads_what_the_core_writes(void** state) {
  (void)state;
  mprof_heap_profile_t prof;
  core_profile(&prof);
  assert_int_equal(write_with_core(&prof), 0);
  mprof_rd_profile_t p;
  char err[256];
  assert_int_equal(mprof__rd_file(tmp_path, &p, err, sizeof err), 0);
  unlink(tmp_path);
  assert_int_equal(p.nsample_types, 4);
  assert_int_equal(mprof__rd_sample_index(&p, "alloc_objects"), 0);
  assert_int_equal(mprof__rd_sample_index(&p, "inuse_space"), 3);
  assert_int_equal(mprof__rd_sample_index(&p, "cpu"), -1);
  assert_string_equal(mprof__rd_str(&p, p.default_sample_type), "inuse_space");
  assert_int_equal(p.period, 524288);
  assert_string_equal(mprof__rd_str(&p, p.period_type.type), "space");
  assert_int_equal(p.time_nanos, 1700000000000000000);
  assert_int_equal(p.nsamples, 2);
  assert_int_equal(p.samples[0].values[1], 40960);
  assert_int_equal(p.samples[0].values[3], 4096);
  assert_int_equal(p.samples[1].values[0], 3);
  /* Leaf first, at the call address (pc - 1). */
  assert_int_equal(p.samples[0].nlocs, 2);
  assert_int_equal(p.locations[p.samples[0].locs[0]].address, stack_a[0] - 1);
  assert_int_equal(p.locations[p.samples[0].locs[1]].address, stack_a[1] - 1);
  assert_int_equal(p.samples[0].locs[1], p.samples[1].locs[1]); /* shared caller location */
  assert_int_equal(p.ncomments, 5);
  assert_string_equal(mprof__rd_str(&p, p.comments[0]), "mprof heap profile");
  assert_string_equal(mprof__rd_str(&p, p.comments[2]), comments[1]);
  assert_string_equal(mprof__rd_str(&p, p.drop_frames), MPROF_PPROF_DROP_FRAMES);
  const mprof_rd_location_t* l = &p.locations[p.samples[0].locs[0]];
  assert_int_not_equal(l->mapping, SIZE_MAX);
  assert_int_equal(l->nlines, 1);
  assert_string_equal(mprof__rd_str(&p, p.functions[l->lines[0].func].name), "read_test_leaf_site");

  mprof_stacks_t s;
  assert_int_equal(mprof__stacks_build(&p, &s, NULL), 0);
  assert_int_equal(s.n, 2);
  assert_string_equal(s.stacks[0].frames[0].func, "read_test_leaf_site");
  assert_string_equal(s.stacks[0].frames[1].func, "read_test_caller");
  assert_int_equal(mprof__total(&s, MPROF_INUSE), 4096);
  assert_int_equal(mprof__total(&s, MPROF_ALLOC), 43960);
  assert_int_equal(mprof__sites_over(&s, MPROF_INUSE, 0), 1);
  assert_int_equal(mprof__sites_over(&s, MPROF_INUSE, 4096), 0);
  mprof__stacks_free(&s);
  mprof__rd_free(&p);
}

/* Reports to a memory buffer. */
static char* report(void (*fn)(FILE*, void*), void* arg) {
  char* buf = NULL;
  size_t len = 0;
  FILE* f = open_memstream(&buf, &len);
  assert_non_null(f);
  fn(f, arg);
  fclose(f);
  return buf;
}

static void top_inuse(FILE* f, void* arg) {
  mprof_top_opts_t o = {MPROF_INUSE, 10, false, true, false, false};
  assert_int_equal(mprof__print_top(f, arg, &o), 0);
}

static void recon(FILE* f, void* arg) {
  mprof__print_recon(f, arg, true);
}

static void test_top_and_reconciliation_read_the_core_profile(void** state) {
  (void)state;
  mprof_heap_profile_t prof;
  core_profile(&prof);
  assert_int_equal(write_with_core(&prof), 0);
  mprof_rd_profile_t p;
  char err[256];
  assert_int_equal(mprof__rd_file(tmp_path, &p, err, sizeof err), 0);
  unlink(tmp_path);
  mprof_stacks_t s;
  assert_int_equal(mprof__stacks_build(&p, &s, NULL), 0);
  char* t = report(top_inuse, &s);
  assert_non_null(strstr(t, "in use: 4096 B in 1 objects"));
  assert_non_null(strstr(t, "read_test_leaf_site"));
  assert_null(strstr(t, "read_test_other_site")); /* nothing of it in use */
  free(t);
  char* r = report(recon, &p);
  assert_non_null(strstr(r, "reconciliation (test 1.0):"));
  assert_non_null(strstr(r, "estimated in use (samples)"));
  assert_non_null(strstr(r, "65536 B"));
  assert_non_null(strstr(r, "+61440 B"));  /* committed - estimated */
  assert_non_null(strstr(r, "+983040 B")); /* RSS - committed */
  free(r);
  mprof__stacks_free(&s);
  mprof__rd_free(&p);
}

/* With jemalloc's figures (the glue of libmprof-jemalloc.so) the block names its differences. */
static void test_reconciliation_with_jemalloc_figures(void** state) {
  (void)state;
  const char* jc[] = {"mprof.allocator=jemalloc 5.3.0",       "mprof.estimated_inuse_bytes=4096",
                      "mprof.allocator_allocated_bytes=5000", "mprof.allocator_active_bytes=8192",
                      "mprof.allocator_resident_bytes=65536", "mprof.process_rss_bytes=1048576"};
  mprof_heap_profile_t prof;
  core_profile(&prof);
  prof.comments = jc;
  prof.ncomments = 6;
  assert_int_equal(write_with_core(&prof), 0);
  mprof_rd_profile_t p;
  char err[256];
  assert_int_equal(mprof__rd_file(tmp_path, &p, err, sizeof err), 0);
  unlink(tmp_path);
  char* r = report(recon, &p);
  assert_non_null(strstr(r, "reconciliation (jemalloc 5.3.0):"));
  assert_non_null(strstr(r, "allocated - estimated"));
  assert_non_null(strstr(r, "+904 B"));    /* allocated - estimated */
  assert_non_null(strstr(r, "+3192 B"));   /* active - allocated */
  assert_non_null(strstr(r, "+57344 B"));  /* resident - active */
  assert_non_null(strstr(r, "+983040 B")); /* RSS - resident */
  assert_null(strstr(r, "committed"));
  free(r);
  mprof__rd_free(&p);
}

/* ---------------------------------------------------------------------------------------------
 * Hand-encoded messages
 * ------------------------------------------------------------------------------------------- */
static void value_type(mprof_pb_buf_t* b, uint32_t field, int64_t type, int64_t unit) {
  size_t t = mprof__pb_begin(b, field);
  mprof__pb_int64(b, 1, type);
  mprof__pb_int64(b, 2, unit);
  mprof__pb_end(b, t);
}

/* A minimal valid profile: one sample type (strings 1, 2), one sample at location 7 whose one
 * line names function 3 ("_Znwm" then "main_site"), unpacked ids, drop_frames. `breakage`
 * selects one defect. */
enum { OK, BAD_STRING, MISSING_LOCATION, TWO_VALUES, ZERO_ID, NO_EMPTY_STRING, MISSING_FUNCTION };

static void encode(mprof_pb_buf_t* b, int breakage) {
  mprof__pb_init(b);
  value_type(b, 1, 1, 2);
  size_t s = mprof__pb_begin(b, 2);
  mprof__pb_uint64(b, 1, breakage == MISSING_LOCATION ? 8 : 7); /* unpacked location id */
  mprof__pb_uint64(b, 1, 9);
  mprof__pb_int64(b, 2, 1234);
  if (breakage == TWO_VALUES) mprof__pb_int64(b, 2, 5);
  mprof__pb_end(b, s);
  size_t l = mprof__pb_begin(b, 4);
  mprof__pb_uint64(b, 1, breakage == ZERO_ID ? 0 : 7);
  mprof__pb_uint64(b, 3, 0x1000);
  size_t ln = mprof__pb_begin(b, 4);
  mprof__pb_uint64(b, 1, 3);
  mprof__pb_int64(b, 2, 42);
  mprof__pb_end(b, ln);
  ln = mprof__pb_begin(b, 4); /* an inlined caller */
  mprof__pb_uint64(b, 1, breakage == MISSING_FUNCTION ? 99 : 4);
  mprof__pb_int64(b, 2, 7);
  mprof__pb_end(b, ln);
  mprof__pb_end(b, l);
  l = mprof__pb_begin(b, 4);
  mprof__pb_uint64(b, 1, 9);
  mprof__pb_uint64(b, 3, 0x2000);
  mprof__pb_end(b, l);
  size_t f = mprof__pb_begin(b, 5);
  mprof__pb_uint64(b, 1, 3);
  mprof__pb_int64(b, 2, 3);
  mprof__pb_int64(b, 4, 5);
  mprof__pb_end(b, f);
  f = mprof__pb_begin(b, 5);
  mprof__pb_uint64(b, 1, 4);
  mprof__pb_int64(b, 2, breakage == BAD_STRING ? 77 : 4);
  mprof__pb_int64(b, 4, 5);
  mprof__pb_end(b, f);
  const char* strs[] = {"",          "inuse_space", "bytes",       "_Znwm",
                        "main_site", "src/app.c",   "operator new"};
  for (size_t i = breakage == NO_EMPTY_STRING ? 1 : 0; i < 7; i++)
    mprof__pb_string(b, 6, strs[i]);
  mprof__pb_int64(b, 7, 6);
  assert_false(b->failed);
}

static int parse(const uint8_t* d, size_t n, mprof_rd_profile_t* p, char* err) {
  return mprof__rd_parse(d, n, p, err, 256);
}

static void test_hand_encoded_profile_reads_with_inlined_lines_and_drop_frames(void** state) {
  (void)state;
  mprof_pb_buf_t b;
  encode(&b, OK);
  mprof_rd_profile_t p;
  char err[256];
  assert_int_equal(parse(b.data, b.len, &p, err), 0);
  assert_int_equal(p.nsamples, 1);
  assert_int_equal(p.samples[0].nlocs, 2);
  assert_int_equal(p.locations[p.samples[0].locs[0]].nlines, 2);
  mprof_stacks_t s;
  assert_int_equal(mprof__stacks_build(&p, &s, NULL), 0);
  /* "_Znwm" demangles to "operator new", which drop_frames removes from the leaf end. */
  assert_int_equal(s.stacks[0].n, 2);
  assert_string_equal(s.stacks[0].frames[0].func, "main_site");
  assert_string_equal(s.stacks[0].frames[0].file, "src/app.c");
  assert_int_equal(s.stacks[0].frames[0].line, 7);
  assert_string_equal(s.stacks[0].frames[1].func, "0x2000"); /* no line, no mapping */
  mprof__stacks_free(&s);
  mprof__rd_free(&p);

  /* The same bytes gzipped read the same. */
  uLongf zlen = compressBound((uLong)b.len) + 32;
  uint8_t* z = malloc(zlen);
  z_stream zs;
  memset(&zs, 0, sizeof zs);
  assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
  zs.next_in = b.data;
  zs.avail_in = (uInt)b.len;
  zs.next_out = z;
  zs.avail_out = (uInt)zlen;
  assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
  size_t n = zlen - zs.avail_out;
  deflateEnd(&zs);
  assert_int_equal(parse(z, n, &p, err), 0);
  assert_int_equal(p.samples[0].values[0], 1234);
  mprof__rd_free(&p);
  /* Cut short: one clear reason. */
  assert_int_equal(parse(z, n - 12, &p, err), EINVAL);
  assert_string_equal(err, "truncated gzip data");
  free(z);
  mprof__pb_free(&b);
}

static void test_defects_are_rejected_with_one_reason(void** state) {
  (void)state;
  struct {
    int breakage;
    const char* reason;
  } cases[] = {
      {BAD_STRING, "function names a missing string"},
      {MISSING_LOCATION, "names a missing location"},
      {TWO_VALUES, "has 2 values for 1 sample types"},
      {ZERO_ID, "location id 0 zero or repeated"},
      {NO_EMPTY_STRING, "not starting with \"\""},
      {MISSING_FUNCTION, "names a missing function"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    mprof_pb_buf_t b;
    encode(&b, cases[i].breakage);
    mprof_rd_profile_t p;
    char err[256];
    assert_int_equal(parse(b.data, b.len, &p, err), EINVAL);
    assert_non_null(strstr(err, cases[i].reason));
    assert_int_equal(p.nsamples, 0); /* left empty */
    mprof__pb_free(&b);
  }
}

static void test_truncated_and_malformed_bytes_are_rejected(void** state) {
  (void)state;
  mprof_pb_buf_t b;
  encode(&b, OK);
  mprof_rd_profile_t p;
  char err[256];
  for (size_t n = 1; n < b.len; n++) {
    int e = parse(b.data, n, &p, err);
    if (e == 0)
      mprof__rd_free(&p); /* a prefix can be a whole, smaller message */
    else
      assert_non_null(strstr(err, "not a pprof profile"));
  }
  const uint8_t long_varint[] = {0x60, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
  assert_int_equal(parse(long_varint, sizeof long_varint, &p, err), EINVAL);
  assert_non_null(strstr(err, "varint too long"));
  const uint8_t group[] = {0x0b};
  assert_int_equal(parse(group, sizeof group, &p, err), EINVAL);
  const uint8_t huge_len[] = {0x12, 0xff, 0xff, 0xff, 0xff, 0x0f};
  assert_int_equal(parse(huge_len, sizeof huge_len, &p, err), EINVAL);
  assert_non_null(strstr(err, "past the end"));
  assert_int_equal(parse((const uint8_t*)"", 0, &p, err), EINVAL);
  const uint8_t gz_header_only[] = {0x1f, 0x8b};
  assert_int_equal(parse(gz_header_only, sizeof gz_header_only, &p, err), EINVAL);
  mprof__pb_free(&b);
}

static void test_missing_file_gives_the_errno(void** state) {
  (void)state;
  mprof_rd_profile_t p;
  char err[256];
  assert_int_equal(mprof__rd_file("/nonexistent/x.pb.gz", &p, err, sizeof err), ENOENT);
  assert_string_equal(err, "cannot open: No such file or directory");
}

static void test_names_are_demangled_and_simplified(void** state) {
  (void)state;
  /* Encode functions with C++ names and read them through the stacks. */
  const char* raw[] = {"_ZNSt6vectorIiSaIiEE9push_backERKi", "ns::Foo<int>::bar(int) const",
                       "(anonymous namespace)::helper(char*)"};
  const char* want[] = {"std::vector::push_back", "ns::Foo::bar", "(anonymous namespace)::helper"};
  for (size_t i = 0; i < 3; i++) {
    mprof_pb_buf_t b;
    mprof__pb_init(&b);
    value_type(&b, 1, 1, 2);
    size_t s = mprof__pb_begin(&b, 2);
    mprof__pb_uint64(&b, 1, 1);
    mprof__pb_int64(&b, 2, 1);
    mprof__pb_end(&b, s);
    size_t l = mprof__pb_begin(&b, 4);
    mprof__pb_uint64(&b, 1, 1);
    size_t ln = mprof__pb_begin(&b, 4);
    mprof__pb_uint64(&b, 1, 1);
    mprof__pb_end(&b, ln);
    mprof__pb_end(&b, l);
    size_t f = mprof__pb_begin(&b, 5);
    mprof__pb_uint64(&b, 1, 1);
    mprof__pb_int64(&b, 2, 3);
    mprof__pb_end(&b, f);
    mprof__pb_string(&b, 6, "");
    mprof__pb_string(&b, 6, "inuse_space");
    mprof__pb_string(&b, 6, "bytes");
    mprof__pb_string(&b, 6, raw[i]);
    mprof_rd_profile_t p;
    char err[256];
    assert_int_equal(parse(b.data, b.len, &p, err), 0);
    mprof_stacks_t st;
    assert_int_equal(mprof__stacks_build(&p, &st, NULL), 0);
    assert_string_equal(st.stacks[0].frames[0].func, want[i]);
    mprof__stacks_free(&st);
    mprof__rd_free(&p);
    mprof__pb_free(&b);
  }
}

/* Returns the address it returns to: inside whatever called it, inlined or not. */
TEST_FN uintptr_t read_test_return_address(void) {
  uintptr_t r = (uintptr_t)__builtin_return_address(0);
  __asm__ volatile("" ::: "memory");
  return r;
}

enum { INLINE_LINE = __LINE__ + 3 }; /* the call below */
static inline __attribute__((always_inline)) uintptr_t read_test_inlined(void) {
  sink += 5u;
  uintptr_t r = read_test_return_address();
  sink += 7u;
  return r;
}

enum { OUTER_LINE = __LINE__ + 3 }; /* the line that calls read_test_inlined */
TEST_FN uintptr_t read_test_outer(void) {
  sink += 1u;
  uintptr_t r = read_test_inlined();
  sink += 2u;
  return r;
}

/* The file offset of a runtime address of this program. */
static int offset_cb(struct dl_phdr_info* info, size_t size, void* data) {
  (void)size;
  uintptr_t* io = data;
  uintptr_t vaddr = io[0] - info->dlpi_addr;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr)* ph = &info->dlpi_phdr[i];
    if (ph->p_type == PT_LOAD && vaddr >= ph->p_vaddr && vaddr - ph->p_vaddr < ph->p_filesz) {
      io[1] = ph->p_offset + (vaddr - ph->p_vaddr);
      return 1;
    }
  }
  return 1; /* the first object is the program */
}

static uint64_t file_offset(uintptr_t addr) {
  uintptr_t io[2] = {addr, UINTPTR_MAX};
  dl_iterate_phdr(offset_cb, io);
  assert_true(io[1] != UINTPTR_MAX);
  return io[1];
}

/* Debug information of this test program (built with -g, optimized): the address just inside
 * read_test_leaf_site is on a line of this file, between the function's first line and the
 * next function's; the return address inside the always-inlined read_test_inlined gives two
 * frames, the inlined function at its line and read_test_outer at the line of the call. */
static void test_dwarf_frames_of_this_program(void** state) {
  (void)state;
  mprof_dw_t* d;
  assert_int_equal(mprof__dw_open("/proc/self/exe", "", &d), 0);
  mprof_dw_frame_t f[MPROF_DW_MAX_FRAMES];
  int dw = 0;
  size_t n = mprof__dw_frames(d, file_offset(PC(read_test_leaf_site)), f, MPROF_DW_MAX_FRAMES, &dw);
  if (!dw) skip(); /* built without debug information */
  assert_int_equal(n, 1);
  assert_string_equal(f[0].func, "read_test_leaf_site");
  assert_non_null(strstr(f[0].file, "test_read.c"));
  assert_in_range(f[0].line, LEAF_LINE + 1, LEAF_LINE + 6);

  n = mprof__dw_frames(d, file_offset(read_test_outer() - 1), f, MPROF_DW_MAX_FRAMES, &dw);
  assert_int_equal(n, 2);
  assert_string_equal(f[0].func, "read_test_inlined");
  assert_int_equal(f[0].line, INLINE_LINE);
  assert_string_equal(f[1].func, "read_test_outer");
  assert_int_equal(f[1].line, OUTER_LINE);
  assert_non_null(strstr(f[1].file, "test_read.c"));
  /* Outside every segment: nothing. */
  assert_int_equal(mprof__dw_frames(d, (uint64_t)1 << 40, f, MPROF_DW_MAX_FRAMES, &dw), 0);
  mprof__dw_close(d);
  /* Not ELF: refused, no fault. */
  assert_int_equal(mprof__dw_open_mem((const uint8_t*)"not an elf file at all, really not", 34, &d),
                   EINVAL);
  /* Another build id than the file's: refused. */
  assert_int_equal(mprof__dw_open("/proc/self/exe", "00112233445566778899aabbccddeeff00112233", &d),
                   EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reads_what_the_core_writes),
      cmocka_unit_test(test_top_and_reconciliation_read_the_core_profile),
      cmocka_unit_test(test_reconciliation_with_jemalloc_figures),
      cmocka_unit_test(test_hand_encoded_profile_reads_with_inlined_lines_and_drop_frames),
      cmocka_unit_test(test_defects_are_rejected_with_one_reason),
      cmocka_unit_test(test_truncated_and_malformed_bytes_are_rejected),
      cmocka_unit_test(test_missing_file_gives_the_errno),
      cmocka_unit_test(test_names_are_demangled_and_simplified),
      cmocka_unit_test(test_dwarf_frames_of_this_program),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
