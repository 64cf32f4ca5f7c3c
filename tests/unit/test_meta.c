/* The profiler's own memory: zeroed blocks, reuse of freed blocks, chunks that start small and
 * grow geometrically up to their cap, and large requests mapped and unmapped one by one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "mprof_meta.h"

#define KiB ((size_t)1024)

/* Runs first: the chunk sizes follow 16, 32, 64, 128, 256, 256 KiB. */
static void test_chunks_start_at_16_kib_and_double_up_to_256_kib(void** state) {
  (void)state;
  assert_int_equal(mprof__meta_mapped_bytes(), 0);
  assert_non_null(mprof__meta_alloc(16));
  assert_int_equal(mprof__meta_mapped_bytes(), 16 * KiB);
  size_t want[] = {16, 48, 112, 240, 496, 752, 1008};
  size_t step = 0, used = 16;
  while (step + 1 < sizeof want / sizeof want[0]) {
    size_t before = mprof__meta_mapped_bytes();
    assert_non_null(mprof__meta_alloc(4096));
    used += 4096;
    size_t after = mprof__meta_mapped_bytes();
    if (after != before) {
      step++;
      assert_int_equal(after, want[step] * KiB);
    }
    /* What is mapped is never more than twice what was asked for, plus the first chunk. */
    assert_true(after <= 2 * used + 16 * KiB);
  }
}

static void test_blocks_are_zeroed_and_freed_blocks_are_reused(void** state) {
  (void)state;
  unsigned char* a = mprof__meta_alloc(100);
  assert_non_null(a);
  for (int i = 0; i < 100; i++)
    assert_int_equal(a[i], 0);
  memset(a, 0xab, 100);
  mprof__meta_free(a, 100);
  size_t mapped = mprof__meta_mapped_bytes();
  unsigned char* b = mprof__meta_alloc(128); /* the same 128-byte class */
  assert_ptr_equal(b, a);
  for (int i = 0; i < 128; i++)
    assert_int_equal(b[i], 0);
  assert_int_equal(mprof__meta_mapped_bytes(), mapped);
  assert_int_equal((uintptr_t)b % 16, 0);
}

static void test_large_requests_are_mapped_and_unmapped_alone(void** state) {
  (void)state;
  size_t before = mprof__meta_mapped_bytes();
  void* p = mprof__meta_alloc(MPROF_META_SMALL_MAX + 1);
  assert_non_null(p);
  assert_int_equal(mprof__meta_mapped_bytes(), before + 2 * MPROF_META_SMALL_MAX);
  mprof__meta_free(p, MPROF_META_SMALL_MAX + 1);
  assert_int_equal(mprof__meta_mapped_bytes(), before);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_chunks_start_at_16_kib_and_double_up_to_256_kib),
      cmocka_unit_test(test_blocks_are_zeroed_and_freed_blocks_are_reused),
      cmocka_unit_test(test_large_requests_are_mapped_and_unmapped_alone),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
