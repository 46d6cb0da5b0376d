// SPDX-License-Identifier: MIT
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "kb_b64.h"

static void check_encode(const char *in, const char *want)
{
	char out[64];

	assert_int_equal(kb_b64_encode(out, (const unsigned char *)in,
				       strlen(in)),
			 strlen(want));
	assert_string_equal(out, want);
	assert_int_equal(kb_b64_encoded_len(strlen(in)), strlen(want));
}

static int decode(const char *in, unsigned char *out, size_t max, size_t *len)
{
	return kb_b64_decode(out, max, len, in, strlen(in));
}

static void test_rfc4648_vectors(void **state)
{
	check_encode("", "");
	check_encode("f", "Zg");
	check_encode("fo", "Zm8");
	check_encode("foo", "Zm9v");
	check_encode("foob", "Zm9vYg");
	check_encode("fooba", "Zm9vYmE");
	check_encode("foobar", "Zm9vYmFy");
}

static void test_url_alphabet(void **state)
{
	const unsigned char in[] = { 0xfb, 0xff, 0xbf };
	unsigned char out[8];
	char text[8];
	size_t len;

	kb_b64_encode(text, in, sizeof(in));
	assert_string_equal(text, "-_-_");
	assert_int_equal(decode("-_-_", out, sizeof(out), &len), 0);
	assert_int_equal(len, 3);
	assert_memory_equal(out, in, 3);
}

static void test_round_trip_all_lengths(void **state)
{
	unsigned char in[300], out[300];
	char text[512];
	size_t n, len;

	for (n = 0; n < sizeof(in); n++)
		in[n] = (unsigned char)(n * 37 + 11);
	for (n = 0; n <= sizeof(in); n++) {
		kb_b64_encode(text, in, n);
		assert_int_equal(decode(text, out, sizeof(out), &len), 0);
		assert_int_equal(len, n);
		assert_memory_equal(out, in, n);
	}
}

static void test_rejects_garbage(void **state)
{
	unsigned char out[16];
	size_t len;

	assert_int_equal(decode("Zg==", out, sizeof(out), &len), -1);
	assert_int_equal(decode("Zm9v+g", out, sizeof(out), &len), -1);
	assert_int_equal(decode("Zm9v/g", out, sizeof(out), &len), -1);
	assert_int_equal(decode("Zm 9v", out, sizeof(out), &len), -1);
	assert_int_equal(decode("Zm9v\n", out, sizeof(out), &len), -1);
	assert_int_equal(decode("\xc3\xa9", out, sizeof(out), &len), -1);
	/* An impossible length: one character carries no whole byte. */
	assert_int_equal(decode("Zm9vY", out, sizeof(out), &len), -1);
	/* Non-zero trailing bits: a second encoding of "f". */
	assert_int_equal(decode("Zh", out, sizeof(out), &len), -1);
	assert_int_equal(kb_b64_decode(out, sizeof(out), &len, "Zg\0g", 4), -1);
}

static void test_output_limit(void **state)
{
	unsigned char out[6];
	size_t len;

	/* Exactly fits. */
	assert_int_equal(decode("Zm9vYmFy", out, 6, &len), 0);
	assert_int_equal(len, 6);
	/* One byte short: refused before writing past the end. */
	assert_int_equal(decode("Zm9vYmFy", out, 5, &len), -1);
	assert_int_equal(decode("Zm9vYmE", out, 4, &len), -1);
	/* A truncated encoding leaves non-zero bits: refused. */
	assert_int_equal(decode("Zm9vYm", out, 6, &len), -1);
	assert_int_equal(decode("Zm9vYg", out, 6, &len), 0);
	assert_int_equal(len, 4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc4648_vectors),
		cmocka_unit_test(test_url_alphabet),
		cmocka_unit_test(test_round_trip_all_lengths),
		cmocka_unit_test(test_rejects_garbage),
		cmocka_unit_test(test_output_limit),
	};

	return cmocka_run_group_tests_name("base64url", tests, NULL, NULL);
}
