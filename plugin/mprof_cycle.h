/* Staged heap-profile cycles.
 *
 * Every heap bucket has a published `active` record and a ring of three `future` records indexed
 * by the global cycle C (mod 3). Events are counted into cycles that are not published yet, and a
 * cycle is folded into `active` only once no event can be counted into it any more:
 *
 *        epoch     epoch     epoch
 *          |         |         |
 *   ... ---+---------+---------+---  time
 *          C         C+1       C+2
 *
 *   a sampled malloc while the cycle is C counts into future[(C+2) % 3]
 *   a sampled free while the cycle is C counts into future[(C+1) % 3],
 *     unless its malloc was counted while the cycle was also C: then into future[(C+2) % 3],
 *     the malloc's own cycle, so that no free is ever published before its malloc
 *   an epoch boundary sets C = C+1 (O(1): one store)
 *   the flush then folds future[C % 3] into active and clears it for reuse as cycle C+3
 *
 * The free rule is "count at max(C+1, malloc cycle)" where the malloc cycle is C_m + 2. Because
 * C_m <= C, that is C+2 only when C_m == C. Hence for every block, its free is published in the
 * same flush as its malloc or a later one: the published in-use figures (allocs - frees, bytes
 * likewise) can never be negative, and any snapshot of `active` is the exact state at the end of
 * some cycle.
 *
 * Locks (see mprof_lock.h for the order):
 *   mprof_future_lock[i][k] protects future[i] (and the touched list of slot i) of the buckets
 *     of stripe k; stripes spread threads sampling different stacks over different locks.
 *   mprof_cycle_lock serialises epoch boundaries and flushes, and protects `flushed`, the peak
 *     generation and the copy flag. `active` has no lock of its own: only a flush writes it,
 *     under mprof_cycle_lock, and a snapshot copies it with no lock held while the copy flag,
 *     set and cleared under mprof_cycle_lock, keeps every flush out (mprof__cycle_read_begin).
 * A recorder reads C, takes the future lock of its target slot, and checks C again under it: if
 * C moved it retries. So a recorder never writes a slot whose flush has started, and the flush
 * of slot C needs only its own future lock, which recorders of the current cycle never take
 * (they use C+1 and C+2); it holds that lock only to take the slot's list of touched buckets, so
 * a recorder that read a stale C never waits for a fold.
 *
 * Seed 000 (Go's split profile locks): a sampled malloc or free takes exactly one future lock,
 * held for a few stores, and nothing else here. Whatever an allocating thread asks for beyond
 * that — an automatic epoch, a peak refresh, the publication before an automatic dump — is a
 * try: mprof_cycle_lock is only tried, and a copy under way counts as taken; if either fails the
 * work is left for the next chance (or for a thread that dumps), never waited for. Under the
 * cycle lock a flush takes the future locks of its slot, each for a few stores. The copy flag
 * makes a snapshot's O(buckets) copy hold no lock at all: it is bounded for every lock an
 * allocating thread ever takes, and only flushes (tried from allocating threads, skipped then)
 * wait for the copy's end.
 *
 * Each slot keeps the list of the buckets that events touched in it (linked through the records'
 * dirty_next, pushed by the first event of the cycle under the slot's lock), so a flush folds
 * only those: its cost follows the buckets active in the cycle, not every stack ever seen. */
#ifndef MPROF_CYCLE_H
#define MPROF_CYCLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Counts of one cycle (future) or of all published cycles (active). Raw counts are exact sample
 * counts; the weighted sums are the unbiased estimates (each sample stands for 1/p objects, p the
 * probability that an allocation of its size was sampled). */
typedef struct mprof_mem_cycle_s {
  uint64_t allocs;      /* sampled allocations */
  uint64_t frees;       /* sampled allocations freed */
  uint64_t alloc_bytes; /* requested bytes of those allocations */
  uint64_t free_bytes;  /* requested bytes of those frees */
  double walloc_objs;   /* sum of weights of allocations */
  double wfree_objs;    /* sum of weights of frees */
  double walloc_bytes;  /* sum of weight * size of allocations */
  double wfree_bytes;   /* sum of weight * size of frees */
} mprof_mem_cycle_t;

typedef struct mprof_mem_record_s {
  mprof_mem_cycle_t active;    /* published, cumulative; flushes (mprof_cycle_lock) */
  mprof_mem_cycle_t future[3]; /* cycles C, C+1, C+2 (index mod 3); stripe lock of slot i */
  struct mprof_bucket_s* dirty_next[3]; /* next bucket touched in slot i; same lock */
  uint8_t dirty[3];                     /* on slot i's touched list; same lock */
  /* prof_peak: `active` as it was at the end of the peak's cycle, copied by the first flush
   * that folds a later cycle into this bucket (see mprof__cycle_try_peak); valid only while
   * peak_gen is the current peak generation, otherwise `active` itself is that state.
   * Both written by flushes, like `active`. */
  uint64_t peak_gen;
  mprof_mem_cycle_t peak;
  /* The heap snapshot being built (mprof_snap.c) marks the buckets it copies: its number and
   * this bucket's index in it. mprof_dump_lock (only snapshots touch them). */
  uint64_t snap_gen;
  uint32_t snap_idx;
} mprof_mem_record_t;

