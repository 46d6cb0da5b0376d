// SPDX-License-Identifier: MIT
#include <string.h>

#include "kb_jws.h"

static const struct {
	const char *name;
	unsigned int alg;
} alg_names[] = {
	{ "RS256", KB_JWS_RS256 },
	{ "PS256", KB_JWS_PS256 },
	{ "ES256", KB_JWS_ES256 },
};

int kb_jws_alg_parse(const char *name, unsigned int *alg)
{
	size_t i;

	for (i = 0; i < sizeof(alg_names) / sizeof(alg_names[0]); i++)
		if (strcmp(name, alg_names[i].name) == 0) {
			*alg = alg_names[i].alg;
			return 0;
		}
	return -1;
}
