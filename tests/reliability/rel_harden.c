/* Hardening cases under libmprof.so (LD_PRELOAD), one per finding, driven by rel_harden.sh. Each
 * case prints "ok ..." / "FAIL ..." lines and exits 0 only if every check passed; a hang is
 * caught by alarm() here and by the driver's timeout. The cases that need an attacker fork a
 * child that switches to the unprivileged user REL_UID/REL_GID (created by the driver) before it
 * plants anything.
 *
 *   tmp_symlink       the other user plants symlinks at the old predictable temporary names;
 *                     explicit and automatic dumps still succeed and the victim file is intact;
 *                     that user's link and FIFO at explicit paths are refused (EACCES)
 *   auto_name_link    symlinks at automatic names (to /dev/null, to a victim file): EEXIST, the
 *                     links are left as they are; the final dump fails (see the driver)
 *   fifo_final_name   a FIFO at the final dump's name: exit() does not hang (see the driver)
 *   explicit_paths    prof.dump of a symlink to /dev/stdout with stdout in a file, of links to a
 *                     pipe, a terminal and a regular file, of a regular file, a FIFO with and
 *                     without a reader, a dangling link and a directory
 *   name_max          final names of 246 and 255 bytes
 *   fifo_mapping      a loaded library's file replaced by a FIFO: the dump does not hang
 *   sigpipe           the reader of the dump's pipe leaves during the write: EPIPE, no SIGPIPE
 *   cancel_dump       pthread_cancel of a thread blocked in a dump: no lock left behind
 *   signal_dump       prof.dump from a signal handler that interrupted a dump: EDEADLK
 *   join_exit         an exit handler joins a thread that calls exit(3) (the driver wants 3)
 *   fork_in_exit      a child forked while the parent is in exit() exits normally
 *   errno_first_sample  the first sampled malloc of the process (profiling is switched on in
 *                     main) and of a new thread keeps errno, called from code without unwind
 *                     tables (libunwind then validates frame addresses through its pipe)
 *   ctl_validate_first  writes with a wrong *oldlenp or newlen change nothing
 *   bytes_label       256-byte objects at the default rate (the driver reads the labels)
 *
 * Usage: rel_harden CASE DIR [ARG] */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

void* rel_alloc_without_unwind_info(size_t n); /* rel_harden_nounwind.c */

typedef int (*ctl_fn)(const char*, void*, size_t*, void*, size_t);
static ctl_fn ctl;
static const char* dir;
static int failures;

#define CHECK(cond, ...)                                                                           \
  do {                                                                                             \
    bool ok_ = (cond);                                                                             \
    printf("%s ", ok_ ? "ok  " : "FAIL");                                                          \
    printf(__VA_ARGS__);                                                                           \
    printf("\n");                                                                                  \
    fflush(stdout);                                                                                \
    if (!ok_) failures++;                                                                          \
  } while (0)

static int dump(const char* path) {
  return ctl("prof.dump", NULL, NULL, &path, sizeof path);
}

static uint64_t stat_u64(const char* name) {
  uint64_t v = 0;
  size_t len = sizeof v;
  ctl(name, &v, &len, NULL, 0);
  return v;
}

static void path_in(char* buf, size_t len, const char* name) {
  snprintf(buf, len, "%s/%s", dir, name);
}

/* The first two bytes of a gzip stream. */
static bool is_gzip_file(const char* path) {
  unsigned char b[2] = {0, 0};
  int fd = open(path, O_RDONLY | O_NONBLOCK);
  if (fd < 0) return false;
  ssize_t n = read(fd, b, 2);
  close(fd);
  return n == 2 && b[0] == 0x1f && b[1] == 0x8b;
}

static bool is_link_to(const char* path, const char* target) {
  char buf[4096];
  ssize_t n = readlink(path, buf, sizeof buf - 1);
  if (n < 0) return false;
  buf[n] = '\0';
  return strcmp(buf, target) == 0;
}

static bool file_is(const char* path, const char* content) {
  char buf[256];
  int fd = open(path, O_RDONLY);
  if (fd < 0) return false;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n < 0) return false;
  buf[n] = '\0';
  return strcmp(buf, content) == 0;
}

