// SPDX-License-Identifier: MIT
#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kb_json.h"
#include "kb_log.h"
#include "kb_oaep.h"
#include "kb_secret.h"
#include "p11_keystore.h"

#define META_APPLICATION "keybroker:key-version"
#define META_MAX 4096
#define FIND_BATCH 64
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
	/* Revoked identity-token ids, sorted. */
	char **revoked;
	size_t n_revoked;
	/* The token-signing key, if the token has one. */
	CK_OBJECT_HANDLE issuer_priv;
	EVP_PKEY *issuer_pub;
	char issuer_kid[KB_VERSION_LEN + 1];
};

struct p11_keystore {
	struct p11_token *tok;
	CK_FUNCTION_LIST *fn;
	bool allow_rsa1_5;

	pthread_mutex_t lock; /* guards cat, gen, available, the times */
	struct catalog *cat;
	unsigned int gen; /* bumped each time sessions are renewed */
	bool available;
	time_t last_recover, last_reload;

	/* Admin session: catalogue loads, key creation. */
	pthread_mutex_t admin_lock;
	CK_SESSION_HANDLE admin;

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

const char *p11_path_name(enum p11_path path)
{
	switch (path) {
	case P11_PATH_NATIVE:
		return "token";
	case P11_PATH_RAW_OAEP:
		return "token-raw-rsa+oaep-decode";
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

/* ---- catalogue snapshots ---- */

static void catalog_free(struct catalog *c)
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

static struct catalog *catalog_get(struct p11_keystore *ks)
{
	struct catalog *c;

	pthread_mutex_lock(&ks->lock);
	if ((c = ks->cat) != NULL)
		c->refs++;
	pthread_mutex_unlock(&ks->lock);
	return c;
}

static void catalog_put(struct p11_keystore *ks, struct catalog *c)
{
	bool last;

	if (c == NULL)
		return;
	pthread_mutex_lock(&ks->lock);
	last = --c->refs == 0;
	pthread_mutex_unlock(&ks->lock);
	if (last)
		catalog_free(c);
}

/* Needs ks->lock. */
static void catalog_publish_locked(struct p11_keystore *ks, struct catalog *c)
{
	struct catalog *old = ks->cat;

	c->refs = 1;
	ks->cat = c;
	if (old != NULL && --old->refs == 0)
		catalog_free(old);
}

static const struct key_version *
catalog_find(const struct catalog *c, const char *name, const char *version)
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
	if (x->created_us != y->created_us)
		return x->created_us < y->created_us ? -1 : 1;
	return strcmp(x->version, y->version);
}

/* ---- reading the token ---- */

static int find_all(struct p11_keystore *ks, CK_ATTRIBUTE *tmpl, CK_ULONG ntmpl,
		    CK_OBJECT_HANDLE **out, size_t *count)
{
	CK_OBJECT_HANDLE *objs = NULL, *grown;
	CK_ULONG got;
	size_t n = 0, cap = 0;
	CK_RV rv;

	*out = NULL;
	*count = 0;
	if ((rv = ks->fn->C_FindObjectsInit(ks->admin, tmpl, ntmpl)) != CKR_OK)
		return p11_rv_is_token_lost(rv) ? P11_ERR_HSM : P11_ERR_HSM;
	for (;;) {
		if (cap - n < FIND_BATCH) {
			cap += FIND_BATCH * 4;
			if ((grown = realloc(objs, cap * sizeof(*objs))) ==
			    NULL) {
				ks->fn->C_FindObjectsFinal(ks->admin);
				free(objs);
				return P11_ERR_NOMEM;
			}
			objs = grown;
		}
		rv = ks->fn->C_FindObjects(ks->admin, objs + n, FIND_BATCH,
					   &got);
		if (rv != CKR_OK) {
			ks->fn->C_FindObjectsFinal(ks->admin);
			free(objs);
			return P11_ERR_HSM;
		}
		n += got;
		if (got == 0)
			break;
	}
	ks->fn->C_FindObjectsFinal(ks->admin);
	*out = objs;
	*count = n;
	return P11_OK;
}

/* Reads one attribute of at most max bytes. */
static int get_attr(struct p11_keystore *ks, CK_OBJECT_HANDLE obj,
		    CK_ATTRIBUTE_TYPE type, void *buf, size_t max, size_t *len)
{
	CK_ATTRIBUTE a = { type, NULL, 0 };
	CK_RV rv;

	rv = ks->fn->C_GetAttributeValue(ks->admin, obj, &a, 1);
	if (rv != CKR_OK)
		return p11_rv_is_token_lost(rv) ? P11_ERR_HSM : P11_ERR_PARAM;
	if (a.ulValueLen == (CK_ULONG)-1 || a.ulValueLen > max)
		return P11_ERR_PARAM;
	a.pValue = buf;
	rv = ks->fn->C_GetAttributeValue(ks->admin, obj, &a, 1);
	if (rv != CKR_OK)
		return p11_rv_is_token_lost(rv) ? P11_ERR_HSM : P11_ERR_PARAM;
	*len = a.ulValueLen;
	return P11_OK;
}

/* Reads CKA_LABEL (a key name) and CKA_ID (a version) of obj. */
static int get_name_version(struct p11_keystore *ks, CK_OBJECT_HANDLE obj,
			    struct p11_key_info *info)
{
	unsigned char id[KB_VERSION_BYTES + 1];
	size_t len;
	int r;

	if ((r = get_attr(ks, obj, CKA_LABEL, info->name, KB_NAME_MAX, &len)) !=
	    P11_OK)
		return r;
	info->name[len] = '\0';
	if (!kb_name_valid(info->name, len))
		return P11_ERR_PARAM;
	if ((r = get_attr(ks, obj, CKA_ID, id, sizeof(id), &len)) != P11_OK)
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

/* Finds the public half of v and caches it as an EVP_PKEY. */
static int load_public(struct p11_keystore *ks, CK_OBJECT_HANDLE *pubs,
		       size_t npubs, struct key_version *v)
{
	struct p11_key_info pi;
	size_t i, len;
	int r;

	for (i = 0; i < npubs; i++) {
		if (get_name_version(ks, pubs[i], &pi) != P11_OK ||
		    strcmp(pi.name, v->info.name) != 0 ||
		    strcmp(pi.version, v->info.version) != 0)
			continue;
		if ((r = get_attr(ks, pubs[i], CKA_MODULUS, v->info.n,
				  sizeof(v->info.n), &v->info.nlen)) != 0 ||
		    (r = get_attr(ks, pubs[i], CKA_PUBLIC_EXPONENT, v->info.e,
				  sizeof(v->info.e), &v->info.elen)) != 0)
			return r;
		/* Strip leading zero bytes some tokens keep. */
		for (len = 0; len < v->info.nlen && v->info.n[len] == 0; len++)
			;
		memmove(v->info.n, v->info.n + len, v->info.nlen - len);
		v->info.nlen -= len;
		v->info.bits = (unsigned int)v->info.nlen * 8;
		if (v->info.nlen < 256 ||
		    (v->pub = rsa_public_key(&v->info)) == NULL)
			return P11_ERR_PARAM;
		v->info.bits = (unsigned int)EVP_PKEY_get_bits(v->pub);
		return P11_OK;
	}
	return P11_ERR_NOT_FOUND;
}

static int64_t json_time(const json_t *o, const char *k)
{
	const json_t *v = json_object_get(o, k);

	return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

static int parse_metadata(const char *text, size_t len,
			  struct p11_key_info *info)
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
	info->created = json_time(o, "created");
	info->created_us = json_time(o, "createdUs");
	if (info->created_us == 0)
		info->created_us = info->created * 1000000;
	info->updated = json_time(o, "updated");
	info->nbf = json_time(o, "nbf");
	info->exp = json_time(o, "exp");
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

/* Finds and applies the metadata object of v; P11_ERR_NOT_FOUND if none. */
static int load_metadata(struct p11_keystore *ks, CK_OBJECT_HANDLE *metas,
			 size_t nmetas, struct key_version *v)
{
	struct p11_key_info mi;
	char label[KB_NAME_MAX + 1], *text;
	size_t i, len;
	int r = P11_ERR_NOT_FOUND;

	if ((text = malloc(META_MAX)) == NULL)
		return P11_ERR_NOMEM;
	for (i = 0; i < nmetas; i++) {
		if (get_attr(ks, metas[i], CKA_LABEL, label, KB_NAME_MAX,
			     &len) != P11_OK)
			continue;
		label[len] = '\0';
		if (strcmp(label, v->info.name) != 0 ||
		    get_attr(ks, metas[i], CKA_VALUE, text, META_MAX, &len) !=
			    P11_OK)
			continue;
		memset(&mi, 0, sizeof(mi));
		if (parse_metadata(text, len, &mi) != P11_OK ||
		    strcmp(mi.version, v->info.version) != 0 ||
		    (r == P11_OK && mi.updated <= v->info.updated))
			continue;
		v->info.created = mi.created;
		v->info.created_us = mi.created_us;
		v->info.updated = mi.updated;
		v->info.nbf = mi.nbf;
		v->info.exp = mi.exp;
		v->info.enabled = mi.enabled;
		memcpy(v->info.recovery_level, mi.recovery_level,
		       sizeof(mi.recovery_level));
		v->info.recoverable_days = mi.recoverable_days;
		r = P11_OK;
	}
	free(text);
	return r;
}

/* ---- unwrap paths ---- */

static bool mech_decrypts(struct p11_keystore *ks, CK_MECHANISM_TYPE m)
{
	CK_MECHANISM_INFO mi;

	return ks->fn->C_GetMechanismInfo(p11_token_slot(ks->tok), m, &mi) ==
		       CKR_OK &&
	       (mi.flags & CKF_DECRYPT);
}

static void oaep_params(enum p11_alg alg, CK_RSA_PKCS_OAEP_PARAMS *p)
{
	memset(p, 0, sizeof(*p));
	p->hashAlg = alg == P11_ALG_RSA_OAEP ? CKM_SHA_1 : CKM_SHA256;
	p->mgf = alg == P11_ALG_RSA_OAEP ? CKG_MGF1_SHA1 : CKG_MGF1_SHA256;
	p->source = CKZ_DATA_SPECIFIED;
}

static const EVP_MD *alg_md(enum p11_alg alg)
{
	return alg == P11_ALG_RSA_OAEP ? EVP_sha1() : EVP_sha256();
}

/* A context that encrypts with pub and alg; reusable for many messages. */
static EVP_PKEY_CTX *encrypt_ctx_new(EVP_PKEY *pub, enum p11_alg alg)
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
		     EVP_PKEY_CTX_set_rsa_oaep_md(ctx, alg_md(alg)) == 1 &&
		     EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, alg_md(alg)) == 1;
	if (!ok) {
		EVP_PKEY_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

static int public_encrypt(EVP_PKEY *pub, enum p11_alg alg,
			  const unsigned char *in, size_t inlen,
			  unsigned char *out, size_t *outlen)
{
	EVP_PKEY_CTX *ctx = encrypt_ctx_new(pub, alg);
	int ok;

	if (ctx == NULL)
		return P11_ERR_NOMEM;
	*outlen = P11_MODULUS_MAX;
	ok = EVP_PKEY_encrypt(ctx, out, outlen, in, inlen) == 1;
	EVP_PKEY_CTX_free(ctx);
	return ok ? P11_OK : P11_ERR_PARAM;
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

	if (!mech_decrypts(ks, CKM_RSA_PKCS_OAEP) ||
	    RAND_bytes(msg, sizeof(msg)) != 1 ||
	    public_encrypt(v->pub, alg, msg, sizeof(msg), ct, &ctlen) != 0)
		return false;
	oaep_params(alg, &params);
	if (ks->fn->C_DecryptInit(ks->admin, &mech, v->priv) == CKR_OK &&
	    ks->fn->C_Decrypt(ks->admin, ct, ctlen, pt, &ptlen) == CKR_OK)
		ok = ptlen == sizeof(msg) && memcmp(pt, msg, ptlen) == 0;
	kb_wipe(pt, sizeof(pt));
	return ok;
}

/* Needs admin_lock. */
static void probe_paths(struct p11_keystore *ks, struct catalog *c)
{
	bool raw = mech_decrypts(ks, CKM_RSA_X_509);
	enum p11_alg alg;

	for (alg = 0; alg < P11_ALG_COUNT; alg++)
		c->path[alg] = P11_PATH_NONE;
	if (c->n == 0)
		return;
	for (alg = P11_ALG_RSA_OAEP; alg <= P11_ALG_RSA_OAEP_256; alg++) {
		if (probe_native_oaep(ks, &c->v[0], alg))
			c->path[alg] = P11_PATH_NATIVE;
		else if (raw)
			c->path[alg] = P11_PATH_RAW_OAEP;
	}
	if (ks->allow_rsa1_5 && mech_decrypts(ks, CKM_RSA_PKCS))
		c->path[P11_ALG_RSA1_5] = P11_PATH_NATIVE;
}

/* ---- the token-signing (issuer) key ---- */

#define ISSUER_LABEL "keybroker-issuer"
/* DER of the prime256v1 OID, as CKA_EC_PARAMS. */
static const unsigned char p256_params[] = { 0x06, 0x08, 0x2a, 0x86, 0x48,
					     0xce, 0x3d, 0x03, 0x01, 0x07 };

/* An EVP_PKEY from CKA_EC_POINT: a DER OCTET STRING or the raw point. */
static EVP_PKEY *ec_public_key(const unsigned char *pt, size_t len)
{
	OSSL_PARAM_BLD *bld;
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *pkey = NULL;

	if (len == 67 && pt[0] == 0x04 && pt[1] == 65) {
		pt += 2;
		len -= 2;
	}
	if (len != 65 || pt[0] != 0x04 || (bld = OSSL_PARAM_BLD_new()) == NULL)
		return NULL;
	if (OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
					    "prime256v1", 0) == 1 &&
	    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt,
					     len) == 1 &&
	    (params = OSSL_PARAM_BLD_to_param(bld)) != NULL &&
	    (ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL)) != NULL &&
	    EVP_PKEY_fromdata_init(ctx) == 1)
		EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params);
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	return pkey;
}

