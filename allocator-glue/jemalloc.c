/* The jemalloc glue: libmprof-jemalloc.so is jemalloc 5.3.0 (built from its source, profiling
 * compiled in) with the profiling core in place of jemalloc's own profiler's bookkeeping.
 *
 * jemalloc keeps doing the allocator's part of profiling, unchanged:
 *   - its per-thread event counter decides when an allocation is sampled (the unsampled fast
 *     paths of malloc, free, new and delete are jemalloc's own, instruction for instruction);
 *   - it promotes a sampled block to its own extent and keeps one profiling record pointer in
 *     the extent's metadata, so that free() finds out, on its slow path, that the block was
 *     sampled and hands that record back.
 * What jemalloc's profiler would do with a sample (unwind, look the stack up in its global
 * table under a global lock, count it per thread) is replaced at link time: the library is
 * linked with `-Wl,--wrap` on six of jemalloc's internal profiling functions (the calls cross
 * object files, so the linker can route them here; no line of jemalloc changes):
 *
 *   prof_sample_new_event_wait,        the bytes until this thread's next sample: the core's
 *   prof_sample_postponed_event_wait   exponential countdown (mprof__sample_wait) instead of
 *                                      jemalloc's geometric one, so the core's rate applies;
 *                                      jemalloc asks when it sets a thread up, so the thread's
 *                                      first allocation is compared with a real countdown;
 *   prof_tctx_create                   "sample this allocation?": the core decides
 *                                      (mprof__sample_decide) and a record is taken (or, for a
 *                                      thread set up before the core started, taken undecided);
 *   prof_malloc_sample_object          the sampled block now exists: on_alloc fills the record,
 *                                      which jemalloc stores in the block's extent (an
 *                                      undecided record is decided first, with the size);
 *   prof_free_sampled_object           a sampled block is being freed: on_free with its record;
 *   prof_alloc_rollback                a sampled allocation failed: the record goes back.
 *
 * and five others: malloc_mutex_lock_slow (jemalloc's wait for one of its own mutexes: run with
 * the profiler's re-entry guard raised: recording a wait there would run the profiler while
 * jemalloc holds that mutex, and anything it allocated could need it again; jemalloc's pthread
 * mutex calls themselves are renamed to the glue's, see "jemalloc's mutexes held by this thread"),
 * prof_mdump (mallctl "prof.dump": a profile from the core, in the format of the
 * `prof_format` option), prof_active_get/set (mallctl "prof.active": the core's active flag) and
 * prof_unwind_init (jemalloc's start-up warm-up of an unwinder it will not use here). jemalloc's own profiling options are fixed at start-up through its
 * `malloc_conf_2_conf_harder` configuration source, read after MALLOC_CONF: profiling on,
 * its own dumps (final, interval, high-water, leak report) off, since the core does them.
 *
 * The record handed to jemalloc as its "tctx" is a glue_rec_t in profiler memory: the core's
 * mprof_sample_t plus the block's address (jemalloc's free path passes the record, not the
 * address). A copy of the sample also goes into the core's block map, whose walk gives dumps the
 * ages of live blocks, as with every glue. jemalloc never dereferences it (the functions that
 * would are the wrapped ones). Records are recycled through a free list under one lock, taken
 * once per sample and once per sampled free.
 *
 * The core's code runs inside jemalloc's calls with jemalloc's re-entrancy level raised (as
 * jemalloc does around its own unwinder), so whatever it allocates (glibc internals, libunwind's
 * first use on a thread) is served by jemalloc without events and never sampled. */
#include "jemalloc/internal/jemalloc_preamble.h"
#include "jemalloc/internal/jemalloc_internal_includes.h"

#include "glue.h"
#include "mprof_blockmap.h"
#include "mprof_hooks.h"
#include "mprof_meta.h"
#include "mprof_thread.h"

#include <stdatomic.h>

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define MPROF_PUBLIC __attribute__((visibility("default")))

/* The core's dump and control entry points (plugin/mprof_core.h). Declared here rather than
 * included: that header's names would meet jemalloc's internal macros. */
