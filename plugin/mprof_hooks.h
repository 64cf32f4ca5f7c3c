/* The contract between the profiling core and an allocator glue: what an allocator calls.
 *
 * The core knows no allocator. A glue (allocator-glue/<allocator>.c) connects one allocator to
 * the core. The allocator's part, done inside the allocator's own allocation and free paths:
 *
 *   - keep the thread's byte countdown (mprof_thread.h): every allocation of n bytes subtracts
 *     n; only when that borrows does it call mprof__sample_decide(n), which says whether this
 *     allocation is sampled and leaves a fresh countdown;
 *   - for a sampled block, call on_alloc once the block exists and keep the record it fills
 *     with the block (or in the core's block map, mprof_blockmap.h, where the allocator has no
 *     room for per-block data, as mimalloc 2.0.9 and jemalloc do not), and recognise the block
 *     when it is freed without cost to the frees of unsampled blocks;
 *   - call on_free with that record before the block's memory is reused;
 *   - call on_epoch at its epoch boundaries, if it has any (mprof_cycle.h). The core also
 *     makes boundaries of its own every 2^lg_prof_epoch sampled bytes and at each dump.
 *
 *   on_alloc(data, ptr, size)  a sampled allocation of `size` requested bytes now lives at ptr.
 *                              The core fills *data and returns the thread's new countdown.
 *   on_free(data, ptr)         a block that on_alloc saw is being freed; `data` is its record.
 *   on_epoch()                 an allocator epoch boundary.
 *
 * The shape follows a profiler interface proposed for mimalloc (microsoft/mimalloc pull request
 * #1266, not merged and in no released mimalloc: on_alloc returning the bytes until the next
 * sample, on_free, a per-sample record kept with the block). Everything else — configuration,
 * control, dumps, fork, exit — is the core's. */
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
  uint32_t thread;               /* serial of the allocating thread (mprof_threads.h), 0 unknown */
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

/* What the allocator itself knows about its memory, in bytes, for the reconciliation of the
 * sampled estimate with exact figures (docs/OPTIONS.md, stats.allocator.*). A field the allocator
 * does not know is UINT64_MAX. */
typedef struct mprof_alloc_stats_s {
  uint64_t committed;      /* mimalloc: memory committed from the OS now */
  uint64_t peak_committed; /* mimalloc: highest committed */
  uint64_t rss;            /* mimalloc: process RSS as the allocator reports it */
  uint64_t peak_rss;       /* mimalloc: highest RSS */
  uint64_t allocated;      /* jemalloc stats.allocated: bytes in blocks the program holds */
  uint64_t active;         /* jemalloc stats.active: bytes in pages holding such blocks */
  uint64_t resident;       /* jemalloc stats.resident: allocator pages resident in memory */
} mprof_alloc_stats_t;

/* What the glue tells the core about itself. */
typedef struct mprof_host_s {
  const char* name;           /* e.g. "mimalloc 2.0.9", reported by the `version` ctl */
  uintptr_t self_lo, self_hi; /* address range of the glue's own code: frames in it are dropped
                                 from the leaf end of captured stacks */
  /* Optional (NULL: unknown). Fills *out with the allocator's own figures and returns 0, or a
   * positive errno. Called from dumps and mprof_ctl, possibly inside an allocation: it must not
   * allocate from the heap it describes. */
  int (*alloc_stats)(mprof_alloc_stats_t* out);
} mprof_host_t;

/* Optional, for a glue whose alloc_stats takes the allocator's locks: `fn` says whether the
 * calling thread is inside the allocator with any of its locks possibly held (so that a signal
 * handler calling mprof_ctl interrupted it). While it does, alloc_stats is not called (its
 * figures are left unknown in dumps and stats.allocator.*), since it would wait for a lock its
 * own thread holds. fn must be async-signal-safe and take no lock. Call before mprof__init. */
void mprof__host_set_in_allocator(bool (*fn)(void));

/* Initialises the core once (reads MPROF_CONF, installs fork and exit handlers) and returns the
 * callbacks, or NULL if profiling is off (prof:false) or could not start. Must be called before
 * any other core function; calling it again returns the same table. It does not allocate from
 * the profiled heap. */
const mprof_callbacks_t* mprof__init(const mprof_host_t* host);

/* The part of mprof__init that sampling needs (options, interval, thread key), for a glue to
 * call from the first allocation that reaches its slow path when that comes before its
 * constructor: it takes no libc lock and does not allocate from the profiled heap. The
 * constructor still calls mprof__init, which adds the fork and exit handlers. Returns what
 * mprof__init would, or NULL (and nothing done) when it is too early to read the environment.
 * A glue must not call it again on a thread that is inside it. */
const mprof_callbacks_t* mprof__init_early(const mprof_host_t* host);

/* True once mprof__init finished with profiling on. */
bool mprof__ready(void);

/* The slow path of a glue's fast-path countdown (n > countdown). Returns true when this
 * allocation must be sampled (then the glue calls on_alloc after allocating it, or
 * mprof__sample_dropped if it cannot). Always leaves a fresh countdown. Never samples while the
 * thread is already inside the profiler. */
bool mprof__sample_decide(size_t n);

/* For an allocator that keeps its own per-thread byte counter and asks for the bytes until the
 * next sample point itself (jemalloc's event wait): that wait, at least 1. Called when the
 * allocator sets a thread up (the thread's first countdown is drawn then, so its first
 * allocation is sampled with the probability of its size) and after every sample point. Before
 * start-up 1 (look at the next allocation); UINT64_MAX with profiling off. */
uint64_t mprof__sample_wait(void);

/* For the same allocators, whose sample point comes before they know the allocation's size:
 * true when mprof__sample_decide needs that size, which is when this thread's countdown was not
 * drawn by mprof__sample_wait (its allocator set it up before the core started). The glue then
 * calls mprof__sample_decide(size) once the size is known. */
bool mprof__sample_needs_size(void);

/* A sample was decided but the glue could not place or keep it (no room for its record). */
void mprof__sample_dropped(void);

/* Takes back a sample that on_alloc recorded moments ago on this thread, as if it had never
 * been made (the allocator re-reported the block, or its record could not be kept): the malloc
 * is uncounted rather than a free counted, so allocation totals do not grow. */
void mprof__sample_cancel(const mprof_sample_t* data);

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
