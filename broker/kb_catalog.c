// SPDX-License-Identifier: MIT
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kb_keystore_parts.h"
#include "kb_log.h"
#include "kb_pkey.h"
#include "kb_secret.h"

/* ---- snapshots ---- */

void kb_catalog_free(struct catalog *c)
{
	size_t i;

	if (c == NULL)
		return;
	for (i = 0; i < c->n; i++)
		EVP_PKEY_free(c->v[i].pub);
	EVP_PKEY_free(c->issuer_pub);
	EVP_PKEY_free(c->audit_pub);
	for (i = 0; i < c->n_revoked; i++)
		free(c->revoked[i]);
	free(c->revoked);
	free(c->states);
	free(c->v);
	free(c);
}

struct catalog *kb_catalog_get(struct kb_keystore *ks)
{
	struct catalog *c;

	pthread_mutex_lock(&ks->lock);
	if ((c = ks->cat) != NULL)
		c->refs++;
	pthread_mutex_unlock(&ks->lock);
	return c;
}

void kb_catalog_put(struct kb_keystore *ks, struct catalog *c)
{
	bool last;

	if (c == NULL)
		return;
	pthread_mutex_lock(&ks->lock);
	last = --c->refs == 0;
	pthread_mutex_unlock(&ks->lock);
	if (last)
		kb_catalog_free(c);
}

/* Needs ks->lock. */
static void catalog_publish_locked(struct kb_keystore *ks, struct catalog *c)
{
	struct catalog *old = ks->cat;

	c->refs = 1;
	kb_identity_merge_revoked_locked(ks, c);
	ks->cat = c;
	if (old != NULL && --old->refs == 0)
		kb_catalog_free(old);
}

const struct key_version *kb_catalog_find(const struct catalog *c,
					  const char *name, const char *version)
{
	const struct key_version *cur = NULL;
	size_t lo = 0, hi = c->n, mid;
	int cmp;

	/* Lower bound on name, then scan its versions (oldest first). */
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (strcmp(c->v[mid].info.name, name) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < c->n && (cmp = strcmp(c->v[lo].info.name, name)) == 0;
	     lo++) {
		/*
		 * A damaged version has no known creation time, so while
		 * there is one, which version is current is not known: the
		 * damaged one is returned (and refused) rather than a
		 * version that may be older than it.
		 */
		if (version[0] == '\0' && c->v[lo].info.damaged)
			return &c->v[lo];
		if (version[0] == '\0')
			cur = &c->v[lo];
		else if (strcmp(c->v[lo].info.version, version) == 0)
			return &c->v[lo];
	}
	return cur;
}

static int version_cmp(const void *a, const void *b)
{
	const struct kb_key_info *x = &((const struct key_version *)a)->info;
	const struct kb_key_info *y = &((const struct key_version *)b)->info;
	int r;

	if ((r = strcmp(x->name, y->name)) != 0)
		return r;
	if (x->damaged != y->damaged) /* damaged first: no known place */
		return x->damaged ? -1 : 1;
	if (x->created_us != y->created_us)
		return x->created_us < y->created_us ? -1 : 1;
	return strcmp(x->version, y->version);
}

/* ---- what a load refused ---- */

/* Logs f if it differs from the last load's. Needs admin_lock. */
static void log_findings(struct kb_keystore *ks, const struct kb_findings *f)
{
	const char *line, *nl;

	if ((ks->findings == NULL ? f->len == 0 :
				    strcmp(ks->findings, f->text) == 0))
		return;
	free(ks->findings);
	ks->findings = f->len > 0 ? strdup(f->text) : NULL;
	for (line = f->text; (nl = strchr(line, '\n')) != NULL; line = nl + 1)
		kb_warn("token '%s': %.*s", p11_token_label(ks->tok),
			(int)(nl - line), line);
	if (f->dropped > 0)
		kb_warn("token '%s': %u more such objects",
			p11_token_label(ks->tok), f->dropped);
}