int mprof__dump(const char* path);
int mprof__dump_auto(char kind);
bool mprof__active_get(void);
void mprof__active_set(bool on);

/* jemalloc's profiling, as this library runs it. Options a user sets in MALLOC_CONF for
 * jemalloc's own tuning (arenas, decay, tcache, ...) keep working; these are read after it.
 * prof_leak_error is off with prof_final: jemalloc refuses the one without the other (and with
 * abort_conf:true would abort the program). */
const char* je_malloc_conf_2_conf_harder =
    "prof:true,prof_active:true,prof_thread_active_init:true,prof_accum:false,"
    "prof_final:false,prof_gdump:false,prof_leak:false,prof_leak_error:false,lg_prof_interval:-1,"
    "prof_recent_alloc_max:0,prof_stats:false,prof_sys_thread_name:false,prof_log:false";

static const mprof_callbacks_t* cb; /* set once at start-up; NULL: profiling off */

/* Start-up: by the first sample point (glue_start_early), or by the constructor, whichever comes
 * first; the constructor finishes it. */
enum { GLUE_NONE = 0, GLUE_STARTING, GLUE_STARTED };
static _Atomic int glue_state;
static void glue_start_early(tsd_t* tsd);

/* ---------------------------------------------------------------------------------------------
 * Records
 * ------------------------------------------------------------------------------------------- */
typedef struct glue_rec_s {
  mprof_sample_t s;
  const void* ptr;
  struct glue_rec_s* next; /* free list */
  bool undecided;          /* taken before the allocation's size was known: decided then */
  bool in_map;             /* a copy of s is in the core's block map (for ages) */
} glue_rec_t;

#define REC_CHUNK 256
static pthread_mutex_t rec_lock = PTHREAD_MUTEX_INITIALIZER;
static glue_rec_t* rec_free_list;

static glue_rec_t* rec_get(void) {
  pthread_mutex_lock(&rec_lock);
  glue_rec_t* r = rec_free_list;
  if (r == NULL) {
    glue_rec_t* chunk = mprof__meta_alloc(REC_CHUNK * sizeof *chunk);
    if (chunk != NULL) {
      for (size_t i = 1; i < REC_CHUNK - 1; i++)
        chunk[i].next = &chunk[i + 1];
      chunk[REC_CHUNK - 1].next = NULL;
      rec_free_list = &chunk[1];
      r = &chunk[0];
    }
  } else {
    rec_free_list = r->next;
  }
  pthread_mutex_unlock(&rec_lock);
  return r;
}

static void rec_put(glue_rec_t* r) {
  pthread_mutex_lock(&rec_lock);
  r->next = rec_free_list;
  rec_free_list = r;
  pthread_mutex_unlock(&rec_lock);
}

/* ---------------------------------------------------------------------------------------------
 * The sampler
 * ------------------------------------------------------------------------------------------- */
/* jemalloc keeps the per-thread byte counter and asks for the bytes until the next sample
 * point when it sets a thread up and after each sample point; the core answers
 * (mprof__sample_wait) with its exponential countdown. */
uint64_t __wrap_je_prof_sample_new_event_wait(tsd_t* tsd);
uint64_t __wrap_je_prof_sample_postponed_event_wait(tsd_t* tsd);
prof_tctx_t* __wrap_je_prof_tctx_create(tsd_t* tsd);
void __wrap_je_prof_malloc_sample_object(tsd_t* tsd, const void* ptr, size_t size, size_t usize,
                                         prof_tctx_t* tctx);
void __wrap_je_prof_free_sampled_object(tsd_t* tsd, size_t usize, prof_info_t* prof_info);
void __wrap_je_prof_alloc_rollback(tsd_t* tsd, prof_tctx_t* tctx);
bool __wrap_je_prof_mdump(tsd_t* tsd, const char* filename);
bool __wrap_je_prof_active_get(tsdn_t* tsdn);
bool __wrap_je_prof_active_set(tsdn_t* tsdn, bool active);
void __wrap_je_prof_unwind_init(void);
void __real_je_malloc_mutex_lock_slow(malloc_mutex_t* mutex);
void __wrap_je_malloc_mutex_lock_slow(malloc_mutex_t* mutex);

