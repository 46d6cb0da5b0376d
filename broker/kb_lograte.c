// SPDX-License-Identifier: MIT
#include <pthread.h>
#include <stdlib.h>

#include "kb_lograte.h"

#define SLOTS 1024 /* uids tracked at once; more share slots by hash */

struct slot {
	bool used;
	int64_t last_ms;
	double tokens;
	unsigned long suppressed;
};

struct kb_lograte {
	pthread_mutex_t lock;
	struct slot slot[SLOTS];
};

struct kb_lograte *kb_lograte_new(void)
{
	struct kb_lograte *l = calloc(1, sizeof(*l));

	if (l != NULL)
		pthread_mutex_init(&l->lock, NULL);
	return l;
}

void kb_lograte_free(struct kb_lograte *l)
{
	if (l == NULL)
		return;
	pthread_mutex_destroy(&l->lock);
	free(l);
}

bool kb_lograte_allow(struct kb_lograte *l, uid_t uid, int64_t now_ms,
		      unsigned long *suppressed)
{
	/* Colliding uids share a budget: never more lines, only fewer. */
	struct slot *s = &l->slot[(uint32_t)uid % SLOTS];
	bool ok;

	pthread_mutex_lock(&l->lock);
	if (!s->used) {
		s->used = true;
		s->tokens = KB_LOGRATE_BURST;
		s->last_ms = now_ms;
	}
	if (now_ms > s->last_ms)
		s->tokens += (double)(now_ms - s->last_ms) * KB_LOGRATE_PER_S /
			     1000.0;
	if (s->tokens > KB_LOGRATE_BURST)
		s->tokens = KB_LOGRATE_BURST;
	s->last_ms = now_ms;
	ok = s->tokens >= 1.0;
	if (ok) {
		s->tokens -= 1.0;
		*suppressed = s->suppressed;
		s->suppressed = 0;
	} else {
		s->suppressed++;
	}
	pthread_mutex_unlock(&l->lock);
	return ok;
}
