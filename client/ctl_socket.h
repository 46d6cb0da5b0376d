/* SPDX-License-Identifier: MIT */
/*
 * keybrokerctl's connection to the running broker. The socket is trusted
 * to be the broker's only if its directory is not writable by group or
 * others and is owned by root or the listener, and the socket is the
 * listener's: otherwise anyone could have put a listener there, and a
 * request (or a signal, or an admin's identity token) would go where
 * they chose.
 */
#ifndef CTL_SOCKET_H
#define CTL_SOCKET_H

#include <stddef.h>
#include <sys/socket.h>

/*
 * Connects to the broker on path and checks that it is the broker's;
 * fd and its peer's credentials, or -1 with why.
 */
int ctl_connect(const char *path, int *fd, struct ucred *cred, char *why,
		size_t whylen);

/*
 * Sends line (one JSON object, without its newline) on fd and reads the
 * reply line into buf (size bytes, NUL-terminated), waiting at most
 * timeout_s for each. 0, or -1 with why.
 */
int ctl_request(int fd, const char *line, char *buf, size_t size, int timeout_s,
		char *why, size_t whylen);

#endif
