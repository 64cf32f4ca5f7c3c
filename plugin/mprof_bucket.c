/* The bucket table (see mprof_bucket.h).
 *
 * A fixed array of MPROF_BUCKET_HASH_SIZE chain heads, mapped on first use (untouched pages cost
 * nothing). 2^16 heads (512 KiB) keep chains short up to a few hundred thousand stacks; beyond that a
 * lookup walks longer chains but stays correct. Chain heads and list heads are atomics written
 * with release under mprof_insert_lock and read with acquire without it. */
#include "mprof_bucket.h"

#include "mprof_lock.h"
#include "mprof_meta.h"

#include <string.h>

#define MPROF_BUCKET_HASH_SIZE ((size_t)1 << 16)

static mprof_lock_t mprof_insert_lock = MPROF_LOCK_INIT(MPROF_RANK_INSERT, "insert");
static _Atomic(mprof_bucket_t*)* _Atomic table; /* chain heads; set once under the insert lock */
static _Atomic(mprof_bucket_t*) all[MPROF_BUCKET_NTYPES]; /* per-type lists, written under lock */
static _Atomic size_t counts[MPROF_BUCKET_NTYPES];

static uint64_t hash_stack(uint32_t type, const uintptr_t* stk, uint32_t nstk) {
  uint64_t h = 0x84222325cbf29ce4ull ^ type;
  for (uint32_t i = 0; i < nstk; i++) {
    h ^= stk[i];
    h *= 0x100000001b3ull;
    h ^= h >> 29;
  }
  h ^= nstk;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 32;
  return h;
}

static mprof_bucket_t* find(_Atomic(mprof_bucket_t*)* tab, uint64_t h, uint32_t type,
                            const uintptr_t* stk, uint32_t nstk) {
  mprof_bucket_t* b =
      atomic_load_explicit(&tab[h & (MPROF_BUCKET_HASH_SIZE - 1)], memory_order_acquire);
  for (; b != NULL; b = b->next) {
    if (b->hash == h && b->type == type && b->nstk == nstk &&
        memcmp(b->stk, stk, nstk * sizeof(uintptr_t)) == 0)
      return b;
  }
  return NULL;
}

mprof_bucket_t* mprof__bucket_get(mprof_bucket_type_t type, const uintptr_t* stk, uint32_t nstk,
                                  int create) {
  uint64_t h = hash_stack((uint32_t)type, stk, nstk);
  _Atomic(mprof_bucket_t*)* tab = atomic_load_explicit(&table, memory_order_acquire);
  if (tab != NULL) {
    mprof_bucket_t* b = find(tab, h, (uint32_t)type, stk, nstk);
    if (b != NULL || !create) return b;
  } else if (!create) {
    return NULL;
  }

  mprof_bucket_t* b = NULL;
  mprof__lock(&mprof_insert_lock);
  tab = atomic_load_explicit(&table, memory_order_relaxed);
  if (tab == NULL) {
    size_t tsize = MPROF_BUCKET_HASH_SIZE * sizeof(*tab);
    tab = mprof__meta_alloc(tsize);
    if (tab == NULL) goto out;
    atomic_store_explicit(&table, tab, memory_order_release);
  }
  b = find(tab, h, (uint32_t)type, stk, nstk); /* another thread may have inserted it */
  if (b != NULL) goto out;
  size_t size = sizeof(mprof_bucket_t) + nstk * sizeof(uintptr_t);
  b = mprof__meta_alloc(size);
  if (b == NULL) goto out;
  b->hash = h;
  b->nstk = nstk;
  b->type = (uint32_t)type;
  memcpy(b->stk, stk, nstk * sizeof(uintptr_t));
  _Atomic(mprof_bucket_t*)* head = &tab[h & (MPROF_BUCKET_HASH_SIZE - 1)];
  b->next = atomic_load_explicit(head, memory_order_relaxed);
  b->allnext = atomic_load_explicit(&all[type], memory_order_relaxed);
  atomic_store_explicit(head, b, memory_order_release);
  atomic_store_explicit(&all[type], b, memory_order_release);
  atomic_fetch_add_explicit(&counts[type], 1, memory_order_relaxed);
out:
  mprof__unlock(&mprof_insert_lock);
  return b;
}

mprof_bucket_t* mprof__bucket_list(mprof_bucket_type_t type) {
  return atomic_load_explicit(&all[type], memory_order_acquire);
}

size_t mprof__bucket_count(mprof_bucket_type_t type) {
  return atomic_load_explicit(&counts[type], memory_order_relaxed);
}

void mprof__bucket_fork_prepare(void) {
  mprof__lock(&mprof_insert_lock);
}

void mprof__bucket_fork_parent(void) {
  mprof__unlock(&mprof_insert_lock);
}

void mprof__bucket_fork_child(void) {
  mprof__lock_reinit(&mprof_insert_lock);
}
