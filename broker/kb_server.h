/* SPDX-License-Identifier: MIT */
/*
 * keybrokerd's server: the Unix socket, an event loop that accepts
 * connections and keeps time (timeouts, signals, the service manager),
 * and a fixed pool of worker threads that wait on the connections
 * themselves (one-shot epoll) and serve each in turns: read, handle,
 * record, reply, with no hand-off between threads. Workers share the
 * token sessions (kb_sessions.h); those that hold none serve the requests
 * that need none. Replies go back in request order.
 */
#ifndef KB_SERVER_H
#define KB_SERVER_H

#include "kb_audit.h"
#include "kb_config.h"
#include "kb_keystore.h"
#include "kb_listen.h"
#include "kb_policy.h"

/* kb_server_run's result when a thread is stuck in the token. */
#define KB_SERVER_STUCK 1

/*
 * Serves on listener (open; closed when draining) until SIGTERM or
 * SIGINT, then stops accepting, finishes in-flight requests (for at most
 * cfg->shutdown_grace_ms) and returns 0. SIGHUP reloads the configuration
 * into policy (atomically, or not at all) and re-reads the key catalogue
 * from the token, on the admin lane (kb_admin.h). Every request and
 * reload is recorded in audit (NULL: none) before its reply goes.
 * Returns -1 if it cannot
 * start, and KB_SERVER_STUCK if a thread's call into the token had not
 * returned a second after the grace period: then nothing was freed, and
 * the caller must exit at once without touching the token or ks.
 */
int kb_server_run(const struct kb_config *cfg, struct kb_keystore *ks,
		  struct kb_policy_holder *policy, struct kb_listener *listener,
		  struct kb_audit *audit);

#endif
