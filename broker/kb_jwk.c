// SPDX-License-Identifier: MIT
#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/param_build.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kb_b64.h"
#include "kb_json.h"
#include "kb_jwk.h"

#define RSA_MIN_BITS 2048
#define RSA_MAX_BYTES 1024 /* 8192-bit modulus */

static int fail(char *err, size_t errlen, size_t i, const char *what)
{
	snprintf(err, errlen, "JWKS key %zu: %s", i, what);
	return -1;
}

/* Decodes the base64url member name of jwk into buf (at most max bytes). */
static int member_b64(const json_t *jwk, const char *name, unsigned char *buf,
		      size_t max, size_t *len)
{
	const json_t *v = json_object_get(jwk, name);

	if (!json_is_string(v) ||
	    json_string_length(v) > kb_b64_encoded_len(max))
		return -1;
	return kb_b64_decode(buf, max, len, json_string_value(v),
			     json_string_length(v));
}

static EVP_PKEY *from_params(const char *type, OSSL_PARAM_BLD *bld)
{
	OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
	EVP_PKEY *pkey = NULL;

	if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
		pkey = NULL;
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	return pkey;
}

static EVP_PKEY *rsa_key(const json_t *jwk)
{
	unsigned char n[RSA_MAX_BYTES], e[8];
	size_t nlen, elen;
	OSSL_PARAM_BLD *bld;
	BIGNUM *bn = NULL, *be = NULL;
	EVP_PKEY *pkey = NULL;

	if (member_b64(jwk, "n", n, sizeof(n), &nlen) != 0 ||
	    member_b64(jwk, "e", e, sizeof(e), &elen) != 0 || nlen == 0 ||
	    elen == 0 || n[0] == 0)
		return NULL;
	if ((bld = OSSL_PARAM_BLD_new()) == NULL)
		return NULL;
	bn = BN_bin2bn(n, (int)nlen, NULL);
	be = BN_bin2bn(e, (int)elen, NULL);
	if (bn != NULL && be != NULL && BN_num_bits(bn) >= RSA_MIN_BITS &&
	    BN_is_odd(be) && !BN_is_one(be) &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) == 1 &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) == 1)
		pkey = from_params("RSA", bld);
	BN_free(bn);
	BN_free(be);
	OSSL_PARAM_BLD_free(bld);
	return pkey;
}

/* A P-256 point, checked to be on the curve. */
static EVP_PKEY *ec_key(const json_t *jwk)
{
	unsigned char point[65];
	const json_t *crv = json_object_get(jwk, "crv");
	OSSL_PARAM_BLD *bld;
	EVP_PKEY_CTX *check;
	EVP_PKEY *pkey = NULL;
	size_t xlen, ylen;

	if (!json_is_string(crv) || strcmp(json_string_value(crv), "P-256"))
		return NULL;
	point[0] = 0x04;
	if (member_b64(jwk, "x", point + 1, 32, &xlen) != 0 ||
	    member_b64(jwk, "y", point + 33, 32, &ylen) != 0 || xlen != 32 ||
	    ylen != 32)
		return NULL;
	if ((bld = OSSL_PARAM_BLD_new()) == NULL)
		return NULL;
	if (OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
					    "prime256v1", 0) == 1 &&
	    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY,
					     point, sizeof(point)) == 1)
		pkey = from_params("EC", bld);
	OSSL_PARAM_BLD_free(bld);
	if (pkey == NULL)
		return NULL;
	check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
	if (check == NULL || EVP_PKEY_public_check(check) != 1) {
		EVP_PKEY_free(pkey);
		pkey = NULL;
	}
	EVP_PKEY_CTX_free(check);
	return pkey;
}

static int parse_key(const json_t *jwk, size_t i, struct kb_jwk *out, char *err,
		     size_t errlen)
{
	const json_t *kty = json_object_get(jwk, "kty");
	const json_t *kid = json_object_get(jwk, "kid");
	const json_t *use = json_object_get(jwk, "use");

	if (!json_is_object(jwk))
		return fail(err, errlen, i, "not an object");
	if (json_object_get(jwk, "d") != NULL)
		return fail(err, errlen, i, "is a private key");
	if (use != NULL && (!json_is_string(use) ||
			    strcmp(json_string_value(use), "sig") != 0))
		return fail(err, errlen, i, "\"use\" is not \"sig\"");
	if (kid != NULL) {
		if (!json_is_string(kid) || json_string_length(kid) == 0 ||
		    json_string_length(kid) > KB_JWK_KID_MAX)
			return fail(err, errlen, i, "bad \"kid\"");
		memcpy(out->kid, json_string_value(kid),
		       json_string_length(kid) + 1);
	}
	if (!json_is_string(kty))
		return fail(err, errlen, i, "missing \"kty\"");
	if (strcmp(json_string_value(kty), "RSA") == 0) {
		out->type = KB_JWK_RSA;
		out->pkey = rsa_key(jwk);
	} else if (strcmp(json_string_value(kty), "EC") == 0) {
		out->type = KB_JWK_EC_P256;
		out->pkey = ec_key(jwk);
	} else {
		return fail(err, errlen, i, "\"kty\" is not RSA or EC");
	}
	if (out->pkey == NULL)
		return fail(err, errlen, i,
			    "invalid key (RSA needs n >= 2048 bits and an odd "
			    "e; EC needs a P-256 point)");
	return 0;
}

