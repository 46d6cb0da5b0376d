/* SPDX-License-Identifier: MIT */
/*
 * JSON Web Keys (RFC 7517) for verifying identity tokens: RSA (2048 bits or
 * more) and EC P-256 public keys, read from a JWKS document into EVP_PKEYs.
 */
#ifndef KB_JWK_H
#define KB_JWK_H

#include <openssl/evp.h>
#include <stddef.h>

#define KB_JWK_KID_MAX 128
#define KB_JWKS_MAX_BYTES (256 * 1024)
#define KB_JWKS_MAX_KEYS 64

enum kb_jwk_type {
	KB_JWK_RSA,
	KB_JWK_EC_P256,
};

struct kb_jwk {
	char kid[KB_JWK_KID_MAX + 1]; /* "" when the JWK has none */
	enum kb_jwk_type type;
	EVP_PKEY *pkey;
};

struct kb_jwks {
	struct kb_jwk *keys;
	size_t n;
};

/*
 * Parses a JWKS ({"keys": [...]}) from text[0..len). Keys whose "use" is
 * not "sig", or that are private, malformed, of another type or too weak,
 * make the whole set invalid: a trust anchor is either right or refused.
 */
int kb_jwks_parse(const char *text, size_t len, struct kb_jwks **out, char *err,
		  size_t errlen);
int kb_jwks_load(const char *path, struct kb_jwks **out, char *err,
		 size_t errlen);
void kb_jwks_free(struct kb_jwks *set);

/* A one-key set holding a new reference to an EC P-256 key. */
struct kb_jwks *kb_jwks_from_ec(EVP_PKEY *pkey, const char *kid);

/* The public JWK of an EC P-256 key as JSON text (malloc'ed), or NULL. */
char *kb_jwk_ec_json(EVP_PKEY *pkey, const char *kid);

/*
 * The key named kid, or with kid NULL the only key of the set. NULL if
 * none (kid is compared as a name, never used as a path).
 */
const struct kb_jwk *kb_jwks_find(const struct kb_jwks *set, const char *kid);

#endif
