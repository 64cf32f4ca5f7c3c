/* Lock wrapper: cancellation safety, re-entry detection and rank checking in debug builds (see
 * mprof_lock.h for the order). */
#include "mprof_lock.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

/* Profiler locks this thread holds or is acquiring (raised before the mutex is taken, lowered
 * after it is released, so that a signal handler never sees 0 while a lock is held), and the
 * thread's cancellation state from before it took the dump lock. volatile: read by signal
 * handlers of the same thread. Initial-exec TLS: no allocation on first use. */
static __thread volatile int held_depth __attribute__((tls_model("initial-exec")));
static __thread int saved_cancel_state __attribute__((tls_model("initial-exec")));

/* Sections under the dump lock do I/O (open, write and close are cancellation points), and a
 * thread cancelled there would never release the lock: cancellation is disabled
 * while the dump lock is held and comes back with its release (a pending cancel then acts at the
 * thread's next cancellation point, outside the profiler). Every other lock guards memory-only
 * work with no cancellation point, which deferred cancellation cannot interrupt; the dump lock
 * has the lowest rank, so it is always the outermost lock held. */
static void depth_up(const mprof_lock_t* l) {
  if (l->rank == MPROF_RANK_DUMP) {
    int old = PTHREAD_CANCEL_ENABLE;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
    saved_cancel_state = old;
  }
  held_depth = held_depth + 1;
}

static void depth_down(const mprof_lock_t* l) {
  held_depth = held_depth - 1;
  if (l->rank == MPROF_RANK_DUMP) pthread_setcancelstate(saved_cancel_state, NULL);
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
  depth_up(l);
  pthread_mutex_lock(&l->mu);
#ifdef MPROF_DEBUG_LOCKS
  held_ranks |= 1u << l->rank;
#endif
}

bool mprof__trylock(mprof_lock_t* l) {
#ifdef MPROF_DEBUG_LOCKS
  if (held_ranks >> l->rank) rank_violation("trying", l->rank);
#endif
  depth_up(l);
  if (pthread_mutex_trylock(&l->mu) != 0) {
    depth_down(l);
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
  depth_down(l);
}

void mprof__lock_reinit(mprof_lock_t* l) {
  pthread_mutex_init(&l->mu, NULL);
#ifdef MPROF_DEBUG_LOCKS
  held_ranks &= ~(1u << l->rank);
#endif
  depth_down(l);
}
