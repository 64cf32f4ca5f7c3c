/* The stack walker (see mprof_unwind.h).
 *
 * Call-frame information is read as the System V x86-64 ABI and the LSB describe .eh_frame and
 * .eh_frame_hdr. Only what compilers emit for ordinary code is modelled, which is what a walk
 * from malloc meets: a CFA of rsp or rbp plus an offset (or loaded from rbp plus an offset, for
 * functions that realign the stack), a return address and an rbp saved at an offset from the
 * CFA (or rbp saved at rbp plus an offset). Everything else ends the walk.
 *
 * The rule cache is a 2-way set-associative table indexed by a hash of the address. Each entry is a
 * sequence counter, the key (the address with the cache generation in its top 16 bits) and the
 * packed rule. A writer claims an entry by moving its counter from even to odd with a
 * compare-exchange (a writer that loses simply does not cache), stores key and rule, and makes the
 * counter even again with a release store; a reader takes the entry only if the counter was even
 * and unchanged around its reads of key and rule. So no reader ever pairs a key with another
 * key's rule, and no one waits. */
#include "mprof_unwind.h"

/* Built everywhere (the core is every .c file of plugin/), used where CMake found glibc's
 * _dl_find_object on x86-64 (MPROF_OWN_UNWIND; elsewhere mprof_thread.c uses libunwind). */
#if defined(MPROF_OWN_UNWIND) && defined(__x86_64__)

#include "mprof_meta.h"
#include "mprof_mutex.h"
#include "mprof_thread.h"

#include <dlfcn.h>
#include <link.h>
#include <stdint.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

/* DWARF register numbers of the x86-64 psABI. */
#define REG_RBP 6
#define REG_RSP 7

/* Kinds of a packed rule. */
enum { RULE_NONE = 0, RULE_STEP = 1, RULE_LAST = 2, RULE_STOP = 3, RULE_FP = 4 };
/* Where the caller's rbp is. */
enum { FP_SAME = 0, FP_AT_CFA = 1, FP_AT_FP = 2, FP_UNKNOWN = 3 };

/* A frame's rule, as packed into 64 bits in the cache. */
typedef struct rule_s {
  unsigned kind;   /* RULE_* */
  bool cfa_fp;     /* the CFA is computed from rbp (else rsp) */
  bool cfa_deref;  /* CFA = *(reg + cfa_off) instead of reg + cfa_off */
  unsigned fp_how; /* FP_* */
  int32_t cfa_off; /* bytes */
  int16_t fp_off;  /* bytes from the CFA (FP_AT_CFA) or from rbp (FP_AT_FP) */
  int8_t ra_slots; /* the return address is at CFA + 8 * ra_slots */
} rule_t;

static uint64_t pack(const rule_t* r) {
  return (uint64_t)(r->kind & 7) | (uint64_t)r->cfa_fp << 3 | (uint64_t)r->cfa_deref << 4 |
         (uint64_t)(r->fp_how & 3) << 5 | (uint64_t)(uint8_t)r->ra_slots << 8 |
         (uint64_t)(uint16_t)r->fp_off << 16 | (uint64_t)(uint32_t)r->cfa_off << 32;
}

static rule_t unpack(uint64_t v) {
  rule_t r;
  r.kind = (unsigned)(v & 7);
  r.cfa_fp = (v >> 3) & 1;
  r.cfa_deref = (v >> 4) & 1;
  r.fp_how = (unsigned)(v >> 5) & 3;
  r.ra_slots = (int8_t)(uint8_t)(v >> 8);
  r.fp_off = (int16_t)(uint16_t)(v >> 16);
  r.cfa_off = (int32_t)(uint32_t)(v >> 32);
  return r;
}

/* ---------------------------------------------------------------------------------------------
 * Reading call-frame information
 * ------------------------------------------------------------------------------------------- */
typedef struct reader_s {
  const uint8_t* p;
  const uint8_t* end;
  bool bad; /* ran past the end or met an encoding it does not read */
} reader_t;

static uint64_t rd_fixed(reader_t* r, size_t n) {
  if (r->bad || (size_t)(r->end - r->p) < n) {
    r->bad = true;
    return 0;
  }
  uint64_t v = 0;
  memcpy(&v, r->p, n); /* x86-64 is little-endian */
  r->p += n;
  return v;
}

static uint64_t rd_uleb(reader_t* r) {
  uint64_t v = 0;
  for (unsigned shift = 0; !r->bad; shift += 7) {
    if (r->p >= r->end || shift > 63) break;
    uint8_t b = *r->p++;
    v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) return v;
  }
  r->bad = true;
  return 0;
}

static int64_t rd_sleb(reader_t* r) {
  uint64_t v = 0;
  for (unsigned shift = 0; !r->bad; shift += 7) {
    if (r->p >= r->end || shift > 63) break;
    uint8_t b = *r->p++;
    v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      if (shift + 7 < 64 && (b & 0x40)) v |= ~(uint64_t)0 << (shift + 7);
      return (int64_t)v;
    }
  }
  r->bad = true;
  return 0;
}

/* A pointer in DW_EH_PE encoding `enc`; `datarel` is the base of datarel encodings (the start
 * of .eh_frame_hdr). With apply false only the stored value is read (FDE address ranges). */
