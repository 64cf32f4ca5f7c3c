/* Loaded objects of the process (see mprof_maps.h).
 *
 * This file owns the read of /proc/self/maps (and, where /proc is missing, the walk over
 * dl_iterate_phdr), the reading of GNU build-id notes from memory
 * (through a copy that cannot fault, see safe_copy),
 * and the sorted table of executable segments with its address lookup. Each object's path and
 * build id live in one block of profiler memory shared by the object's entries; the first entry
 * of the object owns it. Everything comes from mprof__meta_alloc: this code may run inside the
 * program's malloc. */
#include "mprof_maps.h"

#include "mprof_meta.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#if __ELF_NATIVE_CLASS == 64
#define NATIVE_CLASS ELFCLASS64
#else
#define NATIVE_CLASS ELFCLASS32
#endif

#define BUILD_ID_MAX 64 /* bytes; GNU ld writes 20 (sha1), some linkers up to 32 */

typedef struct walk_s {
  mprof_maps_t* maps;
  uintptr_t main_phdr; /* AT_PHDR: the main program's program headers */
  uintptr_t vdso_phdr; /* the vDSO's program headers, 0 when there is no vDSO */
  int err;             /* first error; stops the walk */
} walk_t;

/* Copies len bytes at src into dst without ever faulting: the program headers and notes of a
 * loaded object are read through the object's file mapping, and a file truncated or rewritten on
 * disk since it was loaded (cp over a library) turns those pages into SIGBUS. process_vm_readv
 * on the own process copies through the kernel, which reports EFAULT instead. Where it is refused
 * (seccomp filters, kernels without it) the bytes are written into a pipe and read back: write
 * also fails with EFAULT. Returns 0 or EFAULT (or the pipe's errno). */
static int safe_copy(void* dst, uintptr_t src, size_t len) {
  static _Atomic bool vm_refused;
  if (len == 0) return 0;
  if (!atomic_load_explicit(&vm_refused, memory_order_relaxed)) {
    struct iovec local = {dst, len}, remote = {(void*)src, len};
    ssize_t n = syscall(SYS_process_vm_readv, (long)getpid(), &local, 1L, &remote, 1L, 0L);
    if (n == (ssize_t)len) return 0;
    if (n >= 0 || errno == EFAULT) return EFAULT;
    atomic_store_explicit(&vm_refused, true, memory_order_relaxed);
  }
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return errno;
  int err = 0;
  size_t done = 0;
  while (done < len && err == 0) {
    size_t k = len - done < 4096 ? len - done : 4096; /* within the pipe's buffer */
    ssize_t w = write(fds[1], (const void*)(src + done), k);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      err = w < 0 ? errno : EFAULT;
      break;
    }
    size_t got = 0;
    while (got < (size_t)w) {
      ssize_t r = read(fds[0], (char*)dst + done + got, (size_t)w - got);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        err = EFAULT;
        break;
      }
      got += (size_t)r;
    }
    done += got;
  }
  close(fds[0]);
  close(fds[1]);
  return err;
}

/* An object's program headers, copied into profiler memory (safe_copy): NULL when they cannot be
 * read. Free with mprof__meta_free(p, phnum * sizeof *p). */
static ElfW(Phdr) * copy_phdrs(const struct dl_phdr_info* info) {
  size_t size = (size_t)info->dlpi_phnum * sizeof(ElfW(Phdr));
  if (size == 0) return NULL;
  ElfW(Phdr)* ph = mprof__meta_alloc(size);
  if (ph != NULL && safe_copy(ph, (uintptr_t)info->dlpi_phdr, size) != 0) {
    mprof__meta_free(ph, size);
    ph = NULL;
  }
  return ph;
}

/* True when [vaddr, vaddr + size) lies in the file-backed part of a PT_LOAD segment. */
static bool in_loaded_file(const ElfW(Phdr) * phdrs, size_t phnum, ElfW(Addr) vaddr,
                           ElfW(Xword) size) {
  for (size_t i = 0; i < phnum; i++) {
    const ElfW(Phdr)* ph = &phdrs[i];
    if (ph->p_type != PT_LOAD) continue;
    if (vaddr >= ph->p_vaddr && size <= ph->p_filesz && vaddr - ph->p_vaddr <= ph->p_filesz - size)
      return true;
  }
  return false;
}

#define NOTE_MAX 4096 /* bytes of a note segment read for the build id */

/* Writes the build id of the object as lowercase hex into hex (2 * BUILD_ID_MAX + 1 bytes);
 * leaves "" when the object has no readable NT_GNU_BUILD_ID note. */
