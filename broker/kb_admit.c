// SPDX-License-Identifier: MIT
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "kb_admit.h"

#define BUCKETS 256

struct uid_count {
	struct uid_count *next;
	uid_t uid;
	int conns, unauth;
};

struct kb_admit {
	pthread_mutex_t lock;
	struct kb_admit_limits limits;
	int total;
	struct uid_count *bucket[BUCKETS];
};

struct kb_admit *kb_admit_new(const struct kb_admit_limits *limits)
{
	struct kb_admit *a = calloc(1, sizeof(*a));

	if (a != NULL) {
		pthread_mutex_init(&a->lock, NULL);
		a->limits = *limits;
	}
	return a;
}

void kb_admit_free(struct kb_admit *a)
{
	struct uid_count *u, *next;
	size_t i;

	if (a == NULL)
		return;
	for (i = 0; i < BUCKETS; i++)
		for (u = a->bucket[i]; u != NULL; u = next) {
			next = u->next;
			free(u);
		}
	pthread_mutex_destroy(&a->lock);
	free(a);
}

/* The count of uid; made (zero) if create, else NULL when absent. */
static struct uid_count *find(struct kb_admit *a, uid_t uid, bool create)
{
	struct uid_count **head = &a->bucket[(uint32_t)uid % BUCKETS], *u;

	for (u = *head; u != NULL; u = u->next)
		if (u->uid == uid)
			return u;
	if (!create || (u = calloc(1, sizeof(*u))) == NULL)
		return NULL;
	u->uid = uid;
	u->next = *head;
	*head = u;
	return u;
}

static void drop_if_unused(struct kb_admit *a, struct uid_count *gone)
{
	struct uid_count **pp = &a->bucket[(uint32_t)gone->uid % BUCKETS];

	if (gone->conns > 0)
		return;
	for (; *pp != NULL; pp = &(*pp)->next)
		if (*pp == gone) {
			*pp = gone->next;
			free(gone);
			return;
		}
}

static bool take_locked(struct kb_admit *a, uid_t uid, char *why, size_t whylen)
{
	struct uid_count *u;

	if (a->total >= a->limits.total) {
		snprintf(why, whylen,
			 "too many connections (max_connections %d)",
			 a->limits.total);
		return false;
	}
	if ((u = find(a, uid, true)) == NULL) {
		snprintf(why, whylen, "out of memory");
		return false;
	}
	if (u->conns >= a->limits.per_uid) {
		snprintf(why, whylen,
			 "too many connections from uid %u "
			 "(max_connections_per_uid %d)",
			 (unsigned int)uid, a->limits.per_uid);
		drop_if_unused(a, u);
		return false;
	}
	if (u->unauth >= a->limits.unauth_per_uid) {
		snprintf(why, whylen,
			 "too many connections from uid %u waiting to "
			 "authenticate (max_unauthenticated_per_uid %d)",
			 (unsigned int)uid, a->limits.unauth_per_uid);
		drop_if_unused(a, u);
		return false;
	}
	u->conns++;
	u->unauth++;
	a->total++;
	return true;
}

bool kb_admit_take(struct kb_admit *a, uid_t uid, char *why, size_t whylen)
{
	bool ok;

	pthread_mutex_lock(&a->lock);
	ok = take_locked(a, uid, why, whylen);
	pthread_mutex_unlock(&a->lock);
	return ok;
}

void kb_admit_authenticated(struct kb_admit *a, uid_t uid)
{
	struct uid_count *u;

	pthread_mutex_lock(&a->lock);
	u = find(a, uid, false);
	if (u != NULL && u->unauth > 0)
		u->unauth--;
	pthread_mutex_unlock(&a->lock);
}

void kb_admit_release(struct kb_admit *a, uid_t uid, bool unauth)
{
	struct uid_count *u;

	pthread_mutex_lock(&a->lock);
	if ((u = find(a, uid, false)) != NULL) {
		u->conns--;
		if (unauth && u->unauth > 0)
			u->unauth--;
		a->total--;
		drop_if_unused(a, u);
	}
	pthread_mutex_unlock(&a->lock);
}

int kb_admit_total(struct kb_admit *a)
{
	int n;

	pthread_mutex_lock(&a->lock);
	n = a->total;
	pthread_mutex_unlock(&a->lock);
	return n;
}
