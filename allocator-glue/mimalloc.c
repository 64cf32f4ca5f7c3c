/* The mimalloc glue: libmprof.so serves the malloc family from mimalloc and connects it to the
 * profiling core through the callbacks of mprof_hooks.h.
 *
 * mimalloc 2.0.9 has no profiling hooks, so this file does the allocator's part itself:
 *   - the fast path of every allocation is the core's per-thread countdown (one compare, one
 *     subtraction, a predictable branch) in front of the plain mi_ call;
 *   - a sampled allocation is placed in one heap of an *exclusive arena* reserved at start-up
 *     (mi_reserve_os_memory_ex with exclusive=true, mi_heap_new_in_arena);
 *   - free() tells sampled blocks apart with one range compare against that arena. A hit is
 *     confirmed in the sampled-block map (mprof_blockmap.h): the range test is only a sound
 *     negative filter, since mimalloc does not promise that no other block lands in the arena;
 *   - the sample records live in that map, in profiler memory, not next to the blocks.
 *
 * Why one heap, and why it has its own thread: in mimalloc 2.0.9 a thread that exits with a
 * non-default heap (deleted by mimalloc's thread teardown, or by mi_heap_delete) can leave other
 * threads' non-default heaps spinning forever (reproduced here with plain mimalloc: 4 threads
 * each with its own mi_heap_new() heap hang in a few runs out of four). So the sampled heap
 * belongs to a thread that never exits: "mprof-heap", started on the first sample with every
 * signal blocked, which creates the heap and sleeps. Any thread allocates from that heap and
 * frees into it under mprof_sampled_lock, so mimalloc never sees two threads in the heap at once
 * (its heap code is single-threaded by design). The lock is taken only for sampled blocks, once
 * per 2^lg_prof_sample bytes on average, and nothing else is taken while it is held.
 *
 * POSIX behaviour kept: errno = ENOMEM on failure, free(NULL), realloc(p, 0) frees and returns
 * NULL as glibc does, calloc/reallocarray overflow checks, alignment checks (EINVAL). */
#include "mprof_blockmap.h"
#include "mprof_hooks.h"
#include "mprof_thread.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <errno.h>
#include <link.h>
#include <malloc.h>
#include <mimalloc.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MPROF_PUBLIC __attribute__((visibility("default")))
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* Written once by the constructor, read-only afterwards. arena_len == 0 until then (and when
 * profiling is off), which makes the free-path range test always false. */
static const mprof_callbacks_t* cb;
static uintptr_t arena_lo;
static size_t arena_len;
static mi_arena_id_t arena_id;

/* The heap for sampled blocks: created once by the mprof-heap thread, then immutable. */
enum { HEAP_NONE = 0, HEAP_STARTING, HEAP_READY, HEAP_FAILED };
static _Atomic int heap_state;
static mi_heap_t* sampled_heap; /* set before heap_state becomes HEAP_READY (release) */
static pthread_mutex_t mprof_sampled_lock = PTHREAD_MUTEX_INITIALIZER; /* every use of the heap */

static inline bool in_arena(const void* p) {
  return (uintptr_t)p - arena_lo < arena_len;
}

/* mimalloc 2.0.9 does not set errno when an allocation fails, but reports the failure to its
 * error callback first (ENOMEM, or EOVERFLOW for impossible sizes): setting errno there lets the
 * fast paths tail-call mimalloc. The slow paths check for NULL themselves as well. */
static void on_mi_error(int err, void* arg) {
  (void)arg;
  if (err == ENOMEM || err == EOVERFLOW) errno = ENOMEM;
}

static inline void* enomem(void* p) {
  if (unlikely(p == NULL)) errno = ENOMEM;
  return p;
}

/* ---------------------------------------------------------------------------------------------
 * Sampled allocations
 * ------------------------------------------------------------------------------------------- */
static void say(const char* msg) {
  ssize_t w = write(STDERR_FILENO, msg, strlen(msg));
  (void)w;
}

/* Set when the main thread calls pthread_exit(). glibc then ends the process only when the last
 * other thread exits, and the mprof-heap thread never does; so from then on that thread watches
 * the thread count and, once it is the only thread left, calls exit(0) itself, as glibc's last
 * thread would have (exit handlers, the final dump and stdio flushing run as usual). */
