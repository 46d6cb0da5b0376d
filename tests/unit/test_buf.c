// SPDX-License-Identifier: MIT
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "kb_buf.h"

static void test_grows_by_doubling_up_to_max(void **state)
{
	struct kb_buf b = { NULL, 0, 0 };

	assert_int_equal(kb_buf_reserve(&b, 1, 16, 100), 0);
	assert_int_equal(b.cap, 16);
	assert_int_equal(kb_buf_append(&b, "0123456789abcdef", 16, 16, 100), 0);
	assert_int_equal(kb_buf_append(&b, "x", 1, 16, 100), 0);
	assert_int_equal(b.cap, 32);
	assert_int_equal(kb_buf_reserve(&b, 60, 16, 100), 0);
	assert_int_equal(b.cap, 100); /* 128 would pass max */
	assert_memory_equal(b.p,
			    "0123456789abcdef"
			    "x",
			    17);
	kb_buf_free(&b);
	assert_null(b.p);
	assert_int_equal(b.len + b.cap, 0);
}

static void test_refuses_past_max(void **state)
{
	struct kb_buf b = { NULL, 0, 0 };

	assert_int_equal(kb_buf_append(&b, "abcd", 4, 4, 6), 0);
	assert_int_equal(kb_buf_append(&b, "efg", 3, 4, 6), -1);
	/* Nothing changed by the refusal. */
	assert_int_equal(b.len, 4);
	assert_memory_equal(b.p, "abcd", 4);
	assert_int_equal(kb_buf_reserve(&b, SIZE_MAX, 4, SIZE_MAX), -1);
	kb_buf_free(&b);
}

static void test_consume_moves_and_empty_gives_back(void **state)
{
	struct kb_buf b = { NULL, 0, 0 };

	assert_int_equal(kb_buf_append(&b, "line1\nline2\n", 12, 64, 64), 0);
	kb_buf_consume(&b, 6);
	assert_int_equal(b.len, 6);
	assert_memory_equal(b.p, "line2\n", 6);
	/* The tail the move left behind is wiped. */
	assert_memory_equal(b.p + 6, "\0\0\0\0\0\0", 6);
	kb_buf_consume(&b, 6);
	assert_null(b.p);
	assert_int_equal(b.cap, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_grows_by_doubling_up_to_max),
		cmocka_unit_test(test_refuses_past_max),
		cmocka_unit_test(test_consume_moves_and_empty_gives_back),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
