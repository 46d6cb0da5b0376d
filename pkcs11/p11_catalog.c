// SPDX-License-Identifier: MIT
#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kb_log.h"
#include "kb_secret.h"
#include "p11_internal.h"

/* ---- snapshots ---- */

void p11_catalog_free(struct catalog *c)
{
	size_t i;

	if (c == NULL)
		return;
	for (i = 0; i < c->n; i++)
		EVP_PKEY_free(c->v[i].pub);
	EVP_PKEY_free(c->issuer_pub);
	for (i = 0; i < c->n_revoked; i++)
		free(c->revoked[i]);
	free(c->revoked);
	free(c->v);
	free(c);
}

struct catalog *p11_catalog_get(struct p11_keystore *ks)
{
	struct catalog *c;

	pthread_mutex_lock(&ks->lock);
	if ((c = ks->cat) != NULL)
		c->refs++;
	pthread_mutex_unlock(&ks->lock);
	return c;
}

void p11_catalog_put(struct p11_keystore *ks, struct catalog *c)
{
	bool last;

	if (c == NULL)
		return;
	pthread_mutex_lock(&ks->lock);
	last = --c->refs == 0;
	pthread_mutex_unlock(&ks->lock);
	if (last)
		p11_catalog_free(c);
}

/* Needs ks->lock. */
static void catalog_publish_locked(struct p11_keystore *ks, struct catalog *c)
{
	struct catalog *old = ks->cat;

	c->refs = 1;
	p11_revoked_merge_locked(ks, c);
	ks->cat = c;
	if (old != NULL && --old->refs == 0)
		p11_catalog_free(old);
}

const struct key_version *
p11_catalog_find(const struct catalog *c, const char *name, const char *version)
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
	const struct p11_key_info *x = &((const struct key_version *)a)->info;
	const struct p11_key_info *y = &((const struct key_version *)b)->info;
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
static void log_findings(struct p11_keystore *ks, const struct p11_findings *f)
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

/* ---- reading the token ---- */

/* Reads CKA_LABEL (a key name) and CKA_ID (a version) of obj. */
static int get_name_version(struct p11_keystore *ks, CK_OBJECT_HANDLE obj,
			    struct p11_key_info *info)
{
	unsigned char id[KB_VERSION_BYTES + 1];
	size_t len;
	int r;

	if ((r = p11_get_attr(ks, obj, CKA_LABEL, info->name, KB_NAME_MAX,
			      &len)) != P11_OK)
		return r;
	info->name[len] = '\0';
	if (!kb_name_valid(info->name, len))
		return P11_ERR_PARAM;
	if ((r = p11_get_attr(ks, obj, CKA_ID, id, sizeof(id), &len)) != P11_OK)
		return r;
	if (len != KB_VERSION_BYTES)
		return P11_ERR_PARAM;
	kb_hex_encode(info->version, id, KB_VERSION_BYTES);
	return P11_OK;
}

static EVP_PKEY *rsa_public_key(const struct p11_key_info *info)
{
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *pkey = NULL;
	BIGNUM *n = BN_bin2bn(info->n, (int)info->nlen, NULL);
	BIGNUM *e = BN_bin2bn(info->e, (int)info->elen, NULL);

	if (bld == NULL || n == NULL || e == NULL ||
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) != 1 ||
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) != 1 ||
	    (params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
	    (ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) == NULL ||
	    EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
		pkey = NULL;
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_free(n);
	BN_free(e);
	return pkey;
}

/* CKA_MODULUS without leading zero bytes (some tokens keep them). */
static int get_modulus(struct p11_keystore *ks, CK_OBJECT_HANDLE obj,
		       unsigned char *n, size_t *nlen)
{
	size_t len;
	int r;

	if ((r = p11_get_attr(ks, obj, CKA_MODULUS, n, P11_MODULUS_MAX,
			      nlen)) != P11_OK)
		return r;
	for (len = 0; len < *nlen && n[len] == 0; len++)
		;
	memmove(n, n + len, *nlen - len);
	*nlen -= len;
	return P11_OK;
}

/*
 * Takes the public key of v from its private key object, and requires
 * the public key object of the same name and version to be the same key:
 * a public object swapped in beside a private key is refused, not used
 * to wrap. Caches it as an EVP_PKEY.
 */
static int load_public(struct p11_keystore *ks, CK_OBJECT_HANDLE *pubs,
		       size_t npubs, struct key_version *v,
		       struct p11_findings *f)
{
	unsigned char pn[P11_MODULUS_MAX], pe[8];
	struct p11_key_info pi;
	size_t i, pnlen, pelen;
	int r;

