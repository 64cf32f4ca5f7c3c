/* Staged cycles: the publication rules of mprof_cycle.h, checked step by step and against an
 * exact shadow model under random concurrent malloc/free/epoch interleavings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "mprof_bucket.h"
#include "mprof_cycle.h"

static mprof_bucket_t* bucket_for(uintptr_t site) {
  uintptr_t stk[2] = {0x1000 + site * 16, 0x42};
  mprof_bucket_t* b = mprof__bucket_get(MPROF_BUCKET_HEAP, stk, 2, 1);
  assert_non_null(b);
  return b;
}

static mprof_mem_cycle_t published(mprof_bucket_t* b) {
  uint64_t read_cycle;
  assert_int_equal(mprof__cycle_read_begin(false, true, &read_cycle), 0);
  mprof_mem_cycle_t a = b->rec.mem.active;
  mprof__cycle_read_end();
  return a;
}

static void epoch(void) {
  mprof__cycle_advance();
  mprof__cycle_flush();
}

static void test_malloc_is_published_after_two_epochs(void** state) {
  (void)state;
  mprof_bucket_t* b = bucket_for(1);
  mprof__cycle_record_malloc(b, 100, 1.0);
  assert_int_equal(published(b).allocs, 0);
  epoch();
  assert_int_equal(published(b).allocs, 0);
  epoch();
  mprof_mem_cycle_t a = published(b);
  assert_int_equal(a.allocs, 1);
  assert_int_equal(a.alloc_bytes, 100);
  assert_true(a.walloc_bytes == 100.0);
}

static void test_free_in_the_mallocs_cycle_is_published_with_the_malloc(void** state) {
  (void)state;
  mprof_bucket_t* b = bucket_for(2);
  uint64_t c = mprof__cycle_record_malloc(b, 64, 1.0);
  mprof__cycle_record_free(b, 64, 1.0, c);
  epoch();
  mprof_mem_cycle_t a = published(b);
  assert_int_equal(a.allocs, 0);
  assert_int_equal(a.frees, 0); /* a free published alone would make in-use negative */
  epoch();
  a = published(b);
  assert_int_equal(a.allocs, 1);
  assert_int_equal(a.frees, 1);
}

static void test_a_cancelled_malloc_is_never_published(void** state) {
  (void)state;
  mprof_bucket_t* b = bucket_for(107);
  uint64_t c = mprof__cycle_record_malloc(b, 40, 2.0);
  mprof__cycle_cancel_malloc(b, 40, 2.0, c); /* same cycle */
  c = mprof__cycle_record_malloc(b, 40, 2.0);
  epoch(); /* one boundary between: the malloc's slot is not folded yet */
  mprof__cycle_cancel_malloc(b, 40, 2.0, c);
  epoch();
  epoch();
  mprof_mem_cycle_t a = published(b);
  assert_int_equal(a.allocs, 0);
  assert_int_equal(a.frees, 0);
  assert_true(a.walloc_bytes == 0.0);
}

static void test_a_malloc_cancelled_after_its_publication_counts_as_a_free(void** state) {
  (void)state;
  mprof_bucket_t* b = bucket_for(108);
  uint64_t c = mprof__cycle_record_malloc(b, 40, 1.0);
  epoch();
  epoch(); /* published */
  mprof__cycle_cancel_malloc(b, 40, 1.0, c);
  mprof_mem_cycle_t a = published(b);
  assert_int_equal(a.allocs, 1);
  assert_int_equal(a.frees, 0);
  epoch();
  a = published(b);
  assert_int_equal(a.allocs, 1);
  assert_int_equal(a.frees, 1); /* in use is back to zero, never negative */
}

