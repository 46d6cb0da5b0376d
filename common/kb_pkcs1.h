/* SPDX-License-Identifier: MIT */
/*
 * PKCS#1 v1.5 decryption padding (RSAES-PKCS1-v1_5, RFC 8017 7.2.2) with
 * implicit rejection, as in the IETF draft on RSA guidance
 * (draft-irtf-cfrg-rsa-guidance) and OpenSSL 3.2: an encoded message
 * whose padding is wrong does not fail; it decodes to a synthetic message
 * derived from a secret key-derivation key (KDK) and the ciphertext, so
 * the caller learns nothing about the padding (no Bleichenbacher oracle).
 * The work done and the memory touched do not depend on the padding.
 *
 * The draft derives the KDK from the private exponent; a key in a token
 * never shows its exponent, so the broker derives it in the token instead
 * (HMAC with a secret of the token over the key version and ciphertext).
 */
#ifndef KB_PKCS1_H
#define KB_PKCS1_H

#include <stddef.h>

#define KB_PKCS1_KDK_LEN 32

/*
 * Decodes em (k bytes, the raw RSA decryption of a k-byte ciphertext)
 * into out (room for outmax >= k bytes; all k are written, the message
 * first): the message if the padding is right, else the synthetic
 * message of kdk. Returns 0 with *outlen; -1 only for impossible sizes or
 * if the PRF fails.
 */
int kb_pkcs1_decode(unsigned char *out, size_t outmax, size_t *outlen,
		    const unsigned char *em, size_t k,
		    const unsigned char kdk[KB_PKCS1_KDK_LEN]);

#endif