/*
 * Finds the issuer key pair (label ISSUER_LABEL, EC P-256) and caches its
 * handle and public key in c. Needs admin_lock.
 */
static int load_issuer(struct p11_keystore *ks, struct catalog *c)
{
	CK_OBJECT_CLASS cpriv = CKO_PRIVATE_KEY, cpub = CKO_PUBLIC_KEY;
	CK_KEY_TYPE kec = CKK_EC;
	CK_ATTRIBUTE tpriv[] = {
		{ CKA_CLASS, &cpriv, sizeof(cpriv) },
		{ CKA_KEY_TYPE, &kec, sizeof(kec) },
		{ CKA_LABEL, ISSUER_LABEL, sizeof(ISSUER_LABEL) - 1 },
	};
	CK_ATTRIBUTE tpub[] = {
		{ CKA_CLASS, &cpub, sizeof(cpub) },
		{ CKA_KEY_TYPE, &kec, sizeof(kec) },
		{ CKA_LABEL, ISSUER_LABEL, sizeof(ISSUER_LABEL) - 1 },
	};
	unsigned char id[KB_VERSION_BYTES], pt[80];
	CK_OBJECT_HANDLE *privs = NULL, *pubs = NULL;
	size_t nprivs, npubs, idlen, ptlen;
	int r;

	if ((r = find_all(ks, tpriv, 3, &privs, &nprivs)) != P11_OK ||
	    (r = find_all(ks, tpub, 3, &pubs, &npubs)) != P11_OK)
		goto out;
	r = P11_ERR_NOT_FOUND;
	if (nprivs != 1 || npubs != 1)
		goto out;
	if (get_attr(ks, privs[0], CKA_ID, id, sizeof(id), &idlen) != P11_OK ||
	    idlen != sizeof(id) ||
	    get_attr(ks, pubs[0], CKA_EC_POINT, pt, sizeof(pt), &ptlen) !=
		    P11_OK ||
	    (c->issuer_pub = ec_public_key(pt, ptlen)) == NULL) {
		r = P11_ERR_PARAM;
		goto out;
	}
	c->issuer_priv = privs[0];
	kb_hex_encode(c->issuer_kid, id, sizeof(id));
	r = P11_OK;
out:
	free(privs);
	free(pubs);
	return r;
}

