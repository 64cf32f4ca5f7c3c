/* DWARF line tables (see mprof_dwarf.h), from the DWARF 5 standard, section 6.2: the unit
 * header, the directory and file tables (version 5 entry formats, or the older string lists),
 * and the line-number state machine with its standard, extended and special opcodes. Every read
 * is bounds-checked against its section; a malformed unit stops the reading and keeps the rows
 * before it. */
#include "mprof_dwarf.h"

#include <elf.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

typedef struct cur_s {
  const uint8_t* p;
  const uint8_t* end;
  bool bad; /* sticky: a read went past the end */
} cur_t;

static uint64_t rd(cur_t* c, size_t n) {
  if (c->bad || (size_t)(c->end - c->p) < n) {
    c->bad = true;
    c->p = c->end;
    return 0;
  }
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++)
    v |= (uint64_t)c->p[i] << (8 * i); /* little-endian objects only (checked at load) */
  c->p += n;
  return v;
}

static uint64_t uleb(cur_t* c) {
  uint64_t v = 0;
  for (unsigned shift = 0;; shift += 7) {
    uint8_t b = (uint8_t)rd(c, 1);
    if (c->bad) return 0;
    if (shift < 64) v |= (uint64_t)(b & 0x7f) << shift;
    if ((b & 0x80) == 0) return v;
  }
}

static int64_t sleb(cur_t* c) {
  uint64_t v = 0;
  unsigned shift = 0;
  uint8_t b;
  do {
    b = (uint8_t)rd(c, 1);
    if (c->bad) return 0;
    if (shift < 64) v |= (uint64_t)(b & 0x7f) << shift;
    shift += 7;
  } while (b & 0x80);
  if (shift < 64 && (b & 0x40)) v |= ~(uint64_t)0 << shift;
  return (int64_t)v;
}

static const char* cstr(cur_t* c) {
  const uint8_t* z = c->bad ? NULL : memchr(c->p, 0, (size_t)(c->end - c->p));
  if (z == NULL) {
    c->bad = true;
    c->p = c->end;
    return "";
  }
  const char* s = (const char*)c->p;
  c->p = z + 1;
  return s;
}

typedef struct section_s {
  const uint8_t* data;
  size_t size;
  uint8_t* owned; /* decompressed copy */
} section_t;

static const char* str_at(const section_t* s, uint64_t off) {
  if (s->data == NULL || off >= s->size) return "?";
  if (memchr(s->data + off, 0, s->size - off) == NULL) return "?";
  return (const char*)s->data + off;
}

/* Finds a section by name; decompresses SHF_COMPRESSED (zlib) sections. */
static int find_section(const uint8_t* data, size_t size, const char* name, section_t* out) {
  memset(out, 0, sizeof *out);
  const Elf64_Ehdr* eh = (const Elf64_Ehdr*)(const void*)data;
  if (eh->e_shoff == 0 || eh->e_shentsize != sizeof(Elf64_Shdr) || eh->e_shoff > size ||
      (size - eh->e_shoff) / sizeof(Elf64_Shdr) < eh->e_shnum || eh->e_shstrndx >= eh->e_shnum)
    return 0;
  const Elf64_Shdr* sh = (const Elf64_Shdr*)(const void*)(data + eh->e_shoff);
  const Elf64_Shdr* strs = &sh[eh->e_shstrndx];
  if (strs->sh_offset > size || strs->sh_size > size - strs->sh_offset) return 0;
  for (size_t i = 0; i < eh->e_shnum; i++) {
    if (sh[i].sh_type == SHT_NOBITS || sh[i].sh_name >= strs->sh_size) continue;
    const char* n = (const char*)data + strs->sh_offset + sh[i].sh_name;
    size_t left = strs->sh_size - sh[i].sh_name;
    if (strnlen(n, left) == left || strcmp(n, name) != 0) continue;
    if (sh[i].sh_offset > size || sh[i].sh_size > size - sh[i].sh_offset) return EINVAL;
    const uint8_t* p = data + sh[i].sh_offset;
    if (!(sh[i].sh_flags & SHF_COMPRESSED)) {
      out->data = p;
      out->size = sh[i].sh_size;
      return 0;
    }
    if (sh[i].sh_size < sizeof(Elf64_Chdr)) return EINVAL;
    Elf64_Chdr ch;
    memcpy(&ch, p, sizeof ch);
    if (ch.ch_type != ELFCOMPRESS_ZLIB || ch.ch_size > ((uint64_t)1 << 30)) return EINVAL;
    uLongf n_out = (uLongf)ch.ch_size;
    out->owned = malloc(n_out ? n_out : 1);
    if (out->owned == NULL) return ENOMEM;
    if (uncompress(out->owned, &n_out, p + sizeof ch, (uLong)(sh[i].sh_size - sizeof ch)) != Z_OK) {
      free(out->owned);
      out->owned = NULL;
      return EINVAL;
    }
    out->data = out->owned;
    out->size = n_out;
    return 0;
  }
  return 0;
}

