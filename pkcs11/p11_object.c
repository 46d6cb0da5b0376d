// SPDX-License-Identifier: MIT
#include <stdlib.h>
#include <string.h>

#include "p11_object.h"

#define FIND_BATCH 64

/* ---- finding ---- */

CK_OBJECT_CLASS p11_class_ck(enum p11_class cls)
{
	switch (cls) {
	case P11_CLASS_PRIVATE_KEY:
		return CKO_PRIVATE_KEY;
	case P11_CLASS_PUBLIC_KEY:
		return CKO_PUBLIC_KEY;
	case P11_CLASS_SECRET_KEY:
		return CKO_SECRET_KEY;
	default:
		return CKO_DATA;
	}
}

int p11_find(struct p11_token *tok, CK_SESSION_HANDLE s,
	     const struct p11_match *m, CK_OBJECT_HANDLE **out, size_t *count)
{
	CK_FUNCTION_LIST *fn = p11_token_functions(tok);
	CK_OBJECT_CLASS cls = p11_class_ck(m->cls);
	CK_KEY_TYPE type = m->type == P11_TYPE_RSA ? CKK_RSA : CKK_EC;
	CK_BBOOL yes = CK_TRUE;
	CK_ATTRIBUTE t[5];
	CK_OBJECT_HANDLE *objs = NULL, *grown;
	CK_ULONG nt = 0, got;
	size_t n = 0, cap = 0;
	CK_RV rv;

	*out = NULL;
	*count = 0;
	if (m->cls != P11_CLASS_ANY)
		t[nt++] = (CK_ATTRIBUTE){ CKA_CLASS, &cls, sizeof(cls) };
	if (m->type != P11_TYPE_ANY)
		t[nt++] = (CK_ATTRIBUTE){ CKA_KEY_TYPE, &type, sizeof(type) };
	if (m->label != NULL)
		t[nt++] = (CK_ATTRIBUTE){ CKA_LABEL, (void *)m->label,
					  strlen(m->label) };
	if (m->application != NULL)
		t[nt++] = (CK_ATTRIBUTE){ CKA_APPLICATION,
					  (void *)m->application,
					  strlen(m->application) };
	if (m->private_only)
		t[nt++] = (CK_ATTRIBUTE){ CKA_PRIVATE, &yes, sizeof(yes) };
	if (fn->C_FindObjectsInit(s, t, nt) != CKR_OK)
		return KB_ERR_HSM;
	for (;;) {
		if (cap - n < FIND_BATCH) {
			cap += FIND_BATCH * 4;
			if ((grown = realloc(objs, cap * sizeof(*objs))) ==
			    NULL) {
				fn->C_FindObjectsFinal(s);
				free(objs);
				return KB_ERR_NOMEM;
			}
			objs = grown;
		}
		rv = fn->C_FindObjects(s, objs + n, FIND_BATCH, &got);
		if (rv != CKR_OK) {
			fn->C_FindObjectsFinal(s);
			free(objs);
			return KB_ERR_HSM;
		}
		n += got;
		if (got == 0)
			break;
	}
	fn->C_FindObjectsFinal(s);
	*out = objs;
	*count = n;
	return KB_STATUS_OK;
}

/* ---- reading ---- */

static const struct {
	unsigned int bit;
	CK_ATTRIBUTE_TYPE type;
} flag_attrs[] = {
	{ P11_A_PRIVATE, CKA_PRIVATE },
	{ P11_A_SENSITIVE, CKA_SENSITIVE },
	{ P11_A_EXTRACTABLE, CKA_EXTRACTABLE },
	{ P11_A_LOCAL, CKA_LOCAL },
	{ P11_A_ALWAYS_SENSITIVE, CKA_ALWAYS_SENSITIVE },
	{ P11_A_NEVER_EXTRACTABLE, CKA_NEVER_EXTRACTABLE },
	{ P11_A_DECRYPT, CKA_DECRYPT },
	{ P11_A_UNWRAP, CKA_UNWRAP },
	{ P11_A_DERIVE, CKA_DERIVE },
};

#define NFLAGS (sizeof(flag_attrs) / sizeof(flag_attrs[0]))

/* One attribute of a p11_read template. */
struct wanted {
	CK_ATTRIBUTE_TYPE type;
	unsigned int bit;
	void *buf;
	size_t size; /* of buf: a longer value is not read */
};

