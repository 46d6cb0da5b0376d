// SPDX-License-Identifier: MIT
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kb_issuer.h"
#include "kb_keystore_parts.h"

int kb_issuer_create(struct kb_keystore *ks, char *err, size_t errlen)
{
	unsigned char id[KB_VERSION_BYTES];
	CK_OBJECT_HANDLE pub, priv;
	bool taken;
	CK_RV rv;
	int r;

	if (RAND_bytes(id, sizeof(id)) != 1)
		return KB_ERR_NOMEM;
	kb_keyadmin_enter(ks);
	if ((r = p11_token_check_space(ks->tok, err, errlen)) != KB_STATUS_OK)
		goto out;
	/* Any object of that label, usable or refused, stays the only one. */
	if ((r = kb_keyadmin_label_taken(ks, ISSUER_LABEL, &taken)) !=
	    KB_STATUS_OK) {
		snprintf(err, errlen, "cannot search the token");
		goto out;
	}
	if (taken) {
		snprintf(err, errlen,
			 "the token already has objects labelled '%s' (if the "
			 "broker refuses them, its log says why)",
			 ISSUER_LABEL);
		r = KB_ERR_CONFLICT;
		goto out;
	}
	rv = p11_generate_ec_p256(ks->tok, ks->admin, ISSUER_LABEL, id,
				  sizeof(id), &pub, &priv);
	if (rv != CKR_OK) {
		snprintf(err, errlen, "C_GenerateKeyPair (EC P-256): %s",
			 p11_rv_name(rv));
		r = KB_ERR_HSM;
	} else {
		/* Told before the re-read, which then holds it. */
		kb_keystate_bump_generation(ks);
		if ((r = kb_catalog_reload_locked(ks)) != KB_STATUS_OK)
			snprintf(err, errlen,
				 "re-reading the key catalogue failed");
	}
out:
	kb_keyadmin_leave(ks);
	return r;
}

EVP_PKEY *kb_issuer_key(struct kb_keystore *ks, char *kid)
{
	struct catalog *c = kb_catalog_get(ks);
	EVP_PKEY *pub = NULL;

	if (c != NULL && c->issuer_pub != NULL &&
	    EVP_PKEY_up_ref(c->issuer_pub) == 1) {
		pub = c->issuer_pub;
		memcpy(kid, c->issuer_kid, sizeof(c->issuer_kid));
	}
	kb_catalog_put(ks, c);
	return pub;
}

static CK_OBJECT_HANDLE pick_issuer(const struct catalog *c)
{
	return c->issuer_pub != NULL ? c->issuer_priv : CK_INVALID_HANDLE;
}

int kb_issuer_sign(struct kb_keystore *ks, struct kb_keyworker *w,
		   const unsigned char *digest, unsigned char *sig)
{
	return kb_keystore_token_sign(ks, w, pick_issuer, P11_MECH_ECDSA,
				      digest, 32, sig, 64);
}
