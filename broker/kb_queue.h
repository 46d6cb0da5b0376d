/* SPDX-License-Identifier: MIT */
/*
 * Jobs (one request line each) and the queues that carry them between the
 * event loop and the worker threads. A queue is fair: each producer (a
 * connection) has lanes of its own, and lanes are served in turn, one
 * job each, so one connection's pipelined requests never keep another's
 * waiting for more than one job per busy lane. Lanes are of two kinds:
 * quick work (policy, public-key operations) goes before token work
 * (unwraps, signatures), so a cheap request never waits behind a queue of
 * token operations; token work still gets one turn in every
 * KB_QUEUE_QUICK_RUN, so a flood of cheap requests cannot starve it.
 */
#ifndef KB_QUEUE_H
#define KB_QUEUE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "kb_peer.h"

struct kb_conn;

struct kb_job {
	struct kb_job *next; /* link in a kb_queue */
	struct kb_job *conn_next; /* link in the connection's order list */
	struct kb_conn *conn;
	char *line; /* request line; may carry a DEK: wiped on free */
	size_t line_len;
	char *resp; /* response line with '\n'; wiped on free */
	size_t resp_len;
	size_t resp_sent; /* bytes a worker already wrote to the socket */
	bool done;
	bool close_after; /* close the connection once resp is sent */
	bool barrier; /* an authenticate: later lines wait for it */
	struct kb_caller caller; /* as of dispatch; authenticate updates it */
};

/* Takes a copy of line[0..len). */
struct kb_job *kb_job_new(struct kb_conn *conn, const char *line, size_t len);
void kb_job_free(struct kb_job *job);

#define KB_QUEUE_QUICK_RUN 8

enum kb_lane_kind { KB_LANE_QUICK, KB_LANE_TOKEN, KB_LANE_KINDS };

/* One producer's jobs of one kind, in the order they came. */
struct kb_lane {
	struct kb_job *head, *tail;
	struct kb_lane *next; /* in the queue's ring of lanes with jobs */
	enum kb_lane_kind kind;
	bool queued;
};

/* Lanes with jobs, the next to be served first. */
struct kb_ring {
	struct kb_lane *first, *last;
};

/*
 * A thread that waits on a queue. Idle waiters form a stack, so the one
 * that went idle last, whose caches are warmest, gets the next job.
 */
struct kb_waiter {
	pthread_cond_t wake;
	struct kb_waiter *next;
	bool idle;
};

struct kb_queue {
	pthread_mutex_t lock;
	struct kb_ring ring[KB_LANE_KINDS];
	unsigned int quick_run; /* quick jobs taken in a row */
	struct kb_lane common; /* for jobs pushed without a lane */
	size_t count; /* jobs queued, over all lanes */
	struct kb_waiter *idle; /* most recently idle first */
	bool closed;
};

void kb_waiter_init(struct kb_waiter *w);
void kb_waiter_uninit(struct kb_waiter *w);

void kb_queue_init(struct kb_queue *q);
void kb_queue_uninit(struct kb_queue *q);
void kb_lane_init(struct kb_lane *lane, enum kb_lane_kind kind);

/*
 * Appends job to lane (NULL: the queue's own, a quick one). The lane must
 * stay alive while it holds jobs.
 */
void kb_queue_push(struct kb_queue *q, struct kb_lane *lane,
		   struct kb_job *job);
/*
 * Blocks until a job arrives and takes the first job of the lane whose
 * turn it is; NULL once the queue is closed and empty.
 */
struct kb_job *kb_queue_pop(struct kb_queue *q, struct kb_waiter *w);
/* Takes every queued job at once, without blocking (a linked list). */
struct kb_job *kb_queue_take_all(struct kb_queue *q);
/* Jobs queued now (a snapshot). */
size_t kb_queue_count(struct kb_queue *q);
void kb_queue_close(struct kb_queue *q);

#endif
