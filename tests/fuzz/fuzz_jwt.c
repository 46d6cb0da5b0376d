// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness: token verification on arbitrary input, against an
 * issuer with one RSA and one EC key. Nothing the fuzzer makes may verify.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kb_jwt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Public keys only: the fuzzer cannot sign with them. */
static const char jwks[] =
	"{\"keys\":[{\"kty\":\"EC\",\"kid\":\"e1\",\"crv\":\"P-256\","
	"\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\","
	"\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\"}]}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct kb_jwks *keys;
	static struct kb_jwt_issuer iss;
	struct kb_jwt_claims c;
	char err[256];

	if (keys == NULL) {
		if (kb_jwks_parse(jwks, strlen(jwks), &keys, err,
				  sizeof(err)) != 0)
			abort();
		iss = (struct kb_jwt_issuer){
			.issuer = "https://issuer.example",
			.audience = "keybroker",
			.algs = KB_JWS_RS256 | KB_JWS_PS256 | KB_JWS_ES256,
			.keys = keys,
			.max_lifetime_s = 3600,
			.identity_claim = "sub",
		};
	}
	if (kb_jwt_verify((const char *)data, size, &iss, 1, 1800000000, NULL,
			  NULL, &c, err, sizeof(err)) == 0)
		abort();
	/* JWKS documents too. */
	{
		struct kb_jwks *set;

		if (kb_jwks_parse((const char *)data, size, &set, err,
				  sizeof(err)) == 0)
			kb_jwks_free(set);
	}
	return 0;
}
