/* Dump files (see mprof_dumpfile.h for the rules).
 *
 * Every operation on the final name is relative to a descriptor of its directory, opened once:
 * the checks and the link or rename that follow them look at the same directory even if the
 * path's directories are renamed meanwhile, and a temporary name never depends on the length of
 * the final one. Between the check of the final name and the link or rename, another user who
 * may write the directory can change the entry; that changes nothing that matters: linkat never
 * replaces anything (EEXIST) and rename replaces the directory entry itself, never what a
 * symlink there points to. */
#include "mprof_dumpfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TMP_PREFIX ".mprof.tmp."

bool mprof__dumpfile_force_named;
#define TMP_TRIES 16

/* 64 unpredictable bits for a temporary name: getrandom, or (no entropy yet, old kernel) a mix
 * of the clock, the pid and a counter. */
static uint64_t random_bits(void) {
  uint64_t x = 0;
  if (getrandom(&x, sizeof x, GRND_NONBLOCK) == (ssize_t)sizeof x) return x;
  static _Atomic uint64_t counter;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ ((uint64_t)getpid() << 17) ^
      atomic_fetch_add(&counter, 0x9e3779b97f4a7c15ull);
  x ^= x >> 31;
  x *= 0xbf58476d1ce4e5b9ull;
  return x ^ (x >> 29);
}

static void tmp_name(char* buf, size_t len) {
  static const char hex[] = "0123456789abcdef";
  uint64_t r = random_bits();
  size_t n = sizeof TMP_PREFIX - 1;
  memcpy(buf, TMP_PREFIX, n);
  for (int i = 0; i < 16 && n + 1 < len; i++, r >>= 4)
    buf[n++] = hex[r & 15];
  buf[n] = '\0';
}

/* The process's umask from /proc (a umask() call cannot read it without changing it for every
 * thread for a moment). False when /proc cannot say (a container without /proc): the profile
 * then keeps the 0600 it was created with, never wider than the program may have wanted. */
static bool current_umask(mode_t* out) {
  int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return false;
  char buf[4096];
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  const char* p = strstr(buf, "\nUmask:");
  if (p == NULL) return false;
  p += 7;
  while (*p == ' ' || *p == '\t')
    p++;
  if (*p < '0' || *p > '7') return false;
  mode_t v = 0;
  for (; *p >= '0' && *p <= '7'; p++)
    v = (mode_t)(v * 8 + (mode_t)(*p - '0'));
  *out = v & 0777;
  return true;
}

/* Splits path into its directory (opened as dirfd, O_PATH) and last component. */
static int open_parent(const char* path, int* dirfd, char* name) {
  size_t len = strlen(path);
  if (len == 0) return ENOENT;
  if (len >= PATH_MAX) return ENAMETOOLONG;
  if (path[len - 1] == '/') return EISDIR;
  const char* slash = strrchr(path, '/');
  const char* base = slash != NULL ? slash + 1 : path;
  size_t blen = len - (size_t)(base - path);
  if (blen > NAME_MAX) return ENAMETOOLONG;
  if (strcmp(base, ".") == 0 || strcmp(base, "..") == 0) return EISDIR;
  char dir[PATH_MAX];
  if (slash == NULL) {
    dir[0] = '.';
    dir[1] = '\0';
  } else if (slash == path) {
    dir[0] = '/';
    dir[1] = '\0';
  } else {
    memcpy(dir, path, (size_t)(slash - path));
    dir[slash - path] = '\0';
  }
  int fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno;
  memcpy(name, base, blen + 1);
  *dirfd = fd;
  return 0;
}

/* Opens what is at the name for writing in place (the caller asked for it by name): never
 * blocks, never becomes the controlling terminal; blocking writes afterwards. A regular file
 * (one without a reachable name, behind a link) is truncated first. */
