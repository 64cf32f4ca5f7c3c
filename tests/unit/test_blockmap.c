/* The sampled-block map: insert, remove, growth, tombstone reuse, concurrent shards. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>

#include "mprof_blockmap.h"

static mprof_sample_t rec_for(uintptr_t p) {
  mprof_sample_t s = {(struct mprof_bucket_s*)(p ^ 0x5a5a), p & 0xffff, p >> 4, 1.5, 0};
  return s;
}

/* Runs first: a shard starts at 4 entries and returns to them once its blocks are gone. */
static void test_a_shard_starts_small_and_shrinks_back(void** state) {
  (void)state;
  assert_int_equal(mprof__blockmap_bytes(), 0);
  mprof_sample_t s = rec_for(0x4000);
  assert_int_equal(mprof__blockmap_insert((void*)(uintptr_t)0x4000, &s), 0);
  size_t one = mprof__blockmap_bytes();
  assert_true(one > 0 && one <= 4 * 64); /* 4 entries of at most 64 bytes */
  mprof_sample_t out;
  assert_true(mprof__blockmap_remove((void*)(uintptr_t)0x4000, &out));
  assert_int_equal(mprof__blockmap_bytes(), one);
}

static void test_inserted_blocks_are_found_once_with_their_record(void** state) {
  (void)state;
  size_t before = mprof__blockmap_count();
  for (uintptr_t i = 1; i <= 100000; i++) {
    mprof_sample_t s = rec_for(i * 16);
    assert_int_equal(mprof__blockmap_insert((void*)(i * 16), &s), 0);
  }
  assert_int_equal(mprof__blockmap_count(), before + 100000);
  mprof_sample_t none;
  assert_false(mprof__blockmap_remove((void*)(uintptr_t)(500 * 16 + 8), &none)); /* not a key */
  for (uintptr_t i = 1; i <= 100000; i++) {
    mprof_sample_t out;
    assert_true(mprof__blockmap_remove((void*)(i * 16), &out));
    mprof_sample_t want = rec_for(i * 16);
    assert_ptr_equal(out.bucket, want.bucket);
    assert_int_equal(out.size, want.size);
    assert_int_equal(out.cycle, want.cycle);
    assert_true(out.weight == 1.5);
    assert_false(mprof__blockmap_remove((void*)(i * 16), &out));
  }
  assert_int_equal(mprof__blockmap_count(), before);
}

static void test_unknown_and_null_pointers_are_not_found(void** state) {
  (void)state;
  mprof_sample_t out;
  assert_false(mprof__blockmap_remove(NULL, &out));
  assert_false(mprof__blockmap_remove((void*)(uintptr_t)1, &out));
  assert_false(mprof__blockmap_remove((void*)(uintptr_t)0xdead0, &out));
}

static void test_churn_reuses_tombstones_without_growing_forever(void** state) {
  (void)state;
  for (int round = 0; round < 200; round++) {
    for (uintptr_t i = 0; i < 1000; i++) {
      uintptr_t p = 0x10000000 + ((uintptr_t)round * 1000 + i) * 32;
      mprof_sample_t s = rec_for(p);
      assert_int_equal(mprof__blockmap_insert((void*)p, &s), 0);
    }
    for (uintptr_t i = 0; i < 1000; i++) {
      uintptr_t p = 0x10000000 + ((uintptr_t)round * 1000 + i) * 32;
      mprof_sample_t out;
      assert_true(mprof__blockmap_remove((void*)p, &out));
    }
  }
  /* 1000 live at most: 64 shards of at most a few hundred slots, far below 200 000 entries. */
  assert_true(mprof__blockmap_bytes() < 64 * 1024 * 48);
}

static void* churner(void* arg) {
  uintptr_t base = 0x7f0000000000 + (uintptr_t)arg * 0x100000000;
  for (int round = 0; round < 50; round++) {
    for (uintptr_t i = 0; i < 2000; i++) {
      mprof_sample_t s = rec_for(base + i * 16);
      if (mprof__blockmap_insert((void*)(base + i * 16), &s) != 0) return (void*)1;
    }
    for (uintptr_t i = 0; i < 2000; i++) {
      mprof_sample_t out;
      if (!mprof__blockmap_remove((void*)(base + i * 16), &out)) return (void*)2;
      if (out.size != ((base + i * 16) & 0xffff)) return (void*)3;
    }
  }
  return NULL;
}

static void test_threads_inserting_and_removing_never_see_each_others_blocks(void** state) {
  (void)state;
  pthread_t th[4];
  for (uintptr_t t = 0; t < 4; t++)
    pthread_create(&th[t], NULL, churner, (void*)t);
  for (int t = 0; t < 4; t++) {
    void* r;
    pthread_join(th[t], &r);
    assert_null(r);
  }
}

/* The walk runs its callback with no shard lock held: a callback that frees sampled blocks
 * (as a program thread would meanwhile, on any shard) neither deadlocks nor makes the walk miss
 * or repeat a block that was there when its shard was copied. */
#define WALK_N 5000
static size_t walk_seen;

static void remove_while_walking(void* arg, const mprof_sample_t* rec) {
  (void)arg;
  mprof_sample_t out;
  uintptr_t key = (uintptr_t)rec->size; /* this test keeps the block's address there */
  if (key < 0x10000000 || key > 0x10000000 + (uintptr_t)WALK_N * 64) return; /* not ours */
  if (mprof__blockmap_remove((void*)key, &out) && out.size == key) walk_seen++;
}

static void test_the_walk_callback_runs_without_the_shard_lock(void** state) {
  (void)state;
  size_t before = mprof__blockmap_count();
  for (uintptr_t i = 1; i <= WALK_N; i++) {
    uintptr_t p = 0x10000000 + i * 64;
    mprof_sample_t s = {NULL, p, 0, 1.0, 0};
    assert_int_equal(mprof__blockmap_insert((void*)p, &s), 0);
  }
  walk_seen = 0;
  mprof__blockmap_walk(remove_while_walking, NULL);
  assert_int_equal(walk_seen, WALK_N);
  assert_int_equal(mprof__blockmap_count(), before);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_a_shard_starts_small_and_shrinks_back),
      cmocka_unit_test(test_inserted_blocks_are_found_once_with_their_record),
      cmocka_unit_test(test_unknown_and_null_pointers_are_not_found),
      cmocka_unit_test(test_churn_reuses_tombstones_without_growing_forever),
      cmocka_unit_test(test_threads_inserting_and_removing_never_see_each_others_blocks),
      cmocka_unit_test(test_the_walk_callback_runs_without_the_shard_lock),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
