/* Concurrency stress of the profiling core, with no allocator: every "allocation" is sampled
 * (lg_prof_sample:0) and goes through the same calls a glue makes (mprof__sample_decide, then
 * on_alloc / on_free with the sample record kept by the caller), from distinct noinline call
 * sites, on more threads than cores. Threads start and exit in waves, blocks are freed by other
 * threads (also after their allocating thread has exited), "reallocs" move blocks between sites,
 * while other threads advance epochs, flush and dump in a loop and allocating threads trigger
 * automatic epochs, interval dumps and high-water dumps.
 *
 * Checked:
 *   - during the run, no published record is ever negative (frees > allocs, in count, bytes or
 *     weight), and every bucket's stack contains exactly one of the known call sites;
 *   - at the end, after mprof__cycle_publish_all, every site's published counts equal an exact
 *     shadow count kept by the test (allocations, frees, live objects, live bytes): nothing lost,
 *     nothing counted twice, nothing attributed to another site; the statistics agree;
 *   - every dump returned 0.
 *
 * Fake pointers are used: the core never dereferences them. Runs under ASan+UBSan and TSan.
 * argv[1] scales the amount of work (default 1.0).
 *
 * Under TSan on architectures where stacks are taken with libunwind (all but x86-64) the worker
 * threads do not exit: they park until the process ends. libunwind 1.6.2 frees its per-thread
 * trace cache in the last round of pthread-key destructors, after TSan has already finalised the
 * thread, and the lock it takes there then crashes inside TSan's interceptor (a libunwind/TSan
 * incompatibility, not a profiler bug; see docs/RELIABILITY.md). On x86-64 the core's own walker
 * keeps no per-thread state, and the workers exit under TSan too. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mprof.h"
#include "mprof_blockmap.h"
#include "mprof_bucket.h"
#include "mprof_conf.h"
#include "mprof_core.h"
#include "mprof_cycle.h"
#include "mprof_hooks.h"
#include "mprof_snap.h"

#if defined(__SANITIZE_THREAD__) && !defined(__x86_64__)
#define PARK_WORKERS 1
#else
#define PARK_WORKERS 0
#endif

#define NSITES 6
#define WAVES 6
#define THREADS_PER_WAVE 6 /* more than the 2 cores of CI, plus 2 dumpers */
#define MAX_LIVE 96        /* live blocks a worker holds at most */
#define MAILBOX 512        /* blocks handed between threads */

typedef struct block_s {
  mprof_sample_t rec; /* what the allocator keeps with a sampled block */
  uintptr_t ptr;
  uint64_t size;
  int site;
} block_t;

typedef struct shadow_s {
  _Atomic uintptr_t ra; /* return address into the site function: identifies its frame */
  _Atomic uint64_t allocs, frees, alloc_bytes, free_bytes;
} shadow_t;

static const mprof_callbacks_t* cb;
static shadow_t shadow[NSITES];
static _Atomic uintptr_t next_ptr = 0x100000;
static long ops_per_thread = 150000;
static char dir[64];

static _Atomic int stop_dumpers;
static _Atomic uint64_t violations, dumps_done, dump_failures, epochs_done, checks_done;
static pthread_mutex_t msg_mu = PTHREAD_MUTEX_INITIALIZER;
static char first_msg[256];

__attribute__((format(printf, 1, 2))) static void violation(const char* fmt, ...) {
  if (atomic_fetch_add(&violations, 1) != 0) return;
  pthread_mutex_lock(&msg_mu);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(first_msg, sizeof first_msg, fmt, ap);
  va_end(ap);
  pthread_mutex_unlock(&msg_mu);
}

