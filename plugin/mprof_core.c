/* The profiling core: start-up, the glue callbacks, automatic epochs and dumps, fork and exit.
 *
 * This file owns the process-wide profiler state: the options in force, the active flag, the
 * statistics and the dump sequence numbers. The data structures it drives live in their own
 * modules: per-thread sampling (mprof_thread), buckets (mprof_bucket), staged cycles
 * (mprof_cycle), the writer (mprof_pprof). Nothing here allocates from the profiled heap, and
 * every entry point that can be reached from inside malloc runs with the thread's re-entry guard
 * raised, so anything it calls that allocates (glibc internals, libunwind's first use on a
 * thread) is served unsampled. */
#include "mprof_core.h"
#include "mprof_math.h"

#include "mprof_bucket.h"
#include "mprof_cycle.h"
#include "mprof_dumpfile.h"
#include "mprof_hooks.h"
#include "mprof_lock.h"
#include "mprof_maps.h"
#include "mprof_meta.h"
#include "mprof_jeprof.h"
#include "mprof_mutex.h"
#include "mprof_pprof.h"
#include "mprof_profile.h"
#include "mprof_snap.h"
#include "mprof_thread.h"
#include "mprof_threads.h"
#include "mprof_tlabel.h"
#include "mprof_blockmap.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

mprof_opts_t mprof__opts;

enum { INIT_NONE = 0, INIT_RUNNING, INIT_ON, INIT_OFF };
static _Atomic int init_state;
static _Atomic bool active; /* prof.active */
static uint64_t interval;   /* mean sampling interval, bytes; set at init */
static const char* host_name = "none";
static int (*host_alloc_stats)(mprof_alloc_stats_t*); /* from the glue, or NULL */
static bool (*_Atomic host_in_allocator)(void);       /* from the glue, or NULL */
static pthread_key_t thread_key;                      /* destructor releases per-thread state */

static _Atomic uint64_t st_samples, st_frees, st_dropped, st_inuse_bytes, st_dumps, st_dump_errors;
static uint64_t dump_seq;          /* every automatic dump of this process; mprof_dump_lock */
static uint64_t kind_seq[3][6];    /* heap, mutex, threads; kind f i m u s o; dump lock */
static _Atomic uint64_t alloc_est; /* estimated bytes allocated (sum of w*size) */
static _Atomic int64_t inuse_est;  /* estimated bytes in use (sum of w*size) */
static _Atomic int64_t gdump_mark; /* high-water mark of inuse_est last dumped */
static _Atomic int64_t peak_mark;  /* prof_peak: inuse_est at the last peak refresh */
static _Atomic bool peak_busy;     /* prof_peak: a thread is refreshing the peak */
static _Atomic int over_state;     /* prof_dump_over: 0 armed, 1 dumping, 2 done */
static struct sigaction dump_signal_prev; /* the action it replaced, to chain to */
/* A signal asked for a dump not yet taken: a lock-free atomic, safe in a handler and read by
 * every thread's slow path. */
static _Atomic int signal_pending;
static atomic_flag warned_drop = ATOMIC_FLAG_INIT; /* "samples dropped" said once */
static atomic_flag warned_dump = ATOMIC_FLAG_INIT; /* "automatic dump failed" said once */
enum { EXIT_NONE = 0, EXIT_RUNNING, EXIT_DONE };
static _Atomic int exit_state;   /* the process is exiting: see mprof__at_exit */
static _Atomic int exit_callers; /* threads that called exit(): see mprof__exit_wait */
static __thread int exiting_here __attribute__((tls_model("initial-exec"))); /* this thread did */
/* errno when mprof__sample_decide chose a sample: between that decision and on_alloc the glue
 * may do work of its own (set up the place for sampled blocks), and a successful allocation
 * must leave errno as the program had it. */
static __thread int decide_errno __attribute__((tls_model("initial-exec")));
/* The dump whose file is open, for fork(): a child must close its copy of the descriptor (a
 * reader of a pipe would otherwise wait for ever for its end) and release the snapshot, since the
 * thread writing it does not exist there. Both point into that thread's stack; written under
 * mprof_dumpfile_lock, which fork's prepare handler takes and which is held only around the
 * parts of a dump that a fork must not split: the open and the commit of a dump file (a few
 * system calls that never wait for a reader) and, where /proc is missing, the reading of the
 * loaded objects through the loader (read_maps). */
static mprof_lock_t mprof_dumpfile_lock = MPROF_LOCK_INIT(MPROF_RANK_DUMPFILE, "dumpfile");
static mprof_dumpfile_t* inflight_file;
static mprof_snap_t* inflight_snap;
static __thread bool decide_errno_set __attribute__((tls_model("initial-exec")));

/* ---------------------------------------------------------------------------------------------
 * Messages: one line on stderr, formatted on the stack, written with write(2).
 * ------------------------------------------------------------------------------------------- */
__attribute__((format(printf, 1, 2))) static void say(const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n > sizeof buf - 2) n = (int)sizeof buf - 2;
  if (n == 0 || buf[n - 1] != '\n') buf[n++] = '\n';
  ssize_t w = write(STDERR_FILENO, buf, (size_t)n);
  (void)w;
}

static void conf_report(const char* line, void* arg) {
  (void)arg;
  say("%s", line);
}

/* ---------------------------------------------------------------------------------------------
 * Sampling
 * ------------------------------------------------------------------------------------------- */
static void thread_dtor(void* arg) {
  mprof_thread_t* t = arg;
  t->busy++;
  t->state = MPROF_THREAD_DEAD;
  t->countdown = UINT64_MAX;
  mprof__threads_exit();
  mprof__thread_release(t);
  t->busy--;
}

void mprof__enter(void) {
  mprof__thread.busy++;
}

void mprof__leave(void) {
  mprof__thread.busy--;
}

bool mprof__ready(void) {
  return atomic_load_explicit(&init_state, memory_order_acquire) == INIT_ON;
}

/* prof_dump_signal. The handler only raises a flag and sends the interrupted thread's next
 * allocation to the slow path (its countdown to 0); the dump is taken there, outside the
 * handler, by whichever thread reaches a slow path first. */
static void on_dump_signal(int sig, siginfo_t* info, void* ctx) {
  atomic_store_explicit(&signal_pending, 1, memory_order_relaxed);
  mprof__thread.countdown = 0;
  /* Chain to the action this one replaced, unless that was the default or ignore: the default
   * of most signals ends the process, which asking for a profile must not do. */
  if (dump_signal_prev.sa_flags & SA_SIGINFO) {
    if (dump_signal_prev.sa_sigaction != NULL) dump_signal_prev.sa_sigaction(sig, info, ctx);
  } else if (dump_signal_prev.sa_handler != SIG_DFL && dump_signal_prev.sa_handler != SIG_IGN) {
    dump_signal_prev.sa_handler(sig);
  }
}

