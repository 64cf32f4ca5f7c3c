/* The sampled-block map: address of a live sampled block -> its sample record.
 *
 * A glue whose allocator cannot store per-sample data itself (mimalloc 2.0.9, jemalloc) keeps the
 * record here, in profiler memory, so sampled blocks need no header in the profiled heap. The map
 * is split into MPROF_BLOCKMAP_SHARDS open-addressing tables, each under its own lock and grown
 * on demand, so threads freeing sampled blocks rarely meet. Only sampled blocks (and the rare
 * unsampled block that passes the glue's address-range filter) ever reach it. */
#ifndef MPROF_BLOCKMAP_H
#define MPROF_BLOCKMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mprof_hooks.h"

#define MPROF_BLOCKMAP_SHARDS 64

/* Records `s` for block p. Returns 0, or ENOMEM when the map cannot grow (the sample is lost;
 * the caller counts it). p must not be in the map. */
int mprof__blockmap_insert(const void* p, const mprof_sample_t* s);

/* Removes p; true and *out filled if p was a sampled block. */
bool mprof__blockmap_remove(const void* p, mprof_sample_t* out);

/* Calls fn(arg, record) for every block in the map, one shard at a time: the shard's records are
 * copied out under its lock (a thread freeing a sampled block of that shard waits at most for
 * that copy, never for fn), and fn runs on the copy with no lock held. Blocks inserted or removed
 * during the walk may or may not be seen; a block removed after its shard was copied is still
 * seen. */
void mprof__blockmap_walk(void (*fn)(void* arg, const mprof_sample_t* rec), void* arg);

/* Sampled blocks currently in the map, and profiler bytes the map uses. */
size_t mprof__blockmap_count(void);
size_t mprof__blockmap_bytes(void);

void mprof__blockmap_fork_prepare(void);
void mprof__blockmap_fork_parent(void);
void mprof__blockmap_fork_child(void);

#endif
