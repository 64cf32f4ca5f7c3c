/* The thread snapshot (prof.threads.dump) with a real program.
 *
 *   it_threads snap FILE    named threads in known functions: spinning (in_spin), blocked in
 *                           read (in_read), nanosleep (in_nanosleep), poll (in_poll), epoll_wait
 *                           (in_epoll_wait) and waiting on a condition variable (in_cond_wait),
 *                           each having allocated a known amount it still holds; writes one
 *                           snapshot to FILE (and ten more, removed again), then prints
 *                           "eintr N" (the EINTR returns and spurious condition-variable wake-ups
 *                           the threads saw, and a changed errno or signal mask in the spinner)
 *                           and one "thread NAME TID" line per thread.
 *   it_threads exit DIR     snapshots while threads are created and exit all the time: every
 *                           snapshot succeeds; prints "snapshots N".
 *   it_threads fork DIR     snapshots while another thread forks all the time, and a snapshot in
 *                           each child: every one succeeds; prints "snapshots N children N".
 *   it_threads busy FILE    the program handles the snapshot's signal itself: the control call
 *                           fails with EBUSY and the program's handler is still in place.
 *   it_threads many N FILE  N sleeping threads and one snapshot; prints the snapshot's longest
 *                           pause and duration (stats.threads.*), for the benchmark.
 *   it_threads auto         raises SIGUSR2 (prof_dump_signal) and allocates, then exits: with
 *                           prof_dump_threads the signal's and the final dump write snapshots.
 *   it_threads quiet        allocates without taking a snapshot: prints the disposition of the
 *                           snapshot's signal ("default": the profiler installed nothing).
 *   it_threads novm FILE    as snap, but process_vm_readv is refused (a seccomp filter, as some
 *                           containers have): every thread is then taken by the signal.
 */
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int (*ctl)(const char*, void*, size_t*, void*, size_t);

static int threads_dump(const char* path) {
  return ctl("prof.threads.dump", NULL, NULL, &path, sizeof path);
}

static atomic_int eintr_seen;
static atomic_int ready;
static atomic_int stop;
static int pipe_read[2], pipe_poll[2];
static int ep;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int cond_flag;

/* Each thread allocates (and keeps) an amount of its own, so that the heap per thread can be
 * checked: k MiB in 16 KiB blocks (after a first small allocation, which a thread's sampler may
 * spend on starting up). */
#define CHUNK (16 << 10)
static void* hold(int k) {
  free(malloc(16));
  size_t n = (size_t)k * 64;
  char** p = malloc((n + 1) * sizeof *p);
  for (size_t i = 0; i < n; i++) {
    p[i] = malloc(CHUNK);
    memset(p[i], k, CHUNK);
  }
  p[n] = NULL;
  return p;
}

static void release(void* held) {
  char** p = held;
  for (size_t i = 0; p[i] != NULL; i++)
    free(p[i]);
  free(p);
}

/* Interrupted by the snapshot's handler: errno and the signal mask must be as they were. */
__attribute__((noinline)) static void in_spin(void) {
  sigset_t before, after;
  sigemptyset(&before);
  sigaddset(&before, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &before, NULL);
  pthread_sigmask(SIG_BLOCK, NULL, &before);
  errno = EDOM;
  volatile uint64_t x = 0;
  while (!atomic_load(&stop))
    x++;
  int e = errno;
  sigemptyset(&after);
  pthread_sigmask(SIG_BLOCK, NULL, &after);
  int same = 1;
  for (int sig = 1; sig < SIGRTMAX; sig++)
    same &= sigismember(&before, sig) == sigismember(&after, sig);
  if (e != EDOM || !same) atomic_fetch_add(&eintr_seen, 1);
}

__attribute__((noinline)) static void in_read(void) {
  char c;
  for (;;) {
    ssize_t n = read(pipe_read[0], &c, 1);
    if (n < 0 && errno == EINTR) {
      atomic_fetch_add(&eintr_seen, 1);
      continue;
    }
    return;
  }
}

__attribute__((noinline)) static void in_nanosleep(void) {
  struct timespec ts = {3600, 0};
  while (!atomic_load(&stop)) {
    if (nanosleep(&ts, &ts) != 0 && errno == EINTR) atomic_fetch_add(&eintr_seen, 1);
  }
}

__attribute__((noinline)) static void in_poll(void) {
  struct pollfd p = {pipe_poll[0], POLLIN, 0};
  for (;;) {
    int n = poll(&p, 1, -1);
    if (n < 0 && errno == EINTR) {
      atomic_fetch_add(&eintr_seen, 1);
      continue;
    }
    return;
  }
}

__attribute__((noinline)) static void in_epoll_wait(void) {
  struct epoll_event ev;
  for (;;) {
    int n = epoll_wait(ep, &ev, 1, -1);
    if (n < 0 && errno == EINTR) {
      atomic_fetch_add(&eintr_seen, 1);
      continue;
    }
    return;
  }
}

