// SPDX-License-Identifier: MIT
/* libFuzzer harness: kid parsing, checked against formatting. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kb_kid.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kb_keyref ref;
	char kid[KB_KID_MAX];

	if (kb_kid_parse((const char *)data, size, "fuzz", &ref) != KB_KID_OK)
		return 0;
	/* An accepted kid formats back to exactly the same bytes. */
	if (kb_kid_format(kid, sizeof(kid), "fuzz", ref.name, ref.version) !=
		    0 ||
	    strlen(kid) != size || memcmp(kid, data, size) != 0)
		abort();
	return 0;
}
