/* Staged heap-profile cycles (see mprof_cycle.h for the diagram and the rules). */
#include "mprof_cycle.h"

#include "mprof_bucket.h"
#include "mprof_lock.h"

#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

static mprof_lock_t mprof_dump_lock = MPROF_LOCK_INIT(MPROF_RANK_DUMP, "dump");
static mprof_lock_t mprof_cycle_lock = MPROF_LOCK_INIT(MPROF_RANK_CYCLE, "cycle");
/* Each slot's lock is split into MPROF_FUTURE_STRIPES locks by bucket, so that threads
 * recording samples at different stacks rarely meet; mprof_future_lock[i][k] protects future[i]
 * of the buckets whose stripe is k. A flush takes each stripe of its slot in turn. */
#define MPROF_FUTURE_STRIPES 8
#define FL MPROF_LOCK_INIT(MPROF_RANK_FUTURE, "future")
#define FL_SLOT                                                                                    \
  { FL, FL, FL, FL, FL, FL, FL, FL }
static mprof_lock_t mprof_future_lock[3][MPROF_FUTURE_STRIPES] = {FL_SLOT, FL_SLOT, FL_SLOT};
#undef FL_SLOT
#undef FL

static unsigned stripe_of(const struct mprof_bucket_s* b) {
  return (unsigned)(b->hash >> 40) % MPROF_FUTURE_STRIPES;
}

/* The global cycle C. Written only under mprof_cycle_lock (release); read anywhere. 64 bits: it
 * never wraps, so a recorder's re-check cannot be fooled by a wrap-around. */
static _Atomic uint64_t cycle;
/* Cycle most recently folded into active; mprof_cycle_lock. Equal to `cycle` once flushed:
 * `active` is then the state at the end of this cycle. */
static uint64_t flushed;
/* Snapshots copying `active` (or the peak records) without a lock: no flush may start until
 * they end. Written under mprof_cycle_lock; flushes read it under that lock. */
static unsigned copying;
/* Buckets of stripe k with events in slot i, linked through rec.mem.dirty_next[i];
 * mprof_future_lock[i][k]. */
static struct mprof_bucket_s* dirty_head[3][MPROF_FUTURE_STRIPES];

/* Start times (CLOCK_MONOTONIC ns) of the last MPROF_CYCLE_TIMES cycles, cycle c at index
 * c % MPROF_CYCLE_TIMES; written under mprof_cycle_lock before C moves to c (release), read
 * without a lock. */
static _Atomic int64_t start_ns[MPROF_CYCLE_TIMES];

/* prof_peak (mprof_cycle_lock): the current peak generation (0: no peak yet) and the cycle at
 * whose end the peak state is taken. */
static uint64_t peak_gen;
static uint64_t peak_cycle;

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void mprof__cycle_init_time(void) {
  int64_t zero = 0;
  atomic_compare_exchange_strong(&start_ns[0], &zero, now_ns());
}

int64_t mprof__cycle_start_ns(uint64_t c) {
  uint64_t cur = atomic_load_explicit(&cycle, memory_order_acquire);
  if (c > cur) return 0;
  if (cur - c >= MPROF_CYCLE_TIMES - 1) c = cur - (MPROF_CYCLE_TIMES - 2); /* oldest kept */
  return atomic_load_explicit(&start_ns[c % MPROF_CYCLE_TIMES], memory_order_relaxed);
}

/* C = C + 1, recording when the new cycle starts. Needs mprof_cycle_lock. */
static void advance_locked(void) {
  mprof__lock_assert_held(&mprof_cycle_lock);
  uint64_t c = atomic_load_explicit(&cycle, memory_order_relaxed) + 1;
  atomic_store_explicit(&start_ns[c % MPROF_CYCLE_TIMES], now_ns(), memory_order_relaxed);
  atomic_store_explicit(&cycle, c, memory_order_release);
}

