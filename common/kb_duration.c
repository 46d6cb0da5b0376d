// SPDX-License-Identifier: MIT
#include <stdbool.h>
#include <string.h>

#include "kb_duration.h"

/* The designators in the order they may appear, and their seconds. */
static const struct {
	char unit;
	bool time; /* after 'T' */
	int64_t seconds;
} units[] = {
	{ 'Y', false, 365 * 86400 },
	{ 'M', false, 30 * 86400 },
	{ 'W', false, 7 * 86400 },
	{ 'D', false, 86400 },
	{ 'H', true, 3600 },
	{ 'M', true, 60 },
	{ 'S', true, 1 },
};

int kb_duration_parse(const char *text, size_t len, int64_t *seconds)
{
	size_t i = 1, u = 0, digits;
	int64_t total = 0, n;
	bool in_time = false, any = false;

	if (len < 3 || len > KB_DURATION_TEXT_MAX || text[0] != 'P')
		return -1;
	while (i < len) {
		if (text[i] == 'T') {
			/* Once, and with something after it. */
			if (in_time || i + 1 == len)
				return -1;
			in_time = true;
			i++;
			continue;
		}
		for (n = 0, digits = 0;
		     i < len && text[i] >= '0' && text[i] <= '9' && digits < 10;
		     i++, digits++)
			n = n * 10 + (text[i] - '0');
		if (digits == 0 || i == len)
			return -1;
		/* The next designator of this part, in order. */
		while (u < sizeof(units) / sizeof(units[0]) &&
		       (units[u].time != in_time || units[u].unit != text[i]))
			u++;
		if (u == sizeof(units) / sizeof(units[0]))
			return -1;
		if (n > KB_DURATION_MAX_S / units[u].seconds)
			return -1;
		total += n * units[u].seconds;
		if (total > KB_DURATION_MAX_S)
			return -1;
		any = true;
		u++;
		i++;
	}
	if (!any || total == 0)
		return -1;
	*seconds = total;
	return 0;
}
