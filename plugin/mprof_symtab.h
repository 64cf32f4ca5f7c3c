/* Function names from an object's ELF symbol table, for profile writers.
 *
 * `go tool pprof` symbolizes profiles from DWARF, and the one Debian ships (Go 1.19) leaves
 * functions unnamed where it cannot map an address to a compile unit: C++ programs, and C
 * functions that gcc -O2 moves to .text.startup (main, and what is inlined into it), and every
 * library that has no debug info. So the writer names each location itself from the symbol
 * table of the mapped file (.symtab, or .dynsym when the file is stripped); pprof replaces those
 * names with its own, with file:line, wherever it can symbolize.
 *
 * Inside the profiled process the file is read with pread (mprof__symtab_load): its string table
 * and the sorted function list live in profiler memory for the duration of one dump, and a file
 * that changes on disk meanwhile can only give fewer names, never a fault. The mprof command
 * maps it read-only instead (mprof__symtab_open), since it also reads the program headers and
 * DWARF through `file`. No stdio, no malloc. */
#ifndef MPROF_SYMTAB_H
#define MPROF_SYMTAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct mprof_sym_s {
  uint64_t addr; /* st_value: the function's address in the file's address space */
  uint64_t size; /* st_size, > 0 */
  uint32_t name; /* offset in the string table */
  uint32_t rank; /* tie-break among aliases at one address: global, weak, local */
} mprof_sym_t;

typedef struct mprof_symtab_s {
  const uint8_t* file; /* the object, mapped read-only (mprof__symtab_open); NULL when loaded */
  size_t file_size;
  const char* strtab; /* NUL-terminated at strtab_size - 1: inside file, or a copy */
  size_t strtab_size;
  mprof_sym_t* syms; /* sorted by addr, profiler memory */
  size_t n;
  size_t syms_cap;  /* private: entries allocated */
  bool owns_strtab; /* private: strtab is a copy in profiler memory */
} mprof_symtab_t;

/* Loads the function symbols of the ELF file at path. If build_id is not "" and the file has a
 * GNU build id, they must match (a file replaced on disk would give wrong names). Returns 0, or
 * an errno (ENOENT, ENOEXEC for a file that is not a usable ELF object, ESTALE for another
 * build, ENOMEM); *out is then empty and needs no mprof__symtab_close. */
int mprof__symtab_open(const char* path, const char* build_id, mprof_symtab_t* out);

/* The same without mapping the file (file stays NULL): every byte is read with pread, so the
 * file may be truncated or rewritten meanwhile without faulting the process. For dumps. */
int mprof__symtab_load(const char* path, const char* build_id, mprof_symtab_t* out);

/* The name of the function containing vaddr (an address in the file's own address space, i.e.
 * the runtime address minus the load bias), or NULL. */
const char* mprof__symtab_find(const mprof_symtab_t* st, uint64_t vaddr);

void mprof__symtab_close(mprof_symtab_t* st);

#endif
