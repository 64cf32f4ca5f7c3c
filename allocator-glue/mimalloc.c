/* The mimalloc glue: libmprof.so is mimalloc 2.0.9, compiled from its source with the profiler
 * bound to mimalloc's own tool hooks (mimalloc_hooks.h), plus this file. This file is that
 * compilation unit: it includes the hook header, then mimalloc's src/static.c (all of mimalloc),
 * then adds what the glue needs.
 *
 * What mimalloc provides: the mi_* API, per-thread heaps in which sampled blocks are ordinary
 * blocks of the allocating thread, a hook at the end of every allocation and at every free, and
 * a free fast path that tests one page-flags byte.
 *
 * What this file adds:
 *   - the slow paths of the hooks: the sampling decision (the core's countdown and
 *     mprof__sample_decide), recording a sampled block (the core's on_alloc, the record kept in
 *     the core's block map since mimalloc 2.0.9 has no room for per-block data), marking its page
 *     so that its free reaches the generic path, and recording the free (on_free);
 *   - the malloc family with POSIX and glibc behaviour: malloc and free are aliases of mi_malloc
 *     and mi_free (no extra instruction); calloc, realloc and the aligned functions check their
 *     arguments as glibc does and set errno (mimalloc's own overrides, left out of this build,
 *     differ: realloc(p, 0) returns a block, calloc overflow leaves errno alone, some alignments
 *     come back misaligned). C++ operator new/delete stay libstdc++'s, which call malloc and free
 *     and throw std::bad_alloc (mimalloc's, compiled as C, abort instead);
 *   - what every glue adds (glue.h): exit(), pipe2() where libunwind is used, the code range;
 *   - start-up: the core is initialised by the first allocation that reaches the slow path, or
 *     by the constructor if that comes first (the constructor finishes it), with the library's
 *     own code range so that the allocator's and profiler's frames are dropped from the leaf end
 *     of stacks.
 * There is no thread, lock or memory reservation of the glue's own. */
#include "mimalloc_hooks.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpedantic"
#pragma GCC diagnostic ignored "-Wcast-qual"
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#pragma GCC diagnostic ignored "-Wmissing-prototypes"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
#pragma GCC diagnostic ignored "-Wundef"
/* mimalloc's mi_heap_destroy under another name: the exported one (below) ends the heap's sampled
 * blocks first. */
#define mi_heap_destroy mprof__mi_heap_destroy_pages
#include "static.c" /* mimalloc 2.0.9: src/static.c of the source tree */
#undef mi_heap_destroy
#pragma GCC diagnostic pop

#include "glue.h"
#include "mprof_blockmap.h"
#include "mprof_hooks.h"
#include "mprof_thread.h"

#include <errno.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define MPROF_PUBLIC __attribute__((visibility("default")))

/* Written once at start-up (NULL while profiling is off), read-only afterwards. */
static const mprof_callbacks_t* cb;

/* Start-up: by the first allocation that reaches the slow path (glue_start_early), or by the
 * constructor, whichever comes first; the constructor finishes it. */
enum { GLUE_NONE = 0, GLUE_STARTING, GLUE_STARTED };
static _Atomic int glue_state;
static void glue_start_early(void);

/* The thread's latest sampled block and the countdown it had before that allocation: what the
 * aligned fallback needs to take the sample back when it re-reports the block (see
 * mimalloc_hooks.h). Cleared by the next sample and by the block's free. */
static __thread struct {
  void* block;
  uint64_t countdown_before;
} last_sample __attribute__((tls_model("initial-exec")));

/* A sampled block on another thread's page that an in-place realloc just ended on this thread:
 * its page mark was not lowered (only the owner may), so the realloc's new block at the same
 * address may take it over. Set and cleared by each in-place realloc, cleared by each sample. */
static __thread void* foreign_slot __attribute__((tls_model("initial-exec")));

/* ---------------------------------------------------------------------------------------------
 * Page marks: bits 2..7 of mi_page_t.flags.full_aligned count the page's live sampled blocks.
 * Only the page's owner thread writes them (mimalloc writes its own two bits the same way).
 * ------------------------------------------------------------------------------------------- */
static inline unsigned page_marks(const mi_page_t* page) {
  return (page->flags.full_aligned & MPROF_MI_SAMPLED_MASK) >> MPROF_MI_SAMPLED_SHIFT;
}

static inline void page_set_marks(mi_page_t* page, unsigned n) {
  uint8_t f = page->flags.full_aligned & (uint8_t)~MPROF_MI_SAMPLED_MASK;
  page->flags.full_aligned = (uint8_t)(f | (n << MPROF_MI_SAMPLED_SHIFT));
}