static void read_build_id(uintptr_t bias, const ElfW(Phdr) * phdrs, size_t phnum, char* hex) {
  static const char digits[] = "0123456789abcdef";
  hex[0] = '\0';
  for (size_t i = 0; i < phnum; i++) {
    const ElfW(Phdr)* ph = &phdrs[i];
    if (ph->p_type != PT_NOTE || ph->p_filesz == 0 || ph->p_filesz > NOTE_MAX ||
        !in_loaded_file(phdrs, phnum, ph->p_vaddr, ph->p_filesz))
      continue;
    unsigned char* notes = mprof__meta_alloc(NOTE_MAX);
    if (notes == NULL) return;
    if (safe_copy(notes, bias + ph->p_vaddr, ph->p_filesz) != 0) {
      mprof__meta_free(notes, NOTE_MAX);
      continue;
    }
    /* Notes are padded to 4 bytes, or to 8 in segments aligned to 8 (.note.gnu.property). */
    size_t align = ph->p_align == 8 ? 8 : 4;
    const unsigned char* p = notes;
    size_t left = ph->p_filesz;
    while (left >= sizeof(ElfW(Nhdr))) {
      ElfW(Nhdr) nh;
      memcpy(&nh, p, sizeof nh);
      size_t name_len = ((size_t)nh.n_namesz + align - 1) & ~(align - 1);
      size_t desc_len = ((size_t)nh.n_descsz + align - 1) & ~(align - 1);
      size_t body = sizeof nh;
      if (name_len > left - body) break;
      body += name_len;
      if (desc_len > left - body) break;
      body += desc_len;
      const unsigned char* name = p + sizeof nh;
      const unsigned char* desc = name + name_len;
      if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 && memcmp(name, "GNU", 4) == 0 &&
          nh.n_descsz > 0 && nh.n_descsz <= BUILD_ID_MAX) {
        for (size_t k = 0; k < nh.n_descsz; k++) {
          hex[2 * k] = digits[desc[k] >> 4];
          hex[2 * k + 1] = digits[desc[k] & 15];
        }
        hex[2 * nh.n_descsz] = '\0';
        mprof__meta_free(notes, NOTE_MAX);
        return;
      }
      p += body;
      left -= body;
    }
    mprof__meta_free(notes, NOTE_MAX);
  }
}

static int grow_entries(mprof_maps_t* maps, size_t need) {
  if (need <= maps->cap) return 0;
  size_t cap = maps->cap < 16 ? 16 : maps->cap;
  while (cap < need)
    cap *= 2;
  mprof_mapping_t* entries = mprof__meta_alloc(cap * sizeof *entries);
  if (entries == NULL) return ENOMEM;
  if (maps->n > 0) memcpy(entries, maps->entries, maps->n * sizeof *entries);
  if (maps->entries != NULL) mprof__meta_free(maps->entries, maps->cap * sizeof *entries);
  maps->entries = entries;
  maps->cap = cap;
  return 0;
}

/* Appends the executable segments of one object (bias, a copy of its program headers, its path)
 * to maps. Returns 0 or ENOMEM. */
static int add_object(mprof_maps_t* maps, uintptr_t bias, const ElfW(Phdr) * phdrs, size_t phnum,
                      const char* path, size_t path_len, bool is_main) {
  size_t nexec = 0;
  for (size_t i = 0; i < phnum; i++) {
    const ElfW(Phdr)* ph = &phdrs[i];
    if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X) && ph->p_memsz > 0) nexec++;
  }
  if (nexec == 0 || path_len == 0) return 0;

  char build_id[2 * BUILD_ID_MAX + 1];
  read_build_id(bias, phdrs, phnum, build_id);
  size_t path_size = path_len + 1;
  size_t strings_size = path_size + strlen(build_id) + 1;
  char* strings = mprof__meta_alloc(strings_size);
  if (strings == NULL || grow_entries(maps, maps->n + nexec) != 0) {
    mprof__meta_free(strings, strings_size);
    return ENOMEM;
  }
  memcpy(strings, path, path_len);
  strings[path_len] = '\0';
  memcpy(strings + path_size, build_id, strings_size - path_size);

  bool owner = true;
  for (size_t i = 0; i < phnum; i++) {
    const ElfW(Phdr)* ph = &phdrs[i];
    if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X) || ph->p_memsz == 0) continue;
    /* The segment itself, not the pages around it: `go tool pprof` (Go 1.19) takes
     * start - (first executable p_vaddr) as the load bias and ignores the offset, so a start
     * rounded down to a page shifts every symbol when p_vaddr is not page-aligned (lld's
     * layout). google/pprof computes start - offset + p_offset - p_vaddr, right either way. */
    mprof_mapping_t* m = &maps->entries[maps->n++];
    m->start = bias + ph->p_vaddr;
    m->limit = m->start + ph->p_memsz;
    m->offset = ph->p_offset;
    m->bias = bias;
    m->path = strings;
    m->build_id = strings + path_size;
    m->is_main = is_main;
    m->owns_strings = owner;
    owner = false;
  }
  return 0;
}

