/* SPDX-License-Identifier: MIT */
/*
 * The JWS signature algorithms identity tokens may use (RFC 7518), as
 * bits, so that an issuer's configuration can pin a set of them.
 */
#ifndef KB_JWS_H
#define KB_JWS_H

enum kb_jws_alg {
	KB_JWS_RS256 = 1u << 0,
	KB_JWS_PS256 = 1u << 1,
	KB_JWS_ES256 = 1u << 2,
};

/* The bit of an "alg" name such as "ES256" into *alg: 0, or -1 if unknown. */
int kb_jws_alg_parse(const char *name, unsigned int *alg);

#endif