typedef struct builder_s {
  mprof_dwarf_lines_t* out;
  size_t cap_rows, cap_files;
  const section_t* line_str;
  const section_t* str;
} builder_t;

static int add_file(builder_t* b, const char* dir, const char* name) {
  mprof_dwarf_lines_t* l = b->out;
  if (l->nfiles == b->cap_files) {
    size_t cap = b->cap_files ? b->cap_files * 2 : 64;
    char** f = realloc(l->files, cap * sizeof *f);
    if (f == NULL) return ENOMEM;
    l->files = f;
    b->cap_files = cap;
  }
  size_t dl = dir != NULL && name[0] != '/' ? strlen(dir) : 0;
  size_t nl = strlen(name);
  char* s = malloc(dl + nl + 2);
  if (s == NULL) return ENOMEM;
  if (dl > 0) {
    memcpy(s, dir, dl);
    s[dl] = '/';
    memcpy(s + dl + 1, name, nl + 1);
  } else {
    memcpy(s, name, nl + 1);
  }
  l->files[l->nfiles++] = s;
  return 0;
}

static int add_row(builder_t* b, uint64_t addr, uint32_t file, uint32_t line) {
  mprof_dwarf_lines_t* l = b->out;
  if (l->n == b->cap_rows) {
    size_t cap = b->cap_rows ? b->cap_rows * 2 : 1024;
    mprof_dwarf_row_t* r = realloc(l->rows, cap * sizeof *r);
    if (r == NULL) return ENOMEM;
    l->rows = r;
    b->cap_rows = cap;
  }
  l->rows[l->n++] = (mprof_dwarf_row_t){addr, file, line};
  return 0;
}

enum {
  FORM_BLOCK = 0x09,
  FORM_BLOCK1 = 0x0a,
  FORM_DATA1 = 0x0b,
  FORM_DATA2 = 0x05,
  FORM_DATA4 = 0x06,
  FORM_DATA8 = 0x07,
  FORM_DATA16 = 0x1e,
  FORM_STRING = 0x08,
  FORM_STRP = 0x0e,
  FORM_LINE_STRP = 0x1f,
  FORM_UDATA = 0x0f,
  FORM_SDATA = 0x0d,
  FORM_STRX = 0x1a,
  FORM_STRX1 = 0x25,
  FORM_STRX2 = 0x26,
  FORM_STRX3 = 0x27,
  FORM_STRX4 = 0x28,
};

/* Reads one attribute of a version 5 entry: a string (for paths) or a number. false: a form this
 * reader does not know. */