/* ---- revoked identity tokens ---- */

#define REVOKED_APPLICATION "keybroker:revoked-jti"
#define JTI_MAX 255

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reads the revoked jtis into c, sorted. Needs admin_lock. */
static int load_revoked(struct p11_keystore *ks, struct catalog *c)
{
	CK_OBJECT_CLASS cdata = CKO_DATA;
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cdata, sizeof(cdata) },
		{ CKA_APPLICATION, REVOKED_APPLICATION,
		  sizeof(REVOKED_APPLICATION) - 1 },
	};
	CK_OBJECT_HANDLE *objs;
	char jti[JTI_MAX + 1];
	size_t n, i, len;
	int r;

	if ((r = find_all(ks, t, 2, &objs, &n)) != P11_OK)
		return r;
	if (n > 0 && (c->revoked = calloc(n, sizeof(*c->revoked))) == NULL) {
		free(objs);
		return P11_ERR_NOMEM;
	}
	for (i = 0; i < n; i++) {
		if (get_attr(ks, objs[i], CKA_LABEL, jti, JTI_MAX, &len) !=
			    P11_OK ||
		    len == 0)
			continue;
		jti[len] = '\0';
		if ((c->revoked[c->n_revoked] = strdup(jti)) == NULL) {
			free(objs);
			return P11_ERR_NOMEM;
		}
		c->n_revoked++;
	}
	free(objs);
	if (c->n_revoked > 1)
		qsort(c->revoked, c->n_revoked, sizeof(*c->revoked), str_cmp);
	return P11_OK;
}

/* ---- loading the catalogue ---- */

