/* Symbolized stacks, tables and the reconciliation block (see mprof_report.h). */
#include "mprof_report.h"

#include "mprof_dwarf.h"
#include "mprof_pprof.h"

#include <errno.h>
#include <inttypes.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>

/* From libstdc++ (the C++ ABI's demangler). */
char* __cxa_demangle(const char* mangled, char* out, size_t* len, int* status);

/* ---------------------------------------------------------------------------------------------
 * Owned strings
 * ------------------------------------------------------------------------------------------- */
typedef struct pool_s {
  char** strs;
  size_t n, cap;
  void** blocks; /* other allocations */
  size_t nblocks, capblocks;
} pool_t;

static char* pool_keep(pool_t* p, char* s) {
  if (s == NULL) return NULL;
  if (p->n == p->cap) {
    size_t cap = p->cap ? p->cap * 2 : 256;
    char** a = realloc(p->strs, cap * sizeof *a);
    if (a == NULL) {
      free(s);
      return NULL;
    }
    p->strs = a;
    p->cap = cap;
  }
  p->strs[p->n++] = s;
  return s;
}

static void* pool_block(pool_t* p, size_t size) {
  if (p->nblocks == p->capblocks) {
    size_t cap = p->capblocks ? p->capblocks * 2 : 64;
    void** a = realloc(p->blocks, cap * sizeof *a);
    if (a == NULL) return NULL;
    p->blocks = a;
    p->capblocks = cap;
  }
  void* b = calloc(1, size ? size : 1);
  if (b != NULL) p->blocks[p->nblocks++] = b;
  return b;
}

static void pool_free(pool_t* p) {
  for (size_t i = 0; i < p->n; i++)
    free(p->strs[i]);
  for (size_t i = 0; i < p->nblocks; i++)
    free(p->blocks[i]);
  free(p->strs);
  free(p->blocks);
  free(p);
}

/* ---------------------------------------------------------------------------------------------
 * Names
 * ------------------------------------------------------------------------------------------- */
/* Removes parameter lists and template arguments (at any depth) as pprof's default display
 * does, keeping "operator<" style names and trailing qualifiers out. */
static char* simplify(const char* name) {
  size_t n = strlen(name);
  char* out = malloc(n + 1);
  if (out == NULL) return NULL;
  size_t k = 0;
  int depth = 0;
  for (size_t i = 0; i < n; i++) {
    char ch = name[i];
    bool op = i >= 8 && strncmp(name + i - 8, "operator", 8) == 0;
    if ((ch == '(' || ch == '<') && !op) {
      /* "(anonymous namespace)" is a name, not a parameter list. */
      if (ch == '(' && strncmp(name + i, "(anonymous namespace)", 21) == 0 && depth == 0) {
        memcpy(out + k, name + i, 21);
        k += 21;
        i += 20;
        continue;
      }
      depth++;
      continue;
    }
    if ((ch == ')' || ch == '>') && depth > 0) {
      depth--;
      continue;
    }
    if (depth == 0) out[k++] = ch;
  }
  /* Trailing " const" and the like after a removed parameter list. */
  while (k > 0 && out[k - 1] == ' ')
    k--;
  const char* quals[] = {" const", " volatile", " &&", " &"};
  for (size_t q = 0; q < sizeof quals / sizeof quals[0]; q++) {
    size_t ql = strlen(quals[q]);
    if (k >= ql && strncmp(out + k - ql, quals[q], ql) == 0) k -= ql;
  }
  out[k] = '\0';
  if (k == 0) {
    free(out);
    return strdup(name);
  }
  return out;
}

static char* display_name(const char* raw) {
  if (strncmp(raw, "_Z", 2) == 0) {
    int status = 0;
    char* d = __cxa_demangle(raw, NULL, NULL, &status);
    if (d != NULL && status == 0) {
      char* s = simplify(d);
      free(d);
      return s;
    }
    free(d);
    return strdup(raw);
  }
  return simplify(raw);
}

static const char* base_name(const char* path) {
  const char* b = strrchr(path, '/');
  return b ? b + 1 : path;
}

/* ---------------------------------------------------------------------------------------------
 * Symbolization
 * ------------------------------------------------------------------------------------------- */
typedef struct symcache_s {
  int state; /* 0 untried, 1 open, 2 unavailable */
  mprof_dw_t* dw;
} symcache_t;

/* Frames of addr from the debug information or symbols of mapping m's file (when it is readable
 * and has the build id the profile recorded). */
static size_t dw_frames(const mprof_rd_profile_t* p, symcache_t* cache, size_t m, uint64_t addr,
                        mprof_dw_frame_t* out, int* has_dwarf) {
  const mprof_rd_mapping_t* map = &p->mappings[m];
  symcache_t* c = &cache[m];
  *has_dwarf = 0;
  if (c->state == 0) {
    c->state = 2;
    const char* path = mprof__rd_str(p, map->filename);
    if (path[0] == '/' && mprof__dw_open(path, mprof__rd_str(p, map->build_id), &c->dw) == 0)
      c->state = 1;
  }
  if (c->state != 1 || addr < map->start || (map->limit != 0 && addr >= map->limit)) return 0;
  return mprof__dw_frames(c->dw, addr - map->start + map->offset, out, MPROF_DW_MAX_FRAMES,
                          has_dwarf);
}

