/* jemalloc heap_v2 text output (see mprof_jeprof.h). */
#include "mprof_jeprof.h"
#include "mprof_math.h"

#include "mprof_meta.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define OUT_SIZE ((size_t)64 << 10)
#define LINE_MAX_BYTES 4096 /* flush before a line could overflow the buffer */

typedef struct {
  int fd;
  int err;
  char* buf;
  size_t len;
} out_t;

static void flush(out_t* o) {
  size_t off = 0;
  while (o->err == 0 && off < o->len) {
    ssize_t w = write(o->fd, o->buf + off, o->len - off);
    if (w < 0) {
      if (errno == EINTR) continue;
      o->err = errno;
    } else {
      off += (size_t)w;
    }
  }
  o->len = 0;
}

static void put(out_t* o, const char* s, size_t n) {
  if (o->err != 0) return;
  if (o->len + n > OUT_SIZE) flush(o);
  if (n > OUT_SIZE) { /* never for the text written here; keep it correct anyway */
    o->len = 0;
    return;
  }
  memcpy(o->buf + o->len, s, n);
  o->len += n;
}

static void room(out_t* o) {
  if (o->len + LINE_MAX_BYTES > OUT_SIZE) flush(o);
}

/* Appends one "t*: o: b [o: b]" line, indented as jemalloc writes it. */
static void put_counts(out_t* o, int64_t io, int64_t ib, int64_t ao, int64_t ab) {
  room(o);
  int n = snprintf(o->buf + o->len, OUT_SIZE - o->len, "  t*: %lld: %lld [%lld: %lld]\n",
                   (long long)io, (long long)ib, (long long)ao, (long long)ab);
  if (n > 0) o->len += (size_t)n;
}

void mprof__jeprof_pair(int64_t objs, int64_t bytes, uint64_t period, int64_t* out_objs,
                        int64_t* out_bytes) {
  *out_objs = 0;
  *out_bytes = 0;
  if (objs <= 0 || bytes <= 0) return;
  double R = period > 0 ? (double)period : 1.0;
  double O = (double)objs, B = (double)bytes;
  double avg = B / O;
  double p =
      -mprof__expm1(-avg / R); /* probability that an object of the average size is sampled */
  double n = mprof__llround(O * p) > 0 ? (double)mprof__llround(O * p) : 1.0;
  /* Bytes: the x with x / (1 - exp(-(x/n)/R)) = B, i.e. the root of f(x) = x - B*q(x) with
   * q(x) = 1 - exp(-x/K), K = n*R. f is convex with f(0) = 0; it has a positive root when
   * f'(0) = 1 - B/K < 0. Newton's method from x = B (right of the root) converges to it
   * monotonically. */
  for (;;) {
    double K = n * R;
    if (B > K * (1.0 + 1e-12)) break;
    if (n <= 1.0) { /* no exact solution: the plain figures (jeprof overestimates slightly) */
      *out_objs = (int64_t)n;
      *out_bytes = mprof__llround(avg * n) > 0 ? mprof__llround(avg * n) : 1;
      return;
    }
    n -= 1.0;
  }
  double K = n * R;
  double x = B;
  for (int i = 0; i < 100; i++) {
    double q = -mprof__expm1(-x / K);
    double f = x - B * q;
    if (mprof__fabs(f) < 1e-6 * (x > 1.0 ? x : 1.0)) break;
    double d = 1.0 - B * mprof__exp(-x / K) / K;
    if (d <= 0.0) break;
    double next = x - f / d;
    if (!(next > 0.0) || next >= x) break;
    x = next;
  }
  /* Bytes are integers: of the rounded root and the plain n * avg (exact when every object of
   * the stack has one size, and the better choice where the root sits on a flat stretch of f),
   * keep the one whose unbiased figures come closer to B and O together (O is itself rounded to
   * an integer, so half an object is free): with objects of several sizes the root can sit where
   * jeprof's correction is flat, and match bytes only by getting objects far wrong. */
  int64_t s1 = mprof__llround(x) > 0 ? mprof__llround(x) : 1;
  int64_t s0 = mprof__llround(n * avg) > 0 ? mprof__llround(n * avg) : 1;
  double f1 = 1.0 / -mprof__expm1(-((double)s1 / n) / R),
         f0 = 1.0 / -mprof__expm1(-((double)s0 / n) / R);
  double e1 =
      mprof__fabs((double)s1 * f1 - B) / B + mprof__fmax(0.0, mprof__fabs(n * f1 - O) - 0.5) / O;
  double e0 =
      mprof__fabs((double)s0 * f0 - B) / B + mprof__fmax(0.0, mprof__fabs(n * f0 - O) - 0.5) / O;
  *out_objs = (int64_t)n;
  *out_bytes = e0 <= e1 ? s0 : s1;
}

