/* SPDX-License-Identifier: MIT */
/*
 * The audit record of one request (docs/audit.md, event "request"): who
 * asked (peer, identity and the token it used), what (op, key, version
 * asked and used, algorithm, unwrap path), under which grant or lacking
 * which permission, the result, and a keyed hash of the wrapped value.
 * Never a DEK, ciphertext, token or PIN.
 */
#ifndef KB_RECORD_H
#define KB_RECORD_H

#include <jansson.h>
#include <stdint.h>

#include "kb_ops.h"

/*
 * The record of call, which ended in err (KB_OK: result is its result).
 * req->def is NULL for a line that named no op. NULL when out of memory.
 */
json_t *kb_record_request(const struct kb_call *call,
			  const struct kb_error *err, json_t *result,
			  int64_t duration_us);

/*
 * The record of a policy taking force (event "start" or "reload"): the
 * configuration's digest and its access entries; with cfg NULL, a reload
 * refused for why. NULL when out of memory.
 */
json_t *kb_record_policy(const char *event, const struct kb_config *cfg,
			 const char *why);

/* The record of a key store notice (kb_keystore_observe). */
json_t *kb_record_notice(const struct kb_notice *n);

#endif
