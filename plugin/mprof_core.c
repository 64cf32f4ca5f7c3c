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
#include "mprof_meta.h"
#include "mprof_jeprof.h"
#include "mprof_mutex.h"
#include "mprof_pprof.h"
#include "mprof_profile.h"
#include "mprof_snap.h"
#include "mprof_thread.h"
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
static pthread_key_t thread_key;                      /* destructor releases per-thread state */

static _Atomic uint64_t st_samples, st_frees, st_dropped, st_inuse_bytes, st_dumps, st_dump_errors;
static uint64_t dump_seq;          /* every automatic dump of this process; mprof_dump_lock */
static uint64_t kind_seq[2][6];    /* per profile (heap, mutex), kind f i m u s o; dump lock */
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
  errno = saved_errno;
  t->busy--;
  if (err == EAGAIN) {
    /* another dump is being written: take it at a later slow path */
    atomic_store_explicit(&signal_pending, 1, memory_order_relaxed);
    t->countdown = 0;
  }
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
    /* Before start-up look again after 64 KiB; with profiling off never again. */
    t->countdown = st == INIT_OFF ? UINT64_MAX : (uint64_t)1 << 16;
    return false;
  }
  if (t->state == MPROF_THREAD_DEAD) {
    t->countdown = UINT64_MAX;
    return false;
  }
  if (atomic_load_explicit(&signal_pending, memory_order_relaxed)) take_signal_dump(t);
  if (t->state == MPROF_THREAD_NEW) {
    int saved_errno = errno; /* a successful allocation leaves errno alone */
    t->busy++;
    mprof__thread_seed(t);
    pthread_setspecific(thread_key, t); /* may allocate once: served unsampled */
    t->state = MPROF_THREAD_LIVE;
    t->busy--;
    errno = saved_errno;
    t->countdown = mprof__thread_next_interval(t, interval);
    if (n <= t->countdown) {
      t->countdown -= n;
      return false;
    }
  }
  if (!atomic_load_explicit(&active, memory_order_relaxed)) {
    t->countdown = interval; /* look at the flag again after about one interval */
    return false;
  }
  t->countdown = mprof__thread_next_interval(t, interval);
  decide_errno = errno;
  decide_errno_set = true;
  return true;
}

