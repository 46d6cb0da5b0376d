/* SPDX-License-Identifier: MIT */
/*
 * What the watchdog looks at: for each thread that serves requests or
 * admin work, when the call it is in began (CLOCK_MONOTONIC ms; 0 while
 * it waits for work). A thread binds its stamp once; code deep in the
 * call says when a wait that is not work is over (a lock taken after
 * other threads' writes, a write's confirmation started), so that only
 * time spent in one piece of work, such as one call into the token,
 * counts as "in one call".
 */
#ifndef KB_PROGRESS_H
#define KB_PROGRESS_H

#include <stdatomic.h>

/* Now, in CLOCK_MONOTONIC milliseconds. */
long long kb_progress_now_ms(void);

/* The calling thread's stamp (NULL: none); for the thread's life. */
void kb_progress_bind(atomic_llong *since);

/* The bound stamp, if the thread is busy, restarts now. */
void kb_progress_restart(void);

#endif
