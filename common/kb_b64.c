// SPDX-License-Identifier: MIT
/*
 * base64url in constant time: wrapKey decodes a plaintext DEK and
 * unwrapKey encodes one, so neither direction branches on, or indexes a
 * table with, the data. Only lengths (public) steer the loops.
 */
#include <stdint.h>

#include "kb_b64.h"
#include "kb_ct.h"

size_t kb_b64_encoded_len(size_t n)
{
	return n / 3 * 4 + (n % 3 == 0 ? 0 : n % 3 + 1);
}

/* The character of a 6-bit value: A-Z a-z 0-9 - _ by arithmetic. */
static char b64_char(unsigned int v)
{
	unsigned int c = v + 'A';

	c += kb_ct_ge(v, 26) & (unsigned int)('a' - 'A' - 26);
	c += kb_ct_ge(v, 52) & (unsigned int)('0' - 'a' - 26);
	c += kb_ct_ge(v, 62) & (unsigned int)('-' - '0' - 10);
	c += kb_ct_ge(v, 63) & (unsigned int)('_' - '-' - 1);
	return (char)c;
}

/* The 6-bit value of c plus one, or 0 if c is not in the alphabet. */
static unsigned int b64_value(unsigned int c)
{
	unsigned int v = 0;

	v |= kb_ct_ge(c, 'A') & kb_ct_lt(c, 'Z' + 1) & (c - 'A' + 1);
	v |= kb_ct_ge(c, 'a') & kb_ct_lt(c, 'z' + 1) & (c - 'a' + 27);
	v |= kb_ct_ge(c, '0') & kb_ct_lt(c, '9' + 1) & (c - '0' + 53);
	v |= kb_ct_eq(c, '-') & 63;
	v |= kb_ct_eq(c, '_') & 64;
	return v;
}

size_t kb_b64_encode(char *dst, const unsigned char *src, size_t n)
{
	size_t i, o = 0;
	uint32_t v;

	for (i = 0; i + 3 <= n; i += 3) {
		v = (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8 |
		    src[i + 2];
		dst[o++] = b64_char(v >> 18 & 63);
		dst[o++] = b64_char(v >> 12 & 63);
		dst[o++] = b64_char(v >> 6 & 63);
		dst[o++] = b64_char(v & 63);
	}
	if (n - i == 1) {
		v = (uint32_t)src[i] << 16;
		dst[o++] = b64_char(v >> 18 & 63);
		dst[o++] = b64_char(v >> 12 & 63);
	} else if (n - i == 2) {
		v = (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8;
		dst[o++] = b64_char(v >> 18 & 63);
		dst[o++] = b64_char(v >> 12 & 63);
		dst[o++] = b64_char(v >> 6 & 63);
	}
	dst[o] = '\0';
	return o;
}

int kb_b64_decode(unsigned char *dst, size_t dstmax, size_t *outlen,
		  const char *src, size_t len)
{
	unsigned int acc = 0, bad = 0, v;
	size_t i, o = 0, need;
	int bits = 0;

	if (len % 4 == 1)
		return -1;
	need = len / 4 * 3 + (len % 4 == 0 ? 0 : len % 4 - 1);
	if (need > dstmax)
		return -1;
	/* Every character is read and written through; errors accumulate. */
	for (i = 0; i < len; i++) {
		v = b64_value((unsigned char)src[i]);
		bad |= kb_ct_is_zero(v);
		acc = (acc << 6 | ((v - 1) & 63)) & 0xfff;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			dst[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	/* Non-zero trailing bits would give a second spelling. */
	bad |= ~kb_ct_is_zero(acc);
	*outlen = o;
	return -(int)(bad & 1);
}
