/* libFuzzer harness for dump path handling (plugin/mprof_dumpfile.c): names, links and file
 * types at the target of automatic and explicit dumps.
 *
 * Each input builds a small tree in a scratch directory, then dumps into it. The tree has a
 * directory `d` (where dumps go) and a directory `out` with a victim file and a FIFO nobody
 * reads. An input is a sequence of 3-byte operations:
 *
 *   byte 0 % 4 == 0  plant: entry byte 1 % 8 of d becomes byte 2 % 10 of: a regular file, a link
 *                    to the victim, to the FIFO, to /dev/null, to a missing file, to another
 *                    entry, to d itself, to itself (a loop), a FIFO, a directory
 *   otherwise        dump: to entry byte 1 % 8 of d (relative or absolute path, byte 2 bit 0),
 *                    automatic (bit 1) or explicit, committed or aborted (bit 2), through a
 *                    named temporary instead of an O_TMPFILE (bit 4); with bit 3 the
 *                    name is instead the raw bytes that follow (up to byte 1 % 64, NUL-free, may
 *                    hold '/'; ".." is defused so that no path leaves d) appended to "d/"
 *
 * Entry names include ones of 1, 200 and 255 bytes. Checked after every dump: the call returned
 * (no open blocked on the FIFO: libFuzzer's -timeout), the result is 0 or a plausible errno
 * (never EBADF or EFAULT); no temporary file is left anywhere; no descriptor is leaked; what
 * was at the name is left exactly as it was when the dump failed, was aborted, or was a link,
 * pipe or device under an automatic name; a symlink named explicitly is still the same symlink;
 * a committed dump's content is at the regular file the rules name; the victim changes only by
 * an explicit dump whose path leads to it. Build and run (tests/reliability/CMakeLists.txt does
 * the same when clang's libFuzzer works):
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Iplugin \
 *     plugin/mprof_dumpfile.c tests/fuzz/fuzz_dumppath.c -o /tmp/fuzz_dumppath
 *   /tmp/fuzz_dumppath -max_total_time=30 -timeout=10 /tmp/new tests/fuzz/corpus/dumppath */
#include "mprof_dumpfile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int* argc, char*** argv);
int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

#define NENTRIES 8
static char root[PATH_MAX];       /* the scratch directory (absolute); the harness runs in it */
static char names[NENTRIES][256]; /* entry names in d */
static const char victim_text[] = "victim\n";
static unsigned seq;

static void die(const char* what) {
  fprintf(stderr, "fuzz_dumppath: %s: %s\n", what, strerror(errno));
  abort();
}

static void remove_tree(const char* path) {
  struct stat st;
  if (lstat(path, &st) != 0) return;
  if (S_ISDIR(st.st_mode)) {
    DIR* d = opendir(path);
    if (d != NULL) {
      struct dirent* e;
      while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char sub[PATH_MAX];
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        remove_tree(sub);
      }
      closedir(d);
    }
    rmdir(path);
  } else {
    unlink(path);
  }
}

static void write_text(const char* path, const char* text) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0644);
  if (fd < 0) die(path);
  if (write(fd, text, strlen(text)) != (ssize_t)strlen(text)) die("write");
  close(fd);
}

/* Contents of a regular file (not following a link); false if it is none. */
static bool read_text(const char* path, char* buf, size_t cap) {
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) return false;
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return false;
  }
  ssize_t n = read(fd, buf, cap - 1);
  close(fd);
  if (n < 0) return false;
  buf[n] = '\0';
  return true;
}

static void reset_tree(void) {
  remove_tree("d");
  remove_tree("out");
  if (mkdir("d", 0755) != 0 || mkdir("out", 0755) != 0) die("mkdir");
  write_text("out/victim", victim_text);
  if (mkfifo("out/fifo", 0600) != 0) die("mkfifo");
}

static int count_fds(void) {
  DIR* d = opendir("/proc/self/fd");
  if (d == NULL) return -1;
  int n = 0;
  while (readdir(d) != NULL)
    n++;
  closedir(d);
  return n;
}