static int visit_object(struct dl_phdr_info* info, size_t size, void* arg) {
  (void)size;
  walk_t* w = arg;
  uintptr_t phdr = (uintptr_t)info->dlpi_phdr;
  ElfW(Phdr)* phdrs = copy_phdrs(info);
  if (phdrs == NULL) return 0; /* unreadable (a file changed on disk): the object is left out */
  bool is_main = phdr == w->main_phdr;
  /* The loader names the main program "" and the vDSO by its soname, which is no file. */
  char exe[4096];
  const char* path = info->dlpi_name;
  if (phdr != 0 && phdr == w->vdso_phdr) {
    path = "[vdso]";
  } else if (is_main) {
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = '\0';
    path = exe;
  }
  int err = add_object(w->maps, info->dlpi_addr, phdrs, info->dlpi_phnum, path,
                       path != NULL ? strlen(path) : 0, is_main);
  mprof__meta_free(phdrs, (size_t)info->dlpi_phnum * sizeof *phdrs);
  if (err != 0) w->err = err;
  return err != 0;
}

/* Sorts the entries by start (insertion sort: objects are few, often already nearly in order,
 * and libc's qsort may call malloc) and drops an entry that overlaps its predecessor (the same
 * object seen twice while the mappings changed under the read). */
static void sort_entries(mprof_maps_t* out) {
  for (size_t i = 1; i < out->n; i++) {
    mprof_mapping_t m = out->entries[i];
    size_t j = i;
    while (j > 0 && out->entries[j - 1].start > m.start) {
      out->entries[j] = out->entries[j - 1];
      j--;
    }
    out->entries[j] = m;
  }
  size_t k = 0;
  for (size_t i = 0; i < out->n; i++) {
    mprof_mapping_t* m = &out->entries[i];
    if (k > 0 && m->start < out->entries[k - 1].limit) {
      /* An owner keeps its block alive for the other entries of its object: hand the block to
       * the kept entry of the same block, if any; otherwise free it. */
      if (m->owns_strings) {
        bool handed = false;
        for (size_t j = 0; j < k && !handed; j++)
          if (out->entries[j].path == m->path) handed = out->entries[j].owns_strings = true;
        for (size_t j = i + 1; j < out->n && !handed; j++)
          if (out->entries[j].path == m->path) handed = out->entries[j].owns_strings = true;
        if (!handed)
          mprof__meta_free((void*)(uintptr_t)m->path,
                           strlen(m->path) + 1 + strlen(m->build_id) + 1);
      }
      continue;
    }
    out->entries[k++] = *m;
  }
  out->n = k;
}

