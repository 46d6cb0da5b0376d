// SPDX-License-Identifier: MIT
/* libFuzzer harness: base64url decoding is canonical and round-trips. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kb_b64.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char *out = malloc(size + 1);
	char *text = NULL;
	size_t n;

	if (out == NULL)
		return 0;
	if (kb_b64_decode(out, size, &n, (const char *)data, size) == 0) {
		/* Only one encoding is accepted: re-encoding gives it back. */
		text = malloc(kb_b64_encoded_len(n) + 1);
		if (text == NULL)
			abort();
		if (kb_b64_encode(text, out, n) != size ||
		    memcmp(text, data, size) != 0)
			abort();
	}
	free(text);
	free(out);
	return 0;
}
