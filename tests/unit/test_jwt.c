// SPDX-License-Identifier: MIT
/*
 * Token verification: tokens signed here with OpenSSL (RS256, PS256,
 * ES256) against JWKS documents built from the same keys, and every way a
 * token must be refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kb_b64.h"
#include "kb_jwk.h"
#include "kb_jwt.h"

#define NOW 1800000000LL
#define ISS "https://issuer.example"

static EVP_PKEY *rsa, *ec, *other_rsa;
static struct kb_jwks *keys;
static struct kb_jwt_issuer issuer;

static char *b64(const void *p, size_t n)
{
	char *s = malloc(kb_b64_encoded_len(n) + 1);

	assert_non_null(s);
	kb_b64_encode(s, p, n);
	return s;
}

static char *bn_b64(EVP_PKEY *k, const char *name)
{
	unsigned char buf[512];
	BIGNUM *bn = NULL;
	int n;

	assert_int_equal(EVP_PKEY_get_bn_param(k, name, &bn), 1);
	n = BN_bn2bin(bn, buf);
	BN_free(bn);
	return b64(buf, (size_t)n);
}

static char *jwks_json(void)
{
	unsigned char pt[65];
	char *n = bn_b64(rsa, OSSL_PKEY_PARAM_RSA_N);
	char *e = bn_b64(rsa, OSSL_PKEY_PARAM_RSA_E);
	char *x, *y, *out = malloc(4096);
	size_t len;

	assert_int_equal(
		EVP_PKEY_get_octet_string_param(ec, OSSL_PKEY_PARAM_PUB_KEY, pt,
						sizeof(pt), &len),
		1);
	assert_int_equal(len, 65);
	x = b64(pt + 1, 32);
	y = b64(pt + 33, 32);
	snprintf(out, 4096,
		 "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"r1\",\"use\":\"sig\","
		 "\"n\":\"%s\",\"e\":\"%s\"},{\"kty\":\"EC\",\"kid\":\"e1\","
		 "\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}]}",
		 n, e, x, y);
	free(n);
	free(e);
	free(x);
	free(y);
	return out;
}

static int setup(void **state)
{
	char err[256], *text;

	rsa = EVP_RSA_gen(2048);
	other_rsa = EVP_RSA_gen(2048);
	ec = EVP_EC_gen("P-256");
	if (!rsa || !ec || !other_rsa)
		return -1;
	text = jwks_json();
	if (kb_jwks_parse(text, strlen(text), &keys, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	free(text);
	issuer = (struct kb_jwt_issuer){
		.issuer = ISS,
		.audience = "keybroker",
		.algs = KB_JWS_RS256 | KB_JWS_PS256 | KB_JWS_ES256,
		.keys = keys,
		.max_lifetime_s = 3600,
		.identity_claim = "sub",
	};
	return 0;
}

static int teardown(void **state)
{
	kb_jwks_free(keys);
	EVP_PKEY_free(rsa);
	EVP_PKEY_free(other_rsa);
	EVP_PKEY_free(ec);
	return 0;
}

/* Signs header.payload with key the way alg says. */
static char *sign(const char *alg, EVP_PKEY *key, const char *header,
		  const char *payload)
{
	char *h = b64(header, strlen(header)),
	     *p = b64(payload, strlen(payload));
	unsigned char sig[600], raw[64];
	size_t siglen = sizeof(sig), n;
	EVP_PKEY_CTX *pctx;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	char *input, *s, *out;

	n = strlen(h) + strlen(p) + 2;
	input = malloc(n);
	snprintf(input, n, "%s.%s", h, p);
	assert_int_equal(EVP_DigestSignInit(md, &pctx, EVP_sha256(), NULL, key),
			 1);
	if (strcmp(alg, "PS256") == 0) {
		EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
		EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32);
	}
	assert_int_equal(EVP_DigestSign(md, sig, &siglen,
					(unsigned char *)input, strlen(input)),
			 1);
	EVP_MD_CTX_free(md);
	if (strcmp(alg, "ES256") == 0) {
		const unsigned char *q = sig;
		ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &q, (long)siglen);

		assert_non_null(es);
		BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, 32);
		BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + 32, 32);
		ECDSA_SIG_free(es);
		s = b64(raw, 64);
	} else {
		s = b64(sig, siglen);
	}
	out = malloc(strlen(input) + strlen(s) + 2);
	sprintf(out, "%s.%s", input, s);
	free(h);
	free(p);
	free(s);
	free(input);
	return out;
}

