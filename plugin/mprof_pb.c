/* Protocol buffers encoding (see mprof_pb.h).
 *
 * This file owns the growable byte buffer and the wire format: base-128 varints, field tags,
 * length-delimited fields and the in-place nesting of messages. It knows nothing about pprof.
 * Growth doubles the capacity through mprof__meta_alloc, so it never calls the program's malloc
 * and is safe inside it. */
#include "mprof_pb.h"

#include "mprof_meta.h"

#include <string.h>

#define MIN_CAP 256

void mprof__pb_init(mprof_pb_buf_t* b) {
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
  b->failed = false;
}

void mprof__pb_free(mprof_pb_buf_t* b) {
  if (b->data != NULL) mprof__meta_free(b->data, b->cap);
  mprof__pb_init(b);
}

void mprof__pb_clear(mprof_pb_buf_t* b) {
  b->len = 0;
}

bool mprof__pb_reserve(mprof_pb_buf_t* b, size_t n) {
  if (b->failed) return false;
  if (n <= b->cap - b->len) return true;
  if (n > SIZE_MAX / 2 - b->len) goto fail;
  size_t need = b->len + n;
  size_t cap = b->cap < MIN_CAP ? MIN_CAP : b->cap;
  while (cap < need)
    cap *= 2;
  uint8_t* data = mprof__meta_alloc(cap);
  if (data == NULL) goto fail;
  if (b->len > 0) memcpy(data, b->data, b->len);
  if (b->data != NULL) mprof__meta_free(b->data, b->cap);
  b->data = data;
  b->cap = cap;
  return true;
fail:
  b->failed = true;
  return false;
}

size_t mprof__pb_varint_size(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

/* Writes v at p, which has room for MPROF_PB_VARINT_MAX bytes; returns the bytes written. */
static size_t put_varint(uint8_t* p, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) {
    p[n++] = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  p[n++] = (uint8_t)v;
  return n;
}

void mprof__pb_raw(mprof_pb_buf_t* b, const void* p, size_t n) {
  if (n == 0 || !mprof__pb_reserve(b, n)) return;
  memcpy(b->data + b->len, p, n);
  b->len += n;
}

void mprof__pb_varint(mprof_pb_buf_t* b, uint64_t v) {
  if (!mprof__pb_reserve(b, MPROF_PB_VARINT_MAX)) return;
  b->len += put_varint(b->data + b->len, v);
}

void mprof__pb_tag(mprof_pb_buf_t* b, uint32_t field, mprof_pb_wire_t wire) {
  mprof__pb_varint(b, ((uint64_t)field << 3) | (uint64_t)wire);
}

void mprof__pb_uint64(mprof_pb_buf_t* b, uint32_t field, uint64_t v) {
  mprof__pb_tag(b, field, MPROF_PB_VARINT);
  mprof__pb_varint(b, v);
}

void mprof__pb_int64(mprof_pb_buf_t* b, uint32_t field, int64_t v) {
  mprof__pb_uint64(b, field, (uint64_t)v); /* two's complement, as protobuf's int64 */
}

void mprof__pb_bool(mprof_pb_buf_t* b, uint32_t field, bool v) {
  mprof__pb_uint64(b, field, v ? 1 : 0);
}

void mprof__pb_bytes(mprof_pb_buf_t* b, uint32_t field, const void* p, size_t n) {
  /* Reserve everything first so that a failure leaves no half-written field behind. */
  if (n > SIZE_MAX - 2 * MPROF_PB_VARINT_MAX) {
    b->failed = true;
    return;
  }
  if (!mprof__pb_reserve(b, 2 * MPROF_PB_VARINT_MAX + n)) return;
  mprof__pb_tag(b, field, MPROF_PB_LEN);
  mprof__pb_varint(b, n);
  mprof__pb_raw(b, p, n);
}

void mprof__pb_string(mprof_pb_buf_t* b, uint32_t field, const char* s) {
  mprof__pb_bytes(b, field, s, strlen(s));
}

void mprof__pb_packed_uint64(mprof_pb_buf_t* b, uint32_t field, const uint64_t* v, size_t n) {
  if (n == 0) return;
  size_t size = 0;
  for (size_t i = 0; i < n; i++)
    size += mprof__pb_varint_size(v[i]);
  mprof__pb_tag(b, field, MPROF_PB_LEN);
  mprof__pb_varint(b, size);
  if (!mprof__pb_reserve(b, size)) return;
  for (size_t i = 0; i < n; i++)
    b->len += put_varint(b->data + b->len, v[i]);
}

void mprof__pb_packed_int64(mprof_pb_buf_t* b, uint32_t field, const int64_t* v, size_t n) {
  if (n == 0) return;
  size_t size = 0;
  for (size_t i = 0; i < n; i++)
    size += mprof__pb_varint_size((uint64_t)v[i]);
  mprof__pb_tag(b, field, MPROF_PB_LEN);
  mprof__pb_varint(b, size);
  if (!mprof__pb_reserve(b, size)) return;
  for (size_t i = 0; i < n; i++)
    b->len += put_varint(b->data + b->len, (uint64_t)v[i]);
}

/* The token is the offset of a gap of MPROF_PB_VARINT_MAX bytes left for the length; the body
 * follows the gap until mprof__pb_end() moves it down next to the real length. */
size_t mprof__pb_begin(mprof_pb_buf_t* b, uint32_t field) {
  mprof__pb_tag(b, field, MPROF_PB_LEN);
  if (!mprof__pb_reserve(b, MPROF_PB_VARINT_MAX)) return 0;
  size_t token = b->len;
  b->len += MPROF_PB_VARINT_MAX;
  return token;
}

void mprof__pb_end(mprof_pb_buf_t* b, size_t token) {
  if (b->failed) return;
  uint8_t* gap = b->data + token;
  size_t body = b->len - token - MPROF_PB_VARINT_MAX;
  size_t n = put_varint(gap, body);
  memmove(gap + n, gap + MPROF_PB_VARINT_MAX, body);
  b->len -= MPROF_PB_VARINT_MAX - n;
}
