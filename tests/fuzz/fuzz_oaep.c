// SPDX-License-Identifier: MIT
/* libFuzzer harness: OAEP decoding of arbitrary encoded messages. */
#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "kb_oaep.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char out[1024];
	size_t n;

	if (size < 1 || size > sizeof(out))
		return 0;
	if (kb_oaep_decode(out, sizeof(out), &n, data + 1, size - 1,
			   data[0] & 1 ? EVP_sha1() : EVP_sha256()) == 0 &&
	    n > size)
		abort();
	return 0;
}
