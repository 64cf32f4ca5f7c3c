/* Heap snapshots (see mprof_snap.h). */
#include "mprof_snap.h"
#include "mprof_math.h"

#include "mprof_blockmap.h"
#include "mprof_bucket.h"
#include "mprof_cycle.h"
#include "mprof_meta.h"
#include "mprof_tlabel.h"

#include <errno.h>
#include <string.h>

#define NCLASSES 65 /* age 0, then [2^k, 2^(k+1)) for k = 0..63 */

/* One stack copied from `active` (or from the peak). */
typedef struct base_s {
  const uintptr_t* pcs; /* the bucket's stack, its length and tag, read during the copy */
  uint32_t npcs;
  uint16_t tag;
  mprof_mem_cycle_t rec;
} base_t;

/* In-use figures of the walked blocks of one (stack, age class), on a list per stack. */
typedef struct part_s {
  uint32_t next;  /* index + 1 of the stack's next part; 0 ends the list */
  uint32_t klass; /* age class */
  uint64_t raw;   /* blocks */
  double wobjs, wbytes;
} part_t;

typedef struct walk_s {
  uint64_t active_cycle;
  uint64_t gen;   /* this snapshot's mark in the buckets' snap_gen */
  uint32_t* head; /* per stack: index + 1 of its first part, 0 = none */
  part_t* parts;
  size_t pcap, nparts;
  int err;
} walk_t;

/* Snapshots built so far; mprof_dump_lock. Marks which buckets the current one copied. */
static uint64_t snap_gens;

static unsigned age_class(uint64_t age) {
  return age == 0 ? 0 : 64u - (unsigned)__builtin_clzll(age);
}

static int64_t class_edge(unsigned k) {
  return k == 0 ? 0 : (int64_t)((uint64_t)1 << (k - 1));
}

static int64_t round_pos(double x) {
  return x <= 0.5 ? 0 : (int64_t)mprof__llround(x);
}

/* Runs on a copy of a block-map shard's records, no lock held. A block counted in the copy (c + 2 <= A) has a bucket that
 * the copy saw with allocations, so its bucket carries this snapshot's mark. */
static void visit(void* arg, const mprof_sample_t* s) {
  walk_t* w = arg;
  if (w->err != 0 || s->bucket == NULL || s->cycle + 2 > w->active_cycle) return;
  const mprof_mem_record_t* r = &s->bucket->rec.mem;
  if (r->snap_gen != w->gen) return;
  uint32_t i = r->snap_idx;
  uint32_t k = age_class(w->active_cycle - 2 - s->cycle);
  part_t* p = NULL;
  for (uint32_t j = w->head[i]; j != 0 && p == NULL; j = w->parts[j - 1].next)
    if (w->parts[j - 1].klass == k) p = &w->parts[j - 1];
  if (p == NULL) {
    if (w->nparts == w->pcap) {
      size_t cap = w->pcap ? w->pcap * 2 : 1024;
      part_t* np = mprof__meta_alloc(cap * sizeof *np);
      if (np == NULL) {
        w->err = ENOMEM;
        return;
      }
      if (w->nparts) memcpy(np, w->parts, w->nparts * sizeof *np);
      if (w->parts != NULL) mprof__meta_free(w->parts, w->pcap * sizeof *np);
      w->parts = np;
      w->pcap = cap;
    }
    p = &w->parts[w->nparts++];
    memset(p, 0, sizeof *p);
    p->klass = k;
    p->next = w->head[i];
    w->head[i] = (uint32_t)w->nparts;
  }
  p->raw++;
  p->wobjs += s->weight;
  p->wbytes += s->weight * (double)s->size;
}

/* Copies the records of every bucket with allocations into *bases (grown by doubling, profiler
 * memory), in one walk of the list between mprof__cycle_read_begin and _end, and marks each bucket with
 * its index. Returns the number copied, or ENOMEM in *err. */
