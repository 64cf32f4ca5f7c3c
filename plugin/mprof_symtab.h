/* Function names from an object's ELF symbol table, for profile writers.
 *
 * `go tool pprof` symbolizes profiles from DWARF, and the one Debian ships (Go 1.19) leaves
 * functions unnamed where it cannot map an address to a compile unit: C++ programs, and C
 * functions that gcc -O2 moves to .text.startup (main, and what is inlined into it), and every
 * library that has no debug info. So the writer names each location itself from the symbol
 * table of the mapped file (.symtab, or .dynsym when the file is stripped); pprof replaces those
 * names with its own, with file:line, wherever it can symbolize.
 *
 * The file is mapped read-only for the duration of one dump; the sorted function list lives in
 * profiler memory. No stdio, no malloc. */
#ifndef MPROF_SYMTAB_H
#define MPROF_SYMTAB_H

#include <stddef.h>
#include <stdint.h>

typedef struct mprof_sym_s {
  uint64_t addr; /* st_value: the function's address in the file's address space */
  uint64_t size; /* st_size, > 0 */
  uint32_t name; /* offset in the string table */
  uint32_t rank; /* tie-break among aliases at one address: global, weak, local */
} mprof_sym_t;

typedef struct mprof_symtab_s {
  const uint8_t* file; /* the object, mapped read-only */
  size_t file_size;
  const char* strtab; /* inside file; NUL-terminated at strtab_size - 1 */
  size_t strtab_size;
  mprof_sym_t* syms; /* sorted by addr, profiler memory */
  size_t n;
} mprof_symtab_t;

/* Loads the function symbols of the ELF file at path. If build_id is not "" and the file has a
 * GNU build id, they must match (a file replaced on disk would give wrong names). Returns 0, or
 * an errno (ENOENT, ENOEXEC for a file that is not a usable ELF object, ESTALE for another
 * build, ENOMEM); *out is then empty and needs no mprof__symtab_close. */
int mprof__symtab_open(const char* path, const char* build_id, mprof_symtab_t* out);

/* The name of the function containing vaddr (an address in the file's own address space, i.e.
 * the runtime address minus the load bias), or NULL. */
const char* mprof__symtab_find(const mprof_symtab_t* st, uint64_t vaddr);

void mprof__symtab_close(mprof_symtab_t* st);

#endif
