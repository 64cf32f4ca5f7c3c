/* Shared helpers of the benchmark programs.
 *
 * The programs link to nothing special: the driver (bench/run.py) runs each of them under
 * LD_PRELOAD with the allocator being measured. Those that talk to the profiler look up
 * mprof_ctl (or jemalloc's mallctl, which has the same signature and contract) at run time with
 * dlsym, so the same binary runs under every allocator.
 *
 * Output: one line per result, `RESULT key=value key=value ...`, values without spaces; the
 * driver parses these lines and ignores everything else. */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int (*bench_ctl_fn)(const char* name, void* oldp, size_t* oldlenp, void* newp,
                            size_t newlen);

static inline uint64_t bench_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* xorshift64*: deterministic per seed, cheap enough to sit inside an allocation loop. */
static inline uint64_t bench_rand(uint64_t* s) {
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * 0x2545f4914f6cdd1dull;
}

/* Finds mprof_ctl, else mallctl. *which is set to "mprof", "jemalloc" or "none". Call before
 * the measured region: a failed dlsym allocates. */
static inline bench_ctl_fn bench_find_ctl(const char** which) {
  static const char* const names[2] = {"mprof_ctl", "mallctl"};
  static const char* const owners[2] = {"mprof", "jemalloc"};
  for (int i = 0; i < 2; i++) {
    void* sym = dlsym(RTLD_DEFAULT, names[i]);
    if (sym != NULL) {
      bench_ctl_fn fn;
      memcpy(&fn, &sym, sizeof fn); /* object to function pointer without a pedantic cast */
      *which = owners[i];
      return fn;
    }
  }
  *which = "none";
  return NULL;
}

/* Reads a uint64_t (mprof stats) or size_t value; returns 0 and sets *v, or an errno. */
static inline int bench_ctl_u64(bench_ctl_fn ctl, const char* name, uint64_t* v) {
  if (ctl == NULL) return ENOENT;
  size_t len = sizeof *v;
  return ctl(name, v, &len, NULL, 0);
}

/* Parses "--name value" pairs: returns the value of --name or def. */
static inline long long bench_arg(int argc, char** argv, const char* name, long long def) {
  for (int i = 1; i + 1 < argc; i++)
    if (strcmp(argv[i], name) == 0) return strtoll(argv[i + 1], NULL, 0);
  return def;
}

static inline const char* bench_arg_str(int argc, char** argv, const char* name, const char* def) {
  for (int i = 1; i + 1 < argc; i++)
    if (strcmp(argv[i], name) == 0) return argv[i + 1];
  return def;
}

/* Keeps the compiler from optimising a pointer away (and from merging a malloc/free pair). */
static inline void bench_escape(void* p) {
  __asm__ volatile("" : : "g"(p) : "memory");
}

#endif
