/* A shared library to LD_PRELOAD next to libmprof.so into an unmodified program: when the
 * program exits, it appends the profiler's statistics to the file named by BENCH_STATDUMP as one
 * RESULT line. That is how the suite reads stats.metadata_bytes from programs it cannot change
 * (sqlite3, python3).
 *
 * Its destructor runs after the program's atexit handlers (and after mprof's own exit work, such
 * as a final dump), so the values are those at exit. metadata_bytes is what the profiler has
 * mapped then; mprof keeps its chunks mapped once used, so this is also close to its peak. */
#include "bench_common.h"

#include <fcntl.h>
#include <unistd.h>

__attribute__((destructor)) static void bench_statdump(void) {
  const char* path = getenv("BENCH_STATDUMP");
  if (path == NULL || path[0] == '\0') return;
  const char* owner;
  bench_ctl_fn ctl = bench_find_ctl(&owner);
  static const char* const names[] = {"stats.metadata_bytes",       "stats.buckets",
                                      "stats.sampled_blocks",       "stats.samples",
                                      "stats.sampled_bytes_in_use", "stats.dropped_samples"};
  char line[1024];
  int n = snprintf(line, sizeof line, "RESULT kind=statdump ctl=%s pid=%ld", owner, (long)getpid());
  for (size_t i = 0; i < sizeof names / sizeof names[0] && n > 0 && (size_t)n < sizeof line; i++) {
    uint64_t v;
    long long x = bench_ctl_u64(ctl, names[i], &v) == 0 ? (long long)v : -1;
    n += snprintf(line + n, sizeof line - (size_t)n, " %s=%lld", names[i] + 6, x);
  }
  if (n <= 0 || (size_t)n >= sizeof line - 1) return;
  line[n++] = '\n';
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return;
  ssize_t w = write(fd, line, (size_t)n);
  (void)w;
  close(fd);
}