uint64_t __wrap_je_prof_sample_new_event_wait(tsd_t* tsd) {
  (void)tsd;
  return mprof__sample_wait();
}

uint64_t __wrap_je_prof_sample_postponed_event_wait(tsd_t* tsd) {
  (void)tsd;
  return mprof__sample_wait();
}

prof_tctx_t* __wrap_je_prof_tctx_create(tsd_t* tsd) {
  if (!tsd_nominal(tsd) || tsd_reentrancy_level_get(tsd) > 0) return (prof_tctx_t*)(uintptr_t)1U;
  if (mprof__thread.busy) return (prof_tctx_t*)(uintptr_t)1U; /* the profiler's own allocation */
  if (__builtin_expect(atomic_load_explicit(&glue_state, memory_order_acquire) == GLUE_NONE, 0))
    glue_start_early(tsd);
  if (mprof__sample_needs_size()) {
    /* This thread was set up before the core started, so its countdown was never drawn: the
     * core decides once the size is known (prof_malloc_sample_object). Until then the block is
     * placed as a sampled one is. */
    glue_rec_t* r = cb != NULL ? rec_get() : NULL;
    if (r == NULL) return (prof_tctx_t*)(uintptr_t)1U;
    r->undecided = true;
    return (prof_tctx_t*)r;
  }
  /* jemalloc's countdown for this thread ran out: the core's decision, which also draws the
   * next countdown. */
  if (!mprof__sample_decide(1)) return (prof_tctx_t*)(uintptr_t)1U;
  glue_rec_t* r = cb != NULL ? rec_get() : NULL;
  if (r == NULL) {
    mprof__sample_dropped();
    return (prof_tctx_t*)(uintptr_t)1U;
  }
  r->undecided = false;
  return (prof_tctx_t*)r;
}

/* The address of a sampled block reallocated in place whose old record is about to be freed
 * (see prof_malloc_sample_object), on this thread. */
static __thread const void* displaced __attribute__((tls_model("initial-exec")));

void __wrap_je_prof_malloc_sample_object(tsd_t* tsd, const void* ptr, size_t size, size_t usize,
                                         prof_tctx_t* tctx) {
  glue_rec_t* r = (glue_rec_t*)tctx;
  edata_t* edata = emap_edata_lookup(tsd_tsdn(tsd), &arena_emap_global, ptr);
  r->ptr = ptr;
  r->s.bucket = NULL;
  if (!r->undecided || mprof__sample_decide(usize)) {
    pre_reentrancy(tsd, NULL);
    /* jemalloc's countdown charged usize bytes: that sets the weight; size is reported. */
    cb->on_alloc_counted(&r->s, (void*)(uintptr_t)ptr, size, usize);
    post_reentrancy(tsd);
  }
  if (r->s.bucket == NULL) { /* not recorded: the block frees as an unsampled one */
    rec_put(r);
    arena_prof_info_set(tsd, edata, (prof_tctx_t*)(uintptr_t)1U, size);
    return;
  }
  /* A copy in the core's block map, whose walk gives dumps the ages of live blocks (prof_age).
   * If the map cannot grow the block still counts, in its stack's figures without an age. */
  mprof_sample_t prev;
  if (mprof__blockmap_remove(ptr, &prev)) {
    /* A sampled block reallocated in place: jemalloc records the new sample first, then frees
     * the old one (prof_realloc), whose copy at the same address goes now. */
    displaced = ptr;
  }
  r->in_map = mprof__blockmap_insert(ptr, &r->s) == 0;
  prof_info_set(tsd, edata, tctx, size);
}

void __wrap_je_prof_free_sampled_object(tsd_t* tsd, size_t usize, prof_info_t* prof_info) {
  (void)usize;
  glue_rec_t* r = (glue_rec_t*)prof_info->alloc_tctx;
  pre_reentrancy(tsd, NULL);
  mprof_sample_t copy;
  if (r->ptr == displaced)
    displaced = NULL; /* its copy went when the block was reallocated in place */
  else if (r->in_map)
    mprof__blockmap_remove(r->ptr, &copy);
  r->in_map = false;
  cb->on_free(&r->s, (void*)(uintptr_t)r->ptr);
  post_reentrancy(tsd);
  rec_put(r);
}

