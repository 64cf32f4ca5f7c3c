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

#include "mprof_bucket.h"
#include "mprof_cycle.h"
#include "mprof_hooks.h"
#include "mprof_meta.h"
#include "mprof_mutex.h"
#include "mprof_pprof.h"
#include "mprof_profile.h"
#include "mprof_thread.h"
#include "mprof_blockmap.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
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
static pthread_key_t thread_key; /* destructor releases per-thread state */

static _Atomic uint64_t st_samples, st_frees, st_dropped, st_inuse_bytes, st_dumps, st_dump_errors;
static uint64_t dump_seq;          /* every automatic dump of this process; mprof_dump_lock */
static uint64_t kind_seq[2][4];    /* per profile (heap, mutex) and kind f, i, m, u; dump lock */
static _Atomic uint64_t alloc_est; /* estimated bytes allocated (sum of w*size) */
static _Atomic int64_t inuse_est;  /* estimated bytes in use (sum of w*size) */
static _Atomic int64_t gdump_mark; /* high-water mark of inuse_est last dumped */
static atomic_flag warned_drop = ATOMIC_FLAG_INIT; /* "samples dropped" said once */
static atomic_flag warned_dump = ATOMIC_FLAG_INIT; /* "automatic dump failed" said once */
enum { EXIT_NONE = 0, EXIT_RUNNING, EXIT_DONE };
static _Atomic int exit_state; /* the process is exiting: see mprof__at_exit */

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

