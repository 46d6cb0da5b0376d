// SPDX-License-Identifier: MIT
/*
 * kb_json_text's own writer (JSON_COMPACT | JSON_ENSURE_ASCII) against
 * jansson's: byte for byte the same text, for every escape, code points
 * inside and outside the BMP, nesting, numbers, and random documents.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kb_json.h"

#define FLAGS (JSON_COMPACT | JSON_ENSURE_ASCII)

/* kb_json_text(o) must be what json_dumps writes. */
static void same(const json_t *o)
{
	char *want = json_dumps(o, FLAGS), *got;
	size_t len = 0;

	assert_non_null(want);
	got = kb_json_text(o, FLAGS, &len);
	assert_non_null(got);
	assert_string_equal(got, want);
	assert_int_equal(len, strlen(want));
	free(got);
	free(want);
}

/* Appends code point cp to s as UTF-8. */
static size_t utf8(char *s, uint32_t cp)
{
	if (cp < 0x80) {
		s[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		s[0] = (char)(0xC0 | cp >> 6);
		s[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		s[0] = (char)(0xE0 | cp >> 12);
		s[1] = (char)(0x80 | (cp >> 6 & 0x3F));
		s[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	s[0] = (char)(0xF0 | cp >> 18);
	s[1] = (char)(0x80 | (cp >> 12 & 0x3F));
	s[2] = (char)(0x80 | (cp >> 6 & 0x3F));
	s[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

static void test_escapes_and_code_points(void **state)
{
	char s[8 * 0x110];
	size_t n = 0;
	uint32_t cp;
	json_t *o;

	(void)state;
	/* Every ASCII character, the controls and DEL among them. */
	for (cp = 1; cp < 0x80; cp++)
		n += utf8(s + n, cp);
	/* Two-, three- and four-byte sequences, and the edges. */
	for (cp = 0x80; cp < 0x110; cp++)
		n += utf8(s + n, cp);
	n += utf8(s + n, 0x7FF);
	n += utf8(s + n, 0x800);
	n += utf8(s + n, 0xD7FF);
	n += utf8(s + n, 0xE000);
	n += utf8(s + n, 0xFFFF);
	n += utf8(s + n, 0x10000);
	n += utf8(s + n, 0x1F600);
	n += utf8(s + n, 0x10FFFF);
	o = json_pack("{s:s%}", "k\"\\\n\xc3\xa9", s, n);
	assert_non_null(o);
	same(o);
	json_decref(o);
}

static void test_values_and_nesting(void **state)
{
	json_t *o;

	(void)state;
	o = json_pack("{s:i, s:I, s:I, s:b, s:b, s:n, s:{}, s:[], "
		      "s:[i, [s, {s:[]}], {}], s:s, s:{s:{s:s}}}",
		      "zero", 0, "big", (json_int_t)9007199254740991LL, "min",
		      (json_int_t)INT64_MIN, "t", 1, "f", 0, "null", "empty",
		      "none", "mixed", -1, "a", "b", "c", "s", "", "deep", "x",
		      "y", "z");
	assert_non_null(o);
	same(o);
	json_decref(o);
	/* An array at the top, and reals (left to jansson). */
	o = json_pack("[f, {s:f}, s]", 1.5, "r", 1e300, "x");
	assert_non_null(o);
	same(o);
	json_decref(o);
}

/* A random document of depth at most d. */
static json_t *random_value(unsigned int *seed, int d)
{
	char s[64];
	size_t n = 0, len;
	json_t *o;
	int i, k;

	switch (rand_r(seed) % (d > 0 ? 6 : 4)) {
	case 0:
		len = (size_t)(rand_r(seed) % 12);
		while (len-- > 0) {
			uint32_t cp =
				(uint32_t)rand_r(seed) % 4 == 0 ?
					(uint32_t)rand_r(seed) % 0x10FFFF :
					(uint32_t)rand_r(seed) % 0x100;

			if (cp == 0 || (cp >= 0xD800 && cp < 0xE000))
				cp = 'x';
			n += utf8(s + n, cp);
		}
		return json_stringn(s, n);
	case 1:
		return json_integer((json_int_t)rand_r(seed) - RAND_MAX / 2);
	case 2:
		return rand_r(seed) % 2 ? json_true() : json_null();
	case 3:
		return json_false();
	case 4:
		o = json_array();
		k = rand_r(seed) % 5;
		for (i = 0; i < k; i++)
			json_array_append_new(o, random_value(seed, d - 1));
		return o;
	default:
		o = json_object();
		k = rand_r(seed) % 5;
		for (i = 0; i < k; i++) {
			snprintf(s, sizeof(s), "k%d\xe2\x82\xac%d", i,
				 rand_r(seed) % 100);
			json_object_set_new(o, s, random_value(seed, d - 1));
		}
		return o;
	}
}

static void test_random_documents(void **state)
{
	unsigned int seed = 20261130;
	json_t *o;
	int i;

	(void)state;
	for (i = 0; i < 2000; i++) {
		o = json_array();
		json_array_append_new(o, random_value(&seed, 4));
		same(o);
		json_decref(o);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escapes_and_code_points),
		cmocka_unit_test(test_values_and_nesting),
		cmocka_unit_test(test_random_documents),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
