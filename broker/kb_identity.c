// SPDX-License-Identifier: MIT
#include <jansson.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kb_identity.h"
#include "kb_json.h"
#include "kb_keystore_parts.h"
#include "kb_log.h"
#include "kb_pkey.h"

/* ---- the token-signing (issuer) key, as a load finds it ---- */

/* An EVP_PKEY from CKA_EC_POINT: a DER OCTET STRING or the raw point. */
static EVP_PKEY *ec_public_key(const unsigned char *pt, size_t len)
{
	if (len == 67 && pt[0] == 0x04 && pt[1] == 65) {
		pt += 2;
		len -= 2;
	}
	return kb_pkey_p256(pt, len);
}

int kb_identity_es256_sign(struct p11_token *tok, CK_SESSION_HANDLE h,
			   CK_OBJECT_HANDLE key, const unsigned char *digest,
			   unsigned char *sig)
{
	size_t n;
	CK_RV rv;

	if ((rv = p11_sign(tok, h, key, P11_MECH_ECDSA, digest, 32, sig, 64,
			   &n)) != CKR_OK)
		return p11_rv_is_token_lost(rv) ? KB_ERR_HSM :
						  KB_ERR_UNSUPPORTED;
	return n == 64 ? KB_STATUS_OK : KB_ERR_UNSUPPORTED;
}

/*
 * True if the private key signs what pub verifies: the public object
 * beside a private key can be replaced without the PIN, so it is only
 * believed once the pair is shown to match. Needs admin_lock.
 */
static bool pair_matches(struct kb_keystore *ks, CK_OBJECT_HANDLE priv,
			 EVP_PKEY *pub)
{
	unsigned char digest[32], sig[64], *der = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	ECDSA_SIG *es = NULL;
	BIGNUM *r = NULL, *s = NULL;
	bool ok = false;
	int len;

	if (RAND_bytes(digest, sizeof(digest)) != 1 ||
	    kb_identity_es256_sign(ks->tok, ks->admin, priv, digest, sig) !=
		    KB_STATUS_OK ||
	    (es = ECDSA_SIG_new()) == NULL ||
	    (r = BN_bin2bn(sig, 32, NULL)) == NULL ||
	    (s = BN_bin2bn(sig + 32, 32, NULL)) == NULL ||
	    ECDSA_SIG_set0(es, r, s) != 1)
		goto out;
	r = s = NULL; /* es has them */
	if ((len = i2d_ECDSA_SIG(es, &der)) <= 0 ||
	    (ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pub, NULL)) == NULL ||
	    EVP_PKEY_verify_init(ctx) != 1)
		goto out;
	ok = EVP_PKEY_verify(ctx, der, (size_t)len, digest, sizeof(digest)) ==
	     1;
out:
	EVP_PKEY_CTX_free(ctx);
	OPENSSL_free(der);
	BN_free(r);
	BN_free(s);
	ECDSA_SIG_free(es);
	return ok;
}

/* True if key allows no decrypt, unwrap or derive (all read back). */
static bool signs_only(struct kb_keystore *ks, CK_OBJECT_HANDLE key)
{
	const unsigned int uses = P11_A_DECRYPT | P11_A_UNWRAP | P11_A_DERIVE;
	struct p11_object o;

	p11_read(ks->tok, ks->admin, key, uses, &o);
	return (o.have & uses) == uses && (o.set & uses) == 0;
}

