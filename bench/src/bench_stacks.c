/* Scale: a profile with many distinct call stacks.
 *
 *   bench_stacks --out DIR [--stacks 100000] [--dumps 3]
 *
 * Run it with every allocation sampled (MPROF_CONF=lg_prof_sample:0, or jemalloc's
 * MALLOC_CONF=prof:true,lg_prof_sample:0). Distinct stacks come from a tree of ten noinline
 * functions: path i (written in base 10 with `levels` digits) calls node[d0] -> node[d1] -> ...
 * and the last node mallocs, so 5 levels give 100 000 distinct stacks of known depth.
 *
 * For each stage (1, 1 000, 10 000, 100 000 stacks, capped at --stacks) it reports the profiler's
 * buckets and metadata, the time of an epoch (`epoch` control) and of a dump (`prof.dump`). Then
 * it keeps one sampled block live per stack to measure metadata per sampled block, and finally
 * measures the malloc latency of a second thread that keeps allocating (mostly one known stack,
 * one in 16 along a new stack), first for a window with no dump, then while the main thread
 * dumps. The control function is mprof_ctl or jemalloc's mallctl, found with dlsym; names one of
 * them lacks are reported as -1. */
#include "bench_common.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define FANOUT 10
#define MAX_LEVELS 8

typedef void* (*node_fn)(const unsigned char* path, unsigned level, unsigned n, size_t size);
static volatile unsigned
    node_hits[FANOUT]; /* distinct per node: identical bodies would be folded */
static const node_fn nodes[FANOUT];

#define NODE(k)                                                                                    \
  __attribute__((noinline)) static void* node##k(const unsigned char* path, unsigned level,        \
                                                 unsigned n, size_t size) {                        \
    node_hits[k]++;                                                                                \
    void* r = level == n ? malloc(size) : nodes[path[level]](path, level + 1, n, size);            \
    bench_escape(r);                                                                               \
    return r;                                                                                      \
  }
NODE(0)
NODE(1)
NODE(2)
NODE(3)
NODE(4)
NODE(5)
NODE(6)
NODE(7)
NODE(8)
NODE(9)
static const node_fn nodes[FANOUT] = {node0, node1, node2, node3, node4,
                                      node5, node6, node7, node8, node9};

/* Allocates `size` bytes from the distinct stack number i of the tree with `levels` levels. */
static void* alloc_at_path(uint64_t i, unsigned levels, size_t size) {
  unsigned char path[MAX_LEVELS];
  for (unsigned l = levels; l-- > 0;) {
    path[l] = (unsigned char)(i % FANOUT);
    i /= FANOUT;
  }
  return nodes[path[0]](path, 1, levels, size);
}

/* Allocates along stacks [from, to) of the 5-level tree; frees each block at once, or keeps it in
 * keep[i]. */
__attribute__((noinline)) static void walk_paths(uint64_t from, uint64_t to, void** keep) {
  for (uint64_t i = from; i < to; i++) {
    void* p = alloc_at_path(i, 5, 64);
    if (keep != NULL)
      keep[i] = p;
    else
      free(p);
  }
}

/* Every walk runs on one walker thread from one call site, so that all walks share their stacks
 * (and buckets): two call sites in main, or a compiler that duplicates one, would make every
 * stack distinct again. main hands it a request and waits for it between two barriers. */
static struct {
  pthread_barrier_t go, done;
  uint64_t from, to;
  void** keep;
  bool quit;
} walker;

static void* walker_main(void* arg) {
  (void)arg;
  for (;;) {
    pthread_barrier_wait(&walker.go);
    if (walker.quit) return NULL;
    walk_paths(walker.from, walker.to, walker.keep);
    pthread_barrier_wait(&walker.done);
  }
}

static void walk(uint64_t from, uint64_t to, void** keep) {
  walker.from = from;
  walker.to = to;
  walker.keep = keep;
  pthread_barrier_wait(&walker.go);
  pthread_barrier_wait(&walker.done);
}

static bench_ctl_fn ctl;
static const char* ctl_owner;

static int64_t stat_or_neg(const char* name) {
  uint64_t v;
  return bench_ctl_u64(ctl, name, &v) == 0 ? (int64_t)v : -1;
}

