// SPDX-License-Identifier: MIT
/* libFuzzer harness: JWKS files (the keys of external token issuers). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kb_jwk.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kb_jwks *set;
	char err[256];
	size_t i;

	if (kb_jwks_parse((const char *)data, size, &set, err, sizeof(err)) !=
	    0)
		return 0;
	/* Every key it accepted with a kid can be looked up by it. */
	for (i = 0; i < set->n; i++)
		if (set->keys[i].kid[0] != '\0' &&
		    kb_jwks_find(set, set->keys[i].kid) == NULL)
			abort();
	kb_jwks_free(set);
	return 0;
}