static const mprof_frame_t unknown_frame = {
    .func = "<unknown>", .file = "", .obj = "", .raw = "<unknown>"};

static char* addr_name(uint64_t addr) {
  char buf[64];
  snprintf(buf, sizeof buf, "0x%" PRIx64, addr);
  return strdup(buf);
}

static int frames_of(const mprof_rd_profile_t* p, pool_t* pool, symcache_t* cache, size_t li,
                     mprof_locframes_t* out) {
  const mprof_rd_location_t* l = &p->locations[li];
  const char* obj = "";
  if (l->mapping != SIZE_MAX) obj = base_name(mprof__rd_str(p, p->mappings[l->mapping].filename));
  /* A profile whose lines carry files (Go's, or one already symbolized) is taken as it is;
   * otherwise (mprof's own: function names only, or nothing) the object's debug information
   * names every inlined function with its line. */
  bool complete = l->nlines > 0;
  for (size_t j = 0; j < l->nlines; j++)
    if (mprof__rd_str(p, p->functions[l->lines[j].func].filename)[0] == '\0') complete = false;
  mprof_dw_frame_t dw[MPROF_DW_MAX_FRAMES];
  size_t ndw = 0;
  int has_dwarf = 0;
  if (!complete && l->mapping != SIZE_MAX)
    ndw = dw_frames(p, cache, l->mapping, l->address, dw, &has_dwarf);
  if (has_dwarf && ndw > 0) {
    out->f = pool_block(pool, ndw * sizeof *out->f);
    if (out->f == NULL) return ENOMEM;
    out->n = ndw;
    for (size_t j = 0; j < ndw; j++) {
      out->f[j].raw = pool_keep(pool, strdup(dw[j].func));
      out->f[j].func = pool_keep(pool, display_name(dw[j].func));
      out->f[j].file = pool_keep(pool, strdup(dw[j].file));
      if (out->f[j].func == NULL || out->f[j].file == NULL || out->f[j].raw == NULL) return ENOMEM;
      out->f[j].line = dw[j].line;
      out->f[j].obj = obj;
      out->f[j].inlined = j + 1 < ndw;
    }
    return 0;
  }
  size_t n = l->nlines ? l->nlines : 1;
  out->f = pool_block(pool, n * sizeof *out->f);
  if (out->f == NULL) return ENOMEM;
  out->n = n;
  for (size_t j = 0; j < l->nlines; j++) {
    const mprof_rd_function_t* fn = &p->functions[l->lines[j].func];
    const char* raw = mprof__rd_str(p, fn->name);
    if (raw[0] == '\0') raw = mprof__rd_str(p, fn->system_name);
    if (raw[0] == '\0' && ndw > 0) raw = dw[0].func;
    char* d = raw[0] != '\0' ? display_name(raw) : addr_name(l->address);
    out->f[j].func = pool_keep(pool, d);
    if (out->f[j].func == NULL) return ENOMEM;
    out->f[j].raw = raw[0] != '\0' ? raw : out->f[j].func;
    out->f[j].file = mprof__rd_str(p, fn->filename);
    out->f[j].line = l->lines[j].line;
    out->f[j].obj = obj;
    out->f[j].inlined = j + 1 < l->nlines;
  }
  if (l->nlines == 0) {
    char* d;
    if (ndw > 0) {
      d = display_name(dw[0].func);
    } else if (obj[0] != '\0') {
      char buf[300];
      snprintf(buf, sizeof buf, "[%s]", obj);
      d = strdup(buf);
    } else {
      d = addr_name(l->address);
    }
    out->f[0].func = pool_keep(pool, d);
    if (out->f[0].func == NULL) return ENOMEM;
    out->f[0].raw = ndw > 0 ? pool_keep(pool, strdup(dw[0].func)) : out->f[0].func;
    if (out->f[0].raw == NULL) return ENOMEM;
    out->f[0].file = "";
    out->f[0].line = 0;
    out->f[0].obj = obj;
    out->f[0].unnamed = ndw == 0;
    out->f[0].off = l->address;
    if (l->mapping != SIZE_MAX && l->address >= p->mappings[l->mapping].start)
      out->f[0].off = l->address - p->mappings[l->mapping].start + p->mappings[l->mapping].offset;
  }
  return 0;
}

/* Compiles "^(re|extra)$" (extra may be NULL); false when re is empty or does not compile. */
static bool compile_full(regex_t* rx, const char* re, const char* extra) {
  if (re[0] == '\0') return false;
  size_t len = strlen(re) + (extra ? strlen(extra) : 0) + 8;
  char* full = malloc(len);
  if (full == NULL) return false;
  snprintf(full, len, "^(%s%s%s)$", re, extra && extra[0] ? "|" : "", extra ? extra : "");
  bool ok = regcomp(rx, full, REG_EXTENDED | REG_NOSUB) == 0;
  free(full);
  return ok;
}

