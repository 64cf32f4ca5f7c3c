/* Allocation loops: the synthetic workloads of the suite.
 *
 *   bench_alloc --workload small|large|realloc [--threads T] [--ops N] [--frames D]
 *               [--live K] [--seed S]
 *
 *   small    each op frees a random slot of K live blocks and mallocs 16 B..4 KiB into it
 *   large    the same with 64 KiB..8 MiB (log-uniform), K = 8 by default
 *   realloc  each op grows a random slot's block by about half with realloc (1 in 8 shrinks
 *            it), restarting at 16..256 B once it passes 64 KiB
 *
 * Every thread runs N ops (one malloc/free pair, or one realloc) on its own slots, with the
 * allocation call made at a stack depth of D frames (the loop runs at the bottom of a recursion;
 * 0 = as shallow as the program goes). Every block is written to, so the allocator cannot hand
 * out untouched memory for free. Prints one RESULT line; `seconds` is the wall time of the loops
 * only (from the first thread's start, after a barrier all threads leave together, to the last
 * one's end), not of start-up or of freeing what is left at the end; `cpu_seconds` is the
 * process's CPU time over the same stretch (plus thread joins): less sensitive to other load. */
#include "bench_common.h"

#include <execinfo.h>
#include <pthread.h>
#include <stdbool.h>

enum { W_SMALL, W_LARGE, W_REALLOC };

typedef struct job_s {
  int workload;
  uint64_t ops;
  unsigned live; /* power of two */
  unsigned recursion;
  uint64_t seed;
  int frames;        /* frames on the stack at the allocation call (measured) */
  uint64_t checksum; /* keeps the loops' stores observable */
  uint64_t cap;      /* the profiler's mean sampling interval (bytes), or UINT64_MAX */
  uint64_t capped;   /* sum over allocations of min(size, cap): expected samples ~ capped/cap */
  pthread_barrier_t* start;
  uint64_t t_start, t_end; /* this thread's loop, CLOCK_MONOTONIC ns */
} job_t;

static int count_frames(void) {
  void* buf[512];
  return backtrace(buf, 512) - 1; /* the caller's depth: drop count_frames itself */
}

static void loop_small(job_t* j, void** slots) {
  uint64_t s = j->seed, capped = 0, cap = j->cap;
  uint64_t mask = j->live - 1;
  for (uint64_t i = 0; i < j->ops; i++) {
    uint64_t r = bench_rand(&s);
    uint64_t k = r & mask;
    size_t n = 16 + (size_t)((r >> 32) % (4096 - 16 + 1));
    free(slots[k]);
    char* p = malloc(n);
    p[0] = (char)i;
    p[n - 1] = (char)k;
    slots[k] = p;
    capped += n < cap ? n : cap;
  }
  j->seed = s;
  j->capped = capped;
}

static void loop_large(job_t* j, void** slots) {
  uint64_t s = j->seed, capped = 0, cap = j->cap;
  uint64_t mask = j->live - 1;
  for (uint64_t i = 0; i < j->ops; i++) {
    uint64_t r = bench_rand(&s);
    uint64_t k = r & mask;
    size_t base = (size_t)64 << 10 << ((r >> 8) % 7); /* 64 KiB .. 4 MiB */
    size_t n = base + (size_t)((r >> 32) % base);     /* .. 8 MiB */
    free(slots[k]);
    char* p = malloc(n);
    p[0] = (char)i;
    p[n - 1] = (char)k;
    slots[k] = p;
    capped += n < cap ? n : cap;
  }
  j->seed = s;
  j->capped = capped;
}

static void loop_realloc(job_t* j, void** slots, size_t* sizes) {
  uint64_t s = j->seed, capped = 0, cap = j->cap;
  uint64_t mask = j->live - 1;
  for (uint64_t i = 0; i < j->ops; i++) {
    uint64_t r = bench_rand(&s);
    uint64_t k = r & mask;
    size_t n;
    if (sizes[k] == 0 || sizes[k] > ((size_t)64 << 10)) {
      n = 16 + (size_t)((r >> 32) % 241);
      free(slots[k]);
      slots[k] = NULL;
    } else if (((r >> 16) & 7) == 0) {
      n = sizes[k] / 2 + 1;
    } else {
      n = sizes[k] + sizes[k] / 2 + (size_t)((r >> 32) % 64);
    }
    char* p = realloc(slots[k], n);
    p[n - 1] = (char)i;
    slots[k] = p;
    sizes[k] = n;
    capped += n < cap ? n : cap;
  }
  j->seed = s;
  j->capped = capped;
}

/* The measured loop. Its name is what callgrind collects (--toggle-collect=bench_loop). */
__attribute__((noinline)) void bench_loop(job_t* j, void** slots, size_t* sizes);
__attribute__((noinline)) void bench_loop(job_t* j, void** slots, size_t* sizes) {
  switch (j->workload) {
  case W_SMALL:
    loop_small(j, slots);
    break;
  case W_LARGE:
    loop_large(j, slots);
    break;
  default:
    loop_realloc(j, slots, sizes);
    break;
  }
}

static void run_job(job_t* j) {
  void** slots = calloc(j->live, sizeof *slots);
  size_t* sizes = calloc(j->live, sizeof *sizes);
  if (slots == NULL || sizes == NULL) {
    fprintf(stderr, "bench_alloc: out of memory\n");
    exit(1);
  }
  j->frames = count_frames();
  if (j->start != NULL) pthread_barrier_wait(j->start);
  j->t_start = bench_now_ns();
  bench_loop(j, slots, sizes);
  j->t_end = bench_now_ns();
  for (unsigned k = 0; k < j->live; k++) {
    if (slots[k] != NULL) j->checksum += (unsigned char)((char*)slots[k])[0];
    free(slots[k]);
  }
  free(sizes);
  free(slots);
}