static uintptr_t rd_enc(reader_t* r, uint8_t enc, uintptr_t datarel, bool apply) {
  if (enc == 0xff) return 0; /* DW_EH_PE_omit */
  uintptr_t at = (uintptr_t)r->p;
  uint64_t v;
  switch (enc & 0x0f) {
  case 0x00:
    v = rd_fixed(r, 8);
    break; /* absptr */
  case 0x01:
    v = rd_uleb(r);
    break; /* uleb128 */
  case 0x02:
    v = rd_fixed(r, 2);
    break; /* udata2 */
  case 0x03:
    v = rd_fixed(r, 4);
    break; /* udata4 */
  case 0x04:
    v = rd_fixed(r, 8);
    break; /* udata8 */
  case 0x09:
    v = (uint64_t)rd_sleb(r);
    break; /* sleb128 */
  case 0x0a:
    v = (uint64_t)(int64_t)(int16_t)rd_fixed(r, 2);
    break; /* sdata2 */
  case 0x0b:
    v = (uint64_t)(int64_t)(int32_t)rd_fixed(r, 4);
    break; /* sdata4 */
  case 0x0c:
    v = rd_fixed(r, 8);
    break; /* sdata8 */
  default:
    r->bad = true;
    return 0;
  }
  if (!apply || r->bad) return (uintptr_t)v;
  switch (enc & 0x70) {
  case 0x00:
    break; /* absolute */
  case 0x10:
    v += at;
    break; /* pcrel */
  case 0x30:
    v += datarel;
    break; /* datarel */
  default:
    r->bad = true;
    return 0;
  }
  if (enc & 0x80) v = *(const uintptr_t*)(uintptr_t)v; /* indirect: GOT entry, mapped */
  return (uintptr_t)v;
}

/* The rules being built while call-frame instructions run. */
enum { CFA_REG = 0, CFA_DEREF_FP = 1, CFA_BAD = 2 };
enum { RA_AT_CFA = 0, RA_UNDEF = 1, RA_BAD = 2 };
typedef struct state_s {
  unsigned cfa_how; /* CFA_* */
  uint64_t cfa_reg;
  int64_t cfa_off;
  unsigned fp_how; /* FP_* */
  int64_t fp_off;
  unsigned ra_how; /* RA_* */
  int64_t ra_off;
} state_t;

typedef struct cie_s {
  uint64_t code_align;
  int64_t data_align;
  uint64_t ra_reg;
  uint8_t fde_enc;
  bool has_aug; /* 'z': FDEs carry an augmentation data length */
  bool signal;
  const uint8_t* insns; /* initial instructions */
  const uint8_t* end;
} cie_t;

/* Sets the rule of register `reg` (only rbp and the return address matter here). */
static void set_reg(state_t* s, const cie_t* c, uint64_t reg, unsigned how_fp, unsigned how_ra,
                    int64_t off) {
  if (reg == REG_RBP) {
    s->fp_how = how_fp;
    s->fp_off = off;
  } else if (reg == c->ra_reg) {
    s->ra_how = how_ra;
    s->ra_off = off;
  }
}

static void restore_reg(state_t* s, const state_t* init, const cie_t* c, uint64_t reg) {
  if (reg == REG_RBP) {
    s->fp_how = init->fp_how;
    s->fp_off = init->fp_off;
  } else if (reg == c->ra_reg) {
    s->ra_how = init->ra_how;
    s->ra_off = init->ra_off;
  }
}

#define REMEMBER_MAX 8

/* Runs call-frame instructions from `r` for code at `loc` onwards until the rules for address
 * `pc` are known. `init` is the state after the CIE's instructions (NULL while running those).
 * Returns false on anything malformed or not understood. */