bool mprof__sample_decide(size_t n) {
  mprof_thread_t* t = &mprof__thread;
  if (t->busy) {
    /* An allocation made by the profiler itself (or by what it calls) is never sampled, and
     * must not consume the countdown the outer allocation just drew: undo its subtraction. */
    t->countdown += n;
    return false;
  }
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
  if (t->state == MPROF_THREAD_NEW) {
    t->busy++;
    mprof__thread_seed(t);
    pthread_setspecific(thread_key, t); /* may allocate once: served unsampled */
    t->state = MPROF_THREAD_LIVE;
    t->busy--;
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
  return true;
}

void mprof__sample_dropped(void) {
  atomic_fetch_add_explicit(&st_dropped, 1, memory_order_relaxed);
  if (!atomic_flag_test_and_set(&warned_drop))
    say("mprof: a sample could not be recorded (out of profiler memory or sampled-block space); "
        "samples are being dropped, see stats.dropped_samples");
}

/* Objects one sample of `size` bytes stands for: the inverse of the probability 1-exp(-size/R)
 * that an allocation of that size is sampled. */
static double sample_weight(uint64_t size) {
  if (interval <= 1 || size == 0) return 1.0;
  return 1.0 / -expm1(-(double)size / (double)interval);
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
}

static uint64_t on_alloc(mprof_sample_t* data, void* ptr, size_t size) {
  (void)ptr;
  mprof_thread_t* t = &mprof__thread;
  memset(data, 0, sizeof *data);
  t->busy++;
  uint32_t n = mprof__thread_capture(t, mprof__opts.prof_stack_depth, 0);
  mprof_bucket_t* b = n ? mprof__bucket_get(MPROF_BUCKET_HEAP, t->stack, n, 1) : NULL;
  if (b == NULL) {
    mprof__sample_dropped();
  } else {
    double w = sample_weight(size);
    data->bucket = b;
    data->size = size;
    data->weight = w;
    data->cycle = mprof__cycle_record_malloc(b, size, w);
    atomic_fetch_add_explicit(&st_samples, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&st_inuse_bytes, size, memory_order_relaxed);
    int64_t est = (int64_t)llround(w * (double)size);
    int64_t inuse_now = atomic_fetch_add_explicit(&inuse_est, est, memory_order_relaxed) + est;
    maybe_auto_work((uint64_t)est, inuse_now);
  }
  t->busy--;
  return t->countdown;
}

static void on_free(const mprof_sample_t* data, void* ptr) {
  (void)ptr;
  if (data->bucket == NULL) return;
  mprof_thread_t* t = &mprof__thread;
  t->busy++;
  mprof__cycle_record_free(data->bucket, data->size, data->weight, data->cycle);
  atomic_fetch_add_explicit(&st_frees, 1, memory_order_relaxed);
  atomic_fetch_sub_explicit(&st_inuse_bytes, data->size, memory_order_relaxed);
  atomic_fetch_sub_explicit(&inuse_est, (int64_t)llround(data->weight * (double)data->size),
                            memory_order_relaxed);
  t->busy--;
}

static void on_epoch(void) {
  mprof__enter();
  mprof__cycle_advance();
  mprof__cycle_flush();
  mprof__leave();
}

static mprof_callbacks_t callbacks = {
    .sample_data_size = sizeof(mprof_sample_t),
    .on_alloc = on_alloc,
    .on_free = on_free,
    .on_epoch = on_epoch,
};

/* ---------------------------------------------------------------------------------------------
 * Snapshots and dumps
 * ------------------------------------------------------------------------------------------- */
static int64_t round_pos(double x) {
  return x <= 0.5 ? 0 : (int64_t)llround(x);
}

/* Copies the published records into recs (profiler memory). Holds mprof_active_lock for the
 * copy only: allocating threads are never blocked by it. */
static int snapshot(mprof_heap_rec_t** out, size_t* nout, size_t* cap_bytes) {
  mprof__cycle_active_lock();
  mprof_bucket_t* head = mprof__bucket_list(MPROF_BUCKET_HEAP);
  size_t n = 0;
  for (mprof_bucket_t* b = head; b != NULL; b = b->allnext)
    n++;
  size_t bytes = (n ? n : 1) * sizeof(mprof_heap_rec_t);
  mprof_heap_rec_t* recs = mprof__meta_alloc(bytes);
  if (recs == NULL) {
    mprof__cycle_active_unlock();
    return ENOMEM;
  }
  size_t k = 0;
  for (mprof_bucket_t* b = head; b != NULL; b = b->allnext) {
    const mprof_mem_cycle_t* a = &b->rec.mem.active;
    if (a->allocs == 0) continue;
    mprof_heap_rec_t* r = &recs[k++];
    r->pcs = b->stk;
    r->npcs = b->nstk;
    r->alloc_objects = round_pos(a->walloc_objs);
    r->alloc_bytes = round_pos(a->walloc_bytes);
    if (a->allocs != a->frees) {
      r->inuse_objects = round_pos(a->walloc_objs - a->wfree_objs);
      r->inuse_bytes = round_pos(a->walloc_bytes - a->wfree_bytes);
    }
  }
  mprof__cycle_active_unlock();
  *out = recs;
  *nout = k;
  *cap_bytes = bytes;
  return 0;
}

/* Writes the profile to `path` through a temporary file in the same directory and a rename, so
 * a reader never sees half a profile and a failed dump leaves an older file intact. A path that
 * exists and is not a regular file (a pipe, /dev/stdout, /dev/full) is written in place. */
typedef int (*writer_fn)(int fd, const void* prof);

static int write_heap(int fd, const void* prof) {
  return mprof__pprof_write_heap(fd, prof);
}

static int write_mutex(int fd, const void* prof) {
  return mprof__pprof_write_mutex(fd, prof);
}

static int write_file(const char* path, writer_fn writer, const void* prof) {
  struct stat st;
  if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return errno;
    int err = writer(fd, prof);
    if (close(fd) != 0 && err == 0) err = errno;
    return err;
  }
  char tmp[PATH_MAX];
  int n = snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  if (n < 0 || (size_t)n >= sizeof tmp) return ENAMETOOLONG;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return errno;
  int err = writer(fd, prof);
  if (close(fd) != 0 && err == 0) err = errno;
  if (err == 0 && rename(tmp, path) != 0) err = errno;
  if (err != 0) unlink(tmp);
  return err;
}

