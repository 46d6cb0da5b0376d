// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "kb_conn.h"
#include "kb_proto.h"

#define IN_MAX (KB_LINE_MAX + 1) /* a maximal line and its '\n' */
#define IN_FIRST 4096
#define OUT_FIRST 4096

struct kb_conn *kb_conn_new(int fd, const struct kb_peer *peer, int64_t now)
{
	struct kb_conn *c;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	c->watch.kind = KB_WATCH_CONN;
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
	if (c == NULL)
		return;
	if (c->fd >= 0)
		close(c->fd);
	kb_buf_free(&c->in);
	kb_buf_free(&c->out);
	pthread_mutex_destroy(&c->lock);
	explicit_bzero(&c->caller, sizeof(c->caller));
	free(c);
}

void kb_scratch_free(struct kb_scratch *s)
{
	kb_buf_free(&s->in);
	kb_buf_free(&s->out);
	s->pos = 0;
}

int kb_conn_begin_turn(struct kb_conn *c, struct kb_scratch *s)
{
	s->pos = 0;
	if (c->in.len == 0)
		return 0;
	if (kb_buf_append(&s->in, c->in.p, c->in.len, IN_MAX, IN_MAX) != 0)
		return -1;
	kb_buf_free(&c->in);
	c->in_has_line = false;
	return 0;
}

enum kb_io kb_conn_read(struct kb_conn *c, struct kb_scratch *s, int64_t now)
{
	struct kb_buf *in = &s->in;
	ssize_t n;

	for (;;) {
		if (in->len == IN_MAX)
			return KB_IO_OK;
		if (kb_buf_reserve(in, IN_MAX - in->len, IN_MAX, IN_MAX) != 0)
			return KB_IO_ERROR;
		n = read(c->fd, in->p + in->len, IN_MAX - in->len);
		if (n > 0) {
			if (in->len == 0)
				c->line_started_ms = now;
			in->len += (size_t)n;
			/* A short read drained the socket; epoll says if not. */
			if (in->len < IN_MAX)
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

/* The line's end at or after s->pos, blank lines skipped; NULL if none. */
static char *line_end(struct kb_conn *c, struct kb_scratch *s, int64_t now)
{
	char *nl;

	while (s->pos < s->in.len) {
		nl = memchr(s->in.p + s->pos, '\n', s->in.len - s->pos);
		if (nl == NULL)
			return NULL;
		if (nl == s->in.p + s->pos ||
		    (nl == s->in.p + s->pos + 1 && s->in.p[s->pos] == '\r')) {
			s->pos = (size_t)(nl - s->in.p) + 1;
			c->line_started_ms = now;
			continue; /* blank lines are ignored */
		}
		return nl;
	}
	return NULL;
}

enum kb_line kb_conn_peek_line(struct kb_conn *c, struct kb_scratch *s,
			       const char **line, size_t *len, int64_t now)
{
	char *nl = line_end(c, s, now);
	size_t n;

	if (nl == NULL) {
		if (s->in.len - s->pos < IN_MAX)
			return KB_LINE_NONE;
		/* No newline within the limit: refuse and stop reading. */
		explicit_bzero(s->in.p, s->in.len);
		s->in.len = s->pos = 0;
		return KB_LINE_TOO_LONG;
	}
	n = (size_t)(nl - (s->in.p + s->pos));
	if (s->in.p[s->pos + n - 1] == '\r')
		n--;
	*line = s->in.p + s->pos;
	*len = n;
	return KB_LINE_OK;
}

void kb_conn_take_line(struct kb_conn *c, struct kb_scratch *s, int64_t now)
{
	char *nl = memchr(s->in.p + s->pos, '\n', s->in.len - s->pos);

	s->pos = (size_t)(nl - s->in.p) + 1;
	c->line_started_ms = now;
	c->last_activity_ms = now;
}

bool kb_conn_has_line(const struct kb_scratch *s)
{
	return s->pos < s->in.len &&
	       memchr(s->in.p + s->pos, '\n', s->in.len - s->pos) != NULL;
}

int kb_conn_reply(struct kb_scratch *s, const char *resp, size_t len)
{
	return kb_buf_append(&s->out, resp, len, OUT_FIRST, SIZE_MAX);
}

enum kb_io kb_conn_flush(struct kb_conn *c, struct kb_scratch *s, int64_t now)
{
	struct msghdr msg = { 0 };
	struct iovec iov[2];
	size_t sent, kept;
	ssize_t n;

	while (c->out.len + s->out.len > 0) {
		msg.msg_iov = iov;
		msg.msg_iovlen = 0;
		if (c->out.len > 0)
			iov[msg.msg_iovlen++] =
				(struct iovec){ c->out.p, c->out.len };
		if (s->out.len > 0)
			iov[msg.msg_iovlen++] =
				(struct iovec){ s->out.p, s->out.len };
		n = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return KB_IO_OK;
		if (n <= 0)
			return KB_IO_ERROR;
		sent = (size_t)n;
		c->write_blocked_ms = now;
		c->last_activity_ms = now;
		/* What c kept went first. */
		kept = sent < c->out.len ? sent : c->out.len;
		kb_buf_consume(&c->out, kept);
		kb_buf_shift(&s->out, sent - kept);
	}
	return KB_IO_OK;
}

int kb_conn_end_turn(struct kb_conn *c, struct kb_scratch *s)
{
	int r = 0;

	if (s->in.len > s->pos &&
	    kb_buf_append(&c->in, s->in.p + s->pos, s->in.len - s->pos,
			  IN_FIRST, IN_MAX) != 0)
		r = -1;
	c->in_has_line = c->in.len > 0 &&
			 memchr(c->in.p, '\n', c->in.len) != NULL;
	if (s->out.len > 0 && kb_buf_append(&c->out, s->out.p, s->out.len,
					    OUT_FIRST, SIZE_MAX) != 0)
		r = -1;
	kb_buf_shift(&s->in, s->in.len);
	kb_buf_shift(&s->out, s->out.len);
	s->pos = 0;
	return r;
}

bool kb_conn_line_waiting(const struct kb_conn *c)
{
	return c->in_has_line;
}

bool kb_conn_line_incomplete(const struct kb_conn *c)
{
	return c->in.len > 0 && !c->in_has_line;
}