static bool run_insns(reader_t* r, const cie_t* c, uintptr_t loc, uintptr_t pc, state_t* s,
                      const state_t* init, uintptr_t datarel) {
  state_t saved[REMEMBER_MAX];
  unsigned nsaved = 0;
  while (r->p < r->end && !r->bad) {
    uint8_t op = *r->p++;
    uint64_t reg, delta = 0;
    switch (op & 0xc0) {
    case 0x40: /* DW_CFA_advance_loc */
      delta = op & 0x3f;
      goto advance;
    case 0x80: /* DW_CFA_offset */
      set_reg(s, c, op & 0x3f, FP_AT_CFA, RA_AT_CFA, (int64_t)rd_uleb(r) * c->data_align);
      continue;
    case 0xc0: /* DW_CFA_restore */
      if (init == NULL) return false;
      restore_reg(s, init, c, op & 0x3f);
      continue;
    default:
      break;
    }
    switch (op) {
    case 0x00: /* DW_CFA_nop */
      continue;
    case 0x01: /* DW_CFA_set_loc */
      loc = rd_enc(r, c->fde_enc, datarel, true);
      if (loc > pc) return !r->bad;
      continue;
    case 0x02:
      delta = rd_fixed(r, 1);
      goto advance; /* DW_CFA_advance_loc1 */
    case 0x03:
      delta = rd_fixed(r, 2);
      goto advance; /* DW_CFA_advance_loc2 */
    case 0x04:
      delta = rd_fixed(r, 4);
      goto advance; /* DW_CFA_advance_loc4 */
    case 0x05:      /* DW_CFA_offset_extended */
      reg = rd_uleb(r);
      set_reg(s, c, reg, FP_AT_CFA, RA_AT_CFA, (int64_t)rd_uleb(r) * c->data_align);
      continue;
    case 0x06: /* DW_CFA_restore_extended */
      reg = rd_uleb(r);
      if (init == NULL) return false;
      restore_reg(s, init, c, reg);
      continue;
    case 0x07: /* DW_CFA_undefined */
      set_reg(s, c, rd_uleb(r), FP_UNKNOWN, RA_UNDEF, 0);
      continue;
    case 0x08: /* DW_CFA_same_value */
      set_reg(s, c, rd_uleb(r), FP_SAME, RA_BAD, 0);
      continue;
    case 0x09: /* DW_CFA_register */
      reg = rd_uleb(r);
      (void)rd_uleb(r);
      set_reg(s, c, reg, FP_UNKNOWN, RA_BAD, 0);
      continue;
    case 0x0a: /* DW_CFA_remember_state */
      if (nsaved == REMEMBER_MAX) return false;
      saved[nsaved++] = *s;
      continue;
    case 0x0b: /* DW_CFA_restore_state (the CFA rule is part of the state) */
      if (nsaved == 0) return false;
      *s = saved[--nsaved];
      continue;
    case 0x0c: /* DW_CFA_def_cfa */
      s->cfa_how = CFA_REG;
      s->cfa_reg = rd_uleb(r);
      s->cfa_off = (int64_t)rd_uleb(r);
      continue;
    case 0x0d: /* DW_CFA_def_cfa_register */
      s->cfa_how = CFA_REG;
      s->cfa_reg = rd_uleb(r);
      continue;
    case 0x0e: /* DW_CFA_def_cfa_offset */
      s->cfa_off = (int64_t)rd_uleb(r);
      continue;
    case 0x0f: { /* DW_CFA_def_cfa_expression: only DW_OP_breg6 N; DW_OP_deref */
      uint64_t len = rd_uleb(r);
      if (r->bad || len > (uint64_t)(r->end - r->p)) return false;
      reader_t e = {r->p, r->p + len, false};
      r->p += len;
      s->cfa_how = CFA_BAD;
      if (rd_fixed(&e, 1) == 0x76) {
        int64_t off = rd_sleb(&e);
        if (rd_fixed(&e, 1) == 0x06 && e.p == e.end && !e.bad) {
          s->cfa_how = CFA_DEREF_FP;
          s->cfa_off = off;
        }
      }
      continue;
    }
    case 0x10: { /* DW_CFA_expression: only rbp saved at DW_OP_breg6 N */
      reg = rd_uleb(r);
      uint64_t len = rd_uleb(r);
      if (r->bad || len > (uint64_t)(r->end - r->p)) return false;
      reader_t e = {r->p, r->p + len, false};
      r->p += len;
      if (reg == REG_RBP && rd_fixed(&e, 1) == 0x76) {
        int64_t off = rd_sleb(&e);
        if (e.p == e.end && !e.bad) {
          s->fp_how = FP_AT_FP;
          s->fp_off = off;
          continue;
        }
      }
      set_reg(s, c, reg, FP_UNKNOWN, RA_BAD, 0);
      continue;
    }
    case 0x11: /* DW_CFA_offset_extended_sf */
      reg = rd_uleb(r);
      set_reg(s, c, reg, FP_AT_CFA, RA_AT_CFA, rd_sleb(r) * c->data_align);
      continue;
    case 0x12: /* DW_CFA_def_cfa_sf */
      s->cfa_how = CFA_REG;
      s->cfa_reg = rd_uleb(r);
      s->cfa_off = rd_sleb(r) * c->data_align;
      continue;
    case 0x13: /* DW_CFA_def_cfa_offset_sf */
      s->cfa_off = rd_sleb(r) * c->data_align;
      continue;
    case 0x14: /* DW_CFA_val_offset */
    case 0x15: /* DW_CFA_val_offset_sf */
      reg = rd_uleb(r);
      if (op == 0x14)
        (void)rd_uleb(r);
      else
        (void)rd_sleb(r);
      set_reg(s, c, reg, FP_UNKNOWN, RA_BAD, 0);
      continue;
    case 0x16: { /* DW_CFA_val_expression */
      reg = rd_uleb(r);
      uint64_t len = rd_uleb(r);
      if (r->bad || len > (uint64_t)(r->end - r->p)) return false;
      r->p += len;
      set_reg(s, c, reg, FP_UNKNOWN, RA_BAD, 0);
      continue;
    }
    case 0x2e: /* DW_CFA_GNU_args_size */
      (void)rd_uleb(r);
      continue;
    case 0x2f: /* DW_CFA_GNU_negative_offset_extended */
      reg = rd_uleb(r);
      set_reg(s, c, reg, FP_AT_CFA, RA_AT_CFA, -(int64_t)rd_uleb(r) * c->data_align);
      continue;
    default:
      return false;
    }
  advance:
    loc += delta * c->code_align;
    if (loc > pc) return !r->bad;
  }
  return !r->bad;
}

/* Parses the CIE at `p`. */
static bool read_cie(const uint8_t* p, cie_t* c) {
  uint32_t len;
  memcpy(&len, p, 4);
  if (len == 0 || len == 0xffffffffu) return false; /* no 64-bit DWARF in .eh_frame here */
  reader_t r = {p + 4, p + 4 + len, false};
  if (rd_fixed(&r, 4) != 0) return false; /* CIE id */
  uint64_t version = rd_fixed(&r, 1);
  const char* aug = (const char*)r.p;
  size_t auglen = strnlen(aug, (size_t)(r.end - r.p));
  r.p += auglen + 1;
  if (version == 4) r.p += 2; /* address and segment selector sizes */
  c->code_align = rd_uleb(&r);
  c->data_align = rd_sleb(&r);
  c->ra_reg = version == 1 ? rd_fixed(&r, 1) : rd_uleb(&r);
  c->fde_enc = 0; /* absptr */
  c->signal = false;
  c->has_aug = aug[0] == 'z';
  if (c->has_aug) {
    uint64_t alen = rd_uleb(&r);
    if (r.bad || alen > (uint64_t)(r.end - r.p)) return false;
    const uint8_t* after = r.p + alen;
    for (const char* a = aug + 1; *a != '\0' && !r.bad; a++) {
      if (*a == 'R') {
        c->fde_enc = (uint8_t)rd_fixed(&r, 1);
      } else if (*a == 'P') {
        uint8_t penc = (uint8_t)rd_fixed(&r, 1);
        (void)rd_enc(&r, penc & 0x7f, 0, false); /* the personality routine: skipped */
      } else if (*a == 'L') {
        (void)rd_fixed(&r, 1);
      } else if (*a == 'S') {
        c->signal = true;
      } else {
        break; /* unknown letters: the length lets us skip the rest */
      }
    }
    r.p = after;
  } else if (aug[0] != '\0') {
    return false;
  }
  c->insns = r.p;
  c->end = r.end;
  return !r.bad && r.p <= r.end;
}