/* The site of a stack: its first frame, from the leaf, that is neither an allocation wrapper nor
 * unnamed. Unnamed frames between the wrappers and the site (a static function of a stripped
 * library) fold into it: "site (via [object]+0xOFFSET)" names the first of them. */
static int find_site(pool_t* pool, mprof_stack_t* st) {
  const mprof_frame_t* via = NULL;
  size_t i = 0;
  for (; i < st->n; i++) {
    const mprof_frame_t* f = &st->frames[i];
    if (f->unnamed) {
      if (via == NULL) via = f;
    } else if (f->wrapper) {
      via = NULL;
    } else {
      break;
    }
  }
  if (i == st->n) { /* wrappers and unnamed frames only: the leaf, as it is */
    st->site = st->n ? st->frames[0] : unknown_frame;
    return 0;
  }
  st->site = st->frames[i];
  if (via != NULL) {
    size_t len = strlen(st->frames[i].func) + strlen(via->obj) + 48;
    char* name = malloc(len);
    if (name == NULL) return ENOMEM;
    if (via->obj[0] != '\0')
      snprintf(name, len, "%s (via [%s]+0x%" PRIx64 ")", st->frames[i].func, via->obj, via->off);
    else
      snprintf(name, len, "%s (via 0x%" PRIx64 ")", st->frames[i].func, via->off);
    st->site.func = pool_keep(pool, name);
    if (st->site.func == NULL) return ENOMEM;
  }
  return 0;
}

int mprof__stacks_build(const mprof_rd_profile_t* p, mprof_stacks_t* out, const char* extra_drop) {
  memset(out, 0, sizeof *out);
  out->prof = p;
  out->inuse_space = mprof__rd_sample_index(p, "inuse_space");
  out->inuse_objects = mprof__rd_sample_index(p, "inuse_objects");
  out->alloc_space = mprof__rd_sample_index(p, "alloc_space");
  out->alloc_objects = mprof__rd_sample_index(p, "alloc_objects");
  pool_t* pool = calloc(1, sizeof *pool);
  if (pool == NULL) return ENOMEM;
  out->pool = pool;
  int err = 0;
  symcache_t* cache = calloc(p->nmappings ? p->nmappings : 1, sizeof *cache);
  mprof_locframes_t* lf = pool_block(pool, p->nlocations * sizeof *lf);
  out->locs = lf;
  out->stacks = pool_block(pool, p->nsamples * sizeof *out->stacks);
  if (cache == NULL || lf == NULL || out->stacks == NULL) {
    err = ENOMEM;
    goto done;
  }
  for (size_t i = 0; i < p->nlocations && err == 0; i++)
    err = frames_of(p, pool, cache, i, &lf[i]);
  if (err != 0) goto done;

  regex_t drop, wrap;
  bool have_drop = compile_full(&drop, mprof__rd_str(p, p->drop_frames), NULL);
  bool have_wrap = compile_full(&wrap, MPROF_PPROF_DROP_FRAMES, extra_drop);
  if (extra_drop != NULL && extra_drop[0] != '\0' && !have_wrap) {
    err = EINVAL;
    goto done;
  }
  /* Once per frame of every location, not per sample. */
  for (size_t i = 0; i < p->nlocations; i++) {
    for (size_t j = 0; j < lf[i].n; j++) {
      mprof_frame_t* f = &lf[i].f[j];
      f->pdrop = have_drop && regexec(&drop, f->func, 0, NULL, 0) == 0;
      f->wrapper = !f->unnamed &&
                   (strncmp(f->func, "std::", 5) == 0 || strncmp(f->func, "__gnu_cxx::", 11) == 0 ||
                    (have_wrap && regexec(&wrap, f->func, 0, NULL, 0) == 0));
    }
  }
  if (have_drop) regfree(&drop);
  if (have_wrap) regfree(&wrap);
  size_t total = 0;
  for (size_t i = 0; i < p->nsamples; i++) {
    const mprof_rd_sample_t* smp = &p->samples[i];
    for (size_t j = 0; j < smp->nlocs; j++) {
      total += lf[smp->locs[j]].n;
      if (total > MPROF_MAX_FRAMES) {
        err = EFBIG;
        goto done;
      }
    }
  }
  out->n = p->nsamples;
  for (size_t i = 0; i < p->nsamples; i++) {
    const mprof_rd_sample_t* smp = &p->samples[i];
    mprof_stack_t* st = &out->stacks[i];
    st->values = smp->values;
    st->labels = smp->labels;
    st->nlabels = smp->nlabels;
    st->thread = (mprof_frame_t){.func = "(no thread label)", .file = "", .obj = "", .raw = ""};
    for (size_t j = 0; j < smp->nlabels; j++)
      if (smp->labels[j].str != 0 && strcmp(mprof__rd_str(p, smp->labels[j].key), "thread") == 0)
        st->thread.func = st->thread.raw = mprof__rd_str(p, smp->labels[j].str);
    size_t n = 0;
    for (size_t j = 0; j < smp->nlocs; j++)
      n += lf[smp->locs[j]].n;
    st->frames = pool_block(pool, n * sizeof *st->frames);
    if (st->frames == NULL) {
      err = ENOMEM;
      break;
    }
    size_t k = 0;
    for (size_t j = 0; j < smp->nlocs; j++) {
      const mprof_locframes_t* f = &lf[smp->locs[j]];
      memcpy(st->frames + k, f->f, f->n * sizeof *f->f);
      k += f->n;
    }
    /* drop_frames: the matching frames at the leaf end go (never the whole stack). */
    size_t skip = 0;
    while (skip + 1 < k && st->frames[skip].pdrop)
      skip++;
    st->frames += skip;
    st->n = k - skip;
    err = find_site(pool, st);
    if (err != 0) break;
  }
done:
  for (size_t i = 0; cache != NULL && i < p->nmappings; i++) {
    if (cache[i].state == 1) mprof__dw_close(cache[i].dw);
  }
  free(cache);
  if (err != 0) mprof__stacks_free(out);
  return err;
}

