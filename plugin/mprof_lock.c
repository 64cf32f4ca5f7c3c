/* Lock wrapper: contention sampling, held-lock counting, and rank checking in debug builds (see
 * mprof_lock.h for the order). */
#include "mprof_lock.h"

#include "mprof_mutex.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

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

/* The first try failed: wait, timing the wait if the contention profile samples it. */
__attribute__((noinline)) static void lock_contended(mprof_lock_t* l) {
  mprof_mtx_thread_t* t = &mprof__mtx_thread;
  uint64_t weight = mprof__mutex_sample();
  if (weight == 0) {
    mprof__sys_mutex_lock(&l->mu);
    t->held++;
    return;
  }
  mprof__mutex_prepare(t);
  uint64_t t0 = mprof__mutex_now();
  mprof__sys_mutex_lock(&l->mu);
  uint64_t t1 = mprof__mutex_now();
  t->held++; /* it holds l now: the event waits in the pending slot until it holds none */
  uint32_t n = mprof__mutex_capture(t, l->name);
  mprof__mutex_event(t, n, weight, t1 - t0);
}

void mprof__lock(mprof_lock_t* l) {
#ifdef MPROF_DEBUG_LOCKS
  if (held_ranks >> l->rank) rank_violation("acquiring", l->rank);
#endif
  if (pthread_mutex_trylock(&l->mu) == 0)
    mprof__mtx_thread.held++;
  else
    lock_contended(l);
#ifdef MPROF_DEBUG_LOCKS
  held_ranks |= 1u << l->rank;
#endif
}

bool mprof__trylock(mprof_lock_t* l) {
#ifdef MPROF_DEBUG_LOCKS
  if (held_ranks >> l->rank) rank_violation("trying", l->rank);
#endif
  if (pthread_mutex_trylock(&l->mu) != 0) return false;
  mprof__mtx_thread.held++;
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
  mprof_mtx_thread_t* t = &mprof__mtx_thread;
  if (--t->held == 0 && t->pend_n != 0) mprof__mutex_flush();
}

void mprof__lock_reinit(mprof_lock_t* l) {
  pthread_mutex_init(&l->mu, NULL);
  if (mprof__mtx_thread.held > 0) mprof__mtx_thread.held--;
#ifdef MPROF_DEBUG_LOCKS
  held_ranks &= ~(1u << l->rank);
#endif
}
