/* Function names from ELF symbol tables (see mprof_symtab.h).
 *
 * Every offset and size read from the file is checked against the file's size before use: the
 * file is whatever is on disk at that path now, and a truncated or hostile file must give no
 * names rather than a crash. Inside the profiled process (mprof__symtab_load) the file is read
 * with pread, never mapped: a library overwritten on disk while a dump reads it gives short
 * reads and no names, where a mapping would raise SIGBUS. */
#include "mprof_symtab.h"

#include "mprof_meta.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static bool sym_less(const mprof_sym_t* a, const mprof_sym_t* b) {
  return a->addr != b->addr ? a->addr < b->addr : a->rank < b->rank;
}

/* Heapsort: no allocation (glibc's qsort may call malloc) and O(n log n) on any input. */
static void sift_down(mprof_sym_t* v, size_t root, size_t n) {
  for (;;) {
    size_t child = 2 * root + 1;
    if (child >= n) return;
    if (child + 1 < n && sym_less(&v[child], &v[child + 1])) child++;
    if (!sym_less(&v[root], &v[child])) return;
    mprof_sym_t t = v[root];
    v[root] = v[child];
    v[child] = t;
    root = child;
  }
}

static void sort_syms(mprof_sym_t* v, size_t n) {
  for (size_t i = n / 2; i-- > 0;)
    sift_down(v, i, n);
  for (size_t end = n; end-- > 1;) {
    mprof_sym_t t = v[0];
    v[0] = v[end];
    v[end] = t;
    sift_down(v, 0, end);
  }
}

static const char hexdigits[] = "0123456789abcdef";

/* Where the file's bytes come from: its read-only mapping (mprof__symtab_open), or pread on its
 * descriptor (mprof__symtab_load: a file that shrinks while it is read gives short reads, never
 * a SIGBUS). Every read is checked against the size the file had when it was opened. */
typedef struct src_s {
  const uint8_t* map;
  int fd;
  uint64_t size;
} src_t;