/* Puts b on its touched list of slot s. Needs b's stripe lock of slot s. */
static void mark_dirty_locked(struct mprof_bucket_s* b, unsigned s) {
  unsigned k = stripe_of(b);
  mprof__lock_assert_held(&mprof_future_lock[s][k]);
  if (b->rec.mem.dirty[s]) return;
  b->rec.mem.dirty[s] = 1;
  b->rec.mem.dirty_next[s] = dirty_head[s][k];
  dirty_head[s][k] = b;
}

static void add_cycle(mprof_mem_cycle_t* dst, const mprof_mem_cycle_t* src) {
  dst->allocs += src->allocs;
  dst->frees += src->frees;
  dst->alloc_bytes += src->alloc_bytes;
  dst->free_bytes += src->free_bytes;
  dst->walloc_objs += src->walloc_objs;
  dst->wfree_objs += src->wfree_objs;
  dst->walloc_bytes += src->walloc_bytes;
  dst->wfree_bytes += src->wfree_bytes;
}

/* Takes b's stripe lock of the target slot with C stable under it. Returns C; the caller
 * writes b's future[*slot] and unlocks *lk. */
static uint64_t lock_target(const struct mprof_bucket_s* b, uint64_t malloc_cycle, int is_free,
                            unsigned* slot, mprof_lock_t** lk) {
  unsigned k = stripe_of(b);
  for (;;) {
    uint64_t c = atomic_load_explicit(&cycle, memory_order_acquire);
    uint64_t target = c + 2;
    if (is_free && malloc_cycle != c) target = c + 1;
    unsigned s = (unsigned)(target % 3);
    mprof__lock(&mprof_future_lock[s][k]);
    if (atomic_load_explicit(&cycle, memory_order_acquire) == c) {
      *slot = s;
      *lk = &mprof_future_lock[s][k];
      return c;
    }
    mprof__unlock(&mprof_future_lock[s][k]); /* an epoch boundary came in between: retry */
  }
}

uint64_t mprof__cycle_record_malloc(struct mprof_bucket_s* b, uint64_t size, double weight) {
  unsigned s;
  mprof_lock_t* lk;
  uint64_t c = lock_target(b, 0, 0, &s, &lk);
  mprof_mem_cycle_t* mc = &b->rec.mem.future[s];
  mark_dirty_locked(b, s);
  mc->allocs++;
  mc->alloc_bytes += size;
  mc->walloc_objs += weight;
  mc->walloc_bytes += weight * (double)size;
  mprof__unlock(lk);
  return c;
}

void mprof__cycle_record_free(struct mprof_bucket_s* b, uint64_t size, double weight,
                              uint64_t malloc_cycle) {
  unsigned s;
  mprof_lock_t* lk;
  lock_target(b, malloc_cycle, 1, &s, &lk);
  mprof_mem_cycle_t* mc = &b->rec.mem.future[s];
  mark_dirty_locked(b, s);
  mc->frees++;
  mc->free_bytes += size;
  mc->wfree_objs += weight;
  mc->wfree_bytes += weight * (double)size;
  mprof__unlock(lk);
}

void mprof__cycle_cancel_malloc(struct mprof_bucket_s* b, uint64_t size, double weight,
                                uint64_t malloc_cycle) {
  unsigned k = stripe_of(b);
  for (;;) {
    /* The malloc sits in slot C_m+2, which is folded only once C reaches C_m+2: until then it
     * can be taken out again (that slot is C+2 or C+1 for recorders now). Later, count a free. */
    uint64_t c = atomic_load_explicit(&cycle, memory_order_acquire);
    int uncount = c <= malloc_cycle + 1;
    uint64_t target = uncount ? malloc_cycle + 2 : c + 1;
    unsigned s = (unsigned)(target % 3);
    mprof__lock(&mprof_future_lock[s][k]);
    if (atomic_load_explicit(&cycle, memory_order_acquire) != c) {
      mprof__unlock(&mprof_future_lock[s][k]);
      continue;
    }
    mprof_mem_cycle_t* mc = &b->rec.mem.future[s];
    mark_dirty_locked(b, s);
    if (uncount) {
      mc->allocs--;
      mc->alloc_bytes -= size;
      mc->walloc_objs -= weight;
      mc->walloc_bytes -= weight * (double)size;
    } else {
      mc->frees++;
      mc->free_bytes += size;
      mc->wfree_objs += weight;
      mc->wfree_bytes += weight * (double)size;
    }
    mprof__unlock(&mprof_future_lock[s][k]);
    return;
  }
}

