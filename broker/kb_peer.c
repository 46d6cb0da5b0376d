// SPDX-License-Identifier: MIT
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-login.h>
#include <unistd.h>

#include "kb_peer.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77 /* Linux 6.5; newer than this system's headers */
#endif

/* Copies a libsystemd string into dst and frees it; "" if it is too long. */
static void take_unit(char *dst, size_t size, char *src)
{
	dst[0] = '\0';
	if (src != NULL && strlen(src) < size)
		memcpy(dst, src, strlen(src) + 1);
	free(src);
}

/* True while the process behind pidfd has not exited (no permission needed). */
static bool alive(int pidfd)
{
	struct pollfd p = { .fd = pidfd, .events = POLLIN };

	return poll(&p, 1, 0) == 0;
}

static void read_units(struct kb_peer *peer, int pidfd)
{
	char *unit = NULL, *user_unit = NULL;
	uid_t owner;

	if (sd_pid_get_unit(peer->pid, &unit) >= 0)
		take_unit(peer->unit, sizeof(peer->unit), unit);
	/* A user unit counts only under the peer's own user manager. */
	if (sd_pid_get_user_unit(peer->pid, &user_unit) >= 0 &&
	    sd_pid_get_owner_uid(peer->pid, &owner) >= 0 && owner == peer->uid)
		take_unit(peer->user_unit, sizeof(peer->user_unit), user_unit);
	else
		free(user_unit);
	/*
	 * The lookups went by pid number; they named the connecting process
	 * only if it has not exited since, so its pid could not be reused.
	 */
	if (!alive(pidfd)) {
		peer->unit[0] = '\0';
		peer->user_unit[0] = '\0';
	}
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
	/* No pidfd of the connector itself, no units: never a pid alone. */
	if (cred.pid <= 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) != 0)
		return 0;
	read_units(peer, pidfd);
	close(pidfd);
	return 0;
}

static bool pidfd_supported;
static pthread_once_t pidfd_probe_once = PTHREAD_ONCE_INIT;

static void probe_pidfd(void)
{
	socklen_t len = sizeof(int);
	int sv[2], pidfd;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		return;
	if (getsockopt(sv[0], SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) == 0) {
		pidfd_supported = true;
		close(pidfd);
	}
	close(sv[0]);
	close(sv[1]);
}

bool kb_peer_pidfd_supported(void)
{
	pthread_once(&pidfd_probe_once, probe_pidfd);
	return pidfd_supported;
}

int kb_peer_check_bindings(const struct kb_config *cfg, char *err,
			   size_t errlen)
{
	const struct kb_identity_cfg *id;
	size_t i;

	if (kb_peer_pidfd_supported())
		return 0;
	for (i = 0; i < cfg->n_identities; i++) {
		id = &cfg->identities[i];
		if (id->bind.n_units == 0 && id->bind.n_user_units == 0)
			continue;
		snprintf(err, errlen,
			 "%s:%d: identity '%s' is bound to systemd units, but "
			 "this kernel cannot name a connecting process "
			 "(SO_PEERPIDFD, Linux 6.5 or later): bind it by uids "
			 "instead",
			 cfg->path, id->line, id->name);
		return -1;
	}
	return 0;
}

static bool in_ids(const unsigned int *v, size_t n, unsigned int x)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (v[i] == x)
			return true;
	return false;
}

/* An empty unit (none, or not proven) matches no list. */
static bool in_units(char *const *v, size_t n, const char *unit)
{
	size_t i;

	for (i = 0; unit[0] != '\0' && i < n; i++)
		if (strcmp(v[i], unit) == 0)
			return true;
	return false;
}

bool kb_peer_bound(const struct kb_binding *b, const struct kb_peer *peer)
{
	return (b->n_uids == 0 || in_ids(b->uids, b->n_uids, peer->uid)) &&
	       (b->n_gids == 0 || in_ids(b->gids, b->n_gids, peer->gid)) &&
	       (b->n_units == 0 ||
		in_units(b->units, b->n_units, peer->unit)) &&
	       (b->n_user_units == 0 ||
		in_units(b->user_units, b->n_user_units, peer->user_unit));
}
