/* SPDX-License-Identifier: MIT */
/*
 * Who is on the other end of a connection: uid, gid and pid from
 * SO_PEERCRED, and the systemd unit from the process's cgroup, read
 * race-free through a pidfd of the peer where the kernel offers one
 * (SO_PEERPIDFD): the unit is only trusted if that very process is still
 * alive after its cgroup was read, so its pid cannot have been reused.
 */
#ifndef KB_PEER_H
#define KB_PEER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define KB_UNIT_MAX 256

struct kb_peer {
	pid_t pid;
	uid_t uid;
	gid_t gid;
	char unit[KB_UNIT_MAX]; /* "" if none could be determined */
};

/* Who a request comes from: the peer and the identity it authenticated. */
struct kb_caller {
	struct kb_peer peer;
	char identity[65]; /* "" before authenticate */
	int64_t expires; /* Unix seconds; the identity holds until then */
};

/* Fills peer from a connected Unix socket. Returns 0 or -1. */
int kb_peer_from_socket(int fd, struct kb_peer *peer);

/*
 * The unit named by /proc/PID/cgroup text: the last path component ending
 * in ".service" or ".scope", preferring the unified hierarchy, then the
 * name=systemd one. Returns false if there is none.
 */
bool kb_peer_unit_from_cgroup(const char *text, char *unit, size_t size);

#endif
