// SPDX-License-Identifier: MIT
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kb_b64.h"
#include "kb_cursor.h"
#include "kb_error.h"
#include "kb_json.h"
#include "kb_jws.h"
#include "kb_jwt.h"
#include "kb_kid.h"

/* Equality of public strings without an early exit on the first byte. */
static bool str_equal(const char *a, size_t alen, const char *b)
{
	size_t blen = strlen(b);

	return alen == blen && CRYPTO_memcmp(a, b, alen) == 0;
}

/* Decodes one base64url segment and parses it as a JSON object. */
static json_t *segment_json(const char *seg, size_t len)
{
	unsigned char *buf = malloc(len + 1);
	json_t *o = NULL;
	size_t n;

	if (buf == NULL)
		return NULL;
	if (kb_b64_decode(buf, len, &n, seg, len) == 0) {
		o = json_loadb((const char *)buf, n, JSON_REJECT_DUPLICATES,
			       NULL);
		if (o != NULL && !json_is_object(o)) {
			json_decref(o);
			o = NULL;
		}
	}
	free(buf);
	return o;
}

/* floor(n / 2) for the order n of P-256, big-endian. */
static const unsigned char p256_half_order[32] = {
	0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xde, 0x73, 0x7d, 0x56, 0xd3, 0x8b,
	0xcf, 0x42, 0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31, 0x92, 0xa8,
};
static const unsigned char p256_order[32] = {
	0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17,
	0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
};

/* True if the s half of an ES256 signature r || s is above n/2. */
static bool high_s(const unsigned char *sig)
{
	return memcmp(sig + 32, p256_half_order, 32) > 0;
}

/* s := n - s (public values: no need for constant time). */
static void negate_s(unsigned char *sig)
{
	unsigned int borrow = 0, d;
	int i;

	for (i = 31; i >= 0; i--) {
		d = (unsigned int)p256_order[i] - sig[32 + i] - borrow;
		sig[32 + i] = (unsigned char)d;
		borrow = d >> 8 & 1;
	}
}

/* JWS ES256 signatures are r || s (32 bytes each); EVP wants DER. */
static int es256_der(const unsigned char *sig, size_t len, unsigned char **der,
		     int *derlen)
{
	ECDSA_SIG *s;
	BIGNUM *r, *ss;

	*der = NULL;
	if (len != 64 || (s = ECDSA_SIG_new()) == NULL)
		return -1;
	r = BN_bin2bn(sig, 32, NULL);
	ss = BN_bin2bn(sig + 32, 32, NULL);
	if (r == NULL || ss == NULL || ECDSA_SIG_set0(s, r, ss) != 1) {
		BN_free(r);
		BN_free(ss);
		ECDSA_SIG_free(s);
		return -1;
	}
	*derlen = i2d_ECDSA_SIG(s, der);
	ECDSA_SIG_free(s);
	return *derlen > 0 ? 0 : -1;
}

static bool signature_ok(unsigned int alg, const struct kb_jwk *key,
			 const char *input, size_t inlen,
			 const unsigned char *sig, size_t siglen)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pctx = NULL;
	unsigned char *der = NULL;
	int derlen = 0;
	bool ok = false;

	if (md == NULL)
		return false;
	if ((alg == KB_JWS_ES256) != (key->type == KB_JWK_EC_P256))
		goto out;
	if (EVP_DigestVerifyInit(md, &pctx, EVP_sha256(), NULL, key->pkey) != 1)
		goto out;
	if (alg == KB_JWS_PS256 &&
	    (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
	     EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32) != 1 ||
	     EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) != 1))
		goto out;
	if (alg == KB_JWS_RS256 &&
	    EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) != 1)
		goto out;
	if (alg == KB_JWS_ES256) {
		if (es256_der(sig, siglen, &der, &derlen) != 0)
			goto out;
		sig = der;
		siglen = (size_t)derlen;
	}
	ok = EVP_DigestVerify(md, sig, siglen, (const unsigned char *)input,
			      inlen) == 1;
out:
	OPENSSL_free(der);
	EVP_MD_CTX_free(md);
	return ok;
}

