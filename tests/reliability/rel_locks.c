/* The profiler's own locks against a program that dumps, forks and takes signals
 * (rel_locks.sh runs it with each library, LD_PRELOAD):
 *
 *   stall DIR SECS   one thread creates 200 000 distinct sampled stacks, then dumps them in a
 *                    loop and writes `epoch` after each dump, for SECS seconds, while a second
 *                    thread (sampler_loop) allocates and frees small blocks, every one of them
 *                    sampled at lg_prof_sample:4 with automatic epochs (lg_prof_epoch:16); then
 *                    the contention profile is dumped to DIR/stall.mutex.pb.gz. The script sums
 *                    the sampler's recorded waits on profiler locks from it.
 *   forkpipe DIR     a thread dumps into a FIFO with a one-page buffer that nobody reads yet, so
 *                    its write blocks; the main thread forks meanwhile, and reads the FIFO only
 *                    after fork() returned. The child dumps to a file of its own (the dump lock
 *                    is free there) and keeps running until the parent has read the FIFO to its
 *                    end, which comes only once every copy of its write end is closed, the
 *                    child's included. A hang is caught by alarm() (the process dies).
 *   forkseed DIR     the parent and a child each run the same deterministic allocation sequence
 *                    (lg_prof_sample:8 wants a few hundred samples of it) and print the number of
 *                    samples (stats.samples delta): the same random sequence would give the same
 *                    number.
 *   sigstorm DIR N   four threads allocate (every allocation sampled) while the main thread sends
 *                    them SIGUSR2 N times; the handler calls mprof_ctl("prof.dump") to a file and
 *                    counts the codes it returned. Prints "codes ok=A edeadlk=B other=C". A hang
 *                    is caught by alarm().
 *   dlstorm DIR N LIB one thread loads LIB (dlopen), calls into it, walks the loaded objects
 *                    (dl_iterate_phdr) and unloads it (dlclose) in a loop, so that it is inside
 *                    the dynamic loader, holding its lock, most of the time; the main thread sends
 *                    it SIGUSR2 N times and the handler dumps as in sigstorm. Prints the same
 *                    codes line. A hang (a dump that waits for the loader) is caught by alarm().
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef int (*ctl_fn)(const char*, void*, size_t*, void*, size_t);
static ctl_fn ctl;
static const char* dir;

static void die(const char* what) {
  fprintf(stderr, "rel_locks: %s: %s\n", what, strerror(errno));
  _exit(2);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int dump_to(const char* name, const char* path) {
  return ctl(name, NULL, NULL, (void*)&path, sizeof path);
}

static uint64_t stat_u64(const char* name) {
  uint64_t v = 0;
  size_t len = sizeof v;
  if (ctl(name, &v, &len, NULL, 0) != 0) return UINT64_MAX;
  return v;
}

void* volatile sink;

/* ---------------------------------------------------------------------------------------------
 * Distinct stacks: a chain of `depth` calls, each through wa or wb as the bits say.
 * ------------------------------------------------------------------------------------------- */
__attribute__((noinline)) static void leaf_alloc(void) {
  void* p = malloc(4096);
  sink = p;
  free(p);
}

static void wb(int depth, unsigned bits);
__attribute__((noinline)) static void wa(int depth, unsigned bits) {
  if (depth == 0)
    leaf_alloc();
  else if (bits & 1)
    wa(depth - 1, bits >> 1);
  else
    wb(depth - 1, bits >> 1);
  __asm__ volatile("" ::: "memory"); /* no tail call: every level keeps its frame */
}

__attribute__((noinline)) static void wb(int depth, unsigned bits) {
  if (depth == 0)
    leaf_alloc();
  else if (bits & 1)
    wa(depth - 1, bits >> 1);
  else
    wb(depth - 1, bits >> 1);
  __asm__ volatile("" ::: "memory");
}

/* ---------------------------------------------------------------------------------------------
 * stall
 * ------------------------------------------------------------------------------------------- */
static atomic_bool stop;
static atomic_ulong sampler_ops;

__attribute__((noinline)) static void sampler_loop(void) {
  while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
    for (int i = 0; i < 64; i++) {
      void* p = malloc(48 + (size_t)(i & 7) * 8);
      sink = p;
      free(p);
    }
    atomic_fetch_add_explicit(&sampler_ops, 64, memory_order_relaxed);
  }
}