static int32_t table_word(const uint8_t* table, uint64_t i) {
  int32_t v;
  memcpy(&v, table + 4 * i, 4);
  return v;
}

/* The rule for code that no call-frame information covers (JIT code, hand-written assembly):
 * the frame-pointer chain, as `push %rbp; mov %rsp, %rbp` leaves it. The CFA is rbp + 16, the
 * return address below it and the caller's rbp at rbp. Where the code keeps no frame pointer
 * this reads wrong words, which the walk's bounds checks contain. */
static rule_t fp_rule(void) {
  rule_t r = {.kind = RULE_FP,
              .cfa_fp = true,
              .cfa_off = 16,
              .ra_slots = -1,
              .fp_how = FP_AT_CFA,
              .fp_off = -16};
  return r;
}

/* Looks pc up in its object's .eh_frame_hdr search table: the last entry whose initial location
 * is <= pc. Returns 1 with *hdr_out (the table's header), *entry (that initial location) and
 * *fde set; 0 when no call-frame information covers pc (no object, an object without a table,
 * or pc before the table's first entry); -1 when the table is in a format it does not read. */
static int fde_lookup(uintptr_t pc, const uint8_t** hdr_out, uintptr_t* entry,
                      const uint8_t** fde) {
  struct dl_find_object dlfo;
  if (_dl_find_object((void*)pc, &dlfo) != 0 || dlfo.dlfo_eh_frame == NULL) return 0;
  const uint8_t* hdr = dlfo.dlfo_eh_frame;
  /* .eh_frame_hdr: version 1, then the encodings of eh_frame_ptr, fde_count and the table. */
  if (hdr[0] != 1 || hdr[3] != 0x3b) return -1; /* a table of datarel sdata4 pairs */
  reader_t r = {hdr + 4, hdr + 4 + 16, false};
  (void)rd_enc(&r, hdr[1], (uintptr_t)hdr, true);
  uint64_t count = rd_enc(&r, hdr[2], (uintptr_t)hdr, true);
  if (r.bad || count == 0) return -1;
  const uint8_t* table = r.p; /* pairs of int32 offsets from hdr: initial location, FDE */
  uint64_t lo = 0, hi = count;
  while (hi - lo > 1) {
    uint64_t mid = lo + (hi - lo) / 2;
    if ((uintptr_t)hdr + (intptr_t)table_word(table, 2 * mid) <= pc)
      lo = mid;
    else
      hi = mid;
  }
  *entry = (uintptr_t)hdr + (intptr_t)table_word(table, 2 * lo);
  if (*entry > pc) return 0;
  *hdr_out = hdr;
  *fde = hdr + table_word(table, 2 * lo + 1);
  return 1;
}

/* The rule for `pc` from the call-frame information of its object. */
static rule_t compute_rule(uintptr_t pc) {
  rule_t out = {.kind = RULE_STOP};
  const uint8_t *hdr, *fde;
  uintptr_t entry;
  int found = fde_lookup(pc, &hdr, &entry, &fde);
  if (found == 0) return fp_rule();
  if (found < 0) return out;
  uint32_t len, cie_off;
  memcpy(&len, fde, 4);
  if (len == 0 || len == 0xffffffffu) return out;
  memcpy(&cie_off, fde + 4, 4);
  cie_t c;
  if (cie_off == 0 || !read_cie(fde + 4 - cie_off, &c)) return out;
  if (c.signal) return out;
  reader_t f = {fde + 8, fde + 4 + len, false};
  uintptr_t start = rd_enc(&f, c.fde_enc, (uintptr_t)hdr, true);
  uintptr_t range = rd_enc(&f, c.fde_enc & 0x0f, 0, false);
  if (f.bad) return out;
  if (pc < start || pc - start >= range) return fp_rule(); /* between two functions' FDEs */
  /* Augmentation data of the FDE (the LSDA pointer): skipped by its length. */
  if (c.has_aug) {
    uint64_t alen = rd_uleb(&f);
    if (f.bad || alen > (uint64_t)(f.end - f.p)) return out;
    f.p += alen;
  }
  state_t init = {.cfa_how = CFA_BAD, .fp_how = FP_SAME, .ra_how = RA_BAD};
  reader_t ci = {c.insns, c.end, false};
  if (!run_insns(&ci, &c, start, UINTPTR_MAX, &init, NULL, (uintptr_t)hdr)) return out;
  state_t s = init;
  if (!run_insns(&f, &c, start, pc, &s, &init, (uintptr_t)hdr)) return out;

  if (s.ra_how == RA_UNDEF) {
    out.kind = RULE_LAST;
    return out;
  }
  if (s.ra_how != RA_AT_CFA || s.ra_off % 8 != 0 || s.ra_off < -1024 || s.ra_off > 1016) return out;
  if (s.cfa_how == CFA_REG) {
    if (s.cfa_reg != REG_RSP && s.cfa_reg != REG_RBP) return out;
    out.cfa_fp = s.cfa_reg == REG_RBP;
  } else if (s.cfa_how == CFA_DEREF_FP) {
    out.cfa_fp = true;
    out.cfa_deref = true;
  } else {
    return out;
  }
  if (s.cfa_off < INT32_MIN || s.cfa_off > INT32_MAX) return out;
  if (s.fp_how == FP_AT_CFA || s.fp_how == FP_AT_FP) {
    if (s.fp_off < INT16_MIN || s.fp_off > INT16_MAX) s.fp_how = FP_UNKNOWN;
  }
  out.kind = RULE_STEP;
  out.cfa_off = (int32_t)s.cfa_off;
  out.ra_slots = (int8_t)(s.ra_off / 8);
  out.fp_how = s.fp_how;
  out.fp_off = (int16_t)s.fp_off;
  return out;
}

