/* SPDX-License-Identifier: MIT */
/*
 * Verification of identity tokens: JWS compact serialisation (RFC 7515)
 * carrying JWT claims (RFC 7519), signed with RS256, PS256 or ES256 by a
 * trusted issuer. Everything that is not explicitly expected is refused:
 * "none", algorithms not pinned for the issuer (so HS256 with a public key
 * as secret never verifies), embedded or remote keys (jwk, jku, x5u, x5c),
 * "crit", unknown kids, bad signatures, wrong iss or aud, expired or
 * future tokens, lifetimes over the issuer's maximum, revoked jtis, and
 * anything malformed or over 8 KiB.
 */
#ifndef KB_JWT_H
#define KB_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kb_jwk.h"
#include "kb_jws.h"

#define KB_JWT_MAX 8192
#define KB_JWT_LEEWAY_S 60
#define KB_JWT_CLAIM_MAX 255

/* One trusted issuer and what its tokens must look like. */
struct kb_jwt_issuer {
	const char *issuer; /* exact "iss" */
	const char *audience; /* must appear in "aud" */
	unsigned int algs; /* accepted kb_jws_alg bits */
	const struct kb_jwks *keys; /* verification keys */
	int64_t max_lifetime_s; /* exp - iat (or nbf) at most this */
	const char *identity_claim; /* names the subject, e.g. "sub" */
	/*
	 * ES256 signatures must have s <= n/2 (this broker's own tokens,
	 * which it mints so): without it each token has a second valid
	 * spelling, (r, n - s), with the same jti.
	 */
	bool low_s_only;
};

struct kb_jwt_claims {
	const struct kb_jwt_issuer *issuer;
	char subject[KB_JWT_CLAIM_MAX + 1]; /* the identity_claim's value */
	char jti[KB_JWT_CLAIM_MAX + 1]; /* "" if none */
	int64_t iat, nbf, exp;
};

/* Answers whether a jti has been revoked. */
typedef bool (*kb_jwt_revoked_fn)(const char *jti, void *arg);

/*
 * Verifies token[0..len) at time now against the issuer its "iss" names.
 * On success fills claims and returns 0; otherwise returns -1 with a
 * message in err that says what was wrong, never quoting the token.
 */
int kb_jwt_verify(const char *token, size_t len,
		  const struct kb_jwt_issuer *issuers, size_t nissuers,
		  int64_t now, kb_jwt_revoked_fn revoked, void *revoked_arg,
		  struct kb_jwt_claims *claims, char *err, size_t errlen);

/* Signs a SHA-256 digest with ES256 into r || s (64 bytes); 0 or < 0. */
typedef int (*kb_jwt_sign_fn)(const unsigned char *digest, unsigned char *sig,
			      void *arg);

struct kb_jwt_mint {
	const char *issuer, *subject, *audience, *kid;
	int64_t now, ttl_s;
};

/*
 * Makes an ES256 token with iss, sub, aud, iat, nbf (= iat), exp and a
 * random jti (returned in jti, 33 bytes), its signature in low-s form.
 * Returns the token length, or -1. Caches, logs and revocations key on
 * the jti, never on the token's text.
 */
int kb_jwt_mint(const struct kb_jwt_mint *m, kb_jwt_sign_fn sign, void *arg,
		char *out, size_t outmax, char *jti);

#endif
