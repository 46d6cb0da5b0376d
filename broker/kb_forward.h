/* SPDX-License-Identifier: MIT */
/*
 * Where audit records go besides the trail's files: journald, as native
 * entries with a fixed MESSAGE_ID and fields to filter on, or syslog
 * (LOG_AUTHPRIV), for pipelines that take them off the host. Best
 * effort: the files are the record of truth, and a journal that is not
 * there is said once and looked for again each minute.
 */
#ifndef KB_FORWARD_H
#define KB_FORWARD_H

#include <jansson.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "kb_config.h"

struct kb_forward {
	enum kb_audit_forward to;
	const char *origin, *dir; /* the trail's, for fields and messages */
	atomic_bool warned;
	_Atomic int64_t journal_checked_ms; /* look for journald after */
	atomic_bool journal_there;
};

/* origin and dir must outlive f. */
void kb_forward_init(struct kb_forward *f, enum kb_audit_forward to,
		     const char *origin, const char *dir);
void kb_forward_close(struct kb_forward *f);

/* Sends one record (its body, and its line[0..len) as written). */
void kb_forward_record(struct kb_forward *f, json_t *body, const char *line,
		       size_t len, uint64_t seq);

#endif
