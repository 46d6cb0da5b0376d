/* SPDX-License-Identifier: MIT */
/*
 * Request handling: one request line in, one response line out. Runs on a
 * worker thread with that worker's token session. Every key operation is
 * checked against (identity, key, permission) under the policy in force.
 */
#ifndef KB_OPS_H
#define KB_OPS_H

#include <stdbool.h>
#include <stddef.h>

#include "kb_audit.h"
#include "kb_keystore.h"
#include "kb_lograte.h"
#include "kb_peer.h"
#include "kb_policy.h"
#include "kb_proto.h"
#include "kb_rate.h"

/*
 * The records of refusals without an identity (garbage, no authenticate,
 * bad tokens), per uid: a burst, then a trickle; the next record let
 * through says how many were held back (heldBack). Anyone can send such
 * lines: they must not fill the trail's disk.
 */
#define KB_AUDITRATE_BURST 100
#define KB_AUDITRATE_PER_S 10

struct kb_ops {
	struct kb_keystore *ks;
	struct kb_audit *audit; /* the trail; NULL: none (tests) */
	struct kb_policy_holder *policy;
	struct kb_rate *rate;
	struct kb_lograte *lograte; /* failed requests, per uid */
	/* Records of refusals without an identity, per uid (NULL: all). */
	struct kb_lograte *auditrate;
	const char *instance; /* fixed for the broker's life */
	bool allow_rsa1_5;
};

/* What a handler of the op table works with, for one request. */
struct kb_call {
	const struct kb_ops *ops;
	const struct kb_policy *pol; /* in force for this request */
	struct kb_keyworker *w; /* the worker's token session */
	struct kb_caller *caller;
	struct kb_request *req;
	/* An op on a key: its status and the version it used. */
	int status; /* KB_STATUS_OK or KB_ERR_* */
	struct kb_key_info info;
	const char *note; /* said when it succeeds (debug), or "" */
	/* For the trail: what allowed it, or the permission it lacked. */
	char grant[2 * (KB_IDENTITY_MAX + 128 + 8)];
	const char *missing;
	char minted_jti[33]; /* getToken: the id of the token it made */
};

/* The op table: every op of protocol v1, offered or not. */
const struct kb_op_table *kb_ops_table(void);

/*
 * A reply that stands only if its request's record, staged in a batch
 * (kb_audit.h), is written: otherwise the request is refused, and
 * kb_ops_withheld gives the reply to send instead.
 */
struct kb_pending {
	bool staged;
	size_t record; /* its index in the batch */
	json_t *id; /* the request's id (a reference) */
	const char *opname;
	bool changes; /* the op changed something even so */
};

/*
 * Handles line[0..len) for caller and returns the response line
 * (malloc'ed; it may carry a DEK, so the caller frees it with
 * kb_wipe_free) and its code (KB_OK or the error's), or NULL when out of
 * memory. A successful authenticate updates caller. The record of the
 * request is written before the call returns; or, with a batch, staged
 * there, and then *pending (which must be clear) says whether the reply
 * waits for it.
 */
char *kb_ops_handle(const struct kb_ops *ops, struct kb_keyworker *w,
		    struct kb_caller *caller, const char *line, size_t len,
		    struct kb_audit_batch *batch, struct kb_pending *pending,
		    size_t *resplen, enum kb_code *code);

/* The AuditUnavailable reply of a request whose record was not written. */
char *kb_ops_withheld(const struct kb_pending *p, size_t *len);
void kb_pending_clear(struct kb_pending *p);

#endif
