// SPDX-License-Identifier: MIT
#include <jansson.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kb_json.h"
#include "kb_keystore_parts.h"
#include "kb_lifecycle.h"
#include "kb_log.h"

/* What an admin write says when the token is in the way. */
#define TOKEN_RETRY "retry once the token answers again"
#define NO_CATALOGUE \
	"the key catalogue is not loaded: the token is unavailable; " TOKEN_RETRY
#define TOKEN_FAILED "the token failed while it was read; " TOKEN_RETRY

/* After a failed scheduled rotation, the next try waits this long. */
#define ROTATE_RETRY_S 60

static int64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- key versions ---- */

/*
 * The metadata text of a version (repaired: when repair-key rewrote it;
 * 0 if never), malloc'ed.
 */
static char *metadata_text(const char *name, const char *version,
			   int64_t created_us, int64_t updated,
			   const struct kb_version_spec *spec,
			   enum kb_origin imported, int64_t repaired)
{
	json_t *o, *tags = NULL;
	char *text = NULL;

	o = json_pack("{s:s, s:s, s:I, s:I, s:I, s:b}", "name", name, "version",
		      version, "created", (json_int_t)(created_us / 1000000),
		      "createdUs", (json_int_t)created_us, "updated",
		      (json_int_t)updated, "enabled", spec->enabled);
	if (o == NULL)
		return NULL;
	if ((spec->nbf != 0 &&
	     json_object_set_new(o, "nbf", json_integer(spec->nbf)) != 0) ||
	    (spec->exp != 0 &&
	     json_object_set_new(o, "exp", json_integer(spec->exp)) != 0) ||
	    (spec->key_ops != KB_KEYOPS_ALL &&
	     json_object_set_new(o, "keyOps", kb_key_ops_json(spec->key_ops)) !=
		     0) ||
	    (imported != KB_ORIGIN_TOKEN &&
	     json_object_set_new(o, "imported",
				 json_string(imported == KB_ORIGIN_BYOK ?
						     "byok" :
						     "plain")) != 0) ||
	    (repaired != 0 &&
	     json_object_set_new(o, "repaired", json_integer(repaired)) != 0))
		goto out;
	if (spec->tags[0] != '\0' &&
	    ((tags = json_loads(spec->tags, 0, NULL)) == NULL ||
	     json_object_set_new(o, "tags", tags) != 0))
		goto out;
	text = kb_json_text(o, JSON_COMPACT | JSON_SORT_KEYS, NULL);
	if (text != NULL && strlen(text) >= META_MAX) {
		free(text);
		text = NULL;
	}
out:
	json_decref(o);
	return text;
}

/* The fields of spec that an existing version has. */
static void spec_of(const struct kb_key_info *info,
		    struct kb_version_spec *spec)
{
	spec->bits = info->bits;
	spec->enabled = info->enabled;
	spec->nbf = info->nbf;
	spec->exp = info->exp;
	spec->key_ops = info->key_ops;
	memcpy(spec->tags, info->tags, sizeof(spec->tags));
}

/*
 * Takes back the objects of a new version that was not confirmed; adds to
 * err what could not be removed. Needs admin_lock.
 */
static void undo_create(struct kb_keystore *ks, const CK_OBJECT_HANDLE *objs,
			size_t n, char *err, size_t errlen)
{
	size_t i, len = strlen(err);
	bool gone = true;
	CK_RV rv, failed = CKR_OK;

	for (i = 0; i < n; i++)
		if ((rv = p11_destroy(ks->tok, ks->admin, objs[i])) != CKR_OK) {
			gone = false;
			failed = rv;
		}
	if (gone)
		snprintf(err + len, errlen - len, "; nothing was created");
	else
		snprintf(err + len, errlen - len,
			 "; removing what was made failed (%s): if the private "
			 "key stayed, keybrokerctl list-keys shows the version "
			 "as damaged",
			 p11_rv_name(failed));
}

/*
 * Confirms a new version by a fresh load: its key pair (by label, ID
 * and modulus) and its metadata (by value). Needs admin_lock.
 */
static int confirm_version(struct kb_keystore *ks, const char *name,
			   const unsigned char *id, CK_OBJECT_HANDLE priv,
			   const char *meta, char *err, size_t errlen)
{
	unsigned char n[P11_MODULUS_MAX];
	struct p11_expect want[3] = {
		{ P11_CLASS_PRIVATE_KEY, name, id, KB_VERSION_BYTES, NULL,
		  P11_A_MODULUS, n, 0, "the new private key" },
		{ P11_CLASS_PUBLIC_KEY, name, id, KB_VERSION_BYTES, NULL,
		  P11_A_MODULUS, n, 0, "the new public key" },
		{ P11_CLASS_DATA, name, NULL, 0, META_APPLICATION, P11_A_VALUE,
		  meta, strlen(meta), "the new metadata object" },
	};
	struct p11_object *o;
	char why[384];
	size_t nlen = 0;
	int r;

	if ((o = malloc(sizeof(*o))) == NULL)
		return KB_ERR_NOMEM;
	if (p11_read(ks->tok, ks->admin, priv, P11_A_MODULUS, o) ==
		    KB_STATUS_OK &&
	    (o->have & P11_A_MODULUS)) {
		nlen = o->modulus_len;
		memcpy(n, o->modulus, nlen);
	}
	free(o);
	if (nlen == 0) {
		snprintf(err, errlen,
			 "the token did not keep the new key pair (is its "
			 "storage full?): its modulus does not read back");
		return KB_ERR_STORAGE;
	}
	want[0].value_len = want[1].value_len = nlen;
	if ((r = kb_keyadmin_confirm(ks, want, 3, why, sizeof(why))) ==
	    KB_ERR_STORAGE)
		snprintf(err, errlen,
			 "the token did not keep the new version (is its "
			 "storage full?): %s",
			 why);
	else if (r != KB_STATUS_OK)
		snprintf(err, errlen,
			 "the new version could not be confirmed by a fresh "
			 "load of the token: %s",
			 why);
	return r == KB_STATUS_OK ? KB_STATUS_OK : KB_ERR_STORAGE;
}

/*
 * After a confirmed write: other brokers are told, and this one reads
 * the token again. Needs admin_lock.
 */
static int written(struct kb_keystore *ks, char *err, size_t errlen)
{
	kb_keystate_bump_generation(ks);
	if (kb_catalog_reload_locked(ks) == KB_STATUS_OK)
		return KB_STATUS_OK;
	snprintf(err, errlen,
		 "the change is stored, but re-reading the key catalogue "
		 "failed");
	return KB_ERR_HSM;
}

/*
 * name/version (current if "") in the current catalogue, deleted or not,
 * into info. Needs admin_lock (so that no reload runs meanwhile).
 */
