/* The bucket table: lock-free lookup, insertion under the insert lock, one bucket per stack. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <string.h>

#include "mprof_bucket.h"

#define NSTACKS 5000
#define NTHREADS 4

static void make_stack(unsigned i, uintptr_t* stk, uint32_t* n) {
  *n = 1 + i % 7;
  for (uint32_t k = 0; k < *n; k++)
    stk[k] = 0x400000 + (uintptr_t)i * 64 + k;
}

static mprof_bucket_t* seen[NTHREADS][NSTACKS];

static void* inserter(void* arg) {
  unsigned t = (unsigned)(uintptr_t)arg;
  for (unsigned j = 0; j < NSTACKS; j++) {
    unsigned i = (j * 7919u + t * 1237u) % NSTACKS; /* each thread in its own order */
    uintptr_t stk[8];
    uint32_t n;
    make_stack(i, stk, &n);
    seen[t][i] = mprof__bucket_get(MPROF_BUCKET_HEAP, stk, n, 1);
  }
  return NULL;
}

static void test_concurrent_inserts_of_the_same_stacks_give_one_bucket_each(void** state) {
  (void)state;
  pthread_t th[NTHREADS];
  for (uintptr_t t = 0; t < NTHREADS; t++)
    pthread_create(&th[t], NULL, inserter, (void*)t);
  for (int t = 0; t < NTHREADS; t++)
    pthread_join(th[t], NULL);
  for (unsigned i = 0; i < NSTACKS; i++) {
    assert_non_null(seen[0][i]);
    for (int t = 1; t < NTHREADS; t++)
      assert_ptr_equal(seen[t][i], seen[0][i]);
  }
  assert_int_equal(mprof__bucket_count(MPROF_BUCKET_HEAP), NSTACKS);
  size_t listed = 0;
  for (mprof_bucket_t* b = mprof__bucket_list(MPROF_BUCKET_HEAP); b; b = b->allnext)
    listed++;
  assert_int_equal(listed, NSTACKS);
}

static void test_lookup_without_create_finds_existing_and_only_existing(void** state) {
  (void)state;
  uintptr_t stk[8];
  uint32_t n;
  make_stack(17, stk, &n);
  mprof_bucket_t* b = mprof__bucket_get(MPROF_BUCKET_HEAP, stk, n, 1);
  assert_ptr_equal(mprof__bucket_get(MPROF_BUCKET_HEAP, stk, n, 0), b);
  assert_int_equal(b->nstk, n);
  assert_memory_equal(b->stk, stk, n * sizeof(uintptr_t));
  stk[0] ^= 0xffff0000;
  assert_null(mprof__bucket_get(MPROF_BUCKET_HEAP, stk, n, 0));
}

static void test_the_same_stack_in_two_profile_types_gives_two_buckets(void** state) {
  (void)state;
  uintptr_t stk[3] = {1, 2, 3};
  mprof_bucket_t* h = mprof__bucket_get(MPROF_BUCKET_HEAP, stk, 3, 1);
  mprof_bucket_t* l = mprof__bucket_get(MPROF_BUCKET_LOCK, stk, 3, 1);
  assert_non_null(h);
  assert_non_null(l);
  assert_ptr_not_equal(h, l);
  assert_int_equal(h->type, MPROF_BUCKET_HEAP);
  assert_int_equal(l->type, MPROF_BUCKET_LOCK);
  assert_ptr_equal(mprof__bucket_list(MPROF_BUCKET_LOCK), l);
  assert_int_equal(mprof__bucket_count(MPROF_BUCKET_LOCK), 1);
}

static void test_prefix_stacks_are_distinct_buckets(void** state) {
  (void)state;
  uintptr_t stk[4] = {10, 20, 30, 40};
  mprof_bucket_t* a = mprof__bucket_get(MPROF_BUCKET_HEAP, stk, 4, 1);
  mprof_bucket_t* b = mprof__bucket_get(MPROF_BUCKET_HEAP, stk, 3, 1);
  assert_ptr_not_equal(a, b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_concurrent_inserts_of_the_same_stacks_give_one_bucket_each),
      cmocka_unit_test(test_lookup_without_create_finds_existing_and_only_existing),
      cmocka_unit_test(test_the_same_stack_in_two_profile_types_gives_two_buckets),
      cmocka_unit_test(test_prefix_stacks_are_distinct_buckets),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
