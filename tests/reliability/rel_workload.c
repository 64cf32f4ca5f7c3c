/* A multithreaded program with known allocation sites, run under libmprof.so (LD_PRELOAD) with
 * every allocation sampled. rel_stress.sh compares its final profile, read by go tool pprof, with
 * the exact counts this program keeps itself.
 *
 * Waves of worker threads (more than there are cores) call malloc, calloc, realloc,
 * aligned_alloc, posix_memalign and memalign from one noinline function per call ("site"), free
 * blocks allocated by other threads (also after those threads have exited) and move blocks to
 * other sites with realloc; dumper threads advance epochs and dump with mprof_ctl in a loop.
 * Options add more going on at the same time:
 *
 *   --fork N     a thread forks N times; each child allocates at site_child, dumps its own
 *                profile to DIR/child.PID.pb.gz, checks it, and exits; the parent waits for it
 *   --spawn N    a thread runs N posix_spawn()s of /bin/false and N system()s of "exit 5" and
 *                checks their exit status (both run profiled: the environment is inherited)
 *   --signals    a SIGPROF storm: a thread sends SIGPROF to the process as fast as it can and
 *                a CPU-time interval timer adds more; the handler does not allocate and is
 *                installed without SA_RESTART
 *   --ops N      operations per worker thread
 *   --huge-align posix_memalign also asks for alignments of 1 MiB to 64 MiB now and then
 *
 * It also checks that the process has exactly the threads it made (/proc/self/task) while a
 * wave of workers runs and once they are joined, and counts how many reallocs mimalloc
 * resized in place and how many it moved: both kinds must count as the free of the old block
 * and an allocation of the new size.
 *
 * Usage: rel_workload [options] DIR. The truth goes to stdout, one line per site:
 *   NAME ALLOC_OBJECTS ALLOC_BYTES INUSE_OBJECTS INUSE_BYTES
 * followed by "stats SAMPLES DROPPED" and "realloc IN_PLACE MOVED". The blocks still live at the end stay live through exit,
 * so the final profile (prof_final) shows them; DIR/last.pb.gz is a prof.dump of the same state.
 * Exit status 0 when every check inside the program passed. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rel_proc.h"

extern char** environ;

typedef int (*ctl_fn)(const char*, void*, size_t*, void*, size_t);
static ctl_fn ctl;

enum { S_MALLOC, S_CALLOC, S_REALLOC, S_ALIGNED, S_POSIX_MEMALIGN, S_MEMALIGN, NSITES };
static const char* const site_names[NSITES] = {"site_malloc",         "site_calloc",
                                               "site_realloc",        "site_aligned_alloc",
                                               "site_posix_memalign", "site_memalign"};

typedef struct {
  _Atomic uint64_t allocs, alloc_bytes, frees, free_bytes;
} counts_t;
static counts_t counts[NSITES];

typedef struct {
  char* p;
  size_t size;
  int site;
} block_t;

#define WAVES 5
#define THREADS_PER_WAVE 8
#define MAX_LIVE 64
#define MAILBOX 1024

static long ops_per_thread = 50000;
static int fork_count, spawn_count;
static bool signals_on, huge_align;
static _Atomic uint64_t realloc_in_place, realloc_moved;
static pthread_barrier_t wave_start, wave_end;
static const char* dir;

static _Atomic int failures;
static _Atomic int stop;

__attribute__((format(printf, 1, 2))) static void failure(const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n > sizeof buf - 2) n = (int)sizeof buf - 2;
  buf[n++] = '\n';
  if (write(STDERR_FILENO, buf, (size_t)n) < 0) {
  }
  atomic_fetch_add(&failures, 1);
}

static uint64_t rnd(uint64_t* s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

/* Writes the first and last byte: the memory is really usable, and the call is not the last
 * thing the site function does (no tail call, so its frame is on the stack). */