static void install_dump_signal(void) {
  int sig = mprof__signal_parse(mprof__opts.prof_dump_signal, strlen(mprof__opts.prof_dump_signal));
  if (sig <= 0) return; /* off (the parser rejected anything else) */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_dump_signal;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  if (sigaction(sig, &sa, &dump_signal_prev) != 0) {
    say("mprof: cannot install the handler of prof_dump_signal:%s: %s",
        mprof__opts.prof_dump_signal, strerror(errno));
  }
}

static void take_signal_dump(mprof_thread_t* t) {
  if (!atomic_exchange_explicit(&signal_pending, 0, memory_order_relaxed)) return; /* taken */
  t->busy++;
  int saved_errno = errno;
  int err = mprof__dump_auto('s');
  if (err != EAGAIN && mprof__opts.prof_dump_threads) mprof__threads_dump_auto('s');
  errno = saved_errno;
  t->busy--;
  if (err == EAGAIN) {
    /* another dump is being written: take it at a later slow path */
    atomic_store_explicit(&signal_pending, 1, memory_order_relaxed);
    t->countdown = 0;
  }
}

/* A thread's first countdown was drawn by mprof__sample_wait, for an allocator that keeps its own
 * byte counter (jemalloc): that allocator has already compared the allocation with it, so the
 * event that brings the thread here is a real sample point, not one to test again. */
static __thread bool first_drawn __attribute__((tls_model("initial-exec")));
/* mprof__sample_decide left a fresh countdown that mprof__sample_wait has not handed out. */
static __thread bool wait_fresh __attribute__((tls_model("initial-exec")));

/* The thread's first visit to the slow path with the core running: its generator and its
 * teardown (a thread key whose destructor releases its buffers). */
static void thread_register(mprof_thread_t* t) {
  int saved_errno = errno; /* a successful allocation leaves errno alone */
  t->busy++;
  if (!first_drawn) mprof__thread_seed(t);
  pthread_setspecific(thread_key, t); /* may allocate once: served unsampled */
  t->state = MPROF_THREAD_LIVE;
  t->busy--;
  errno = saved_errno;
}

bool mprof__sample_decide(size_t n) {
  mprof_thread_t* t = &mprof__thread;
  if (t->busy) {
    /* An allocation made by the profiler itself (or by what it calls) is never sampled, and
     * must not consume the countdown the outer allocation just drew: undo its subtraction. */
    t->countdown += n;
    return false;
  }
  decide_errno_set = false; /* from a decision whose allocation failed: not ours to restore */
  int st = atomic_load_explicit(&init_state, memory_order_acquire);
  if (st != INIT_ON) {
    /* Profiling off: never again. Not started yet (options not known, or another thread is
     * starting the core): a countdown of 0, so that the next allocation asks again, and the
     * first one after start-up is decided with the probability of its own size. */
    t->countdown = st == INIT_OFF ? UINT64_MAX : 0;
    return false;
  }
  if (t->state == MPROF_THREAD_DEAD) {
    t->countdown = UINT64_MAX;
    return false;
  }
  if (atomic_load_explicit(&signal_pending, memory_order_relaxed)) take_signal_dump(t);
  if (t->state == MPROF_THREAD_NEW) {
    bool drawn = first_drawn;
    thread_register(t);
    first_drawn = false;
    if (!drawn) {
      /* The thread's first countdown, drawn now and tested against this allocation. */
      t->countdown = mprof__thread_next_interval(t, interval);
      if (n <= t->countdown) {
        t->countdown -= n;
        wait_fresh = true;
        return false;
      }
    }
  }
  wait_fresh = true;
  if (!atomic_load_explicit(&active, memory_order_relaxed)) {
    t->countdown = interval; /* look at the flag again after about one interval */
    return false;
  }
  t->countdown = mprof__thread_next_interval(t, interval);
  decide_errno = errno;
  decide_errno_set = true;
  return true;
}

bool mprof__sample_needs_size(void) {
  mprof_thread_t* t = &mprof__thread;
  return !t->busy && t->state == MPROF_THREAD_NEW && !first_drawn &&
         atomic_load_explicit(&init_state, memory_order_acquire) == INIT_ON;
}

uint64_t mprof__sample_wait(void) {
  mprof_thread_t* t = &mprof__thread;
  int st = atomic_load_explicit(&init_state, memory_order_acquire);
  if (st == INIT_OFF || t->state == MPROF_THREAD_DEAD) return UINT64_MAX;
  if (st != INIT_ON) return 1; /* not started: look at the next allocation */
  if (t->state == MPROF_THREAD_NEW) {
    /* The thread's first countdown, drawn before its first allocation (the allocator asks for
     * it when it sets the thread up), so that allocation is sampled with the probability of
     * its size. Registering the thread waits for its first sample point (mprof__sample_decide):
     * here the allocator may be in the middle of setting the thread up. */
    if (!first_drawn) {
      mprof__thread_seed(t);
      t->countdown = mprof__thread_next_interval(t, interval);
      first_drawn = true;
    }
    return t->countdown ? t->countdown : 1;
  }
  if (!wait_fresh) t->countdown = mprof__thread_next_interval(t, interval);
  wait_fresh = false;
  return t->countdown ? t->countdown : 1;
}

void mprof__sample_dropped(void) {
  if (decide_errno_set) { /* the glue served the allocation unsampled: it succeeded */
    errno = decide_errno;
    decide_errno_set = false;
  }
  int saved_errno = errno;
  atomic_fetch_add_explicit(&st_dropped, 1, memory_order_relaxed);
  if (!atomic_flag_test_and_set(&warned_drop))
    say("mprof: a sample could not be recorded (profiler memory exhausted, or a block the "
        "allocator cannot mark as sampled); samples are being dropped, see "
        "stats.dropped_samples in docs/OPTIONS.md");
  errno = saved_errno;
}

/* Objects one sample of `size` bytes stands for: the inverse of the probability 1-exp(-size/R)
 * that an allocation of that size is sampled. */
static double sample_weight(uint64_t size) {
  if (interval <= 1 || size == 0) return 1.0;
  return 1.0 / -mprof__expm1(-(double)size / (double)interval);
}

