/* SPDX-License-Identifier: MIT */
/*
 * What the broker tells its service manager (sd_notify, to
 * $NOTIFY_SOCKET) for a Type=notify unit: ready once it serves, reloading
 * while SIGHUP is handled, stopping when it drains, and a status line.
 * Each is a no-op where nothing listens (started by hand).
 */
#ifndef KB_NOTIFY_H
#define KB_NOTIFY_H

/* READY=1 and STATUS=status. */
void kb_notify_ready(const char *status);
/* RELOADING=1 with the monotonic time it began (systemd 253's protocol). */
void kb_notify_reloading(void);
/* STOPPING=1 and STATUS=status. */
void kb_notify_stopping(const char *status);
/* STATUS=status alone. */
void kb_notify_status(const char *status);

/*
 * The watchdog the manager asked for (WatchdogSec=, as $WATCHDOG_USEC
 * for this pid): how often to ping, half its interval, in milliseconds;
 * 0 when there is none.
 */
long long kb_notify_watchdog_ms(void);
/* WATCHDOG=1: the broker is making progress. */
void kb_notify_watchdog(void);

#endif
