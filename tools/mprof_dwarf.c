/* Names, inline frames and lines through libdwfl (see mprof_dwarf.h). */
#include "mprof_dwarf.h"

#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct seg_s {
  uint64_t off, filesz, vaddr;
} seg_t;

struct mprof_dw_s {
  Dwfl* dwfl;
  Dwfl_Module* mod;
  uint64_t bias; /* module address = file vaddr + bias */
  seg_t* segs;   /* PT_LOAD segments */
  size_t nsegs;
};

void mprof__dw_offline(void) {
  unsetenv("DEBUGINFOD_URLS");
}

/* The debuginfod client's cache: <cache>/<build id>/debuginfo, as debuginfod-find leaves it. */
static int from_debuginfod_cache(Dwfl_Module* mod, char** name) {
  const unsigned char* bits;
  GElf_Addr vaddr;
  int len = dwfl_module_build_id(mod, &bits, &vaddr);
  if (len <= 0 || len > 64) return -1;
  char hex[129];
  for (int i = 0; i < len; i++)
    snprintf(hex + 2 * i, 3, "%02x", bits[i]);
  char dir[PATH_MAX];
  const char* env = getenv("DEBUGINFOD_CACHE_PATH");
  const char* xdg = getenv("XDG_CACHE_HOME");
  const char* home = getenv("HOME");
  if (env != NULL && env[0] == '/')
    snprintf(dir, sizeof dir, "%s", env);
  else if (xdg != NULL && xdg[0] == '/')
    snprintf(dir, sizeof dir, "%s/debuginfod_client", xdg);
  else if (home != NULL && home[0] == '/')
    snprintf(dir, sizeof dir, "%s/.cache/debuginfod_client", home);
  else
    return -1;
  char path[PATH_MAX + 160];
  snprintf(path, sizeof path, "%s/%s/debuginfo", dir, hex);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  struct stat sb;
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    close(fd);
    return -1;
  }
  *name = strdup(path);
  return fd;
}

static int find_debuginfo(Dwfl_Module* mod, void** userdata, const char* modname, GElf_Addr base,
                          const char* file_name, const char* debuglink_file,
                          GElf_Word debuglink_crc, char** debuginfo_file_name) {
  int fd = dwfl_standard_find_debuginfo(mod, userdata, modname, base, file_name, debuglink_file,
                                        debuglink_crc, debuginfo_file_name);
  if (fd < 0) fd = from_debuginfod_cache(mod, debuginfo_file_name);
  return fd;
}

static char* debuginfo_path = NULL; /* libdwfl's default: ":.debug:/usr/lib/debug" */

static const Dwfl_Callbacks callbacks = {
    .find_elf = dwfl_build_id_find_elf,
    .find_debuginfo = find_debuginfo,
    .section_address = dwfl_offline_section_address,
    .debuginfo_path = &debuginfo_path,
};

static bool build_id_matches(Dwfl_Module* mod, const char* want) {
  if (want == NULL || want[0] == '\0') return true;
  const unsigned char* bits;
  GElf_Addr vaddr;
  int len = dwfl_module_build_id(mod, &bits, &vaddr);
  if (len <= 0) return true; /* the file has none: nothing to compare */
  if (strlen(want) != 2 * (size_t)len) return false;
  for (int i = 0; i < len; i++) {
    char h[3];
    snprintf(h, sizeof h, "%02x", bits[i]);
    if (strncasecmp(h, want + 2 * i, 2) != 0) return false;
  }
  return true;
}

/* fd is consumed. */
static int open_fd(int fd, const char* name, const char* build_id, mprof_dw_t** out) {
  *out = NULL;
  mprof_dw_t* d = calloc(1, sizeof *d);
  if (d == NULL) {
    close(fd);
    return ENOMEM;
  }
  d->dwfl = dwfl_begin(&callbacks);
  if (d->dwfl == NULL) {
    close(fd);
    free(d);
    return ENOMEM;
  }
  dwfl_report_begin(d->dwfl);
  d->mod = dwfl_report_elf(d->dwfl, name, name, fd, 0, false);
  if (d->mod == NULL) close(fd); /* consumed only on success */
  dwfl_report_end(d->dwfl, NULL, NULL);
  int err = 0;
  GElf_Addr bias = 0;
  Elf* elf = d->mod != NULL ? dwfl_module_getelf(d->mod, &bias) : NULL;
  size_t nph = 0;
  if (elf == NULL || elf_getphdrnum(elf, &nph) != 0 || !build_id_matches(d->mod, build_id))
    err = EINVAL;
  if (err == 0 && nph > 0) {
    d->segs = calloc(nph, sizeof *d->segs);
    if (d->segs == NULL) err = ENOMEM;
  }
  for (size_t i = 0; err == 0 && i < nph; i++) {
    GElf_Phdr ph;
    if (gelf_getphdr(elf, (int)i, &ph) == NULL || ph.p_type != PT_LOAD) continue;
    d->segs[d->nsegs++] = (seg_t){ph.p_offset, ph.p_filesz, ph.p_vaddr};
  }
  d->bias = bias;
  if (err != 0) {
    mprof__dw_close(d);
    return err;
  }
  *out = d;
  return 0;
}

int mprof__dw_open(const char* path, const char* build_id, mprof_dw_t** out) {
  *out = NULL;
  /* Only regular files: opening a FIFO named by a profile would block. */
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return errno;
  struct stat sb;
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    close(fd);
    return EINVAL;
  }
  return open_fd(fd, path, build_id, out);
}

