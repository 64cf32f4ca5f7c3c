/* The contention profile's recording rules (mprof_mutex.h): direct records, the per-thread
 * pending slot (one event, the larger delay kept, the other charged to the sentinel), records
 * of contended profiler locks, no recursion when recording itself meets contention, and the
 * name registry behind the pseudo frames. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "mprof_core.h"
#include "mprof_lock.h"
#include "mprof_maps.h"
#include "mprof_meta.h"
#include "mprof_mutex.h"
#include "mprof_pprof.h"

#if defined(__SANITIZE_THREAD__) && !defined(__x86_64__)
/* Where stacks are taken with libunwind (all but x86-64): libunwind's per-thread cache and TSan
 * both tear themselves down in the last round of TSD destructors, and TSan crashes when
 * libunwind's comes second; so under TSan threads that have captured a stack never exit (as in
 * tests/reliability/stress_core.c): they finish their work, say so, and sleep. The x86-64 walker
 * keeps no per-thread state, and the threads exit. */
#define PARK_THREADS 1
#else
#define PARK_THREADS 0
#endif
static _Atomic int finished;

static void* thread_done(void) {
  atomic_fetch_add(&finished, 1);
  if (PARK_THREADS)
    for (;;)
      pause();
  return NULL;
}

/* Waits for n threads started since `base` was read to finish (join, or parked). */
static void wait_threads(pthread_t* th, int n, int base) {
  if (PARK_THREADS) {
    while (atomic_load(&finished) < base + n)
      usleep(1000);
    for (int i = 0; i < n; i++)
      pthread_detach(th[i]);
  } else {
    for (int i = 0; i < n; i++)
      pthread_join(th[i], NULL);
  }
}

typedef struct found_s {
  int64_t contentions, delay_ns;
  uint32_t npcs;
} found_t;

/* The record whose leaf frame is `name` (summed over its stacks). */
static found_t find(const char* name) {
  found_t f = {0, 0, 0};
  uintptr_t pc = mprof__mutex_name_pc(name);
  mprof_mutex_profile_t p;
  size_t cap;
  assert_int_equal(mprof__mutex_snapshot(&p, &cap), 0);
  for (size_t i = 0; i < p.nrecs; i++) {
    if (p.recs[i].npcs > 0 && p.recs[i].pcs[0] == pc) {
      f.contentions += p.recs[i].contentions;
      f.delay_ns += p.recs[i].delay_ns;
      f.npcs = p.recs[i].npcs;
    }
  }
  mprof__mutex_snapshot_free(&p, cap);
  return f;
}

static mprof_mutex_stats_t stats(void) {
  mprof_mutex_stats_t s;
  mprof__mutex_stats(&s);
  return s;
}

static int setup(void** state) {
  (void)state;
  mprof__opts_default(&mprof__opts);
  mprof__mutex_start(1, false);
  return 0;
}

static void test_names_map_to_stable_pseudo_frames(void** state) {
  (void)state;
  uintptr_t a = mprof__mutex_name_pc("test:alpha");
  char copy[] = "test:alpha";
  assert_true(a >= MPROF_PSEUDO_PC_BASE);
  assert_int_equal(mprof__mutex_name_pc(copy), a); /* by content, not by pointer */
  assert_int_not_equal(mprof__mutex_name_pc("test:beta"), a);
  assert_string_equal(mprof__mutex_pc_name(a), "test:alpha");
  assert_string_equal(mprof__mutex_pc_name(MPROF_PSEUDO_PC_BASE), MPROF_LOST_CONTENDED_LOCK);
  assert_null(mprof__mutex_pc_name((uintptr_t)&find));
  assert_null(mprof__mutex_pc_name(0x401000));
}

static void test_report_without_locks_records_at_once(void** state) {
  (void)state;
  mprof__contention_report("test:direct", 1000, false);
  found_t f = find("test:direct");
  assert_int_equal(f.contentions, 1);
  assert_int_equal(f.delay_ns, 1000);
  assert_true(f.npcs >= 2); /* the lock's frame, then the caller's stack */
  assert_int_equal(mprof__mtx_thread.pend_n, 0);
}

