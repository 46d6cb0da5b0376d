/* SPDX-License-Identifier: MIT */
/*
 * Who is on the other end of a connection: uid, gid and pid from
 * SO_PEERCRED, and the systemd units of that process as libsystemd names
 * them: its system unit (sd_pid_get_unit; a process under a user manager
 * has "user@UID.service" here, whatever its own unit is called) and, for
 * a process under its own user's manager, its user unit
 * (sd_pid_get_user_unit).
 *
 * Units are read only through a pidfd naming the connecting process
 * itself (SO_PEERPIDFD, Linux 6.5+), and only kept if that process has
 * not exited once they were read, so a recycled pid never lends its unit.
 * A pid number alone is never trusted: without SO_PEERPIDFD a peer has no
 * units, and unit bindings are refused (kb_peer_check_bindings).
 */
#ifndef KB_PEER_H
#define KB_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "kb_config.h"

#define KB_UNIT_MAX 256

struct kb_peer {
	pid_t pid;
	uid_t uid;
	gid_t gid;
	char unit[KB_UNIT_MAX]; /* system unit; "" if none or not proven */
	char user_unit[KB_UNIT_MAX]; /* unit under the uid's own manager */
};

/* The identity token a caller authenticated with, as the trail names it. */
struct kb_token_ids {
	char iss[256];
	char sub[256];
	char jti[256]; /* may be "" */
};

/* Who a request comes from: the peer and the identity it authenticated. */
struct kb_caller {
	struct kb_peer peer;
	uint64_t conn; /* the connection, numbered from 1 at each start */
	char identity[65]; /* "" before authenticate */
	int64_t expires; /* Unix seconds; the identity holds until then */
	struct kb_token_ids token; /* "" before authenticate */
};

/* Fills peer from a connected Unix socket. Returns 0 or -1. */
int kb_peer_from_socket(int fd, struct kb_peer *peer);

/* True if this kernel names a socket's peer by pidfd (probed once). */
bool kb_peer_pidfd_supported(void);

/*
 * Refuses unit bindings (units, user_units) where the kernel cannot name
 * the connecting process: returns -1 with a message naming the identity,
 * its config file and line. 0 if cfg can be served here.
 */
int kb_peer_check_bindings(const struct kb_config *cfg, char *err,
			   size_t errlen);

/*
 * True if peer matches every list b has: uids, gids, system units, and
 * user units (which the config only accepts together with uids).
 */
bool kb_peer_bound(const struct kb_binding *b, const struct kb_peer *peer);

#endif