int mprof__stacks_merge(mprof_stacks_t* into, const mprof_stacks_t* from) {
  const mprof_rd_profile_t* a = into->prof;
  const mprof_rd_profile_t* b = from->prof;
  /* from's value index of each of into's sample types, -1 when from has none */
  int* map = pool_block(into->pool, (a->nsample_types ? a->nsample_types : 1) * sizeof *map);
  mprof_stack_t* st = pool_block(into->pool, (into->n + from->n) * sizeof *st);
  if (map == NULL || st == NULL) return ENOMEM;
  bool same = a->nsample_types == b->nsample_types;
  for (size_t i = 0; i < a->nsample_types; i++) {
    map[i] = mprof__rd_sample_index(b, mprof__rd_str(a, a->sample_types[i].type));
    same = same && map[i] == (int)i;
  }
  memcpy(st, into->stacks, into->n * sizeof *st);
  for (size_t i = 0; i < from->n; i++) {
    mprof_stack_t* d = &st[into->n + i];
    *d = from->stacks[i];
    if (same) continue;
    int64_t* v = pool_block(into->pool, (a->nsample_types ? a->nsample_types : 1) * sizeof *v);
    if (v == NULL) return ENOMEM;
    for (size_t j = 0; j < a->nsample_types; j++)
      v[j] = map[j] >= 0 ? from->stacks[i].values[map[j]] : 0;
    d->values = v;
  }
  into->stacks = st;
  into->n += from->n;
  return 0;
}

void mprof__stacks_free(mprof_stacks_t* s) {
  if (s->pool != NULL) pool_free(s->pool);
  memset(s, 0, sizeof *s);
}

/* ---------------------------------------------------------------------------------------------
 * Sites
 * ------------------------------------------------------------------------------------------- */
static int metric_index(const mprof_stacks_t* s, mprof_metric_t m) {
  switch (m) {
  case MPROF_INUSE:
    return s->inuse_space;
  case MPROF_ALLOC:
    return s->alloc_space;
  case MPROF_INUSE_OBJECTS:
    return s->inuse_objects;
  }
  return -1;
}

static int objects_index(const mprof_stacks_t* s, mprof_metric_t m) {
  return m == MPROF_ALLOC ? s->alloc_objects : s->inuse_objects;
}

static int bytes_index(const mprof_stacks_t* s, mprof_metric_t m) {
  return m == MPROF_ALLOC ? s->alloc_space : s->inuse_space;
}

static const char* metric_name(mprof_metric_t m) {
  return m == MPROF_ALLOC ? "alloc_space" : m == MPROF_INUSE ? "inuse_space" : "inuse_objects";
}

typedef struct site_s {
  const mprof_frame_t* leaf;     /* key: func (+ file:line) */
  bool mixed;                    /* per function: its samples come from more than one line */
  int64_t bytes, objects, other; /* other: the second profile's bytes in a diff */
  int64_t sort;
} site_t;

typedef struct sites_s {
  site_t* v;
  size_t n, cap;
  size_t* slots; /* open addressing: index + 1 */
  size_t nslots;
} sites_t;

static uint64_t hash_site(const mprof_frame_t* f, bool lines) {
  uint64_t h = 1469598103934665603ull;
  for (const char* c = f->func; *c; c++)
    h = (h ^ (unsigned char)*c) * 1099511628211ull;
  if (lines) {
    for (const char* c = f->file; *c; c++)
      h = (h ^ (unsigned char)*c) * 1099511628211ull;
    h ^= (uint64_t)f->line * 0x9e3779b97f4a7c15ull;
  }
  return h;
}

static bool same_site(const mprof_frame_t* a, const mprof_frame_t* b, bool lines) {
  if (strcmp(a->func, b->func) != 0) return false;
  return !lines || (a->line == b->line && strcmp(a->file, b->file) == 0);
}

