// SPDX-License-Identifier: MIT
/*
 * State of keys as a whole, and of the token, kept in the token beside
 * the key versions so that every broker on it agrees without a database:
 *
 *   "keybroker:key" objects (label: the key name): whether the key is
 *     soft-deleted and until when, and its rotation policy. Written as a
 *     new object confirmed by a fresh load, the older ones destroyed
 *     after; the newest ("updatedUs") is believed, a deleted one winning
 *     a tie (fail closed). No object: not deleted, no policy.
 *   "keybroker:generation" objects: a counter and a nonce, replaced after
 *     every admin write. A broker compares a digest of all of them with
 *     the one its catalogue was read under, once a second, and re-reads
 *     the catalogue when they differ.
 *   The "keybroker-purge-protection" object: once there, purge protection
 *     holds for every key of the token; nothing in the broker removes it.
 */
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kb_json.h"
#include "kb_keystore_parts.h"
#include "kb_log.h"

/* ---- the key object ---- */

int kb_keystate_parse(const char *text, size_t len, struct key_state *st)
{
	json_t *o, *v;
	char why[160];
	int r = KB_ERR_PARAM;

	memset(st, 0, sizeof(*st));
	if ((o = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL)) == NULL)
		return KB_ERR_PARAM;
	v = json_object_get(o, "name");
	if (!json_is_string(v) ||
	    !kb_name_valid(json_string_value(v), json_string_length(v)))
		goto out;
	memcpy(st->name, json_string_value(v), json_string_length(v) + 1);
	v = json_object_get(o, "updatedUs");
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    json_integer_value(v) > KB_TIME_MAX * 1000000)
		goto out;
	st->updated_us = json_integer_value(v);
	if ((v = json_object_get(o, "deleted")) != NULL) {
		if (!json_is_integer(v) || json_integer_value(v) <= 0 ||
		    json_integer_value(v) > KB_TIME_MAX)
			goto out;
		st->deleted = json_integer_value(v);
		v = json_object_get(o, "scheduledPurge");
		if (!json_is_integer(v) ||
		    json_integer_value(v) < st->deleted ||
		    json_integer_value(v) > KB_TIME_MAX)
			goto out;
		st->scheduled_purge = json_integer_value(v);
	}
	/* A policy the broker wrote passed its minimum then: 0 here. */
	if ((v = json_object_get(o, "rotationPolicy")) != NULL &&
	    kb_rotation_policy_parse(v, 0, &st->policy, why, sizeof(why)) != 0)
		goto out;
	r = KB_STATUS_OK;
out:
	json_decref(o);
	return r;
}

char *kb_keystate_text(const struct key_state *st)
{
	json_t *o, *p = NULL;
	char *text = NULL;

	o = json_pack("{s:s, s:I}", "name", st->name, "updatedUs",
		      (json_int_t)st->updated_us);
	if (o == NULL)
		return NULL;
	if (st->deleted != 0 &&
	    (json_object_set_new(o, "deleted",
				 json_integer((json_int_t)st->deleted)) != 0 ||
	     json_object_set_new(
		     o, "scheduledPurge",
		     json_integer((json_int_t)st->scheduled_purge)) != 0))
		goto out;
	if (st->policy.text[0] != '\0' &&
	    ((p = json_loads(st->policy.text, 0, NULL)) == NULL ||
	     json_object_set_new(o, "rotationPolicy", p) != 0))
		goto out;
	text = kb_json_text(o, JSON_COMPACT | JSON_SORT_KEYS, NULL);
out:
	json_decref(o);
	return text;
}

/* Whether a is to be believed over b (both of one key). */
static bool newer_state(const struct key_state *a, const struct key_state *b)
{
	if (a->updated_us != b->updated_us)
		return a->updated_us > b->updated_us;
	return a->deleted != 0 && b->deleted == 0;
}

static int state_cmp(const void *a, const void *b)
{
	return strcmp(((const struct key_state *)a)->name,
		      ((const struct key_state *)b)->name);
}

/* bsearch: a name against a state. */
static int name_cmp(const void *name, const void *st)
{
	return strcmp(name, ((const struct key_state *)st)->name);
}

const struct key_state *kb_keystate_find(const struct catalog *c,
					 const char *name)
{
	return c->n_states == 0 ? NULL :
				  bsearch(name, c->states, c->n_states,
					  sizeof(*c->states), name_cmp);
}

/*
 * Reads the key objects (of name, or all if NULL) into *out, the newest
 * per key only, sorted by name; their handles (all, believed or not)
 * into *handles if not NULL. Needs admin_lock.
 */
