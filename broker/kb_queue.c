// SPDX-License-Identifier: MIT
#include <stdlib.h>
#include <string.h>

#include "kb_queue.h"
#include "kb_secret.h"

struct kb_job *kb_job_new(struct kb_conn *conn, const char *line, size_t len)
{
	struct kb_job *job;

	if ((job = calloc(1, sizeof(*job))) == NULL)
		return NULL;
	if ((job->line = malloc(len + 1)) == NULL) {
		free(job);
		return NULL;
	}
	memcpy(job->line, line, len);
	job->line[len] = '\0';
	job->line_len = len;
	job->conn = conn;
	return job;
}

void kb_job_free(struct kb_job *job)
{
	if (job == NULL)
		return;
	kb_wipe_free(job->line, job->line_len + 1);
	kb_wipe_free(job->resp, job->resp_len);
	free(job);
}

void kb_waiter_init(struct kb_waiter *w)
{
	memset(w, 0, sizeof(*w));
	pthread_cond_init(&w->wake, NULL);
}

void kb_waiter_uninit(struct kb_waiter *w)
{
	pthread_cond_destroy(&w->wake);
}

void kb_queue_init(struct kb_queue *q)
{
	memset(q, 0, sizeof(*q));
	pthread_mutex_init(&q->lock, NULL);
}

void kb_queue_uninit(struct kb_queue *q)
{
	struct kb_job *job, *next;

	for (job = kb_queue_take_all(q); job != NULL; job = next) {
		next = job->next;
		kb_job_free(job);
	}
	pthread_mutex_destroy(&q->lock);
}

/* Needs q->lock. */
static void wake_one(struct kb_queue *q)
{
	struct kb_waiter *w = q->idle;

	if (w == NULL)
		return;
	q->idle = w->next;
	w->idle = false;
	pthread_cond_signal(&w->wake);
}

void kb_lane_init(struct kb_lane *lane, enum kb_lane_kind kind)
{
	memset(lane, 0, sizeof(*lane));
	lane->kind = kind;
}

/* Puts lane at the end of its ring. Needs q->lock. */
static void ring_append(struct kb_queue *q, struct kb_lane *lane)
{
	struct kb_ring *r = &q->ring[lane->kind];

	lane->next = NULL;
	lane->queued = true;
	if (r->last != NULL)
		r->last->next = lane;
	else
		r->first = lane;
	r->last = lane;
}

/* Quick work first, but token work every KB_QUEUE_QUICK_RUN turns. */
static struct kb_ring *next_ring(struct kb_queue *q)
{
	struct kb_ring *quick = &q->ring[KB_LANE_QUICK];
	struct kb_ring *token = &q->ring[KB_LANE_TOKEN];

	if (quick->first != NULL &&
	    (token->first == NULL || q->quick_run < KB_QUEUE_QUICK_RUN)) {
		q->quick_run++;
		return quick;
	}
	q->quick_run = 0;
	return token->first != NULL ? token : NULL;
}

void kb_queue_push(struct kb_queue *q, struct kb_lane *lane, struct kb_job *job)
{
	job->next = NULL;
	pthread_mutex_lock(&q->lock);
	if (lane == NULL)
		lane = &q->common;
	if (lane->tail != NULL)
		lane->tail->next = job;
	else
		lane->head = job;
	lane->tail = job;
	if (!lane->queued)
		ring_append(q, lane);
	q->count++;
	wake_one(q);
	pthread_mutex_unlock(&q->lock);
}

/*
 * The first job of the first lane of the ring whose turn it is; the lane
 * goes to the back. Needs q->lock.
 */
static struct kb_job *take_next(struct kb_queue *q)
{
	struct kb_ring *r = next_ring(q);
	struct kb_lane *lane;
	struct kb_job *job;

	if (r == NULL)
		return NULL;
	lane = r->first;
	job = lane->head;
	lane->head = job->next;
	if (lane->head == NULL)
		lane->tail = NULL;
	job->next = NULL;
	r->first = lane->next;
	if (r->first == NULL)
		r->last = NULL;
	lane->queued = false;
	if (lane->head != NULL)
		ring_append(q, lane);
	q->count--;
	return job;
}

struct kb_job *kb_queue_pop(struct kb_queue *q, struct kb_waiter *w)
{
	struct kb_waiter **pp;
	struct kb_job *job;

	pthread_mutex_lock(&q->lock);
	while (q->count == 0 && !q->closed) {
		if (!w->idle) {
			w->next = q->idle;
			q->idle = w;
			w->idle = true;
		}
		pthread_cond_wait(&w->wake, &q->lock);
	}
	/* Woken spuriously or by close: leave the idle stack. */
	for (pp = &q->idle; w->idle && *pp != NULL; pp = &(*pp)->next) {
		if (*pp == w) {
			*pp = w->next;
			w->idle = false;
			break;
		}
	}
	job = take_next(q);
	pthread_mutex_unlock(&q->lock);
	return job;
}

struct kb_job *kb_queue_take_all(struct kb_queue *q)
{
	struct kb_job *list = NULL, **tail = &list, *job;

	pthread_mutex_lock(&q->lock);
	while ((job = take_next(q)) != NULL) {
		*tail = job;
		tail = &job->next;
	}
	pthread_mutex_unlock(&q->lock);
	return list;
}

size_t kb_queue_count(struct kb_queue *q)
{
	size_t n;

	pthread_mutex_lock(&q->lock);
	n = q->count;
	pthread_mutex_unlock(&q->lock);
	return n;
}

void kb_queue_close(struct kb_queue *q)
{
	pthread_mutex_lock(&q->lock);
	q->closed = true;
	while (q->idle != NULL)
		wake_one(q);
	pthread_mutex_unlock(&q->lock);
}
