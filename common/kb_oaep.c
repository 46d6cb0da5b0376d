// SPDX-License-Identifier: MIT
#include <openssl/crypto.h>
#include <stdint.h>
#include <string.h>

#include "kb_ct.h"
#include "kb_oaep.h"
#include "kb_secret.h"

#define OAEP_MAX_K 1024 /* 8192-bit modulus */

/* mask ^= MGF1(seed, masklen) */
static int mgf1_xor(unsigned char *mask, size_t masklen,
		    const unsigned char *seed, size_t seedlen, const EVP_MD *md)
{
	unsigned char digest[EVP_MAX_MD_SIZE], ctr[4];
	unsigned int mdlen = (unsigned int)EVP_MD_get_size(md), dl, i;
	EVP_MD_CTX *c;
	size_t done = 0, n;
	uint32_t counter = 0;
	int r = -1;

	if ((c = EVP_MD_CTX_new()) == NULL)
		return -1;
	while (done < masklen) {
		ctr[0] = (unsigned char)(counter >> 24);
		ctr[1] = (unsigned char)(counter >> 16);
		ctr[2] = (unsigned char)(counter >> 8);
		ctr[3] = (unsigned char)counter;
		if (EVP_DigestInit_ex(c, md, NULL) != 1 ||
		    EVP_DigestUpdate(c, seed, seedlen) != 1 ||
		    EVP_DigestUpdate(c, ctr, 4) != 1 ||
		    EVP_DigestFinal_ex(c, digest, &dl) != 1 || dl != mdlen)
			goto out;
		n = masklen - done < mdlen ? masklen - done : mdlen;
		for (i = 0; i < n; i++)
			mask[done + i] ^= digest[i];
		done += n;
		counter++;
	}
	r = 0;
out:
	OPENSSL_cleanse(digest, sizeof(digest));
	EVP_MD_CTX_free(c);
	return r;
}

int kb_oaep_decode(unsigned char *out, size_t outmax, size_t *outlen,
		   const unsigned char *em, size_t k, const EVP_MD *md)
{
	unsigned char buf[OAEP_MAX_K], lhash[EVP_MAX_MD_SIZE];
	unsigned char *seed, *db, *msg;
	unsigned int good, found = 0, one_at = 0, shift, mask;
	size_t hlen, dblen, mlen_max, i, bit;
	int mdsize = EVP_MD_get_size(md), r = -1;

	if (mdsize <= 0)
		return -1;
	hlen = (size_t)mdsize;
	/* Public checks on sizes only. */
	if (k > sizeof(buf) || k < 2 * hlen + 2 || outmax < k)
		return -1;
	if (EVP_Digest("", 0, lhash, NULL, md, NULL) != 1)
		return -1;
	memcpy(buf, em, k);
	seed = buf + 1;
	db = buf + 1 + hlen;
	dblen = k - hlen - 1;
	mlen_max = dblen - hlen - 1;
	if (mgf1_xor(seed, hlen, db, dblen, md) != 0 ||
	    mgf1_xor(db, dblen, seed, hlen, md) != 0)
		goto out;

	good = kb_ct_is_zero(buf[0]);
	good &= kb_ct_is_zero((unsigned int)CRYPTO_memcmp(db, lhash, hlen));
	for (i = hlen; i < dblen; i++) {
		unsigned int is_one = kb_ct_eq(db[i], 1);
		unsigned int is_zero = kb_ct_is_zero(db[i]);

		one_at = kb_ct_select(~found & is_one, (unsigned int)i, one_at);
		found |= is_one;
		good &= found | is_zero;
	}
	good &= found;

	/*
	 * Shift the message to the front of db[hlen + 1 ..] by
	 * one_at - hlen bytes with a log-time barrel shift, so the memory
	 * access pattern does not depend on the secret length.
	 */
	msg = db + hlen + 1;
	shift = kb_ct_select(good, one_at - (unsigned int)hlen, 0);
	for (bit = 1; bit < mlen_max + 1; bit <<= 1) {
		mask = ~kb_ct_is_zero(shift & (unsigned int)bit);
		for (i = 0; i + bit < mlen_max; i++)
			msg[i] = (unsigned char)kb_ct_select(mask, msg[i + bit],
							     msg[i]);
		for (; i < mlen_max; i++)
			msg[i] = (unsigned char)kb_ct_select(mask, 0, msg[i]);
	}
	/* No branch on good: a copy of fixed size, a selected length. */
	memcpy(out, msg, mlen_max);
	*outlen = kb_ct_select(good, (unsigned int)mlen_max - shift, 0);
	r = (int)(good & 1) - 1;
out:
	OPENSSL_cleanse(buf, sizeof(buf));
	return r;
}