int mprof__dw_open_mem(const uint8_t* data, size_t size, mprof_dw_t** out) {
  *out = NULL;
  int fd = memfd_create("mprof-dw", MFD_CLOEXEC);
  if (fd < 0) return errno;
  size_t done = 0;
  while (done < size) {
    ssize_t n = write(fd, data + done, size - done);
    if (n <= 0) {
      int e = n < 0 ? errno : EIO;
      close(fd);
      return e;
    }
    done += (size_t)n;
  }
  return open_fd(fd, "[memory]", NULL, out);
}

void mprof__dw_close(mprof_dw_t* d) {
  if (d == NULL) return;
  if (d->dwfl != NULL) dwfl_end(d->dwfl);
  free(d->segs);
  free(d);
}

/* A DIE's name as the linker knows it (mangled, for C++), else its source name; through
 * DW_AT_abstract_origin and DW_AT_specification. */
static const char* die_name(Dwarf_Die* die) {
  Dwarf_Attribute a;
  const char* s = dwarf_formstring(dwarf_attr_integrate(die, DW_AT_linkage_name, &a));
  if (s == NULL) s = dwarf_formstring(dwarf_attr_integrate(die, DW_AT_MIPS_linkage_name, &a));
  if (s == NULL) s = dwarf_formstring(dwarf_attr_integrate(die, DW_AT_name, &a));
  return s;
}

size_t mprof__dw_frames(mprof_dw_t* d, uint64_t off, mprof_dw_frame_t* out, size_t max,
                        int* has_dwarf) {
  *has_dwarf = 0;
  if (max > MPROF_DW_MAX_FRAMES) max = MPROF_DW_MAX_FRAMES;
  if (d == NULL || max == 0) return 0;
  const seg_t* seg = NULL;
  for (size_t i = 0; i < d->nsegs; i++)
    if (off >= d->segs[i].off && off - d->segs[i].off < d->segs[i].filesz) seg = &d->segs[i];
  if (seg == NULL) return 0;
  Dwarf_Addr pc = seg->vaddr + (off - seg->off) + d->bias;

  const char* file = "";
  int line = 0;
  Dwfl_Line* ln = dwfl_module_getsrc(d->mod, pc);
  if (ln != NULL) {
    const char* f = dwfl_lineinfo(ln, NULL, &line, NULL, NULL, NULL);
    if (f != NULL)
      file = f;
    else
      line = 0;
  }
  size_t k = 0;
  Dwarf_Addr cubias = 0;
  Dwarf_Die* cu = dwfl_module_addrdie(d->mod, pc, &cubias);
  if (cu != NULL) {
    Dwarf_Die* scopes = NULL;
    int n = dwarf_getscopes(cu, pc - cubias, &scopes);
    /* dwarf_getscopes climbs from an inlined instance into its abstract origin's scopes, not
     * into the functions it is inlined into: the innermost instance's parents in the DIE tree
     * are those (as eu-addr2line -i does). */
    if (n > 0) {
      Dwarf_Die inner = scopes[0];
      free(scopes);
      scopes = NULL;
      n = dwarf_getscopes_die(&inner, &scopes);
    }
    Dwarf_Files* files = NULL;
    size_t nfiles = 0;
    if (dwarf_getsrcfiles(cu, &files, &nfiles) != 0) files = NULL;
    bool outer = false; /* the function the chain is inlined into was found */
    for (int i = 0; i < n && k < max; i++) {
      int tag = dwarf_tag(&scopes[i]);
      if (tag != DW_TAG_inlined_subroutine && tag != DW_TAG_subprogram) continue;
      /* Too deep: the rest of the inline chain goes, the function that holds it stays. */
      if (k + 1 == max && tag == DW_TAG_inlined_subroutine) continue;
      const char* name = die_name(&scopes[i]);
      out[k++] = (mprof_dw_frame_t){name != NULL ? name : "??", file, line};
      if (tag == DW_TAG_subprogram) {
        outer = true;
        break;
      }
      /* The caller is at the call site of this inlined instance. */
      Dwarf_Attribute a;
      Dwarf_Word w;
      file = "";
      line = 0;
      if (files != NULL && dwarf_formudata(dwarf_attr(&scopes[i], DW_AT_call_file, &a), &w) == 0 &&
          w < nfiles) {
        const char* f = dwarf_filesrc(files, w, NULL, NULL);
        if (f != NULL) file = f;
      }
      if (dwarf_formudata(dwarf_attr(&scopes[i], DW_AT_call_line, &a), &w) == 0 && w <= INT_MAX)
        line = (int)w;
    }
    free(scopes);
    /* dwarf_getscopes does not always climb from an inlined instance to the concrete function
     * holding it (an out-of-line instance that refers to an abstract origin): the symbol table
     * names it, at the call site of the outermost inlined instance. */
    if (k > 0 && !outer) {
      if (k == max) k--;
      const char* name = dwfl_module_addrname(d->mod, pc);
      out[k++] = (mprof_dw_frame_t){name != NULL ? name : "??", file, line};
    }
  }
  if (k > 0) {
    *has_dwarf = 1;
    return k;
  }
  /* No DWARF subprogram here: the symbol table's name, with the line if there is one. */
  const char* name = dwfl_module_addrname(d->mod, pc);
  if (name == NULL) return 0;
  out[0] = (mprof_dw_frame_t){name, file, line};
  *has_dwarf = file[0] != '\0';
  return 1;
}
