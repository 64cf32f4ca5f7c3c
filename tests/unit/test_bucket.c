/* The bucket table: lock-free lookup, insertion under the insert lock, one bucket per stack, a
 * table that starts small and grows while other threads look buckets up. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "mprof_bucket.h"
#include "mprof_meta.h"

#define NSTACKS 5000
#define NTHREADS 4

static void make_stack(unsigned i, uintptr_t* stk, uint32_t* n) {
  *n = 1 + i % 7;
  for (uint32_t k = 0; k < *n; k++)
    stk[k] = 0x400000 + (uintptr_t)i * 64 + k;
}

static mprof_bucket_t* seen[NTHREADS][NSTACKS];

/* Runs first: nothing is mapped before the first bucket, and the first table is small. */
static void test_the_table_starts_small_and_only_on_the_first_bucket(void** state) {
  (void)state;
  assert_int_equal(mprof__bucket_table_slots(), 0);
  assert_int_equal(mprof__meta_mapped_bytes(), 0);
  uintptr_t stk[2] = {0x1234, 0x5678};
  assert_non_null(mprof__bucket_get(MPROF_BUCKET_HEAP, stk, 2, 1));
  assert_int_equal(mprof__bucket_table_slots(), 256);
  /* The table (2 KiB), its header and one bucket fit in the first 16 KiB chunk. */
  assert_int_equal(mprof__meta_mapped_bytes(), 16 * 1024);
  assert_ptr_equal(mprof__bucket_get(MPROF_BUCKET_HEAP, stk, 2, 0),
                   mprof__bucket_get(MPROF_BUCKET_HEAP, stk, 2, 1));
}

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
  size_t before = mprof__bucket_count(MPROF_BUCKET_HEAP);
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
  assert_int_equal(mprof__bucket_count(MPROF_BUCKET_HEAP), before + NSTACKS);
  size_t listed = 0;
  for (mprof_bucket_t* b = mprof__bucket_list(MPROF_BUCKET_HEAP); b; b = b->allnext)
    listed++;
  assert_int_equal(listed, before + NSTACKS);
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

/* Growth under concurrent lookups: readers look up a fixed set of buckets without a lock, over
 * and over, while one thread inserts new stacks and so makes the table double several times.
 * Every lookup must find the very bucket it found before, and never create a second one. */
#define NREAD 200
#define NREADERS 3
#define NGROW 40000

static mprof_bucket_t* fixed[NREAD];
static atomic_int growing;
static atomic_int bad_lookups;
static atomic_long lookups;

static void grow_stack(unsigned i, uintptr_t* stk, uint32_t* n) {
  *n = 2 + i % 5;
  for (uint32_t k = 0; k < *n; k++)
    stk[k] = 0x7000000 + (uintptr_t)i * 32 + k;
}

static void* reader(void* arg) {
  unsigned r = (unsigned)(uintptr_t)arg;
  long n = 0;
  do {
    for (unsigned j = 0; j < NREAD; j++) {
      unsigned i = (j * 31u + r * 17u) % NREAD;
      uintptr_t stk[8];
      uint32_t len;
      grow_stack(1000000 + i, stk, &len);
      /* Alternate plain lookups and lookups that would create: both must find the bucket. */
      mprof_bucket_t* b = mprof__bucket_get(MPROF_BUCKET_HEAP, stk, len, (int)((j + r) & 1));
      if (b != fixed[i]) atomic_fetch_add(&bad_lookups, 1);
      n++;
    }
  } while (atomic_load(&growing));
  atomic_fetch_add(&lookups, n);
  return NULL;
}

