// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kb_conn.h"
#include "kb_proto.h"

#define IN_MAX (KB_LINE_MAX + 1) /* a maximal line and its '\n' */
#define IN_FIRST 4096
#define OUT_FIRST 1024

struct kb_conn *kb_conn_new(int fd, const struct kb_peer *peer, int64_t now)
{
	struct kb_conn *c;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	c->watch.kind = KB_WATCH_CONN;
	kb_lane_init(&c->lanes[KB_LANE_QUICK], KB_LANE_QUICK);
	kb_lane_init(&c->lanes[KB_LANE_TOKEN], KB_LANE_TOKEN);
	pthread_mutex_init(&c->lock, NULL);
	c->fd = fd;
	c->caller.peer = *peer;
	c->accepted_ms = now;
	c->last_activity_ms = now;
	c->unauthenticated = true;
	return c;
}

void kb_conn_free(struct kb_conn *c)
{
	struct kb_job *job, *next;

	if (c == NULL)
		return;
	for (job = c->first; job != NULL; job = next) {
		next = job->conn_next;
		kb_job_free(job);
	}
	if (c->fd >= 0)
		close(c->fd);
	kb_buf_free(&c->in);
	kb_buf_free(&c->out);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

enum kb_io kb_conn_read(struct kb_conn *c, int64_t now)
{
	ssize_t n;

	for (;;) {
		if (c->in.len == c->in.cap) {
			if (c->in.cap == IN_MAX)
				return KB_IO_OK;
			if (kb_buf_reserve(&c->in, 1, IN_FIRST, IN_MAX) != 0)
				return KB_IO_ERROR;
		}
		n = read(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len);
		if (n > 0) {
			if (c->in.len == 0)
				c->line_started_ms = now;
			c->in.len += (size_t)n;
			/* A short read drained the socket; epoll says if not. */
			if (c->in.len < c->in.cap)
				return KB_IO_OK;
			continue;
		}
		if (n == 0)
			return KB_IO_EOF;
		if (errno == EINTR)
			continue;
		return errno == EAGAIN || errno == EWOULDBLOCK ? KB_IO_OK :
								 KB_IO_ERROR;
	}
}

static void append_job(struct kb_conn *c, struct kb_job *job)
{
	if (c->last != NULL)
		c->last->conn_next = job;
	else
		c->first = job;
	c->last = job;
	c->pending++;
}

/* Drops the first n bytes of the input. */
static void consume_input(struct kb_conn *c, size_t n, int64_t now)
{
	kb_buf_consume(&c->in, n);
	c->line_started_ms = now;
}

static struct kb_job *too_long_job(struct kb_conn *c)
{
	struct kb_job *job = kb_job_new(c, "", 0);
	char msg[80];

	if (job == NULL)
		return NULL;
	snprintf(msg, sizeof(msg), "request line longer than %d bytes",
		 KB_LINE_MAX);
	job->resp = kb_proto_error(NULL, KB_BAD_REQUEST, msg, &job->resp_len);
	job->done = true;
	job->close_after = true;
	return job;
}

struct kb_job *kb_conn_next_line(struct kb_conn *c, int64_t now)
{
	struct kb_job *job;
	char *nl;
	size_t len;

	while (!c->close_after_flush && c->in.len > 0) {
		nl = memchr(c->in.p, '\n', c->in.len);
		if (nl == NULL) {
			if (c->in.len < IN_MAX)
				return NULL;
			/* No newline within the limit: refuse and stop. */
			if ((job = too_long_job(c)) == NULL)
				return NULL;
			consume_input(c, c->in.len, now);
			c->close_after_flush = true;
			append_job(c, job);
			return job;
		}
		len = (size_t)(nl - c->in.p);
		if (len > 0 && c->in.p[len - 1] == '\r')
			len--;
		if (len == 0) { /* blank lines are ignored */
			consume_input(c, (size_t)(nl - c->in.p) + 1, now);
			continue;
		}
		job = kb_job_new(c, c->in.p, len);
		if (job == NULL)
			return NULL;
		consume_input(c, (size_t)(nl - c->in.p) + 1, now);
		append_job(c, job);
		c->last_activity_ms = now;
		return job;
	}
	return NULL;
}

int kb_conn_collect(struct kb_conn *c)
{
	struct kb_job *job;

	while ((job = c->first) != NULL && job->done) {
		if (kb_buf_append(&c->out, job->resp + job->resp_sent,
				  job->resp_len - job->resp_sent, OUT_FIRST,
				  SIZE_MAX) != 0)
			return -1;
		if (job->close_after)
			c->close_after_flush = true;
		c->first = job->conn_next;
		if (c->first == NULL)
			c->last = NULL;
		c->pending--;
		kb_job_free(job);
	}
	return 0;
}

bool kb_conn_send_direct(struct kb_conn *c, struct kb_job *job,
			 unsigned int max_pipeline, int64_t now)
{
	ssize_t n;

	/*
	 * Left to the event loop: a closed or closing connection, unsent
	 * output, a full pipeline (lines may be waiting in the input buffer
	 * for the slot this frees), and any other reply owed on the
	 * connection: one owed before this one must go first, and one after
	 * it may already be finished and handed to the event loop, which
	 * would not look at the connection again once this one is gone.
	 */
	if (c->dead || c->read_closed || c->close_after_flush || c->barrier ||
	    c->first != job || job->conn_next != NULL || c->out.len != 0 ||
	    c->pending >= max_pipeline || job->close_after || job->barrier)
		return false;
	while (job->resp_sent < job->resp_len) {
		n = send(c->fd, job->resp + job->resp_sent,
			 job->resp_len - job->resp_sent,
			 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		job->resp_sent += (size_t)n;
		c->write_blocked_ms = now;
		c->last_activity_ms = now;
	}
	c->first = job->conn_next;
	if (c->first == NULL)
		c->last = NULL;
	c->pending--;
	c->in_workers--;
	kb_job_free(job);
	return true;
}

enum kb_io kb_conn_write(struct kb_conn *c, int64_t now)
{
	ssize_t n;

	while (c->out.len > 0) {
		n = send(c->fd, c->out.p, c->out.len,
			 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			kb_buf_consume(&c->out, (size_t)n);
			c->write_blocked_ms = now;
			c->last_activity_ms = now;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return KB_IO_OK;
		return KB_IO_ERROR;
	}
	return KB_IO_OK;
}

bool kb_conn_line_incomplete(const struct kb_conn *c)
{
	return c->in.len > 0 && memchr(c->in.p, '\n', c->in.len) == NULL;
}

bool kb_conn_idle(const struct kb_conn *c)
{
	return c->pending == 0 && c->out.len == 0;
}
