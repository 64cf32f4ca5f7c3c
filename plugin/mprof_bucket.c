/* The bucket table (see mprof_bucket.h).
 *
 * An open-addressing table of bucket pointers with linear probing, its capacity a power of two,
 * kept at most half full. It starts at MPROF_BUCKET_TABLE_MIN slots (2 KiB) on the first insertion
 * and doubles when an insertion would pass half: a program with few stacks pays a few KiB, and a
 * lookup probes about 1.5 slots whatever the number of stacks.
 *
 * Growth never disturbs a reader. Slots are atomics: an insertion fills an empty slot with a
 * release store (the bucket is fully written before), and a filled slot never changes. To grow,
 * one inserter fills a new table twice the size with every bucket, without the lock (other
 * inserters go on in the current table meanwhile), adds under the lock the buckets they inserted,
 * and publishes it with a release store of `current`. A reader that loaded the old table keeps
 * walking it: it is never modified or freed again, so every bucket it held is still found there,
 * and one inserted after the switch is missing only from it, which sends the reader to the insert
 * path; that path looks again in the newest table under the lock. The retired tables stay mapped
 * for good (there is no way to know when the last reader has left them); being half, a quarter, ...
 * of the current one, they add at most its size again. */
#include "mprof_bucket.h"

#include "mprof_lock.h"
#include "mprof_meta.h"

#include <stdbool.h>
#include <string.h>

#define MPROF_BUCKET_TABLE_MIN ((size_t)1 << 8)

typedef struct table_s {
  size_t mask;                    /* capacity - 1; immutable */
  _Atomic(mprof_bucket_t*)* slot; /* capacity slots, profiler memory; each written once */
  struct table_s* older;          /* the table this one replaced; immutable */
} table_t;

static mprof_lock_t mprof_insert_lock = MPROF_LOCK_INIT(MPROF_RANK_INSERT, "insert");
static _Atomic(table_t*) current; /* newest table; replaced (release) under the insert lock */
static _Atomic(mprof_bucket_t*) all[MPROF_BUCKET_NTYPES]; /* per-type lists, written under lock */
static _Atomic size_t counts[MPROF_BUCKET_NTYPES];
static size_t total; /* buckets of every type in the table; mprof_insert_lock */
static bool growing; /* a thread is building the next table; mprof_insert_lock */

