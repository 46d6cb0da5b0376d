// SPDX-License-Identifier: MIT
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "kb_admin.h"
#include "kb_lifecycle.h"
#include "kb_admit.h"
#include "kb_conn.h"
#include "kb_listen.h"
#include "kb_log.h"
#include "kb_ops.h"
#include "kb_proto.h"
#include "kb_notify.h"
#include "kb_progress.h"
#include "kb_record.h"
#include "kb_secret.h"
#include "kb_server.h"
#include "kb_sessions.h"

#define MAX_EVENTS 16
#define OUT_HIGH_WATER (256 * 1024) /* stop reading while this is owed */
#define TICK_MS 500
#define DRAIN_TICK_MS 50 /* while draining: how soon an empty broker ends */
#define STATUS_MS 1000 /* STATUS= at most this often, when it changed */
/* After the grace period, how long threads in the token get to return. */
#define JOIN_SLACK_MS 1000
#define BAD_RUN_MAX 8 /* malformed or unauthenticated requests in a row */
#define ACCEPT_PAUSE_MS 100 /* out of fds: stop accepting this long */
#define ACCEPT_LOG_MS 10000 /* and say so at most this often */
/* fds kept for the token, the log and admin work, besides one a worker */
#define FD_RESERVE 64
/* Serving threads besides those that can hold a token session. */
#define QUICK_THREADS_MIN 2
#define QUICK_THREADS_MAX 16

struct kb_server;

/* A reply of the turn that stands only if its record is written. */
struct kb_staged_reply {
	size_t off, len; /* in the scratch output */
	struct kb_pending pending;
};

/*
 * A serving thread. It waits on the connections' epoll set itself and
 * serves the connection it gets a whole turn: read, handle, reply
 * (kb_conn.h). It holds a token session (kb_sessions.h) only while it
 * serves a connection whose requests need one.
 */
struct kb_worker {
	struct kb_server *srv;
	/* When the request it handles began (kb_progress.h); 0 while idle. */
	atomic_llong busy_since_ms;
	pthread_t thread;
	struct kb_keyworker *session; /* NULL unless serving token work */
	struct kb_scratch scratch;
	/* The turn's records, written before its replies go. */
	struct kb_audit_batch batch;
	struct kb_staged_reply *staged;
	size_t nstaged, staged_cap;
};

struct kb_server {
	const struct kb_config *cfg;
	struct kb_ops ops;
	/*
	 * Two epoll sets: the event loop's (listener, signals) and the
	 * serving threads' (connections, armed one-shot so that one thread
	 * at a time serves each, and the stop event).
	 */
	int epfd, conn_epfd, signal_fd, stop_fd;
	struct kb_listener *listener;
	struct kb_watch listen_watch, signal_watch, stop_watch;

	struct kb_keyworker **p11; /* the token sessions, cfg->workers */
	struct kb_sessions sessions;
	struct kb_worker *workers;
	int nworkers;
	struct kb_admin *admin; /* runs reloads */

	pthread_mutex_t conns_lock; /* the list; taken before a conn's lock */
	struct kb_conn *conns; /* every open connection */
	uint64_t last_conn; /* the number of the last one accepted */
	struct kb_admit *admit; /* counts the live ones, per uid */
	int max_conns; /* max_connections, lowered to fit the fd limit */
	atomic_bool draining;
	int64_t drain_deadline_ms;

	/* Out of fds: accepting is paused until then (0: not paused). */
	int64_t accept_paused_until_ms, accept_logged_ms;
	unsigned long accept_failures; /* since the last message */

	/*
	 * The service manager's watchdog (0: none): pinged every
	 * watchdog_ms while no thread has been in one call longer.
	 */
	long long watchdog_ms;
	int64_t next_ping_ms, next_status_ms;
	bool pings_held; /* said once per hold */
	char status[160]; /* the last STATUS= sent */
	/* The token's label, read at start: recovery rewrites the token's. */
	char label[40];
};

static bool draining(const struct kb_server *srv)
{
	return atomic_load_explicit(&srv->draining, memory_order_relaxed);
}

/* ---- connections ---- */

static void conn_link(struct kb_server *srv, struct kb_conn *c)
{
	pthread_mutex_lock(&srv->conns_lock);
	c->caller.conn = ++srv->last_conn;
	c->next = srv->conns;
	if (srv->conns != NULL)
		srv->conns->prev = c;
	srv->conns = c;
	pthread_mutex_unlock(&srv->conns_lock);
}

static void conn_unlink(struct kb_server *srv, struct kb_conn *c)
{
	pthread_mutex_lock(&srv->conns_lock);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		srv->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	pthread_mutex_unlock(&srv->conns_lock);
}

/* Whether c takes more request bytes now, with turn_out bytes of replies
 * not yet in c's own buffer. */
static bool wants_input(struct kb_server *srv, const struct kb_conn *c,
			size_t turn_out)
{
	return !c->read_closed && !c->close_after_flush && !draining(srv) &&
	       c->out.len + turn_out < OUT_HIGH_WATER;
}

/*
 * Ends c's turn and hands it back to epoll: it wants input while it takes
 * requests, and output while replies are owed or lines wait for another
 * turn (a writable socket reports at once, so c queues behind the
 * connections already ready). False if it cannot be: c must be closed.
 */