static _Atomic int main_exited;

/* Number of threads of this process that have not exited (a main thread that called
 * pthread_exit stays listed as a zombie until the process ends). Reads /proc with system calls
 * only; -1 if it cannot. */
static int live_threads(void) {
  int dir = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return -1;
  int live = 0;
  char buf[4096];
  long n;
  while ((n = syscall(SYS_getdents64, dir, buf, sizeof buf)) > 0) {
    for (long off = 0; off < n;) {
      struct {
        uint64_t ino;
        int64_t off;
        unsigned short reclen;
        unsigned char type;
        char name[];
      }* d = (void*)(buf + off);
      off += d->reclen;
      if (d->name[0] < '0' || d->name[0] > '9') continue;
      char path[64], stat[512];
      snprintf(path, sizeof path, "%s/stat", d->name);
      int fd = openat(dir, path, O_RDONLY | O_CLOEXEC);
      if (fd < 0) continue; /* exited meanwhile */
      ssize_t len = read(fd, stat, sizeof stat - 1);
      close(fd);
      if (len <= 0) continue;
      stat[len] = '\0';
      const char* state = strrchr(stat, ')'); /* the name may contain spaces and parentheses */
      if (state != NULL && state[1] == ' ' && state[2] != 'Z' && state[2] != 'X') live++;
    }
  }
  close(dir);
  return n < 0 ? -1 : live;
}