static uint64_t hash_stack(uint32_t type, const uintptr_t* stk, uint32_t nstk) {
  uint64_t h = 0x84222325cbf29ce4ull ^ type; /* type holds the tag in its upper 16 bits */
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

static mprof_bucket_t* find(const table_t* t, uint64_t h, uint32_t type, const uintptr_t* stk,
                            uint32_t nstk) {
  for (size_t i = (size_t)h & t->mask;; i = (i + 1) & t->mask) {
    mprof_bucket_t* b = atomic_load_explicit(&t->slot[i], memory_order_acquire);
    if (b == NULL) return NULL; /* a table is never full: there is always an empty slot */
    if (b->hash == h && b->type == (type & 0xffff) && b->tag == type >> 16 && b->nstk == nstk &&
        memcmp(b->stk, stk, nstk * sizeof(uintptr_t)) == 0)
      return b;
  }
}

/* Puts b in the first empty slot of its probe sequence. The caller holds mprof_insert_lock
 * (published tables: inserters must not race for a slot) or owns t alone (a table being built). */
static void place(table_t* t, mprof_bucket_t* b) {
  size_t i = (size_t)b->hash & t->mask;
  while (atomic_load_explicit(&t->slot[i], memory_order_relaxed) != NULL)
    i = (i + 1) & t->mask;
  atomic_store_explicit(&t->slot[i], b, memory_order_release);
}

/* A new, unpublished table of `cap` slots holding every bucket reached from heads[] (one
 * per-type list head each; buckets and their allnext links are immutable). NULL when profiler
 * memory is exhausted. Needs no lock: the caller owns the new table. */
static table_t* build_table(table_t* old, size_t cap, mprof_bucket_t* const* heads) {
  table_t* t = mprof__meta_alloc(sizeof *t);
  if (t == NULL) return NULL;
  t->slot = mprof__meta_alloc(cap * sizeof *t->slot);
  if (t->slot == NULL) {
    mprof__meta_free(t, sizeof *t);
    return NULL;
  }
  t->mask = cap - 1;
  t->older = old;
  for (int type = 0; type < MPROF_BUCKET_NTYPES; type++)
    for (mprof_bucket_t* b = heads[type]; b != NULL; b = b->allnext)
      place(t, b);
  return t;
}

/* The table is half full: replace it by one twice the size, unless another thread is doing
 * that already. The O(n) part runs without the lock, so other inserters never wait for it:
 * the buckets of the per-type lists as they are now go into the new table unlocked; then, under
 * the lock again, the buckets inserted meanwhile (the lists are newest first: those before the
 * heads taken at the start), and the new table is published. Needs mprof_insert_lock, which it
 * drops and takes again. Returns the current table. */
static table_t* grow_locked(table_t* t) {
  mprof__lock_assert_held(&mprof_insert_lock);
  if (growing) return t;
  growing = true;
  mprof_bucket_t* heads[MPROF_BUCKET_NTYPES];
  for (int type = 0; type < MPROF_BUCKET_NTYPES; type++)
    heads[type] = atomic_load_explicit(&all[type], memory_order_relaxed);
  mprof__unlock(&mprof_insert_lock);
  table_t* bigger = build_table(t, (t->mask + 1) * 2, heads);
  mprof__lock(&mprof_insert_lock);
  growing = false;
  if (bigger == NULL) return atomic_load_explicit(&current, memory_order_relaxed);
  for (int type = 0; type < MPROF_BUCKET_NTYPES; type++)
    for (mprof_bucket_t* b = atomic_load_explicit(&all[type], memory_order_relaxed);
         b != heads[type]; b = b->allnext)
      place(bigger, b);
  atomic_store_explicit(&current, bigger, memory_order_release);
  return bigger;
}

mprof_bucket_t* mprof__bucket_get(mprof_bucket_type_t type, const uintptr_t* stk, uint32_t nstk,
                                  int create) {
  return mprof__bucket_get_tagged(type, 0, stk, nstk, create);
}

mprof_bucket_t* mprof__bucket_get_tagged(mprof_bucket_type_t type, uint16_t tag,
                                         const uintptr_t* stk, uint32_t nstk, int create) {
  uint32_t key = (uint32_t)type | (uint32_t)tag << 16;
  uint64_t h = hash_stack(key, stk, nstk);
  table_t* t = atomic_load_explicit(&current, memory_order_acquire);
  if (t != NULL) {
    mprof_bucket_t* b = find(t, h, key, stk, nstk);
    if (b != NULL) return b;
  }
  if (!create) {
    if (t == NULL) return NULL;
    /* A bucket inserted while the table grew is only in the newer table: look there. */
    table_t* now = atomic_load_explicit(&current, memory_order_acquire);
    return now == t ? NULL : find(now, h, key, stk, nstk);
  }

  mprof_bucket_t* b = NULL;
  mprof__lock(&mprof_insert_lock);
  t = atomic_load_explicit(&current, memory_order_relaxed);
  if (t == NULL) {
    mprof_bucket_t* none[MPROF_BUCKET_NTYPES] = {NULL};
    t = build_table(NULL, MPROF_BUCKET_TABLE_MIN, none); /* 2 KiB: O(1) under the lock */
    if (t == NULL) goto out;
    atomic_store_explicit(&current, t, memory_order_release);
  }
  if ((total + 1) * 2 > t->mask + 1) t = grow_locked(t); /* may drop the lock meanwhile */
  b = find(t, h, key, stk, nstk);                        /* another thread may have inserted it */
  if (b != NULL) goto out;
  /* Past half full only while another thread grows the table (or memory ran out): go on while
   * a slot stays empty (lookups stop at one), else this bucket is dropped, never waited for. */
  if (total + 2 > t->mask + 1) goto out;
  size_t size = sizeof(mprof_bucket_t) + nstk * sizeof(uintptr_t);
  b = mprof__meta_alloc(size);
  if (b == NULL) goto out;
  b->hash = h;
  b->nstk = nstk;
  b->type = (uint16_t)type;
  b->tag = tag;
  memcpy(b->stk, stk, nstk * sizeof(uintptr_t));
  b->allnext = atomic_load_explicit(&all[type], memory_order_relaxed);
  place(t, b);
  atomic_store_explicit(&all[type], b, memory_order_release);
  atomic_fetch_add_explicit(&counts[type], 1, memory_order_relaxed);
  total++;
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

size_t mprof__bucket_table_slots(void) {
  table_t* t = atomic_load_explicit(&current, memory_order_acquire);
  return t == NULL ? 0 : t->mask + 1;
}

void mprof__bucket_fork_prepare(void) {
  mprof__lock(&mprof_insert_lock);
}

void mprof__bucket_fork_parent(void) {
  mprof__unlock(&mprof_insert_lock);
}

/* A table that another thread of the parent was building is abandoned (its memory stays mapped,
 * counted in the metadata bytes): the child's next insertion past half builds a new one. */
void mprof__bucket_fork_child(void) {
  growing = false;
  mprof__lock_reinit(&mprof_insert_lock);
}