static bool conn_rearm(struct kb_server *srv, struct kb_conn *c)
{
	struct epoll_event ev = { .events = EPOLLONESHOT, .data.ptr = c };

	if (wants_input(srv, c, 0))
		ev.events |= EPOLLIN;
	if (c->out.len > 0 ||
	    (kb_conn_line_waiting(c) && !c->close_after_flush))
		ev.events |= EPOLLOUT;
	/*
	 * Armed under the lock that the next turn takes first: whatever this
	 * thread did to c happens before it, also for the tools that do not
	 * see the re-arming as an ordering (ThreadSanitizer).
	 */
	pthread_mutex_lock(&c->lock);
	if (epoll_ctl(srv->conn_epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0) {
		c->busy = false;
		pthread_mutex_unlock(&c->lock);
		return true;
	}
	pthread_mutex_unlock(&c->lock);
	/* Not armed, so nobody else can reach it: closed here. */
	kb_err("epoll_ctl: %s", strerror(errno));
	return false;
}

/* Closes c (its thread serves it: nobody else can reach it). */
static void conn_close(struct kb_server *srv, struct kb_conn *c,
		       const char *why)
{
	char note[KB_LOGRATE_NOTE_MAX];

	if (kb_log_enabled(KB_LOG_DEBUG) &&
	    kb_lograte_allow(srv->ops.lograte, c->caller.peer.uid,
			     kb_progress_now_ms(), note, sizeof(note)))
		kb_debug("closing connection of uid %u pid %d: %s%s",
			 (unsigned int)c->caller.peer.uid,
			 (int)c->caller.peer.pid, why, note);
	conn_unlink(srv, c);
	kb_admit_release(srv->admit, c->caller.peer.uid, c->unauthenticated);
	kb_conn_free(c); /* closing the fd takes it out of the epoll set */
}

/*
 * Gives the worker's token session back; returns the connection that
 * waited for it, to be served next with the session, or NULL.
 */
static struct kb_conn *give_session(struct kb_worker *w)
{
	struct kb_conn *next;

	if (w->session == NULL)
		return NULL;
	if ((next = kb_sessions_give(&w->srv->sessions, w->session)) == NULL)
		w->session = NULL;
	return next;
}

/* Sends an error line (best effort, never blocking). */
static void send_refusal(int fd, enum kb_code code, const char *msg)
{
	size_t len;
	char *line = kb_proto_error(NULL, code, msg, &len);

	if (line != NULL)
		(void)send(fd, line, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	free(line);
}

/* Appends a refusal that is not a request's own (no id) to the turn. */
static int reply_error(struct kb_scratch *s, enum kb_code code, const char *msg)
{
	size_t len;
	char *line = kb_proto_error(NULL, code, msg, &len);
	int r;

	if (line == NULL)
		return -1;
	r = kb_conn_reply(s, line, len);
	free(line);
	return r;
}

/* Remembers where a reply that waits for its record is. */
static int stage_reply(struct kb_worker *w, size_t off, size_t len,
		       const struct kb_pending *pending)
{
	struct kb_staged_reply *r;
	size_t cap;

	if (w->nstaged == w->staged_cap) {
		cap = w->staged_cap != 0 ? 2 * w->staged_cap : 16;
		if ((r = realloc(w->staged, cap * sizeof(*r))) == NULL)
			return -1;
		w->staged = r;
		w->staged_cap = cap;
	}
	w->staged[w->nstaged++] =
		(struct kb_staged_reply){ off, len, *pending };
	return 0;
}

/*
 * Handles one request line as c's caller and appends the reply; its
 * record is staged in the turn's batch. -1 if memory is short.
 */
static int handle_line(struct kb_worker *w, struct kb_conn *c, const char *line,
		       size_t len)
{
	struct kb_server *srv = w->srv;
	struct kb_pending pending = { .staged = false };
	size_t resp_len, off = w->scratch.out.len;
	enum kb_code code;
	char *resp;
	int r;

	atomic_store(&w->busy_since_ms, kb_progress_now_ms());
	resp = kb_ops_handle(&srv->ops, w->session, &c->caller, line, len,
			     &w->batch, &pending, &resp_len, &code);
	atomic_store(&w->busy_since_ms, 0);
	if (resp == NULL) {
		kb_pending_clear(&pending);
		return -1;
	}
	r = kb_conn_reply(&w->scratch, resp, resp_len);
	kb_wipe_free(resp, resp_len);
	if (r == 0 && pending.staged &&
	    (r = stage_reply(w, off, resp_len, &pending)) != 0) {
		/* Unsent, since it cannot be unsaid; it may hold a DEK. */
		explicit_bzero(w->scratch.out.p + off, resp_len);
		w->scratch.out.len = off;
	}
	if (r != 0)
		kb_pending_clear(&pending);
	if (c->unauthenticated && c->caller.identity[0] != '\0') {
		kb_admit_authenticated(srv->admit, c->caller.peer.uid);
		c->unauthenticated = false;
	}
	/*
	 * A run of garbage, or of requests a caller without identity should
	 * not have sent (refusals for the broker's own state, such as the
	 * trail or the token being away, are not the caller's doing).
	 */
	if (code == KB_BAD_REQUEST ||
	    (c->caller.identity[0] == '\0' &&
	     (code == KB_BAD_PARAMETER || code == KB_UNAUTHORIZED ||
	      code == KB_FORBIDDEN)))
		c->bad_run++;
	else
		c->bad_run = 0;
	if (c->bad_run >= BAD_RUN_MAX)
		c->close_after_flush = true;
	return r;
}

static int append_out(struct kb_buf *out, const char *p, size_t n)
{
	return kb_buf_append(out, p, n, 4096, SIZE_MAX);
}

/*
 * Writes the turn's records to the trail. Replies whose record could
 * not be written are replaced by their refusal (AuditUnavailable), so
 * nothing goes out that the trail does not hold. -1 if memory is short
 * for that (then the turn's output is dropped and c must be closed).
 */
static int commit_records(struct kb_worker *w)
{
	struct kb_scratch *s = &w->scratch;
	struct kb_buf out = { 0 };
	size_t i, at = 0, len, failed;
	char *line;
	int r = 0;

	if (w->batch.n == 0)
		return 0;
	/* A write or sync that hangs is the watchdog's business too. */
	atomic_store(&w->busy_since_ms, kb_progress_now_ms());
	failed = kb_audit_commit(w->srv->ops.audit, &w->batch);
	atomic_store(&w->busy_since_ms, 0);
	if (failed > 0) {
		/* The output again, each reply withheld replaced. */
		for (i = 0; i < w->nstaged && r == 0; i++) {
			struct kb_staged_reply *sr = &w->staged[i];

			if (kb_audit_written(&w->batch, sr->pending.record))
				continue;
			line = kb_ops_withheld(&sr->pending, &len);
			if (line == NULL ||
			    append_out(&out, s->out.p + at, sr->off - at) !=
				    0 ||
			    append_out(&out, line, len) != 0)
				r = -1;
			free(line);
			at = sr->off + sr->len;
		}
		if (r == 0 &&
		    append_out(&out, s->out.p + at, s->out.len - at) != 0)
			r = -1;
		/* The old output, results withheld and all, is wiped. */
		kb_buf_free(&s->out);
		if (r == 0)
			s->out = out;
		else
			kb_buf_free(&out);
	}
	for (i = 0; i < w->nstaged; i++)
		kb_pending_clear(&w->staged[i].pending);
	w->nstaged = 0;
	kb_audit_batch_clear(&w->batch);
	return r;
}

/* Writes the turn's records, then what c is owed. */
static enum kb_io turn_flush(struct kb_worker *w, struct kb_conn *c,
			     int64_t now)
{
	if (commit_records(w) != 0)
		return KB_IO_ERROR;
	return kb_conn_flush(c, &w->scratch, now);
}

/*
 * Leaves c in the queue for a token session: what the turn has is
 * written or kept first, since whoever serves c next is another turn.
 * Returns false (c closed) if that fails.
 */
static bool conn_stash(struct kb_worker *w, struct kb_conn *c, int64_t now)
{
	if (turn_flush(w, c, now) != KB_IO_ERROR &&
	    kb_conn_end_turn(c, &w->scratch) == 0)
		return true;
	kb_conn_end_turn(c, &w->scratch);
	conn_close(w->srv, c, "write failed");
	return false;
}

enum step { STEP_GO, STEP_LEFT, STEP_CLOSED };

/*
 * A token request and no session in hand: takes a free one (STEP_GO),
 * or leaves c waiting for one (STEP_LEFT: c is the queue's now).
 */
static enum step get_session(struct kb_worker *w, struct kb_conn *c,
			     int64_t now)
{
	struct kb_server *srv = w->srv;

	if (kb_sessions_try(&srv->sessions, &w->session))
		return STEP_GO;
	if (!conn_stash(w, c, now))
		return STEP_CLOSED;
	if (!kb_sessions_take(&srv->sessions, c, &w->session))
		return STEP_LEFT;
	if (kb_conn_begin_turn(c, &w->scratch) != 0) {
		conn_close(srv, c, "out of memory");
		return STEP_CLOSED;
	}
	return STEP_GO;
}

/*
 * Whether line needs a token session: a token op, for a caller who may
 * run it (one without identity is refused before any token call).
 */
static bool needs_session(const struct kb_conn *c, const char *line, size_t len)
{
	unsigned int flags = kb_proto_op_flags(line, len, kb_ops_table());

	return (flags & KB_OPF_TOKEN) &&
	       (!(flags & KB_OPF_IDENTITY) || c->caller.identity[0] != '\0');
}

/* Whether the line after the one just handled needs a token session. */
static bool next_needs_session(struct kb_conn *c, struct kb_scratch *s,
			       int64_t now)
{
	const char *line;
	size_t len;

	return kb_conn_peek_line(c, s, &line, &len, now) == KB_LINE_OK &&
	       needs_session(c, line, len);
}

/*
 * Why c, at the end of its turn with nothing left to write, is done; or
 * NULL if it stays.
 */
static const char *conn_done(struct kb_server *srv, const struct kb_conn *c)
{
	if (c->out.len > 0)
		return NULL;
	if (c->close_after_flush)
		return "protocol error";
	if (kb_conn_line_waiting(c))
		return NULL;
	if (draining(srv))
		return "shutting down";
	if (c->read_closed)
		return "finished";
	return NULL;
}

/*
 * Ends c's turn by closing it. The records of the requests it had served
 * are written all the same: those happened.
 */
static struct kb_conn *turn_close(struct kb_worker *w, struct kb_conn *c,
				  const char *why, int64_t now)
{
	(void)commit_records(w);
	(void)kb_conn_end_turn(c, &w->scratch);
	conn_close(w->srv, c, why);
	return give_session(w);
}

/*
 * One turn on c: reads what the socket has, handles the complete lines
 * in order (at most max_pipeline, so that others get their turn), writes
 * their records and then their replies with one call each, and hands c
 * back to epoll, or to the queue for a token session, or closes it.
 * Returns the connection this worker serves next: one that waited for
 * the session it gives back.
 */
static struct kb_conn *turn(struct kb_worker *w, struct kb_conn *c,
			    uint32_t events)
{
	struct kb_server *srv = w->srv;
	struct kb_scratch *s = &w->scratch;
	int64_t now = kb_progress_now_ms();
	unsigned int handled = 0;
	struct kb_conn *next;
	bool token_op;
	enum kb_line got;
	const char *line, *why;
	enum kb_io io;
	size_t len;

	pthread_mutex_lock(&c->lock);
	c->busy = true;
	why = c->expired;
	pthread_mutex_unlock(&c->lock);
	if (why != NULL || (events & EPOLLERR))
		return turn_close(w, c, why != NULL ? why : "socket error",
				  now);
	if (kb_conn_begin_turn(c, s) != 0)
		return turn_close(w, c, "out of memory", now);
	if ((events & (EPOLLIN | EPOLLHUP)) &&
	    wants_input(srv, c, s->out.len)) {
		io = kb_conn_read(c, s, now);
		if (io == KB_IO_ERROR)
			return turn_close(w, c, "read failed", now);
		if (io == KB_IO_EOF)
			c->read_closed = true;
	}
	/* Draining, the lines already read are still served. */
	while (handled < (unsigned int)srv->cfg->max_pipeline &&
	       !c->close_after_flush &&
	       c->out.len + s->out.len < OUT_HIGH_WATER) {
		got = kb_conn_peek_line(c, s, &line, &len, now);
		if (got == KB_LINE_NONE)
			break;
		if (got == KB_LINE_TOO_LONG) {
			char msg[80];

			snprintf(msg, sizeof(msg),
				 "request line longer than %d bytes",
				 KB_LINE_MAX);
			c->close_after_flush = true;
			if (reply_error(s, KB_BAD_REQUEST, msg) != 0)
				return turn_close(w, c, "out of memory", now);
			break;
		}
		token_op = needs_session(c, line, len);
		if (token_op && w->session == NULL) {
			switch (get_session(w, c, now)) {
			case STEP_LEFT:
				return NULL; /* the queue's now */
			case STEP_CLOSED:
				return give_session(w);
			case STEP_GO:
				break;
			}
			/* The turn began again: the line is found again. */
			if (kb_conn_peek_line(c, s, &line, &len, now) !=
			    KB_LINE_OK)
				continue;
		}
		/*
		 * A token op may block, and may change keys: the records
		 * before it, and its own, are written at once.
		 */
		if (token_op && commit_records(w) != 0)
			return turn_close(w, c, "out of memory", now);
		kb_conn_take_line(c, s, now);
		handled++;
		if (handle_line(w, c, line, len) != 0 ||
		    (token_op && commit_records(w) != 0))
			return turn_close(w, c, "out of memory", now);
		/*
		 * Others wait for the token and c's next request needs it
		 * too: one operation each, in turn.
		 */
		if (token_op && !c->close_after_flush &&
		    kb_sessions_contended(&srv->sessions) &&
		    next_needs_session(c, s, now)) {
			if (!conn_stash(w, c, now))
				return give_session(w);
			if ((next = kb_sessions_yield(&srv->sessions, c)) != c)
				return next;
			if (kb_conn_begin_turn(c, s) != 0)
				return turn_close(w, c, "out of memory", now);
		}
	}
	if (turn_flush(w, c, now) == KB_IO_ERROR)
		return turn_close(w, c, "write failed", now);
	if (kb_conn_end_turn(c, s) != 0)
		return turn_close(w, c, "out of memory", now);
	if ((why = conn_done(srv, c)) != NULL || !conn_rearm(srv, c))
		conn_close(srv, c,
			   why != NULL ? why : "cannot re-arm its socket");
	return give_session(w);
}

static void *worker_main(void *arg)
{
	struct kb_worker *w = arg;
	struct kb_server *srv = w->srv;
	struct epoll_event ev;
	struct kb_watch *watch;
	struct kb_conn *c;
	uint32_t events;
	int n;

	kb_progress_bind(&w->busy_since_ms);
	for (;;) {
		/* One event at a time: the others are for idle workers. */
		n = epoll_wait(srv->conn_epfd, &ev, 1, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			kb_err("worker: epoll_wait: %s", strerror(errno));
			break;
		}
		if (n == 0)
			continue;
		if ((watch = ev.data.ptr)->kind == KB_WATCH_STOP)
			break;
		c = (struct kb_conn *)watch;
		for (events = ev.events; c != NULL; events = 0)
			c = turn(w, c, events);
	}
	return NULL;
}

/* ---- the event loop: accepting, timeouts, signals ---- */

static void set_listening(struct kb_server *srv, bool on)
{
	struct epoll_event ev = { .events = on ? EPOLLIN : 0,
				  .data.ptr = &srv->listen_watch };

	if (srv->listener->fd >= 0)
		epoll_ctl(srv->epfd, EPOLL_CTL_MOD, srv->listener->fd, &ev);
}

/*
 * Out of file descriptors: stop polling the listener for a while rather
 * than spin on it (as nginx does); clients wait in the backlog. Said in
 * the log once per ACCEPT_LOG_MS, with how often it happened.
 */
static void pause_accepting(struct kb_server *srv, int err, int64_t now)
{
	srv->accept_failures++;
	srv->accept_paused_until_ms = now + ACCEPT_PAUSE_MS;
	set_listening(srv, false);
	if (now - srv->accept_logged_ms < ACCEPT_LOG_MS)
		return;
	kb_warn("accept: %s; new connections wait %d ms at a time until a "
		"connection closes (%lu times since the last such message)",
		strerror(err), ACCEPT_PAUSE_MS, srv->accept_failures);
	srv->accept_logged_ms = now;
	srv->accept_failures = 0;
}

static void resume_accepting(struct kb_server *srv)
{
	srv->accept_paused_until_ms = 0;
	if (!draining(srv))
		set_listening(srv, true);
}

/* A refused connection, logged within its uid's share of the log. */
static void refuse(struct kb_server *srv, int fd, const struct kb_peer *peer,
		   const char *why, int64_t now)
{
	char note[KB_LOGRATE_NOTE_MAX];

	if (kb_lograte_allow(srv->ops.lograte, peer->uid, now, note,
			     sizeof(note)))
		kb_warn("refused a connection of uid %u pid %d: %s%s",
			(unsigned int)peer->uid, (int)peer->pid, why, note);
	send_refusal(fd, KB_THROTTLED, why);
	close(fd);
}

static void accept_all(struct kb_server *srv, int64_t now)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLONESHOT };
	struct kb_peer peer;
	struct kb_conn *c;
	char why[160];
	int fd;

	while ((fd = accept4(srv->listener->fd, NULL, NULL,
			     SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
		if (kb_peer_from_socket(fd, &peer) != 0) {
			close(fd);
			continue;
		}
		if (!kb_admit_take(srv->admit, peer.uid, why, sizeof(why))) {
			refuse(srv, fd, &peer, why, now);
			continue;
		}
		if ((c = kb_conn_new(fd, &peer, now)) == NULL) {
			kb_admit_release(srv->admit, peer.uid, true);
			close(fd);
			continue;
		}
		/* Listed first: a worker may serve and close it at once. */
		conn_link(srv, c);
		ev.data.ptr = c;
		if (epoll_ctl(srv->conn_epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
			conn_unlink(srv, c);
			kb_admit_release(srv->admit, peer.uid, true);
			kb_conn_free(c);
		}
	}
	if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
	    errno == ENOMEM)
		pause_accepting(srv, errno, now);
	else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
		kb_warn("accept: %s", strerror(errno));
}

/* Why c should be closed now, or NULL. c is between turns. */
static const char *timeout_reason(const struct kb_config *cfg,
				  const struct kb_conn *c, int64_t now)
{
	int64_t last_write = c->write_blocked_ms > c->last_activity_ms ?
				     c->write_blocked_ms :
				     c->last_activity_ms;
	/*
	 * Replies owed: written and not taken, or requests read and not
	 * served because the socket takes no more (a connection with lines
	 * waiting is brought back when its socket is writable).
	 */
	bool owed = c->out.len > 0 || kb_conn_line_waiting(c);

	if (owed && now - last_write > cfg->request_timeout_ms)
		return "client not reading replies";
	/* Blank lines and half lines do not move this deadline. */
	if (c->unauthenticated && !owed &&
	    now - c->accepted_ms > cfg->authenticate_timeout_ms)
		return "no identity within authenticate_timeout";
	if (kb_conn_line_incomplete(c) &&
	    now - c->line_started_ms > cfg->request_timeout_ms)
		return "request line not completed in time";
	if (c->in.len == 0 && c->out.len == 0 &&
	    now - c->last_activity_ms > cfg->idle_timeout_ms)
		return "idle";
	return NULL;
}

/*
 * Closes idle, half-sent and stalled connections: those between turns
 * are marked, and their socket shut so that the worker that gets the
 * event closes them (only a connection's worker frees it).
 */
static void check_timeouts(struct kb_server *srv, int64_t now)
{
	const char *why;
	struct kb_conn *c;

	pthread_mutex_lock(&srv->conns_lock);
	for (c = srv->conns; c != NULL; c = c->next) {
		pthread_mutex_lock(&c->lock);
		if (!c->busy && c->expired == NULL &&
		    (why = timeout_reason(srv->cfg, c, now)) != NULL) {
			if (c->unauthenticated && c->out.len == 0)
				send_refusal(c->fd, KB_UNAUTHORIZED,
					     "no authenticate within "
					     "authenticate_timeout; closing");
			c->expired = why;
			shutdown(c->fd, SHUT_RDWR);
		}
		pthread_mutex_unlock(&c->lock);
	}
	pthread_mutex_unlock(&srv->conns_lock);
}

/*
 * SIGTERM: no new connections, and nothing more is read; the requests
 * already read are served and each connection is closed once its
 * replies are written. Shutting the read side wakes the worker of every
 * connection waiting for input.
 */
static void start_draining(struct kb_server *srv, int64_t now)
{
	struct kb_conn *c;

	kb_info("shutting down: no new connections; finishing requests in "
		"flight");
	kb_notify_stopping("draining: finishing requests in flight");
	atomic_store(&srv->draining, true);
	srv->drain_deadline_ms = now + srv->cfg->shutdown_grace_ms;
	epoll_ctl(srv->epfd, EPOLL_CTL_DEL, srv->listener->fd, NULL);
	kb_listener_close(srv->listener);
	srv->accept_paused_until_ms = 0;
	pthread_mutex_lock(&srv->conns_lock);
	for (c = srv->conns; c != NULL; c = c->next)
		shutdown(c->fd, SHUT_RD);
	pthread_mutex_unlock(&srv->conns_lock);
}

/* Whether the audit settings differ (they take effect at a restart). */
static bool audit_changed(const struct kb_audit_cfg *a,
			  const struct kb_audit_cfg *b)
{
	return a->enabled != b->enabled ||
	       strcmp(a->directory, b->directory) != 0 ||
	       strcmp(a->origin, b->origin) != 0 || a->forward != b->forward ||
	       a->fsync_interval_ms != b->fsync_interval_ms ||
	       a->checkpoint_records != b->checkpoint_records ||
	       a->checkpoint_interval_s != b->checkpoint_interval_s ||
	       a->rotate_size != b->rotate_size ||
	       a->rotate_interval_s != b->rotate_interval_s ||
	       a->reserve != b->reserve || a->min_free != b->min_free;
}

/* The trail's record of a reload: the policy installed (cfg), or why not. */
static void record_reload(struct kb_server *srv, const struct kb_config *cfg,
			  const char *why)
{
	json_t *rec = kb_record_policy("reload", cfg, why);

	if (rec != NULL)
		kb_audit_append(srv->ops.audit, rec, cfg != NULL);
	json_decref(rec);
}

/* A reload that failed: said, recorded, and told to the manager. */
static void refuse_reload(struct kb_server *srv, const char *err)
{
	kb_err("reload refused, the running configuration stays: %s", err);
	record_reload(srv, NULL, err);
	kb_notify_ready("reload refused: the running configuration stays");
}

/*
 * SIGHUP: a new configuration and policy, published whole or not at all,
 * and a fresh look at the token's keys and revocations. Runs on the admin
 * lane (kb_admin.h), beside the event loop and the workers.
 */
static void reload(void *arg)
{
	struct kb_server *srv = arg;
	struct kb_config *cfg;
	struct kb_policy *pol;
	char err[512];

	kb_info("SIGHUP: reloading %s and the key catalogue", srv->cfg->path);
	kb_notify_reloading();
	if (kb_keystore_reload(srv->ops.ks) != KB_STATUS_OK)
		kb_warn("re-reading the key catalogue failed; the previous "
			"one stays");
	if (kb_config_load(srv->cfg->path, &cfg, err, sizeof(err)) != 0) {
		refuse_reload(srv, err);
		return;
	}
	if ((pol = kb_policy_new(cfg, srv->ops.ks, err, sizeof(err))) == NULL) {
		refuse_reload(srv, err);
		kb_config_free(cfg);
		return;
	}
	if (strcmp(cfg->socket_path, srv->cfg->socket_path) != 0 ||
	    strcmp(cfg->instance, srv->cfg->instance) != 0 ||
	    strcmp(cfg->pkcs11_token, srv->cfg->pkcs11_token) != 0 ||
	    cfg->workers != srv->cfg->workers ||
	    cfg->allow_rsa1_5 != srv->cfg->allow_rsa1_5 ||
	    audit_changed(&cfg->audit, &srv->cfg->audit))
		kb_warn("reload: instance, socket, workers, pkcs11, "
			"algorithms and audit take effect only at restart");
	kb_log_set_level(cfg->log_level);
	record_reload(srv, cfg, "");
	kb_policy_replace(srv->ops.policy, pol);
	kb_info("reload: %zu identities, %zu issuers, %zu access entries in "
		"force",
		cfg->n_identities, cfg->n_issuers, cfg->n_grants);
	kb_notify_ready("reloaded: the new configuration is in force");
}

/* The admin lane's periodic work: the key lifecycle's (kb_lifecycle.h). */
static void tick(void *arg)
{
	struct kb_server *srv = arg;

	kb_lifecycle_tick(srv->ops.ks, time(NULL));
}

/*
 * The thread that has been in one call (a request, a reload, a tick)
 * the longest, and since when; 0 if all wait for work.
 */
static int64_t oldest_call(struct kb_server *srv, char *who, size_t wholen)
{
	int64_t since, oldest = kb_admin_busy_since(srv->admin);
	int i;

	snprintf(who, wholen, "the admin lane");
	for (i = 0; i < srv->nworkers; i++) {
		since = atomic_load(&srv->workers[i].busy_since_ms);
		if (since != 0 && (oldest == 0 || since < oldest)) {
			oldest = since;
			snprintf(who, wholen, "worker %d", i + 1);
		}
	}
	return oldest;
}

/*
 * WATCHDOG=1 only while the broker makes progress: the loop turns (it
 * pings) and no thread has spent a whole ping interval in one call, so
 * a call that hangs in the token stops the pings and the manager
 * restarts the broker. And STATUS= when what it says has changed.
 */
static void tell_manager(struct kb_server *srv, int64_t now)
{
	size_t keys, versions;
	bool available;
	char who[32], status[sizeof(srv->status)];
	int64_t since;

	if (srv->watchdog_ms > 0 && now >= srv->next_ping_ms) {
		srv->next_ping_ms = now + srv->watchdog_ms;
		since = oldest_call(srv, who, sizeof(who));
		if (since == 0 || now - since < srv->watchdog_ms) {
			kb_notify_watchdog();
			if (srv->pings_held)
				kb_info("watchdog: progress again; pinging");
			srv->pings_held = false;
		} else if (!srv->pings_held) {
			kb_err("watchdog: %s has been in one call for %lld ms; "
			       "no more pings, so that the service manager "
			       "restarts the broker",
			       who, (long long)(now - since));
			srv->pings_held = true;
		}
	}
	if (now < srv->next_status_ms || draining(srv))
		return;
	srv->next_status_ms = now + STATUS_MS;
	kb_keystore_summary(srv->ops.ks, &keys, &versions, &available);
	if (!available)
		snprintf(status, sizeof(status),
			 "token %s unavailable, retrying; %d connections",
			 srv->label, kb_admit_total(srv->admit));
	else
		snprintf(status, sizeof(status),
			 "serving %zu key%s (%zu version%s), token %s, %d "
			 "connection%s",
			 keys, keys == 1 ? "" : "s", versions,
			 versions == 1 ? "" : "s", srv->label,
			 kb_admit_total(srv->admit),
			 kb_admit_total(srv->admit) == 1 ? "" : "s");
	if (strcmp(status, srv->status) != 0) {
		kb_notify_status(status);
		memcpy(srv->status, status, sizeof(status));
	}
}

static void handle_signal(struct kb_server *srv, int64_t now)
{
	struct signalfd_siginfo si;

	while (read(srv->signal_fd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGHUP) {
			kb_admin_reload(srv->admin);
		} else if (!draining(srv)) {
			start_draining(srv, now);
		}
	}
}

static bool drained(struct kb_server *srv, int64_t now)
{
	bool empty;

	if (!draining(srv))
		return false;
	if (now >= srv->drain_deadline_ms) {
		kb_warn("shutdown grace period over; dropping what is left");
		return true;
	}
	pthread_mutex_lock(&srv->conns_lock);
	empty = srv->conns == NULL;
	pthread_mutex_unlock(&srv->conns_lock);
	return empty;
}

static int watch(int epfd, int fd, struct kb_watch *w, enum kb_watch_kind kind)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = w };

	w->kind = kind;
	return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

/*
 * max_connections, lowered if the open-file limit cannot hold that many
 * besides the fds the token, the log and the workers need.
 */
static int connection_budget(const struct kb_config *cfg)
{
	struct rlimit rl;
	rlim_t spare;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
		return cfg->max_connections;
	spare = rl.rlim_cur > (rlim_t)(FD_RESERVE + cfg->workers) ?
			rl.rlim_cur - (rlim_t)(FD_RESERVE + cfg->workers) :
			1;
	if (spare >= (rlim_t)cfg->max_connections)
		return cfg->max_connections;
	kb_warn("max_connections lowered from %d to %llu to fit the "
		"open-file limit (%llu)",
		cfg->max_connections, (unsigned long long)spare,
		(unsigned long long)rl.rlim_cur);
	return (int)spare;
}

/* Serving threads that hold no token session: one per CPU, within bounds. */
static int quick_threads(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	if (n < QUICK_THREADS_MIN)
		return QUICK_THREADS_MIN;
	return n > QUICK_THREADS_MAX ? QUICK_THREADS_MAX : (int)n;
}

static int server_setup(struct kb_server *srv, sigset_t *mask)
{
	struct kb_admit_limits limits;
	int i, n;

	srv->max_conns = connection_budget(srv->cfg);
	limits = (struct kb_admit_limits){
		.total = srv->max_conns,
		.per_uid = srv->cfg->max_connections_per_uid,
		.unauth_per_uid = srv->cfg->max_unauthenticated_per_uid,
	};
	if ((srv->admit = kb_admit_new(&limits)) == NULL ||
	    (srv->ops.lograte = kb_lograte_new(KB_LOGRATE_BURST,
					       KB_LOGRATE_PER_S)) == NULL ||
	    (srv->ops.auditrate = kb_lograte_new(KB_AUDITRATE_BURST,
						 KB_AUDITRATE_PER_S)) == NULL)
		goto out_errno;
	srv->epfd = epoll_create1(EPOLL_CLOEXEC);
	srv->conn_epfd = epoll_create1(EPOLL_CLOEXEC);
	srv->signal_fd = signalfd(-1, mask, SFD_NONBLOCK | SFD_CLOEXEC);
	srv->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (srv->epfd < 0 || srv->conn_epfd < 0 || srv->signal_fd < 0 ||
	    srv->stop_fd < 0 ||
	    watch(srv->epfd, srv->listener->fd, &srv->listen_watch,
		  KB_WATCH_LISTEN) ||
	    watch(srv->epfd, srv->signal_fd, &srv->signal_watch,
		  KB_WATCH_SIGNAL) ||
	    watch(srv->conn_epfd, srv->stop_fd, &srv->stop_watch,
		  KB_WATCH_STOP))
		goto out_errno;
	if ((srv->p11 = calloc((size_t)srv->cfg->workers, sizeof(*srv->p11))) ==
	    NULL)
		goto out_errno;
	for (i = 0; i < srv->cfg->workers; i++)
		if (kb_keyworker_new(srv->ops.ks, &srv->p11[i]) != 0) {
			errno = ENOMEM;
			goto out_errno;
		}
	if ((errno = kb_sessions_init(&srv->sessions, srv->p11,
				      srv->cfg->workers)) != 0)
		goto out_errno;
	n = srv->cfg->workers + quick_threads();
	if ((srv->workers = calloc((size_t)n, sizeof(*srv->workers))) == NULL)
		goto out_errno;
	if ((errno = kb_admin_start(reload, tick, srv, &srv->admin)) != 0)
		goto out_errno;
	for (i = 0; i < n; i++) {
		srv->workers[i].srv = srv;
		if ((errno = pthread_create(&srv->workers[i].thread, NULL,
					    worker_main, &srv->workers[i])) !=
		    0)
			goto out_errno;
		srv->nworkers++;
	}
	return 0;
out_errno:
	kb_err("cannot start the server: %s", strerror(errno));
	return -1;
}

/*
 * When threads that are still in the token must be given up: the end of
 * the shutdown grace period, or that long from now if the loop ended
 * some other way, as CLOCK_REALTIME for pthread_timedjoin_np.
 */
static struct timespec join_deadline(const struct kb_server *srv)
{
	int64_t left = draining(srv) ?
			       srv->drain_deadline_ms - kb_progress_now_ms() :
			       srv->cfg->shutdown_grace_ms;
	struct timespec ts;

	if (left < 0)
		left = 0;
	clock_gettime(CLOCK_REALTIME, &ts);
	left += ts.tv_nsec / 1000000 + JOIN_SLACK_MS;
	ts.tv_sec += left / 1000;
	ts.tv_nsec = (left % 1000) * 1000000;
	return ts;
}

/*
 * Stops the threads and frees everything. False if a thread did not stop
 * by the deadline (a call into the token that does not return): nothing
 * is freed then, since that thread may still use it.
 */
static bool server_teardown(struct kb_server *srv)
{
	struct timespec deadline = join_deadline(srv);
	struct kb_conn *c, *next;
	uint64_t one = 1;
	int i;

	if (!kb_admin_stop(srv->admin, &deadline))
		return false;
	if (srv->stop_fd >= 0 &&
	    write(srv->stop_fd, &one, sizeof(one)) != sizeof(one))
		kb_err("cannot stop the workers: %s", strerror(errno));
	for (i = 0; i < srv->nworkers; i++)
		if (pthread_timedjoin_np(srv->workers[i].thread, NULL,
					 &deadline) != 0)
			return false;
	for (i = 0; i < srv->nworkers; i++) {
		kb_scratch_free(&srv->workers[i].scratch);
		kb_audit_batch_free(&srv->workers[i].batch);
		free(srv->workers[i].staged);
	}
	free(srv->workers);
	/* Connections left behind after the grace period. */
	(void)kb_sessions_take_waiting(&srv->sessions);
	for (c = srv->conns; c != NULL; c = next) {
		next = c->next;
		kb_conn_free(c);
	}
	kb_sessions_uninit(&srv->sessions);
	for (i = 0; srv->p11 != NULL && i < srv->cfg->workers; i++)
		kb_keyworker_free(srv->p11[i]);
	free(srv->p11);
	kb_listener_close(srv->listener);
	kb_admit_free(srv->admit);
	kb_lograte_free(srv->ops.lograte);
	kb_lograte_free(srv->ops.auditrate);
	if (srv->epfd >= 0)
		close(srv->epfd);
	if (srv->conn_epfd >= 0)
		close(srv->conn_epfd);
	if (srv->signal_fd >= 0)
		close(srv->signal_fd);
	if (srv->stop_fd >= 0)
		close(srv->stop_fd);
	pthread_mutex_destroy(&srv->conns_lock);
	return true;
}

int kb_server_run(const struct kb_config *cfg, struct kb_keystore *ks,
		  struct kb_policy_holder *policy, struct kb_listener *listener,
		  struct kb_audit *audit)
{
	struct kb_server srv = {
		.cfg = cfg,
		.ops = { .ks = ks,
			 .audit = audit,
			 .policy = policy,
			 .rate = kb_rate_new(),
			 .instance = cfg->instance,
			 .allow_rsa1_5 = cfg->allow_rsa1_5 },
		.epfd = -1,
		.conn_epfd = -1,
		.listener = listener,
		.signal_fd = -1,
		.stop_fd = -1,
	};
	struct epoll_event events[MAX_EVENTS];
	int64_t now, left, last_tick = 0;
	char status[192];
	struct kb_watch *w;
	sigset_t mask;
	int i, n, r = -1, wait_ms;

	pthread_mutex_init(&srv.conns_lock, NULL);
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	/* Blocked (again) before the workers start: they inherit the mask. */
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (srv.ops.rate == NULL) {
		kb_err("cannot start the server: out of memory");
		goto out;
	}
	snprintf(srv.label, sizeof(srv.label), "%s",
		 kb_keystore_token_label(ks));
	if (server_setup(&srv, &mask) != 0)
		goto out;
	kb_info("listening on %s with %d workers (%d token sessions), at most "
		"%d connections (%d per uid)",
		cfg->socket_path, srv.nworkers, cfg->workers, srv.max_conns,
		cfg->max_connections_per_uid);
	snprintf(status, sizeof(status), "serving on %s, token %s",
		 cfg->socket_path, srv.label);
	kb_notify_ready(status);
	if ((srv.watchdog_ms = kb_notify_watchdog_ms()) > 0)
		kb_info("watchdog: pinging every %lld ms while requests make "
			"progress",
			srv.watchdog_ms);
	srv.next_status_ms = kb_progress_now_ms() + STATUS_MS;
	for (;;) {
		/*
		 * Wake for the next tick, the watchdog's next ping and the
		 * end of a pause in accepting, whichever is first.
		 */
		now = kb_progress_now_ms();
		left = draining(&srv) ? DRAIN_TICK_MS : TICK_MS;
		if (srv.watchdog_ms > 0 && srv.next_ping_ms - now < left)
			left = srv.next_ping_ms - now;
		if (srv.accept_paused_until_ms != 0 &&
		    srv.accept_paused_until_ms - now < left)
			left = srv.accept_paused_until_ms - now;
		wait_ms = left < 0 ? 0 : (int)left;
		n = epoll_wait(srv.epfd, events, MAX_EVENTS, wait_ms);
		if (n < 0 && errno != EINTR) {
			kb_err("epoll_wait: %s", strerror(errno));
			goto out;
		}
		now = kb_progress_now_ms();
		for (i = 0; i < n; i++) {
			w = events[i].data.ptr;
			if (w->kind == KB_WATCH_LISTEN && !draining(&srv))
				accept_all(&srv, now);
			else if (w->kind == KB_WATCH_SIGNAL)
				handle_signal(&srv, now);
		}
		if (srv.accept_paused_until_ms != 0 &&
		    now >= srv.accept_paused_until_ms) {
			resume_accepting(&srv);
			accept_all(&srv, now);
		}
		if (now - last_tick >= TICK_MS) {
			check_timeouts(&srv, now);
			last_tick = now;
		}
		tell_manager(&srv, now);
		if (drained(&srv, now))
			break;
	}
	kb_info("stopped");
	r = 0;
out:
	if (!server_teardown(&srv)) {
		kb_err("a call into the token has not returned; exiting "
		       "without closing the token");
		return KB_SERVER_STUCK;
	}
	kb_rate_free(srv.ops.rate);
	return r;
}
