/* File descriptors of the profiled program belong to the program (run under libmprof.so with
 * every allocation sampled):
 *
 *   stdin-closed  started with fd 0 closed: after allocating (on two threads) fd 0 is still
 *                 closed; a descriptor the profiler opened there would be taken for stdin
 *   closefrom     after the profiler is running, the program closes every descriptor above 2
 *                 (as ssh and daemons do) and opens two files, which get the lowest numbers;
 *                 allocating on a new thread must neither read from, write to nor close them
 *   count         after the program closed every descriptor above 2, allocating on several
 *                 threads leaves none open there. On x86-64 the profiler walks stacks itself
 *                 and opens nothing; elsewhere libunwind keeps its address-validation pipe, two
 *                 close-on-exec descriptors that libmprof.so moves into the top 32 numbers under
 *                 min(RLIMIT_NOFILE, 4096), and those two are allowed
 *
 * Usage: rel_fds MODE DIR; exit status 0 when the check holds. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

static void* volatile sink;

static void* allocate(void* arg) {
  (void)arg;
  for (int i = 0; i < 2000; i++) {
    sink = malloc(16 + (size_t)i % 4000);
    free(sink);
  }
  return NULL;
}

/* Each thread gets a stack never used before (stacks of joined threads are reused by glibc),
 * so that the unwinder meets addresses it has not seen yet. */
static void allocate_on_new_threads(int n) {
  for (int i = 0; i < n; i++) {
    size_t size = (size_t)1 << 20;
    void* stack = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstack(&attr, stack, size);
    pthread_t t;
    pthread_create(&t, &attr, allocate, NULL);
    pthread_join(t, NULL);
    pthread_attr_destroy(&attr);
  }
}

static int open_fds(char* list, size_t cap) {
  DIR* d = opendir("/proc/self/fd");
  int n = 0, self = dirfd(d);
  size_t len = 0;
  struct dirent* e;
  list[0] = '\0';
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.' || atoi(e->d_name) == self) continue;
    n++;
    len += (size_t)snprintf(list + len, len < cap ? cap - len : 0, " %s", e->d_name);
  }
  closedir(d);
  return n;
}

static int stdin_closed(void) {
  if (fcntl(0, F_GETFD) != -1) {
    fprintf(stderr, "fd 0 is open at start: run with <&-\n");
    return 2;
  }
  allocate(NULL);
  allocate_on_new_threads(1);
  if (fcntl(0, F_GETFD) != -1) {
    char target[256] = "";
    ssize_t n = readlink("/proc/self/fd/0", target, sizeof target - 1);
    if (n > 0) target[n] = '\0';
    fprintf(stderr, "FAIL: fd 0 was opened behind the program's back (-> %s)\n", target);
    return 1;
  }
  return 0;
}

/* One round: close everything above 2, open two files (fds 3 and 4), allocate on new threads,
 * then use the files. Several rounds, as the unwinder does not look at every new stack. */
static int closefrom_round(const char* dir, int round) {
  for (int fd = 3; fd < 1024; fd++)
    close(fd);
  char out[512], in[512];
  snprintf(out, sizeof out, "%s/out.txt", dir);
  snprintf(in, sizeof in, "%s/in.txt", dir);
  FILE* f = fopen(in, "w");
  fputs("0123456789abcdefghij", f);
  fclose(f);
  int wfd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  int rfd = open(in, O_RDONLY);
  allocate_on_new_threads(2);
  int bad = 0;
  char buf[64] = "";
  ssize_t n = read(rfd, buf, sizeof buf - 1);
  if (n != 20 || memcmp(buf, "0123456789abcdefghij", 20) != 0) {
    fprintf(stderr, "FAIL round %d: reading the program's file (fd %d) gave %zd bytes: %s\n", round,
            rfd, n, n < 0 ? strerror(errno) : "");
    bad = 1;
  }
  if (write(wfd, "hello\n", 6) != 6) {
    fprintf(stderr, "FAIL round %d: writing the program's file (fd %d): %s\n", round, wfd,
            strerror(errno));
    bad = 1;
  }
  close(wfd);
  close(rfd);
  f = fopen(out, "r");
  if (f == NULL || fgets(buf, sizeof buf, f) == NULL || strcmp(buf, "hello\n") != 0) {
    fprintf(stderr, "FAIL round %d: the program's output file holds something else\n", round);
    bad = 1;
  }
  if (f != NULL) fclose(f);
  return bad;
}

static int closefrom_(const char* dir) {
  allocate(NULL); /* the profiler has done its start-up work */
  int bad = 0;
  for (int round = 0; round < 8; round++)
    bad |= closefrom_round(dir, round);
  return bad;
}

/* After the program closed everything above 2 it owns nothing there: whatever is open above 2
 * after allocating belongs to the profiler. */
static int count(void) {
  allocate(NULL);
  for (int fd = 3; fd < 1024; fd++)
    close(fd);
  allocate(NULL);
  allocate_on_new_threads(3);
  char after[1024];
  open_fds(after, sizeof after);
  struct rlimit rl;
  int top = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 4096 ? (int)rl.rlim_cur : 4096;
  int extra = 0, bad = 0;
  for (int fd = 3; fd < top; fd++) {
    int flags = fcntl(fd, F_GETFD);
    if (flags == -1) continue;
    extra++;
    if (fd < top - 32 || !(flags & FD_CLOEXEC)) bad = 1;
  }
#if defined(__x86_64__)
  const int allowed = 0;
#else
  const int allowed = 2;
#endif
  if (fcntl(0, F_GETFD) == -1 || fcntl(1, F_GETFD) == -1 || fcntl(2, F_GETFD) == -1 ||
      extra > allowed || bad) {
    fprintf(stderr,
            "FAIL: the program owns fds 0, 1, 2; the profiler may keep %d close-on-exec fds "
            "in [%d, %d); open after allocating:%s\n",
            allowed, top - 32, top, after);
    return 1;
  }
  return 0;
}

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  if (strcmp(argv[1], "stdin-closed") == 0) return stdin_closed();
  if (strcmp(argv[1], "closefrom") == 0 && argc == 3) return closefrom_(argv[2]);
  if (strcmp(argv[1], "count") == 0) return count();
  return 2;
}