static void* heap_owner(void* arg) {
  (void)arg;
  mprof__enter(); /* this thread never samples what it allocates itself */
  mi_heap_t* h = mi_heap_new_in_arena(arena_id);
  sampled_heap = h;
  atomic_store_explicit(&heap_state, h != NULL ? HEAP_READY : HEAP_FAILED, memory_order_release);
  if (h == NULL) return NULL;
  /* Never returns, so the heap is never deleted. Every signal is blocked here. */
  for (;;) {
    if (!atomic_load(&main_exited)) {
      syscall(SYS_futex, &main_exited, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
      continue;
    }
    if (live_threads() == 1) exit(0); /* only this thread is left */
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
}

/* The sampled heap, starting its thread on first use. NULL if it cannot be had. */
static mi_heap_t* get_sampled_heap(void) {
  int st = atomic_load_explicit(&heap_state, memory_order_acquire);
  if (likely(st == HEAP_READY)) return sampled_heap;
  if (st == HEAP_NONE && atomic_compare_exchange_strong(&heap_state, &st, HEAP_STARTING)) {
    mprof__enter(); /* pthread_create allocates: served unsampled */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    pthread_t tid;
    int err = pthread_create(&tid, &attr, heap_owner, NULL);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err == 0) {
      pthread_setname_np(tid, "mprof-heap");
    } else {
      atomic_store(&heap_state, HEAP_FAILED);
      say("mprof: cannot start the thread that owns sampled blocks; samples are dropped\n");
    }
    mprof__leave();
  }
  while ((st = atomic_load_explicit(&heap_state, memory_order_acquire)) == HEAP_STARTING)
    sched_yield(); /* the heap thread needs microseconds */
  return st == HEAP_READY ? sampled_heap : NULL;
}

static void record(void* p, size_t n) {
  mprof_sample_t d;
  cb->on_alloc(&d, p, n);
  if (d.bucket == NULL) return; /* not recorded (counted as dropped by the core) */
  if (mprof__blockmap_insert(p, &d) != 0) {
    cb->on_free(&d, p); /* keep in-use exact: the block will free as unsampled */
    mprof__sample_dropped();
  }
}

/* mimalloc 2.0.9 returns misaligned blocks from mi_malloc_aligned when the size is a multiple of
 * an alignment of 256 bytes or more (it assumes such blocks are naturally aligned, which its
 * page layout does not guarantee). One more byte takes it down its over-allocating path, which
 * is correct. Measured: 600 misaligned results in 5000 calls without this, none with it. */
static inline size_t aligned_size(size_t n, size_t align) {
  return (align > 16 && n != 0 && (n & (align - 1)) == 0) ? n + 1 : n;
}

static void* plain_alloc(size_t n, size_t align, bool zero) {
  if (align != 0) return mi_malloc_aligned(aligned_size(n, align), align);
  return zero ? mi_zalloc(n) : mi_malloc(n);
}

/* The allocation was chosen for sampling: place it in the sampled arena and record it. */
static void* alloc_sampled(size_t n, size_t align, bool zero) {
  mi_heap_t* h = get_sampled_heap();
  void* p = NULL;
  if (h != NULL) {
    pthread_mutex_lock(&mprof_sampled_lock);
    if (align != 0)
      p = mi_heap_malloc_aligned(h, aligned_size(n, align), align);
    else
      p = zero ? mi_heap_zalloc(h, n) : mi_heap_malloc(h, n);
    pthread_mutex_unlock(&mprof_sampled_lock);
  }
  if (unlikely(p == NULL)) {
    /* Arena full, alignment it cannot give, or a thread in teardown: serve it unsampled. */
    p = plain_alloc(n, align, zero);
    if (p != NULL) mprof__sample_dropped();
    return enomem(p);
  }
  record(p, n);
  return p;
}

__attribute__((noinline)) static void* alloc_slow(size_t n, size_t align, bool zero) {
  /* Always ask: the decision also resets the countdown, which the fast path has just run below
   * zero (even before start-up, or when there is nowhere to put sampled blocks: cb == NULL). */
  if (mprof__sample_decide(n) && cb != NULL) return alloc_sampled(n, align, zero);
  return enomem(plain_alloc(n, align, zero));
}

__attribute__((noinline)) static void free_slow(void* p) {
  mprof_sample_t d;
  if (mprof__blockmap_remove(p, &d)) cb->on_free(&d, p);
  pthread_mutex_lock(&mprof_sampled_lock);
  mi_free(p);
  pthread_mutex_unlock(&mprof_sampled_lock);
}

/* ---------------------------------------------------------------------------------------------
 * The malloc family
 * ------------------------------------------------------------------------------------------- */
MPROF_PUBLIC void* malloc(size_t n) {
  if (unlikely(mprof__thread_countdown_expired(n))) return alloc_slow(n, 0, false);
  return mi_malloc(n); /* a tail call: on failure on_mi_error has set errno */
}

MPROF_PUBLIC void free(void* p) {
  if (unlikely(in_arena(p))) {
    free_slow(p);
    return;
  }
  mi_free(p);
}

MPROF_PUBLIC void* calloc(size_t count, size_t size) {
  size_t n;
  if (unlikely(__builtin_mul_overflow(count, size, &n))) {
    errno = ENOMEM;
    return NULL;
  }
  if (unlikely(mprof__thread_countdown_expired(n))) return alloc_slow(n, 0, true);
  return mi_zalloc(n);
}

__attribute__((noinline)) static void* realloc_slow(void* p, size_t n, bool expired) {
  bool sample = expired && mprof__sample_decide(n) && cb != NULL;
  if (!sample && !in_arena(p)) return enomem(mi_realloc(p, n));
  /* The old block lives in the sampled heap (which only free() may touch, under its lock), or
   * the new one must be sampled: move it. */
  void* q = sample ? alloc_sampled(n, 0, false) : enomem(mi_malloc(n));
  if (q == NULL) return NULL; /* p is untouched and still owned by the caller */
  size_t old = mi_usable_size(p);
  memcpy(q, p, old < n ? old : n);
  free(p);
  return q;
}

MPROF_PUBLIC void* realloc(void* p, size_t n) {
  if (p == NULL) return malloc(n);
  if (unlikely(n == 0)) {
    free(p);
    return NULL;
  }
  bool expired = mprof__thread_countdown_expired(n);
  if (unlikely(expired || in_arena(p))) return realloc_slow(p, n, expired);
  return mi_realloc(p, n);
}

MPROF_PUBLIC void* reallocarray(void* p, size_t count, size_t size) {
  size_t n;
  if (__builtin_mul_overflow(count, size, &n)) {
    errno = ENOMEM;
    return NULL;
  }
  return realloc(p, n);
}

static inline bool is_pow2(size_t x) {
  return x != 0 && (x & (x - 1)) == 0;
}

static void* aligned(size_t align, size_t n) {
  /* mimalloc aligns blocks of more than 8 bytes to 16, and those of 8 or less to 8. */
  if (align <= sizeof(void*) || (align <= 16 && n > 8)) return malloc(n);
  if (unlikely(mprof__thread_countdown_expired(n))) return alloc_slow(n, align, false);
  return enomem(mi_malloc_aligned(aligned_size(n, align), align));
}

MPROF_PUBLIC int posix_memalign(void** out, size_t align, size_t n) {
  if (!is_pow2(align) || align % sizeof(void*) != 0) return EINVAL;
  int saved = errno;
  void* p = aligned(align, n);
  if (p == NULL) {
    errno = saved;
    return ENOMEM;
  }
  *out = p;
  return 0;
}

MPROF_PUBLIC void* aligned_alloc(size_t align, size_t n) {
  if (!is_pow2(align)) {
    errno = EINVAL;
    return NULL;
  }
  return aligned(align, n);
}

MPROF_PUBLIC void* memalign(size_t align, size_t n) {
  /* glibc: an alignment that is not a power of two is rounded up to one. */
  if (align > SIZE_MAX / 2 + 1) {
    errno = EINVAL;
    return NULL;
  }
  if (!is_pow2(align)) {
    size_t a = 1;
    while (a < align)
      a <<= 1;
    align = a;
  }
  return aligned(align, n);
}

MPROF_PUBLIC void* valloc(size_t n) {
  return aligned((size_t)sysconf(_SC_PAGESIZE), n);
}

MPROF_PUBLIC void* pvalloc(size_t n) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  size_t r;
  if (__builtin_add_overflow(n, page - 1, &r)) {
    errno = ENOMEM;
    return NULL;
  }
  r &= ~(page - 1);
  return aligned(page, r ? r : page);
}

