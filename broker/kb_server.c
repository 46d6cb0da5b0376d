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
#include "kb_server.h"

#define MAX_EVENTS 64
#define OUT_HIGH_WATER (256 * 1024) /* stop reading while this is owed */
#define TICK_MS 500
#define STATUS_MS 1000 /* STATUS= at most this often, when it changed */
/* After the grace period, how long threads in the token get to return. */
#define JOIN_SLACK_MS 1000
#define BAD_RUN_MAX 8 /* malformed or unauthenticated requests in a row */
#define ACCEPT_PAUSE_MS 100 /* out of fds: stop accepting this long */
#define ACCEPT_LOG_MS 10000 /* and say so at most this often */
/* fds kept for the token, the log and admin work, besides one a worker */
#define FD_RESERVE 64

struct kb_server;

struct kb_worker {
	struct kb_server *srv;
	/* When the request it handles began (kb_progress.h); 0 while idle. */
	atomic_llong busy_since_ms;
	pthread_t thread;
	struct kb_keyworker *p11;
	struct kb_waiter waiter;
};

struct kb_server {
	const struct kb_config *cfg;
	struct kb_ops ops;
	int epfd, signal_fd, done_fd;
	struct kb_listener *listener;
	struct kb_watch listen_watch, signal_watch, done_watch;

	struct kb_queue jobs; /* to workers */
	struct kb_queue done; /* back from workers, signalled on done_fd */
	struct kb_worker *workers;
	int nworkers;
	struct kb_admin *admin; /* runs reloads */

	/* The events of this turn of the loop, not yet handled. */
	struct epoll_event events[MAX_EVENTS];
	int nevents, next_event;

	struct kb_conn *conns; /* live and dead-but-busy connections */
	uint64_t last_conn; /* the number of the last one accepted */
	struct kb_admit *admit; /* counts the live ones, per uid */
	int max_conns; /* max_connections, lowered to fit the fd limit */
	bool draining;
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

	/* A connection holds lines back until the workers' queue drains. */
	atomic_bool backlogged; /* set by the loop, cleared by a worker */
	bool any_waiting; /* some connection waits_for_queue */
};

