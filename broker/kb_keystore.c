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
#include "kb_keystore_parts.h"
#include "kb_progress.h"
#include "kb_log.h"
#include "kb_oaep.h"
#include "kb_pkcs1.h"
#include "kb_secret.h"
#include "p11_store.h"

void kb_keystore_observe(struct kb_keystore *ks,
			 void (*fn)(void *arg, const struct kb_notice *n),
			 void *arg)
{
	ks->observer = fn;
	ks->observer_arg = arg;
}

void kb_keystore_notify(struct kb_keystore *ks, const struct kb_notice *n)
{
	if (ks->observer != NULL)
		ks->observer(ks->observer_arg, n);
}

int kb_keystore_recover(struct kb_keystore *ks, unsigned int seen_gen)
{
	struct kb_notice notice = { .event = "token", .message = "" };
	char err[256];
	time_t now = time(NULL);
	bool ok;
	int r;

	kb_progress_wait(); /* for admin work, then maybe recovery */
	pthread_mutex_lock(&ks->admin_lock);
	kb_progress_restart();
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
	if (r == KB_STATUS_OK && !ks->available) {
		kb_info("token '%s' is back", p11_token_label(ks->tok));
		notice.state = "back";
	} else if (r != KB_STATUS_OK && ks->available) {
		kb_err("token unavailable: %s; requests get HsmUnavailable "
		       "until it returns",
		       err);
		notice.state = "lost";
		notice.status = KB_ERR_HSM;
		notice.message = err;
	}
	ks->available = r == KB_STATUS_OK;
	ks->gen++;
	pthread_mutex_unlock(&ks->lock);
	pthread_mutex_unlock(&ks->admin_lock);
	if (notice.state != NULL)
		kb_keystore_notify(ks, &notice);
	return r == KB_STATUS_OK ? KB_STATUS_OK : KB_ERR_HSM;
}

/*
 * A version lookup found: a soft-deleted key's versions are not there for
 * anyone but the deleted-key operations (kb_lifecycle.h).
 */
static int found(struct kb_keystore *ks, struct catalog **cat,
		 const struct key_version *v)
{
	if (v->info.deleted == 0)
		return KB_STATUS_OK;
	kb_catalog_put(ks, *cat);
	*cat = NULL;
	return KB_ERR_NOT_FOUND;
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
		return found(ks, cat, *v);
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
		return found(ks, cat, *v);
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
	if (!(info->key_ops & (wrapping ? KB_KEYOP_WRAP : KB_KEYOP_UNWRAP)))
		return KB_ERR_FORBIDDEN;
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
	if (params->confirm_exe != NULL)
		ks->confirm_exe = strdup(params->confirm_exe);
	if (ks->module == NULL || ks->uri == NULL ||
	    (params->confirm_exe != NULL && ks->confirm_exe == NULL))
		return KB_ERR_NOMEM;
	ks->confirm = (struct p11_confirm_target){
		.exe = ks->confirm_exe,
		.module = ks->module,
		.uri = ks->uri,
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
	ks->storage_lock = P11_STORE_NONE;
	pthread_rwlock_init(&ks->module_lock, NULL);
	ks->allow_rsa1_5 = params->allow_rsa1_5;
	ks->allow_import = params->allow_import;
	ks->recoverable_days = params->recoverable_days != 0 ?
				       params->recoverable_days :
				       KB_RECOVERABLE_DAYS_DEFAULT;
	if ((r = keep_confirm_target(ks, params)) != KB_STATUS_OK)
		goto out_free;
	if ((r = p11_token_load(params->module, params->token_uri, &ks->tok,
				err, errlen)) != KB_STATUS_OK)
		goto out_free;
	ks->confirm.tok = ks->tok; /* its PIN, once read */
	if ((r = p11_token_read_pin(ks->tok, params->pin_file, err, errlen)) !=
	    KB_STATUS_OK)
		goto out_free;
	if (initialise_with_so_pin != NULL)
		r = p11_token_initialise(ks->tok,
					 params->init_any_slot ?
						 P11_ANY_SLOT :
						 params->init_slot,
					 initialise_with_so_pin, err, errlen);
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
	free(ks->notified);
	free(ks->module);
	free(ks->uri);
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
	if (w == NULL)
		return;
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

/* One signature on session h; KB_ERR_HSM if the token failed. */
static int sign_once(struct kb_keystore *ks, CK_SESSION_HANDLE h,
		     CK_OBJECT_HANDLE key, enum p11_mech mech,
		     const unsigned char *in, size_t inlen, unsigned char *out,
		     size_t outlen)
{
	size_t n;
	CK_RV rv;

	if ((rv = p11_sign(ks->tok, h, key, mech, in, inlen, out, outlen,
			   &n)) != CKR_OK)
		return p11_rv_is_token_lost(rv) ? KB_ERR_HSM :
						  KB_ERR_UNSUPPORTED;
	return n == outlen ? KB_STATUS_OK : KB_ERR_UNSUPPORTED;
}

int kb_keystore_token_sign(struct kb_keystore *ks, struct kb_keyworker *w,
			   kb_key_pick pick, enum p11_mech mech,
			   const unsigned char *in, size_t inlen,
			   unsigned char *out, size_t outlen)
{
	CK_OBJECT_HANDLE key;
	struct catalog *c;
	int attempt, r;

	for (attempt = 0; attempt < 2; attempt++) {
		/* The key of the catalogue in force: recovery re-reads it. */
		key = CK_INVALID_HANDLE;
		if ((c = kb_catalog_get(ks)) != NULL)
			key = pick(c);
		kb_catalog_put(ks, c);
		if (key == CK_INVALID_HANDLE)
			return KB_ERR_NOT_FOUND;
		if (w == NULL) {
			kb_keyadmin_enter(ks);
			r = sign_once(ks, ks->admin, key, mech, in, inlen, out,
				      outlen);
			kb_keyadmin_leave(ks);
			return r;
		}
		if ((r = kb_keystore_ensure_available(ks)) != KB_STATUS_OK)
			return r;
		pthread_rwlock_rdlock(&ks->module_lock);
		if ((r = kb_keyworker_session(w)) == KB_STATUS_OK)
			r = sign_once(ks, w->h, key, mech, in, inlen, out,
				      outlen);
		pthread_rwlock_unlock(&ks->module_lock);
		if (r != KB_ERR_HSM ||
		    kb_keystore_recover(ks, w->gen) != KB_STATUS_OK)
			break;
	}
	return r;
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

int kb_keystore_wrap(struct kb_keystore *ks, const char *name,
		     const char *version, enum kb_alg alg,
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
	else
		r = kb_public_encrypt(v->pub, alg, in, inlen, out, outlen);
out:
	kb_catalog_put(ks, cat);
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

void kb_keystore_summary(struct kb_keystore *ks, size_t *keys, size_t *versions,
			 bool *available)
{
	struct catalog *c = kb_catalog_get(ks);
	size_t i;

	*keys = *versions = 0;
	for (i = 0; c != NULL && i < c->n; i++)
		if (i == 0 ||
		    strcmp(c->v[i].info.name, c->v[i - 1].info.name) != 0)
			++*keys;
	if (c != NULL)
		*versions = c->n;
	kb_catalog_put(ks, c);
	pthread_mutex_lock(&ks->lock);
	*available = ks->available;
	pthread_mutex_unlock(&ks->lock);
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