static bool read_form(builder_t* b, cur_t* c, uint64_t form, size_t offsize, const char** s,
                      uint64_t* v) {
  *s = NULL;
  *v = 0;
  switch (form) {
  case FORM_STRING:
    *s = cstr(c);
    return true;
  case FORM_LINE_STRP:
    *s = str_at(b->line_str, rd(c, offsize));
    return true;
  case FORM_STRP:
    *s = str_at(b->str, rd(c, offsize));
    return true;
  case FORM_STRX:
    uleb(c);
    *s = "?";
    return true;
  case FORM_STRX1:
    rd(c, 1);
    *s = "?";
    return true;
  case FORM_STRX2:
    rd(c, 2);
    *s = "?";
    return true;
  case FORM_STRX3:
    rd(c, 3);
    *s = "?";
    return true;
  case FORM_STRX4:
    rd(c, 4);
    *s = "?";
    return true;
  case FORM_UDATA:
    *v = uleb(c);
    return true;
  case FORM_SDATA:
    *v = (uint64_t)sleb(c);
    return true;
  case FORM_DATA1:
    *v = rd(c, 1);
    return true;
  case FORM_DATA2:
    *v = rd(c, 2);
    return true;
  case FORM_DATA4:
    *v = rd(c, 4);
    return true;
  case FORM_DATA8:
    *v = rd(c, 8);
    return true;
  case FORM_DATA16:
    rd(c, 8);
    rd(c, 8);
    return true;
  case FORM_BLOCK: {
    uint64_t n = uleb(c);
    if (n > (uint64_t)(c->end - c->p))
      c->bad = true;
    else
      c->p += n;
    return true;
  }
  case FORM_BLOCK1: {
    uint64_t n = rd(c, 1);
    if (n > (uint64_t)(c->end - c->p))
      c->bad = true;
    else
      c->p += n;
    return true;
  }
  default:
    return false;
  }
}

enum { LNCT_PATH = 1, LNCT_DIRECTORY_INDEX = 2 };

/* The version 5 directory or file table: entries described by (content type, form) pairs. With
 * dirs NULL it reads directories into *dirs_out; otherwise files, joined with their directory. */
static int v5_table(builder_t* b, cur_t* c, size_t offsize, const char*** dirs_out, size_t* ndirs,
                    const char** dirs, size_t dirs_n) {
  uint8_t nfmt = (uint8_t)rd(c, 1);
  uint64_t fmt[2 * 255];
  for (unsigned i = 0; i < nfmt; i++) {
    fmt[2 * i] = uleb(c);
    fmt[2 * i + 1] = uleb(c);
  }
  uint64_t count = uleb(c);
  if (c->bad || count > (uint64_t)(c->end - c->p)) return EINVAL;
  if (dirs == NULL) {
    *dirs_out = calloc(count ? count : 1, sizeof **dirs_out);
    if (*dirs_out == NULL) return ENOMEM;
    *ndirs = count;
  }
  for (uint64_t e = 0; e < count; e++) {
    const char* path = "?";
    uint64_t dir = 0;
    for (unsigned i = 0; i < nfmt; i++) {
      const char* s;
      uint64_t v;
      if (!read_form(b, c, fmt[2 * i + 1], offsize, &s, &v)) return EINVAL;
      if (fmt[2 * i] == LNCT_PATH && s != NULL) path = s;
      if (fmt[2 * i] == LNCT_DIRECTORY_INDEX) dir = v;
    }
    if (c->bad) return EINVAL;
    if (dirs == NULL) {
      (*dirs_out)[e] = path;
    } else {
      int err = add_file(b, dir < dirs_n ? dirs[dir] : NULL, path);
      if (err != 0) return err;
    }
  }
  return 0;
}

enum {
  LNS_COPY = 1,
  LNS_ADVANCE_PC,
  LNS_ADVANCE_LINE,
  LNS_SET_FILE,
  LNS_SET_COLUMN,
  LNS_NEGATE_STMT,
  LNS_SET_BASIC_BLOCK,
  LNS_CONST_ADD_PC,
  LNS_FIXED_ADVANCE_PC,
  LNE_END_SEQUENCE = 1,
  LNE_SET_ADDRESS = 2,
  LNE_DEFINE_FILE = 3,
};