/* Appends w to t (and what it is to asked) if want asks for its bit. */
static void ask(unsigned int want, const struct wanted *w, CK_ATTRIBUTE *t,
		struct wanted *asked, CK_ULONG *nt)
{
	if (!(want & w->bit))
		return;
	t[*nt] = (CK_ATTRIBUTE){ w->type, w->buf, w->size };
	asked[*nt] = *w;
	(*nt)++;
}

/* Records in o what attribute a of bit came back as, len bytes long. */
static void take(struct p11_object *o, unsigned int bit, size_t len)
{
	size_t zeros;

	o->have |= bit;
	switch (bit) {
	case P11_A_LABEL:
		o->label_len = len;
		o->label[len] = '\0';
		break;
	case P11_A_ID:
		o->id_len = len;
		break;
	case P11_A_VALUE:
		o->value_len = len;
		break;
	case P11_A_MODULUS:
		/* Some tokens keep leading zero bytes. */
		for (zeros = 0; zeros < len && o->modulus[zeros] == 0; zeros++)
			;
		o->modulus_len = len - zeros;
		memmove(o->modulus, o->modulus + zeros, o->modulus_len);
		break;
	case P11_A_EXPONENT:
		o->exponent_len = len;
		break;
	case P11_A_EC_POINT:
		o->ec_point_len = len;
		break;
	}
}

int p11_read(struct p11_token *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE obj,
	     unsigned int want, struct p11_object *o)
{
	CK_BBOOL flags[NFLAGS] = { 0 };
	const struct wanted values[] = {
		{ CKA_LABEL, P11_A_LABEL, o->label, P11_LABEL_MAX },
		{ CKA_ID, P11_A_ID, o->id, sizeof(o->id) },
		{ CKA_VALUE, P11_A_VALUE, o->value, o->value_max },
		{ CKA_MODULUS, P11_A_MODULUS, o->modulus, sizeof(o->modulus) },
		{ CKA_PUBLIC_EXPONENT, P11_A_EXPONENT, o->exponent,
		  sizeof(o->exponent) },
		{ CKA_EC_POINT, P11_A_EC_POINT, o->ec_point,
		  sizeof(o->ec_point) },
	};
	CK_ATTRIBUTE t[sizeof(values) / sizeof(values[0]) + NFLAGS];
	struct wanted asked[sizeof(values) / sizeof(values[0]) + NFLAGS];
	CK_ULONG nt = 0, i;
	struct wanted w;
	CK_RV rv;

	for (i = 0; i < sizeof(values) / sizeof(values[0]); i++)
		ask(want, &values[i], t, asked, &nt);
	for (i = 0; i < NFLAGS; i++) {
		w = (struct wanted){ flag_attrs[i].type, flag_attrs[i].bit,
				     &flags[i], sizeof(flags[i]) };
		ask(want, &w, t, asked, &nt);
	}
	o->have = o->set = 0;
	rv = p11_token_functions(tok)->C_GetAttributeValue(s, obj, t, nt);
	switch (rv) {
	case CKR_OK:
	case CKR_ATTRIBUTE_SENSITIVE:
	case CKR_ATTRIBUTE_TYPE_INVALID:
	case CKR_BUFFER_TOO_SMALL:
		/* The module marked each attribute it could not return. */
		break;
	case CKR_OBJECT_HANDLE_INVALID:
		/* Gone since it was found (another process destroyed it). */
		return KB_STATUS_OK;
	default:
		return p11_rv_is_token_lost(rv) ? KB_ERR_HSM : KB_STATUS_OK;
	}
	for (i = 0; i < nt; i++) {
		/*
		 * Not read: CK_UNAVAILABLE_INFORMATION, or a length longer
		 * than the buffer, which the module cannot have filled.
		 */
		if (t[i].ulValueLen == CK_UNAVAILABLE_INFORMATION ||
		    t[i].ulValueLen > asked[i].size)
			continue;
		if (asked[i].bit >= P11_A_PRIVATE) { /* a flag */
			if (t[i].ulValueLen != sizeof(CK_BBOOL))
				continue;
			if (*(CK_BBOOL *)t[i].pValue == CK_TRUE)
				o->set |= asked[i].bit;
		}
		take(o, asked[i].bit, t[i].ulValueLen);
	}
	return KB_STATUS_OK;
}

