/* The profiler's own memory (see mprof_meta.h).
 *
 * Size classes are powers of two from 16 bytes to MPROF_META_SMALL_MAX. A freed small block goes
 * on its class's free list (the first word links the list) and is zeroed again when reused.
 * Chunks are never returned to the system: metadata only grows with the number of distinct call
 * stacks and live sampled blocks, and reusing freed blocks bounds the rest.
 *
 * Chunks grow geometrically: the first is CHUNK_MIN (16 KiB), each next one twice the previous,
 * up to CHUNK_MAX (256 KiB). A program that samples little maps a few pages, one that keeps many
 * stacks maps few, large chunks; either way the unused tail of the newest chunk is at most as
 * large as everything carved before it (or 256 KiB). */
#include "mprof_meta.h"

#include "mprof_lock.h"

#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#define CHUNK_MIN ((size_t)1 << 14)
#define CHUNK_MAX ((size_t)1 << 18)
#define MIN_SHIFT 4
#define NCLASSES 9 /* 16 B .. 4 KiB */

typedef struct free_block_s {
  struct free_block_s* next;
} free_block_t;

static mprof_lock_t mprof_meta_lock = MPROF_LOCK_INIT(MPROF_RANK_META, "meta");
static free_block_t* free_lists[NCLASSES]; /* guarded by mprof_meta_lock */
static char* chunk_cur;                    /* guarded by mprof_meta_lock: next free byte */
static char* chunk_end;                    /* guarded by mprof_meta_lock */
static size_t chunk_next = CHUNK_MIN;      /* guarded by mprof_meta_lock: size of the next chunk */
static _Atomic size_t mapped_bytes;        /* all mappings made here, less those unmapped */

static void* map_pages(size_t size) {
  void* p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return NULL;
  atomic_fetch_add_explicit(&mapped_bytes, size, memory_order_relaxed);
  return p;
}

static size_t page_round(size_t size) {
  return (size + 4095) & ~(size_t)4095;
}

static unsigned size_class(size_t size) {
  unsigned c = 0;
  while (((size_t)1 << (c + MIN_SHIFT)) < size)
    c++;
  return c;
}

void* mprof__meta_alloc(size_t size) {
  if (size == 0) size = 1;
  if (size > MPROF_META_SMALL_MAX) {
    if (size > SIZE_MAX - 4096) return NULL;
    return map_pages(page_round(size)); /* anonymous mappings are zeroed */
  }
  unsigned c = size_class(size);
  size_t csize = (size_t)1 << (c + MIN_SHIFT);
  void* p = NULL;
  mprof__lock(&mprof_meta_lock);
  for (int tries = 0; p == NULL && tries < 2; tries++) {
    if (free_lists[c] != NULL) {
      free_block_t* b = free_lists[c];
      free_lists[c] = b->next;
      p = b;
    } else if ((size_t)(chunk_end - chunk_cur) >= csize) {
      p = chunk_cur;
      chunk_cur += csize;
    } else if (tries == 0) {
      /* A new chunk, mapped without the lock: the lock is held only for a few stores. Another
       * thread may have installed one meanwhile; then this one is unmapped again. */
      size_t len = chunk_next;
      mprof__unlock(&mprof_meta_lock);
      char* chunk = map_pages(len);
      mprof__lock(&mprof_meta_lock);
      if (chunk == NULL) break;
      if ((size_t)(chunk_end - chunk_cur) >= csize || free_lists[c] != NULL) {
        mprof__unlock(&mprof_meta_lock);
        munmap(chunk, len);
        atomic_fetch_sub_explicit(&mapped_bytes, len, memory_order_relaxed);
        mprof__lock(&mprof_meta_lock);
      } else {
        /* The tail of the old chunk is lost: less than the largest class, 4 KiB. */
        chunk_cur = chunk;
        chunk_end = chunk + len;
        if (chunk_next < CHUNK_MAX && len == chunk_next) chunk_next *= 2;
      }
    }
  }
  mprof__unlock(&mprof_meta_lock);
  if (p != NULL) memset(p, 0, csize);
  return p;
}

void mprof__meta_free(void* p, size_t size) {
  if (p == NULL) return;
  if (size == 0) size = 1;
  if (size > MPROF_META_SMALL_MAX) {
    size_t len = page_round(size);
    munmap(p, len);
    atomic_fetch_sub_explicit(&mapped_bytes, len, memory_order_relaxed);
    return;
  }
  unsigned c = size_class(size);
  free_block_t* b = p;
  mprof__lock(&mprof_meta_lock);
  b->next = free_lists[c];
  free_lists[c] = b;
  mprof__unlock(&mprof_meta_lock);
}

size_t mprof__meta_mapped_bytes(void) {
  return atomic_load_explicit(&mapped_bytes, memory_order_relaxed);
}

void mprof__meta_fork_prepare(void) {
  mprof__lock(&mprof_meta_lock);
}

void mprof__meta_fork_parent(void) {
  mprof__unlock(&mprof_meta_lock);
}

void mprof__meta_fork_child(void) {
  mprof__lock_reinit(&mprof_meta_lock);
}