static site_t* site_get(sites_t* s, const mprof_frame_t* leaf, bool lines) {
  if (2 * (s->n + 1) > s->nslots) {
    size_t ns = s->nslots ? s->nslots * 2 : 1024;
    size_t* slots = calloc(ns, sizeof *slots);
    if (slots == NULL) return NULL;
    for (size_t i = 0; i < s->n; i++) {
      size_t j = hash_site(s->v[i].leaf, lines) & (ns - 1);
      while (slots[j] != 0)
        j = (j + 1) & (ns - 1);
      slots[j] = i + 1;
    }
    free(s->slots);
    s->slots = slots;
    s->nslots = ns;
  }
  size_t j = hash_site(leaf, lines) & (s->nslots - 1);
  for (; s->slots[j] != 0; j = (j + 1) & (s->nslots - 1))
    if (same_site(s->v[s->slots[j] - 1].leaf, leaf, lines)) return &s->v[s->slots[j] - 1];
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 256;
    site_t* v = realloc(s->v, cap * sizeof *v);
    if (v == NULL) return NULL;
    s->v = v;
    s->cap = cap;
  }
  site_t* site = &s->v[s->n];
  memset(site, 0, sizeof *site);
  site->leaf = leaf;
  s->slots[j] = ++s->n;
  return site;
}

static void sites_free(sites_t* s) {
  free(s->v);
  free(s->slots);
}

/* Adds every sample's value (vi) and objects (oi) to its leaf site; into `other` if diff. */
static int sites_add(sites_t* sites, const mprof_stacks_t* s, int vi, int oi, bool lines,
                     bool other, bool by_thread) {
  for (size_t i = 0; i < s->n; i++) {
    const mprof_stack_t* st = &s->stacks[i];
    int64_t v = st->values[vi];
    if (v == 0 && (oi < 0 || st->values[oi] == 0)) continue;
    if (s->hide_suppressed && st->suppressed != 0) continue;
    const mprof_frame_t* leaf = by_thread ? &st->thread : &st->site;
    site_t* site = site_get(sites, leaf, lines);
    if (site == NULL) return ENOMEM;
    if (!lines && (site->leaf->line != leaf->line || strcmp(site->leaf->file, leaf->file) != 0))
      site->mixed = true;
    if (other) {
      site->other += v;
    } else {
      site->bytes += v;
      if (oi >= 0) site->objects += st->values[oi];
    }
  }
  return 0;
}

static int cmp_site(const void* a, const void* b) {
  const site_t* x = a;
  const site_t* y = b;
  if (x->sort != y->sort) return x->sort > y->sort ? -1 : 1;
  return strcmp(x->leaf->func, y->leaf->func);
}

const char* mprof__fmt_bytes(char* buf, size_t len, int64_t v, bool exact) {
  if (exact) {
    snprintf(buf, len, "%" PRId64 " B", v);
    return buf;
  }
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double x = (double)(v < 0 ? -v : v);
  int u = 0;
  while (x >= 1024 && u < 4) {
    x /= 1024;
    u++;
  }
  if (u == 0)
    snprintf(buf, len, "%s%" PRId64 " B", v < 0 ? "-" : "", v < 0 ? -v : v);
  else
    snprintf(buf, len, "%s%.1f %s", v < 0 ? "-" : "", x, units[u]);
  return buf;
}

/* Where a site is: file:line (for a function: when all its samples come from one line), the
 * file, or the object it is in. */
static void fmt_where(char* buf, size_t len, const mprof_frame_t* f, bool one_line) {
  if (f->file[0] != '\0' && f->line > 0 && one_line)
    snprintf(buf, len, "%s:%" PRId64, f->file, f->line);
  else if (f->file[0] != '\0')
    snprintf(buf, len, "%s", f->file);
  else if (f->obj[0] != '\0')
    snprintf(buf, len, "(%s)", f->obj);
  else
    snprintf(buf, len, "?");
}

int64_t mprof__total(const mprof_stacks_t* s, mprof_metric_t m) {
  int vi = metric_index(s, m);
  if (vi < 0) return 0;
  int64_t t = 0;
  for (size_t i = 0; i < s->n; i++)
    t += s->stacks[i].values[vi];
  return t;
}

size_t mprof__sites_over(const mprof_stacks_t* s, mprof_metric_t m, int64_t threshold) {
  int vi = metric_index(s, m);
  if (vi < 0) return 0;
  sites_t sites = {0};
  size_t n = 0;
  mprof_stacks_t view = *s;
  view.hide_suppressed = true;
  if (sites_add(&sites, &view, vi, -1, false, false, false) == 0) {
    for (size_t i = 0; i < sites.n; i++)
      if (sites.v[i].bytes > threshold) n++;
  }
  sites_free(&sites);
  return n;
}