static int open_in_place(int dirfd, const char* name, bool follow, int* out) {
  int flags = O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC | (follow ? 0 : O_NOFOLLOW);
  int fd = openat(dirfd, name, flags);
  if (fd < 0) return errno;
  struct stat st;
  int err = 0;
  if (fstat(fd, &st) != 0)
    err = errno;
  else if (S_ISDIR(st.st_mode))
    err = EISDIR;
  else if (S_ISREG(st.st_mode) && ftruncate(fd, 0) != 0)
    err = errno;
  if (err != 0) {
    close(fd);
    return err;
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  *out = fd;
  return 0;
}

/* A symlink named explicitly: follows it. A regular file it leads to, if that file has a name
 * the process can reach (not deleted, not behind a /proc link to another namespace), becomes the
 * target to replace: dirfd and name are switched to it. Anything else is written in place. */
static int resolve_link(mprof_dumpfile_t* f) {
  int pfd = openat(f->dirfd, f->name, O_PATH | O_CLOEXEC);
  if (pfd < 0) return errno;
  struct stat st;
  if (fstat(pfd, &st) != 0) {
    int err = errno;
    close(pfd);
    return err;
  }
  if (S_ISDIR(st.st_mode)) {
    close(pfd);
    return EISDIR;
  }
  if (S_ISREG(st.st_mode)) {
    char proc[64], real[PATH_MAX];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", pfd);
    ssize_t n = readlink(proc, real, sizeof real - 1);
    close(pfd);
    int ndir;
    char nname[NAME_MAX + 1];
    struct stat rst;
    if (n > 0 && real[0] == '/') {
      real[n] = '\0';
      if (open_parent(real, &ndir, nname) == 0) {
        if (fstatat(ndir, nname, &rst, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(rst.st_mode) &&
            rst.st_dev == st.st_dev && rst.st_ino == st.st_ino) {
          close(f->dirfd);
          f->dirfd = ndir;
          memcpy(f->name, nname, sizeof nname);
          f->replace = true;
          return 0;
        }
        close(ndir);
      }
    }
    /* A regular file without a reachable name: written through the link, in place. */
    int err = open_in_place(f->dirfd, f->name, true, &f->fd);
    if (err == 0) {
      close(f->dirfd);
      f->dirfd = -1;
    }
    return err;
  }
  close(pfd);
  int err = open_in_place(f->dirfd, f->name, true, &f->fd);
  if (err == 0) {
    close(f->dirfd);
    f->dirfd = -1;
  }
  return err;
}

/* A new file in dirfd that nobody else can open: an unnamed O_TMPFILE where the file system
 * has them and /proc is there to name it later, else a new name, exclusively, mode 0600. */
static int create_temporary(mprof_dumpfile_t* f) {
  int fd = -1;
  errno = EOPNOTSUPP;
  if (!mprof__dumpfile_force_named)
    fd = openat(f->dirfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
  if (fd >= 0) {
    if (access("/proc/self/fd", X_OK) == 0) {
      f->fd = fd;
      f->tmp[0] = '\0';
      return 0;
    }
    close(fd);
  } else if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL && errno != ENOENT) {
    return errno; /* EACCES, EROFS, ENOSPC...: a named file would fail the same way */
  }
  for (int i = 0; i < TMP_TRIES; i++) {
    tmp_name(f->tmp, sizeof f->tmp);
    fd = openat(f->dirfd, f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd >= 0) {
      f->fd = fd;
      return 0;
    }
    if (errno != EEXIST) break;
  }
  int err = errno;
  f->tmp[0] = '\0';
  return err;
}

/* An entry that another user may have put in a directory that others can write is not followed
 * or written into (the kernel's protected_symlinks and protected_fifos rules, for every such
 * directory and whatever the sysctls say): only one owned by this process's user or by the
 * directory's owner. EACCES otherwise. */
static int check_planted(int dirfd, const struct stat* entry) {
  struct stat dst;
  if (fstat(dirfd, &dst) != 0) return errno;
  if (!(dst.st_mode & (S_IWGRP | S_IWOTH))) return 0;
  if (entry->st_uid == geteuid() || entry->st_uid == dst.st_uid) return 0;
  return EACCES;
}

int mprof__dumpfile_open(mprof_dumpfile_t* f, const char* path, bool automatic) {
  f->fd = -1;
  f->dirfd = -1;
  f->tmp[0] = '\0';
  f->replace = false;
  int err = open_parent(path, &f->dirfd, f->name);
  if (err != 0) return err;
  struct stat st;
  if (fstatat(f->dirfd, f->name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (S_ISREG(st.st_mode)) {
      f->replace = true;
    } else if (S_ISDIR(st.st_mode)) {
      err = EISDIR;
    } else if (automatic) {
      err = EEXIST; /* never a target: a planted link, pipe or device stays as it is */
    } else if ((err = check_planted(f->dirfd, &st)) != 0) {
      /* refused: someone else's link, pipe or device in a directory others can write */
    } else if (S_ISLNK(st.st_mode)) {
      err = resolve_link(f);
      if (err == 0 && f->dirfd < 0) return 0; /* written in place */
    } else {
      err = open_in_place(f->dirfd, f->name, false, &f->fd);
      if (err == 0) {
        close(f->dirfd);
        f->dirfd = -1;
        return 0;
      }
    }
  } else if (errno != ENOENT) {
    err = errno;
  }
  if (err == 0) err = create_temporary(f);
  if (err != 0) {
    close(f->dirfd);
    f->dirfd = -1;
  }
  return err;
}

/* Links the unnamed temporary at `name` in dirfd (fails with EEXIST if anything is there). */
static int link_unnamed(const mprof_dumpfile_t* f, const char* name) {
  char proc[64];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", f->fd);
  if (linkat(AT_FDCWD, proc, f->dirfd, name, AT_SYMLINK_FOLLOW) == 0) return 0;
  int err = errno;
  if (err == EEXIST) return err;
  if (linkat(f->fd, "", f->dirfd, name, AT_EMPTY_PATH) == 0) return 0;
  return err;
}

int mprof__dumpfile_commit(mprof_dumpfile_t* f) {
  int err = 0;
  if (f->dirfd < 0) { /* in place */
    if (close(f->fd) != 0) err = errno;
    f->fd = -1;
    return err;
  }
  bool unnamed = f->tmp[0] == '\0';
  /* 0600 while incomplete; a finished profile gets the mode of a file created with 0644, or
   * stays 0600 when the umask cannot be read. */
  mode_t mask;
  if (current_umask(&mask) && fchmod(f->fd, 0644 & ~mask) != 0) err = errno;
  if (err == 0 && !f->replace) {
    /* Nothing was at the name: link it there, which never replaces what may have appeared. */
    if (unnamed) {
      err = link_unnamed(f, f->name);
    } else if (linkat(f->dirfd, f->tmp, f->dirfd, f->name, 0) != 0) {
      err = errno;
    }
  } else if (err == 0) {
    /* A regular file is there: give the new file a temporary name, then rename it over. */
    if (unnamed) {
      for (int i = 0; i < TMP_TRIES; i++) {
        tmp_name(f->tmp, sizeof f->tmp);
        err = link_unnamed(f, f->tmp);
        if (err != EEXIST) break;
      }
      if (err != 0) f->tmp[0] = '\0';
    }
    if (err == 0 && renameat(f->dirfd, f->tmp, f->dirfd, f->name) != 0) err = errno;
    if (err == 0) f->tmp[0] = '\0';
  }
  if (f->tmp[0] != '\0') unlinkat(f->dirfd, f->tmp, 0);
  f->tmp[0] = '\0';
  if (close(f->fd) != 0 && err == 0) err = errno;
  close(f->dirfd);
  f->fd = -1;
  f->dirfd = -1;
  return err;
}

void mprof__dumpfile_abort(mprof_dumpfile_t* f) {
  if (f->fd >= 0) close(f->fd);
  if (f->dirfd >= 0) {
    if (f->tmp[0] != '\0') unlinkat(f->dirfd, f->tmp, 0);
    close(f->dirfd);
  }
  f->fd = -1;
  f->dirfd = -1;
  f->tmp[0] = '\0';
}

void mprof__sigpipe_block(mprof_sigpipe_guard_t* g) {
  sigset_t pipe_only, pending;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_only, &g->old);
  g->was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE);
}

void mprof__sigpipe_restore(mprof_sigpipe_guard_t* g, bool got_epipe) {
  int saved = errno;
  if (got_epipe && !g->was_pending) {
    sigset_t pipe_only;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    const struct timespec zero = {0, 0};
    while (sigtimedwait(&pipe_only, NULL, &zero) < 0 && errno == EINTR) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &g->old, NULL);
  errno = saved;
}
