/* SPDX-License-Identifier: MIT */
/*
 * Where the tools write results that may be secrets (an unwrapped DEK, an
 * identity token): standard output, or a file created 0600 that is never
 * reached through a symlink and never replaces an existing file, unless
 * forced; then the result goes to a new 0600 file beside it, renamed over
 * it once written and synced. Nothing is reported written before fsync.
 */
#ifndef KB_OUTPUT_H
#define KB_OUTPUT_H

#include <stdbool.h>
#include <stddef.h>

struct kb_output {
	int fd;
	const char *path; /* NULL: standard output */
	char *tmp; /* with force: the file renamed over path at commit */
	bool created; /* path (or tmp) was made here: removed on abort */
};

/* path NULL or "-" means standard output. Returns 0 or -1 with err. */
int kb_output_open(struct kb_output *o, const char *path, bool force, char *err,
		   size_t errlen);
int kb_output_write(struct kb_output *o, const void *p, size_t n, char *err,
		    size_t errlen);
/*
 * Syncs, closes and (with force) renames into place. 0, or -1 with err;
 * then call kb_output_abort, which removes only what open made and is
 * still not in place.
 */
int kb_output_commit(struct kb_output *o, char *err, size_t errlen);
/* Closes and removes what open made; after a failure; idempotent. */
void kb_output_abort(struct kb_output *o);

/*
 * All of the above for one buffer: writes p[0..n) to path (as
 * kb_output_open takes it) and commits it, or leaves nothing behind.
 * 0, or -1 with err.
 */
int kb_output_save(const char *path, bool force, const void *p, size_t n,
		   char *err, size_t errlen);

#endif