static int read_states(struct kb_keystore *ks, const char *name,
		       struct key_state **out, size_t *nout,
		       CK_OBJECT_HANDLE **handles, size_t *nhandles,
		       struct kb_findings *f)
{
	struct p11_match m = { .cls = P11_CLASS_DATA,
			       .label = name,
			       .application = KEYSTATE_APPLICATION,
			       .private_only = true };
	struct p11_object o;
	struct key_state *st = NULL, cand;
	CK_OBJECT_HANDLE *objs = NULL;
	char *text = NULL;
	size_t n, i, j, k = 0;
	int r;

	*out = NULL;
	*nout = 0;
	if ((r = p11_find(ks->tok, ks->admin, &m, &objs, &n)) != KB_STATUS_OK)
		return r;
	if ((text = malloc(META_MAX)) == NULL ||
	    (n > 0 && (st = calloc(n, sizeof(*st))) == NULL)) {
		r = KB_ERR_NOMEM;
		goto out;
	}
	for (i = 0; i < n; i++) {
		o.value = text;
		o.value_max = META_MAX;
		if ((r = p11_read(ks->tok, ks->admin, objs[i],
				  P11_A_LABEL | P11_A_VALUE, &o)) != 0)
			goto out;
		if (!(o.have & P11_A_VALUE) || !(o.have & P11_A_LABEL) ||
		    kb_keystate_parse(text, o.value_len, &cand) != 0 ||
		    strcmp(cand.name, o.label) != 0) {
			if (f != NULL)
				kb_keyadmin_note(
					f, "a key state object that does "
					   "not read back as one; ignored");
			continue;
		}
		st[k++] = cand;
	}
	/* The newest of each name: sort, then keep one per run. */
	if (k > 1)
		qsort(st, k, sizeof(*st), state_cmp);
	for (i = 0, j = 0; i < k; i++) {
		if (j > 0 && strcmp(st[j - 1].name, st[i].name) == 0) {
			if (newer_state(&st[i], &st[j - 1]))
				st[j - 1] = st[i];
			continue;
		}
		st[j++] = st[i];
	}
	*out = st;
	*nout = j;
	st = NULL;
	if (handles != NULL) {
		*handles = objs;
		*nhandles = n;
		objs = NULL;
	}
	r = KB_STATUS_OK;
out:
	free(st);
	free(objs);
	free(text);
	return r;
}

/* ---- the generation ---- */

#define GENERATION_TEXT_MAX 64

static int text_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * The digest of the values of objs[0..n) (sorted), and the highest
 * counter among them; *complete is false if a value did not read (the
 * object is gone, say). Needs admin_lock.
 */
static int digest_values(struct kb_keystore *ks, const CK_OBJECT_HANDLE *objs,
			 size_t n, unsigned char *digest, uint64_t *counter,
			 bool *complete)
{
	char(*vals)[GENERATION_TEXT_MAX + 1] = NULL, **sorted = NULL;
	struct p11_object o;
	unsigned long long c;
	EVP_MD_CTX *md = NULL;
	size_t i, k = 0;
	int r = KB_ERR_NOMEM;

	*counter = 0;
	*complete = true;
	if ((vals = calloc(n + 1, sizeof(*vals))) == NULL ||
	    (sorted = calloc(n + 1, sizeof(*sorted))) == NULL ||
	    (md = EVP_MD_CTX_new()) == NULL)
		goto out;
	for (i = 0; i < n; i++) {
		o.value = vals[k];
		o.value_max = GENERATION_TEXT_MAX;
		if ((r = p11_read(ks->tok, ks->admin, objs[i], P11_A_VALUE,
				  &o)) != KB_STATUS_OK)
			goto out;
		if (!(o.have & P11_A_VALUE)) {
			*complete = false;
			continue;
		}
		vals[k][o.value_len] = '\0';
		if (sscanf(vals[k], "%llu", &c) == 1 && c > *counter)
			*counter = c;
		sorted[k] = vals[k];
		k++;
	}
	qsort(sorted, k, sizeof(*sorted), text_cmp);
	r = KB_ERR_NOMEM;
	if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
		goto out;
	for (i = 0; i < k; i++)
		if (EVP_DigestUpdate(md, sorted[i], strlen(sorted[i]) + 1) != 1)
			goto out;
	if (EVP_DigestFinal_ex(md, digest, NULL) == 1)
		r = KB_STATUS_OK;
out:
	EVP_MD_CTX_free(md);
	free(sorted);
	free(vals);
	return r;
}

