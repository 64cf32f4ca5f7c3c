/* Names, inline frames and file:line of code addresses, from ELF symbols and DWARF debug
 * information through elfutils' libdwfl, for the mprof command (never for the libraries).
 *
 * One object file at a time, named by a profile's mapping: the file itself, its separate debug
 * file found by build id (/usr/lib/debug/.build-id/xx/yyyy.debug) or .gnu_debuglink
 * (dwfl_standard_find_debuginfo), else a debuginfod client cache if one exists
 * ($DEBUGINFOD_CACHE_PATH, $XDG_CACHE_HOME/debuginfod_client, ~/.cache/debuginfod_client). The
 * network is never used: mprof__dw_offline() must have been called first (it drops
 * DEBUGINFOD_URLS from this process's environment). */
#ifndef MPROF_DWARF_H
#define MPROF_DWARF_H

#include <stddef.h>
#include <stdint.h>

typedef struct mprof_dw_s mprof_dw_t;

typedef struct mprof_dw_frame_s {
  const char* func; /* raw (possibly mangled) name, never NULL; valid until mprof__dw_close */
  const char* file; /* source file, or "" */
  int64_t line;     /* 0 when unknown */
} mprof_dw_frame_t;

/* Most frames one address yields (an inline chain deeper than this keeps its innermost part and
 * the function it is inlined into). */
#define MPROF_DW_MAX_FRAMES 64

/* Keeps libdwfl from asking a debuginfod server (no network): unsets DEBUGINFOD_URLS. */
void mprof__dw_offline(void);

/* Opens the ELF object at path. build_id (hex, may be "" or NULL) must match the file's when
 * given. Returns 0, ENOENT/EACCES (unreadable), EINVAL (not ELF, or another build), ENOMEM. */
int mprof__dw_open(const char* path, const char* build_id, mprof_dw_t** out);

/* The same for an object in memory (copied; for tests and fuzzing). */
int mprof__dw_open_mem(const uint8_t* data, size_t size, mprof_dw_t** out);

/* The frames at file offset `off` of the object (a mapping's address - start + offset), the
 * innermost inlined function first and the function it was inlined into last, each with the
 * file:line where control is in it. Fills at most max (<= MPROF_DW_MAX_FRAMES) and returns how
 * many: 0 when the offset is in no loaded segment or no symbol covers it; a single frame with
 * file "" when there is a symbol but no line information. *has_dwarf is set when the frames
 * come from DWARF. */
size_t mprof__dw_frames(mprof_dw_t* d, uint64_t off, mprof_dw_frame_t* out, size_t max,
                        int* has_dwarf);

void mprof__dw_close(mprof_dw_t* d);

#endif
