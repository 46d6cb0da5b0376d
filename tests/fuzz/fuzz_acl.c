// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness: the ACL's pattern matcher against a slow, obviously
 * correct reference, on a pattern and a key cut from the input.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kb_acl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool reference(const char *p, const char *k)
{
	if (*p == '\0')
		return *k == '\0';
	if (*p == '*')
		return reference(p + 1, k) ||
		       (*k != '\0' && reference(p, k + 1));
	return *k == *p && reference(p + 1, k + 1);
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
	if (!kb_acl_pattern_valid(pattern))
		return 0;
	if (kb_acl_pattern_match(pattern, key) != reference(pattern, key))
		abort();
	return 0;
}
