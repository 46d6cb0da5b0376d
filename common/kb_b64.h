/* SPDX-License-Identifier: MIT */
/* base64url without padding (RFC 4648 section 5, JOSE style). */
#ifndef KB_B64_H
#define KB_B64_H

#include <stddef.h>

/* Length of the encoding of n bytes, not counting the NUL. */
size_t kb_b64_encoded_len(size_t n);

/*
 * Encodes src into dst, which must hold kb_b64_encoded_len(n) + 1 bytes;
 * dst is NUL-terminated. Returns the encoded length. Constant time in the
 * content of src.
 */
size_t kb_b64_encode(char *dst, const unsigned char *src, size_t n);

/*
 * Decodes the base64url text src[0..len) into dst (room for dstmax bytes).
 * Refuses padding, whitespace, characters outside the alphabet, an
 * impossible length (len % 4 == 1) and non-zero trailing bits, so each
 * byte string has exactly one accepted encoding. Returns 0 and sets *outlen,
 * or -1. Runs in time that depends on len only (it may carry a DEK); on
 * failure dst holds whatever was decoded, so wipe it if it is a secret.
 */
int kb_b64_decode(unsigned char *dst, size_t dstmax, size_t *outlen,
		  const char *src, size_t len);

#endif
