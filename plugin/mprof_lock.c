/* Lock wrapper: rank checking in debug builds (see mprof_lock.h for the order). */
#include "mprof_lock.h"

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

void mprof__lock(mprof_lock_t* l) {
#ifdef MPROF_DEBUG_LOCKS
  if (held_ranks >> l->rank) rank_violation("acquiring", l->rank);
#endif
  pthread_mutex_lock(&l->mu);
#ifdef MPROF_DEBUG_LOCKS
  held_ranks |= 1u << l->rank;
#endif
}

bool mprof__trylock(mprof_lock_t* l) {
#ifdef MPROF_DEBUG_LOCKS
  if (held_ranks >> l->rank) rank_violation("trying", l->rank);
#endif
  if (pthread_mutex_trylock(&l->mu) != 0) return false;
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
}

void mprof__lock_reinit(mprof_lock_t* l) {
  pthread_mutex_init(&l->mu, NULL);
#ifdef MPROF_DEBUG_LOCKS
  held_ranks &= ~(1u << l->rank);
#endif
}
