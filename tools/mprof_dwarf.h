/* file:line from DWARF line tables (.debug_line), for the mprof command.
 *
 * Reads the line-number programs of DWARF versions 2 to 5 from an ELF object already mapped in
 * memory (zlib-compressed sections included) and answers "which source line is this address":
 * the row of the line table that covers it. Only the line table is read, not .debug_info, so an
 * address in inlined code gets the line of the inlined code, under the name of the function it
 * was inlined into. */
#ifndef MPROF_DWARF_H
#define MPROF_DWARF_H

#include <stddef.h>
#include <stdint.h>

typedef struct mprof_dwarf_row_s {
  uint64_t addr; /* first address of the row's range */
  uint32_t file; /* index into files; UINT32_MAX: end of a sequence (no line here) */
  uint32_t line;
} mprof_dwarf_row_t;

typedef struct mprof_dwarf_lines_s {
  mprof_dwarf_row_t* rows; /* sorted by addr */
  size_t n;
  char** files; /* full paths (directory joined), malloc'd */
  size_t nfiles;
} mprof_dwarf_lines_t;

/* Reads the line tables of the ELF object at data[0..size). Returns 0 (possibly with no rows:
 * no debug information), EINVAL for a malformed table (the rows read before it are kept), or
 * ENOMEM. */
int mprof__dwarf_load(const uint8_t* data, size_t size, mprof_dwarf_lines_t* out);

/* The file and line of vaddr (an address in the object's own address space), or 0 when no row
 * covers it. */
int mprof__dwarf_find(const mprof_dwarf_lines_t* l, uint64_t vaddr, const char** file,
                      uint32_t* line);

void mprof__dwarf_free(mprof_dwarf_lines_t* l);

#endif