MPROF_PUBLIC size_t malloc_usable_size(void* p) {
  return p == NULL ? 0 : mi_usable_size(p);
}

/* ---------------------------------------------------------------------------------------------
 * pipe2(): libunwind (1.6) opens a pipe on its first unwind, keeps it for good, and uses it to
 * validate addresses when it has to fall back from DWARF to frame-chain unwinding. Opened where
 * the program would open its next file, that pipe takes fd 0 of a program started with stdin
 * closed, and after a program closes every descriptor above 2 and opens its own files, the next
 * validation would read from and write to the program's files. So a pipe created while this
 * thread is inside the profiler is moved to the top of the descriptor range (just under
 * min(RLIMIT_NOFILE, 4096)), where programs rarely have files, close-on-exec as it was asked.
 * ------------------------------------------------------------------------------------------- */
static int (*real_pipe2)(int[2], int); /* libc's, found by the constructor */

static void move_high(int* fd) {
  struct rlimit rl;
  rlim_t top = 4096;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < top) top = rl.rlim_cur;
  if (top <= 64) return;
  int high = fcntl(*fd, F_DUPFD_CLOEXEC, (int)(top - 32));
  if (high < 0) return; /* no room up there: leave it where it is */
  close(*fd);
  *fd = high;
}

MPROF_PUBLIC int pipe2(int fds[2], int flags) {
  if (real_pipe2 == NULL) *(void**)&real_pipe2 = dlsym(RTLD_NEXT, "pipe2");
  if (real_pipe2 == NULL) {
    errno = ENOSYS;
    return -1;
  }
  int r = real_pipe2(fds, flags);
  if (r == 0 && mprof__thread.busy && (flags & O_CLOEXEC)) {
    move_high(&fds[0]);
    move_high(&fds[1]);
  }
  return r;
}

/* ---------------------------------------------------------------------------------------------
 * pthread_exit() from the main thread: see main_exited.
 * ------------------------------------------------------------------------------------------- */
static void (*real_pthread_exit)(void*); /* libc's, found by the constructor */

