// SPDX-License-Identifier: MIT
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <string.h>

#include "kb_ct.h"
#include "kb_pkcs1.h"

#define PKCS1_MAX_K 1024 /* 8192-bit modulus */
#define LEN_CANDIDATES 128 /* 16-bit candidate lengths from the PRF */
#define PS_MIN 8 /* at least 8 bytes of non-zero padding */

/*
 * The draft's PRF: HMAC-SHA-256 under kdk of a 16-bit block counter, the
 * label and the output length in bits, concatenated until out is full.
 */
static int prf(unsigned char *out, size_t outlen, const char *label,
	       const unsigned char *kdk)
{
	unsigned char block[32], be[4];
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
						 (char *)"SHA256", 0),
		OSSL_PARAM_construct_end(),
	};
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
	size_t pos, n, bits = outlen * 8;
	unsigned int iter;
	int r = -1;

	if (ctx == NULL || bits > 0xffff)
		goto out;
	be[2] = (unsigned char)(bits >> 8);
	be[3] = (unsigned char)bits;
	for (pos = 0, iter = 0; pos < outlen; pos += n, iter++) {
		be[0] = (unsigned char)(iter >> 8);
		be[1] = (unsigned char)iter;
		if (EVP_MAC_init(ctx, kdk, KB_PKCS1_KDK_LEN, params) != 1 ||
		    EVP_MAC_update(ctx, be, 2) != 1 ||
		    EVP_MAC_update(ctx, (const unsigned char *)label,
				   strlen(label)) != 1 ||
		    EVP_MAC_update(ctx, be + 2, 2) != 1 ||
		    EVP_MAC_final(ctx, block, &n, sizeof(block)) != 1 ||
		    n != sizeof(block))
			goto out;
		n = outlen - pos < n ? outlen - pos : n;
		memcpy(out + pos, block, n);
	}
	r = 0;
out:
	OPENSSL_cleanse(block, sizeof(block));
	EVP_MAC_CTX_free(ctx);
	EVP_MAC_free(mac);
	return r;
}

/* The length of the synthetic message: the last candidate in range. */
static unsigned int synthetic_length(const unsigned char *cand, size_t k)
{
	unsigned int max = (unsigned int)(k - 2 - PS_MIN), mask = max, len = 0;
	unsigned int c, i;

	/* Every bit below max's top bit: candidates are drawn in that range. */
	mask |= mask >> 1;
	mask |= mask >> 2;
	mask |= mask >> 4;
	mask |= mask >> 8;
	for (i = 0; i < LEN_CANDIDATES; i++) {
		c = ((unsigned int)cand[2 * i] << 8 | cand[2 * i + 1]) & mask;
		len = kb_ct_select(kb_ct_lt(c, max), c, len);
	}
	return len;
}

int kb_pkcs1_decode(unsigned char *out, size_t outmax, size_t *outlen,
		    const unsigned char *em, size_t k,
		    const unsigned char kdk[KB_PKCS1_KDK_LEN])
{
	unsigned char synth[PKCS1_MAX_K], cand[LEN_CANDIDATES * 2];
	unsigned int good, found = 0, zero_at = 0, at, is_zero, mask;
	size_t i, bit;
	int r = -1;

	/* Public checks on sizes only. */
	if (k > PKCS1_MAX_K || k < 2 + PS_MIN + 1 || outmax < k)
		return -1;
	/* The alternative message is made first, whatever em holds. */
	if (prf(synth, k, "message", kdk) != 0 ||
	    prf(cand, sizeof(cand), "length", kdk) != 0)
		goto out;

	good = kb_ct_is_zero(em[0]) & kb_ct_eq(em[1], 2);
	for (i = 2; i < k; i++) {
		is_zero = kb_ct_is_zero(em[i]);
		zero_at = kb_ct_select(~found & is_zero, (unsigned int)i,
				       zero_at);
		found |= is_zero;
	}
	/* PS of at least 8 bytes; zero_at stays 0 if there is no separator. */
	good &= kb_ct_ge(zero_at, 2 + PS_MIN);
	at = kb_ct_select(good, zero_at + 1,
			  (unsigned int)k - synthetic_length(cand, k));
	/*
	 * Both buffers are read at every index, then the message is moved
	 * to the front by a log-time barrel shift, so neither the memory
	 * touched nor the loops depend on good or on where it starts. Its
	 * length says nothing of good: both messages have lengths of their
	 * own.
	 */
	for (i = 0; i < k; i++)
		synth[i] = (unsigned char)kb_ct_select(good, em[i], synth[i]);
	for (bit = 1; bit < k; bit <<= 1) {
		mask = ~kb_ct_is_zero(at & (unsigned int)bit);
		for (i = 0; i < k; i++)
			synth[i] = (unsigned char)kb_ct_select(
				mask, i + bit < k ? synth[i + bit] : 0,
				synth[i]);
	}
	memcpy(out, synth, k);
	*outlen = k - at;
	r = 0;
out:
	OPENSSL_cleanse(synth, sizeof(synth));
	OPENSSL_cleanse(cand, sizeof(cand));
	return r;
}