__attribute__((noinline)) static void in_cond_wait(void) {
  pthread_mutex_lock(&mu);
  while (!cond_flag) {
    pthread_cond_wait(&cv, &mu);
    if (!cond_flag) atomic_fetch_add(&eintr_seen, 1); /* a wake-up nobody asked for */
  }
  pthread_mutex_unlock(&mu);
}

typedef struct job_s {
  const char* name;
  void (*fn)(void);
  int k;
  pid_t tid;
} job_t;

static void* run_job(void* arg) {
  job_t* j = arg;
  pthread_setname_np(pthread_self(), j->name);
  j->tid = gettid();
  void* p = hold(j->k);
  atomic_fetch_add(&ready, 1);
  j->fn();
  release(p);
  return NULL;
}

/* True once thread tid sits in a system call (/proc/self/task/TID/syscall is not "running"). */
static int blocked(pid_t tid) {
  char path[64], buf[64] = "";
  snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
  FILE* f = fopen(path, "r");
  if (f == NULL) return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  return strncmp(buf, "running", 7) != 0;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
  nanosleep(&ts, NULL);
}

static int snap(const char* file) {
  static job_t jobs[] = {
      {"spinner", in_spin, 1, 0},       {"reader", in_read, 2, 0},
      {"sleeper", in_nanosleep, 3, 0},  {"poller", in_poll, 4, 0},
      {"epoller", in_epoll_wait, 5, 0}, {"condwaiter", in_cond_wait, 6, 0},
  };
  enum { NJOBS = sizeof jobs / sizeof jobs[0] };
  if (pipe(pipe_read) != 0 || pipe(pipe_poll) != 0) return 1;
  ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN};
  if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, pipe_poll[0], &ev) != 0) return 1;
  pthread_t th[NJOBS];
  for (int i = 0; i < NJOBS; i++)
    pthread_create(&th[i], NULL, run_job, &jobs[i]);
  while (atomic_load(&ready) < NJOBS)
    sleep_ms(1);
  for (int i = 1; i < NJOBS; i++) { /* all but the spinner in their calls */
    while (!blocked(jobs[i].tid))
      sleep_ms(1);
  }
  sleep_ms(20);
  struct sigaction before;
  sigaction(SIGRTMAX - 7, NULL, &before);
  printf("handler_before %s\n", before.sa_handler == SIG_DFL ? "default" : "other");
  int err = threads_dump(file);
  if (err != 0) {
    fprintf(stderr, "prof.threads.dump: %s\n", strerror(err));
    return 1;
  }
  /* More snapshots, to give a wrongly sent signal more chances to show as EINTR. */
  for (int i = 0; i < 10; i++) {
    char more[4096];
    snprintf(more, sizeof more, "%s.%d", file, i);
    if (threads_dump(more) != 0) return 1;
    unlink(more);
  }
  sleep_ms(50); /* a late signal would show as EINTR by now */
  atomic_store(&stop, 1);
  pthread_join(th[0], NULL); /* the spinner: it checks its errno and mask as it leaves */
  printf("eintr %d\n", atomic_load(&eintr_seen));
  printf("thread main %d\n", (int)gettid());
  for (int i = 0; i < NJOBS; i++)
    printf("thread %s %d\n", jobs[i].name, (int)jobs[i].tid);
  fflush(stdout);
  /* Let every thread go and end. */
  atomic_store(&stop, 1);
  if (write(pipe_read[1], "x", 1) != 1 || write(pipe_poll[1], "x", 1) != 1) return 1;
  pthread_mutex_lock(&mu);
  cond_flag = 1;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
  for (int i = 1; i < NJOBS; i++) {
    if (jobs[i].fn == in_nanosleep) {
      pthread_cancel(th[i]);
    }
    pthread_join(th[i], NULL);
  }
  return 0;
}

static void* short_lived(void* arg) {
  (void)arg;
  release(hold(1));
  return NULL;
}

static void* churn(void* arg) {
  (void)arg;
  while (!atomic_load(&stop)) {
    pthread_t t;
    if (pthread_create(&t, NULL, short_lived, NULL) == 0) pthread_join(t, NULL);
  }
  return NULL;
}

static int exits(const char* dir) {
  pthread_t c[2];
  for (int i = 0; i < 2; i++)
    pthread_create(&c[i], NULL, churn, NULL);
  int n = 0;
  char path[4096];
  for (int i = 0; i < 30; i++) {
    snprintf(path, sizeof path, "%s/exit.%d.pb.gz", dir, i);
    int err = threads_dump(path);
    if (err != 0) {
      fprintf(stderr, "snapshot %d: %s\n", i, strerror(err));
      return 1;
    }
    n++;
  }
  atomic_store(&stop, 1);
  for (int i = 0; i < 2; i++)
    pthread_join(c[i], NULL);
  printf("snapshots %d\n", n);
  return 0;
}

