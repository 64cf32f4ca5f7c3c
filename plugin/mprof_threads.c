/* The thread snapshot (see mprof_threads.h). */
#include "mprof_threads.h"

#include "mprof_core.h"
#include "mprof_meta.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------------------
 * Heap per thread: a table indexed by thread serial, in chunks of profiler memory mapped as
 * serials are handed out. Serial 0 means "unknown" (the table is full, or the chunk could not be
 * mapped): such blocks are counted for no thread.
 * ------------------------------------------------------------------------------------------- */
#define REG_CHUNK 1024
#define REG_CHUNKS 1024 /* at most REG_CHUNK * REG_CHUNKS - 1 threads ever get a serial */

typedef struct reg_entry_s {
  _Atomic int32_t tid;   /* the thread's kernel id while it lives, 0 once it ended */
  _Atomic int64_t alloc; /* estimated bytes it allocated */
  _Atomic int64_t inuse; /* estimated bytes of those still in use */
} reg_entry_t;

static _Atomic(reg_entry_t*) reg_chunks[REG_CHUNKS];
static _Atomic uint32_t reg_next = 1; /* next serial */
static __thread uint32_t my_serial __attribute__((tls_model("initial-exec")));

static reg_entry_t* reg_entry(uint32_t serial, bool create) {
  if (serial == 0 || serial >= (uint32_t)REG_CHUNK * REG_CHUNKS) return NULL;
  _Atomic(reg_entry_t*)* slot = &reg_chunks[serial / REG_CHUNK];
  reg_entry_t* c = atomic_load_explicit(slot, memory_order_acquire);
  if (c == NULL) {
    if (!create) return NULL;
    reg_entry_t* mine = mprof__meta_alloc(REG_CHUNK * sizeof(reg_entry_t)); /* zeroed */
    if (mine == NULL) return NULL;
    if (atomic_compare_exchange_strong_explicit(slot, &c, mine, memory_order_acq_rel,
                                                memory_order_acquire)) {
      c = mine;
    } else {
      mprof__meta_free(mine, REG_CHUNK * sizeof(reg_entry_t));
    }
  }
  return &c[serial % REG_CHUNK];
}

void mprof__threads_note_alloc(mprof_sample_t* data, int64_t est) {
  if (my_serial == 0) {
    uint32_t s = atomic_fetch_add_explicit(&reg_next, 1, memory_order_relaxed);
    reg_entry_t* e = reg_entry(s, true);
    if (e == NULL) return; /* table full: this thread's blocks stay unattributed */
    atomic_store_explicit(&e->tid, (int32_t)gettid(), memory_order_release);
    my_serial = s;
  }
  reg_entry_t* e = reg_entry(my_serial, false);
  if (e == NULL) return;
  atomic_fetch_add_explicit(&e->alloc, est, memory_order_relaxed);
  atomic_fetch_add_explicit(&e->inuse, est, memory_order_relaxed);
  data->thread = my_serial;
}

void mprof__threads_note_end(const mprof_sample_t* data, int64_t est, bool cancel) {
  reg_entry_t* e = reg_entry(data->thread, false);
  if (e == NULL) return;
  atomic_fetch_sub_explicit(&e->inuse, est, memory_order_relaxed);
  if (cancel) atomic_fetch_sub_explicit(&e->alloc, est, memory_order_relaxed);
}

void mprof__threads_exit(void) {
  reg_entry_t* e = reg_entry(my_serial, false);
  if (e != NULL) atomic_store_explicit(&e->tid, 0, memory_order_release);
}

static void snap_fork_child(void);

void mprof__threads_fork_child(void) {
  snap_fork_child();
  uint32_t n = atomic_load_explicit(&reg_next, memory_order_relaxed);
  for (uint32_t s = 1; s < n; s++) {
    reg_entry_t* e = reg_entry(s, false);
    if (e != NULL) atomic_store_explicit(&e->tid, 0, memory_order_relaxed);
  }
  reg_entry_t* e = reg_entry(my_serial, false);
  if (e != NULL) atomic_store_explicit(&e->tid, (int32_t)gettid(), memory_order_relaxed);
}

/* Fills the heap figures of the records (zeros for a thread that never sampled): one pass over
 * the table, each living entry looked up among the records by thread id (an open-addressing set
 * of record indices, `set` with `cap` slots, a power of two above nrecs). A newer serial with the
 * same id (the id reused after an exit whose teardown did not run) wins. */
