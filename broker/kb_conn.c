// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kb_conn.h"
#include "kb_proto.h"
#include "kb_secret.h"

#define IN_MAX (KB_LINE_MAX + 1) /* a maximal line and its '\n' */
#define IN_FIRST 4096

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
	kb_wipe_free(c->in, c->in_cap);
	kb_wipe_free(c->out, c->out_len);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

static int grow_input(struct kb_conn *c)
{
	size_t cap = c->in_cap == 0 ? IN_FIRST : c->in_cap * 2;
	char *p;

	if (cap > IN_MAX)
		cap = IN_MAX;
	if ((p = malloc(cap)) == NULL)
		return -1;
	/* Not realloc: the old block holds request bytes to wipe. */
	if (c->in_len > 0)
		memcpy(p, c->in, c->in_len);
	kb_wipe_free(c->in, c->in_cap);
	c->in = p;
	c->in_cap = cap;
	return 0;
}

enum kb_io kb_conn_read(struct kb_conn *c, int64_t now)
{
	ssize_t n;

	for (;;) {
		if (c->in_len == c->in_cap) {
			if (c->in_cap == IN_MAX)
				return KB_IO_OK;
			if (grow_input(c) != 0)
				return KB_IO_ERROR;
		}
		n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
		if (n > 0) {
			if (c->in_len == 0)
				c->line_started_ms = now;
			c->in_len += (size_t)n;
			/* A short read drained the socket; epoll says if not. */
			if (c->in_len < c->in_cap)
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

/* Drops the first n bytes of the input, wiping what they leave behind. */
static void consume_input(struct kb_conn *c, size_t n, int64_t now)
{
	memmove(c->in, c->in + n, c->in_len - n);
	kb_wipe(c->in + c->in_len - n, n);
	c->in_len -= n;
	c->line_started_ms = now;
	if (c->in_len == 0) {
		kb_wipe_free(c->in, c->in_cap);
		c->in = NULL;
		c->in_cap = 0;
	}
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

	while (!c->close_after_flush && c->in_len > 0) {
		nl = memchr(c->in, '\n', c->in_len);
		if (nl == NULL) {
			if (c->in_len < IN_MAX)
				return NULL;
			/* No newline within the limit: refuse and stop. */
			if ((job = too_long_job(c)) == NULL)
				return NULL;
			consume_input(c, c->in_len, now);
			c->close_after_flush = true;
			append_job(c, job);
			return job;
		}
		len = (size_t)(nl - c->in);
		if (len > 0 && c->in[len - 1] == '\r')
			len--;
		if (len == 0) { /* blank lines are ignored */
			consume_input(c, (size_t)(nl - c->in) + 1, now);
			continue;
		}
		job = kb_job_new(c, c->in, len);
		if (job == NULL)
			return NULL;
		consume_input(c, (size_t)(nl - c->in) + 1, now);
		append_job(c, job);
		c->last_activity_ms = now;
		return job;
	}
	return NULL;
}

int kb_conn_collect(struct kb_conn *c)
{
	struct kb_job *job;
	size_t need;
	char *p;

	while ((job = c->first) != NULL && job->done) {
		need = c->out_len - c->out_off + job->resp_len - job->resp_sent;
		if ((p = malloc(need)) == NULL)
			return -1;
		if (c->out_len > c->out_off)
			memcpy(p, c->out + c->out_off, c->out_len - c->out_off);
		memcpy(p + c->out_len - c->out_off, job->resp + job->resp_sent,
		       job->resp_len - job->resp_sent);
		kb_wipe_free(c->out, c->out_len);
		c->out = p;
		c->out_len = need;
		c->out_off = 0;
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
	    c->first != job || job->conn_next != NULL || c->out_len != 0 ||
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

	while (c->out_off < c->out_len) {
		n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
			 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			c->out_off += (size_t)n;
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
	kb_wipe_free(c->out, c->out_len);
	c->out = NULL;
	c->out_len = c->out_off = 0;
	return KB_IO_OK;
}

bool kb_conn_line_incomplete(const struct kb_conn *c)
{
	return c->in_len > 0 && memchr(c->in, '\n', c->in_len) == NULL;
}

bool kb_conn_idle(const struct kb_conn *c)
{
	return c->pending == 0 && c->out_len == 0;
}
