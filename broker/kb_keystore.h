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
#ifndef KB_KEYSTORE_H
#define KB_KEYSTORE_H

#include <stdbool.h>
#include <stddef.h>

#include "kb_key.h"
#include "p11_token.h"

struct kb_keystore_params {
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
	/*
	 * With initialise_with_so_pin (kb_keystore_open): the slot to
	 * initialise, or any slot with an uninitialised token.
	 */
	bool init_any_slot;
	CK_SLOT_ID init_slot;
	/* A deleted key's retention, 7-90 days; 0: the default. */
	int recoverable_days;
	/*
	 * Whether keys that were not generated in the token (imported,
	 * attributes.imported) are believed at all: off, a load refuses
	 * them as it refuses any key not made to stay in the token.
	 */
	bool allow_import;
};

#define KB_RECOVERABLE_DAYS_DEFAULT 90

struct kb_keystore;
struct kb_keyworker;

/*
 * Loads the module, selects and logs in to the token and reads the
 * catalogue. If initialise_with_so_pin is set, the token is provisioned
 * first (see p11_token_initialise).
 */
int kb_keystore_open(const struct kb_keystore_params *params,
		     const char *initialise_with_so_pin,
		     struct kb_keystore **out, char *err, size_t errlen);
void kb_keystore_free(struct kb_keystore *ks);

const char *kb_keystore_token_label(const struct kb_keystore *ks);

/* A token session owned by one thread. */
int kb_keyworker_new(struct kb_keystore *ks, struct kb_keyworker **out);
void kb_keyworker_free(struct kb_keyworker *w);

/*
 * Looks up name (and version, or the current version if version is "").
 * KB_ERR_NOT_FOUND if absent. KB_ERR_DAMAGED (info names the version)
 * if that version is damaged or, with version "", if any version of name
 * is: the current one cannot be told then. Wrap and unwrap likewise.
 */
int kb_keystore_describe(struct kb_keystore *ks, const char *name,
			 const char *version, struct kb_key_info *info);

/*
 * Wraps in[0..inlen) with the public key of name/version. out needs
 * P11_MODULUS_MAX bytes. KB_ERR_PARAM if in is too long for the key.
 * Needs no token session: the calling thread's encryption context for
 * the key is reused (kb_public_encrypt).
 */
int kb_keystore_wrap(struct kb_keystore *ks, const char *name,
		     const char *version, enum kb_alg alg,
		     const unsigned char *in, size_t inlen, unsigned char *out,
		     size_t *outlen, struct kb_key_info *info);

/*
 * Unwraps in the token on w's session. out needs P11_MODULUS_MAX bytes and
 * holds a secret on success: the caller wipes it. Every failure caused by
 * the input is KB_ERR_CIPHERTEXT.
 */
int kb_keyworker_unwrap(struct kb_keyworker *w, const char *name,
			const char *version, enum kb_alg alg,
			const unsigned char *in, size_t inlen,
			unsigned char *out, size_t *outlen,
			struct kb_key_info *info);

/*
 * Makes the secret that RSA1_5's implicit rejection derives its keys
 * from (an HMAC key in the token), unless an object of its label is
 * there already. For the broker at start, when RSA1_5 is enabled.
 * Admin writes to keys are in kb_lifecycle.h.
 */
int kb_keystore_ensure_rsa15_secret(struct kb_keystore *ks);

/* Re-reads the catalogue from the token now; the old one stays on failure. */
int kb_keystore_reload(struct kb_keystore *ks);

/* What the key store did or saw by itself: for the audit trail. */
struct kb_notice {
	const char *event; /* "token" (lost or back) or "lifecycle" */
	const char *op; /* lifecycle: "rotate", "purge" or "notify" */
	const char *state; /* token: "lost" or "back" */
	const char *key, *version; /* lifecycle; version may be "" */
	int status; /* KB_STATUS_OK or the KB_ERR_* it failed with */
	const char *message; /* "" or what went wrong */
};

/*
 * Calls fn(arg, notice) for each notice, on whichever thread sees it,
 * possibly holding the key store's admin lock: fn must not call into the
 * key store. Set before threads start.
 */
void kb_keystore_observe(struct kb_keystore *ks,
			 void (*fn)(void *arg, const struct kb_notice *n),
			 void *arg);

/*
 * For a status line: how many keys (names) and versions the catalogue
 * holds, and whether the token answered at its last use.
 */
void kb_keystore_summary(struct kb_keystore *ks, size_t *keys, size_t *versions,
			 bool *available);

/* Calls fn for each key version, in name then creation order. */
int kb_keystore_foreach(struct kb_keystore *ks,
			void (*fn)(const struct kb_key_info *, void *),
			void *arg);

#endif