static void reg_fill(mprof_thread_rec_t* recs, size_t nrecs, uint32_t* set, size_t cap) {
  for (size_t i = 0; i < cap; i++)
    set[i] = UINT32_MAX;
  for (size_t i = 0; i < nrecs; i++) {
    size_t h = ((uint64_t)recs[i].tid * 0x9e3779b97f4a7c15ull >> 32) & (cap - 1);
    while (set[h] != UINT32_MAX)
      h = (h + 1) & (cap - 1);
    set[h] = (uint32_t)i;
  }
  uint32_t n = atomic_load_explicit(&reg_next, memory_order_acquire);
  for (uint32_t s = 1; s < n; s++) {
    reg_entry_t* e = reg_entry(s, false);
    int32_t tid = e != NULL ? atomic_load_explicit(&e->tid, memory_order_acquire) : 0;
    if (tid == 0) continue;
    size_t h = ((uint64_t)tid * 0x9e3779b97f4a7c15ull >> 32) & (cap - 1);
    for (; set[h] != UINT32_MAX; h = (h + 1) & (cap - 1)) {
      mprof_thread_rec_t* r = &recs[set[h]];
      if (r->tid != tid) continue;
      r->alloc_bytes = atomic_load_explicit(&e->alloc, memory_order_relaxed);
      r->inuse_bytes = atomic_load_explicit(&e->inuse, memory_order_relaxed);
      break;
    }
  }
}

static _Atomic uint64_t last_pause_ns, last_total_ns;

void mprof__threads_last_costs(uint64_t* longest_pause_ns, uint64_t* total_ns) {
  *longest_pause_ns = atomic_load_explicit(&last_pause_ns, memory_order_relaxed);
  *total_ns = atomic_load_explicit(&last_total_ns, memory_order_relaxed);
}

#if defined(MPROF_OWN_UNWIND) && defined(__x86_64__)

#include "mprof_unwind.h"

#include <fcntl.h>
#include <link.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <ucontext.h>

/* ---------------------------------------------------------------------------------------------
 * The snapshot's slots
 * ------------------------------------------------------------------------------------------- */
enum {
  HOW_PENDING = 0, /* not taken yet */
  HOW_DONE,        /* stack and state taken */
  HOW_SIGNALLED,   /* sent the signal; answered once `answered` is set */
  HOW_NO_ANSWER,   /* could not be taken (signal blocked, no signal configured, no answer) */
  HOW_GONE,        /* exited meanwhile: left out */
  HOW_MOVED,       /* blocked, but not in the same call throughout the walk: look again */
};

#define LOOKS 4 /* walks of a thread that keeps moving between calls before it is given up */

typedef struct slot_s {
  int32_t tid;
  int how;
  _Atomic int armed;    /* the slot is ready for the handler (release, after its last write) */
  _Atomic int answered; /* the handler's walk is in pcs (release) */
  uint32_t npcs;
  uint64_t pause_ns; /* time spent in the handler */
  char state[32];    /* "running", a system call, ... */
  char name[20];     /* comm */
  uintptr_t* pcs;    /* depth entries */
} slot_t;

typedef struct vma_s {
  uintptr_t lo, hi;
} vma_t;

typedef struct snap_s {
  uint32_t gen;
  slot_t* slots;
  size_t n;
  unsigned depth;
  bool use_vm;       /* process_vm_readv works */
  bool have_proc;    /* /proc/self/task could be listed */
  const vma_t* vmas; /* without it: readable mappings, in address order */
  size_t nvmas;
  _Atomic uint32_t answers; /* handler answers (a futex word) */
} snap_t;

static _Atomic(snap_t*) current; /* the snapshot the handler serves, or NULL */
static _Atomic int inflight;     /* handlers that may still look at `current` */
static uint32_t snap_gen;        /* mprof_dump_lock */
static int vm_state;             /* process_vm_readv: 0 unknown, 1 works, 2 not available */

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The child has none of the other threads: no handler of theirs can be in flight. */
static void snap_fork_child(void) {
  atomic_store(&current, NULL);
  atomic_store(&inflight, 0);
}

/* ---------------------------------------------------------------------------------------------
 * Stack readers for mprof__unwind_remote
 * ------------------------------------------------------------------------------------------- */
#define VM_CHUNK 1024 /* bytes fetched at a time: a walk touches a few consecutive ones */

typedef struct vm_reader_s {
  pid_t pid;
  bool valid;
  uintptr_t base;
  uint8_t buf[VM_CHUNK];
} vm_reader_t;

