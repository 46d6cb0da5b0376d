// SPDX-License-Identifier: MIT
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <string.h>

#include "kb_b64.h"
#include "kb_rsaimport.h"
#include "kb_secret.h"

#define PART_MAX 512 /* bytes of one part: a 4096-bit modulus */
#define NPARTS 8

/* The parts in the order of p11_rsa_parts, with their OpenSSL names. */
static const struct {
	const char *jwk, *param;
} part_names[NPARTS] = {
	{ "n", OSSL_PKEY_PARAM_RSA_N },
	{ "e", OSSL_PKEY_PARAM_RSA_E },
	{ "d", OSSL_PKEY_PARAM_RSA_D },
	{ "p", OSSL_PKEY_PARAM_RSA_FACTOR1 },
	{ "q", OSSL_PKEY_PARAM_RSA_FACTOR2 },
	{ "dp", OSSL_PKEY_PARAM_RSA_EXPONENT1 },
	{ "dq", OSSL_PKEY_PARAM_RSA_EXPONENT2 },
	{ "qi", OSSL_PKEY_PARAM_RSA_COEFFICIENT1 },
};

struct kb_rsa_import {
	unsigned char buf[NPARTS][PART_MAX];
	size_t len[NPARTS];
	struct p11_rsa_parts parts; /* pointing into buf */
};

static struct kb_rsa_import *import_new(void)
{
	return kb_secure_alloc(sizeof(struct kb_rsa_import));
}

void kb_rsa_import_free(struct kb_rsa_import *k)
{
	kb_secure_free(k, sizeof(*k));
}

const struct p11_rsa_parts *kb_rsa_import_parts(const struct kb_rsa_import *k)
{
	return &k->parts;
}

/* Whether n = p * q, the parts in k->buf (n first, p and q 4th, 5th). */
static bool two_primes(const struct kb_rsa_import *k)
{
	BN_CTX *ctx = BN_CTX_secure_new();
	BIGNUM *n, *p, *q, *pq;
	bool ok = false;

	if (ctx == NULL)
		return false;
	BN_CTX_start(ctx);
	n = BN_CTX_get(ctx);
	p = BN_CTX_get(ctx);
	q = BN_CTX_get(ctx);
	pq = BN_CTX_get(ctx);
	ok = pq != NULL && BN_bin2bn(k->buf[0], (int)k->len[0], n) != NULL &&
	     BN_bin2bn(k->buf[3], (int)k->len[3], p) != NULL &&
	     BN_bin2bn(k->buf[4], (int)k->len[4], q) != NULL &&
	     BN_mul(pq, p, q, ctx) == 1 && BN_cmp(pq, n) == 0;
	BN_CTX_end(ctx);
	BN_CTX_free(ctx);
	return ok;
}

/*
 * Checks pkey (one consistent two-prime RSA key of an accepted size) and
 * copies its parts into k. 0 or -1 with why.
 */
static int take_apart(EVP_PKEY *pkey, struct kb_rsa_import *k, char *why,
		      size_t whylen)
{
	EVP_PKEY_CTX *ctx = NULL;
	BIGNUM *bn = NULL;
	int bits, i, n, r = -1;

	if (!EVP_PKEY_is_a(pkey, "RSA")) {
		snprintf(why, whylen, "the key is not an RSA key");
		return -1;
	}
	bits = EVP_PKEY_get_bits(pkey);
	if (bits != 2048 && bits != 3072 && bits != 4096) {
		snprintf(why, whylen,
			 "the key is %d bits: 2048, 3072 or 4096 only", bits);
		return -1;
	}
	/* Tokens take two primes: a third would be dropped, not refused. */
	if (EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_FACTOR3, &bn) ==
	    1) {
		snprintf(why, whylen,
			 "the key has more than two primes: not imported");
		goto out;
	}
	if ((ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL)) == NULL ||
	    EVP_PKEY_pairwise_check(ctx) != 1 ||
	    EVP_PKEY_private_check(ctx) != 1) {
		snprintf(why, whylen,
			 "the key's parts do not make one RSA key");
		goto out;
	}
	for (i = 0; i < NPARTS; i++) {
		if (EVP_PKEY_get_bn_param(pkey, part_names[i].param, &bn) !=
			    1 ||
		    (n = BN_num_bytes(bn)) <= 0 || n > PART_MAX) {
			snprintf(
				why, whylen,
				"the key has no usable '%s' (every CRT part is "
				"needed)",
				part_names[i].jwk);
			goto out;
		}
		k->len[i] = (size_t)BN_bn2bin(bn, k->buf[i]);
		BN_clear_free(bn);
		bn = NULL;
	}
	if (!two_primes(k)) {
		snprintf(why, whylen,
			 "the key's primes do not make its modulus");
		goto out;
	}
	k->parts = (struct p11_rsa_parts){
		.n = k->buf[0],
		.nlen = k->len[0],
		.e = k->buf[1],
		.elen = k->len[1],
		.d = k->buf[2],
		.dlen = k->len[2],
		.p = k->buf[3],
		.plen = k->len[3],
		.q = k->buf[4],
		.qlen = k->len[4],
		.dp = k->buf[5],
		.dplen = k->len[5],
		.dq = k->buf[6],
		.dqlen = k->len[6],
		.qi = k->buf[7],
		.qilen = k->len[7],
	};
	r = 0;