static int do_epoch(void) {
  uint64_t one = 1;
  return ctl("epoch", NULL, NULL, &one, sizeof one);
}

static int do_dump(const char* path) {
  return ctl("prof.dump", NULL, NULL, &path, sizeof path);
}

static int cmp_u64(const void* a, const void* b) {
  uint64_t x = *(const uint64_t*)a, y = *(const uint64_t*)b;
  return x < y ? -1 : x > y;
}

static uint64_t median(uint64_t* v, size_t n) {
  qsort(v, n, sizeof *v, cmp_u64);
  return v[n / 2];
}

/* ------------------------------------------------------------------------------------------
 * The allocating thread of the latency test. Windows alternate: a dump window (the main thread
 * dumps), then an idle window of the same length (nothing else happens), --dumps times. Each
 * malloc's latency is charged to the window current when it started.
 * ---------------------------------------------------------------------------------------- */
#define MAX_WINDOWS 200

typedef struct lat_s {
  uint64_t count, max_ns, over_10us, over_100us, over_1ms;
  uint64_t hist[65]; /* hist[b]: latencies with bit length b */
  /* Mallocs over 100 us, by what the thread's context-switch counters say happened during them:
   * it blocked (voluntary switch: a lock, or the kernel's mmap lock), it was only preempted
   * (involuntary switch: the CPU was busy with something else), or it ran the whole time. */
  uint64_t slow_blocked, slow_preempted, slow_running;
  uint64_t max_not_preempted_ns; /* the longest malloc that was not merely preempted */
} lat_t;

static _Atomic int window = -1; /* -1 warm-up, -2 stop, else the window index */
static lat_t lat[MAX_WINDOWS];
static lat_t lat_warm;

static void* allocator_thread(void* arg) {
  (void)arg;
  uint64_t fresh = 0;
  for (uint64_t i = 0;; i++) {
    int w = atomic_load_explicit(&window, memory_order_acquire);
    if (w == -2) break;
    bool new_stack = (i & 15) == 0;
    struct rusage r0, r1;
    getrusage(RUSAGE_THREAD, &r0);
    uint64_t t0 = bench_now_ns();
    /* New stacks are 6-level paths, distinct from the main thread's 5-level ones. */
    void* p = new_stack ? alloc_at_path(fresh++, 6, 64) : malloc(64);
    uint64_t dt = bench_now_ns() - t0;
    getrusage(RUSAGE_THREAD, &r1);
    ((volatile char*)p)[0] = 1;
    free(p);
    lat_t* l = w >= 0 ? &lat[w] : &lat_warm;
    l->count++;
    if (dt > l->max_ns) l->max_ns = dt;
    l->over_10us += dt > 10000;
    l->over_100us += dt > 100000;
    l->over_1ms += dt > 1000000;
    l->hist[dt ? 64 - __builtin_clzll(dt) : 0]++;
    bool blocked = r1.ru_nvcsw != r0.ru_nvcsw, preempted = r1.ru_nivcsw != r0.ru_nivcsw;
    if (!(preempted && !blocked) && dt > l->max_not_preempted_ns) l->max_not_preempted_ns = dt;
    if (dt > 100000) {
      if (blocked)
        l->slow_blocked++;
      else if (preempted)
        l->slow_preempted++;
      else
        l->slow_running++;
    }
  }
  return NULL;
}

