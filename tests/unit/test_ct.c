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
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <string.h>
#include <valgrind/memcheck.h>

#include "kb_b64.h"
#include "kb_oaep.h"
#include "kb_pkcs1.h"

#define K 256

#define SECRET(p, n) VALGRIND_MAKE_MEM_UNDEFINED(p, n)
#define PUBLIC(p, n) VALGRIND_MAKE_MEM_DEFINED(p, n)

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

/* 00 02 PS 00 M with PS of nonzero bytes; bad: a wrong second byte. */
static void pkcs1_block(unsigned char *em, size_t mlen, bool bad)
{
	size_t i;

	em[0] = 0;
	em[1] = bad ? 1 : 2;
	for (i = 2; i < K - mlen - 1; i++)
		em[i] = (unsigned char)(i % 255 + 1);
	em[K - mlen - 1] = 0;
	for (i = K - mlen; i < K; i++)
		em[i] = (unsigned char)i;
}

static void test_pkcs1_decode_is_constant_time(void **state)
{
	unsigned char em[K], out[K], kdk[KB_PKCS1_KDK_LEN] = { 1, 2, 3 };
	size_t n, len;
	int r, bad;

	for (bad = 0; bad < 2; bad++) {
		for (len = 0; len <= K - 11; len += 61) {
			pkcs1_block(em, len, bad);
			SECRET(em, sizeof(em));
			r = kb_pkcs1_decode(out, sizeof(out), &n, em, K, kdk);
			PUBLIC(&r, sizeof(r));
			PUBLIC(&n, sizeof(n));
			PUBLIC(out, sizeof(out));
			PUBLIC(em, sizeof(em));
			assert_int_equal(r, 0);
			assert_true(n <= K - 11);
			if (!bad) {
				assert_int_equal(n, len);
				assert_memory_equal(out, em + K - len, len);
			}
		}
	}
}

static void test_oaep_decode_is_constant_time(void **state)
{
	EVP_PKEY *key = EVP_RSA_gen(2048);
	unsigned char msg[32], ct[K], em[K], out[K];
	EVP_PKEY_CTX *ctx;
	size_t len = K, n;
	int r, bad;

	assert_non_null(key);
	assert_int_equal(RAND_bytes(msg, sizeof(msg)), 1);
	ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
	assert_int_equal(EVP_PKEY_encrypt_init(ctx), 1);
	EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING);
	EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha256());
	EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256());
	assert_int_equal(EVP_PKEY_encrypt(ctx, ct, &len, msg, sizeof(msg)), 1);
	EVP_PKEY_CTX_free(ctx);
	ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
	assert_int_equal(EVP_PKEY_decrypt_init(ctx), 1);
	EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_NO_PADDING);
	len = K;
	assert_int_equal(EVP_PKEY_decrypt(ctx, em, &len, ct, K), 1);
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(key);
	for (bad = 0; bad < 2; bad++) {
		em[K - 1] ^= (unsigned char)bad;
		SECRET(em, sizeof(em));
		r = kb_oaep_decode(out, sizeof(out), &n, em, K, EVP_sha256());
		PUBLIC(&r, sizeof(r));
		PUBLIC(&n, sizeof(n));
		PUBLIC(out, sizeof(out));
		PUBLIC(em, sizeof(em));
		assert_int_equal(r, bad ? -1 : 0);
		if (!bad) {
			assert_int_equal(n, sizeof(msg));
			assert_memory_equal(out, msg, sizeof(msg));
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_b64_encode_is_constant_time),
		cmocka_unit_test(test_b64_decode_is_constant_time),
		cmocka_unit_test(test_pkcs1_decode_is_constant_time),
		cmocka_unit_test(test_oaep_decode_is_constant_time),
	};

	return cmocka_run_group_tests_name("ct", tests, NULL, NULL);
}