static void test_free_in_a_later_cycle_is_published_one_epoch_later(void** state) {
  (void)state;
  mprof_bucket_t* b = bucket_for(3);
  uint64_t c = mprof__cycle_record_malloc(b, 8, 1.0); /* counted at C+2 */
  epoch();                                            /* now C+1: free goes to C+2 too */
  mprof__cycle_record_free(b, 8, 1.0, c);
  epoch();
  mprof_mem_cycle_t a = published(b);
  assert_int_equal(a.allocs, 1);
  assert_int_equal(a.frees, 1);

  c = mprof__cycle_record_malloc(b, 8, 1.0);
  epoch();
  epoch(); /* malloc published, block still live */
  a = published(b);
  assert_int_equal(a.allocs - a.frees, 1);
  mprof__cycle_record_free(b, 8, 1.0, c); /* counted at C+1 */
  epoch();
  a = published(b);
  assert_int_equal(a.allocs - a.frees, 0);
}

static void test_advance_without_flush_flushes_first(void** state) {
  (void)state;
  mprof_bucket_t* b = bucket_for(4);
  mprof__cycle_record_malloc(b, 1, 1.0);
  mprof__cycle_advance();
  mprof__cycle_advance(); /* must fold the pending cycle before moving on */
  mprof__cycle_advance();
  mprof__cycle_flush();
  assert_int_equal(published(b).allocs, 1);
}

static void test_publish_all_includes_everything_counted_before(void** state) {
  (void)state;
  mprof_bucket_t* b = bucket_for(5);
  uint64_t c = mprof__cycle_record_malloc(b, 10, 2.0);
  mprof__cycle_record_malloc(b, 20, 1.0);
  mprof__cycle_record_free(b, 10, 2.0, c);
  mprof__cycle_publish_all();
  mprof_mem_cycle_t a = published(b);
  assert_int_equal(a.allocs, 2);
  assert_int_equal(a.frees, 1);
  assert_int_equal(a.alloc_bytes, 30);
  assert_true(a.walloc_objs == 3.0 && a.wfree_objs == 2.0);
  assert_true(a.walloc_bytes == 40.0 && a.wfree_bytes == 20.0);
}

static void test_a_flush_folds_only_the_buckets_touched_and_clears_their_marks(void** state) {
  (void)state;
  mprof_bucket_t* busy = bucket_for(6);
  mprof_bucket_t* idle = bucket_for(7);
  mprof__cycle_publish_all();
  for (int i = 0; i < 5; i++) /* several events, one list entry */
    mprof__cycle_record_malloc(busy, 10, 1.0);
  unsigned s = (unsigned)((mprof__cycle_current() + 2) % 3);
  assert_true(busy->rec.mem.dirty[s]);
  assert_false(idle->rec.mem.dirty[s]);
  mprof__cycle_publish_all();
  assert_int_equal(published(busy).allocs, 5);
  for (unsigned k = 0; k < 3; k++) {
    assert_false(busy->rec.mem.dirty[k]);
    assert_null(busy->rec.mem.dirty_next[k]);
  }
}

static void test_try_epoch_advances_when_nothing_else_runs(void** state) {
  (void)state;
  uint64_t c = mprof__cycle_current();
  assert_true(mprof__cycle_try_epoch());
  assert_int_equal(mprof__cycle_current(), c + 1);
}

/* --- Random concurrent interleavings against a shadow model ------------------------------ */

#define SITES 32
#define WORKERS 4
#define OPS 400000
#define QUEUE 256

typedef struct block_s {
  mprof_bucket_t* b;
  uint64_t size;
  uint64_t cycle;
  int site;
} block_t;

static mprof_bucket_t* stress_buckets[SITES];
static _Atomic int64_t shadow_allocs[SITES], shadow_frees[SITES], shadow_bytes[SITES];
static _Atomic int stop_epochs;
static _Atomic int negative_seen;
static _Atomic int64_t epochs_done;

/* A small lock-protected exchange so that some frees happen on another thread than the malloc. */
static pthread_mutex_t xq_mu = PTHREAD_MUTEX_INITIALIZER;
static block_t xq[QUEUE];
static int xq_n;

