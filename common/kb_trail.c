// SPDX-License-Identifier: MIT
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "kb_b64.h"
#include "kb_kid.h"
#include "kb_trail.h"

void kb_trail_hash_hex(const char *line, size_t len,
		       char hex[KB_TRAIL_HEX_LEN + 1])
{
	unsigned char md[KB_TRAIL_HASH_LEN];

	EVP_Digest(line, len, md, NULL, EVP_sha256(), NULL);
	kb_hex_encode(hex, md, sizeof(md));
}

size_t kb_trail_signed_text(char *buf, const char *origin, uint64_t size,
			    const char *head, const char *reason)
{
	int n;

	if (strlen(origin) > KB_TRAIL_ORIGIN_MAX || strlen(reason) > 16)
		return 0;
	n = snprintf(buf, KB_TRAIL_SIGNED_MAX,
		     "keybroker audit checkpoint v1\norigin %s\nsize %llu\n"
		     "head %s\nreason %s\n",
		     origin, (unsigned long long)size, head, reason);
	return n > 0 && n < KB_TRAIL_SIGNED_MAX ? (size_t)n : 0;
}

int kb_trail_keyid(EVP_PKEY *pub, char keyid[KB_TRAIL_KEYID_LEN + 1])
{
	unsigned char point[65], md[KB_TRAIL_HASH_LEN];
	char x[44], y[44], json[160];
	size_t n;
	int len;

	if (!EVP_PKEY_is_a(pub, "EC") ||
	    EVP_PKEY_get_octet_string_param(pub, OSSL_PKEY_PARAM_PUB_KEY, point,
					    sizeof(point), &n) != 1 ||
	    n != sizeof(point) || point[0] != 0x04)
		return -1;
	kb_b64_encode(x, point + 1, 32);
	kb_b64_encode(y, point + 33, 32);
	/* RFC 7638: the required members, sorted, no whitespace. */
	len = snprintf(json, sizeof(json),
		       "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":"
		       "\"%s\"}",
		       x, y);
	if (len <= 0 || (size_t)len >= sizeof(json))
		return -1;
	EVP_Digest(json, (size_t)len, md, NULL, EVP_sha256(), NULL);
	kb_b64_encode(keyid, md, sizeof(md));
	return 0;
}

bool kb_trail_verify(EVP_PKEY *pub, const char *text, size_t len,
		     const unsigned char sig[KB_TRAIL_SIG_LEN])
{
	ECDSA_SIG *es = ECDSA_SIG_new();
	BIGNUM *r = BN_bin2bn(sig, 32, NULL),
	       *s = BN_bin2bn(sig + 32, 32, NULL);
	EVP_MD_CTX *ctx = NULL;
	unsigned char *der = NULL;
	bool ok = false;
	int dlen;

	if (es == NULL || r == NULL || s == NULL ||
	    ECDSA_SIG_set0(es, r, s) != 1)
		goto out;
	r = s = NULL; /* es has them */
	if ((dlen = i2d_ECDSA_SIG(es, &der)) <= 0 ||
	    (ctx = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pub) != 1)
		goto out;
	ok = EVP_DigestVerify(ctx, der, (size_t)dlen,
			      (const unsigned char *)text, len) == 1;
out:
	EVP_MD_CTX_free(ctx);
	OPENSSL_free(der);
	BN_free(r);
	BN_free(s);
	ECDSA_SIG_free(es);
	return ok;
}

void kb_trail_time(char buf[KB_TRAIL_TIME_LEN])
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	if (strftime(buf, 20, "%Y-%m-%dT%H:%M:%S", &tm) != 19)
		memcpy(buf, "0000-00-00T00:00:00", 20);
	snprintf(buf + 19, KB_TRAIL_TIME_LEN - 19, ".%06uZ",
		 (unsigned int)(ts.tv_nsec / 1000) % 1000000u);
}
