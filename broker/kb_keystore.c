// SPDX-License-Identifier: MIT
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kb_json.h"
#include "kb_keystore.h"
#include "kb_keystore_internal.h"
#include "kb_log.h"
#include "kb_oaep.h"
#include "kb_pkcs1.h"
#include "kb_secret.h"

int kb_keystore_recover(struct kb_keystore *ks, unsigned int seen_gen)
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
		return ok ? KB_STATUS_OK : KB_ERR_HSM;
	}
	if (ks->available)
		kb_warn("token '%s' failed; renewing sessions",
			p11_token_label(ks->tok));
	ks->last_recover = now;
	pthread_mutex_unlock(&ks->lock);

	/* No other thread is inside the module past this point. */
	pthread_rwlock_wrlock(&ks->module_lock);
	p11_token_close_all_sessions(ks->tok);
	r = p11_token_select(ks->tok, err, sizeof(err));
	if (r != KB_STATUS_OK &&
	    (r = p11_token_reinitialise(ks->tok, err, sizeof(err))) ==
		    KB_STATUS_OK)
		r = p11_token_select(ks->tok, err, sizeof(err));
	if (r == KB_STATUS_OK)
		r = p11_token_open_session(ks->tok, true, &ks->admin, err,
					   sizeof(err));
	if (r == KB_STATUS_OK &&
	    (r = kb_catalog_reload_locked(ks)) != KB_STATUS_OK) {
		snprintf(err, sizeof(err), "cannot read the key catalogue");
		p11_token_close_session(ks->tok, ks->admin);
	}
	pthread_rwlock_unlock(&ks->module_lock);

	pthread_mutex_lock(&ks->lock);
	if (r == KB_STATUS_OK && !ks->available)
		kb_info("token '%s' is back", p11_token_label(ks->tok));
	else if (r != KB_STATUS_OK && ks->available)
		kb_err("token unavailable: %s; requests get HsmUnavailable "
		       "until it returns",
		       err);
	ks->available = r == KB_STATUS_OK;
	ks->gen++;
	pthread_mutex_unlock(&ks->lock);
	pthread_mutex_unlock(&ks->admin_lock);
	return r == KB_STATUS_OK ? KB_STATUS_OK : KB_ERR_HSM;
}

/*
 * Finds name/version in the current catalogue; on a miss, re-reads the
 * token (at most every MISS_RELOAD_INTERVAL_S) in case a key was created
 * by another process, then looks again. The re-read is skipped while
 * other admin work (a reload) holds the token: a worker never waits for
 * it, however long the token takes. On success *cat holds a reference.
 */
static int lookup(struct kb_keystore *ks, const char *name, const char *version,
		  struct catalog **cat, const struct key_version **v)
{
	bool reload;

	*cat = kb_catalog_get(ks);
	if (*cat != NULL && (*v = kb_catalog_find(*cat, name, version)) != NULL)
		return KB_STATUS_OK;
	kb_catalog_put(ks, *cat);
	*cat = NULL;
	if (kb_keyadmin_try_enter(ks)) {
		pthread_mutex_lock(&ks->lock);
		reload = ks->available &&
			 time(NULL) - ks->last_reload >= MISS_RELOAD_INTERVAL_S;
		pthread_mutex_unlock(&ks->lock);
		if (reload)
			kb_catalog_reload_locked(ks);
		kb_keyadmin_leave(ks);
	}
	*cat = kb_catalog_get(ks);
	if (*cat != NULL && (*v = kb_catalog_find(*cat, name, version)) != NULL)
		return KB_STATUS_OK;
	kb_catalog_put(ks, *cat);
	*cat = NULL;
	return KB_ERR_NOT_FOUND;
}

static int check_usable(const struct kb_key_info *info, bool wrapping)
{
	time_t now = time(NULL);

	if (info->damaged)
		return KB_ERR_DAMAGED;
	if (!info->enabled || (info->nbf != 0 && now < info->nbf))
		return KB_ERR_DISABLED;
	/* Expired keys still unwrap what they wrapped, but wrap no more. */
	if (wrapping && info->exp != 0 && now >= info->exp)
		return KB_ERR_DISABLED;
	return KB_STATUS_OK;
}

/* ---- RSA1_5 with implicit rejection ---- */