static int find_locked(struct kb_keystore *ks, const char *name,
		       const char *version, struct kb_key_info *info)
{
	struct catalog *c = kb_catalog_get(ks);
	const struct key_version *v;
	int r = KB_ERR_HSM;

	if (c != NULL) {
		v = kb_catalog_find(c, name, version);
		if (v != NULL)
			*info = v->info;
		r = v == NULL	    ? KB_ERR_NOT_FOUND :
		    v->info.damaged ? KB_ERR_DAMAGED :
				      KB_STATUS_OK;
	}
	kb_catalog_put(ks, c);
	return r;
}

/* The state of name as the current catalogue has it. Needs admin_lock. */
static void state_locked(struct kb_keystore *ks, const char *name,
			 struct key_state *st)
{
	struct catalog *c = kb_catalog_get(ks);
	const struct key_state *cur = c != NULL ? kb_keystate_find(c, name) :
						  NULL;

	if (cur != NULL)
		*st = *cur;
	else
		memset(st, 0, sizeof(*st));
	snprintf(st->name, sizeof(st->name), "%s", name);
	kb_catalog_put(ks, c);
}

static int check_spec(const char *name, const struct kb_version_spec *spec,
		      char *err, size_t errlen)
{
	if (!kb_name_valid(name, strlen(name))) {
		snprintf(err, errlen,
			 "invalid key name: use 1-%d of A-Z a-z 0-9 -",
			 KB_NAME_MAX);
		return KB_ERR_PARAM;
	}
	if (spec->bits != 2048 && spec->bits != 3072 && spec->bits != 4096) {
		snprintf(err, errlen, "key size must be 2048, 3072 or 4096");
		return KB_ERR_PARAM;
	}
	if ((spec->key_ops == 0 || (spec->key_ops & ~KB_KEYOPS_ALL) != 0) &&
	    spec->key_ops != KB_KEYOP_IMPORT) {
		snprintf(
			err, errlen,
			"key_ops must name wrapKey, unwrapKey, or import alone");
		return KB_ERR_PARAM;
	}
	return KB_STATUS_OK;
}

/*
 * The key-exchange key src names, usable for an import: its private key
 * and modulus length. Needs admin_lock.
 */
static int find_kek(struct kb_keystore *ks, const struct kb_import_src *src,
		    CK_OBJECT_HANDLE *priv, size_t *nlen, char *err,
		    size_t errlen)
{
	struct catalog *c = kb_catalog_get(ks);
	const struct key_version *v;
	int r = KB_STATUS_OK;

	v = c != NULL ? kb_catalog_find(c, src->kek, src->kek_version) : NULL;
	if (v == NULL || v->info.deleted != 0) {
		snprintf(err, errlen, "key-exchange key '%s' %s%s not found",
			 src->kek, src->kek_version[0] ? "version " : "",
			 src->kek_version);
		r = KB_ERR_NOT_FOUND;
	} else if (v->info.key_ops != KB_KEYOP_IMPORT) {
		snprintf(err, errlen,
			 "key '%s' is not a key-exchange key (its key_ops are "
			 "not [\"import\"])",
			 src->kek);
		r = KB_ERR_PARAM;
	} else if (v->info.damaged || !v->info.enabled ||
		   (v->info.exp != 0 && time(NULL) >= v->info.exp) ||
		   (v->info.nbf != 0 && time(NULL) < v->info.nbf)) {
		snprintf(err, errlen,
			 "key-exchange key '%s' version %s is disabled, "
			 "expired, not yet valid or damaged",
			 src->kek, v->info.version);
		r = KB_ERR_DISABLED;
	} else {
		*priv = v->priv;
		*nlen = v->info.nlen;
	}
	kb_catalog_put(ks, c);
	return r;
}

/*
 * Unwraps src's blob with its key-exchange key into a private key of
 * name/id, and makes its public key from what the token says it is.
 * objs: public, private. Needs admin_lock.
 */
static int unwrap_pair(struct kb_keystore *ks, const char *name,
		       const unsigned char *id, const struct kb_import_src *src,
		       CK_OBJECT_HANDLE *objs, char *err, size_t errlen)
{
	enum p11_mech oaep = kb_alg_mech(src->kek_alg);
	CK_OBJECT_HANDLE kek;
	struct p11_object *o;
	size_t klen;
	CK_RV rv;
	int r;

	if ((r = find_kek(ks, src, &kek, &klen, err, errlen)) != KB_STATUS_OK)
		return r;
	rv = p11_unwrap_rsa_aes(ks->tok, ks->admin, kek, oaep, klen, src->blob,
				src->bloblen, name, id, KB_VERSION_BYTES,
				&objs[1]);
	if (rv != CKR_OK) {
		snprintf(err, errlen,
			 "the blob does not unwrap with key-exchange key '%s' "
			 "(C_UnwrapKey: %s): it was made for another key, with "
			 "another OAEP hash than %s, or altered",
			 src->kek, p11_rv_name(rv), kb_alg_name(src->kek_alg));
		return p11_rv_is_token_lost(rv) ? KB_ERR_HSM : KB_ERR_PARAM;
	}
	if ((o = malloc(sizeof(*o))) == NULL) {
		p11_destroy(ks->tok, ks->admin, objs[1]);
		return KB_ERR_NOMEM;
	}
	r = KB_ERR_PARAM;
	if (p11_read(ks->tok, ks->admin, objs[1],
		     P11_A_MODULUS | P11_A_EXPONENT, o) != KB_STATUS_OK ||
	    !(o->have & P11_A_MODULUS) || !(o->have & P11_A_EXPONENT)) {
		snprintf(err, errlen,
			 "the unwrapped key is not an RSA key the token shows");
	} else if (o->modulus_len != 256 && o->modulus_len != 384 &&
		   o->modulus_len != 512) {
		snprintf(err, errlen,
			 "the unwrapped key is %zu bits: 2048, 3072 or 4096 "
			 "only",
			 o->modulus_len * 8);
	} else if ((rv = p11_create_rsa_public(
			    ks->tok, ks->admin, o->modulus, o->modulus_len,
			    o->exponent, o->exponent_len, name, id,
			    KB_VERSION_BYTES, &objs[0])) != CKR_OK) {
		snprintf(err, errlen, "storing the public key failed: %s",
			 p11_rv_name(rv));
		r = KB_ERR_HSM;
	} else {
		r = KB_STATUS_OK;
	}
	free(o);
	if (r != KB_STATUS_OK)
		p11_destroy(ks->tok, ks->admin, objs[1]);
	return r;
}

/*
 * The key pair of a new version: generated in the token (src NULL), or
 * imported from src. objs: public, private. Needs admin_lock.
 */