/* The mechanism of mech; p holds OAEP's parameters. */
static CK_MECHANISM mechanism(enum p11_mech mech, CK_RSA_PKCS_OAEP_PARAMS *p)
{
	switch (mech) {
	case P11_MECH_RSA_OAEP_SHA1:
	case P11_MECH_RSA_OAEP_SHA256:
		*p = (CK_RSA_PKCS_OAEP_PARAMS){
			.hashAlg = mech == P11_MECH_RSA_OAEP_SHA1 ? CKM_SHA_1 :
								    CKM_SHA256,
			.mgf = mech == P11_MECH_RSA_OAEP_SHA1 ? CKG_MGF1_SHA1 :
								CKG_MGF1_SHA256,
			.source = CKZ_DATA_SPECIFIED,
		};
		return (CK_MECHANISM){ CKM_RSA_PKCS_OAEP, p, sizeof(*p) };
	case P11_MECH_ECDSA:
		return (CK_MECHANISM){ CKM_ECDSA, NULL, 0 };
	case P11_MECH_SHA256_HMAC:
		return (CK_MECHANISM){ CKM_SHA256_HMAC, NULL, 0 };
	default:
		return (CK_MECHANISM){ CKM_RSA_X_509, NULL, 0 };
	}
}

/* ---- writing ---- */

CK_RV p11_create_data(struct p11_token *tok, CK_SESSION_HANDLE s,
		      const char *application, const char *label,
		      const void *value, size_t len, CK_OBJECT_HANDLE *obj)
{
	CK_OBJECT_CLASS cls = CKO_DATA;
	CK_BBOOL yes = CK_TRUE;
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_PRIVATE, &yes, sizeof(yes) },
		{ CKA_APPLICATION, (void *)application, strlen(application) },
		{ CKA_LABEL, (void *)label, strlen(label) },
		{ CKA_VALUE, (void *)value, len },
	};

	return p11_token_functions(tok)->C_CreateObject(
		s, t, sizeof(t) / sizeof(t[0]), obj);
}

CK_RV p11_destroy(struct p11_token *tok, CK_SESSION_HANDLE s,
		  CK_OBJECT_HANDLE obj)
{
	CK_RV rv = p11_token_functions(tok)->C_DestroyObject(s, obj);

	return rv == CKR_OBJECT_HANDLE_INVALID ? CKR_OK : rv;
}

/*
 * Generates a key pair by mech, both objects of label and id and not
 * modifiable, the private key sensitive and never extractable and good
 * for use alone (CKA_DECRYPT or CKA_SIGN; the public key verifies if it
 * signs): every other usage is set false explicitly. params[0..np) are
 * the public template's key parameters (size, curve).
 */
static CK_RV generate_pair(struct p11_token *tok, CK_SESSION_HANDLE s,
			   CK_MECHANISM_TYPE mech, const CK_ATTRIBUTE *params,
			   size_t np, CK_ATTRIBUTE_TYPE use, const char *label,
			   const unsigned char *id, size_t idlen,
			   CK_OBJECT_HANDLE *pub, CK_OBJECT_HANDLE *priv)
{
	CK_MECHANISM m = { mech, NULL, 0 };
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_BBOOL signs = use == CKA_SIGN ? CK_TRUE : CK_FALSE;
	CK_BBOOL decrypts = use == CKA_DECRYPT ? CK_TRUE : CK_FALSE;
	CK_BBOOL unwraps = use == CKA_UNWRAP ? CK_TRUE : CK_FALSE;
	CK_ATTRIBUTE tpub[12] = {
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_PRIVATE, &no, sizeof(no) },
		{ CKA_MODIFIABLE, &no, sizeof(no) },
		{ CKA_ENCRYPT, &no, sizeof(no) },
		{ CKA_VERIFY, &signs, sizeof(signs) },
		{ CKA_VERIFY_RECOVER, &no, sizeof(no) },
		{ CKA_WRAP, &no, sizeof(no) },
		{ CKA_DERIVE, &no, sizeof(no) },
		{ CKA_LABEL, (void *)label, strlen(label) },
		{ CKA_ID, (void *)id, idlen },
	};
	CK_ATTRIBUTE tpriv[] = {
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_PRIVATE, &yes, sizeof(yes) },
		{ CKA_MODIFIABLE, &no, sizeof(no) },
		{ CKA_SENSITIVE, &yes, sizeof(yes) },
		{ CKA_EXTRACTABLE, &no, sizeof(no) },
		{ CKA_DECRYPT, &decrypts, sizeof(decrypts) },
		{ CKA_SIGN, &signs, sizeof(signs) },
		{ CKA_SIGN_RECOVER, &no, sizeof(no) },
		{ CKA_UNWRAP, &unwraps, sizeof(unwraps) },
		{ CKA_DERIVE, &no, sizeof(no) },
		{ CKA_LABEL, (void *)label, strlen(label) },
		{ CKA_ID, (void *)id, idlen },
	};
	size_t npub = 10;

	if (np > sizeof(tpub) / sizeof(tpub[0]) - npub)
		return CKR_ARGUMENTS_BAD;
	memcpy(tpub + npub, params, np * sizeof(*params));
	return p11_token_functions(tok)->C_GenerateKeyPair(
		s, &m, tpub, npub + np, tpriv, sizeof(tpriv) / sizeof(tpriv[0]),
		pub, priv);
}