int mprof__print_top(FILE* f, const mprof_stacks_t* s, const mprof_top_opts_t* o) {
  int vi = metric_index(s, o->metric);
  int oi =
      o->metric == MPROF_INUSE_OBJECTS ? bytes_index(s, MPROF_INUSE) : objects_index(s, o->metric);
  if (vi < 0) {
    fprintf(stderr, "mprof: the profile has no %s values\n", metric_name(o->metric));
    return EINVAL;
  }
  sites_t sites = {0};
  if (sites_add(&sites, s, vi, oi, o->lines && !o->by_thread, false, o->by_thread) != 0) {
    sites_free(&sites);
    fprintf(stderr, "mprof: out of memory\n");
    return ENOMEM;
  }
  int64_t total = 0, total_other = 0;
  for (size_t i = 0; i < sites.n; i++) {
    sites.v[i].sort = sites.v[i].bytes;
    total += sites.v[i].bytes;
    total_other += sites.v[i].objects;
  }
  if (sites.n > 1) qsort(sites.v, sites.n, sizeof *sites.v, cmp_site);
  char b1[32], b2[32], where[512];
  bool objs = o->metric == MPROF_INUSE_OBJECTS;
  const char* title = o->leaks                   ? "still in use at exit"
                      : o->metric == MPROF_ALLOC ? "allocated over the run"
                      : objs                     ? "objects in use"
                                                 : "in use";
  /* A period of 1: every allocation was sampled, the figures are counts, not estimates. */
  const char* how =
      s->prof->period == 1 ? "exact: every allocation sampled" : "estimated from samples";
  if (objs)
    fprintf(f, "%s: %" PRId64 " objects, %s (%s)\n", title, total,
            mprof__fmt_bytes(b1, sizeof b1, total_other, o->exact), how);
  else
    fprintf(f, "%s: %s in %" PRId64 " objects (%s)\n", title,
            mprof__fmt_bytes(b1, sizeof b1, total, o->exact), total_other, how);
  fprintf(f, "  %12s %6s %10s  %-32s %s\n", objs ? "objects" : "bytes", "share",
          objs ? "bytes" : "objects", o->by_thread ? "thread" : "function",
          o->by_thread ? "" : "where");
  size_t shown = 0;
  for (size_t i = 0; i < sites.n; i++) {
    const site_t* st = &sites.v[i];
    if (st->bytes <= 0) continue;
    if (o->n != 0 && shown == o->n) break;
    shown++;
    fmt_where(where, sizeof where, st->leaf, o->lines || !st->mixed);
    if (o->by_thread) where[0] = '\0';
    double share = total > 0 ? 100.0 * (double)st->bytes / (double)total : 0;
    if (objs)
      fprintf(f, "  %12" PRId64 " %5.1f%% %10s  %-32s %s\n", st->bytes, share,
              mprof__fmt_bytes(b2, sizeof b2, st->objects, o->exact), st->leaf->func, where);
    else
      fprintf(f, "  %12s %5.1f%% %10" PRId64 "  %-32s %s\n",
              mprof__fmt_bytes(b2, sizeof b2, st->bytes, o->exact), share, st->objects,
              st->leaf->func, where);
  }
  if (shown == 0) {
    int64_t alloc = o->metric != MPROF_ALLOC ? mprof__total(s, MPROF_ALLOC) : 0;
    if (o->leaks && s->hide_suppressed && total == 0 && mprof__total(s, MPROF_INUSE) > 0)
      fprintf(f, "  (nothing but suppressed sites: see below)\n");
    else if (o->metric != MPROF_ALLOC && alloc > 0)
      fprintf(f,
              "  (nothing: the program freed all it allocated, %s, before this profile was "
              "written; --alloc shows where it allocated)\n",
              mprof__fmt_bytes(b2, sizeof b2, alloc, o->exact));
    else
      fprintf(f, "  (nothing)\n");
  }
  sites_free(&sites);
  return 0;
}

