/* Dump files: where a profile is written, and how it gets there without being turned against the
 * user who runs the program (see docs/RELIABILITY.md, *Threat model*).
 *
 * A profile is written to a file nobody else can reach until it is complete: an unnamed
 * O_TMPFILE in the target's directory (or, where the file system has none, a new file with an
 * unpredictable name, created with O_CREAT|O_EXCL|O_NOFOLLOW), mode 0600, then given its name
 * in one step: a link where nothing is, a rename over an existing regular file. Nothing
 * pre-existing is ever opened for writing except where an explicit path asks for it:
 *
 *   automatic name (prof_prefix...)  nothing there: created; a regular file: replaced; anything
 *                                    else (a symlink, a pipe, a device, a directory): EEXIST,
 *                                    nothing written, the entry is left alone
 *   explicit path (prof.dump)        nothing there: created; a regular file: replaced; a symlink
 *                                    to a regular file: that file is replaced (the link stays);
 *                                    a pipe, a terminal or another device, or a symlink to one:
 *                                    written in place; a directory: EISDIR. In a directory that
 *                                    others may write, a link, pipe or device owned by another
 *                                    user (not the directory's owner) is refused: EACCES
 *
 * No open blocks: pipes are opened with O_NONBLOCK (a pipe nobody reads is ENXIO), then set back
 * to blocking for the writes. Temporary names have a fixed length, so every final name up to
 * NAME_MAX bytes works. Nothing here allocates or uses stdio. */
#ifndef MPROF_DUMPFILE_H
#define MPROF_DUMPFILE_H

#include <limits.h>
#include <signal.h>
#include <stdbool.h>

typedef struct mprof_dumpfile_s {
  int fd;                  /* the profile is written here */
  int dirfd;               /* the final name's directory (O_PATH); -1 when written in place */
  char name[NAME_MAX + 1]; /* final name in dirfd */
  char tmp[32];            /* named temporary in dirfd; "" for an O_TMPFILE or in place */
  bool replace;            /* a regular file at name is replaced; else name must stay free */
} mprof_dumpfile_t;

/* Opens the target of a dump to `path`: an automatic name (automatic = true) or a path the
 * program asked for. Returns 0 or a positive errno; on error nothing was created. */
int mprof__dumpfile_open(mprof_dumpfile_t* f, const char* path, bool automatic);

/* Gives the complete file its name (nothing to do in place) and closes it. Returns 0 or a
 * positive errno; on error no temporary file is left and an older file at the name is intact. */
int mprof__dumpfile_commit(mprof_dumpfile_t* f);

/* Closes and removes whatever mprof__dumpfile_open created. */
void mprof__dumpfile_abort(mprof_dumpfile_t* f);

/* Tests: never use O_TMPFILE, so that the named-temporary path (file systems without O_TMPFILE,
 * no /proc) is exercised where O_TMPFILE works. */
extern bool mprof__dumpfile_force_named;

/* Writes to a pipe whose reader has gone raise SIGPIPE, which kills a program that did not ask
 * for it. Around such writes, SIGPIPE is blocked on the calling thread; afterwards a SIGPIPE the
 * writes raised (write returned EPIPE) is taken back with sigtimedwait, and the thread's mask is
 * restored. No handler is installed. */
typedef struct mprof_sigpipe_guard_s {
  sigset_t old;     /* the thread's mask before */
  bool was_pending; /* a SIGPIPE was already pending before: it is not ours to take */
} mprof_sigpipe_guard_t;

void mprof__sigpipe_block(mprof_sigpipe_guard_t* g);
void mprof__sigpipe_restore(mprof_sigpipe_guard_t* g, bool got_epipe);

#endif
