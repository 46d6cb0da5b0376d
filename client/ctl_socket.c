// SPDX-License-Identifier: MIT
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctl_socket.h"

/*
 * Whether the socket can be trusted to be the broker's: its directory is
 * not writable by group or others and is owned by root or the listener,
 * and the socket is the listener's.
 */
static int check_socket_owner(const char *path, uid_t peer, char *err,
			      size_t errlen)
{
	char *copy = strdup(path);
	struct stat d, s;
	int r = -1;

	if (copy == NULL || lstat(dirname(copy), &d) != 0 ||
	    lstat(path, &s) != 0)
		snprintf(err, errlen, "cannot stat it: %s", strerror(errno));
	else if (!S_ISDIR(d.st_mode) || (d.st_mode & (S_IWGRP | S_IWOTH)))
		snprintf(err, errlen,
			 "its directory is writable by group or others "
			 "(mode %04o)",
			 (unsigned int)(d.st_mode & 07777));
	else if (d.st_uid != 0 && d.st_uid != peer)
		snprintf(err, errlen,
			 "its directory is owned by uid %u, not by root or "
			 "the listener (uid %u)",
			 (unsigned int)d.st_uid, (unsigned int)peer);
	else if (!S_ISSOCK(s.st_mode) || s.st_uid != peer)
		snprintf(err, errlen,
			 "it is not a socket owned by its listener (uid %u)",
			 (unsigned int)peer);
	else
		r = 0;
	free(copy);
	return r;
}

int ctl_connect(const char *path, int *fd, struct ucred *cred, char *why,
		size_t whylen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	socklen_t len = sizeof(*cred);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	*fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (*fd < 0 || connect(*fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    getsockopt(*fd, SOL_SOCKET, SO_PEERCRED, cred, &len) != 0) {
		snprintf(why, whylen, "%s", strerror(errno));
		goto out_close;
	}
	if (check_socket_owner(path, cred->uid, why, whylen) == 0)
		return 0;
out_close:
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
	return -1;
}

int ctl_request(int fd, const char *line, char *buf, size_t size, int timeout_s,
		char *why, size_t whylen)
{
	struct timeval tv = { .tv_sec = timeout_s };
	size_t len = 0, n = strlen(line);
	ssize_t got;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (send(fd, line, n, MSG_NOSIGNAL) != (ssize_t)n ||
	    send(fd, "\n", 1, MSG_NOSIGNAL) != 1) {
		snprintf(why, whylen, "sending: %s", strerror(errno));
		return -1;
	}
	while (len + 1 < size && memchr(buf, '\n', len) == NULL) {
		got = recv(fd, buf + len, size - 1 - len, 0);
		if (got <= 0) {
			snprintf(why, whylen, "no reply (%s)",
				 got == 0 ? "connection closed" :
					    strerror(errno));
			return -1;
		}
		len += (size_t)got;
	}
	buf[len] = '\0';
	if (memchr(buf, '\n', len) == NULL) {
		snprintf(why, whylen, "a reply longer than %zu bytes",
			 size - 1);
		return -1;
	}
	return 0;
}
