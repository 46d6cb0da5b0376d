/* SPDX-License-Identifier: MIT */
/*
 * What the pkcs11/ files share and nobody else sees: the keystore's
 * state, the catalogue snapshot, and the helpers of each layer. From the
 * bottom up, each calling only those below it:
 *
 *   p11_admin.c     the admin session: its lock, object search and
 *                   attribute reads, confirmed writes, what a load refused
 *   p11_identity.c  identity-token objects as a load reads them (the
 *                   issuer key pair, revocations) and the revoked ids
 *   p11_catalog.c   reads the token into snapshots and publishes them
 *   p11_keystore.c  opening, sessions and recovery; operations on keys
 *   p11_issuer.c    making, reading and using the token-signing key
 */
#ifndef P11_INTERNAL_H
#define P11_INTERNAL_H

#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <time.h>

#include "p11_confirm.h"
#include "p11_key.h"
#include "p11_object.h"
#include "p11_token.h"

#define META_APPLICATION "keybroker:key-version"
#define KDK_LABEL "keybroker-rsa1_5-kdk"
#define ISSUER_LABEL "keybroker-issuer"
#define META_MAX 4096
#define RECOVER_INTERVAL_S 1
#define MISS_RELOAD_INTERVAL_S 2

struct key_version {
	struct p11_key_info info;
	CK_OBJECT_HANDLE priv;
	EVP_PKEY *pub;
};

/* Immutable once published; freed when the last reference goes. */
struct catalog {
	unsigned int refs;
	struct key_version *v; /* sorted by name, then created, then version */
	size_t n;
	enum p11_path path[P11_ALG_COUNT];
	/*
	 * Revoked identity-token ids read from the token, sorted; merged
	 * into the keystore's own list when the snapshot is published.
	 */
	char **revoked;
	size_t n_revoked;
	/* The secret that RSA1_5's implicit rejection derives keys from. */
	CK_OBJECT_HANDLE kdk_secret; /* CK_INVALID_HANDLE if none */
	/* The token-signing key, if the token has one. */
	CK_OBJECT_HANDLE issuer_priv;
	EVP_PKEY *issuer_pub;
	char issuer_kid[KB_VERSION_LEN + 1];
};

struct p11_keystore {
	struct p11_token *tok;
	bool allow_rsa1_5;
	/* How writes are confirmed by a fresh load (p11_confirm.h). */
	struct p11_confirm_target confirm; /* .exe NULL: they cannot be */
	char *module, *uri, *pin_file, *confirm_exe; /* its strings */

	pthread_mutex_t lock; /* guards cat, revoked, gen, available, times */
	struct catalog *cat;
	/*
	 * Every identity-token id this process has known to be revoked,
	 * sorted: what each load read from the token, and what it was told
	 * (p11_keystore_remember_revoked). It only grows, so a revocation
	 * the token loses or never kept still holds until the process ends.
	 */
	char **revoked;
	size_t n_revoked;
	unsigned int gen; /* bumped each time sessions are renewed */
	bool available;
	time_t last_recover, last_reload;

	/* Admin session: catalogue loads, key creation. */
	pthread_mutex_t admin_lock;
	CK_SESSION_HANDLE admin;
	/* What the last load refused or did not know; logged on change. */
	char *findings; /* under admin_lock */

	/*
	 * Held shared around every call into the module, and exclusively
	 * by recovery while it re-initialises the module. Taken after
	 * admin_lock when both are needed.
	 */
	pthread_rwlock_t module_lock;
};

struct p11_worker {
	struct p11_keystore *ks;
	CK_SESSION_HANDLE h;
	unsigned int gen;
	bool open;
	/* Last wrap context per alg; holds a reference on its key. */
	struct {
		EVP_PKEY *key;
		EVP_PKEY_CTX *ctx;
	} wrap[P11_ALG_COUNT];
};

/* ---- p11_admin.c ---- */

/* Serialises admin work and keeps recovery out of the module meanwhile. */
void p11_admin_enter(struct p11_keystore *ks);
void p11_admin_leave(struct p11_keystore *ks);

/*
 * Objects a catalogue load refused or did not recognise, as lines; logged
 * when they differ from the previous load's, so reloads do not repeat
 * them.
 */
struct p11_findings {
	char text[2048];
	size_t len;
	unsigned int n, dropped;
};

