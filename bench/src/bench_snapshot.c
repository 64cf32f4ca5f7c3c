/* The thread snapshot's costs (prof.threads.dump, docs/BENCHMARKS.md): --threads N threads, of
 * which --running R spin and the others wait in read(2) on a pipe, each holding a little heap;
 * --reps snapshots are written to --out DIR. For each, the profiler's own figures
 * (stats.threads.longest_pause_ns: the longest time a thread spent in the signal handler, i.e.
 * the longest any thread was held; stats.threads.snapshot_ns: the snapshot's duration) and the
 * wall time of the control call.
 *
 * Output: RESULT threads=N running=R pause_ns_median=... pause_ns_max=... snapshot_ns_median=...
 * snapshot_ns_max=... call_ns_median=... */
#include "bench_common.h"

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

static atomic_int stop;
static int pipefd[2];

static void* spin(void* arg) {
  (void)arg;
  void* p = malloc(4096);
  bench_escape(p);
  volatile uint64_t x = 0;
  while (!atomic_load_explicit(&stop, memory_order_relaxed))
    x++;
  free(p);
  return NULL;
}

static void* wait_read(void* arg) {
  (void)arg;
  void* p = malloc(4096);
  bench_escape(p);
  char c;
  while (read(pipefd[0], &c, 1) < 0 && errno == EINTR) {
  }
  free(p);
  return NULL;
}

static int cmp_u64(const void* a, const void* b) {
  uint64_t x = *(const uint64_t*)a, y = *(const uint64_t*)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char** argv) {
  int n = (int)bench_arg(argc, argv, "--threads", 100);
  int r = (int)bench_arg(argc, argv, "--running", 0);
  int reps = (int)bench_arg(argc, argv, "--reps", 9);
  const char* dir = bench_arg_str(argc, argv, "--out", "/tmp");
  const char* which;
  bench_ctl_fn ctl = bench_find_ctl(&which);
  if (ctl == NULL || strcmp(which, "mprof") != 0 || n < r || reps < 1 || reps > 1000) {
    fprintf(stderr, "bench_snapshot: needs libmprof (mprof_ctl), --threads >= --running\n");
    return 2;
  }
  if (pipe(pipefd) != 0) return 1;
  pthread_attr_t a;
  pthread_attr_init(&a);
  pthread_attr_setstacksize(&a, 128 << 10);
  pthread_t* th = calloc((size_t)n, sizeof *th);
  for (int i = 0; i < n; i++) {
    if (pthread_create(&th[i], &a, i < r ? spin : wait_read, NULL) != 0) {
      fprintf(stderr, "bench_snapshot: pthread_create failed at %d\n", i);
      return 1;
    }
  }
  struct timespec settle = {0, 300000000};
  nanosleep(&settle, NULL);
  uint64_t pause[1000], total[1000], call[1000];
  char path[4096];
  for (int k = 0; k < reps; k++) {
    snprintf(path, sizeof path, "%s/bench_snapshot.%d.pb.gz", dir, k);
    const char* p = path;
    uint64_t t0 = bench_now_ns();
    int err = ctl("prof.threads.dump", NULL, NULL, &p, sizeof p);
    call[k] = bench_now_ns() - t0;
    if (err != 0) {
      fprintf(stderr, "bench_snapshot: prof.threads.dump: %s\n", strerror(err));
      return 1;
    }
    bench_ctl_u64(ctl, "stats.threads.longest_pause_ns", &pause[k]);
    bench_ctl_u64(ctl, "stats.threads.snapshot_ns", &total[k]);
    unlink(path);
  }
  atomic_store(&stop, 1);
  close(pipefd[1]);
  for (int i = 0; i < n; i++)
    pthread_join(th[i], NULL);
  qsort(pause, (size_t)reps, sizeof pause[0], cmp_u64);
  qsort(total, (size_t)reps, sizeof total[0], cmp_u64);
  qsort(call, (size_t)reps, sizeof call[0], cmp_u64);
  printf("RESULT threads=%d running=%d reps=%d pause_ns_median=%llu pause_ns_max=%llu "
         "snapshot_ns_median=%llu snapshot_ns_max=%llu call_ns_median=%llu\n",
         n, r, reps, (unsigned long long)pause[reps / 2], (unsigned long long)pause[reps - 1],
         (unsigned long long)total[reps / 2], (unsigned long long)total[reps - 1],
         (unsigned long long)call[reps / 2]);
  free(th);
  return 0;
}
