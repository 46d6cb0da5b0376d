// SPDX-License-Identifier: MIT
/*
 * PKCS#1 v1.5 decoding with implicit rejection against the published test
 * vectors (tests/unit/data): for their key, the KDK is derived as the
 * draft says (HMAC-SHA-256 keyed by SHA-256 of the private exponent, over
 * the ciphertext), a raw RSA decryption gives the encoded message, and
 * kb_pkcs1_decode must give the expected message, real or synthetic.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kb_pkcs1.h"

#define K 256

static EVP_PKEY *key;

static int setup(void **state)
{
	FILE *f = fopen(TEST_DATA "/rsa-2048-2.pem", "r");

	if (f == NULL)
		return -1;
	key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	return key == NULL ? -1 : 0;
}

static int teardown(void **state)
{
	EVP_PKEY_free(key);
	return 0;
}

static size_t unhex(const char *s, unsigned char *out, size_t max)
{
	size_t n = strlen(s) / 2, i;

	assert_true(n <= max);
	for (i = 0; i < n; i++)
		assert_int_equal(sscanf(s + 2 * i, "%2hhx", &out[i]), 1);
	return n;
}

/* The draft's KDK: HMAC-SHA-256(SHA-256(d as k bytes), c as k bytes). */
static void draft_kdk(const unsigned char *c, unsigned char *kdk)
{
	unsigned char d[K], dhash[32];
	size_t len = sizeof(kdk[0]) * 32;
	BIGNUM *bn = NULL;

	assert_int_equal(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_D, &bn),
			 1);
	assert_int_equal(BN_bn2binpad(bn, d, K), K);
	BN_clear_free(bn);
	assert_int_equal(EVP_Digest(d, K, dhash, NULL, EVP_sha256(), NULL), 1);
	assert_int_equal(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, dhash,
				   sizeof(dhash), c, K, kdk, 32, &len) != NULL,
			 1);
}

/* Raw RSA: what a token's CKM_RSA_X_509 returns. */
static void raw_decrypt(const unsigned char *c, unsigned char *em)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
	size_t len = K;

	assert_non_null(ctx);
	assert_int_equal(EVP_PKEY_decrypt_init(ctx), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_NO_PADDING), 1);
	assert_int_equal(EVP_PKEY_decrypt(ctx, em, &len, c, K), 1);
	assert_int_equal(len, K);
	EVP_PKEY_CTX_free(ctx);
}

static void test_published_vectors(void **state)
{
	unsigned char c[K], em[K], want[K], got[K], kdk[32];
	char line[1200], hex[600];
	size_t wantlen, gotlen;
	int vectors = 0;
	FILE *f = fopen(TEST_DATA "/pkcs1-implicit-rejection.txt", "r");

	assert_non_null(f);
	while (fgets(line, sizeof(line), f) != NULL) {
		if (sscanf(line, "in %599s", hex) != 1)
			continue;
		assert_int_equal(unhex(hex, c, sizeof(c)), K);
		assert_non_null(fgets(line, sizeof(line), f));
		assert_int_equal(strncmp(line, "out", 3), 0);
		wantlen = sscanf(line, "out %599s", hex) == 1 ?
				  unhex(hex, want, sizeof(want)) :
				  0;
		draft_kdk(c, kdk);
		raw_decrypt(c, em);
		assert_int_equal(kb_pkcs1_decode(got, sizeof(got), &gotlen, em,
						 K, kdk),
				 0);
		if (gotlen != wantlen || memcmp(got, want, wantlen) != 0)
			fail_msg("vector %d: got %zu bytes, want %zu", vectors,
				 gotlen, wantlen);
		vectors++;
	}
	fclose(f);
	assert_int_equal(vectors, 15);
}

static void test_sizes(void **state)
{
	unsigned char em[K] = { 0, 2 }, out[K], kdk[32] = { 0 };
	size_t n;

	/* Public size checks: out too small, k too small or too large. */
	assert_int_equal(kb_pkcs1_decode(out, K - 1, &n, em, K, kdk), -1);
	assert_int_equal(kb_pkcs1_decode(out, K, &n, em, 10, kdk), -1);
	assert_int_equal(kb_pkcs1_decode(out, K, &n, em, 2000, kdk), -1);
	/* No separator at all: a synthetic message, not an error. */
	memset(em + 2, 0xff, K - 2);
	assert_int_equal(kb_pkcs1_decode(out, K, &n, em, K, kdk), 0);
	assert_true(n <= K - 11);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_published_vectors),
		cmocka_unit_test(test_sizes),
	};

	return cmocka_run_group_tests_name("pkcs1", tests, setup, teardown);
}