static char *claims(const char *extra)
{
	char *p = malloc(512);

	snprintf(p, 512,
		 "{\"iss\":\"" ISS
		 "\",\"sub\":\"system:serviceaccount:ns:etl\","
		 "\"aud\":\"keybroker\",\"iat\":%lld,\"exp\":%lld%s}",
		 NOW - 10, NOW + 600, extra);
	return p;
}

static int verify(const char *token, char *err)
{
	struct kb_jwt_claims c;

	return kb_jwt_verify(token, strlen(token), &issuer, 1, NOW, NULL, NULL,
			     &c, err, 256);
}

static void expect_refused(const char *token, const char *want)
{
	char err[256] = "";

	assert_int_equal(verify(token, err), -1);
	if (strstr(err, want) == NULL)
		fail_msg("error '%s' does not contain '%s'", err, want);
}

static void test_accepts_rs256_ps256_es256(void **state)
{
	static const struct {
		const char *alg, *kid;
		EVP_PKEY **key;
	} cases[] = { { "RS256", "r1", &rsa },
		      { "PS256", "r1", &rsa },
		      { "ES256", "e1", &ec } };
	struct kb_jwt_claims c;
	char hdr[64], err[256], *p = claims(",\"jti\":\"j-1\""), *t;
	size_t i;

	for (i = 0; i < 3; i++) {
		snprintf(hdr, sizeof(hdr), "{\"alg\":\"%s\",\"kid\":\"%s\"}",
			 cases[i].alg, cases[i].kid);
		t = sign(cases[i].alg, *cases[i].key, hdr, p);
		if (kb_jwt_verify(t, strlen(t), &issuer, 1, NOW, NULL, NULL, &c,
				  err, sizeof(err)) != 0)
			fail_msg("%s: %s", cases[i].alg, err);
		assert_string_equal(c.subject, "system:serviceaccount:ns:etl");
		assert_string_equal(c.jti, "j-1");
		assert_int_equal(c.exp, NOW + 600);
		assert_ptr_equal(c.issuer, &issuer);
		free(t);
	}
	free(p);
}

static void test_refuses_alg_none(void **state)
{
	char *h = b64("{\"alg\":\"none\"}", 14), *p0 = claims(""),
	     *p = b64(p0, strlen(p0)), t[1024];

	snprintf(t, sizeof(t), "%s.%s.", h, p);
	expect_refused(t, "algorithm is not accepted");
	free(h);
	free(p);
	free(p0);
}

static void test_refuses_unpinned_alg(void **state)
{
	char *p = claims(""),
	     *t = sign("ES256", ec, "{\"alg\":\"ES256\",\"kid\":\"e1\"}", p);

	issuer.algs = KB_JWS_RS256;
	expect_refused(t, "algorithm is not accepted for issuer");
	issuer.algs = KB_JWS_RS256 | KB_JWS_PS256 | KB_JWS_ES256;
	free(t);
	free(p);
}

static void test_refuses_hs256_with_public_key_as_secret(void **state)
{
	unsigned char pub[1024], mac[32];
	unsigned char *q = pub;
	char *h = b64("{\"alg\":\"HS256\",\"kid\":\"r1\"}", 26),
	     *p0 = claims(""), *p = b64(p0, strlen(p0)), in[2048], t[2048], *s;
	size_t maclen = sizeof(mac);
	int publen = i2d_PUBKEY(rsa, &q);

	snprintf(in, sizeof(in), "%s.%s", h, p);
	assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, pub,
				  (size_t)publen, (unsigned char *)in,
				  strlen(in), mac, sizeof(mac), &maclen));
	s = b64(mac, maclen);
	snprintf(t, sizeof(t), "%s.%s", in, s);
	expect_refused(t, "algorithm is not accepted");
	free(h);
	free(p);
	free(p0);
	free(s);
}

