/* Runs a program and reports its wall time and peak RSS.
 *
 *   BENCH_CHILD_LD_PRELOAD=lib.so bench_exec OUT -- program args...
 *
 * Appends `RESULT wall_ns=... cpu_ns=... maxrss_kib=... status=...` to the file OUT (cpu_ns: the
 * program's user + system time). The program gets
 * LD_PRELOAD from BENCH_CHILD_LD_PRELOAD, so this launcher itself runs without the allocator
 * being measured. Why a launcher: Linux carries ru_maxrss across exec, so a child forked from a
 * large process (the Python driver) reports at least its parent's RSS; forked from this small
 * program, the floor is about 1 MiB. The program's stdin, stdout and stderr are inherited. */
#include "bench_common.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char** argv) {
  if (argc < 4 || strcmp(argv[2], "--") != 0) {
    fprintf(stderr, "usage: bench_exec OUT -- program args...\n");
    return 2;
  }
  const char* pre = getenv("BENCH_CHILD_LD_PRELOAD");
  uint64_t t0 = bench_now_ns();
  pid_t pid = fork();
  if (pid < 0) {
    perror("bench_exec: fork");
    return 1;
  }
  if (pid == 0) {
    if (pre != NULL && pre[0] != '\0')
      setenv("LD_PRELOAD", pre, 1);
    else
      unsetenv("LD_PRELOAD");
    unsetenv("BENCH_CHILD_LD_PRELOAD");
    execvp(argv[3], argv + 3);
    perror("bench_exec: exec");
    _exit(127);
  }
  int status;
  struct rusage ru;
  while (wait4(pid, &status, 0, &ru) < 0) {
    if (errno != EINTR) {
      perror("bench_exec: wait4");
      return 1;
    }
  }
  uint64_t t1 = bench_now_ns();
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  char line[256];
  uint64_t cpu_ns = (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000u +
                    (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000u;
  int n = snprintf(line, sizeof line, "RESULT wall_ns=%llu cpu_ns=%llu maxrss_kib=%ld status=%d\n",
                   (unsigned long long)(t1 - t0), (unsigned long long)cpu_ns, ru.ru_maxrss, code);
  int fd = open(argv[1], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0 || write(fd, line, (size_t)n) != n) {
    perror("bench_exec: write");
    return 1;
  }
  close(fd);
  return code;
}
