/* Lock wrapper: the per-thread count of held locks (re-entry detection, deferred contention
 * records), cancellation safety, contention sampling, and rank checking in debug builds (see
 * mprof_lock.h for the order). */
#include "mprof_lock.h"

#include <assert.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Profiler locks this thread holds or is acquiring (raised before the mutex is taken, lowered
 * after it is released, so that a signal handler never sees 0 while a lock is held); the one
 * count behind EDEADLK for re-entry and behind the contention profile's pending slot (an event
 * met while it is nonzero waits there until it drops to 0). Then the thread's cancellation state
 * from before it took the dump lock. volatile: read by signal handlers of the same thread.
 * Initial-exec TLS: no allocation on first use. */
__thread volatile unsigned mprof__lock_depth __attribute__((tls_model("initial-exec")));
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
  mprof__lock_depth = mprof__lock_depth + 1;
}

static void depth_down(const mprof_lock_t* l) {
  mprof__lock_depth = mprof__lock_depth - 1;
  if (l->rank == MPROF_RANK_DUMP) pthread_setcancelstate(saved_cancel_state, NULL);
}

bool mprof__lock_held_by_thread(void) {
  return mprof__lock_depth != 0;
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

/* The contention profile's part (mprof__lock_set_contention); NULL until it starts. */
static void (*_Atomic contended_fn)(mprof_lock_t* l);
static void (*_Atomic idle_fn)(void);
__thread uint32_t mprof__lock_deferred __attribute__((tls_model("initial-exec")));

void mprof__lock_set_contention(void (*contended)(mprof_lock_t* l), void (*idle)(void)) {
  atomic_store_explicit(&idle_fn, idle, memory_order_release);
  atomic_store_explicit(&contended_fn, contended, memory_order_release);
}

/* Without the interposer (unit tests, the static core) glibc's own; mprof_mutex_app.c replaces
 * it in libmprof.so. */
__attribute__((weak)) int mprof__sys_mutex_lock(pthread_mutex_t* m) {
  return pthread_mutex_lock(m);
}

/* The first try failed: wait, timed by the contention profile if it samples the wait. The count
 * already includes l (depth_up came first). */
__attribute__((noinline)) static void lock_contended(mprof_lock_t* l) {
  void (*fn)(mprof_lock_t*) = atomic_load_explicit(&contended_fn, memory_order_acquire);
  if (fn != NULL)
    fn(l);
  else
    mprof__sys_mutex_lock(&l->mu);
}

/* The thread's count dropped to 0 while the contention profile keeps an event for that moment. */
__attribute__((noinline)) static void lock_idle(void) {
  void (*fn)(void) = atomic_load_explicit(&idle_fn, memory_order_acquire);
  if (fn != NULL) fn();
}

void mprof__lock(mprof_lock_t* l) {
#ifdef MPROF_DEBUG_LOCKS
  if (held_ranks >> l->rank) rank_violation("acquiring", l->rank);
#endif
  depth_up(l);
  if (pthread_mutex_trylock(&l->mu) != 0) lock_contended(l);
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
  if (mprof__lock_depth == 0 && mprof__lock_deferred != 0) lock_idle();
}

void mprof__lock_reset(mprof_lock_t* l) {
  pthread_mutex_init(&l->mu, NULL);
}

void mprof__lock_reinit(mprof_lock_t* l) {
  pthread_mutex_init(&l->mu, NULL);
#ifdef MPROF_DEBUG_LOCKS
  held_ranks &= ~(1u << l->rank);
#endif
  depth_down(l);
}
