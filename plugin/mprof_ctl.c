/* The control interface: mprof_ctl, with jemalloc's mallctl contract (see include/mprof.h).
 *
 * Names live in one static table of {name, handler}; `opt.*` names are generated from the
 * option descriptors of mprof_conf.h, so every option is readable under its own name without
 * being listed twice. Handlers validate every size, direction and value before they act, so a
 * call that fails with EINVAL or EPERM changes nothing, and return 0 or a positive errno.
 * Nothing here allocates. */
#include "mprof.h"

#include "mprof_conf.h"
#include "mprof_core.h"
#include "mprof_mutex.h"
#include "mprof_threads.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

typedef int (*ctl_handler_t)(void* oldp, size_t* oldlenp, void* newp, size_t newlen);

/* Copies the value out; EINVAL (after copying what fits) if the caller's size differs. */
static int read_out(void* oldp, size_t* oldlenp, const void* v, size_t size) {
  if (oldp == NULL || oldlenp == NULL) return 0;
  if (*oldlenp != size) {
    memcpy(oldp, v, *oldlenp < size ? *oldlenp : size);
    return EINVAL;
  }
  memcpy(oldp, v, size);
  return 0;
}

static bool wants_read(void* oldp, size_t* oldlenp) {
  return oldp != NULL && oldlenp != NULL;
}

#define READ_ONLY()                                                                                \
  do {                                                                                             \
    if (newp != NULL || newlen != 0) return EPERM;                                                 \
  } while (0)

static int ctl_version(void* oldp, size_t* oldlenp, void* newp, size_t newlen) {
  READ_ONLY();
  const char* v = MPROF_VERSION_STRING;
  return read_out(oldp, oldlenp, &v, sizeof v);
}

static int ctl_allocator(void* oldp, size_t* oldlenp, void* newp, size_t newlen) {
  READ_ONLY();
  const char* v = mprof__host_name();
  return read_out(oldp, oldlenp, &v, sizeof v);
}

static int ctl_epoch(void* oldp, size_t* oldlenp, void* newp, size_t newlen) {
  if (!mprof__opts.prof) return ENOENT;
  if (newp != NULL || newlen != 0) {
    if (newp == NULL || newlen != sizeof(uint64_t)) return EINVAL;
    if (wants_read(oldp, oldlenp) && *oldlenp != sizeof(uint64_t)) {
      uint64_t e = mprof__epoch_read(); /* copy what fits; the write is not done */
      return read_out(oldp, oldlenp, &e, sizeof e);
    }
    int err = mprof__epoch_advance();
    if (err != 0) return err;
  }
  uint64_t e = mprof__epoch_read();
  return read_out(oldp, oldlenp, &e, sizeof e);
}

static int dump_to(int (*fn)(const char*), void* oldp, size_t* oldlenp, void* newp, size_t newlen) {
  if (wants_read(oldp, oldlenp)) return EPERM;
  if (newp == NULL && newlen == 0) {
    int err = fn(NULL);
    return err == ENOMEM ? EAGAIN : err;
  }
  if (newp == NULL || newlen != sizeof(const char*)) return EINVAL;
  const char* path;
  memcpy(&path, newp, sizeof path);
  if (path != NULL && path[0] == '\0') return EINVAL;
  int err = fn(path);
  return err == ENOMEM ? EAGAIN : err; /* out of profiler memory: the mallctl code */
}

static int ctl_prof_dump(void* oldp, size_t* oldlenp, void* newp, size_t newlen) {
  if (!mprof__opts.prof) return ENOENT;
  return dump_to(mprof__dump, oldp, oldlenp, newp, newlen);
}

static int ctl_prof_peak_dump(void* oldp, size_t* oldlenp, void* newp, size_t newlen) {
  if (!mprof__opts.prof || !mprof__opts.prof_peak) return ENOENT;
  return dump_to(mprof__dump_peak, oldp, oldlenp, newp, newlen);
}

static int ctl_prof_mutex_dump(void* oldp, size_t* oldlenp, void* newp, size_t newlen) {
  if (!mprof__opts.prof) return ENOENT;
  return dump_to(mprof__mutex_dump, oldp, oldlenp, newp, newlen);
}

static int ctl_prof_threads_dump(void* oldp, size_t* oldlenp, void* newp, size_t newlen) {
  if (!mprof__opts.prof) return ENOENT;
  return dump_to(mprof__threads_dump, oldp, oldlenp, newp, newlen);
}

