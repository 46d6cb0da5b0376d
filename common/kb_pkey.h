/* SPDX-License-Identifier: MIT */
/*
 * Public keys as OpenSSL EVP_PKEYs, built from their raw parts: the one
 * place that assembles OSSL_PARAMs for a key (from the token's objects
 * and from JWKS files alike).
 */
#ifndef KB_PKEY_H
#define KB_PKEY_H

#include <openssl/evp.h>
#include <stddef.h>

/*
 * An RSA public key of modulus n and exponent e (big-endian); NULL if
 * OpenSSL refuses them or is out of memory.
 */
EVP_PKEY *kb_pkey_rsa(const unsigned char *n, size_t nlen,
		      const unsigned char *e, size_t elen);

/*
 * A P-256 public key from an uncompressed point (65 bytes, 0x04 first),
 * checked to be on the curve; NULL if it is not one.
 */
EVP_PKEY *kb_pkey_p256(const unsigned char *point, size_t len);

#endif
