// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdlib.h>

#include "kb_sessions.h"

int kb_sessions_init(struct kb_sessions *s, struct kb_keyworker **all, int n)
{
	int i;

	*s = (struct kb_sessions){ .nfree = 0 };
	pthread_mutex_init(&s->lock, NULL);
	if ((s->free = calloc((size_t)n + 1, sizeof(*s->free))) == NULL)
		return ENOMEM;
	for (i = 0; i < n; i++)
		s->free[s->nfree++] = all[i];
	return 0;
}

void kb_sessions_uninit(struct kb_sessions *s)
{
	free(s->free);
	s->free = NULL;
	pthread_mutex_destroy(&s->lock);
}

static void push_tail(struct kb_sessions *s, struct kb_conn *c)
{
	c->wait_next = NULL;
	if (s->tail != NULL)
		s->tail->wait_next = c;
	else
		s->head = c;
	s->tail = c;
	atomic_fetch_add(&s->waiting, 1);
}

static struct kb_conn *pop_head(struct kb_sessions *s)
{
	struct kb_conn *c = s->head;

	if (c == NULL)
		return NULL;
	s->head = c->wait_next;
	if (s->head == NULL)
		s->tail = NULL;
	c->wait_next = NULL;
	atomic_fetch_sub(&s->waiting, 1);
	return c;
}

bool kb_sessions_try(struct kb_sessions *s, struct kb_keyworker **w)
{
	bool got;

	pthread_mutex_lock(&s->lock);
	if ((got = s->nfree > 0))
		*w = s->free[--s->nfree];
	pthread_mutex_unlock(&s->lock);
	return got;
}

bool kb_sessions_take(struct kb_sessions *s, struct kb_conn *c,
		      struct kb_keyworker **w)
{
	bool got;

	pthread_mutex_lock(&s->lock);
	if ((got = s->nfree > 0))
		*w = s->free[--s->nfree];
	else
		push_tail(s, c);
	pthread_mutex_unlock(&s->lock);
	return got;
}

struct kb_conn *kb_sessions_give(struct kb_sessions *s, struct kb_keyworker *w)
{
	struct kb_conn *c;

	pthread_mutex_lock(&s->lock);
	if ((c = pop_head(s)) == NULL)
		s->free[s->nfree++] = w;
	pthread_mutex_unlock(&s->lock);
	return c;
}

bool kb_sessions_contended(struct kb_sessions *s)
{
	return atomic_load_explicit(&s->waiting, memory_order_relaxed) > 0;
}

struct kb_conn *kb_sessions_yield(struct kb_sessions *s, struct kb_conn *c)
{
	struct kb_conn *next;

	pthread_mutex_lock(&s->lock);
	if (s->head == NULL) {
		next = c;
	} else {
		next = pop_head(s);
		push_tail(s, c);
	}
	pthread_mutex_unlock(&s->lock);
	return next;
}

struct kb_conn *kb_sessions_take_waiting(struct kb_sessions *s)
{
	struct kb_conn *first;

	pthread_mutex_lock(&s->lock);
	first = s->head;
	s->head = s->tail = NULL;
	atomic_store(&s->waiting, 0);
	pthread_mutex_unlock(&s->lock);
	return first;
}