int mprof__print_diff(FILE* f, const mprof_stacks_t* old, const mprof_stacks_t* new_,
                      const mprof_top_opts_t* o) {
  size_t n = o->n;
  bool lines = o->lines, exact = o->exact;
  int vo = metric_index(old, o->metric), vn = metric_index(new_, o->metric);
  if (vo < 0 || vn < 0) {
    fprintf(stderr, "mprof: diff: %s profile has no %s values\n", vo < 0 ? "the old" : "the new",
            metric_name(o->metric));
    return EINVAL;
  }
  bool objs = o->metric == MPROF_INUSE_OBJECTS;
  sites_t sites = {0};
  if (sites_add(&sites, old, vo, -1, lines, true, false) != 0 ||
      sites_add(&sites, new_, vn, -1, lines, false, false) != 0) {
    sites_free(&sites);
    fprintf(stderr, "mprof: out of memory\n");
    return ENOMEM;
  }
  int64_t told = 0, tnew = 0;
  for (size_t i = 0; i < sites.n; i++) {
    site_t* s = &sites.v[i];
    int64_t d = s->bytes - s->other;
    s->sort = d < 0 ? -d : d;
    told += s->other;
    tnew += s->bytes;
  }
  if (sites.n > 1) qsort(sites.v, sites.n, sizeof *sites.v, cmp_site);
  char b1[32], b2[32], b3[32], where[512];
  /* Object counts print as plain numbers: the exact form of the byte formatter, less " B". */
  bool ex = exact || objs;
  const char* title = o->metric == MPROF_ALLOC ? "allocated" : objs ? "objects in use" : "in use";
  fprintf(f, "%s: %s -> %s (%s%s)\n", title, mprof__fmt_bytes(b1, sizeof b1, told, ex),
          mprof__fmt_bytes(b2, sizeof b2, tnew, ex), tnew >= told ? "+" : "",
          mprof__fmt_bytes(b3, sizeof b3, tnew - told, ex));
  fprintf(f, "  %12s %12s %12s  %-32s %s\n", "change", "old", "new", "function", "where");
  size_t shown = 0;
  for (size_t i = 0; i < sites.n; i++) {
    const site_t* s = &sites.v[i];
    if (s->sort == 0) continue;
    if (n != 0 && shown == n) break;
    shown++;
    int64_t d = s->bytes - s->other;
    fmt_where(where, sizeof where, s->leaf, lines || !s->mixed);
    char db[40];
    snprintf(db, sizeof db, "%s%s", d > 0 ? "+" : "", mprof__fmt_bytes(b3, sizeof b3, d, ex));
    fprintf(f, "  %12s %12s %12s  %-32s %s\n", db, mprof__fmt_bytes(b1, sizeof b1, s->other, ex),
            mprof__fmt_bytes(b2, sizeof b2, s->bytes, ex), s->leaf->func, where);
  }
  if (shown == 0) fprintf(f, "  (no site changed)\n");
  sites_free(&sites);
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Leak suppressions
 * ------------------------------------------------------------------------------------------- */
const char* const mprof__builtin_suppressions[] = {
    "_IO_file_doallocate", /* stdio buffers, kept until exit */
    "eh_alloc.cc",         /* libstdc++'s emergency exception pool */
    "(anonymous namespace)::pool::pool",
    "_dl_allocate_tls", /* the loader: thread-local storage, dtv, loaded objects */
    "allocate_dtv",
    "_dl_resize_dtv",
    "_dl_update_slotinfo",
    "_dl_new_object",
    "_dl_map_object",
    "_dl_check_map_versions",
    "_dlfo_mappings_segment_allocate",
    "_nl_intern_locale_data", /* setlocale's data and aliases */
    "read_alias_file",
    "extend_alias_table",
    NULL,
};

/* Whole-string match of s against pat[0..pl) where '*' matches any run of characters
 * (iterative, with one backtrack point: linear in practice, never recursive). */
static bool glob_match(const char* pat, size_t pl, const char* s) {
  size_t pi = 0, star = SIZE_MAX;
  const char* mark = NULL;
  while (*s) {
    if (pi < pl && pat[pi] == '*') {
      star = pi++;
      mark = s;
    } else if (pi < pl && pat[pi] == *s) {
      pi++;
      s++;
    } else if (star != SIZE_MAX) {
      pi = star + 1;
      s = ++mark;
    } else {
      return false;
    }
  }
  while (pi < pl && pat[pi] == '*')
    pi++;
  return pi == pl;
}

/* LeakSanitizer's matching: '*' matches any run of characters; a leading '^' anchors at the
 * start, a trailing '$' at the end; otherwise the pattern may match anywhere in s. */
static bool tmatch(const char* pat, const char* s) {
  char buf[1024];
  size_t n = strlen(pat);
  bool start = n > 0 && pat[0] == '^';
  bool end = n > 0 && pat[n - 1] == '$' && !(start && n == 1);
  const char* body = pat + start;
  size_t bl = n - start - end;
  if (bl + 3 > sizeof buf) return false;
  size_t k = 0;
  if (!start) buf[k++] = '*';
  memcpy(buf + k, body, bl);
  k += bl;
  if (!end) buf[k++] = '*';
  return glob_match(buf, k, s);
}

static bool frame_matches(const mprof_frame_t* f, const char* pat) {
  return tmatch(pat, f->func) || tmatch(pat, f->raw) || (f->file[0] && tmatch(pat, f->file)) ||
         (f->obj[0] && tmatch(pat, f->obj));
}

int mprof__suppress(mprof_stacks_t* s, const char* const* pats, size_t npats) {
  const mprof_rd_profile_t* p = s->prof;
  if (s->n != p->nsamples) return EINVAL; /* merged stacks: not supported */
  int* by_loc = calloc(p->nlocations ? p->nlocations : 1, sizeof *by_loc);
  if (by_loc == NULL) return ENOMEM;
  for (size_t li = 0; li < p->nlocations; li++) {
    const mprof_locframes_t* lf = &s->locs[li];
    for (size_t j = 0; j < lf->n && by_loc[li] == 0; j++)
      for (size_t k = 0; k < npats && by_loc[li] == 0; k++)
        if (frame_matches(&lf->f[j], pats[k])) by_loc[li] = (int)k + 1;
  }
  for (size_t i = 0; i < s->n; i++) {
    const mprof_rd_sample_t* smp = &p->samples[i];
    s->stacks[i].suppressed = 0;
    for (size_t j = 0; j < smp->nlocs && s->stacks[i].suppressed == 0; j++)
      s->stacks[i].suppressed = by_loc[smp->locs[j]];
  }
  free(by_loc);
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Reconciliation
 * ------------------------------------------------------------------------------------------- */
static bool comment_value(const mprof_rd_profile_t* p, const char* key, uint64_t* v) {
  size_t kl = strlen(key);
  for (size_t i = 0; i < p->ncomments; i++) {
    const char* c = mprof__rd_str(p, p->comments[i]);
    if (strncmp(c, "mprof.", 6) == 0 && strncmp(c + 6, key, kl) == 0 && c[6 + kl] == '=') {
      char* end;
      errno = 0;
      unsigned long long x = strtoull(c + 7 + kl, &end, 10);
      if (errno != 0 || *end != '\0' || end == c + 7 + kl) return false;
      *v = x;
      return true;
    }
  }
  return false;
}

static const char* comment_str(const mprof_rd_profile_t* p, const char* key) {
  size_t kl = strlen(key);
  for (size_t i = 0; i < p->ncomments; i++) {
    const char* c = mprof__rd_str(p, p->comments[i]);
    if (strncmp(c, "mprof.", 6) == 0 && strncmp(c + 6, key, kl) == 0 && c[6 + kl] == '=')
      return c + 7 + kl;
  }
  return NULL;
}

static void recon_row(FILE* f, const char* label, uint64_t v, const char* note, bool exact) {
  char b[32];
  fprintf(f, "  %-34s %12s  %s\n", label, mprof__fmt_bytes(b, sizeof b, (int64_t)v, exact), note);
}

static void recon_diff(FILE* f, const char* label, uint64_t a, uint64_t b, const char* note,
                       bool exact) {
  char buf[32], d[40];
  int64_t x = (int64_t)a - (int64_t)b;
  snprintf(d, sizeof d, "%s%s", x >= 0 ? "+" : "", mprof__fmt_bytes(buf, sizeof buf, x, exact));
  fprintf(f, "  %-34s %12s  %s\n", label, d, note);
}

void mprof__print_recon(FILE* f, const mprof_rd_profile_t* p, bool exact) {
  uint64_t est, committed, peak_committed, allocated, active, resident, rss, meta;
  if (!comment_value(p, "estimated_inuse_bytes", &est)) {
    fprintf(f, "reconciliation: not recorded in this profile (written by a profiler other than "
               "mprof)\n");
    return;
  }
  const char* alloc = comment_str(p, "allocator");
  fprintf(f, "reconciliation (%s):\n", alloc ? alloc : "allocator unknown");
  recon_row(f, "estimated in use (samples)", est, "the profile's inuse_space total", exact);
  bool have_rss = comment_value(p, "process_rss_bytes", &rss);
  bool have_meta = comment_value(p, "profiler_metadata_bytes", &meta);
  if (comment_value(p, "allocator_allocated_bytes", &allocated)) {
    /* jemalloc's figures */
    recon_row(f, "allocated (allocator, exact)", allocated, "bytes in blocks the program holds",
              exact);
    recon_diff(f, "  allocated - estimated", allocated, est,
               "sampling error, and blocks sampled before profiling started", exact);
    if (comment_value(p, "allocator_active_bytes", &active)) {
      recon_row(f, "active (allocator)", active, "pages holding live blocks", exact);
      recon_diff(f, "  active - allocated", active, allocated,
                 "size-class rounding and fragmentation", exact);
    }
    if (comment_value(p, "allocator_resident_bytes", &resident)) {
      recon_row(f, "resident (allocator)", resident, "allocator pages in memory", exact);
      if (comment_value(p, "allocator_active_bytes", &active))
        recon_diff(f, "  resident - active", resident, active,
                   "allocator metadata and free (dirty) pages it keeps", exact);
      if (have_rss)
        recon_diff(f, "  process RSS - resident", rss, resident,
                   "not from malloc (code, stacks, data, mmap, profiler)", exact);
    }
  } else if (comment_value(p, "allocator_committed_bytes", &committed)) {
    recon_row(f, "committed (allocator, exact)", committed, "memory the allocator took from the OS",
              exact);
    if (comment_value(p, "allocator_peak_committed_bytes", &peak_committed))
      recon_row(f, "peak committed (allocator)", peak_committed, "its highest point", exact);
    recon_diff(f, "  committed - estimated", committed, est,
               "allocator overhead, free pages it keeps, sampling error", exact);
    if (have_rss)
      recon_diff(f, "  process RSS - committed", rss, committed,
                 "not from malloc (code, stacks, data, mmap, profiler) less untouched pages",
                 exact);
  }
  if (have_rss) recon_row(f, "process RSS", rss, "resident memory of the process", exact);
  if (have_meta) recon_row(f, "profiler metadata", meta, "mapped by mprof itself, in RSS", exact);
}
