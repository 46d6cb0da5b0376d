/* SPDX-License-Identifier: MIT */
/*
 * Objects in a token and the operations on them, as plain requests:
 * find by class, type, label and application; read a set of attributes
 * in one call; create a data object; destroy; generate the three kinds
 * of keys keybroker makes; decrypt and sign with a named mechanism.
 * Callers pass the session (from p11_token_open_session) and get handles,
 * bytes and CK_RV codes back (p11_rv_name, p11_rv_is_token_lost in
 * p11_token.h); they build no templates and call no C_ function. Nothing
 * here knows what the objects mean.
 */
#ifndef P11_OBJECT_H
#define P11_OBJECT_H

#include <p11-kit/pkcs11.h>
#include <stdbool.h>
#include <stddef.h>

#include "p11_token.h"

#define P11_LABEL_MAX 255 /* bytes of a CKA_LABEL p11_read returns */
#define P11_ID_MAX 64 /* bytes of a CKA_ID */
#define P11_MODULUS_MAX 512 /* 4096-bit keys */
#define P11_EXPONENT_MAX 8
#define P11_EC_POINT_MAX 80

enum p11_class {
	P11_CLASS_ANY,
	P11_CLASS_PRIVATE_KEY,
	P11_CLASS_PUBLIC_KEY,
	P11_CLASS_SECRET_KEY,
	P11_CLASS_DATA,
};

enum p11_key_type {
	P11_TYPE_ANY,
	P11_TYPE_RSA,
	P11_TYPE_EC,
};

/* CKA_CLASS of cls (for the adapter's own files). */
CK_OBJECT_CLASS p11_class_ck(enum p11_class cls);

/* Which objects p11_find returns: all that match every field given. */
struct p11_match {
	enum p11_class cls;
	enum p11_key_type type;
	const char *label; /* NULL: any */
	const char *application; /* CKA_APPLICATION; NULL: any */
	bool private_only; /* only CKA_PRIVATE objects (made with the PIN) */
};

/*
 * Every matching object; *out is malloc'ed (NULL if none). KB_STATUS_OK,
 * KB_ERR_HSM, KB_ERR_NOMEM.
 */
int p11_find(struct p11_token *tok, CK_SESSION_HANDLE s,
	     const struct p11_match *m, CK_OBJECT_HANDLE **out, size_t *n);

/*
 * The attributes p11_read reads; the boolean ones (P11_A_PRIVATE and
 * after) end up in set as well.
 */
enum {
	P11_A_LABEL = 1u << 0,
	P11_A_ID = 1u << 1,
	P11_A_VALUE = 1u << 2, /* into the caller's value buffer */
	P11_A_MODULUS = 1u << 3, /* without leading zero bytes */
	P11_A_EXPONENT = 1u << 4,
	P11_A_EC_POINT = 1u << 5,
	P11_A_PRIVATE = 1u << 6,
	P11_A_SENSITIVE = 1u << 7,
	P11_A_EXTRACTABLE = 1u << 8,
	P11_A_LOCAL = 1u << 9,
	P11_A_ALWAYS_SENSITIVE = 1u << 10,
	P11_A_NEVER_EXTRACTABLE = 1u << 11,
	P11_A_DECRYPT = 1u << 12,
	P11_A_UNWRAP = 1u << 13,
	P11_A_DERIVE = 1u << 14,
};

struct p11_object {
	unsigned int have; /* the P11_A_* read */
	unsigned int set; /* the boolean ones read as true */
	char label[P11_LABEL_MAX + 1]; /* NUL-terminated */
	size_t label_len;
	unsigned char id[P11_ID_MAX];
	size_t id_len;
	unsigned char modulus[P11_MODULUS_MAX];
	size_t modulus_len;
	unsigned char exponent[P11_EXPONENT_MAX];
	size_t exponent_len;
	unsigned char ec_point[P11_EC_POINT_MAX];
	size_t ec_point_len;
	/* CKA_VALUE: set value and value_max before the call. */
	void *value;
	size_t value_max, value_len;
};

/*
 * Reads the attributes want (P11_A_*) of obj in one call. Each that the
 * module cannot return (absent, sensitive, longer than its buffer) is
 * left out of o->have; so is every one if the call fails. KB_STATUS_OK, or
 * KB_ERR_HSM if the token is gone.
 */
int p11_read(struct p11_token *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE obj,
	     unsigned int want, struct p11_object *o);

/* A private token data object of application, label and value. */
CK_RV p11_create_data(struct p11_token *tok, CK_SESSION_HANDLE s,
		      const char *application, const char *label,
		      const void *value, size_t len, CK_OBJECT_HANDLE *obj);

/* Destroys obj; CKR_OK also if it was already gone. */
CK_RV p11_destroy(struct p11_token *tok, CK_SESSION_HANDLE s,
		  CK_OBJECT_HANDLE obj);

