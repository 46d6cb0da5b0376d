/* SPDX-License-Identifier: MIT */
/*
 * What the key store's files share and nobody else sees: the keystore's
 * state, the catalogue snapshot, and the helpers of each layer. They
 * reach the token only through the pkcs11/ adapter (p11_token.h,
 * p11_object.h, p11_confirm.h). From the bottom up, each calling only
 * those below it:
 *
 *   kb_key.c        algorithms, unwrap paths, public-key encryption
 *   kb_keyadmin.c   the admin session: its lock, the protection check,
 *                   confirmed writes, what a load refused
 *   kb_keystate.c   state of keys as a whole (deletion, rotation policy)
 *                   and of the token (generation, purge protection)
 *   kb_identity.c   identity-token objects as a load reads them (the
 *                   issuer key pair, revocations) and the revoked ids
 *   kb_catalog.c    the metadata schema; reads the token into snapshots
 *                   in one pass and publishes them
 *   kb_keystore.c   opening, sessions and recovery; operations on keys
 *   kb_lifecycle.c  admin writes: versions, attributes, deletion
 *   kb_issuer.c     making and using the token-signing key
 *   kb_auditkey.c   making and using the audit trail's keys
 */
#ifndef KB_KEYSTORE_PARTS_H
#define KB_KEYSTORE_PARTS_H

#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <time.h>

#include "kb_key.h"
#include "kb_keystore.h"
#include "p11_confirm.h"
#include "p11_object.h"
#include "p11_token.h"

#define META_APPLICATION "keybroker:key-version"
#define KDK_LABEL "keybroker-rsa1_5-kdk"
#define ISSUER_LABEL "keybroker-issuer"
#define AUDIT_LABEL "keybroker-audit"
#define AUDIT_HMAC_LABEL "keybroker-audit-hmac"
#define KEYSTATE_APPLICATION "keybroker:key"
#define GENERATION_APPLICATION "keybroker:generation"
#define GENERATION_LABEL "keybroker-generation"
#define TOKEN_APPLICATION "keybroker:token"
#define PURGE_PROTECTION_LABEL "keybroker-purge-protection"
#define KEYSTATE_GENERATION_LEN 32 /* a SHA-256 */
#define KEYSTATE_SEEN_GEN_MAX 4 /* generation objects remembered */
#define META_MAX 4096
#define RECOVER_INTERVAL_S 1
#define MISS_RELOAD_INTERVAL_S 2

struct key_version {
	struct kb_key_info info;
	CK_OBJECT_HANDLE priv;
	EVP_PKEY *pub;
};

/* A key as a whole, from its newest state object (kb_keystate.c). */
struct key_state {
	char name[KB_NAME_MAX + 1];
	int64_t updated_us; /* orders the objects of one key */
	int64_t deleted, scheduled_purge; /* 0 if not deleted */
	struct kb_rotation_policy policy; /* text "" if none */
};

/* Immutable once published; freed when the last reference goes. */
struct catalog {
	unsigned int refs;
	struct key_version *v; /* sorted by name, then created, then version */
	size_t n;
	enum kb_path path[KB_ALG_COUNT];
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
	/* The audit trail's checkpoint key and HMAC secret, if there. */
	CK_OBJECT_HANDLE audit_priv;
	EVP_PKEY *audit_pub;
	char audit_id[KB_VERSION_LEN + 1];
	CK_OBJECT_HANDLE audit_hmac; /* CK_INVALID_HANDLE if none */
	/* Keys that have a state object, sorted by name. */
	struct key_state *states;
	size_t n_states;
	bool purge_protection;
	/* The token's generation when this snapshot was read. */
	unsigned char generation[KEYSTATE_GENERATION_LEN];
};