int kb_keystore_ensure_rsa15_secret(struct kb_keystore *ks)
{
	CK_OBJECT_HANDLE h;
	bool taken;
	CK_RV rv;
	int r;

	kb_keyadmin_enter(ks);
	/*
	 * Made only where nothing has the label: one that is there but
	 * refused stays the only one (the log says why; RSA1_5 stays off).
	 */
	if ((r = kb_keyadmin_label_taken(ks, KDK_LABEL, &taken)) !=
		    KB_STATUS_OK ||
	    taken)
		goto out;
	/* HMAC-only: it signs (derives KDKs) and does nothing else. */
	rv = p11_generate_hmac_secret(ks->tok, ks->admin, KDK_LABEL, 32, &h);
	if (rv != CKR_OK) {
		kb_warn("cannot make the RSA1_5 secret in the token (%s); "
			"RSA1_5 stays unavailable",
			p11_rv_name(rv));
		r = KB_ERR_HSM;
		goto out;
	}
	kb_info("made the RSA1_5 key-derivation secret in the token");
	r = kb_catalog_reload_locked(ks);
out:
	kb_keyadmin_leave(ks);
	return r;
}

/*
 * The key-derivation key of implicit rejection for ciphertext in of key
 * version v: HMAC-SHA-256 in the token, with its secret, over v's ID and
 * in. Computed for every RSA1_5 unwrap, whatever the padding turns out
 * to be. Needs module_lock shared.
 */
static int derive_kdk(struct kb_keyworker *w, CK_OBJECT_HANDLE secret,
		      const struct key_version *v, const unsigned char *in,
		      size_t inlen, unsigned char *kdk)
{
	unsigned char data[KB_VERSION_BYTES + P11_MODULUS_MAX];
	size_t n;
	CK_RV rv;

	if (inlen > P11_MODULUS_MAX ||
	    kb_hex_decode(data, KB_VERSION_BYTES, v->info.version) != 0)
		return KB_ERR_PARAM;
	memcpy(data + KB_VERSION_BYTES, in, inlen);
	if ((rv = p11_sign(w->ks->tok, w->h, secret, P11_MECH_SHA256_HMAC, data,
			   KB_VERSION_BYTES + inlen, kdk, KB_PKCS1_KDK_LEN,
			   &n)) != CKR_OK)
		return p11_rv_is_token_lost(rv) ? KB_ERR_HSM :
						  KB_ERR_UNSUPPORTED;
	return n == KB_PKCS1_KDK_LEN ? KB_STATUS_OK : KB_ERR_UNSUPPORTED;
}

/* ---- public operations ---- */

/* What a fresh load needs to find the token as this process did. */
static int keep_confirm_target(struct kb_keystore *ks,
			       const struct kb_keystore_params *params)
{
	ks->module = strdup(params->module);
	ks->uri = strdup(params->token_uri);
	ks->pin_file = strdup(params->pin_file);
	if (params->confirm_exe != NULL)
		ks->confirm_exe = strdup(params->confirm_exe);
	if (ks->module == NULL || ks->uri == NULL || ks->pin_file == NULL ||
	    (params->confirm_exe != NULL && ks->confirm_exe == NULL))
		return KB_ERR_NOMEM;
	ks->confirm = (struct p11_confirm_target){
		.exe = ks->confirm_exe,
		.module = ks->module,
		.uri = ks->uri,
		.pin_file = ks->pin_file,
	};
	return KB_STATUS_OK;
}

int kb_keystore_open(const struct kb_keystore_params *params,
		     const char *initialise_with_so_pin,
		     struct kb_keystore **out, char *err, size_t errlen)
{
	struct kb_keystore *ks;
	int r;