static int vm_read(void* arg, uintptr_t addr, uintptr_t* out) {
  vm_reader_t* r = arg;
  uintptr_t base = addr & ~(uintptr_t)(VM_CHUNK - 1);
  if ((addr & 7) != 0 || addr < VM_CHUNK) return 1; /* stack words are aligned */
  if (!r->valid || r->base != base) {
    struct iovec local = {r->buf, VM_CHUNK};
    struct iovec remote = {(void*)base, VM_CHUNK};
    r->valid = false;
    /* A chunk never crosses a page: it is read whole or not at all. */
    if (syscall(SYS_process_vm_readv, r->pid, &local, 1UL, &remote, 1UL, 0UL) != VM_CHUNK) return 1;
    r->valid = true;
    r->base = base;
  }
  memcpy(out, r->buf + (addr - base), sizeof *out);
  return 0;
}

/* The fallback inside the signal handler: the thread's own stack read directly, but only
 * within the mapping that holds its stack pointer (which cannot go away under a running thread). */
typedef struct own_reader_s {
  uintptr_t lo, hi;
} own_reader_t;

__attribute__((no_sanitize_address, no_sanitize_thread)) static int
own_read(void* arg, uintptr_t addr, uintptr_t* out) {
  const own_reader_t* r = arg;
  if ((addr & 7) != 0 || addr < r->lo || addr > r->hi - sizeof *out) return 1;
  *out = *(const volatile uintptr_t*)addr;
  return 0;
}

static bool vm_works(void) {
  if (vm_state == 0) {
    vm_reader_t r = {.pid = getpid()};
    uintptr_t w;
    /* a word of this stack: its chunk lies within the mapped stack */
    uintptr_t probe = ((uintptr_t)&r + VM_CHUNK) & ~(uintptr_t)7;
    vm_state = vm_read(&r, probe, &w) == 0 ? 1 : 2;
  }
  return vm_state == 1;
}

/* ---------------------------------------------------------------------------------------------
 * The signal handler
 * ------------------------------------------------------------------------------------------- */
static void on_threads_signal(int sig, siginfo_t* info, void* ctx) {
  (void)sig;
  int saved_errno = errno;
  /* Only the requests of a snapshot of this process (a stray signal is ignored). */
  if (info->si_code == SI_QUEUE && info->si_pid == getpid()) {
    atomic_fetch_add(&inflight, 1);
    snap_t* s = atomic_load(&current);
    uint64_t v = (uint64_t)(uintptr_t)info->si_value.sival_ptr;
    if (s != NULL && (uint32_t)(v >> 32) == s->gen && (v & 0xffffffffu) < s->n) {
      slot_t* sl = &s->slots[v & 0xffffffffu];
      if (sl->tid == (int32_t)gettid() && atomic_load_explicit(&sl->armed, memory_order_acquire) &&
          !atomic_load_explicit(&sl->answered, memory_order_relaxed)) {
        uint64_t t0 = now_ns();
        const ucontext_t* uc = ctx;
        uintptr_t pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
        uintptr_t sp = (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
        uintptr_t fp = (uintptr_t)uc->uc_mcontext.gregs[REG_RBP];
        if (s->use_vm) {
          vm_reader_t r = {.pid = info->si_pid};
          sl->npcs = mprof__unwind_remote(pc, sp, fp, 1, vm_read, &r, sl->pcs, s->depth);
        } else {
          own_reader_t r = {0, 0};
          size_t lo = 0, hi = s->nvmas;
          while (lo < hi) { /* the mapping holding sp */
            size_t mid = lo + (hi - lo) / 2;
            if (s->vmas[mid].hi <= sp)
              lo = mid + 1;
            else
              hi = mid;
          }
          if (lo < s->nvmas && s->vmas[lo].lo <= sp)
            r = (own_reader_t){s->vmas[lo].lo, s->vmas[lo].hi};
          sl->npcs = mprof__unwind_remote(pc, sp, fp, 1, own_read, &r, sl->pcs, s->depth);
        }
        sl->pause_ns = now_ns() - t0;
        atomic_store_explicit(&sl->answered, 1, memory_order_release);
        atomic_fetch_add(&s->answers, 1);
        syscall(SYS_futex, &s->answers, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
      }
    }
    atomic_fetch_sub(&inflight, 1);
  }
  errno = saved_errno;
}

/* Installs the handler of prof_threads_signal over the default action, or finds it installed.
 * Returns the signal, 0 when none is configured, or -errno. */
static int ensure_handler(void) {
  const char* name = mprof__opts.prof_threads_signal;
  int sig = mprof__signal_parse(name, strlen(name));
  if (sig == 0) return 0;
  if (sig < 0) return -EINVAL;
  struct sigaction old;
  if (sigaction(sig, NULL, &old) != 0) return -EINVAL;
  if ((old.sa_flags & SA_SIGINFO) && old.sa_sigaction == on_threads_signal) return sig;
  if (!(old.sa_flags & SA_SIGINFO) && old.sa_handler == SIG_DFL) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_threads_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(sig, &sa, NULL) != 0) return -EINVAL;
    return sig;
  }
  return -EBUSY; /* the program's own handler (or ignore): never replaced */
}

