// SPDX-License-Identifier: MIT
/*
 * The connection layer on a socketpair: request lines cut from whatever
 * the reads bring, kept across turns, an over-long line refused, replies
 * the socket did not take written before the next turn's, and the
 * scratch buffers left empty and wiped after every turn.
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
	struct kb_scratch s; /* a worker's */
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

	/* Closes the broker's end and frees what it kept. */
	kb_conn_free(p->c);
	kb_scratch_free(&p->s);
	close(p->peer);
	free(p);
	return 0;
}

static void client_sends(struct pair *p, const char *s)
{
	assert_int_equal(write(p->peer, s, strlen(s)), (ssize_t)strlen(s));
	assert_int_equal(kb_conn_read(p->c, &p->s, 1), KB_IO_OK);
}

/* Everything the client can read now, NUL-terminated, in buf. */
static size_t client_reads(struct pair *p, char *buf, size_t size)
{
	ssize_t n = read(p->peer, buf, size - 1);

	buf[n > 0 ? n : 0] = '\0';
	return n > 0 ? (size_t)n : 0;
}

/* The next line of the turn, taken, as a string in buf. */
static const char *take(struct pair *p, char *buf, size_t size)
{
	const char *line;
	size_t len;

	assert_int_equal(kb_conn_peek_line(p->c, &p->s, &line, &len, 1),
			 KB_LINE_OK);
	assert_true(len < size);
	memcpy(buf, line, len);
	buf[len] = '\0';
	kb_conn_take_line(p->c, &p->s, 1);
	return buf;
}

/*
 * Ends the turn and checks that the scratch buffers kept nothing, and
 * that no request or reply byte of the tests (all but the padding of
 * the big reply are letters, digits and punctuation) is left in them.
 */
static void end_turn(struct pair *p)
{
	static const char *seen[] = { "id",   "first", "second", "thi",
				      "next", "xxxx",  "rrrr" };
	size_t i;

	assert_int_equal(kb_conn_end_turn(p->c, &p->s), 0);
	assert_int_equal(p->s.in.len, 0);
	assert_int_equal(p->s.out.len, 0);
	for (i = 0; i < sizeof(seen) / sizeof(seen[0]); i++) {
		if (p->s.in.p != NULL)
			assert_null(memmem(p->s.in.p, p->s.in.cap, seen[i],
					   strlen(seen[i])));
		if (p->s.out.p != NULL)
			assert_null(memmem(p->s.out.p, p->s.out.cap, seen[i],
					   strlen(seen[i])));
	}
}

static void test_lines_cut_across_reads(void **state)
{
	struct pair *p = *state;
	const char *line;
	char buf[64];
	size_t len;

	assert_int_equal(kb_conn_begin_turn(p->c, &p->s), 0);
	client_sends(p, "{\"id\":1");
	assert_int_equal(kb_conn_peek_line(p->c, &p->s, &line, &len, 2),
			 KB_LINE_NONE);
	end_turn(p);
	/* The half line waits in the connection between turns. */
	assert_true(kb_conn_line_incomplete(p->c));
	assert_false(kb_conn_line_waiting(p->c));
	assert_int_equal(kb_conn_begin_turn(p->c, &p->s), 0);
	assert_int_equal(p->c->in.len, 0);
	client_sends(p, "}\n\r\n{\"id\":2}\r\n");
	/* The blank line is no request; "\r\n" ends a line like "\n". */
	assert_string_equal(take(p, buf, sizeof(buf)), "{\"id\":1}");
	assert_true(kb_conn_has_line(&p->s));
	assert_string_equal(take(p, buf, sizeof(buf)), "{\"id\":2}");
	assert_false(kb_conn_has_line(&p->s));
	assert_int_equal(kb_conn_peek_line(p->c, &p->s, &line, &len, 3),
			 KB_LINE_NONE);
	end_turn(p);
	assert_false(kb_conn_line_incomplete(p->c));
	assert_int_equal(p->c->in.len, 0);
}