static void touch(char* p, size_t n, int site) {
  if (p == NULL) {
    failure("%s: allocation of %zu bytes failed: %s", site_names[site], n, strerror(errno));
    return;
  }
  p[0] = (char)n;
  if (n > 1) p[n - 1] = (char)site;
}

static void counted(int site, size_t n) {
  atomic_fetch_add(&counts[site].allocs, 1);
  atomic_fetch_add(&counts[site].alloc_bytes, n);
}

__attribute__((noinline)) static char* site_malloc(size_t n) {
  char* p = malloc(n);
  touch(p, n, S_MALLOC);
  return p;
}

__attribute__((noinline)) static char* site_calloc(size_t n) {
  char* p = calloc(n / 8 + 1, 8);
  touch(p, (n / 8 + 1) * 8, S_CALLOC);
  return p;
}

__attribute__((noinline)) static char* site_realloc(char* old, size_t n) {
  char first = old[0];
  char* p = realloc(old, n);
  if (p != NULL && p[0] != first) failure("realloc lost the contents");
  touch(p, n, S_REALLOC);
  return p;
}

__attribute__((noinline)) static char* site_aligned_alloc(size_t align, size_t n) {
  char* p = aligned_alloc(align, n);
  touch(p, n, S_ALIGNED);
  if (p != NULL && (uintptr_t)p % align != 0)
    failure("aligned_alloc(%zu, %zu) misaligned: %p", align, n, (void*)p);
  return p;
}

__attribute__((noinline)) static char* site_posix_memalign(size_t align, size_t n) {
  void* p = NULL;
  int err = posix_memalign(&p, align, n);
  if (err != 0) errno = err;
  touch(p, n, S_POSIX_MEMALIGN);
  if (p != NULL && (uintptr_t)p % align != 0)
    failure("posix_memalign(%zu, %zu) misaligned: %p", align, n, (void*)p);
  return p;
}

__attribute__((noinline)) static char* site_memalign(size_t align, size_t n) {
  char* p = memalign(align, n);
  touch(p, n, S_MEMALIGN);
  if (p != NULL && (uintptr_t)p % align != 0)
    failure("memalign(%zu, %zu) misaligned: %p", align, n, (void*)p);
  return p;
}

static void release(block_t* b) {
  if (b->p == NULL) return;
  if (b->p[0] != (char)b->size) failure("a block of %s was overwritten", site_names[b->site]);
  free(b->p);
  atomic_fetch_add(&counts[b->site].frees, 1);
  atomic_fetch_add(&counts[b->site].free_bytes, b->size);
  b->p = NULL;
}

/* A new block at a random site. Returns false if the allocation failed. */
static bool allocate(block_t* b, uint64_t r) {
  size_t n = 1 + (r >> 20) % ((r & 7) == 0 ? 262144 : 1024);
  size_t align = (size_t)16 << ((r >> 50) % 9);                                  /* 16 .. 4096 */
  if (huge_align && (r & 0x3ff) == 1) align = (size_t)1 << (20 + (r >> 54) % 7); /* 1-64 MiB */
  int site = (int)((r >> 40) % (NSITES - 1));
  if (site >= S_REALLOC) site++; /* realloc only moves existing blocks */
  if (align > 4096) site = S_POSIX_MEMALIGN;
  char* p = NULL;
  size_t req = n;
  switch (site) {
  case S_MALLOC:
    p = site_malloc(n);
    break;
  case S_CALLOC:
    p = site_calloc(n);
    req = (n / 8 + 1) * 8;
    break;
  case S_ALIGNED:
    n = (n + align - 1) / align * align;
    req = n;
    p = site_aligned_alloc(align, n);
    break;
  case S_POSIX_MEMALIGN:
    p = site_posix_memalign(align, n);
    break;
  default:
    p = site_memalign(align, n);
    break;
  }
  if (p == NULL) return false;
  counted(site, req);
  b->p = p;
  b->size = req;
  b->site = site;
  return true;
}