static bool has_temporaries(const char* dir) {
  DIR* d = opendir(dir);
  if (d == NULL) return false;
  bool found = false;
  struct dirent* e;
  while ((e = readdir(d)) != NULL)
    found |= strncmp(e->d_name, ".mprof.tmp.", 11) == 0;
  closedir(d);
  return found;
}

static void plant(unsigned entry, unsigned kind) {
  char p[PATH_MAX], target[PATH_MAX];
  snprintf(p, sizeof p, "d/%s", names[entry]);
  remove_tree(p);
  switch (kind) {
  case 0:
    write_text(p, "old\n");
    return;
  case 1:
    snprintf(target, sizeof target, "%s/out/victim", root);
    break;
  case 2:
    snprintf(target, sizeof target, "../out/fifo");
    break;
  case 3:
    snprintf(target, sizeof target, "/dev/null");
    break;
  case 4:
    snprintf(target, sizeof target, "missing/file");
    break;
  case 5:
    snprintf(target, sizeof target, "%s", names[(entry + 1) % NENTRIES]);
    break;
  case 6:
    snprintf(target, sizeof target, ".");
    break;
  case 7:
    snprintf(target, sizeof target, "%s", names[entry]);
    break;
  case 8:
    if (mkfifo(p, 0600) != 0) die("mkfifo");
    return;
  default:
    mkdir(p, 0755);
    return;
  }
  if (symlink(target, p) != 0) die("symlink");
}

typedef struct {
  bool exists;
  struct stat st;
  char link[PATH_MAX]; /* link text for a symlink */
  char text[64];       /* content of a regular file */
  bool has_text;
} entry_state_t;

static void observe(const char* p, entry_state_t* s) {
  memset(s, 0, sizeof *s);
  s->exists = lstat(p, &s->st) == 0;
  if (!s->exists) return;
  if (S_ISLNK(s->st.st_mode)) {
    ssize_t n = readlink(p, s->link, sizeof s->link - 1);
    if (n >= 0) s->link[n] = '\0';
  }
  if (S_ISREG(s->st.st_mode)) s->has_text = read_text(p, s->text, sizeof s->text);
}

static bool same_entry(const entry_state_t* a, const entry_state_t* b) {
  if (a->exists != b->exists) return false;
  if (!a->exists) return true;
  if ((a->st.st_mode & S_IFMT) != (b->st.st_mode & S_IFMT)) return false;
  if (S_ISLNK(a->st.st_mode)) return strcmp(a->link, b->link) == 0;
  if (S_ISREG(a->st.st_mode))
    return a->st.st_ino == b->st.st_ino && a->has_text == b->has_text &&
           strcmp(a->text, b->text) == 0;
  return a->st.st_ino == b->st.st_ino;
}

static bool plausible(int err) {
  switch (err) {
  case 0:
  case ENOENT:
  case ENOTDIR:
  case EACCES:
  case EPERM:
  case EEXIST:
  case EISDIR:
  case ENXIO:
  case ENAMETOOLONG:
  case ELOOP:
  case EROFS:
  case ENOSPC:
  case EXDEV:
  case EINVAL:
    return true;
  default:
    return false;
  }
}