out:
	BN_clear_free(bn);
	EVP_PKEY_CTX_free(ctx);
	return r;
}

/* A passphrase is never asked for: an encrypted PEM fails. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	return 0;
}

int kb_rsa_import_pem(const char *pem, size_t len, struct kb_rsa_import **out,
		      char *why, size_t whylen)
{
	struct kb_rsa_import *k = NULL;
	EVP_PKEY *pkey = NULL;
	BIO *bio;
	int r = -1;

	*out = NULL;
	if (len > INT32_MAX || (bio = BIO_new_mem_buf(pem, (int)len)) == NULL) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
	BIO_free(bio);
	if (pkey == NULL) {
		snprintf(why, whylen,
			 "'pem' is not a PEM private key without a passphrase "
			 "(PKCS#8 or PKCS#1)");
		return -1;
	}
	if ((k = import_new()) == NULL)
		snprintf(why, whylen, "out of memory");
	else if (take_apart(pkey, k, why, whylen) == 0)
		r = 0;
	EVP_PKEY_free(pkey);
	if (r == 0)
		*out = k;
	else
		kb_rsa_import_free(k);
	return r;
}

int kb_rsa_import_jwk(const json_t *jwk, struct kb_rsa_import **out, char *why,
		      size_t whylen)
{
	struct kb_rsa_import *k;
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *pkey = NULL;
	BIGNUM *bn[NPARTS] = { NULL };
	const json_t *v;
	int i, r = -1;

	*out = NULL;
	v = json_object_get(jwk, "kty");
	if (!json_is_object(jwk) || !json_is_string(v) ||
	    strcmp(json_string_value(v), "RSA") != 0) {
		snprintf(why, whylen, "'jwk' must be a private JWK of kty RSA");
		return -1;
	}
	if ((k = import_new()) == NULL) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	/* Each part decoded into locked memory, then made a BIGNUM. */
	for (i = 0; i < NPARTS; i++) {
		v = json_object_get(jwk, part_names[i].jwk);
		if (!json_is_string(v) ||
		    kb_b64_decode(k->buf[i], PART_MAX, &k->len[i],
				  json_string_value(v),
				  json_string_length(v)) != 0 ||
		    k->len[i] == 0) {
			snprintf(
				why, whylen,
				"'jwk' member '%s' must be base64url of at most "
				"%d bytes (every CRT member is needed)",
				part_names[i].jwk, PART_MAX);
			goto out;
		}
		if ((bn[i] = BN_secure_new()) == NULL ||
		    BN_bin2bn(k->buf[i], (int)k->len[i], bn[i]) == NULL)
			goto nomem;
	}
	if ((bld = OSSL_PARAM_BLD_new()) == NULL)
		goto nomem;
	for (i = 0; i < NPARTS; i++)
		if (OSSL_PARAM_BLD_push_BN(bld, part_names[i].param, bn[i]) !=
		    1)
			goto nomem;
	if ((params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
	    (ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) == NULL ||
	    EVP_PKEY_fromdata_init(ctx) != 1)
		goto nomem;
	if (EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_KEYPAIR, params) != 1) {
		snprintf(why, whylen, "the JWK's parts do not make an RSA key");
		goto out;
	}
	/* What OpenSSL made of them, checked and taken apart again. */
	r = take_apart(pkey, k, why, whylen);
	goto out;
nomem:
	snprintf(why, whylen, "out of memory");
out:
	for (i = 0; i < NPARTS; i++)
		BN_clear_free(bn[i]);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(pkey);
	if (r == 0)
		*out = k;
	else
		kb_rsa_import_free(k);
	return r;
}
