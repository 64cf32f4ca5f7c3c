/* A minimal protocol buffers encoder for the pprof writer.
 *
 * Bytes accumulate in a growable buffer in profiler memory (mprof_meta.h). Appending never
 * reports an error directly: when memory runs out the buffer sets `failed`, drops that append and
 * every later one, and the caller checks the flag once when it is done. Field functions always
 * write the field, zero values included; callers omit fields they do not want. Nested messages are
 * written in place: mprof__pb_begin() writes the tag and reserves room for the length,
 * mprof__pb_end() writes the length and closes the gap, so messages nest to any depth without
 * scratch buffers. Packed repeated fields can be written the same way. */
#ifndef MPROF_PB_H
#define MPROF_PB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum mprof_pb_wire_e {
  MPROF_PB_VARINT = 0,
  MPROF_PB_FIXED64 = 1,
  MPROF_PB_LEN = 2, /* length-delimited: strings, bytes, messages, packed repeated fields */
  MPROF_PB_FIXED32 = 5,
} mprof_pb_wire_t;

typedef struct mprof_pb_buf_s {
  uint8_t* data; /* cap bytes from mprof__meta_alloc, NULL while cap == 0 */
  size_t len;    /* bytes written; meaningless once failed is set */
  size_t cap;
  bool failed; /* sticky: memory ran out; only mprof__pb_free() clears it */
} mprof_pb_buf_t;

#define MPROF_PB_BUF_INIT                                                                          \
  { NULL, 0, 0, false }

/* Most bytes a varint takes (a 64-bit value, including negative int64 values). */
#define MPROF_PB_VARINT_MAX 10

void mprof__pb_init(mprof_pb_buf_t* b);
/* Releases the memory and returns the buffer to its initial state (failed cleared). */
void mprof__pb_free(mprof_pb_buf_t* b);
/* Forgets the contents but keeps the memory and the failed flag. */
void mprof__pb_clear(mprof_pb_buf_t* b);
/* Makes room for n more bytes; false (and failed set) when memory runs out. */
bool mprof__pb_reserve(mprof_pb_buf_t* b, size_t n);

/* Number of bytes mprof__pb_varint() writes for v. */
size_t mprof__pb_varint_size(uint64_t v);

void mprof__pb_raw(mprof_pb_buf_t* b, const void* p, size_t n);
void mprof__pb_varint(mprof_pb_buf_t* b, uint64_t v);
void mprof__pb_tag(mprof_pb_buf_t* b, uint32_t field, mprof_pb_wire_t wire);

/* Scalar fields as varints: `int64`, `uint64` (negative int64 values take 10 bytes), `bool`. */
void mprof__pb_uint64(mprof_pb_buf_t* b, uint32_t field, uint64_t v);
void mprof__pb_int64(mprof_pb_buf_t* b, uint32_t field, int64_t v);
void mprof__pb_bool(mprof_pb_buf_t* b, uint32_t field, bool v);

/* Length-delimited fields. mprof__pb_string() takes a NUL-terminated string. */
void mprof__pb_bytes(mprof_pb_buf_t* b, uint32_t field, const void* p, size_t n);
void mprof__pb_string(mprof_pb_buf_t* b, uint32_t field, const char* s);

/* Packed repeated fields; nothing is written when n == 0 (as protobuf encoders do). */
void mprof__pb_packed_uint64(mprof_pb_buf_t* b, uint32_t field, const uint64_t* v, size_t n);
void mprof__pb_packed_int64(mprof_pb_buf_t* b, uint32_t field, const int64_t* v, size_t n);

/* Opens a length-delimited field (a nested message or a packed field whose elements are appended
 * one by one) and returns a token for mprof__pb_end(). Pairs must nest properly. */
size_t mprof__pb_begin(mprof_pb_buf_t* b, uint32_t field);
void mprof__pb_end(mprof_pb_buf_t* b, size_t token);

#endif