/* Reads every key version from the token. Needs admin_lock. */
static int catalog_load(struct p11_keystore *ks, struct catalog **out)
{
	CK_OBJECT_CLASS cpriv = CKO_PRIVATE_KEY, cpub = CKO_PUBLIC_KEY,
			cdata = CKO_DATA;
	CK_KEY_TYPE krsa = CKK_RSA;
	CK_ATTRIBUTE tpriv[] = { { CKA_CLASS, &cpriv, sizeof(cpriv) },
				 { CKA_KEY_TYPE, &krsa, sizeof(krsa) } };
	CK_ATTRIBUTE tpub[] = { { CKA_CLASS, &cpub, sizeof(cpub) },
				{ CKA_KEY_TYPE, &krsa, sizeof(krsa) } };
	CK_ATTRIBUTE tdata[] = {
		{ CKA_CLASS, &cdata, sizeof(cdata) },
		{ CKA_APPLICATION, META_APPLICATION,
		  sizeof(META_APPLICATION) - 1 },
	};
	CK_OBJECT_HANDLE *privs = NULL, *pubs = NULL, *metas = NULL;
	size_t nprivs, npubs, nmetas, i;
	struct catalog *c;
	struct key_version *v;
	int r;

	*out = NULL;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return P11_ERR_NOMEM;
	if ((r = find_all(ks, tpriv, 2, &privs, &nprivs)) != 0 ||
	    (r = find_all(ks, tpub, 2, &pubs, &npubs)) != 0 ||
	    (r = find_all(ks, tdata, 2, &metas, &nmetas)) != 0)
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
		r = get_name_version(ks, privs[i], &v->info);
		if (r == P11_OK)
			r = load_public(ks, pubs, npubs, v);
		if (r == P11_OK)
			r = load_metadata(ks, metas, nmetas, v);
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
	probe_paths(ks, c);
	if ((r = load_issuer(ks, c)) != P11_OK && r != P11_ERR_NOT_FOUND)
		goto out_free;
	if ((r = load_revoked(ks, c)) != P11_OK)
		goto out_free;
	for (i = 0; i < c->n; i++)
		memcpy(c->v[i].info.path, c->path, sizeof(c->path));
	*out = c;
	c = NULL;
	r = P11_OK;
out_free:
	catalog_free(c);
	free(privs);
	free(pubs);
	free(metas);
	return r;
}

/* Re-reads the catalogue now and publishes it. Needs admin_lock. */
static int reload_locked(struct p11_keystore *ks)
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

/*
 * Renews every session after the token failed and re-reads the
 * catalogue, unless another thread already did since seen_gen, and at
 * most once per RECOVER_INTERVAL_S while the token stays away.
 */
static int keystore_recover(struct p11_keystore *ks, unsigned int seen_gen)
{
	char err[256];
	time_t now = time(NULL);
	bool ok;
	int r;

	pthread_mutex_lock(&ks->admin_lock);
	pthread_mutex_lock(&ks->lock);
	if (ks->gen != seen_gen ||
	    (!ks->available && now - ks->last_recover < RECOVER_INTERVAL_S)) {
		ok = ks->available;
		pthread_mutex_unlock(&ks->lock);
		pthread_mutex_unlock(&ks->admin_lock);
		return ok ? P11_OK : P11_ERR_HSM;
	}
	if (ks->available)
		kb_warn("token '%s' failed; renewing sessions",
			p11_token_label(ks->tok));
	ks->last_recover = now;
	pthread_mutex_unlock(&ks->lock);

	/* No other thread is inside the module past this point. */
	pthread_rwlock_wrlock(&ks->module_lock);
	ks->fn->C_CloseAllSessions(p11_token_slot(ks->tok));
	r = p11_token_select(ks->tok, err, sizeof(err));
	if (r != P11_OK &&
	    (r = p11_token_reinitialise(ks->tok, err, sizeof(err))) == P11_OK)
		r = p11_token_select(ks->tok, err, sizeof(err));
	if (r == P11_OK)
		r = p11_token_open_session(ks->tok, true, &ks->admin, err,
					   sizeof(err));
	if (r == P11_OK && (r = reload_locked(ks)) != P11_OK) {
		snprintf(err, sizeof(err), "cannot read the key catalogue");
		p11_token_close_session(ks->tok, ks->admin);
	}
	pthread_rwlock_unlock(&ks->module_lock);

	pthread_mutex_lock(&ks->lock);
	if (r == P11_OK && !ks->available)
		kb_info("token '%s' is back", p11_token_label(ks->tok));
	else if (r != P11_OK && ks->available)
		kb_err("token unavailable: %s; requests get HsmUnavailable "
		       "until it returns",
		       err);
	ks->available = r == P11_OK;
	ks->gen++;
	pthread_mutex_unlock(&ks->lock);
	pthread_mutex_unlock(&ks->admin_lock);
	return r == P11_OK ? P11_OK : P11_ERR_HSM;
}

/* Serialises admin work and keeps recovery out of the module meanwhile. */
static void admin_enter(struct p11_keystore *ks)
{
	pthread_mutex_lock(&ks->admin_lock);
	pthread_rwlock_rdlock(&ks->module_lock);
}

static void admin_leave(struct p11_keystore *ks)
{
	pthread_rwlock_unlock(&ks->module_lock);
	pthread_mutex_unlock(&ks->admin_lock);
}

/*
 * Finds name/version in the current catalogue; on a miss, re-reads the
 * token (at most every MISS_RELOAD_INTERVAL_S) in case a key was created
 * by another process, then looks again. On success *cat holds a reference.
 */
static int lookup(struct p11_keystore *ks, const char *name,
		  const char *version, struct catalog **cat,
		  const struct key_version **v)
{
	bool reload;

	*cat = catalog_get(ks);
	if (*cat != NULL && (*v = catalog_find(*cat, name, version)) != NULL)
		return P11_OK;
	catalog_put(ks, *cat);
	*cat = NULL;
	admin_enter(ks);
	pthread_mutex_lock(&ks->lock);
	reload = ks->available &&
		 time(NULL) - ks->last_reload >= MISS_RELOAD_INTERVAL_S;
	pthread_mutex_unlock(&ks->lock);
	if (reload)
		reload_locked(ks);
	admin_leave(ks);
	*cat = catalog_get(ks);
	if (*cat != NULL && (*v = catalog_find(*cat, name, version)) != NULL)
		return P11_OK;
	catalog_put(ks, *cat);
	*cat = NULL;
	return P11_ERR_NOT_FOUND;
}

static int check_usable(const struct p11_key_info *info, bool wrapping)
{
	time_t now = time(NULL);

	if (!info->enabled || (info->nbf != 0 && now < info->nbf))
		return P11_ERR_DISABLED;
	/* Expired keys still unwrap what they wrapped, but wrap no more. */
	if (wrapping && info->exp != 0 && now >= info->exp)
		return P11_ERR_DISABLED;
	return P11_OK;
}

/* ---- public operations ---- */

int p11_keystore_open(const struct p11_keystore_params *params,
		      const char *initialise_with_so_pin,
		      struct p11_keystore **out, char *err, size_t errlen)
{
	struct p11_keystore *ks;
	int r;

