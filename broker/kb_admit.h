/* SPDX-License-Identifier: MIT */
/*
 * Who may open one more connection: the connection limits that keep one
 * local user from taking the broker from the others (as dbus-daemon's
 * max_connections_per_user and max_incomplete_connections, after
 * CVE-2014-3639, and systemd's varlink server do). Counts connections in
 * all and per uid, and per uid those that have not authenticated yet.
 * Thread-safe: connections are accepted by the event loop and closed by
 * the threads that serve them.
 */
#ifndef KB_ADMIT_H
#define KB_ADMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct kb_admit_limits {
	int total; /* connections in all */
	int per_uid; /* connections of one uid */
	int unauth_per_uid; /* of those, not yet authenticated */
};

struct kb_admit;

struct kb_admit *kb_admit_new(const struct kb_admit_limits *limits);
void kb_admit_free(struct kb_admit *a);

/*
 * Takes one (unauthenticated) connection of uid, or returns false with
 * the refusal to send in why, naming the limit. Refusing one uid never
 * refuses another (but for the total).
 */
bool kb_admit_take(struct kb_admit *a, uid_t uid, char *why, size_t whylen);
/* A connection of uid authenticated (once per connection). */
void kb_admit_authenticated(struct kb_admit *a, uid_t uid);
/* A connection of uid closed; unauth if it never authenticated. */
void kb_admit_release(struct kb_admit *a, uid_t uid, bool unauth);
int kb_admit_total(struct kb_admit *a);

#endif