/* Sums the windows of one kind (parity 0 = dump, 1 = idle) and prints them. */
static void print_lat(const char* name, int parity, int nwin) {
  lat_t sum;
  memset(&sum, 0, sizeof sum);
  uint64_t maxima[MAX_WINDOWS];
  int k = 0;
  for (int w = parity; w < nwin; w += 2) {
    const lat_t* l = &lat[w];
    sum.count += l->count;
    if (l->max_ns > sum.max_ns) sum.max_ns = l->max_ns;
    sum.over_10us += l->over_10us;
    sum.over_100us += l->over_100us;
    sum.over_1ms += l->over_1ms;
    sum.slow_blocked += l->slow_blocked;
    sum.slow_preempted += l->slow_preempted;
    sum.slow_running += l->slow_running;
    if (l->max_not_preempted_ns > sum.max_not_preempted_ns)
      sum.max_not_preempted_ns = l->max_not_preempted_ns;
    for (int b = 0; b < 65; b++)
      sum.hist[b] += l->hist[b];
    maxima[k++] = l->max_ns;
  }
  uint64_t want = sum.count / 1000, seen = 0, p999 = 0;
  for (int b = 0; b < 65; b++) {
    seen += sum.hist[b];
    if (seen > want) {
      p999 = b == 0 ? 0 : (b >= 64 ? UINT64_MAX : ((uint64_t)1 << b) - 1);
      break;
    }
  }
  uint64_t med = median(maxima, (size_t)k), mn = maxima[0];
  printf("RESULT kind=latency phase=%s windows=%d mallocs=%llu max_ns=%llu "
         "median_window_max_ns=%llu min_window_max_ns=%llu p999_ns_le=%llu over_10us=%llu "
         "over_100us=%llu over_1ms=%llu slow_blocked=%llu slow_preempted=%llu slow_running=%llu "
         "max_not_preempted_ns=%llu\n",
         name, k, (unsigned long long)sum.count, (unsigned long long)sum.max_ns,
         (unsigned long long)med, (unsigned long long)mn, (unsigned long long)p999,
         (unsigned long long)sum.over_10us, (unsigned long long)sum.over_100us,
         (unsigned long long)sum.over_1ms, (unsigned long long)sum.slow_blocked,
         (unsigned long long)sum.slow_preempted, (unsigned long long)sum.slow_running,
         (unsigned long long)sum.max_not_preempted_ns);
}