static inline bool page_is_local(const void* p) {
  return _mi_ptr_segment(p)->thread_id == _mi_thread_id();
}

/* ---------------------------------------------------------------------------------------------
 * A filter in front of the block map. A marked page's frees are mostly of unsampled blocks (a
 * sampled block shares its page with many others), and each would take a block-map shard lock
 * to find nothing. So every live sampled block also counts in one of FILTER_SIZE counters,
 * chosen by its address: a free whose counter is zero is not of a sampled block, known with one
 * load. Counters rise before a block enters the map and fall after it leaves, so a zero never
 * hides a live block. The array is in .bss: untouched until the first sample, and 2 bytes per
 * counter resident only where touched.
 * ------------------------------------------------------------------------------------------- */
#define FILTER_SIZE (1u << 16)
static _Atomic uint16_t filter[FILTER_SIZE];

static inline _Atomic uint16_t* filter_slot(const void* p) {
  uint64_t h = ((uint64_t)(uintptr_t)p >> 3) * 0x9e3779b97f4a7c15ull;
  return &filter[h >> 48];
}

static inline bool maybe_sampled(const void* p) {
  return atomic_load_explicit(filter_slot(p), memory_order_acquire) != 0;
}

/* Removes p from the block map if it is there (a sampled block). */
static bool take_record(const void* p, mprof_sample_t* d) {
  if (!maybe_sampled(p) || !mprof__blockmap_remove(p, d)) return false;
  atomic_fetch_sub_explicit(filter_slot(p), 1, memory_order_release);
  return true;
}

/* ---------------------------------------------------------------------------------------------
 * Hook slow paths
 * ------------------------------------------------------------------------------------------- */
static void record(void* p, size_t n, uint64_t before) {
  mi_page_t* page = _mi_ptr_page(p);
  bool local = page_is_local(p);
  bool inherit = !local && p == foreign_slot;
  foreign_slot = NULL;
  if (!local && !inherit) {
    /* An in-place realloc of an unsampled block that another thread's page holds: only that
     * thread may write the page's mark, and an unmarked page's frees never reach the hook. */
    mprof__sample_dropped();
    return;
  }
  mprof_sample_t d;
  cb->on_alloc(&d, p, n);
  if (d.bucket == NULL) return; /* not recorded (counted as dropped by the core) */
  atomic_fetch_add_explicit(filter_slot(p), 1, memory_order_relaxed);
  if (mprof__blockmap_insert(p, &d) != 0) {
    atomic_fetch_sub_explicit(filter_slot(p), 1, memory_order_relaxed);
    mprof__sample_cancel(&d);
    mprof__sample_dropped();
    return;
  }
  if (!inherit) {
    unsigned m = page_marks(page);
    if (m < (MPROF_MI_SAMPLED_MASK >> MPROF_MI_SAMPLED_SHIFT)) page_set_marks(page, m + 1);
  }
  last_sample.block = p;
  last_sample.countdown_before = before;
}

/* mi_track_malloc, when the countdown borrowed: this allocation crossed a sample point. */
__attribute__((noinline, cold)) void* mprof__mi_malloc_slow(void* p, size_t n) {
  mprof_thread_t* t = &mprof__thread;
  uint64_t before = t->countdown + n; /* the countdown before the fast path's subtraction */
  if (p == NULL) {
    t->countdown = before; /* nothing was allocated */
    return p;
  }
  int saved = errno;
  if (__builtin_expect(atomic_load_explicit(&glue_state, memory_order_acquire) == GLUE_NONE, 0) &&
      t->busy == 0)
    glue_start_early();
  last_sample.block = NULL;
  if (mprof__sample_decide(n) && cb != NULL) record(p, n, before);
  errno = saved;
  return p;
}

static void unmark(mi_page_t* page) {
  unsigned m = page_marks(page);
  if (m > 0 && m < (MPROF_MI_SAMPLED_MASK >> MPROF_MI_SAMPLED_SHIFT)) page_set_marks(page, m - 1);
}

/* The free of p on a marked page: true if p was a sampled block. */
static bool free_on_marked_page(void* p, mi_page_t* page, bool is_local) {
  mprof_sample_t d;
  bool sampled = take_record(p, &d);
  if (sampled) {
    int saved = errno;
    if (p == last_sample.block) last_sample.block = NULL;
    cb->on_free(&d, p);
    if (is_local) unmark(page);
    errno = saved;
  }
  /* The page's last block: whatever the marks say (frees from other threads cannot lower
   * them), nothing sampled is left on it. */
  if (is_local && page->used <= 1) page_set_marks(page, 0);
  return sampled;
}