static uint64_t rnd(uint64_t* s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

/* --- The "allocator": one noinline recorder called from one place in each site function ---- */

__attribute__((noinline)) static void record_alloc(block_t* b) {
  shadow_t* sh = &shadow[b->site];
  atomic_store_explicit(&sh->ra, (uintptr_t)__builtin_return_address(0), memory_order_release);
  if (!mprof__sample_decide(b->size))
    violation("an allocation was not sampled at lg_prof_sample:0");
  b->ptr = atomic_fetch_add(&next_ptr, 16);
  cb->on_alloc(&b->rec, (void*)b->ptr, b->size);
  if (b->rec.bucket == NULL) {
    violation("on_alloc recorded no bucket (sample dropped)");
    return;
  }
  /* As the mimalloc glue does: the record goes into the block map after on_alloc, and leaves it
   * before on_free, so that dumps walk it for the age split while blocks come and go. */
  if (mprof__blockmap_insert((void*)b->ptr, &b->rec) != 0) violation("block map insert failed");
  atomic_fetch_add(&sh->allocs, 1);
  atomic_fetch_add(&sh->alloc_bytes, b->size);
}

static void record_free(block_t* b) {
  if (b->rec.bucket == NULL) return;
  mprof_sample_t rec;
  if (!mprof__blockmap_remove((void*)b->ptr, &rec) || rec.bucket != b->rec.bucket)
    violation("block map lost a block");
  cb->on_free(&b->rec, (void*)b->ptr);
  atomic_fetch_add(&shadow[b->site].frees, 1);
  atomic_fetch_add(&shadow[b->site].free_bytes, b->size);
}

/* Distinct call sites. The asm statement after the call keeps it from becoming a tail call, so
 * the site's own frame is on the stack. */
#define SITE(i)                                                                                    \
  __attribute__((noinline, noclone)) static void site##i(block_t* b) {                             \
    b->site = i;                                                                                   \
    record_alloc(b);                                                                               \
    __asm__ volatile("" ::: "memory");                                                             \
  }
SITE(0)
SITE(1)
SITE(2)
SITE(3)
SITE(4)
SITE(5)
static void (*const sites[NSITES])(block_t*) = {site0, site1, site2, site3, site4, site5};

/* --- Blocks handed between threads ------------------------------------------------------- */

static pthread_mutex_t mail_mu = PTHREAD_MUTEX_INITIALIZER;
static block_t mailbox[MAILBOX];
static int nmail;

static bool mail_put(const block_t* b) {
  pthread_mutex_lock(&mail_mu);
  bool ok = nmail < MAILBOX;
  if (ok) mailbox[nmail++] = *b;
  pthread_mutex_unlock(&mail_mu);
  return ok;
}

static bool mail_take(block_t* b) {
  pthread_mutex_lock(&mail_mu);
  bool ok = nmail > 0;
  if (ok) *b = mailbox[--nmail];
  pthread_mutex_unlock(&mail_mu);
  return ok;
}

/* --- Workers -------------------------------------------------------------------------------- */

static pthread_mutex_t park_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t park_cv = PTHREAD_COND_INITIALIZER;
static int parked;

/* Under TSan: tell the main thread this worker is done, then wait forever (see the top). */
static void park(void) {
  pthread_mutex_lock(&park_mu);
  parked++;
  pthread_cond_broadcast(&park_cv);
  for (;;)
    pthread_cond_wait(&park_cv, &park_mu);
}

static void wait_parked(int n) {
  pthread_mutex_lock(&park_mu);
  while (parked < n)
    pthread_cond_wait(&park_cv, &park_mu);
  pthread_mutex_unlock(&park_mu);
}