/*
 * Searches the generation objects: the digest of their values and the
 * highest counter; their handles into *objs if not NULL. Remembers what
 * it found for kb_keystate_generation_moved. Needs admin_lock.
 */
static int read_generation(struct kb_keystore *ks, unsigned char *digest,
			   uint64_t *counter, CK_OBJECT_HANDLE **objs_out,
			   size_t *nobjs)
{
	struct p11_match m = { .cls = P11_CLASS_DATA,
			       .label = GENERATION_LABEL,
			       .application = GENERATION_APPLICATION,
			       .private_only = true };
	CK_OBJECT_HANDLE *objs = NULL;
	bool complete;
	size_t n;
	int r;

	ks->n_seen_gen = 0;
	if ((r = p11_find(ks->tok, ks->admin, &m, &objs, &n)) != KB_STATUS_OK)
		return r;
	if ((r = digest_values(ks, objs, n, digest, counter, &complete)) ==
		    KB_STATUS_OK &&
	    complete && n > 0 && n <= KEYSTATE_SEEN_GEN_MAX) {
		memcpy(ks->seen_gen, objs, n * sizeof(*objs));
		ks->n_seen_gen = n;
		memcpy(ks->seen_gen_digest, digest, KEYSTATE_GENERATION_LEN);
		ks->seen_gen_searched = time(NULL);
	}
	if (r == KB_STATUS_OK && objs_out != NULL) {
		*objs_out = objs;
		*nobjs = n;
		objs = NULL;
	}
	free(objs);
	return r;
}

int kb_keystate_generation(struct kb_keystore *ks, unsigned char *digest)
{
	uint64_t counter;

	return read_generation(ks, digest, &counter, NULL, NULL);
}

int kb_keystate_generation_moved(struct kb_keystore *ks,
				 const unsigned char *loaded, bool *moved)
{
	unsigned char digest[KEYSTATE_GENERATION_LEN];
	uint64_t counter;
	bool complete;
	int r;

	if (ks->n_seen_gen > 0 &&
	    time(NULL) - ks->seen_gen_searched < KEYSTATE_SEARCH_S &&
	    digest_values(ks, ks->seen_gen, ks->n_seen_gen, digest, &counter,
			  &complete) == KB_STATUS_OK &&
	    complete &&
	    memcmp(digest, ks->seen_gen_digest, sizeof(digest)) == 0) {
		*moved = memcmp(digest, loaded, sizeof(digest)) != 0;
		return KB_STATUS_OK;
	}
	if ((r = read_generation(ks, digest, &counter, NULL, NULL)) ==
	    KB_STATUS_OK)
		*moved = memcmp(digest, loaded, sizeof(digest)) != 0;
	return r;
}

void kb_keystate_bump_generation(struct kb_keystore *ks)
{
	unsigned char digest[KEYSTATE_GENERATION_LEN], nonce[8];
	char text[GENERATION_TEXT_MAX];
	CK_OBJECT_HANDLE *old = NULL, obj;
	uint64_t counter;
	size_t n = 0, i;
	CK_RV rv;

	if (read_generation(ks, digest, &counter, &old, &n) != KB_STATUS_OK ||
	    RAND_bytes(nonce, sizeof(nonce)) != 1) {
		kb_warn("cannot read the token's generation; other brokers "
			"see this change at their next reload");
		free(old);
		return;
	}
	snprintf(text, sizeof(text),
		 "%" PRIu64 " %02x%02x%02x%02x%02x%02x%02x%02x", counter + 1,
		 nonce[0], nonce[1], nonce[2], nonce[3], nonce[4], nonce[5],
		 nonce[6], nonce[7]);
	/*
	 * A hint for other brokers, not state: the change itself is
	 * confirmed already, so this one is not.
	 */
	rv = p11_create_data(ks->tok, ks->admin, GENERATION_APPLICATION,
			     GENERATION_LABEL, text, strlen(text), &obj);
	if (rv != CKR_OK)
		kb_warn("cannot bump the token's generation (%s); other "
			"brokers see this change at their next reload",
			p11_rv_name(rv));
	for (i = 0; rv == CKR_OK && i < n; i++)
		p11_destroy(ks->tok, ks->admin, old[i]);
	free(old);
}

/* ---- what a load reads ---- */

/*
 * Whether the token holds the purge-protection flag: a private object,
 * so only a holder of the PIN can have made it. Needs admin_lock.
 */