static void maybe_auto_work(uint64_t est_bytes, int64_t inuse_now) {
  /* Automatic epoch: every 2^lg_prof_epoch estimated bytes allocated. */
  uint64_t prev = atomic_fetch_add_explicit(&alloc_est, est_bytes, memory_order_relaxed);
  uint64_t now = prev + est_bytes;
  if (mprof__opts.lg_prof_epoch >= 0) {
    unsigned sh = (unsigned)mprof__opts.lg_prof_epoch;
    if ((prev >> sh) != (now >> sh)) mprof__cycle_try_epoch();
  }
  if (mprof__opts.lg_prof_interval >= 0 && mprof__opts.prof_prefix[0] != '\0') {
    unsigned sh = (unsigned)mprof__opts.lg_prof_interval;
    if ((prev >> sh) != (now >> sh)) mprof__dump_auto('i');
  }
  if (mprof__opts.prof_gdump && mprof__opts.prof_prefix[0] != '\0') {
    /* A new high-water mark: in-use bytes above the last dumped mark by one sampling interval
     * and by an eighth of the mark, so a steadily growing heap dumps O(log(size)) times. */
    int64_t mark = atomic_load_explicit(&gdump_mark, memory_order_relaxed);
    int64_t step = mark / 8 > (int64_t)interval ? mark / 8 : (int64_t)interval;
    if (inuse_now > mark + step &&
        atomic_compare_exchange_strong_explicit(&gdump_mark, &mark, inuse_now, memory_order_relaxed,
                                                memory_order_relaxed))
      mprof__dump_auto('u');
  }
  if (mprof__opts.prof_peak) {
    /* A new peak: in-use above the last refresh by an eighth and by one sampling interval, so
     * O(log(peak)) refreshes; each is two epoch boundaries and one flush on this thread. */
    int64_t mark = atomic_load_explicit(&peak_mark, memory_order_relaxed);
    int64_t step = mark / 8 > (int64_t)interval ? mark / 8 : (int64_t)interval;
    bool idle = false;
    if (inuse_now > mark + step &&
        atomic_compare_exchange_strong_explicit(&peak_busy, &idle, true, memory_order_acquire,
                                                memory_order_relaxed)) {
      if (mprof__cycle_try_peak())
        atomic_store_explicit(&peak_mark, inuse_now, memory_order_relaxed);
      atomic_store_explicit(&peak_busy, false, memory_order_release);
    }
  }
  if (mprof__opts.prof_dump_over != 0 && mprof__opts.prof_prefix[0] != '\0' &&
      inuse_now >= (int64_t)mprof__opts.prof_dump_over) {
    int armed = 0;
    if (atomic_compare_exchange_strong(&over_state, &armed, 1))
      atomic_store(&over_state, mprof__dump_auto('o') == EAGAIN ? 0 : 2); /* skipped: re-arm */
  }
}

/* The callbacks run inside the program's malloc and free: whatever they call (libunwind's first
 * unwind opens a pipe and leaves EAGAIN behind, mmap, the fork and lock machinery) must not show
 * through errno, since a successful allocation never changes it. */
static uint64_t on_alloc_counted(mprof_sample_t* data, void* ptr, size_t size, size_t counted) {
  (void)ptr;
  int saved_errno = decide_errno_set ? decide_errno : errno;
  decide_errno_set = false;
  mprof_thread_t* t = &mprof__thread;
  memset(data, 0, sizeof *data);
  t->busy++;
  uint32_t n = mprof__thread_capture(t, mprof__opts.prof_stack_depth, 0);
  uint16_t tag = mprof__opts.prof_thread_labels ? mprof__tlabel_current() : 0;
  mprof_bucket_t* b = n ? mprof__bucket_get_tagged(MPROF_BUCKET_HEAP, tag, t->stack, n, 1) : NULL;
  if (b == NULL) {
    mprof__sample_dropped();
  } else {
    double w = sample_weight(counted);
    data->bucket = b;
    data->size = size;
    data->weight = w;
    data->cycle = mprof__cycle_record_malloc(b, size, w);
    atomic_fetch_add_explicit(&st_samples, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&st_inuse_bytes, size, memory_order_relaxed);
    int64_t est = (int64_t)mprof__llround(w * (double)size);
    int64_t inuse_now = atomic_fetch_add_explicit(&inuse_est, est, memory_order_relaxed) + est;
    mprof__threads_note_alloc(data, est);
    maybe_auto_work((uint64_t)est, inuse_now); /* its dumps' errno is undone below */
  }
  t->busy--;
  errno = saved_errno;
  return t->countdown;
}

static uint64_t on_alloc(mprof_sample_t* data, void* ptr, size_t size) {
  return on_alloc_counted(data, ptr, size, size);
}

/* A sampled block leaves the live set: freed, or (cancel) taken back as if never sampled. */
static void sample_ends(const mprof_sample_t* data, bool cancel) {
  if (data->bucket == NULL) return;
  int saved_errno = errno;
  mprof_thread_t* t = &mprof__thread;
  t->busy++;
  if (cancel) {
    mprof__cycle_cancel_malloc(data->bucket, data->size, data->weight, data->cycle);
    atomic_fetch_sub_explicit(&st_samples, 1, memory_order_relaxed);
  } else {
    mprof__cycle_record_free(data->bucket, data->size, data->weight, data->cycle);
    atomic_fetch_add_explicit(&st_frees, 1, memory_order_relaxed);
  }
  atomic_fetch_sub_explicit(&st_inuse_bytes, data->size, memory_order_relaxed);
  int64_t est = (int64_t)mprof__llround(data->weight * (double)data->size);
  atomic_fetch_sub_explicit(&inuse_est, est, memory_order_relaxed);
  mprof__threads_note_end(data, est, cancel);
  t->busy--;
  errno = saved_errno;
}

static void on_free(const mprof_sample_t* data, void* ptr) {
  (void)ptr;
  sample_ends(data, false);
}

void mprof__sample_cancel(const mprof_sample_t* data) {
  sample_ends(data, true);
}

static void on_epoch(void) {
  int saved_errno = errno;
  mprof__enter();
  mprof__cycle_advance();
  mprof__cycle_flush();
  mprof__leave();
  errno = saved_errno;
}

static mprof_callbacks_t callbacks = {
    .sample_data_size = sizeof(mprof_sample_t),
    .on_alloc = on_alloc,
    .on_free = on_free,
    .on_epoch = on_epoch,
    .on_alloc_counted = on_alloc_counted,
};

/* ---------------------------------------------------------------------------------------------
 * Snapshots and dumps
 * ------------------------------------------------------------------------------------------- */
/* What a dump writes: the heap profile, the heap at its peak (prof_peak), or the contention
 * profile (named with .mutex, numbered by its own kind counters). */
typedef enum { DUMP_HEAP, DUMP_PEAK, DUMP_MUTEX, DUMP_THREADS } dump_what_t;

typedef int (*writer_fn)(int fd, const void* prof);

