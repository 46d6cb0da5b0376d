/* SPDX-License-Identifier: MIT */
/*
 * RSA key versions as the keystore knows them: the algorithms that wrap
 * with them, how the token performs each unwrap, what a caller may learn
 * of a version, and the public-key side of RSA, done in OpenSSL (a wrap
 * never touches the token).
 */
#ifndef KB_KEY_H
#define KB_KEY_H

#include <openssl/evp.h>
#include <p11-kit/pkcs11.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kb_keyattr.h"
#include "kb_kid.h"
#include "p11_object.h"
#include "p11_token.h"

enum kb_alg {
	KB_ALG_RSA_OAEP, /* OAEP, SHA-1 and MGF1-SHA-1 */
	KB_ALG_RSA_OAEP_256, /* OAEP, SHA-256 and MGF1-SHA-256 */
	KB_ALG_RSA1_5, /* PKCS#1 v1.5 */
	KB_ALG_COUNT,
};

/* How the token performs an unwrap with one algorithm. */
enum kb_path {
	KB_PATH_NONE, /* not available (refused or disabled) */
	KB_PATH_NATIVE, /* the token's own mechanism */
	KB_PATH_RAW_OAEP, /* CKM_RSA_X_509 + constant-time OAEP decode */
	/*
	 * CKM_RSA_X_509 + PKCS#1 v1.5 decode with implicit rejection, its
	 * key-derivation key an HMAC in the token (RSA1_5 only ever so).
	 */
	KB_PATH_RAW_PKCS1,
};

/* Everything a caller may learn about one key version (no secrets). */
struct kb_key_info {
	char name[KB_NAME_MAX + 1];
	char version[KB_VERSION_LEN + 1];
	unsigned int bits;
	unsigned char n[P11_MODULUS_MAX];
	size_t nlen;
	unsigned char e[8];
	size_t elen;
	int64_t created, updated;
	int64_t created_us; /* orders versions made within one second */
	int64_t nbf, exp; /* 0: not set */
	bool enabled;
	unsigned int key_ops; /* KB_KEYOP_* it may be used for */
	/*
	 * Where its private key came from: generated in the token (0), or
	 * imported in plain or wrapped for the token (byok-wrap).
	 */
	enum kb_origin {
		KB_ORIGIN_TOKEN,
		KB_ORIGIN_PLAIN,
		KB_ORIGIN_BYOK
	} imported;
	char tags[KB_TAGS_TEXT_MAX]; /* canonical JSON object; "" if none */
	/* Of the key as a whole (kb_keystate): */
	int64_t deleted; /* when it was soft-deleted; 0: it is not */
	int64_t scheduled_purge; /* when a deleted key is purged */
	/* What deletion means for it: from the token and the config. */
	char recovery_level[48];
	int recoverable_days;
	int64_t repaired; /* when repair-key rewrote the metadata; 0: never */
	/*
	 * The private key is there but no metadata object reads back: the
	 * version is listed, refused (KB_ERR_DAMAGED) and has no known
	 * place among its key's versions until kb_keystore_repair_key.
	 */
	bool damaged;
	enum kb_path path[KB_ALG_COUNT];
};

const char *kb_path_name(enum kb_path path);
/* "RSA-OAEP", "RSA-OAEP-256", "RSA1_5" (the JOSE names). */
const char *kb_alg_name(enum kb_alg alg);
/* The algorithm of a JOSE name; -1 if there is none. */
int kb_alg_parse(const char *name, enum kb_alg *alg);

/* The token's own mechanism for alg (RSA-OAEP or RSA-OAEP-256). */
enum p11_mech kb_alg_mech(enum kb_alg alg);
/* The hash of alg's OAEP and MGF1. */
const EVP_MD *kb_alg_md(enum kb_alg alg);

/*
 * A context that encrypts with pub and alg, reusable for many messages;
 * NULL if OpenSSL cannot make one.
 */
EVP_PKEY_CTX *kb_encrypt_ctx_new(EVP_PKEY *pub, enum kb_alg alg);
/*
 * Encrypts in[0..inlen) with pub and alg into out (P11_MODULUS_MAX
 * bytes), with a context the calling thread keeps for the key it used
 * last (per alg). KB_STATUS_OK; KB_ERR_NOMEM; KB_ERR_PARAM if in is too
 * long for the key.
 */
int kb_public_encrypt(EVP_PKEY *pub, enum kb_alg alg, const unsigned char *in,
		      size_t inlen, unsigned char *out, size_t *outlen);

#endif
