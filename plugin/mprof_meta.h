/* The profiler's own memory.
 *
 * Everything the profiler keeps (buckets, per-thread stack buffers, the sampled-block map, dump
 * buffers, zlib state) comes from here, never from the profiled heap: profiler metadata must not
 * show up in the profile it produces, must not be sampled, and must not call back into malloc.
 * Memory comes from anonymous mmap. Small requests are carved from chunks that grow from 16 KiB
 * to 256 KiB and are recycled through per-size-class free lists; requests above
 * MPROF_META_SMALL_MAX are mapped one by one.
 * Every byte handed out is zeroed. */
#ifndef MPROF_META_H
#define MPROF_META_H

#include <stddef.h>

#define MPROF_META_SMALL_MAX 4096 /* larger requests get their own mapping */

/* Returns zeroed memory aligned to 16 bytes, or NULL when the system refuses memory (the caller
 * counts the loss). Thread-safe; takes mprof_meta_lock for small sizes. */
void* mprof__meta_alloc(size_t size);

/* Returns memory from mprof__meta_alloc; size must be the size it was allocated with. */
void mprof__meta_free(void* p, size_t size);

/* Bytes currently mapped for metadata (chunks and large mappings), for stats.metadata_bytes. */
size_t mprof__meta_mapped_bytes(void);

/* fork() support: called from the prepare/parent/child handlers with the documented lock order. */
void mprof__meta_fork_prepare(void);
void mprof__meta_fork_parent(void);
void mprof__meta_fork_child(void);

#endif
