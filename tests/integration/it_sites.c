/* A program with known allocation sites, for the accuracy test (it_accuracy.sh).
 *
 *   site_small_live   32 MiB live in 256-byte blocks           (131072 objects)
 *   site_mixed_live   32 MiB live in sizes from 16 B to 8 KiB   (random, fixed seed)
 *   site_large_live   32 MiB live in 1 MiB blocks               (32 objects)
 *   site_realloc_live 16 MiB live: 16 buffers grown by realloc to 1 MiB
 *   site_churn        512 MiB allocated in 1 KiB blocks and all freed again
 *   site_calloc_live  8 MiB live in 4 KiB calloc'd blocks
 *
 * It prints the true figures per site on stdout as "name alloc_bytes inuse_bytes inuse_objects",
 * then dumps a profile with mprof_ctl("prof.dump") to argv[1] (looked up with dlsym so the
 * program also runs without the profiler). */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MiB ((size_t)1 << 20)

static void* volatile keep[300000]; /* volatile: the compiler may not drop the mallocs */
static size_t nkeep;

static void report(const char* name, size_t alloc, size_t inuse, size_t objs) {
  printf("%s %zu %zu %zu\n", name, alloc, inuse, objs);
}

__attribute__((noinline)) static void site_small_live(void) {
  size_t n = 32 * MiB / 256;
  for (size_t i = 0; i < n; i++)
    keep[nkeep++] = malloc(256);
  report("site_small_live", 32 * MiB, 32 * MiB, n);
}

__attribute__((noinline)) static void site_mixed_live(void) {
  uint64_t s = 88172645463325252ull;
  size_t total = 0, n = 0;
  while (total < 32 * MiB) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    size_t size = 16 + s % (8192 - 16 + 1);
    keep[nkeep++] = malloc(size);
    total += size;
    n++;
  }
  report("site_mixed_live", total, total, n);
}

__attribute__((noinline)) static void site_large_live(void) {
  for (int i = 0; i < 32; i++) {
    keep[nkeep] = malloc(MiB);
    memset(keep[nkeep++], 7, MiB);
  }
  report("site_large_live", 32 * MiB, 32 * MiB, 32);
}

__attribute__((noinline)) static void site_realloc_live(void) {
  /* Each buffer doubles from 4 KiB to 1 MiB: realloc allocates 4K+8K+...+1M = 2 MiB - 4 KiB
   * per buffer in all, of which the final 1 MiB stays live. */
  size_t alloc = 0;
  for (int i = 0; i < 16; i++) {
    char* p = NULL;
    for (size_t size = 4096; size <= MiB; size *= 2) {
      p = realloc(p, size);
      p[size - 1] = 1;
      alloc += size;
    }
    keep[nkeep++] = p;
  }
  report("site_realloc_live", alloc, 16 * MiB, 16);
}

__attribute__((noinline)) static void site_churn(void) {
  for (size_t i = 0; i < 512 * MiB / 1024; i++) {
    char* volatile p = malloc(1024);
    p[0] = (char)i;
    free(p);
  }
  report("site_churn", 512 * MiB, 0, 0);
}

__attribute__((noinline)) static void site_calloc_live(void) {
  for (size_t i = 0; i < 8 * MiB / 4096; i++)
    keep[nkeep++] = calloc(1, 4096);
  report("site_calloc_live", 8 * MiB, 8 * MiB, 8 * MiB / 4096);
}

int main(int argc, char** argv) {
  site_small_live();
  site_mixed_live();
  site_large_live();
  site_realloc_live();
  site_churn();
  site_calloc_live();
  fflush(stdout);
  if (argc > 1) {
    int (*ctl)(const char*, void*, size_t*, void*, size_t);
    *(void**)&ctl = dlsym(RTLD_DEFAULT, "mprof_ctl");
    if (ctl == NULL) {
      fprintf(stderr, "it_sites: mprof_ctl not found (not running under libmprof.so)\n");
      return 2;
    }
    const char* path = argv[1];
    int err = ctl("prof.dump", NULL, NULL, &path, sizeof path);
    if (err != 0) {
      fprintf(stderr, "it_sites: prof.dump failed: %s\n", strerror(err));
      return 1;
    }
  }
  return 0;
}