static void test_refuses_embedded_and_remote_keys(void **state)
{
	static const char *const hdrs[] = {
		"{\"alg\":\"RS256\",\"kid\":\"r1\",\"jwk\":{\"kty\":\"RSA\"}}",
		"{\"alg\":\"RS256\",\"kid\":\"r1\",\"jku\":\"https://x/\"}",
		"{\"alg\":\"RS256\",\"kid\":\"r1\",\"x5u\":\"https://x/\"}",
		"{\"alg\":\"RS256\",\"kid\":\"r1\",\"x5c\":[\"AA\"]}",
		"{\"alg\":\"RS256\",\"kid\":\"r1\",\"crit\":[\"exp\"]}",
	};
	char *p = claims(""), *t;
	size_t i;

	for (i = 0; i < sizeof(hdrs) / sizeof(hdrs[0]); i++) {
		t = sign("RS256", rsa, hdrs[i], p);
		expect_refused(t, "token header carries");
		free(t);
	}
	free(p);
}

static void test_refuses_unknown_kid(void **state)
{
	char *p = claims(""), *t;

	t = sign("RS256", rsa, "{\"alg\":\"RS256\",\"kid\":\"r2\"}", p);
	expect_refused(t, "matches no key");
	free(t);
	t = sign("RS256", rsa,
		 "{\"alg\":\"RS256\",\"kid\":\"../../../etc/passwd\"}", p);
	expect_refused(t, "matches no key");
	free(t);
	/* No kid and more than one key: ambiguous, refused. */
	t = sign("RS256", rsa, "{\"alg\":\"RS256\"}", p);
	expect_refused(t, "matches no key");
	free(t);
	free(p);
}

static void test_refuses_bad_signatures(void **state)
{
	char *p = claims(""), *t;
	size_t n;

	/* Signed by a key the issuer does not have. */
	t = sign("RS256", other_rsa, "{\"alg\":\"RS256\",\"kid\":\"r1\"}", p);
	expect_refused(t, "signature is invalid");
	free(t);
	t = sign("RS256", rsa, "{\"alg\":\"RS256\",\"kid\":\"r1\"}", p);
	n = strlen(t);
	t[n - 5] = t[n - 5] == 'A' ? 'B' : 'A';
	expect_refused(t, "signature is invalid");
	t[n - 10] = '\0'; /* truncated */
	expect_refused(t, "signature is invalid");
	free(t);
	/* An ES256 signature checked as RS256 with the EC key's kid. */
	t = sign("ES256", ec, "{\"alg\":\"RS256\",\"kid\":\"e1\"}", p);
	expect_refused(t, "signature is invalid");
	free(t);
	free(p);
}

static void with_claims(const char *payload, const char *want)
{
	char *t = sign("RS256", rsa, "{\"alg\":\"RS256\",\"kid\":\"r1\"}",
		       payload);

	if (want == NULL) {
		char err[256];

		if (verify(t, err) != 0)
			fail_msg("refused: %s", err);
	} else {
		expect_refused(t, want);
	}
	free(t);
}

static void test_issuer_and_audience(void **state)
{
	char p[512];

	snprintf(p, sizeof(p),
		 "{\"iss\":\"https://evil.example\",\"sub\":\"a\","
		 "\"aud\":\"keybroker\",\"iat\":%lld,\"exp\":%lld}",
		 NOW, NOW + 60);
	with_claims(p, "issuer is not trusted");
	snprintf(p, sizeof(p),
		 "{\"iss\":\"" ISS "x\",\"sub\":\"a\","
		 "\"aud\":\"keybroker\",\"iat\":%lld,\"exp\":%lld}",
		 NOW, NOW + 60);
	with_claims(p, "issuer is not trusted");
	snprintf(p, sizeof(p),
		 "{\"iss\":\"" ISS "\",\"sub\":\"a\","
		 "\"aud\":\"other\",\"iat\":%lld,\"exp\":%lld}",
		 NOW, NOW + 60);
	with_claims(p, "audience is not keybroker");
	snprintf(p, sizeof(p),
		 "{\"iss\":\"" ISS "\",\"sub\":\"a\","
		 "\"aud\":[\"x\",\"keybroker\"],\"iat\":%lld,\"exp\":%lld}",
		 NOW, NOW + 60);
	with_claims(p, NULL);
	snprintf(p, sizeof(p),
		 "{\"iss\":\"" ISS "\",\"aud\":\"keybroker\","
		 "\"iat\":%lld,\"exp\":%lld}",
		 NOW, NOW + 60);
	with_claims(p, "no usable \"sub\" claim");
}