static void* worker(void* arg) {
  uint64_t s = (uintptr_t)arg * 0x9e3779b97f4a7c15ull + 12345;
  block_t live[MAX_LIVE];
  int n = 0;
  for (long op = 0; op < ops_per_thread; op++) {
    uint64_t r = rnd(&s);
    unsigned what = (unsigned)(r % 8);
    if (n == 0 || (what < 4 && n < MAX_LIVE)) { /* malloc */
      block_t* b = &live[n++];
      memset(b, 0, sizeof *b);
      b->size = 1 + (r >> 16) % (what == 0 ? 65536 : 512);
      sites[(r >> 40) % NSITES](b);
    } else if (what == 4) { /* realloc: new block at a (maybe) other site, then free the old */
      int k = (int)((r >> 8) % (uint64_t)n);
      block_t nb;
      memset(&nb, 0, sizeof nb);
      nb.size = 1 + (r >> 24) % 4096;
      sites[(r >> 44) % NSITES](&nb);
      record_free(&live[k]);
      live[k] = nb;
    } else if (what == 5) { /* hand a block to another thread */
      int k = (int)((r >> 8) % (uint64_t)n);
      if (mail_put(&live[k])) live[k] = live[--n];
    } else if (what == 6) { /* free a block another thread allocated */
      block_t b;
      if (mail_take(&b)) record_free(&b);
    } else { /* free */
      int k = (int)((r >> 8) % (uint64_t)n);
      record_free(&live[k]);
      live[k] = live[--n];
    }
  }
  /* Leave what is still live for threads of later waves (their allocating thread is gone). */
  for (int k = 0; k < n; k++)
    if (!mail_put(&live[k])) record_free(&live[k]);
  if (PARK_WORKERS) park();
  return NULL;
}

static bool is_site_ra(uintptr_t pc, int* which) {
  for (int i = 0; i < NSITES; i++) {
    uintptr_t ra = atomic_load_explicit(&shadow[i].ra, memory_order_acquire);
    if (ra != 0 && pc == ra) {
      *which = i;
      return true;
    }
  }
  return false;
}

/* The site whose frame is in b's stack; -1 if none, -2 if more than one. */
static int site_of_stack(const uintptr_t* stk, uint32_t n) {
  int found = -1;
  for (uint32_t i = 0; i < n; i++) {
    int w;
    if (is_site_ra(stk[i], &w)) found = found == -1 ? w : -2;
  }
  return found;
}

static int site_of(const mprof_bucket_t* b) {
  return site_of_stack(b->stk, b->nstk);
}

/* Checks every published record: never negative, always one known site. */
static void check_published(void) {
  uint64_t read_cycle;
  assert_int_equal(mprof__cycle_read_begin(false, true, &read_cycle), 0);
  for (mprof_bucket_t* b = mprof__bucket_list(MPROF_BUCKET_HEAP); b != NULL; b = b->allnext) {
    const mprof_mem_cycle_t* a = &b->rec.mem.active;
    if (a->frees > a->allocs || a->free_bytes > a->alloc_bytes ||
        a->wfree_objs > a->walloc_objs + 1e-6 || a->wfree_bytes > a->walloc_bytes + 1e-6)
      violation("negative in-use in a published record: allocs %llu frees %llu bytes %llu/%llu",
                (unsigned long long)a->allocs, (unsigned long long)a->frees,
                (unsigned long long)a->alloc_bytes, (unsigned long long)a->free_bytes);
    int s = site_of(b);
    if (s < 0) violation("a bucket with %s known call site", s == -1 ? "no" : "more than one");
  }
  mprof__cycle_read_end();
  atomic_fetch_add(&checks_done, 1);
}

static void* dumper(void* arg) {
  uintptr_t id = (uintptr_t)arg;
  char path[128];
  snprintf(path, sizeof path, "%s/manual%u.pb.gz", dir, (unsigned)id);
  for (unsigned i = 0; !atomic_load(&stop_dumpers); i++) {
    uint64_t e = 0;
    size_t len = sizeof e;
    if (i % 2 == 0) {
      uint64_t one = 1;
      int err = mprof_ctl("epoch", &e, &len, &one, sizeof one);
      if (err != 0) violation("epoch ctl failed: %d", err);
      atomic_fetch_add(&epochs_done, 1);
    } else {
      mprof__cycle_try_epoch();
    }
    check_published();
    if (i % 16 == id) {
      const char* p = path;
      int err = mprof_ctl("prof.dump", NULL, NULL, &p, sizeof p);
      atomic_fetch_add(err ? &dump_failures : &dumps_done, 1);
      if (err) violation("prof.dump failed: %s", strerror(err));
    }
  }
  return NULL;
}