CK_RV p11_generate_rsa(struct p11_token *tok, CK_SESSION_HANDLE s,
		       unsigned int bits, bool kek, const char *label,
		       const unsigned char *id, size_t idlen,
		       CK_OBJECT_HANDLE *pub, CK_OBJECT_HANDLE *priv)
{
	static const unsigned char f4[] = { 0x01, 0x00, 0x01 };
	CK_ULONG modbits = bits;
	const CK_ATTRIBUTE params[] = {
		{ CKA_MODULUS_BITS, &modbits, sizeof(modbits) },
		{ CKA_PUBLIC_EXPONENT, (void *)f4, sizeof(f4) },
	};

	/*
	 * Decrypt-only (keybroker wraps with the public key in OpenSSL), or
	 * unwrap-only for a key-exchange key.
	 */
	return generate_pair(tok, s, CKM_RSA_PKCS_KEY_PAIR_GEN, params, 2,
			     kek ? CKA_UNWRAP : CKA_DECRYPT, label, id, idlen,
			     pub, priv);
}

CK_RV p11_create_rsa_public(struct p11_token *tok, CK_SESSION_HANDLE s,
			    const unsigned char *n, size_t nlen,
			    const unsigned char *e, size_t elen,
			    const char *label, const unsigned char *id,
			    size_t idlen, CK_OBJECT_HANDLE *pub)
{
	CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
	CK_KEY_TYPE type = CKK_RSA;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_KEY_TYPE, &type, sizeof(type) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_PRIVATE, &no, sizeof(no) },
		{ CKA_MODIFIABLE, &no, sizeof(no) },
		{ CKA_ENCRYPT, &no, sizeof(no) },
		{ CKA_VERIFY, &no, sizeof(no) },
		{ CKA_VERIFY_RECOVER, &no, sizeof(no) },
		{ CKA_WRAP, &no, sizeof(no) },
		{ CKA_DERIVE, &no, sizeof(no) },
		{ CKA_MODULUS, (void *)n, nlen },
		{ CKA_PUBLIC_EXPONENT, (void *)e, elen },
		{ CKA_LABEL, (void *)label, strlen(label) },
		{ CKA_ID, (void *)id, idlen },
	};

	return p11_token_functions(tok)->C_CreateObject(
		s, t, sizeof(t) / sizeof(t[0]), pub);
}

/*
 * The template of an RSA private key that comes in from outside: as
 * generate_pair's decrypt-only private key. t needs room for 14 more
 * attributes after the n given; returns the count. CKA_MODIFIABLE comes
 * last: SoftHSMv2 applies an unwrap template in order and refuses
 * (CKR_ATTRIBUTE_READ_ONLY) what follows it.
 */
static size_t imported_private(CK_ATTRIBUTE *t, size_t n, const char *label,
			       const unsigned char *id, size_t idlen)
{
	static CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	static CK_KEY_TYPE type = CKK_RSA;
	static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	const CK_ATTRIBUTE fixed[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_KEY_TYPE, &type, sizeof(type) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_PRIVATE, &yes, sizeof(yes) },
		{ CKA_SENSITIVE, &yes, sizeof(yes) },
		{ CKA_EXTRACTABLE, &no, sizeof(no) },
		{ CKA_DECRYPT, &yes, sizeof(yes) },
		{ CKA_SIGN, &no, sizeof(no) },
		{ CKA_SIGN_RECOVER, &no, sizeof(no) },
		{ CKA_UNWRAP, &no, sizeof(no) },
		{ CKA_DERIVE, &no, sizeof(no) },
	};

	memcpy(t + n, fixed, sizeof(fixed));
	n += sizeof(fixed) / sizeof(fixed[0]);
	t[n++] = (CK_ATTRIBUTE){ CKA_LABEL, (void *)label, strlen(label) };
	t[n++] = (CK_ATTRIBUTE){ CKA_ID, (void *)id, idlen };
	t[n++] = (CK_ATTRIBUTE){ CKA_MODIFIABLE, &no, sizeof(no) };
	return n;
}

