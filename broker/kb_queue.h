/* SPDX-License-Identifier: MIT */
/*
 * Jobs (one request line each) and the queues that carry them between the
 * event loop and the worker threads.
 */
#ifndef KB_QUEUE_H
#define KB_QUEUE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

struct kb_conn;

struct kb_job {
	struct kb_job *next; /* link in a kb_queue */
	struct kb_job *conn_next; /* link in the connection's order list */
	struct kb_conn *conn;
	char *line; /* request line; may carry a DEK: wiped on free */
	size_t line_len;
	char *resp; /* response line with '\n'; wiped on free */
	size_t resp_len;
	bool done;
	bool close_after; /* close the connection once resp is sent */
};

/* Takes a copy of line[0..len). */
struct kb_job *kb_job_new(struct kb_conn *conn, const char *line, size_t len);
void kb_job_free(struct kb_job *job);

struct kb_queue {
	pthread_mutex_t lock;
	pthread_cond_t nonempty;
	struct kb_job *head, *tail;
	bool closed;
};

void kb_queue_init(struct kb_queue *q);
void kb_queue_uninit(struct kb_queue *q);
void kb_queue_push(struct kb_queue *q, struct kb_job *job);
/* Blocks until a job arrives; NULL once the queue is closed and empty. */
struct kb_job *kb_queue_pop(struct kb_queue *q);
/* Takes every queued job at once, without blocking (a linked list). */
struct kb_job *kb_queue_take_all(struct kb_queue *q);
void kb_queue_close(struct kb_queue *q);

#endif