/* Writes the contention profile to `path`. Needs mprof_dump_lock. */
static int dump_mutex_locked(const char* path) {
  mprof_mutex_profile_t prof;
  size_t cap_bytes;
  int err = mprof__mutex_snapshot(&prof, &cap_bytes);
  if (err == 0) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    prof.time_nanos = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    err = write_file(path, write_mutex, &prof);
    mprof__mutex_snapshot_free(&prof, cap_bytes);
  }
  return err;
}

/* Writes one profile to `path`. Needs mprof_dump_lock; counts the result in the stats. */
static int dump_locked(const char* path, bool mutex) {
  int err = ENAMETOOLONG;
  if (strlen(path) < PATH_MAX && mutex) {
    err = dump_mutex_locked(path);
  } else if (strlen(path) < PATH_MAX) {
    mprof__cycle_publish_all();
    mprof_heap_profile_t prof;
    mprof_heap_rec_t* recs;
    size_t cap_bytes;
    err = snapshot(&recs, &prof.nrecs, &cap_bytes);
    if (err == 0) {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      prof.recs = recs;
      prof.period = interval;
      prof.time_nanos = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
      err = write_file(path, write_heap, &prof);
      mprof__meta_free(recs, cap_bytes);
    }
  }
  atomic_fetch_add_explicit(err ? &st_dump_errors : &st_dumps, 1, memory_order_relaxed);
  return err;
}

/* The next automatic name of `kind`. Needs mprof_dump_lock, so numbers follow the dump order. */
static int auto_name_locked(char kind, bool mutex, char* buf, size_t len) {
  if (mprof__opts.prof_prefix[0] == '\0') return EINVAL;
  int ki = kind == 'f' ? 0 : kind == 'i' ? 1 : kind == 'm' ? 2 : 3;
  uint64_t seq = dump_seq++;
  uint64_t kseq = kind_seq[mutex][ki]++;
  const char* ext = mutex ? "mutex.pb.gz" : "pb.gz";
  int n;
  if (kind == 'f')
    n = snprintf(buf, len, "%s.%ld.%llu.f.%s", mprof__opts.prof_prefix, (long)getpid(),
                 (unsigned long long)seq, ext);
  else
    n = snprintf(buf, len, "%s.%ld.%llu.%c%llu.%s", mprof__opts.prof_prefix, (long)getpid(),
                 (unsigned long long)seq, kind, (unsigned long long)kseq, ext);
  return (n < 0 || (size_t)n >= len) ? ENAMETOOLONG : 0;
}

/* A dump to `path`, or to the next automatic name of `kind` when path is NULL. `wait` is false
 * for automatic dumps taken from inside malloc, which must never wait for another dump (that
 * dump may be waiting for a lock that this thread holds, such as the dynamic loader's): such a
 * dump is skipped with EAGAIN, uses no sequence number, and the next trigger tries again. */
static int dump(const char* path, char kind, bool mutex, bool wait, char* name, size_t namelen) {
  if (!mprof__ready()) return ENOENT;
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
  } else if (path == NULL) {
    err = auto_name_locked(kind, mutex, name, namelen);
    path = name;
  }
  if (err == 0) err = dump_locked(path, mutex);
  mprof__cycle_dump_unlock();
  mprof__leave();
  return err;
}

int mprof__dump(const char* path) {
  char name[PATH_MAX];
  return dump(path, 'm', false, true, name, sizeof name);
}

int mprof__mutex_dump(const char* path) {
  char name[PATH_MAX];
  return dump(path, 'm', true, true, name, sizeof name);
}

static int dump_auto(char kind, bool mutex) {
  if (!mprof__ready()) return ENOENT;
  char name[PATH_MAX] = "";
  int err = dump(NULL, kind, mutex, kind == 'f' || kind == 'm', name, sizeof name);
  if (err == EAGAIN || err == ECANCELED) return err; /* skipped, not failed */
  if (err != 0 && !atomic_flag_test_and_set(&warned_dump))
    say("mprof: automatic profile dump to \"%s\" failed: %s", name, strerror(err));
  return err;
}

