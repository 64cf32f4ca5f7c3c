/* The malloc family keeps its POSIX/glibc behaviour under mprof, sampled or not. This program is
 * linked against libmprof.so (not preloaded), so it also proves that linking works. ctest runs
 * it with every allocation sampled (lg_prof_sample:0) and with profiling off (prof:false). */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mprof.h"

static void* volatile sink;

static bool profiling_on(void) {
  bool on = false;
  size_t len = sizeof on;
  return mprof_ctl("opt.prof", &on, &len, NULL, 0) == 0 && on;
}

static uint64_t samples(void) {
  uint64_t v = 0;
  size_t len = sizeof v;
  if (mprof_ctl("stats.samples", &v, &len, NULL, 0) != 0) return 0;
  return v;
}

static void test_malloc_of_an_impossible_size_is_null_with_enomem(void** state) {
  (void)state;
  errno = 0;
  assert_null(malloc(SIZE_MAX));
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  assert_null(malloc(SIZE_MAX / 2));
  assert_int_equal(errno, ENOMEM);
}

static void test_calloc_and_reallocarray_overflow_are_enomem(void** state) {
  (void)state;
  errno = 0;
  assert_null(calloc(SIZE_MAX / 2, 3));
  assert_int_equal(errno, ENOMEM);
  void* p = malloc(16);
  errno = 0;
  assert_null(reallocarray(p, SIZE_MAX / 2, 3));
  assert_int_equal(errno, ENOMEM);
  free(p); /* p is still valid after the failed reallocarray */
}

static void test_calloc_returns_zeroed_memory(void** state) {
  (void)state;
  for (int i = 0; i < 200; i++) {
    unsigned char* p = calloc(1, 1000 + (size_t)i);
    assert_non_null(p);
    for (size_t k = 0; k < 1000 + (size_t)i; k++)
      assert_int_equal(p[k], 0);
    memset(p, 0xab, 1000 + (size_t)i);
    free(p);
  }
}

static void test_free_null_and_realloc_edge_cases_behave_like_glibc(void** state) {
  (void)state;
  free(NULL);
  char* p = realloc(NULL, 32);
  assert_non_null(p);
  strcpy(p, "kept");
  assert_null(realloc(p, 0)); /* frees p, returns NULL */
  errno = 0;
  p = malloc(8);
  assert_null(realloc(p, SIZE_MAX / 2));
  assert_int_equal(errno, ENOMEM);
  free(p); /* untouched by the failed realloc */
}

static void test_realloc_keeps_contents_while_growing_and_shrinking(void** state) {
  (void)state;
  for (int round = 0; round < 100; round++) {
    size_t n = 8;
    unsigned char* p = malloc(n);
    for (size_t k = 0; k < n; k++)
      p[k] = (unsigned char)k;
    while (n < (1u << 20)) {
      size_t m = n * 3;
      p = realloc(p, m);
      assert_non_null(p);
      for (size_t k = 0; k < n; k++)
        assert_int_equal(p[k], (unsigned char)k);
      for (size_t k = n; k < m; k++)
        p[k] = (unsigned char)k;
      n = m;
    }
    p = realloc(p, 100);
    for (size_t k = 0; k < 100; k++)
      assert_int_equal(p[k], (unsigned char)k);
    free(p);
  }
}

static void test_alignment_functions_check_and_honour_alignment(void** state) {
  (void)state;
  void* p = NULL;
  assert_int_equal(posix_memalign(&p, 3, 16), EINVAL);
  assert_int_equal(posix_memalign(&p, 4, 16), EINVAL); /* not a multiple of sizeof(void*) */
  assert_int_equal(posix_memalign(&p, 0, 16), EINVAL);
  errno = 0;
  assert_null(aligned_alloc(24, 48));
  assert_int_equal(errno, EINVAL);
  for (size_t a = 8; a <= ((size_t)1 << 20); a *= 2) {
    for (int i = 0; i < 20; i++) {
      assert_int_equal(posix_memalign(&p, a, 100 + (size_t)i), 0);
      assert_int_equal((uintptr_t)p % a, 0);
      memset(p, 1, 100 + (size_t)i);
      free(p);
      p = aligned_alloc(a, a * 2);
      assert_non_null(p);
      assert_int_equal((uintptr_t)p % a, 0);
      free(p);
      p = memalign(a, 10);
      assert_int_equal((uintptr_t)p % a, 0);
      free(p);
    }
  }
  p = memalign(48, 10);
  assert_non_null(p); /* rounded up to 64, as glibc does */
  assert_int_equal((uintptr_t)p % 64, 0);
  free(p);
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  p = valloc(10);
  assert_int_equal((uintptr_t)p % page, 0);
  free(p);
  p = pvalloc(page + 1);
  assert_int_equal((uintptr_t)p % page, 0);
  assert_true(malloc_usable_size(p) >= 2 * page);
  free(p);
  errno = 0;
  assert_int_equal(posix_memalign(&p, 64, SIZE_MAX / 2), ENOMEM);
}

static void test_usable_size_covers_the_request(void** state) {
  (void)state;
  assert_int_equal(malloc_usable_size(NULL), 0);
  for (size_t n = 1; n < 100000; n = n * 2 + 1) {
    void* p = malloc(n);
    assert_true(malloc_usable_size(p) >= n);
    free(p);
  }
}

static void test_allocations_are_sampled_when_profiling_is_on(void** state) {
  (void)state;
  uint64_t before = samples();
  for (int i = 0; i < 1000; i++) {
    sink = malloc(64);
    free(sink);
  }
  if (profiling_on())
    assert_int_equal(samples(), before + 1000); /* lg_prof_sample:0: every allocation */
  else
    assert_int_equal(samples(), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_malloc_of_an_impossible_size_is_null_with_enomem),
      cmocka_unit_test(test_calloc_and_reallocarray_overflow_are_enomem),
      cmocka_unit_test(test_calloc_returns_zeroed_memory),
      cmocka_unit_test(test_free_null_and_realloc_edge_cases_behave_like_glibc),
      cmocka_unit_test(test_realloc_keeps_contents_while_growing_and_shrinking),
      cmocka_unit_test(test_alignment_functions_check_and_honour_alignment),
      cmocka_unit_test(test_usable_size_covers_the_request),
      cmocka_unit_test(test_allocations_are_sampled_when_profiling_is_on),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
