/* SPDX-License-Identifier: MIT */
/*
 * Constant-time helpers for code that handles secrets: masks (all ones or
 * zero) computed without branches on the values, and selection by mask.
 * Values compared with kb_ct_lt must be below 2^31. Masks pass through a
 * barrier the optimiser cannot see through, so it cannot prove a mask is
 * "0 or all ones" and turn a selection back into a branch, or into a
 * choice of which buffer to read (clang does, without it).
 */
#ifndef KB_CT_H
#define KB_CT_H

#define KB_CT_TOP(x) ((x) >> (sizeof(unsigned int) * 8 - 1))

/* x, unknown to the optimiser (as OpenSSL's value_barrier). */
static inline unsigned int kb_ct_barrier(unsigned int x)
{
	__asm__("" : "+r"(x));
	return x;
}

/* All ones if a == b, else zero. */
static inline unsigned int kb_ct_eq(unsigned int a, unsigned int b)
{
	unsigned int x = a ^ b;

	return kb_ct_barrier(0u - (KB_CT_TOP(x | (0u - x)) ^ 1u));
}

static inline unsigned int kb_ct_is_zero(unsigned int a)
{
	return kb_ct_eq(a, 0);
}

/* All ones if a < b (both below 2^31), else zero. */
static inline unsigned int kb_ct_lt(unsigned int a, unsigned int b)
{
	return kb_ct_barrier(0u - KB_CT_TOP(a - b));
}

static inline unsigned int kb_ct_ge(unsigned int a, unsigned int b)
{
	return ~kb_ct_lt(a, b);
}

/* a where mask is all ones, b where it is zero. */
static inline unsigned int kb_ct_select(unsigned int mask, unsigned int a,
					unsigned int b)
{
	mask = kb_ct_barrier(mask);
	return (mask & a) | (~mask & b);
}

#endif
