/* The contention profile (see mprof_mutex.h). */
#include "mprof_mutex.h"

#include "mprof_bucket.h"
#include "mprof_core.h"
#include "mprof_lock.h"
#include "mprof_meta.h"
#include "mprof_thread.h"

#include <errno.h>
#include <string.h>
#include <time.h>

__thread mprof_mtx_thread_t mprof__mtx_thread __attribute__((tls_model("initial-exec")));

_Atomic int mprof__mutex_app_on;
static _Atomic unsigned fraction; /* prof.mutex_fraction; 0 = off */
static _Atomic bool app;          /* prof.mutex_app */
static _Atomic bool started;      /* profiling on: mprof__mutex_start ran */

/* The records of every MPROF_BUCKET_LOCK bucket. */
static mprof_lock_t mprof_contention_lock = MPROF_LOCK_INIT(MPROF_RANK_CONTENTION, "contention");
static _Atomic uint64_t lost_count, lost_delay; /* the sentinel's record */
static _Atomic uint64_t recorded;               /* weighted events recorded, sentinel included */

static pthread_key_t buf_key; /* releases a thread's buffers at its exit */
static _Atomic bool buf_key_ok;

/* ---------------------------------------------------------------------------------------------
 * Names of pseudo frames. Entries are claimed with a counter, filled, then published; a name
 * registered twice at once may get two entries, which pprof merges by name.
 * ------------------------------------------------------------------------------------------- */
typedef struct name_entry_s {
  const char* _Atomic key; /* the pointer it was registered with (fast lookup) */
  _Atomic int ready;
  char name[MPROF_MUTEX_NAME_MAX];
} name_entry_t;
static name_entry_t names[MPROF_PSEUDO_MAX] = {[0] = {NULL, 1, MPROF_LOST_CONTENDED_LOCK}};
static _Atomic unsigned nnames = 1; /* entry 0, the sentinel, is there from the start */
static const uintptr_t sentinel_stk[1] = {MPROF_PSEUDO_PC_BASE};

uintptr_t mprof__mutex_name_pc(const char* name) {
  unsigned n = atomic_load_explicit(&nnames, memory_order_acquire);
  if (n > MPROF_PSEUDO_MAX) n = MPROF_PSEUDO_MAX;
  for (unsigned i = 0; i < n; i++) {
    if (!atomic_load_explicit(&names[i].ready, memory_order_acquire)) continue;
    if (atomic_load_explicit(&names[i].key, memory_order_relaxed) == name)
      return MPROF_PSEUDO_PC_BASE + i;
  }
  for (unsigned i = 0; i < n; i++) {
    if (atomic_load_explicit(&names[i].ready, memory_order_acquire) &&
        strncmp(names[i].name, name, MPROF_MUTEX_NAME_MAX - 1) == 0)
      return MPROF_PSEUDO_PC_BASE + i;
  }
  unsigned i = atomic_fetch_add_explicit(&nnames, 1, memory_order_relaxed);
  if (i >= MPROF_PSEUDO_MAX) return 0;
  size_t len = strnlen(name, MPROF_MUTEX_NAME_MAX - 1);
  memcpy(names[i].name, name, len);
  names[i].name[len] = '\0';
  atomic_store_explicit(&names[i].key, name, memory_order_relaxed);
  atomic_store_explicit(&names[i].ready, 1, memory_order_release);
  return MPROF_PSEUDO_PC_BASE + i;
}