static int check_header(const json_t *h, const struct kb_jwt_issuer *iss,
			unsigned int *alg, const struct kb_jwk **key, char *err,
			size_t errlen)
{
	static const char *const refused[] = { "jwk", "jku", "x5u", "x5c",
					       "crit" };
	const json_t *a = json_object_get(h, "alg");
	const json_t *kid = json_object_get(h, "kid");
	const json_t *typ = json_object_get(h, "typ");
	size_t i;

	for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		if (json_object_get(h, refused[i]) != NULL)
			return kb_errorf(err, errlen,
					 "token header carries \"%s\"; "
					 "refused",
					 refused[i]);
	if (!json_is_string(a))
		return kb_errorf(err, errlen, "token header has no \"alg\"");
	if (kb_jws_alg_parse(json_string_value(a), alg) != 0 ||
	    !(iss->algs & *alg))
		return kb_errorf(err, errlen,
				 "token algorithm is not accepted for "
				 "issuer %s",
				 iss->issuer);
	if (typ != NULL && (!json_is_string(typ) ||
			    strcasecmp(json_string_value(typ), "JWT") != 0))
		return kb_errorf(err, errlen, "token \"typ\" is not JWT");
	if (kid != NULL &&
	    (!json_is_string(kid) || json_string_length(kid) > KB_JWK_KID_MAX))
		return kb_errorf(err, errlen, "token \"kid\" is malformed");
	*key = kb_jwks_find(iss->keys, kid ? json_string_value(kid) : NULL);
	if (*key == NULL)
		return kb_errorf(err, errlen,
				 "token \"kid\" matches no key of "
				 "issuer %s",
				 iss->issuer);
	return 0;
}

static bool audience_ok(const json_t *aud, const char *want)
{
	size_t i;

	if (json_is_string(aud))
		return str_equal(json_string_value(aud),
				 json_string_length(aud), want);
	if (!json_is_array(aud))
		return false;
	for (i = 0; i < json_array_size(aud); i++) {
		const json_t *a = json_array_get(aud, i);

		if (json_is_string(a) && str_equal(json_string_value(a),
						   json_string_length(a), want))
			return true;
	}
	return false;
}

static int get_time(const json_t *p, const char *name, int64_t *out)
{
	const json_t *v = json_object_get(p, name);

	*out = 0;
	if (v == NULL)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return -1;
	*out = json_integer_value(v);
	return 1;
}

static int copy_claim(const json_t *p, const char *name, char *out)
{
	const json_t *v = json_object_get(p, name);

	out[0] = '\0';
	if (v == NULL)
		return 0;
	if (!json_is_string(v) || json_string_length(v) == 0 ||
	    json_string_length(v) > KB_JWT_CLAIM_MAX)
		return -1;
	memcpy(out, json_string_value(v), json_string_length(v) + 1);
	return 1;
}

static int check_claims(const json_t *p, const struct kb_jwt_issuer *iss,
			int64_t now, struct kb_jwt_claims *c, char *err,
			size_t errlen)
{
	int has_exp, has_nbf, has_iat;
	int64_t start;

	if (!audience_ok(json_object_get(p, "aud"), iss->audience))
		return kb_errorf(err, errlen, "token audience is not %s",
				 iss->audience);
	if ((has_exp = get_time(p, "exp", &c->exp)) < 0 ||
	    (has_nbf = get_time(p, "nbf", &c->nbf)) < 0 ||
	    (has_iat = get_time(p, "iat", &c->iat)) < 0)
		return kb_errorf(err, errlen,
				 "token exp, nbf or iat is not a "
				 "NumericDate");
	if (!has_exp)
		return kb_errorf(err, errlen, "token has no \"exp\"");
	if (now >= c->exp)
		return kb_errorf(err, errlen, "token expired");
	if (has_nbf && c->nbf > now + KB_JWT_LEEWAY_S)
		return kb_errorf(err, errlen, "token not valid yet (nbf)");
	if (has_iat && c->iat > now + KB_JWT_LEEWAY_S)
		return kb_errorf(err, errlen,
				 "token issued in the future (iat)");
	if (!has_iat && !has_nbf)
		return kb_errorf(err, errlen,
				 "token has neither iat nor nbf, so "
				 "its lifetime is unbounded");
	start = has_iat ? c->iat : c->nbf;
	if (c->exp - start > iss->max_lifetime_s)
		return kb_errorf(err, errlen,
				 "token lifetime exceeds the %lld s "
				 "allowed for issuer %s",
				 (long long)iss->max_lifetime_s, iss->issuer);
	if (copy_claim(p, iss->identity_claim, c->subject) != 1)
		return kb_errorf(err, errlen,
				 "token has no usable \"%s\" claim",
				 iss->identity_claim);
	if (copy_claim(p, "jti", c->jti) < 0)
		return kb_errorf(err, errlen, "token \"jti\" is malformed");
	return 0;
}

int kb_jwt_verify(const char *token, size_t len,
		  const struct kb_jwt_issuer *issuers, size_t nissuers,
		  int64_t now, kb_jwt_revoked_fn revoked, void *revoked_arg,
		  struct kb_jwt_claims *claims, char *err, size_t errlen)
{
	const struct kb_jwt_issuer *iss = NULL;
	const char *h64, *p64, *sig64;
	size_t hlen, plen, siglen64;
	struct kb_cursor c;
	bool three;
	unsigned char sig[1024];
	const struct kb_jwk *key;
	json_t *h = NULL, *p = NULL, *iv;
	unsigned int alg;
	size_t i, siglen;
	int r = -1;