/* Wakes the event loop (done_fd). */
static void signal_loop(struct kb_server *srv)
{
	uint64_t one = 1;

	if (write(srv->done_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		kb_err("worker: cannot signal the event loop: %s",
		       strerror(errno));
}

static void *worker_main(void *arg)
{
	struct kb_worker *w = arg;
	struct kb_server *srv = w->srv;
	enum kb_code code;
	struct kb_conn *c;
	struct kb_job *job;
	bool sent;

	kb_progress_bind(&w->busy_since_ms);
	while ((job = kb_queue_pop(&srv->jobs, &w->waiter)) != NULL) {
		/* Room in the queue again: wake connections holding lines. */
		if (atomic_exchange(&srv->backlogged, false))
			signal_loop(srv);
		atomic_store(&w->busy_since_ms, kb_progress_now_ms());
		job->resp = kb_ops_handle(&srv->ops, w->p11, &job->caller,
					  job->line, job->line_len,
					  &job->resp_len, &code);
		atomic_store(&w->busy_since_ms, 0);
		if (job->resp == NULL) { /* out of memory: drop the client */
			job->close_after = true;
			job->resp_len = 0;
		}
		c = job->conn;
		pthread_mutex_lock(&c->lock);
		/* A run of garbage, or of requests without an identity. */
		if (code == KB_BAD_REQUEST ||
		    (code == KB_UNAUTHORIZED && job->caller.identity[0] == 0))
			c->bad_run++;
		else
			c->bad_run = 0;
		if (c->bad_run >= BAD_RUN_MAX)
			job->close_after = true;
		if (job->barrier) {
			/* Later lines may go now, as this caller. */
			c->caller = job->caller;
			c->barrier = false;
		}
		sent = job->resp != NULL &&
		       kb_conn_send_direct(c, job,
					   (unsigned int)srv->cfg->max_pipeline,
					   kb_progress_now_ms());
		pthread_mutex_unlock(&c->lock);
		/* c may be gone now: the event loop frees idle dead ones. */
		if (sent)
			continue;
		kb_queue_push(&srv->done, NULL, job);
		signal_loop(srv);
	}
	return NULL;
}

/* ---- connections ---- */

static void conn_set_events(struct kb_server *srv, struct kb_conn *c)
{
	struct epoll_event ev = { .data.ptr = c };
	bool want_read = !c->read_closed && !c->close_after_flush &&
			 !srv->draining && !c->waits_for_queue &&
			 c->pending < (unsigned int)srv->cfg->max_pipeline &&
			 c->out.len < OUT_HIGH_WATER;

	ev.events = (want_read ? EPOLLIN : 0) | (c->out.len > 0 ? EPOLLOUT : 0);
	if (ev.events == c->events)
		return;
	if (epoll_ctl(srv->epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0)
		c->events = ev.events;
}

/* Drops c's events not yet handled: they must not reach a closed c. */
static void forget_events(struct kb_server *srv, const struct kb_conn *c)
{
	int i;

	for (i = srv->next_event; i < srv->nevents; i++)
		if (srv->events[i].data.ptr == c)
			srv->events[i].data.ptr = NULL;
}

static void conn_unlink(struct kb_server *srv, struct kb_conn *c)
{
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		srv->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
}

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
	if (!srv->draining)
		set_listening(srv, true);
}

/*
 * Closes the socket; the memory goes once no worker holds a job of it.
 * Needs c->lock; returns false if c was freed (the lock with it).
 */
static bool conn_close(struct kb_server *srv, struct kb_conn *c,
		       const char *why)
{
	char note[KB_LOGRATE_NOTE_MAX];

	if (!c->dead) {
		if (kb_log_enabled(KB_LOG_DEBUG) &&
		    kb_lograte_allow(srv->ops.lograte, c->caller.peer.uid,
				     kb_progress_now_ms(), note, sizeof(note)))
			kb_debug("closing connection of uid %u pid %d: %s%s",
				 (unsigned int)c->caller.peer.uid,
				 (int)c->caller.peer.pid, why, note);
		epoll_ctl(srv->epfd, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
		forget_events(srv, c);
		c->fd = -1;
		c->dead = true;
		kb_admit_release(srv->admit, c->caller.peer.uid,
				 c->unauthenticated);
		/* An fd is free again: resume accepting if that was the want. */
		if (srv->accept_paused_until_ms != 0)
			resume_accepting(srv);
	}
	if (c->in_workers > 0)
		return true;
	conn_unlink(srv, c);
	pthread_mutex_unlock(&c->lock);
	kb_conn_free(c);
	return false;
}

/*
 * Whether the workers' queue holds max_queued jobs. If so, the flag goes
 * up before a second look, so the worker that then makes room sees it
 * and wakes the loop (signal_loop).
 */
static bool jobs_full(struct kb_server *srv)
{
	size_t max = (size_t)srv->cfg->max_queued;

	if (kb_queue_count(&srv->jobs) < max)
		return false;
	atomic_store(&srv->backlogged, true);
	return kb_queue_count(&srv->jobs) >= max;
}

/*
 * Moves one connection forward: hands complete lines to the workers,
 * queues finished replies, writes, and closes when it is done.
 * Needs c->lock; returns false if c was freed.
 */
static bool conn_service(struct kb_server *srv, struct kb_conn *c, int64_t now)
{
	struct kb_job *job;
	bool token_op;

	/* Collect first: finished replies free pipeline slots for lines. */
	if (kb_conn_collect(c) != 0)
		return conn_close(srv, c, "out of memory");
	if (c->unauthenticated && c->caller.identity[0] != '\0') {
		kb_admit_authenticated(srv->admit, c->caller.peer.uid);
		c->unauthenticated = false;
	}
	c->waits_for_queue = false;
	while (!srv->draining && !c->barrier &&
	       c->pending < (unsigned int)srv->cfg->max_pipeline) {
		/* The queue is full: hold lines until a worker takes one. */
		if (jobs_full(srv)) {
			c->waits_for_queue = true;
			srv->any_waiting = true;
			break;
		}
		if ((job = kb_conn_next_line(c, now)) == NULL)
			break;
		if (job->done)
			continue;
		job->caller = c->caller;
		kb_proto_classify(job->line, job->line_len, kb_ops_table(),
				  &job->barrier, &token_op);
		c->barrier = job->barrier;
		c->in_workers++;
		kb_queue_push(
			&srv->jobs,
			&c->lanes[token_op ? KB_LANE_TOKEN : KB_LANE_QUICK],
			job);
	}
	if (kb_conn_collect(c) != 0 || kb_conn_write(c, now) != KB_IO_OK)
		return conn_close(srv, c, "write failed");
	if (kb_conn_idle(c) &&
	    (c->close_after_flush || c->read_closed || srv->draining))
		return conn_close(srv, c,
				  c->close_after_flush ? "protocol error" :
							 "finished");
	conn_set_events(srv, c);
	return true;
}

/* Takes c->lock for one step on c. */
static void conn_lock(struct kb_conn *c)
{
	pthread_mutex_lock(&c->lock);
}

/* Drops c->lock unless the step freed c. */
static void conn_unlock(struct kb_conn *c, bool alive)
{
	if (alive)
		pthread_mutex_unlock(&c->lock);
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
	struct epoll_event ev = { .events = EPOLLIN };
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
		ev.data.ptr = c;
		if (epoll_ctl(srv->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
			kb_admit_release(srv->admit, peer.uid, true);
			kb_conn_free(c);
			continue;
		}
		c->events = EPOLLIN;
		c->caller.conn = ++srv->last_conn;
		c->next = srv->conns;
		if (srv->conns != NULL)
			srv->conns->prev = c;
		srv->conns = c;
	}
	if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
	    errno == ENOMEM)
		pause_accepting(srv, errno, now);
	else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
		kb_warn("accept: %s", strerror(errno));
}

static void conn_event(struct kb_server *srv, struct kb_conn *c,
		       uint32_t events, int64_t now)
{
	enum kb_io io;
	bool alive;

	conn_lock(c);
	if (events & EPOLLERR) {
		conn_unlock(c, conn_close(srv, c, "socket error"));
		return;
	}
	if (events & (EPOLLIN | EPOLLHUP)) {
		io = kb_conn_read(c, now);
		if (io == KB_IO_ERROR) {
			conn_unlock(c, conn_close(srv, c, "read failed"));
			return;
		}
		if (io == KB_IO_EOF)
			c->read_closed = true;
	}
	alive = conn_service(srv, c, now);
	conn_unlock(c, alive);
}

/* Gives connections that held lines back for the full queue a turn. */
static void serve_waiting(struct kb_server *srv, int64_t now)
{
	struct kb_conn *c, *next;

	srv->any_waiting = false;
	for (c = srv->conns; c != NULL; c = next) {
		next = c->next;
		conn_lock(c);
		conn_unlock(c, !c->waits_for_queue || c->dead ||
				       conn_service(srv, c, now));
	}
}

/* Takes back the jobs whose replies the workers could not send. */
static void collect_done(struct kb_server *srv, int64_t now)
{
	struct kb_job *job, *next;
	struct kb_conn *c;
	uint64_t n;
	bool alive;

	if (read(srv->done_fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		kb_warn("eventfd: %s", strerror(errno));
	for (job = kb_queue_take_all(&srv->done); job != NULL; job = next) {
		next = job->next;
		c = job->conn;
		conn_lock(c);
		job->done = true;
		c->in_workers--;
		if (c->dead)
			alive = c->in_workers > 0 || conn_close(srv, c, "");
		else if (job->resp == NULL)
			alive = conn_close(srv, c, "out of memory");
		else
			alive = conn_service(srv, c, now);
		conn_unlock(c, alive);
	}
	if (srv->any_waiting)
		serve_waiting(srv, now);
}

/* Why c should be closed now, or NULL. Needs c->lock. */
static const char *timeout_reason(const struct kb_config *cfg,
				  const struct kb_conn *c, int64_t now)
{
	int64_t last_write = c->write_blocked_ms > c->last_activity_ms ?
				     c->write_blocked_ms :
				     c->last_activity_ms;

	if (c->dead)
		return NULL;
	/* Blank lines and half lines do not move this deadline. */
	if (c->unauthenticated && c->pending == 0 &&
	    now - c->accepted_ms > cfg->authenticate_timeout_ms)
		return "no identity within authenticate_timeout";
	if (kb_conn_line_incomplete(c) &&
	    now - c->line_started_ms > cfg->request_timeout_ms)
		return "request line not completed in time";
	if (c->out.len > 0 && now - last_write > cfg->request_timeout_ms)
		return "client not reading replies";
	if (c->pending == 0 && c->in.len == 0 &&
	    now - c->last_activity_ms > cfg->idle_timeout_ms)
		return "idle";
	return NULL;
}

/* Closes idle, half-sent and stalled connections. */
static void check_timeouts(struct kb_server *srv, int64_t now)
{
	struct kb_conn *c, *next;
	const char *why;

	for (c = srv->conns; c != NULL; c = next) {
		next = c->next;
		conn_lock(c);
		if ((why = timeout_reason(srv->cfg, c, now)) != NULL &&
		    c->unauthenticated && c->out.len == 0)
			send_refusal(c->fd, KB_UNAUTHORIZED,
				     "no authenticate within "
				     "authenticate_timeout; closing");
		conn_unlock(c, why == NULL || conn_close(srv, c, why));
	}
}

static void start_draining(struct kb_server *srv, int64_t now)
{
	struct kb_conn *c, *next;

	kb_info("shutting down: no new connections; finishing requests in "
		"flight");
	kb_notify_stopping("draining: finishing requests in flight");
	srv->draining = true;
	srv->drain_deadline_ms = now + srv->cfg->shutdown_grace_ms;
	epoll_ctl(srv->epfd, EPOLL_CTL_DEL, srv->listener->fd, NULL);
	kb_listener_close(srv->listener);
	srv->accept_paused_until_ms = 0;
	for (c = srv->conns; c != NULL; c = next) {
		next = c->next;
		conn_lock(c);
		conn_unlock(c, c->dead || conn_service(srv, c, now));
	}
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
	if (now < srv->next_status_ms || srv->draining)
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
		} else if (!srv->draining) {
			start_draining(srv, now);
		}
	}
}

static bool drained(struct kb_server *srv, int64_t now)
{
	struct kb_conn *c;
	bool busy;

	if (!srv->draining)
		return false;
	if (now >= srv->drain_deadline_ms) {
		kb_warn("shutdown grace period over; dropping what is left");
		return true;
	}
	for (c = srv->conns; c != NULL; c = c->next) {
		conn_lock(c);
		busy = !c->dead || c->in_workers > 0;
		conn_unlock(c, true);
		if (busy)
			return false;
	}
	return true;
}

static int watch(struct kb_server *srv, int fd, struct kb_watch *w,
		 enum kb_watch_kind kind)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = w };

	w->kind = kind;
	return epoll_ctl(srv->epfd, EPOLL_CTL_ADD, fd, &ev);
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

static int server_setup(struct kb_server *srv, sigset_t *mask)
{
	struct kb_admit_limits limits;
	int i;

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
	srv->signal_fd = signalfd(-1, mask, SFD_NONBLOCK | SFD_CLOEXEC);
	srv->done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (srv->epfd < 0 || srv->signal_fd < 0 || srv->done_fd < 0 ||
	    watch(srv, srv->listener->fd, &srv->listen_watch,
		  KB_WATCH_LISTEN) ||
	    watch(srv, srv->signal_fd, &srv->signal_watch, KB_WATCH_SIGNAL) ||
	    watch(srv, srv->done_fd, &srv->done_watch, KB_WATCH_DONE))
		goto out_errno;
	if ((srv->workers = calloc((size_t)srv->cfg->workers,
				   sizeof(*srv->workers))) == NULL)
		goto out_errno;
	if ((errno = kb_admin_start(reload, tick, srv, &srv->admin)) != 0)
		goto out_errno;
	for (i = 0; i < srv->cfg->workers; i++) {
		srv->workers[i].srv = srv;
		kb_waiter_init(&srv->workers[i].waiter);
		if (kb_keyworker_new(srv->ops.ks, &srv->workers[i].p11) != 0)
			goto out_errno;
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
	int64_t left = srv->draining ?
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
	struct kb_job *job, *jnext;
	int i;

	if (!kb_admin_stop(srv->admin, &deadline))
		return false;
	kb_queue_close(&srv->jobs);
	for (i = 0; i < srv->nworkers; i++)
		if (pthread_timedjoin_np(srv->workers[i].thread, NULL,
					 &deadline) != 0)
			return false;
	for (i = 0; i < srv->cfg->workers && srv->workers != NULL; i++) {
		kb_keyworker_free(srv->workers[i].p11);
		kb_waiter_uninit(&srv->workers[i].waiter);
	}
	free(srv->workers);
	/* Jobs left behind after the grace period. */
	for (job = kb_queue_take_all(&srv->done); job != NULL; job = jnext) {
		jnext = job->next;
		job->done = true;
		job->conn->in_workers--;
	}
	for (job = kb_queue_take_all(&srv->jobs); job != NULL; job = jnext) {
		jnext = job->next;
		job->done = true;
		job->conn->in_workers--;
	}
	for (c = srv->conns; c != NULL; c = next) {
		next = c->next;
		kb_conn_free(c);
	}
	kb_listener_close(srv->listener);
	kb_admit_free(srv->admit);
	kb_lograte_free(srv->ops.lograte);
	kb_lograte_free(srv->ops.auditrate);
	if (srv->epfd >= 0)
		close(srv->epfd);
	if (srv->signal_fd >= 0)
		close(srv->signal_fd);
	if (srv->done_fd >= 0)
		close(srv->done_fd);
	kb_queue_uninit(&srv->jobs);
	kb_queue_uninit(&srv->done);
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
		.listener = listener,
		.signal_fd = -1,
		.done_fd = -1,
	};
	int64_t now, left, last_tick = 0;
	char status[192];
	struct kb_watch *w;
	sigset_t mask;
	int r = -1, wait_ms;

	kb_queue_init(&srv.jobs);
	kb_queue_init(&srv.done);
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
	kb_info("listening on %s with %d workers, at most %d connections (%d "
		"per uid)",
		cfg->socket_path, cfg->workers, srv.max_conns,
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
		left = TICK_MS;
		if (srv.watchdog_ms > 0 && srv.next_ping_ms - now < left)
			left = srv.next_ping_ms - now;
		if (srv.accept_paused_until_ms != 0 &&
		    srv.accept_paused_until_ms - now < left)
			left = srv.accept_paused_until_ms - now;
		wait_ms = left < 0 ? 0 : (int)left;
		srv.nevents =
			epoll_wait(srv.epfd, srv.events, MAX_EVENTS, wait_ms);
		if (srv.nevents < 0 && errno != EINTR) {
			kb_err("epoll_wait: %s", strerror(errno));
			goto out;
		}
		now = kb_progress_now_ms();
		for (srv.next_event = 0; srv.next_event < srv.nevents;) {
			struct epoll_event *ev = &srv.events[srv.next_event++];

			if ((w = ev->data.ptr) == NULL)
				continue; /* its connection was closed */
			if (w->kind == KB_WATCH_LISTEN && !srv.draining)
				accept_all(&srv, now);
			else if (w->kind == KB_WATCH_SIGNAL)
				handle_signal(&srv, now);
			else if (w->kind == KB_WATCH_DONE)
				collect_done(&srv, now);
			else if (w->kind == KB_WATCH_CONN)
				conn_event(&srv, (struct kb_conn *)w,
					   ev->events, now);
		}
		srv.nevents = 0;
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