	if ((r = get_modulus(ks, v->priv, v->info.n, &v->info.nlen)) != 0 ||
	    (r = p11_get_attr(ks, v->priv, CKA_PUBLIC_EXPONENT, v->info.e,
			      sizeof(v->info.e), &v->info.elen)) != 0)
		return r;
	for (i = 0; i < npubs; i++) {
		if (get_name_version(ks, pubs[i], &pi) != P11_OK ||
		    strcmp(pi.name, v->info.name) != 0 ||
		    strcmp(pi.version, v->info.version) != 0)
			continue;
		if ((r = get_modulus(ks, pubs[i], pn, &pnlen)) != 0 ||
		    (r = p11_get_attr(ks, pubs[i], CKA_PUBLIC_EXPONENT, pe,
				      sizeof(pe), &pelen)) != 0)
			return r;
		if (pnlen != v->info.nlen || pelen != v->info.elen ||
		    memcmp(pn, v->info.n, pnlen) != 0 ||
		    memcmp(pe, v->info.e, pelen) != 0) {
			p11_note(f,
				 "key %s version %s: the public key object is "
				 "not the private key's; refused",
				 v->info.name, v->info.version);
			return P11_ERR_PARAM;
		}
		if (v->info.nlen < 256 ||
		    (v->pub = rsa_public_key(&v->info)) == NULL)
			return P11_ERR_PARAM;
		v->info.bits = (unsigned int)EVP_PKEY_get_bits(v->pub);
		return P11_OK;
	}
	p11_note(f, "key %s version %s: no public key object; refused",
		 v->info.name, v->info.version);
	return P11_ERR_NOT_FOUND;
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

int p11_parse_metadata(const char *text, size_t len, struct p11_key_info *info)
{
	json_t *o, *v;
	const char *s;
	int r = P11_ERR_PARAM;

	if ((o = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL)) == NULL)
		return P11_ERR_PARAM;
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
	v = json_object_get(o, "recoveryLevel");
	s = json_is_string(v) ? json_string_value(v) : "Recoverable+Purgeable";
	snprintf(info->recovery_level, sizeof(info->recovery_level), "%s", s);
	v = json_object_get(o, "recoverableDays");
	info->recoverable_days =
		json_is_integer(v) ? (int)json_integer_value(v) : 90;
	r = P11_OK;
out:
	json_decref(o);
	return r;
}

/* Whether candidate mi is to be believed over best. */
static bool newer_metadata(const struct p11_key_info *mi,
			   const struct p11_key_info *best)
{
	if (mi->updated != best->updated)
		return mi->updated > best->updated;
	/* Two writes in one second cannot be told apart: fail closed. */
	return !mi->enabled && best->enabled;
}

int p11_metadata_newest(struct p11_keystore *ks, const CK_OBJECT_HANDLE *metas,
			size_t n, const char *name, const char *version,
			CK_OBJECT_HANDLE *obj, char *text, size_t *len,
			struct p11_key_info *mi)
{
	struct p11_key_info cand, best;
	char label[KB_NAME_MAX + 1], *buf;
	size_t i, llen, tlen;
	int r = P11_ERR_NOT_FOUND;

	if ((buf = malloc(META_MAX)) == NULL)
		return P11_ERR_NOMEM;
	for (i = 0; i < n; i++) {
		if (p11_get_attr(ks, metas[i], CKA_LABEL, label, KB_NAME_MAX,
				 &llen) != P11_OK)
			continue;
		label[llen] = '\0';
		/* Unreadable or invalid objects are passed over, not fatal. */
		if (strcmp(label, name) != 0 ||
		    p11_get_attr(ks, metas[i], CKA_VALUE, buf, META_MAX,
				 &tlen) != P11_OK)
			continue;
		memset(&cand, 0, sizeof(cand));
		if (p11_parse_metadata(buf, tlen, &cand) != P11_OK ||
		    strcmp(cand.version, version) != 0 ||
		    (r == P11_OK && !newer_metadata(&cand, &best)))
			continue;
		best = cand;
		*obj = metas[i];
		if (text != NULL) {
			memcpy(text, buf, tlen);
			*len = tlen;
		}
		r = P11_OK;
	}
	if (r == P11_OK)
		*mi = best;
	free(buf);
	return r;
}

/* Applies the metadata of v to it; P11_ERR_NOT_FOUND if none reads back. */
static int load_metadata(struct p11_keystore *ks, CK_OBJECT_HANDLE *metas,
			 size_t nmetas, struct key_version *v)
{
	struct p11_key_info mi;
	CK_OBJECT_HANDLE obj;
	int r;

	if ((r = p11_metadata_newest(ks, metas, nmetas, v->info.name,
				     v->info.version, &obj, NULL, NULL, &mi)) !=
	    P11_OK)
		return r;
	v->info.created = mi.created;
	v->info.created_us = mi.created_us;
	v->info.updated = mi.updated;
	v->info.nbf = mi.nbf;
	v->info.exp = mi.exp;
	v->info.enabled = mi.enabled;
	v->info.repaired = mi.repaired;
	memcpy(v->info.recovery_level, mi.recovery_level,
	       sizeof(mi.recovery_level));
	v->info.recoverable_days = mi.recoverable_days;
	return P11_OK;
}

