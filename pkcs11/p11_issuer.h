/* SPDX-License-Identifier: MIT */
/*
 * The broker's token-signing key for identity tokens: an EC P-256 key pair
 * labelled "keybroker-issuer" generated in the token (sign-only,
 * non-extractable). p11_keystore_create_issuer makes it once;
 * p11_keystore_issuer_key returns a new reference to its public key (NULL
 * if the token has none) and its kid (33 bytes); p11_keystore_sign_es256
 * signs a SHA-256 digest into r || s (64 bytes), on w's session or, with w
 * NULL, on the admin session.
 */
#ifndef P11_ISSUER_H
#define P11_ISSUER_H

#include <openssl/evp.h>
#include <stddef.h>

struct p11_keystore;
struct p11_worker;

int p11_keystore_create_issuer(struct p11_keystore *ks, char *err,
			       size_t errlen);
EVP_PKEY *p11_keystore_issuer_key(struct p11_keystore *ks, char *kid);
int p11_keystore_sign_es256(struct p11_keystore *ks, struct p11_worker *w,
			    const unsigned char *digest, unsigned char *sig);

#endif