/* One unit of .debug_line, at c (which is left at the unit's end). */
static int unit(builder_t* b, cur_t* c) {
  size_t offsize = 4;
  uint64_t len = rd(c, 4);
  if (len == 0xffffffffu) {
    offsize = 8;
    len = rd(c, 8);
  }
  if (c->bad || len > (uint64_t)(c->end - c->p)) return EINVAL;
  cur_t u = {c->p, c->p + len, false};
  c->p += len;
  unsigned version = (unsigned)rd(&u, 2);
  if (version < 2 || version > 5) return 0; /* a version this reader does not know: skip */
  if (version >= 5) {
    rd(&u, 1); /* address_size */
    rd(&u, 1); /* segment_selector_size */
  }
  uint64_t hlen = rd(&u, offsize);
  if (u.bad || hlen > (uint64_t)(u.end - u.p)) return EINVAL;
  const uint8_t* program = u.p + hlen;
  unsigned min_inst = (unsigned)rd(&u, 1);
  if (version >= 4) rd(&u, 1); /* maximum_operations_per_instruction (VLIW only) */
  unsigned default_stmt = (unsigned)rd(&u, 1);
  (void)default_stmt;
  int line_base = (int8_t)rd(&u, 1);
  unsigned line_range = (unsigned)rd(&u, 1);
  unsigned opcode_base = (unsigned)rd(&u, 1);
  uint8_t oplen[256] = {0};
  for (unsigned i = 1; i < opcode_base; i++)
    oplen[i] = (uint8_t)rd(&u, 1);
  if (u.bad || line_range == 0 || opcode_base == 0) return EINVAL;

  size_t first_file = b->out->nfiles; /* this unit's files are first_file.. */
  int err = 0;
  if (version >= 5) {
    const char** dirs = NULL;
    size_t ndirs = 0;
    err = v5_table(b, &u, offsize, &dirs, &ndirs, NULL, 0);
    if (err == 0) err = v5_table(b, &u, offsize, NULL, NULL, dirs, ndirs);
    free(dirs);
  } else {
    const char* dirs[256];
    size_t ndirs = 1;
    dirs[0] = NULL; /* the compilation directory, not in this table */
    for (;;) {
      const char* d = cstr(&u);
      if (u.bad || d[0] == '\0') break;
      if (ndirs < 256) dirs[ndirs++] = d;
    }
    for (;;) {
      const char* f = cstr(&u);
      if (u.bad || f[0] == '\0') break;
      uint64_t di = uleb(&u);
      uleb(&u); /* mtime */
      uleb(&u); /* length */
      err = add_file(b, di < ndirs ? dirs[di] : NULL, f);
      if (err != 0) break;
    }
  }
  if (err != 0) return err;
  if (u.bad || program > u.end) return EINVAL;
  size_t nfiles = b->out->nfiles - first_file;
  /* File numbers: 1-based before version 5, 0-based from it. */
  unsigned file_origin = version >= 5 ? 0 : 1;

  cur_t pc = {program, u.end, false};
  uint64_t addr = 0, file = 1, line = 1;
  size_t seq_first = b->out->n; /* the current sequence's first row */
  while (pc.p < pc.end && !pc.bad && err == 0) {
    unsigned op = (unsigned)rd(&pc, 1);
    if (op >= opcode_base) {
      unsigned adj = op - opcode_base;
      addr += (uint64_t)(adj / line_range) * min_inst;
      line += (uint64_t)(int64_t)(line_base + (int)(adj % line_range));
      goto emit;
    }
    switch (op) {
    case 0: { /* extended */
      uint64_t n = uleb(&pc);
      if (n == 0 || n > (uint64_t)(pc.end - pc.p)) {
        pc.bad = true;
        break;
      }
      cur_t x = {pc.p, pc.p + n, false};
      pc.p += n;
      unsigned sub = (unsigned)rd(&x, 1);
      if (sub == LNE_END_SEQUENCE) {
        /* A sequence at address 0 is code the linker discarded: its rows would shadow real
         * code at low addresses. */
        if (b->out->n > seq_first && b->out->rows[seq_first].addr == 0)
          b->out->n = seq_first;
        else
          err = add_row(b, addr, UINT32_MAX, 0);
        seq_first = b->out->n;
        addr = 0;
        file = 1;
        line = 1;
      } else if (sub == LNE_SET_ADDRESS) {
        size_t k = (size_t)(x.end - x.p);
        addr = rd(&x, k > 8 ? 8 : k);
      } else if (sub == LNE_DEFINE_FILE) {
        const char* f = cstr(&x);
        if (!x.bad) {
          err = add_file(b, NULL, f);
          nfiles++;
        }
      }
      continue;
    }
    case LNS_COPY:
      goto emit;
    case LNS_ADVANCE_PC:
      addr += uleb(&pc) * min_inst;
      continue;
    case LNS_ADVANCE_LINE:
      line += (uint64_t)sleb(&pc);
      continue;
    case LNS_SET_FILE:
      file = uleb(&pc);
      continue;
    case LNS_CONST_ADD_PC:
      addr += (uint64_t)((255 - opcode_base) / line_range) * min_inst;
      continue;
    case LNS_FIXED_ADVANCE_PC:
      addr += rd(&pc, 2);
      continue;
    default:
      for (unsigned i = 0; i < oplen[op]; i++)
        uleb(&pc);
      continue;
    }
    continue;
  emit : {
    uint32_t gf = UINT32_MAX - 1; /* a file number outside the table: no file */
    if (file >= file_origin && file - file_origin < nfiles)
      gf = (uint32_t)(first_file + (file - file_origin));
    if (gf != UINT32_MAX - 1) err = add_row(b, addr, gf, (uint32_t)line);
  }
  }
  if (err == 0 && pc.bad) err = EINVAL;
  return err;
}

