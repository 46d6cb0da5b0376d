/* SPDX-License-Identifier: MIT */
/*
 * ISO 8601 durations as rotation policies write them ("P90D", "P1Y",
 * "PT12H", "P1DT30M"): whole numbers of years, months, weeks, days, hours,
 * minutes and seconds, each at most once and in that order. A year counts
 * 365 days and a month 30, as key vaults count them; fractions, signs and
 * calendar dates are refused.
 */
#ifndef KB_DURATION_H
#define KB_DURATION_H

#include <stddef.h>
#include <stdint.h>

#define KB_DURATION_MAX_S (INT64_C(200) * 365 * 86400) /* 200 years */
#define KB_DURATION_TEXT_MAX 32 /* bytes of a duration we accept */

/*
 * Parses text[0..len) into *seconds (at least 1). -1 if it is not such a
 * duration, is zero, or exceeds KB_DURATION_MAX_S.
 */
int kb_duration_parse(const char *text, size_t len, int64_t *seconds);

#endif