static int make_pair(struct kb_keystore *ks, const char *name,
		     const unsigned char *id,
		     const struct kb_version_spec *spec,
		     const struct kb_import_src *src, CK_OBJECT_HANDLE *objs,
		     char *err, size_t errlen)
{
	CK_RV rv;

	if (src != NULL && src->parts == NULL)
		return unwrap_pair(ks, name, id, src, objs, err, errlen);
	if (src != NULL) {
		rv = p11_import_rsa(ks->tok, ks->admin, src->parts, name, id,
				    KB_VERSION_BYTES, &objs[0], &objs[1]);
		if (rv == CKR_OK)
			return KB_STATUS_OK;
		snprintf(err, errlen,
			 "the token refused the key (C_CreateObject: %s)",
			 p11_rv_name(rv));
		return p11_rv_is_token_lost(rv) ? KB_ERR_HSM : KB_ERR_PARAM;
	}
	rv = p11_generate_rsa(ks->tok, ks->admin, spec->bits,
			      spec->key_ops == KB_KEYOP_IMPORT, name, id,
			      KB_VERSION_BYTES, &objs[0], &objs[1]);
	if (rv == CKR_OK)
		return KB_STATUS_OK;
	snprintf(err, errlen,
		 "the token refused to generate the key pair "
		 "(C_GenerateKeyPair: %s)",
		 p11_rv_name(rv));
	return KB_ERR_HSM;
}

/*
 * Makes (or imports from src), stores and confirms a new version of name.
 * Needs admin_lock; the caller checked what the name may be.
 */