int mprof__maps_read_loader(mprof_maps_t* out) {
  out->entries = NULL;
  out->n = 0;
  out->cap = 0;
  walk_t w = {.maps = out, .main_phdr = getauxval(AT_PHDR)};
  uintptr_t vdso = getauxval(AT_SYSINFO_EHDR);
  if (vdso != 0) {
    const ElfW(Ehdr)* eh = (const ElfW(Ehdr)*)vdso;
    w.vdso_phdr = vdso + eh->e_phoff;
  }
  dl_iterate_phdr(visit_object, &w);
  if (w.err != 0) {
    mprof__maps_free(out);
    return w.err;
  }
  sort_entries(out);
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * /proc/self/maps: the same table without the loader's lock
 * ------------------------------------------------------------------------------------------- */
/* One file-backed line of /proc/self/maps; name points into the read buffer, NUL-terminated. */
typedef struct line_s {
  uintptr_t start, end;
  uint64_t offset, inode;
  unsigned long dev_major, dev_minor;
  bool exec;
  const char* name;
  size_t name_len;
} line_t;

/* The whole of /proc/self/maps in profiler memory (*size bytes allocated, *len used, with a NUL
 * after them). Returns 0, ENOSYS when the file cannot be opened (no /proc), ENOMEM, or EIO. */
static int read_maps_file(char** buf, size_t* size, size_t* len) {
  int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ENOSYS;
  size_t cap = 16384, used = 0;
  char* b = mprof__meta_alloc(cap);
  int err = b == NULL ? ENOMEM : 0;
  while (err == 0) {
    if (cap - used < 4096 + 1) {
      char* nb = mprof__meta_alloc(cap * 2);
      if (nb == NULL) {
        err = ENOMEM;
        break;
      }
      memcpy(nb, b, used);
      mprof__meta_free(b, cap);
      b = nb;
      cap *= 2;
    }
    ssize_t n = read(fd, b + used, cap - used - 1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) err = EIO;
    if (n <= 0) break;
    used += (size_t)n;
  }
  close(fd);
  if (err != 0) {
    if (b != NULL) mprof__meta_free(b, cap);
    return err;
  }
  b[used] = '\0';
  *buf = b;
  *size = cap;
  *len = used;
  return 0;
}

static uint64_t parse_hex(const char** p) {
  uint64_t v = 0;
  for (;; (*p)++) {
    char c = **p;
    if (c >= '0' && c <= '9')
      v = v * 16 + (uint64_t)(c - '0');
    else if (c >= 'a' && c <= 'f')
      v = v * 16 + (uint64_t)(c - 'a' + 10);
    else
      return v;
  }
}

static uint64_t parse_dec(const char** p) {
  uint64_t v = 0;
  for (; **p >= '0' && **p <= '9'; (*p)++)
    v = v * 10 + (uint64_t)(**p - '0');
  return v;
}

/* Parses the line at p (ends at its '\n', which becomes a NUL). Returns true for a mapping with
 * a name: a file path or "[vdso]". Format: "start-end perms offset major:minor inode   name". */
static bool parse_line(char* p, line_t* l) {
  const char* q = p;
  l->start = (uintptr_t)parse_hex(&q);
  if (*q++ != '-') return false;
  l->end = (uintptr_t)parse_hex(&q);
  if (*q++ != ' ' || strlen(q) < 5) return false;
  l->exec = q[2] == 'x';
  q += 4;
  if (*q++ != ' ') return false;
  l->offset = parse_hex(&q);
  if (*q++ != ' ') return false;
  l->dev_major = (unsigned long)parse_hex(&q);
  if (*q++ != ':') return false;
  l->dev_minor = (unsigned long)parse_hex(&q);
  if (*q++ != ' ') return false;
  l->inode = parse_dec(&q);
  while (*q == ' ')
    q++;
  if (*q != '/' && strcmp(q, "[vdso]") != 0) return false;
  size_t n = strlen(q);
  /* A file deleted or replaced (renamed over) since it was mapped: the loader's name is the
   * path without the kernel's mark. */
  static const char deleted[] = " (deleted)";
  if (n > sizeof deleted - 1 && strcmp(q + n - (sizeof deleted - 1), deleted) == 0)
    n -= sizeof deleted - 1;
  l->name = q;
  l->name_len = n;
  return true;
}

/* True when addr lies in a line of the same file as obj (or in obj itself) that is executable
 * exactly when exec says. */
static bool mapped_as(const line_t* lines, size_t n, const line_t* obj, uintptr_t addr, bool exec) {
  for (size_t i = 0; i < n; i++) {
    const line_t* l = &lines[i];
    if (addr < l->start || addr >= l->end) continue;
    if (l->exec != exec) return false;
    if (l == obj) return true;
    return l->inode == obj->inode && l->dev_major == obj->dev_major &&
           l->dev_minor == obj->dev_minor && l->inode != 0;
  }
  return false;
}

/* The object whose ELF header is mapped by line obj, if it is one the loader mapped: appends its
 * executable segments. A file that is mapped but not loaded (an ELF file the program mmaps as
 * data) does not have its segments mapped where and as its program headers say, and is left
 * out. */
static int add_line_object(mprof_maps_t* maps, const line_t* lines, size_t n, const line_t* obj,
                           uintptr_t main_phdr) {
  ElfW(Ehdr) eh;
  if (obj->end - obj->start < sizeof eh || safe_copy(&eh, obj->start, sizeof eh) != 0) return 0;
  if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != NATIVE_CLASS ||
      eh.e_phentsize != sizeof(ElfW(Phdr)) || eh.e_phnum == 0 || eh.e_phnum == PN_XNUM ||
      eh.e_phoff > obj->end - obj->start ||
      (size_t)eh.e_phnum * sizeof(ElfW(Phdr)) > obj->end - obj->start - eh.e_phoff)
    return 0;
  size_t size = (size_t)eh.e_phnum * sizeof(ElfW(Phdr));
  ElfW(Phdr)* phdrs = mprof__meta_alloc(size);
  if (phdrs == NULL) return ENOMEM;
  int err = 0;
  if (safe_copy(phdrs, obj->start + eh.e_phoff, size) != 0) goto out;
  /* The first PT_LOAD (they are sorted by p_vaddr) maps the file's first page at obj->start. */
  const ElfW(Phdr)* first = NULL;
  for (size_t i = 0; i < eh.e_phnum && first == NULL; i++)
    if (phdrs[i].p_type == PT_LOAD) first = &phdrs[i];
  uintptr_t page = (uintptr_t)getauxval(AT_PAGESZ); /* a plain read, unlike sysconf */
  if (page == 0) page = 4096;
  if (first == NULL || (first->p_offset & ~(ElfW(Off))(page - 1)) != 0) goto out;
  uintptr_t bias = obj->start - (first->p_vaddr & ~(ElfW(Addr))(page - 1));
  /* Loaded as the header says: every segment's first page mapped from this file, executable
   * exactly when the segment is (an ELF file mapped whole, as data, fails this). */
  for (size_t i = 0; i < eh.e_phnum; i++) {
    const ElfW(Phdr)* ph = &phdrs[i];
    if (ph->p_type == PT_LOAD && ph->p_filesz > 0 &&
        !mapped_as(lines, n, obj, bias + ph->p_vaddr, (ph->p_flags & PF_X) != 0))
      goto out;
  }
  bool is_main = obj->start + eh.e_phoff == main_phdr;
  err = add_object(maps, bias, phdrs, eh.e_phnum, obj->name, obj->name_len, is_main);
out:
  mprof__meta_free(phdrs, size);
  return err;
}

