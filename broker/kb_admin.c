// SPDX-License-Identifier: MIT
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "kb_admin.h"
#include "kb_progress.h"

struct kb_admin {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool pending, stopping; /* under lock */
	void (*reload)(void *arg);
	void (*tick)(void *arg);
	void *arg;
	atomic_llong busy_since_ms; /* CLOCK_MONOTONIC; 0 between runs */
};

static void *admin_main(void *arg)
{
	struct kb_admin *a = arg;
	struct timespec next;
	bool reload;

	kb_progress_bind(&a->busy_since_ms);
	clock_gettime(CLOCK_REALTIME, &next);
	pthread_mutex_lock(&a->lock);
	for (;;) {
		next.tv_sec += KB_ADMIN_TICK_S;
		while (!a->pending && !a->stopping &&
		       pthread_cond_timedwait(&a->wake, &a->lock, &next) !=
			       ETIMEDOUT)
			;
		if (a->stopping)
			break;
		reload = a->pending;
		a->pending = false;
		pthread_mutex_unlock(&a->lock);
		atomic_store(&a->busy_since_ms, kb_progress_now_ms());
		if (reload) {
			a->reload(a->arg);
		} else {
			a->tick(a->arg);
			/* A tick that ran long is not made up for. */
			clock_gettime(CLOCK_REALTIME, &next);
		}
		atomic_store(&a->busy_since_ms, 0);
		pthread_mutex_lock(&a->lock);
	}
	pthread_mutex_unlock(&a->lock);
	return NULL;
}

int kb_admin_start(void (*reload)(void *arg), void (*tick)(void *arg),
		   void *arg, struct kb_admin **out)
{
	struct kb_admin *a;
	int e;

	if ((a = calloc(1, sizeof(*a))) == NULL)
		return ENOMEM;
	a->reload = reload;
	a->tick = tick;
	a->arg = arg;
	pthread_mutex_init(&a->lock, NULL);
	pthread_cond_init(&a->wake, NULL);
	if ((e = pthread_create(&a->thread, NULL, admin_main, a)) != 0) {
		pthread_cond_destroy(&a->wake);
		pthread_mutex_destroy(&a->lock);
		free(a);
		return e;
	}
	*out = a;
	return 0;
}

void kb_admin_reload(struct kb_admin *a)
{
	pthread_mutex_lock(&a->lock);
	a->pending = true;
	pthread_cond_signal(&a->wake);
	pthread_mutex_unlock(&a->lock);
}

long long kb_admin_busy_since(struct kb_admin *a)
{
	return atomic_load(&a->busy_since_ms);
}

bool kb_admin_stop(struct kb_admin *a, const struct timespec *deadline)
{
	if (a == NULL)
		return true;
	pthread_mutex_lock(&a->lock);
	a->stopping = true;
	pthread_cond_signal(&a->wake);
	pthread_mutex_unlock(&a->lock);
	if (pthread_timedjoin_np(a->thread, NULL, deadline) != 0)
		return false;
	pthread_cond_destroy(&a->wake);
	pthread_mutex_destroy(&a->lock);
	free(a);
	return true;
}