static int new_version_locked(struct kb_keystore *ks, const char *name,
			      const struct kb_version_spec *spec,
			      const struct kb_import_src *src,
			      struct kb_key_info *info, char *err,
			      size_t errlen)
{
	unsigned char id[KB_VERSION_BYTES];
	char version[KB_VERSION_LEN + 1], *meta = NULL;
	CK_OBJECT_HANDLE objs[3]; /* public, private, metadata */
	CK_RV rv;
	int r;

	if (RAND_bytes(id, sizeof(id)) != 1) {
		snprintf(err, errlen, "no random bytes for a version");
		return KB_ERR_NOMEM;
	}
	kb_hex_encode(version, id, sizeof(id));
	if ((r = p11_token_check_space(ks->tok, err, errlen)) != KB_STATUS_OK)
		return r;
	if ((meta = metadata_text(name, version, now_us(), time(NULL), spec,
				  src == NULL	     ? KB_ORIGIN_TOKEN :
				  src->parts != NULL ? KB_ORIGIN_PLAIN :
						       KB_ORIGIN_BYOK,
				  0)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return KB_ERR_NOMEM;
	}
	/*
	 * The metadata first: a load in another process that finds the
	 * private key then finds its metadata too, and never takes a
	 * version being made for a damaged one. Metadata without a key is
	 * passed over.
	 */
	if ((rv = p11_create_data(ks->tok, ks->admin, META_APPLICATION, name,
				  meta, strlen(meta), &objs[2])) != CKR_OK) {
		snprintf(err, errlen,
			 "storing the key metadata in the token failed: %s",
			 p11_rv_name(rv));
		free(meta);
		return KB_ERR_HSM;
	}
	if ((r = make_pair(ks, name, id, spec, src, objs, err, errlen)) !=
	    KB_STATUS_OK) {
		undo_create(ks, &objs[2], 1, err, errlen);
		free(meta);
		return r;
	}
	r = confirm_version(ks, name, id, objs[1], meta, err, errlen);
	free(meta);
	if (r != KB_STATUS_OK) {
		undo_create(ks, objs, 3, err, errlen);
		return r;
	}
	if ((r = written(ks, err, errlen)) != KB_STATUS_OK)
		return r;
	if (find_locked(ks, name, version, info) != KB_STATUS_OK) {
		snprintf(err, errlen,
			 "the new version is not in the catalogue");
		return KB_ERR_HSM;
	}
	return KB_STATUS_OK;
}

/*
 * Whether obj may be a key version (an ID of KB_VERSION_BYTES, or one
 * that does not read: it cannot be told apart). KB_ERR_HSM if the token
 * is gone. Needs admin_lock.
 */
static int maybe_version(struct kb_keystore *ks, CK_OBJECT_HANDLE obj,
			 bool *maybe)
{
	struct p11_object o;
	int r;

	if ((r = p11_read(ks->tok, ks->admin, obj, P11_A_ID, &o)) !=
	    KB_STATUS_OK)
		return r;
	*maybe = !(o.have & P11_A_ID) || o.id_len == KB_VERSION_BYTES;
	return KB_STATUS_OK;
}

/*
 * How many private keys in the token may be versions of name, whether
 * this broker's catalogue has them or not (imported keys where imports
 * are off, keys it refused). Needs admin_lock.
 */
static int versions_in_token(struct kb_keystore *ks, const char *name,
			     size_t *count)
{
	struct p11_match m = { .cls = P11_CLASS_PRIVATE_KEY,
			       .type = P11_TYPE_RSA,
			       .label = name };
	CK_OBJECT_HANDLE *objs;
	size_t n, i;
	bool maybe;
	int r;

	*count = 0;
	if ((r = p11_find(ks->tok, ks->admin, &m, &objs, &n)) != KB_STATUS_OK)
		return r;
	for (i = 0; i < n && r == KB_STATUS_OK; i++)
		if ((r = maybe_version(ks, objs[i], &maybe)) == KB_STATUS_OK &&
		    maybe)
			(*count)++;
	free(objs);
	return r;
}

int kb_lifecycle_create(struct kb_keystore *ks, const char *name,
			const struct kb_version_spec *spec,
			struct kb_key_info *info, char *err, size_t errlen)
{
	struct kb_key_info cur;
	size_t n;
	int r;

	if ((r = check_spec(name, spec, err, errlen)) != KB_STATUS_OK)
		return r;
	kb_keyadmin_enter(ks);
	if ((r = find_locked(ks, name, "", &cur)) != KB_ERR_NOT_FOUND) {
		if (r == KB_STATUS_OK || r == KB_ERR_DAMAGED) {
			snprintf(err, errlen,
				 cur.deleted != 0 ?
					 "key '%s' exists, deleted: recover or "
					 "purge it first" :
					 "key '%s' exists: rotateKey makes a "
					 "new version",
				 name);
			r = KB_ERR_CONFLICT;
		} else {
			snprintf(err, errlen, NO_CATALOGUE);
		}
		goto out;
	}
	/*
	 * A state object left by an interrupted purge is not this key's;
	 * but one of a key whose versions this broker does not use is.
	 */
	if ((r = versions_in_token(ks, name, &n)) != KB_STATUS_OK) {
		snprintf(err, errlen, TOKEN_FAILED);
	} else if (n > 0) {
		snprintf(err, errlen,
			 "the token holds %zu private keys of a key named '%s' "
			 "that this broker does not use (imported keys where "
			 "keys.allow_import is off, or keys it refused: its "
			 "log says why)",
			 n, name);
		r = KB_ERR_CONFLICT;
	} else if ((r = kb_keystate_remove(ks, name, err, errlen)) ==
		   KB_STATUS_OK) {
		r = new_version_locked(ks, name, spec, NULL, info, err, errlen);
	}
out:
	kb_keyadmin_leave(ks);
	return r;
}

/*
 * A new version of name, generated (src NULL) or imported: not while the
 * key is deleted, and of the key's kind (a data key or a key-exchange
 * key: the token made each for its one use).
 */
static int add_version(struct kb_keystore *ks, const char *name,
		       const struct kb_version_spec *spec,
		       const struct kb_import_src *src,
		       struct kb_key_info *info, char *err, size_t errlen)
{
	bool kek = spec->key_ops == KB_KEYOP_IMPORT;
	struct kb_key_info cur;
	int r;

	kb_keyadmin_enter(ks);
	if ((r = find_locked(ks, name, "", &cur)) == KB_ERR_HSM) {
		snprintf(err, errlen, NO_CATALOGUE);
	} else if (r != KB_ERR_NOT_FOUND && cur.deleted != 0) {
		snprintf(err, errlen,
			 "key '%s' is deleted: recover or purge it first",
			 name);
		r = KB_ERR_CONFLICT;
	} else if (r != KB_ERR_NOT_FOUND &&
		   (cur.key_ops == KB_KEYOP_IMPORT) != kek) {
		snprintf(err, errlen,
			 "key '%s' is a %s: a %s cannot be a version of it",
			 name, kek ? "data key" : "key-exchange key",
			 kek ? "key-exchange key" : "data key");
		r = KB_ERR_CONFLICT;
	} else {
		r = new_version_locked(ks, name, spec, src, info, err, errlen);
	}
	kb_keyadmin_leave(ks);
	return r;
}

int kb_lifecycle_add_version(struct kb_keystore *ks, const char *name,
			     const struct kb_version_spec *spec,
			     struct kb_key_info *info, char *err, size_t errlen)
{
	int r = check_spec(name, spec, err, errlen);

	return r != KB_STATUS_OK ?
		       r :
		       add_version(ks, name, spec, NULL, info, err, errlen);
}

/* Rotates name. Needs admin_lock. */
static int rotate_locked(struct kb_keystore *ks, const char *name,
			 struct kb_key_info *info, char *err, size_t errlen)
{
	struct kb_version_spec spec;
	struct kb_key_info cur;
	struct key_state st;
	int r;

	if ((r = find_locked(ks, name, "", &cur)) == KB_ERR_NOT_FOUND ||
	    (r == KB_STATUS_OK && cur.deleted != 0)) {
		snprintf(err, errlen, "key '%s' not found", name);
		return KB_ERR_NOT_FOUND;
	}
	if (r == KB_ERR_DAMAGED) {
		snprintf(err, errlen,
			 "key '%s' has a damaged version %s, so its current "
			 "version is not known; repair it first "
			 "(keybrokerctl repair-key)",
			 name, cur.version);
		return r;
	}
	if (r != KB_STATUS_OK) {
		snprintf(err, errlen, NO_CATALOGUE);
		return r;
	}
	spec_of(&cur, &spec);
	state_locked(ks, name, &st);
	spec.enabled = true;
	spec.nbf = 0;
	spec.exp = st.policy.expiry_time != 0 ?
			   (int64_t)time(NULL) + st.policy.expiry_time :
			   0;
	return new_version_locked(ks, name, &spec, NULL, info, err, errlen);
}

int kb_lifecycle_rotate(struct kb_keystore *ks, const char *name,
			struct kb_key_info *info, char *err, size_t errlen)
{
	int r;

	kb_keyadmin_enter(ks);
	r = rotate_locked(ks, name, info, err, errlen);
	kb_keyadmin_leave(ks);
	return r;
}

int kb_lifecycle_imports_allowed(const struct kb_keystore *ks, char *err,
				 size_t errlen)
{
	if (ks->allow_import)
		return KB_STATUS_OK;
	snprintf(err, errlen,
		 "importKey is off: keys.allow_import = true in the "
		 "configuration turns it on (for every broker of the token)");
	return KB_ERR_UNSUPPORTED;
}

int kb_lifecycle_import(struct kb_keystore *ks, const char *name,
			const struct kb_import_src *src,
			const struct kb_version_spec *spec,
			struct kb_key_info *info, char *err, size_t errlen)
{
	struct kb_version_spec checked = *spec;
	int r;

	checked.bits = 2048; /* the key's own: checked where it is read */
	if ((r = check_spec(name, &checked, err, errlen)) != KB_STATUS_OK)
		return r;
	if (spec->key_ops == KB_KEYOP_IMPORT) {
		snprintf(err, errlen,
			 "an imported key is a data key: key_ops wrapKey, "
			 "unwrapKey");
		return KB_ERR_PARAM;
	}
	if ((r = kb_lifecycle_imports_allowed(ks, err, errlen)) != KB_STATUS_OK)
		return r;
	return add_version(ks, name, spec, src, info, err, errlen);
}

/*
 * Destroys every metadata object of name/version among metas: the ones a
 * confirmed successor replaces (and any an earlier update left behind).
 * One that stays is harmless, the newest wins. Needs admin_lock.
 */
static void destroy_replaced(struct kb_keystore *ks,
			     const CK_OBJECT_HANDLE *metas, size_t n,
			     const char *name, const char *version, char *text)
{
	struct kb_key_info *mi;
	struct p11_object *o;
	size_t i;
	CK_RV rv;

	o = malloc(sizeof(*o));
	mi = malloc(sizeof(*mi));
	for (i = 0; o != NULL && mi != NULL && i < n; i++) {
		memset(mi, 0, sizeof(*mi));
		o->value = text;
		o->value_max = META_MAX;
		if (p11_read(ks->tok, ks->admin, metas[i], P11_A_VALUE, o) !=
			    KB_STATUS_OK ||
		    !(o->have & P11_A_VALUE) ||
		    kb_catalog_parse_metadata(text, o->value_len, mi) !=
			    KB_STATUS_OK ||
		    strcmp(mi->version, version) != 0 ||
		    (rv = p11_destroy(ks->tok, ks->admin, metas[i])) == CKR_OK)
			continue;
		kb_warn("key %s version %s: a replaced metadata object was not "
			"removed (%s); the newest one is used",
			name, version, p11_rv_name(rv));
	}
	free(mi);
	free(o);
}

/* Applies u to the metadata o; -1 when out of memory. */
static int patch_metadata(json_t *o, const struct kb_version_update *u,
			  json_int_t updated)
{
	json_t *tags;

	if (json_object_set_new(o, "updated", json_integer(updated)) != 0 ||
	    ((u->set & KB_SET_ENABLED) &&
	     json_object_set_new(o, "enabled", json_boolean(u->enabled)) != 0))
		return -1;
	if ((u->set & KB_SET_NBF) &&
	    json_object_set_new(o, "nbf",
				u->nbf != 0 ? json_integer(u->nbf) :
					      json_null()) != 0)
		return -1;
	if ((u->set & KB_SET_EXP) &&
	    json_object_set_new(o, "exp",
				u->exp != 0 ? json_integer(u->exp) :
					      json_null()) != 0)
		return -1;
	if (u->set & KB_SET_KEY_OPS) {
		json_object_del(o, "keyOps");
		if (u->key_ops != KB_KEYOPS_ALL &&
		    json_object_set_new(o, "keyOps",
					kb_key_ops_json(u->key_ops)) != 0)
			return -1;
	}
	if (u->set & KB_SET_TAGS) {
		json_object_del(o, "tags");
		if (u->tags[0] != '\0' &&
		    ((tags = json_loads(u->tags, 0, NULL)) == NULL ||
		     json_object_set_new(o, "tags", tags) != 0))
			return -1;
	}
	return 0;
}

/*
 * Replaces the metadata of name/version with a copy changed by u: the
 * new object is created and confirmed by a fresh load before the old one
 * is destroyed, so a lost write leaves the old one in force.
 * KB_ERR_NOT_FOUND if no metadata reads back. Needs admin_lock.
 */
static int update_metadata(struct kb_keystore *ks, const char *name,
			   const char *version,
			   const struct kb_version_update *u, char *err,
			   size_t errlen)
{
	struct p11_match m = { .cls = P11_CLASS_DATA,
			       .label = name,
			       .application = META_APPLICATION,
			       .private_only = true };
	CK_OBJECT_HANDLE *metas, old, obj;
	struct kb_key_info *mi = NULL;
	char *text, *out = NULL;
	json_t *o = NULL;
	json_int_t now = (json_int_t)time(NULL), updated;
	size_t n, len;
	int r;

	if ((r = p11_find(ks->tok, ks->admin, &m, &metas, &n)) != KB_STATUS_OK)
		return r;
	if ((text = malloc(META_MAX)) == NULL ||
	    (mi = malloc(sizeof(*mi))) == NULL) {
		r = KB_ERR_NOMEM;
		goto out_free;
	}
	if ((r = kb_catalog_metadata_newest(ks, metas, n, name, version, &old,
					    text, &len, mi)) != KB_STATUS_OK)
		goto out_free;
	/* "updated" orders the objects: the new one must pass the old. */
	updated = now > mi->updated ? now : mi->updated + 1;
	o = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
	if (o == NULL || patch_metadata(o, u, updated) != 0 ||
	    (out = kb_json_text(o, JSON_COMPACT | JSON_SORT_KEYS, NULL)) ==
		    NULL) {
		r = KB_ERR_NOMEM;
		goto out_free;
	}
	if (strlen(out) >= META_MAX) {
		snprintf(err, errlen,
			 "the version's metadata would take more than %d "
			 "bytes; use fewer or shorter tags",
			 META_MAX - 1);
		r = KB_ERR_PARAM;
		goto out_free;
	}
	/*
	 * Tokens may refuse to change CKA_VALUE (SoftHSMv2 does), so the
	 * new metadata is a new object.
	 */
	if ((r = kb_keyadmin_create_confirmed(ks, META_APPLICATION, name, out,
					      false, "the new metadata object",
					      &obj, err, errlen)) ==
	    KB_STATUS_OK)
		destroy_replaced(ks, metas, n, name, version, text);
out_free:
	json_decref(o);
	free(out);
	free(mi);
	free(text);
	free(metas);
	return r;
}

int kb_lifecycle_update(struct kb_keystore *ks, const char *name,
			const char *version, const struct kb_version_update *u,
			struct kb_key_info *info, char *err, size_t errlen)
{
	char ver[KB_VERSION_LEN + 1];
	int r;

	err[0] = '\0';
	kb_keyadmin_enter(ks);
	r = find_locked(ks, name, version, info);
	if (r == KB_ERR_NOT_FOUND || (r == KB_STATUS_OK && info->deleted)) {
		r = KB_ERR_NOT_FOUND;
		if (version[0] != '\0')
			snprintf(err, errlen, "key '%s' has no version '%s'",
				 name, version);
		else
			snprintf(err, errlen, "key '%s' not found", name);
		goto out_unlock;
	}
	if (r == KB_ERR_DAMAGED) {
		snprintf(err, errlen,
			 "key %s version %s is damaged (no readable metadata); "
			 "keybrokerctl repair-key %s %s --enabled|--disabled "
			 "rewrites it",
			 name, info->version, name, info->version);
		goto out_unlock;
	}
	if (r != KB_STATUS_OK) {
		snprintf(err, errlen, NO_CATALOGUE);
		goto out_unlock;
	}
	memcpy(ver, info->version, sizeof(ver));
	/* What the token lets the private key do cannot change. */
	if ((u->set & KB_SET_KEY_OPS) &&
	    (u->key_ops == KB_KEYOP_IMPORT) !=
		    (info->key_ops == KB_KEYOP_IMPORT)) {
		snprintf(err, errlen,
			 "key_ops [\"import\"] is made with the key in the "
			 "token: it cannot be given to a data key nor taken "
			 "from a key-exchange key");
		r = KB_ERR_PARAM;
		goto out_unlock;
	}
	if ((r = p11_token_check_space(ks->tok, err, errlen)) != KB_STATUS_OK)
		goto out_unlock;
	r = update_metadata(ks, name, ver, u, err, errlen);
	if (r == KB_ERR_NOT_FOUND)
		snprintf(err, errlen, "key '%s' has no version '%s'", name,
			 ver);
	else if (r == KB_ERR_NOMEM)
		snprintf(err, errlen, "out of memory");
	else if (r == KB_ERR_HSM && err[0] == '\0')
		snprintf(err, errlen,
			 "reading the key metadata failed; " TOKEN_RETRY);
	if (r == KB_STATUS_OK && (r = written(ks, err, errlen)) == KB_STATUS_OK)
		r = find_locked(ks, name, ver, info);
out_unlock:
	kb_keyadmin_leave(ks);
	return r;
}

/*
 * When a repaired version of name was made: now if it is to be current
 * (and after every readable version), else just before the oldest
 * readable version.
 */
static int64_t repaired_created_us(const struct catalog *c, const char *name,
				   bool make_current)
{
	int64_t oldest = 0, newest = 0, now = now_us();
	size_t i;

	for (i = 0; i < c->n; i++) {
		if (strcmp(c->v[i].info.name, name) != 0 ||
		    c->v[i].info.damaged)
			continue;
		if (oldest == 0 || c->v[i].info.created_us < oldest)
			oldest = c->v[i].info.created_us;
		if (c->v[i].info.created_us > newest)
			newest = c->v[i].info.created_us;
	}
	if (make_current)
		return now > newest ? now : newest + 1;
	return oldest > 1 ? oldest - 1 : now;
}

/*
 * What the token says a private key is for and where it came from, as
 * far as it can say: unwrap-only is a key-exchange key, anything else a
 * data key (a narrower key_ops that lived in lost metadata is not
 * known); not generated in the token is an import (whether once in
 * plain is not known: plain, the cautious answer). Needs admin_lock.
 */
static int token_usage(struct kb_keystore *ks, CK_OBJECT_HANDLE priv,
		       unsigned int *key_ops, enum kb_origin *origin, char *err,
		       size_t errlen)
{
	struct p11_object o;

	if (p11_read(ks->tok, ks->admin, priv,
		     P11_A_DECRYPT | P11_A_UNWRAP | P11_A_LOCAL,
		     &o) != KB_STATUS_OK ||
	    !(o.have & P11_A_DECRYPT) || !(o.have & P11_A_UNWRAP) ||
	    !(o.have & P11_A_LOCAL)) {
		snprintf(
			err, errlen,
			"the private key's usage does not read back; " TOKEN_RETRY);
		return KB_ERR_HSM;
	}
	*key_ops = (o.set & P11_A_UNWRAP) && !(o.set & P11_A_DECRYPT) ?
			   KB_KEYOP_IMPORT :
			   KB_KEYOPS_ALL;
	*origin = (o.set & P11_A_LOCAL) ? KB_ORIGIN_TOKEN : KB_ORIGIN_PLAIN;
	return KB_STATUS_OK;
}

int kb_lifecycle_repair(struct kb_keystore *ks, const char *name,
			const char *version, bool enabled, bool make_current,
			char *err, size_t errlen)
{
	struct kb_version_spec spec = { .enabled = enabled,
					.key_ops = KB_KEYOPS_ALL };
	enum kb_origin origin = KB_ORIGIN_TOKEN;
	const struct key_version *v;
	struct catalog *c;
	CK_OBJECT_HANDLE obj, priv = CK_INVALID_HANDLE;
	int64_t created_us = 0;
	char *text;
	int r = KB_STATUS_OK;

	kb_keyadmin_enter(ks);
	if ((c = kb_catalog_get(ks)) == NULL) {
		snprintf(err, errlen, NO_CATALOGUE);
		r = KB_ERR_HSM;
	} else if ((v = kb_catalog_find(c, name, version)) == NULL) {
		snprintf(err, errlen, "key '%s' has no version '%s'", name,
			 version);
		r = KB_ERR_NOT_FOUND;
	} else if (!v->info.damaged) {
		snprintf(err, errlen,
			 "key %s version %s is not damaged (its metadata reads "
			 "back); enable-key or disable-key changes it",
			 name, version);
		r = KB_ERR_CONFLICT;
	} else {
		created_us = repaired_created_us(c, name, make_current);
		priv = v->priv;
	}
	kb_catalog_put(ks, c);
	if (r != KB_STATUS_OK ||
	    (r = token_usage(ks, priv, &spec.key_ops, &origin, err, errlen)) !=
		    KB_STATUS_OK ||
	    (r = p11_token_check_space(ks->tok, err, errlen)) != KB_STATUS_OK)
		goto out_unlock;
	if ((text = metadata_text(name, version, created_us, time(NULL), &spec,
				  origin, (int64_t)time(NULL))) == NULL) {
		snprintf(err, errlen, "out of memory");
		r = KB_ERR_NOMEM;
		goto out_unlock;
	}
	r = kb_keyadmin_create_confirmed(ks, META_APPLICATION, name, text,
					 false, "the new metadata object", &obj,
					 err, errlen);
	free(text);
	if (r == KB_STATUS_OK)
		r = written(ks, err, errlen);
out_unlock:
	kb_keyadmin_leave(ks);
	return r;
}

/* ---- soft delete, recovery, purge ---- */

/*
 * name's current version, which must exist and be deleted (or not:
 * want_deleted) for the operation; err names the key otherwise. Needs
 * admin_lock.
 */
static int find_key_locked(struct kb_keystore *ks, const char *name,
			   bool want_deleted, struct kb_key_info *info,
			   char *err, size_t errlen)
{
	int r = find_locked(ks, name, "", info);

	if (r == KB_ERR_NOT_FOUND ||
	    ((r == KB_STATUS_OK || r == KB_ERR_DAMAGED) &&
	     (info->deleted != 0) != want_deleted)) {
		snprintf(err, errlen,
			 want_deleted ? "key '%s' is not a deleted key" :
					"key '%s' not found",
			 name);
		return KB_ERR_NOT_FOUND;
	}
	if (r == KB_ERR_HSM)
		snprintf(err, errlen, NO_CATALOGUE);
	/* A damaged version does not stop a key being deleted or back. */
	return r == KB_ERR_DAMAGED ? KB_STATUS_OK : r;
}

/* Writes name's state with deleted set or cleared. Needs admin_lock. */
static int set_deleted_locked(struct kb_keystore *ks, const char *name,
			      bool deleted, struct kb_key_info *info, char *err,
			      size_t errlen)
{
	struct key_state st;
	int r;

	if ((r = find_key_locked(ks, name, !deleted, info, err, errlen)) !=
		    KB_STATUS_OK ||
	    (r = p11_token_check_space(ks->tok, err, errlen)) != KB_STATUS_OK)
		return r;
	state_locked(ks, name, &st);
	st.deleted = deleted ? (int64_t)time(NULL) : 0;
	st.scheduled_purge =
		deleted ? st.deleted + (int64_t)ks->recoverable_days * 86400 :
			  0;
	if ((r = kb_keystate_write(ks, &st, err, errlen)) != KB_STATUS_OK ||
	    (r = written(ks, err, errlen)) != KB_STATUS_OK)
		return r;
	r = find_locked(ks, name, "", info);
	return r == KB_ERR_DAMAGED ? KB_STATUS_OK : r;
}

int kb_lifecycle_delete(struct kb_keystore *ks, const char *name,
			struct kb_key_info *info, char *err, size_t errlen)
{
	int r;

	kb_keyadmin_enter(ks);
	r = set_deleted_locked(ks, name, true, info, err, errlen);
	kb_keyadmin_leave(ks);
	return r;
}

int kb_lifecycle_recover(struct kb_keystore *ks, const char *name,
			 struct kb_key_info *info, char *err, size_t errlen)
{
	int r;

	kb_keyadmin_enter(ks);
	r = set_deleted_locked(ks, name, false, info, err, errlen);
	kb_keyadmin_leave(ks);
	return r;
}

/*
 * Destroys the objects of m that are (or may be) key versions of name
 * (any object if !keys_only); *left counts those that stay. Needs
 * admin_lock.
 */
static int destroy_matching(struct kb_keystore *ks, const struct p11_match *m,
			    bool keys_only, size_t *left, CK_RV *failed)
{
	CK_OBJECT_HANDLE *objs;
	size_t n, i;
	bool maybe = true;
	CK_RV rv;
	int r;

	if ((r = p11_find(ks->tok, ks->admin, m, &objs, &n)) != KB_STATUS_OK)
		return r;
	for (i = 0; i < n && r == KB_STATUS_OK; i++) {
		if (keys_only &&
		    ((r = maybe_version(ks, objs[i], &maybe)) != KB_STATUS_OK ||
		     !maybe))
			continue;
		if ((rv = p11_destroy(ks->tok, ks->admin, objs[i])) != CKR_OK) {
			(*left)++;
			*failed = rv;
		}
	}
	free(objs);
	return r;
}

/* Destroys every object of a deleted key. Needs admin_lock. */
static int purge_locked(struct kb_keystore *ks, const char *name, char *err,
			size_t errlen)
{
	struct p11_match privs = { .cls = P11_CLASS_PRIVATE_KEY,
				   .type = P11_TYPE_RSA,
				   .label = name };
	struct p11_match pubs = { .cls = P11_CLASS_PUBLIC_KEY,
				  .type = P11_TYPE_RSA,
				  .label = name };
	struct p11_match metas = { .cls = P11_CLASS_DATA,
				   .label = name,
				   .application = META_APPLICATION,
				   .private_only = true };
	CK_RV failed = CKR_OK;
	size_t left = 0;
	int r;

	/*
	 * Private keys first, the state object last: a purge cut short
	 * leaves a key that is still deleted, or no key at all, never one
	 * that works again.
	 */
	if ((r = destroy_matching(ks, &privs, true, &left, &failed)) !=
		    KB_STATUS_OK ||
	    (left == 0 && ((r = destroy_matching(ks, &pubs, true, &left,
						 &failed)) != KB_STATUS_OK ||
			   (r = destroy_matching(ks, &metas, false, &left,
						 &failed)) != KB_STATUS_OK))) {
		snprintf(err, errlen, "the token failed during the purge");
		return r;
	}
	if (left > 0) {
		snprintf(err, errlen,
			 "%zu objects of key '%s' could not be destroyed (%s); "
			 "the key stays deleted, purge again",
			 left, name, p11_rv_name(failed));
		return KB_ERR_HSM;
	}
	if ((r = kb_keystate_remove(ks, name, err, errlen)) != KB_STATUS_OK)
		return r;
	return written(ks, err, errlen);
}

int kb_lifecycle_purge(struct kb_keystore *ks, const char *name, char *err,
		       size_t errlen)
{
	struct kb_key_info *info;
	struct catalog *c;
	bool protect;
	int r;

	if ((info = malloc(sizeof(*info))) == NULL)
		return KB_ERR_NOMEM;
	kb_keyadmin_enter(ks);
	if ((r = find_key_locked(ks, name, true, info, err, errlen)) !=
	    KB_STATUS_OK)
		goto out;
	c = kb_catalog_get(ks);
	protect = c == NULL || c->purge_protection;
	kb_catalog_put(ks, c);
	if (protect) {
		snprintf(err, errlen,
			 "purge protection is on for this token: key '%s' is "
			 "purged when its retention ends, at %lld",
			 name, (long long)info->scheduled_purge);
		r = KB_ERR_FORBIDDEN;
		goto out;
	}
	if ((r = purge_locked(ks, name, err, errlen)) == KB_STATUS_OK)
		kb_info("key %s purged", name);
out:
	kb_keyadmin_leave(ks);
	free(info);
	return r;
}

int kb_lifecycle_describe_deleted(struct kb_keystore *ks, const char *name,
				  struct kb_key_info *info)
{
	struct catalog *c = kb_catalog_get(ks);
	const struct key_version *v;
	int r = KB_ERR_HSM;

	if (c != NULL) {
		v = kb_catalog_find(c, name, "");
		r = v == NULL || v->info.deleted == 0 ? KB_ERR_NOT_FOUND :
							KB_STATUS_OK;
		if (r == KB_STATUS_OK)
			*info = v->info;
	}
	kb_catalog_put(ks, c);
	return r;
}

/* ---- rotation policies and purge protection ---- */

int kb_lifecycle_get_policy(struct kb_keystore *ks, const char *name,
			    struct kb_rotation_policy *p)
{
	struct catalog *c = kb_catalog_get(ks);
	const struct key_version *v;
	const struct key_state *st;
	int r = KB_ERR_HSM;

	memset(p, 0, sizeof(*p));
	if (c != NULL) {
		v = kb_catalog_find(c, name, "");
		r = v == NULL || v->info.deleted != 0 ? KB_ERR_NOT_FOUND :
							KB_STATUS_OK;
		if (r == KB_STATUS_OK &&
		    (st = kb_keystate_find(c, name)) != NULL)
			*p = st->policy;
	}
	kb_catalog_put(ks, c);
	return r;
}

int kb_lifecycle_set_policy(struct kb_keystore *ks, const char *name,
			    const struct kb_rotation_policy *p, char *err,
			    size_t errlen)
{
	struct kb_key_info *info;
	struct key_state st;
	int r;

	if ((info = malloc(sizeof(*info))) == NULL)
		return KB_ERR_NOMEM;
	kb_keyadmin_enter(ks);
	if ((r = find_key_locked(ks, name, false, info, err, errlen)) ==
		    KB_STATUS_OK &&
	    (r = p11_token_check_space(ks->tok, err, errlen)) == KB_STATUS_OK) {
		state_locked(ks, name, &st);
		st.policy = *p;
		if ((r = kb_keystate_write(ks, &st, err, errlen)) ==
		    KB_STATUS_OK)
			r = written(ks, err, errlen);
	}
	kb_keyadmin_leave(ks);
	free(info);
	return r;
}

int kb_lifecycle_protect_purges(struct kb_keystore *ks, char *err,
				size_t errlen)
{
	int r;

	kb_keyadmin_enter(ks);
	if ((r = kb_keystate_enable_purge_protection(ks, err, errlen)) ==
	    KB_STATUS_OK)
		r = written(ks, err, errlen);
	kb_keyadmin_leave(ks);
	return r;
}

bool kb_lifecycle_purges_protected(struct kb_keystore *ks)
{
	struct catalog *c = kb_catalog_get(ks);
	bool on = c != NULL && c->purge_protection;

	kb_catalog_put(ks, c);
	return on;
}

/* ---- the broker's periodic work ---- */

/* Re-reads the catalogue if the token's generation moved. admin_lock. */
static void follow_generation(struct kb_keystore *ks)
{
	struct catalog *c = kb_catalog_get(ks);
	bool moved = true;

	if (c != NULL && kb_keystate_generation_moved(ks, c->generation,
						      &moved) != KB_STATUS_OK)
		moved = false; /* the token failed: recovery's to notice */
	kb_catalog_put(ks, c);
	if (moved && kb_catalog_reload_locked(ks) != KB_STATUS_OK)
		kb_warn("the token changed, but re-reading the key catalogue "
			"failed; the previous one stays");
}

/*
 * The names of the keys with a state object that due() picks, copied
 * (the catalogue changes under each write). Needs admin_lock.
 */
static size_t due_keys(struct kb_keystore *ks,
		       bool (*due)(const struct key_state *, time_t),
		       time_t now, char (**names)[KB_NAME_MAX + 1])
{
	struct catalog *c = kb_catalog_get(ks);
	size_t i, n = 0;

	*names = NULL;
	if (c != NULL && c->n_states > 0 &&
	    (*names = calloc(c->n_states, sizeof(**names))) != NULL)
		for (i = 0; i < c->n_states; i++)
			if (due(&c->states[i], now))
				memcpy((*names)[n++], c->states[i].name,
				       KB_NAME_MAX + 1);
	kb_catalog_put(ks, c);
	return n;
}

static bool retention_over(const struct key_state *st, time_t now)
{
	return st->deleted != 0 && st->scheduled_purge <= now;
}

static bool has_policy(const struct key_state *st, time_t now)
{
	return st->deleted == 0 && st->policy.text[0] != '\0';
}

/* Whether ks already warned of version's coming expiry. admin_lock. */
static bool notified(struct kb_keystore *ks, const struct kb_key_info *info)
{
	char(*grown)[KB_VERSION_LEN + 1];
	size_t i;

	for (i = 0; i < ks->n_notified; i++)
		if (strcmp(ks->notified[i], info->version) == 0)
			return true;
	grown = realloc(ks->notified, (ks->n_notified + 1) * sizeof(*grown));
	if (grown == NULL)
		return false;
	ks->notified = grown;
	memcpy(ks->notified[ks->n_notified++], info->version,
	       KB_VERSION_LEN + 1);
	return false;
}

/* Tells the trail what the broker did to a key by itself. */
static void tell(struct kb_keystore *ks, const char *op, const char *key,
		 const char *version, int status, const char *message)
{
	struct kb_notice n = {
		.event = "lifecycle",
		.op = op,
		.key = key,
		.version = version,
		.status = status,
		.message = message,
	};

	kb_keystore_notify(ks, &n);
}

/* What name's rotation policy says to do now. Needs admin_lock. */
static void apply_policy(struct kb_keystore *ks, const char *name, time_t now)
{
	struct kb_key_info *cur, *info = NULL;
	struct key_state st;
	const struct kb_rotation_policy *p = &st.policy;
	char err[512];
	bool rotate;
	int r;

	if ((cur = malloc(sizeof(*cur))) == NULL ||
	    (info = malloc(sizeof(*info))) == NULL ||
	    find_locked(ks, name, "", cur) != KB_STATUS_OK)
		goto out;
	state_locked(ks, name, &st);
	if (p->notify_before_expiry != 0 && cur->exp != 0 &&
	    now >= cur->exp - p->notify_before_expiry && !notified(ks, cur)) {
		kb_warn("key %s: version %s expires in %lld s (rotation policy "
			"notify)",
			name, cur->version, (long long)(cur->exp - now));
		tell(ks, "notify", name, cur->version, KB_STATUS_OK, "");
	}
	rotate = (p->rotate_after_create != 0 &&
		  now >= cur->created + p->rotate_after_create) ||
		 (p->rotate_before_expiry != 0 && cur->exp != 0 &&
		  now >= cur->exp - p->rotate_before_expiry);
	if (!rotate)
		goto out;
	kb_keyadmin_look(ks); /* the tick entered without it */
	if ((r = rotate_locked(ks, name, info, err, sizeof(err))) ==
	    KB_STATUS_OK) {
		kb_info("key %s rotated by its policy: version %s is current",
			name, info->version);
		tell(ks, "rotate", name, info->version, r, "");
	} else {
		kb_warn("key %s: scheduled rotation failed: %s; next try in "
			"%d s",
			name, err, ROTATE_RETRY_S);
		tell(ks, "rotate", name, "", r, err);
		ks->tick_retry_after = now + ROTATE_RETRY_S;
	}
out:
	free(info);
	free(cur);
}

void kb_lifecycle_tick(struct kb_keystore *ks, time_t now)
{
	char(*names)[KB_NAME_MAX + 1], err[512];
	bool available;
	size_t i, n;
	int r;

	if (!kb_keyadmin_try_enter(ks))
		return;
	pthread_mutex_lock(&ks->lock);
	available = ks->available;
	pthread_mutex_unlock(&ks->lock);
	if (!available)
		goto out;
	follow_generation(ks);
	if (now < ks->tick_retry_after)
		goto out;
	n = due_keys(ks, retention_over, now, &names);
	for (i = 0; i < n; i++) {
		if ((r = purge_locked(ks, names[i], err, sizeof(err))) ==
		    KB_STATUS_OK) {
			kb_info("key %s purged: its retention ended", names[i]);
			tell(ks, "purge", names[i], "", r, "");
			continue;
		}
		kb_warn("key %s: purge after retention failed: %s; next try "
			"in %d s",
			names[i], err, ROTATE_RETRY_S);
		tell(ks, "purge", names[i], "", r, err);
		ks->tick_retry_after = now + ROTATE_RETRY_S;
		break;
	}
	free(names);
	n = due_keys(ks, has_policy, now, &names);
	for (i = 0; i < n && now >= ks->tick_retry_after; i++)
		apply_policy(ks, names[i], now);
	free(names);
out:
	kb_keyadmin_leave(ks);
}
