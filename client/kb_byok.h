/* SPDX-License-Identifier: MIT */
/*
 * Bring your own key: wrapping an RSA private key on the admin's
 * workstation so that it is never in plain outside an HSM, for importKey
 * with a key-exchange key (KEK) of the broker's token. The blob is laid
 * out as CKM_RSA_AES_KEY_WRAP lays it out (PKCS#11 3.0, 2.1.21): a fresh
 * AES-256 key wrapped with RSA-OAEP under the KEK's public key, followed
 * by the key's PKCS#8 DER wrapped under that AES key with AES-KWP (RFC
 * 5649). The AES key and the DER are wiped as soon as they are used.
 */
#ifndef KB_BYOK_H
#define KB_BYOK_H

#include <openssl/evp.h>
#include <stddef.h>

/*
 * The KEK's public key from text[0..len): a key bundle as `keybroker get`
 * prints it ({"key": {"n", "e", ...}}), a public JWK, or a PEM public
 * key. NULL with why filled otherwise.
 */
EVP_PKEY *kb_byok_read_kek(const char *text, size_t len, char *why,
			   size_t whylen);

/*
 * Reads an unencrypted RSA private key in PEM (PKCS#8 or PKCS#1) from
 * text[0..len). NULL with why filled otherwise.
 */
EVP_PKEY *kb_byok_read_key(const char *text, size_t len, char *why,
			   size_t whylen);

/*
 * Wraps key for kek, OAEP with oaep_md (SHA-1 for tokens whose OAEP
 * unwrap knows no other, such as SoftHSMv2 2.6), into *blob (malloc'ed,
 * *bloblen bytes). 0, or -1 with why filled.
 */
int kb_byok_wrap(EVP_PKEY *kek, const EVP_MD *oaep_md, EVP_PKEY *key,
		 unsigned char **blob, size_t *bloblen, char *why,
		 size_t whylen);

#endif
