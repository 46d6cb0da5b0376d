/* SPDX-License-Identifier: MIT */
/*
 * The broker's token-signing key for identity tokens: an EC P-256 key pair
 * labelled "keybroker-issuer" generated in the token (sign-only,
 * non-extractable). kb_issuer_create makes it once;
 * kb_issuer_key returns a new reference to its public key (NULL
 * if the token has none) and its kid (33 bytes); kb_issuer_sign
 * signs a SHA-256 digest into r || s (64 bytes), on w's session or, with w
 * NULL, on the admin session.
 */
#ifndef KB_ISSUER_H
#define KB_ISSUER_H

#include <openssl/evp.h>
#include <stddef.h>

struct kb_keystore;
struct kb_keyworker;

int kb_issuer_create(struct kb_keystore *ks, char *err, size_t errlen);
EVP_PKEY *kb_issuer_key(struct kb_keystore *ks, char *kid);
int kb_issuer_sign(struct kb_keystore *ks, struct kb_keyworker *w,
		   const unsigned char *digest, unsigned char *sig);

#endif
