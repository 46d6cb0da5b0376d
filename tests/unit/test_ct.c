// SPDX-License-Identifier: MIT
/*
 * Constant time, checked the ctgrind way: the secret bytes are marked
 * undefined for valgrind's memcheck, which then reports every branch and
 * every table index that depends on them. The unit run starts this
 * binary under valgrind (--error-exitcode), so such a branch fails it;
 * without valgrind the marks do nothing and only the results are checked.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include <valgrind/memcheck.h>

#include "kb_b64.h"

static void test_b64_encode_is_constant_time(void **state)
{
	unsigned char dek[64];
	char text[100];
	size_t i, n;

	for (i = 0; i < sizeof(dek); i++)
		dek[i] = (unsigned char)(i * 37 + 11);
	for (n = 0; n <= sizeof(dek); n++) {
		VALGRIND_MAKE_MEM_UNDEFINED(dek, sizeof(dek));
		kb_b64_encode(text, dek, n);
		VALGRIND_MAKE_MEM_DEFINED(dek, sizeof(dek));
		VALGRIND_MAKE_MEM_DEFINED(text, sizeof(text));
		assert_int_equal(strlen(text), kb_b64_encoded_len(n));
	}
}

static void test_b64_decode_is_constant_time(void **state)
{
	unsigned char dek[64], back[64];
	char text[100];
	size_t i, n, len, outlen;
	int r;

	for (i = 0; i < sizeof(dek); i++)
		dek[i] = (unsigned char)(i * 91 + 3);
	for (n = 0; n <= sizeof(dek); n++) {
		len = kb_b64_encode(text, dek, n);
		VALGRIND_MAKE_MEM_UNDEFINED(text, len);
		r = kb_b64_decode(back, sizeof(back), &outlen, text, len);
		VALGRIND_MAKE_MEM_DEFINED(&r, sizeof(r));
		VALGRIND_MAKE_MEM_DEFINED(back, sizeof(back));
		VALGRIND_MAKE_MEM_DEFINED(text, sizeof(text));
		assert_int_equal(r, 0);
		assert_int_equal(outlen, n);
		assert_memory_equal(back, dek, n);
	}
	/* A bad character is found without a branch on it, too. */
	len = kb_b64_encode(text, dek, 32);
	text[7] = '+';
	VALGRIND_MAKE_MEM_UNDEFINED(text, len);
	r = kb_b64_decode(back, sizeof(back), &outlen, text, len);
	VALGRIND_MAKE_MEM_DEFINED(&r, sizeof(r));
	VALGRIND_MAKE_MEM_DEFINED(text, sizeof(text));
	assert_int_equal(r, -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_b64_encode_is_constant_time),
		cmocka_unit_test(test_b64_decode_is_constant_time),
	};

	return cmocka_run_group_tests_name("ct", tests, NULL, NULL);
}