uint64_t mprof__cycle_current(void) {
  return atomic_load_explicit(&cycle, memory_order_acquire);
}

/* Folds slot C % 3 into active. Needs mprof_cycle_lock and no copy under way (`copying`);
 * takes the slot's stripe locks one at a time, each just long enough to take the stripe's list
 * of touched buckets: from then on no recorder writes slot C (one that read a stale C re-checks
 * it under that lock and retries), and the next writers of this slot, as cycle C+3, come only
 * after later boundaries, which wait for this flush. `active` itself needs no lock of its own:
 * only a flush writes it, under mprof_cycle_lock, and a snapshot reads it while `copying` keeps
 * flushes out. */
static void flush_locked(void) {
  mprof__lock_assert_held(&mprof_cycle_lock);
  uint64_t c = atomic_load_explicit(&cycle, memory_order_relaxed);
  if (flushed == c) return;
  unsigned s = (unsigned)(c % 3);
  for (unsigned k = 0; k < MPROF_FUTURE_STRIPES; k++) {
    mprof__lock(&mprof_future_lock[s][k]);
    mprof_bucket_t* b = dirty_head[s][k];
    dirty_head[s][k] = NULL;
    mprof__unlock(&mprof_future_lock[s][k]);
    while (b != NULL) {
      mprof_mem_record_t* r = &b->rec.mem;
      mprof_bucket_t* next = r->dirty_next[s];
      if (peak_gen != 0 && c > peak_cycle && r->peak_gen != peak_gen) {
        r->peak = r->active; /* active is still the state at the end of the peak's cycle */
        r->peak_gen = peak_gen;
      }
      add_cycle(&r->active, &r->future[s]);
      memset(&r->future[s], 0, sizeof r->future[s]);
      r->dirty[s] = 0;
      r->dirty_next[s] = NULL;
      b = next;
    }
  }
  flushed = c;
}

/* Takes mprof_cycle_lock with no copy under way, waiting for both (for threads that may wait:
 * epoch writers and dumps, which hold mprof_dump_lock and so never meet a copy, and tests). A
 * copy is a bounded, memory-only loop. */
static void cycle_lock_for_flush(void) {
  mprof__lock(&mprof_cycle_lock);
  while (copying) {
    mprof__unlock(&mprof_cycle_lock);
    sched_yield();
    mprof__lock(&mprof_cycle_lock);
  }
}

/* The same, or false (holding nothing) when the lock is taken or a copy is under way. */
static bool cycle_trylock_for_flush(void) {
  if (!mprof__trylock(&mprof_cycle_lock)) return false;
  if (copying) {
    mprof__unlock(&mprof_cycle_lock);
    return false;
  }
  return true;
}

void mprof__cycle_flush(void) {
  cycle_lock_for_flush();
  flush_locked();
  mprof__unlock(&mprof_cycle_lock);
}

void mprof__cycle_advance(void) {
  cycle_lock_for_flush();
  flush_locked(); /* no-op unless the previous boundary's flush has not run yet */
  advance_locked();
  mprof__unlock(&mprof_cycle_lock);
}

bool mprof__cycle_try_epoch(void) {
  if (!cycle_trylock_for_flush()) return false;
  flush_locked();
  advance_locked();
  flush_locked();
  mprof__unlock(&mprof_cycle_lock);
  return true;
}

/* Events counted before the call are in cycles up to C+2. After two boundaries C' = C+2, so a
 * malloc counts into C+4 and a free into C+3 or later: the state at the end of cycle C+2 is
 * exactly the events before the call. The flush of C+2 is left to the next boundary. */