void __wrap_je_prof_alloc_rollback(tsd_t* tsd, prof_tctx_t* tctx) {
  (void)tsd;
  if ((uintptr_t)tctx > (uintptr_t)1U) rec_put((glue_rec_t*)tctx);
}

/* mallctl("prof.dump"): a profile from the core, to the path given or to the next automatic
 * name. true (jemalloc's EFAULT) when it could not be written. */
bool __wrap_je_prof_mdump(tsd_t* tsd, const char* filename) {
  (void)tsd;
  if (cb == NULL) return true;
  int err = filename != NULL ? mprof__dump(filename) : mprof__dump_auto('m');
  return err != 0;
}

/* jemalloc's warm-up of its unwinder at start-up: not used here (the core unwinds), and its
 * first use would open libunwind's validation pipe outside the profiler (see glue.h). */
void __wrap_je_prof_unwind_init(void) {}

/* A contended jemalloc mutex: jemalloc's spin and wait, not the program's (see the top). Its
 * pthread calls come to the glue's counting functions below, not to the interposer; the guard
 * stays raised so that nothing in the profiler runs while jemalloc waits. */
void __wrap_je_malloc_mutex_lock_slow(malloc_mutex_t* mutex) {
  mprof__thread.busy++;
  __real_je_malloc_mutex_lock_slow(mutex);
  mprof__thread.busy--;
}

/* ---------------------------------------------------------------------------------------------
 * jemalloc's mutexes held by this thread
 *
 * jemalloc's malloc_mutex_t is a pthread_mutex_t taken with pthread_mutex_lock, _trylock and
 * _unlock (include/jemalloc/internal/mutex.h); those are its only callers of the three. In the
 * glue's copy of jemalloc's archive they are renamed mprof__je_pthread_mutex_<op>
 * (cmake/jemalloc.cmake), defined here: glibc's, plus a count of the jemalloc mutexes this thread
 * holds. The program's own mutexes never come here, and jemalloc's paths that take no mutex (its
 * thread caches) are unchanged. The count is what mprof__host_set_in_allocator asks: a signal
 * handler that interrupted jemalloc with a mutex held must not run jemalloc's statistics, which
 * would take that mutex again on the same thread (mprof_ctl answers EDEADLK instead).
 *
 * It is raised before the mutex is taken and lowered after it is released, so that a handler
 * never sees 0 while one is held (it may see 1 while one is only being waited for: it then
 * answers EDEADLK when it need not). A thread that forked with jemalloc's mutexes held (jemalloc's
 * prefork takes them all) has a child in which jemalloc reinitialises them rather than unlocking
 * them: the child's count restarts at 0 (rec_fork_child). The lock is glibc's through
 * mprof__sys_mutex_lock, since pthread_mutex_lock is the library's own interposer
 * (plugin/mprof_mutex_app.c); trylock and unlock are not interposed. A pthread_cond_wait on a jemalloc mutex (background threads) keeps
 * the count: the mutex is held again when it returns. */
static __thread unsigned je_locks_held;

int mprof__sys_mutex_lock(pthread_mutex_t* m); /* plugin/mprof_lock.h */
int mprof__je_pthread_mutex_lock(pthread_mutex_t* m);
int mprof__je_pthread_mutex_trylock(pthread_mutex_t* m);
int mprof__je_pthread_mutex_unlock(pthread_mutex_t* m);

int mprof__je_pthread_mutex_lock(pthread_mutex_t* m) {
  je_locks_held++;
  atomic_signal_fence(memory_order_seq_cst);
  int r = mprof__sys_mutex_lock(m);
  if (r != 0) je_locks_held--;
  return r;
}

int mprof__je_pthread_mutex_trylock(pthread_mutex_t* m) {
  je_locks_held++;
  atomic_signal_fence(memory_order_seq_cst);
  int r = pthread_mutex_trylock(m);
  if (r != 0) {
    atomic_signal_fence(memory_order_seq_cst);
    je_locks_held--;
  }
  return r;
}