/* ---------------------------------------------------------------------------------------------
 * The rule cache
 * ------------------------------------------------------------------------------------------- */
typedef struct entry_s {
  _Atomic uint64_t seq;  /* even: stable; odd: being written */
  _Atomic uint64_t key;  /* address | generation << 48; 0: empty */
  _Atomic uint64_t rule; /* pack() of the rule */
  uint64_t pad;          /* 32 bytes: an entry never straddles two cache lines */
} entry_t;

static _Atomic(entry_t*) cache;     /* MPROF_UNWIND_CACHE entries, mapped on the first walk */
static _Atomic uint64_t generation; /* bumped after every dlclose (see dlclose below) */
static _Atomic uint64_t n_misses;   /* rules computed (a statistic for tests) */

static entry_t* get_cache(void) {
  entry_t* c = atomic_load_explicit(&cache, memory_order_acquire);
  if (c != NULL) return c;
  entry_t* mine = mprof__meta_alloc(MPROF_UNWIND_CACHE * sizeof(entry_t));
  if (mine == NULL) return NULL;
  if (!atomic_compare_exchange_strong_explicit(&cache, &c, mine, memory_order_acq_rel,
                                               memory_order_acquire)) {
    mprof__meta_free(mine, MPROF_UNWIND_CACHE * sizeof(entry_t));
    return c;
  }
  return mine;
}

/* The cache generation: one atomic load, no lock (the loader's lock, which dl_iterate_phdr takes,
 * may be held by a thread that a fork() left behind or by the code a signal handler interrupted).
 * Its low 16 bits go into every key. */
static uint64_t current_generation(void) {
  return atomic_load_explicit(&generation, memory_order_acquire) & 0xffff;
}

typedef int (*dlclose_fn)(void*);
static _Atomic(dlclose_fn) real_dlclose;

/* The program's dlclose, interposed so that the cache never serves a rule of unloaded code: the
 * generation is bumped after glibc's dlclose has returned, i.e. after any object it unloaded is
 * unmapped. A walk that read the old generation before the bump may still store a rule computed
 * from the old object under the old generation, but no walk that starts afterwards looks it up;
 * a walk that reads the new generation ran _dl_find_object after the unmapping, so whatever it
 * stores describes the objects loaded now. (Bumping before the unload would let a walk cache a
 * rule of the dying object under the new generation.) Unloads that bypass the exported dlclose
 * (glibc-internal ones, a dlopen failing half-way) are not seen; a stale rule can then only give
 * a wrong or short stack, since every stack read is checked against the thread's stack bounds.
 * glibc's dlclose is found on first use with dlsym(RTLD_NEXT), which allocates nothing when the
 * symbol exists. The dlclose never touches errno beyond what glibc's does. */
__attribute__((visibility("default"))) int dlclose(void* handle) {
  dlclose_fn f = atomic_load_explicit(&real_dlclose, memory_order_acquire);
  if (f == NULL) {
    void* sym = dlsym(RTLD_NEXT, "dlclose");
    if (sym == NULL) return -1;
    memcpy(&f, &sym, sizeof f);
    atomic_store_explicit(&real_dlclose, f, memory_order_release);
  }
  int rc = f(handle);
  atomic_fetch_add_explicit(&generation, 1, memory_order_acq_rel);
  return rc;
}

/* The cache is 2-way set associative: an address may sit in either entry of its set (the two
 * share a cache line), so two addresses of one walk that hash alike do not evict each other. */
static uint64_t hash_of(uintptr_t pc) {
  return (uint64_t)pc * 0x9e3779b97f4a7c15ull;
}

/* Reads entry e; true and *v set if it holds `key`, consistently. */
static inline bool read_entry(entry_t* e, uint64_t key, uint64_t* v) {
  uint64_t s1 = atomic_load_explicit(&e->seq, memory_order_acquire);
  uint64_t k = atomic_load_explicit(&e->key, memory_order_relaxed);
  *v = atomic_load_explicit(&e->rule, memory_order_relaxed);
  atomic_thread_fence(memory_order_acquire);
  uint64_t s2 = atomic_load_explicit(&e->seq, memory_order_relaxed);
  return s1 == s2 && !(s1 & 1) && k == key;
}