static size_t copy_bases(base_t** bases, size_t* cap, unsigned flags, uint64_t gen, int* err) {
  size_t n = 0;
  for (mprof_bucket_t* b = mprof__bucket_list(MPROF_BUCKET_HEAP); b != NULL; b = b->allnext) {
    const mprof_mem_cycle_t* a =
        (flags & MPROF_SNAP_PEAK) ? mprof__cycle_peak_of(b) : &b->rec.mem.active;
    if (a->allocs == 0) continue;
    if (n == *cap) {
      base_t* nb = mprof__meta_alloc(2 * *cap * sizeof *nb);
      if (nb == NULL) {
        *err = ENOMEM;
        return n;
      }
      memcpy(nb, *bases, n * sizeof *nb);
      mprof__meta_free(*bases, *cap * sizeof *nb);
      *bases = nb;
      *cap *= 2;
    }
    base_t* e = &(*bases)[n];
    e->pcs = b->stk;
    e->npcs = b->nstk;
    e->tag = b->tag;
    e->rec = *a;
    b->rec.mem.snap_gen = gen;
    b->rec.mem.snap_idx = (uint32_t)n;
    n++;
  }
  return n;
}

static void fill_common(mprof_heap_rec_t* r, const base_t* b) {
  memset(r, 0, sizeof *r);
  r->pcs = b->pcs;
  r->npcs = b->npcs;
  r->avg_bytes = b->rec.walloc_objs > 0 ? round_pos(b->rec.walloc_bytes / b->rec.walloc_objs) : 0;
  if (b->tag != 0) {
    r->labels |= MPROF_REC_THREAD;
    r->thread = mprof__tlabel_name(b->tag);
  }
}