const char* mprof__mutex_pc_name(uintptr_t pc) {
  if (pc < MPROF_PSEUDO_PC_BASE || pc - MPROF_PSEUDO_PC_BASE >= MPROF_PSEUDO_MAX) return NULL;
  const name_entry_t* e = &names[pc - MPROF_PSEUDO_PC_BASE];
  return atomic_load_explicit(&e->ready, memory_order_acquire) ? e->name : NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Options
 * ------------------------------------------------------------------------------------------- */
/* Without the interposer (unit tests, the static core) there is nothing to switch. */
__attribute__((weak)) void mprof__mutex_app_switch(bool on) {
  (void)on;
}

static int app_wanted(void) {
  return atomic_load(&started) && atomic_load(&app) && atomic_load(&fraction) > 0;
}

static void update_app_on(void) {
  /* Two threads changing the options at once: the last to store looks again, so the switch ends
   * in the state the options say. */
  int on;
  do {
    on = app_wanted();
    atomic_store_explicit(&mprof__mutex_app_on, on, memory_order_relaxed);
    mprof__mutex_app_switch(on);
  } while (app_wanted() != on);
}

static void buf_key_dtor(void* arg) {
  (void)arg;
  mprof__mutex_thread_exit();
}

static void lock_contended(mprof_lock_t* l);

void mprof__mutex_start(unsigned f, bool a) {
  mprof__lock_set_contention(lock_contended, mprof__mutex_flush);
  if (pthread_key_create(&buf_key, buf_key_dtor) == 0) atomic_store(&buf_key_ok, true);
  atomic_store(&fraction, f);
  atomic_store(&app, a);
  atomic_store(&started, true);
  update_app_on();
}

unsigned mprof__mutex_fraction(void) {
  return atomic_load_explicit(&fraction, memory_order_relaxed);
}

void mprof__mutex_set_fraction(unsigned f) {
  atomic_store_explicit(&fraction, f, memory_order_relaxed);
  update_app_on();
}

bool mprof__mutex_app(void) {
  return atomic_load_explicit(&app, memory_order_relaxed);
}

void mprof__mutex_set_app(bool a) {
  atomic_store_explicit(&app, a, memory_order_relaxed);
  update_app_on();
}

bool mprof__contention_on(void) {
  return atomic_load_explicit(&started, memory_order_relaxed) &&
         atomic_load_explicit(&fraction, memory_order_relaxed) > 0;
}

/* ---------------------------------------------------------------------------------------------
 * Events
 * ------------------------------------------------------------------------------------------- */
uint64_t mprof__mutex_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t next_random(mprof_mtx_thread_t* t) {
  uint64_t x = t->rng;
  if (x == 0) {
    static _Atomic uint64_t counter;
    x = mprof__mutex_now() ^ (uintptr_t)t ^
        atomic_fetch_add_explicit(&counter, 0x9e3779b97f4a7c15ull, memory_order_relaxed);
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    if (x == 0) x = 1;
  }
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  t->rng = x;
  return x * 0x2545f4914f6cdd1dull;
}

uint64_t mprof__mutex_sample(void) {
  unsigned f = atomic_load_explicit(&fraction, memory_order_relaxed);
  if (f == 0 || !atomic_load_explicit(&started, memory_order_relaxed)) return 0;
  if (f == 1) return 1;
  return (next_random(&mprof__mtx_thread) >> 16) % f == 0 ? f : 0;
}

static uint64_t mul_sat(uint64_t a, uint64_t b) {
  uint64_t r;
  return __builtin_mul_overflow(a, b, &r) ? UINT64_MAX : r;
}

static void charge_sentinel(uint64_t weight, uint64_t delay) {
  atomic_fetch_add_explicit(&lost_count, weight, memory_order_relaxed);
  atomic_fetch_add_explicit(&lost_delay, mul_sat(weight, delay), memory_order_relaxed);
  atomic_fetch_add_explicit(&recorded, weight, memory_order_relaxed);
}

/* Registers the buffers for release at thread exit. pthread_setspecific may allocate from the
 * heap (once, unsampled): only while the thread holds no profiler lock, since the allocator may
 * call into the profiler with its own locks held. */
static void register_buffers(mprof_mtx_thread_t* t) {
  if (!t->unregistered || mprof__lock_depth != 0) return;
  t->unregistered = 0;
  if (atomic_load(&buf_key_ok)) {
    mprof__thread.busy++;
    pthread_setspecific(buf_key, t);
    mprof__thread.busy--;
  }
}

/* Allocates the thread's two stack buffers, unless it records already. Profiler memory takes
 * mprof_meta_lock, the lock of highest rank, which a thread may take whatever other profiler
 * locks it holds: never while it holds or waits for the meta lock itself. */
static bool alloc_buffers(mprof_mtx_thread_t* t, bool may_register) {
  if (t->cap != 0) return true;
  if (t->recording != 0) return false;
    /* The stack and the lock's frame; off x86-64 also room for the profiler's own frames, which
   * libunwind returns and the capture drops afterwards (the x86-64 walker drops them as it goes). */
#if defined(MPROF_OWN_UNWIND)
  unsigned cap = mprof__opts.prof_stack_depth + 1;
#else
  unsigned cap = mprof__opts.prof_stack_depth + 1 + MPROF_SELF_FRAMES_MAX;
#endif
  t->recording++; /* contention on the meta lock now goes to the sentinel */
  uintptr_t* a = mprof__meta_alloc(cap * sizeof(uintptr_t));
  uintptr_t* b = a ? mprof__meta_alloc(cap * sizeof(uintptr_t)) : NULL;
  if (b == NULL) {
    if (a != NULL) mprof__meta_free(a, cap * sizeof(uintptr_t));
    t->recording--;
    return false;
  }
  t->pend_stk = a;
  t->scratch = b;
  t->cap = cap;
  t->unregistered = 1;
  if (may_register)
    register_buffers(t);
  else
    mprof__lock_deferred = 1; /* mprof__mutex_flush registers them at the count's 0 */
  t->recording--;
  return true;
}

/* Only while the thread holds no lock but the `taking` it is waiting for. */
bool mprof__mutex_prepare(mprof_mtx_thread_t* t, unsigned taking) {
  if (t->cap != 0) return true;
  if (mprof__lock_depth != taking) return false;
  return alloc_buffers(t, taking == 0);
}

uint32_t mprof__mutex_capture(mprof_mtx_thread_t* t, const char* name) {
  if (t->recording != 0 || t->cap == 0) return 0;
  uint32_t off = 0;
  if (name != NULL) {
    uintptr_t pc = mprof__mutex_name_pc(name);
    if (pc == 0) return 0;
    t->scratch[0] = pc;
    off = 1;
  }
  uint32_t n =
      mprof__thread_capture_into(t->scratch + off, t->cap - off, mprof__opts.prof_stack_depth, 0);
  if (n == 0 && off == 0) return 0;
  return n + off;
}

/* Writes one event into the table; the thread holds no lock. */
static void record(mprof_mtx_thread_t* t, const uintptr_t* stk, uint32_t n, uint64_t weight,
                   uint64_t delay) {
  t->recording++;
  mprof_bucket_t* b = mprof__bucket_get(MPROF_BUCKET_LOCK, stk, n, 1);
  if (b == NULL) {
    charge_sentinel(weight, delay);
  } else {
    mprof__lock(&mprof_contention_lock);
    b->rec.lock.count += weight;
    b->rec.lock.wait_ns += mul_sat(weight, delay);
    mprof__unlock(&mprof_contention_lock);
    atomic_fetch_add_explicit(&recorded, weight, memory_order_relaxed);
  }
  t->recording--;
}

static void event(mprof_mtx_thread_t* t, uint32_t n, uint64_t weight, uint64_t delay, bool defer) {
  if (n == 0 || t->recording != 0) {
    charge_sentinel(weight, delay);
    return;
  }
  if (!defer) {
    record(t, t->scratch, n, weight, delay);
    if (t->pend_n != 0) mprof__mutex_flush();
    return;
  }
  /* The pending slot: one event; the larger weighted delay stays. */
  if (t->pend_n != 0) {
    if ((double)weight * (double)delay <= (double)t->pend_weight * (double)t->pend_delay) {
      charge_sentinel(weight, delay);
      return;
    }
    charge_sentinel(t->pend_weight, t->pend_delay);
  }
  uintptr_t* s = t->pend_stk;
  t->pend_stk = t->scratch;
  t->scratch = s;
  t->pend_n = n;
  mprof__lock_deferred = 1; /* the lock module calls mprof__mutex_flush at the count's 0 */
  t->pend_weight = weight;
  t->pend_delay = delay;
}

/* A profiler lock whose first try failed (mprof_lock.c calls it with the thread's count already
 * covering l): the wait, timed if it is sampled. */
static void lock_contended(mprof_lock_t* l) {
  mprof_mtx_thread_t* t = &mprof__mtx_thread;
  uint64_t weight = mprof__mutex_sample();
  if (weight == 0) {
    mprof__sys_mutex_lock(&l->mu);
    return;
  }
  /* A thread whose first sampled wait comes while it holds other profiler locks (a flush
   * waiting for a future lock under the cycle lock) gets its buffers here too, so that the event
   * keeps its stack instead of going to the sentinel. Not for the meta lock itself. */
  if (l->rank != MPROF_RANK_META)
    alloc_buffers(t, false); /* registered by mprof__mutex_flush, at the count's 0 */
  else
    mprof__mutex_prepare(t, 1);
  uint64_t t0 = mprof__mutex_now();
  mprof__sys_mutex_lock(&l->mu);
  uint64_t t1 = mprof__mutex_now();
  /* It holds l now: the event waits in the pending slot until the count drops to 0. */
  uint32_t n = mprof__mutex_capture(t, l->name);
  mprof__mutex_event(t, n, weight, t1 - t0);
}

void mprof__mutex_event(mprof_mtx_thread_t* t, uint32_t n, uint64_t weight, uint64_t delay_ns) {
  event(t, n, weight, delay_ns, mprof__lock_depth != 0);
}

void mprof__mutex_flush(void) {
  mprof_mtx_thread_t* t = &mprof__mtx_thread;
  if (mprof__lock_depth != 0 || t->recording != 0) return;
  register_buffers(t);
  if (t->pend_n == 0 || t->alloc_held != 0) return;
  uint32_t n = t->pend_n;
  t->pend_n = 0;
  mprof__lock_deferred = 0;
  /* Record from the pending buffer; contention met while recording does not touch it. */
  record(t, t->pend_stk, n, t->pend_weight, t->pend_delay);
}

void mprof__contention_report(const char* name, uint64_t wait_ns, bool holds_alloc_locks) {
  mprof_mtx_thread_t* t = &mprof__mtx_thread;
  t->alloc_held = holds_alloc_locks;
  uint64_t weight = mprof__mutex_sample();
  if (weight == 0) {
    if (!holds_alloc_locks && t->pend_n != 0) mprof__mutex_flush();
    return;
  }
  mprof__thread.busy++;
  mprof__mutex_prepare(t, 0);
  uint32_t n = mprof__mutex_capture(t, name);
  event(t, n, weight, wait_ns, holds_alloc_locks || mprof__lock_depth != 0);
  mprof__thread.busy--;
}

void mprof__contention_flush(void) {
  mprof__mtx_thread.alloc_held = 0;
  if (mprof__mtx_thread.pend_n != 0) mprof__mutex_flush();
}

void mprof__mutex_thread_exit(void) {
  mprof_mtx_thread_t* t = &mprof__mtx_thread;
  mprof__thread.busy++;
  t->alloc_held = 0; /* an exiting thread holds no allocator lock */
  mprof__mutex_flush();
  if (t->pend_n != 0) charge_sentinel(t->pend_weight, t->pend_delay);
  t->pend_n = 0;
  mprof__lock_deferred = 0;
  if (t->cap != 0) {
    mprof__meta_free(t->pend_stk, t->cap * sizeof(uintptr_t));
    mprof__meta_free(t->scratch, t->cap * sizeof(uintptr_t));
  }
  t->pend_stk = t->scratch = NULL;
  t->cap = 0;
  t->recording = 1; /* a later event of this thread (other destructors) goes to the sentinel */
  mprof__thread.busy--;
}

/* ---------------------------------------------------------------------------------------------
 * Snapshots and statistics
 * ------------------------------------------------------------------------------------------- */
static int64_t clamp64(uint64_t v) {
  return v > INT64_MAX ? INT64_MAX : (int64_t)v;
}

int mprof__mutex_snapshot(mprof_mutex_profile_t* out, size_t* cap_bytes) {
  memset(out, 0, sizeof *out);
  mprof__lock(&mprof_contention_lock);
  mprof_bucket_t* head = mprof__bucket_list(MPROF_BUCKET_LOCK);
  size_t n = 1; /* the sentinel */
  for (mprof_bucket_t* b = head; b != NULL; b = b->allnext)
    n++;
  size_t bytes = n * sizeof(mprof_mutex_rec_t);
  mprof_mutex_rec_t* recs = mprof__meta_alloc(bytes);
  if (recs == NULL) {
    mprof__unlock(&mprof_contention_lock);
    return ENOMEM;
  }
  size_t k = 0;
  for (mprof_bucket_t* b = head; b != NULL; b = b->allnext) {
    if (b->rec.lock.count == 0) continue;
    recs[k].pcs = b->stk;
    recs[k].npcs = b->nstk;
    recs[k].contentions = clamp64(b->rec.lock.count);
    recs[k].delay_ns = clamp64(b->rec.lock.wait_ns);
    k++;
  }
  mprof__unlock(&mprof_contention_lock);
  uint64_t lc = atomic_load_explicit(&lost_count, memory_order_relaxed);
  if (lc != 0) {
    recs[k].pcs = sentinel_stk;
    recs[k].npcs = 1;
    recs[k].contentions = clamp64(lc);
    recs[k].delay_ns = clamp64(atomic_load_explicit(&lost_delay, memory_order_relaxed));
    k++;
  }
  out->recs = recs;
  out->nrecs = k;
  unsigned f = mprof__mutex_fraction();
  out->period = f != 0 ? f : 1;
  *cap_bytes = bytes;
  return 0;
}

void mprof__mutex_snapshot_free(mprof_mutex_profile_t* p, size_t cap_bytes) {
  if (p->recs != NULL) mprof__meta_free((void*)(uintptr_t)p->recs, cap_bytes);
  p->recs = NULL;
}

void mprof__mutex_stats(mprof_mutex_stats_t* s) {
  s->contentions = atomic_load_explicit(&recorded, memory_order_relaxed);
  s->contentions_lost = atomic_load_explicit(&lost_count, memory_order_relaxed);
  s->buckets = mprof__bucket_count(MPROF_BUCKET_LOCK);
}

void mprof__mutex_fork_prepare(void) {
  mprof__lock(&mprof_contention_lock);
}

void mprof__mutex_fork_parent(void) {
  mprof__unlock(&mprof_contention_lock);
}

void mprof__mutex_fork_child(void) {
  mprof__mtx_thread.rng = 0; /* the child draws its own sampling decisions (seeded on first use) */
  mprof__lock_reinit(&mprof_contention_lock);
}
