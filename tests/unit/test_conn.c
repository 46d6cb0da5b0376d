// SPDX-License-Identifier: MIT
/*
 * The connection layer on a socketpair: request lines cut from whatever
 * the reads bring, replies written in request order whatever order they
 * finish in, an over-long line refused, and a worker's direct send only
 * when it cannot overtake anything.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kb_conn.h"
#include "kb_proto.h"

struct pair {
	struct kb_conn *c;
	int peer; /* the client's end */
};

static int setup(void **state)
{
	struct kb_peer who = { .pid = 1, .uid = 1000, .gid = 1000 };
	struct pair *p = calloc(1, sizeof(*p));
	int sv[2];

	assert_non_null(p);
	assert_int_equal(
		socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	p->c = kb_conn_new(sv[0], &who, 0);
	assert_non_null(p->c);
	p->peer = sv[1];
	*state = p;
	return 0;
}

static int teardown(void **state)
{
	struct pair *p = *state;

	/* Closes the broker's end and frees the jobs still owed. */
	kb_conn_free(p->c);
	close(p->peer);
	free(p);
	return 0;
}

static void client_sends(struct pair *p, const char *s)
{
	assert_int_equal(write(p->peer, s, strlen(s)), (ssize_t)strlen(s));
	assert_int_equal(kb_conn_read(p->c, 1), KB_IO_OK);
}

/* Everything the client can read now, NUL-terminated, in buf. */
static size_t client_reads(struct pair *p, char *buf, size_t size)
{
	ssize_t n = read(p->peer, buf, size - 1);

	buf[n > 0 ? n : 0] = '\0';
	return n > 0 ? (size_t)n : 0;
}

static void finish(struct kb_job *job, const char *reply)
{
	job->resp = strdup(reply);
	job->resp_len = strlen(reply);
	job->done = true;
}

static void test_lines_cut_across_reads(void **state)
{
	struct pair *p = *state;
	struct kb_job *a, *b;

	client_sends(p, "{\"id\":1");
	assert_null(kb_conn_next_line(p->c, 2));
	assert_true(kb_conn_line_incomplete(p->c));
	client_sends(p, "}\n\r\n{\"id\":2}\r\n");
	a = kb_conn_next_line(p->c, 3);
	b = kb_conn_next_line(p->c, 3);
	assert_non_null(a);
	assert_non_null(b);
	assert_null(kb_conn_next_line(p->c, 3));
	/* The blank line is no request; "\r\n" ends a line like "\n". */
	assert_int_equal(a->line_len, 8);
	assert_memory_equal(a->line, "{\"id\":1}", 8);
	assert_int_equal(b->line_len, 8);
	assert_memory_equal(b->line, "{\"id\":2}", 8);
	assert_int_equal(p->c->pending, 2);
	assert_false(kb_conn_line_incomplete(p->c));
	assert_false(kb_conn_idle(p->c));
}

static void test_replies_in_request_order(void **state)
{
	struct pair *p = *state;
	struct kb_job *a, *b;
	char buf[256];

	client_sends(p, "first\nsecond\n");
	a = kb_conn_next_line(p->c, 1);
	b = kb_conn_next_line(p->c, 1);
	/* The second finishes first: nothing may be written yet. */
	finish(b, "reply-2\n");
	assert_int_equal(kb_conn_collect(p->c), 0);
	assert_int_equal(p->c->out.len, 0);
	finish(a, "reply-1\n");
	assert_int_equal(kb_conn_collect(p->c), 0);
	assert_int_equal(kb_conn_write(p->c, 2), KB_IO_OK);
	client_reads(p, buf, sizeof(buf));
	assert_string_equal(buf, "reply-1\nreply-2\n");
	assert_true(kb_conn_idle(p->c));
}

static void test_overlong_line_refused_and_closed(void **state)
{
	struct pair *p = *state;
	struct kb_job *job = NULL;
	size_t sent = 0, n = KB_LINE_MAX + 1;
	char *big = malloc(4096), buf[512];

	assert_non_null(big);
	memset(big, 'x', 4096);
	/* A line with no newline within the limit, fed as it arrives. */
	while (sent < n && job == NULL) {
		size_t chunk = n - sent < 4096 ? n - sent : 4096;

		assert_int_equal(write(p->peer, big, chunk), (ssize_t)chunk);
		sent += chunk;
		assert_int_equal(kb_conn_read(p->c, 1), KB_IO_OK);
		job = kb_conn_next_line(p->c, 1);
	}
	free(big);
	assert_non_null(job);
	assert_true(job->done);
	assert_true(job->close_after);
	assert_true(p->c->close_after_flush);
	/* No more requests are taken from this connection. */
	assert_null(kb_conn_next_line(p->c, 2));
	assert_int_equal(kb_conn_collect(p->c), 0);
	assert_int_equal(kb_conn_write(p->c, 2), KB_IO_OK);
	client_reads(p, buf, sizeof(buf));
	assert_non_null(strstr(buf, "\"BadRequest\""));
	assert_non_null(strstr(buf, "request line longer than 65536 bytes"));
}

static void test_direct_send_never_overtakes(void **state)
{
	struct pair *p = *state;
	struct kb_job *a, *b;
	char buf[256];

	client_sends(p, "one\ntwo\n");
	a = kb_conn_next_line(p->c, 1);
	b = kb_conn_next_line(p->c, 1);
	p->c->in_workers = 2;
	/* b is not next: the event loop finishes it later. */
	finish(b, "b\n");
	assert_false(kb_conn_send_direct(p->c, b, 64, 2));
	/* a is next but b waits behind it: also left to the event loop. */
	finish(a, "a\n");
	assert_false(kb_conn_send_direct(p->c, a, 64, 2));
	assert_int_equal(kb_conn_collect(p->c), 0);
	assert_int_equal(kb_conn_write(p->c, 2), KB_IO_OK);
	client_reads(p, buf, sizeof(buf));
	assert_string_equal(buf, "a\nb\n");
	p->c->in_workers = 0;

	/* Alone and next, with nothing queued for writing: sent at once. */
	client_sends(p, "three\n");
	a = kb_conn_next_line(p->c, 3);
	p->c->in_workers = 1;
	finish(a, "c\n");
	assert_true(kb_conn_send_direct(p->c, a, 64, 3));
	assert_int_equal(p->c->in_workers, 0);
	client_reads(p, buf, sizeof(buf));
	assert_string_equal(buf, "c\n");
	assert_true(kb_conn_idle(p->c));
}

static void test_peer_close_is_eof(void **state)
{
	struct pair *p = *state;

	shutdown(p->peer, SHUT_WR);
	assert_int_equal(kb_conn_read(p->c, 1), KB_IO_EOF);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_lines_cut_across_reads,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_replies_in_request_order,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_overlong_line_refused_and_closed, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_direct_send_never_overtakes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_peer_close_is_eof, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