CK_RV p11_import_rsa(struct p11_token *tok, CK_SESSION_HANDLE s,
		     const struct p11_rsa_parts *k, const char *label,
		     const unsigned char *id, size_t idlen,
		     CK_OBJECT_HANDLE *pub, CK_OBJECT_HANDLE *priv)
{
	CK_ATTRIBUTE t[24] = {
		{ CKA_MODULUS, (void *)k->n, k->nlen },
		{ CKA_PUBLIC_EXPONENT, (void *)k->e, k->elen },
		{ CKA_PRIVATE_EXPONENT, (void *)k->d, k->dlen },
		{ CKA_PRIME_1, (void *)k->p, k->plen },
		{ CKA_PRIME_2, (void *)k->q, k->qlen },
		{ CKA_EXPONENT_1, (void *)k->dp, k->dplen },
		{ CKA_EXPONENT_2, (void *)k->dq, k->dqlen },
		{ CKA_COEFFICIENT, (void *)k->qi, k->qilen },
	};
	size_t n = imported_private(t, 8, label, id, idlen);
	CK_RV rv;

	rv = p11_token_functions(tok)->C_CreateObject(s, t, n, priv);
	if (rv != CKR_OK)
		return rv;
	rv = p11_create_rsa_public(tok, s, k->n, k->nlen, k->e, k->elen, label,
				   id, idlen, pub);
	if (rv != CKR_OK)
		p11_destroy(tok, s, *priv);
	return rv;
}

CK_RV p11_unwrap_rsa_aes(struct p11_token *tok, CK_SESSION_HANDLE s,
			 CK_OBJECT_HANDLE kek, enum p11_mech oaep,
			 size_t kek_len, const unsigned char *blob,
			 size_t bloblen, const char *label,
			 const unsigned char *id, size_t idlen,
			 CK_OBJECT_HANDLE *priv)
{
	CK_FUNCTION_LIST *fn = p11_token_functions(tok);
	CK_RSA_PKCS_OAEP_PARAMS p;
	CK_MECHANISM m = mechanism(oaep, &p);
	CK_MECHANISM kwp = { CKM_AES_KEY_WRAP_PAD, NULL, 0 };
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE type = CKK_AES;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	/* The ephemeral key: a session object that only unwraps. */
	CK_ATTRIBUTE taes[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_KEY_TYPE, &type, sizeof(type) },
		{ CKA_TOKEN, &no, sizeof(no) },
		{ CKA_SENSITIVE, &yes, sizeof(yes) },
		{ CKA_EXTRACTABLE, &no, sizeof(no) },
		{ CKA_UNWRAP, &yes, sizeof(yes) },
		{ CKA_ENCRYPT, &no, sizeof(no) },
		{ CKA_DECRYPT, &no, sizeof(no) },
		{ CKA_WRAP, &no, sizeof(no) },
	};
	CK_ATTRIBUTE tpriv[16];
	CK_OBJECT_HANDLE aes;
	size_t n = imported_private(tpriv, 0, label, id, idlen);
	CK_RV rv;

	if (bloblen <= kek_len)
		return CKR_WRAPPED_KEY_LEN_RANGE;
	rv = fn->C_UnwrapKey(s, &m, kek, (unsigned char *)blob, kek_len, taes,
			     sizeof(taes) / sizeof(taes[0]), &aes);
	if (rv != CKR_OK)
		return rv;
	rv = fn->C_UnwrapKey(s, &kwp, aes, (unsigned char *)blob + kek_len,
			     bloblen - kek_len, tpriv, n, priv);
	fn->C_DestroyObject(s, aes);
	return rv;
}

/* DER of the prime256v1 OID, as CKA_EC_PARAMS. */
static const unsigned char p256_params[] = { 0x06, 0x08, 0x2a, 0x86, 0x48,
					     0xce, 0x3d, 0x03, 0x01, 0x07 };

