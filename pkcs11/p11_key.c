// SPDX-License-Identifier: MIT
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "p11_key.h"

const char *p11_path_name(enum p11_path path)
{
	switch (path) {
	case P11_PATH_NATIVE:
		return "token";
	case P11_PATH_RAW_OAEP:
		return "token-raw-rsa+oaep-decode";
	case P11_PATH_RAW_PKCS1:
		return "token-raw-rsa+pkcs1-implicit-rejection";
	default:
		return "unavailable";
	}
}

const char *p11_alg_name(enum p11_alg alg)
{
	switch (alg) {
	case P11_ALG_RSA_OAEP:
		return "RSA-OAEP";
	case P11_ALG_RSA_OAEP_256:
		return "RSA-OAEP-256";
	case P11_ALG_RSA1_5:
		return "RSA1_5";
	default:
		return "?";
	}
}

enum p11_mech p11_alg_mech(enum p11_alg alg)
{
	return alg == P11_ALG_RSA_OAEP ? P11_MECH_RSA_OAEP_SHA1 :
					 P11_MECH_RSA_OAEP_SHA256;
}

const EVP_MD *p11_alg_md(enum p11_alg alg)
{
	return alg == P11_ALG_RSA_OAEP ? EVP_sha1() : EVP_sha256();
}

EVP_PKEY_CTX *p11_encrypt_ctx_new(EVP_PKEY *pub, enum p11_alg alg)
{
	EVP_PKEY_CTX *ctx;
	int ok;

	if ((ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pub, NULL)) == NULL)
		return NULL;
	if (alg == P11_ALG_RSA1_5)
		ok = EVP_PKEY_encrypt_init(ctx) == 1 &&
		     EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1;
	else
		ok = EVP_PKEY_encrypt_init(ctx) == 1 &&
		     EVP_PKEY_CTX_set_rsa_padding(
			     ctx, RSA_PKCS1_OAEP_PADDING) == 1 &&
		     EVP_PKEY_CTX_set_rsa_oaep_md(ctx, p11_alg_md(alg)) == 1 &&
		     EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, p11_alg_md(alg)) == 1;
	if (!ok) {
		EVP_PKEY_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

int p11_public_encrypt(EVP_PKEY *pub, enum p11_alg alg, const unsigned char *in,
		       size_t inlen, unsigned char *out, size_t *outlen)
{
	EVP_PKEY_CTX *ctx = p11_encrypt_ctx_new(pub, alg);
	int ok;

	if (ctx == NULL)
		return P11_ERR_NOMEM;
	*outlen = P11_MODULUS_MAX;
	ok = EVP_PKEY_encrypt(ctx, out, outlen, in, inlen) == 1;
	EVP_PKEY_CTX_free(ctx);
	return ok ? P11_OK : P11_ERR_PARAM;
}
