// SPDX-License-Identifier: MIT
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kb_b64.h"
#include "kb_byok.h"
#include "kb_jread.h"
#include "kb_pkey.h"
#include "kb_secret.h"

#define AES_KEY_LEN 32
#define PART_MAX 1024 /* decoded bytes of n or e */

/* n and e of the JWK at obj into an EVP_PKEY; NULL if not there. */
static EVP_PKEY *jwk_public(const char *text, const struct kb_jspan *obj)
{
	unsigned char n[PART_MAX], e[PART_MAX];
	char b64[PART_MAX * 2];
	struct kb_jspan sn, se;
	size_t nlen, elen, len;

	if (kb_jread_member(text, obj, "n", &sn) != 0 ||
	    kb_jread_member(text, obj, "e", &se) != 0 ||
	    kb_jread_string(text, &sn, b64, sizeof(b64), &len) != 0 ||
	    kb_b64_decode(n, sizeof(n), &nlen, b64, len) != 0 ||
	    kb_jread_string(text, &se, b64, sizeof(b64), &len) != 0 ||
	    kb_b64_decode(e, sizeof(e), &elen, b64, len) != 0)
		return NULL;
	return kb_pkey_rsa(n, nlen, e, elen);
}

EVP_PKEY *kb_byok_read_kek(const char *text, size_t len, char *why,
			   size_t whylen)
{
	struct kb_jspan root, key;
	EVP_PKEY *pkey = NULL;
	BIO *bio;

	if (kb_jread_check(text, len, &root) == 0 && root.type == KB_J_OBJECT) {
		/* A key bundle holds the JWK in "key"; else it is one. */
		if (kb_jread_member(text, &root, "key", &key) == 0 &&
		    key.type == KB_J_OBJECT)
			pkey = jwk_public(text, &key);
		else
			pkey = jwk_public(text, &root);
	} else if (len <= INT32_MAX &&
		   (bio = BIO_new_mem_buf(text, (int)len)) != NULL) {
		pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
		BIO_free(bio);
	}
	if (pkey != NULL && EVP_PKEY_is_a(pkey, "RSA") &&
	    EVP_PKEY_get_bits(pkey) >= 2048)
		return pkey;
	EVP_PKEY_free(pkey);
	snprintf(why, whylen,
		 "the KEK is not an RSA public key of at least 2048 bits as "
		 "`keybroker get` prints it, a JWK, or a PEM public key");
	return NULL;
}

/* A passphrase is never asked for: an encrypted PEM fails. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	return 0;
}

EVP_PKEY *kb_byok_read_key(const char *text, size_t len, char *why,
			   size_t whylen)
{
	EVP_PKEY *pkey = NULL;
	BIO *bio;

	if (len <= INT32_MAX &&
	    (bio = BIO_new_mem_buf(text, (int)len)) != NULL) {
		pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
		BIO_free(bio);
	}
	if (pkey != NULL && EVP_PKEY_is_a(pkey, "RSA"))
		return pkey;
	EVP_PKEY_free(pkey);
	snprintf(why, whylen,
		 "the key is not an RSA private key in PEM without a "
		 "passphrase (PKCS#8 or PKCS#1)");
	return NULL;
}

/* The OAEP-wrapped AES key into out (the KEK's size); 0 or -1. */
static int wrap_aes_key(EVP_PKEY *kek, const EVP_MD *md,
			const unsigned char *aes, unsigned char *out,
			size_t *outlen)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(kek, NULL);
	int r = -1;

	if (ctx != NULL && EVP_PKEY_encrypt_init(ctx) == 1 &&
	    EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) == 1 &&
	    EVP_PKEY_CTX_set_rsa_oaep_md(ctx, md) == 1 &&
	    EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md) == 1 &&
	    EVP_PKEY_encrypt(ctx, out, outlen, aes, AES_KEY_LEN) == 1)
		r = 0;
	EVP_PKEY_CTX_free(ctx);
	return r;
}

/* The AES-KWP wrap of in under aes into out (inlen + 15 bytes); 0 or -1. */
static int wrap_der(const unsigned char *aes, const unsigned char *in,
		    size_t inlen, unsigned char *out, size_t *outlen)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int n = 0, fin = 0, r = -1;

	if (ctx == NULL || inlen > INT32_MAX - 16)
		goto out;
	EVP_CIPHER_CTX_set_flags(ctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
	/* No IV: RFC 5649's alternative initial value. */
	if (EVP_EncryptInit_ex(ctx, EVP_aes_256_wrap_pad(), NULL, aes, NULL) ==
		    1 &&
	    EVP_EncryptUpdate(ctx, out, &n, in, (int)inlen) == 1 &&
	    EVP_EncryptFinal_ex(ctx, out + n, &fin) == 1) {
		*outlen = (size_t)n + (size_t)fin;
		r = 0;
	}
out:
	EVP_CIPHER_CTX_free(ctx);
	return r;
}

int kb_byok_wrap(EVP_PKEY *kek, const EVP_MD *oaep_md, EVP_PKEY *key,
		 unsigned char **blob, size_t *bloblen, char *why,
		 size_t whylen)
{
	PKCS8_PRIV_KEY_INFO *p8 = NULL;
	unsigned char *aes = kb_secure_alloc(AES_KEY_LEN), *der = NULL, *out;
	size_t klen = (size_t)EVP_PKEY_get_size(kek), wlen, dlen = 0;
	int n, r = -1;

	*blob = NULL;
	snprintf(why, whylen, "out of memory");
	if (aes == NULL || (p8 = EVP_PKEY2PKCS8(key)) == NULL ||
	    (n = i2d_PKCS8_PRIV_KEY_INFO(p8, &der)) <= 0)
		goto out;
	dlen = (size_t)n;
	if ((out = malloc(klen + dlen + 16)) == NULL)
		goto out;
	wlen = klen;
	if (RAND_bytes(aes, AES_KEY_LEN) != 1 ||
	    wrap_aes_key(kek, oaep_md, aes, out, &wlen) != 0 || wlen != klen ||
	    wrap_der(aes, der, dlen, out + klen, &wlen) != 0) {
		snprintf(why, whylen, "OpenSSL could not wrap the key");
		free(out);
		goto out;
	}
	*blob = out;
	*bloblen = klen + wlen;
	r = 0;
out:
	kb_secure_free(aes, AES_KEY_LEN);
	OPENSSL_clear_free(der, dlen);
	PKCS8_PRIV_KEY_INFO_free(p8);
	return r;
}