static int ctl_prof_mutex_fraction(void* oldp, size_t* oldlenp, void* newp, size_t newlen) {
  if (!mprof__opts.prof) return ENOENT;
  unsigned old = mprof__mutex_fraction();
  if (newp != NULL || newlen != 0) {
    if (newp == NULL || newlen != sizeof(unsigned)) return EINVAL;
    unsigned v;
    memcpy(&v, newp, sizeof v);
    if (v > INT32_MAX) return EINVAL;
    if (wants_read(oldp, oldlenp) && *oldlenp != sizeof(unsigned))
      return read_out(oldp, oldlenp, &old, sizeof old); /* EINVAL; the write is not done */
    mprof__mutex_set_fraction(v);
  }
  return read_out(oldp, oldlenp, &old, sizeof old);
}

/* A boolean control that reads `old` and, on a write of a valid value, calls set. Checks every
 * argument before acting: a wrong *oldlenp on a write changes nothing. */
static int bool_rw(void* oldp, size_t* oldlenp, void* newp, size_t newlen, bool old,
                   void (*set)(bool)) {
  if (newp != NULL || newlen != 0) {
    if (newp == NULL || newlen != sizeof(bool)) return EINVAL;
    unsigned char v;
    memcpy(&v, newp, 1);
    if (v > 1) return EINVAL;
    if (wants_read(oldp, oldlenp) && *oldlenp != sizeof(bool))
      return read_out(oldp, oldlenp, &old, sizeof old); /* EINVAL; the write is not done */
    set(v != 0);
  }
  return read_out(oldp, oldlenp, &old, sizeof old);
}

static int ctl_prof_mutex_app(void* oldp, size_t* oldlenp, void* newp, size_t newlen) {
  if (!mprof__opts.prof) return ENOENT;
  return bool_rw(oldp, oldlenp, newp, newlen, mprof__mutex_app(), mprof__mutex_set_app);
}

static int ctl_prof_active(void* oldp, size_t* oldlenp, void* newp, size_t newlen) {
  if (!mprof__opts.prof) return ENOENT;
  return bool_rw(oldp, oldlenp, newp, newlen, mprof__active_get(), mprof__active_set);
}

static int ctl_prof_lg_sample(void* oldp, size_t* oldlenp, void* newp, size_t newlen) {
  if (!mprof__opts.prof) return ENOENT;
  READ_ONLY();
  size_t v = mprof__opts.lg_prof_sample;
  return read_out(oldp, oldlenp, &v, sizeof v);
}

static int ctl_prof_interval(void* oldp, size_t* oldlenp, void* newp, size_t newlen) {
  if (!mprof__opts.prof) return ENOENT;
  READ_ONLY();
  uint64_t v = mprof__opts.lg_prof_interval < 0 ? 0 : (uint64_t)1 << mprof__opts.lg_prof_interval;
  return read_out(oldp, oldlenp, &v, sizeof v);
}

#define STAT_HANDLER(field)                                                                        \
  static int ctl_stats_##field(void* oldp, size_t* oldlenp, void* newp, size_t newlen) {           \
    READ_ONLY();                                                                                   \
    mprof_stats_t s;                                                                               \
    mprof__stats_read(&s);                                                                         \
    uint64_t v = s.field;                                                                          \
    return read_out(oldp, oldlenp, &v, sizeof v);                                                  \
  }
STAT_HANDLER(samples)
STAT_HANDLER(frees)
STAT_HANDLER(dropped_samples)
STAT_HANDLER(buckets)
STAT_HANDLER(sampled_blocks)
STAT_HANDLER(sampled_bytes_in_use)
STAT_HANDLER(metadata_bytes)
STAT_HANDLER(dumps)
STAT_HANDLER(dump_errors)
STAT_HANDLER(contentions)
STAT_HANDLER(contentions_lost)
STAT_HANDLER(contention_buckets)

#define RECON_HANDLER(name, field)                                                                 \
  static int ctl_stats_##name(void* oldp, size_t* oldlenp, void* newp, size_t newlen) {            \
    READ_ONLY();                                                                                   \
    mprof_recon_t r;                                                                               \
    mprof__recon_read(&r);                                                                         \
    uint64_t v = r.field;                                                                          \
    return read_out(oldp, oldlenp, &v, sizeof v);                                                  \
  }
RECON_HANDLER(estimated_bytes_in_use, estimated_inuse)
RECON_HANDLER(process_rss, process_rss)
RECON_HANDLER(allocator_committed, committed)
RECON_HANDLER(allocator_peak_committed, peak_committed)
RECON_HANDLER(allocator_rss, rss)
RECON_HANDLER(allocator_peak_rss, peak_rss)
RECON_HANDLER(allocator_allocated, allocated)
RECON_HANDLER(allocator_active, active)
RECON_HANDLER(allocator_resident, resident)