static void test_pending_slot_keeps_one_event_the_larger(void** state) {
  (void)state;
  mprof_mutex_stats_t s0 = stats();
  /* Holding allocator locks: nothing may be written to the table yet. */
  mprof__contention_report("test:small", 100, true);
  assert_int_not_equal(mprof__mtx_thread.pend_n, 0);
  assert_int_equal(find("test:small").contentions, 0);
  /* A larger one takes the slot; the smaller goes to the sentinel. */
  mprof__contention_report("test:large", 500, true);
  mprof_mutex_stats_t s1 = stats();
  assert_int_equal(s1.contentions_lost - s0.contentions_lost, 1);
  assert_int_equal(mprof__mtx_thread.pend_delay, 500);
  /* A smaller one goes straight to the sentinel; the slot keeps the larger. */
  mprof__contention_report("test:smaller", 50, true);
  assert_int_equal(stats().contentions_lost - s0.contentions_lost, 2);
  assert_int_equal(mprof__mtx_thread.pend_delay, 500);
  /* The thread holds no allocator lock any more: the pending event is recorded. */
  mprof__contention_flush();
  assert_int_equal(mprof__mtx_thread.pend_n, 0);
  found_t f = find("test:large");
  assert_int_equal(f.contentions, 1);
  assert_int_equal(f.delay_ns, 500);
  assert_int_equal(find("test:small").contentions, 0);
  assert_int_equal(find("test:smaller").contentions, 0);
  /* Everything is accounted for: 3 events, one recorded, two in the sentinel. */
  mprof_mutex_stats_t s2 = stats();
  assert_int_equal(s2.contentions - s0.contentions, 3);
  found_t lost = find(MPROF_LOST_CONTENDED_LOCK);
  assert_int_equal((uint64_t)lost.contentions, s2.contentions_lost);
}

static void test_fraction_weights_each_sample(void** state) {
  (void)state;
  mprof__mutex_set_fraction(8);
  for (int i = 0; i < 8000; i++)
    mprof__contention_report("test:weighted", 10, false);
  mprof__mutex_set_fraction(1);
  found_t f = find("test:weighted");
  /* 1000 samples expected (sd ~30), each counting 8 events of 10 ns. */
  assert_true(f.contentions % 8 == 0);
  assert_true(f.contentions > 8000 - 8 * 150 && f.contentions < 8000 + 8 * 150);
  assert_int_equal(f.delay_ns, f.contentions * 10);
  mprof__mutex_set_fraction(0);
  mprof__contention_report("test:off", 10, false);
  assert_int_equal(find("test:off").contentions, 0);
  assert_false(mprof__contention_on());
  mprof__mutex_set_fraction(1);
}

/* A profiler lock held by one thread while another waits for it. */
static mprof_lock_t test_lock = MPROF_LOCK_INIT(MPROF_RANK_CYCLE, "test_cycle");
static _Atomic int phase;

static void sleep_ms(int ms) {
  struct timespec ts = {0, ms * 1000000L};
  nanosleep(&ts, NULL);
}

static void* hold_test_lock(void* arg) {
  (void)arg;
  mprof__lock(&test_lock);
  atomic_store(&phase, 1);
  sleep_ms(30);
  mprof__unlock(&test_lock);
  return NULL;
}

static void test_contended_profiler_lock_is_recorded_after_release(void** state) {
  (void)state;
  atomic_store(&phase, 0);
  pthread_t th;
  pthread_create(&th, NULL, hold_test_lock, NULL);
  while (atomic_load(&phase) == 0)
    sleep_ms(1);
  mprof__lock(&test_lock); /* waits ~30 ms */
  /* It holds a profiler lock: the event is pending, not in the table. The lock module's one
   * count of held locks (the one behind EDEADLK) says so, and it knows an event waits. */
  assert_int_not_equal(mprof__mtx_thread.pend_n, 0);
  assert_true(mprof__lock_held_by_thread());
  assert_int_equal(mprof__lock_depth, 1);
  assert_int_not_equal(mprof__lock_deferred, 0);
  assert_int_equal(find("mprof_lock:test_cycle").contentions, 0);
  mprof__unlock(&test_lock); /* holds none now: recorded */
  assert_int_equal(mprof__mtx_thread.pend_n, 0);
  assert_false(mprof__lock_held_by_thread());
  assert_int_equal(mprof__lock_deferred, 0);
  pthread_join(th, NULL);
  found_t f = find("mprof_lock:test_cycle");
  assert_int_equal(f.contentions, 1);
  assert_true(f.delay_ns > 5 * 1000000);      /* it did wait */
  assert_true(f.delay_ns < 5000 * 1000000LL); /* and the wait is a duration, not a time */
}

