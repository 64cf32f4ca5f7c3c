/* The sampled-block map (see mprof_blockmap.h).
 *
 * Each shard is a linear-probing table of (key, record) entries whose capacity is a power of two.
 * Key 0 is an empty slot and key 1 a tombstone (no block lives at address 0 or 1). A shard is
 * rebuilt when live entries plus tombstones pass 3/4 of its capacity: at double the size if more
 * than half of that is live, otherwise at the same size, which clears the tombstones. A shard
 * under 1/8 full after a removal is rebuilt at half its size, so the map's memory follows the
 * number of live sampled blocks down as well as up. */
#include "mprof_blockmap.h"

#include "mprof_lock.h"
#include "mprof_meta.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#define EMPTY ((uintptr_t)0)
#define TOMB ((uintptr_t)1)
#define MIN_CAP 4 /* 160 bytes: a shard holding a few blocks costs a few cache lines */

typedef struct entry_s {
  uintptr_t key;
  mprof_sample_t rec;
} entry_t;

typedef struct shard_s {
  mprof_lock_t lock;
  entry_t* slots; /* cap entries, profiler memory; lock */
  size_t cap;     /* power of two or 0; lock */
  size_t live;    /* entries holding a block; lock */
  size_t tombs;   /* tombstones; lock */
  char pad[64];   /* keep shards on separate cache lines */
} shard_t;

static shard_t shards[MPROF_BLOCKMAP_SHARDS];
static _Atomic size_t total_live;
static _Atomic size_t total_bytes;

static uint64_t mix(uintptr_t p) {
  uint64_t h = (uint64_t)p >> 4;
  h *= 0x9e3779b97f4a7c15ull;
  return h ^ (h >> 31);
}

static shard_t* shard_of(uint64_t h) {
  return &shards[(h >> 58) % MPROF_BLOCKMAP_SHARDS];
}

/* The shards' mutexes and ranks, set on first use (64 array elements have no neat static
 * initialiser). pthread_once neither allocates nor takes a lock of ours. */
static pthread_once_t shards_once = PTHREAD_ONCE_INIT;

static void init_shards_once(void) {
  for (int i = 0; i < MPROF_BLOCKMAP_SHARDS; i++) {
    pthread_mutex_init(&shards[i].lock.mu, NULL);
    shards[i].lock.rank = MPROF_RANK_BLOCKMAP;
    shards[i].lock.name = "mprof_lock:blockmap";
  }
}

static void init_shards(void) {
  pthread_once(&shards_once, init_shards_once);
}

static entry_t* probe(entry_t* slots, size_t cap, uintptr_t key, uint64_t h, bool for_insert) {
  size_t mask = cap - 1;
  size_t i = (size_t)h & mask;
  entry_t* first_tomb = NULL;
  for (size_t n = 0; n < cap; n++, i = (i + 1) & mask) {
    entry_t* e = &slots[i];
    if (e->key == key) return e;
    if (e->key == EMPTY) return for_insert ? (first_tomb ? first_tomb : e) : NULL;
    if (e->key == TOMB && first_tomb == NULL) first_tomb = e;
  }
  return for_insert ? first_tomb : NULL;
}

/* Rebuilds the shard with capacity new_cap. Needs the shard lock. */
static int rebuild_locked(shard_t* s, size_t new_cap) {
  mprof__lock_assert_held(&s->lock);
  if (s->live == 0 && new_cap == s->cap) {
    /* Only tombstones (a thread freeing what it allocated): clear them in place, with no
     * allocation and so no meta lock. */
    memset(s->slots, 0, s->cap * sizeof(entry_t));
    s->tombs = 0;
    return 0;
  }
  entry_t* slots = mprof__meta_alloc(new_cap * sizeof(entry_t));
  if (slots == NULL) return ENOMEM;
  for (size_t i = 0; i < s->cap; i++) {
    entry_t* e = &s->slots[i];
    if (e->key == EMPTY || e->key == TOMB) continue;
    *probe(slots, new_cap, e->key, mix(e->key), true) = *e;
  }
  if (s->slots != NULL) {
    mprof__meta_free(s->slots, s->cap * sizeof(entry_t));
    atomic_fetch_sub_explicit(&total_bytes, s->cap * sizeof(entry_t), memory_order_relaxed);
  }
  atomic_fetch_add_explicit(&total_bytes, new_cap * sizeof(entry_t), memory_order_relaxed);
  s->slots = slots;
  s->cap = new_cap;
  s->tombs = 0;
  return 0;
}

