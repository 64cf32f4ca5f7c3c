/* The program's own mutexes in the contention profile (prof_mutex_app).
 *
 * Each library (libmprof.so, libmprof-jemalloc.so) exports pthread_mutex_lock and
 * pthread_mutex_timedlock, so the program's calls (and its libraries') come here first. Each is one indirect jump through a pointer: to glibc's
 * function while the program's mutexes are not profiled (one instruction more than glibc alone),
 * to lock_on/timedlock_on while they are. There a mutex that looks free goes straight to glibc
 * (five instructions more than glibc alone); one that looks taken is tried, and only when that
 * fails is the wait sampled; a sampled wait is timed and recorded with the caller's stack.
 * Mutexes of the library itself (in its data) and calls from inside the profiler are passed
 * through.
 *
 * This file is linked into each library, not into the static core the unit tests use.
 * pthread_mutex_unlock, trylock, rwlocks and spinlocks are not interposed (see docs/DESIGN.md). */
#include "mprof_lock.h"
#include "mprof_mutex.h"
#include "mprof_thread.h"

#include <dlfcn.h>
#include <link.h>
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

static int lock_on(pthread_mutex_t* m);
static int timedlock_on(pthread_mutex_t* m, const struct timespec* ts);

/* Where the exported functions jump: glibc's, or the profiling versions. */
static _Atomic(lock_fn) lock_impl = resolve_lock;
static _Atomic(timedlock_fn) timedlock_impl = resolve_timedlock;
static _Atomic int app_on;

/* The writable segments of this library: a mutex there is the library's own. */
static uintptr_t own_lo, own_hi;

typedef struct own_range_s {
  uintptr_t base, lo, hi;
} own_range_t;

static int find_own(struct dl_phdr_info* info, size_t size, void* arg) {
  (void)size;
  own_range_t* r = arg;
  if (info->dlpi_addr != r->base) return 0;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr)* ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_W)) continue;
    uintptr_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
    if (r->lo == 0 || lo < r->lo) r->lo = lo;
    if (hi > r->hi) r->hi = hi;
  }
  return 1;
}

/* dladdr and dl_iterate_phdr take the loader's lock: looked up once, by the first of this
 * file's constructor and the core's first switch (made from the glue's constructor at the
 * earliest), so while this library is being loaded and that lock is the loading thread's own.
 * A later switch (a mprof_ctl from a signal handler that interrupted a dlopen) never asks the
 * loader; a lookup that failed leaves the range empty (no mutex counts as the library's own). */
static _Atomic bool own_looked;

static void find_own_range(void) {
  Dl_info info;
  if (atomic_exchange(&own_looked, true) || dladdr(&own_lo, &info) == 0) return;
  own_range_t r = {(uintptr_t)info.dli_fbase, 0, 0};
  dl_iterate_phdr(find_own, &r);
  own_lo = r.lo;
  own_hi = r.hi;
}

/* Points the exported functions at what app_on says; a switch that raced with another looks
 * again, so the last one wins. */
static void switch_impl(void) {
  bool on;
  do {
    on = atomic_load(&app_on);
    atomic_store(&lock_impl, on ? lock_on : atomic_load(&real_lock));
    atomic_store(&timedlock_impl, on ? timedlock_on : atomic_load(&real_timedlock));
  } while (atomic_load(&app_on) != on);
}

static void resolve(void) {
  lock_fn l;
  timedlock_fn tl;
  *(void**)&l = dlsym(RTLD_NEXT, "pthread_mutex_lock");
  *(void**)&tl = dlsym(RTLD_NEXT, "pthread_mutex_timedlock");
  if (l != NULL) atomic_store_explicit(&real_lock, l, memory_order_relaxed);
  if (tl != NULL) atomic_store_explicit(&real_timedlock, tl, memory_order_relaxed);
  switch_impl();
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
  find_own_range();
  resolve();
}

/* Called by the core whenever the program's mutexes start or stop being profiled (maybe before
 * this file's constructor ran: the core starts from the glue's). */
void mprof__mutex_app_switch(bool on) {
  if (on) find_own_range();
  atomic_store(&app_on, on);
  switch_impl();
}

int mprof__sys_mutex_lock(pthread_mutex_t* m) {
  return atomic_load_explicit(&real_lock, memory_order_relaxed)(m);
}

/* A contended wait on a program's mutex, sampled with `weight`. */
static int timed_wait(pthread_mutex_t* m, const struct timespec* abstime, uint64_t weight) {
  mprof_mtx_thread_t* t = &mprof__mtx_thread;
  mprof__thread.busy++; /* allocations by what the profiler calls are not sampled */
  mprof__mutex_prepare(t, 0);
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
__attribute__((noinline)) static int lock_taken(pthread_mutex_t* m,
                                                const struct timespec* abstime) {
  int r = pthread_mutex_trylock(m);
  if (r != EBUSY) return r;
  /* Not the program's: calls from inside the profiler, and the library's own mutexes. */
  bool mine = mprof__thread.busy || ((uintptr_t)m - own_lo < own_hi - own_lo);
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

static int lock_on(pthread_mutex_t* m) {
  if (__builtin_expect(looks_free(m), 1))
    return atomic_load_explicit(&real_lock, memory_order_relaxed)(m);
  return lock_taken(m, NULL);
}

static int timedlock_on(pthread_mutex_t* m, const struct timespec* abstime) {
  if (__builtin_expect(looks_free(m), 1))
    return atomic_load_explicit(&real_timedlock, memory_order_relaxed)(m, abstime);
  return lock_taken(m, abstime);
}

MPROF_PUBLIC int pthread_mutex_lock(pthread_mutex_t* m) {
  return atomic_load_explicit(&lock_impl, memory_order_relaxed)(m);
}

MPROF_PUBLIC int pthread_mutex_timedlock(pthread_mutex_t* m, const struct timespec* abstime) {
  return atomic_load_explicit(&timedlock_impl, memory_order_relaxed)(m, abstime);
}