static bool move(block_t* b, uint64_t r) {
  size_t n = 1 + (r >> 24) % 8192;
  size_t old_size = b->size;
  int old_site = b->site;
  char* old = b->p;
  char* p = site_realloc(old, n);
  if (p == NULL) return false;
  atomic_fetch_add(p == old ? &realloc_in_place : &realloc_moved, 1);
  atomic_fetch_add(&counts[old_site].frees, 1);
  atomic_fetch_add(&counts[old_site].free_bytes, old_size);
  counted(S_REALLOC, n);
  b->p = p;
  b->size = n;
  b->site = S_REALLOC;
  return true;
}

/* --- Blocks handed between threads ------------------------------------------------------ */
static pthread_mutex_t mail_mu = PTHREAD_MUTEX_INITIALIZER;
static block_t mailbox[MAILBOX];
static int nmail;

static bool mail_put(const block_t* b) {
  pthread_mutex_lock(&mail_mu);
  bool ok = nmail < MAILBOX;
  if (ok) mailbox[nmail++] = *b;
  pthread_mutex_unlock(&mail_mu);
  return ok;
}

static bool mail_take(block_t* b) {
  pthread_mutex_lock(&mail_mu);
  bool ok = nmail > 0;
  if (ok) *b = mailbox[--nmail];
  pthread_mutex_unlock(&mail_mu);
  return ok;
}

static void* worker(void* arg) {
  uint64_t s = (uintptr_t)arg * 0x9e3779b97f4a7c15ull + 77;
  block_t live[MAX_LIVE];
  int n = 0;
  pthread_barrier_wait(&wave_start);
  for (long op = 0; op < ops_per_thread; op++) {
    uint64_t r = rnd(&s);
    unsigned what = (unsigned)(r % 8);
    if (n == 0 || (what < 4 && n < MAX_LIVE)) {
      if (allocate(&live[n], r)) n++;
    } else if (what == 4) {
      move(&live[(r >> 8) % (uint64_t)n], r);
    } else if (what == 5) {
      int k = (int)((r >> 8) % (uint64_t)n);
      if (mail_put(&live[k])) live[k] = live[--n];
    } else if (what == 6) {
      block_t b;
      if (mail_take(&b)) release(&b);
    } else {
      int k = (int)((r >> 8) % (uint64_t)n);
      release(&live[k]);
      live[k] = live[--n];
    }
  }
  for (int k = 0; k < n; k++)
    if (!mail_put(&live[k])) release(&live[k]);
  pthread_barrier_wait(&wave_end);
  return NULL;
}

static int dump_to(const char* path) {
  return ctl("prof.dump", NULL, NULL, &path, sizeof path);
}

static void* dumper(void* arg) {
  uintptr_t id = (uintptr_t)arg;
  char path[512];
  snprintf(path, sizeof path, "%s/loop%u.pb.gz", dir, (unsigned)id);
  for (unsigned i = 0; !atomic_load(&stop); i++) {
    uint64_t e = 1;
    size_t len = sizeof e;
    int err = ctl("epoch", &e, &len, &e, sizeof e);
    if (err != 0) failure("epoch: %s", strerror(err));
    if (i % 8 == id) {
      err = dump_to(path);
      if (err != 0) failure("prof.dump to %s: %s", path, strerror(err));
    }
  }
  return NULL;
}

/* --- fork ------------------------------------------------------------------------------------ */
#define CHILD_BLOCKS 1000

__attribute__((noinline)) static char* site_child(size_t n) {
  char* p = malloc(n);
  if (p != NULL) p[0] = 1;
  return p;
}