static int cmp_row(const void* a, const void* b) {
  const mprof_dwarf_row_t* x = a;
  const mprof_dwarf_row_t* y = b;
  if (x->addr != y->addr) return x->addr < y->addr ? -1 : 1;
  /* At one address an end of sequence comes before the start of the next. */
  bool xe = x->file == UINT32_MAX, ye = y->file == UINT32_MAX;
  if (xe != ye) return xe ? -1 : 1;
  return 0;
}

int mprof__dwarf_load(const uint8_t* data, size_t size, mprof_dwarf_lines_t* out) {
  memset(out, 0, sizeof *out);
  if (size < sizeof(Elf64_Ehdr) || memcmp(data, ELFMAG, SELFMAG) != 0 ||
      data[EI_CLASS] != ELFCLASS64 || data[EI_DATA] != ELFDATA2LSB)
    return 0;
  section_t line, line_str, str;
  int err = find_section(data, size, ".debug_line", &line);
  if (err == 0)
    err = find_section(data, size, ".debug_line_str", &line_str);
  else
    memset(&line_str, 0, sizeof line_str);
  if (err == 0)
    err = find_section(data, size, ".debug_str", &str);
  else
    memset(&str, 0, sizeof str);
  builder_t b = {out, 0, 0, &line_str, &str};
  if (err == 0 && line.data != NULL) {
    cur_t c = {line.data, line.data + line.size, false};
    while (err == 0 && c.p < c.end)
      err = unit(&b, &c);
  }
  if (out->n > 0) qsort(out->rows, out->n, sizeof *out->rows, cmp_row);
  free(line.owned);
  free(line_str.owned);
  free(str.owned);
  if (err == ENOMEM) mprof__dwarf_free(out);
  return err;
}

int mprof__dwarf_find(const mprof_dwarf_lines_t* l, uint64_t vaddr, const char** file,
                      uint32_t* line) {
  size_t lo = 0, hi = l->n; /* first row with addr > vaddr */
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (l->rows[mid].addr <= vaddr)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo == 0) return 0;
  const mprof_dwarf_row_t* r = &l->rows[lo - 1];
  if (r->file == UINT32_MAX || r->file >= l->nfiles) return 0;
  *file = l->files[r->file];
  *line = r->line;
  return 1;
}

void mprof__dwarf_free(mprof_dwarf_lines_t* l) {
  for (size_t i = 0; i < l->nfiles; i++)
    free(l->files[i]);
  free(l->files);
  free(l->rows);
  memset(l, 0, sizeof *l);
}
