/* Arenas that free without free() (libmprof-jemalloc.so, linked): jemalloc's arena.<i>.reset
 * and arena.<i>.destroy release every block of an arena at once. At lg_prof_sample:0 every
 * allocation is sampled, so the profiler's exact in-use figure (stats.sampled_bytes_in_use,
 * stats.sampled_blocks) must follow a shadow model of what the program still holds.
 *
 * stdout's buffer is allocated before the first reading; nothing else allocates in between. */
#include <mprof.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* jemalloc 5.3's API, exported by libmprof-jemalloc.so. */
int mallctl(const char* name, void* oldp, size_t* oldlenp, void* newp, size_t newlen);
void* mallocx(size_t size, int flags);
void* rallocx(void* p, size_t size, int flags);
void dallocx(void* p, int flags);
#define MALLOCX_ARENA(a) ((int)(((unsigned)(a) + 1) << 20))
#define MALLOCX_TCACHE_NONE (1 << 8) /* jemalloc's (0 + 1) << 8: no thread cache */
#define MALLOCX_LG_ALIGN(la) ((int)(la))

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
  return (rnd & 63) == 0 ? 200000 + rnd % 3000000 : 1 + (rnd >> 8) % 4000;
}

#define N 1000
static void* kept[10 * 100];

/* Fills a new arena with N blocks (some aligned, some reallocated, a third freed again) and
 * returns its index. */
static unsigned fill_arena(void) {
  unsigned a;
  size_t len = sizeof a;
  if (mallctl("arenas.create", &a, &len, NULL, 0) != 0) abort();
  int flags = MALLOCX_ARENA(a) | MALLOCX_TCACHE_NONE;
  for (int i = 0; i < N; i++) {
    size_t n = next_size();
    void* p = mallocx(n, flags | (i % 7 == 3 ? MALLOCX_LG_ALIGN(6 + i % 5) : 0));
    if (p == NULL) abort();
    if (i % 11 == 5) p = rallocx(p, n + 5000, flags);
    if (i % 3 == 0) dallocx(p, flags);
  }
  return a;
}

int main(void) {
  printf("it_arenas: arena.<i>.reset and arena.<i>.destroy at lg_prof_sample:0\n");
  uint64_t bytes0 = ctl_u64("stats.sampled_bytes_in_use");
  uint64_t blocks0 = ctl_u64("stats.sampled_blocks");
  uint64_t held = 0, nheld = 0;
  char name[64];
  for (int h = 0; h < 10; h++) {
    unsigned a = fill_arena();
    for (int i = 0; i < 100; i++) {
      size_t n = next_size();
      kept[h * 100 + i] = malloc(n);
      held += n;
      nheld++;
    }
    /* The arena's blocks are sampled and live before it goes (so the check below can fail). */
    if (ctl_u64("stats.sampled_blocks") - blocks0 <= nheld) {
      printf("FAIL arena %u: its blocks were not sampled\n", a);
      fails++;
    }
    snprintf(name, sizeof name, "arena.%u.%s", a, h % 2 ? "reset" : "destroy");
    if (mallctl(name, NULL, NULL, NULL, 0) != 0) abort();
  }
  expect("arena reset/destroy: bytes in use", ctl_u64("stats.sampled_bytes_in_use") - bytes0, held);
  expect("arena reset/destroy: blocks in use", ctl_u64("stats.sampled_blocks") - blocks0, nheld);
  for (int i = 0; i < 10 * 100; i++)
    free(kept[i]);
  expect("all freed: bytes in use", ctl_u64("stats.sampled_bytes_in_use") - bytes0, 0);
  expect("all freed: blocks in use", ctl_u64("stats.sampled_blocks") - blocks0, 0);
  return fails != 0;
}