/* ---------------------------------------------------------------------------------------------
 * /proc
 * ------------------------------------------------------------------------------------------- */
/* Reads a small /proc file into buf (NUL-terminated); the length, or -1. */
static ssize_t read_small(const char* path, char* buf, size_t cap) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, cap - 1);
  close(fd);
  if (n < 0) return -1;
  buf[n] = '\0';
  return n;
}

static ssize_t read_task(int32_t tid, const char* what, char* buf, size_t cap) {
  char path[64];
  snprintf(path, sizeof path, "/proc/self/task/%d/%s", (int)tid, what);
  return read_small(path, buf, cap);
}

/* A number as /proc writes it: decimal, optionally negative, or hex with 0x. */
static const char* parse_num(const char* p, uint64_t* out) {
  while (*p == ' ')
    p++;
  bool neg = *p == '-';
  if (neg) p++;
  uint64_t v = 0;
  const char* start = p;
  if (p[0] == '0' && p[1] == 'x') {
    p += 2;
    start = p;
    for (;; p++) {
      unsigned d = *p >= '0' && *p <= '9'   ? (unsigned)(*p - '0')
                   : *p >= 'a' && *p <= 'f' ? (unsigned)(*p - 'a' + 10)
                                            : 16u;
      if (d == 16) break;
      v = v * 16 + d;
    }
  } else {
    for (; *p >= '0' && *p <= '9'; p++)
      v = v * 10 + (uint64_t)(*p - '0');
  }
  if (p == start) return NULL;
  *out = neg ? (uint64_t) - (int64_t)v : v;
  return p;
}

/* /proc/<tid>/syscall: "running", or the call number, six arguments, sp and pc, or "-1 sp pc"
 * for a thread blocked outside a system call. Returns true and the fields when blocked. */
static bool parse_syscall(const char* s, long* nr, uintptr_t* sp, uintptr_t* pc) {
  uint64_t v[9];
  int k = 0;
  const char* p = s;
  while (k < 9 && (p = parse_num(p, &v[k])) != NULL)
    k++;
  if (k == 3 && (int64_t)v[0] == -1) {
    *nr = -1;
    *sp = v[1];
    *pc = v[2];
    return true;
  }
  if (k != 9 || (int64_t)v[0] < 0) return false;
  *nr = (long)v[0];
  *sp = v[7];
  *pc = v[8];
  return true;
}

static const struct {
  int nr;
  const char* name;
} call_names[] = {
    {SYS_read, "read"},
    {SYS_write, "write"},
    {SYS_poll, "poll"},
    {SYS_pread64, "pread64"},
    {SYS_pwrite64, "pwrite64"},
    {SYS_readv, "readv"},
    {SYS_writev, "writev"},
    {SYS_select, "select"},
    {SYS_sched_yield, "sched_yield"},
    {SYS_pause, "pause"},
    {SYS_nanosleep, "nanosleep"},
    {SYS_connect, "connect"},
    {SYS_accept, "accept"},
    {SYS_sendto, "sendto"},
    {SYS_recvfrom, "recvfrom"},
    {SYS_sendmsg, "sendmsg"},
    {SYS_recvmsg, "recvmsg"},
    {SYS_wait4, "wait4"},
    {SYS_flock, "flock"},
    {SYS_fcntl, "fcntl"},
    {SYS_fsync, "fsync"},
    {SYS_fdatasync, "fdatasync"},
    {SYS_rt_sigtimedwait, "rt_sigtimedwait"},
    {SYS_rt_sigsuspend, "rt_sigsuspend"},
    {SYS_futex, "futex"},
    {SYS_io_getevents, "io_getevents"},
    {SYS_clock_nanosleep, "clock_nanosleep"},
    {SYS_epoll_wait, "epoll_wait"},
    {SYS_waitid, "waitid"},
    {SYS_openat, "openat"},
    {SYS_pselect6, "pselect6"},
    {SYS_ppoll, "ppoll"},
    {SYS_epoll_pwait, "epoll_pwait"},
    {SYS_accept4, "accept4"},
    {SYS_recvmmsg, "recvmmsg"},
    {SYS_sendmmsg, "sendmmsg"},
#ifdef SYS_io_uring_enter
    {SYS_io_uring_enter, "io_uring_enter"},
#endif
#ifdef SYS_epoll_pwait2
    {SYS_epoll_pwait2, "epoll_pwait2"},
#endif
};

