/* SPDX-License-Identifier: MIT */
/*
 * Log lines that clients cause (refusals, failed requests, connections
 * closed), limited per uid as the kernel's printk_ratelimit and journald
 * do: a burst, then a steady trickle; what is held back is counted and
 * reported with the next line let through. So no local user can flood
 * the log or drown another's lines. The audit trail limits the records
 * of refusals without an identity the same way, at its own rate.
 * Thread-safe.
 */
#ifndef KB_LOGRATE_H
#define KB_LOGRATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define KB_LOGRATE_BURST 10 /* log lines at once */
#define KB_LOGRATE_PER_S 1 /* then lines per second */

struct kb_lograte;

/* A limit of burst at once, then per_s a second, for each uid. */
struct kb_lograte *kb_lograte_new(unsigned int burst, unsigned int per_s);
void kb_lograte_free(struct kb_lograte *l);

#define KB_LOGRATE_NOTE_MAX 48

/*
 * True if a line caused by uid may be logged at now_ms. note then ends
 * that line: "", or " (N more held back)" if N lines of uid were held
 * back since the last one let through (KB_LOGRATE_NOTE_MAX bytes).
 */
bool kb_lograte_allow(struct kb_lograte *l, uid_t uid, int64_t now_ms,
		      char *note, size_t notelen);

/* The same, with the count held back since the last one let through. */
bool kb_lograte_take(struct kb_lograte *l, uid_t uid, int64_t now_ms,
		     unsigned long *held);

#endif