static int read_purge_protection(struct kb_keystore *ks, bool *on)
{
	struct p11_match m = { .cls = P11_CLASS_DATA,
			       .label = PURGE_PROTECTION_LABEL,
			       .application = TOKEN_APPLICATION,
			       .private_only = true };
	CK_OBJECT_HANDLE *objs;
	size_t n;
	int r;

	if ((r = p11_find(ks->tok, ks->admin, &m, &objs, &n)) != KB_STATUS_OK)
		return r;
	free(objs);
	*on = n > 0;
	return KB_STATUS_OK;
}

int kb_keystate_load(struct kb_keystore *ks, struct catalog *c,
		     struct kb_findings *f)
{
	int r;

	if ((r = read_states(ks, NULL, &c->states, &c->n_states, NULL, NULL,
			     f)) != KB_STATUS_OK)
		return r;
	return read_purge_protection(ks, &c->purge_protection);
}

/* ---- writing ---- */

/* Destroys objs[0..n) but keep; says which could not be. */
static void destroy_others(struct kb_keystore *ks, const CK_OBJECT_HANDLE *objs,
			   size_t n, CK_OBJECT_HANDLE keep, const char *name)
{
	size_t i;
	CK_RV rv;

	for (i = 0; i < n; i++)
		if (objs[i] != keep &&
		    (rv = p11_destroy(ks->tok, ks->admin, objs[i])) != CKR_OK)
			kb_warn("key %s: a replaced state object was not "
				"removed (%s); the newest one is used",
				name, p11_rv_name(rv));
}

int kb_keystate_write(struct kb_keystore *ks, struct key_state *st, char *err,
		      size_t errlen)
{
	struct key_state *cur = NULL;
	CK_OBJECT_HANDLE *objs = NULL, obj;
	size_t n = 0, nobjs = 0;
	struct timespec ts;
	char *text;
	int r;

	if ((r = read_states(ks, st->name, &cur, &n, &objs, &nobjs, NULL)) !=
	    KB_STATUS_OK) {
		snprintf(err, errlen,
			 "reading the key's state from the token failed; retry "
			 "once the token answers again");
		return r;
	}
	/* "updatedUs" orders the objects: the new one must pass the old. */
	clock_gettime(CLOCK_REALTIME, &ts);
	st->updated_us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
	if (n > 0 && st->updated_us <= cur[0].updated_us)
		st->updated_us = cur[0].updated_us + 1;
	free(cur);
	if ((text = kb_keystate_text(st)) == NULL) {
		free(objs);
		snprintf(err, errlen, "out of memory");
		return KB_ERR_NOMEM;
	}
	r = kb_keyadmin_create_confirmed(ks, KEYSTATE_APPLICATION, st->name,
					 text, false,
					 "the new key state object", &obj, err,
					 errlen);
	free(text);
	if (r == KB_STATUS_OK)
		destroy_others(ks, objs, nobjs, obj, st->name);
	free(objs);
	return r;
}

int kb_keystate_remove(struct kb_keystore *ks, const char *name, char *err,
		       size_t errlen)
{
	struct key_state *cur = NULL;
	CK_OBJECT_HANDLE *objs = NULL;
	size_t n = 0, nobjs = 0, i;
	CK_RV rv;
	int r;

	if ((r = read_states(ks, name, &cur, &n, &objs, &nobjs, NULL)) !=
	    KB_STATUS_OK) {
		snprintf(err, errlen,
			 "reading the key's state from the token failed; retry "
			 "once the token answers again");
		return r;
	}
	free(cur);
	for (i = 0; i < nobjs; i++)
		if ((rv = p11_destroy(ks->tok, ks->admin, objs[i])) != CKR_OK) {
			snprintf(err, errlen,
				 "removing the key's state object failed (%s)",
				 p11_rv_name(rv));
			r = KB_ERR_HSM;
		}
	free(objs);
	return r;
}

int kb_keystate_enable_purge_protection(struct kb_keystore *ks, char *err,
					size_t errlen)
{
	CK_OBJECT_HANDLE obj;
	char text[64];
	bool on;
	int r;

	if ((r = read_purge_protection(ks, &on)) != KB_STATUS_OK) {
		snprintf(err, errlen,
			 "the token failed while it was read; retry once it "
			 "answers again");
		return r;
	}
	if (on)
		return KB_STATUS_OK;
	snprintf(text, sizeof(text),
		 "{\"purgeProtection\":true,\"since\":%lld}",
		 (long long)time(NULL));
	return kb_keyadmin_create_confirmed(ks, TOKEN_APPLICATION,
					    PURGE_PROTECTION_LABEL, text, false,
					    "the purge-protection flag", &obj,
					    err, errlen);
}