/* mi_track_free on a marked page: records the free, then releases the block as mimalloc would
 * have right after the hook (see mimalloc_hooks.h). */
__attribute__((noinline, cold)) void mprof__mi_free_marked(void* p, void* page, bool is_local,
                                                           void* block) {
  free_on_marked_page(p, page, is_local);
  _mi_free_block(page, is_local, block);
}

/* Gives back what the report of `p` (n bytes) took: its sample if it was the thread's latest
 * and is still live (with the countdown it had before), else its bytes to the countdown. */
static void unreport(void* p, size_t n) {
  mprof_thread_t* t = &mprof__thread;
  mprof_sample_t d;
  if (p == last_sample.block && take_record(p, &d)) {
    last_sample.block = NULL;
    mprof__sample_cancel(&d);
    unmark(_mi_ptr_page(p));
    t->countdown = last_sample.countdown_before;
    return;
  }
  if (t->countdown <= UINT64_MAX - n) t->countdown += n;
}

/* mi_track_free_size: `aligned` is the aligned fallback's aligned_p, or NULL in a realloc. */
void mprof__mi_free_size(void* p, size_t size, const void* aligned) {
  if (cb == NULL || p == NULL) return;
  int saved = errno;
  if (aligned != NULL) {
    unreport(p, size); /* the aligned block is reported next, by mi_track_malloc */
  } else {
    /* An in-place realloc: the old block ends here; the new size is reported next. (The only
     * way to a sample on another thread's page, so foreign_slot is always set here first.) */
    foreign_slot = NULL;
    mi_page_t* page = _mi_ptr_page(p);
    if ((page->flags.full_aligned & MPROF_MI_SAMPLED_MASK) != 0) {
      bool local = page_is_local(p);
      if (free_on_marked_page(p, page, local) && !local) foreign_slot = p;
    }
  }
  errno = saved;
}

/* mi_track_resize: the aligned fallback's over-allocation was aligned already; its real size is
 * newsize. Decide again as for an allocation of newsize alone. */
void mprof__mi_resize(void* p, size_t oldsize, size_t newsize) {
  if (cb == NULL || p == NULL) return;
  int saved = errno;
  unreport(p, oldsize);
  if (mprof__thread_countdown_expired(newsize)) mprof__mi_malloc_slow(p, newsize);
  errno = saved;
}

/* ---------------------------------------------------------------------------------------------
 * Heaps destroyed whole. mi_heap_destroy releases a heap's pages without freeing their blocks one
 * by one, so mi_track_free never sees them: its sampled blocks are ended here first, or they would
 * stay "in use" for good. Only marked pages can hold one (a page's mark counts at least its live
 * sampled blocks); on them every block is looked up in the filter (one load each), and on a page
 * with aligned blocks, whose sampled address may lie inside the block, every 16 bytes of it
 * (mimalloc aligns blocks to 8 bytes without that path, so an interior address is a multiple of an
 * alignment of at least 16). mi_heap_delete needs nothing: it moves the pages, marks and all, to
 * the thread's backing heap, and their blocks stay live at the same addresses.
 * ------------------------------------------------------------------------------------------- */
static void end_if_sampled(void* p) {
  mprof_sample_t d;
  if (!take_record(p, &d)) return;
  if (p == last_sample.block) last_sample.block = NULL;
  cb->on_free(&d, p);
}

static bool end_page_samples(mi_heap_t* heap, mi_page_queue_t* pq, mi_page_t* page, void* a1,
                             void* a2) {
  (void)heap, (void)pq, (void)a1, (void)a2;
  if (page_marks(page) == 0) return true;
  size_t psize;
  uint8_t* start = _mi_page_start(_mi_page_segment(page), page, &psize);
  size_t bsize = mi_page_block_size(page);
  bool aligned = mi_page_has_aligned(page);
  for (size_t i = 0; i < page->capacity; i++) {
    uint8_t* b = start + i * bsize;
    end_if_sampled(b);
    if (!aligned) continue;
    for (uintptr_t q = ((uintptr_t)b + 16) & ~(uintptr_t)15; q < (uintptr_t)b + bsize; q += 16)
      end_if_sampled((void*)q);
  }
  page_set_marks(page, 0);
  return true;
}

void mi_heap_destroy(mi_heap_t* heap);
MPROF_PUBLIC void mi_heap_destroy(mi_heap_t* heap) {
  /* As mimalloc does: a heap that may hold reclaimed pages is deleted instead (blocks kept). */
  if (cb != NULL && heap != NULL && mi_heap_is_initialized(heap) && heap->no_reclaim) {
    int saved = errno;
    mi_heap_visit_pages(heap, end_page_samples, NULL, NULL);
    errno = saved;
  }
  mprof__mi_heap_destroy_pages(heap);
}