int mprof__dump_auto(char kind) {
  return dump_auto(kind, false);
}

uint64_t mprof__epoch_advance(void) {
  mprof__enter();
  mprof__cycle_dump_lock();
  mprof__cycle_advance();
  mprof__cycle_flush();
  uint64_t c = mprof__cycle_current();
  mprof__cycle_dump_unlock();
  mprof__leave();
  return c;
}

uint64_t mprof__epoch_read(void) {
  return mprof__cycle_current();
}

/* ---------------------------------------------------------------------------------------------
 * State for the control interface
 * ------------------------------------------------------------------------------------------- */
void mprof__stats_read(mprof_stats_t* s) {
  s->samples = atomic_load_explicit(&st_samples, memory_order_relaxed);
  s->frees = atomic_load_explicit(&st_frees, memory_order_relaxed);
  s->dropped_samples = atomic_load_explicit(&st_dropped, memory_order_relaxed);
  s->buckets = mprof__bucket_count(MPROF_BUCKET_HEAP);
  s->sampled_blocks = mprof__blockmap_count();
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

static void fork_child(void) {
  mprof__meta_fork_child();
  mprof__blockmap_fork_child();
  mprof__bucket_fork_child();
  mprof__mutex_fork_child();
  mprof__cycle_fork_child();
  mprof__thread.busy--;
}

/* exit() from several threads at once: glibc hands each exit handler to one of them and lets
 * the others run the rest of the list, or find it empty, and _exit() — which would end the
 * process in the middle of the final dump. So the glue's exit() wrapper calls mprof__exit_wait:
 * the first thread to call exit() goes on and runs the handlers (the program's, then this
 * module's final dump); every other one waits until the final dump is done, then goes on to
 * libc's exit() as it would have. A waiting thread holds no profiler lock. */
static _Atomic int exit_callers;
static __thread int exiting_here __attribute__((tls_model("initial-exec")));

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
  wait_exit_done();
}

void mprof__at_exit(void) {
  int expected = EXIT_NONE;
  if (!atomic_compare_exchange_strong(&exit_state, &expected, EXIT_RUNNING)) {
    wait_exit_done();
    return;
  }
  if (mprof__ready()) {
    mprof__thread.busy++;
    if (mprof__opts.prof_final && mprof__opts.prof_prefix[0] != '\0') {
      mprof__dump_auto('f');
      /* The contention profile too, when it is on or has anything to show. */
      mprof_mutex_stats_t m;
      mprof__mutex_stats(&m);
      if (mprof__mutex_fraction() != 0 || m.contentions != 0) dump_auto('f', true);
    }
    if (mprof__opts.prof_leak) {
      mprof__cycle_publish_all();
      int64_t est = atomic_load_explicit(&inuse_est, memory_order_relaxed);
      say("mprof: leak summary: about %lld bytes in use at exit in %llu sampled blocks "
          "(estimated from samples; see the final profile for the stacks)",
          (long long)(est > 0 ? est : 0), (unsigned long long)mprof__blockmap_count());
    }
    /* No dump may be left running, or start, once this returns: wait for one in progress. */
    mprof__cycle_dump_lock();
    atomic_store_explicit(&exit_state, EXIT_DONE, memory_order_release);
    mprof__cycle_dump_unlock();
    mprof__thread.busy--;
  } else {
    atomic_store_explicit(&exit_state, EXIT_DONE, memory_order_release);
  }
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
    mprof__thread_set_self_range(h->self_lo, h->self_hi);
  }
  if (!mprof__opts.prof) {
    atomic_store(&init_state, INIT_OFF);
    mprof__thread.busy--;
    return NULL;
  }
  interval = (uint64_t)1 << mprof__opts.lg_prof_sample;
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