static void remove_dir(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

static int setup(void** state) {
  (void)state;
  snprintf(dir, sizeof dir, "/tmp/mprof-stress-core.XXXXXX");
  if (mkdtemp(dir) == NULL) return -1;
  mprof_opts_t o;
  mprof__opts_default(&o);
  o.lg_prof_sample = 0;
  o.lg_prof_epoch = 16;    /* allocating threads start epochs every 64 KiB */
  o.lg_prof_interval = 23; /* and interval dumps every 8 MiB */
  o.prof_gdump = true;     /* and high-water dumps */
  o.prof_peak = true;      /* and peak refreshes; dumps split by age (the default) */
  o.prof_thread_labels = true;
  snprintf(o.prof_prefix, sizeof o.prof_prefix, "%s/auto", dir);
  cb = mprof__init_with_opts(&o);
  return cb == NULL ? -1 : 0;
}

static int teardown(void** state) {
  (void)state;
  remove_dir();
  return 0;
}

static void test_published_profile_equals_the_shadow_under_concurrency(void** state) {
  (void)state;
  pthread_t d[2];
  for (uintptr_t i = 0; i < 2; i++)
    assert_int_equal(pthread_create(&d[i], NULL, dumper, (void*)i), 0);
  for (uintptr_t wave = 0; wave < WAVES; wave++) {
    pthread_t w[THREADS_PER_WAVE];
    for (uintptr_t i = 0; i < THREADS_PER_WAVE; i++)
      assert_int_equal(
          pthread_create(&w[i], NULL, worker, (void*)(wave * THREADS_PER_WAVE + i + 1)), 0);
    if (PARK_WORKERS) {
      wait_parked((int)((wave + 1) * THREADS_PER_WAVE));
      for (int i = 0; i < THREADS_PER_WAVE; i++)
        pthread_detach(w[i]);
    } else {
      for (int i = 0; i < THREADS_PER_WAVE; i++)
        pthread_join(w[i], NULL);
    }
  }
  atomic_store(&stop_dumpers, 1);
  for (int i = 0; i < 2; i++)
    pthread_join(d[i], NULL);

  if (atomic_load(&violations) != 0)
    fail_msg("%llu violations, first: %s", (unsigned long long)atomic_load(&violations), first_msg);
  assert_true(atomic_load(&epochs_done) > 0);
  assert_true(atomic_load(&dumps_done) > 0);
  assert_int_equal(atomic_load(&dump_failures), 0);

  /* Everything counted before this point is published now. */
  mprof__cycle_publish_all();
  check_published();
  assert_int_equal(atomic_load(&violations), 0);

  uint64_t allocs[NSITES] = {0}, frees[NSITES] = {0}, abytes[NSITES] = {0}, fbytes[NSITES] = {0};
  double wobj[NSITES] = {0};
  uint64_t read_cycle;
  assert_int_equal(mprof__cycle_read_begin(false, true, &read_cycle), 0);
  for (mprof_bucket_t* b = mprof__bucket_list(MPROF_BUCKET_HEAP); b != NULL; b = b->allnext) {
    int s = site_of(b);
    if (s < 0) continue; /* reported by check_published */
    const mprof_mem_cycle_t* a = &b->rec.mem.active;
    allocs[s] += a->allocs;
    frees[s] += a->frees;
    abytes[s] += a->alloc_bytes;
    fbytes[s] += a->free_bytes;
    wobj[s] += a->walloc_objs - a->wfree_objs;
  }
  mprof__cycle_read_end();

  /* Split by age once nothing moves: every block in use is in the block map, so all in-use
   * figures are on age-labelled samples, and per site they add up to the live bytes. */
  int64_t aged[NSITES] = {0};
  mprof__cycle_dump_lock();
  mprof__cycle_publish_all();
  mprof_snap_t snap;
  assert_int_equal(mprof__snap_heap(MPROF_SNAP_AGES, true, 0, &snap), 0);
  mprof__cycle_dump_unlock();
  for (size_t i = 0; i < snap.nrecs; i++) {
    const mprof_heap_rec_t* r = &snap.recs[i];
    assert_true(r->inuse_bytes >= 0 && r->inuse_objects >= 0);
    assert_true(r->labels & MPROF_REC_THREAD);
    if (!(r->labels & MPROF_REC_AGE)) {
      assert_int_equal(r->inuse_bytes, 0);
      continue;
    }
    int site = site_of_stack(r->pcs, r->npcs);
    if (site >= 0) aged[site] += r->inuse_bytes;
  }
  mprof__snap_free(&snap);
  for (int i = 0; i < NSITES; i++)
    assert_int_equal(aged[i],
                     atomic_load(&shadow[i].alloc_bytes) - atomic_load(&shadow[i].free_bytes));

  uint64_t total_allocs = 0, total_frees = 0, live_bytes = 0;
  for (int s = 0; s < NSITES; s++) {
    uint64_t sa = atomic_load(&shadow[s].allocs), sf = atomic_load(&shadow[s].frees);
    uint64_t sab = atomic_load(&shadow[s].alloc_bytes), sfb = atomic_load(&shadow[s].free_bytes);
    printf("site%d: allocs %llu/%llu frees %llu/%llu live %llu/%llu (published/shadow)\n", s,
           (unsigned long long)allocs[s], (unsigned long long)sa, (unsigned long long)frees[s],
           (unsigned long long)sf, (unsigned long long)(allocs[s] - frees[s]),
           (unsigned long long)(sa - sf));
    assert_true(sa > 0);
    assert_int_equal(allocs[s], sa);
    assert_int_equal(frees[s], sf);
    assert_int_equal(abytes[s], sab);
    assert_int_equal(fbytes[s], sfb);
    assert_true(wobj[s] > (double)(sa - sf) - 0.5 && wobj[s] < (double)(sa - sf) + 0.5);
    total_allocs += sa;
    total_frees += sf;
    live_bytes += sab - sfb;
  }
  mprof_stats_t st;
  mprof__stats_read(&st);
  assert_int_equal(st.samples, total_allocs);
  assert_int_equal(st.frees, total_frees);
  assert_int_equal(st.dropped_samples, 0);
  assert_int_equal(st.sampled_bytes_in_use, live_bytes);
  printf("%llu samples, %llu epochs by ctl, %llu dumps by ctl, %llu dumps in all, %llu checks\n",
         (unsigned long long)total_allocs, (unsigned long long)atomic_load(&epochs_done),
         (unsigned long long)atomic_load(&dumps_done), (unsigned long long)st.dumps,
         (unsigned long long)atomic_load(&checks_done));
  assert_int_equal(st.dump_errors, 0);
}

static void test_freeing_the_survivors_publishes_zero_in_use(void** state) {
  (void)state;
  block_t b;
  while (mail_take(&b))
    record_free(&b);
  mprof__cycle_publish_all();
  uint64_t read_cycle;
  assert_int_equal(mprof__cycle_read_begin(false, true, &read_cycle), 0);
  for (mprof_bucket_t* bk = mprof__bucket_list(MPROF_BUCKET_HEAP); bk != NULL; bk = bk->allnext) {
    const mprof_mem_cycle_t* a = &bk->rec.mem.active;
    assert_int_equal(a->allocs, a->frees);
    assert_int_equal(a->alloc_bytes, a->free_bytes);
  }
  mprof__cycle_read_end();
  mprof_stats_t st;
  mprof__stats_read(&st);
  assert_int_equal(st.samples, st.frees);
  assert_int_equal(st.sampled_bytes_in_use, 0);
  const char* p = "/dev/null";
  assert_int_equal(mprof_ctl("prof.dump", NULL, NULL, &p, sizeof p), 0);
}

int main(int argc, char** argv) {
  if (argc > 1) {
    double scale = strtod(argv[1], NULL);
    if (scale > 0) ops_per_thread = (long)(ops_per_thread * scale);
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_published_profile_equals_the_shadow_under_concurrency),
      cmocka_unit_test(test_freeing_the_survivors_publishes_zero_in_use),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