struct kb_keystore {
	struct p11_token *tok;
	bool allow_rsa1_5;
	/* How writes are confirmed by a fresh load (p11_confirm.h). */
	struct p11_confirm_target confirm; /* .exe NULL: they cannot be */
	int recoverable_days; /* a deleted key's retention */
	bool allow_import; /* believe keys marked imported */
	char *module, *uri, *confirm_exe; /* its strings */
	/* kb_keystore_observe's: told of notices */
	void (*observer)(void *arg, const struct kb_notice *n);
	void *observer_arg;

	pthread_mutex_t lock; /* guards cat, revoked, gen, available, times */
	struct catalog *cat;
	/*
	 * Every identity-token id this process has known to be revoked,
	 * sorted: what each load read from the token, and what it was told
	 * (kb_identity_remember_revoked). It only grows, so a revocation
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
	int storage_lock; /* p11_store_lock's, under admin_lock */
	/* What the last load refused or did not know; logged on change. */
	char *findings; /* under admin_lock */
	/* Periodic admin work (kb_lifecycle_tick), under admin_lock. */
	time_t tick_retry_after; /* no purge or rotation before */
	/*
	 * The generation objects the last search found (kb_keystate.c), so
	 * that the check once a second reads them by handle instead of
	 * searching a token of thousands of objects; n_seen_gen 0: unknown.
	 */
	CK_OBJECT_HANDLE seen_gen[KEYSTATE_SEEN_GEN_MAX];
	size_t n_seen_gen;
	unsigned char seen_gen_digest[KEYSTATE_GENERATION_LEN];
	time_t seen_gen_searched;
	char (*notified)[KB_VERSION_LEN + 1]; /* versions warned of expiry */
	size_t n_notified;

	/*
	 * Held shared around every call into the module, and exclusively
	 * by recovery while it re-initialises the module. Taken after
	 * admin_lock when both are needed.
	 */
	pthread_rwlock_t module_lock;
};

struct kb_keyworker {
	struct kb_keystore *ks;
	CK_SESSION_HANDLE h;
	unsigned int gen;
	bool open;
};

/* ---- kb_keyadmin.c ---- */

/*
 * Serialises admin work and keeps recovery out of the module meanwhile;
 * then has the module look at the token (kb_keyadmin_look), as writes
 * need.
 */
void kb_keyadmin_enter(struct kb_keystore *ks);
/*
 * The same, unless another thread or process is doing admin work: then
 * false. It does not look: for reads, and loads, which search first.
 */
bool kb_keyadmin_try_enter(struct kb_keystore *ks);
/*
 * Has the module look at what other processes wrote. SoftHSMv2 re-reads
 * its token directory only when the token's generation file moved since
 * it last looked or wrote; a process that writes without looking first
 * counts the other processes' writes as its own and never sees their
 * objects. A search makes it look. Needs admin_lock.
 */
void kb_keyadmin_look(struct kb_keystore *ks);
void kb_keyadmin_leave(struct kb_keystore *ks);

/*
 * Objects a catalogue load refused or did not recognise, as lines; logged
 * when they differ from the previous load's, so reloads do not repeat
 * them.
 */
struct kb_findings {
	char text[2048];
	size_t len;
	unsigned int n, dropped;
};