static void test_times(void **state)
{
	char p[512];

	snprintf(p, sizeof(p),
		 "{\"iss\":\"" ISS "\",\"sub\":\"a\",\"aud\":"
		 "\"keybroker\",\"iat\":%lld,\"exp\":%lld}",
		 NOW - 100, NOW);
	with_claims(p, "token expired");
	snprintf(p, sizeof(p),
		 "{\"iss\":\"" ISS "\",\"sub\":\"a\",\"aud\":"
		 "\"keybroker\",\"iat\":%lld,\"nbf\":%lld,\"exp\":%lld}",
		 NOW, NOW + 61, NOW + 600);
	with_claims(p, "not valid yet");
	/* Within 60 s of leeway: fine. */
	snprintf(p, sizeof(p),
		 "{\"iss\":\"" ISS "\",\"sub\":\"a\",\"aud\":"
		 "\"keybroker\",\"iat\":%lld,\"nbf\":%lld,\"exp\":%lld}",
		 NOW + 59, NOW + 59, NOW + 600);
	with_claims(p, NULL);
	snprintf(p, sizeof(p),
		 "{\"iss\":\"" ISS "\",\"sub\":\"a\",\"aud\":"
		 "\"keybroker\",\"iat\":%lld,\"exp\":%lld}",
		 NOW + 61, NOW + 600);
	with_claims(p, "issued in the future");
	snprintf(p, sizeof(p),
		 "{\"iss\":\"" ISS "\",\"sub\":\"a\",\"aud\":"
		 "\"keybroker\",\"iat\":%lld,\"exp\":%lld}",
		 NOW, NOW + 3601);
	with_claims(p, "lifetime exceeds the 3600 s");
	snprintf(p, sizeof(p),
		 "{\"iss\":\"" ISS "\",\"sub\":\"a\",\"aud\":"
		 "\"keybroker\",\"exp\":%lld}",
		 NOW + 60);
	with_claims(p, "neither iat nor nbf");
	snprintf(p, sizeof(p),
		 "{\"iss\":\"" ISS "\",\"sub\":\"a\",\"aud\":"
		 "\"keybroker\",\"iat\":%lld}",
		 NOW);
	with_claims(p, "no \"exp\"");
	snprintf(p, sizeof(p),
		 "{\"iss\":\"" ISS "\",\"sub\":\"a\",\"aud\":"
		 "\"keybroker\",\"iat\":\"now\",\"exp\":%lld}",
		 NOW + 60);
	with_claims(p, "NumericDate");
}

static bool revoked_j1(const char *jti, void *arg)
{
	return strcmp(jti, "j-1") == 0;
}

static void test_revoked(void **state)
{
	char *p = claims(",\"jti\":\"j-1\""), err[256], *t;
	struct kb_jwt_claims c;

	t = sign("RS256", rsa, "{\"alg\":\"RS256\",\"kid\":\"r1\"}", p);
	assert_int_equal(kb_jwt_verify(t, strlen(t), &issuer, 1, NOW,
				       revoked_j1, NULL, &c, err, sizeof(err)),
			 -1);
	assert_string_equal(err, "token has been revoked");
	free(t);
	free(p);
}

static void test_malformed(void **state)
{
	char *p = claims(""), *t, big[KB_JWT_MAX + 2];

	t = sign("RS256", rsa, "{\"alg\":\"RS256\",\"kid\":\"r1\"}", p);
	expect_refused("a.b", "three dot-separated parts");
	expect_refused("a.b.c.d", "three dot-separated parts");
	expect_refused("", "three dot-separated parts");
	expect_refused("e30.e30.", "issuer is not trusted");
	expect_refused("!!!.e30.AA", "not base64url JSON");
	expect_refused("bm90anNvbg.e30.AA", "not base64url JSON");
	expect_refused("WzFd.e30.AA", "not base64url JSON"); /* [1] */
	memset(big, 'A', sizeof(big));
	big[KB_JWT_MAX + 1] = '\0';
	expect_refused(big, "longer than 8192");
	/* Exactly at the limit is parsed (and fails on content). */
	big[KB_JWT_MAX] = '\0';
	expect_refused(big, "three dot-separated parts");
	/* Trailing garbage after a valid token. */
	{
		char *u = malloc(strlen(t) + 3);

		sprintf(u, "%s.x", t);
		expect_refused(u, "three dot-separated parts");
		free(u);
	}
	free(t);
	free(p);
}