/* ---- reading the token: each object once ---- */

/*
 * A catalogue load reads every object once and joins them by name and
 * version (from label and ID, or from the metadata), so its cost grows
 * with the number of objects, not their square. What the join looks at
 * is the first member of each kind of object read, so that one order and
 * one search serve them all.
 */
struct join_key {
	char name[KB_NAME_MAX + 1];
	char version[KB_VERSION_LEN + 1];
	size_t order; /* its place in the token's find order */
};

/* Orders by name, version, then find order (qsort of join_key pointers). */
static int join_cmp(const void *a, const void *b)
{
	const struct join_key *x = *(const struct join_key *const *)a;
	const struct join_key *y = *(const struct join_key *const *)b;
	int r;

	if ((r = strcmp(x->name, y->name)) != 0 ||
	    (r = strcmp(x->version, y->version)) != 0)
		return r;
	return x->order < y->order ? -1 : x->order > y->order;
}

static bool join_is(const struct join_key *k, const char *name,
		    const char *version)
{
	return strcmp(k->name, name) == 0 && strcmp(k->version, version) == 0;
}

/*
 * Where the objects of name/version begin among sorted[0..n) (sorted by
 * join_cmp), first in find order: n if there are none.
 */
static size_t join_find(struct join_key *const *sorted, size_t n,
			const char *name, const char *version)
{
	size_t lo = 0, hi = n, mid;
	int r;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if ((r = strcmp(sorted[mid]->name, name)) == 0)
			r = strcmp(sorted[mid]->version, version);
		if (r < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && join_is(sorted[lo], name, version) ? lo : n;
}

/* An RSA key object as a load reads it, in one p11_read. */
struct key_object {
	struct join_key k; /* first: the join sorts pointers to it */
	CK_OBJECT_HANDLE h;
	bool named; /* label a key name, ID KB_VERSION_BYTES long */
	bool keyed; /* modulus and exponent read */
	unsigned char n[P11_MODULUS_MAX], e[P11_EXPONENT_MAX];
	size_t nlen, elen;
	unsigned int have, set; /* of p11_read, for the protection check */
};

/*
 * Reads label, ID, modulus and exponent of h (and, for a private key,
 * what says it stays in the token) into o, through scratch.
 * KB_ERR_HSM if the token is gone; what cannot be read is marked in o,
 * not an error.
 */
static int read_key_object(struct kb_keystore *ks, CK_OBJECT_HANDLE h,
			   size_t order, bool private,
			   struct p11_object *scratch, struct key_object *o)
{
	unsigned int want = P11_A_LABEL | P11_A_ID | P11_A_MODULUS |
			    P11_A_EXPONENT |
			    (private ? KB_KEYADMIN_PROTECTION_ATTRS : 0);

	o->h = h;
	o->k.order = order;
	if (p11_read(ks->tok, ks->admin, h, want, scratch) == KB_ERR_HSM)
		return KB_ERR_HSM;
	o->have = scratch->have;
	o->set = scratch->set;
	o->named = (scratch->have & P11_A_LABEL) &&
		   scratch->label_len <= KB_NAME_MAX &&
		   kb_name_valid(scratch->label, scratch->label_len) &&
		   (scratch->have & P11_A_ID) &&
		   scratch->id_len == KB_VERSION_BYTES;
	if (o->named) {
		memcpy(o->k.name, scratch->label, scratch->label_len + 1);
		kb_hex_encode(o->k.version, scratch->id, KB_VERSION_BYTES);
	}
	o->keyed = (scratch->have & P11_A_MODULUS) &&
		   (scratch->have & P11_A_EXPONENT);
	if (o->keyed) {
		o->nlen = scratch->modulus_len;
		memcpy(o->n, scratch->modulus, o->nlen);
		o->elen = scratch->exponent_len;
		memcpy(o->e, scratch->exponent, o->elen);
	}
	return KB_STATUS_OK;
}

/*
 * Takes the public key of v from its private key object priv, and
 * requires the public key object of the same name and version to be the
 * same key: a public object swapped in beside a private key is refused,
 * not used to wrap. Caches it as an EVP_PKEY.
 */
static int load_public(const struct key_object *priv,
		       struct join_key *const *pubs, size_t npubs,
		       struct key_version *v, struct kb_findings *f)
{
	const struct key_object *pub;
	size_t i;

	if (!priv->keyed)
		return KB_ERR_PARAM;
	memcpy(v->info.n, priv->n, priv->nlen);
	v->info.nlen = priv->nlen;
	memcpy(v->info.e, priv->e, priv->elen);
	v->info.elen = priv->elen;
	/* The first in find order is the one believed. */
	if ((i = join_find(pubs, npubs, v->info.name, v->info.version)) ==
	    npubs) {
		kb_keyadmin_note(
			f, "key %s version %s: no public key object; refused",
			v->info.name, v->info.version);
		return KB_ERR_NOT_FOUND;
	}
	pub = (const struct key_object *)pubs[i];
	if (!pub->keyed)
		return KB_ERR_PARAM;
	if (pub->nlen != priv->nlen || pub->elen != priv->elen ||
	    memcmp(pub->n, priv->n, priv->nlen) != 0 ||
	    memcmp(pub->e, priv->e, priv->elen) != 0) {
		kb_keyadmin_note(
			f,
			"key %s version %s: the public key object is not the "
			"private key's; refused",
			v->info.name, v->info.version);
		return KB_ERR_PARAM;
	}
	if (v->info.nlen < 256 ||
	    (v->pub = kb_pkey_rsa(v->info.n, v->info.nlen, v->info.e,
				  v->info.elen)) == NULL)
		return KB_ERR_PARAM;
	v->info.bits = (unsigned int)EVP_PKEY_get_bits(v->pub);
	return KB_STATUS_OK;
}

/*
 * Times in metadata are Unix seconds (createdUs: microseconds), at most
 * META_SECONDS_MAX: 2^53 microseconds, in the year 2255. Metadata with a
 * time out of range is invalid, so no arithmetic on one can overflow.
 */
#define META_SECONDS_MAX INT64_C(9007199254)

/* A time field (0 if absent or null) into *t; -1 if out of range. */
static int json_time(const json_t *o, const char *k, int64_t max, int64_t *t)
{
	const json_t *v = json_object_get(o, k);

	*t = json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
	return *t >= 0 && *t <= max ? 0 : -1;
}

int kb_catalog_parse_metadata(const char *text, size_t len,
			      struct kb_key_info *info)
{
	char why[160];
	json_t *o, *v;
	int r = KB_ERR_PARAM;

	if ((o = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL)) == NULL)
		return KB_ERR_PARAM;
	v = json_object_get(o, "version");
	if (!json_is_string(v) ||
	    !kb_version_valid(json_string_value(v), json_string_length(v)))
		goto out;
	memcpy(info->version, json_string_value(v), KB_VERSION_LEN + 1);
	if (json_time(o, "created", META_SECONDS_MAX, &info->created) != 0 ||
	    json_time(o, "createdUs", META_SECONDS_MAX * 1000000,
		      &info->created_us) != 0 ||
	    json_time(o, "updated", META_SECONDS_MAX, &info->updated) != 0 ||
	    json_time(o, "nbf", META_SECONDS_MAX, &info->nbf) != 0 ||
	    json_time(o, "exp", META_SECONDS_MAX, &info->exp) != 0 ||
	    json_time(o, "repaired", META_SECONDS_MAX, &info->repaired) != 0)
		goto out;
	if (info->created_us == 0)
		info->created_us = info->created * 1000000;
	info->enabled = json_is_true(json_object_get(o, "enabled"));
	v = json_object_get(o, "imported");
	info->imported = !json_is_string(v) ? KB_ORIGIN_TOKEN :
			 strcmp(json_string_value(v), "byok") == 0 ?
					      KB_ORIGIN_BYOK :
					      KB_ORIGIN_PLAIN;
	info->key_ops = KB_KEYOPS_ALL;
	if ((v = json_object_get(o, "keyOps")) != NULL &&
	    kb_key_ops_parse(v, &info->key_ops, why, sizeof(why)) != 0)
		goto out;
	if ((v = json_object_get(o, "tags")) != NULL &&
	    kb_tags_canonical(v, info->tags, why, sizeof(why)) != 0)
		goto out;
	r = KB_STATUS_OK;
out:
	json_decref(o);
	return r;
}

