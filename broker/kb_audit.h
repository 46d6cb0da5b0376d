/* SPDX-License-Identifier: MIT */
/*
 * The audit trail's writer: one hash chain of JSON records in a
 * directory (docs/audit.md), appended by any number of threads and, under
 * a lock file, by other processes (keybrokerctl) too.
 *
 * A record is written (write(2) returned it whole) before kb_audit_append
 * returns, so a reply sent after it is never missing from the trail, even
 * if the broker is killed; the disk sees it at the next fdatasync, every
 * fsync_interval_ms, or before the append returns with 0.
 *
 * The broker's trail also has a thread that syncs, signs checkpoints with
 * the audit key in the token, rotates files, watches free space and
 * brings the trail back after it failed. Space is reserved ahead of the
 * records (fallocate), and when the reservation cannot be renewed the
 * trail is "unavailable" before a record is ever lost: kb_audit_available
 * turns false, the ops that must not run unrecorded are refused, and the
 * others are counted; the first record once it is back says how many.
 */
#ifndef KB_AUDIT_H
#define KB_AUDIT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "kb_config.h"
#include "kb_trail.h"

struct kb_audit;
struct kb_keystore;

/*
 * Opens (creating it 0700 if need be) cfg->directory and continues the
 * chain found there: in audit.jsonl, or the newest rotated file, or a new
 * chain. A torn last line (a crash mid-write) is cut off and said in the
 * log and the next record. instance names the writer in every record.
 * With ks, the trail is the broker's: a thread syncs, checkpoints
 * (signed by the audit key of ks) and rotates. Without, it only appends,
 * syncing each record (a tool). Returns NULL with err (naming the file)
 * if the trail cannot be continued: a last record that is not one.
 * A directory that cannot be written opens the trail unavailable.
 */
struct kb_audit *kb_audit_open(const struct kb_audit_cfg *cfg,
			       const char *instance, struct kb_keystore *ks,
			       char *err, size_t errlen);
/*
 * With ks: stops the thread, then signs the last record, a checkpoint of
 * reason "shutdown". Syncs and closes. 0; or -1 if the thread was still
 * in the token after 10 s: then nothing was freed, and the caller must
 * exit at once without touching the key store. NULL is a no-op.
 */
int kb_audit_close(struct kb_audit *a);

/* False while the trail cannot be written; NULL (no trail) is true. */
bool kb_audit_available(struct kb_audit *a);

/*
 * Appends the record body, a JSON object whose first member is "event"
 * (seq, time, origin, instance and prev are added around it), and
 * forwards it to journald or syslog. served says whether the request it
 * records was served: a record that cannot be written is counted as
 * served or refused. 0 once written; -1 if not (the trail is then
 * unavailable). NULL a is a no-op returning 0.
 */
int kb_audit_append(struct kb_audit *a, json_t *body, bool served);

/*
 * Records one thread stages and then writes together (kb_audit_commit):
 * a turn of pipelined requests costs the trail one lock, one lock of the
 * file and one write, not one of each per record. A record is in the
 * trail once its commit says so, and not before: the reply of a request
 * whose record is staged waits for the commit. The thread's own, reused.
 */
struct kb_audit_staged {
	json_t *body; /* a reference */
	char *text; /* its JSON text */
	size_t tlen;
	size_t off, llen; /* its line, among the lines of the commit */
	uint64_t seq;
	bool served; /* counted so if it cannot be written */
	bool written;
};

struct kb_audit_batch {
	struct kb_audit_staged *rec;
	size_t n, cap;
};

/*
 * Stages body (as kb_audit_append takes it) as the batch's next record,
 * index b->n - 1. -1 if memory is short: then nothing was staged.
 */
int kb_audit_stage(struct kb_audit_batch *b, json_t *body, bool served);
/*
 * Writes the staged records in order with one write and forwards them;
 * those that cannot be written are counted as kb_audit_append counts
 * them. Returns how many were not written; kb_audit_written says which.
 * The records stay staged until kb_audit_batch_clear. NULL a: a no-op
 * returning 0 (every record "written").
 */
size_t kb_audit_commit(struct kb_audit *a, struct kb_audit_batch *b);
bool kb_audit_written(const struct kb_audit_batch *b, size_t i);
void kb_audit_batch_clear(struct kb_audit_batch *b);
void kb_audit_batch_free(struct kb_audit_batch *b);

/*
 * The keyed hash that links uses of one wrapped value (docs/audit.md,
 * valueHmac): HMAC-SHA-256 under a key the broker derives at start from
 * the audit HMAC secret in the token (which never leaves it) and keeps
 * in locked memory, so that no request waits on the token for it. -1 if
 * there is no such key (no trail, or the token has no secret).
 */
int kb_audit_value_hmac(struct kb_audit *a, const unsigned char *v, size_t len,
			unsigned char mac[32]);

/* What getAuditStatus reports. */
struct kb_audit_status {
	bool available;
	char reason[160]; /* why not, or "" */
	uint64_t next_seq; /* records in the chain */
	char head[KB_TRAIL_HEX_LEN + 1]; /* hash of the last record */
	uint64_t checkpoint_size; /* 0: none signed by this broker yet */
	char checkpoint_time[KB_TRAIL_TIME_LEN];
	uint64_t unrecorded_served, unrecorded_refused;
	char origin[256];
	char keyid[KB_TRAIL_KEYID_LEN + 1]; /* "" if no audit key */
};

void kb_audit_status(struct kb_audit *a, struct kb_audit_status *st);

#endif