	*out = NULL;
	if ((ks = calloc(1, sizeof(*ks))) == NULL)
		return P11_ERR_NOMEM;
	pthread_mutex_init(&ks->lock, NULL);
	pthread_mutex_init(&ks->admin_lock, NULL);
	pthread_rwlock_init(&ks->module_lock, NULL);
	ks->allow_rsa1_5 = params->allow_rsa1_5;
	if ((r = p11_token_load(params->module, params->token_uri, &ks->tok,
				err, errlen)) != P11_OK)
		goto out_free;
	ks->fn = p11_token_functions(ks->tok);
	if ((r = p11_token_read_pin(ks->tok, params->pin_file, err, errlen)) !=
	    P11_OK)
		goto out_free;
	if (initialise_with_so_pin != NULL)
		r = p11_token_initialise(ks->tok, initialise_with_so_pin, err,
					 errlen);
	else
		r = p11_token_select(ks->tok, err, errlen);
	if (r != P11_OK)
		goto out_free;
	if ((r = p11_token_open_session(ks->tok, true, &ks->admin, err,
					errlen)) != P11_OK)
		goto out_free;
	ks->available = true;
	admin_enter(ks);
	r = reload_locked(ks);
	admin_leave(ks);
	if (r != P11_OK) {
		snprintf(err, errlen,
			 "cannot read the key catalogue from "
			 "token '%s'",
			 p11_token_label(ks->tok));
		goto out_free;
	}
	*out = ks;
	return P11_OK;
out_free:
	p11_keystore_free(ks);
	return r;
}

void p11_keystore_free(struct p11_keystore *ks)
{
	if (ks == NULL)
		return;
	catalog_free(ks->cat);
	p11_token_free(ks->tok); /* C_Finalize closes every session */
	pthread_mutex_destroy(&ks->lock);
	pthread_mutex_destroy(&ks->admin_lock);
	pthread_rwlock_destroy(&ks->module_lock);
	free(ks);
}

const char *p11_keystore_token_label(const struct p11_keystore *ks)
{
	return p11_token_label(ks->tok);
}

int p11_worker_new(struct p11_keystore *ks, struct p11_worker **out)
{
	struct p11_worker *w;

	if ((w = calloc(1, sizeof(*w))) == NULL)
		return P11_ERR_NOMEM;
	w->ks = ks;
	*out = w;
	return P11_OK;
}

void p11_worker_free(struct p11_worker *w)
{
	enum p11_alg a;

	if (w == NULL)
		return;
	for (a = 0; a < P11_ALG_COUNT; a++) {
		EVP_PKEY_CTX_free(w->wrap[a].ctx);
		EVP_PKEY_free(w->wrap[a].key);
	}
	pthread_mutex_lock(&w->ks->lock);
	if (w->open && w->gen == w->ks->gen)
		p11_token_close_session(w->ks->tok, w->h);
	pthread_mutex_unlock(&w->ks->lock);
	free(w);
}

/* Tries to bring the token back if it is known to be gone. */
static int ensure_available(struct p11_keystore *ks)
{
	unsigned int gen;
	bool available;

	pthread_mutex_lock(&ks->lock);
	gen = ks->gen;
	available = ks->available;
	pthread_mutex_unlock(&ks->lock);
	return available ? P11_OK : keystore_recover(ks, gen);
}

/*
 * Makes sure w has a live session of the current generation. Needs
 * module_lock shared.
 */
static int worker_session(struct p11_worker *w)
{
	struct p11_keystore *ks = w->ks;
	unsigned int gen;
	char err[256];

	pthread_mutex_lock(&ks->lock);
	gen = ks->gen;
	pthread_mutex_unlock(&ks->lock);
	if (w->open && w->gen == gen)
		return P11_OK;
	/*
	 * A session of an older generation died with the recovery; its
	 * handle may already name another thread's new session, so it is
	 * forgotten, never closed.
	 */
	w->open = false;
	w->gen = gen;
	if (p11_token_open_session(ks->tok, false, &w->h, err, sizeof(err)) !=
	    P11_OK)
		return P11_ERR_HSM;
	w->open = true;
	return P11_OK;
}

/* One unwrap attempt; *lost is set if the token or session failed. */
static int unwrap_once(struct p11_worker *w, const struct key_version *v,
		       enum p11_alg alg, const unsigned char *in, size_t inlen,
		       unsigned char *out, size_t *outlen)
{
	CK_FUNCTION_LIST *fn = w->ks->fn;
	enum p11_path path = v->info.path[alg];
	CK_RSA_PKCS_OAEP_PARAMS params;
	CK_MECHANISM mech = { CKM_RSA_X_509, NULL, 0 };
	unsigned char em[P11_MODULUS_MAX];
	CK_ULONG n = sizeof(em);
	size_t k = v->info.nlen;
	CK_RV rv;
	int r = P11_ERR_CIPHERTEXT;

	if (path == P11_PATH_NATIVE && alg == P11_ALG_RSA1_5) {
		mech.mechanism = CKM_RSA_PKCS;
	} else if (path == P11_PATH_NATIVE) {
		oaep_params(alg, &params);
		mech.mechanism = CKM_RSA_PKCS_OAEP;
		mech.pParameter = &params;
		mech.ulParameterLen = sizeof(params);
	}
	if ((rv = fn->C_DecryptInit(w->h, &mech, v->priv)) != CKR_OK) {
		r = p11_rv_is_token_lost(rv) ? P11_ERR_HSM :
					       P11_ERR_UNSUPPORTED;
		goto out;
	}
	rv = fn->C_Decrypt(w->h, (unsigned char *)in, inlen, em, &n);
	if (rv != CKR_OK) {
		if (p11_rv_is_token_lost(rv))
			r = P11_ERR_HSM;
		goto out;
	}
	if (path == P11_PATH_NATIVE) {
		memcpy(out, em, n);
		*outlen = n;
		r = P11_OK;
		goto out;
	}
	/* Raw RSA: the encoded message is exactly k bytes, left-padded. */
	if (n > k)
		goto out;
	memmove(em + (k - n), em, n);
	memset(em, 0, k - n);
	if (kb_oaep_decode(out, P11_MODULUS_MAX, outlen, em, k, alg_md(alg)) ==
	    0)
		r = P11_OK;
out:
	kb_wipe(em, sizeof(em));
	return r;
}

