/* SPDX-License-Identifier: MIT */
/*
 * What the watchdog looks at: for each thread that serves requests or
 * admin work, when the call it is in began (CLOCK_MONOTONIC ms; 0 while
 * it waits for work). A thread binds its stamp once; code deep in the
 * call says when it waits for other threads' work and when that wait is
 * over, and when a new piece of work begins (a write's confirmation), so
 * that only time spent in one piece of work, such as one call into the
 * token, counts as "in one call".
 */
#ifndef KB_PROGRESS_H
#define KB_PROGRESS_H

#include <stdatomic.h>

/* Now, in CLOCK_MONOTONIC milliseconds. */
long long kb_progress_now_ms(void);

/* The calling thread's stamp (NULL: none); for the thread's life. */
void kb_progress_bind(atomic_llong *since);

/*
 * Around a wait for other threads' work (a lock they hold while they call
 * the token): kb_progress_wait takes the thread out of the watchdog's
 * view, kb_progress_restart puts it back, busy from now. A thread that
 * waits is not stuck; the one it waits for is watched.
 */
void kb_progress_wait(void);
void kb_progress_restart(void);

#endif
