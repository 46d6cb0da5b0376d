// SPDX-License-Identifier: MIT
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "kb_kid.h"

#define V "0123456789abcdef0123456789abcdef"

static enum kb_kid_status parse(const char *kid, struct kb_keyref *ref)
{
	return kb_kid_parse(kid, strlen(kid), "host-1.example", ref);
}

static void test_valid(void **state)
{
	struct kb_keyref ref;

	assert_int_equal(parse("keybroker://host-1.example/keys/cmk", &ref),
			 KB_KID_OK);
	assert_string_equal(ref.name, "cmk");
	assert_string_equal(ref.version, "");
	assert_int_equal(parse("keybroker://host-1.example/keys/cmk/" V, &ref),
			 KB_KID_OK);
	assert_string_equal(ref.name, "cmk");
	assert_string_equal(ref.version, V);
}

static void test_other_instance(void **state)
{
	struct kb_keyref ref;

	assert_int_equal(parse("keybroker://host-2/keys/cmk", &ref),
			 KB_KID_OTHER_INSTANCE);
	assert_int_equal(parse("keybroker://host-1.exampl/keys/cmk", &ref),
			 KB_KID_OTHER_INSTANCE);
}

static void test_malformed(void **state)
{
	static const char *const bad[] = {
		"",
		"keybroker://",
		"keybroker:/host-1.example/keys/cmk",
		"https://host-1.example/keys/cmk",
		"keybroker://host-1.example",
		"keybroker://host-1.example/",
		"keybroker://host-1.example/keys/",
		"keybroker://host-1.example/key/cmk",
		"keybroker://host-1.example/keys/cmk/",
		"keybroker://host-1.example/keys/cmk/" V "/",
		"keybroker://host-1.example/keys/cmk/0123456789ABCDEF0123456789abcdef",
		"keybroker://host-1.example/keys/cmk/0123456789abcdef0123456789abcde",
		"keybroker://host-1.example/keys/cmk/" V "0",
		"keybroker://host-1.example/keys/c_mk",
		"keybroker://host-1.example/keys/../etc",
		"keybroker:///keys/cmk",
		"keybroker://host 1/keys/cmk",
	};
	struct kb_keyref ref;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(parse(bad[i], &ref), KB_KID_BAD_SYNTAX);
	/* Embedded NUL is not a terminator. */
	assert_int_equal(kb_kid_parse("keybroker://host-1.example/keys/a\0b",
				      35, "host-1.example", &ref),
			 KB_KID_BAD_SYNTAX);
}

static void test_name_limits(void **state)
{
	char name[KB_NAME_MAX + 2];

	memset(name, 'a', sizeof(name));
	assert_true(kb_name_valid(name, KB_NAME_MAX));
	assert_false(kb_name_valid(name, KB_NAME_MAX + 1));
	assert_false(kb_name_valid(name, 0));
	assert_true(kb_name_valid("a-B-9", 5));
	assert_false(kb_name_valid("a.b", 3));
	assert_true(kb_instance_valid("a.b", 3));
	memset(name, 'h', sizeof(name));
	assert_true(kb_instance_valid(name, KB_INSTANCE_MAX));
	assert_false(kb_instance_valid(name, KB_INSTANCE_MAX + 1));
}

static void test_format_round_trip(void **state)
{
	char kid[KB_KID_MAX], name[KB_NAME_MAX + 1], inst[KB_INSTANCE_MAX + 1];
	struct kb_keyref ref;

	memset(name, 'n', KB_NAME_MAX);
	name[KB_NAME_MAX] = '\0';
	memset(inst, 'i', KB_INSTANCE_MAX);
	inst[KB_INSTANCE_MAX] = '\0';
	/* The longest kid fits KB_KID_MAX exactly. */
	assert_int_equal(kb_kid_format(kid, sizeof(kid), inst, name, V), 0);
	assert_int_equal(strlen(kid) + 1, KB_KID_MAX);
	assert_int_equal(kb_kid_parse(kid, strlen(kid), inst, &ref), KB_KID_OK);
	assert_string_equal(ref.name, name);
	assert_string_equal(ref.version, V);
	assert_int_equal(kb_kid_format(kid, sizeof(kid) - 1, inst, name, V),
			 -1);
	assert_int_equal(kb_kid_format(kid, sizeof(kid), "h", "k", NULL), 0);
	assert_string_equal(kid, "keybroker://h/keys/k");
}

static void test_hex(void **state)
{
	unsigned char b[KB_VERSION_BYTES];
	char hex[KB_VERSION_LEN + 1];

	assert_int_equal(kb_hex_decode(b, sizeof(b), V), 0);
	kb_hex_encode(hex, b, sizeof(b));
	assert_string_equal(hex, V);
	assert_int_equal(kb_hex_decode(b, sizeof(b), V "0"), -1);
	assert_int_equal(kb_hex_decode(b, sizeof(b),
				       "0123456789ABCDEF0123456789abcdef"),
			 -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid),
		cmocka_unit_test(test_other_instance),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_name_limits),
		cmocka_unit_test(test_format_round_trip),
		cmocka_unit_test(test_hex),
	};

	return cmocka_run_group_tests_name("kid", tests, NULL, NULL);
}
