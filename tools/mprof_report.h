/* What the mprof command shows from a profile: symbolized stacks, the top sites, the difference
 * of two profiles, the reconciliation of the estimate with the allocator's figures, and the data
 * of a flame graph.
 *
 * A location whose Line entries name source files (Go's profiles, symbolized ones) is taken as
 * it is. Otherwise (mprof's own profiles name functions only) the debug information of its
 * mapping's file, when that file is readable and has the build id the profile recorded, gives
 * every inlined function with its file:line (mprof_dwarf.h); without debug information the
 * profile's name stays, else the file's symbol tables name it, else "[file]" or its address.
 * C++ names are demangled and simplified as pprof does (no parameter or template lists), and the
 * profile's drop_frames are removed from the leaf end of every stack. */
#ifndef MPROF_REPORT_H
#define MPROF_REPORT_H

#include "mprof_read.h"

#include <stdbool.h>

#include <stdbool.h>
#include <stdio.h>

typedef struct mprof_frame_s {
  const char* func; /* simplified function name, never NULL */
  const char* file; /* source file or "" */
  int64_t line;     /* 0 when unknown */
  const char* obj;  /* basename of the mapped file, or "" */
  const char* raw;  /* the name as found (mangled for C++), never NULL */
  bool inlined;     /* inlined into the next frame (same location) */
  bool unnamed;     /* no name known: func is "[obj]" or the address */
  bool wrapper;     /* an allocation wrapper (not a site) */
  bool pdrop;       /* matches the profile's drop_frames */
  uint64_t off;     /* unnamed: the file offset in obj (else the address) */
} mprof_frame_t;

/* The frames of one location, innermost (inlined) first. */
typedef struct mprof_locframes_s {
  mprof_frame_t* f;
  size_t n;
} mprof_locframes_t;

typedef struct mprof_stack_s {
  mprof_frame_t* frames; /* leaf first, after drop_frames */
  size_t n;
  const int64_t* values; /* the sample's values, one per sample type */
  mprof_frame_t site;    /* where the program allocated: see mprof__stacks_build */
  const mprof_rd_label_t* labels;
  size_t nlabels;
  int suppressed;       /* leak check: 1 + index of the suppression that matched, 0 if none */
  mprof_frame_t thread; /* func: the sample's "thread" label, or "(no thread label)" */
} mprof_stack_t;

typedef struct mprof_stacks_s {
  const mprof_rd_profile_t* prof;
  mprof_stack_t* stacks; /* one per sample */
  size_t n;
  mprof_locframes_t* locs; /* one per location of prof */
  bool hide_suppressed;    /* tables leave suppressed stacks out */
  int inuse_space, inuse_objects, alloc_space, alloc_objects; /* sample indices, -1 if absent */
  void* pool;                                                 /* owned memory */
} mprof_stacks_t;

/* Most frames over all samples of one profile (a bound on memory for hostile input). */
#define MPROF_MAX_FRAMES ((size_t)1 << 22)

/* Symbolizes every sample of prof and finds its site: the first frame from the leaf that is
 * neither an allocation wrapper nor unnamed. Wrappers are the functions that
 * MPROF_PPROF_DROP_FRAMES (plugin/mprof_pprof.h: the malloc family, operator new, the standard
 * allocators, common wrappers of sqlite, GLib, Python, xmalloc) or extra_drop (an extended
 * regular expression, may be NULL) match whole, and the C++ standard library's functions
 * (std::, __gnu_cxx::) at the leaf end. Unnamed frames fold into the named caller: its site is
 * named "caller (via [object]+0xOFFSET)". Returns 0, ENOMEM, EINVAL (extra_drop does not
 * compile) or EFBIG (more than MPROF_MAX_FRAMES frames). */
int mprof__stacks_build(const mprof_rd_profile_t* prof, mprof_stacks_t* out,
                        const char* extra_drop);
void mprof__stacks_free(mprof_stacks_t* s);

/* Appends the samples of `from` (another profile, e.g. another process of the same run) to
 * `into`, their values matched to into's sample types by name (0 where from has none). from
 * must outlive into. Returns 0 or ENOMEM. */
int mprof__stacks_merge(mprof_stacks_t* into, const mprof_stacks_t* from);

typedef enum mprof_metric_e { MPROF_INUSE, MPROF_ALLOC, MPROF_INUSE_OBJECTS } mprof_metric_t;

typedef struct mprof_top_opts_s {
  mprof_metric_t metric;
  size_t n;       /* rows, 0 = all */
  bool lines;     /* one row per function and file:line instead of per function */
  bool exact;     /* bytes as integers */
  bool leaks;     /* title the table as sites holding memory at exit */
  bool by_thread; /* one row per thread label ("thread") instead of per site */
} mprof_top_opts_t;

/* Prints the table of top sites. Returns 0, or EINVAL with a message on stderr when the profile
 * has no such sample type. */
int mprof__print_top(FILE* f, const mprof_stacks_t* s, const mprof_top_opts_t* o);

/* Sum of one sample type (by metric) over all samples, and the sites whose value exceeds
 * threshold (for --leaks). */
int64_t mprof__total(const mprof_stacks_t* s, mprof_metric_t m);
size_t mprof__sites_over(const mprof_stacks_t* s, mprof_metric_t m, int64_t threshold);

/* The difference NEW - OLD per site of o->metric (in use, allocated, objects in use), largest
 * changes first; o->n rows, o->lines, o->exact as for the table of top sites. */
int mprof__print_diff(FILE* f, const mprof_stacks_t* old, const mprof_stacks_t* new_,
                      const mprof_top_opts_t* o);

/* Memory the C and C++ runtimes keep until exit by design, never a leak (mprof(1) lists them):
 * suppression patterns, NULL-terminated. */
extern const char* const mprof__builtin_suppressions[];

/* Marks every stack that a pattern matches (LeakSanitizer's `leak:` patterns: '*' wildcards,
 * '^'/'$' anchors, else a substring) in a function name, source file or object file name
 * anywhere in the stack: stack.suppressed = 1 + index of the first matching pattern. For a
 * profile's own stacks only (not merged). Returns 0, ENOMEM or EINVAL. */
int mprof__suppress(mprof_stacks_t* s, const char* const* pats, size_t npats);

/* The reconciliation block from the profile's mprof.* comments (or a line saying the profile
 * has none). */
void mprof__print_recon(FILE* f, const mprof_rd_profile_t* p, bool exact);

/* Writes the self-contained HTML flame graph of metric m. Returns 0 or an errno. */
int mprof__write_flame(FILE* f, const mprof_stacks_t* s, mprof_metric_t m, const char* title);

/* Writes the profile of s (gzip-compressed) to path with every location's lines replaced by its
 * symbolized frames (inlined functions first) and every mapping marked as having functions, file
 * names, line numbers and inline frames. Returns 0 or an errno. */
int mprof__write_symbolized(const char* path, const mprof_stacks_t* s);

/* "12.3 MiB" style, into buf. */
const char* mprof__fmt_bytes(char* buf, size_t len, int64_t v, bool exact);

#endif