/* Writes key and rule into e unless another thread is writing it (then nothing is cached). */
static void write_entry(entry_t* e, uint64_t key, uint64_t v) {
  uint64_t s = atomic_load_explicit(&e->seq, memory_order_relaxed);
  if ((s & 1) || !atomic_compare_exchange_strong_explicit(&e->seq, &s, s + 1, memory_order_relaxed,
                                                          memory_order_relaxed))
    return;
  atomic_thread_fence(memory_order_release);
  atomic_store_explicit(&e->key, key, memory_order_relaxed);
  atomic_store_explicit(&e->rule, v, memory_order_relaxed);
  atomic_store_explicit(&e->seq, s + 2, memory_order_release);
}

/* A cache miss: computes the rule and caches it. Kept out of line so that the hit path, inlined
 * into the walks, carries none of the rule computation's frame. */
__attribute__((noinline)) static rule_t lookup_miss(entry_t* set, uintptr_t pc, uint64_t gen,
                                                    uint64_t key, uint64_t h) {
  atomic_fetch_add_explicit(&n_misses, 1, memory_order_relaxed);
  rule_t r = compute_rule(pc);
  if (set != NULL) {
    /* An entry of an older generation (or empty) goes first; else one chosen by the hash. */
    uint64_t k0 = atomic_load_explicit(&set[0].key, memory_order_relaxed);
    uint64_t k1 = atomic_load_explicit(&set[1].key, memory_order_relaxed);
    unsigned w = (k0 >> 48) != gen || k0 == 0   ? 0
                 : (k1 >> 48) != gen || k1 == 0 ? 1
                                                : (unsigned)(h >> 20) & 1;
    write_entry(&set[w], key, pack(&r));
  }
  return r;
}

__attribute__((always_inline)) static inline rule_t lookup(entry_t* c, uintptr_t pc, uint64_t gen) {
  uint64_t key = (uint64_t)pc | gen << 48;
  uint64_t h = hash_of(pc);
  entry_t* set = c != NULL ? &c[(size_t)(h >> 40) & (MPROF_UNWIND_CACHE - 2)] : NULL;
  uint64_t v;
  if (set != NULL && (read_entry(&set[0], key, &v) || read_entry(&set[1], key, &v)))
    return unpack(v);
  return lookup_miss(set, pc, gen, key, h);
}

/* ---------------------------------------------------------------------------------------------
 * The walk
 * ------------------------------------------------------------------------------------------- */

/* The words the walk may read: [lo, hi) of the calling thread's stack. On the thread's own stack
 * lo is the walk's starting stack pointer and hi the stack's top: everything between is the
 * thread's live frames, mapped and readable. Off it (a signal handler on an alternate stack, a
 * coroutine's stack), the readable range is found as the walk goes, one page at a time, by
 * copying a byte of each new page with process_vm_readv on the own process (which fails with
 * EFAULT instead of faulting); where that call is refused (seccomp), the walk ends there. */
typedef struct span_s {
  uintptr_t lo, hi;
  bool probe; /* hi may be raised page by page (off the thread's stack) */
} span_t;

#define SPAN_PAGE ((uintptr_t)4096)
#define SPAN_PROBE_MAX 16 /* pages one read may add: a bigger frame off the stack ends the walk */

static bool page_readable(uintptr_t page) {
  char byte;
  struct iovec local = {&byte, 1}, remote = {(void*)page, 1};
  return syscall(SYS_process_vm_readv, (long)getpid(), &local, 1L, &remote, 1L, 0L) == 1;
}

static bool span_extend(span_t* s, uintptr_t end) {
  for (unsigned i = 0; s->hi < end; i++) {
    if (i == SPAN_PROBE_MAX || s->hi > UINTPTR_MAX - SPAN_PAGE || !page_readable(s->hi)) {
      s->probe = false;
      return false;
    }
    s->hi += SPAN_PAGE;
  }
  return true;
}

/* A word of the stack at addr, if it lies in the span (8-aligned: no valid frame holds a return
 * address, frame pointer or CFA at another alignment, and then a word never straddles hi).
 * Sanitizers would see frames of other functions. */
__attribute__((no_sanitize_address, no_sanitize_thread)) static inline bool
stack_word(span_t* s, uintptr_t addr, uintptr_t* out) {
  if ((addr & 7) != 0 || addr < s->lo) return false;
  if (addr >= s->hi && !(s->probe && addr < UINTPTR_MAX - 8 && span_extend(s, addr + 8)))
    return false;
  *out = *(const volatile uintptr_t*)addr;
  return true;
}

/* The pseudo return address that marks a stack cut short by a frame the walk could not read (see
 * mprof_mutex.h for pseudo addresses; registered on first use, lock-free). 0 when the registry
 * is full: the stack then ends unmarked. */
static uintptr_t bad_frame_pc(void) {
  static _Atomic uintptr_t pc;
  uintptr_t v = atomic_load_explicit(&pc, memory_order_relaxed);
  if (v == 0) {
    v = mprof__mutex_name_pc(MPROF_UNWIND_BAD_FRAME);
    atomic_store_explicit(&pc, v, memory_order_relaxed);
  }
  return v;
}

#define WALK_MAX 4096 /* frames, whatever the depth asked for */

