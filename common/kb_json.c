// SPDX-License-Identifier: MIT
#include <stdlib.h>

#include "kb_json.h"

char *kb_json_text(const json_t *o, size_t flags, size_t *len)
{
	size_t need = json_dumpb(o, NULL, 0, flags);
	char *text;

	if (need == 0 || (text = malloc(need + 1)) == NULL)
		return NULL;
	if (json_dumpb(o, text, need, flags) != need) {
		free(text);
		return NULL;
	}
	text[need] = '\0';
	if (len != NULL)
		*len = need;
	return text;
}
