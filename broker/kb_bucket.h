/* SPDX-License-Identifier: MIT */
/*
 * A token bucket: it fills at rate tokens a second up to burst, and each
 * thing it allows takes one token. The callers hold their own locks.
 */
#ifndef KB_BUCKET_H
#define KB_BUCKET_H

#include <stdbool.h>
#include <stdint.h>

struct kb_bucket {
	double tokens;
	int64_t last_us;
};

/* A full bucket at now_us. */
static inline void kb_bucket_init(struct kb_bucket *b, int burst,
				  int64_t now_us)
{
	b->tokens = burst;
	b->last_us = now_us;
}

/* Refills b for the time since it was last used, then takes a token. */
static inline bool kb_bucket_take(struct kb_bucket *b, double rate, int burst,
				  int64_t now_us)
{
	if (now_us > b->last_us)
		b->tokens += rate * (double)(now_us - b->last_us) / 1e6;
	if (b->tokens > burst)
		b->tokens = burst;
	b->last_us = now_us;
	if (b->tokens < 1.0)
		return false;
	b->tokens -= 1.0;
	return true;
}

#endif
