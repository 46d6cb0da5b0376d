/* SPDX-License-Identifier: MIT */
/*
 * The key catalogue held in a token, and the RSA operations on it.
 *
 * Each key version is one RSA key pair whose CKA_LABEL is the key name and
 * whose CKA_ID is the 16-byte version, plus one CKO_DATA object
 * (CKA_APPLICATION "keybroker:key-version") holding that version's
 * metadata as JSON. The token is the only store: the catalogue is an
 * immutable snapshot read from it (handles, public keys as EVP_PKEYs,
 * metadata), swapped whole when the token changes. Wraps use the cached
 * public key and never touch the token; unwraps run in the token on the
 * calling worker's own session.
 */
#ifndef P11_KEYSTORE_H
#define P11_KEYSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "kb_kid.h"
#include "p11_token.h"

#define P11_MODULUS_MAX 512 /* 4096-bit keys */

enum p11_alg {
	P11_ALG_RSA_OAEP, /* OAEP, SHA-1 and MGF1-SHA-1 */
	P11_ALG_RSA_OAEP_256, /* OAEP, SHA-256 and MGF1-SHA-256 */
	P11_ALG_RSA1_5, /* PKCS#1 v1.5 */
	P11_ALG_COUNT,
};

/* How the token performs an unwrap with one algorithm. */
enum p11_path {
	P11_PATH_NONE, /* not available (refused or disabled) */
	P11_PATH_NATIVE, /* the token's own mechanism */
	P11_PATH_RAW_OAEP, /* CKM_RSA_X_509 + constant-time OAEP decode */
	/*
	 * CKM_RSA_X_509 + PKCS#1 v1.5 decode with implicit rejection, its
	 * key-derivation key an HMAC in the token (RSA1_5 only ever so).
	 */
	P11_PATH_RAW_PKCS1,
};

/* Everything a caller may learn about one key version (no secrets). */
struct p11_key_info {
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
	char recovery_level[32];
	int recoverable_days;
	int64_t repaired; /* when repair-key rewrote the metadata; 0: never */
	/*
	 * The private key is there but no metadata object reads back: the
	 * version is listed, refused (P11_ERR_DAMAGED) and has no known
	 * place among its key's versions until p11_keystore_repair_key.
	 */
	bool damaged;
	enum p11_path path[P11_ALG_COUNT];
};

struct p11_keystore_params {
	const char *module;
	const char *token_uri;
	const char *pin_file;
	bool allow_rsa1_5;
	/*
	 * The program that confirms token writes by a fresh load (see
	 * p11_confirm.h), e.g. "/proc/self/exe"; NULL in a process that makes
	 * no such writes (they are then refused).
	 */
	const char *confirm_exe;
};

struct p11_keystore;
struct p11_worker;

/*
 * Loads the module, selects and logs in to the token and reads the
 * catalogue. If initialise_with_so_pin is set, the token is provisioned
 * first (see p11_token_initialise).
 */
int p11_keystore_open(const struct p11_keystore_params *params,
		      const char *initialise_with_so_pin,
		      struct p11_keystore **out, char *err, size_t errlen);
void p11_keystore_free(struct p11_keystore *ks);

const char *p11_keystore_token_label(const struct p11_keystore *ks);
const char *p11_path_name(enum p11_path path);
const char *p11_alg_name(enum p11_alg alg);

/* A token session owned by one thread. */
int p11_worker_new(struct p11_keystore *ks, struct p11_worker **out);
void p11_worker_free(struct p11_worker *w);

/*
 * Looks up name (and version, or the current version if version is "").
 * P11_ERR_NOT_FOUND if absent. P11_ERR_DAMAGED (info names the version)
 * if that version is damaged or, with version "", if any version of name
 * is: the current one cannot be told then. Wrap and unwrap likewise.
 */
int p11_keystore_describe(struct p11_keystore *ks, const char *name,
			  const char *version, struct p11_key_info *info);

/*
 * Wraps in[0..inlen) with the public key of name/version. out needs
 * P11_MODULUS_MAX bytes. P11_ERR_PARAM if in is too long for the key.
 * With a worker, its encryption contexts are reused across calls.
 */
int p11_keystore_wrap(struct p11_keystore *ks, struct p11_worker *w,
		      const char *name, const char *version, enum p11_alg alg,
		      const unsigned char *in, size_t inlen, unsigned char *out,
		      size_t *outlen, struct p11_key_info *info);

