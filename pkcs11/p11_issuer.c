// SPDX-License-Identifier: MIT
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p11_internal.h"
#include "p11_issuer.h"
#include "p11_store.h"

/* DER of the prime256v1 OID, as CKA_EC_PARAMS. */
static const unsigned char p256_params[] = { 0x06, 0x08, 0x2a, 0x86, 0x48,
					     0xce, 0x3d, 0x03, 0x01, 0x07 };

int p11_keystore_create_issuer(struct p11_keystore *ks, char *err,
			       size_t errlen)
{
	CK_MECHANISM mech = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	unsigned char id[KB_VERSION_BYTES];
	CK_OBJECT_HANDLE pub, priv;
	/* Sign-only: every other usage is set false explicitly. */
	CK_ATTRIBUTE tpub[] = {
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_PRIVATE, &no, sizeof(no) },
		{ CKA_MODIFIABLE, &no, sizeof(no) },
		{ CKA_VERIFY, &yes, sizeof(yes) },
		{ CKA_VERIFY_RECOVER, &no, sizeof(no) },
		{ CKA_ENCRYPT, &no, sizeof(no) },
		{ CKA_WRAP, &no, sizeof(no) },
		{ CKA_DERIVE, &no, sizeof(no) },
		{ CKA_EC_PARAMS, (void *)p256_params, sizeof(p256_params) },
		{ CKA_LABEL, ISSUER_LABEL, sizeof(ISSUER_LABEL) - 1 },
		{ CKA_ID, id, sizeof(id) },
	};
	CK_ATTRIBUTE tpriv[] = {
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_PRIVATE, &yes, sizeof(yes) },
		{ CKA_MODIFIABLE, &no, sizeof(no) },
		{ CKA_SENSITIVE, &yes, sizeof(yes) },
		{ CKA_EXTRACTABLE, &no, sizeof(no) },
		{ CKA_SIGN, &yes, sizeof(yes) },
		{ CKA_SIGN_RECOVER, &no, sizeof(no) },
		{ CKA_DECRYPT, &no, sizeof(no) },
		{ CKA_UNWRAP, &no, sizeof(no) },
		{ CKA_DERIVE, &no, sizeof(no) },
		{ CKA_LABEL, ISSUER_LABEL, sizeof(ISSUER_LABEL) - 1 },
		{ CKA_ID, id, sizeof(id) },
	};
	bool taken;
	CK_RV rv;
	int r;

	if (RAND_bytes(id, sizeof(id)) != 1)
		return P11_ERR_NOMEM;
	p11_admin_enter(ks);
	if ((r = p11_store_check_space(ks->fn, err, errlen)) != P11_OK)
		goto out;
	/* Any object of that label, usable or refused, stays the only one. */
	if ((r = p11_label_taken(ks, ISSUER_LABEL, &taken)) != P11_OK) {
		snprintf(err, errlen, "cannot search the token");
		goto out;
	}
	if (taken) {
		snprintf(err, errlen,
			 "the token already has objects labelled '%s' (if the "
			 "broker refuses them, its log says why)",
			 ISSUER_LABEL);
		r = P11_ERR_CONFLICT;
		goto out;
	}
	rv = ks->fn->C_GenerateKeyPair(ks->admin, &mech, tpub,
				       sizeof(tpub) / sizeof(tpub[0]), tpriv,
				       sizeof(tpriv) / sizeof(tpriv[0]), &pub,
				       &priv);
	if (rv != CKR_OK) {
		snprintf(err, errlen, "C_GenerateKeyPair (EC P-256): %s",
			 p11_rv_name(rv));
		r = P11_ERR_HSM;
	} else if ((r = p11_catalog_reload_locked(ks)) != P11_OK) {
		snprintf(err, errlen, "re-reading the key catalogue failed");
	}
out:
	p11_admin_leave(ks);
	return r;
}

EVP_PKEY *p11_keystore_issuer_key(struct p11_keystore *ks, char *kid)
{
	struct catalog *c = p11_catalog_get(ks);
	EVP_PKEY *pub = NULL;

	if (c != NULL && c->issuer_pub != NULL &&
	    EVP_PKEY_up_ref(c->issuer_pub) == 1) {
		pub = c->issuer_pub;
		memcpy(kid, c->issuer_kid, sizeof(c->issuer_kid));
	}
	p11_catalog_put(ks, c);
	return pub;
}

int p11_keystore_sign_es256(struct p11_keystore *ks, struct p11_worker *w,
			    const unsigned char *digest, unsigned char *sig)
{
	CK_OBJECT_HANDLE key;
	struct catalog *c;
	int attempt, r;

	for (attempt = 0; attempt < 2; attempt++) {
		/* The key of the catalogue in force: recovery re-reads it. */
		key = CK_INVALID_HANDLE;
		if ((c = p11_catalog_get(ks)) != NULL && c->issuer_pub != NULL)
			key = c->issuer_priv;
		p11_catalog_put(ks, c);
		if (key == CK_INVALID_HANDLE)
			return P11_ERR_NOT_FOUND;
		if (w == NULL) {
			p11_admin_enter(ks);
			r = p11_es256_sign(ks->fn, ks->admin, key, digest, sig);
			p11_admin_leave(ks);
			return r;
		}
		if ((r = p11_ensure_available(ks)) != P11_OK)
			return r;
		pthread_rwlock_rdlock(&ks->module_lock);
		if ((r = p11_worker_session(w)) == P11_OK)
			r = p11_es256_sign(ks->fn, w->h, key, digest, sig);
		pthread_rwlock_unlock(&ks->module_lock);
		if (r != P11_ERR_HSM ||
		    p11_keystore_recover(ks, w->gen) != P11_OK)
			break;
	}
	return r;
}