/*
 * A metadata object as a load reads it, label and value in one call, the
 * value parsed at once (so nothing of its size is kept).
 */
struct meta_object {
	struct join_key k; /* first: the join sorts pointers to it */
	CK_OBJECT_HANDLE h;
	bool valid; /* label and value read, value parsed */
	struct kb_key_info fields; /* version and times; no key */
};

/*
 * Reads h into m, its value into text (META_MAX bytes, *len of them).
 * KB_ERR_HSM if the token is gone; an unreadable or invalid object is
 * marked invalid, not an error: it is passed over.
 */
static int read_meta_object(struct kb_keystore *ks, CK_OBJECT_HANDLE h,
			    size_t order, char *text, size_t *len,
			    struct meta_object *m)
{
	struct p11_object o = { .value = text, .value_max = META_MAX };

	m->h = h;
	m->k.order = order;
	m->valid = false;
	memset(&m->fields, 0, sizeof(m->fields));
	if (p11_read(ks->tok, ks->admin, h, P11_A_LABEL | P11_A_VALUE, &o) ==
	    KB_ERR_HSM)
		return KB_ERR_HSM;
	if (!(o.have & P11_A_LABEL) || o.label_len > KB_NAME_MAX ||
	    !(o.have & P11_A_VALUE))
		return KB_STATUS_OK;
	memcpy(m->k.name, o.label, o.label_len + 1);
	*len = o.value_len;
	m->valid = kb_catalog_parse_metadata(text, *len, &m->fields) ==
		   KB_STATUS_OK;
	if (m->valid)
		memcpy(m->k.version, m->fields.version, sizeof(m->k.version));
	return KB_STATUS_OK;
}