/* ---------------------------------------------------------------------------------------------
 * errno: mimalloc 2.0.9 reports a failed allocation to its error callback (ENOMEM, or EOVERFLOW
 * for impossible sizes) but does not set errno, which POSIX malloc must.
 * ------------------------------------------------------------------------------------------- */
static void on_mi_error(int err, void* arg) {
  (void)arg;
  if (err == ENOMEM || err == EOVERFLOW) errno = ENOMEM;
}

/* ---------------------------------------------------------------------------------------------
 * The malloc family
 * ------------------------------------------------------------------------------------------- */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wattributes" /* aliases of functions with more attributes */
#define MPROF_ALIAS(fn) __attribute__((alias(#fn), used, visibility("default"), copy(fn)))
MPROF_PUBLIC void* malloc(size_t n) MPROF_ALIAS(mi_malloc);
MPROF_PUBLIC void free(void* p) MPROF_ALIAS(mi_free);
MPROF_PUBLIC void cfree(void* p) MPROF_ALIAS(mi_free);
MPROF_PUBLIC void* __libc_malloc(size_t n) MPROF_ALIAS(mi_malloc);
MPROF_PUBLIC void __libc_free(void* p) MPROF_ALIAS(mi_free);
#pragma GCC diagnostic pop

MPROF_PUBLIC void* calloc(size_t count, size_t size) {
  size_t n;
  if (__builtin_mul_overflow(count, size, &n)) {
    errno = ENOMEM;
    return NULL;
  }
  return mi_zalloc(n);
}

MPROF_PUBLIC void* realloc(void* p, size_t n) {
  if (p == NULL) return mi_malloc(n);
  if (n == 0) { /* glibc: frees p and returns NULL */
    mi_free(p);
    return NULL;
  }
  return mi_realloc(p, n); /* NULL leaves p untouched */
}

MPROF_PUBLIC void* reallocarray(void* p, size_t count, size_t size) {
  size_t n;
  if (__builtin_mul_overflow(count, size, &n)) {
    errno = ENOMEM;
    return NULL;
  }
  return realloc(p, n);
}

static inline bool is_pow2(size_t x) {
  return x != 0 && (x & (x - 1)) == 0;
}

/* mimalloc 2.0.9 returns misaligned blocks from mi_malloc_aligned when the size is a multiple of
 * an alignment of 256 bytes or more (it assumes such blocks are naturally aligned, which its
 * page layout does not guarantee). One more byte takes it down its over-allocating path, which
 * is correct. */
static inline size_t aligned_size(size_t n, size_t align) {
  return (align > 16 && n != 0 && (n & (align - 1)) == 0) ? n + 1 : n;
}

static void* aligned(size_t align, size_t n) {
  /* mimalloc aligns blocks of more than 8 bytes to 16, and those of 8 or less to 8. */
  if (align <= sizeof(void*) || (align <= 16 && n > 8)) return mi_malloc(n);
  if (n > PTRDIFF_MAX) {
    errno = ENOMEM;
    return NULL;
  }
  /* The aligned paths report an over-allocation before the block (see mimalloc_hooks.h), and
   * aligned_size may add a byte: here the sampling decision is taken once, for the n bytes the
   * caller asked for, with the hooks inside seeing no sample point. */
  mprof_thread_t* t = &mprof__thread;
  uint64_t countdown = t->countdown;
  t->countdown = UINT64_MAX;
  void* p = mi_malloc_aligned(aligned_size(n, align), align);
  t->countdown = countdown;
  if (p == NULL) {
    errno = ENOMEM;
    return NULL;
  }
  if (mprof__thread_countdown_expired(n)) return mprof__mi_malloc_slow(p, n);
  return p;
}

MPROF_PUBLIC int posix_memalign(void** out, size_t align, size_t n) {
  if (!is_pow2(align) || align % sizeof(void*) != 0) return EINVAL;
  int saved = errno;
  void* p = aligned(align, n);
  errno = saved; /* the error is the return value (POSIX), not errno: see docs/OPTIONS.md */
  if (p == NULL) return ENOMEM;
  *out = p;
  return 0;
}

MPROF_PUBLIC void* aligned_alloc(size_t align, size_t n) {
  if (!is_pow2(align)) {
    errno = EINVAL;
    return NULL;
  }
  return aligned(align, n);
}