int mprof__je_pthread_mutex_unlock(pthread_mutex_t* m) {
  int r = pthread_mutex_unlock(m);
  atomic_signal_fence(memory_order_seq_cst);
  if (r == 0) je_locks_held--;
  return r;
}

/* mprof__host_set_in_allocator's question: async-signal-safe, one TLS read. */
static bool glue_in_allocator(void) {
  return je_locks_held != 0;
}

/* mallctl("prof.active"): the core's flag (jemalloc's own stays on). */
bool __wrap_je_prof_active_get(tsdn_t* tsdn) {
  (void)tsdn;
  return mprof__active_get();
}

bool __wrap_je_prof_active_set(tsdn_t* tsdn, bool active) {
  (void)tsdn;
  bool old = mprof__active_get();
  mprof__active_set(active);
  return old;
}

/* ---------------------------------------------------------------------------------------------
 * The malloc family, with glibc's results and errno where jemalloc 5.3.0's differ (compared call
 * by call in tests/integration/it_errno.sh): jemalloc leaves errno alone when realloc cannot grow
 * a block and when memalign or valloc fail, and its memalign refuses an alignment that is not a
 * power of two, which glibc rounds up. (Its posix_memalign is kept: it returns the error and
 * leaves errno alone, as POSIX has it; see docs/OPTIONS.md.) jemalloc's own functions are renamed in the
 * archive the library is linked from (cmake/jemalloc.cmake) and called from here; hidden, so they
 * are not exported.
 * ------------------------------------------------------------------------------------------- */
__attribute__((visibility("hidden"))) void* mprof__je_realloc(void* p, size_t n);
__attribute__((visibility("hidden"))) void* mprof__je_memalign(size_t align, size_t n);

MPROF_PUBLIC void* realloc(void* p, size_t n) {
  void* r = mprof__je_realloc(p, n);
  if (r == NULL && n != 0) errno = ENOMEM; /* n == 0: p was freed (glibc's realloc(p, 0)) */
  return r;
}

MPROF_PUBLIC void* memalign(size_t align, size_t n) {
  if (align > SIZE_MAX / 2 + 1) { /* no power of two to round up to */
    errno = EINVAL;
    return NULL;
  }
  size_t a = 1;
  while (a < align)
    a <<= 1;
  void* r = mprof__je_memalign(a, n);
  if (r == NULL) errno = ENOMEM;
  return r;
}

MPROF_PUBLIC void* valloc(size_t n) {
  return memalign((size_t)sysconf(_SC_PAGESIZE), n);
}

/* pvalloc(): jemalloc 5.3.0 does not define it, and glibc's serves it from glibc's own heap,
 * which free() here cannot take back. The page-rounded request, as glibc rounds it. */
void* pvalloc(size_t n);
MPROF_PUBLIC void* pvalloc(size_t n) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  size_t r;
  if (__builtin_add_overflow(n, page - 1, &r)) {
    errno = ENOMEM;
    return NULL;
  }
  r &= ~(page - 1);
  return memalign(page, r ? r : page);
}

/* ---------------------------------------------------------------------------------------------
 * Start-up
 * ------------------------------------------------------------------------------------------- */
static void rec_fork_prepare(void) {
  pthread_mutex_lock(&rec_lock);
}

static void rec_fork_parent(void) {
  pthread_mutex_unlock(&rec_lock);
}

static void rec_fork_child(void) {
  pthread_mutex_init(&rec_lock, NULL);
  je_locks_held = 0; /* jemalloc reinitialises the mutexes its prefork took */
}

/* jemalloc's own figures for the reconciliation (mprof_hooks.h): stats.allocated, stats.active
 * and stats.resident after an epoch refresh. Not from inside jemalloc (an automatic dump taken
 * while a sample is recorded): its control mutex and arena stats must not be taken there, so
 * the figures are then left unknown. */