/* The loaded objects for a pprof profile, from /proc/self/maps: no lock of the loader's, so a
 * dump never waits for a dlopen it interrupted, and no profiler lock. Only the fallback where
 * /proc is missing walks dl_iterate_phdr, which holds the loader's write lock, which glibc's fork()
 * does not reset in the child: that walk runs under mprof_dumpfile_lock, which fork's prepare
 * handler takes, so that no child starts with that lock held by a dump of its parent. */
static int read_maps(mprof_maps_t* maps) {
  int err = mprof__maps_read_proc(maps);
  if (err != ENOSYS) return err;
  mprof__lock(&mprof_dumpfile_lock);
  err = mprof__maps_read_loader(maps);
  mprof__unlock(&mprof_dumpfile_lock);
  return err;
}

/* A pprof writer given the loaded objects (mprof_pprof.h). */
typedef int (*pprof_maps_fn)(int fd, const void* prof, const mprof_maps_t* maps);

static int write_pprof(int fd, const void* prof, pprof_maps_fn write) {
  mprof_maps_t maps = MPROF_MAPS_INIT;
  int err = read_maps(&maps);
  if (err == 0) {
    err = write(fd, prof, &maps);
    mprof__maps_free(&maps);
  }
  return err;
}

static int heap_maps(int fd, const void* prof, const mprof_maps_t* maps) {
  return mprof__pprof_write_heap_maps(fd, prof, maps);
}

static int mutex_maps(int fd, const void* prof, const mprof_maps_t* maps) {
  return mprof__pprof_write_mutex_maps(fd, prof, maps);
}

static int threads_maps(int fd, const void* prof, const mprof_maps_t* maps) {
  return mprof__pprof_write_threads_maps(fd, prof, maps);
}

static int write_heap(int fd, const void* prof) {
  return write_pprof(fd, prof, heap_maps);
}

static int write_jeprof(int fd, const void* prof) {
  return mprof__jeprof_write_heap(fd, prof);
}

static int write_mutex(int fd, const void* prof) {
  return write_pprof(fd, prof, mutex_maps);
}

static int write_threads(int fd, const void* prof) {
  return write_pprof(fd, prof, threads_maps);
}

/* Writes the profile to `path` (see mprof_dumpfile.h): never through a file or link that was
 * there before unless the path was asked for explicitly, never blocking on a pipe, and with
 * SIGPIPE held back so that a reader that left gives EPIPE instead of killing the program. */
static int write_file(const char* path, bool automatic, writer_fn writer, const void* prof) {
  mprof_dumpfile_t f;
  mprof__lock(&mprof_dumpfile_lock);
  int err = mprof__dumpfile_open(&f, path, automatic);
  if (err == 0) inflight_file = &f;
  mprof__unlock(&mprof_dumpfile_lock);
  if (err != 0) return err;
  mprof_sigpipe_guard_t g;
  mprof__sigpipe_block(&g);
  err = writer(f.fd, prof); /* may block on a pipe: no lock but the dump lock is held */
  mprof__sigpipe_restore(&g, err == EPIPE);
  mprof__lock(&mprof_dumpfile_lock);
  inflight_file = NULL;
  if (err == 0) {
    err = mprof__dumpfile_commit(&f);
  } else {
    mprof__dumpfile_abort(&f);
  }
  mprof__unlock(&mprof_dumpfile_lock);
  return err;
}

/* The heap snapshot of the dump under way (for fork: see inflight_file). */
static void set_inflight_snap(mprof_snap_t* s) {
  mprof__lock(&mprof_dumpfile_lock);
  inflight_snap = s;
  mprof__unlock(&mprof_dumpfile_lock);
}

/* The reconciliation figures as the profile's comments, "mprof.<name>=<value>", one per known
 * value (docs/OPTIONS.md). The in-use estimate is the sum over the snapshot, so it matches the
 * profile's own inuse_space total. Formatted on the stack: no heap. */
typedef struct recon_comments_s {
  char text[12][96];
  char* ptrs[12];
  size_t n;
} recon_comments_t;

static void recon_add(recon_comments_t* rc, const char* name, uint64_t v) {
  if (v == UINT64_MAX || rc->n == sizeof rc->text / sizeof rc->text[0]) return;
  snprintf(rc->text[rc->n], sizeof rc->text[0], "mprof.%s=%llu", name, (unsigned long long)v);
  rc->ptrs[rc->n] = rc->text[rc->n];
  rc->n++;
}

static void recon_comments(recon_comments_t* rc, const mprof_heap_rec_t* recs, size_t n,
                           const mprof_recon_t* rp) {
  rc->n = 0;
  snprintf(rc->text[0], sizeof rc->text[0], "mprof.allocator=%s", host_name);
  rc->ptrs[0] = rc->text[0];
  rc->n = 1;
  mprof_recon_t r = *rp;
  uint64_t est = 0;
  for (size_t i = 0; i < n; i++)
    est += recs[i].inuse_bytes > 0 ? (uint64_t)recs[i].inuse_bytes : 0;
  recon_add(rc, "estimated_inuse_bytes", est);
  recon_add(rc, "allocator_committed_bytes", r.committed);
  recon_add(rc, "allocator_peak_committed_bytes", r.peak_committed);
  recon_add(rc, "allocator_rss_bytes", r.rss);
  recon_add(rc, "allocator_peak_rss_bytes", r.peak_rss);
  recon_add(rc, "allocator_allocated_bytes", r.allocated);
  recon_add(rc, "allocator_active_bytes", r.active);
  recon_add(rc, "allocator_resident_bytes", r.resident);
  recon_add(rc, "process_rss_bytes", r.process_rss);
  recon_add(rc, "profiler_metadata_bytes", mprof__meta_mapped_bytes());
}

/* Writes the contention profile to `path`. Needs mprof_dump_lock. */
static int dump_mutex_locked(const char* path, bool automatic) {
  mprof__cycle_dump_assert_held();
  mprof_mutex_profile_t prof;
  size_t cap_bytes;
  int err = mprof__mutex_snapshot(&prof, &cap_bytes);
  if (err == 0) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    prof.time_nanos = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    err = write_file(path, automatic, write_mutex, &prof);
    mprof__mutex_snapshot_free(&prof, cap_bytes);
  }
  return err;
}

/* Writes a thread snapshot to `path`. Needs mprof_dump_lock. */
static int dump_threads_locked(const char* path, bool automatic) {
  mprof__cycle_dump_assert_held();
  mprof_threads_profile_t prof;
  int err = mprof__threads_snapshot(&prof, mprof__opts.prof_stack_depth);
  if (err == 0) {
    err = write_file(path, automatic, write_threads, &prof);
    mprof__threads_snapshot_free(&prof);
  }
  return err;
}

/* Publishes and takes the heap snapshot of a dump (DUMP_HEAP, DUMP_PEAK). Unless `wait` (a
 * dump from inside malloc), every step is only tried: EAGAIN when a flush is under way. Needs
 * mprof_dump_lock. */