static int child_main(void) {
  alarm(30); /* a deadlocked child dies of SIGALRM, which the parent reports */
  static char* keep[CHILD_BLOCKS];
  for (int i = 0; i < CHILD_BLOCKS; i++) {
    keep[i] = site_child(100);
    char* tmp = malloc(5000);
    if (keep[i] == NULL || tmp == NULL) return 2;
    free(tmp);
  }
  char path[512];
  snprintf(path, sizeof path, "%s/child.%ld.pb.gz", dir, (long)getpid());
  int err = dump_to(path);
  if (err != 0) return 3;
  struct stat st;
  if (stat(path, &st) != 0 || st.st_size < 20) return 4;
  return 0;
}

static void* forker(void* arg) {
  (void)arg;
  for (int i = 0; i < fork_count; i++) {
    pid_t pid = fork();
    if (pid < 0) {
      failure("fork: %s", strerror(errno));
      break;
    }
    if (pid == 0) _exit(child_main());
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      failure("fork child %d: %s %d", i, WIFEXITED(status) ? "exit status" : "killed by signal",
              WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
  }
  while (!atomic_load(&stop)) /* stays until the end: main counts the process's threads */
    usleep(1000);
  return NULL;
}

/* --- posix_spawn and system ------------------------------------------------------------------ */
static void* spawner(void* arg) {
  (void)arg;
  for (int i = 0; i < spawn_count; i++) {
    char* argv[] = {"false", NULL};
    pid_t pid;
    int err = posix_spawn(&pid, "/bin/false", NULL, NULL, argv, environ);
    if (err != 0) {
      failure("posix_spawn: %s", strerror(err));
      break;
    }
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 1)
      failure("posix_spawn child status %#x", status);
    int rc = system("exit 5");
    if (rc == -1 || !WIFEXITED(rc) || WEXITSTATUS(rc) != 5) failure("system() returned %#x", rc);
  }
  while (!atomic_load(&stop)) /* stays until the end: main counts the process's threads */
    usleep(1000);
  return NULL;
}

/* --- SIGPROF storm --------------------------------------------------------------------------- */
static volatile sig_atomic_t sigs_seen;

static void on_sigprof(int sig) {
  (void)sig;
  int saved = errno;
  sigs_seen = sigs_seen + 1;
  errno = saved;
}

static void* signaller(void* arg) {
  (void)arg;
  while (!atomic_load(&stop)) {
    for (int i = 0; i < 100; i++)
      kill(getpid(), SIGPROF);
    usleep(100);
  }
  return NULL;
}

static void start_signals(pthread_t* t) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigprof;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0; /* no SA_RESTART: interrupted system calls return EINTR */
  sigaction(SIGPROF, &sa, NULL);
  struct itimerval it = {{0, 200}, {0, 200}};
  setitimer(ITIMER_PROF, &it, NULL);
  pthread_create(t, NULL, signaller, NULL);
}

static void stop_signals(pthread_t t) {
  pthread_join(t, NULL);
  struct itimerval off = {{0, 0}, {0, 0}};
  setitimer(ITIMER_PROF, &off, NULL);
  signal(SIGPROF, SIG_IGN);
}

static uint64_t stat_u64(const char* name) {
  uint64_t v = 0;
  size_t len = sizeof v;
  int err = ctl(name, &v, &len, NULL, 0);
  if (err != 0) failure("%s: %s", name, strerror(err));
  return v;
}

