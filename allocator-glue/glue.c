/* What every allocator glue adds in the same way (see glue.h). */
#include "glue.h"

#include "mprof_hooks.h"
#include "mprof_thread.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#define MPROF_PUBLIC __attribute__((visibility("default")))

/* ---------------------------------------------------------------------------------------------
 * exit(): when several threads call exit() at once, glibc lets the ones that find the handler
 * list taken end the process while the first runs the final dump; mprof__exit_wait holds them.
 * ------------------------------------------------------------------------------------------- */
static void (*libc_exit)(int); /* found by mprof__glue_start */

MPROF_PUBLIC _Noreturn void exit(int status) {
  mprof__exit_wait();
  if (libc_exit == NULL) *(void**)&libc_exit = dlsym(RTLD_NEXT, "exit");
  if (libc_exit == NULL) _exit(status);
  libc_exit(status);
  __builtin_unreachable(); /* libc's exit does not return */
}

/* ---------------------------------------------------------------------------------------------
 * pipe2(): libunwind (1.6) opens a pipe on its first unwind, keeps it for good, and uses it to
 * validate addresses when it has to fall back from DWARF to frame-chain unwinding. Opened where
 * the program would open its next file, that pipe takes fd 0 of a program started with stdin
 * closed, and after a program closes every descriptor above 2 and opens its own files, the next
 * validation would read from and write to the program's files. So a pipe created while this
 * thread is inside the profiler is moved to the top of the descriptor range (just under
 * min(RLIMIT_NOFILE, 4096)), where programs rarely have files, close-on-exec as it was asked.
 * Only where the core uses libunwind: on x86-64 it walks stacks itself and opens nothing.
 * ------------------------------------------------------------------------------------------- */
#if !defined(MPROF_OWN_UNWIND)
static int (*libc_pipe2)(int[2], int); /* found by mprof__glue_start */

static void move_high(int* fd) {
  struct rlimit rl;
  rlim_t top = 4096;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < top) top = rl.rlim_cur;
  if (top <= 64) return;
  int high = fcntl(*fd, F_DUPFD_CLOEXEC, (int)(top - 32));
  if (high < 0) return; /* no room up there: leave it where it is */
  close(*fd);
  *fd = high;
}

MPROF_PUBLIC int pipe2(int fds[2], int flags) {
  if (libc_pipe2 == NULL) *(void**)&libc_pipe2 = dlsym(RTLD_NEXT, "pipe2");
  if (libc_pipe2 == NULL) {
    errno = ENOSYS;
    return -1;
  }
  int r = libc_pipe2(fds, flags);
  if (r == 0 && mprof__thread.busy && (flags & O_CLOEXEC)) {
    int saved = errno;
    move_high(&fds[0]);
    move_high(&fds[1]);
    errno = saved;
  }
  return r;
}
#endif

/* ---------------------------------------------------------------------------------------------
 * Start-up
 * ------------------------------------------------------------------------------------------- */
typedef struct self_range_s {
  uintptr_t base, lo, hi;
} self_range_t;

static int find_self(struct dl_phdr_info* info, size_t size, void* arg) {
  (void)size;
  self_range_t* r = arg;
  if (info->dlpi_addr != r->base) return 0;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr)* ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X)) continue;
    r->lo = info->dlpi_addr + ph->p_vaddr;
    r->hi = r->lo + ph->p_memsz;
    return 1;
  }
  return 0;
}

void mprof__glue_start(const void* inside, uintptr_t* lo, uintptr_t* hi) {
  *(void**)&libc_exit = dlsym(RTLD_NEXT, "exit");
#if !defined(MPROF_OWN_UNWIND)
  *(void**)&libc_pipe2 = dlsym(RTLD_NEXT, "pipe2");
#endif
  self_range_t self = {0, 0, 0};
  Dl_info info;
  if (dladdr(inside, &info) != 0) {
    self.base = (uintptr_t)info.dli_fbase;
    dl_iterate_phdr(find_self, &self);
  }
  *lo = self.lo;
  *hi = self.hi;
}
