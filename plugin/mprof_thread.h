/* Per-thread state: the sampling countdown, the re-entry guard and the stack buffer.
 *
 * The glue's fast path touches only `countdown`: an allocation of n bytes subtracts n and takes
 * the slow path when that borrows (n > countdown). The countdown is an exponentially distributed
 * byte interval (mean 2^lg_prof_sample), so an allocation of n bytes is sampled with probability
 * 1 - exp(-n / mean), independently of every other allocation (a Poisson process over bytes).
 * A countdown of 0 sends the next allocation of at least one byte to the slow path (a new thread
 * starts that way); UINT64_MAX keeps a thread out of it for good (prof:false).
 *
 * The struct lives in initial-exec TLS (no allocation on first access) and is kept small: the
 * stack buffer is allocated from profiler memory on the thread's first sample (seed: per-thread
 * stack buffers, so the depth is not limited by what fits on the C stack). */
#ifndef MPROF_THREAD_H
#define MPROF_THREAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct mprof_thread_s {
  uint64_t countdown; /* bytes until the next sample on this thread; must stay first */
  volatile int busy;  /* re-entry guard: nonzero while the profiler runs on this thread (volatile:
                          glibc leaf functions may call back into malloc) */
  uint32_t state;     /* MPROF_THREAD_* */
  uint64_t rng;       /* xorshift64* state for the interval draws */
  uintptr_t* stack;   /* stack_cap return addresses, profiler memory; NULL until first sample */
  uint32_t stack_cap; /* entries in stack */
  uintptr_t stack_lo; /* the thread's stack, [stack_lo, stack_hi): 0, 0 until the first walk; */
  uintptr_t stack_hi; /* 1, 1 when it could not be found (see mprof__thread_stack_bounds) */
} mprof_thread_t;

enum {
  MPROF_THREAD_NEW = 0,  /* never seen the slow path */
  MPROF_THREAD_LIVE = 1, /* registered for teardown, sampling */
  MPROF_THREAD_DEAD = 2, /* torn down: never samples again */
};

extern __thread mprof_thread_t mprof__thread __attribute__((tls_model("initial-exec")));

/* The unsampled fast path: subtracts n from the countdown and returns true when that goes below
 * zero, i.e. when the allocation crosses the next sample point and must go to the slow path
 * (which then sets a fresh countdown). On x86-64 this is one subtract from TLS and one branch on
 * its borrow. A zero-byte allocation never crosses a sample point. */
static inline bool mprof__thread_countdown_expired(size_t n) {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__SANITIZE_THREAD__)
  /* Compilers load, subtract and store; a subtract straight into TLS saves two instructions on
   * every malloc. `countdown` is the first field of mprof__thread. */
  __asm__ goto("movq mprof__thread@gottpoff(%%rip), %%rax\n\t"
               "subq %0, %%fs:(%%rax)\n\t"
               "jb %l[expired]"
               :
               : "r"((uint64_t)n)
               : "rax", "cc", "memory"
               : expired);
  return false;
expired:
  return true;
#else
  return __builtin_expect(
      __builtin_sub_overflow(mprof__thread.countdown, (uint64_t)n, &mprof__thread.countdown), 0);
#endif
}

/* Draws the next exponentially distributed interval with the given mean (bytes). A mean of 1
 * (lg_prof_sample:0) returns 0 so that every allocation (of at least one byte) is sampled. */
uint64_t mprof__thread_next_interval(mprof_thread_t* t, uint64_t mean);

/* Seeds the thread's generator (called once per thread; distinct across threads and forks). */
void mprof__thread_seed(mprof_thread_t* t);

/* Captures the calling thread's stack into t->stack, dropping the leading frames that belong to
 * the profiler (see mprof__thread_set_self_range) and then `skip` more. Returns the number of
 * frames kept (at most `depth`), 0 if no buffer could be had. Never allocates from the heap. */
uint32_t mprof__thread_capture(mprof_thread_t* t, unsigned depth, unsigned skip);

/* The same into buf (cap entries; at most cap frames are kept, and off x86-64 cap must leave room
 * for skip + MPROF_SELF_FRAMES_MAX frames beyond depth): for callers that keep stacks of their
 * own (the contention profile's per-thread slots). */
uint32_t mprof__thread_capture_into(uintptr_t* buf, unsigned cap, unsigned depth, unsigned skip);

/* Most leading frames of the profiler's own that a capture drops (room kept for them). */
#define MPROF_SELF_FRAMES_MAX 16

/* The calling thread's stack, [*lo, *hi), found on its first call and cached in mprof__thread:
 * for the process's initial thread (and a fork child's only thread) the mapping that holds the
 * stack pointer in /proc/self/maps (open and read, no stdio), extended downwards as far as the
 * stack may grow (RLIMIT_STACK, never past the mapping below); for other threads the mapping that
 * holds the stack pointer (nothing allocated: the first unwind may run in a signal handler that
 * interrupted the allocator), else pthread_getattr_np with the re-entry guard raised (glibc
 * allocates the CPU set there). Both are
 * computed once per thread and the walk reads them only; *lo == *hi when nothing was found. */
void mprof__thread_find_stack(mprof_thread_t* t);
static inline void mprof__thread_stack_bounds(uintptr_t* lo, uintptr_t* hi) {
  mprof_thread_t* t = &mprof__thread;
  if (__builtin_expect(t->stack_hi == 0, 0)) mprof__thread_find_stack(t);
  *lo = t->stack_lo;
  *hi = t->stack_hi;
}

/* Leading frames with an address in [lo, hi) are the profiler's own and are dropped. */
void mprof__thread_set_self_range(uintptr_t lo, uintptr_t hi);

/* Releases the stack buffer (thread exit). */
void mprof__thread_release(mprof_thread_t* t);

#endif
