// SPDX-License-Identifier: MIT
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

#include "kb_auditkey.h"
#include "kb_keystore_parts.h"
#include "kb_log.h"

/* Makes the pair unless its label is taken. Needs admin_lock. */
static int make_pair(struct kb_keystore *ks, bool *made, char *err,
		     size_t errlen)
{
	unsigned char id[KB_VERSION_BYTES];
	CK_OBJECT_HANDLE pub, priv;
	bool taken;
	CK_RV rv;
	int r;

	if ((r = kb_keyadmin_label_taken(ks, AUDIT_LABEL, &taken)) !=
	    KB_STATUS_OK) {
		snprintf(err, errlen, "cannot search the token");
		return r;
	}
	if (taken)
		return KB_STATUS_OK;
	if (RAND_bytes(id, sizeof(id)) != 1)
		return KB_ERR_NOMEM;
	if ((rv = p11_generate_ec_p256(ks->tok, ks->admin, AUDIT_LABEL, id,
				       sizeof(id), &pub, &priv)) != CKR_OK) {
		snprintf(err, errlen,
			 "C_GenerateKeyPair (EC P-256) for the audit key: %s",
			 p11_rv_name(rv));
		return KB_ERR_HSM;
	}
	*made = true;
	return KB_STATUS_OK;
}

/* Makes the HMAC secret unless its label is taken. Needs admin_lock. */
static int make_secret(struct kb_keystore *ks, bool *made, char *err,
		       size_t errlen)
{
	CK_OBJECT_HANDLE h;
	bool taken;
	CK_RV rv;
	int r;

	if ((r = kb_keyadmin_label_taken(ks, AUDIT_HMAC_LABEL, &taken)) !=
	    KB_STATUS_OK) {
		snprintf(err, errlen, "cannot search the token");
		return r;
	}
	if (taken)
		return KB_STATUS_OK;
	if ((rv = p11_generate_hmac_secret(ks->tok, ks->admin, AUDIT_HMAC_LABEL,
					   32, &h)) != CKR_OK) {
		snprintf(err, errlen,
			 "C_GenerateKey (HMAC secret) for the audit trail: %s",
			 p11_rv_name(rv));
		return KB_ERR_HSM;
	}
	*made = true;
	return KB_STATUS_OK;
}

/* Whether the catalogue in force has both keys (no search then). */
static bool both_there(struct kb_keystore *ks)
{
	struct catalog *c = kb_catalog_get(ks);
	bool there = c != NULL && c->audit_pub != NULL &&
		     c->audit_hmac != CK_INVALID_HANDLE;

	kb_catalog_put(ks, c);
	return there;
}

int kb_auditkey_ensure(struct kb_keystore *ks, char *err, size_t errlen)
{
	bool made = false;
	int r;

	if (both_there(ks))
		return KB_STATUS_OK;
	kb_keyadmin_enter(ks);
	if ((r = make_pair(ks, &made, err, errlen)) == KB_STATUS_OK)
		r = make_secret(ks, &made, err, errlen);
	/* Told before the re-read, which then holds the new generation. */
	if (made) {
		kb_info("made the audit trail's keys in the token");
		kb_keystate_bump_generation(ks);
		if (kb_catalog_reload_locked(ks) != KB_STATUS_OK && r == 0) {
			snprintf(err, errlen,
				 "re-reading the key catalogue failed");
			r = KB_ERR_HSM;
		}
	}
	kb_keyadmin_leave(ks);
	return r;
}

EVP_PKEY *kb_auditkey_public(struct kb_keystore *ks,
			     char keyid[KB_TRAIL_KEYID_LEN + 1])
{
	struct catalog *c = kb_catalog_get(ks);
	EVP_PKEY *pub = NULL;

	if (c != NULL && c->audit_pub != NULL &&
	    kb_trail_keyid(c->audit_pub, keyid) == 0 &&
	    EVP_PKEY_up_ref(c->audit_pub) == 1)
		pub = c->audit_pub;
	kb_catalog_put(ks, c);
	return pub;
}

static CK_OBJECT_HANDLE pick_audit(const struct catalog *c)
{
	return c->audit_pub != NULL ? c->audit_priv : CK_INVALID_HANDLE;
}

static CK_OBJECT_HANDLE pick_hmac(const struct catalog *c)
{
	return c->audit_hmac;
}

int kb_auditkey_sign(struct kb_keystore *ks, struct kb_keyworker *w,
		     const char *text, size_t len,
		     unsigned char sig[KB_TRAIL_SIG_LEN])
{
	unsigned char md[32];

	EVP_Digest(text, len, md, NULL, EVP_sha256(), NULL);
	return kb_keystore_token_sign(ks, w, pick_audit, P11_MECH_ECDSA, md,
				      sizeof(md), sig, KB_TRAIL_SIG_LEN);
}

int kb_auditkey_hmac(struct kb_keystore *ks, struct kb_keyworker *w,
		     const unsigned char *in, size_t len, unsigned char mac[32])
{
	return kb_keystore_token_sign(ks, w, pick_hmac, P11_MECH_SHA256_HMAC,
				      in, len, mac, 32);
}