/* Whether candidate m is to be believed over best. */
static bool newer_metadata(const struct meta_object *m,
			   const struct meta_object *best)
{
	if (m->fields.updated != best->fields.updated)
		return m->fields.updated > best->fields.updated;
	/* Two writes in one second cannot be told apart: fail closed. */
	return !m->fields.enabled && best->fields.enabled;
}

int kb_catalog_metadata_newest(struct kb_keystore *ks,
			       const CK_OBJECT_HANDLE *metas, size_t n,
			       const char *name, const char *version,
			       CK_OBJECT_HANDLE *obj, char *text, size_t *len,
			       struct kb_key_info *mi)
{
	struct meta_object *cand = NULL, *best = NULL;
	char *buf = NULL;
	size_t i, tlen;
	int r = KB_ERR_NOMEM;

	if ((buf = malloc(META_MAX)) == NULL ||
	    (cand = malloc(sizeof(*cand))) == NULL ||
	    (best = malloc(sizeof(*best))) == NULL)
		goto out;
	r = KB_ERR_NOT_FOUND;
	for (i = 0; i < n; i++) {
		if (read_meta_object(ks, metas[i], i, buf, &tlen, cand) ==
		    KB_ERR_HSM) {
			r = KB_ERR_HSM;
			goto out;
		}
		if (!cand->valid || !join_is(&cand->k, name, version) ||
		    (r == KB_STATUS_OK && !newer_metadata(cand, best)))
			continue;
		*best = *cand;
		if (text != NULL) {
			memcpy(text, buf, tlen);
			*len = tlen;
		}
		r = KB_STATUS_OK;
	}
	if (r == KB_STATUS_OK) {
		*obj = best->h;
		*mi = best->fields;
	}
out:
	free(buf);
	free(cand);
	free(best);
	return r;
}

