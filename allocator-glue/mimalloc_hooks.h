/* mprof's binding of mimalloc's tool hooks.
 *
 * allocator-glue/mimalloc.c includes this header and then mimalloc's own sources (its
 * src/static.c), so they are compiled as one unit with the hooks bound. It defines
 * MIMALLOC_TRACK_H first, so mimalloc's include/mimalloc-track.h
 * (which tools such as Valgrind and ASan fill in) is skipped, and its macros are defined here
 * instead. mimalloc calls them at every allocation and free:
 *
 *   mi_track_malloc(p, size, zero)   end of the small, generic and aligned allocation paths and of
 *                                    an in-place realloc: p (or NULL) now holds `size` bytes
 *   mi_track_free(p)                 mi_free's fast path and _mi_free_generic, before the block
 *                                    goes back to its page; `page` and `is_local` are in scope
 *   mi_track_free_size(p, size)      an in-place realloc (the old block ends), or the aligned
 *                                    fallback (the over-allocation p is re-reported as aligned_p)
 *   mi_track_resize(p, old, new)     the aligned fallback when the over-allocation was already
 *                                    aligned (re-reported with its real size)
 *
 * What the glue adds on top of them (allocator-glue/mimalloc.c has the slow paths):
 *   - malloc: the thread's byte countdown (mprof_thread.h) is subtracted; only when that borrows
 *     does a cold function run, which asks the core whether to sample and records the block;
 *   - free: a page that holds sampled blocks carries a count of them in bits 2..7 of its
 *     `flags.full_aligned` byte (mimalloc uses bits 0 and 1). mi_free goes fast only when that
 *     byte is zero, so frees on such pages take mimalloc's generic path, where the hook looks the
 *     block up; on every other page mi_track_free is a test the compiler folds away (mi_free's
 *     fast path already knows the byte is zero).
 *   - the aligned fallback reports an over-allocation and then the aligned block inside it: the
 *     glue undoes the first report (gives its bytes back to the countdown, or cancels its sample
 *     and restores the countdown it had) so that each aligned allocation is sampled once, with
 *     the probability of its own size. The two mi_track_free_size sites are told apart by the
 *     name `aligned_p`: a local of the aligned fallback, and otherwise the null constant below.
 *
 * Nothing of mimalloc is changed. */
#ifndef MPROF_MIMALLOC_HOOKS_H
#define MPROF_MIMALLOC_HOOKS_H

#define MIMALLOC_TRACK_H /* pre-empts mimalloc-track.h */

#include <stdbool.h>
#include <stddef.h>

#include "mprof_thread.h"

#if defined(MI_TSAN) && MI_TSAN
/* mimalloc's ThreadSanitizer build makes its two page flags whole bytes: no spare bits. */
#error "libmprof.so cannot be built with MI_TSAN: the page marks need the spare flag bits"
#endif

#define MI_TRACK_ENABLED 1
#define MI_TRACK_TOOL "mprof"

/* Bits of mi_page_t.flags.full_aligned that count the page's live sampled blocks (saturating at
 * 63; then the page stays marked until mimalloc clears the page). Written by the page's owner
 * thread only, like mimalloc's own two bits. */
#define MPROF_MI_SAMPLED_SHIFT 2
#define MPROF_MI_SAMPLED_MASK 0xfcu

/* The glue's slow paths (allocator-glue/mimalloc.c). `page` is a mi_page_t*. */
void* mprof__mi_malloc_slow(void* p, size_t size);
void mprof__mi_free_marked(void* p, void* page, bool is_local, void* block);
void mprof__mi_free_size(void* p, size_t size, const void* aligned);
void mprof__mi_resize(void* p, size_t oldsize, size_t newsize);

/* Seen by mi_track_free_size outside the aligned fallback, whose local `aligned_p` hides it. */
static void* const aligned_p __attribute__((unused)) = NULL;

/* Every mi_track_malloc in mimalloc 2.0.9 is followed by `return p` (or `return aligned_p`, its
 * p there), so the slow path returns p and is reached by a tail call: the fast path keeps no
 * register across a call and needs no stack frame. */
#define mi_track_malloc(p, size, zero)                                                             \
  do {                                                                                             \
    (void)(zero);                                                                                  \
    if (__builtin_expect(mprof__thread_countdown_expired(size), 0))                                \
      return mprof__mi_malloc_slow((p), (size));                                                   \
  } while (0)

/* Both sites are followed by nothing but the release of `block` (the unaligned start of p) to
 * its page, so on a marked page the slow path records the free and releases the block itself
 * (mimalloc's _mi_free_block, which serves local and non-local frees alike), reached by a tail
 * call: _mi_free_generic keeps nothing live across a call and needs no saved registers. */
#define mi_track_free(p)                                                                           \
  do {                                                                                             \
    if (__builtin_expect((page->flags.full_aligned & MPROF_MI_SAMPLED_MASK) != 0, 0)) {            \
      mprof__mi_free_marked((p), page, is_local, block);                                           \
      return;                                                                                      \
    }                                                                                              \
  } while (0)

#define mi_track_free_size(p, size) mprof__mi_free_size((p), (size), aligned_p)
#define mi_track_resize(p, oldsize, newsize) mprof__mi_resize((p), (oldsize), (newsize))

#define mi_track_mem_defined(p, size) ((void)0)
#define mi_track_mem_undefined(p, size) ((void)0)
#define mi_track_mem_noaccess(p, size) ((void)0)

#endif
