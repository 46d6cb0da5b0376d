// SPDX-License-Identifier: MIT
#include <stdlib.h>
#include <string.h>

#include "kb_json.h"

/* Most texts fit at once; a larger one is measured and written again. */
#define FIRST_TRY 2048

char *kb_json_text(const json_t *o, size_t flags, size_t *len)
{
	char *text = malloc(FIRST_TRY);
	size_t need;

	if (text == NULL)
		return NULL;
	need = json_dumpb(o, text, FIRST_TRY - 1, flags);
	if (need > FIRST_TRY - 1) {
		/* What was cut off may have been a secret's start. */
		explicit_bzero(text, FIRST_TRY);
		free(text);
		if ((text = malloc(need + 1)) == NULL)
			return NULL;
		if (json_dumpb(o, text, need, flags) != need)
			need = 0;
	}
	if (need == 0) {
		free(text);
		return NULL;
	}
	text[need] = '\0';
	if (len != NULL)
		*len = need;
	return text;
}
