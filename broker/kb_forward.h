/* SPDX-License-Identifier: MIT */
/*
 * Where audit records go besides the trail's files: journald, as native
 * entries (its datagram protocol) with a fixed MESSAGE_ID and fields to
 * filter on, or syslog (LOG_AUTHPRIV datagrams to /dev/log), for
 * pipelines that take them off the host. Never waits: a daemon that is
 * not there or not reading loses the entry (counted, said once); the
 * files are the record of truth.
 */
#ifndef KB_FORWARD_H
#define KB_FORWARD_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kb_config.h"

struct kb_forward {
	enum kb_audit_forward to;
	const char *origin, *dir; /* the trail's, for fields and messages */
	int fd; /* a non-blocking datagram socket */
	bool quiet; /* a tool's: losses are not said */
	atomic_bool warned;
	_Atomic int64_t look_after_ms; /* look for the daemon again then */
	atomic_bool there;
	atomic_ulong dropped; /* entries not sent */
};

/*
 * origin and dir must outlive f; quiet (a tool's) says nothing of
 * entries lost. Safe from many threads.
 */
void kb_forward_init(struct kb_forward *f, enum kb_audit_forward to,
		     const char *origin, const char *dir, bool quiet);
void kb_forward_close(struct kb_forward *f);

/* Sends one record (its body, and its line[0..len) as written). */
void kb_forward_record(struct kb_forward *f, json_t *body, const char *line,
		       size_t len, uint64_t seq);

#endif
