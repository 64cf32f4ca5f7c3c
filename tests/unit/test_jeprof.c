/* Tests for the jeprof writer (plugin/mprof_jeprof.c): the pairs it writes come back, through
 * jeprof's own unbiasing, as the profile's unbiased figures; the text follows the heap_v2 grammar
 * jeprof parses; write errors are reported. */
#include "mprof_jeprof.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

/* What jeprof does with a heap_v2 pair (AdjustSamples, sampling algorithm 2). */
static double jeprof_unbias(int64_t n, int64_t s, uint64_t period, double* on, double* os) {
  *on = (double)n;
  *os = (double)s;
  double scale = 1.0;
  if (n != 0) {
    double ratio = ((double)s / (double)n) / (double)period;
    scale = 1.0 / (1.0 - exp(-ratio));
    *on *= scale;
    *os *= scale;
  }
  return scale; /* what one unit of a written figure stands for */
}

/* The unbiased figures of k samples of one size at one stack. */
static void figures(int k, double size, uint64_t period, int64_t* objs, int64_t* bytes) {
  double w = 1.0 / -expm1(-size / (double)period);
  *objs = llround(k * w);
  *bytes = llround(k * w * size);
}

static void test_one_size_comes_back_exactly(void** state) {
  (void)state;
  const uint64_t periods[] = {1, 4096, 16384, 524288};
  const double sizes[] = {1, 16, 100, 4096, 65536, 1 << 20, 64 << 20};
  for (size_t pi = 0; pi < 4; pi++) {
    for (size_t si = 0; si < 7; si++) {
      for (int k = 1; k <= 1000; k *= 7) {
        int64_t O, B, n, s;
        figures(k, sizes[si], periods[pi], &O, &B);
        mprof__jeprof_pair(O, B, periods[pi], &n, &s);
        assert_true(n >= 1);
        double on, os;
        double unit = jeprof_unbias(n, s, periods[pi], &on, &os);
        /* one size: bytes within the rounding of the written bytes (one unit) or 10^-4,
         * objects within the rounding of one sample */
        assert_true(fabs(os - (double)B) <= fmax(unit, 1e-4 * (double)B));
        assert_true(fabs(on - (double)O) <= fmax(1.0, unit));
      }
    }
  }
}

static void test_mixed_sizes_within_one_sample(void** state) {
  (void)state;
  const uint64_t period = 524288;
  /* A stack with samples of 16 B and of 8 KiB: jeprof's correction by the average size cannot
   * give both figures back exactly; each comes back within the rounding of one sample. */
  double w1 = 1.0 / -expm1(-16.0 / (double)period), w2 = 1.0 / -expm1(-8192.0 / (double)period);
  for (int a = 1; a <= 9; a += 4) {
    for (int b = 1; b <= 9; b += 4) {
      int64_t O = llround(a * w1 + b * w2), B = llround(a * w1 * 16 + b * w2 * 8192);
      int64_t n, s;
      mprof__jeprof_pair(O, B, period, &n, &s);
      double on, os;
      double unit = jeprof_unbias(n, s, period, &on, &os);
      double avg = (double)B / (double)O;
      assert_true(fabs(os - (double)B) <= 0.5 * unit * avg + unit);
      assert_true(fabs(on - (double)O) <= 0.5 * unit + 1);
    }
  }
}

static void test_nothing_is_written_as_zero(void** state) {
  (void)state;
  int64_t n = -1, s = -1;
  mprof__jeprof_pair(0, 0, 524288, &n, &s);
  assert_int_equal(n, 0);
  assert_int_equal(s, 0);
  mprof__jeprof_pair(5, 0, 524288, &n, &s); /* zero-size objects: jeprof cannot unbias them */
  assert_int_equal(n, 0);
  assert_int_equal(s, 0);
}

static char* write_to_string(const mprof_heap_profile_t* prof, int* err) {
  char path[] = "/tmp/test_jeprof.XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  unlink(path);
  *err = mprof__jeprof_write_heap(fd, prof);
  off_t len = lseek(fd, 0, SEEK_END);
  char* buf = malloc((size_t)len + 1);
  assert_non_null(buf);
  assert_int_equal(pread(fd, buf, (size_t)len, 0), len);
  buf[len] = '\0';
  close(fd);
  return buf;
}

static void test_text_follows_heap_v2(void** state) {
  (void)state;
  static const uintptr_t st1[] = {0x401000, 0x402000, 0x403000};
  static const uintptr_t st2[] = {0x404000};
  mprof_heap_rec_t recs[2] = {
      {.pcs = st1,
       .npcs = 3,
       .alloc_objects = 100,
       .alloc_bytes = 409600,
       .inuse_objects = 50,
       .inuse_bytes = 204800},
      {.pcs = st2,
       .npcs = 1,
       .alloc_objects = 2,
       .alloc_bytes = 2 << 20,
       .inuse_objects = 0,
       .inuse_bytes = 0},
  };
  mprof_heap_profile_t prof = {.recs = recs, .nrecs = 2, .period = 524288};
  int err;
  char* text = write_to_string(&prof, &err);
  assert_int_equal(err, 0);
  assert_true(strncmp(text, "heap_v2/524288\n  t*: ", 21) == 0);
  assert_non_null(strstr(text, "\n@ 0x400fff 0x402000 0x403000\n  t*: "));
  assert_non_null(strstr(text, "\n@ 0x403fff\n  t*: 0: 0 ["));
  assert_non_null(strstr(text, "\n\nMAPPED_LIBRARIES:\n"));
  /* Every counts line parses as jeprof's regular expression expects. */
  int lines = 0;
  for (char* l = strstr(text, "  t*: "); l != NULL; l = strstr(l + 1, "\n  t*: ")) {
    long long a, b, c, d;
    const char* p = l[0] == '\n' ? l + 1 : l;
    assert_int_equal(sscanf(p, "  t*: %lld: %lld [%lld: %lld]", &a, &b, &c, &d), 4);
    lines++;
  }
  assert_int_equal(lines, 3);
  free(text);
}

static void test_write_errors_are_returned(void** state) {
  (void)state;
  static const uintptr_t st[] = {0x401000};
  mprof_heap_rec_t rec = {.pcs = st,
                          .npcs = 1,
                          .alloc_objects = 1,
                          .alloc_bytes = 1,
                          .inuse_objects = 1,
                          .inuse_bytes = 1};
  mprof_heap_profile_t prof = {.recs = &rec, .nrecs = 1, .period = 524288};
  int fd = open("/dev/full", O_WRONLY);
  if (fd >= 0) {
    assert_int_equal(mprof__jeprof_write_heap(fd, &prof), ENOSPC);
    close(fd);
  }
  assert_int_equal(mprof__jeprof_write_heap(-1, &prof), EBADF);
  mprof_heap_profile_t bad = {.recs = NULL, .nrecs = 1, .period = 524288};
  assert_int_equal(mprof__jeprof_write_heap(1, &bad), EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_one_size_comes_back_exactly),
      cmocka_unit_test(test_mixed_sizes_within_one_sample),
      cmocka_unit_test(test_nothing_is_written_as_zero),
      cmocka_unit_test(test_text_follows_heap_v2),
      cmocka_unit_test(test_write_errors_are_returned),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
