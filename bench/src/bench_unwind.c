/* Stack walkers compared: the profiler's own (mprof__unwind, linked from the core), libunwind's
 * unw_backtrace, and a libunwind unw_step loop, under each libunwind caching policy.
 *
 *   bench_unwind [none|global|per-thread] [--walks N] [--threads T]
 *
 * For each walker: the best of 5 timings of N walks of the same stack (10 frames: a recursion of
 * 4 under main), then T new threads that each time their first and their second walk of the same
 * stack (median over the threads). The first argument sets unw_set_caching_policy for
 * libunwind's walkers (default: libunwind's own default, global). Prints RESULT lines. */
#define UNW_LOCAL_ONLY
#include "bench_common.h"

#include <libunwind.h>
#include <pthread.h>

#include "mprof_unwind.h"

enum { W_MPROF, W_BACKTRACE, W_STEP, NWALKERS };
static const char* const names[NWALKERS] = {"mprof_unwind", "unw_backtrace", "unw_step"};
static int walker;
static volatile unsigned sink;

static int step_loop(uintptr_t* buf, int max) {
  unw_context_t ctx;
  unw_cursor_t cur;
  unw_getcontext(&ctx);
  unw_init_local(&cur, &ctx);
  int n = 0;
  while (n < max && unw_step(&cur) > 0) {
    unw_word_t ip;
    unw_get_reg(&cur, UNW_REG_IP, &ip);
    buf[n++] = ip;
  }
  return n;
}

__attribute__((noinline)) static unsigned walk(void) {
  uintptr_t buf[256];
  unsigned n;
  if (walker == W_MPROF)
    n = mprof__unwind(buf, 256, 0, 0, 0);
  else if (walker == W_BACKTRACE)
    n = (unsigned)unw_backtrace((void**)buf, 256);
  else
    n = (unsigned)step_loop(buf, 256);
  bench_escape(buf);
  return n;
}

__attribute__((noinline)) static unsigned recurse(int d) {
  unsigned n = d > 0 ? recurse(d - 1) : walk();
  bench_escape(&n);
  return n;
}

typedef struct {
  uint64_t first_ns, second_ns;
} job_t;

static void* thread_main(void* arg) {
  job_t* j = arg;
  for (int i = 0; i < 2; i++) {
    uint64_t t0 = bench_now_ns();
    sink = recurse(4);
    uint64_t t = bench_now_ns() - t0;
    if (i == 0)
      j->first_ns = t;
    else
      j->second_ns = t;
  }
  return NULL;
}

static int cmp_u64(const void* a, const void* b) {
  uint64_t x = *(const uint64_t*)a, y = *(const uint64_t*)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char** argv) {
  const char* policy = argc > 1 && argv[1][0] != '-' ? argv[1] : "default";
  long long walks = bench_arg(argc, argv, "--walks", 20000);
  long long threads = bench_arg(argc, argv, "--threads", 20);
  if (walks < 1 || threads < 1 || threads > 1000) return 2;
  if (strcmp(policy, "none") == 0)
    unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_NONE);
  else if (strcmp(policy, "global") == 0)
    unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_GLOBAL);
  else if (strcmp(policy, "per-thread") == 0)
    unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_PER_THREAD);
  job_t* jobs = calloc((size_t)threads, sizeof *jobs);
  uint64_t* v = calloc((size_t)threads, sizeof *v);
  if (jobs == NULL || v == NULL) return 1;
  for (walker = 0; walker < NWALKERS; walker++) {
    unsigned frames = recurse(4); /* warm: every rule cached */
    uint64_t best = UINT64_MAX;
    long long n = walker == W_STEP ? walks / 100 + 1 : walks; /* unw_step is ~100x slower */
    for (int k = 0; k < 5; k++) {
      uint64_t t0 = bench_now_ns();
      for (long long i = 0; i < n; i++)
        sink = recurse(4);
      uint64_t t = (bench_now_ns() - t0) / (uint64_t)n;
      if (t < best) best = t;
    }
    for (long long t = 0; t < threads; t++) {
      pthread_t tid;
      if (pthread_create(&tid, NULL, thread_main, &jobs[t]) != 0) return 1;
      pthread_join(tid, NULL);
    }
    for (long long t = 0; t < threads; t++)
      v[t] = jobs[t].first_ns;
    qsort(v, (size_t)threads, sizeof *v, cmp_u64);
    uint64_t first = v[threads / 2];
    for (long long t = 0; t < threads; t++)
      v[t] = jobs[t].second_ns;
    qsort(v, (size_t)threads, sizeof *v, cmp_u64);
    printf("RESULT walker=%s policy=%s frames=%u walk_ns=%llu thread_first_ns=%llu "
           "thread_second_ns=%llu\n",
           names[walker], policy, frames, (unsigned long long)best, (unsigned long long)first,
           (unsigned long long)v[threads / 2]);
  }
  free(jobs);
  free(v);
  return 0;
}
