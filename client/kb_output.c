// SPDX-License-Identifier: MIT
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kb_output.h"

int kb_output_open(struct kb_output *o, const char *path, bool force, char *err,
		   size_t errlen)
{
	size_t n;

	memset(o, 0, sizeof(*o));
	o->fd = STDOUT_FILENO;
	if (path == NULL || strcmp(path, "-") == 0)
		return 0;
	o->fd = -1;
	o->path = path;
	if (!force) {
		o->fd = open(path,
			     O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
				     O_CLOEXEC,
			     0600);
		if (o->fd >= 0) {
			o->created = true;
			return 0;
		}
		snprintf(err, errlen, "%s: %s", path,
			 errno == EEXIST ? "exists (or is a symlink); --force "
					   "replaces it" :
					   strerror(errno));
		return -1;
	}
	n = strlen(path) + sizeof(".XXXXXX");
	if ((o->tmp = malloc(n)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	snprintf(o->tmp, n, "%s.XXXXXX", path);
	/* mkostemp: O_EXCL and mode 0600. */
	if ((o->fd = mkostemp(o->tmp, O_CLOEXEC)) < 0) {
		snprintf(err, errlen, "%s: cannot create a file beside it: %s",
			 path, strerror(errno));
		free(o->tmp);
		o->tmp = NULL;
		return -1;
	}
	o->created = true;
	return 0;
}

int kb_output_write(struct kb_output *o, const void *p, size_t n, char *err,
		    size_t errlen)
{
	const char *c = p;
	ssize_t w;

	while (n > 0) {
		w = write(o->fd, c, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			snprintf(err, errlen, "%s: %s",
				 o->path ? o->path : "standard output",
				 w < 0 ? strerror(errno) : "short write");
			return -1;
		}
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Makes the rename durable: fsync of the directory holding path. */
static int sync_dir(const char *path)
{
	char *copy = strdup(path);
	int fd, r = -1;

	if (copy == NULL)
		return -1;
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(copy);
	if (fd < 0)
		return -1;
	r = fsync(fd);
	close(fd);
	return r;
}

int kb_output_commit(struct kb_output *o, char *err, size_t errlen)
{
	const char *name = o->path ? o->path : "standard output";
	int fd = o->fd;

	if (o->path == NULL) {
		/* A pipe or terminal cannot be synced; a file can. */
		if (fsync(fd) != 0 && errno != EINVAL && errno != EROFS) {
			snprintf(err, errlen, "%s: %s", name, strerror(errno));
			return -1;
		}
		return 0;
	}
	o->fd = -1;
	if (fsync(fd) != 0 || close(fd) != 0) {
		snprintf(err, errlen, "%s: %s", name, strerror(errno));
		return -1; /* the caller's abort removes what open made */
	}
	if (o->tmp != NULL && rename(o->tmp, o->path) != 0) {
		snprintf(err, errlen, "%s: cannot replace it: %s", name,
			 strerror(errno));
		return -1;
	}
	/* In place now: nothing of it is to be removed any more. */
	o->created = false;
	free(o->tmp);
	o->tmp = NULL;
	if (sync_dir(o->path) != 0) {
		snprintf(err, errlen,
			 "%s: written, but its directory could not be synced "
			 "(%s): it may not survive a crash",
			 name, strerror(errno));
		return -1;
	}
	return 0;
}

void kb_output_abort(struct kb_output *o)
{
	if (o->path == NULL)
		return;
	if (o->fd >= 0)
		close(o->fd);
	o->fd = -1;
	/* Only what open made: with --force, never the file it replaces. */
	if (o->created)
		unlink(o->tmp != NULL ? o->tmp : o->path);
	o->created = false;
	free(o->tmp);
	o->tmp = NULL;
}

int kb_output_save(const char *path, bool force, const void *p, size_t n,
		   char *err, size_t errlen)
{
	struct kb_output o;

	if (kb_output_open(&o, path, force, err, errlen) != 0 ||
	    kb_output_write(&o, p, n, err, errlen) != 0 ||
	    kb_output_commit(&o, err, errlen) != 0) {
		kb_output_abort(&o);
		return -1;
	}
	return 0;
}