int kb_jwks_parse(const char *text, size_t len, struct kb_jwks **out, char *err,
		  size_t errlen)
{
	struct kb_jwks *set = NULL;
	json_t *root, *keys;
	size_t i, j;
	int r = -1;

	*out = NULL;
	if (len > KB_JWKS_MAX_BYTES) {
		snprintf(err, errlen, "JWKS larger than %d bytes",
			 KB_JWKS_MAX_BYTES);
		return -1;
	}
	if ((root = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL)) ==
	    NULL) {
		snprintf(err, errlen, "JWKS is not valid JSON");
		return -1;
	}
	keys = json_object_get(root, "keys");
	if (!json_is_array(keys) || json_array_size(keys) == 0 ||
	    json_array_size(keys) > KB_JWKS_MAX_KEYS) {
		snprintf(err, errlen,
			 "JWKS needs a \"keys\" array of 1-%d keys",
			 KB_JWKS_MAX_KEYS);
		goto out;
	}
	if ((set = calloc(1, sizeof(*set))) == NULL ||
	    (set->keys = calloc(json_array_size(keys), sizeof(*set->keys))) ==
		    NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	for (i = 0; i < json_array_size(keys); i++) {
		if (parse_key(json_array_get(keys, i), i, &set->keys[i], err,
			      errlen) != 0)
			goto out;
		set->n++;
		for (j = 0; j < i; j++)
			if (set->keys[i].kid[0] != '\0' &&
			    strcmp(set->keys[i].kid, set->keys[j].kid) == 0) {
				fail(err, errlen, i, "duplicate \"kid\"");
				goto out;
			}
	}
	*out = set;
	set = NULL;
	r = 0;
out:
	kb_jwks_free(set);
	json_decref(root);
	return r;
}

int kb_jwks_load(const char *path, struct kb_jwks **out, char *err,
		 size_t errlen)
{
	char *text, msg[200];
	size_t len;
	FILE *f;
	int r;

	*out = NULL;
	if ((f = fopen(path, "rb")) == NULL) {
		snprintf(err, errlen, "%s: cannot read", path);
		return -1;
	}
	text = malloc(KB_JWKS_MAX_BYTES + 1);
	len = text ? fread(text, 1, KB_JWKS_MAX_BYTES + 1, f) : 0;
	fclose(f);
	if (text == NULL)
		return -1;
	r = kb_jwks_parse(text, len, out, msg, sizeof(msg));
	if (r != 0)
		snprintf(err, errlen, "%s: %s", path, msg);
	free(text);
	return r;
}

void kb_jwks_free(struct kb_jwks *set)
{
	size_t i;

	if (set == NULL)
		return;
	for (i = 0; i < set->n; i++)
		EVP_PKEY_free(set->keys[i].pkey);
	free(set->keys);
	free(set);
}

const struct kb_jwk *kb_jwks_find(const struct kb_jwks *set, const char *kid)
{
	size_t i;

	if (kid == NULL)
		return set->n == 1 ? &set->keys[0] : NULL;
	for (i = 0; i < set->n; i++)
		if (strcmp(set->keys[i].kid, kid) == 0)
			return &set->keys[i];
	return NULL;
}

struct kb_jwks *kb_jwks_from_ec(EVP_PKEY *pkey, const char *kid)
{
	struct kb_jwks *set = calloc(1, sizeof(*set));

	if (set == NULL || strlen(kid) > KB_JWK_KID_MAX ||
	    (set->keys = calloc(1, sizeof(*set->keys))) == NULL ||
	    EVP_PKEY_up_ref(pkey) != 1) {
		if (set != NULL)
			free(set->keys);
		free(set);
		return NULL;
	}
	set->keys[0].pkey = pkey;
	set->keys[0].type = KB_JWK_EC_P256;
	strcpy(set->keys[0].kid, kid);
	set->n = 1;
	return set;
}

char *kb_jwk_ec_json(EVP_PKEY *pkey, const char *kid)
{
	unsigned char pt[65];
	char x[64], y[64];
	size_t len;
	json_t *o;
	char *text;

	if (EVP_PKEY_get_octet_string_param(pkey, OSSL_PKEY_PARAM_PUB_KEY, pt,
					    sizeof(pt), &len) != 1 ||
	    len != 65 || pt[0] != 0x04)
		return NULL;
	kb_b64_encode(x, pt + 1, 32);
	kb_b64_encode(y, pt + 33, 32);
	o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "kty", "EC", "crv",
		      "P-256", "x", x, "y", y, "kid", kid, "use", "sig", "alg",
		      "ES256");
	text = o ? kb_json_text(o, JSON_COMPACT, NULL) : NULL;
	json_decref(o);
	return text;
}