static const char* fork_dir;
static atomic_int children_ok;

static void* forker(void* arg) {
  (void)arg;
  int k = 0;
  while (!atomic_load(&stop)) {
    pid_t pid = fork();
    if (pid == 0) {
      char path[4096];
      snprintf(path, sizeof path, "%s/child.%d.pb.gz", fork_dir, k);
      _exit(threads_dump(path) == 0 ? 0 : 1);
    }
    int st;
    if (pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0)
      atomic_fetch_add(&children_ok, 1);
    k++;
  }
  return NULL;
}

static int forks(const char* dir) {
  fork_dir = dir;
  pthread_t f;
  pthread_create(&f, NULL, forker, NULL);
  int n = 0;
  char path[4096];
  for (int i = 0; i < 20; i++) {
    snprintf(path, sizeof path, "%s/fork.%d.pb.gz", dir, i);
    int err = threads_dump(path);
    if (err != 0) {
      fprintf(stderr, "snapshot %d: %s\n", i, strerror(err));
      return 1;
    }
    n++;
    sleep_ms(5);
  }
  atomic_store(&stop, 1);
  pthread_join(f, NULL);
  printf("snapshots %d children %d\n", n, atomic_load(&children_ok));
  return 0;
}

static void program_handler(int sig) {
  (void)sig;
}

static int busy(const char* file) {
  int sig = SIGRTMAX - 7; /* the default prof_threads_signal */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = program_handler;
  sigaction(sig, &sa, NULL);
  int err = threads_dump(file);
  struct sigaction now;
  sigaction(sig, NULL, &now);
  printf("err %s handler %s\n", err == EBUSY ? "EBUSY" : strerror(err),
         now.sa_handler == program_handler ? "kept" : "replaced");
  return 0;
}

static void* idle(void* arg) {
  (void)arg;
  in_read();
  return NULL;
}

static int many(int n, const char* file) {
  if (pipe(pipe_read) != 0) return 1;
  pthread_attr_t a;
  pthread_attr_init(&a);
  pthread_attr_setstacksize(&a, 64 << 10);
  pthread_t* th = calloc((size_t)n, sizeof *th);
  for (int i = 0; i < n; i++)
    if (pthread_create(&th[i], &a, i % 2 ? idle : (void* (*)(void*))short_lived, NULL) != 0)
      return 1;
  sleep_ms(100);
  int err = threads_dump(file);
  uint64_t pause = 0, total = 0;
  size_t len = sizeof pause;
  ctl("stats.threads.longest_pause_ns", &pause, &len, NULL, 0);
  len = sizeof total;
  ctl("stats.threads.snapshot_ns", &total, &len, NULL, 0);
  printf("threads %d err %d longest_pause_ns %llu snapshot_ns %llu\n", n, err,
         (unsigned long long)pause, (unsigned long long)total);
  close(pipe_read[1]);
  for (int i = 0; i < n; i++)
    pthread_join(th[i], NULL);
  return err != 0;
}

static int auto_dump(void) {
  release(hold(1));
  raise(SIGUSR2);
  for (int i = 0; i < 100; i++)
    free(malloc(100));
  return 0;
}

static int quiet(void) {
  release(hold(2));
  struct sigaction now;
  sigaction(SIGRTMAX - 7, NULL, &now);
  printf("%s\n", now.sa_handler == SIG_DFL ? "default" : "other");
  return 0;
}

/* process_vm_readv fails with ENOSYS from now on, in this thread and those it creates. */
static int refuse_process_vm_readv(void) {
  struct sock_filter f[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_process_vm_readv, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {sizeof f / sizeof f[0], f};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -1;
  return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

int main(int argc, char** argv) {
  *(void**)&ctl = dlsym(RTLD_DEFAULT, "mprof_ctl");
  if (ctl == NULL) {
    fprintf(stderr, "mprof_ctl not found\n");
    return 1;
  }
  if (argc == 3 && strcmp(argv[1], "snap") == 0) return snap(argv[2]);
  if (argc == 3 && strcmp(argv[1], "novm") == 0) {
    if (refuse_process_vm_readv() != 0) {
      perror("seccomp");
      return 1;
    }
    return snap(argv[2]);
  }
  if (argc == 3 && strcmp(argv[1], "exit") == 0) return exits(argv[2]);
  if (argc == 3 && strcmp(argv[1], "fork") == 0) return forks(argv[2]);
  if (argc == 3 && strcmp(argv[1], "busy") == 0) return busy(argv[2]);
  if (argc == 2 && strcmp(argv[1], "auto") == 0) return auto_dump();
  if (argc == 2 && strcmp(argv[1], "quiet") == 0) return quiet();
  if (argc == 4 && strcmp(argv[1], "many") == 0) return many(atoi(argv[2]), argv[3]);
  fprintf(stderr, "usage: it_threads snap FILE | exit DIR | fork DIR | busy FILE | many N FILE\n");
  return 2;
}