int kb_identity_load_signer(struct kb_keystore *ks, const char *label,
			    const char *what, CK_OBJECT_HANDLE *priv,
			    EVP_PKEY **pub, char *idhex, struct kb_findings *f)
{
	/* Every object of the label: planted ones are refused by name. */
	struct p11_match mpriv = { .cls = P11_CLASS_PRIVATE_KEY,
				   .type = P11_TYPE_EC,
				   .label = label };
	struct p11_match mpub = { .cls = P11_CLASS_PUBLIC_KEY,
				  .type = P11_TYPE_EC,
				  .label = label };
	CK_OBJECT_HANDLE *privs = NULL, *pubs = NULL;
	struct p11_object *po = NULL, *pp = NULL;
	size_t nprivs, npubs;
	int r;

	*pub = NULL;
	if ((r = p11_find(ks->tok, ks->admin, &mpriv, &privs, &nprivs)) !=
		    KB_STATUS_OK ||
	    (r = p11_find(ks->tok, ks->admin, &mpub, &pubs, &npubs)) !=
		    KB_STATUS_OK)
		goto out;
	r = KB_ERR_NOT_FOUND;
	if (nprivs > 1 || npubs > 1)
		kb_keyadmin_note(f,
				 "%zu private and %zu public keys are labelled "
				 "'%s'; %s is off until one pair is left",
				 nprivs, npubs, label, what);
	if (nprivs != 1 || npubs != 1)
		goto out;
	/* A planted signing key would let its holder forge what it signs. */
	if (!kb_keyadmin_key_protected(ks, privs[0], what, f)) {
		r = KB_ERR_PARAM;
		goto out;
	}
	if (!signs_only(ks, privs[0]))
		kb_keyadmin_note(
			f,
			"%s also allows decrypt, unwrap or derive "
			"(made by an older keybroker); the broker only "
			"signs with it",
			what);
	if ((po = malloc(sizeof(*po))) == NULL ||
	    (pp = malloc(sizeof(*pp))) == NULL) {
		r = KB_ERR_NOMEM;
		goto out;
	}
	if ((r = p11_read(ks->tok, ks->admin, privs[0], P11_A_ID, po)) !=
		    KB_STATUS_OK ||
	    (r = p11_read(ks->tok, ks->admin, pubs[0],
			  P11_A_ID | P11_A_EC_POINT, pp)) != KB_STATUS_OK)
		goto out;
	if (!(po->have & P11_A_ID) || po->id_len != KB_VERSION_BYTES ||
	    !(pp->have & P11_A_ID) || pp->id_len != po->id_len ||
	    memcmp(po->id, pp->id, po->id_len) != 0 ||
	    !(pp->have & P11_A_EC_POINT) ||
	    (*pub = ec_public_key(pp->ec_point, pp->ec_point_len)) == NULL) {
		kb_keyadmin_note(f,
				 "%s's public object is not its own (ID or "
				 "point); refused",
				 what);
		r = KB_ERR_PARAM;
		goto out;
	}
	if (!pair_matches(ks, privs[0], *pub)) {
		kb_keyadmin_note(f,
				 "%s's public object does not verify what the "
				 "private key signs; refused",
				 what);
		EVP_PKEY_free(*pub);
		*pub = NULL;
		r = KB_ERR_PARAM;
		goto out;
	}
	*priv = privs[0];
	kb_hex_encode(idhex, po->id, KB_VERSION_BYTES);
	r = KB_STATUS_OK;
out:
	free(po);
	free(pp);
	free(privs);
	free(pubs);
	return r;
}

/* ---- revoked identity tokens ---- */

/*
 * One private data object per revoked jti: CKA_APPLICATION
 * REVOKED_APPLICATION, CKA_LABEL the jti. Since this version CKA_VALUE
 * holds {"jti": ..., "revoked": seconds}, so that a fresh load can check
 * the write read back whole; objects without a value (older versions)
 * count the same, and so does one whose value is damaged: the label
 * decides, and revoking too much fails closed.
 */
#define REVOKED_APPLICATION "keybroker:revoked-jti"

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reads the revoked jtis into c, sorted. Needs admin_lock. */
static int load_revoked(struct kb_keystore *ks, struct catalog *c)
{
	struct p11_match m = { .cls = P11_CLASS_DATA,
			       .application = REVOKED_APPLICATION,
			       .private_only = true };
	CK_OBJECT_HANDLE *objs;
	struct p11_object *o;
	size_t n, i;
	int r;

	_Static_assert(KB_REVOKED_JTI_MAX <= P11_LABEL_MAX, "a jti is a label");
	if ((r = p11_find(ks->tok, ks->admin, &m, &objs, &n)) != KB_STATUS_OK)
		return r;
	if ((o = malloc(sizeof(*o))) == NULL ||
	    (n > 0 && (c->revoked = calloc(n, sizeof(*c->revoked))) == NULL)) {
		free(o);
		free(objs);
		return KB_ERR_NOMEM;
	}
	for (i = 0; i < n && r == KB_STATUS_OK; i++) {
		if ((r = p11_read(ks->tok, ks->admin, objs[i], P11_A_LABEL,
				  o)) != KB_STATUS_OK ||
		    !(o->have & P11_A_LABEL) || o->label_len == 0 ||
		    o->label_len > KB_REVOKED_JTI_MAX)
			continue;
		if ((c->revoked[c->n_revoked] = strdup(o->label)) == NULL)
			r = KB_ERR_NOMEM;
		else
			c->n_revoked++;
	}
	free(o);
	free(objs);
	if (r != KB_STATUS_OK)
		return r;
	if (c->n_revoked > 1)
		qsort(c->revoked, c->n_revoked, sizeof(*c->revoked), str_cmp);
	return KB_STATUS_OK;
}

/*
 * Adds add[0..n) (strings it takes over) to the keystore's sorted list,
 * dropping duplicates. Needs ks->lock. On failure the strings are freed
 * and the list is as before, less nothing.
 */