static int snap_locked(dump_what_t what, bool wait, mprof_snap_t* snap) {
  mprof__cycle_dump_assert_held();
  struct timespec mono;
  clock_gettime(CLOCK_MONOTONIC, &mono);
  if (wait)
    mprof__cycle_publish_all();
  else if (!mprof__cycle_try_publish_all())
    return EAGAIN;
  unsigned flags = what == DUMP_PEAK ? MPROF_SNAP_PEAK : mprof__opts.prof_age ? MPROF_SNAP_AGES : 0;
  return mprof__snap_heap(flags, wait, (int64_t)mono.tv_sec * 1000000000 + mono.tv_nsec, snap);
}

/* Writes one snapshot of `what` as pprof to `path` and, for the heap profiles, as jeprof text to
 * `heap_path` (either may be NULL); snap is the heap snapshot (freed here) and recon the
 * figures for its comments, both unused for DUMP_MUTEX. Needs mprof_dump_lock; counts the
 * result in the stats. */
static int dump_locked(const char* path, const char* heap_path, bool automatic, dump_what_t what,
                       mprof_snap_t* snap, const mprof_recon_t* recon) {
  mprof__cycle_dump_assert_held();
  int err = ENAMETOOLONG;
  if ((path == NULL || strlen(path) < PATH_MAX) &&
      (heap_path == NULL || strlen(heap_path) < PATH_MAX) && what == DUMP_MUTEX) {
    err = path != NULL ? dump_mutex_locked(path, automatic) : EINVAL;
  } else if ((path == NULL || strlen(path) < PATH_MAX) && what == DUMP_THREADS) {
    err = path != NULL ? dump_threads_locked(path, automatic) : EINVAL;
  } else if ((path == NULL || strlen(path) < PATH_MAX) &&
             (heap_path == NULL || strlen(heap_path) < PATH_MAX)) {
    mprof_heap_profile_t prof;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    prof.recs = snap->recs;
    prof.nrecs = snap->nrecs;
    prof.period = interval;
    prof.time_nanos = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    recon_comments_t rc;
    recon_comments(&rc, snap->recs, snap->nrecs, recon);
    prof.comments = (const char* const*)rc.ptrs;
    prof.ncomments = rc.n;
    err = 0;
    if (path != NULL) err = write_file(path, automatic, write_heap, &prof);
    if (err == 0 && heap_path != NULL) err = write_file(heap_path, automatic, write_jeprof, &prof);
  }
  mprof__snap_free(snap);
  atomic_fetch_add_explicit(err ? &st_dump_errors : &st_dumps, 1, memory_order_relaxed);
  return err;
}

/* The program's name in automatic file names, so that the processes of one run (make's cc1, as,
 * ld) are told apart: the name it was started as (program_invocation_short_name), else the
 * executable's; characters other than [A-Za-z0-9._+-] become '_', at most 64 bytes. Read at
 * each dump: a fork keeps it, an exec changes it. */
static void program_name(char* out, size_t len) {
  const char* n = program_invocation_short_name;
  char exe[PATH_MAX];
  if (n == NULL || n[0] == '\0') {
    ssize_t r = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[r > 0 ? r : 0] = '\0';
    const char* slash = strrchr(exe, '/');
    n = slash != NULL ? slash + 1 : exe;
  }
  size_t k = 0;
  for (; n[k] != '\0' && k + 1 < len && k < 64; k++) {
    char c = n[k];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '+' || c == '-';
    out[k] = ok ? c : '_';
  }
  if (k == 0 && len > 7) {
    memcpy(out, "program", 7);
    k = 7;
  }
  out[k] = '\0';
}

/* The next automatic name of `kind`, without its extension. Needs mprof_dump_lock, so
 * numbers follow the dump order. */
static int auto_name_locked(char kind, dump_what_t what, char* buf, size_t len) {
  mprof__cycle_dump_assert_held();
  if (mprof__opts.prof_prefix[0] == '\0') return EINVAL;
  int ki = kind == 'f'   ? 0
           : kind == 'i' ? 1
           : kind == 'm' ? 2
           : kind == 'u' ? 3
           : kind == 's' ? 4
                         : 5;
  uint64_t seq = dump_seq++;
  uint64_t kseq = kind_seq[what == DUMP_MUTEX ? 1 : what == DUMP_THREADS ? 2 : 0][ki]++;
  const char* sfx = what == DUMP_PEAK      ? ".peak"
                    : what == DUMP_MUTEX   ? ".mutex"
                    : what == DUMP_THREADS ? ".threads"
                                           : "";
  char prog[80];
  program_name(prog, sizeof prog);
  int n;
  if (kind == 'f')
    n = snprintf(buf, len, "%s.%s.%ld.%llu.f%s", mprof__opts.prof_prefix, prog, (long)getpid(),
                 (unsigned long long)seq, sfx);
  else
    n = snprintf(buf, len, "%s.%s.%ld.%llu.%c%llu%s", mprof__opts.prof_prefix, prog, (long)getpid(),
                 (unsigned long long)seq, kind, (unsigned long long)kseq, sfx);
  return (n < 0 || (size_t)n >= len) ? ENAMETOOLONG : 0;
}

/* A dump to `path`, or to the next automatic name of `kind` when path is NULL. `wait` is false
 * for automatic dumps taken from inside malloc, which must never wait for another dump or for
 * anything a dump or flush holds (seed 000; that dump may also be waiting for a lock that this
 * thread holds): every lock on the way (dump, cycle) is only tried, and when one is taken the
 * dump is skipped with EAGAIN, uses no sequence number, and the next trigger tries again. */
