/* SPDX-License-Identifier: MIT */
/*
 * The admin lane: one thread for work that may wait on the token for as
 * long as the token takes (SIGHUP's re-read of the configuration and the
 * key catalogue, and a tick about once a second for periodic admin work:
 * kb_lifecycle_tick), so that the event loop never waits for it and
 * workers do not either: a token that hangs while the catalogue is read
 * stops reloads; requests that need no token call go on, and one that
 * would re-read the catalogue after a miss answers from the one it has.
 *
 * Reloads are coalesced: asking while one is pending adds nothing, and
 * asking while one runs makes one more run after it, so the last request
 * is always followed by a whole reload.
 *
 * Threads: kb_admin_reload may be called from any thread;
 * kb_admin_start and kb_admin_stop from the thread that owns the lane.
 * The thread inherits the caller's signal mask: start it with the
 * signals the event loop reads blocked.
 */
#ifndef KB_ADMIN_H
#define KB_ADMIN_H

#include <stdbool.h>
#include <time.h>

struct kb_admin;

#define KB_ADMIN_TICK_S 1

/*
 * Starts the lane; reload(arg) is what each reload runs, tick(arg) what
 * runs every KB_ADMIN_TICK_S while there is no reload to run. 0 or an
 * errno.
 */
int kb_admin_start(void (*reload)(void *arg), void (*tick)(void *arg),
		   void *arg, struct kb_admin **out);

/* Asks for a reload; returns at once. */
void kb_admin_reload(struct kb_admin *a);

/*
 * When the reload or tick that runs now began, in CLOCK_MONOTONIC
 * milliseconds; 0 while none runs. For the watchdog: any thread.
 */
long long kb_admin_busy_since(struct kb_admin *a);

/*
 * Waits until deadline (CLOCK_REALTIME) for the reload that runs, if any
 * (a pending one is dropped), and frees the lane: true. False if the
 * reload is still running then (stuck in the token): the lane is left
 * as it is, and the process must exit without touching the token.
 * NULL is allowed.
 */
bool kb_admin_stop(struct kb_admin *a, const struct timespec *deadline);

#endif
