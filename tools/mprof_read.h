/* Reading pprof profiles: gzip (or raw) profile.proto into memory, checked.
 *
 * The reader decodes every field that mprof's writer (plugin/mprof_pprof.c) and Go's
 * runtime/pprof write: sample types, samples with their location ids and values, mappings,
 * locations with their lines, functions, sample labels, the string table, comments, drop_frames, the period and
 * the default sample type; other fields are skipped as protobuf allows. After decoding it checks
 * what the tools rely on: every string index is inside the table, ids are nonzero and unique,
 * every sample has one value per sample type and names only locations that exist, every line
 * names a function that exists. So later code may index without checking again.
 *
 * This is the command-line tool's code (tools/), not the profiler's: it allocates with malloc. */
#ifndef MPROF_READ_H
#define MPROF_READ_H

#include <stddef.h>
#include <stdint.h>

typedef struct mprof_rd_line_s {
  size_t func; /* index into functions (resolved from function_id) */
  int64_t line;
} mprof_rd_line_t;

typedef struct mprof_rd_location_s {
  uint64_t id;
  uint64_t mapping_id; /* 0: none */
  size_t mapping;      /* index into mappings, SIZE_MAX when none */
  uint64_t address;
  mprof_rd_line_t* lines; /* innermost (inlined) first, as in the format */
  size_t nlines;
} mprof_rd_location_t;

typedef struct mprof_rd_function_s {
  uint64_t id;
  int64_t name, system_name, filename; /* string indices */
  int64_t start_line;
} mprof_rd_function_t;

typedef struct mprof_rd_mapping_s {
  uint64_t id;
  uint64_t start, limit, offset;
  int64_t filename, build_id; /* string indices */
} mprof_rd_mapping_t;

typedef struct mprof_rd_label_s {
  int64_t key, str; /* string indices; str 0 for a numeric label */
  int64_t num;
  int64_t num_unit; /* string index */
} mprof_rd_label_t;

typedef struct mprof_rd_sample_s {
  size_t* locs; /* indices into locations, leaf first */
  size_t nlocs;
  int64_t* values; /* one per sample type */
  mprof_rd_label_t* labels;
  size_t nlabels;
} mprof_rd_sample_t;

typedef struct mprof_rd_value_type_s {
  int64_t type, unit; /* string indices */
} mprof_rd_value_type_t;

typedef struct mprof_rd_profile_s {
  mprof_rd_value_type_t* sample_types;
  size_t nsample_types;
  mprof_rd_sample_t* samples;
  size_t nsamples;
  mprof_rd_mapping_t* mappings; /* sorted by id */
  size_t nmappings;
  mprof_rd_location_t* locations; /* sorted by id */
  size_t nlocations;
  mprof_rd_function_t* functions; /* sorted by id */
  size_t nfunctions;
  char** strings; /* NUL-terminated copies; strings[0] is "" */
  size_t nstrings;
  int64_t* comments; /* string indices */
  size_t ncomments;
  int64_t drop_frames, keep_frames; /* string indices, 0 when absent */
  mprof_rd_value_type_t period_type;
  int64_t period;
  int64_t time_nanos;
  int64_t default_sample_type; /* string index, 0 when absent */
} mprof_rd_profile_t;

/* Largest decompressed profile accepted (a bound against gzip bombs). */
#define MPROF_RD_MAX_BYTES ((size_t)1 << 30)

/* Most entries of one repeated field: samples, locations, lines of a location, functions,
 * strings, comments, or the ids, values or labels of one sample (a bound on memory: a small
 * compressed file may hold hundreds of megabytes of tiny messages, each costing far more in
 * memory than in the file). */
#define MPROF_RD_MAX_ITEMS ((size_t)1 << 21)

/* Decodes a profile from memory (gzip-compressed or raw). Returns 0, or a positive errno with a
 * one-line reason in err (without the file name): EINVAL for data that is not a valid profile,
 * ENOMEM, EFBIG for more than MPROF_RD_MAX_BYTES or MPROF_RD_MAX_ITEMS. On failure *out is left empty. */
int mprof__rd_parse(const uint8_t* data, size_t size, mprof_rd_profile_t* out, char* err,
                    size_t errlen);

/* Reads and decodes the file at path; same results, plus the errno of open/read. */
int mprof__rd_file(const char* path, mprof_rd_profile_t* out, char* err, size_t errlen);

void mprof__rd_free(mprof_rd_profile_t* p);

/* The index of the sample type named `type` (e.g. "inuse_space"), or -1. */
int mprof__rd_sample_index(const mprof_rd_profile_t* p, const char* type);

/* The string at index i ("" when out of range). */
const char* mprof__rd_str(const mprof_rd_profile_t* p, int64_t i);

#endif