static int dump(const char* path, char kind, dump_what_t what, bool wait, char* name,
                size_t namelen) {
  if (!mprof__ready()) return ENOENT;
  /* A signal handler (or any other re-entry) on a thread that holds a profiler lock would wait
   * for itself: refuse. Dumping is not async-signal-safe; this only keeps it from hanging. */
  if (mprof__lock_held_by_thread()) return EDEADLK;
  /* Likewise on a thread inside the allocator with one of its locks held (a glue that says so,
   * mprof__host_set_in_allocator): the dump lock's holder may be waiting for that lock (the
   * thread snapshot's pthread_getattr_np allocates, the allocator's statistics take its locks). */
  bool (*in_allocator)(void) = atomic_load_explicit(&host_in_allocator, memory_order_acquire);
  if (in_allocator != NULL && in_allocator()) return EDEADLK;
  int saved_errno = errno;
  bool automatic = path == NULL;
  /* The allocator's own figures, read before the dump lock is taken: they may take the
   * allocator's locks (jemalloc's statistics), so the dump lock is never held while waiting
   * for them here. */
  mprof_recon_t recon;
  if (what != DUMP_MUTEX) mprof__recon_read(&recon);
  mprof__enter();
  int err = 0;
  if (wait) {
    mprof__cycle_dump_lock();
  } else if (!mprof__cycle_dump_trylock()) {
    mprof__leave();
    return EAGAIN;
  }
  if (atomic_load_explicit(&exit_state, memory_order_acquire) == EXIT_DONE) {
    err = ECANCELED; /* the process is ending: a dump now could be cut off half-written */
  }
  mprof_snap_t snap;
  memset(&snap, 0, sizeof snap);
  if (err == 0 && what != DUMP_MUTEX) {
    err = snap_locked(what, wait, &snap);
    if (err == 0) set_inflight_snap(&snap);
    if (err == EAGAIN && !wait) {
      mprof__cycle_dump_unlock();
      mprof__leave();
      errno = saved_errno;
      return EAGAIN;
    }
    if (err != 0) atomic_fetch_add_explicit(&st_dump_errors, 1, memory_order_relaxed);
  }
  /* prof_format: pprof to the path (or <name>.pb.gz), jeprof text to the path (or
   * <name>.heap), both: the pprof path and the same with .heap appended (or the two names). */
  mprof_format_t fmt = what == DUMP_MUTEX || what == DUMP_THREADS
                           ? MPROF_FORMAT_PPROF
                           : mprof__opts_format(&mprof__opts);
  char heap[PATH_MAX];
  const char* heap_path = NULL;
  if (err == 0 && path == NULL) {
    err = auto_name_locked(kind, what, name, namelen);
    size_t stem = strlen(name);
    if (err == 0 && (fmt & MPROF_FORMAT_JEPROF)) {
      if (snprintf(heap, sizeof heap, "%s.heap", name) >= (int)sizeof heap) err = ENAMETOOLONG;
      heap_path = heap;
    }
    if (err == 0 && (fmt & MPROF_FORMAT_PPROF)) {
      if (stem + sizeof ".pb.gz" > namelen)
        err = ENAMETOOLONG;
      else
        memcpy(name + stem, ".pb.gz", sizeof ".pb.gz");
      path = name;
    }
    if (err == 0 && path == NULL) memcpy(name, heap, strlen(heap) + 1); /* for messages */
  } else if (err == 0 && fmt != MPROF_FORMAT_PPROF) {
    if (fmt == MPROF_FORMAT_JEPROF) {
      heap_path = path;
      path = NULL;
    } else if (snprintf(heap, sizeof heap, "%s.heap", path) >= (int)sizeof heap) {
      err = ENAMETOOLONG;
    } else {
      heap_path = heap;
    }
  }
  if (err == 0)
    err = dump_locked(path, heap_path, automatic, what, &snap, &recon);
  else
    mprof__snap_free(&snap);
  if (what != DUMP_MUTEX) set_inflight_snap(NULL);
  mprof__cycle_dump_unlock();
  mprof__leave();
  errno = saved_errno;
  return err;
}

/* A request from the program (mprof_ctl, or jemalloc's mallctl) on a thread that is inside the
 * profiler already: a signal handler that interrupted it (the profiler may hold a lock of its
 * own, or be inside a function that holds the dynamic loader's or the allocator's), or any other
 * re-entry. Waiting would be waiting for itself: refuse with EDEADLK. The profiler's own calls
 * (automatic dumps, exit) raise busy themselves and do not come through here. */
static bool reentered(void) {
  return mprof__thread.busy != 0 || mprof__lock_held_by_thread();
}

int mprof__dump(const char* path) {
  if (reentered()) return EDEADLK;
  char name[PATH_MAX];
  return dump(path, 'm', DUMP_HEAP, true, name, sizeof name);
}

int mprof__dump_peak(const char* path) {
  if (!mprof__opts.prof_peak) return ENOENT;
  if (reentered()) return EDEADLK;
  char name[PATH_MAX];
  return dump(path, 'm', DUMP_PEAK, true, name, sizeof name);
}

int mprof__mutex_dump(const char* path) {
  if (reentered()) return EDEADLK;
  char name[PATH_MAX];
  return dump(path, 'm', DUMP_MUTEX, true, name, sizeof name);
}

int mprof__threads_dump(const char* path) {
  char name[PATH_MAX];
  return dump(path, 'm', DUMP_THREADS, true, name, sizeof name);
}

/* An automatic dump of `what` (the heap; at exit also the peak and the contention profile). */
static int dump_auto(char kind, dump_what_t what) {
  if (!mprof__ready()) return ENOENT;
  char name[PATH_MAX] = "";
  int err = dump(NULL, kind, what, kind == 'f' || kind == 'm', name, sizeof name);
  if (err == EAGAIN || err == ECANCELED || err == EDEADLK) return err; /* skipped, not failed */
  if (err != 0 && !atomic_flag_test_and_set(&warned_dump))
    say("mprof: automatic profile dump to \"%s\" failed: %s", name, strerror(err));
  return err;
}

int mprof__dump_auto(char kind) {
  if (kind == 'm' && reentered()) return EDEADLK; /* the program's request (see reentered) */
  return dump_auto(kind, DUMP_HEAP);
}

int mprof__threads_dump_auto(char kind) {
  return dump_auto(kind, DUMP_THREADS);
}

int mprof__epoch_advance(void) {
  if (reentered()) return EDEADLK;
  mprof__enter();
  mprof__cycle_dump_lock();
  mprof__cycle_advance();
  mprof__cycle_flush();
  mprof__cycle_dump_unlock();
  mprof__leave();
  return 0;
}

uint64_t mprof__epoch_read(void) {
  return mprof__cycle_current();
}

/* Sampled blocks not yet freed: every on_alloc that recorded a sample minus every on_free (a
 * glue that keeps its records elsewhere than in the block map counts the same way). */
static uint64_t live_blocks(void) {
  uint64_t frees = atomic_load_explicit(&st_frees, memory_order_relaxed);
  uint64_t samples = atomic_load_explicit(&st_samples, memory_order_relaxed);
  return samples > frees ? samples - frees : 0;
}

/* ---------------------------------------------------------------------------------------------
 * State for the control interface
 * ------------------------------------------------------------------------------------------- */