/*
 * Applies to v the metadata to believe among sorted[0..n) (the valid
 * ones, sorted by join_cmp): of those of its name and version,
 * the newest, a disabled one winning a tie, else the first found.
 * KB_ERR_NOT_FOUND if there is none.
 */
static int load_metadata(struct join_key *const *sorted, size_t n,
			 struct key_version *v)
{
	const struct meta_object *best = NULL, *m;
	size_t i;

	for (i = join_find(sorted, n, v->info.name, v->info.version);
	     i < n && join_is(sorted[i], v->info.name, v->info.version); i++) {
		m = (const struct meta_object *)sorted[i];
		if (best == NULL || newer_metadata(m, best))
			best = m;
	}
	if (best == NULL)
		return KB_ERR_NOT_FOUND;
	v->info.created = best->fields.created;
	v->info.created_us = best->fields.created_us;
	v->info.updated = best->fields.updated;
	v->info.nbf = best->fields.nbf;
	v->info.exp = best->fields.exp;
	v->info.enabled = best->fields.enabled;
	v->info.repaired = best->fields.repaired;
	v->info.key_ops = best->fields.key_ops;
	v->info.imported = best->fields.imported;
	memcpy(v->info.tags, best->fields.tags, sizeof(v->info.tags));
	return KB_STATUS_OK;
}

/* ---- unwrap paths ---- */

/*
 * Whether (*native) the token decrypts an OAEP ciphertext made by
 * OpenSSL for alg with its own mechanism. KB_ERR_HSM if the token failed
 * while asked. Needs admin_lock.
 */
static int probe_native_oaep(struct kb_keystore *ks,
			     const struct key_version *v, enum kb_alg alg,
			     bool *native)
{
	unsigned char msg[32], ct[P11_MODULUS_MAX], pt[P11_MODULUS_MAX];
	enum p11_mech mech = kb_alg_mech(alg);
	size_t ctlen, ptlen;
	bool began;
	CK_RV rv;

	*native = false;
	if (!p11_mech_offered(ks->tok, mech, true) ||
	    RAND_bytes(msg, sizeof(msg)) != 1 ||
	    kb_public_encrypt(v->pub, alg, msg, sizeof(msg), ct, &ctlen) != 0)
		return KB_STATUS_OK;
	rv = p11_decrypt(ks->tok, ks->admin, v->priv, mech, ct, ctlen, pt,
			 sizeof(pt), &ptlen, &began);
	if (rv == CKR_OK)
		*native = ptlen == sizeof(msg) && memcmp(pt, msg, ptlen) == 0;
	kb_wipe(pt, sizeof(pt));
	/*
	 * A token that fails (rather than refuses the mechanism) says
	 * nothing about the mechanism: the load fails instead of settling
	 * for the raw path.
	 */
	return rv != CKR_OK && p11_rv_is_token_lost(rv) ? KB_ERR_HSM :
							  KB_STATUS_OK;
}

/*
 * The one protected secret key of label (what names it in notes), or
 * CK_INVALID_HANDLE. Needs admin_lock.
 */
static CK_OBJECT_HANDLE find_secret(struct kb_keystore *ks, const char *label,
				    const char *what, struct kb_findings *f)
{
	struct p11_match m = { .cls = P11_CLASS_SECRET_KEY, .label = label };
	CK_OBJECT_HANDLE *objs, h = CK_INVALID_HANDLE;
	size_t n;

	/* All of that label, private or not: one only, and protected. */
	if (p11_find(ks->tok, ks->admin, &m, &objs, &n) != KB_STATUS_OK)
		return CK_INVALID_HANDLE;
	if (n > 1)
		kb_keyadmin_note(f,
				 "%zu secret keys are labelled '%s'; %s is off",
				 n, label, what);
	else if (n == 1 && kb_keyadmin_key_protected(ks, objs[0], what, f))
		h = objs[0];
	free(objs);
	return h;
}