	*out = NULL;
	if ((ks = calloc(1, sizeof(*ks))) == NULL)
		return KB_ERR_NOMEM;
	pthread_mutex_init(&ks->lock, NULL);
	pthread_mutex_init(&ks->admin_lock, NULL);
	pthread_rwlock_init(&ks->module_lock, NULL);
	ks->allow_rsa1_5 = params->allow_rsa1_5;
	if ((r = keep_confirm_target(ks, params)) != KB_STATUS_OK)
		goto out_free;
	if ((r = p11_token_load(params->module, params->token_uri, &ks->tok,
				err, errlen)) != KB_STATUS_OK)
		goto out_free;
	if ((r = p11_token_read_pin(ks->tok, params->pin_file, err, errlen)) !=
	    KB_STATUS_OK)
		goto out_free;
	if (initialise_with_so_pin != NULL)
		r = p11_token_initialise(ks->tok, initialise_with_so_pin, err,
					 errlen);
	else
		r = p11_token_select(ks->tok, err, errlen);
	if (r != KB_STATUS_OK)
		goto out_free;
	if ((r = p11_token_open_session(ks->tok, true, &ks->admin, err,
					errlen)) != KB_STATUS_OK)
		goto out_free;
	ks->available = true;
	kb_keyadmin_enter(ks);
	r = kb_catalog_reload_locked(ks);
	kb_keyadmin_leave(ks);
	if (r != KB_STATUS_OK) {
		snprintf(err, errlen,
			 "cannot read the key catalogue from "
			 "token '%s'",
			 p11_token_label(ks->tok));
		goto out_free;
	}
	*out = ks;
	return KB_STATUS_OK;
out_free:
	kb_keystore_free(ks);
	return r;
}

void kb_keystore_free(struct kb_keystore *ks)
{
	if (ks == NULL)
		return;
	kb_catalog_free(ks->cat);
	kb_identity_free_revoked(ks);
	free(ks->findings);
	free(ks->module);
	free(ks->uri);
	free(ks->pin_file);
	free(ks->confirm_exe);
	p11_token_free(ks->tok); /* C_Finalize closes every session */
	pthread_mutex_destroy(&ks->lock);
	pthread_mutex_destroy(&ks->admin_lock);
	pthread_rwlock_destroy(&ks->module_lock);
	free(ks);
}

const char *kb_keystore_token_label(const struct kb_keystore *ks)
{
	return p11_token_label(ks->tok);
}

int kb_keyworker_new(struct kb_keystore *ks, struct kb_keyworker **out)
{
	struct kb_keyworker *w;

	if ((w = calloc(1, sizeof(*w))) == NULL)
		return KB_ERR_NOMEM;
	w->ks = ks;
	*out = w;
	return KB_STATUS_OK;
}

