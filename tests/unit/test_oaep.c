// SPDX-License-Identifier: MIT
/*
 * The constant-time OAEP decoder against OpenSSL: OpenSSL encrypts with
 * OAEP, a raw RSA decryption (what a token's CKM_RSA_X_509 returns) gives
 * the encoded message, and kb_oaep_decode must recover the plaintext or
 * refuse a damaged encoding.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <string.h>

#include "kb_oaep.h"

#define K 256 /* RSA-2048 */

static EVP_PKEY *key;

static int setup(void **state)
{
	key = EVP_RSA_gen(2048);
	return key == NULL ? -1 : 0;
}

static int teardown(void **state)
{
	EVP_PKEY_free(key);
	return 0;
}

static void encrypt_oaep(const EVP_MD *md, const unsigned char *m, size_t n,
			 unsigned char *ct)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
	size_t len = K;

	assert_non_null(ctx);
	assert_int_equal(EVP_PKEY_encrypt_init(ctx), 1);
	assert_int_equal(
		EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_oaep_md(ctx, md), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md), 1);
	assert_int_equal(EVP_PKEY_encrypt(ctx, ct, &len, m, n), 1);
	assert_int_equal(len, K);
	EVP_PKEY_CTX_free(ctx);
}

/* What CKM_RSA_X_509 decryption returns: c^d mod n, k bytes. */
static void raw_decrypt(const unsigned char *ct, unsigned char *em)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
	size_t len = K;

	assert_non_null(ctx);
	assert_int_equal(EVP_PKEY_decrypt_init(ctx), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_NO_PADDING), 1);
	assert_int_equal(EVP_PKEY_decrypt(ctx, em, &len, ct, K), 1);
	assert_int_equal(len, K);
	EVP_PKEY_CTX_free(ctx);
}

static void round_trip(const EVP_MD *md, size_t n)
{
	unsigned char m[K], ct[K], em[K], out[K];
	size_t outlen = 0;

	assert_int_equal(RAND_bytes(m, (int)sizeof(m)), 1);
	encrypt_oaep(md, m, n, ct);
	raw_decrypt(ct, em);
	assert_int_equal(kb_oaep_decode(out, sizeof(out), &outlen, em, K, md),
			 0);
	assert_int_equal(outlen, n);
	assert_memory_equal(out, m, n);
}

static void test_sha256_all_lengths(void **state)
{
	size_t n;

	/* 0 .. k - 2*32 - 2 = 190 bytes, the largest OAEP-256 message. */
	for (n = 0; n <= K - 2 * 32 - 2; n += (n < 40 ? 1 : 15))
		round_trip(EVP_sha256(), n);
	round_trip(EVP_sha256(), K - 2 * 32 - 2);
}

static void test_sha1(void **state)
{
	round_trip(EVP_sha1(), 32);
	round_trip(EVP_sha1(), K - 2 * 20 - 2);
}

/* Flips one byte of the encoded message and expects a refusal. */
static void damaged(size_t at)
{
	unsigned char m[32] = { 1, 2, 3 }, ct[K], em[K], out[K];
	size_t outlen = 0;

	encrypt_oaep(EVP_sha256(), m, sizeof(m), ct);
	raw_decrypt(ct, em);
	em[at] ^= 0x01;
	assert_int_equal(kb_oaep_decode(out, sizeof(out), &outlen, em, K,
					EVP_sha256()),
			 -1);
}

static void test_damaged_encodings(void **state)
{
	damaged(0); /* leading byte Y must be zero */
	damaged(1); /* masked seed */
	damaged(40); /* masked label hash */
	damaged(100); /* masked padding string */
	damaged(K - 33); /* 0x01 separator region */
}

static void test_wrong_hash_and_sizes(void **state)
{
	unsigned char m[32] = { 0 }, ct[K], em[K], out[K];
	size_t outlen;

	encrypt_oaep(EVP_sha256(), m, sizeof(m), ct);
	raw_decrypt(ct, em);
	assert_int_equal(kb_oaep_decode(out, sizeof(out), &outlen, em, K,
					EVP_sha1()),
			 -1);
	/* Output buffer smaller than k: refused up front. */
	assert_int_equal(
		kb_oaep_decode(out, K - 1, &outlen, em, K, EVP_sha256()), -1);
	/* A modulus too small for the hash. */
	assert_int_equal(kb_oaep_decode(out, sizeof(out), &outlen, em, 65,
					EVP_sha256()),
			 -1);
	memset(em, 0, sizeof(em));
	assert_int_equal(kb_oaep_decode(out, sizeof(out), &outlen, em, K,
					EVP_sha256()),
			 -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sha256_all_lengths),
		cmocka_unit_test(test_sha1),
		cmocka_unit_test(test_damaged_encodings),
		cmocka_unit_test(test_wrong_hash_and_sizes),
	};

	return cmocka_run_group_tests_name("oaep", tests, setup, teardown);
}