CK_RV p11_generate_ec_p256(struct p11_token *tok, CK_SESSION_HANDLE s,
			   const char *label, const unsigned char *id,
			   size_t idlen, CK_OBJECT_HANDLE *pub,
			   CK_OBJECT_HANDLE *priv)
{
	const CK_ATTRIBUTE params[] = {
		{ CKA_EC_PARAMS, (void *)p256_params, sizeof(p256_params) },
	};

	return generate_pair(tok, s, CKM_EC_KEY_PAIR_GEN, params, 1, CKA_SIGN,
			     label, id, idlen, pub, priv);
}

CK_RV p11_generate_hmac_secret(struct p11_token *tok, CK_SESSION_HANDLE s,
			       const char *label, size_t len,
			       CK_OBJECT_HANDLE *obj)
{
	CK_MECHANISM mech = { CKM_GENERIC_SECRET_KEY_GEN, NULL, 0 };
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE type = CKK_GENERIC_SECRET;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_ULONG vlen = len;
	/* HMAC-only: it signs and does nothing else. */
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_KEY_TYPE, &type, sizeof(type) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_PRIVATE, &yes, sizeof(yes) },
		{ CKA_MODIFIABLE, &no, sizeof(no) },
		{ CKA_SENSITIVE, &yes, sizeof(yes) },
		{ CKA_EXTRACTABLE, &no, sizeof(no) },
		{ CKA_SIGN, &yes, sizeof(yes) },
		{ CKA_VERIFY, &no, sizeof(no) },
		{ CKA_ENCRYPT, &no, sizeof(no) },
		{ CKA_DECRYPT, &no, sizeof(no) },
		{ CKA_WRAP, &no, sizeof(no) },
		{ CKA_UNWRAP, &no, sizeof(no) },
		{ CKA_DERIVE, &no, sizeof(no) },
		{ CKA_VALUE_LEN, &vlen, sizeof(vlen) },
		{ CKA_LABEL, (void *)label, strlen(label) },
	};

	return p11_token_functions(tok)->C_GenerateKey(
		s, &mech, t, sizeof(t) / sizeof(t[0]), obj);
}

/* ---- using keys ---- */

bool p11_mech_offered(struct p11_token *tok, enum p11_mech mech, bool decrypt)
{
	CK_RSA_PKCS_OAEP_PARAMS p;
	CK_MECHANISM m = mechanism(mech, &p);
	CK_MECHANISM_INFO mi;

	return p11_token_functions(tok)->C_GetMechanismInfo(
		       p11_token_slot(tok), m.mechanism, &mi) == CKR_OK &&
	       (mi.flags & (decrypt ? CKF_DECRYPT : CKF_SIGN));
}

CK_RV p11_decrypt(struct p11_token *tok, CK_SESSION_HANDLE s,
		  CK_OBJECT_HANDLE key, enum p11_mech mech,
		  const unsigned char *in, size_t inlen, unsigned char *out,
		  size_t out_max, size_t *outlen, bool *began)
{
	CK_FUNCTION_LIST *fn = p11_token_functions(tok);
	CK_RSA_PKCS_OAEP_PARAMS p;
	CK_MECHANISM m = mechanism(mech, &p);
	CK_ULONG n = out_max;
	CK_RV rv;

	*outlen = 0;
	if ((*began = (rv = fn->C_DecryptInit(s, &m, key)) == CKR_OK) == false)
		return rv;
	rv = fn->C_Decrypt(s, (unsigned char *)in, inlen, out, &n);
	*outlen = rv == CKR_OK ? n : 0;
	return rv;
}

CK_RV p11_sign(struct p11_token *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key,
	       enum p11_mech mech, const unsigned char *in, size_t inlen,
	       unsigned char *sig, size_t sig_max, size_t *siglen)
{
	CK_FUNCTION_LIST *fn = p11_token_functions(tok);
	CK_RSA_PKCS_OAEP_PARAMS p;
	CK_MECHANISM m = mechanism(mech, &p);
	CK_ULONG n = sig_max;
	CK_RV rv;

	if ((rv = fn->C_SignInit(s, &m, key)) != CKR_OK)
		return rv;
	rv = fn->C_Sign(s, (unsigned char *)in, inlen, sig, &n);
	*siglen = rv == CKR_OK ? n : 0;
	return rv;
}