void mprof__sample_dropped(void) {
  if (decide_errno_set) { /* the glue served the allocation unsampled: it succeeded */
    errno = decide_errno;
    decide_errno_set = false;
  }
  int saved_errno = errno;
  atomic_fetch_add_explicit(&st_dropped, 1, memory_order_relaxed);
  if (!atomic_flag_test_and_set(&warned_drop))
    say("mprof: a sample could not be recorded (out of profiler memory or sampled-block space); "
        "samples are being dropped, see stats.dropped_samples");
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
  atomic_fetch_sub_explicit(&inuse_est, (int64_t)mprof__llround(data->weight * (double)data->size),
                            memory_order_relaxed);
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
typedef enum { DUMP_HEAP, DUMP_PEAK, DUMP_MUTEX } dump_what_t;

typedef int (*writer_fn)(int fd, const void* prof);

static int write_heap(int fd, const void* prof) {
  return mprof__pprof_write_heap(fd, prof);
}

static int write_jeprof(int fd, const void* prof) {
  return mprof__jeprof_write_heap(fd, prof);
}

static int write_mutex(int fd, const void* prof) {
  return mprof__pprof_write_mutex(fd, prof);
}

/* Writes the profile to `path` (see mprof_dumpfile.h): never through a file or link that was
 * there before unless the path was asked for explicitly, never blocking on a pipe, and with
 * SIGPIPE held back so that a reader that left gives EPIPE instead of killing the program. */
static int write_file(const char* path, bool automatic, writer_fn writer, const void* prof) {
  mprof_dumpfile_t f;
  int err = mprof__dumpfile_open(&f, path, automatic);
  if (err != 0) return err;
  mprof_sigpipe_guard_t g;
  mprof__sigpipe_block(&g);
  err = writer(f.fd, prof);
  mprof__sigpipe_restore(&g, err == EPIPE);
  if (err == 0) {
    err = mprof__dumpfile_commit(&f);
  } else {
    mprof__dumpfile_abort(&f);
  }
  return err;
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

static void recon_comments(recon_comments_t* rc, const mprof_heap_rec_t* recs, size_t n) {
  rc->n = 0;
  snprintf(rc->text[0], sizeof rc->text[0], "mprof.allocator=%s", host_name);
  rc->ptrs[0] = rc->text[0];
  rc->n = 1;
  mprof_recon_t r;
  mprof__recon_read(&r);
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

/* Writes one snapshot of `what` as pprof to `path` and, for the heap profiles, as jeprof text to
 * `heap_path` (either may be NULL). Needs mprof_dump_lock; counts the result in the stats. */
static int dump_locked(const char* path, const char* heap_path, bool automatic, dump_what_t what) {
  int err = ENAMETOOLONG;
  if ((path == NULL || strlen(path) < PATH_MAX) &&
      (heap_path == NULL || strlen(heap_path) < PATH_MAX) && what == DUMP_MUTEX) {
    err = path != NULL ? dump_mutex_locked(path, automatic) : EINVAL;
  } else if ((path == NULL || strlen(path) < PATH_MAX) &&
             (heap_path == NULL || strlen(heap_path) < PATH_MAX)) {
    struct timespec mono;
    clock_gettime(CLOCK_MONOTONIC, &mono);
    mprof__cycle_publish_all();
    mprof_heap_profile_t prof;
    mprof_snap_t snap;
    unsigned flags = what == DUMP_PEAK      ? MPROF_SNAP_PEAK
                     : mprof__opts.prof_age ? MPROF_SNAP_AGES
                                            : 0;
    err = mprof__snap_heap(flags, (int64_t)mono.tv_sec * 1000000000 + mono.tv_nsec, &snap);
    if (err == 0) {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      prof.recs = snap.recs;
      prof.nrecs = snap.nrecs;
      prof.period = interval;
      prof.time_nanos = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
      recon_comments_t rc;
      recon_comments(&rc, snap.recs, snap.nrecs);
      prof.comments = (const char* const*)rc.ptrs;
      prof.ncomments = rc.n;
      if (path != NULL) err = write_file(path, automatic, write_heap, &prof);
      if (err == 0 && heap_path != NULL)
        err = write_file(heap_path, automatic, write_jeprof, &prof);
      mprof__snap_free(&snap);
    }
  }
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
  if (mprof__opts.prof_prefix[0] == '\0') return EINVAL;
  int ki = kind == 'f'   ? 0
           : kind == 'i' ? 1
           : kind == 'm' ? 2
           : kind == 'u' ? 3
           : kind == 's' ? 4
                         : 5;
  uint64_t seq = dump_seq++;
  uint64_t kseq = kind_seq[what == DUMP_MUTEX][ki]++;
  const char* sfx = what == DUMP_PEAK ? ".peak" : what == DUMP_MUTEX ? ".mutex" : "";
  char prog[80];
  program_name(prog, sizeof prog);
  int n;
  if (kind == 'f')
    n = snprintf(buf, len, "%s.%s.%ld.%llu.f%s", mprof__opts.prof_prefix, prog, (long)getpid(),
                 (unsigned long long)seq, sfx);
  else
    n = snprintf(buf, len, "%s.%s.%ld.%llu.%c%llu%s", mprof__opts.prof_prefix, prog,
                 (long)getpid(), (unsigned long long)seq, kind, (unsigned long long)kseq, sfx);
  return (n < 0 || (size_t)n >= len) ? ENAMETOOLONG : 0;
}

/* A dump to `path`, or to the next automatic name of `kind` when path is NULL. `wait` is false
 * for automatic dumps taken from inside malloc, which must never wait for another dump (that
 * dump may be waiting for a lock that this thread holds, such as the dynamic loader's): such a
 * dump is skipped with EAGAIN, uses no sequence number, and the next trigger tries again. */
static int dump(const char* path, char kind, dump_what_t what, bool wait, char* name,
                size_t namelen) {
  if (!mprof__ready()) return ENOENT;
  /* A signal handler (or any other re-entry) on a thread that holds a profiler lock would wait
   * for itself: refuse. Dumping is not async-signal-safe; this only keeps it from hanging. */
  if (mprof__lock_held_by_thread()) return EDEADLK;
  int saved_errno = errno;
  bool automatic = path == NULL;
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
  /* prof_format: pprof to the path (or <name>.pb.gz), jeprof text to the path (or
   * <name>.heap), both: the pprof path and the same with .heap appended (or the two names). */
  mprof_format_t fmt = what == DUMP_MUTEX ? MPROF_FORMAT_PPROF : mprof__opts_format(&mprof__opts);
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
  if (err == 0) err = dump_locked(path, heap_path, automatic, what);
  mprof__cycle_dump_unlock();
  mprof__leave();
  errno = saved_errno;
  return err;
}

int mprof__dump(const char* path) {
  char name[PATH_MAX];
  return dump(path, 'm', DUMP_HEAP, true, name, sizeof name);
}

int mprof__dump_peak(const char* path) {
  if (!mprof__opts.prof_peak) return ENOENT;
  char name[PATH_MAX];
  return dump(path, 'm', DUMP_PEAK, true, name, sizeof name);
}

int mprof__mutex_dump(const char* path) {
  char name[PATH_MAX];
  return dump(path, 'm', DUMP_MUTEX, true, name, sizeof name);
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
  return dump_auto(kind, DUMP_HEAP);
}

int mprof__epoch_advance(void) {
  if (mprof__lock_held_by_thread()) return EDEADLK; /* see dump() */
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
  if (host_alloc_stats != NULL && host_alloc_stats(&a) != 0)
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
static void fork_prepare(void) {
  mprof__thread.busy++;
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
  mprof__thread.busy--;
}

/* The child starts with clean exit state: no thread of it is in exit() even if its parent's
 * were (the forking thread itself may be in an exit handler; then it goes on with the remaining
 * handlers, the final dump among them, as the child's first exit). */
static void fork_child(void) {
  mprof__tlabel_fork_child();
  mprof__meta_fork_child();
  mprof__blockmap_fork_child();
  mprof__bucket_fork_child();
  mprof__mutex_fork_child();
  mprof__cycle_fork_child();
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
    if (atomic_exchange(&signal_pending, 0) && mprof__opts.prof_prefix[0] != '\0')
      mprof__dump_auto('s');
    if (mprof__opts.prof_final && mprof__opts.prof_prefix[0] != '\0') {
      mprof__dump_auto('f');
      if (mprof__opts.prof_peak) dump_auto('f', DUMP_PEAK);
      /* The contention profile too, when it is on or has anything to show. */
      mprof_mutex_stats_t m;
      mprof__mutex_stats(&m);
      if (mprof__mutex_fraction() != 0 || m.contentions != 0) dump_auto('f', DUMP_MUTEX);
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
 * ------------------------------------------------------------------------------------------- */
static const mprof_callbacks_t* start(const mprof_host_t* h) {
  int expected = INIT_NONE;
  if (!atomic_compare_exchange_strong(&init_state, &expected, INIT_RUNNING)) {
    while ((expected = atomic_load(&init_state)) == INIT_RUNNING) {
    }
    return expected == INIT_ON ? &callbacks : NULL;
  }
  mprof__thread.busy++;
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
  pthread_atfork(fork_prepare, fork_parent, fork_child);
  atexit(mprof__at_exit);
  mprof__mutex_start(mprof__opts.prof_mutex_fraction, mprof__opts.prof_mutex_app);
  atomic_store_explicit(&init_state, INIT_ON, memory_order_release);
  install_dump_signal(); /* after INIT_ON: a signal that comes at once finds the core ready */
  mprof__thread.busy--;
  return &callbacks;
}

const mprof_callbacks_t* mprof__init(const mprof_host_t* h) {
  if (atomic_load(&init_state) == INIT_NONE) {
    mprof__opts_default(&mprof__opts);
    const char* conf = mprof__conf_from_env();
    if (conf != NULL) mprof__conf_parse(conf, &mprof__opts, conf_report, NULL);
  }
  return start(h);
}

const mprof_callbacks_t* mprof__init_with_opts(const mprof_opts_t* opts) {
  if (atomic_load(&init_state) == INIT_NONE) mprof__opts = *opts;
  return start(NULL);
}