static int count_temporaries(void) {
  DIR* d = opendir(dir);
  if (d == NULL) return -1;
  int n = 0;
  struct dirent* e;
  while ((e = readdir(d)) != NULL)
    n += strstr(e->d_name, ".tmp") != NULL && strncmp(e->d_name, "planted", 7) != 0;
  closedir(d);
  return n;
}

static void* volatile sink;
__attribute__((noinline)) static void allocate_some(void) {
  for (int i = 0; i < 200; i++) {
    sink = malloc(64 + (size_t)i);
    free(sink);
  }
  sink = malloc(1000);
}

/* Runs fn as the unprivileged user of the driver, in a child. True if it returned true. */
static bool as_other_user(bool (*fn)(pid_t victim), pid_t victim) {
  const char* u = getenv("REL_UID");
  const char* g = getenv("REL_GID");
  if (u == NULL || g == NULL) {
    printf("FAIL REL_UID/REL_GID not set\n");
    return false;
  }
  pid_t pid = fork();
  if (pid == 0) {
    gid_t gid = (gid_t)atol(g);
    uid_t uid = (uid_t)atol(u);
    if (setgroups(0, NULL) != 0 || setresgid(gid, gid, gid) != 0 || setresuid(uid, uid, uid) != 0)
      _exit(2);
    _exit(fn(victim) ? 0 : 1);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* Waits until thread tid is blocked in write(2) (read from /proc). */
static bool wait_in_write(pid_t tid) {
  char path[64], buf[64];
  snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
  for (int i = 0; i < 20000; i++) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return false;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n > 0) {
      buf[n] = '\0';
      if (atol(buf) == SYS_write) {
        struct timespec ts = {0, 20 * 1000 * 1000}; /* let it settle in the kernel */
        nanosleep(&ts, NULL);
        return true;
      }
    }
    struct timespec ts = {0, 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  return false;
}

/* A pipe whose buffer is full, so that the next write to it blocks. */
static void full_pipe(int p[2]) {
  if (pipe(p) != 0) abort();
  fcntl(p[1], F_SETPIPE_SZ, 4096);
  fcntl(p[1], F_SETFL, O_NONBLOCK);
  char junk[4096];
  memset(junk, 'j', sizeof junk);
  while (write(p[1], junk, sizeof junk) > 0) {
  }
  while (write(p[1], junk, 1) > 0) {
  }
  fcntl(p[1], F_SETFL, 0);
}

/* --- tmp_symlink ----------------------------------------------------------------------------- */
static const char* victim_path;

static bool plant_tmp_links(pid_t victim) {
  char p[4096];
  snprintf(p, sizeof p, "%s/explicit.pb.gz", dir);
  if (symlink(victim_path, p) != 0) return false;
  snprintf(p, sizeof p, "%s/explicit-fifo", dir);
  if (mkfifo(p, 0666) != 0) return false;
  snprintf(p, sizeof p, "%s/heap.pb.gz.tmp.%d", dir, (int)victim);
  if (symlink(victim_path, p) != 0) return false;
  snprintf(p, sizeof p, "%s/auto.%s.%d.0.m0.pb.gz.tmp.%d", dir, program_invocation_short_name,
           (int)victim, (int)victim);
  return symlink(victim_path, p) == 0;
}

static void case_tmp_symlink(void) {
  CHECK(as_other_user(plant_tmp_links, getpid()),
        "the other user planted links at <path>.tmp.<pid>");
  allocate_some();
  char p[4096];
  path_in(p, sizeof p, "heap.pb.gz");
  CHECK(dump(p) == 0, "explicit dump to %s succeeds", p);
  CHECK(dump(NULL) == 0, "automatic dump succeeds");
  CHECK(file_is(victim_path, "precious\n"), "the victim file is intact");
  struct stat st;
  CHECK(lstat(p, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == getuid(),
        "the profile is a regular file of ours");
  CHECK(is_gzip_file(p), "the profile is gzip");
  char a[4096];
  snprintf(a, sizeof a, "%s/auto.%s.%d.0.m0.pb.gz", dir, program_invocation_short_name,
           (int)getpid());
  CHECK(lstat(a, &st) == 0 && S_ISREG(st.st_mode) && is_gzip_file(a), "automatic profile written");
  snprintf(a, sizeof a, "%s/heap.pb.gz.tmp.%d", dir, (int)getpid());
  CHECK(is_link_to(a, victim_path), "the planted link is left as it was");
  /* The other user's link and FIFO at explicit paths are not followed or written into. */
  path_in(p, sizeof p, "explicit.pb.gz");
  int err = dump(p);
  CHECK(err == EACCES, "explicit dump onto the other user's link -> %s (want EACCES)",
        strerror(err));
  CHECK(is_link_to(p, victim_path), "that link is left as it was");
  path_in(p, sizeof p, "explicit-fifo");
  err = dump(p);
  CHECK(err == EACCES, "explicit dump into the other user's FIFO -> %s (want EACCES)",
        strerror(err));
  CHECK(file_is(victim_path, "precious\n"), "the victim file is still intact");
}

/* --- auto_name_link -------------------------------------------------------------------------- */
static bool plant_name_links(pid_t victim) {
  char p[4096];
  snprintf(p, sizeof p, "%s/auto.%s.%d.0.m0.pb.gz", dir, program_invocation_short_name,
           (int)victim);
  if (symlink("/dev/null", p) != 0) return false;
  snprintf(p, sizeof p, "%s/auto.%s.%d.1.f.pb.gz", dir, program_invocation_short_name, (int)victim);
  return symlink(victim_path, p) == 0;
}

static void case_auto_name_link(void) {
  CHECK(as_other_user(plant_name_links, getpid()),
        "the other user planted links at automatic names");
  allocate_some();
  uint64_t errors = stat_u64("stats.dump_errors");
  int err = dump(NULL);
  CHECK(err == EEXIST, "automatic dump onto a link -> %s", strerror(err));
  CHECK(stat_u64("stats.dump_errors") == errors + 1, "counted in stats.dump_errors");
  char p[4096];
  snprintf(p, sizeof p, "%s/auto.%s.%d.0.m0.pb.gz", dir, program_invocation_short_name,
           (int)getpid());
  CHECK(is_link_to(p, "/dev/null"), "the link is left as it was");
  /* The final dump (prof_final) meets the second link at exit: checked by the driver. */
}

/* --- fifo_final_name ------------------------------------------------------------------------- */
static bool plant_fifo(pid_t victim) {
  char p[4096];
  snprintf(p, sizeof p, "%s/auto.%s.%d.0.f.pb.gz", dir, program_invocation_short_name, (int)victim);
  return mkfifo(p, 0666) == 0;
}

static void case_fifo_final_name(void) {
  CHECK(as_other_user(plant_fifo, getpid()), "the other user planted a FIFO at the final name");
  allocate_some();
  alarm(0); /* the driver's timeout catches a hang in exit() */
}

/* --- explicit_paths -------------------------------------------------------------------------- */
typedef struct {
  int fd;
  size_t got;
  unsigned char head[2];
} reader_t;

static void* read_all(void* arg) {
  reader_t* r = arg;
  unsigned char buf[4096];
  ssize_t n;
  while ((n = read(r->fd, buf, sizeof buf)) > 0) {
    for (ssize_t i = 0; i < n && r->got + (size_t)i < 2; i++)
      r->head[r->got + (size_t)i] = buf[i];
    r->got += (size_t)n;
  }
  return NULL;
}

static bool got_gzip(const reader_t* r) {
  return r->got > 20 && r->head[0] == 0x1f && r->head[1] == 0x8b;
}

static ino_t inode_of(const char* p) {
  struct stat st;
  return stat(p, &st) == 0 ? st.st_ino : 0;
}

static void write_file(const char* p, const char* content) {
  int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0 || write(fd, content, strlen(content)) < 0) abort();
  close(fd);
}

static void case_explicit_paths(void) {
  umask(022);
  allocate_some();
  char p[4096], q[4096];
  struct stat st;

  /* A link to /dev/stdout while stdout is a file: the file gets the profile, no link is
   * replaced (the program's own symlink stands in for /dev/stdout, which is one too). */
  path_in(q, sizeof q, "stdout.txt");
  path_in(p, sizeof p, "stdout-link");
  if (symlink("/dev/stdout", p) != 0) abort();
  fflush(stdout);
  int saved = dup(1);
  int o = open(q, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  dup2(o, 1);
  close(o);
  int err = dump(p);
  dup2(saved, 1);
  close(saved);
  CHECK(err == 0, "link to /dev/stdout, stdout a file -> %s", strerror(err));
  CHECK(is_link_to(p, "/dev/stdout"), "the link is still a link to /dev/stdout");
  CHECK(lstat("/dev/stdout", &st) == 0 && S_ISLNK(st.st_mode), "/dev/stdout is still a link");
  CHECK(is_gzip_file(q), "the file behind stdout holds the profile");

  /* A link to a pipe: written through. */
  int pp[2];
  if (pipe(pp) != 0) abort();
  snprintf(q, sizeof q, "/proc/self/fd/%d", pp[1]);
  path_in(p, sizeof p, "pipe-link");
  if (symlink(q, p) != 0) abort();
  reader_t r = {pp[0], 0, {0, 0}};
  pthread_t t;
  pthread_create(&t, NULL, read_all, &r);
  err = dump(p);
  close(pp[1]);
  pthread_join(t, NULL);
  close(pp[0]);
  CHECK(err == 0 && got_gzip(&r), "link to a pipe: written through (%s, %zu bytes)", strerror(err),
        r.got);
  CHECK(is_link_to(p, q), "the link is still a link");

  /* A link to a terminal: written through, and it does not become our controlling terminal. */
  int had_tty = open("/dev/tty", O_RDWR | O_NOCTTY);
  if (had_tty >= 0) close(had_tty);
  int master = posix_openpt(O_RDWR | O_NOCTTY);
  char pts[128];
  if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0 ||
      ptsname_r(master, pts, sizeof pts) != 0)
    abort();
  int slave = open(pts, O_RDWR | O_NOCTTY);
  struct termios tio;
  tcgetattr(slave, &tio);
  cfmakeraw(&tio);
  tcsetattr(slave, TCSANOW, &tio);
  path_in(p, sizeof p, "tty-link");
  if (symlink(pts, p) != 0) abort();
  r = (reader_t){master, 0, {0, 0}};
  pthread_create(&t, NULL, read_all, &r);
  err = dump(p);
  struct timespec ts = {0, 200 * 1000 * 1000}; /* let the reader drain before the hang-up */
  nanosleep(&ts, NULL);
  close(slave);
  pthread_join(t, NULL);
  close(master);
  CHECK(err == 0 && got_gzip(&r), "link to a terminal: written through (%s, %zu bytes)",
        strerror(err), r.got);
  CHECK(is_link_to(p, pts), "the link is still a link");
  int tty = open("/dev/tty", O_RDWR | O_NOCTTY);
  CHECK(had_tty >= 0 || tty < 0, "the terminal did not become the controlling terminal");
  if (tty >= 0) close(tty);

  /* A link to a regular file: that file is replaced, the link stays. */
  path_in(q, sizeof q, "real.pb.gz");
  write_file(q, "old");
  ino_t before = inode_of(q);
  path_in(p, sizeof p, "reg-link");
  if (symlink("real.pb.gz", p) != 0) abort();
  err = dump(p);
  CHECK(err == 0, "link to a regular file -> %s", strerror(err));
  CHECK(is_link_to(p, "real.pb.gz"), "the link is still a link to it");
  CHECK(is_gzip_file(q) && inode_of(q) != before, "the file was replaced by the profile");

  /* A regular file: replaced atomically (a new file), mode 0644 less the umask. */
  path_in(p, sizeof p, "direct.pb.gz");
  write_file(p, "old");
  before = inode_of(p);
  err = dump(p);
  CHECK(err == 0 && is_gzip_file(p) && inode_of(p) != before, "regular file replaced (%s)",
        strerror(err));
  CHECK(stat(p, &st) == 0 && (st.st_mode & 0777) == 0644, "mode 0644 (umask 022): %o",
        (unsigned)(st.st_mode & 0777));

  /* A FIFO nobody reads: ENXIO at once, no hang. */
  path_in(p, sizeof p, "fifo");
  if (mkfifo(p, 0600) != 0) abort();
  alarm(20);
  err = dump(p);
  CHECK(err == ENXIO, "FIFO without a reader -> %s", strerror(err));

  /* The same FIFO with a reader: written in place. */
  int rd = open(p, O_RDONLY | O_NONBLOCK);
  int keep = open(p, O_WRONLY); /* no EOF before the dump */
  fcntl(rd, F_SETFL, 0);
  r = (reader_t){rd, 0, {0, 0}};
  pthread_create(&t, NULL, read_all, &r);
  err = dump(p);
  close(keep);
  pthread_join(t, NULL);
  close(rd);
  CHECK(err == 0 && got_gzip(&r), "FIFO with a reader: written in place (%s, %zu bytes)",
        strerror(err), r.got);
  alarm(0);

  /* A dangling link and a directory. */
  path_in(p, sizeof p, "dangling");
  if (symlink("nowhere/at/all", p) != 0) abort();
  err = dump(p);
  CHECK(err == ENOENT && is_link_to(p, "nowhere/at/all"), "dangling link -> %s, left alone",
        strerror(err));
  path_in(p, sizeof p, "a-directory");
  mkdir(p, 0755);
  err = dump(p);
  CHECK(err == EISDIR, "directory -> %s", strerror(err));
  CHECK(count_temporaries() == 0, "no temporary file left");
}

/* --- name_max -------------------------------------------------------------------------------- */
static void case_name_max(void) {
  allocate_some();
  const size_t lens[] = {246, 250, 255};
  for (size_t i = 0; i < 3; i++) {
    char name[256], p[4096];
    memset(name, 'n', lens[i] - 6);
    memcpy(name + lens[i] - 6, ".pb.gz", 7);
    path_in(p, sizeof p, name);
    int err = dump(p);
    CHECK(err == 0 && is_gzip_file(p), "a %zu-byte file name -> %s", lens[i], strerror(err));
  }
  CHECK(count_temporaries() == 0, "no temporary file left");
}

/* --- fifo_mapping ---------------------------------------------------------------------------- */
static void case_fifo_mapping(const char* lib) {
  char copy[4096];
  path_in(copy, sizeof copy, "libcopy.so");
  int in = open(lib, O_RDONLY), out = open(copy, O_WRONLY | O_CREAT | O_TRUNC, 0755);
  char buf[65536];
  ssize_t n;
  while ((n = read(in, buf, sizeof buf)) > 0)
    if (write(out, buf, (size_t)n) != n) abort();
  close(in);
  close(out);
  void* h = dlopen(copy, RTLD_NOW);
  void* (*alloc)(size_t) = NULL;
  if (h != NULL) *(void**)&alloc = dlsym(h, "rel_maplib_alloc");
  CHECK(alloc != NULL, "library loaded from %s (%s)", copy, h ? "ok" : dlerror());
  if (alloc == NULL) return;
  for (int i = 0; i < 100; i++)
    sink = alloc(100);
  unlink(copy);
  CHECK(mkfifo(copy, 0666) == 0, "the library's file replaced by a FIFO");
  alarm(30);
  char p[4096];
  path_in(p, sizeof p, "m.pb.gz");
  int err = dump(p);
  alarm(0);
  CHECK(err == 0 && is_gzip_file(p), "the dump does not wait for the FIFO (%s)", strerror(err));
}

/* --- sigpipe, cancel_dump, signal_dump: a dump blocked in write on a full pipe ---------------- */
typedef struct {
  const char* path;
  _Atomic pid_t tid;
  int err;
  sigset_t mask_before, mask_after;
  bool cancel_point; /* call pthread_testcancel after the dump */
} dumper_t;

static void* dumper(void* arg) {
  dumper_t* d = arg;
  pthread_sigmask(SIG_SETMASK, NULL, &d->mask_before);
  atomic_store(&d->tid, (pid_t)syscall(SYS_gettid));
  d->err = dump(d->path);
  pthread_sigmask(SIG_SETMASK, NULL, &d->mask_after);
  if (d->cancel_point) pthread_testcancel();
  return NULL;
}

static void start_dumper(dumper_t* d, pthread_t* t) {
  pthread_create(t, NULL, dumper, d);
  while (atomic_load(&d->tid) == 0)
    sched_yield();
}

static void drain_until_done(int rfd, pthread_t t, void** ret) {
  fcntl(rfd, F_SETFL, O_NONBLOCK);
  char buf[4096];
  for (;;) {
    while (read(rfd, buf, sizeof buf) > 0) {
    }
    if (pthread_tryjoin_np(t, ret) == 0) return;
    struct timespec ts = {0, 1000 * 1000};
    nanosleep(&ts, NULL);
  }
}

static void case_sigpipe(void) {
  allocate_some();
  int p[2];
  full_pipe(p);
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", p[1]);
  dumper_t d = {.path = path};
  pthread_t t;
  alarm(30);
  start_dumper(&d, &t);
  CHECK(wait_in_write(atomic_load(&d.tid)), "the dump is blocked writing to the pipe");
  close(p[0]); /* the reader leaves */
  pthread_join(t, NULL);
  alarm(0);
  CHECK(d.err == EPIPE, "the dump returns %s (want EPIPE), the program lives", strerror(d.err));
  bool same = true;
  for (int sig = 1; sig < NSIG; sig++)
    same &= sigismember(&d.mask_before, sig) == sigismember(&d.mask_after, sig);
  CHECK(same, "signal mask restored");
  sigset_t pending;
  sigpending(&pending);
  CHECK(!sigismember(&pending, SIGPIPE), "no SIGPIPE left pending");
  close(p[1]);

  /* The same with SIGPIPE blocked by the program: still no SIGPIPE left behind. */
  sigset_t pipe_only;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_only, NULL);
  full_pipe(p);
  snprintf(path, sizeof path, "/proc/self/fd/%d", p[1]);
  d = (dumper_t){.path = path};
  alarm(30);
  start_dumper(&d, &t);
  CHECK(wait_in_write(atomic_load(&d.tid)), "the dump is blocked writing to the pipe");
  close(p[0]);
  pthread_join(t, NULL);
  alarm(0);
  sigpending(&pending);
  CHECK(d.err == EPIPE && !sigismember(&pending, SIGPIPE),
        "SIGPIPE blocked by the program: %s, none left pending", strerror(d.err));
  CHECK(sigismember(&d.mask_after, SIGPIPE), "and it stays blocked");
  close(p[1]);
}

static void case_cancel_dump(void) {
  allocate_some();
  int p[2];
  full_pipe(p);
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", p[1]);
  dumper_t d = {.path = path, .cancel_point = true};
  pthread_t t;
  alarm(30);
  start_dumper(&d, &t);
  CHECK(wait_in_write(atomic_load(&d.tid)), "the dump is blocked writing to the pipe");
  pthread_cancel(t);
  void* ret = NULL;
  drain_until_done(p[0], t, &ret);
  CHECK(ret == PTHREAD_CANCELED, "the thread was cancelled after the dump");
  CHECK(d.err == 0, "the dump itself completed (%s)", strerror(d.err));
  pid_t pid = fork(); /* takes every profiler lock: hangs if one was left held */
  if (pid == 0) _exit(0);
  int status = 1;
  waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "fork() after the cancellation works");
  char good[4096];
  path_in(good, sizeof good, "after-cancel.pb.gz");
  CHECK(dump(good) == 0 && is_gzip_file(good), "the next dump works");
  CHECK(count_temporaries() == 0, "no temporary file left");
  alarm(0);
  close(p[0]);
  close(p[1]);
}