static void test_jwks_refusals(void **state)
{
	static const struct {
		const char *json, *want;
	} cases[] = {
		{ "[]", "\"keys\" array" },
		{ "{\"keys\":[]}", "\"keys\" array" },
		{ "{\"keys\":[{\"kty\":\"oct\",\"k\":\"AA\"}]}",
		  "not RSA or EC" },
		{ "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}",
		  "invalid key" },
		{ "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\","
		  "\"d\":\"AQAB\"}]}",
		  "private key" },
		{ "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":"
		  "\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\",\"y\":"
		  "\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE\"}]}",
		  "invalid key" },
		{ "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-384\"}]}",
		  "invalid key" },
		{ "{\"keys\":[{\"kty\":\"RSA\",\"use\":\"enc\"}]}",
		  "\"use\" is not \"sig\"" },
		{ "not json", "not valid JSON" },
	};
	struct kb_jwks *set;
	char err[256];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(kb_jwks_parse(cases[i].json,
					       strlen(cases[i].json), &set, err,
					       sizeof(err)),
				 -1);
		if (strstr(err, cases[i].want) == NULL)
			fail_msg("%s: '%s'", cases[i].json, err);
	}
}

static int ec_signer(const unsigned char *digest, unsigned char *sig, void *arg)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, arg, NULL);
	unsigned char der[80];
	const unsigned char *q = der;
	size_t n = sizeof(der);
	ECDSA_SIG *es;

	if (ctx == NULL || EVP_PKEY_sign_init(ctx) != 1 ||
	    EVP_PKEY_sign(ctx, der, &n, digest, 32) != 1)
		return -1;
	EVP_PKEY_CTX_free(ctx);
	es = d2i_ECDSA_SIG(NULL, &q, (long)n);
	BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, 32);
	BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + 32, 32);
	ECDSA_SIG_free(es);
	return 0;
}

static void test_mint_then_verify(void **state)
{
	struct kb_jwt_mint m = { .issuer = ISS,
				 .subject = "etl",
				 .audience = "keybroker",
				 .kid = "e1",
				 .now = NOW,
				 .ttl_s = 600 };
	struct kb_jwt_claims c;
	char tok[2048], jti[33], err[256], *jwk;
	struct kb_jwks *own;
	int n;

	n = kb_jwt_mint(&m, ec_signer, ec, tok, sizeof(tok), jti);
	assert_true(n > 0);
	assert_int_equal(kb_jwt_verify(tok, (size_t)n, &issuer, 1, NOW, NULL,
				       NULL, &c, err, sizeof(err)),
			 0);
	assert_string_equal(c.subject, "etl");
	assert_string_equal(c.jti, jti);
	assert_int_equal(c.exp, NOW + 600);
	/* The same key as a one-key set, and as an exported JWK. */
	own = kb_jwks_from_ec(ec, "e1");
	assert_non_null(own);
	issuer.keys = own;
	assert_int_equal(kb_jwt_verify(tok, (size_t)n, &issuer, 1, NOW, NULL,
				       NULL, &c, err, sizeof(err)),
			 0);
	issuer.keys = keys;
	kb_jwks_free(own);
	jwk = kb_jwk_ec_json(ec, "e1");
	assert_non_null(strstr(jwk, "\"crv\":\"P-256\""));
	free(jwk);
	/* Too small an output buffer fails cleanly. */
	assert_int_equal(kb_jwt_mint(&m, ec_signer, ec, tok, 100, jti), -1);
}

static const unsigned char half_order[32] = {
	0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xde, 0x73, 0x7d, 0x56, 0xd3, 0x8b,
	0xcf, 0x42, 0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31, 0x92, 0xa8,
};