void mprof__stats_read(mprof_stats_t* s) {
  s->samples = atomic_load_explicit(&st_samples, memory_order_relaxed);
  s->frees = atomic_load_explicit(&st_frees, memory_order_relaxed);
  s->dropped_samples = atomic_load_explicit(&st_dropped, memory_order_relaxed);
  s->buckets = mprof__bucket_count(MPROF_BUCKET_HEAP);
  s->sampled_blocks = live_blocks();
  s->sampled_bytes_in_use = atomic_load_explicit(&st_inuse_bytes, memory_order_relaxed);
  s->metadata_bytes = mprof__meta_mapped_bytes();
  s->dumps = atomic_load_explicit(&st_dumps, memory_order_relaxed);
  s->dump_errors = atomic_load_explicit(&st_dump_errors, memory_order_relaxed);
  mprof_mutex_stats_t m;
  mprof__mutex_stats(&m);
  s->contentions = m.contentions;
  s->contentions_lost = m.contentions_lost;
  s->contention_buckets = m.buckets;
}

/* The resident set from /proc/self/statm (second field, in pages); read(2), no stdio. */
static uint64_t process_rss(void) {
  int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return UINT64_MAX;
  char buf[128];
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return UINT64_MAX;
  buf[n] = '\0';
  const char* p = buf;
  while (*p != '\0' && *p != ' ')
    p++;
  if (*p != ' ') return UINT64_MAX;
  p++;
  uint64_t pages = 0;
  if (*p < '0' || *p > '9') return UINT64_MAX;
  for (; *p >= '0' && *p <= '9'; p++)
    pages = pages * 10 + (uint64_t)(*p - '0');
  long page = sysconf(_SC_PAGESIZE);
  return pages * (uint64_t)(page > 0 ? page : 4096);
}

void mprof__recon_read(mprof_recon_t* r) {
  int saved_errno = errno;
  int64_t est = atomic_load_explicit(&inuse_est, memory_order_relaxed);
  r->estimated_inuse = est > 0 ? (uint64_t)est : 0;
  r->process_rss = process_rss();
  mprof_alloc_stats_t a = {UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX,
                           UINT64_MAX, UINT64_MAX, UINT64_MAX};
  /* Not from a signal handler that interrupted the allocator: its statistics take its locks. */
  bool (*in_allocator)(void) = atomic_load_explicit(&host_in_allocator, memory_order_acquire);
  bool in_alloc = in_allocator != NULL && in_allocator();
  if (host_alloc_stats != NULL && !in_alloc && host_alloc_stats(&a) != 0)
    a = (mprof_alloc_stats_t){UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX,
                              UINT64_MAX, UINT64_MAX, UINT64_MAX};
  r->committed = a.committed;
  r->peak_committed = a.peak_committed;
  r->rss = a.rss;
  r->peak_rss = a.peak_rss;
  r->allocated = a.allocated;
  r->active = a.active;
  r->resident = a.resident;
  errno = saved_errno;
}

void mprof__host_set_in_allocator(bool (*fn)(void)) {
  atomic_store_explicit(&host_in_allocator, fn, memory_order_release);
}

bool mprof__active_get(void) {
  return atomic_load_explicit(&active, memory_order_relaxed);
}

void mprof__active_set(bool on) {
  atomic_store_explicit(&active, on, memory_order_relaxed);
}

uint64_t mprof__sample_interval(void) {
  return interval;
}

const char* mprof__host_name(void) {
  return host_name;
}

/* ---------------------------------------------------------------------------------------------
 * fork() and exit
 * ------------------------------------------------------------------------------------------- */
/* The handlers take every profiler lock except the dump lock, in rank order: each of them is
 * held only for bounded, memory-only work (or, mprof_dumpfile_lock, a few system calls that wait
 * for nobody), so fork() never waits for a dump in progress, which may be blocked writing into a
 * pipe that the forking thread is the one to read. The child starts clean: every lock free, the
 * abandoned dump's descriptor closed and its snapshot released (the file belongs to the parent's
 * dump, which goes on there: the child leaves it alone; what the writer had allocated stays
 * counted in stats.metadata_bytes), and its own random draws. */
static void fork_prepare(void) {
  mprof__thread.busy++;
  mprof__lock(&mprof_dumpfile_lock);
  mprof__cycle_fork_prepare();
  mprof__mutex_fork_prepare();
  mprof__bucket_fork_prepare();
  mprof__blockmap_fork_prepare();
  mprof__meta_fork_prepare();
}

static void fork_parent(void) {
  mprof__meta_fork_parent();
  mprof__blockmap_fork_parent();
  mprof__bucket_fork_parent();
  mprof__mutex_fork_parent();
  mprof__cycle_fork_parent();
  mprof__unlock(&mprof_dumpfile_lock);
  mprof__thread.busy--;
}

/* The child starts with clean exit state: no thread of it is in exit() even if its parent's
 * were (the forking thread itself may be in an exit handler; then it goes on with the remaining
 * handlers, the final dump among them, as the child's first exit). */
static void fork_child(void) {
  mprof__tlabel_fork_child();
  mprof__threads_fork_child();
  mprof__meta_fork_child();
  mprof__blockmap_fork_child();
  mprof__bucket_fork_child();
  mprof__mutex_fork_child();
  mprof__cycle_fork_child();
  mprof__lock_reinit(&mprof_dumpfile_lock);
  if (inflight_file != NULL) {
    close(inflight_file->fd);
    if (inflight_file->dirfd >= 0) close(inflight_file->dirfd);
    inflight_file = NULL;
  }
  if (inflight_snap != NULL) {
    mprof__snap_free(inflight_snap);
    inflight_snap = NULL;
  }
  /* Work another thread had claimed, which will never finish here. */
  atomic_store(&peak_busy, false);
  int dumping = 1;
  atomic_compare_exchange_strong(&over_state, &dumping, 0);
  /* Not the parent's random sequence: a child would repeat its sampling decisions. */
  mprof_thread_t* t = &mprof__thread;
  if (t->state == MPROF_THREAD_LIVE) {
    mprof__thread_seed(t);
    t->countdown = mprof__thread_next_interval(t, interval);
  }
  atomic_store(&exit_state, EXIT_NONE);
  atomic_store(&exit_callers, exiting_here ? 1 : 0);
  mprof__thread.busy--;
}

/* exit() from several threads at once: glibc hands each exit handler to one of them and lets
 * the others run the rest of the list, or find it empty, and _exit() — which would end the
 * process in the middle of the final dump. So the glue's exit() wrapper calls mprof__exit_wait.
 * The first thread to call exit() goes on and runs the handlers (the program's, then this
 * module's final dump). A later caller may be one that the first is waiting for (an exit handler
 * that joins a thread which calls exit(): glibc lets that thread run the remaining handlers and
 * end the process), so it never waits for the program's handlers: it does the final dump itself
 * (or waits for the one in progress, which waits for nobody), then goes on to libc's exit() as it
 * would have. A thread that holds a profiler lock (exit from a signal handler that interrupted
 * the profiler) does neither: the dump would wait for it. */