static bool src_read(const src_t* s, uint64_t off, void* dst, size_t len) {
  if (off > s->size || len > s->size - off) return false;
  if (s->map != NULL) {
    memcpy(dst, s->map + off, len);
    return true;
  }
  size_t done = 0;
  while (done < len) {
    ssize_t n = pread(s->fd, (char*)dst + done, len - done, (off_t)(off + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += (size_t)n;
  }
  return true;
}

#define NOTE_MAX ((uint64_t)64 * 1024) /* bytes of a note section read for the build id */

/* True if the file has no GNU build id, or has `want` (lowercase hex). */
static bool build_id_matches(const src_t* src, const ElfW(Shdr) * sh, size_t shnum,
                             const char* want) {
  for (size_t i = 0; i < shnum; i++) {
    if (sh[i].sh_type != SHT_NOTE || sh[i].sh_size == 0 || sh[i].sh_size > NOTE_MAX) continue;
    size_t size = (size_t)sh[i].sh_size;
    uint8_t* buf = mprof__meta_alloc(size);
    if (buf == NULL) continue;
    if (!src_read(src, sh[i].sh_offset, buf, size)) {
      mprof__meta_free(buf, size);
      continue;
    }
    const uint8_t* p = buf;
    size_t left = size;
    int verdict = -1; /* -1: no build id in this section */
    while (left >= sizeof(ElfW(Nhdr))) {
      ElfW(Nhdr) nh;
      memcpy(&nh, p, sizeof nh);
      size_t namesz = (nh.n_namesz + 3u) & ~3u, descsz = (nh.n_descsz + 3u) & ~3u;
      if (namesz > left - sizeof nh || descsz > left - sizeof nh - namesz) break;
      const uint8_t* name = p + sizeof nh;
      const uint8_t* desc = name + namesz;
      if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 && memcmp(name, "GNU", 4) == 0) {
        verdict = strlen(want) == 2 * (size_t)nh.n_descsz;
        for (size_t k = 0; verdict == 1 && k < nh.n_descsz; k++) {
          if (want[2 * k] != hexdigits[desc[k] >> 4] || want[2 * k + 1] != hexdigits[desc[k] & 15])
            verdict = 0;
        }
        break;
      }
      p += sizeof nh + namesz + descsz;
      left -= sizeof nh + namesz + descsz;
    }
    mprof__meta_free(buf, size);
    if (verdict >= 0) return verdict == 1;
  }
  return true;
}

#define SYM_CHUNK 128 /* symbols read at a time */

/* Picks .symtab, else .dynsym, and fills st->syms with its defined, sized functions. */
static int load_syms(mprof_symtab_t* st, const src_t* src, const char* build_id) {
  ElfW(Ehdr) eh;
  if (!src_read(src, 0, &eh, sizeof eh) || memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 ||
      eh.e_ident[EI_CLASS] != (sizeof(void*) == 8 ? ELFCLASS64 : ELFCLASS32) ||
      eh.e_shentsize != sizeof(ElfW(Shdr)) || eh.e_shnum == 0 ||
      eh.e_shoff % _Alignof(ElfW(Shdr)) != 0)
    return ENOEXEC;
  size_t shnum = eh.e_shnum, sh_size = shnum * sizeof(ElfW(Shdr));
  ElfW(Shdr)* sh = mprof__meta_alloc(sh_size);
  if (sh == NULL) return ENOMEM;
  int err = ENOEXEC;
  if (!src_read(src, eh.e_shoff, sh, sh_size)) goto out;
  if (build_id[0] != '\0' && !build_id_matches(src, sh, shnum, build_id)) {
    err = ESTALE;
    goto out;
  }

  const ElfW(Shdr)* symsec = NULL;
  for (size_t i = 0; i < shnum; i++)
    if (sh[i].sh_type == SHT_SYMTAB) symsec = &sh[i];
  if (symsec == NULL) {
    for (size_t i = 0; i < shnum; i++)
      if (sh[i].sh_type == SHT_DYNSYM) symsec = &sh[i];
  }
  if (symsec == NULL || symsec->sh_entsize != sizeof(ElfW(Sym)) || symsec->sh_link >= shnum ||
      symsec->sh_offset > src->size || symsec->sh_size > src->size - symsec->sh_offset)
    goto out;
  const ElfW(Shdr)* strsec = &sh[symsec->sh_link];
  if (strsec->sh_size == 0 || strsec->sh_offset > src->size ||
      strsec->sh_size > src->size - strsec->sh_offset || strsec->sh_size > UINT32_MAX)
    goto out;
  size_t strsize = (size_t)strsec->sh_size;
  if (src->map != NULL) {
    st->strtab = (const char*)src->map + strsec->sh_offset;
  } else {
    char* copy = mprof__meta_alloc(strsize);
    if (copy == NULL) {
      err = ENOMEM;
      goto out;
    }
    st->strtab = copy;
    st->owns_strtab = true;
    if (!src_read(src, strsec->sh_offset, copy, strsize)) goto out;
  }
  st->strtab_size = strsize;
  if (st->strtab[strsize - 1] != '\0') goto out;

  size_t nsyms = (size_t)(symsec->sh_size / sizeof(ElfW(Sym))), nfuncs = 0;
  ElfW(Sym) chunk[SYM_CHUNK];
  for (int pass = 0; pass < 2; pass++) {
    for (size_t at = 0; at < nsyms; at += SYM_CHUNK) {
      size_t k = nsyms - at < SYM_CHUNK ? nsyms - at : SYM_CHUNK;
      if (!src_read(src, symsec->sh_offset + at * sizeof(ElfW(Sym)), chunk, k * sizeof chunk[0]))
        goto out;
      for (size_t i = 0; i < k; i++) {
        const ElfW(Sym)* s = &chunk[i];
        int type = ELF64_ST_TYPE(s->st_info), bind = ELF64_ST_BIND(s->st_info);
        if ((type != STT_FUNC && type != STT_GNU_IFUNC) || s->st_shndx == SHN_UNDEF ||
            s->st_value == 0 || s->st_size == 0 || s->st_name == 0 || s->st_name >= st->strtab_size)
          continue;
        if (pass == 0) {
          nfuncs++;
        } else if (st->n < st->syms_cap) { /* a file rewritten between the passes: no more */
          mprof_sym_t* d = &st->syms[st->n++];
          d->addr = s->st_value;
          d->size = s->st_size;
          d->name = s->st_name;
          d->rank = bind == STB_GLOBAL ? 0 : bind == STB_WEAK ? 1 : 2;
        }
      }
    }
    if (pass == 0) {
      if (nfuncs == 0) goto out;
      st->syms = mprof__meta_alloc(nfuncs * sizeof *st->syms);
      if (st->syms == NULL) {
        err = ENOMEM;
        goto out;
      }
      st->syms_cap = nfuncs;
    }
  }
  sort_syms(st->syms, st->n);
  err = 0;
out:
  mprof__meta_free(sh, sh_size);
  return err;
}

static int open_file(const char* path, const char* build_id, mprof_symtab_t* out, bool map) {
  memset(out, 0, sizeof *out);
  /* The path is whatever is on disk now: a pipe put in place of a library must not block the
   * dump (O_NONBLOCK), and only a regular file is read. */
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) return errno;
  struct stat sb;
  int err = 0;
  if (fstat(fd, &sb) != 0) {
    err = errno;
  } else if (!S_ISREG(sb.st_mode) || sb.st_size <= 0) {
    err = ENOEXEC;
  } else {
    src_t src = {NULL, fd, (uint64_t)sb.st_size};
    if (map) {
      void* p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        err = errno;
      } else {
        out->file = p;
        src.map = p;
      }
    }
    out->file_size = (size_t)sb.st_size;
    if (err == 0) err = load_syms(out, &src, build_id != NULL ? build_id : "");
  }
  close(fd);
  if (err != 0) mprof__symtab_close(out);
  return err;
}

int mprof__symtab_open(const char* path, const char* build_id, mprof_symtab_t* out) {
  return open_file(path, build_id, out, true);
}

int mprof__symtab_load(const char* path, const char* build_id, mprof_symtab_t* out) {
  return open_file(path, build_id, out, false);
}

const char* mprof__symtab_find(const mprof_symtab_t* st, uint64_t vaddr) {
  size_t lo = 0, hi = st->n; /* first symbol with addr > vaddr */
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (st->syms[mid].addr <= vaddr)
      lo = mid + 1;
    else
      hi = mid;
  }
  /* Walk back over aliases and nested symbols to one that contains vaddr, preferring the
   * lowest rank at the nearest address (the list is sorted by address, then rank). */
  for (size_t i = lo; i-- > 0 && lo - i <= 8;) {
    const mprof_sym_t* s = &st->syms[i];
    if (vaddr - s->addr < s->size) {
      while (i > 0 && st->syms[i - 1].addr == s->addr && vaddr - s->addr < st->syms[i - 1].size)
        s = &st->syms[--i];
      return st->strtab + s->name;
    }
  }
  return NULL;
}

void mprof__symtab_close(mprof_symtab_t* st) {
  if (st->syms != NULL) mprof__meta_free(st->syms, st->syms_cap * sizeof *st->syms);
  if (st->owns_strtab) mprof__meta_free((void*)(uintptr_t)st->strtab, st->strtab_size);
  if (st->file != NULL) munmap((void*)(uintptr_t)st->file, st->file_size);
  memset(st, 0, sizeof *st);
}