/* With prof_mutex_app:true (libmprof.so), the sampler's first wait is on this program mutex,
 * with no profiler lock held: the contention profile then has the thread's stack buffers before
 * any wait on a profiler lock, so every later one keeps its stack. */
static pthread_mutex_t warm_mu = PTHREAD_MUTEX_INITIALIZER;

static void* sampler_main(void* arg) {
  (void)arg;
  pthread_mutex_lock(&warm_mu);
  pthread_mutex_unlock(&warm_mu);
  sampler_loop();
  return NULL;
}

static int run_stall(double secs) {
  for (unsigned i = 0; i < 200000; i++)
    wa(18, i);
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/stall.pb.gz", dir);
  pthread_t t;
  pthread_mutex_lock(&warm_mu);
  if (pthread_create(&t, NULL, sampler_main, NULL) != 0) die("pthread_create");
  usleep(20000);
  pthread_mutex_unlock(&warm_mu);
  double end = now_s() + secs;
  int dumps = 0;
  while (now_s() < end) {
    int err = dump_to("prof.dump", path);
    if (err != 0) {
      fprintf(stderr, "rel_locks: prof.dump: %s\n", strerror(err));
      return 1;
    }
    uint64_t e = 1;
    if (ctl("epoch", NULL, NULL, &e, sizeof e) != 0) return 1;
    dumps++;
  }
  atomic_store(&stop, true);
  pthread_join(t, NULL);
  snprintf(path, sizeof path, "%s/stall.mutex.pb.gz", dir);
  int err = dump_to("prof.mutex.dump", path);
  if (err != 0) {
    fprintf(stderr, "rel_locks: prof.mutex.dump: %s\n", strerror(err));
    return 1;
  }
  printf("dumps %d buckets %llu sampler_ops %lu\n", dumps,
         (unsigned long long)stat_u64("stats.buckets"), atomic_load(&sampler_ops));
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * forkpipe
 * ------------------------------------------------------------------------------------------- */
static char fifo_path[PATH_MAX];
static atomic_int dump_result = -1;

static atomic_int dumper_tid;

/* True while thread `tid` is blocked in write(2) (the first field of its syscall file is the
 * system call's number, 1 for write on x86-64; elsewhere the check is left to FIONREAD). */
static bool blocked_in_write(int tid) {
#if defined(__x86_64__)
  char path[64], buf[32] = "";
  snprintf(path, sizeof path, "/proc/self/task/%d/syscall", tid);
  int fd = open(path, O_RDONLY);
  if (fd < 0) return true;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  return n > 2 && buf[0] == '1' && buf[1] == ' ';
#else
  (void)tid;
  return true;
#endif
}

static void* fifo_dumper(void* arg) {
  (void)arg;
  atomic_store(&dumper_tid, (int)gettid());
  atomic_store(&dump_result, dump_to("prof.dump", fifo_path));
  return NULL;
}

static int run_forkpipe(void) {
  alarm(60);
  for (unsigned i = 0; i < 2000; i++)
    wa(12, i); /* some stacks: the profile is larger than the FIFO's page */
  snprintf(fifo_path, sizeof fifo_path, "%s/fifo", dir);
  if (mkfifo(fifo_path, 0600) != 0) die("mkfifo");
  int rfd = open(fifo_path, O_RDONLY | O_NONBLOCK);
  if (rfd < 0) die("open fifo");
  if (fcntl(rfd, F_SETPIPE_SZ, 4096) < 0) die("F_SETPIPE_SZ");
  int sync_pipe[2];
  if (pipe(sync_pipe) != 0) die("pipe");
  pthread_t t;
  if (pthread_create(&t, NULL, fifo_dumper, NULL) != 0) die("pthread_create");
  /* Wait until the dump filled the FIFO: its next write blocks. A one-page FIFO is full when
   * its one buffer slot is taken, which may hold only a few bytes (a small first write, then a
   * large one that cannot get a second slot), so "full" is: bytes in it, no more arriving and
   * the dumping thread in write(2), for 200 ms, while the dump has not returned. */
  int last = -1, still = 0;
  for (int i = 0;; i++) {
    int n = 0;
    if (ioctl(rfd, FIONREAD, &n) == 0 && n > 0 && n == last &&
        blocked_in_write(atomic_load(&dumper_tid))) {
      if (++still >= 200) break;
    } else {
      still = 0;
    }
    last = n;
    if (atomic_load(&dump_result) != -1) {
      fprintf(stderr, "rel_locks: the dump ended before filling the FIFO (%d)\n",
              atomic_load(&dump_result));
      return 1;
    }
    if (i > 20000) {
      fprintf(stderr, "rel_locks: the dump never filled the FIFO\n");
      return 1;
    }
    usleep(1000);
  }
  usleep(50000); /* the writer is now blocked in write() */
  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    close(sync_pipe[1]);
    close(rfd);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/child.pb.gz", dir);
    for (unsigned i = 0; i < 100; i++)
      wa(6, i);
    int err = dump_to("prof.dump", path);
    char c;
    /* Stay alive until the parent has read the FIFO to its end. */
    ssize_t r = read(sync_pipe[0], &c, 1);
    (void)r;
    _exit(err == 0 ? 0 : 10 + err);
  }
  close(sync_pipe[0]);
  printf("fork returned\n");
  fflush(stdout);
  /* Now read the FIFO: the parent's dump completes; EOF needs every write end closed. */
  int fl = fcntl(rfd, F_GETFL);
  fcntl(rfd, F_SETFL, fl & ~O_NONBLOCK);
  char buf[4096];
  size_t total = 0;
  for (;;) {
    ssize_t n = read(rfd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    total += (size_t)n;
  }
  pthread_join(t, NULL);
  printf("fifo eof after %zu bytes, parent dump %d\n", total, atomic_load(&dump_result));
  close(sync_pipe[1]);
  int st;
  if (waitpid(pid, &st, 0) != pid) die("waitpid");
  printf("child status %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
  return atomic_load(&dump_result) == 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}

/* ---------------------------------------------------------------------------------------------
 * forkseed
 * ------------------------------------------------------------------------------------------- */
static void seeded_work(const char* who) {
  uint64_t before = stat_u64("stats.samples");
  for (unsigned i = 0; i < 20000; i++) {
    void* p = malloc(16 + (i % 13) * 8);
    sink = p;
    free(p);
  }
  uint64_t after = stat_u64("stats.samples");
  printf("%s samples %llu\n", who, (unsigned long long)(after - before));
  fflush(stdout);
}

static int run_forkseed(void) {
  alarm(60);
  void* warm = malloc(64); /* the thread's sampling state exists before the fork */
  sink = warm;
  free(warm);
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    seeded_work("child");
    _exit(0);
  }
  int st;
  if (waitpid(pid, &st, 0) != pid) die("waitpid");
  seeded_work("parent");
  return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}

/* ---------------------------------------------------------------------------------------------
 * sigstorm
 * ------------------------------------------------------------------------------------------- */
static atomic_ulong code_ok, code_edeadlk, code_other;
static char storm_path[PATH_MAX];

static void on_usr2(int sig) {
  (void)sig;
  int saved = errno;
  int err = dump_to("prof.dump", storm_path);
  if (err == 0)
    atomic_fetch_add(&code_ok, 1);
  else if (err == EDEADLK)
    atomic_fetch_add(&code_edeadlk, 1);
  else
    atomic_fetch_add(&code_other, 1);
  errno = saved;
}

__attribute__((noinline)) static void storm_worker_loop(void) {
  void* keep[64] = {NULL};
  for (unsigned i = 0; !atomic_load_explicit(&stop, memory_order_relaxed); i++) {
    unsigned k = i % 64;
    free(keep[k]);
    keep[k] = malloc(16 + (i % 29) * 24);
    if (i % 3 == 0) wa(4, i);
  }
  for (int k = 0; k < 64; k++)
    free(keep[k]);
}

static void* storm_worker(void* arg) {
  (void)arg;
  storm_worker_loop();
  return NULL;
}

static int run_sigstorm(long n) {
  alarm(30);
  snprintf(storm_path, sizeof storm_path, "%s/storm.pb.gz", dir);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr2;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGUSR2, &sa, NULL) != 0) die("sigaction");
  /* The main thread only sends. */
  sigset_t block;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR2);
  enum { NW = 4 };
  pthread_t w[NW];
  for (int i = 0; i < NW; i++)
    if (pthread_create(&w[i], NULL, storm_worker, NULL) != 0) die("pthread_create");
  pthread_sigmask(SIG_BLOCK, &block, NULL);
  for (long i = 0; i < n; i++) {
    pthread_kill(w[i % NW], SIGUSR2);
    if (i % 8 == 7) usleep(500);
  }
  atomic_store(&stop, true);
  for (int i = 0; i < NW; i++)
    pthread_join(w[i], NULL);
  printf("codes ok=%lu edeadlk=%lu other=%lu\n", atomic_load(&code_ok), atomic_load(&code_edeadlk),
         atomic_load(&code_other));
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * dlstorm
 * ------------------------------------------------------------------------------------------- */