__attribute__((noinline)) unsigned mprof__unwind(uintptr_t* pcs, unsigned max, uintptr_t drop_lo,
                                                 uintptr_t drop_hi, unsigned skip) {
  uintptr_t pc, sp, fp;
  __asm__ volatile("leaq 0(%%rip), %0\n\t"
                   "movq %%rsp, %1\n\t"
                   "movq %%rbp, %2"
                   : "=r"(pc), "=r"(sp), "=r"(fp));
  uintptr_t lo, hi;
  mprof__thread_stack_bounds(&lo, &hi);
  span_t s = {sp, hi, false};
  if (sp < lo || sp >= hi) { /* not on the thread's stack: probe as the walk goes */
    s.hi = (sp & ~(SPAN_PAGE - 1)) + SPAN_PAGE;
    s.probe = true;
  }
  entry_t* c = get_cache();
  uint64_t gen = current_generation();
  unsigned n = 0;
  bool dropping = true, bad = false;
  for (unsigned frame = 0; frame < WALK_MAX && n < max; frame++) {
    /* A return address points after its call, which may be the end of the function (noreturn
     * calls): look up the call instruction itself. The first pc is this function's own. */
    rule_t r = lookup(c, frame == 0 ? pc : pc - 1, gen);
    if (r.kind == RULE_FP) {
      if (fp == 0) break; /* no CFI and no frame pointer: the chain ends (as at _start) */
    } else if (r.kind != RULE_STEP) {
      break; /* the outermost frame, or one the walk does not model */
    }
    uintptr_t cfa = (r.cfa_fp ? fp : sp) + (uintptr_t)(intptr_t)r.cfa_off;
    uintptr_t ra;
    if ((r.cfa_deref && !stack_word(&s, cfa, &cfa)) || cfa <= sp ||
        !stack_word(&s, cfa + 8 * (intptr_t)r.ra_slots, &ra)) {
      bad = true; /* the CFA must move up the stack, the return address be on it */
      break;
    }
    if (r.fp_how == FP_AT_CFA) {
      if (!stack_word(&s, cfa + (intptr_t)r.fp_off, &fp)) fp = 0;
    } else if (r.fp_how == FP_AT_FP) {
      if (!stack_word(&s, fp + (intptr_t)r.fp_off, &fp)) fp = 0;
    } else if (r.fp_how == FP_UNKNOWN) {
      fp = 0;
    }
    sp = cfa;
    pc = ra;
    if (pc < 4096) break; /* a thread's first frame: nothing returns to page zero */
    if (dropping && pc >= drop_lo && pc < drop_hi) continue;
    dropping = false;
    if (skip > 0) {
      skip--;
      continue;
    }
    pcs[n++] = pc;
  }
  if (bad && n < max) {
    uintptr_t mark = bad_frame_pc();
    if (mark != 0) pcs[n++] = mark;
  }
  return n;
}

uint64_t mprof__unwind_misses(void) {
  return atomic_load_explicit(&n_misses, memory_order_relaxed);
}

/* The start of the function holding pc, by its object's .eh_frame_hdr table (0 if none). */
static uintptr_t function_start(uintptr_t pc) {
  const uint8_t *hdr, *fde;
  uintptr_t start;
  return fde_lookup(pc, &hdr, &start, &fde) == 1 ? start : 0;
}

typedef int (*word_reader_t)(void* arg, uintptr_t addr, uintptr_t* out);

/* n <= 16 bytes at addr through the reader (aligned words: a reader may want them aligned). */
static bool read_bytes(word_reader_t read, void* arg, uintptr_t addr, uint8_t* out, size_t n) {
  uintptr_t base = addr & ~(uintptr_t)7;
  uint8_t buf[32];
  for (uintptr_t a = base; a < addr + n; a += 8) {
    uintptr_t w;
    if (read(arg, a, &w) != 0) return false;
    memcpy(buf + (a - base), &w, 8);
  }
  memcpy(out, buf + (addr - base), n);
  return true;
}

static int32_t le32(const uint8_t* p) {
  return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                   (uint32_t)p[3] << 24);
}

/* Where a direct call to `target` lands: through a PLT entry (endbr64, bnd, jmp *GOT) to what
 * the GOT holds, and through functions that only jump on (jmp rel32 or rel8), a few hops at
 * most. 0 if something cannot be read. */
static uintptr_t call_landing(word_reader_t read, void* arg, uintptr_t target) {
  for (int hop = 0; hop < 4; hop++) {
    uint8_t b[16];
    if (!read_bytes(read, arg, target, b, sizeof b)) return 0;
    size_t i = 0;
    if (b[0] == 0xf3 && b[1] == 0x0f && b[2] == 0x1e && b[3] == 0xfa) i = 4; /* endbr64 */
    if (b[i] == 0xf2) i++;                                                   /* bnd */
    if (b[i] == 0xff && b[i + 1] == 0x25) {
      uintptr_t slot = target + i + 6 + (uintptr_t)(intptr_t)le32(b + i + 2);
      if ((slot & 7) != 0 || read(arg, slot, &target) != 0) return 0;
    } else if (b[i] == 0xe9) {
      target = target + i + 5 + (uintptr_t)(intptr_t)le32(b + i + 1);
    } else if (b[i] == 0xeb) {
      target = target + i + 2 + (uintptr_t)(intptr_t)(int8_t)b[i + 1];
    } else {
      break;
    }
  }
  return target;
}

/* Whether the code just before `ra` is a call into the function holding `callee_pc`: e8 rel32
 * (directly, through a PLT entry, or through a wrapper that tail-calls it) or ff 15 disp32
 * (through a pointer in memory, as calls through the GOT are), so that a stale return address
 * left by an earlier call of another function is not taken for the caller's. Calls through a
 * register cannot be checked and are not accepted. Code and pointers are read through the reader
 * (an address decoded from bytes that were not a call could be anywhere). */
