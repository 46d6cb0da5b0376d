/* SPDX-License-Identifier: MIT */
/*
 * The broker's listening socket, owned by one broker at a time. A lock
 * file beside the socket (PATH.lock, held for the broker's life, with its
 * pid in it) keeps a second broker from taking over a live socket; a
 * socket that still answers a connect is never replaced either, only a
 * stale one. Its directory may be writable by others only with the
 * sticky bit. On exit the path is unlinked only if it is still the
 * socket this broker made (same device and inode).
 */
#ifndef KB_LISTEN_H
#define KB_LISTEN_H

#include <stddef.h>
#include <sys/types.h>

struct kb_listener {
	int fd; /* -1 when closed */
	int lock_fd;
	char path[108];
	dev_t dev;
	ino_t ino;
};

/*
 * Whether the directory of path can hold the socket: it exists, this
 * process may create entries in it, and others may write there only with
 * the sticky bit. 0, or -1 with a message naming the directory. Nothing
 * to check when systemd passes the socket (kb_listener_adopt): the
 * broker makes nothing there then, and under its unit it may not.
 */
int kb_listener_check_dir(const char *path, char *err, size_t errlen);

/*
 * Takes the lock, replaces a stale socket and listens on path with mode.
 * Returns 0, or -1 with a message in err (e.g. another broker's pid).
 */
int kb_listener_open(struct kb_listener *l, const char *path, unsigned int mode,
		     char *err, size_t errlen);

/*
 * Takes the listening socket systemd passed (socket activation), if it
 * passed any: 1 then, 0 if it passed none, -1 with err if it passed
 * something else than one listening Unix stream socket bound to path.
 * Such a socket is systemd's: no lock file, and it is never removed.
 */
int kb_listener_adopt(struct kb_listener *l, const char *path, char *err,
		      size_t errlen);

/* Stops listening and removes the socket if it is still ours. */
void kb_listener_close(struct kb_listener *l);

/* Releases the lock; after kb_listener_close. */
void kb_listener_uninit(struct kb_listener *l);

#endif
