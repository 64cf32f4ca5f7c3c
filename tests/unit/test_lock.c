/* Unit tests for plugin/mprof_lock.c: the per-thread count of held locks (re-entry detection)
 * and cancellation under the dump lock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mprof_lock.h"

#include <pthread.h>

static mprof_lock_t dump_rank = MPROF_LOCK_INIT(MPROF_RANK_DUMP, "test_dump");
static mprof_lock_t meta_rank = MPROF_LOCK_INIT(MPROF_RANK_META, "test_meta");
static mprof_lock_t forked =
    MPROF_LOCK_INIT(MPROF_RANK_DUMP, "test_forked"); /* re-initialised while held */

static int cancel_state(void) {
  int old;
  pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, &old);
  pthread_setcancelstate(old, NULL);
  return old;
}

static void test_a_held_lock_is_seen_by_the_thread_until_released(void** state) {
  (void)state;
  assert_false(mprof__lock_held_by_thread());
  mprof__lock(&dump_rank);
  assert_true(mprof__lock_held_by_thread());
  mprof__lock(&meta_rank);
  mprof__unlock(&meta_rank);
  assert_true(mprof__lock_held_by_thread());
  mprof__unlock(&dump_rank);
  assert_false(mprof__lock_held_by_thread());
  assert_true(mprof__trylock(&meta_rank));
  assert_true(mprof__lock_held_by_thread());
  mprof__unlock(&meta_rank);
  assert_false(mprof__lock_held_by_thread());
}

static void test_cancellation_is_off_under_the_dump_lock_and_restored_after(void** state) {
  (void)state;
  assert_int_equal(cancel_state(), PTHREAD_CANCEL_ENABLE);
  mprof__lock(&dump_rank);
  assert_int_equal(cancel_state(), PTHREAD_CANCEL_DISABLE);
  mprof__unlock(&dump_rank);
  assert_int_equal(cancel_state(), PTHREAD_CANCEL_ENABLE);
  /* A thread that had it off keeps it off. */
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
  mprof__lock(&dump_rank);
  mprof__unlock(&dump_rank);
  assert_int_equal(cancel_state(), PTHREAD_CANCEL_DISABLE);
  pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
  /* After fork() the child re-initialises a lock its thread took: the count and state too. */
  mprof__lock(&forked);
  mprof__lock_reinit(&forked);
  assert_false(mprof__lock_held_by_thread());
  assert_int_equal(cancel_state(), PTHREAD_CANCEL_ENABLE);
}

static void* cancelled_while_holding(void* arg) {
  (void)arg;
  mprof__lock(&dump_rank);
  pthread_testcancel(); /* not acted on: cancellation is off */
  mprof__unlock(&dump_rank);
  pthread_testcancel(); /* acted on here */
  return NULL;
}

static void test_a_cancel_waits_until_the_dump_lock_is_released(void** state) {
  (void)state;
  pthread_t t;
  mprof__lock(&dump_rank); /* the thread waits for it while the cancel becomes pending */
  assert_int_equal(pthread_create(&t, NULL, cancelled_while_holding, NULL), 0);
  pthread_cancel(t);
  mprof__unlock(&dump_rank);
  void* ret = NULL;
  pthread_join(t, &ret);
  assert_ptr_equal(ret, PTHREAD_CANCELED);
  assert_true(mprof__trylock(&dump_rank)); /* released by the cancelled thread */
  mprof__unlock(&dump_rank);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_a_held_lock_is_seen_by_the_thread_until_released),
      cmocka_unit_test(test_cancellation_is_off_under_the_dump_lock_and_restored_after),
      cmocka_unit_test(test_a_cancel_waits_until_the_dump_lock_is_released),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