/* Runs the job at the bottom of `d` more frames. Not a tail call: something follows it. */
__attribute__((noinline)) static void recurse(job_t* j, unsigned d) {
  if (d == 0)
    run_job(j);
  else
    recurse(j, d - 1);
  bench_escape(j);
}

static void* thread_main(void* arg) {
  job_t* j = arg;
  recurse(j, j->recursion);
  return NULL;
}

int main(int argc, char** argv) {
  const char* w = bench_arg_str(argc, argv, "--workload", "small");
  int workload = strcmp(w, "small") == 0     ? W_SMALL
                 : strcmp(w, "large") == 0   ? W_LARGE
                 : strcmp(w, "realloc") == 0 ? W_REALLOC
                                             : -1;
  long long threads = bench_arg(argc, argv, "--threads", 1);
  long long ops = bench_arg(argc, argv, "--ops", 1000000);
  long long frames = bench_arg(argc, argv, "--frames", 0);
  long long live = bench_arg(argc, argv, "--live", workload == W_LARGE ? 8 : 1024);
  long long seed = bench_arg(argc, argv, "--seed", 42);
  if (workload < 0 || threads < 1 || threads > 64 || ops < 0 || frames < 0 || frames > 4096 ||
      live < 1 || live > (1 << 24) || (live & (live - 1)) != 0) {
    fprintf(stderr, "usage: bench_alloc --workload small|large|realloc [--threads 1..64] "
                    "[--ops N] [--frames D] [--live 2^k] [--seed S]\n");
    return 2;
  }

  /* Learn how deep the loop sits without recursion, to recurse just enough for --frames. */
  job_t probe = {.workload = workload, .ops = 0, .live = 1, .recursion = 0, .seed = 1};
  pthread_t pt;
  if (pthread_create(&pt, NULL, thread_main, &probe) != 0) return 1;
  pthread_join(pt, NULL);
  unsigned recursion = frames > probe.frames ? (unsigned)(frames - probe.frames) : 0;

  /* The profiler's sampling interval, if there is a profiler, for the sampling check. */
  const char* owner;
  bench_ctl_fn ctl = bench_find_ctl(&owner);
  uint64_t cap = UINT64_MAX;
  size_t lg = 0, lglen = sizeof lg;
  bool active = false;
  size_t alen = sizeof active;
  if (ctl != NULL && ctl("prof.lg_sample", &lg, &lglen, NULL, 0) == 0 && lg < 64 &&
      ctl("prof.active", &active, &alen, NULL, 0) == 0 && active)
    cap = (uint64_t)1 << lg;
  uint64_t samples0 = 0, samples1 = 0;
  bool have_samples = bench_ctl_u64(ctl, "stats.samples", &samples0) == 0;

  job_t jobs[64];
  pthread_t tids[64];
  pthread_barrier_t start;
  pthread_barrier_init(&start, NULL, (unsigned)threads + 1);
  for (long long t = 0; t < threads; t++) {
    jobs[t] = (job_t){.workload = workload,
                      .ops = (uint64_t)ops,
                      .live = (unsigned)live,
                      .recursion = recursion,
                      .seed = (uint64_t)seed * 0x9e3779b97f4a7c15ull + (uint64_t)t + 1,
                      .cap = cap,
                      .start = &start};
    if (pthread_create(&tids[t], NULL, thread_main, &jobs[t]) != 0) {
      fprintf(stderr, "bench_alloc: cannot create thread\n");
      return 1;
    }
  }
  struct timespec c0, c1;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
  pthread_barrier_wait(&start);
  uint64_t sum = 0, capped = 0, t0 = UINT64_MAX, t1 = 0;
  for (long long t = 0; t < threads; t++) {
    pthread_join(tids[t], NULL);
    sum += jobs[t].checksum;
    capped += jobs[t].capped;
    if (jobs[t].t_start < t0) t0 = jobs[t].t_start;
    if (jobs[t].t_end > t1) t1 = jobs[t].t_end;
  }
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
  double cpu = (double)(c1.tv_sec - c0.tv_sec) + (double)(c1.tv_nsec - c0.tv_nsec) / 1e9;
  if (have_samples) bench_ctl_u64(ctl, "stats.samples", &samples1);
  pthread_barrier_destroy(&start);
  double sec = (double)(t1 - t0) / 1e9;
  /* samples: what the profiler recorded during the loops (-1: no counter). expected_samples:
   * sum of min(size, R)/R, within a factor 1-1/e of the true expectation sum(1-exp(-size/R)). */
  printf("RESULT workload=%s threads=%lld ops=%lld frames=%d seconds=%.6f cpu_seconds=%.6f "
         "ns_per_op=%.2f ctl=%s samples=%lld expected_samples=%.1f checksum=%llu\n",
         w, threads, ops, jobs[0].frames, sec, cpu,
         (double)(t1 - t0) / ((double)ops * (double)threads), owner,
         have_samples ? (long long)(samples1 - samples0) : -1LL,
         cap == UINT64_MAX ? -1.0 : (double)capped / (double)cap, (unsigned long long)sum);
  return 0;
}