/* Copies /proc/self/maps to the output. */
static void put_maps(out_t* o) {
  int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return; /* jeprof then symbolizes nothing, but the counts stand */
  for (;;) {
    if (o->len == OUT_SIZE) flush(o);
    if (o->err != 0) break;
    ssize_t r = read(fd, o->buf + o->len, OUT_SIZE - o->len);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    o->len += (size_t)r;
  }
  close(fd);
}

int mprof__jeprof_write_heap(int fd, const mprof_heap_profile_t* prof) {
  if (prof == NULL || (prof->recs == NULL && prof->nrecs > 0)) return EINVAL;
  for (size_t i = 0; i < prof->nrecs; i++)
    if (prof->recs[i].pcs == NULL && prof->recs[i].npcs > 0) return EINVAL;
  int saved_errno = errno;
  out_t o = {fd, 0, mprof__meta_alloc(OUT_SIZE), 0};
  if (o.buf == NULL) return ENOMEM;
  uint64_t period = prof->period ? prof->period : 1;

  int64_t t[4] = {0, 0, 0, 0};
  for (size_t i = 0; i < prof->nrecs; i++) {
    const mprof_heap_rec_t* r = &prof->recs[i];
    int64_t v[4];
    mprof__jeprof_pair(r->inuse_objects, r->inuse_bytes, period, &v[0], &v[1]);
    mprof__jeprof_pair(r->alloc_objects, r->alloc_bytes, period, &v[2], &v[3]);
    for (int k = 0; k < 4; k++)
      t[k] += v[k];
  }
  room(&o);
  int n = snprintf(o.buf + o.len, OUT_SIZE - o.len, "heap_v2/%llu\n", (unsigned long long)period);
  if (n > 0) o.len += (size_t)n;
  put_counts(&o, t[0], t[1], t[2], t[3]);

  for (size_t i = 0; i < prof->nrecs && o.err == 0; i++) {
    const mprof_heap_rec_t* r = &prof->recs[i];
    put(&o, "@", 1);
    for (uint32_t k = 0; k < r->npcs; k++) {
      room(&o);
      uintptr_t pc = r->pcs[k] - (k == 0 ? 1 : 0);
      n = snprintf(o.buf + o.len, OUT_SIZE - o.len, " 0x%llx", (unsigned long long)pc);
      if (n > 0) o.len += (size_t)n;
    }
    put(&o, "\n", 1);
    int64_t v[4];
    mprof__jeprof_pair(r->inuse_objects, r->inuse_bytes, period, &v[0], &v[1]);
    mprof__jeprof_pair(r->alloc_objects, r->alloc_bytes, period, &v[2], &v[3]);
    put_counts(&o, v[0], v[1], v[2], v[3]);
  }
  static const char trailer[] = "\nMAPPED_LIBRARIES:\n";
  put(&o, trailer, sizeof trailer - 1);
  put_maps(&o);
  flush(&o);
  mprof__meta_free(o.buf, OUT_SIZE);
  errno = saved_errno;
  return o.err;
}
