/* SPDX-License-Identifier: MIT */
/*
 * The broker's own user (the config's `user`). Started as root, the
 * broker opens what only root may open (the socket, the token, the PIN)
 * and then becomes that user for good: its uid, its gid and groups, no
 * capabilities (bounding and ambient sets emptied too), no new privileges
 * through exec, not dumpable. Each step is checked after it is taken: a
 * broker that could not drop everything does not go on.
 *
 * Threads: each call is for start-up, before any thread starts (the
 * bounding set and no_new_privs are per thread; the access check forks).
 */
#ifndef KB_USER_H
#define KB_USER_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Whether the broker can run as user from where it stands: the user
 * exists and is not root, and either the process is root (it will drop)
 * or it already runs as that user. NULL user: true while not root; as
 * root, true with *warn set to say that it keeps root's privileges.
 * 0, or -1 with a message naming the user in err.
 */
int kb_user_check(const char *user, const char **warn, char *err,
		  size_t errlen);

/*
 * Becomes user if the process is root (refused unless it has one thread:
 * the others would keep root's capabilities). Already user: keeps no
 * capability (those the manager left go), no new privileges, not
 * dumpable. Nothing if user is NULL. 0, or -1 with what failed in err:
 * the caller must exit.
 */
int kb_user_drop(const char *user, char *err, size_t errlen);

/*
 * For a process that is not root, whoever it runs as: no capability
 * (those the manager left go; nothing is called when there are none),
 * no ambient ones, no new privileges, not dumpable. 0, or -1 with err.
 */
int kb_user_shed(char *err, size_t errlen);

/* A path the broker's user must be able to read, or write in. */
struct kb_user_access {
	const char *path;
	bool write; /* a directory it makes files in (or, missing, makes) */
};

/*
 * For a start as root with user set: whether that user can use each of
 * want[0..n) (tried in a child that became the user), so that a start
 * that would fail once root is given up is refused before. Nothing to
 * check otherwise. 0, or -1 with the first it cannot use in err.
 */
int kb_user_check_access(const char *user, const struct kb_user_access *want,
			 size_t n, char *err, size_t errlen);

#endif