static volatile sig_atomic_t handler_err = -1;
static char handler_path[4096];

static void dump_in_handler(int sig) {
  (void)sig;
  int saved = errno;
  handler_err = dump(handler_path);
  errno = saved;
}

static void case_signal_dump(void) {
  allocate_some();
  path_in(handler_path, sizeof handler_path, "from-handler.pb.gz");
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = dump_in_handler;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGUSR1, &sa, NULL);
  int p[2];
  full_pipe(p);
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", p[1]);
  dumper_t d = {.path = path};
  pthread_t t;
  alarm(30);
  start_dumper(&d, &t);
  CHECK(wait_in_write(atomic_load(&d.tid)), "the dump is blocked writing to the pipe");
  pthread_kill(t, SIGUSR1);
  while (handler_err == -1) {
    struct timespec ts = {0, 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  CHECK(handler_err == EDEADLK, "prof.dump in the handler -> %s (want EDEADLK)",
        strerror(handler_err));
  drain_until_done(p[0], t, NULL);
  CHECK(d.err == 0, "the interrupted dump completed (%s)", strerror(d.err));
  /* Outside the profiler a handler's dump works (not async-signal-safe in general). */
  handler_err = -1;
  raise(SIGUSR1);
  CHECK(handler_err == 0, "a handler's dump outside the profiler -> %s", strerror(handler_err));
  alarm(0);
  close(p[0]);
  close(p[1]);
}

/* --- join_exit, fork_in_exit ----------------------------------------------------------------- */
static _Atomic int go_exit;
static pthread_t exiter;

static void* exit_three(void* arg) {
  (void)arg;
  while (!atomic_load(&go_exit))
    sched_yield();
  exit(3);
}

static void join_exiter(void) {
  atomic_store(&go_exit, 1);
  pthread_join(exiter, NULL); /* never returns: that thread ends the process with status 3 */
}

static void case_join_exit(void) {
  allocate_some();
  pthread_create(&exiter, NULL, exit_three, NULL);
  atexit(join_exiter);
  alarm(0); /* the driver's timeout catches a hang */
}

static _Atomic int child_status = -1;

static void* fork_when_told(void* arg) {
  (void)arg;
  while (!atomic_load(&go_exit))
    sched_yield();
  pid_t pid = fork();
  if (pid == 0) {
    alarm(20); /* a child stuck in exit() dies of SIGALRM */
    sink = malloc(100);
    exit(7);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  atomic_store(&child_status, status);
  return NULL;
}

static void fork_during_exit(void) {
  atomic_store(&go_exit, 1);
  while (atomic_load(&child_status) == -1)
    sched_yield();
  int st = atomic_load(&child_status);
  bool ok = WIFEXITED(st) && WEXITSTATUS(st) == 7;
  CHECK(ok, "a child forked while the parent is in exit() exits with its own status (%s %d)",
        WIFEXITED(st) ? "status" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
  if (!ok) _exit(1);
}

static void case_fork_in_exit(void) {
  allocate_some();
  pthread_t t;
  pthread_create(&t, NULL, fork_when_told, NULL);
  atexit(fork_during_exit);
  alarm(60);
}

/* --- errno_first_sample ---------------------------------------------------------------------- */
static void* thread_errno(void* arg) {
  (void)arg;
  uint64_t samples = stat_u64("stats.samples");
  errno = 4242;
  void* p = rel_alloc_without_unwind_info(100);
  int e = errno;
  CHECK(stat_u64("stats.samples") > samples, "a new thread's first malloc was sampled");
  CHECK(p != NULL && e == 4242, "a new thread's first sampled malloc keeps errno (%d)", e);
  free(p);
  errno = 4343;
  p = calloc(10, 10);
  e = errno;
  CHECK(p != NULL && e == 4343, "calloc keeps errno (%d)", e);
  free(p);
  return NULL;
}

static void case_errno_first_sample(void) {
  /* Started with prof_active:false, so that the process's first sample is this one. */
  bool on = true;
  ctl("prof.active", NULL, NULL, &on, sizeof on);
  uint64_t samples = stat_u64("stats.samples");
  errno = 4242;
  void* p = rel_alloc_without_unwind_info(100);
  int e = errno;
  CHECK(stat_u64("stats.samples") == samples + 1, "it was sampled, the first sample");
  CHECK(p != NULL && e == 4242, "the process's first sampled malloc keeps errno (%d)", e);
  free(p);
  errno = 4243;
  p = rel_alloc_without_unwind_info(100);
  e = errno;
  CHECK(p != NULL && e == 4243, "the second one too (%d)", e);
  free(p);
  pthread_t t;
  pthread_create(&t, NULL, thread_errno, NULL);
  pthread_join(t, NULL);
}

/* --- ctl_validate_first ---------------------------------------------------------------------- */
static void case_ctl_validate_first(void) {
  uint64_t e0 = 0, e1 = 0, v = 1;
  size_t len = sizeof e0;
  ctl("epoch", &e0, &len, NULL, 0);
  const size_t bad[] = {0, 4, 7, 9, 16};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    unsigned char out[16];
    len = bad[i];
    int err = ctl("epoch", out, &len, &v, sizeof v);
    len = sizeof e1;
    ctl("epoch", &e1, &len, NULL, 0);
    CHECK(err == EINVAL && e1 == e0, "epoch write with *oldlenp %zu -> %s, epoch %llu -> %llu",
          bad[i], strerror(err), (unsigned long long)e0, (unsigned long long)e1);
  }
  bool off = false, now = false;
  unsigned char small[1];
  len = 0;
  int err = ctl("prof.active", small, &len, &off, sizeof off);
  len = sizeof now;
  ctl("prof.active", &now, &len, NULL, 0);
  CHECK(err == EINVAL && now, "prof.active write with *oldlenp 0 -> %s, still on", strerror(err));
  uint64_t dumps = stat_u64("stats.dumps");
  char p[4096];
  path_in(p, sizeof p, "never.pb.gz");
  const char* pp = p;
  unsigned char out[8];
  len = sizeof out;
  err = ctl("prof.dump", out, &len, &pp, sizeof pp);
  CHECK(err == EPERM && stat_u64("stats.dumps") == dumps && access(p, F_OK) != 0,
        "prof.dump with oldp -> %s, nothing written", strerror(err));
  err = ctl("prof.dump", NULL, NULL, &pp, sizeof pp - 1);
  CHECK(err == EINVAL && stat_u64("stats.dumps") == dumps, "prof.dump with newlen 7 -> %s",
        strerror(err));
}

/* --- bytes_label ----------------------------------------------------------------------------- */
__attribute__((noinline)) static void alloc_256_at_depth(int d) {
  if (d > 0) {
    alloc_256_at_depth(d - 1);
    __asm__ volatile("");
    return;
  }
  for (int i = 0; i < 4000; i++)
    sink = malloc(256);
}

static void case_bytes_label(void) {
  for (int d = 0; d < 30; d++)
    alloc_256_at_depth(d); /* 30 stacks, ~2000 objects per sample at the default rate */
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: rel_harden CASE DIR [ARG]\n");
    return 2;
  }
  *(void**)&ctl = dlsym(RTLD_DEFAULT, "mprof_ctl");
  if (ctl == NULL) {
    printf("FAIL not running under libmprof.so\n");
    return 1;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  const char* c = argv[1];
  dir = argv[2];
  victim_path = argc > 3 ? argv[3] : "";
  alarm(60);
  if (strcmp(c, "tmp_symlink") == 0)
    case_tmp_symlink();
  else if (strcmp(c, "auto_name_link") == 0)
    case_auto_name_link();
  else if (strcmp(c, "fifo_final_name") == 0)
    case_fifo_final_name();
  else if (strcmp(c, "explicit_paths") == 0)
    case_explicit_paths();
  else if (strcmp(c, "name_max") == 0)
    case_name_max();
  else if (strcmp(c, "fifo_mapping") == 0)
    case_fifo_mapping(victim_path);
  else if (strcmp(c, "sigpipe") == 0)
    case_sigpipe();
  else if (strcmp(c, "cancel_dump") == 0)
    case_cancel_dump();
  else if (strcmp(c, "signal_dump") == 0)
    case_signal_dump();
  else if (strcmp(c, "join_exit") == 0)
    case_join_exit();
  else if (strcmp(c, "fork_in_exit") == 0)
    case_fork_in_exit();
  else if (strcmp(c, "errno_first_sample") == 0)
    case_errno_first_sample();
  else if (strcmp(c, "ctl_validate_first") == 0)
    case_ctl_validate_first();
  else if (strcmp(c, "bytes_label") == 0)
    case_bytes_label();
  else {
    fprintf(stderr, "rel_harden: unknown case %s\n", c);
    return 2;
  }
  exit(failures == 0 ? 0 : 1); /* exit(), not a return: a glue may interpose it */
}