/*
 * The audit trail's keys (kb_auditkey.h): its signing pair and HMAC
 * secret, where the token has them. Needs admin_lock.
 */
static int load_audit_keys(struct kb_keystore *ks, struct catalog *c,
			   struct kb_findings *f)
{
	int r = kb_identity_load_signer(ks, AUDIT_LABEL, "the audit key",
					&c->audit_priv, &c->audit_pub,
					c->audit_id, f);

	if (r != KB_STATUS_OK && r != KB_ERR_NOT_FOUND && r != KB_ERR_PARAM)
		return r;
	c->audit_hmac =
		find_secret(ks, AUDIT_HMAC_LABEL, "the audit HMAC secret", f);
	return KB_STATUS_OK;
}

/*
 * How each alg is unwrapped; KB_ERR_HSM if the token failed while asked.
 * Needs admin_lock.
 */
static int probe_paths(struct kb_keystore *ks, struct catalog *c,
		       struct kb_findings *f)
{
	bool raw = p11_mech_offered(ks->tok, P11_MECH_RSA_RAW, true), native;
	enum kb_alg alg;
	size_t i;
	int r;

	for (alg = 0; alg < KB_ALG_COUNT; alg++)
		c->path[alg] = KB_PATH_NONE;
	c->kdk_secret = ks->allow_rsa1_5 ? find_secret(ks, KDK_LABEL,
						       "the RSA1_5 secret", f) :
					   CK_INVALID_HANDLE;
	/* A version that decrypts: not damaged, not a key-exchange key. */
	for (i = 0; i < c->n && (c->v[i].info.damaged ||
				 c->v[i].info.key_ops == KB_KEYOP_IMPORT);
	     i++)
		;
	if (i == c->n)
		return KB_STATUS_OK;
	for (alg = KB_ALG_RSA_OAEP; alg <= KB_ALG_RSA_OAEP_256; alg++) {
		if ((r = probe_native_oaep(ks, &c->v[i], alg, &native)) !=
		    KB_STATUS_OK)
			return r;
		if (native)
			c->path[alg] = KB_PATH_NATIVE;
		else if (raw)
			c->path[alg] = KB_PATH_RAW_OAEP;
	}
	/*
	 * Never the token's own CKM_RSA_PKCS: it fails on bad padding, a
	 * Bleichenbacher oracle. Only raw RSA with implicit rejection.
	 */
	if (raw && c->kdk_secret != CK_INVALID_HANDLE &&
	    p11_mech_offered(ks->tok, P11_MECH_SHA256_HMAC, false))
		c->path[KB_ALG_RSA1_5] = KB_PATH_RAW_PKCS1;
	return KB_STATUS_OK;
}

/* ---- loading the catalogue ---- */

/*
 * Everything a load reads of the key objects: each read once, the public
 * keys and metadata sorted for the join. Freed by objects_free.
 */
struct objects {
	CK_OBJECT_HANDLE *privs, *pubs, *metas;
	size_t nprivs, npubs, nmetas;
	struct key_object *priv, *pub;
	struct meta_object *meta;
	struct join_key **pub_sorted, **meta_sorted;
	size_t npub_sorted, nmeta_sorted;
};

static void objects_free(struct objects *o)
{
	free(o->privs);
	free(o->pubs);
	free(o->metas);
	free(o->priv);
	free(o->pub);
	free(o->pub_sorted);
	free(o->meta);
	free(o->meta_sorted);
}

