/* SPDX-License-Identifier: MIT */
/*
 * Constant-time EME-OAEP decoding (RFC 8017, 7.1.2 step 3) of an encoded
 * message produced by a raw RSA decryption, for tokens that do the RSA
 * operation but refuse the OAEP mechanism with the hash a caller needs.
 * Built on EVP digests; its run time does not depend on where or whether
 * the padding check fails.
 */
#ifndef KB_OAEP_H
#define KB_OAEP_H

#include <openssl/evp.h>
#include <stddef.h>

/*
 * Decodes em (k bytes, k = modulus length) with hash md used for both the
 * label hash and MGF1, and an empty label. On success writes the message
 * to out (room for outmax bytes, at least k) and returns 0; on any
 * decoding failure returns -1, *outlen is 0 and out holds nothing
 * meaningful (but may hold secret bytes: wipe it). No branch depends on
 * em until the caller looks at the result.
 */
int kb_oaep_decode(unsigned char *out, size_t outmax, size_t *outlen,
		   const unsigned char *em, size_t k, const EVP_MD *md);

#endif
