// SPDX-License-Identifier: MIT
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "kb_jread.h"

static int check(const char *s)
{
	struct kb_jspan root;

	return kb_jread_check(s, strlen(s), &root);
}

static void test_valid(void **state)
{
	static const char *const ok[] = {
		"{}",
		"[]",
		" {\"a\" : [1, -0.5e+3, true, false, null, \"x\"]} \n",
		"\"\\u00e9\\ud83d\\ude00\\\"\\\\\\/\\b\\f\\n\\r\\t\"",
		"\"caf\xc3\xa9 \xf0\x9f\x98\x80\"",
		"0",
		"-1E-2",
	};
	size_t i;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		assert_int_equal(check(ok[i]), 0);
}

static void test_garbage(void **state)
{
	static const char *const bad[] = {
		"",
		"{",
		"{\"a\":1,}",
		"[1,]",
		"{\"a\" 1}",
		"{a:1}",
		"01",
		"1.",
		"-",
		"+1",
		".5",
		"1e",
		"tru",
		"nul",
		"\"\\x\"",
		"\"\\u12\"",
		"\"\\u0000\"",
		"\"\\ud800\"",
		"\"\\udc00\"",
		"\"\\ud800\\u0041\"",
		"\"a\tb\"",
		"\"\xc0\xaf\"", /* overlong */
		"\"\xed\xa0\x80\"", /* a surrogate in UTF-8 */
		"\"\xf4\x90\x80\x80\"", /* above U+10FFFF */
		"\"\xe2\x82\"", /* truncated */
		"{} {}",
		"[1] x",
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (check(bad[i]) != -1)
			fail_msg("accepted: %s", bad[i]);
	}
	/* A NUL byte is not whitespace. */
	assert_int_equal(kb_jread_check("{}\0", 3,
					&(struct kb_jspan){ KB_J_NULL, 0, 0 }),
			 -1);
}

static void test_depth_limit(void **state)
{
	char deep[2 * KB_JREAD_MAX_DEPTH + 4];
	size_t n;

	/* Exactly the limit of containers is fine; one more is not. */
	for (n = 0; n < KB_JREAD_MAX_DEPTH; n++)
		deep[n] = '[';
	for (; n < 2 * KB_JREAD_MAX_DEPTH; n++)
		deep[n] = ']';
	deep[n] = '\0';
	assert_int_equal(check(deep), 0);
	memmove(deep + 1, deep, n + 1);
	deep[0] = '[';
	deep[n + 1] = ']';
	deep[n + 2] = '\0';
	assert_int_equal(check(deep), -1);
}

static void test_member(void **state)
{
	const char *t = "{\"id\":7,\"r\\u0065sult\":{\"value\":\"abc\"},"
			"\"a-very-long-member-name-that-no-lookup-would-use-"
			"because-it-is-longer-than-the-decoding-buffer-of-"
			"one-hundred-and-twenty-eight-bytes-xxxxxxxxxxxxxxx"
			"xxxxxxx\":1}";
	struct kb_jspan root, v, w;
	char out[8];
	long long id;
	size_t n;

	assert_int_equal(kb_jread_check(t, strlen(t), &root), 0);
	assert_int_equal(kb_jread_member(t, &root, "id", &v), 0);
	assert_int_equal(kb_jread_int(t, &v, &id), 0);
	assert_int_equal(id, 7);
	/* Member names are compared decoded. */
	assert_int_equal(kb_jread_member(t, &root, "result", &v), 0);
	assert_int_equal(v.type, KB_J_OBJECT);
	assert_int_equal(kb_jread_member(t, &v, "value", &w), 0);
	assert_int_equal(kb_jread_string(t, &w, out, sizeof(out), &n), 0);
	assert_string_equal(out, "abc");
	assert_int_equal(n, 3);
	assert_int_equal(kb_jread_member(t, &root, "absent", &v),
			 KB_JREAD_ABSENT);
	/* Not an object. */
	assert_int_equal(kb_jread_member(t, &w, "x", &v), KB_JREAD_AMBIGUOUS);
}

static void test_duplicate_member_is_refused(void **state)
{
	const char *t = "{\"id\":1,\"x\":2,\"i\\u0064\":3}";
	struct kb_jspan root, v;

	assert_int_equal(kb_jread_check(t, strlen(t), &root), 0);
	assert_int_equal(kb_jread_member(t, &root, "id", &v),
			 KB_JREAD_AMBIGUOUS);
	assert_int_equal(kb_jread_member(t, &root, "x", &v), 0);
	assert_int_equal(kb_jread_member(t, &root, "y", &v), KB_JREAD_ABSENT);
}

static void test_string_bounds(void **state)
{
	const char *t = "\"abcd\\u00e9\"";
	struct kb_jspan s;
	char out[7];
	size_t n;

	assert_int_equal(kb_jread_check(t, strlen(t), &s), 0);
	/* "abcd" + two bytes of U+00E9 + NUL: exactly 7. */
	assert_int_equal(kb_jread_string(t, &s, out, sizeof(out), &n), 0);
	assert_int_equal(n, 6);
	assert_int_equal(kb_jread_string(t, &s, out, sizeof(out) - 1, &n), -1);
	assert_int_equal(kb_jread_string(t, &s, out, 0, &n), -1);
}

static void test_integers(void **state)
{
	struct kb_jspan s;
	long long v;

	assert_int_equal(kb_jread_check("9007199254740991", 16, &s), 0);
	assert_int_equal(kb_jread_int("9007199254740991", &s, &v), 0);
	assert_true(v == 9007199254740991LL);
	assert_int_equal(kb_jread_check("9007199254740992", 16, &s), 0);
	assert_int_equal(kb_jread_int("9007199254740992", &s, &v), -1);
	assert_int_equal(kb_jread_check("-3", 2, &s), 0);
	assert_int_equal(kb_jread_int("-3", &s, &v), 0);
	assert_true(v == -3);
	assert_int_equal(kb_jread_check("1.0", 3, &s), 0);
	assert_int_equal(kb_jread_int("1.0", &s, &v), -1);
	assert_int_equal(kb_jread_check("1e2", 3, &s), 0);
	assert_int_equal(kb_jread_int("1e2", &s, &v), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_depth_limit),
		cmocka_unit_test(test_member),
		cmocka_unit_test(test_duplicate_member_is_refused),
		cmocka_unit_test(test_string_bounds),
		cmocka_unit_test(test_integers),
	};

	return cmocka_run_group_tests_name("jread", tests, NULL, NULL);
}