int mprof__snap_heap(unsigned flags, bool wait, int64_t now_ns, mprof_snap_t* out) {
  memset(out, 0, sizeof *out);
  walk_t w;
  memset(&w, 0, sizeof w);
  base_t* bases = NULL;
  size_t bases_cap = 0, nb = 0;
  int err = 0;
  size_t head_bytes = 0;
  w.gen = ++snap_gens;

  /* The copy: one walk of the bucket list, flushes held off (no lock held meanwhile). */
  bases_cap = mprof__bucket_count(MPROF_BUCKET_HEAP) + 16;
  bases = mprof__meta_alloc(bases_cap * sizeof *bases);
  if (bases == NULL) return ENOMEM;
  bool peak = (flags & MPROF_SNAP_PEAK) != 0;
  int rerr;
  for (int tries = 0; (rerr = mprof__cycle_read_begin(peak, wait, &w.active_cycle)) == EBUSY;
       tries++) {
    /* The peak's cycle is not flushed yet: publish (tried once when this must not wait). */
    if (wait)
      mprof__cycle_publish_all();
    else if (tries > 0 || !mprof__cycle_try_publish_all())
      break;
  }
  if (rerr != 0) {
    mprof__meta_free(bases, bases_cap * sizeof *bases);
    return EAGAIN;
  }
  nb = copy_bases(&bases, &bases_cap, flags, w.gen, &err);
  mprof__cycle_read_end();
  if (err != 0) goto out;

  bool ages = (flags & MPROF_SNAP_AGES) && !(flags & MPROF_SNAP_PEAK) && nb > 0;
  if (ages) {
    head_bytes = nb * sizeof *w.head;
    w.head = mprof__meta_alloc(head_bytes); /* zeroed */
    if (w.head == NULL) {
      err = ENOMEM;
      goto out;
    }
    mprof__blockmap_walk(visit, &w);
    if ((err = w.err) != 0) goto out;
  }

  /* Lower bounds of the time since each class's youngest malloc: its cycle c = A - 2 - edge
   * ended when cycle c + 1 began. */
  int64_t bound_ms[NCLASSES];
  for (unsigned k = 0; k < NCLASSES; k++) {
    bound_ms[k] = -1;
    uint64_t edge = (uint64_t)class_edge(k);
    if (!ages || w.active_cycle < 2 || edge > w.active_cycle - 2) continue;
    int64_t t = mprof__cycle_start_ns(w.active_cycle - 2 - edge + 1);
    if (t != 0) bound_ms[k] = now_ns > t ? (now_ns - t) / 1000000 : 0;
  }

  size_t nrecs = nb + (ages ? w.nparts : 0);
  out->cap_bytes = (nrecs ? nrecs : 1) * sizeof *out->recs;
  out->recs = mprof__meta_alloc(out->cap_bytes);
  if (out->recs == NULL) {
    err = ENOMEM;
    goto out;
  }
  size_t k = 0;
  for (size_t i = 0; i < nb; i++) {
    const mprof_mem_cycle_t* a = &bases[i].rec;
    mprof_heap_rec_t* base = &out->recs[k++];
    fill_common(base, &bases[i]);
    base->alloc_objects = round_pos(a->walloc_objs);
    base->alloc_bytes = round_pos(a->walloc_bytes);
    if (a->allocs == a->frees) continue; /* nothing in use (and no walked block either) */
    double tot_objs = a->walloc_objs - a->wfree_objs;
    double tot_bytes = a->walloc_bytes - a->wfree_bytes;
    if (w.head == NULL || w.head[i] == 0) {
      base->inuse_objects = round_pos(tot_objs);
      base->inuse_bytes = round_pos(tot_bytes);
      continue;
    }
    /* The classes in ascending order, then the rest on the base sample; each part is the
     * difference of the rounded running sums, so the parts add up to the rounded total. */
    const part_t* by_class[NCLASSES] = {NULL};
    uint64_t raw = 0;
    unsigned last = 0;
    for (uint32_t j = w.head[i]; j != 0; j = w.parts[j - 1].next) {
      const part_t* p = &w.parts[j - 1];
      by_class[p->klass] = p;
      raw += p->raw;
      if (p->klass > last) last = p->klass;
    }
    /* When the walk saw every block in use, the last class takes the total exactly and the
     * base sample keeps no in-use figure. */
    int64_t tot_o = round_pos(tot_objs), tot_b = round_pos(tot_bytes);
    bool all_walked = raw >= a->allocs - a->frees;
    double cum_objs = 0, cum_bytes = 0;
    int64_t prev_objs = 0, prev_bytes = 0;
    for (unsigned c = 0; c < NCLASSES; c++) {
      const part_t* p = by_class[c];
      if (p == NULL) continue;
      cum_objs += p->wobjs;
      cum_bytes += p->wbytes;
      mprof_heap_rec_t* r = &out->recs[k++];
      fill_common(r, &bases[i]);
      r->labels |= MPROF_REC_AGE;
      r->age_epochs = class_edge(c);
      if (bound_ms[c] >= 0) {
        r->labels |= MPROF_REC_AGE_TIME;
        r->age_min_ms = bound_ms[c];
      }
      int64_t ro = round_pos(cum_objs), rb = round_pos(cum_bytes);
      if (all_walked && c == last) {
        ro = tot_o;
        rb = tot_b;
      }
      r->inuse_objects = ro - prev_objs;
      r->inuse_bytes = rb - prev_bytes;
      prev_objs = ro;
      prev_bytes = rb;
    }
    base->inuse_objects = tot_o > prev_objs ? tot_o - prev_objs : 0;
    base->inuse_bytes = tot_b > prev_bytes ? tot_b - prev_bytes : 0;
  }
  out->nrecs = k;

out:
  if (w.head != NULL) mprof__meta_free(w.head, head_bytes);
  if (w.parts != NULL) mprof__meta_free(w.parts, w.pcap * sizeof *w.parts);
  mprof__meta_free(bases, bases_cap * sizeof *bases);
  if (err != 0) mprof__snap_free(out);
  return err;
}

void mprof__snap_free(mprof_snap_t* s) {
  if (s->recs != NULL) mprof__meta_free(s->recs, s->cap_bytes);
  memset(s, 0, sizeof *s);
}