void kb_keyworker_free(struct kb_keyworker *w)
{
	enum kb_alg a;

	if (w == NULL)
		return;
	for (a = 0; a < KB_ALG_COUNT; a++) {
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
int kb_keystore_ensure_available(struct kb_keystore *ks)
{
	unsigned int gen;
	bool available;

	pthread_mutex_lock(&ks->lock);
	gen = ks->gen;
	available = ks->available;
	pthread_mutex_unlock(&ks->lock);
	return available ? KB_STATUS_OK : kb_keystore_recover(ks, gen);
}

/*
 * Makes sure w has a live session of the current generation. Needs
 * module_lock shared.
 */
int kb_keyworker_session(struct kb_keyworker *w)
{
	struct kb_keystore *ks = w->ks;
	unsigned int gen;
	char err[256];

	pthread_mutex_lock(&ks->lock);
	gen = ks->gen;
	pthread_mutex_unlock(&ks->lock);
	if (w->open && w->gen == gen)
		return KB_STATUS_OK;
	/*
	 * A session of an older generation died with the recovery; its
	 * handle may already name another thread's new session, so it is
	 * forgotten, never closed.
	 */
	w->open = false;
	w->gen = gen;
	if (p11_token_open_session(ks->tok, false, &w->h, err, sizeof(err)) !=
	    KB_STATUS_OK)
		return KB_ERR_HSM;
	w->open = true;
	return KB_STATUS_OK;
}

/*
 * One unwrap attempt on w's session; KB_ERR_HSM if the token or session
 * failed. kdk_secret is the catalogue's, for RSA1_5.
 */
static int unwrap_once(struct kb_keyworker *w, const struct key_version *v,
		       CK_OBJECT_HANDLE kdk_secret, enum kb_alg alg,
		       const unsigned char *in, size_t inlen,
		       unsigned char *out, size_t *outlen)
{
	enum kb_path path = v->info.path[alg];
	unsigned char em[P11_MODULUS_MAX], kdk[KB_PKCS1_KDK_LEN];
	size_t n, k = v->info.nlen;
	bool began;
	CK_RV rv;
	int r = KB_ERR_CIPHERTEXT;

	rv = p11_decrypt(w->ks->tok, w->h, v->priv,
			 path == KB_PATH_NATIVE ? kb_alg_mech(alg) :
						  P11_MECH_RSA_RAW,
			 in, inlen, em, sizeof(em), &n, &began);
	if (rv != CKR_OK && !began) {
		r = p11_rv_is_token_lost(rv) ? KB_ERR_HSM : KB_ERR_UNSUPPORTED;
		goto out;
	}
	if (rv != CKR_OK) {
		if (p11_rv_is_token_lost(rv))
			r = KB_ERR_HSM;
		goto out;
	}
	if (path == KB_PATH_NATIVE) {
		memcpy(out, em, n);
		*outlen = n;
		r = KB_STATUS_OK;
		goto out;
	}
	/* Raw RSA: the encoded message is exactly k bytes, left-padded. */
	if (n > k)
		goto out;
	memmove(em + (k - n), em, n);
	memset(em, 0, k - n);
	if (path == KB_PATH_RAW_PKCS1) {
		/* Never fails on padding: a synthetic message instead. */
		if ((r = derive_kdk(w, kdk_secret, v, in, inlen, kdk)) ==
			    KB_STATUS_OK &&
		    kb_pkcs1_decode(out, P11_MODULUS_MAX, outlen, em, k, kdk) !=
			    0)
			r = KB_ERR_NOMEM;
	} else if (kb_oaep_decode(out, P11_MODULUS_MAX, outlen, em, k,
				  kb_alg_md(alg)) == 0) {
		r = KB_STATUS_OK;
	}
out:
	kb_wipe(em, sizeof(em));
	kb_wipe(kdk, sizeof(kdk));
	return r;
}

int kb_keyworker_unwrap(struct kb_keyworker *w, const char *name,
			const char *version, enum kb_alg alg,
			const unsigned char *in, size_t inlen,
			unsigned char *out, size_t *outlen,
			struct kb_key_info *info)
{
	const struct key_version *v;
	struct catalog *cat;
	int attempt, r;

	if (alg >= KB_ALG_COUNT)
		return KB_ERR_UNSUPPORTED;
	for (attempt = 0; attempt < 2; attempt++) {
		if ((r = lookup(w->ks, name, version, &cat, &v)) !=
		    KB_STATUS_OK)
			return r;
		*info = v->info;
		if ((r = check_usable(&v->info, false)) == KB_STATUS_OK &&
		    v->info.path[alg] == KB_PATH_NONE)
			r = KB_ERR_UNSUPPORTED;
		if (r == KB_STATUS_OK && inlen != v->info.nlen)
			r = KB_ERR_CIPHERTEXT;
		if (r == KB_STATUS_OK)
			r = kb_keystore_ensure_available(w->ks);
		if (r == KB_STATUS_OK) {
			pthread_rwlock_rdlock(&w->ks->module_lock);
			if ((r = kb_keyworker_session(w)) == KB_STATUS_OK)
				r = unwrap_once(w, v, cat->kdk_secret, alg, in,
						inlen, out, outlen);
			pthread_rwlock_unlock(&w->ks->module_lock);
		}
		kb_catalog_put(w->ks, cat);
		if (r != KB_ERR_HSM ||
		    kb_keystore_recover(w->ks, w->gen) != KB_STATUS_OK)
			break;
	}
	return r;
}

int kb_keystore_describe(struct kb_keystore *ks, const char *name,
			 const char *version, struct kb_key_info *info)
{
	const struct key_version *v;
	struct catalog *cat;
	int r;

	if ((r = lookup(ks, name, version, &cat, &v)) != KB_STATUS_OK)
		return r;
	*info = v->info;
	kb_catalog_put(ks, cat);
	return info->damaged ? KB_ERR_DAMAGED : KB_STATUS_OK;
}

/* Encrypts with w's cached context for pub and alg, making it if needed. */
static int worker_encrypt(struct kb_keyworker *w, EVP_PKEY *pub,
			  enum kb_alg alg, const unsigned char *in,
			  size_t inlen, unsigned char *out, size_t *outlen)
{
	EVP_PKEY_CTX *ctx = w->wrap[alg].ctx;

	if (w->wrap[alg].key != pub) {
		if ((ctx = kb_encrypt_ctx_new(pub, alg)) == NULL ||
		    EVP_PKEY_up_ref(pub) != 1) {
			EVP_PKEY_CTX_free(ctx);
			return KB_ERR_NOMEM;
		}
		EVP_PKEY_CTX_free(w->wrap[alg].ctx);
		EVP_PKEY_free(w->wrap[alg].key);
		w->wrap[alg].ctx = ctx;
		w->wrap[alg].key = pub;
	}
	*outlen = P11_MODULUS_MAX;
	return EVP_PKEY_encrypt(ctx, out, outlen, in, inlen) == 1 ?
		       KB_STATUS_OK :
		       KB_ERR_PARAM;
}

int kb_keystore_wrap(struct kb_keystore *ks, struct kb_keyworker *w,
		     const char *name, const char *version, enum kb_alg alg,
		     const unsigned char *in, size_t inlen, unsigned char *out,
		     size_t *outlen, struct kb_key_info *info)
{
	const struct key_version *v;
	struct catalog *cat;
	size_t max;
	int r;

	if (alg >= KB_ALG_COUNT)
		return KB_ERR_UNSUPPORTED;
	if ((r = lookup(ks, name, version, &cat, &v)) != KB_STATUS_OK)
		return r;
	*info = v->info;
	max = alg == KB_ALG_RSA1_5 ?
		      v->info.nlen - 11 :
		      v->info.nlen -
			      2 * (size_t)EVP_MD_get_size(kb_alg_md(alg)) - 2;
	if ((r = check_usable(&v->info, true)) != KB_STATUS_OK)
		goto out;
	if (alg == KB_ALG_RSA1_5 && !ks->allow_rsa1_5)
		r = KB_ERR_UNSUPPORTED;
	else if (inlen == 0 || inlen > max)
		r = KB_ERR_PARAM;
	else if (w != NULL)
		r = worker_encrypt(w, v->pub, alg, in, inlen, out, outlen);
	else
		r = kb_public_encrypt(v->pub, alg, in, inlen, out, outlen);
out:
	kb_catalog_put(ks, cat);
	return r;
}

/* ---- admin writes ---- */

static int64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * The metadata text of a new version, or of a repaired one (repaired:
 * when; 0 if not), malloc'ed.
 */
static char *metadata_text(const char *name, const char *version,
			   int64_t created_us, bool enabled, int64_t repaired)
{
	json_t *o;
	char *text;

	o = json_pack("{s:s, s:s, s:I, s:I, s:I, s:b, s:n, s:n, s:s, s:i}",
		      "name", name, "version", version, "created",
		      (json_int_t)(created_us / 1000000), "createdUs",
		      (json_int_t)created_us, "updated", (json_int_t)time(NULL),
		      "enabled", enabled, "nbf", "exp", "recoveryLevel",
		      "Recoverable+Purgeable", "recoverableDays", 90);
	if (o == NULL ||
	    (repaired != 0 &&
	     json_object_set_new(o, "repaired", json_integer(repaired)) != 0)) {
		json_decref(o);
		return NULL;
	}
	text = kb_json_text(o, JSON_COMPACT | JSON_SORT_KEYS, NULL);
	json_decref(o);
	return text;
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

/* Generates the key pair of a new version. Needs admin_lock. */
static int generate_pair(struct kb_keystore *ks, const char *name,
			 unsigned int bits, const unsigned char *id,
			 CK_OBJECT_HANDLE *pub, CK_OBJECT_HANDLE *priv,
			 char *err, size_t errlen)
{
	CK_RV rv;

	/* Decrypt-only: wraps are done with the public key in OpenSSL. */
	rv = p11_generate_rsa(ks->tok, ks->admin, bits, name, id,
			      KB_VERSION_BYTES, pub, priv);
	if (rv != CKR_OK) {
		snprintf(err, errlen,
			 "the token refused to generate the key pair "
			 "(C_GenerateKeyPair: %s)",
			 p11_rv_name(rv));
		return KB_ERR_HSM;
	}
	return KB_STATUS_OK;
}

int kb_keystore_create_key(struct kb_keystore *ks, const char *name,
			   unsigned int bits, struct kb_key_info *info,
			   char *err, size_t errlen)
{
	unsigned char id[KB_VERSION_BYTES];
	char version[KB_VERSION_LEN + 1], *meta = NULL;
	CK_OBJECT_HANDLE objs[3]; /* public, private, metadata */
	CK_RV rv;
	int r;

	if (!kb_name_valid(name, strlen(name))) {
		snprintf(err, errlen,
			 "invalid key name: use 1-%d of "
			 "A-Z a-z 0-9 -",
			 KB_NAME_MAX);
		return KB_ERR_PARAM;
	}
	if (bits != 2048 && bits != 3072 && bits != 4096) {
		snprintf(err, errlen, "key size must be 2048, 3072 or 4096");
		return KB_ERR_PARAM;
	}
	if (RAND_bytes(id, sizeof(id)) != 1)
		return KB_ERR_NOMEM;
	kb_hex_encode(version, id, sizeof(id));

	kb_keyadmin_enter(ks);
	if ((r = p11_token_check_space(ks->tok, err, errlen)) != KB_STATUS_OK ||
	    (r = generate_pair(ks, name, bits, id, &objs[0], &objs[1], err,
			       errlen)) != KB_STATUS_OK)
		goto out_unlock;
	if ((meta = metadata_text(name, version, now_us(), true, 0)) == NULL) {
		snprintf(err, errlen, "out of memory");
		r = KB_ERR_NOMEM;
		undo_create(ks, objs, 2, err, errlen);
		goto out_unlock;
	}
	if ((rv = p11_create_data(ks->tok, ks->admin, META_APPLICATION, name,
				  meta, strlen(meta), &objs[2])) != CKR_OK) {
		snprintf(err, errlen,
			 "storing the key metadata in the token failed: %s",
			 p11_rv_name(rv));
		r = KB_ERR_HSM;
		undo_create(ks, objs, 2, err, errlen);
		goto out_unlock;
	}
	if ((r = confirm_version(ks, name, id, objs[1], meta, err, errlen)) !=
	    KB_STATUS_OK) {
		undo_create(ks, objs, 3, err, errlen);
		goto out_unlock;
	}
	if ((r = kb_catalog_reload_locked(ks)) != KB_STATUS_OK)
		snprintf(err, errlen, "re-reading the key catalogue failed");
out_unlock:
	kb_keyadmin_leave(ks);
	free(meta);
	if (r == KB_STATUS_OK &&
	    (r = kb_keystore_describe(ks, name, version, info)) != KB_STATUS_OK)
		snprintf(err, errlen, "new key version not in the catalogue");
	return r;
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
	struct kb_key_info mi;
	struct p11_object *o;
	size_t i;
	CK_RV rv;

	if ((o = malloc(sizeof(*o))) == NULL)
		return; /* they stay: the newest wins */
	for (i = 0; i < n; i++) {
		memset(&mi, 0, sizeof(mi));
		o->value = text;
		o->value_max = META_MAX;
		if (p11_read(ks->tok, ks->admin, metas[i], P11_A_VALUE, o) !=
			    KB_STATUS_OK ||
		    !(o->have & P11_A_VALUE) ||
		    kb_catalog_parse_metadata(text, o->value_len, &mi) !=
			    KB_STATUS_OK ||
		    strcmp(mi.version, version) != 0 ||
		    (rv = p11_destroy(ks->tok, ks->admin, metas[i])) == CKR_OK)
			continue;
		kb_warn("key %s version %s: a replaced metadata object was not "
			"removed (%s); the newest one is used",
			name, version, p11_rv_name(rv));
	}
	free(o);
}

/*
 * Replaces the metadata of name/version with a copy whose "enabled" is
 * set: the new object is created and confirmed by a fresh load before
 * the old one is destroyed, so a lost write leaves the old one in force.
 * KB_ERR_NOT_FOUND if no metadata reads back. Needs admin_lock.
 */
static int update_metadata(struct kb_keystore *ks, const char *name,
			   const char *version, bool enabled, char *err,
			   size_t errlen)
{
	struct p11_match m = { .cls = P11_CLASS_DATA,
			       .label = name,
			       .application = META_APPLICATION,
			       .private_only = true };
	CK_OBJECT_HANDLE *metas, old, obj;
	struct kb_key_info mi;
	char *text, *out = NULL;
	json_t *o = NULL;
	json_int_t now = (json_int_t)time(NULL), updated;
	size_t n, len;
	int r;

	if ((r = p11_find(ks->tok, ks->admin, &m, &metas, &n)) != KB_STATUS_OK)
		return r;
	if ((text = malloc(META_MAX)) == NULL) {
		r = KB_ERR_NOMEM;
		goto out_free;
	}
	if ((r = kb_catalog_metadata_newest(ks, metas, n, name, version, &old,
					    text, &len, &mi)) != KB_STATUS_OK)
		goto out_free;
	/* "updated" orders the objects: the new one must pass the old. */
	updated = now > mi.updated ? now : mi.updated + 1;
	o = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
	if (o == NULL ||
	    json_object_set_new(o, "enabled", json_boolean(enabled)) != 0 ||
	    json_object_set_new(o, "updated", json_integer(updated)) != 0 ||
	    (out = kb_json_text(o, JSON_COMPACT | JSON_SORT_KEYS, NULL)) ==
		    NULL) {
		r = KB_ERR_NOMEM;
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
	free(text);
	free(metas);
	return r;
}

int kb_keystore_set_enabled(struct kb_keystore *ks, const char *name,
			    const char *version, bool enabled, char *err,
			    size_t errlen)
{
	const struct key_version *v;
	struct catalog *c;
	bool damaged;
	int r;

	err[0] = '\0';
	kb_keyadmin_enter(ks);
	c = kb_catalog_get(ks);
	v = c != NULL ? kb_catalog_find(c, name, version) : NULL;
	damaged = v != NULL && v->info.damaged;
	kb_catalog_put(ks, c);
	if (damaged) {
		snprintf(err, errlen,
			 "key %s version %s is damaged (no readable metadata); "
			 "keybrokerctl repair-key %s %s --enabled|--disabled "
			 "rewrites it",
			 name, version, name, version);
		r = KB_ERR_DAMAGED;
		goto out_unlock;
	}
	if ((r = p11_token_check_space(ks->tok, err, errlen)) != KB_STATUS_OK)
		goto out_unlock;
	r = update_metadata(ks, name, version, enabled, err, errlen);
	if (r == KB_ERR_NOT_FOUND)
		snprintf(err, errlen, "key '%s' has no version '%s'", name,
			 version);
	else if (r == KB_ERR_NOMEM)
		snprintf(err, errlen, "out of memory");
	else if (r == KB_ERR_HSM && err[0] == '\0')
		snprintf(err, errlen, "reading the key metadata failed");
	if (r == KB_STATUS_OK &&
	    (r = kb_catalog_reload_locked(ks)) != KB_STATUS_OK)
		snprintf(err, errlen,
			 "the change is stored, but re-reading the key "
			 "catalogue failed");
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

int kb_keystore_repair_key(struct kb_keystore *ks, const char *name,
			   const char *version, bool enabled, bool make_current,
			   char *err, size_t errlen)
{
	const struct key_version *v;
	struct catalog *c;
	CK_OBJECT_HANDLE obj;
	int64_t created_us = 0;
	char *text;
	int r = KB_STATUS_OK;

	kb_keyadmin_enter(ks);
	if ((c = kb_catalog_get(ks)) == NULL) {
		snprintf(err, errlen, "no key catalogue");
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
	}
	kb_catalog_put(ks, c);
	if (r != KB_STATUS_OK ||
	    (r = p11_token_check_space(ks->tok, err, errlen)) != KB_STATUS_OK)
		goto out_unlock;
	if ((text = metadata_text(name, version, created_us, enabled,
				  (int64_t)time(NULL))) == NULL) {
		snprintf(err, errlen, "out of memory");
		r = KB_ERR_NOMEM;
		goto out_unlock;
	}
	r = kb_keyadmin_create_confirmed(ks, META_APPLICATION, name, text,
					 false, "the new metadata object", &obj,
					 err, errlen);
	free(text);
	if (r == KB_STATUS_OK &&
	    (r = kb_catalog_reload_locked(ks)) != KB_STATUS_OK)
		snprintf(err, errlen,
			 "the repair is stored, but re-reading the key "
			 "catalogue failed");
out_unlock:
	kb_keyadmin_leave(ks);
	return r;
}

int kb_keystore_reload(struct kb_keystore *ks)
{
	int r;

	kb_keyadmin_enter(ks);
	r = kb_catalog_reload_locked(ks);
	kb_keyadmin_leave(ks);
	return r;
}

int kb_keystore_foreach(struct kb_keystore *ks,
			void (*fn)(const struct kb_key_info *, void *),
			void *arg)
{
	struct catalog *c = kb_catalog_get(ks);
	size_t i;

	if (c == NULL)
		return KB_ERR_HSM;
	for (i = 0; i < c->n; i++)
		fn(&c->v[i].info, arg);
	kb_catalog_put(ks, c);
	return KB_STATUS_OK;
}
