/* SPDX-License-Identifier: MIT */
/*
 * The key lifecycle: every write an admin makes to the key store, after
 * the management operations of a key vault (create, rotate, update,
 * soft delete, recover, purge, rotation policy), and the broker's own
 * periodic work (seeing other brokers' writes, purging what retention
 * ended, rotating on schedule).
 *
 * Every write is serialised with the other admin work of this process,
 * refused up front while a file-backed token's storage is nearly full
 * (p11_store.h), done only once a fresh load reads it back
 * (p11_confirm.h) and followed by a bump of the token's generation, so
 * that every broker on the token sees it within a second. A write the
 * token did not keep fails with KB_ERR_STORAGE and leaves the previous
 * state; an object is replaced only after its successor is confirmed.
 * err always says what failed and what to do.
 *
 * Processes sharing a file-backed token (SoftHSMv2) also serialise
 * their admin work through a lock on its directory (p11_store_lock). On
 * other tokens, each write creates new objects and the newest wins, so
 * concurrent writes from several hosts never corrupt the catalogue, but
 * the later of two concurrent changes to one version or key may undo
 * the earlier, and two brokers may both rotate a key that falls due.
 */
#ifndef KB_LIFECYCLE_H
#define KB_LIFECYCLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "kb_keyattr.h"
#include "kb_keystore.h"
#include "p11_object.h"

/* What a new key version is made with. */
struct kb_version_spec {
	unsigned int bits; /* 2048, 3072 or 4096 */
	bool enabled;
	int64_t nbf, exp; /* Unix seconds; 0: none */
	unsigned int key_ops; /* KB_KEYOP_* */
	char tags[KB_TAGS_TEXT_MAX]; /* canonical (kb_keyattr.h); "" none */
};

/*
 * A new key name with its first version. KB_ERR_CONFLICT if the name
 * has versions, deleted or not.
 */
int kb_lifecycle_create(struct kb_keystore *ks, const char *name,
			const struct kb_version_spec *spec,
			struct kb_key_info *info, char *err, size_t errlen);

/*
 * A new current version of an existing key: the current one's size,
 * key_ops and tags, enabled, expiring after the rotation policy's
 * expiryTime if it has one. Older versions stay as they are.
 */
int kb_lifecycle_rotate(struct kb_keystore *ks, const char *name,
			struct kb_key_info *info, char *err, size_t errlen);

/*
 * Break-glass (keybrokerctl create-key on the token): a new version of
 * name, creating the key if needed, unless it is deleted.
 */
int kb_lifecycle_add_version(struct kb_keystore *ks, const char *name,
			     const struct kb_version_spec *spec,
			     struct kb_key_info *info, char *err,
			     size_t errlen);

/*
 * Where the private key of an imported version comes from: its parts in
 * plain (a JWK or PKCS#8 PEM, for migrations), or a blob that byok-wrap
 * made for a key-exchange key of this token (the key is never in plain
 * outside an HSM): see p11_unwrap_rsa_aes.
 */
struct kb_import_src {
	const struct p11_rsa_parts *parts; /* NULL: the blob */
	const char *kek; /* a key whose key_ops are ["import"] */
	const char *kek_version; /* "": its current version */
	enum kb_alg kek_alg; /* the OAEP of the blob's AES key */
	const unsigned char *blob;
	size_t bloblen;
};

/*
 * A new version of name (the key is created if needed) whose private key
 * comes from src; marked imported in its attributes, sensitive and never
 * extractable from now on. KB_ERR_UNSUPPORTED unless the keystore allows
 * imports (kb_keystore_params.allow_import); KB_ERR_PARAM for a blob
 * that does not unwrap (another KEK, another hash, altered) or a key of
 * another size than 2048, 3072 or 4096 bits.
 */
/* KB_STATUS_OK, or KB_ERR_UNSUPPORTED with err saying how to allow them. */
int kb_lifecycle_imports_allowed(const struct kb_keystore *ks, char *err,
				 size_t errlen);
int kb_lifecycle_import(struct kb_keystore *ks, const char *name,
			const struct kb_import_src *src,
			const struct kb_version_spec *spec,
			struct kb_key_info *info, char *err, size_t errlen);

/*
 * Changes one version (the current one if version is ""); info gets the
 * result. KB_ERR_DAMAGED for a damaged version (kb_lifecycle_repair).
 */
int kb_lifecycle_update(struct kb_keystore *ks, const char *name,
			const char *version, const struct kb_version_update *u,
			struct kb_key_info *info, char *err, size_t errlen);

/*
 * Writes new metadata for a damaged version (KB_ERR_CONFLICT if it is
 * not damaged). Its creation time was in the lost metadata: with
 * make_current it is dated now and becomes the key's current version;
 * otherwise it is dated just before the key's oldest readable version,
 * so the current version stays what it was.
 */
int kb_lifecycle_repair(struct kb_keystore *ks, const char *name,
			const char *version, bool enabled, bool make_current,
			char *err, size_t errlen);

/*
 * Soft delete: every version stops working at once, and the key is
 * purged recoverable_days later. info gets the current version with
 * its deletion dates.
 */
int kb_lifecycle_delete(struct kb_keystore *ks, const char *name,
			struct kb_key_info *info, char *err, size_t errlen);

/* Undoes a soft delete: the same versions, the same kids. */
int kb_lifecycle_recover(struct kb_keystore *ks, const char *name,
			 struct kb_key_info *info, char *err, size_t errlen);

/*
 * Destroys a deleted key's objects for good. KB_ERR_FORBIDDEN under
 * purge protection (the retention then runs its course).
 */
int kb_lifecycle_purge(struct kb_keystore *ks, const char *name, char *err,
		       size_t errlen);

/* A deleted key's current version; KB_ERR_NOT_FOUND if not deleted. */
int kb_lifecycle_describe_deleted(struct kb_keystore *ks, const char *name,
				  struct kb_key_info *info);

/* The key's rotation policy (text "" if none). */
int kb_lifecycle_get_policy(struct kb_keystore *ks, const char *name,
			    struct kb_rotation_policy *p);
int kb_lifecycle_set_policy(struct kb_keystore *ks, const char *name,
			    const struct kb_rotation_policy *p, char *err,
			    size_t errlen);

/* Turns purge protection on for the token, for good. */
int kb_lifecycle_protect_purges(struct kb_keystore *ks, char *err,
				size_t errlen);
bool kb_lifecycle_purges_protected(struct kb_keystore *ks);

/*
 * The broker's periodic admin work, for its admin lane about once a
 * second: re-reads the catalogue if another process changed the token,
 * purges deleted keys whose retention has ended, and rotates (or warns)
 * as rotation policies say. Skipped while other admin work runs.
 */
void kb_lifecycle_tick(struct kb_keystore *ks, time_t now);

#endif