/* Finds the objects of every key version and reads them. Needs admin_lock. */
static int objects_read(struct kb_keystore *ks, struct objects *o)
{
	/*
	 * Private keys of every kind are looked at (public ones are refused
	 * by name); metadata only as private objects: public ones can be
	 * written without the PIN and are not ours.
	 */
	struct p11_match mpriv = { .cls = P11_CLASS_PRIVATE_KEY,
				   .type = P11_TYPE_RSA };
	struct p11_match mpub = { .cls = P11_CLASS_PUBLIC_KEY,
				  .type = P11_TYPE_RSA };
	struct p11_match mdata = { .cls = P11_CLASS_DATA,
				   .application = META_APPLICATION,
				   .private_only = true };
	struct p11_object *scratch = NULL;
	char *text;
	size_t i, len;
	int r;

	if ((r = p11_find(ks->tok, ks->admin, &mpriv, &o->privs, &o->nprivs)) !=
		    0 ||
	    (r = p11_find(ks->tok, ks->admin, &mpub, &o->pubs, &o->npubs)) !=
		    0 ||
	    (r = p11_find(ks->tok, ks->admin, &mdata, &o->metas, &o->nmetas)) !=
		    0)
		return r;
	if ((o->priv = calloc(o->nprivs + 1, sizeof(*o->priv))) == NULL ||
	    (o->pub = calloc(o->npubs + 1, sizeof(*o->pub))) == NULL ||
	    (o->pub_sorted = calloc(o->npubs + 1, sizeof(*o->pub_sorted))) ==
		    NULL ||
	    (o->meta = calloc(o->nmetas + 1, sizeof(*o->meta))) == NULL ||
	    (o->meta_sorted = calloc(o->nmetas + 1, sizeof(*o->meta_sorted))) ==
		    NULL)
		return KB_ERR_NOMEM;
	if ((scratch = malloc(sizeof(*scratch))) == NULL)
		return KB_ERR_NOMEM;
	for (i = 0, r = KB_STATUS_OK; i < o->nprivs && r == KB_STATUS_OK; i++)
		r = read_key_object(ks, o->privs[i], i, true, scratch,
				    &o->priv[i]);
	for (i = 0; i < o->npubs && r == KB_STATUS_OK; i++) {
		r = read_key_object(ks, o->pubs[i], i, false, scratch,
				    &o->pub[i]);
		/* Objects that are not ours are passed over. */
		if (r == KB_STATUS_OK && o->pub[i].named)
			o->pub_sorted[o->npub_sorted++] = &o->pub[i].k;
	}
	free(scratch);
	if (r != KB_STATUS_OK)
		return r;
	if ((text = malloc(META_MAX)) == NULL)
		return KB_ERR_NOMEM;
	for (i = 0; i < o->nmetas; i++) {
		if ((r = read_meta_object(ks, o->metas[i], i, text, &len,
					  &o->meta[i])) != KB_STATUS_OK)
			break;
		if (o->meta[i].valid)
			o->meta_sorted[o->nmeta_sorted++] = &o->meta[i].k;
	}
	free(text);
	if (r != KB_STATUS_OK)
		return r;
	qsort(o->pub_sorted, o->npub_sorted, sizeof(*o->pub_sorted), join_cmp);
	qsort(o->meta_sorted, o->nmeta_sorted, sizeof(*o->meta_sorted),
	      join_cmp);
	return KB_STATUS_OK;
}

/*
 * What is known of v's key as a whole: deleted or not, and what deletion
 * means (a key vault's recovery levels).
 */
static void apply_state(const struct kb_keystore *ks, const struct catalog *c,
			struct kb_key_info *info)
{
	const struct key_state *st = kb_keystate_find(c, info->name);

	if (st != NULL) {
		info->deleted = st->deleted;
		info->scheduled_purge = st->scheduled_purge;
	}
	info->recoverable_days = ks->recoverable_days;
	snprintf(info->recovery_level, sizeof(info->recovery_level), "%s%s",
		 ks->recoverable_days < 90 ? "CustomizedRecoverable" :
					     "Recoverable",
		 c->purge_protection ? "" : "+Purgeable");
}

