/* The program's own mutexes in the contention profile (prof_mutex_app).
 *
 * libmprof.so exports pthread_mutex_lock and pthread_mutex_timedlock, so the program's calls (and
 * its libraries') come here first. With the profile off each costs one flag test more than
 * glibc's (a load, a branch and a jump to glibc). With it on, a mutex that looks free goes
 * straight to glibc too (two instructions more); one that looks taken is tried, and only when
 * that fails is the wait sampled; a sampled wait is timed and recorded with the caller's stack. Calls from inside the profiler and from libmprof.so's own code are passed through.
 *
 * This file is linked into libmprof.so only, not into the static core the unit tests use.
 * pthread_mutex_unlock, trylock, rwlocks and spinlocks are not interposed (see docs/DESIGN.md). */
#include "mprof_mutex.h"
#include "mprof_thread.h"

#include <dlfcn.h>
#include <errno.h>
#include <time.h>

#define MPROF_PUBLIC __attribute__((visibility("default")))

typedef int (*lock_fn)(pthread_mutex_t*);
typedef int (*timedlock_fn)(pthread_mutex_t*, const struct timespec*);

static int resolve_lock(pthread_mutex_t* m);
static int resolve_timedlock(pthread_mutex_t* m, const struct timespec* ts);

/* glibc's functions, found with dlsym(RTLD_NEXT) on first use (dlsym takes only the loader's
 * internal lock, never the public pthread_mutex_lock). */
static _Atomic(lock_fn) real_lock = resolve_lock;
static _Atomic(timedlock_fn) real_timedlock = resolve_timedlock;

static void resolve(void) {
  lock_fn l;
  timedlock_fn tl;
  *(void**)&l = dlsym(RTLD_NEXT, "pthread_mutex_lock");
  *(void**)&tl = dlsym(RTLD_NEXT, "pthread_mutex_timedlock");
  if (l != NULL) atomic_store_explicit(&real_lock, l, memory_order_relaxed);
  if (tl != NULL) atomic_store_explicit(&real_timedlock, tl, memory_order_relaxed);
}

static int resolve_lock(pthread_mutex_t* m) {
  resolve();
  lock_fn l = atomic_load_explicit(&real_lock, memory_order_relaxed);
  return l != resolve_lock ? l(m) : ENOSYS;
}

static int resolve_timedlock(pthread_mutex_t* m, const struct timespec* ts) {
  resolve();
  timedlock_fn tl = atomic_load_explicit(&real_timedlock, memory_order_relaxed);
  return tl != resolve_timedlock ? tl(m, ts) : ENOSYS;
}

__attribute__((constructor)) static void mprof_mutex_app_init(void) {
  resolve();
}

int mprof__sys_mutex_lock(pthread_mutex_t* m) {
  return atomic_load_explicit(&real_lock, memory_order_relaxed)(m);
}

/* A contended wait on a program's mutex, sampled with `weight`. */
static int timed_wait(pthread_mutex_t* m, const struct timespec* abstime, uint64_t weight) {
  mprof_mtx_thread_t* t = &mprof__mtx_thread;
  mprof__thread.busy++; /* allocations by what the profiler calls are not sampled */
  mprof__mutex_prepare(t);
  mprof__thread.busy--;
  uint64_t t0 = mprof__mutex_now();
  int r = abstime ? atomic_load_explicit(&real_timedlock, memory_order_relaxed)(m, abstime)
                  : atomic_load_explicit(&real_lock, memory_order_relaxed)(m);
  uint64_t t1 = mprof__mutex_now();
  if (r == 0 || r == EOWNERDEAD) {
    int saved = errno;
    mprof__thread.busy++;
    uint32_t n = mprof__mutex_capture(t, NULL); /* holding m, see mprof_mutex.h */
    mprof__mutex_event(t, n, weight, t1 - t0);
    mprof__thread.busy--;
    errno = saved;
  }
  return r;
}

/* The mutex looked taken: try it (it may have been freed since, or be ours if recursive); if
 * that fails with EBUSY the acquisition is contended. Anything but EBUSY is what lock would have
 * returned too (0, EOWNERDEAD for a robust mutex, EAGAIN at the recursion limit). */
__attribute__((noinline)) static int lock_taken(pthread_mutex_t* m, const struct timespec* abstime,
                                                void* ra) {
  int r = pthread_mutex_trylock(m);
  if (r != EBUSY) return r;
  /* Not the program's: the profiler's own calls, and the glue's (libmprof.so's code). */
  bool mine = mprof__thread.busy || mprof__thread_in_self((uintptr_t)ra);
  uint64_t weight = mine ? 0 : mprof__mutex_sample();
  if (weight == 0)
    return abstime ? atomic_load_explicit(&real_timedlock, memory_order_relaxed)(m, abstime)
                   : atomic_load_explicit(&real_lock, memory_order_relaxed)(m);
  return timed_wait(m, abstime, weight);
}

/* Whether the mutex is free: glibc's lock word (first member of every mutex type) is 0 then.
 * A peek, not a try: glibc's pthread_mutex_trylock costs about twice its pthread_mutex_lock on
 * an uncontended mutex (measured, docs/BENCHMARKS.md), which would be most of the cost of the
 * profile on every lock. The price: a mutex taken by another thread in the few instructions
 * between the peek and glibc's own attempt is waited for untimed. */
static inline bool looks_free(pthread_mutex_t* m) {
  return atomic_load_explicit((_Atomic int*)&m->__data.__lock, memory_order_relaxed) == 0;
}

MPROF_PUBLIC int pthread_mutex_lock(pthread_mutex_t* m) {
  if (__builtin_expect(!atomic_load_explicit(&mprof__mutex_app_on, memory_order_relaxed), 1) ||
      __builtin_expect(looks_free(m), 1))
    return atomic_load_explicit(&real_lock, memory_order_relaxed)(m);
  return lock_taken(m, NULL, __builtin_return_address(0));
}

MPROF_PUBLIC int pthread_mutex_timedlock(pthread_mutex_t* m, const struct timespec* abstime) {
  if (__builtin_expect(!atomic_load_explicit(&mprof__mutex_app_on, memory_order_relaxed), 1) ||
      __builtin_expect(looks_free(m), 1))
    return atomic_load_explicit(&real_timedlock, memory_order_relaxed)(m, abstime);
  return lock_taken(m, abstime, __builtin_return_address(0));
}