int mprof__blockmap_insert(const void* p, const mprof_sample_t* rec) {
  init_shards();
  uintptr_t key = (uintptr_t)p;
  uint64_t h = mix(key);
  shard_t* s = shard_of(h);
  int err = 0;
  mprof__lock(&s->lock);
  if ((s->live + s->tombs + 1) * 4 > s->cap * 3) {
    size_t new_cap = s->cap < MIN_CAP ? MIN_CAP : s->cap;
    if ((s->live + 1) * 2 > new_cap) new_cap *= 2;
    err = rebuild_locked(s, new_cap);
    /* Out of memory: carry on if there is still a free slot, else drop the sample. */
    if (err != 0 && (s->cap == 0 || s->live + s->tombs + 1 >= s->cap)) goto out;
    err = 0;
  }
  entry_t* e = probe(s->slots, s->cap, key, h, true);
  if (e->key == TOMB) s->tombs--;
  e->key = key;
  e->rec = *rec;
  s->live++;
  atomic_fetch_add_explicit(&total_live, 1, memory_order_relaxed);
out:
  mprof__unlock(&s->lock);
  return err;
}

bool mprof__blockmap_remove(const void* p, mprof_sample_t* out) {
  init_shards();
  uintptr_t key = (uintptr_t)p;
  if (key <= TOMB) return false;
  uint64_t h = mix(key);
  shard_t* s = shard_of(h);
  bool found = false;
  mprof__lock(&s->lock);
  if (s->cap != 0) {
    entry_t* e = probe(s->slots, s->cap, key, h, false);
    if (e != NULL) {
      *out = e->rec;
      e->key = TOMB;
      s->live--;
      s->tombs++;
      found = true;
      atomic_fetch_sub_explicit(&total_live, 1, memory_order_relaxed);
      /* Give memory back after a peak: halve when under 1/8 full (growth needs 3/4). */
      if (s->cap > MIN_CAP && s->live * 8 < s->cap) (void)rebuild_locked(s, s->cap / 2);
    }
  }
  mprof__unlock(&s->lock);
  return found;
}

/* One shard at a time: its live records are copied out under its lock (a bounded, memory-only
 * step), then handed to fn with no lock held, so a sampled free never waits for fn. The copy
 * buffer is profiler memory sized outside the lock: if the shard grew past it meanwhile, the
 * lock is dropped, the buffer grown, and the shard copied again. */
void mprof__blockmap_walk(void (*fn)(void* arg, const mprof_sample_t* rec), void* arg) {
  init_shards();
  mprof_sample_t* buf = NULL;
  size_t buf_cap = 0;
  for (int i = 0; i < MPROF_BLOCKMAP_SHARDS; i++) {
    shard_t* s = &shards[i];
    size_t n = 0;
    mprof__lock(&s->lock);
    while (s->live > buf_cap) {
      size_t want = s->live + s->live / 4 + 16;
      mprof__unlock(&s->lock);
      mprof_sample_t* nb = mprof__meta_alloc(want * sizeof *nb);
      mprof__lock(&s->lock);
      if (nb == NULL) break; /* out of memory: the records that fit (fn sees a subset) */
      if (buf != NULL) mprof__meta_free(buf, buf_cap * sizeof *buf);
      buf = nb;
      buf_cap = want;
    }
    for (size_t k = 0; k < s->cap && n < buf_cap; k++) {
      const entry_t* e = &s->slots[k];
      if (e->key != EMPTY && e->key != TOMB) buf[n++] = e->rec;
    }
    mprof__unlock(&s->lock);
    for (size_t k = 0; k < n; k++)
      fn(arg, &buf[k]);
  }
  if (buf != NULL) mprof__meta_free(buf, buf_cap * sizeof *buf);
}

size_t mprof__blockmap_count(void) {
  return atomic_load_explicit(&total_live, memory_order_relaxed);
}

size_t mprof__blockmap_bytes(void) {
  return atomic_load_explicit(&total_bytes, memory_order_relaxed);
}

void mprof__blockmap_fork_prepare(void) {
  init_shards();
  /* All shard locks share a rank: taken raw, in index order, as the one sanctioned exception. */
  for (int i = 0; i < MPROF_BLOCKMAP_SHARDS; i++)
    mprof__sys_mutex_lock(&shards[i].lock.mu);
}

void mprof__blockmap_fork_parent(void) {
  for (int i = MPROF_BLOCKMAP_SHARDS - 1; i >= 0; i--)
    pthread_mutex_unlock(&shards[i].lock.mu);
}

void mprof__blockmap_fork_child(void) {
  for (int i = 0; i < MPROF_BLOCKMAP_SHARDS; i++)
    pthread_mutex_init(&shards[i].lock.mu, NULL);
}