int p11_worker_unwrap(struct p11_worker *w, const char *name,
		      const char *version, enum p11_alg alg,
		      const unsigned char *in, size_t inlen, unsigned char *out,
		      size_t *outlen, struct p11_key_info *info)
{
	const struct key_version *v;
	struct catalog *cat;
	int attempt, r;

	if (alg >= P11_ALG_COUNT)
		return P11_ERR_UNSUPPORTED;
	for (attempt = 0; attempt < 2; attempt++) {
		if ((r = lookup(w->ks, name, version, &cat, &v)) != P11_OK)
			return r;
		*info = v->info;
		if ((r = check_usable(&v->info, false)) == P11_OK &&
		    v->info.path[alg] == P11_PATH_NONE)
			r = P11_ERR_UNSUPPORTED;
		if (r == P11_OK && inlen != v->info.nlen)
			r = P11_ERR_CIPHERTEXT;
		if (r == P11_OK)
			r = ensure_available(w->ks);
		if (r == P11_OK) {
			pthread_rwlock_rdlock(&w->ks->module_lock);
			if ((r = worker_session(w)) == P11_OK)
				r = unwrap_once(w, v, alg, in, inlen, out,
						outlen);
			pthread_rwlock_unlock(&w->ks->module_lock);
		}
		catalog_put(w->ks, cat);
		if (r != P11_ERR_HSM ||
		    keystore_recover(w->ks, w->gen) != P11_OK)
			break;
	}
	return r;
}

int p11_keystore_describe(struct p11_keystore *ks, const char *name,
			  const char *version, struct p11_key_info *info)
{
	const struct key_version *v;
	struct catalog *cat;
	int r;

	if ((r = lookup(ks, name, version, &cat, &v)) != P11_OK)
		return r;
	*info = v->info;
	catalog_put(ks, cat);
	return P11_OK;
}

/* Encrypts with w's cached context for pub and alg, making it if needed. */
static int worker_encrypt(struct p11_worker *w, EVP_PKEY *pub, enum p11_alg alg,
			  const unsigned char *in, size_t inlen,
			  unsigned char *out, size_t *outlen)
{
	EVP_PKEY_CTX *ctx = w->wrap[alg].ctx;

	if (w->wrap[alg].key != pub) {
		if ((ctx = encrypt_ctx_new(pub, alg)) == NULL ||
		    EVP_PKEY_up_ref(pub) != 1) {
			EVP_PKEY_CTX_free(ctx);
			return P11_ERR_NOMEM;
		}
		EVP_PKEY_CTX_free(w->wrap[alg].ctx);
		EVP_PKEY_free(w->wrap[alg].key);
		w->wrap[alg].ctx = ctx;
		w->wrap[alg].key = pub;
	}
	*outlen = P11_MODULUS_MAX;
	return EVP_PKEY_encrypt(ctx, out, outlen, in, inlen) == 1 ?
		       P11_OK :
		       P11_ERR_PARAM;
}

int p11_keystore_wrap(struct p11_keystore *ks, struct p11_worker *w,
		      const char *name, const char *version, enum p11_alg alg,
		      const unsigned char *in, size_t inlen, unsigned char *out,
		      size_t *outlen, struct p11_key_info *info)
{
	const struct key_version *v;
	struct catalog *cat;
	size_t max;
	int r;

	if (alg >= P11_ALG_COUNT)
		return P11_ERR_UNSUPPORTED;
	if ((r = lookup(ks, name, version, &cat, &v)) != P11_OK)
		return r;
	*info = v->info;
	max = alg == P11_ALG_RSA1_5 ?
		      v->info.nlen - 11 :
		      v->info.nlen - 2 * (size_t)EVP_MD_get_size(alg_md(alg)) -
			      2;
	if ((r = check_usable(&v->info, true)) != P11_OK)
		goto out;
	if (alg == P11_ALG_RSA1_5 && !ks->allow_rsa1_5)
		r = P11_ERR_UNSUPPORTED;
	else if (inlen == 0 || inlen > max)
		r = P11_ERR_PARAM;
	else if (w != NULL)
		r = worker_encrypt(w, v->pub, alg, in, inlen, out, outlen);
	else
		r = public_encrypt(v->pub, alg, in, inlen, out, outlen);
out:
	catalog_put(ks, cat);
	return r;
}

/* Stores metadata text for key name as a new private data object. */
static int create_metadata_object(struct p11_keystore *ks, const char *name,
				  const char *text, CK_OBJECT_HANDLE *obj)
{
	CK_OBJECT_CLASS cls = CKO_DATA;
	CK_BBOOL yes = CK_TRUE;
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_PRIVATE, &yes, sizeof(yes) },
		{ CKA_APPLICATION, META_APPLICATION,
		  sizeof(META_APPLICATION) - 1 },
		{ CKA_LABEL, (void *)name, strlen(name) },
		{ CKA_VALUE, (void *)text, strlen(text) },
	};

	return ks->fn->C_CreateObject(ks->admin, t, 6, obj) == CKR_OK ?
		       P11_OK :
		       P11_ERR_HSM;
}

static int write_metadata(struct p11_keystore *ks, const char *name,
			  const char *version, CK_OBJECT_HANDLE *obj)
{
	struct timespec ts;
	json_int_t now;
	json_t *o;
	char *text;
	int r;

	clock_gettime(CLOCK_REALTIME, &ts);
	now = (json_int_t)ts.tv_sec;
	o = json_pack("{s:s, s:s, s:I, s:I, s:I, s:b, s:n, s:n, s:s, s:i}",
		      "name", name, "version", version, "created", now,
		      "createdUs", now * 1000000 + ts.tv_nsec / 1000, "updated",
		      now, "enabled", 1, "nbf", "exp", "recoveryLevel",
		      "Recoverable+Purgeable", "recoverableDays", 90);
	if (o == NULL)
		return P11_ERR_NOMEM;
	text = kb_json_text(o, JSON_COMPACT | JSON_SORT_KEYS, NULL);
	json_decref(o);
	if (text == NULL)
		return P11_ERR_NOMEM;
	r = create_metadata_object(ks, name, text, obj);
	free(text);
	return r;
}