static const char* dl_lib;
static atomic_ulong dl_rounds;

static int count_object(struct dl_phdr_info* info, size_t size, void* arg) {
  (void)info;
  (void)size;
  ++*(unsigned long*)arg;
  return 0;
}

static void* dl_worker(void* arg) {
  (void)arg;
  while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
    void* h = dlopen(dl_lib, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
      fprintf(stderr, "rel_locks: dlopen %s: %s\n", dl_lib, dlerror());
      _exit(2);
    }
    void* (*alloc)(size_t);
    *(void**)&alloc = dlsym(h, "rel_maplib_alloc");
    if (alloc != NULL) free(alloc(64));
    /* Many short walks: the loader's recursive lock is taken and released often, and a handler
     * that lands between its owner field and its lock word (either way) finds it held by no one
     * it knows, and used to wait for it for ever. */
    unsigned long n = 0;
    for (int i = 0; i < 3000; i++)
      dl_iterate_phdr(count_object, &n);
    dlclose(h);
    atomic_fetch_add(&dl_rounds, 1);
  }
  return NULL;
}

static int run_dlstorm(long n, const char* lib) {
  alarm(30);
  dl_lib = lib;
  snprintf(storm_path, sizeof storm_path, "%s/dlstorm.pb.gz", dir);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr2;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGUSR2, &sa, NULL) != 0) die("sigaction");
  sigset_t block;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR2);
  pthread_t w;
  if (pthread_create(&w, NULL, dl_worker, NULL) != 0) die("pthread_create");
  pthread_sigmask(SIG_BLOCK, &block, NULL);
  /* One signal at a time, each after the previous handler returned and the worker ran on for a
   * little while: a signal sent while a handler runs would be delivered as that handler returns,
   * at the same point of the worker as before. */
  for (long i = 0; i < n; i++) {
    unsigned long before =
        atomic_load(&code_ok) + atomic_load(&code_edeadlk) + atomic_load(&code_other);
    pthread_kill(w, SIGUSR2);
    while (atomic_load(&code_ok) + atomic_load(&code_edeadlk) + atomic_load(&code_other) == before)
      usleep(20); /* a handler that never returns ends the process at the alarm */
    usleep((useconds_t)(i % 11) * 15);
  }
  atomic_store(&stop, true);
  if (pthread_join(w, NULL) != 0) die("pthread_join");
  printf("dl rounds %lu\n", atomic_load(&dl_rounds));
  printf("codes ok=%lu edeadlk=%lu other=%lu\n", atomic_load(&code_ok), atomic_load(&code_edeadlk),
         atomic_load(&code_other));
  return 0;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: rel_locks stall|forkpipe|forkseed|sigstorm|dlstorm DIR [ARG [LIB]]\n");
    return 2;
  }
  *(void**)&ctl = dlsym(RTLD_DEFAULT, "mprof_ctl");
  if (ctl == NULL) {
    fprintf(stderr, "rel_locks: mprof_ctl not found (run with LD_PRELOAD)\n");
    return 2;
  }
  dir = argv[2];
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (strcmp(argv[1], "stall") == 0) return run_stall(argc > 3 ? atof(argv[3]) : 3.0);
  if (strcmp(argv[1], "forkpipe") == 0) return run_forkpipe();
  if (strcmp(argv[1], "forkseed") == 0) return run_forkseed();
  if (strcmp(argv[1], "sigstorm") == 0) return run_sigstorm(argc > 3 ? atol(argv[3]) : 2000);
  if (strcmp(argv[1], "dlstorm") == 0 && argc > 4) return run_dlstorm(atol(argv[3]), argv[4]);
  return 2;
}