/* ec_signer, then s turned into the high half: s := n - s if low. */
static int high_s_signer(const unsigned char *digest, unsigned char *sig,
			 void *arg)
{
	BIGNUM *n = NULL, *s;

	if (ec_signer(digest, sig, arg) != 0)
		return -1;
	s = BN_bin2bn(sig + 32, 32, NULL);
	BN_hex2bn(&n, "FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9"
		      "CAC2FC632551");
	if (memcmp(sig + 32, half_order, 32) <= 0) {
		BN_sub(s, n, s);
		BN_bn2binpad(s, sig + 32, 32);
	}
	BN_free(n);
	BN_free(s);
	return 0;
}

/* The token with its ES256 signature's s replaced by n - s. */
static void flip_s(char *tok, size_t len)
{
	char *dot = strrchr(tok, '.');
	unsigned char sig[64];
	size_t n;
	BIGNUM *order = NULL, *s;

	assert_int_equal(kb_b64_decode(sig, sizeof(sig), &n, dot + 1,
				       len - (size_t)(dot + 1 - tok)),
			 0);
	BN_hex2bn(&order, "FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9"
			  "CAC2FC632551");
	s = BN_bin2bn(sig + 32, 32, NULL);
	BN_sub(s, order, s);
	BN_bn2binpad(s, sig + 32, 32);
	kb_b64_encode(dot + 1, sig, sizeof(sig));
	BN_free(order);
	BN_free(s);
}

static void test_es256_low_s(void **state)
{
	struct kb_jwt_mint m = { .issuer = ISS,
				 .subject = "etl",
				 .audience = "keybroker",
				 .kid = "e1",
				 .now = NOW,
				 .ttl_s = 600 };
	struct kb_jwt_claims c;
	char tok[2048], jti[33], err[256], *dot;
	unsigned char sig[64];
	size_t siglen;
	int n, i;

	/* Minted tokens are low-s even when the token signs high-s. */
	for (i = 0; i < 8; i++) {
		n = kb_jwt_mint(&m, i % 2 ? high_s_signer : ec_signer, ec, tok,
				sizeof(tok), jti);
		assert_true(n > 0);
		dot = strrchr(tok, '.');
		assert_int_equal(
			kb_b64_decode(sig, sizeof(sig), &siglen, dot + 1,
				      (size_t)n - (size_t)(dot + 1 - tok)),
			0);
		assert_true(memcmp(sig + 32, half_order, 32) <= 0);
	}
	/* The other spelling, (r, n - s), verifies mathematically... */
	flip_s(tok, (size_t)n);
	assert_int_equal(kb_jwt_verify(tok, (size_t)n, &issuer, 1, NOW, NULL,
				       NULL, &c, err, sizeof(err)),
			 0);
	assert_string_equal(c.jti, jti);
	/* ...but not from an issuer that only makes low-s signatures. */
	issuer.low_s_only = true;
	assert_int_equal(kb_jwt_verify(tok, (size_t)n, &issuer, 1, NOW, NULL,
				       NULL, &c, err, sizeof(err)),
			 -1);
	assert_string_equal(err, "token signature is not in low-s form, as "
				 "issuer " ISS " makes them");
	flip_s(tok, (size_t)n);
	assert_int_equal(kb_jwt_verify(tok, (size_t)n, &issuer, 1, NOW, NULL,
				       NULL, &c, err, sizeof(err)),
			 0);
	issuer.low_s_only = false;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_accepts_rs256_ps256_es256),
		cmocka_unit_test(test_refuses_alg_none),
		cmocka_unit_test(test_refuses_unpinned_alg),
		cmocka_unit_test(test_refuses_hs256_with_public_key_as_secret),
		cmocka_unit_test(test_refuses_embedded_and_remote_keys),
		cmocka_unit_test(test_refuses_unknown_kid),
		cmocka_unit_test(test_refuses_bad_signatures),
		cmocka_unit_test(test_issuer_and_audience),
		cmocka_unit_test(test_times),
		cmocka_unit_test(test_revoked),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_jwks_refusals),
		cmocka_unit_test(test_mint_then_verify),
		cmocka_unit_test(test_es256_low_s),
	};

	return cmocka_run_group_tests_name("jwt", tests, setup, teardown);
}
