/* SPDX-License-Identifier: MIT */
/*
 * One client connection: its input buffer cut into request lines, the
 * requests it has in flight in arrival order, and its output buffer.
 * The event loop owns it; a worker may write its reply straight to the
 * socket when that reply is next in order (kb_conn_send_direct). Both hold
 * the connection's lock whenever they touch it; the input buffer is the
 * event loop's alone.
 */
#ifndef KB_CONN_H
#define KB_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <pthread.h>

#include "kb_buf.h"
#include "kb_queue.h"

/* What the event loop's epoll data points at. */
enum kb_watch_kind {
	KB_WATCH_LISTEN,
	KB_WATCH_SIGNAL,
	KB_WATCH_DONE,
	KB_WATCH_CONN,
};

struct kb_watch {
	enum kb_watch_kind kind;
};

struct kb_conn {
	struct kb_watch watch; /* first: epoll data points here */
	pthread_mutex_t lock;
	struct kb_conn *prev, *next; /* server's list */
	int fd;
	struct kb_caller caller; /* peer, and the identity it authenticated */
	uint32_t events; /* epoll interest now registered */

	struct kb_buf in; /* request bytes not yet cut into lines */

	struct kb_job *first, *last; /* in request order */
	unsigned int pending; /* jobs in the order list */
	unsigned int in_workers; /* of those, jobs not yet done */
	/* Its jobs waiting in the workers' queue, by kind. */
	struct kb_lane lanes[KB_LANE_KINDS];
	unsigned int bad_run; /* malformed requests in a row */

	struct kb_buf out; /* response bytes not yet written */

	int64_t accepted_ms; /* the authenticate deadline counts from here */
	int64_t last_activity_ms; /* a request taken or a reply written */
	int64_t line_started_ms; /* when in[] became non-empty */
	int64_t write_blocked_ms; /* when out[] last made no progress */

	bool barrier; /* an authenticate is in flight: take no lines */
	bool read_closed; /* peer shut its side, or we stopped reading */
	bool close_after_flush;
	bool dead; /* fd closed; waits for in_workers == 0 to be freed */
	bool unauthenticated; /* counted so by the connection limits */
	bool waits_for_queue; /* lines held back: the workers' queue is full */
};

struct kb_conn *kb_conn_new(int fd, const struct kb_peer *peer, int64_t now);
/* Wipes and frees everything; jobs must no longer be in workers. */
void kb_conn_free(struct kb_conn *c);

enum kb_io { KB_IO_OK, KB_IO_EOF, KB_IO_ERROR };

/*
 * Reads what is available (up to a full line's worth of buffer). Reading
 * is not activity: only requests and replies keep a connection alive, so
 * blank lines do not.
 */
enum kb_io kb_conn_read(struct kb_conn *c, int64_t now);

/*
 * Cuts the next complete request line into a job and appends it to the
 * order list. A line over KB_LINE_MAX becomes a done job carrying a
 * BadRequest reply that closes the connection. Returns NULL if no line is
 * complete or the connection takes no more requests.
 */
struct kb_job *kb_conn_next_line(struct kb_conn *c, int64_t now);

/* Moves replies that are next in order into the output buffer. */
int kb_conn_collect(struct kb_conn *c);

/*
 * From a worker, with c->lock held: if job is the next reply owed, nothing
 * else is waiting to be written, and the event loop has no reason to look
 * at the connection, writes the reply to the socket and frees the job.
 * Returns false (and keeps the job, with what was sent recorded) when the
 * event loop must finish it.
 */
bool kb_conn_send_direct(struct kb_conn *c, struct kb_job *job,
			 unsigned int max_pipeline, int64_t now);

/* Writes what it can of the output buffer. */
enum kb_io kb_conn_write(struct kb_conn *c, int64_t now);

/*
 * True when the input holds the start of a line and no complete line: the
 * client, not the broker, is the one behind.
 */
bool kb_conn_line_incomplete(const struct kb_conn *c);

/* True when no reply is owed and none is waiting to be written. */
bool kb_conn_idle(const struct kb_conn *c);

#endif