/* Reads every key version from the token. Needs admin_lock. */
static int catalog_load(struct kb_keystore *ks, struct catalog **out)
{
	struct objects o = { .nprivs = 0 };
	struct kb_findings f = { .len = 0 };
	char what[KB_NAME_MAX + KB_VERSION_LEN + 32];
	const struct key_object *k;
	struct catalog *c;
	struct key_version *v;
	size_t i;
	int r;

	*out = NULL;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return KB_ERR_NOMEM;
	/*
	 * The generation first: a write that lands while the objects are
	 * read bumps it after, and the next check reads again.
	 */
	if ((r = kb_keystate_generation(ks, c->generation)) != KB_STATUS_OK ||
	    (r = kb_keystate_load(ks, c, &f)) != KB_STATUS_OK ||
	    (r = objects_read(ks, &o)) != KB_STATUS_OK)
		goto out_free;
	if (o.nprivs > 0 && (c->v = calloc(o.nprivs, sizeof(*c->v))) == NULL) {
		r = KB_ERR_NOMEM;
		goto out_free;
	}
	for (i = 0; i < o.nprivs; i++) {
		k = &o.priv[i];
		v = &c->v[c->n];
		memset(v, 0, sizeof(*v));
		v->priv = k->h;
		/* Objects that are not ours (or are damaged) are skipped. */
		if (!k->named) {
			kb_keyadmin_note(
				&f,
				"an RSA private key whose label is not a key "
				"name or whose ID is not 16 bytes; ignored");
			continue;
		}
		memcpy(v->info.name, k->k.name, sizeof(k->k.name));
		memcpy(v->info.version, k->k.version, sizeof(k->k.version));
		snprintf(what, sizeof(what), "key %s version %s", k->k.name,
			 k->k.version);
		/*
		 * A private key is never made invisible by its metadata: a
		 * write the token lost must not take a key with it.
		 */
		v->info.damaged = load_metadata(o.meta_sorted, o.nmeta_sorted,
						v) == KB_ERR_NOT_FOUND;
		/* Imported keys count only where imports are allowed. */
		if (v->info.imported != KB_ORIGIN_TOKEN && !ks->allow_import) {
			kb_keyadmin_note(
				&f,
				"%s: imported, and this broker does not "
				"allow imported keys (keys.allow_import); "
				"refused",
				what);
			continue;
		}
		if (!kb_keyadmin_protection_judge(
			    k->have, k->set,
			    v->info.imported != KB_ORIGIN_TOKEN &&
				    ks->allow_import,
			    what, &f))
			continue;
		if (load_public(k, o.pub_sorted, o.npub_sorted, v, &f) !=
		    KB_STATUS_OK)
			continue;
		if (v->info.damaged)
			kb_keyadmin_note(
				&f,
				"%s: no readable metadata; listed as damaged "
				"and refused until keybrokerctl repair-key "
				"%s %s --enabled|--disabled",
				what, v->info.name, v->info.version);
		c->n++;
	}
	if (c->n > 1)
		qsort(c->v, c->n, sizeof(*c->v), version_cmp);
	if ((r = probe_paths(ks, c, &f)) != KB_STATUS_OK)
		goto out_free;
	if ((r = kb_identity_load(ks, c, &f)) != KB_STATUS_OK ||
	    (r = load_audit_keys(ks, c, &f)) != KB_STATUS_OK)
		goto out_free;
	log_findings(ks, &f);
	for (i = 0; i < c->n; i++) {
		memcpy(c->v[i].info.path, c->path, sizeof(c->path));
		apply_state(ks, c, &c->v[i].info);
	}
	*out = c;
	c = NULL;
	r = KB_STATUS_OK;
out_free:
	kb_catalog_free(c);
	objects_free(&o);
	return r;
}

/* Re-reads the catalogue now and publishes it. Needs admin_lock. */
int kb_catalog_reload_locked(struct kb_keystore *ks)
{
	struct catalog *c;
	int r;

	if ((r = catalog_load(ks, &c)) != KB_STATUS_OK)
		return r;
	pthread_mutex_lock(&ks->lock);
	catalog_publish_locked(ks, c);
	ks->last_reload = time(NULL);
	pthread_mutex_unlock(&ks->lock);
	return KB_STATUS_OK;
}
