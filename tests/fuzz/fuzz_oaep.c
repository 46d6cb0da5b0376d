// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness: OAEP and PKCS#1 v1.5 (implicit rejection) decoding
 * of arbitrary encoded messages. The first byte picks the decoder (and
 * the hash); for PKCS#1 the next 32 bytes are the KDK.
 */
#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "kb_oaep.h"
#include "kb_pkcs1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char out[1024];
	size_t n, k;

	if (size < 1 || size > sizeof(out))
		return 0;
	if (data[0] % 3 < 2) {
		if (kb_oaep_decode(out, sizeof(out), &n, data + 1, size - 1,
				   data[0] % 3 ? EVP_sha1() : EVP_sha256()) ==
			    0 &&
		    n > size)
			abort();
		return 0;
	}
	if (size < 1 + KB_PKCS1_KDK_LEN)
		return 0;
	k = size - 1 - KB_PKCS1_KDK_LEN;
	/* Never an error for a valid size: a message of at most k - 11. */
	if (kb_pkcs1_decode(out, sizeof(out), &n, data + 1 + KB_PKCS1_KDK_LEN,
			    k, data + 1) == 0) {
		if (n > k - 11)
			abort();
	} else if (k >= 11) {
		abort();
	}
	return 0;
}