static void sleep_ns(uint64_t ns) {
  struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

int main(int argc, char** argv) {
  const char* out = bench_arg_str(argc, argv, "--out", NULL);
  long long nstacks = bench_arg(argc, argv, "--stacks", 100000);
  long long ndumps = bench_arg(argc, argv, "--dumps", 3);
  if (out == NULL || nstacks < 1 || nstacks > 100000 || ndumps < 1 || ndumps > MAX_WINDOWS / 2) {
    fprintf(stderr, "usage: bench_stacks --out DIR [--stacks 1..100000] [--dumps 1..100]\n");
    return 2;
  }
  ctl = bench_find_ctl(&ctl_owner);
  if (ctl == NULL) {
    printf("RESULT kind=skip reason=no_ctl\n");
    return 0;
  }
  mkdir(out, 0755);
  char path[4096];
  snprintf(path, sizeof path, "%s/stacks.%s.%ld.prof", out, ctl_owner, (long)getpid());

  pthread_t walker_tid;
  pthread_barrier_init(&walker.go, NULL, 2);
  pthread_barrier_init(&walker.done, NULL, 2);
  if (pthread_create(&walker_tid, NULL, walker_main, NULL) != 0) return 1;

  /* Stages: build the stacks, then time epochs and dumps at that size. The last step keeps one
   * block live per stack instead. */
  static const long long stages[] = {1, 1000, 10000, 100000};
  enum { NSTAGES = 4 };
  uint64_t built = 0;
  void** live = NULL;
  int64_t meta_at[NSTAGES + 1], buckets_at[NSTAGES + 1], blocks_at[NSTAGES + 1];
  int last = 0;
  for (int s = 0; s <= NSTAGES; s++) {
    bool keep = s == NSTAGES;
    uint64_t from = built, to = built;
    if (keep) {
      live = calloc(built, sizeof *live);
      if (live == NULL) return 1;
      from = 0;
      to = built;
    } else {
      to = (uint64_t)(stages[s] < nstacks ? stages[s] : nstacks);
      if (s > 0 && to <= built) continue;
    }
    uint64_t t0 = bench_now_ns();
    walk(from, to, live);
    uint64_t walk_ns = bench_now_ns() - t0;
    meta_at[s] = stat_or_neg("stats.metadata_bytes");
    buckets_at[s] = stat_or_neg("stats.buckets");
    blocks_at[s] = stat_or_neg("stats.sampled_blocks");
    if (keep) {
      printf("RESULT kind=blocks live=%llu buckets=%lld sampled_blocks=%lld metadata_bytes=%lld "
             "metadata_bytes_per_block=%.1f\n",
             (unsigned long long)built, (long long)buckets_at[s], (long long)blocks_at[s],
             (long long)meta_at[s],
             blocks_at[s] > blocks_at[last] && meta_at[last] >= 0
                 ? (double)(meta_at[s] - meta_at[last]) / (double)(blocks_at[s] - blocks_at[last])
                 : -1.0);
      /* Dumps with one sampled block live per stack: what the age split (prof_age) walks. */
      uint64_t ld[MAX_WINDOWS / 2];
      int ld_err = 0;
      for (long long k = 0; k < ndumps; k++) {
        uint64_t a = bench_now_ns();
        ld_err |= do_dump(path);
        ld[k] = bench_now_ns() - a;
      }
      printf("RESULT kind=live_dump stacks=%llu sampled_blocks=%lld dump_ns_median=%llu "
             "dump_err=%d\n",
             (unsigned long long)built, (long long)blocks_at[s],
             (unsigned long long)median(ld, (size_t)ndumps), ld_err);
      fflush(stdout);
      break;
    }
    uint64_t nnew = to - built;
    built = to;
    last = s;

    uint64_t ep[9], epmax = 0;
    int ep_err = 0;
    for (int k = 0; k < 9; k++) {
      uint64_t a = bench_now_ns();
      ep_err |= do_epoch();
      ep[k] = bench_now_ns() - a;
      if (ep[k] > epmax) epmax = ep[k];
    }
    uint64_t dm[MAX_WINDOWS / 2];
    int dump_err = 0;
    for (long long k = 0; k < ndumps; k++) {
      uint64_t a = bench_now_ns();
      dump_err |= do_dump(path);
      dm[k] = bench_now_ns() - a;
    }
    struct stat st;
    long long dump_bytes = stat(path, &st) == 0 ? (long long)st.st_size : -1;
    printf("RESULT kind=stage ctl=%s stacks=%llu buckets=%lld sampled_blocks=%lld "
           "metadata_bytes=%lld new_stack_sample_ns=%.0f epoch_ns_median=%llu epoch_ns_max=%llu "
           "epoch_err=%d dump_ns_median=%llu dump_bytes=%lld dump_err=%d\n",
           ctl_owner, (unsigned long long)built, (long long)buckets_at[s], (long long)blocks_at[s],
           (long long)meta_at[s], (double)walk_ns / (double)nnew, (unsigned long long)median(ep, 9),
           (unsigned long long)epmax, ep_err, (unsigned long long)median(dm, (size_t)ndumps),
           dump_bytes, dump_err);
    if (s == NSTAGES - 1 && meta_at[1] >= 0 && buckets_at[s] > buckets_at[1])
      printf("RESULT kind=per_bucket metadata_bytes_per_bucket=%.1f\n",
             (double)(meta_at[s] - meta_at[1]) / (double)(buckets_at[s] - buckets_at[1]));
    fflush(stdout);
  }
  fflush(stdout);

  /* Latency of a second allocating thread: dump windows alternating with idle windows. */
  int nwin = (int)(2 * ndumps);
  pthread_t tid;
  if (pthread_create(&tid, NULL, allocator_thread, NULL) != 0) return 1;
  sleep_ns(20 * 1000000u); /* warm-up: the thread's first samples, its stack buffer */
  uint64_t dump_ns = 0;
  int err = 0;
  for (int w = 0; w < nwin; w += 2) {
    atomic_store_explicit(&window, w, memory_order_release);
    uint64_t a = bench_now_ns();
    err |= do_dump(path);
    uint64_t d = bench_now_ns() - a;
    dump_ns += d;
    atomic_store_explicit(&window, w + 1, memory_order_release);
    sleep_ns(d);
  }
  atomic_store_explicit(&window, -2, memory_order_release);
  pthread_join(tid, NULL);
  printf("RESULT kind=latency_window dumps=%lld dump_ns_total=%llu dump_err=%d\n", ndumps,
         (unsigned long long)dump_ns, err);
  print_lat("dump", 0, nwin);
  print_lat("idle", 1, nwin);

  walker.quit = true;
  pthread_barrier_wait(&walker.go);
  pthread_join(walker_tid, NULL);
  for (uint64_t i = 0; i < built; i++)
    free(live[i]);
  free(live);
  unlink(path);
  return 0;
}
