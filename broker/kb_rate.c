// SPDX-License-Identifier: MIT
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kb_bucket.h"
#include "kb_config.h"
#include "kb_rate.h"

#define RATE_MAX_IDENTITIES 4096

struct bucket {
	char name[KB_IDENTITY_MAX + 1];
	struct kb_bucket b;
};

struct kb_rate {
	pthread_mutex_t lock;
	struct bucket *b;
	size_t n, cap;
};

struct kb_rate *kb_rate_new(void)
{
	struct kb_rate *r = calloc(1, sizeof(*r));

	if (r != NULL)
		pthread_mutex_init(&r->lock, NULL);
	return r;
}

void kb_rate_free(struct kb_rate *r)
{
	if (r == NULL)
		return;
	pthread_mutex_destroy(&r->lock);
	free(r->b);
	free(r);
}

/* Needs r->lock. NULL when out of room: the caller then refuses. */
static struct bucket *find(struct kb_rate *r, const char *name, int burst,
			   int64_t now_us)
{
	struct bucket *b;
	size_t i, cap;

	for (i = 0; i < r->n; i++)
		if (strcmp(r->b[i].name, name) == 0)
			return &r->b[i];
	if (r->n == r->cap) {
		cap = r->cap ? r->cap * 2 : 16;
		if (cap > RATE_MAX_IDENTITIES ||
		    (b = realloc(r->b, cap * sizeof(*b))) == NULL)
			return NULL;
		r->b = b;
		r->cap = cap;
	}
	b = &r->b[r->n++];
	memset(b, 0, sizeof(*b));
	strncpy(b->name, name, KB_IDENTITY_MAX);
	kb_bucket_init(&b->b, burst, now_us);
	return b;
}

bool kb_rate_take(struct kb_rate *r, const char *identity, double rate,
		  int burst, int64_t now_us)
{
	struct bucket *b;
	bool ok = false;

	pthread_mutex_lock(&r->lock);
	if ((b = find(r, identity, burst, now_us)) != NULL)
		ok = kb_bucket_take(&b->b, rate, burst, now_us);
	pthread_mutex_unlock(&r->lock);
	return ok;
}
