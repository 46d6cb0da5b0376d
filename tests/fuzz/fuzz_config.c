// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness: the configuration loader (libconfig text to the
 * validated, immutable struct) on arbitrary text. Inputs that @include
 * other files are skipped: they would read this machine's files.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kb_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kb_config *cfg;
	char err[512], *text;

	if ((text = malloc(size + 1)) == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	if (strstr(text, "@include") == NULL &&
	    kb_config_load_text("/tmp/fuzz.conf", text, &cfg, err,
				sizeof(err)) == 0)
		kb_config_free(cfg);
	free(text);
	return 0;
}