/* ---- unwrap paths ---- */

/* Whether the token offers mechanism m for use (CKF_DECRYPT, CKF_SIGN). */
static bool mech_offers(struct p11_keystore *ks, CK_MECHANISM_TYPE m,
			CK_FLAGS use)
{
	CK_MECHANISM_INFO mi;

	return ks->fn->C_GetMechanismInfo(p11_token_slot(ks->tok), m, &mi) ==
		       CKR_OK &&
	       (mi.flags & use);
}

/*
 * True if the token decrypts an OAEP ciphertext made by OpenSSL for alg
 * with its own mechanism. Needs admin_lock.
 */
static bool probe_native_oaep(struct p11_keystore *ks,
			      const struct key_version *v, enum p11_alg alg)
{
	unsigned char msg[32], ct[P11_MODULUS_MAX], pt[P11_MODULUS_MAX];
	CK_RSA_PKCS_OAEP_PARAMS params;
	CK_MECHANISM mech = { CKM_RSA_PKCS_OAEP, &params, sizeof(params) };
	size_t ctlen;
	CK_ULONG ptlen = sizeof(pt);
	bool ok = false;

	if (!mech_offers(ks, CKM_RSA_PKCS_OAEP, CKF_DECRYPT) ||
	    RAND_bytes(msg, sizeof(msg)) != 1 ||
	    p11_public_encrypt(v->pub, alg, msg, sizeof(msg), ct, &ctlen) != 0)
		return false;
	p11_oaep_params(alg, &params);
	if (ks->fn->C_DecryptInit(ks->admin, &mech, v->priv) == CKR_OK &&
	    ks->fn->C_Decrypt(ks->admin, ct, ctlen, pt, &ptlen) == CKR_OK)
		ok = ptlen == sizeof(msg) && memcmp(pt, msg, ptlen) == 0;
	kb_wipe(pt, sizeof(pt));
	return ok;
}

/* The RSA1_5 key-derivation secret, or CK_INVALID_HANDLE. Needs admin_lock. */
static CK_OBJECT_HANDLE find_kdk_secret(struct p11_keystore *ks,
					struct p11_findings *f)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_LABEL, KDK_LABEL, sizeof(KDK_LABEL) - 1 },
	};
	CK_OBJECT_HANDLE *objs, h = CK_INVALID_HANDLE;
	size_t n;

	/* All of that label, private or not: one only, and protected. */
	if (p11_find_all(ks, t, 2, &objs, &n) != P11_OK)
		return CK_INVALID_HANDLE;
	if (n > 1)
		p11_note(f, "%zu secret keys are labelled '%s'; RSA1_5 is off",
			 n, KDK_LABEL);
	else if (n == 1 &&
		 p11_key_protected(ks, objs[0], "the RSA1_5 secret", f))
		h = objs[0];
	free(objs);
	return h;
}

/* Needs admin_lock. */
static void probe_paths(struct p11_keystore *ks, struct catalog *c,
			struct p11_findings *f)
{
	bool raw = mech_offers(ks, CKM_RSA_X_509, CKF_DECRYPT);
	enum p11_alg alg;

	for (alg = 0; alg < P11_ALG_COUNT; alg++)
		c->path[alg] = P11_PATH_NONE;
	c->kdk_secret = ks->allow_rsa1_5 ? find_kdk_secret(ks, f) :
					   CK_INVALID_HANDLE;
	if (c->n == 0)
		return;
	for (alg = P11_ALG_RSA_OAEP; alg <= P11_ALG_RSA_OAEP_256; alg++) {
		if (probe_native_oaep(ks, &c->v[0], alg))
			c->path[alg] = P11_PATH_NATIVE;
		else if (raw)
			c->path[alg] = P11_PATH_RAW_OAEP;
	}
	/*
	 * Never the token's own CKM_RSA_PKCS: it fails on bad padding, a
	 * Bleichenbacher oracle. Only raw RSA with implicit rejection.
	 */
	if (raw && c->kdk_secret != CK_INVALID_HANDLE &&
	    mech_offers(ks, CKM_SHA256_HMAC, CKF_SIGN))
		c->path[P11_ALG_RSA1_5] = P11_PATH_RAW_PKCS1;
}

/* ---- loading the catalogue ---- */

