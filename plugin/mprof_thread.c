/* Per-thread sampling state and stack capture (see mprof_thread.h).
 *
 * On x86-64 with glibc's _dl_find_object (MPROF_OWN_UNWIND) stacks are taken with the profiler's
 * own unwinder (mprof_unwind.h), which walks the DWARF call-frame information (so code built
 * without frame pointers is handled) with a rule cache shared by all threads, and reads only
 * inside the thread's stack bounds (found here, once per thread). It drops the profiler's own
 * frames as it walks, so the buffer holds exactly the requested depth, and a thread's first
 * sample maps and allocates nothing of its own (the initial thread's opens and closes
 * /proc/self/maps once). Elsewhere libunwind's unw_backtrace is used; the buffer then also holds
 * MPROF_SELF_FRAMES_MAX frames for the profiler's own frames, which are dropped afterwards. */
#include "mprof_thread.h"
#include "mprof_math.h"

#include "mprof_meta.h"

#if defined(MPROF_OWN_UNWIND)
#include "mprof_unwind.h"
#else
#define UNW_LOCAL_ONLY
#include <libunwind.h>
#endif
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

__thread mprof_thread_t mprof__thread __attribute__((tls_model("initial-exec")));

static uintptr_t self_lo, self_hi; /* written once at init, before any sample */

void mprof__thread_set_self_range(uintptr_t lo, uintptr_t hi) {
  self_lo = lo;
  self_hi = hi;
}

void mprof__thread_seed(mprof_thread_t* t) {
  static _Atomic uint64_t counter;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)getpid() << 16 ^
               (uintptr_t)t ^
               atomic_fetch_add_explicit(&counter, 0x9e3779b97f4a7c15ull, memory_order_relaxed);
  /* splitmix64 finaliser so that close seeds give unrelated streams */
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  t->rng = x ? x : 1;
}

static uint64_t next_random(mprof_thread_t* t) {
  uint64_t x = t->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  t->rng = x;
  return x * 0x2545f4914f6cdd1dull;
}

uint64_t mprof__thread_next_interval(mprof_thread_t* t, uint64_t mean) {
  if (mean <= 1) return 0;
  /* u uniform in (0, 1]: 53 random bits, never 0 so that log(u) is finite. */
  double u = (double)((next_random(t) >> 11) + 1) * (1.0 / 9007199254740992.0);
  double x = -mprof__log(u) * (double)mean;
  if (x >= 1.8e19) return UINT64_MAX - 1;
  return (uint64_t)x;
}

uint32_t mprof__thread_capture(mprof_thread_t* t, unsigned depth, unsigned skip) {
#if defined(MPROF_OWN_UNWIND)
  unsigned want = depth;
#else
  unsigned want = depth + skip + MPROF_SELF_FRAMES_MAX;
#endif
  if (t->stack == NULL || t->stack_cap < want) {
    mprof__thread_release(t);
    t->stack = mprof__meta_alloc(want * sizeof(uintptr_t));
    if (t->stack == NULL) return 0;
    t->stack_cap = want;
  }
  return mprof__thread_capture_into(t->stack, want, depth, skip);
}

uint32_t mprof__thread_capture_into(uintptr_t* buf, unsigned cap, unsigned depth, unsigned skip) {
#if defined(MPROF_OWN_UNWIND)
  /* The walker drops the profiler's frames and `skip` as it goes: cap >= depth is enough. */
  return mprof__unwind(buf, depth < cap ? depth : cap, self_lo, self_hi, skip);
#else
  int n = unw_backtrace((void**)buf, (int)cap);
  if (n <= 0) return 0;
  unsigned first = 0;
  while (first < (unsigned)n && buf[first] >= self_lo && buf[first] < self_hi)
    first++;
  first += skip;
  if (first >= (unsigned)n) return 0;
  unsigned kept = (unsigned)n - first;
  if (kept > depth) kept = depth;
  for (unsigned i = 0; i < kept; i++)
    buf[i] = buf[first + i];
  return kept;
#endif
}

