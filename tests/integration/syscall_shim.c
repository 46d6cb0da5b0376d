// SPDX-License-Identifier: MIT
/*
 * Test shim, loaded with LD_PRELOAD into keybrokerd, that makes system
 * calls fail the way hostile conditions do:
 *
 * getsockopt(SO_PEERPIDFD) as on kernels without it (ENOPROTOOPT, before
 * Linux 6.5) or for a peer already reaped (EINVAL on some later kernels):
 *   KB_SHIM_PEERPIDFD_ERRNO   ENOPROTOOPT or EINVAL
 *   KB_SHIM_PEERPIDFD_SCOPE   "all" (default), or "accepted": only sockets
 *                             bound to a path, i.e. accepted connections,
 *                             not the broker's own socketpair probe
 *
 * accept4 out of file descriptors (EMFILE), while a file exists:
 *   KB_SHIM_EMFILE_WHILE      path of that file
 *
 * write(2) to the audit trail's audit.jsonl failing with EIO (a disk
 * gone bad under the trail), while a file exists:
 *   KB_SHIM_EIO_AUDIT_WHILE   path of that file
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

typedef int (*getsockopt_fn)(int, int, int, void *, socklen_t *);
typedef int (*accept4_fn)(int, struct sockaddr *, socklen_t *, int);
typedef ssize_t (*write_fn)(int, const void *, size_t);

static bool has_path(int fd)
{
	struct sockaddr_un sa;
	socklen_t len = sizeof(sa);

	memset(&sa, 0, sizeof(sa));
	return getsockname(fd, (struct sockaddr *)&sa, &len) == 0 &&
	       sa.sun_family == AF_UNIX &&
	       len > offsetof(struct sockaddr_un, sun_path) &&
	       sa.sun_path[0] != '\0';
}

static int shim_errno(void)
{
	const char *e = getenv("KB_SHIM_PEERPIDFD_ERRNO");

	if (e != NULL && strcmp(e, "EINVAL") == 0)
		return EINVAL;
	return ENOPROTOOPT;
}

int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
	static getsockopt_fn real;
	const char *scope = getenv("KB_SHIM_PEERPIDFD_SCOPE");

	if (real == NULL)
		real = (getsockopt_fn)dlsym(RTLD_NEXT, "getsockopt");
	if (level == SOL_SOCKET && name == SO_PEERPIDFD &&
	    (scope == NULL || strcmp(scope, "accepted") != 0 || has_path(fd))) {
		errno = shim_errno();
		return -1;
	}
	return real(fd, level, name, val, len);
}

int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
	static accept4_fn real;
	const char *flag = getenv("KB_SHIM_EMFILE_WHILE");

	if (real == NULL)
		real = (accept4_fn)dlsym(RTLD_NEXT, "accept4");
	if (flag != NULL && access(flag, F_OK) == 0) {
		errno = EMFILE;
		return -1;
	}
	return real(fd, addr, len, flags);
}

/* Whether fd is open on a file named audit.jsonl. */
static bool is_trail(int fd)
{
	static const char name[] = "/audit.jsonl";
	char link[64], path[4096];
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	if ((n = readlink(link, path, sizeof(path) - 1)) <
	    (ssize_t)sizeof(name) - 1)
		return false;
	path[n] = '\0';
	return strcmp(path + n - (sizeof(name) - 1), name) == 0;
}

ssize_t write(int fd, const void *buf, size_t n)
{
	static write_fn real;
	const char *flag = getenv("KB_SHIM_EIO_AUDIT_WHILE");

	if (real == NULL)
		real = (write_fn)dlsym(RTLD_NEXT, "write");
	if (flag != NULL && access(flag, F_OK) == 0 && is_trail(fd)) {
		errno = EIO;
		return -1;
	}
	return real(fd, buf, n);
}
