// SPDX-License-Identifier: MIT
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "kb_bucket.h"
#include "kb_lograte.h"

#define SLOTS 1024 /* uids tracked at once; more share slots by hash */

struct slot {
	bool used;
	struct kb_bucket b;
	unsigned long suppressed;
};

struct kb_lograte {
	pthread_mutex_t lock;
	unsigned int burst, per_s;
	struct slot slot[SLOTS];
};

struct kb_lograte *kb_lograte_new(unsigned int burst, unsigned int per_s)
{
	struct kb_lograte *l = calloc(1, sizeof(*l));

	if (l != NULL) {
		pthread_mutex_init(&l->lock, NULL);
		l->burst = burst;
		l->per_s = per_s;
	}
	return l;
}

void kb_lograte_free(struct kb_lograte *l)
{
	if (l == NULL)
		return;
	pthread_mutex_destroy(&l->lock);
	free(l);
}

bool kb_lograte_take(struct kb_lograte *l, uid_t uid, int64_t now_ms,
		     unsigned long *held)
{
	/* Colliding uids share a budget: never more lines, only fewer. */
	struct slot *s = &l->slot[(uint32_t)uid % SLOTS];
	int64_t now_us = now_ms * 1000;
	bool ok;

	*held = 0;
	pthread_mutex_lock(&l->lock);
	if (!s->used) {
		s->used = true;
		kb_bucket_init(&s->b, (int)l->burst, now_us);
	}
	if ((ok = kb_bucket_take(&s->b, l->per_s, (int)l->burst, now_us))) {
		*held = s->suppressed;
		s->suppressed = 0;
	} else {
		s->suppressed++;
	}
	pthread_mutex_unlock(&l->lock);
	return ok;
}

bool kb_lograte_allow(struct kb_lograte *l, uid_t uid, int64_t now_ms,
		      char *note, size_t notelen)
{
	unsigned long held;
	bool ok = kb_lograte_take(l, uid, now_ms, &held);

	note[0] = '\0';
	if (ok && held > 0)
		snprintf(note, notelen, " (%lu more held back)", held);
	return ok;
}