static void test_line_not_taken_stays_for_the_next_turn(void **state)
{
	struct pair *p = *state;
	char buf[64];

	assert_int_equal(kb_conn_begin_turn(p->c, &p->s), 0);
	client_sends(p, "first\nsecond\nthi");
	assert_string_equal(take(p, buf, sizeof(buf)), "first");
	/* "second" waits (say, for a token session) with the half line. */
	end_turn(p);
	assert_true(kb_conn_line_waiting(p->c));
	assert_int_equal(p->c->in.len, strlen("second\nthi"));
	assert_int_equal(kb_conn_begin_turn(p->c, &p->s), 0);
	client_sends(p, "rd\n");
	assert_string_equal(take(p, buf, sizeof(buf)), "second");
	assert_string_equal(take(p, buf, sizeof(buf)), "third");
	end_turn(p);
	assert_false(kb_conn_line_waiting(p->c));
}

static void test_replies_written_in_order_across_turns(void **state)
{
	struct pair *p = *state;
	size_t sent = 0, got = 0, n;
	char *big = malloc(1 << 20), buf[256];

	assert_non_null(big);
	memset(big, 'r', 1 << 20);
	big[(1 << 20) - 1] = '\n';
	/* More than the socket takes: the rest is kept by the connection. */
	assert_int_equal(kb_conn_begin_turn(p->c, &p->s), 0);
	assert_int_equal(kb_conn_reply(&p->s, big, 1 << 20), 0);
	assert_int_equal(kb_conn_flush(p->c, &p->s, 2), KB_IO_OK);
	end_turn(p);
	assert_true(p->c->out.len > 0);
	assert_true(p->c->out.len < (1 << 20));
	/* The next turn's reply goes after what was kept. */
	assert_int_equal(kb_conn_begin_turn(p->c, &p->s), 0);
	assert_int_equal(kb_conn_reply(&p->s, "next\n", 5), 0);
	while (got < (1 << 20) + 5) {
		assert_int_equal(kb_conn_flush(p->c, &p->s, 3), KB_IO_OK);
		while ((n = client_reads(p, buf, sizeof(buf))) > 0) {
			if (got + n > (1 << 20))
				assert_memory_equal(
					buf + ((1 << 20) > got ?
						       (1 << 20) - got :
						       0),
					"next\n" + (got > (1 << 20) ?
							    got - (1 << 20) :
							    0),
					got + n -
						((1 << 20) > got ? (1 << 20) :
								   got));
			got += n;
		}
		sent++;
		assert_true(sent < 100000);
	}
	end_turn(p);
	assert_int_equal(p->c->out.len, 0);
	free(big);
}

static void test_overlong_line_refused(void **state)
{
	struct pair *p = *state;
	enum kb_line got = KB_LINE_NONE;
	size_t sent = 0, n = KB_LINE_MAX + 1, len;
	char *big = malloc(4096);
	const char *line;

	assert_non_null(big);
	memset(big, 'x', 4096);
	assert_int_equal(kb_conn_begin_turn(p->c, &p->s), 0);
	/* A line with no newline within the limit, fed as it arrives. */
	while (sent < n && got == KB_LINE_NONE) {
		size_t chunk = n - sent < 4096 ? n - sent : 4096;

		assert_int_equal(write(p->peer, big, chunk), (ssize_t)chunk);
		sent += chunk;
		assert_int_equal(kb_conn_read(p->c, &p->s, 1), KB_IO_OK);
		got = kb_conn_peek_line(p->c, &p->s, &line, &len, 1);
	}
	free(big);
	assert_int_equal(sent, n);
	assert_int_equal(got, KB_LINE_TOO_LONG);
	/* What it sent is gone: nothing is kept or handled. */
	assert_int_equal(kb_conn_peek_line(p->c, &p->s, &line, &len, 2),
			 KB_LINE_NONE);
	end_turn(p);
	assert_int_equal(p->c->in.len, 0);
}

static void test_peer_close_is_eof(void **state)
{
	struct pair *p = *state;

	shutdown(p->peer, SHUT_WR);
	assert_int_equal(kb_conn_read(p->c, &p->s, 1), KB_IO_EOF);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_lines_cut_across_reads,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_line_not_taken_stays_for_the_next_turn, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_replies_written_in_order_across_turns, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_overlong_line_refused,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_peer_close_is_eof, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