/*
 * Unwraps in the token on w's session. out needs P11_MODULUS_MAX bytes and
 * holds a secret on success: the caller wipes it. Every failure caused by
 * the input is P11_ERR_CIPHERTEXT.
 */
int p11_worker_unwrap(struct p11_worker *w, const char *name,
		      const char *version, enum p11_alg alg,
		      const unsigned char *in, size_t inlen, unsigned char *out,
		      size_t *outlen, struct p11_key_info *info);

/*
 * Admin writes (create, enable/disable, repair, revoke) are serialised,
 * refused up front while a file-backed token's storage is nearly full
 * (p11_store.h), and done only once a fresh load reads them back
 * (p11_confirm.h): a write the token did not keep fails with
 * P11_ERR_STORAGE and leaves the previous state, and an object is
 * replaced only after its successor is confirmed. err says what failed.
 */

/*
 * Generates a new version of key name (creating the key if needed) as an
 * RSA key pair of bits (2048, 3072 or 4096) in the token. Fills info with
 * the new version.
 */
int p11_keystore_create_key(struct p11_keystore *ks, const char *name,
			    unsigned int bits, struct p11_key_info *info,
			    char *err, size_t errlen);

/* Enables or disables one key version (its metadata in the token). */
int p11_keystore_set_enabled(struct p11_keystore *ks, const char *name,
			     const char *version, bool enabled, char *err,
			     size_t errlen);

/*
 * Makes the secret that RSA1_5's implicit rejection derives its keys
 * from (an HMAC key in the token), unless an object of its label is
 * there already. For the broker at start, when RSA1_5 is enabled.
 */
int p11_keystore_ensure_rsa15_secret(struct p11_keystore *ks);

/*
 * Writes new metadata for a damaged version (P11_ERR_CONFLICT if it is
 * not damaged). Its creation time was in the lost metadata: with
 * make_current it is dated now and becomes the key's current version;
 * otherwise it is dated just before the key's oldest readable version,
 * so the current version stays what it was.
 */
int p11_keystore_repair_key(struct p11_keystore *ks, const char *name,
			    const char *version, bool enabled,
			    bool make_current, char *err, size_t errlen);

/* Re-reads the catalogue from the token now; the old one stays on failure. */
int p11_keystore_reload(struct p11_keystore *ks);

/*
 * The broker's token-signing key for identity tokens: an EC P-256 key pair
 * labelled "keybroker-issuer" generated in the token (sign-only,
 * non-extractable). p11_keystore_create_issuer makes it once;
 * p11_keystore_issuer_key returns a new reference to its public key (NULL
 * if the token has none) and its kid (33 bytes); p11_keystore_sign_es256
 * signs a SHA-256 digest into r || s (64 bytes), on w's session or, with w
 * NULL, on the admin session.
 */
int p11_keystore_create_issuer(struct p11_keystore *ks, char *err,
			       size_t errlen);
EVP_PKEY *p11_keystore_issuer_key(struct p11_keystore *ks, char *kid);
int p11_keystore_sign_es256(struct p11_keystore *ks, struct p11_worker *w,
			    const unsigned char *digest, unsigned char *sig);

/*
 * Revoked identity-token ids live in the token (one private data object
 * each), so revocations survive restarts and are shared by every broker
 * on the token. p11_keystore_revoked answers from every id this process
 * has known to be revoked (true before the first catalogue: fail
 * closed). p11_keystore_revoke stores one in the token and confirms it;
 * an unconfirmed one is still remembered by this process and left in the
 * token in case it did arrive. p11_keystore_remember_revoked only
 * remembers (a running broker told by keybrokerctl).
 */
bool p11_keystore_revoked(struct p11_keystore *ks, const char *jti);
int p11_keystore_revoke(struct p11_keystore *ks, const char *jti, char *err,
			size_t errlen);
int p11_keystore_remember_revoked(struct p11_keystore *ks, const char *jti);

#define P11_JTI_MAX 255 /* bytes of an identity-token id */

/* Calls fn for each key version, in name then creation order. */
int p11_keystore_foreach(struct p11_keystore *ks,
			 void (*fn)(const struct p11_key_info *, void *),
			 void *arg);

#endif