static int glue_alloc_stats(mprof_alloc_stats_t* out) {
  tsd_t* tsd = tsd_fetch();
  if (!tsd_nominal(tsd) || tsd_reentrancy_level_get(tsd) > 0) return EAGAIN;
  uint64_t e = 1;
  size_t len = sizeof e;
  if (je_mallctl("epoch", &e, &len, &e, sizeof e) != 0) return EAGAIN;
  size_t allocated = 0, active = 0, resident = 0;
  len = sizeof(size_t);
  if (je_mallctl("stats.allocated", &allocated, &len, NULL, 0) != 0 ||
      je_mallctl("stats.active", &active, &len, NULL, 0) != 0 ||
      je_mallctl("stats.resident", &resident, &len, NULL, 0) != 0)
    return EAGAIN;
  *out = (mprof_alloc_stats_t){UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX,
                               allocated,  active,     resident};
  return 0;
}

/* What the core is told about this library; filled once, by whichever start comes first. */
static const mprof_host_t* glue_host(void) {
  static mprof_host_t host;
  if (host.name == NULL) {
    /* Frames in this library (jemalloc, operator new, the core) are dropped from the leaf end. */
    uintptr_t lo, hi;
    mprof__glue_start((const void*)&cb, &lo, &hi);
    host = (mprof_host_t){"jemalloc " JEMALLOC_VERSION, lo, hi, glue_alloc_stats};
    mprof__host_set_in_allocator(glue_in_allocator);
  }
  return &host;
}

/* The core started at the first sample point, before the constructor ran (a library's
 * constructor, the dynamic loader or libstdc++'s emergency pool allocated first): those
 * allocations are sampled like the program's own (mprof_hooks.h). jemalloc's re-entrancy level
 * is raised, so what this allocates is served without events. */
static void glue_start_early(tsd_t* tsd) {
  int expected = GLUE_NONE;
  if (!atomic_compare_exchange_strong(&glue_state, &expected, GLUE_STARTING)) return;
  pre_reentrancy(tsd, NULL);
  mprof__enter();
  cb = mprof__init_early(glue_host());
  mprof__leave();
  post_reentrancy(tsd);
  /* Too early to read the options: the next sample point tries again. */
  atomic_store_explicit(&glue_state, cb != NULL || mprof__ready() ? GLUE_STARTED : GLUE_NONE,
                        memory_order_release);
}

/* MALLOC_CONF's profiling options (prof, prof_*, lg_prof_*) are accepted, as plain jemalloc
 * accepts them, and have no effect here: profiling is MPROF_CONF's (docs/OPTIONS.md). One line on
 * stderr names the ones the environment set, so that nobody waits for a jemalloc dump that will
 * not come. */
static void note_malloc_conf_prof(void) {
  const char* conf = secure_getenv("MALLOC_CONF");
  if (conf == NULL) return;
  static const char head[] = "mprof: MALLOC_CONF profiling options have no effect in "
                             "libmprof-jemalloc.so (profiling is set by MPROF_CONF):";
  char line[512];
  size_t len = sizeof head - 1, found = 0;
  memcpy(line, head, len);
  while (*conf != '\0') {
    size_t n = strcspn(conf, ":,"), klen = n;
    bool prof = (n >= 4 && strncmp(conf, "prof", 4) == 0 && (n == 4 || conf[4] == '_')) ||
                (n > 8 && strncmp(conf, "lg_prof_", 8) == 0);
    if (prof && len + klen + 5 < sizeof line) {
      line[len++] = ' ';
      memcpy(line + len, conf, klen);
      len += klen;
      found++;
    }
    conf += n;
    conf += strcspn(conf, ","); /* the value */
    if (*conf == ',') conf++;
  }
  if (found == 0) return;
  line[len++] = '\n';
  int saved = errno;
  ssize_t w = write(STDERR_FILENO, line, len);
  (void)w;
  errno = saved;
}

__attribute__((constructor)) static void mprof_jemalloc_init(void) {
  note_malloc_conf_prof();
  pthread_atfork(rec_fork_prepare, rec_fork_parent, rec_fork_child);
  /* An early start may be under way on another thread: mprof__init waits for it. */
  cb = mprof__init(glue_host());
  atomic_store_explicit(&glue_state, GLUE_STARTED, memory_order_release);
}