int p11_keystore_create_key(struct p11_keystore *ks, const char *name,
			    unsigned int bits, struct p11_key_info *info,
			    char *err, size_t errlen)
{
	static const unsigned char f4[] = { 0x01, 0x00, 0x01 };
	CK_MECHANISM mech = { CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0 };
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_ULONG modbits = bits;
	unsigned char id[KB_VERSION_BYTES];
	char version[KB_VERSION_LEN + 1];
	CK_OBJECT_HANDLE pub, priv, meta;
	CK_ATTRIBUTE tpub[] = {
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_PRIVATE, &no, sizeof(no) },
		{ CKA_ENCRYPT, &yes, sizeof(yes) },
		{ CKA_VERIFY, &no, sizeof(no) },
		{ CKA_WRAP, &no, sizeof(no) },
		{ CKA_MODULUS_BITS, &modbits, sizeof(modbits) },
		{ CKA_PUBLIC_EXPONENT, (void *)f4, sizeof(f4) },
		{ CKA_LABEL, (void *)name, strlen(name) },
		{ CKA_ID, id, sizeof(id) },
	};
	CK_ATTRIBUTE tpriv[] = {
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_PRIVATE, &yes, sizeof(yes) },
		{ CKA_SENSITIVE, &yes, sizeof(yes) },
		{ CKA_EXTRACTABLE, &no, sizeof(no) },
		{ CKA_DECRYPT, &yes, sizeof(yes) },
		{ CKA_SIGN, &no, sizeof(no) },
		{ CKA_UNWRAP, &no, sizeof(no) },
		{ CKA_LABEL, (void *)name, strlen(name) },
		{ CKA_ID, id, sizeof(id) },
	};
	CK_RV rv;
	int r;

	if (!kb_name_valid(name, strlen(name))) {
		snprintf(err, errlen,
			 "invalid key name: use 1-%d of "
			 "A-Z a-z 0-9 -",
			 KB_NAME_MAX);
		return P11_ERR_PARAM;
	}
	if (bits != 2048 && bits != 3072 && bits != 4096) {
		snprintf(err, errlen, "key size must be 2048, 3072 or 4096");
		return P11_ERR_PARAM;
	}
	if (RAND_bytes(id, sizeof(id)) != 1)
		return P11_ERR_NOMEM;
	kb_hex_encode(version, id, sizeof(id));

	admin_enter(ks);
	rv = ks->fn->C_GenerateKeyPair(ks->admin, &mech, tpub, 9, tpriv, 9,
				       &pub, &priv);
	if (rv != CKR_OK) {
		snprintf(err, errlen, "C_GenerateKeyPair: %s", p11_rv_name(rv));
		r = P11_ERR_HSM;
		goto out_unlock;
	}
	if ((r = write_metadata(ks, name, version, &meta)) != P11_OK) {
		snprintf(err, errlen,
			 "storing key metadata in the token "
			 "failed; key pair removed");
		ks->fn->C_DestroyObject(ks->admin, priv);
		ks->fn->C_DestroyObject(ks->admin, pub);
		goto out_unlock;
	}
	if ((r = reload_locked(ks)) != P11_OK)
		snprintf(err, errlen, "re-reading the key catalogue failed");
out_unlock:
	admin_leave(ks);
	if (r == P11_OK &&
	    (r = p11_keystore_describe(ks, name, version, info)) != P11_OK)
		snprintf(err, errlen, "new key version not in the catalogue");
	return r;
}

/* Rewrites the metadata object of name/version. Needs admin_lock. */
static int update_metadata(struct p11_keystore *ks, const char *name,
			   const char *version, bool enabled)
{
	CK_OBJECT_CLASS cdata = CKO_DATA;
	CK_ATTRIBUTE tmpl[] = {
		{ CKA_CLASS, &cdata, sizeof(cdata) },
		{ CKA_APPLICATION, META_APPLICATION,
		  sizeof(META_APPLICATION) - 1 },
		{ CKA_LABEL, (void *)name, strlen(name) },
	};
	CK_OBJECT_HANDLE *metas, obj;
	struct p11_key_info mi;
	size_t n, i, len;
	char *text, *out = NULL;
	json_t *o = NULL;
	int r;

	if ((r = find_all(ks, tmpl, 3, &metas, &n)) != P11_OK)
		return r;
	if ((text = malloc(META_MAX)) == NULL) {
		free(metas);
		return P11_ERR_NOMEM;
	}
	r = P11_ERR_NOT_FOUND;
	for (i = 0; i < n; i++) {
		memset(&mi, 0, sizeof(mi));
		if (get_attr(ks, metas[i], CKA_VALUE, text, META_MAX, &len) !=
			    P11_OK ||
		    parse_metadata(text, len, &mi) != P11_OK ||
		    strcmp(mi.version, version) != 0)
			continue;
		o = json_loadb(text, len, 0, NULL);
		if (o == NULL ||
		    json_object_set_new(o, "enabled", json_boolean(enabled)) ||
		    json_object_set_new(o, "updated",
					json_integer(time(NULL) > mi.updated ?
							     time(NULL) :
							     mi.updated + 1)) ||
		    (out = kb_json_text(o, JSON_COMPACT | JSON_SORT_KEYS,
					NULL)) == NULL) {
			r = P11_ERR_NOMEM;
			break;
		}
		/*
		 * Tokens may refuse to change CKA_VALUE (SoftHSMv2 does), so
		 * the new metadata is a new object; the newest "updated"
		 * wins if the old one cannot be removed.
		 */
		r = create_metadata_object(ks, name, out, &obj);
		if (r == P11_OK &&
		    ks->fn->C_DestroyObject(ks->admin, metas[i]) != CKR_OK)
			kb_warn("key %s version %s: old metadata object not "
				"removed",
				name, version);
		break;
	}
	json_decref(o);
	free(out);
	free(text);
	free(metas);
	return r;
}

int p11_keystore_set_enabled(struct p11_keystore *ks, const char *name,
			     const char *version, bool enabled, char *err,
			     size_t errlen)
{
	int r;

	admin_enter(ks);
	r = update_metadata(ks, name, version, enabled);
	if (r == P11_OK)
		r = reload_locked(ks);
	admin_leave(ks);
	if (r == P11_ERR_NOT_FOUND)
		snprintf(err, errlen, "key '%s' has no version '%s'", name,
			 version);
	else if (r != P11_OK)
		snprintf(err, errlen,
			 "updating the key metadata in the token "
			 "failed");
	return r;
}

int p11_keystore_reload(struct p11_keystore *ks)
{
	int r;

	admin_enter(ks);
	r = reload_locked(ks);
	admin_leave(ks);
	return r;
}

int p11_keystore_foreach(struct p11_keystore *ks,
			 void (*fn)(const struct p11_key_info *, void *),
			 void *arg)
{
	struct catalog *c = catalog_get(ks);
	size_t i;

	if (c == NULL)
		return P11_ERR_HSM;
	for (i = 0; i < c->n; i++)
		fn(&c->v[i].info, arg);
	catalog_put(ks, c);
	return P11_OK;
}

/* ---- identity tokens: the issuer key ---- */

