// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness: the key-pattern matcher of grants against a slow,
 * obviously correct reference, on a pattern and a key cut from the input.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kb_grant.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * Glob matching by dynamic programming over (pattern prefix, key prefix):
 * slow but obviously right, and polynomial whatever the pattern.
 */
static bool reference(const char *p, const char *k)
{
	size_t np = strlen(p), nk = strlen(k), i, j;
	bool m[24][24] = { { false } };

	m[0][0] = true;
	for (i = 1; i <= np; i++)
		m[i][0] = m[i - 1][0] && p[i - 1] == '*';
	for (i = 1; i <= np; i++)
		for (j = 1; j <= nk; j++)
			m[i][j] = p[i - 1] == '*' ?
					  m[i - 1][j] || m[i][j - 1] :
					  m[i - 1][j - 1] &&
						  p[i - 1] == k[j - 1];
	return m[np][nk];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char pattern[24], key[24];
	const uint8_t *cut;
	size_t plen, klen;

	if ((cut = memchr(data, 0, size)) == NULL)
		return 0;
	plen = (size_t)(cut - data);
	klen = size - plen - 1;
	if (plen >= sizeof(pattern) || klen >= sizeof(key) ||
	    memchr(cut + 1, 0, klen) != NULL)
		return 0;
	memcpy(pattern, data, plen);
	pattern[plen] = '\0';
	memcpy(key, cut + 1, klen);
	key[klen] = '\0';
	if (!kb_pattern_valid(pattern))
		return 0;
	if (kb_pattern_match(pattern, key) != reference(pattern, key))
		abort();
	return 0;
}
