/* Heaps that free without free() (libmprof.so, linked): mimalloc's mi_heap_destroy releases
 * every block of a heap at once, mi_heap_delete moves the blocks still in use to the thread's
 * backing heap. At lg_prof_sample:0 every allocation is sampled, so the profiler's exact
 * in-use figure (stats.sampled_bytes_in_use, stats.sampled_blocks) must follow a shadow model
 * of what the program still holds, byte for byte.
 *
 * stdout's buffer is allocated before the first reading; nothing else allocates in between. */
#include <mprof.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* mimalloc 2.0.9's heap API, exported by libmprof.so (mimalloc.h is not installed). */
typedef struct mi_heap_s mi_heap_t;
mi_heap_t* mi_heap_new(void);
void mi_heap_destroy(mi_heap_t* heap);
void mi_heap_delete(mi_heap_t* heap);
void* mi_heap_malloc(mi_heap_t* heap, size_t size);
void* mi_heap_malloc_aligned(mi_heap_t* heap, size_t size, size_t alignment);
void* mi_heap_realloc(mi_heap_t* heap, void* p, size_t newsize);
void mi_free(void* p);

static uint64_t ctl_u64(const char* name) {
  uint64_t v = 0;
  size_t len = sizeof v;
  if (mprof_ctl(name, &v, &len, NULL, 0) != 0) abort();
  return v;
}

static int fails;
static void expect(const char* what, uint64_t got, uint64_t want) {
  printf("%s %s: got %llu, want %llu\n", got == want ? "ok  " : "FAIL", what,
         (unsigned long long)got, (unsigned long long)want);
  if (got != want) fails++;
}

static uint64_t rnd = 0x9e3779b97f4a7c15ull;
static size_t next_size(void) {
  rnd ^= rnd << 13;
  rnd ^= rnd >> 7;
  rnd ^= rnd << 17;
  /* small, medium and (one in 64) large blocks */
  return (rnd & 63) == 0 ? 200000 + rnd % 3000000 : 1 + (rnd >> 8) % 4000;
}

#define N 2000
static void* kept[N];
static size_t kept_size[N];

int main(void) {
  printf("it_heaps: mi_heap_destroy and mi_heap_delete at lg_prof_sample:0\n");
  uint64_t bytes0 = ctl_u64("stats.sampled_bytes_in_use");
  uint64_t blocks0 = ctl_u64("stats.sampled_blocks");
  uint64_t held = 0, nheld = 0; /* the shadow model: what the program holds */

  /* mi_heap_destroy: 10 heaps, each with plain, aligned and reallocated blocks, some freed
   * one by one first; the destroy ends the rest. Blocks kept in the default heap survive. */
  for (int h = 0; h < 10; h++) {
    mi_heap_t* heap = mi_heap_new();
    void* own[N];
    for (int i = 0; i < N; i++) {
      size_t n = next_size();
      own[i] =
          (i % 7 == 3) ? mi_heap_malloc_aligned(heap, n, 64 << (i % 5)) : mi_heap_malloc(heap, n);
      if (own[i] == NULL) abort();
      if (i % 11 == 5) own[i] = mi_heap_realloc(heap, own[i], n + 5000);
      if (i % 3 == 0) mi_free(own[i]);
    }
    size_t k = (size_t)h * 100;
    for (size_t i = k; i < k + 100; i++) {
      kept_size[i] = next_size();
      kept[i] = malloc(kept_size[i]);
      held += kept_size[i];
      nheld++;
    }
    mi_heap_destroy(heap);
  }
  expect("mi_heap_destroy: bytes in use", ctl_u64("stats.sampled_bytes_in_use") - bytes0, held);
  expect("mi_heap_destroy: blocks in use", ctl_u64("stats.sampled_blocks") - blocks0, nheld);

  /* mi_heap_delete: the blocks still in use move to the backing heap and stay live; freeing
   * them afterwards ends them. */
  mi_heap_t* heap = mi_heap_new();
  static void* moved[N];
  static size_t moved_size[N];
  for (int i = 0; i < N; i++) {
    moved_size[i] = next_size();
    moved[i] = (i % 5 == 1) ? mi_heap_malloc_aligned(heap, moved_size[i], 256)
                            : mi_heap_malloc(heap, moved_size[i]);
    held += moved_size[i];
    nheld++;
  }
  for (int i = 0; i < N; i += 2) {
    mi_free(moved[i]);
    held -= moved_size[i];
    nheld--;
  }
  mi_heap_delete(heap);
  expect("mi_heap_delete: bytes in use", ctl_u64("stats.sampled_bytes_in_use") - bytes0, held);
  expect("mi_heap_delete: blocks in use", ctl_u64("stats.sampled_blocks") - blocks0, nheld);
  for (int i = 1; i < N; i += 2) {
    free(moved[i]);
    held -= moved_size[i];
    nheld--;
  }
  for (size_t i = 0; i < 1000; i++) {
    free(kept[i]);
    held -= kept_size[i];
    nheld--;
  }
  expect("all freed: bytes in use", ctl_u64("stats.sampled_bytes_in_use") - bytes0, held);
  expect("all freed: blocks in use", ctl_u64("stats.sampled_blocks") - blocks0, nheld);
  return fails != 0;
}
