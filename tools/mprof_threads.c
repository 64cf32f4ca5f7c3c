/* `mprof threads FILE`: a thread snapshot (*.threads.pb.gz, docs/OPTIONS.md) as text, threads
 * grouped by stack and state the way Go prints goroutine?debug=1: a count and the stack of each
 * group, most populous first, with the names and ids of its threads and the heap they hold. */
#include "mprof_threads_report.h"

#include "mprof_read.h"
#include "mprof_report.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct thr_s {
  size_t sample;
  const char* name;
  const char* state;
  int64_t tid;
} thr_t;

static const mprof_rd_profile_t* sort_prof; /* for the comparators (qsort has no argument) */

static int cmp_locs(const mprof_rd_sample_t* a, const mprof_rd_sample_t* b) {
  size_t n = a->nlocs < b->nlocs ? a->nlocs : b->nlocs;
  for (size_t i = 0; i < n; i++) {
    uint64_t x = sort_prof->locations[a->locs[i]].address;
    uint64_t y = sort_prof->locations[b->locs[i]].address;
    if (x != y) return x < y ? -1 : 1;
  }
  return a->nlocs < b->nlocs ? -1 : a->nlocs > b->nlocs ? 1 : 0;
}

/* Same group: same state and same stack. */
static int cmp_group(const void* pa, const void* pb) {
  const thr_t* a = pa;
  const thr_t* b = pb;
  int c = strcmp(a->state, b->state);
  if (c != 0) return c;
  c = cmp_locs(&sort_prof->samples[a->sample], &sort_prof->samples[b->sample]);
  if (c != 0) return c;
  return a->tid < b->tid ? -1 : a->tid > b->tid;
}

typedef struct group_s {
  size_t first, n; /* range in the sorted threads */
} group_t;

static int cmp_size(const void* pa, const void* pb) {
  const group_t* a = pa;
  const group_t* b = pb;
  if (a->n != b->n) return a->n > b->n ? -1 : 1;
  return a->first < b->first ? -1 : a->first > b->first;
}

static const char* label_str(const mprof_rd_profile_t* p, const mprof_rd_sample_t* s,
                             const char* key) {
  for (size_t i = 0; i < s->nlabels; i++)
    if (s->labels[i].str != 0 && strcmp(mprof__rd_str(p, s->labels[i].key), key) == 0)
      return mprof__rd_str(p, s->labels[i].str);
  return "";
}

static int64_t label_num(const mprof_rd_profile_t* p, const mprof_rd_sample_t* s, const char* key) {
  for (size_t i = 0; i < s->nlabels; i++)
    if (s->labels[i].str == 0 && strcmp(mprof__rd_str(p, s->labels[i].key), key) == 0)
      return s->labels[i].num;
  return 0;
}

/* A frame: its function, or its file and offset when it has no name. */
static void print_frame(FILE* f, const mprof_rd_profile_t* p, size_t li) {
  const mprof_rd_location_t* l = &p->locations[li];
  fprintf(f, "#\t0x%" PRIx64 "\t", l->address);
  if (l->nlines > 0) {
    /* inlined functions first, then the function they were inlined into */
    for (size_t k = 0; k < l->nlines; k++)
      fprintf(f, "%s%s", k ? " < " : "", mprof__rd_str(p, p->functions[l->lines[k].func].name));
  } else if (l->mapping != SIZE_MAX) {
    const mprof_rd_mapping_t* m = &p->mappings[l->mapping];
    const char* file = mprof__rd_str(p, m->filename);
    const char* base = strrchr(file, '/');
    fprintf(f, "%s+0x%" PRIx64, base ? base + 1 : file, l->address - m->start + m->offset);
  } else {
    fputs("?", f);
  }
  fputc('\n', f);
}

int mprof__threads_print(FILE* f, const char* path) {
  mprof_rd_profile_t p;
  char err[256];
  int e = mprof__rd_file(path, &p, err, sizeof err);
  if (e != 0) {
    fprintf(stderr, "mprof: %s: %s\n", path, err);
    return e;
  }
  int it = mprof__rd_sample_index(&p, "threads");
  int in = mprof__rd_sample_index(&p, "inuse_space");
  int ia = mprof__rd_sample_index(&p, "alloc_space");
  if (it < 0) {
    fprintf(stderr, "mprof: %s: not a thread snapshot (no sample type \"threads\")\n", path);
    mprof__rd_free(&p);
    return EINVAL;
  }
  thr_t* t = calloc(p.nsamples + 1, sizeof *t);
  group_t* g = calloc(p.nsamples + 1, sizeof *g);
  if (t == NULL || g == NULL) {
    free(t);
    free(g);
    mprof__rd_free(&p);
    fprintf(stderr, "mprof: out of memory\n");
    return ENOMEM;
  }
  for (size_t i = 0; i < p.nsamples; i++) {
    t[i].sample = i;
    t[i].name = label_str(&p, &p.samples[i], "thread");
    t[i].state = label_str(&p, &p.samples[i], "state");
    t[i].tid = label_num(&p, &p.samples[i], "tid");
  }
  sort_prof = &p;
  qsort(t, p.nsamples, sizeof *t, cmp_group);
  size_t ng = 0;
  for (size_t i = 0; i < p.nsamples; i++) {
    if (i > 0 && strcmp(t[i - 1].state, t[i].state) == 0 &&
        cmp_locs(&p.samples[t[i - 1].sample], &p.samples[t[i].sample]) == 0) {
      g[ng - 1].n++;
      continue;
    }
    g[ng].first = i;
    g[ng].n = 1;
    ng++;
  }
  qsort(g, ng, sizeof *g, cmp_size);

  int64_t total = 0;
  for (size_t i = 0; i < p.nsamples; i++)
    total += p.samples[i].values[it];
  fprintf(f, "threads profile: total %" PRId64 "\n", total);
  for (size_t k = 0; k < ng; k++) {
    const thr_t* first = &t[g[k].first];
    const mprof_rd_sample_t* s = &p.samples[first->sample];
    fprintf(f, "\n%zu %s @", g[k].n, first->state[0] ? first->state : "?");
    for (size_t i = 0; i < s->nlocs; i++)
      fprintf(f, " 0x%" PRIx64, p.locations[s->locs[i]].address);
    fputc('\n', f);
    fputs("# threads:", f);
    int64_t inuse = 0, alloc = 0;
    for (size_t i = g[k].first; i < g[k].first + g[k].n; i++) {
      fprintf(f, " %s[%" PRId64 "]", t[i].name, t[i].tid);
      if (in >= 0) inuse += p.samples[t[i].sample].values[in];
      if (ia >= 0) alloc += p.samples[t[i].sample].values[ia];
    }
    fputc('\n', f);
    for (size_t i = 0; i < s->nlocs; i++)
      print_frame(f, &p, s->locs[i]);
    if (s->nlocs == 0) fputs("#\t(no stack)\n", f);
    char b1[32], b2[32];
    fprintf(f, "# heap: %s in use, %s allocated (estimated)\n",
            mprof__fmt_bytes(b1, sizeof b1, inuse, false),
            mprof__fmt_bytes(b2, sizeof b2, alloc, false));
  }
  free(t);
  free(g);
  mprof__rd_free(&p);
  return 0;
}