static uint64_t rnd(uint64_t* s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static void do_free(const block_t* blk) {
  mprof__cycle_record_free(blk->b, blk->size, 1.0, blk->cycle);
  atomic_fetch_add(&shadow_frees[blk->site], 1);
  atomic_fetch_sub(&shadow_bytes[blk->site], (int64_t)blk->size);
}

static void* worker(void* arg) {
  uint64_t s = (uintptr_t)arg * 0x9e3779b97f4a7c15ull + 1;
  block_t live[64];
  int n = 0;
  for (int i = 0; i < OPS; i++) {
    uint64_t r = rnd(&s);
    if (n < 64 && (r % 3 != 0 || n == 0)) {
      int site = (int)((r >> 8) % SITES);
      block_t* blk = &live[n++];
      blk->site = site;
      blk->b = stress_buckets[site];
      blk->size = 1 + (r >> 20) % 4096;
      atomic_fetch_add(&shadow_allocs[site], 1);
      atomic_fetch_add(&shadow_bytes[site], (int64_t)blk->size);
      blk->cycle = mprof__cycle_record_malloc(blk->b, blk->size, 1.0);
    } else {
      int k = (int)((r >> 12) % (uint64_t)n);
      block_t blk = live[k];
      live[k] = live[--n];
      if ((r >> 40) % 4 == 0) { /* hand it to whichever thread frees next */
        pthread_mutex_lock(&xq_mu);
        if (xq_n < QUEUE) {
          xq[xq_n++] = blk;
          pthread_mutex_unlock(&xq_mu);
          continue;
        }
        pthread_mutex_unlock(&xq_mu);
      }
      do_free(&blk);
      pthread_mutex_lock(&xq_mu);
      if (xq_n > 0) {
        block_t other = xq[--xq_n];
        pthread_mutex_unlock(&xq_mu);
        do_free(&other);
      } else {
        pthread_mutex_unlock(&xq_mu);
      }
    }
  }
  for (int k = 0; k < n; k++)
    do_free(&live[k]);
  return NULL;
}

/* Advances epochs as fast as it can and checks every published record on the way. */
static void* epocher(void* arg) {
  (void)arg;
  while (!atomic_load(&stop_epochs)) {
    mprof__cycle_advance();
    mprof__cycle_flush();
    atomic_fetch_add(&epochs_done, 1);
    uint64_t read_cycle;
    assert_int_equal(mprof__cycle_read_begin(false, true, &read_cycle), 0);
    for (int i = 0; i < SITES; i++) {
      const mprof_mem_cycle_t* a = &stress_buckets[i]->rec.mem.active;
      if (a->frees > a->allocs || a->free_bytes > a->alloc_bytes) atomic_store(&negative_seen, 1);
    }
    mprof__cycle_read_end();
  }
  return NULL;
}

static mprof_mem_cycle_t at_peak(mprof_bucket_t* b) {
  uint64_t read_cycle;
  while (mprof__cycle_read_begin(true, true, &read_cycle) == EBUSY)
    mprof__cycle_publish_all();
  mprof_mem_cycle_t a = *mprof__cycle_peak_of(b);
  mprof__cycle_read_end();
  return a;
}

/* The peak keeps the state of the moment it was taken, whatever comes after: frees of blocks
 * counted before it (in the same cycle, too), later mallocs, buckets touched and untouched. */
static void test_peak_keeps_the_state_when_it_was_taken(void** state) {
  (void)state;
  mprof_bucket_t* kept = bucket_for(30);
  mprof_bucket_t* freed = bucket_for(31);
  mprof_bucket_t* later = bucket_for(32);
  mprof__cycle_record_malloc(kept, 100, 1.0);
  uint64_t c = mprof__cycle_record_malloc(freed, 1000, 1.0);
  assert_true(mprof__cycle_try_peak());
  mprof__cycle_record_free(freed, 1000, 1.0, c); /* the malloc's cycle was C: same cycle */
  mprof__cycle_record_malloc(later, 5, 1.0);
  mprof__cycle_publish_all();
  mprof__cycle_publish_all();
  mprof_mem_cycle_t k = at_peak(kept), f = at_peak(freed), l = at_peak(later);
  assert_int_equal(k.allocs - k.frees, 1);
  assert_int_equal(f.allocs - f.frees, 1);
  assert_int_equal(f.alloc_bytes - f.free_bytes, 1000);
  assert_int_equal(l.allocs, 0);
  /* The current state has moved on. */
  assert_int_equal(published(freed).frees, 1);
  assert_int_equal(published(later).allocs, 1);
  /* A higher peak replaces it. */
  assert_true(mprof__cycle_try_peak());
  f = at_peak(freed);
  l = at_peak(later);
  assert_int_equal(f.allocs - f.frees, 0);
  assert_int_equal(l.allocs, 1);
}

/* Epoch start times: known for recent cycles, monotonic, and never later than now. */
static void test_cycle_start_times_are_lower_bounds(void** state) {
  (void)state;
  mprof__cycle_init_time();
  epoch();
  uint64_t c = mprof__cycle_current();
  int64_t t1 = mprof__cycle_start_ns(c);
  epoch();
  int64_t t2 = mprof__cycle_start_ns(c + 1);
  assert_true(t1 > 0);
  assert_true(t2 >= t1);
  assert_int_equal(mprof__cycle_start_ns(c + 2), 0); /* the future is unknown */
  for (int i = 0; i < MPROF_CYCLE_TIMES + 10; i++)
    mprof__cycle_advance();
  /* Forgotten cycles give a later time (a weaker but true bound). */
  assert_true(mprof__cycle_start_ns(c) >= t2);
}

static void test_concurrent_events_match_an_exact_shadow_and_never_go_negative(void** state) {
  (void)state;
  for (int i = 0; i < SITES; i++)
    stress_buckets[i] = bucket_for(1000 + (uintptr_t)i);
  mprof_mem_cycle_t before[SITES];
  mprof__cycle_publish_all();
  for (int i = 0; i < SITES; i++)
    before[i] = published(stress_buckets[i]);

  pthread_t w[WORKERS], e[2];
  for (int i = 0; i < 2; i++)
    pthread_create(&e[i], NULL, epocher, NULL);
  for (uintptr_t i = 0; i < WORKERS; i++)
    pthread_create(&w[i], NULL, worker, (void*)(i + 1));
  for (int i = 0; i < WORKERS; i++)
    pthread_join(w[i], NULL);
  for (int i = 0; i < xq_n; i++)
    do_free(&xq[i]);
  xq_n = 0;
  atomic_store(&stop_epochs, 1);
  for (int i = 0; i < 2; i++)
    pthread_join(e[i], NULL);

  assert_false(atomic_load(&negative_seen));
  assert_true(atomic_load(&epochs_done) > 100); /* the interleavings really happened */
  mprof__cycle_publish_all();
  for (int i = 0; i < SITES; i++) {
    mprof_mem_cycle_t a = published(stress_buckets[i]);
    assert_int_equal(a.allocs - before[i].allocs, atomic_load(&shadow_allocs[i]));
    assert_int_equal(a.frees - before[i].frees, atomic_load(&shadow_frees[i]));
    assert_int_equal(a.allocs, a.frees); /* everything was freed */
    assert_int_equal(a.alloc_bytes, a.free_bytes);
    assert_int_equal(atomic_load(&shadow_bytes[i]), 0);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_malloc_is_published_after_two_epochs),
      cmocka_unit_test(test_free_in_the_mallocs_cycle_is_published_with_the_malloc),
      cmocka_unit_test(test_free_in_a_later_cycle_is_published_one_epoch_later),
      cmocka_unit_test(test_a_cancelled_malloc_is_never_published),
      cmocka_unit_test(test_a_malloc_cancelled_after_its_publication_counts_as_a_free),
      cmocka_unit_test(test_advance_without_flush_flushes_first),
      cmocka_unit_test(test_publish_all_includes_everything_counted_before),
      cmocka_unit_test(test_a_flush_folds_only_the_buckets_touched_and_clears_their_marks),
      cmocka_unit_test(test_try_epoch_advances_when_nothing_else_runs),
      cmocka_unit_test(test_peak_keeps_the_state_when_it_was_taken),
      cmocka_unit_test(test_cycle_start_times_are_lower_bounds),
      cmocka_unit_test(test_concurrent_events_match_an_exact_shadow_and_never_go_negative),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
