/* SPDX-License-Identifier: MIT */
/*
 * Request handling: one request line in, one response line out. Runs on a
 * worker thread with that worker's token session.
 */
#ifndef KB_OPS_H
#define KB_OPS_H

#include <stddef.h>

#include "kb_config.h"
#include "p11_keystore.h"

struct kb_ops {
	const struct kb_config *cfg;
	struct p11_keystore *ks;
};

/*
 * Handles line[0..len) and returns the response line (malloc'ed; it may
 * carry a DEK, so the caller frees it with kb_wipe_free), or NULL when out
 * of memory.
 */
char *kb_ops_handle(const struct kb_ops *ops, struct p11_worker *w,
		    const char *line, size_t len, size_t *resplen);

#endif
