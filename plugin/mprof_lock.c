/* Lock wrapper: cancellation safety, re-entry detection and rank checking in debug builds (see
 * mprof_lock.h for the order). */
#include "mprof_lock.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

/* Profiler locks this thread holds or is acquiring (raised before the mutex is taken, lowered
 * after it is released, so that a signal handler never sees 0 while a lock is held), and the
 * thread's cancellation state from before its first lock. volatile: read by signal handlers of
 * the same thread. Initial-exec TLS: no allocation on first use. */
static __thread volatile int held_depth __attribute__((tls_model("initial-exec")));
static __thread int saved_cancel_state __attribute__((tls_model("initial-exec")));

static void depth_up(void) {
  if (held_depth == 0) {
    /* open, write and close are cancellation points: a thread cancelled while it holds a
     * profiler lock would never release it. Cancellation waits until the last lock is gone. */
    int old = PTHREAD_CANCEL_ENABLE;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
    saved_cancel_state = old;
  }
  held_depth = held_depth + 1;
}

static void depth_down(void) {
  held_depth = held_depth - 1;
  if (held_depth == 0) pthread_setcancelstate(saved_cancel_state, NULL);
}

bool mprof__lock_held_by_thread(void) {
  return held_depth != 0;
}

#ifdef MPROF_DEBUG_LOCKS
/* Bit r is set while this thread holds a lock of rank r. Future-slot and blockmap-shard locks
 * share a rank, so holding two of one rank is itself an order violation. */
static _Thread_local unsigned held_ranks;

static void rank_violation(const char* what, mprof_rank_t rank) {
  char msg[96];
  snprintf(msg, sizeof msg, "mprof: lock order violation: %s rank %d with mask 0x%x\n", what,
           (int)rank, held_ranks);
  fputs(msg, stderr);
  abort();
}

void mprof__lock_assert_held(const mprof_lock_t* l) {
  if (!(held_ranks & (1u << l->rank))) rank_violation("lock not held", l->rank);
}
#endif

void mprof__lock(mprof_lock_t* l) {
#ifdef MPROF_DEBUG_LOCKS
  if (held_ranks >> l->rank) rank_violation("acquiring", l->rank);
#endif
  depth_up();
  pthread_mutex_lock(&l->mu);
#ifdef MPROF_DEBUG_LOCKS
  held_ranks |= 1u << l->rank;
#endif
}

bool mprof__trylock(mprof_lock_t* l) {
#ifdef MPROF_DEBUG_LOCKS
  if (held_ranks >> l->rank) rank_violation("trying", l->rank);
#endif
  depth_up();
  if (pthread_mutex_trylock(&l->mu) != 0) {
    depth_down();
    return false;
  }
#ifdef MPROF_DEBUG_LOCKS
  held_ranks |= 1u << l->rank;
#endif
  return true;
}

void mprof__unlock(mprof_lock_t* l) {
#ifdef MPROF_DEBUG_LOCKS
  held_ranks &= ~(1u << l->rank);
#endif
  pthread_mutex_unlock(&l->mu);
  depth_down();
}

void mprof__lock_reinit(mprof_lock_t* l) {
  pthread_mutex_init(&l->mu, NULL);
#ifdef MPROF_DEBUG_LOCKS
  held_ranks &= ~(1u << l->rank);
#endif
  depth_down();
}