MPROF_PUBLIC _Noreturn void pthread_exit(void* retval) {
  if (syscall(SYS_gettid) == getpid()) {
    atomic_store(&main_exited, 1);
    syscall(SYS_futex, &main_exited, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
  }
  if (real_pthread_exit == NULL) *(void**)&real_pthread_exit = dlsym(RTLD_NEXT, "pthread_exit");
  real_pthread_exit(retval);
  __builtin_unreachable(); /* libc's pthread_exit does not return */
}

/* ---------------------------------------------------------------------------------------------
 * exit(): the final dump must finish before any thread ends the process (mprof__exit_wait).
 * ------------------------------------------------------------------------------------------- */
static void (*real_exit)(int); /* libc's, found by the constructor */

MPROF_PUBLIC _Noreturn void exit(int status) {
  mprof__exit_wait();
  if (real_exit == NULL) *(void**)&real_exit = dlsym(RTLD_NEXT, "exit");
  if (real_exit == NULL) _exit(status);
  real_exit(status);
  __builtin_unreachable(); /* libc's exit does not return */
}

/* ---------------------------------------------------------------------------------------------
 * Start-up
 * ------------------------------------------------------------------------------------------- */
typedef struct self_range_s {
  uintptr_t base, lo, hi;
} self_range_t;

static int find_self(struct dl_phdr_info* info, size_t size, void* arg) {
  (void)size;
  self_range_t* r = arg;
  if (info->dlpi_addr != r->base) return 0;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr)* ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X)) continue;
    r->lo = info->dlpi_addr + ph->p_vaddr;
    r->hi = r->lo + ph->p_memsz;
    return 1;
  }
  return 0;
}

static void sampled_fork_prepare(void) {
  pthread_mutex_lock(&mprof_sampled_lock);
}

static void sampled_fork_parent(void) {
  pthread_mutex_unlock(&mprof_sampled_lock);
}

static void sampled_fork_child(void) {
  pthread_mutex_init(&mprof_sampled_lock, NULL);
  /* A heap thread that was starting in the parent does not exist here. */
  int st = HEAP_STARTING;
  atomic_compare_exchange_strong(&heap_state, &st, HEAP_FAILED);
}

/* The allocator's own figures for the reconciliation (mprof_hooks.h). mi_process_info reads
 * mimalloc's counters and getrusage(2); it does not allocate. On Linux mimalloc 2.0.9 reports
 * its committed bytes as the current RSS, and ru_maxrss as the peak. */
static int glue_alloc_stats(mprof_alloc_stats_t* out) {
  size_t elapsed, utime, stime, rss, peak_rss, commit, peak_commit, faults;
  mi_process_info(&elapsed, &utime, &stime, &rss, &peak_rss, &commit, &peak_commit, &faults);
  *out =
      (mprof_alloc_stats_t){commit, peak_commit, rss, peak_rss, UINT64_MAX, UINT64_MAX, UINT64_MAX};
  return 0;
}

__attribute__((constructor)) static void mprof_glue_init(void) {
  self_range_t self = {0, 0, 0};
  Dl_info info;
  if (dladdr(&arena_lo, &info) != 0) { /* any object of this library */
    self.base = (uintptr_t)info.dli_fbase;
    dl_iterate_phdr(find_self, &self);
  }
  static char name[32];
  snprintf(name, sizeof name, "mimalloc %d.%d.%d", MI_MALLOC_VERSION / 100,
           (MI_MALLOC_VERSION / 10) % 10, MI_MALLOC_VERSION % 10);
  mi_register_error(on_mi_error, NULL);
  *(void**)&real_exit = dlsym(RTLD_NEXT, "exit");
  *(void**)&real_pipe2 = dlsym(RTLD_NEXT, "pipe2");
  *(void**)&real_pthread_exit = dlsym(RTLD_NEXT, "pthread_exit");
  pthread_atfork(sampled_fork_prepare, sampled_fork_parent, sampled_fork_child);
  mprof_host_t host = {name, self.lo, self.hi, glue_alloc_stats};
  const mprof_callbacks_t* c = mprof__init(&host);
  if (c == NULL) return;
  /* Reserve address space (not memory) for sampled blocks: 64 GiB, or less if the process may
   * not map that much (RLIMIT_AS). */
  for (size_t size = (size_t)64 << 30; size >= ((size_t)64 << 20); size /= 4) {
    mi_arena_id_t id;
    if (mi_reserve_os_memory_ex(size, false, false, true, &id) == 0) {
      size_t got = 0;
      void* lo = mi_arena_area(id, &got);
      if (lo == NULL || got == 0) continue;
      arena_id = id;
      arena_lo = (uintptr_t)lo;
      arena_len = got;
      cb = c;
      return;
    }
  }
  say("mprof: cannot reserve address space for sampled blocks; profiling is off\n");
}
