/* Function names from ELF symbol tables (see mprof_symtab.h).
 *
 * Every offset and size read from the file is checked against the file's size before use: the
 * file is whatever is on disk at that path now, and a truncated or hostile file must give no
 * names rather than a crash. */
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

static bool in_file(const mprof_symtab_t* st, uint64_t off, uint64_t len) {
  return off <= st->file_size && len <= st->file_size - off;
}

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

/* True if the file has no GNU build id, or has `want` (lowercase hex). */
static bool build_id_matches(const mprof_symtab_t* st, const ElfW(Shdr) * sh, size_t shnum,
                             const char* want) {
  for (size_t i = 0; i < shnum; i++) {
    if (sh[i].sh_type != SHT_NOTE || !in_file(st, sh[i].sh_offset, sh[i].sh_size)) continue;
    const uint8_t* p = st->file + sh[i].sh_offset;
    size_t left = sh[i].sh_size;
    while (left >= sizeof(ElfW(Nhdr))) {
      ElfW(Nhdr) nh;
      memcpy(&nh, p, sizeof nh);
      size_t namesz = (nh.n_namesz + 3u) & ~3u, descsz = (nh.n_descsz + 3u) & ~3u;
      if (namesz > left - sizeof nh || descsz > left - sizeof nh - namesz) break;
      const uint8_t* name = p + sizeof nh;
      const uint8_t* desc = name + namesz;
      if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 && memcmp(name, "GNU", 4) == 0) {
        if (strlen(want) != 2 * (size_t)nh.n_descsz) return false;
        for (size_t k = 0; k < nh.n_descsz; k++) {
          if (want[2 * k] != hexdigits[desc[k] >> 4] || want[2 * k + 1] != hexdigits[desc[k] & 15])
            return false;
        }
        return true;
      }
      p += sizeof nh + namesz + descsz;
      left -= sizeof nh + namesz + descsz;
    }
  }
  return true;
}

/* Picks .symtab, else .dynsym, and fills st->syms with its defined, sized functions. */
static int load_syms(mprof_symtab_t* st, const char* build_id) {
  const ElfW(Ehdr)* eh = (const ElfW(Ehdr)*)st->file;
  if (st->file_size < sizeof *eh || memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 ||
      eh->e_ident[EI_CLASS] != (sizeof(void*) == 8 ? ELFCLASS64 : ELFCLASS32) ||
      eh->e_shentsize != sizeof(ElfW(Shdr)) || eh->e_shnum == 0 ||
      !in_file(st, eh->e_shoff, (uint64_t)eh->e_shnum * sizeof(ElfW(Shdr))) ||
      eh->e_shoff % _Alignof(ElfW(Shdr)) != 0)
    return ENOEXEC;
  const ElfW(Shdr)* sh = (const ElfW(Shdr)*)(st->file + eh->e_shoff);
  size_t shnum = eh->e_shnum;
  if (build_id[0] != '\0' && !build_id_matches(st, sh, shnum, build_id)) return ESTALE;

  const ElfW(Shdr)* symsec = NULL;
  for (size_t i = 0; i < shnum; i++)
    if (sh[i].sh_type == SHT_SYMTAB) symsec = &sh[i];
  if (symsec == NULL) {
    for (size_t i = 0; i < shnum; i++)
      if (sh[i].sh_type == SHT_DYNSYM) symsec = &sh[i];
  }
  if (symsec == NULL || symsec->sh_entsize != sizeof(ElfW(Sym)) || symsec->sh_link >= shnum ||
      !in_file(st, symsec->sh_offset, symsec->sh_size) ||
      symsec->sh_offset % _Alignof(ElfW(Sym)) != 0)
    return ENOEXEC;
  const ElfW(Shdr)* strsec = &sh[symsec->sh_link];
  if (strsec->sh_size == 0 || !in_file(st, strsec->sh_offset, strsec->sh_size) ||
      st->file[strsec->sh_offset + strsec->sh_size - 1] != '\0' || strsec->sh_size > UINT32_MAX)
    return ENOEXEC;
  st->strtab = (const char*)st->file + strsec->sh_offset;
  st->strtab_size = strsec->sh_size;

  const ElfW(Sym)* syms = (const ElfW(Sym)*)(st->file + symsec->sh_offset);
  size_t nsyms = symsec->sh_size / sizeof(ElfW(Sym)), nfuncs = 0;
  for (int pass = 0; pass < 2; pass++) {
    for (size_t i = 0; i < nsyms; i++) {
      const ElfW(Sym)* s = &syms[i];
      int type = ELF64_ST_TYPE(s->st_info), bind = ELF64_ST_BIND(s->st_info);
      if ((type != STT_FUNC && type != STT_GNU_IFUNC) || s->st_shndx == SHN_UNDEF ||
          s->st_value == 0 || s->st_size == 0 || s->st_name == 0 || s->st_name >= st->strtab_size)
        continue;
      if (pass == 1) {
        mprof_sym_t* d = &st->syms[st->n++];
        d->addr = s->st_value;
        d->size = s->st_size;
        d->name = s->st_name;
        d->rank = bind == STB_GLOBAL ? 0 : bind == STB_WEAK ? 1 : 2;
      } else {
        nfuncs++;
      }
    }
    if (pass == 0) {
      if (nfuncs == 0) return ENOEXEC;
      st->syms = mprof__meta_alloc(nfuncs * sizeof *st->syms);
      if (st->syms == NULL) return ENOMEM;
    }
  }
  sort_syms(st->syms, st->n);
  return 0;
}

int mprof__symtab_open(const char* path, const char* build_id, mprof_symtab_t* out) {
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
    void* p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      err = errno;
    } else {
      out->file = p;
      out->file_size = (size_t)sb.st_size;
      err = load_syms(out, build_id != NULL ? build_id : "");
    }
  }
  close(fd);
  if (err != 0) mprof__symtab_close(out);
  return err;
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
  if (st->syms != NULL) mprof__meta_free(st->syms, st->n ? st->n * sizeof *st->syms : 1);
  if (st->file != NULL) munmap((void*)(uintptr_t)st->file, st->file_size);
  memset(st, 0, sizeof *st);
}
