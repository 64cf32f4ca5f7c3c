/* Per-thread sampling: interval statistics, the countdown fast path and stack capture. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>

#include "mprof_thread.h"

static void test_intervals_are_exponential_with_the_requested_mean(void** state) {
  (void)state;
  mprof_thread_t t = {0};
  mprof__thread_seed(&t);
  const uint64_t mean = 1u << 19;
  const int n = 200000;
  double sum = 0, sumsq = 0;
  int above_mean = 0, above_3mean = 0;
  for (int i = 0; i < n; i++) {
    double x = (double)mprof__thread_next_interval(&t, mean);
    sum += x;
    sumsq += x * x;
    above_mean += x > (double)mean;
    above_3mean += x > 3.0 * (double)mean;
  }
  double m = sum / n, sd = sqrt(sumsq / n - m * m);
  /* Exponential: mean = sd = 2^19; P(X > mean) = e^-1; P(X > 3 mean) = e^-3. The standard
   * error of the mean is mean/sqrt(n) = 0.22 %, so 2 % is over 8 sigma. */
  assert_true(fabs(m / (double)mean - 1.0) < 0.02);
  assert_true(fabs(sd / (double)mean - 1.0) < 0.03);
  assert_true(fabs((double)above_mean / n - exp(-1.0)) < 0.01);
  assert_true(fabs((double)above_3mean / n - exp(-3.0)) < 0.005);
}

static void test_a_mean_of_one_samples_every_allocation(void** state) {
  (void)state;
  mprof_thread_t t = {0};
  mprof__thread_seed(&t);
  for (int i = 0; i < 1000; i++)
    assert_int_equal(mprof__thread_next_interval(&t, 1), 0);
}

static void test_two_threads_seeded_at_once_draw_different_streams(void** state) {
  (void)state;
  mprof_thread_t a = {0}, b = {0};
  mprof__thread_seed(&a);
  mprof__thread_seed(&b);
  int same = 0;
  for (int i = 0; i < 100; i++)
    same += mprof__thread_next_interval(&a, 1 << 19) == mprof__thread_next_interval(&b, 1 << 19);
  assert_true(same < 5);
}

static void test_countdown_subtracts_until_it_expires(void** state) {
  (void)state;
  mprof__thread.countdown = 100;
  assert_false(mprof__thread_countdown_expired(30));
  assert_int_equal(mprof__thread.countdown, 70);
  assert_false(mprof__thread_countdown_expired(69));
  assert_int_equal(mprof__thread.countdown, 1);
  assert_true(mprof__thread_countdown_expired(2)); /* crosses the sample point */
  mprof__thread.countdown = 0;
  assert_false(mprof__thread_countdown_expired(0)); /* zero bytes never cross one */
  assert_true(mprof__thread_countdown_expired(1));
  mprof__thread.countdown = UINT64_MAX; /* prof:false */
  assert_false(mprof__thread_countdown_expired(SIZE_MAX));
}

/* Stack capture: frames come leaf first, the capture's own frame is skipped, depth is capped. */
static uint32_t captured;
static uintptr_t frames[8];

__attribute__((noinline)) static void capture_leaf(unsigned depth) {
  mprof_thread_t* t = &mprof__thread;
  captured = mprof__thread_capture(t, depth, 0);
  for (uint32_t i = 0; i < captured && i < 8; i++)
    frames[i] = t->stack[i];
  __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) static void capture_middle(unsigned depth) {
  capture_leaf(depth);
  __asm__ volatile("" ::: "memory");
}

static void test_capture_is_leaf_first_and_drops_the_profilers_own_frames(void** state) {
  (void)state;
  /* Declare mprof__thread_capture and mprof__thread_capture_into the profiler's code. */
  uintptr_t a = (uintptr_t)&mprof__thread_capture, b = (uintptr_t)&mprof__thread_capture_into;
  mprof__thread_set_self_range(a < b ? a : b, (a < b ? b : a) + 4096);
  capture_middle(64);
  assert_true(captured >= 3);
  /* frames[0] returns into capture_leaf, frames[1] into capture_middle. */
  assert_true(frames[0] > (uintptr_t)&capture_leaf && frames[0] < (uintptr_t)&capture_leaf + 200);
  assert_true(frames[1] > (uintptr_t)&capture_middle &&
              frames[1] < (uintptr_t)&capture_middle + 200);
  capture_middle(1);
  assert_int_equal(captured, 1);
  mprof__thread_set_self_range(0, 0);
  mprof__thread_release(&mprof__thread);
  assert_null(mprof__thread.stack);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_intervals_are_exponential_with_the_requested_mean),
      cmocka_unit_test(test_a_mean_of_one_samples_every_allocation),
      cmocka_unit_test(test_two_threads_seeded_at_once_draw_different_streams),
      cmocka_unit_test(test_countdown_subtracts_until_it_expires),
      cmocka_unit_test(test_capture_is_leaf_first_and_drops_the_profilers_own_frames),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