static void dump_once(const char* path, bool automatic, bool commit) {
  entry_state_t before, after, victim_before, victim_after;
  observe(path, &before);
  observe("out/victim", &victim_before);
  int fds = count_fds();
  char content[64];
  snprintf(content, sizeof content, "profile %u\n", ++seq);

  mprof_dumpfile_t f;
  int err = mprof__dumpfile_open(&f, path, automatic);
  bool in_place = false;
  if (err == 0) {
    in_place = f.dirfd < 0;
    ssize_t n = write(f.fd, content, strlen(content));
    if (n < 0 && !in_place) die("write to the temporary");
    if (commit) {
      err = mprof__dumpfile_commit(&f);
    } else {
      mprof__dumpfile_abort(&f);
    }
  }
  if (!plausible(err)) {
    fprintf(stderr, "unexpected error %d (%s) for %s\n", err, strerror(err), path);
    abort();
  }
  observe(path, &after);
  observe("out/victim", &victim_after);
  if (count_fds() != fds) abort(); /* descriptor leaked */
  if (has_temporaries("d") || has_temporaries("out") || has_temporaries(".")) abort();

  bool was_link = before.exists && S_ISLNK(before.st.st_mode);
  bool was_reg = before.exists && S_ISREG(before.st.st_mode);
  if (err != 0 || !commit || in_place) {
    /* Nothing replaced: the entry is as it was (in place writes go into what is there). */
    if (!in_place && !same_entry(&before, &after)) abort();
    if (in_place && was_link && strcmp(before.link, after.link) != 0) abort();
  } else {
    if (automatic && before.exists && !was_reg) abort(); /* only free names or regular files */
    if (was_link) {
      /* An explicit link stays the same link; its regular target has the content. */
      if (!after.exists || !S_ISLNK(after.st.st_mode) || strcmp(before.link, after.link) != 0)
        abort();
      char text[64];
      int fd = open(path, O_RDONLY | O_NONBLOCK);
      if (fd < 0) abort();
      ssize_t n = read(fd, text, sizeof text - 1);
      close(fd);
      if (n < 0) abort();
      text[n] = '\0';
      if (strcmp(text, content) != 0) abort();
    } else {
      if (!after.exists || !S_ISREG(after.st.st_mode) || strcmp(after.text, content) != 0) abort();
    }
  }
  /* The victim only changes by an explicit, committed dump through a link that leads to it. */
  if (!same_entry(&victim_before, &victim_after)) {
    if (automatic || !commit || err != 0 || !was_link) abort();
    if (strcmp(victim_after.text, content) != 0) abort();
  }
}

int LLVMFuzzerInitialize(int* argc, char*** argv) {
  (void)argc;
  (void)argv;
  const char* tmp = getenv("TMPDIR");
  snprintf(root, sizeof root, "%s/mprof-fuzz-dumppath.XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (mkdtemp(root) == NULL) die("mkdtemp");
  if (chdir(root) != 0) die("chdir");
  static const char* const base[NENTRIES] = {"a", "b", "heap.pb.gz", "c.tmp", "x", "y"};
  for (int i = 0; i < NENTRIES; i++) {
    if (i < 6) {
      snprintf(names[i], sizeof names[i], "%s", base[i]);
    } else {
      size_t len = i == 6 ? 200 : 255;
      memset(names[i], 'n', len);
      names[i][len] = '\0';
    }
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  reset_tree();
  size_t i = 0;
  int ops = 0;
  while (i + 3 <= size && ops++ < 32) {
    uint8_t op = data[i], a = data[i + 1], b = data[i + 2];
    i += 3;
    if (op % 4 == 0) {
      plant(a % NENTRIES, b % 10);
      continue;
    }
    char path[PATH_MAX + 64];
    if (b & 8) {
      size_t len = a % 64, k = 0;
      size_t n = snprintf(path, sizeof path, "d/");
      for (; k < len && i < size; k++, i++)
        path[n++] = data[i] ? (char)data[i] : 'z';
      path[n] = '\0';
      /* Never above d: the harness may run as root, and ".." could reach any file. */
      for (char* dots; (dots = strstr(path, "..")) != NULL;)
        dots[0] = 'p';
      for (char* t; (t = strstr(path, ".mprof.tmp.")) != NULL;)
        t[1] = 'M'; /* a name of our own temporaries would look like one left behind */
    } else if (b & 1) {
      snprintf(path, sizeof path, "%s/d/%s", root, names[a % NENTRIES]);
    } else {
      snprintf(path, sizeof path, "d/%s", names[a % NENTRIES]);
    }
    mprof__dumpfile_force_named = (b & 16) != 0;
    dump_once(path, (b & 2) != 0, (b & 4) == 0);
  }
  return 0;
}