static int revoked_add_locked(struct kb_keystore *ks, char **add, size_t n)
{
	char **grown;
	size_t i, o;

	if (n == 0)
		return KB_STATUS_OK;
	grown = realloc(ks->revoked, (ks->n_revoked + n) * sizeof(*grown));
	if (grown == NULL) {
		for (i = 0; i < n; i++)
			free(add[i]);
		return KB_ERR_NOMEM;
	}
	ks->revoked = grown;
	memcpy(grown + ks->n_revoked, add, n * sizeof(*add));
	n += ks->n_revoked;
	qsort(grown, n, sizeof(*grown), str_cmp);
	for (i = 1, o = 1; i < n; i++)
		if (strcmp(grown[i], grown[o - 1]) == 0)
			free(grown[i]);
		else
			grown[o++] = grown[i];
	ks->n_revoked = o;
	return KB_STATUS_OK;
}

void kb_identity_merge_revoked_locked(struct kb_keystore *ks, struct catalog *c)
{
	if (revoked_add_locked(ks, c->revoked, c->n_revoked) != KB_STATUS_OK)
		kb_err("out of memory keeping %zu revoked token ids",
		       c->n_revoked);
	free(c->revoked);
	c->revoked = NULL;
	c->n_revoked = 0;
}

void kb_identity_free_revoked(struct kb_keystore *ks)
{
	size_t i;

	for (i = 0; i < ks->n_revoked; i++)
		free(ks->revoked[i]);
	free(ks->revoked);
	ks->revoked = NULL;
	ks->n_revoked = 0;
}

bool kb_identity_revoked(struct kb_keystore *ks, const char *jti)
{
	bool found;

	pthread_mutex_lock(&ks->lock);
	/* Without a catalogue nothing can be vouched for: fail closed. */
	found = ks->cat == NULL ||
		(ks->n_revoked > 0 &&
		 bsearch(&jti, ks->revoked, ks->n_revoked, sizeof(*ks->revoked),
			 str_cmp) != NULL);
	pthread_mutex_unlock(&ks->lock);
	return found;
}

int kb_identity_remember_revoked(struct kb_keystore *ks, const char *jti)
{
	char *copy;
	int r;

	if (jti[0] == '\0' || strlen(jti) > KB_REVOKED_JTI_MAX)
		return KB_ERR_PARAM;
	if ((copy = strdup(jti)) == NULL)
		return KB_ERR_NOMEM;
	pthread_mutex_lock(&ks->lock);
	r = revoked_add_locked(ks, &copy, 1);
	pthread_mutex_unlock(&ks->lock);
	return r;
}

/* {"jti": jti, "revoked": now}, malloc'ed. */
static char *revocation_text(const char *jti)
{
	json_t *o = json_pack("{s:s, s:I}", "jti", jti, "revoked",
			      (json_int_t)time(NULL));
	char *text;

	if (o == NULL)
		return NULL;
	text = kb_json_text(o, JSON_COMPACT | JSON_SORT_KEYS, NULL);
	json_decref(o);
	return text;
}

int kb_identity_revoke(struct kb_keystore *ks, const char *jti, char *err,
		       size_t errlen)
{
	CK_OBJECT_HANDLE obj;
	char *text;
	int r;

	if (jti[0] == '\0' || strlen(jti) > KB_REVOKED_JTI_MAX) {
		snprintf(err, errlen, "a token id is 1-%d bytes",
			 KB_REVOKED_JTI_MAX);
		return KB_ERR_PARAM;
	}
	/*
	 * Already known. (keybrokerctl has just loaded the token, so what it
	 * knows is what is stored.)
	 */
	if (kb_identity_revoked(ks, jti))
		return KB_STATUS_OK;
	if ((r = kb_identity_remember_revoked(ks, jti)) != KB_STATUS_OK ||
	    (text = revocation_text(jti)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return KB_ERR_NOMEM;
	}
	kb_keyadmin_enter(ks);
	/*
	 * A revocation that was not confirmed stays in the token: if it did
	 * reach storage it is wanted, and revoking too much fails closed.
	 */
	if ((r = p11_token_check_space(ks->tok, err, errlen)) == KB_STATUS_OK)
		r = kb_keyadmin_create_confirmed(ks, REVOKED_APPLICATION, jti,
						 text, true, "the revocation",
						 &obj, err, errlen);
	/* Every broker on the token re-reads its revocations within 1 s. */
	if (r == KB_STATUS_OK)
		kb_keystate_bump_generation(ks);
	kb_keyadmin_leave(ks);
	free(text);
	return r;
}

int kb_identity_load(struct kb_keystore *ks, struct catalog *c,
		     struct kb_findings *f)
{
	int r = kb_identity_load_signer(ks, ISSUER_LABEL,
					"the token-signing key",
					&c->issuer_priv, &c->issuer_pub,
					c->issuer_kid, f);

	if (r != KB_STATUS_OK && r != KB_ERR_NOT_FOUND && r != KB_ERR_PARAM)
		return r;
	return load_revoked(ks, c);
}