/* The costs of the last thread snapshot (mprof_threads.h). */
static int ctl_stats_threads_pause(void* oldp, size_t* oldlenp, void* newp, size_t newlen) {
  READ_ONLY();
  uint64_t pause, total;
  mprof__threads_last_costs(&pause, &total);
  return read_out(oldp, oldlenp, &pause, sizeof pause);
}

static int ctl_stats_threads_time(void* oldp, size_t* oldlenp, void* newp, size_t newlen) {
  READ_ONLY();
  uint64_t pause, total;
  mprof__threads_last_costs(&pause, &total);
  return read_out(oldp, oldlenp, &total, sizeof total);
}

typedef struct ctl_node_s {
  const char* name;
  ctl_handler_t handler;
} ctl_node_t;

static const ctl_node_t nodes[] = {
    {"version", ctl_version},
    {"allocator", ctl_allocator},
    {"epoch", ctl_epoch},
    {"prof.dump", ctl_prof_dump},
    {"prof.peak.dump", ctl_prof_peak_dump},
    {"prof.active", ctl_prof_active},
    {"prof.lg_sample", ctl_prof_lg_sample},
    {"prof.interval", ctl_prof_interval},
    {"prof.mutex.dump", ctl_prof_mutex_dump},
    {"prof.threads.dump", ctl_prof_threads_dump},
    {"prof.mutex_fraction", ctl_prof_mutex_fraction},
    {"prof.mutex_app", ctl_prof_mutex_app},
    {"stats.samples", ctl_stats_samples},
    {"stats.frees", ctl_stats_frees},
    {"stats.dropped_samples", ctl_stats_dropped_samples},
    {"stats.buckets", ctl_stats_buckets},
    {"stats.sampled_blocks", ctl_stats_sampled_blocks},
    {"stats.sampled_bytes_in_use", ctl_stats_sampled_bytes_in_use},
    {"stats.metadata_bytes", ctl_stats_metadata_bytes},
    {"stats.dumps", ctl_stats_dumps},
    {"stats.dump_errors", ctl_stats_dump_errors},
    {"stats.estimated_bytes_in_use", ctl_stats_estimated_bytes_in_use},
    {"stats.process_rss", ctl_stats_process_rss},
    {"stats.allocator.committed", ctl_stats_allocator_committed},
    {"stats.allocator.peak_committed", ctl_stats_allocator_peak_committed},
    {"stats.allocator.rss", ctl_stats_allocator_rss},
    {"stats.allocator.peak_rss", ctl_stats_allocator_peak_rss},
    {"stats.allocator.allocated", ctl_stats_allocator_allocated},
    {"stats.allocator.active", ctl_stats_allocator_active},
    {"stats.allocator.resident", ctl_stats_allocator_resident},
    {"stats.contentions", ctl_stats_contentions},
    {"stats.contentions_lost", ctl_stats_contentions_lost},
    {"stats.contention_buckets", ctl_stats_contention_buckets},
    {"stats.threads.longest_pause_ns", ctl_stats_threads_pause},
    {"stats.threads.snapshot_ns", ctl_stats_threads_time},
};

static int ctl_opt(const mprof_opt_desc_t* d, void* oldp, size_t* oldlenp, void* newp,
                   size_t newlen) {
  READ_ONLY();
  const char* base = (const char*)&mprof__opts + d->offset;
  switch (d->type) {
  case MPROF_OPT_BOOL:
    return read_out(oldp, oldlenp, base, sizeof(bool));
  case MPROF_OPT_SIZE:
    return read_out(oldp, oldlenp, base, sizeof(size_t));
  case MPROF_OPT_SSIZE:
    return read_out(oldp, oldlenp, base, sizeof(ssize_t));
  case MPROF_OPT_UNSIGNED:
    return read_out(oldp, oldlenp, base, sizeof(unsigned));
  case MPROF_OPT_STRING: {
    const char* s = base;
    return read_out(oldp, oldlenp, &s, sizeof s);
  }
  }
  return EFAULT;
}

MPROF_EXPORT int mprof_ctl(const char* name, void* oldp, size_t* oldlenp, void* newp,
                           size_t newlen) {
  if (name == NULL) return ENOENT;
  if (oldp != NULL && oldlenp == NULL) return EINVAL;
  if (strncmp(name, "opt.", 4) == 0) {
    const mprof_opt_desc_t* d = mprof__opt_find(name + 4, strlen(name + 4));
    return d != NULL ? ctl_opt(d, oldp, oldlenp, newp, newlen) : ENOENT;
  }
  for (size_t i = 0; i < sizeof nodes / sizeof nodes[0]; i++)
    if (strcmp(nodes[i].name, name) == 0) return nodes[i].handler(oldp, oldlenp, newp, newlen);
  return ENOENT;
}