static void wait_exit_done(void) {
  while (atomic_load_explicit(&exit_state, memory_order_acquire) != EXIT_DONE) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
}

void mprof__exit_wait(void) {
  if (!mprof__ready() || exiting_here) return; /* exit() from an exit handler: don't wait */
  exiting_here = 1;
  if (atomic_fetch_add(&exit_callers, 1) == 0 &&
      atomic_load_explicit(&exit_state, memory_order_acquire) == EXIT_NONE)
    return;
  if (mprof__lock_held_by_thread()) return;
  mprof__at_exit();
}

void mprof__at_exit(void) {
  int expected = EXIT_NONE;
  if (!atomic_compare_exchange_strong(&exit_state, &expected, EXIT_RUNNING)) {
    /* Another thread is writing the final dump, which waits for no other thread (unless this
     * one holds a profiler lock it needs). */
    if (!mprof__lock_held_by_thread()) wait_exit_done();
    return;
  }
  int saved_errno = errno;
  if (mprof__ready()) {
    mprof__thread.busy++;
    /* A signal whose dump no allocation took yet: take it now. */
    if (atomic_exchange(&signal_pending, 0) && mprof__opts.prof_prefix[0] != '\0') {
      mprof__dump_auto('s');
      if (mprof__opts.prof_dump_threads) mprof__threads_dump_auto('s');
    }
    if (mprof__opts.prof_final && mprof__opts.prof_prefix[0] != '\0') {
      mprof__dump_auto('f');
      if (mprof__opts.prof_peak) dump_auto('f', DUMP_PEAK);
      /* The contention profile too, when it is on or has anything to show. */
      mprof_mutex_stats_t m;
      mprof__mutex_stats(&m);
      if (mprof__mutex_fraction() != 0 || m.contentions != 0) dump_auto('f', DUMP_MUTEX);
      if (mprof__opts.prof_dump_threads) dump_auto('f', DUMP_THREADS);
    }
    if (mprof__opts.prof_leak) {
      if (!mprof__lock_held_by_thread()) mprof__cycle_publish_all();
      int64_t est = atomic_load_explicit(&inuse_est, memory_order_relaxed);
      say("mprof: leak summary: about %lld bytes in use at exit in %llu sampled blocks "
          "(estimated from samples; see the final profile for the stacks)",
          (long long)(est > 0 ? est : 0), (unsigned long long)live_blocks());
    }
    /* No dump may be left running, or start, once this returns: wait for one in progress
     * (unless this thread holds the lock itself: exit from a signal handler during a dump). */
    if (mprof__lock_held_by_thread()) {
      atomic_store_explicit(&exit_state, EXIT_DONE, memory_order_release);
    } else {
      mprof__cycle_dump_lock();
      atomic_store_explicit(&exit_state, EXIT_DONE, memory_order_release);
      mprof__cycle_dump_unlock();
    }
    mprof__thread.busy--;
  } else {
    atomic_store_explicit(&exit_state, EXIT_DONE, memory_order_release);
  }
  errno = saved_errno;
}

/* ---------------------------------------------------------------------------------------------
 * Start-up
 *
 * In two steps. The first (start_core) is what sampling needs: the options, the interval, the
 * thread key. It takes no lock of libc's and allocates nothing from the profiled heap, so a glue
 * may run it from inside the first allocation that reaches its slow path, which may come before
 * the library's constructor (another library's constructor, the dynamic loader, libstdc++'s
 * emergency pool): those allocations are then sampled like any other. The second (start_hooks)
 * registers the fork and exit handlers and the dump signal; pthread_atfork and atexit take libc
 * locks under which libc itself allocates, so it runs from the constructor only.
 * ------------------------------------------------------------------------------------------- */
static atomic_flag hooks_started = ATOMIC_FLAG_INIT;

static const mprof_callbacks_t* start_core(const mprof_host_t* h, const mprof_opts_t* opts) {
  int expected = INIT_NONE;
  if (!atomic_compare_exchange_strong(&init_state, &expected, INIT_RUNNING)) {
    while ((expected = atomic_load(&init_state)) == INIT_RUNNING) {
    }
    return expected == INIT_ON ? &callbacks : NULL;
  }
  mprof__thread.busy++;
  if (opts != NULL) {
    mprof__opts = *opts;
  } else {
    mprof__opts_default(&mprof__opts);
    const char* conf = mprof__conf_from_env();
    if (conf != NULL) mprof__conf_parse(conf, &mprof__opts, conf_report, NULL);
  }
  if (h != NULL) {
    host_name = h->name;
    host_alloc_stats = h->alloc_stats;
    mprof__thread_set_self_range(h->self_lo, h->self_hi);
  }
  if (!mprof__opts.prof) {
    atomic_store(&init_state, INIT_OFF);
    mprof__thread.busy--;
    return NULL;
  }
  interval = (uint64_t)1 << mprof__opts.lg_prof_sample;
  mprof__cycle_init_time();
  if (mprof__opts.prof_thread_labels) mprof__tlabel_init();
  callbacks.initial_interval = interval;
  atomic_store(&active, mprof__opts.prof_active);
  if (pthread_key_create(&thread_key, thread_dtor) != 0) {
    say("mprof: cannot create a thread key; profiling is off");
    atomic_store(&init_state, INIT_OFF);
    mprof__thread.busy--;
    return NULL;
  }
  mprof__mutex_start(mprof__opts.prof_mutex_fraction, mprof__opts.prof_mutex_app);
  atomic_store_explicit(&init_state, INIT_ON, memory_order_release);
  mprof__thread.busy--;
  return &callbacks;
}

static void start_hooks(void) {
  if (atomic_flag_test_and_set(&hooks_started)) return;
  mprof__thread.busy++;
  pthread_atfork(fork_prepare, fork_parent, fork_child);
  atexit(mprof__at_exit);
  install_dump_signal(); /* after INIT_ON: a signal that comes at once finds the core ready */
  mprof__thread.busy--;
}

const mprof_callbacks_t* mprof__init_early(const mprof_host_t* h) {
  /* libc sets environ in its own constructor; an allocation before that (from the dynamic
   * loader) would read no MPROF_CONF. Such allocations are left unsampled, and the next asks
   * again. */
  extern char** environ;
  if (environ == NULL) return NULL;
  return start_core(h, NULL);
}

const mprof_callbacks_t* mprof__init(const mprof_host_t* h) {
  const mprof_callbacks_t* cb = start_core(h, NULL);
  if (cb != NULL) start_hooks();
  return cb;
}

const mprof_callbacks_t* mprof__init_with_opts(const mprof_opts_t* opts) {
  const mprof_callbacks_t* cb = start_core(NULL, opts);
  if (cb != NULL) start_hooks();
  return cb;
}
