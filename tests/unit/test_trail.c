// SPDX-License-Identifier: MIT
/*
 * The audit trail's format: record hashes, the text a checkpoint signs,
 * the audit key's id (RFC 7638, checked against a value computed with
 * another library), and ES256 signatures made by OpenSSL itself.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <string.h>

#include "kb_trail.h"

/* A P-256 key for these tests only. */
static const char test_key[] =
	"-----BEGIN EC PRIVATE KEY-----\n"
	"MHcCAQEEIHw1eRehmSUzB7GJSBUFLYbgWBL1xKIgiLldJ2yTeKbroAoGCCqGSM49\n"
	"AwEHoUQDQgAE3ZTbYc0OWx41WuBof137hTWyQ/84Zf4h3b//MCrYZdrfI8oT6p3l\n"
	"puvJoOpYNdDrWQdFmYBAohuuCL8fIcNePQ==\n"
	"-----END EC PRIVATE KEY-----\n";
/* Its thumbprint, computed by Python's cryptography and hashlib. */
static const char test_keyid[] = "O60Sl7yil1YtRof43PKp7443pqaXTetdWQ4GdFeKh_o";

static EVP_PKEY *load_key(void)
{
	BIO *b = BIO_new_mem_buf(test_key, -1);
	EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);

	BIO_free(b);
	assert_non_null(k);
	return k;
}

/* An ES256 signature of text by k, as r || s. */
static void sign(EVP_PKEY *k, const char *text, size_t len,
		 unsigned char sig[KB_TRAIL_SIG_LEN])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char der[80];
	const unsigned char *p = der;
	size_t n = sizeof(der);
	ECDSA_SIG *es;

	assert_int_equal(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, k),
			 1);
	assert_int_equal(EVP_DigestSign(ctx, der, &n,
					(const unsigned char *)text, len),
			 1);
	es = d2i_ECDSA_SIG(NULL, &p, (long)n);
	assert_non_null(es);
	assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, 32), 32);
	assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + 32, 32), 32);
	ECDSA_SIG_free(es);
	EVP_MD_CTX_free(ctx);
}

static void test_hash_is_sha256_hex(void **state)
{
	char hex[KB_TRAIL_HEX_LEN + 1];

	kb_trail_hash_hex("abc", 3, hex);
	assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223"
				 "b00361a396177a9cb410ff61f20015ad");
}

static void test_signed_text_has_five_lines(void **state)
{
	char buf[KB_TRAIL_SIGNED_MAX], origin[300];
	size_t n = kb_trail_signed_text(buf, "host-1", 42, "ab12", "shutdown");

	assert_string_equal(buf, "keybroker audit checkpoint v1\norigin "
				 "host-1\nsize 42\nhead ab12\nreason "
				 "shutdown\n");
	assert_int_equal(n, strlen(buf));
	memset(origin, 'o', sizeof(origin) - 1);
	origin[sizeof(origin) - 1] = '\0';
	assert_int_equal(kb_trail_signed_text(buf, origin, 1, "ab", "count"),
			 0);
	assert_int_equal(kb_trail_signed_text(buf, "h", 1, "ab",
					      "a-reason-far-too-long"),
			 0);
}

static void test_keyid_is_the_rfc7638_thumbprint(void **state)
{
	char keyid[KB_TRAIL_KEYID_LEN + 1];
	EVP_PKEY *k = load_key(), *rsa = EVP_RSA_gen(2048);

	assert_int_equal(kb_trail_keyid(k, keyid), 0);
	assert_string_equal(keyid, test_keyid);
	assert_int_equal(kb_trail_keyid(rsa, keyid), -1);
	EVP_PKEY_free(k);
	EVP_PKEY_free(rsa);
}

static void test_signatures_verify_and_nothing_else(void **state)
{
	unsigned char sig[KB_TRAIL_SIG_LEN];
	char text[KB_TRAIL_SIGNED_MAX];
	EVP_PKEY *k = load_key(), *other = EVP_EC_gen("P-256");
	size_t n = kb_trail_signed_text(text, "h", 7, "00ff", "interval");

	sign(k, text, n, sig);
	assert_true(kb_trail_verify(k, text, n, sig));
	assert_false(kb_trail_verify(other, text, n, sig));
	text[n - 2] ^= 1; /* another reason */
	assert_false(kb_trail_verify(k, text, n, sig));
	text[n - 2] ^= 1;
	sig[10] ^= 0x80;
	assert_false(kb_trail_verify(k, text, n, sig));
	memset(sig, 0, sizeof(sig));
	assert_false(kb_trail_verify(k, text, n, sig));
	EVP_PKEY_free(k);
	EVP_PKEY_free(other);
}

static void test_time_is_rfc3339_utc_microseconds(void **state)
{
	char t[KB_TRAIL_TIME_LEN];
	size_t i;

	kb_trail_time(t);
	assert_int_equal(strlen(t), 27);
	for (i = 0; i < 27; i++) {
		char want = "0000-00-00T00:00:00.000000Z"[i];

		if (want == '0')
			assert_true(t[i] >= '0' && t[i] <= '9');
		else
			assert_int_equal(t[i], want);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hash_is_sha256_hex),
		cmocka_unit_test(test_signed_text_has_five_lines),
		cmocka_unit_test(test_keyid_is_the_rfc7638_thumbprint),
		cmocka_unit_test(test_signatures_verify_and_nothing_else),
		cmocka_unit_test(test_time_is_rfc3339_utc_microseconds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
