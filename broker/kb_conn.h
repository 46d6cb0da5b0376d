/* SPDX-License-Identifier: MIT */
/*
 * One client connection and the bytes it keeps between turns.
 *
 * A connection is served in turns (kb_server.c): one thread at a time
 * reads what the socket has, handles the complete request lines in order
 * and writes the replies with one call. During a turn the bytes live in
 * the serving thread's scratch buffers (struct kb_scratch), which that
 * thread keeps from turn to turn, so a request that arrives whole and is
 * answered whole costs the connection no allocation. Only what is left
 * over when the turn ends (half a line, lines not yet handled, replies
 * the socket did not take) is copied into the connection's own buffers;
 * an idle connection holds none. Every buffer is wiped as it is emptied:
 * request lines carry DEKs, replies carry unwrapped keys.
 */
#ifndef KB_CONN_H
#define KB_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <pthread.h>

#include "kb_buf.h"
#include "kb_peer.h"

/* What epoll data points at. */
enum kb_watch_kind {
	KB_WATCH_LISTEN,
	KB_WATCH_SIGNAL,
	KB_WATCH_STOP,
	KB_WATCH_CONN,
};

struct kb_watch {
	enum kb_watch_kind kind;
};

struct kb_conn {
	struct kb_watch watch; /* first: epoll data points here */
	/*
	 * Guards busy and expired between the thread serving a turn and the
	 * housekeeping scan (timeouts, shutdown), which looks only at
	 * connections that are not busy.
	 */
	pthread_mutex_t lock;
	bool busy; /* in a turn, or waiting for a token session */
	const char *expired; /* set by the scan: close it, saying this */

	struct kb_conn *prev, *next; /* the server's list */
	struct kb_conn *wait_next; /* in the queue for a token session */
	int fd;
	struct kb_caller caller; /* peer, and the identity it authenticated */

	struct kb_buf in; /* bytes read and not yet handled */
	bool in_has_line; /* in holds a complete line (set as a turn ends) */
	struct kb_buf out; /* reply bytes not yet written */

	unsigned int bad_run; /* malformed or anonymous refusals in a row */
	int64_t accepted_ms; /* the authenticate deadline counts from here */
	int64_t last_activity_ms; /* a request taken or a reply written */
	int64_t line_started_ms; /* when in[] last became non-empty */
	int64_t write_blocked_ms; /* when out[] last made progress */

	bool read_closed; /* the peer shut its side */
	bool close_after_flush; /* a reply said the connection ends */
	bool unauthenticated; /* counted so by the connection limits */
};

/* A serving thread's buffers for one turn at a time. */
struct kb_scratch {
	struct kb_buf in; /* the turn's input; lines handled up to pos */
	size_t pos;
	struct kb_buf out; /* replies of the turn not yet written */
};

struct kb_conn *kb_conn_new(int fd, const struct kb_peer *peer, int64_t now);
/* Closes the socket, wipes and frees everything. NULL is a no-op. */
void kb_conn_free(struct kb_conn *c);

/* Wipes and frees a thread's scratch buffers. */
void kb_scratch_free(struct kb_scratch *s);

/*
 * Starts a turn: the input c kept from its last turn moves into s (s
 * must be empty: every turn ends with kb_conn_end_turn).
 */
int kb_conn_begin_turn(struct kb_conn *c, struct kb_scratch *s);

enum kb_io { KB_IO_OK, KB_IO_EOF, KB_IO_ERROR };

/*
 * At the start of a turn: reads what the socket has into s, up to one
 * maximal line's worth of unhandled input. Reading is not activity: only requests and replies
 * keep a connection alive, so blank lines do not.
 */
enum kb_io kb_conn_read(struct kb_conn *c, struct kb_scratch *s, int64_t now);

enum kb_line { KB_LINE_NONE, KB_LINE_OK, KB_LINE_TOO_LONG };

/*
 * The next complete request line in s (without its '\n' or "\r\n"),
 * skipping blank lines; it stays valid until the turn ends. It is taken
 * (the next call returns the one after) only by kb_conn_take_line, so a
 * line that must wait for a token session stays for the next turn.
 * KB_LINE_TOO_LONG: KB_LINE_MAX bytes without a newline; the input is
 * dropped and the connection must be closed after its refusal.
 */
enum kb_line kb_conn_peek_line(struct kb_conn *c, struct kb_scratch *s,
			       const char **line, size_t *len, int64_t now);
void kb_conn_take_line(struct kb_conn *c, struct kb_scratch *s, int64_t now);

/* Whether s holds another complete line after the one taken. */
bool kb_conn_has_line(const struct kb_scratch *s);

/* Appends a reply line to the turn's output. */
int kb_conn_reply(struct kb_scratch *s, const char *resp, size_t len);

/*
 * Writes what c kept and the turn's replies, in that order, with one
 * call, as much as the socket takes.
 */
enum kb_io kb_conn_flush(struct kb_conn *c, struct kb_scratch *s, int64_t now);

/*
 * Ends a turn: keeps what is left of s (unhandled input, unwritten
 * replies) in c and wipes s for the next turn. -1 if memory is short
 * (then c must be closed).
 */
int kb_conn_end_turn(struct kb_conn *c, struct kb_scratch *s);

/* Between turns: whether c's input holds a complete line. */
bool kb_conn_line_waiting(const struct kb_conn *c);

/*
 * Between turns: the input holds the start of a line and no complete
 * line, so the client, not the broker, is the one behind.
 */
bool kb_conn_line_incomplete(const struct kb_conn *c);

#endif