static bool after_call(word_reader_t read, void* arg, uintptr_t ra, uintptr_t callee_pc) {
  uint8_t b[6];
  uintptr_t target;
  if (!read_bytes(read, arg, ra - 6, b, 6)) return false;
  if (b[1] == 0xe8) {
    target = call_landing(read, arg, ra + (uintptr_t)(intptr_t)le32(b + 2));
  } else if (b[0] == 0xff && b[1] == 0x15) {
    uintptr_t slot = ra + (uintptr_t)(intptr_t)le32(b + 2), fn;
    if ((slot & 7) != 0 || read(arg, slot, &fn) != 0) return false;
    target = call_landing(read, arg, fn);
  } else {
    return false;
  }
  uintptr_t start = function_start(callee_pc);
  if (start == 0 || target == 0) return false;
  if (target == start) return true;
  /* A wrapper that tail-calls the callee on some path only: a jmp rel32 to it among its first 64
   * bytes. */
  if (function_start(target) != target) return false;
  uint8_t code[64 + 8];
  if (!read_bytes(read, arg, target, code, 16) ||
      !read_bytes(read, arg, target + 16, code + 16, 16) ||
      !read_bytes(read, arg, target + 32, code + 32, 16) ||
      !read_bytes(read, arg, target + 48, code + 48, 16))
    return false;
  for (int i = 0; i + 5 <= 64; i++) {
    if (code[i] == 0xe9 &&
        target + (uintptr_t)i + 5 + (uintptr_t)(intptr_t)le32(code + i + 1) == start)
      return true;
  }
  return false;
}

/* rbp of a frame whose CFA is rbp + cfa_off, when rbp itself is not known: the first 8-aligned
 * r above sp where a frame laid out by "push rbp; mov rsp, rbp" would sit, i.e. r + cfa_off - 8
 * holds a return address (code with call-frame information, right after a call instruction) and
 * r holds 0 or a higher address (the caller's saved rbp), and a direct call there enters the
 * function holding pc (a stale return address left by an earlier call of another function does
 * not). A heuristic: 0 when none is found within 64 KiB. */
static uintptr_t find_fp(entry_t* c, uint64_t gen, uintptr_t pc, uintptr_t sp, int32_t cfa_off,
                         int (*read)(void* arg, uintptr_t addr, uintptr_t* out), void* arg) {
  if (cfa_off < 16 || cfa_off > 1024 || cfa_off % 8 != 0) return 0;
  for (uintptr_t r = (sp + 7) & ~(uintptr_t)7; r < sp + ((uintptr_t)64 << 10); r += 8) {
    uintptr_t ra, saved;
    if (read(arg, r + (uintptr_t)cfa_off - 8, &ra) != 0) return 0;
    if (ra < 4096 || read(arg, r, &saved) != 0 || (saved != 0 && saved <= r)) continue;
    rule_t rr = lookup(c, ra - 1, gen);
    if ((rr.kind == RULE_STEP || rr.kind == RULE_LAST) && after_call(read, arg, ra, pc)) return r;
  }
  return 0;
}

/* The walk of a stack that is not the caller's (mprof_unwind.h): the same rules, every word
 * through `read`. rbp is not always known (a thread blocked in a system call reports only its
 * sp and pc): until a frame's rule says where the caller's rbp was saved, a frame whose CFA is
 * given by rbp has it guessed by find_fp. */
unsigned mprof__unwind_remote(uintptr_t pc, uintptr_t sp, uintptr_t fp, int fp_known,
                              int (*read)(void* arg, uintptr_t addr, uintptr_t* out), void* arg,
                              uintptr_t* pcs, unsigned max) {
  if (max == 0) return 0;
  entry_t* c = get_cache();
  uint64_t gen = current_generation();
  unsigned n = 0;
  pcs[n++] = pc + 1; /* the leaf as a return address would be: writers look up pc - 1 */
  for (unsigned frame = 0; frame < WALK_MAX && n < max; frame++) {
    /* The leaf pc is the next instruction to run, the others return addresses. */
    rule_t r = lookup(c, frame == 0 ? pc : pc - 1, gen);
    if (r.kind == RULE_FP) {
      if (!fp_known || fp == 0) break; /* no CFI: the frame-pointer chain, if rbp is known */
    } else if (r.kind != RULE_STEP) {
      break;
    }
    if (r.cfa_fp && !fp_known) {
      if (r.cfa_deref || (fp = find_fp(c, gen, pc, sp, r.cfa_off, read, arg)) == 0) break;
      fp_known = 1;
    }
    uintptr_t cfa = (r.cfa_fp ? fp : sp) + (uintptr_t)(intptr_t)r.cfa_off;
    if (r.cfa_deref && (fp == 0 || read(arg, cfa, &cfa) != 0)) break;
    if (cfa <= sp || cfa - sp > ((uintptr_t)1 << 30)) break; /* must move up the same stack */
    uintptr_t ra;
    if (read(arg, cfa + 8 * (intptr_t)r.ra_slots, &ra) != 0) break;
    if (r.fp_how == FP_AT_CFA) {
      fp_known = read(arg, cfa + (intptr_t)r.fp_off, &fp) == 0;
    } else if (r.fp_how == FP_AT_FP) {
      fp_known = fp_known && fp != 0 && read(arg, fp + (intptr_t)r.fp_off, &fp) == 0;
    } else if (r.fp_how == FP_UNKNOWN) {
      fp_known = 0;
    }
    sp = cfa;
    pc = ra;
    if (pc < 4096) break;
    pcs[n++] = pc;
  }
  return n;
}

#else
typedef int mprof__unwind_not_built_t; /* ISO C wants a translation unit to declare something */
#endif
