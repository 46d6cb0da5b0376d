// SPDX-License-Identifier: MIT
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kb_key.h"

const char *kb_path_name(enum kb_path path)
{
	switch (path) {
	case KB_PATH_NATIVE:
		return "token";
	case KB_PATH_RAW_OAEP:
		return "token-raw-rsa+oaep-decode";
	case KB_PATH_RAW_PKCS1:
		return "token-raw-rsa+pkcs1-implicit-rejection";
	default:
		return "unavailable";
	}
}

const char *kb_alg_name(enum kb_alg alg)
{
	switch (alg) {
	case KB_ALG_RSA_OAEP:
		return "RSA-OAEP";
	case KB_ALG_RSA_OAEP_256:
		return "RSA-OAEP-256";
	case KB_ALG_RSA1_5:
		return "RSA1_5";
	default:
		return "?";
	}
}

int kb_alg_parse(const char *name, enum kb_alg *alg)
{
	enum kb_alg a;

	for (a = 0; a < KB_ALG_COUNT; a++)
		if (strcmp(name, kb_alg_name(a)) == 0) {
			*alg = a;
			return 0;
		}
	return -1;
}

enum p11_mech kb_alg_mech(enum kb_alg alg)
{
	return alg == KB_ALG_RSA_OAEP ? P11_MECH_RSA_OAEP_SHA1 :
					P11_MECH_RSA_OAEP_SHA256;
}

const EVP_MD *kb_alg_md(enum kb_alg alg)
{
	return alg == KB_ALG_RSA_OAEP ? EVP_sha1() : EVP_sha256();
}

EVP_PKEY_CTX *kb_encrypt_ctx_new(EVP_PKEY *pub, enum kb_alg alg)
{
	EVP_PKEY_CTX *ctx;
	int ok;

	if ((ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pub, NULL)) == NULL)
		return NULL;
	if (alg == KB_ALG_RSA1_5)
		ok = EVP_PKEY_encrypt_init(ctx) == 1 &&
		     EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1;
	else
		ok = EVP_PKEY_encrypt_init(ctx) == 1 &&
		     EVP_PKEY_CTX_set_rsa_padding(
			     ctx, RSA_PKCS1_OAEP_PADDING) == 1 &&
		     EVP_PKEY_CTX_set_rsa_oaep_md(ctx, kb_alg_md(alg)) == 1 &&
		     EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, kb_alg_md(alg)) == 1;
	if (!ok) {
		EVP_PKEY_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/*
 * Each thread's encryption context per algorithm, for the key it used
 * last: making one costs a third of a wrapKey (OpenSSL fetches the
 * algorithms anew each time). Freed when the thread ends.
 */
struct enc_cache {
	EVP_PKEY *key[KB_ALG_COUNT]; /* a reference */
	EVP_PKEY_CTX *ctx[KB_ALG_COUNT];
};

static pthread_key_t enc_cache_key;
static pthread_once_t enc_cache_once = PTHREAD_ONCE_INIT;
static bool enc_cache_ok;

static void enc_cache_free(void *p)
{
	struct enc_cache *c = p;
	int a;

	for (a = 0; a < KB_ALG_COUNT; a++) {
		EVP_PKEY_CTX_free(c->ctx[a]);
		EVP_PKEY_free(c->key[a]);
	}
	free(c);
}

static void enc_cache_init(void)
{
	enc_cache_ok = pthread_key_create(&enc_cache_key, enc_cache_free) == 0;
}

/* The calling thread's context for pub and alg; NULL if none can be had. */
static EVP_PKEY_CTX *cached_ctx(EVP_PKEY *pub, enum kb_alg alg)
{
	struct enc_cache *c;
	EVP_PKEY_CTX *ctx;

	pthread_once(&enc_cache_once, enc_cache_init);
	if (!enc_cache_ok)
		return NULL;
	if ((c = pthread_getspecific(enc_cache_key)) == NULL) {
		if ((c = calloc(1, sizeof(*c))) == NULL)
			return NULL;
		if (pthread_setspecific(enc_cache_key, c) != 0) {
			free(c);
			return NULL;
		}
	}
	if (c->key[alg] == pub)
		return c->ctx[alg];
	if ((ctx = kb_encrypt_ctx_new(pub, alg)) == NULL)
		return NULL;
	if (EVP_PKEY_up_ref(pub) != 1) {
		EVP_PKEY_CTX_free(ctx);
		return NULL;
	}
	EVP_PKEY_CTX_free(c->ctx[alg]);
	EVP_PKEY_free(c->key[alg]);
	c->ctx[alg] = ctx;
	c->key[alg] = pub;
	return ctx;
}

int kb_public_encrypt(EVP_PKEY *pub, enum kb_alg alg, const unsigned char *in,
		      size_t inlen, unsigned char *out, size_t *outlen)
{
	EVP_PKEY_CTX *ctx;

	if (alg >= KB_ALG_COUNT || (ctx = cached_ctx(pub, alg)) == NULL)
		return KB_ERR_NOMEM;
	*outlen = P11_MODULUS_MAX;
	return EVP_PKEY_encrypt(ctx, out, outlen, in, inlen) == 1 ?
		       KB_STATUS_OK :
		       KB_ERR_PARAM;
}
