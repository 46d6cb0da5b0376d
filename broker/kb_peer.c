// SPDX-License-Identifier: MIT
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kb_peer.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77 /* Linux 6.5; newer than this system's headers */
#endif

static bool unit_suffix(const char *s, size_t len)
{
	return (len > 8 && memcmp(s + len - 8, ".service", 8) == 0) ||
	       (len > 6 && memcmp(s + len - 6, ".scope", 6) == 0);
}

/* The last unit component of one cgroup path [p, end). */
static bool unit_of_path(const char *p, const char *end, char *unit,
			 size_t size)
{
	const char *c = p, *slash;
	bool found = false;
	size_t len;

	while (c < end) {
		slash = memchr(c, '/', (size_t)(end - c));
		len = (size_t)((slash ? slash : end) - c);
		if (unit_suffix(c, len) && len < size) {
			memcpy(unit, c, len);
			unit[len] = '\0';
			found = true;
		}
		if (slash == NULL)
			break;
		c = slash + 1;
	}
	return found;
}

bool kb_peer_unit_from_cgroup(const char *text, char *unit, size_t size)
{
	static const char *const prefixes[] = { "0::", ":name=systemd:" };
	const char *line, *nl, *path;
	size_t i;

	for (i = 0; i < 2; i++) {
		for (line = text; *line != '\0'; line = nl + 1) {
			nl = strchr(line, '\n');
			if (nl == NULL)
				nl = line + strlen(line);
			path = i == 0 ? (strncmp(line, prefixes[0], 3) == 0 ?
						 line + 3 :
						 NULL) :
					strstr(line, prefixes[1]);
			if (path != NULL && path < nl) {
				if (i == 1)
					path += strlen(prefixes[1]);
				if (unit_of_path(path, nl, unit, size))
					return true;
			}
			if (*nl == '\0')
				break;
		}
	}
	unit[0] = '\0';
	return false;
}

static void read_unit(struct kb_peer *peer, int pidfd)
{
	char path[64], text[4096];
	ssize_t n;
	int fd;

	peer->unit[0] = '\0';
	snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)peer->pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return;
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n <= 0)
		return;
	text[n] = '\0';
	/* Only trust what we read if the peer is still that process. */
	if (pidfd_send_signal(pidfd, 0, NULL, 0) != 0)
		return;
	kb_peer_unit_from_cgroup(text, peer->unit, sizeof(peer->unit));
}

int kb_peer_from_socket(int fd, struct kb_peer *peer)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	int pidfd = -1;

	memset(peer, 0, sizeof(*peer));
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
		return -1;
	peer->pid = cred.pid;
	peer->uid = cred.uid;
	peer->gid = cred.gid;
	len = sizeof(pidfd);
	/* SO_PEERPIDFD names the process that connected, not a pid. */
	if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) != 0)
		pidfd = cred.pid > 0 ? pidfd_open(cred.pid, 0) : -1;
	if (pidfd >= 0) {
		read_unit(peer, pidfd);
		close(pidfd);
	}
	return 0;
}