int main(int argc, char** argv) {
  int i = 1;
  for (; i < argc - 1; i++) {
    if (strcmp(argv[i], "--fork") == 0)
      fork_count = atoi(argv[++i]);
    else if (strcmp(argv[i], "--spawn") == 0)
      spawn_count = atoi(argv[++i]);
    else if (strcmp(argv[i], "--signals") == 0)
      signals_on = true;
    else if (strcmp(argv[i], "--huge-align") == 0)
      huge_align = true;
    else if (strcmp(argv[i], "--ops") == 0)
      ops_per_thread = atol(argv[++i]);
    else
      break;
  }
  if (i != argc - 1) {
    fprintf(stderr, "usage: rel_workload [--fork N] [--spawn N] [--signals] [--huge-align] "
                    "[--ops N] DIR\n");
    return 2;
  }
  dir = argv[i];
  void* sym = dlsym(RTLD_DEFAULT, "mprof_ctl");
  if (sym == NULL) {
    fprintf(stderr, "rel_workload: mprof_ctl not found: run under libmprof.so\n");
    return 2;
  }
  memcpy(&ctl, &sym, sizeof ctl);

  pthread_t sig_thread, d[2], f, sp;
  int mine = 1 + 2 + (signals_on ? 1 : 0) + (fork_count > 0) + (spawn_count > 0);
  pthread_barrier_init(&wave_start, NULL, THREADS_PER_WAVE + 1);
  pthread_barrier_init(&wave_end, NULL, THREADS_PER_WAVE + 1);
  if (signals_on) start_signals(&sig_thread);
  for (uintptr_t k = 0; k < 2; k++)
    pthread_create(&d[k], NULL, dumper, (void*)k);
  if (fork_count > 0) pthread_create(&f, NULL, forker, NULL);
  if (spawn_count > 0) pthread_create(&sp, NULL, spawner, NULL);
  for (uintptr_t wave = 0; wave < WAVES; wave++) {
    pthread_t w[THREADS_PER_WAVE];
    for (uintptr_t k = 0; k < THREADS_PER_WAVE; k++)
      pthread_create(&w[k], NULL, worker, (void*)(wave * THREADS_PER_WAVE + k + 1));
    pthread_barrier_wait(&wave_start); /* every worker runs until wave_end */
    int tasks = rel_task_count_settled(mine + THREADS_PER_WAVE);
    if (tasks != mine + THREADS_PER_WAVE)
      failure("%d threads in /proc/self/task during a wave, want %d", tasks,
              mine + THREADS_PER_WAVE);
    pthread_barrier_wait(&wave_end);
    for (int k = 0; k < THREADS_PER_WAVE; k++)
      pthread_join(w[k], NULL);
  }
  atomic_store(&stop, 1);
  if (fork_count > 0) pthread_join(f, NULL);
  if (spawn_count > 0) pthread_join(sp, NULL);
  for (int k = 0; k < 2; k++)
    pthread_join(d[k], NULL);
  if (signals_on) {
    stop_signals(sig_thread);
    fprintf(stderr, "rel_workload: %ld SIGPROF handled\n", (long)sigs_seen);
    if (sigs_seen < 100) failure("the SIGPROF storm did not happen (%ld)", (long)sigs_seen);
  }

  int tasks = rel_task_count_settled(1);
  if (tasks != 1) failure("%d threads in /proc/self/task once every thread was joined", tasks);

  /* The survivors stay live through exit. */
  char path[512];
  snprintf(path, sizeof path, "%s/last.pb.gz", dir);
  int err = dump_to(path);
  if (err != 0) failure("final prof.dump: %s", strerror(err));
  for (int s = 0; s < NSITES; s++) {
    uint64_t a = atomic_load(&counts[s].allocs), ab = atomic_load(&counts[s].alloc_bytes);
    uint64_t f_ = atomic_load(&counts[s].frees), fb = atomic_load(&counts[s].free_bytes);
    printf("%s %llu %llu %llu %llu\n", site_names[s], (unsigned long long)a, (unsigned long long)ab,
           (unsigned long long)(a - f_), (unsigned long long)(ab - fb));
  }
  printf("pid %ld\n", (long)getpid());
  printf("realloc %llu %llu\n", (unsigned long long)atomic_load(&realloc_in_place),
         (unsigned long long)atomic_load(&realloc_moved));
  printf("stats %llu %llu\n", (unsigned long long)stat_u64("stats.samples"),
         (unsigned long long)stat_u64("stats.dropped_samples"));
  fflush(stdout);
  return atomic_load(&failures) == 0 ? 0 : 1;
}