int p11_keystore_create_issuer(struct p11_keystore *ks, char *err,
			       size_t errlen)
{
	CK_MECHANISM mech = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	unsigned char id[KB_VERSION_BYTES];
	CK_OBJECT_HANDLE pub, priv;
	CK_ATTRIBUTE tpub[] = {
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_PRIVATE, &no, sizeof(no) },
		{ CKA_VERIFY, &yes, sizeof(yes) },
		{ CKA_EC_PARAMS, (void *)p256_params, sizeof(p256_params) },
		{ CKA_LABEL, ISSUER_LABEL, sizeof(ISSUER_LABEL) - 1 },
		{ CKA_ID, id, sizeof(id) },
	};
	CK_ATTRIBUTE tpriv[] = {
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_PRIVATE, &yes, sizeof(yes) },
		{ CKA_SENSITIVE, &yes, sizeof(yes) },
		{ CKA_EXTRACTABLE, &no, sizeof(no) },
		{ CKA_SIGN, &yes, sizeof(yes) },
		{ CKA_DECRYPT, &no, sizeof(no) },
		{ CKA_LABEL, ISSUER_LABEL, sizeof(ISSUER_LABEL) - 1 },
		{ CKA_ID, id, sizeof(id) },
	};
	struct catalog *c;
	bool exists;
	CK_RV rv;
	int r;

	if ((c = catalog_get(ks)) == NULL)
		return P11_ERR_HSM;
	exists = c->issuer_pub != NULL;
	catalog_put(ks, c);
	if (exists) {
		snprintf(err, errlen, "the token already has an issuer key");
		return P11_ERR_CONFLICT;
	}
	if (RAND_bytes(id, sizeof(id)) != 1)
		return P11_ERR_NOMEM;
	admin_enter(ks);
	rv = ks->fn->C_GenerateKeyPair(ks->admin, &mech, tpub, 6, tpriv, 8,
				       &pub, &priv);
	if (rv != CKR_OK) {
		snprintf(err, errlen, "C_GenerateKeyPair (EC P-256): %s",
			 p11_rv_name(rv));
		r = P11_ERR_HSM;
	} else if ((r = reload_locked(ks)) != P11_OK) {
		snprintf(err, errlen, "re-reading the key catalogue failed");
	}
	admin_leave(ks);
	return r;
}

EVP_PKEY *p11_keystore_issuer_key(struct p11_keystore *ks, char *kid)
{
	struct catalog *c = catalog_get(ks);
	EVP_PKEY *pub = NULL;

	if (c != NULL && c->issuer_pub != NULL &&
	    EVP_PKEY_up_ref(c->issuer_pub) == 1) {
		pub = c->issuer_pub;
		memcpy(kid, c->issuer_kid, sizeof(c->issuer_kid));
	}
	catalog_put(ks, c);
	return pub;
}

/* Signs a SHA-256 digest on session h; r || s into sig. */
static int sign_es256(CK_FUNCTION_LIST *fn, CK_SESSION_HANDLE h,
		      CK_OBJECT_HANDLE key, const unsigned char *digest,
		      unsigned char *sig)
{
	CK_MECHANISM mech = { CKM_ECDSA, NULL, 0 };
	CK_ULONG n = 64;
	CK_RV rv;

	if ((rv = fn->C_SignInit(h, &mech, key)) != CKR_OK ||
	    (rv = fn->C_Sign(h, (unsigned char *)digest, 32, sig, &n)) !=
		    CKR_OK)
		return p11_rv_is_token_lost(rv) ? P11_ERR_HSM :
						  P11_ERR_UNSUPPORTED;
	return n == 64 ? P11_OK : P11_ERR_UNSUPPORTED;
}

int p11_keystore_sign_es256(struct p11_keystore *ks, struct p11_worker *w,
			    const unsigned char *digest, unsigned char *sig)
{
	struct catalog *c = catalog_get(ks);
	CK_OBJECT_HANDLE key;
	int r;

	if (c == NULL || c->issuer_pub == NULL) {
		catalog_put(ks, c);
		return P11_ERR_NOT_FOUND;
	}
	key = c->issuer_priv;
	catalog_put(ks, c);
	if (w == NULL) {
		admin_enter(ks);
		r = sign_es256(ks->fn, ks->admin, key, digest, sig);
		admin_leave(ks);
		return r;
	}
	if ((r = ensure_available(ks)) != P11_OK)
		return r;
	pthread_rwlock_rdlock(&ks->module_lock);
	if ((r = worker_session(w)) == P11_OK)
		r = sign_es256(ks->fn, w->h, key, digest, sig);
	pthread_rwlock_unlock(&ks->module_lock);
	return r;
}

/* ---- identity tokens: revocation ---- */

bool p11_keystore_revoked(struct p11_keystore *ks, const char *jti)
{
	struct catalog *c = catalog_get(ks);
	bool found;

	/* Without a catalogue nothing can be vouched for: fail closed. */
	if (c == NULL)
		return true;
	found = c->n_revoked > 0 &&
		bsearch(&jti, c->revoked, c->n_revoked, sizeof(*c->revoked),
			str_cmp) != NULL;
	catalog_put(ks, c);
	return found;
}

int p11_keystore_revoke(struct p11_keystore *ks, const char *jti, char *err,
			size_t errlen)
{
	CK_OBJECT_CLASS cls = CKO_DATA;
	CK_BBOOL yes = CK_TRUE;
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_PRIVATE, &yes, sizeof(yes) },
		{ CKA_APPLICATION, REVOKED_APPLICATION,
		  sizeof(REVOKED_APPLICATION) - 1 },
		{ CKA_LABEL, (void *)jti, strlen(jti) },
	};
	CK_OBJECT_HANDLE obj;
	CK_RV rv;
	int r;

	if (jti[0] == '\0' || strlen(jti) > JTI_MAX) {
		snprintf(err, errlen, "a token id is 1-%d bytes", JTI_MAX);
		return P11_ERR_PARAM;
	}
	if (p11_keystore_revoked(ks, jti))
		return P11_OK;
	admin_enter(ks);
	rv = ks->fn->C_CreateObject(ks->admin, t, 5, &obj);
	if (rv != CKR_OK) {
		snprintf(err, errlen, "storing the revocation in the token: %s",
			 p11_rv_name(rv));
		r = P11_ERR_HSM;
	} else if ((r = reload_locked(ks)) != P11_OK) {
		snprintf(err, errlen, "re-reading the key catalogue failed");
	}
	admin_leave(ks);
	return r;
}
