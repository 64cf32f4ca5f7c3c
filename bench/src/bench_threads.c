/* Thread churn: a program that starts and joins many short-lived allocating threads.
 *
 *   bench_threads [--threads N] [--batch B] [--bytes S] [--seed X]
 *
 * Starts N threads (default 400), B at a time (default 4): each batch is started, then joined,
 * before the next. Every thread mallocs and frees 16 B..4 KiB blocks (uniform, 64 live, each
 * written to) until it has allocated S bytes (default 1 MiB), so at the default sampling rate
 * (512 KiB) a thread takes about two samples and most threads take their first. What a profiler
 * spends on a thread's first sample, or per thread at all, shows here and not in the long-running
 * workloads. Prints one RESULT line; `seconds` is the wall time from the first thread's start to
 * the last join, `cpu_seconds` the process's CPU time over the same stretch.
 *
 * Each thread also times its first two mallocs (64 bytes each, made before the loop): with
 * every allocation sampled (lg_prof_sample:0) the first is the thread's first sample and the
 * second an ordinary one, so `first_malloc_ns` - `second_malloc_ns` (medians over the threads) is
 * what a thread's first sample costs beyond any other sample. */
#include "bench_common.h"

#include <pthread.h>

typedef struct job_s {
  uint64_t bytes;
  uint64_t seed;
  uint64_t checksum;
  uint64_t first_ns, second_ns; /* the thread's first and second malloc */
} job_t;

static int cmp_u64(const void* a, const void* b) {
  uint64_t x = *(const uint64_t*)a, y = *(const uint64_t*)b;
  return x < y ? -1 : x > y;
}

static void* thread_main(void* arg) {
  job_t* j = arg;
  void* slots[64] = {0};
  uint64_t t0 = bench_now_ns();
  slots[0] = malloc(64);
  uint64_t t1 = bench_now_ns();
  slots[1] = malloc(64);
  uint64_t t2 = bench_now_ns();
  j->first_ns = t1 - t0;
  j->second_ns = t2 - t1;
  uint64_t s = j->seed, done = 0, sum = 0;
  for (uint64_t i = 0; done < j->bytes; i++) {
    uint64_t r = bench_rand(&s);
    unsigned k = (unsigned)(r & 63);
    size_t n = 16 + (size_t)((r >> 32) % (4096 - 16 + 1));
    free(slots[k]);
    char* p = malloc(n);
    p[0] = (char)i;
    p[n - 1] = (char)k;
    slots[k] = p;
    done += n;
  }
  for (unsigned k = 0; k < 64; k++) {
    if (slots[k] != NULL) sum += (unsigned char)((char*)slots[k])[0];
    free(slots[k]);
  }
  j->checksum = sum;
  return NULL;
}

int main(int argc, char** argv) {
  long long threads = bench_arg(argc, argv, "--threads", 400);
  long long batch = bench_arg(argc, argv, "--batch", 4);
  long long bytes = bench_arg(argc, argv, "--bytes", 1 << 20);
  long long seed = bench_arg(argc, argv, "--seed", 42);
  if (threads < 1 || batch < 1 || batch > 64 || bytes < 0) {
    fprintf(stderr, "usage: bench_threads [--threads N] [--batch 1..64] [--bytes S] [--seed X]\n");
    return 2;
  }
  const char* owner;
  bench_ctl_fn ctl = bench_find_ctl(&owner);
  uint64_t samples0 = 0, samples1 = 0;
  int have_samples = bench_ctl_u64(ctl, "stats.samples", &samples0) == 0;

  job_t jobs[64];
  pthread_t tids[64];
  uint64_t sum = 0;
  uint64_t* firsts = calloc((size_t)threads, sizeof *firsts);
  uint64_t* seconds = calloc((size_t)threads, sizeof *seconds);
  if (firsts == NULL || seconds == NULL) return 1;
  struct timespec c0, c1;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
  uint64_t t0 = bench_now_ns();
  for (long long started = 0; started < threads;) {
    long long b = threads - started < batch ? threads - started : batch;
    for (long long t = 0; t < b; t++) {
      jobs[t] =
          (job_t){.bytes = (uint64_t)bytes,
                  .seed = (uint64_t)seed * 0x9e3779b97f4a7c15ull + (uint64_t)(started + t) + 1};
      if (pthread_create(&tids[t], NULL, thread_main, &jobs[t]) != 0) {
        fprintf(stderr, "bench_threads: cannot create thread\n");
        return 1;
      }
    }
    for (long long t = 0; t < b; t++) {
      pthread_join(tids[t], NULL);
      sum += jobs[t].checksum;
      firsts[started + t] = jobs[t].first_ns;
      seconds[started + t] = jobs[t].second_ns;
    }
    started += b;
  }
  uint64_t t1 = bench_now_ns();
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
  double cpu = (double)(c1.tv_sec - c0.tv_sec) + (double)(c1.tv_nsec - c0.tv_nsec) / 1e9;
  if (have_samples) bench_ctl_u64(ctl, "stats.samples", &samples1);
  qsort(firsts, (size_t)threads, sizeof *firsts, cmp_u64);
  qsort(seconds, (size_t)threads, sizeof *seconds, cmp_u64);
  printf("RESULT workload=threads threads=%lld batch=%lld bytes=%lld seconds=%.6f cpu_seconds=%.6f "
         "us_per_thread=%.2f first_malloc_ns=%llu second_malloc_ns=%llu ctl=%s samples=%lld "
         "checksum=%llu\n",
         threads, batch, bytes, (double)(t1 - t0) / 1e9, cpu,
         (double)(t1 - t0) / 1e3 / (double)threads, (unsigned long long)firsts[threads / 2],
         (unsigned long long)seconds[threads / 2], owner,
         have_samples ? (long long)(samples1 - samples0) : -1LL, (unsigned long long)sum);
  free(firsts);
  free(seconds);
  return 0;
}