static void state_of_call(long nr, char* out, size_t cap) {
  if (nr < 0) {
    snprintf(out, cap, "blocked");
    return;
  }
  for (size_t i = 0; i < sizeof call_names / sizeof call_names[0]; i++) {
    if (call_names[i].nr == nr) {
      snprintf(out, cap, "%s", call_names[i].name);
      return;
    }
  }
  snprintf(out, cap, "syscall %ld", nr);
}

/* Whether signal `sig` is blocked in thread tid (SigBlk of /proc/<tid>/status). */
static bool signal_blocked(int32_t tid, int sig) {
  char buf[2048];
  if (read_task(tid, "status", buf, sizeof buf) < 0) return false;
  const char* p = strstr(buf, "\nSigBlk:");
  if (p == NULL) return false;
  p += 8;
  while (*p == ' ' || *p == '\t')
    p++;
  uint64_t mask = 0;
  for (; (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'); p++)
    mask = mask * 16 + (uint64_t)(*p <= '9' ? *p - '0' : *p - 'a' + 10);
  return (mask >> (sig - 1)) & 1;
}

/* Walks a thread blocked in a system call from the registers the kernel reports. HOW_DONE when
 * the walk is confirmed, HOW_SIGNALLED when the thread runs (it must be taken by the signal),
 * HOW_MOVED when it left its call during the walk, HOW_GONE when it exited. */
static int take_blocked(snap_t* s, slot_t* sl) {
  char sys1[256], sys2[256], st1[96], st2[96];
  if (!s->have_proc) return HOW_SIGNALLED;
  bool have_st = read_task(sl->tid, "schedstat", st1, sizeof st1) > 0;
  if (read_task(sl->tid, "syscall", sys1, sizeof sys1) < 0) return HOW_GONE;
  long nr;
  uintptr_t sp, pc;
  if (!parse_syscall(sys1, &nr, &sp, &pc)) return HOW_SIGNALLED; /* running */
  if (!s->use_vm) { /* no fault-free reader: the signal takes it */
    state_of_call(nr, sl->state, sizeof sl->state);
    return HOW_SIGNALLED;
  }
  vm_reader_t r = {.pid = getpid()};
  sl->npcs = mprof__unwind_remote(pc, sp, 0, 0, vm_read, &r, sl->pcs, s->depth);
  if (read_task(sl->tid, "syscall", sys2, sizeof sys2) < 0) return HOW_GONE;
  if (strcmp(sys1, sys2) != 0) return HOW_MOVED;
  if (have_st && (read_task(sl->tid, "schedstat", st2, sizeof st2) <= 0 || strcmp(st1, st2) != 0))
    return HOW_MOVED;
  state_of_call(nr, sl->state, sizeof sl->state);
  return HOW_DONE;
}

/* The thread ids of the process: /proc/self/task with getdents64 (opendir would allocate). */
static int32_t* list_tasks(size_t* n, size_t* cap_out, bool* have_proc) {
  size_t cap = 256, k = 0;
  int32_t* tids = mprof__meta_alloc(cap * sizeof *tids);
  if (tids == NULL) return NULL;
  int fd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  *have_proc = fd >= 0;
  if (fd < 0) {
    /* No /proc: the threads that ever sampled are the ones known. */
    uint32_t next = atomic_load_explicit(&reg_next, memory_order_acquire);
    for (uint32_t sn = 1; sn < next; sn++) {
      reg_entry_t* e = reg_entry(sn, false);
      int32_t tid = e != NULL ? atomic_load_explicit(&e->tid, memory_order_acquire) : 0;
      if (tid == 0) continue;
      if (k == cap) {
        int32_t* more = mprof__meta_alloc(2 * cap * sizeof *tids);
        if (more == NULL) break;
        memcpy(more, tids, k * sizeof *tids);
        mprof__meta_free(tids, cap * sizeof *tids);
        tids = more;
        cap *= 2;
      }
      tids[k++] = tid;
    }
    *n = k;
    *cap_out = cap;
    return tids;
  }
  char buf[4096];
  for (;;) {
    long got = syscall(SYS_getdents64, fd, buf, sizeof buf);
    if (got <= 0) break;
    for (long off = 0; off < got;) {
      struct {
        uint64_t ino;
        int64_t off;
        unsigned short reclen;
        unsigned char type;
        char name[];
      } * d;
      d = (void*)(buf + off);
      off += d->reclen;
      uint64_t v;
      const char* end = parse_num(d->name, &v);
      if (end == NULL || *end != '\0') continue;
      if (k == cap) {
        int32_t* more = mprof__meta_alloc(2 * cap * sizeof *tids);
        if (more == NULL) break;
        memcpy(more, tids, k * sizeof *tids);
        mprof__meta_free(tids, cap * sizeof *tids);
        tids = more;
        cap *= 2;
      }
      tids[k++] = (int32_t)v;
    }
  }
  close(fd);
  *n = k;
  *cap_out = cap;
  return tids;
}

/* Readable mappings from /proc/self/maps, for the handler's fallback reader. */
static vma_t* read_vmas(size_t* n, size_t* cap_out) {
  size_t cap = 256, k = 0;
  vma_t* v = mprof__meta_alloc(cap * sizeof *v);
  int fd = v != NULL ? open("/proc/self/maps", O_RDONLY | O_CLOEXEC) : -1;
  if (fd < 0) {
    *n = 0;
    *cap_out = v != NULL ? cap : 0;
    return v;
  }
  char buf[8192];
  size_t have = 0;
  for (;;) {
    ssize_t got = read(fd, buf + have, sizeof buf - 1 - have);
    if (got <= 0) break;
    have += (size_t)got;
    buf[have] = '\0';
    char* line = buf;
    char* nl;
    while ((nl = strchr(line, '\n')) != NULL) {
      *nl = '\0';
      uint64_t lo = 0, hi = 0; /* "lo-hi perms ...", hex without 0x */
      const char* p = line;
      for (; (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'); p++)
        lo = lo * 16 + (uint64_t)(*p <= '9' ? *p - '0' : *p - 'a' + 10);
      if (*p == '-') p++;
      for (; (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'); p++)
        hi = hi * 16 + (uint64_t)(*p <= '9' ? *p - '0' : *p - 'a' + 10);
      if (*p == ' ' && p[1] == 'r') {
        if (k == cap) {
          vma_t* more = mprof__meta_alloc(2 * cap * sizeof *v);
          if (more == NULL) break;
          memcpy(more, v, k * sizeof *v);
          mprof__meta_free(v, cap * sizeof *v);
          v = more;
          cap *= 2;
        }
        /* adjacent readable mappings join: a walk may cross from one to the next */
        if (k > 0 && v[k - 1].hi == lo)
          v[k - 1].hi = hi;
        else
          v[k++] = (vma_t){lo, hi};
      }
      line = nl + 1;
    }
    have = strlen(line);
    memmove(buf, line, have);
  }
  close(fd);
  *n = k;
  *cap_out = cap;
  return v;
}

/* ---------------------------------------------------------------------------------------------
 * The snapshot
 * ------------------------------------------------------------------------------------------- */
/* What a snapshot owns, freed by mprof__threads_snapshot_free (behind the records). */
typedef struct owned_s {
  size_t bytes; /* of this block: header, records, slots, stacks */
  size_t nslots;
  char comments[4][64];
  const char* comment_ptrs[4];
} owned_t;

static void sl_wait(snap_t* s, uint32_t seen, uint64_t timeout_ns) {
  struct timespec ts = {(time_t)(timeout_ns / 1000000000u), (long)(timeout_ns % 1000000000u)};
  syscall(SYS_futex, &s->answers, FUTEX_WAIT_PRIVATE, seen, &ts, NULL, 0);
}

int mprof__threads_snapshot(mprof_threads_profile_t* out, unsigned depth) {
  memset(out, 0, sizeof *out);
  uint64_t t_start = now_ns();
  int sig = ensure_handler();
  if (sig < 0) return -sig;
  if (depth == 0) depth = 1;

  size_t ntids, tids_cap;
  bool have_proc;
  int32_t* tids = list_tasks(&ntids, &tids_cap, &have_proc);
  if (tids == NULL) return ENOMEM;
  int32_t self = (int32_t)gettid();
  bool self_listed = false;
  for (size_t i = 0; i < ntids; i++)
    self_listed |= tids[i] == self;
  size_t n = ntids + (self_listed ? 0 : 1);

  /* One block: header, records, slots, stacks. */
  size_t off_recs = (sizeof(owned_t) + 15) & ~(size_t)15;
  size_t off_slots = off_recs + ((n * sizeof(mprof_thread_rec_t) + 15) & ~(size_t)15);
  size_t off_pcs = off_slots + ((n * sizeof(slot_t) + 15) & ~(size_t)15);
  size_t bytes = off_pcs + n * depth * sizeof(uintptr_t);
  uint8_t* block = mprof__meta_alloc(bytes);
  if (block == NULL) {
    mprof__meta_free(tids, tids_cap * sizeof *tids);
    return ENOMEM;
  }
  owned_t* own = (owned_t*)block;
  own->bytes = bytes;
  own->nslots = n;
  mprof_thread_rec_t* recs = (mprof_thread_rec_t*)(block + off_recs);
  slot_t* slots = (slot_t*)(block + off_slots);
  for (size_t i = 0; i < n; i++) {
    slots[i].tid = i < ntids ? tids[i] : self;
    slots[i].pcs = (uintptr_t*)(block + off_pcs) + i * depth;
  }
  mprof__meta_free(tids, tids_cap * sizeof *tids);

  snap_t s;
  memset(&s, 0, sizeof s);
  s.gen = ++snap_gen;
  s.slots = slots;
  s.n = n;
  s.depth = depth;
  s.use_vm = vm_works();
  s.have_proc = have_proc;
  size_t vmas_cap = 0;
  vma_t* vmas = NULL;
  if (!s.use_vm && sig > 0) {
    vmas = read_vmas(&s.nvmas, &vmas_cap);
    s.vmas = vmas;
  }

  /* The dumping thread itself, walked in place (this also maps the rule cache before any
   * handler may need it). Its own frames in the profiler are dropped. */
  for (size_t i = 0; i < n; i++) {
    if (slots[i].tid != self) continue;
    struct dl_find_object obj;
    uintptr_t lo = 0, hi = 0;
    if (_dl_find_object((void*)(uintptr_t)mprof__threads_snapshot, &obj) == 0) {
      lo = (uintptr_t)obj.dlfo_map_start;
      hi = (uintptr_t)obj.dlfo_map_end;
    }
    slots[i].npcs = mprof__unwind(slots[i].pcs, depth, lo, hi, 0);
    snprintf(slots[i].state, sizeof slots[i].state, "running");
    slots[i].how = HOW_DONE;
  }

  atomic_store(&current, &s);
  uint32_t nsent = 0;
  pid_t pid = getpid();
  for (size_t i = 0; i < n; i++) {
    slot_t* sl = &slots[i];
    if (sl->how != HOW_PENDING) continue;
    /* Look, then signal at once if it runs: the less time in between, the less chance that it
     * enters a system call the signal would interrupt (see DESIGN.md). */
    for (int look = 0; look < LOOKS; look++) {
      sl->how = take_blocked(&s, sl);
      if (sl->how != HOW_MOVED) break;
    }
    if (sl->how == HOW_MOVED) { /* last seen blocked: a signal now could interrupt its call */
      sl->how = HOW_NO_ANSWER;
      continue;
    }
    if (sl->how != HOW_SIGNALLED) continue;
    sl->npcs = 0;
    if (sig == 0 || signal_blocked(sl->tid, sig)) {
      sl->how = HOW_NO_ANSWER;
      continue;
    }
    siginfo_t si;
    memset(&si, 0, sizeof si);
    si.si_signo = sig;
    si.si_code = SI_QUEUE;
    si.si_pid = pid;
    si.si_uid = getuid();
    si.si_value.sival_ptr = (void*)(uintptr_t)((uint64_t)s.gen << 32 | i);
    if (sl->state[0] == '\0') snprintf(sl->state, sizeof sl->state, "running");
    atomic_store_explicit(&sl->armed, 1, memory_order_release);
    if (syscall(SYS_rt_tgsigqueueinfo, pid, sl->tid, sig, &si) != 0) {
      sl->how = errno == ESRCH ? HOW_GONE : HOW_NO_ANSWER;
      continue;
    }
    nsent++;
  }

  /* Wait for the answers, noticing threads that exit instead. */
  uint64_t deadline = now_ns() + (uint64_t)MPROF_THREADS_WAIT_MS * 1000000u;
  for (;;) {
    uint32_t got = atomic_load(&s.answers);
    uint32_t gone = 0;
    if (got < nsent) {
      for (size_t i = 0; i < n; i++) {
        if (slots[i].how == HOW_SIGNALLED && !atomic_load(&slots[i].answered) &&
            syscall(SYS_tgkill, pid, slots[i].tid, 0) != 0 && errno == ESRCH) {
          slots[i].how = HOW_GONE;
          gone++;
        }
      }
      nsent -= gone;
    }
    if (got >= nsent) break;
    uint64_t t = now_ns();
    if (t >= deadline) break;
    uint64_t step = deadline - t < 10000000u ? deadline - t : 10000000u; /* look again: exits */
    sl_wait(&s, got, step);
  }
  atomic_store(&current, NULL);
  while (atomic_load(&inflight) != 0) { /* a handler still in its walk: wait for it to finish */
    struct timespec ts = {0, 100000};
    nanosleep(&ts, NULL);
  }
  if (vmas != NULL) mprof__meta_free(vmas, vmas_cap * sizeof *vmas);

  /* The threads run again: names and heap figures. */
  uint64_t longest = 0;
  uint32_t nsig = 0, nremote = 0, nnone = 0;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    slot_t* sl = &slots[i];
    if (sl->how == HOW_SIGNALLED) {
      if (atomic_load_explicit(&sl->answered, memory_order_acquire)) {
        nsig++;
        if (sl->pause_ns > longest) longest = sl->pause_ns;
      } else {
        sl->how = HOW_NO_ANSWER;
      }
    } else if (sl->how == HOW_DONE && sl->tid != self) {
      nremote++;
    }
    if (sl->how == HOW_GONE) continue;
    if (sl->how == HOW_NO_ANSWER) {
      sl->npcs = 0;
      snprintf(sl->state, sizeof sl->state, "no answer");
      nnone++;
    }
    ssize_t len = read_task(sl->tid, "comm", sl->name, sizeof sl->name);
    if (len <= 0) {
      snprintf(sl->name, sizeof sl->name, "%d", (int)sl->tid);
    } else if (sl->name[len - 1] == '\n') {
      sl->name[len - 1] = '\0';
    }
    mprof_thread_rec_t* r = &recs[k++];
    r->pcs = sl->pcs;
    r->npcs = sl->npcs;
    r->tid = sl->tid;
    r->name = sl->name;
    r->state = sl->state;
  }
  size_t cap = 2;
  while (cap < 2 * k)
    cap *= 2;
  uint32_t* set = mprof__meta_alloc(cap * sizeof *set);
  if (set != NULL) { /* else the heap figures stay 0 */
    reg_fill(recs, k, set, cap);
    mprof__meta_free(set, cap * sizeof *set);
  }
  uint64_t total = now_ns() - t_start;
  atomic_store_explicit(&last_pause_ns, longest, memory_order_relaxed);
  atomic_store_explicit(&last_total_ns, total, memory_order_relaxed);
  snprintf(own->comments[0], sizeof own->comments[0], "mprof.threads_signalled=%u", nsig);
  snprintf(own->comments[1], sizeof own->comments[1], "mprof.threads_walked_blocked=%u", nremote);
  snprintf(own->comments[2], sizeof own->comments[2], "mprof.threads_not_taken=%u", nnone);
  snprintf(own->comments[3], sizeof own->comments[3], "mprof.threads_longest_pause_ns=%llu",
           (unsigned long long)longest);
  for (int i = 0; i < 4; i++)
    own->comment_ptrs[i] = own->comments[i];
  out->recs = recs;
  out->nrecs = k;
  out->comments = own->comment_ptrs;
  out->ncomments = 4;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  out->time_nanos = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
  return 0;
}

void mprof__threads_snapshot_free(mprof_threads_profile_t* out) {
  if (out->comments == NULL) return;
  owned_t* own = (owned_t*)((uintptr_t)out->comments - offsetof(owned_t, comment_ptrs));
  mprof__meta_free(own, own->bytes);
  memset(out, 0, sizeof *out);
}

#else /* not x86-64 */

int mprof__threads_snapshot(mprof_threads_profile_t* out, unsigned depth) {
  (void)depth;
  memset(out, 0, sizeof *out);
  return ENOTSUP;
}

void mprof__threads_snapshot_free(mprof_threads_profile_t* out) {
  (void)out;
}

static void snap_fork_child(void) {}

#endif