MPROF_PUBLIC void* memalign(size_t align, size_t n) {
  /* glibc: an alignment that is not a power of two is rounded up to one. */
  if (align > SIZE_MAX / 2 + 1) {
    errno = EINVAL;
    return NULL;
  }
  if (!is_pow2(align)) {
    size_t a = 1;
    while (a < align)
      a <<= 1;
    align = a;
  }
  return aligned(align, n);
}

MPROF_PUBLIC void* valloc(size_t n) {
  return aligned((size_t)sysconf(_SC_PAGESIZE), n);
}

MPROF_PUBLIC void* pvalloc(size_t n) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  size_t r;
  if (__builtin_add_overflow(n, page - 1, &r)) {
    errno = ENOMEM;
    return NULL;
  }
  r &= ~(page - 1);
  return aligned(page, r ? r : page);
}

MPROF_PUBLIC size_t malloc_usable_size(void* p) {
  return mi_usable_size(p);
}

/* glibc's internal names, called by some programs and libraries directly. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wattributes"
#pragma GCC diagnostic ignored "-Wmissing-prototypes"
MPROF_PUBLIC void* __libc_calloc(size_t count, size_t size) MPROF_ALIAS(calloc);
MPROF_PUBLIC void* __libc_realloc(void* p, size_t n) MPROF_ALIAS(realloc);
MPROF_PUBLIC void* __libc_memalign(size_t align, size_t n) MPROF_ALIAS(memalign);
MPROF_PUBLIC void* __libc_valloc(size_t n) MPROF_ALIAS(valloc);
MPROF_PUBLIC void* __libc_pvalloc(size_t n) MPROF_ALIAS(pvalloc);
#pragma GCC diagnostic pop

/* ---------------------------------------------------------------------------------------------
 * Start-up
 * ------------------------------------------------------------------------------------------- */
/* The allocator's own figures for the reconciliation (mprof_hooks.h). mi_process_info reads
 * mimalloc's counters and getrusage(2); it does not allocate. On Linux mimalloc 2.0.9 reports
 * its committed bytes as the current RSS, and ru_maxrss as the peak. */
static int glue_alloc_stats(mprof_alloc_stats_t* out) {
  size_t elapsed, utime, stime, rss, peak_rss, commit, peak_commit, faults;
  mi_process_info(&elapsed, &utime, &stime, &rss, &peak_rss, &commit, &peak_commit, &faults);
  *out =
      (mprof_alloc_stats_t){commit, peak_commit, rss, peak_rss, UINT64_MAX, UINT64_MAX, UINT64_MAX};
  return 0;
}

/* What the core is told about this library; filled once, by whichever start comes first. */
static const mprof_host_t* glue_host(void) {
  static mprof_host_t host;
  static char name[32];
  if (host.name == NULL) {
    uintptr_t lo, hi;
    mprof__glue_start(&cb, &lo, &hi);
    snprintf(name, sizeof name, "mimalloc %d.%d.%d", MI_MALLOC_VERSION / 100,
             (MI_MALLOC_VERSION / 10) % 10, MI_MALLOC_VERSION % 10);
    host = (mprof_host_t){name, lo, hi, glue_alloc_stats};
  }
  return &host;
}

/* The core started from inside an allocation, before the constructor ran: a library's
 * constructor, the dynamic loader or libstdc++'s emergency pool allocated first. Sampling starts
 * there, so those allocations are sampled like the program's own (mprof_hooks.h). */
static void glue_start_early(void) {
  int expected = GLUE_NONE;
  if (!atomic_compare_exchange_strong(&glue_state, &expected, GLUE_STARTING)) return;
  mprof__enter(); /* what this allocates is not sampled */
  mi_register_error(on_mi_error, NULL);
  cb = mprof__init_early(glue_host());
  mprof__leave();
  /* Too early to read the options: the next allocation tries again. */
  atomic_store_explicit(&glue_state, cb != NULL || mprof__ready() ? GLUE_STARTED : GLUE_NONE,
                        memory_order_release);
}

__attribute__((constructor)) static void mprof_glue_init(void) {
  mi_register_error(on_mi_error, NULL);
  /* mimalloc's first allocation on the main thread sets errno (ENOENT, from probing the system
   * once); a successful malloc must not, so that probing happens here, errno kept. */
  int saved = errno;
  mprof__enter(); /* not sampled, and the thread's countdown is left as it was */
  mi_free(mi_malloc(16));
  mprof__leave();
  errno = saved;
  /* An early start may be under way on another thread: mprof__init waits for it. */
  const mprof_host_t* host = glue_host();
  cb = mprof__init(host);
  atomic_store_explicit(&glue_state, GLUE_STARTED, memory_order_release);
}
