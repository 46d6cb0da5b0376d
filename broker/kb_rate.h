/* SPDX-License-Identifier: MIT */
/*
 * Per-identity rate limits: one token bucket per identity name, kept
 * across policy reloads. Thread-safe.
 */
#ifndef KB_RATE_H
#define KB_RATE_H

#include <stdbool.h>
#include <stdint.h>

struct kb_rate;

struct kb_rate *kb_rate_new(void);
void kb_rate_free(struct kb_rate *r);

/*
 * Takes one request from identity's bucket (rate per second, burst at
 * most) at time now_us. False if the bucket is empty.
 */
bool kb_rate_take(struct kb_rate *r, const char *identity, double rate,
		  int burst, int64_t now_us);

#endif
