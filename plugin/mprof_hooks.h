/* The contract between the profiling core and an allocator glue.
 *
 * The core knows no allocator. A glue (allocator-glue/<allocator>.c) connects one allocator to
 * the core with three callbacks, in the shape of the profiler interface that newer upstream
 * mimalloc offers natively (mimalloc-profile.h: on_alloc returning the next sampling threshold,
 * on_free, per-sample data the allocator keeps with each sampled block):
 *
 *   on_alloc(data, ptr, size)  a sampled allocation of `size` requested bytes now lives at ptr.
 *                              The core fills *data (the sample record the allocator must keep
 *                              with the block) and returns the number of bytes to allocate on
 *                              this thread before the next sample.
 *   on_free(data, ptr)         a block that on_alloc saw is being freed; `data` is its record.
 *                              Called before the memory is released.
 *   on_epoch()                 an allocator epoch boundary (see mprof_cycle.h).
 *
 * A glue for an allocator with native hooks passes these to it. A glue for an allocator without
 * them (mimalloc 2.0.9, jemalloc) interposes malloc and friends and does the allocator's part
 * itself: it keeps the thread's countdown (mprof_thread.h), asks mprof__sample_decide on the slow
 * path, places sampled blocks where it can tell them apart on free, and keeps the sample records
 * (mprof_blockmap.h can do that). Everything else (configuration, control, dumps, fork, exit) is
 * the core's. */
#ifndef MPROF_HOOKS_H
#define MPROF_HOOKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mprof_bucket_s;

/* What the allocator keeps with each sampled block. Written by on_alloc, read by on_free. */
typedef struct mprof_sample_s {
  struct mprof_bucket_s* bucket; /* the allocation's call stack */
  uint64_t size;                 /* requested bytes */
  uint64_t cycle;                /* the cycle its malloc was counted in (mprof_cycle.h) */
  double weight;                 /* objects this sample stands for (1/p) */
} mprof_sample_t;

typedef struct mprof_callbacks_s {
  size_t sample_data_size;   /* sizeof(mprof_sample_t) */
  uint64_t initial_interval; /* mean bytes between samples when profiling is active */
  uint64_t (*on_alloc)(mprof_sample_t* data, void* ptr, size_t size);
  void (*on_free)(const mprof_sample_t* data, void* ptr);
  void (*on_epoch)(void);
  /* on_alloc for an allocator whose countdown charges an allocation more bytes than were
   * requested (jemalloc charges its usable size): `counted` is what the countdown charged, which
   * sets the probability that the allocation was sampled and so its weight; `size` is still the
   * requested size the profile reports. on_alloc(d, p, n) is on_alloc_counted(d, p, n, n). */
  uint64_t (*on_alloc_counted)(mprof_sample_t* data, void* ptr, size_t size, size_t counted);
} mprof_callbacks_t;

/* What the glue tells the core about itself. */
typedef struct mprof_host_s {
  const char* name;           /* e.g. "mimalloc 2.0.9", reported by the `version` ctl */
  uintptr_t self_lo, self_hi; /* address range of the glue's own code: frames in it are dropped
                                 from the leaf end of captured stacks */
} mprof_host_t;

/* Initialises the core once (reads MPROF_CONF, installs fork and exit handlers) and returns the
 * callbacks, or NULL if profiling is off (prof:false) or could not start. Must be called before
 * any other core function; calling it again returns the same table. It does not allocate from
 * the profiled heap. */
const mprof_callbacks_t* mprof__init(const mprof_host_t* host);

/* True once mprof__init finished with profiling on. */
bool mprof__ready(void);

/* The slow path of a glue's fast-path countdown (n > countdown). Returns true when this
 * allocation must be sampled (then the glue calls on_alloc after allocating it, or
 * mprof__sample_dropped if it cannot). Always leaves a fresh countdown. Never samples while the
 * thread is already inside the profiler. */
bool mprof__sample_decide(size_t n);

/* A sample was decided but the glue could not place it (e.g. its sampled-block area is full). */
void mprof__sample_dropped(void);

/* The work done at exit (final dump, leak summary), once; an atexit handler registered by
 * mprof__init. Later callers wait until it is done. */
void mprof__at_exit(void);

/* For a glue that interposes exit(): call first. When several threads call exit() at once, the
 * ones that find glibc's handler list already taken would end the process while the final dump
 * is being written; this holds every caller but the first until the final dump is done. */
void mprof__exit_wait(void);

/* Re-entry guard for the glue's own slow paths. */
void mprof__enter(void);
void mprof__leave(void);

#endif