void mprof__thread_release(mprof_thread_t* t) {
  if (t->stack != NULL) mprof__meta_free(t->stack, t->stack_cap * sizeof(uintptr_t));
  t->stack = NULL;
  t->stack_cap = 0;
}

/* ---------------------------------------------------------------------------------------------
 * Stack bounds
 * ------------------------------------------------------------------------------------------- */

/* The mapping of /proc/self/maps that contains sp, and the end of the mapping below it. Parsed
 * as it is read (the fields wanted are the two hex addresses that start each line), so neither
 * stdio nor memory is needed. */
static bool find_mapping(uintptr_t sp, uintptr_t* start, uintptr_t* end, uintptr_t* below) {
  int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[1024];
  uintptr_t a = 0, b = 0, prev_end = 0;
  int field = 0; /* 0: start, 1: end, 2: the rest of the line */
  bool found = false;
  ssize_t n;
  while (!found && (n = read(fd, buf, sizeof buf)) > 0) {
    for (ssize_t i = 0; i < n && !found; i++) {
      char c = buf[i];
      if (c == '\n') {
        if (field == 2) {
          if (a <= sp && sp < b) {
            *start = a;
            *end = b;
            *below = prev_end;
            found = true;
          } else if (b <= sp) {
            prev_end = b;
          }
        }
        a = b = 0;
        field = 0;
      } else if (field < 2) {
        unsigned d = c >= '0' && c <= '9'   ? (unsigned)(c - '0')
                     : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                                            : 16u;
        if (d < 16) {
          if (field == 0)
            a = a << 4 | d;
          else
            b = b << 4 | d;
        } else {
          field = field == 0 && c == '-' ? 1 : 2;
        }
      }
    }
  }
  close(fd);
  return found;
}

static bool initial_thread_bounds(uintptr_t sp, uintptr_t* lo, uintptr_t* hi) {
  uintptr_t start, end, below;
  if (!find_mapping(sp, &start, &end, &below)) return false;
  /* The stack grows down to RLIMIT_STACK below its top, and never into the mapping below. */
  uintptr_t low = below;
  struct rlimit rl;
  if (getrlimit(RLIMIT_STACK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < end &&
      end - rl.rlim_cur > low)
    low = end - (uintptr_t)rl.rlim_cur;
  if (low > start) low = start;
  *lo = low;
  *hi = end;
  return true;
}

static bool other_thread_bounds(uintptr_t* lo, uintptr_t* hi) {
  pthread_attr_t attr;
  mprof__thread.busy++; /* glibc allocates the CPU set of the attributes: not sampled */
  bool ok = pthread_getattr_np(pthread_self(), &attr) == 0;
  if (ok) {
    void* addr;
    size_t size;
    ok = pthread_attr_getstack(&attr, &addr, &size) == 0 && addr != NULL && size > 0;
    if (ok) {
      *lo = (uintptr_t)addr;
      *hi = (uintptr_t)addr + size;
    }
    pthread_attr_destroy(&attr);
  }
  mprof__thread.busy--;
  return ok;
}

void mprof__thread_find_stack(mprof_thread_t* t) {
  uintptr_t sp = (uintptr_t)__builtin_frame_address(0);
  uintptr_t l = 1, h = 1;
  /* Another thread's stack is the mapping that holds its stack pointer (glibc maps it apart from
   * its guard page): read from /proc/self/maps first, which allocates nothing, since the first
   * unwind on a thread may run in a signal handler that interrupted the allocator (a dump from a
   * handler, rel.locks.sigstorm); pthread_getattr_np, which allocates, only if that fails. */
  uintptr_t start, end, below;
  bool ok;
  if (gettid() == getpid()) {
    ok = initial_thread_bounds(sp, &l, &h);
  } else if (find_mapping(sp, &start, &end, &below)) {
    l = start;
    h = end;
    ok = true;
  } else {
    ok = other_thread_bounds(&l, &h);
  }
  if (!ok || sp < l || sp >= h) l = h = 1; /* not found, or not where this thread runs */
  t->stack_lo = l;
  t->stack_hi = h & ~(uintptr_t)7;
}