static void test_lookups_find_their_buckets_while_the_table_grows(void** state) {
  (void)state;
  for (unsigned i = 0; i < NREAD; i++) {
    uintptr_t stk[8];
    uint32_t len;
    grow_stack(1000000 + i, stk, &len);
    fixed[i] = mprof__bucket_get(MPROF_BUCKET_HEAP, stk, len, 1);
    assert_non_null(fixed[i]);
  }
  size_t slots0 = mprof__bucket_table_slots();
  size_t count0 = mprof__bucket_count(MPROF_BUCKET_HEAP);
  atomic_store(&growing, 1);
  pthread_t th[NREADERS];
  for (uintptr_t r = 0; r < NREADERS; r++)
    assert_int_equal(pthread_create(&th[r], NULL, reader, (void*)r), 0);
  for (unsigned i = 0; i < NGROW; i++) {
    uintptr_t stk[8];
    uint32_t len;
    grow_stack(i, stk, &len);
    assert_non_null(mprof__bucket_get(MPROF_BUCKET_HEAP, stk, len, 1));
  }
  atomic_store(&growing, 0);
  for (int r = 0; r < NREADERS; r++)
    pthread_join(th[r], NULL);
  assert_int_equal(atomic_load(&bad_lookups), 0);
  assert_true(atomic_load(&lookups) >= (long)NREADERS * NREAD);
  size_t count = mprof__bucket_count(MPROF_BUCKET_HEAP);
  assert_int_equal(count, count0 + NGROW); /* no reader created a duplicate */
  size_t slots = mprof__bucket_table_slots();
  assert_true(slots >= 4 * slots0); /* it grew at least twice meanwhile */
  assert_true(slots >= 2 * count);  /* at most half full */
  assert_true(slots < 4 * count);   /* and not larger than it needs */
  /* Every bucket inserted during the growth is found in the final table. */
  for (unsigned i = 0; i < NGROW; i += 7) {
    uintptr_t stk[8];
    uint32_t len;
    grow_stack(i, stk, &len);
    mprof_bucket_t* b = mprof__bucket_get(MPROF_BUCKET_HEAP, stk, len, 0);
    assert_non_null(b);
    assert_int_equal(b->nstk, len);
    assert_memory_equal(b->stk, stk, len * sizeof(uintptr_t));
  }
}

/* Several threads insert distinct stacks at once, so that the table grows while others
 * insert: growth runs without the insert lock and adds what was inserted meanwhile before it
 * publishes the bigger table. Every bucket must be found afterwards, exactly once. */
#define NPAR 4
#define NPAR_EACH 15000
static mprof_bucket_t* par_seen[NPAR][NPAR_EACH];

static void par_stack(unsigned t, unsigned i, uintptr_t* stk, uint32_t* n) {
  *n = 3;
  stk[0] = 0x9000000 + (uintptr_t)t * 0x1000000 + (uintptr_t)i * 16;
  stk[1] = 0x42;
  stk[2] = t;
}

static void* par_inserter(void* arg) {
  unsigned t = (unsigned)(uintptr_t)arg;
  for (unsigned i = 0; i < NPAR_EACH; i++) {
    uintptr_t stk[3];
    uint32_t n;
    par_stack(t, i, stk, &n);
    par_seen[t][i] = mprof__bucket_get(MPROF_BUCKET_HEAP, stk, n, 1);
  }
  return NULL;
}

static void test_inserts_go_on_while_another_thread_grows_the_table(void** state) {
  (void)state;
  size_t before = mprof__bucket_count(MPROF_BUCKET_HEAP);
  pthread_t th[NPAR];
  for (uintptr_t t = 0; t < NPAR; t++)
    assert_int_equal(pthread_create(&th[t], NULL, par_inserter, (void*)t), 0);
  for (int t = 0; t < NPAR; t++)
    pthread_join(th[t], NULL);
  for (unsigned t = 0; t < NPAR; t++)
    for (unsigned i = 0; i < NPAR_EACH; i++) {
      uintptr_t stk[3];
      uint32_t n;
      par_stack(t, i, stk, &n);
      assert_non_null(par_seen[t][i]);
      assert_ptr_equal(mprof__bucket_get(MPROF_BUCKET_HEAP, stk, n, 0), par_seen[t][i]);
    }
  assert_int_equal(mprof__bucket_count(MPROF_BUCKET_HEAP), before + (size_t)NPAR * NPAR_EACH);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_the_table_starts_small_and_only_on_the_first_bucket),
      cmocka_unit_test(test_concurrent_inserts_of_the_same_stacks_give_one_bucket_each),
      cmocka_unit_test(test_lookup_without_create_finds_existing_and_only_existing),
      cmocka_unit_test(test_the_same_stack_in_two_profile_types_gives_two_buckets),
      cmocka_unit_test(test_prefix_stacks_are_distinct_buckets),
      cmocka_unit_test(test_lookups_find_their_buckets_while_the_table_grows),
      cmocka_unit_test(test_inserts_go_on_while_another_thread_grows_the_table),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
