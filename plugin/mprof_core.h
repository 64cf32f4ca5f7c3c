/* The core's state and operations behind the control interface (mprof_ctl.c): options, the
 * active flag, dumps, epochs and statistics. The glue-facing side is mprof_hooks.h. */
#ifndef MPROF_CORE_H
#define MPROF_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mprof_conf.h"

/* Options in force; written only by mprof__init (and by tests before it). */
extern mprof_opts_t mprof__opts;

typedef struct mprof_stats_s {
  uint64_t samples;         /* sampled allocations recorded */
  uint64_t frees;           /* frees of sampled allocations recorded */
  uint64_t dropped_samples; /* samples decided but not recorded (no profiler memory, no stack, no
                               room in the sampled-block area, thread teardown) */
  uint64_t buckets;         /* distinct heap call stacks */
  uint64_t sampled_blocks;  /* live sampled blocks */
  uint64_t sampled_bytes_in_use; /* requested bytes of live sampled blocks (raw, not scaled) */
  uint64_t metadata_bytes;   /* profiler memory mapped (buckets, block map, stack buffers, ...) */
  uint64_t dumps;            /* profiles written */
  uint64_t dump_errors;      /* dumps that failed */
  uint64_t contentions;      /* sampled contended acquisitions recorded (weighted), lost included */
  uint64_t contentions_lost; /* of those, charged to the sentinel frame (weighted) */
  uint64_t contention_buckets; /* distinct contention stacks */
} mprof_stats_t;

void mprof__stats_read(mprof_stats_t* out);

/* The reconciliation figures: the sampled estimate next to what the allocator and the kernel
 * say. Unknown values are UINT64_MAX. */
typedef struct mprof_recon_s {
  uint64_t estimated_inuse; /* estimated bytes in use, from the samples (sum of weight x size) */
  uint64_t process_rss;     /* the process's resident set (/proc/self/statm) */
  uint64_t committed, peak_committed, rss, peak_rss; /* the allocator's (mprof_alloc_stats_t) */
  uint64_t allocated, active, resident;
} mprof_recon_t;

void mprof__recon_read(mprof_recon_t* out);

bool mprof__active_get(void);
void mprof__active_set(bool on);

/* Writes a heap profile. path NULL: the next automatic name of kind 'm' (manual). Returns 0 or
 * a positive errno; on failure no file is left at the path (an older file there is kept).
 * EDEADLK when the calling thread already holds a profiler lock (a signal handler that
 * interrupted the profiler): dumping is not async-signal-safe. */
int mprof__dump(const char* path);

/* Writes the contention profile; path NULL: the next automatic name of kind 'm'
 * (<prefix>.<program>.<pid>.<seq>.m<n>.mutex.pb.gz). Returns 0 or a positive errno. */
int mprof__mutex_dump(const char* path);

/* Writes a thread snapshot (mprof_threads.h); path NULL: the next automatic name of kind 'm'
 * (<prefix>.<program>.<pid>.<seq>.m<n>.threads.pb.gz). Returns 0 or a positive errno (EBUSY: the program
 * handles prof_threads_signal itself). */
int mprof__threads_dump(const char* path);

/* An automatic thread snapshot of kind 's' or 'f' (prof_dump_threads). */
int mprof__threads_dump_auto(char kind);

/* Writes the heap at its peak (prof_peak; ENOENT without it), like mprof__dump; path NULL: the
 * next automatic name of kind 'm' with the suffix ".peak". */
int mprof__dump_peak(const char* path);

/* Automatic dump of kind 'f' (final), 'i' (interval), 'u' (high-water), 'm' (manual), 's'
 * (prof_dump_signal) or 'o' (prof_dump_over). */
int mprof__dump_auto(char kind);

/* Epoch boundary from the control interface: advance and flush. Returns 0, or EDEADLK when the
 * calling thread already holds a profiler lock (a signal handler that interrupted the profiler). */
int mprof__epoch_advance(void);
uint64_t mprof__epoch_read(void);

/* The mean sampling interval in bytes (2^lg_prof_sample). */
uint64_t mprof__sample_interval(void);

/* Name of the allocator the core runs in (from the glue), or "none". */
const char* mprof__host_name(void);

/* Tests: set options and start the core without a glue or environment. Returns the callbacks. */
struct mprof_callbacks_s;
const struct mprof_callbacks_s* mprof__init_with_opts(const mprof_opts_t* opts);

#endif