/* A thread whose first sampled wait is on a profiler lock: its count already covers the lock it
 * waits for, and its stack buffers are still allocated before the wait, so the event has a
 * stack (not the sentinel). Checked by the thread, asserted by the test. */
static _Atomic int first_wait_held, first_wait_deferred, first_wait_after;

static void* first_wait(void* arg) {
  (void)arg;
  mprof__lock(&test_lock); /* the test holds it: contended */
  atomic_store(&first_wait_held, (int)mprof__lock_depth);
  atomic_store(&first_wait_deferred, (int)mprof__lock_deferred);
  mprof__unlock(&test_lock);
  atomic_store(&first_wait_after,
               (int)(mprof__lock_depth + mprof__lock_deferred + mprof__mtx_thread.pend_n));
  return thread_done();
}

static void test_first_wait_on_a_profiler_lock_has_a_stack(void** state) {
  (void)state;
  found_t f0 = find("mprof_lock:test_cycle");
  mprof_mutex_stats_t s0 = stats();
  mprof__lock(&test_lock);
  pthread_t th;
  int base = atomic_load(&finished);
  pthread_create(&th, NULL, first_wait, NULL);
  /* Until the thread waits: glibc's lock word is 2 once a waiter has queued. */
  while (atomic_load((_Atomic int*)&test_lock.mu.__data.__lock) != 2)
    sleep_ms(1);
  sleep_ms(5); /* a wait long enough to see */
  mprof__unlock(&test_lock);
  wait_threads(&th, 1, base);
  found_t f1 = find("mprof_lock:test_cycle");
  mprof_mutex_stats_t s1 = stats();
  assert_int_equal(atomic_load(&first_wait_held), 1);
  assert_int_not_equal(atomic_load(&first_wait_deferred), 0);
  assert_int_equal(atomic_load(&first_wait_after), 0);
  assert_int_equal(f1.contentions - f0.contentions, 1);
  assert_true(f1.npcs > 1); /* the lock's frame and the thread's stack */
  assert_int_equal(s1.contentions_lost, s0.contentions_lost);
}

/* The table's own lock, taken by the fork handler from another thread: a recorder has to wait
 * for it while recording, and that wait goes to the sentinel, with no recursion. */
static void* block_table(void* arg) {
  (void)arg;
  mprof__mutex_fork_prepare();
  atomic_store(&phase, 1);
  sleep_ms(30);
  mprof__mutex_fork_parent();
  return NULL;
}

static void test_contention_while_recording_goes_to_the_sentinel(void** state) {
  (void)state;
  mprof__contention_report("test:rec", 7, false); /* the bucket exists: no insert needed */
  mprof_mutex_stats_t s0 = stats();
  found_t lost0 = find(MPROF_LOST_CONTENDED_LOCK);
  atomic_store(&phase, 0);
  pthread_t th;
  pthread_create(&th, NULL, block_table, NULL);
  while (atomic_load(&phase) == 0)
    sleep_ms(1);
  mprof__contention_report("test:rec", 7, false); /* waits on the table's lock */
  pthread_join(th, NULL);
  mprof_mutex_stats_t s1 = stats();
  assert_int_equal(s1.contentions_lost - s0.contentions_lost, 1); /* the wait on the table */
  assert_int_equal(s1.contentions - s0.contentions, 2);
  assert_int_equal(find("test:rec").contentions, 2);
  found_t lost1 = find(MPROF_LOST_CONTENDED_LOCK);
  assert_true(lost1.delay_ns - lost0.delay_ns > 5 * 1000000);
  assert_int_equal(find("mprof_lock:contention").contentions, 0); /* never a record of its own */
  assert_int_equal(mprof__mtx_thread.recording, 0);
  assert_int_equal(mprof__lock_depth, 0);
}

