// SPDX-License-Identifier: MIT
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "kb_duration.h"

static int64_t parse(const char *text)
{
	int64_t s = -7;

	if (kb_duration_parse(text, strlen(text), &s) != 0)
		return -1;
	return s;
}

static void test_accepts_each_designator(void **state)
{
	assert_int_equal(parse("P1Y"), 365 * 86400);
	assert_int_equal(parse("P2M"), 60 * 86400);
	assert_int_equal(parse("P3W"), 21 * 86400);
	assert_int_equal(parse("P90D"), 90 * 86400);
	assert_int_equal(parse("PT12H"), 12 * 3600);
	assert_int_equal(parse("PT30M"), 1800);
	assert_int_equal(parse("PT5S"), 5);
	assert_int_equal(parse("P1DT1H1M1S"), 86400 + 3661);
	assert_int_equal(parse("P1Y1M"), 395 * 86400); /* M before T: months */
}

static void test_refuses_what_is_not_a_duration(void **state)
{
	static const char *bad[] = {
		"",
		"P",
		"PT",
		"P1",
		"1D",
		"P-1D",
		"P1.5D",
		"PT1D",
		"P1H",
		"P1D1Y",
		"P1DT",
		"P1D T1H",
		"p1d",
		"P1DD",
		"PT1S1M",
		"P0D",
		"PT0S",
		"P1DTT1H",
		"P99999999999D",
		"P201Y",
		"P1D ",
		"P 1D",
		"P1WT",
		"P1Y2Y",
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (parse(bad[i]) != -1)
			fail_msg("accepted '%s'", bad[i]);
}

static void test_bounded(void **state)
{
	int64_t s;

	assert_int_equal(parse("P200Y"), KB_DURATION_MAX_S);
	assert_int_equal(parse("P73001D"), -1);
	/* Longer than any duration we accept, even if it would parse. */
	assert_int_equal(kb_duration_parse("P00000000000000000000000000000001D",
					   33, &s),
			 -1);
	/* Only len bytes are read. */
	assert_int_equal(kb_duration_parse("P1DXYZ", 3, &s), 0);
	assert_int_equal(s, 86400);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_accepts_each_designator),
		cmocka_unit_test(test_refuses_what_is_not_a_duration),
		cmocka_unit_test(test_bounded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