void p11_note(struct p11_findings *f, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * Whether any object of any class has CKA_LABEL label: objects of the
 * broker's fixed labels are made only where none is. Needs admin_lock.
 */
int p11_label_taken(struct p11_keystore *ks, const char *label, bool *taken);
/*
 * Whether a private key was made to stay in the token: sensitive, never
 * extractable, generated there (CKA_LOCAL). p11_key_protected reads
 * what it needs (needs admin_lock); p11_protection_judge looks at the
 * have and set of an object read with P11_PROTECTION_ATTRS. Both note in
 * f why not.
 */
#define P11_PROTECTION_ATTRS                                                 \
	(P11_A_PRIVATE | P11_A_SENSITIVE | P11_A_EXTRACTABLE | P11_A_LOCAL | \
	 P11_A_ALWAYS_SENSITIVE | P11_A_NEVER_EXTRACTABLE)
bool p11_key_protected(struct p11_keystore *ks, CK_OBJECT_HANDLE priv,
		       const char *what, struct p11_findings *f);
bool p11_protection_judge(unsigned int have, unsigned int set, const char *what,
			  struct p11_findings *f);

/*
 * Confirms want[0..n) by a fresh load (p11_confirm); P11_ERR_UNSUPPORTED
 * if this process was not given a way to. Needs admin_lock.
 */
int p11_keystore_confirm(struct p11_keystore *ks, const struct p11_expect *want,
			 size_t n, char *err, size_t errlen);
/*
 * Creates a private CKO_DATA object (application, label, value) and
 * confirms it by a fresh load. If it is not confirmed, it is destroyed
 * unless keep is set (for writes where a copy that did reach storage
 * must stay: revocations). P11_ERR_STORAGE if the token did not keep it;
 * err says so. Needs admin_lock.
 */
int p11_create_confirmed(struct p11_keystore *ks, const char *application,
			 const char *label, const char *value, bool keep,
			 const char *what, CK_OBJECT_HANDLE *obj, char *err,
			 size_t errlen);

/* ---- p11_identity.c ---- */

/* Signs a SHA-256 digest with EC key on session h; r || s into sig. */
int p11_es256_sign(struct p11_token *tok, CK_SESSION_HANDLE h,
		   CK_OBJECT_HANDLE key, const unsigned char *digest,
		   unsigned char *sig);
/* Finds the issuer key and the revoked jtis for c. Needs admin_lock. */
int p11_identity_load(struct p11_keystore *ks, struct catalog *c,
		      struct p11_findings *f);
/* Moves c's revoked jtis into the keystore's list. Needs ks->lock. */
void p11_revoked_merge_locked(struct p11_keystore *ks, struct catalog *c);
void p11_revoked_free(struct p11_keystore *ks);

/* ---- p11_catalog.c ---- */

void p11_catalog_free(struct catalog *c);
/* A reference to the current snapshot (NULL if none), and its release. */
struct catalog *p11_catalog_get(struct p11_keystore *ks);
void p11_catalog_put(struct p11_keystore *ks, struct catalog *c);
/* name/version, or the current version of name if version is "". */
const struct key_version *p11_catalog_find(const struct catalog *c,
					   const char *name,
					   const char *version);
/* Reads the token and publishes a new snapshot. Needs admin_lock. */
int p11_catalog_reload_locked(struct p11_keystore *ks);
int p11_parse_metadata(const char *text, size_t len, struct p11_key_info *info);
/*
 * The metadata object of name/version to believe among metas[0..n): the
 * newest ("updated") that reads back and parses, a disabled one winning a
 * tie. Its handle, text (META_MAX bytes at text, *len of them) and parsed
 * fields; P11_ERR_NOT_FOUND if none. Needs admin_lock.
 */
int p11_metadata_newest(struct p11_keystore *ks, const CK_OBJECT_HANDLE *metas,
			size_t n, const char *name, const char *version,
			CK_OBJECT_HANDLE *obj, char *text, size_t *len,
			struct p11_key_info *mi);

/* ---- p11_keystore.c ---- */

/*
 * Renews every session after the token failed and re-reads the
 * catalogue, unless another thread already did since seen_gen (a
 * worker's session generation), and at most once per RECOVER_INTERVAL_S
 * while the token stays away. A worker whose token call failed with
 * P11_ERR_HSM calls it and, if it succeeds, tries once more.
 */
int p11_keystore_recover(struct p11_keystore *ks, unsigned int seen_gen);
/* Tries to bring the token back if it is known to be gone. */
int p11_ensure_available(struct p11_keystore *ks);
/* A live session of the current generation. Needs module_lock shared. */
int p11_worker_session(struct p11_worker *w);

#endif