int mprof__maps_read_proc(mprof_maps_t* out) {
  out->entries = NULL;
  out->n = 0;
  out->cap = 0;
  char* buf;
  size_t buf_size, len;
  int err = read_maps_file(&buf, &buf_size, &len);
  if (err != 0) return err;
  size_t nl = 1;
  for (size_t i = 0; i < len; i++)
    nl += buf[i] == '\n';
  size_t lines_size = nl * sizeof(line_t);
  line_t* lines = mprof__meta_alloc(lines_size);
  if (lines == NULL) {
    mprof__meta_free(buf, buf_size);
    return ENOMEM;
  }
  size_t n = 0;
  for (char* p = buf; p < buf + len && n < nl;) {
    char* eol = memchr(p, '\n', (size_t)(buf + len - p));
    if (eol == NULL) break; /* a line cut short: the file ends with '\n' */
    *eol = '\0';
    if (parse_line(p, &lines[n])) n++;
    p = eol + 1;
  }
  uintptr_t main_phdr = getauxval(AT_PHDR);
  for (size_t i = 0; i < n && err == 0; i++)
    if (lines[i].offset == 0) err = add_line_object(out, lines, n, &lines[i], main_phdr);
  mprof__meta_free(lines, lines_size);
  mprof__meta_free(buf, buf_size);
  if (err != 0) {
    mprof__maps_free(out);
    return err;
  }
  sort_entries(out);
  return 0;
}

int mprof__maps_read(mprof_maps_t* out) {
  int err = mprof__maps_read_proc(out);
  return err == ENOSYS ? mprof__maps_read_loader(out) : err;
}

void mprof__maps_free(mprof_maps_t* maps) {
  for (size_t i = 0; i < maps->n; i++) {
    const mprof_mapping_t* m = &maps->entries[i];
    if (!m->owns_strings) continue;
    size_t size = strlen(m->path) + 1 + strlen(m->build_id) + 1;
    /* The block starts at path; the cast drops the const the table shows its readers. */
    mprof__meta_free((void*)(uintptr_t)m->path, size);
  }
  if (maps->entries != NULL) mprof__meta_free(maps->entries, maps->cap * sizeof *maps->entries);
  maps->entries = NULL;
  maps->n = 0;
  maps->cap = 0;
}

ptrdiff_t mprof__maps_find(const mprof_maps_t* maps, uintptr_t addr) {
  /* Find the last entry with start <= addr, then check its limit. */
  size_t lo = 0, hi = maps->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (maps->entries[mid].start <= addr)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo == 0) return -1;
  const mprof_mapping_t* m = &maps->entries[lo - 1];
  return addr < m->limit ? (ptrdiff_t)(lo - 1) : -1;
}
