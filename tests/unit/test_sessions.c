// SPDX-License-Identifier: MIT
/*
 * The token sessions and the connections waiting for one: a session is
 * taken while one is free, then connections queue, first in first out;
 * a session given back goes with the head of the queue; a holder that
 * yields puts its connection at the tail; the teardown takes whoever
 * still waits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "kb_sessions.h"

/* Stand-ins: kb_sessions never looks inside either. */
static struct kb_keyworker *const S1 = (struct kb_keyworker *)0x1001;
static struct kb_keyworker *const S2 = (struct kb_keyworker *)0x1002;

static void test_free_sessions_then_the_queue(void **state)
{
	struct kb_keyworker *all[] = { S1, S2 }, *w1 = NULL, *w2 = NULL, *w;
	struct kb_conn a, b, c;
	struct kb_sessions s;

	(void)state;
	assert_int_equal(kb_sessions_init(&s, all, 2), 0);
	assert_true(kb_sessions_take(&s, &a, &w1));
	assert_true(kb_sessions_try(&s, &w2));
	assert_true(w1 != w2);
	assert_false(kb_sessions_contended(&s));
	/* None free: a and b wait, in that order; try takes nothing. */
	assert_false(kb_sessions_try(&s, &w));
	assert_false(kb_sessions_take(&s, &a, &w));
	assert_false(kb_sessions_take(&s, &b, &w));
	assert_true(kb_sessions_contended(&s));
	/* A session given back comes with the head of the queue. */
	assert_ptr_equal(kb_sessions_give(&s, w1), &a);
	/* Its holder lets the next go first: a to the tail, b served. */
	assert_ptr_equal(kb_sessions_yield(&s, &a), &b);
	assert_false(kb_sessions_take(&s, &c, &w));
	assert_ptr_equal(kb_sessions_give(&s, w1), &a);
	assert_ptr_equal(kb_sessions_give(&s, w1), &c);
	/* Nothing waits: given back, free again; yield keeps its own. */
	assert_false(kb_sessions_contended(&s));
	assert_ptr_equal(kb_sessions_yield(&s, &c), &c);
	assert_null(kb_sessions_give(&s, w1));
	assert_null(kb_sessions_give(&s, w2));
	assert_true(kb_sessions_try(&s, &w));
	assert_true(kb_sessions_try(&s, &w));
	assert_false(kb_sessions_try(&s, &w));
	kb_sessions_uninit(&s);
}

static void test_teardown_takes_who_waits(void **state)
{
	struct kb_keyworker *all[] = { S1 }, *w;
	struct kb_conn conns[3];
	struct kb_sessions s;

	(void)state;
	assert_int_equal(kb_sessions_init(&s, all, 1), 0);
	assert_true(kb_sessions_take(&s, &conns[0], &w));
	assert_false(kb_sessions_take(&s, &conns[0], &w));
	assert_false(kb_sessions_take(&s, &conns[1], &w));
	assert_ptr_equal(kb_sessions_give(&s, S1), &conns[0]);
	assert_false(kb_sessions_take(&s, &conns[2], &w));
	assert_ptr_equal(kb_sessions_take_waiting(&s), &conns[1]);
	assert_ptr_equal(conns[1].wait_next, &conns[2]);
	assert_null(conns[2].wait_next);
	assert_false(kb_sessions_contended(&s));
	kb_sessions_uninit(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_free_sessions_then_the_queue),
		cmocka_unit_test(test_teardown_takes_who_waits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