/* Reads every key version from the token. Needs admin_lock. */
static int catalog_load(struct p11_keystore *ks, struct catalog **out)
{
	CK_OBJECT_CLASS cpriv = CKO_PRIVATE_KEY, cpub = CKO_PUBLIC_KEY,
			cdata = CKO_DATA;
	CK_KEY_TYPE krsa = CKK_RSA;
	CK_BBOOL yes = CK_TRUE;
	/*
	 * Private keys of every kind are looked at (public ones are refused
	 * by name); metadata only as private objects: public ones can be
	 * written without the PIN and are not ours.
	 */
	CK_ATTRIBUTE tpriv[] = { { CKA_CLASS, &cpriv, sizeof(cpriv) },
				 { CKA_KEY_TYPE, &krsa, sizeof(krsa) } };
	CK_ATTRIBUTE tpub[] = { { CKA_CLASS, &cpub, sizeof(cpub) },
				{ CKA_KEY_TYPE, &krsa, sizeof(krsa) } };
	CK_ATTRIBUTE tdata[] = {
		{ CKA_CLASS, &cdata, sizeof(cdata) },
		{ CKA_PRIVATE, &yes, sizeof(yes) },
		{ CKA_APPLICATION, META_APPLICATION,
		  sizeof(META_APPLICATION) - 1 },
	};
	CK_OBJECT_HANDLE *privs = NULL, *pubs = NULL, *metas = NULL;
	size_t nprivs, npubs, nmetas, i;
	struct p11_findings f = { .len = 0 };
	char what[KB_NAME_MAX + KB_VERSION_LEN + 32];
	struct catalog *c;
	struct key_version *v;
	int r;

	*out = NULL;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return P11_ERR_NOMEM;
	if ((r = p11_find_all(ks, tpriv, 2, &privs, &nprivs)) != 0 ||
	    (r = p11_find_all(ks, tpub, 2, &pubs, &npubs)) != 0 ||
	    (r = p11_find_all(ks, tdata, 3, &metas, &nmetas)) != 0)
		goto out_free;
	if (nprivs > 0 && (c->v = calloc(nprivs, sizeof(*c->v))) == NULL) {
		r = P11_ERR_NOMEM;
		goto out_free;
	}
	for (i = 0; i < nprivs; i++) {
		v = &c->v[c->n];
		memset(v, 0, sizeof(*v));
		v->priv = privs[i];
		/* Objects that are not ours (or are damaged) are skipped. */
		if ((r = get_name_version(ks, privs[i], &v->info)) ==
		    P11_ERR_PARAM)
			p11_note(&f,
				 "an RSA private key whose label is not a key "
				 "name or whose ID is not 16 bytes; ignored");
		if (r == P11_OK) {
			snprintf(what, sizeof(what), "key %s version %s",
				 v->info.name, v->info.version);
			if (!p11_key_protected(ks, privs[i], what, &f))
				r = P11_ERR_PARAM;
		}
		if (r == P11_OK)
			r = load_public(ks, pubs, npubs, v, &f);
		/*
		 * A private key is never made invisible by its metadata: a
		 * write the token lost must not take a key with it.
		 */
		if (r == P11_OK && (r = load_metadata(ks, metas, nmetas, v)) ==
					   P11_ERR_NOT_FOUND) {
			p11_note(&f,
				 "%s: no readable metadata; listed as damaged "
				 "and refused until keybrokerctl repair-key "
				 "%s %s --enabled|--disabled",
				 what, v->info.name, v->info.version);
			v->info.damaged = true;
			r = P11_OK;
		}
		if (r == P11_ERR_HSM || r == P11_ERR_NOMEM) {
			EVP_PKEY_free(v->pub);
			goto out_free;
		}
		if (r != P11_OK) {
			EVP_PKEY_free(v->pub);
			continue;
		}
		c->n++;
	}
	if (c->n > 1)
		qsort(c->v, c->n, sizeof(*c->v), version_cmp);
	probe_paths(ks, c, &f);
	if ((r = p11_identity_load(ks, c, &f)) != P11_OK)
		goto out_free;
	log_findings(ks, &f);
	for (i = 0; i < c->n; i++)
		memcpy(c->v[i].info.path, c->path, sizeof(c->path));
	*out = c;
	c = NULL;
	r = P11_OK;
out_free:
	p11_catalog_free(c);
	free(privs);
	free(pubs);
	free(metas);
	return r;
}

/* Re-reads the catalogue now and publishes it. Needs admin_lock. */
int p11_catalog_reload_locked(struct p11_keystore *ks)
{
	struct catalog *c;
	int r;

	if ((r = catalog_load(ks, &c)) != P11_OK)
		return r;
	pthread_mutex_lock(&ks->lock);
	catalog_publish_locked(ks, c);
	ks->last_reload = time(NULL);
	pthread_mutex_unlock(&ks->lock);
	return P11_OK;
}