	memset(claims, 0, sizeof(*claims));
	if (len > KB_JWT_MAX)
		return kb_errorf(err, errlen, "token longer than %d bytes",
				 KB_JWT_MAX);
	/* header.payload.signature */
	kb_cursor_init(&c, token, len);
	three = kb_cursor_until(&c, '.', &h64, &hlen) &&
		kb_cursor_until(&c, '.', &p64, &plen);
	kb_cursor_rest(&c, &sig64, &siglen64);
	if (!three || memchr(sig64, '.', siglen64) != NULL)
		return kb_errorf(err, errlen,
				 "token is not three dot-separated "
				 "parts");
	h = segment_json(h64, hlen);
	p = segment_json(p64, plen);
	if (h == NULL || p == NULL) {
		kb_errorf(err, errlen,
			  "token header or payload is not base64url "
			  "JSON");
		goto out;
	}
	iv = json_object_get(p, "iss");
	for (i = 0; json_is_string(iv) && i < nissuers; i++)
		if (str_equal(json_string_value(iv), json_string_length(iv),
			      issuers[i].issuer))
			iss = &issuers[i];
	if (iss == NULL) {
		kb_errorf(err, errlen, "token issuer is not trusted");
		goto out;
	}
	if (check_header(h, iss, &alg, &key, err, errlen) != 0)
		goto out;
	/* The signing input is header.payload, as it came. */
	if (kb_b64_decode(sig, sizeof(sig), &siglen, sig64, siglen64) != 0 ||
	    !signature_ok(alg, key, token, hlen + 1 + plen, sig, siglen)) {
		kb_errorf(err, errlen, "token signature is invalid");
		goto out;
	}
	if (alg == KB_JWS_ES256 && iss->low_s_only && high_s(sig)) {
		kb_errorf(err, errlen,
			  "token signature is not in low-s form, as issuer %s "
			  "makes them",
			  iss->issuer);
		goto out;
	}
	if (check_claims(p, iss, now, claims, err, errlen) != 0)
		goto out;
	if (claims->jti[0] != '\0' && revoked != NULL &&
	    revoked(claims->jti, revoked_arg)) {
		kb_errorf(err, errlen, "token has been revoked");
		goto out;
	}
	claims->issuer = iss;
	r = 0;
out:
	if (r != 0)
		memset(claims, 0, sizeof(*claims));
	json_decref(h);
	json_decref(p);
	return r;
}

/* Appends the base64url of json text to out at *len; -1 if no room. */
static int append_b64_json(json_t *o, char *out, size_t outmax, size_t *len)
{
	char *text = kb_json_text(o, JSON_COMPACT | JSON_SORT_KEYS, NULL);
	size_t n;

	if (text == NULL)
		return -1;
	n = strlen(text);
	if (kb_b64_encoded_len(n) + 1 > outmax - *len) {
		free(text);
		return -1;
	}
	*len += kb_b64_encode(out + *len, (unsigned char *)text, n);
	free(text);
	return 0;
}

int kb_jwt_mint(const struct kb_jwt_mint *m, kb_jwt_sign_fn sign, void *arg,
		char *out, size_t outmax, char *jti)
{
	unsigned char rnd[16], digest[32], sig[64];
	json_t *h, *p;
	size_t len = 0;
	int r = -1;

	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return -1;
	kb_hex_encode(jti, rnd, sizeof(rnd));
	h = json_pack("{s:s, s:s, s:s}", "alg", "ES256", "typ", "JWT", "kid",
		      m->kid);
	p = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:s}", "iss", m->issuer,
		      "sub", m->subject, "aud", m->audience, "iat",
		      (json_int_t)m->now, "nbf", (json_int_t)m->now, "exp",
		      (json_int_t)(m->now + m->ttl_s), "jti", jti);
	if (h == NULL || p == NULL || outmax < 2 ||
	    append_b64_json(h, out, outmax, &len) != 0)
		goto out;
	out[len++] = '.';
	if (append_b64_json(p, out, outmax, &len) != 0 ||
	    EVP_Digest(out, len, digest, NULL, EVP_sha256(), NULL) != 1 ||
	    sign(digest, sig, arg) != 0 ||
	    kb_b64_encoded_len(sizeof(sig)) + 2 > outmax - len)
		goto out;
	if (high_s(sig))
		negate_s(sig);
	out[len++] = '.';
	len += kb_b64_encode(out + len, sig, sizeof(sig));
	r = (int)len;
out:
	json_decref(h);
	json_decref(p);
	return r;
}
