// SPDX-License-Identifier: MIT
#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kb_b64.h"
#include "kb_json.h"
#include "kb_jwk.h"
#include "kb_pkey.h"

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

static EVP_PKEY *rsa_key(const json_t *jwk)
{
	unsigned char n[RSA_MAX_BYTES], e[8];
	size_t nlen, elen;
	BIGNUM *be = NULL;
	EVP_PKEY *pkey = NULL;

	if (member_b64(jwk, "n", n, sizeof(n), &nlen) != 0 ||
	    member_b64(jwk, "e", e, sizeof(e), &elen) != 0 || nlen == 0 ||
	    elen == 0 || n[0] == 0 ||
	    (be = BN_bin2bn(e, (int)elen, NULL)) == NULL)
		return NULL;
	if (BN_is_odd(be) && !BN_is_one(be) &&
	    (pkey = kb_pkey_rsa(n, nlen, e, elen)) != NULL &&
	    EVP_PKEY_get_bits(pkey) < RSA_MIN_BITS) {
		EVP_PKEY_free(pkey);
		pkey = NULL;
	}
	BN_free(be);
	return pkey;
}

/* A P-256 point, checked to be on the curve. */
static EVP_PKEY *ec_key(const json_t *jwk)
{
	unsigned char point[65];
	const json_t *crv = json_object_get(jwk, "crv");
	size_t xlen, ylen;

	if (!json_is_string(crv) || strcmp(json_string_value(crv), "P-256"))
		return NULL;
	point[0] = 0x04;
	if (member_b64(jwk, "x", point + 1, 32, &xlen) != 0 ||
	    member_b64(jwk, "y", point + 33, 32, &ylen) != 0 || xlen != 32 ||
	    ylen != 32)
		return NULL;
	return kb_pkey_p256(point, sizeof(point));
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