void kb_keyadmin_note(struct kb_findings *f, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * Whether any object of any class has CKA_LABEL label: objects of the
 * broker's fixed labels are made only where none is. Needs admin_lock.
 */
int kb_keyadmin_label_taken(struct kb_keystore *ks, const char *label,
			    bool *taken);
/*
 * Whether a private key was made to stay in the token: sensitive, never
 * extractable, generated there (CKA_LOCAL). kb_keyadmin_key_protected reads
 * what it needs (needs admin_lock); kb_keyadmin_protection_judge looks at the
 * have and set of an object read with KB_KEYADMIN_PROTECTION_ATTRS, and
 * for an imported key (one the keystore allows imports for) only at
 * whether it stays from now on. Both note in f why not.
 */
#define KB_KEYADMIN_PROTECTION_ATTRS                                         \
	(P11_A_PRIVATE | P11_A_SENSITIVE | P11_A_EXTRACTABLE | P11_A_LOCAL | \
	 P11_A_ALWAYS_SENSITIVE | P11_A_NEVER_EXTRACTABLE)
bool kb_keyadmin_key_protected(struct kb_keystore *ks, CK_OBJECT_HANDLE priv,
			       const char *what, struct kb_findings *f);
bool kb_keyadmin_protection_judge(unsigned int have, unsigned int set,
				  bool imported, const char *what,
				  struct kb_findings *f);

/*
 * Confirms want[0..n) by a fresh load (p11_confirm); KB_ERR_UNSUPPORTED
 * if this process was not given a way to. Needs admin_lock.
 */
int kb_keyadmin_confirm(struct kb_keystore *ks, const struct p11_expect *want,
			size_t n, char *err, size_t errlen);
/*
 * Creates a private CKO_DATA object (application, label, value) and
 * confirms it by a fresh load. If it is not confirmed, it is destroyed
 * unless keep is set (for writes where a copy that did reach storage
 * must stay: revocations). KB_ERR_STORAGE if the token did not keep it;
 * err says so. Needs admin_lock.
 */
int kb_keyadmin_create_confirmed(struct kb_keystore *ks,
				 const char *application, const char *label,
				 const char *value, bool keep, const char *what,
				 CK_OBJECT_HANDLE *obj, char *err,
				 size_t errlen);

/* ---- kb_identity.c ---- */

/* Signs a SHA-256 digest with EC key on session h; r || s into sig. */
int kb_identity_es256_sign(struct p11_token *tok, CK_SESSION_HANDLE h,
			   CK_OBJECT_HANDLE key, const unsigned char *digest,
			   unsigned char *sig);
/*
 * Finds the EC P-256 signing pair of label (an issuer or audit key; what
 * names it in notes): one private key, protected (kb_keyadmin_key_protected),
 * and its public object, shown to verify what the private key signs.
 * Sets *priv, *pub (the caller's) and idhex (its CKA_ID, KB_VERSION_LEN + 1
 * bytes). KB_ERR_NOT_FOUND if there is none, KB_ERR_PARAM if refused (a
 * note says why). Needs admin_lock.
 */
int kb_identity_load_signer(struct kb_keystore *ks, const char *label,
			    const char *what, CK_OBJECT_HANDLE *priv,
			    EVP_PKEY **pub, char *idhex, struct kb_findings *f);
/* Finds the issuer key and the revoked jtis for c. Needs admin_lock. */
int kb_identity_load(struct kb_keystore *ks, struct catalog *c,
		     struct kb_findings *f);
/* Moves c's revoked jtis into the keystore's list. Needs ks->lock. */
void kb_identity_merge_revoked_locked(struct kb_keystore *ks,
				      struct catalog *c);
void kb_identity_free_revoked(struct kb_keystore *ks);

/* ---- kb_keystate.c ---- */

int kb_keystate_parse(const char *text, size_t len, struct key_state *st);
/* The text of a state object, malloc'ed; NULL when out of memory. */
char *kb_keystate_text(const struct key_state *st);
/* The state of name in c, or NULL (not deleted, no policy). */
const struct key_state *kb_keystate_find(const struct catalog *c,
					 const char *name);
/* Reads the key states and the purge-protection flag into c. admin_lock. */
int kb_keystate_load(struct kb_keystore *ks, struct catalog *c,
		     struct kb_findings *f);
/* The digest of the token's generation objects. Needs admin_lock. */
int kb_keystate_generation(struct kb_keystore *ks, unsigned char *digest);
/*
 * Whether the token's generation differs from loaded (a catalogue's).
 * Cheap: it reads the generation objects the last search found, and
 * searches again only if one of them changed or is gone, or every
 * KEYSTATE_SEARCH_S. A writer that bumps the generation destroys the
 * objects it replaces, so a change through any broker or keybrokerctl
 * is seen at the next check. Needs admin_lock.
 */
#define KEYSTATE_SEARCH_S 60
int kb_keystate_generation_moved(struct kb_keystore *ks,
				 const unsigned char *loaded, bool *moved);
/* Tells other brokers that the token changed. Needs admin_lock. */
void kb_keystate_bump_generation(struct kb_keystore *ks);
/*
 * Stores st (its updated_us set here) as the key's newest state object,
 * confirmed by a fresh load, and destroys the older ones. Needs
 * admin_lock.
 */
int kb_keystate_write(struct kb_keystore *ks, struct key_state *st, char *err,
		      size_t errlen);
/* Destroys every state object of name. Needs admin_lock. */
int kb_keystate_remove(struct kb_keystore *ks, const char *name, char *err,
		       size_t errlen);
/* Makes the purge-protection flag unless it is there. Needs admin_lock. */
int kb_keystate_enable_purge_protection(struct kb_keystore *ks, char *err,
					size_t errlen);

/* ---- kb_catalog.c ---- */

void kb_catalog_free(struct catalog *c);
/* A reference to the current snapshot (NULL if none), and its release. */
struct catalog *kb_catalog_get(struct kb_keystore *ks);
void kb_catalog_put(struct kb_keystore *ks, struct catalog *c);
/* name/version, or the current version of name if version is "". */
const struct key_version *
kb_catalog_find(const struct catalog *c, const char *name, const char *version);
/* Reads the token and publishes a new snapshot. Needs admin_lock. */
int kb_catalog_reload_locked(struct kb_keystore *ks);
int kb_catalog_parse_metadata(const char *text, size_t len,
			      struct kb_key_info *info);
/*
 * The metadata object of name/version to believe among metas[0..n): the
 * newest ("updated") that reads back and parses, a disabled one winning a
 * tie. Its handle, text (META_MAX bytes at text, *len of them) and parsed
 * fields; KB_ERR_NOT_FOUND if none. Needs admin_lock.
 */
int kb_catalog_metadata_newest(struct kb_keystore *ks,
			       const CK_OBJECT_HANDLE *metas, size_t n,
			       const char *name, const char *version,
			       CK_OBJECT_HANDLE *obj, char *text, size_t *len,
			       struct kb_key_info *mi);

/* ---- kb_keystore.c ---- */

/*
 * Renews every session after the token failed and re-reads the
 * catalogue, unless another thread already did since seen_gen (a
 * worker's session generation), and at most once per RECOVER_INTERVAL_S
 * while the token stays away. A worker whose token call failed with
 * KB_ERR_HSM calls it and, if it succeeds, tries once more.
 */
int kb_keystore_recover(struct kb_keystore *ks, unsigned int seen_gen);
/* Tries to bring the token back if it is known to be gone. */
int kb_keystore_ensure_available(struct kb_keystore *ks);
/* A live session of the current generation. Needs module_lock shared. */
int kb_keyworker_session(struct kb_keyworker *w);

/* Tells the observer, if any, of n. Hold no lock but admin_lock. */
void kb_keystore_notify(struct kb_keystore *ks, const struct kb_notice *n);

/* A key of the catalogue in force, or CK_INVALID_HANDLE. */
typedef CK_OBJECT_HANDLE (*kb_key_pick)(const struct catalog *c);
/*
 * Signs in[0..inlen) with the key pick chooses, by mech, into out, which
 * must come out exactly outlen bytes long; on w's session (recovering
 * the token once if it was lost) or, with w NULL, the admin session.
 * KB_ERR_NOT_FOUND if there is no such key.
 */
int kb_keystore_token_sign(struct kb_keystore *ks, struct kb_keyworker *w,
			   kb_key_pick pick, enum p11_mech mech,
			   const unsigned char *in, size_t inlen,
			   unsigned char *out, size_t outlen);

#endif