bool mprof__cycle_try_peak(void) {
  if (!cycle_trylock_for_flush()) return false;
  flush_locked();
  advance_locked();
  flush_locked();
  advance_locked();
  peak_gen++;
  peak_cycle = atomic_load_explicit(&cycle, memory_order_relaxed);
  mprof__unlock(&mprof_cycle_lock);
  return true;
}

const mprof_mem_cycle_t* mprof__cycle_peak_of(const struct mprof_bucket_s* b) {
  static const mprof_mem_cycle_t none;
  if (peak_gen == 0) return &none;
  return b->rec.mem.peak_gen == peak_gen ? &b->rec.mem.peak : &b->rec.mem.active;
}

void mprof__cycle_publish_all(void) {
  for (int i = 0; i < 2; i++) {
    mprof__cycle_advance();
    mprof__cycle_flush();
  }
}

bool mprof__cycle_try_publish_all(void) {
  if (!cycle_trylock_for_flush()) return false;
  for (int i = 0; i < 2; i++) {
    flush_locked();
    advance_locked();
    flush_locked();
  }
  mprof__unlock(&mprof_cycle_lock);
  return true;
}

int mprof__cycle_read_begin(bool peak, bool wait, uint64_t* active_cycle) {
  if (wait) {
    mprof__lock(&mprof_cycle_lock);
  } else if (!mprof__trylock(&mprof_cycle_lock)) {
    return EAGAIN;
  }
  if (peak && peak_gen != 0 && flushed < peak_cycle) {
    mprof__unlock(&mprof_cycle_lock);
    return EBUSY;
  }
  copying++;
  *active_cycle = flushed;
  mprof__unlock(&mprof_cycle_lock);
  /* The lock's release and this acquire order every flush before the copy's reads. */
  return 0;
}

void mprof__cycle_read_end(void) {
  mprof__lock(&mprof_cycle_lock);
  copying--;
  mprof__unlock(&mprof_cycle_lock);
}

void mprof__cycle_dump_lock(void) {
  mprof__lock(&mprof_dump_lock);
}

bool mprof__cycle_dump_trylock(void) {
  return mprof__trylock(&mprof_dump_lock);
}

void mprof__cycle_dump_unlock(void) {
  mprof__unlock(&mprof_dump_lock);
}

void mprof__cycle_dump_assert_held(void) {
  mprof__lock_assert_held(&mprof_dump_lock);
}

/* fork(): cycle, then future[0..2] in rank order (the bucket insert lock, blockmap and meta
 * locks are taken by their own modules after these). Not the dump lock: a dump may be blocked
 * in a write for as long as a reader pleases, and fork() must not wait for it (the child starts
 * with a free dump lock, see mprof__cycle_fork_child). Every lock taken here is held only for
 * bounded, memory-only work: a flush, or a few stores. */
void mprof__cycle_fork_prepare(void) {
  mprof__lock(&mprof_cycle_lock);
  /* The future locks share a rank; taking them all here, in index order, is the one
   * sanctioned exception, done with the raw mutex so the debug rank check does not object. */
  for (int i = 0; i < 3; i++)
    for (int k = 0; k < MPROF_FUTURE_STRIPES; k++)
      mprof__sys_mutex_lock(&mprof_future_lock[i][k].mu);
}

void mprof__cycle_fork_parent(void) {
  for (int i = 2; i >= 0; i--)
    for (int k = MPROF_FUTURE_STRIPES - 1; k >= 0; k--)
      pthread_mutex_unlock(&mprof_future_lock[i][k].mu);
  mprof__unlock(&mprof_cycle_lock);
}

/* The child has one thread, the one that forked: a copy or a dump that another thread of the
 * parent had under way will never end here, so the copy flag is cleared and the dump lock made
 * free (whoever held it in the parent does not exist in the child). */
void mprof__cycle_fork_child(void) {
  for (int i = 0; i < 3; i++)
    for (int k = 0; k < MPROF_FUTURE_STRIPES; k++)
      pthread_mutex_init(&mprof_future_lock[i][k].mu, NULL);
  copying = 0;
  mprof__lock_reinit(&mprof_cycle_lock);
  mprof__lock_reset(&mprof_dump_lock);
}