static void* exit_with_pending(void* arg) {
  (void)arg;
  mprof__contention_report("test:at_exit", 42, true);
  /* Never flushed by the thread itself: its exit does it (under TSan, where it cannot exit, the
   * same function as its key destructor). */
  if (PARK_THREADS) mprof__mutex_thread_exit();
  return thread_done();
}

static void test_thread_exit_records_the_pending_event(void** state) {
  (void)state;
  pthread_t th;
  int base = atomic_load(&finished);
  pthread_create(&th, NULL, exit_with_pending, NULL);
  wait_threads(&th, 1, base);
  found_t f = find("test:at_exit");
  assert_int_equal(f.contentions, 1);
  assert_int_equal(f.delay_ns, 42);
}

/* Many threads contending on profiler locks and reporting at once: the counts add up. */
static mprof_lock_t shared_lock = MPROF_LOCK_INIT(MPROF_RANK_CYCLE, "test_active");
#define NTHREADS 4
#define ROUNDS 2000

static void* stress(void* arg) {
  (void)arg;
  for (int i = 0; i < ROUNDS; i++) {
    mprof__lock(&shared_lock);
    mprof__contention_report("test:stress_held", 3, true); /* while holding: pending */
    mprof__unlock(&shared_lock);
    mprof__contention_report("test:stress", 1, false);
  }
  return thread_done();
}

static void test_concurrent_events_are_all_accounted_for(void** state) {
  (void)state;
  mprof_mutex_stats_t s0 = stats();
  int64_t a0 = find("test:stress").contentions, b0 = find("test:stress_held").contentions;
  pthread_t th[NTHREADS];
  int base = atomic_load(&finished);
  for (int i = 0; i < NTHREADS; i++)
    pthread_create(&th[i], NULL, stress, NULL);
  wait_threads(th, NTHREADS, base);
  mprof_mutex_stats_t s1 = stats();
  int64_t locked = find("mprof_lock:test_active").contentions;
  int64_t a = find("test:stress").contentions - a0, b = find("test:stress_held").contentions - b0;
  uint64_t lost = s1.contentions_lost - s0.contentions_lost;
  assert_int_equal(a + b + locked + (int64_t)lost, (int64_t)(s1.contentions - s0.contentions));
  assert_true(a + b + (int64_t)lost >= 2 * NTHREADS * ROUNDS);
  assert_true(b > 0);
}

static void test_mutex_profile_is_written_as_pprof(void** state) {
  (void)state;
  mprof__contention_report("test:pprof_name", 1234, false);
  mprof_mutex_profile_t p;
  size_t cap;
  assert_int_equal(mprof__mutex_snapshot(&p, &cap), 0);
  char path[] = "/tmp/mprof_test_mutex_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  mprof_maps_t maps = MPROF_MAPS_INIT;
  assert_int_equal(mprof__maps_read(&maps), 0);
  assert_int_equal(mprof__pprof_write_mutex_maps(fd, &p, &maps), 0);
  mprof__maps_free(&maps);
  close(fd);
  mprof__mutex_snapshot_free(&p, cap);
  gzFile gz = gzopen(path, "rb");
  assert_non_null(gz);
  static char buf[1 << 20];
  int n = gzread(gz, buf, sizeof buf);
  gzclose(gz);
  unlink(path);
  assert_true(n > 0);
  const char* want[] = {"contentions", "delay",           "nanoseconds",
                        "count",       "test:pprof_name", "mprof mutex profile"};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    assert_non_null(memmem(buf, (size_t)n, want[i], strlen(want[i])));
  assert_null(memmem(buf, (size_t)n, "inuse_space", 11)); /* not the heap layout */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_names_map_to_stable_pseudo_frames),
      cmocka_unit_test(test_report_without_locks_records_at_once),
      cmocka_unit_test(test_pending_slot_keeps_one_event_the_larger),
      cmocka_unit_test(test_fraction_weights_each_sample),
      cmocka_unit_test(test_contended_profiler_lock_is_recorded_after_release),
      cmocka_unit_test(test_first_wait_on_a_profiler_lock_has_a_stack),
      cmocka_unit_test(test_contention_while_recording_goes_to_the_sentinel),
      cmocka_unit_test(test_thread_exit_records_the_pending_event),
      cmocka_unit_test(test_concurrent_events_are_all_accounted_for),
      cmocka_unit_test(test_mutex_profile_is_written_as_pprof),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
