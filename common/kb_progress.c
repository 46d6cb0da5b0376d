// SPDX-License-Identifier: MIT
#include <stdbool.h>
#include <time.h>

#include "kb_progress.h"

static _Thread_local atomic_llong *stamp;
static _Thread_local bool waiting; /* between wait and restart */

long long kb_progress_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void kb_progress_bind(atomic_llong *since)
{
	stamp = since;
}

void kb_progress_wait(void)
{
	if (stamp != NULL && atomic_load(stamp) != 0) {
		atomic_store(stamp, 0);
		waiting = true;
	}
}

void kb_progress_restart(void)
{
	if (stamp != NULL && (waiting || atomic_load(stamp) != 0))
		atomic_store(stamp, kb_progress_now_ms());
	waiting = false;
}
