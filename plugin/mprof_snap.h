/* Heap snapshots: the published records of every heap bucket as a writer's profile
 * (mprof_profile.h), optionally split by age (prof_age) or taken at the peak (prof_peak).
 *
 * Age. Every live sampled block in the block map (mprof_blockmap.h) carries the cycle c its
 * malloc was counted in. A snapshot copies `active` when it holds exactly the cycles up to A
 * (mprof__cycle_active_cycle_locked); the blocks it counts as in use are those with c + 2 <= A
 * that were not freed by then. Their age is A - 2 - c: the epoch boundaries between the malloc
 * and the dump's own two (a dump's publication), so a block allocated just before a dump is 0
 * and one that saw k `epoch` writes before the dump is k. The walk of the block map runs after
 * the copy, without stopping the program, so it sees a subset of those blocks: the ones freed
 * between the copy and the walk's visit to their shard (and any not yet entered in the map) are
 * in use in the copy but cannot be aged. Each stack is therefore written as:
 *
 *   one sample without an age label: all allocated figures, and the in-use figures no block of
 *     the walk accounts for (0 unless the program freed or allocated during the walk);
 *   one sample per age class present (ages 0, 1, 2-3, 4-7, ...; label age_epochs = the lower
 *     edge, label age_min_ms = a lower bound of the time since the class's youngest block was
 *     allocated, from the start times of cycles), with in-use figures only.
 *
 * The in-use figures of a stack's samples add up exactly to the figures without ages (each part
 * is rounded on the running sum). Blocks freed or allocated during the walk never make any
 * figure negative: the walk only counts blocks the copy counts as in use, because a block
 * leaves the map before its free is counted and its malloc is counted before it enters it. */
#ifndef MPROF_SNAP_H
#define MPROF_SNAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mprof_profile.h"

typedef struct mprof_snap_s {
  mprof_heap_rec_t* recs; /* profiler memory */
  size_t nrecs;
  size_t cap_bytes; /* for mprof__snap_free */
} mprof_snap_t;

enum {
  MPROF_SNAP_AGES = 1u << 0, /* split in-use figures by age (needs the block map) */
  MPROF_SNAP_PEAK = 1u << 1, /* the records at the peak (prof_peak) instead of the current ones */
};

/* Builds the snapshot after the caller published (mprof__cycle_publish_all); now_ns is the
 * CLOCK_MONOTONIC time of the request, for the age bounds. Needs mprof_dump_lock. The copy holds
 * no lock (mprof__cycle_read_begin keeps flushes out meanwhile); the age walk copies one block-map
 * shard at a time out under its lock and sums the copy without it, on a short list per stack
 * (one entry per age class present), found through an index the copy leaves in each bucket.
 * Unless `wait`, nothing is waited for: EAGAIN when a flush is under way (or the peak's cycle
 * cannot be published at once). Returns 0, EAGAIN or ENOMEM. */
int mprof__snap_heap(unsigned flags, bool wait, int64_t now_ns, mprof_snap_t* out);

void mprof__snap_free(mprof_snap_t* s);

#endif