/*
 * Generates a key pair in the token, private and public objects of label
 * and id, not modifiable, the private key sensitive and never extractable:
 * RSA of bits (exponent 65537) that only decrypts (or, with kek, only
 * unwraps: a key-exchange key), or EC P-256 that only signs. Every other
 * usage is set false.
 */
CK_RV p11_generate_rsa(struct p11_token *tok, CK_SESSION_HANDLE s,
		       unsigned int bits, bool kek, const char *label,
		       const unsigned char *id, size_t idlen,
		       CK_OBJECT_HANDLE *pub, CK_OBJECT_HANDLE *priv);
CK_RV p11_generate_ec_p256(struct p11_token *tok, CK_SESSION_HANDLE s,
			   const char *label, const unsigned char *id,
			   size_t idlen, CK_OBJECT_HANDLE *pub,
			   CK_OBJECT_HANDLE *priv);
/* An RSA public key object of modulus n and exponent e that does nothing. */
CK_RV p11_create_rsa_public(struct p11_token *tok, CK_SESSION_HANDLE s,
			    const unsigned char *n, size_t nlen,
			    const unsigned char *e, size_t elen,
			    const char *label, const unsigned char *id,
			    size_t idlen, CK_OBJECT_HANDLE *pub);

/* The parts of an RSA private key, big-endian (secrets, for the caller to wipe). */
struct p11_rsa_parts {
	const unsigned char *n, *e, *d, *p, *q, *dp, *dq, *qi;
	size_t nlen, elen, dlen, plen, qlen, dplen, dqlen, qilen;
};

/*
 * Brings an RSA key into the token from its parts (C_CreateObject): a
 * private key that only decrypts, sensitive and not extractable from now
 * on (it was not generated there: CKA_LOCAL is false), and its public
 * key. On failure nothing stays.
 */
CK_RV p11_import_rsa(struct p11_token *tok, CK_SESSION_HANDLE s,
		     const struct p11_rsa_parts *k, const char *label,
		     const unsigned char *id, size_t idlen,
		     CK_OBJECT_HANDLE *pub, CK_OBJECT_HANDLE *priv);

enum p11_mech {
	P11_MECH_RSA_RAW, /* CKM_RSA_X_509 */
	P11_MECH_RSA_OAEP_SHA1, /* CKM_RSA_PKCS_OAEP, SHA-1, MGF1-SHA-1 */
	P11_MECH_RSA_OAEP_SHA256, /* ..., SHA-256, MGF1-SHA-256 */
	P11_MECH_ECDSA, /* CKM_ECDSA over a digest */
	P11_MECH_SHA256_HMAC,
};

/*
 * Unwraps an RSA private key into the token as CKM_RSA_AES_KEY_WRAP lays
 * it out: blob is an AES key OAEP-wrapped (oaep: P11_MECH_RSA_OAEP_*)
 * under kek (kek_len bytes, its modulus), then the key's PKCS#8 wrapped
 * with that AES key by AES-KWP (RFC 5649). Done in two steps (the AES key
 * lives only as a session object, destroyed after), which every token
 * with CKM_RSA_PKCS_OAEP and CKM_AES_KEY_WRAP_PAD can do. The private key
 * is as p11_import_rsa's; no public key object is made.
 */
CK_RV p11_unwrap_rsa_aes(struct p11_token *tok, CK_SESSION_HANDLE s,
			 CK_OBJECT_HANDLE kek, enum p11_mech oaep,
			 size_t kek_len, const unsigned char *blob,
			 size_t bloblen, const char *label,
			 const unsigned char *id, size_t idlen,
			 CK_OBJECT_HANDLE *priv);

/* A secret of len bytes in the token that only signs (HMAC). */
CK_RV p11_generate_hmac_secret(struct p11_token *tok, CK_SESSION_HANDLE s,
			       const char *label, size_t len,
			       CK_OBJECT_HANDLE *obj);

/* Whether the token offers mech for decrypting (or else signing). */
bool p11_mech_offered(struct p11_token *tok, enum p11_mech mech, bool decrypt);

/*
 * Decrypts in[0..inlen) with key into out (out_max bytes): *outlen is
 * what came out. *began says whether the module took key and mechanism
 * (so that a failure after it is about the input). out_max must hold
 * the whole result (a modulus): then every failure ends the operation,
 * as CKR_BUFFER_TOO_SMALL, the one that does not, cannot happen.
 */
CK_RV p11_decrypt(struct p11_token *tok, CK_SESSION_HANDLE s,
		  CK_OBJECT_HANDLE key, enum p11_mech mech,
		  const unsigned char *in, size_t inlen, unsigned char *out,
		  size_t out_max, size_t *outlen, bool *began);

/* Signs in[0..inlen) with key into sig (sig_max bytes, *siglen used). */
CK_RV p11_sign(struct p11_token *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key,
	       enum p11_mech mech, const unsigned char *in, size_t inlen,
	       unsigned char *sig, size_t sig_max, size_t *siglen);

#endif
