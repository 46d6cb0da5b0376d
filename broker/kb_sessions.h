/* SPDX-License-Identifier: MIT */
/*
 * The token sessions of the serving threads (one per configured worker)
 * and the connections waiting for one.
 *
 * A thread that meets a request needing the token takes a free session
 * or, when all are in use, leaves the connection in the queue and goes
 * on to other work. A thread giving a session back hands it, with the
 * connection at the head of the queue, to itself: it serves that
 * connection next, so no other thread is woken and nothing waits for
 * one. The queue is first in, first out; a connection that has more
 * token requests while others wait goes to its tail (kb_sessions_yield),
 * so each waiting connection gets one token operation in turn. A
 * connection waits with its next request only, so no more wait than
 * there are connections.
 */
#ifndef KB_SESSIONS_H
#define KB_SESSIONS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "kb_conn.h"
#include "kb_keystore.h"

struct kb_sessions {
	pthread_mutex_t lock;
	struct kb_keyworker **free;
	int nfree;
	struct kb_conn *head, *tail; /* waiting, first served first */
	atomic_int waiting;
};

/* The sessions all[0..n), free to take. 0, or an errno value. */
int kb_sessions_init(struct kb_sessions *s, struct kb_keyworker **all, int n);
/* Forgets the sessions (their owner frees them). */
void kb_sessions_uninit(struct kb_sessions *s);

/* A free session into *w, if there is one. */
bool kb_sessions_try(struct kb_sessions *s, struct kb_keyworker **w);

/*
 * A free session into *w (true); or c joins the queue (false: it belongs
 * to whoever hands it a session).
 */
bool kb_sessions_take(struct kb_sessions *s, struct kb_conn *c,
		      struct kb_keyworker **w);

/*
 * Gives w back. Returns the connection at the head of the queue, which
 * the caller now serves with w still its own; or NULL (w is free again).
 */
struct kb_conn *kb_sessions_give(struct kb_sessions *s, struct kb_keyworker *w);

/*
 * Whether connections wait for a session (a snapshot, without the lock):
 * a thread holding one then lets the next have it after each token
 * operation.
 */
bool kb_sessions_contended(struct kb_sessions *s);

/*
 * The session's holder (serving c) lets the head of the queue go first:
 * c joins the tail and the head is returned, to be served with the same
 * session. If nothing waits, returns c.
 */
struct kb_conn *kb_sessions_yield(struct kb_sessions *s, struct kb_conn *c);

/*
 * Takes every waiting connection out of the queue (the server's
 * teardown, once its threads are gone).
 */
struct kb_conn *kb_sessions_take_waiting(struct kb_sessions *s);

#endif