struct mprof_bucket_s;

/* Counts a sampled malloc of `size` bytes standing for `weight` objects. Returns the cycle C
 * current when it was counted; keep it with the block for mprof__cycle_record_free. */
uint64_t mprof__cycle_record_malloc(struct mprof_bucket_s* b, uint64_t size, double weight);

/* Counts the free of a sampled block whose malloc returned `malloc_cycle`. */
void mprof__cycle_record_free(struct mprof_bucket_s* b, uint64_t size, double weight,
                              uint64_t malloc_cycle);

/* Uncounts a malloc counted moments ago: its slot (malloc_cycle + 2) is folded only when C
 * reaches that cycle, so until then the malloc is taken out of it again; after that (two epoch
 * boundaries in between) a free is counted instead, which keeps in-use figures exact. */
void mprof__cycle_cancel_malloc(struct mprof_bucket_s* b, uint64_t size, double weight,
                                uint64_t malloc_cycle);

/* The current cycle C. */
uint64_t mprof__cycle_current(void);

/* Epoch boundary: flushes cycle C if that has not happened yet, then advances C (O(1)). Does not
 * flush the new cycle: call mprof__cycle_flush for that (from any thread, any time). */
void mprof__cycle_advance(void);

/* Folds cycle C into active if not done yet. Proportional to the number of buckets touched in
 * the cycle; waits for a flush or a copy under way, never for an allocating thread. Not for
 * allocating threads (they use the try forms). */
void mprof__cycle_flush(void);

/* An automatic epoch boundary from an allocating thread: advance and flush, unless another
 * boundary, flush or snapshot copy is under way (then it returns false and does nothing: the
 * next chance will do). Waits for no lock but the slot's future locks, each held for a few
 * stores. */
bool mprof__cycle_try_epoch(void);

/* Publishes every event counted before the call: advance + flush twice (cycles C+1 and C+2). */
void mprof__cycle_publish_all(void);
/* The same, or false (having done nothing) in the cases mprof__cycle_try_epoch gives up. */
bool mprof__cycle_try_publish_all(void);

/* prof_peak: a new peak of the estimated in-use bytes. Unless another boundary or a dump is
 * under way (then it returns false and does nothing; the caller tries again later), it makes
 * the state at the end of the current cycle's events the new peak: two epoch boundaries (so that
 * nothing counted afterwards can land in a cycle up to the peak's) and one flush, the same work
 * as an automatic epoch; nothing is copied here. Each later flush copies a bucket's `active`
 * into its `peak` before it first changes it (O(1) per bucket it folds anyway). */
bool mprof__cycle_try_peak(void);

/* A snapshot reads `active` (or, with peak, the peak records) between these two calls, with no
 * lock held: flushes, epoch boundaries and peak refreshes wait (or, tried, give up) until
 * mprof__cycle_read_end (reads may overlap: the last to end lets flushes in). read_begin
 * takes mprof_cycle_lock briefly (only tried unless `wait`) and returns 0 with *active_cycle
 * the last cycle folded into active (active holds exactly the events counted into cycles up to
 * it, so a block whose malloc returned cycle c is in it iff c + 2 <= *active_cycle); EAGAIN
 * when the lock was taken and !wait; EBUSY for a peak whose cycle is not flushed yet (publish
 * and try again). */
int mprof__cycle_read_begin(bool peak, bool wait, uint64_t* active_cycle);
void mprof__cycle_read_end(void);
/* The record of b at the peak (zeroes before any peak). Between read_begin(peak) and read_end. */
const mprof_mem_cycle_t* mprof__cycle_peak_of(const struct mprof_bucket_s* b);

/* CLOCK_MONOTONIC nanoseconds at the start of cycle c, or a later time when c is too old to be
 * remembered (the last MPROF_CYCLE_TIMES cycles are), so that now - result is always a lower
 * bound on the time since c began. 0 if unknown. */
#define MPROF_CYCLE_TIMES 1024
int64_t mprof__cycle_start_ns(uint64_t c);

/* Records the start time of cycle 0 (start-up). */
void mprof__cycle_init_time(void);

void mprof__cycle_fork_prepare(void);
void mprof__cycle_fork_parent(void);
void mprof__cycle_fork_child(void);

/* Lock for epoch writers and dumps (rank MPROF_RANK_DUMP). */
void mprof__cycle_dump_lock(void);
void mprof__cycle_dump_unlock(void);
bool mprof__cycle_dump_trylock(void);
void mprof__cycle_dump_assert_held(void);

#endif
