// SPDX-License-Identifier: MIT
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "kb_forward.h"
#include "kb_log.h"

/* journald's MESSAGE_ID of every audit record. */
#define AUDIT_MESSAGE_ID "6f1d2c4a9b8e4f7d8a3c5e2b1d0f9a7c"
#define IDENT "keybrokerd-audit"
/* Where journald takes native entries, and syslog daemons datagrams. */
#define JOURNAL_SOCKET "/run/systemd/journal/socket"
#define SYSLOG_SOCKET "/dev/log"
#define LOOK_AGAIN_MS (60 * 1000)
#define ENTRY_MAX (64 * 1024) /* larger entries are dropped */

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void kb_forward_init(struct kb_forward *f, enum kb_audit_forward to,
		     const char *origin, const char *dir, bool quiet)
{
	f->to = to;
	f->quiet = quiet;
	f->origin = origin;
	f->dir = dir;
	f->fd = -1;
	atomic_init(&f->warned, false);
	atomic_init(&f->look_after_ms, 0);
	atomic_init(&f->there, false);
	atomic_init(&f->dropped, 0);
	if (to != KB_AUDIT_FORWARD_NONE)
		f->fd = socket(AF_UNIX,
			       SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
}

void kb_forward_close(struct kb_forward *f)
{
	unsigned long n = atomic_load(&f->dropped);

	if (n > 0 && !f->quiet)
		kb_warn("audit: %lu records were not forwarded (the trail in "
			"%s has them all)",
			n, f->dir);
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
}

static const char *member(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));

	return s != NULL ? s : "";
}

/* Appends a formatted text to b (n bytes used of ENTRY_MAX); -1 if full. */
static int put(char *b, size_t *n, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int put(char *b, size_t *n, const char *fmt, ...)
{
	va_list ap;
	int m;

	va_start(ap, fmt);
	m = vsnprintf(b + *n, ENTRY_MAX - *n, fmt, ap);
	va_end(ap);
	if (m < 0 || (size_t)m >= ENTRY_MAX - *n)
		return -1;
	*n += (size_t)m;
	return 0;
}

/*
 * The record as a native journal entry: KEY=value lines (no value holds
 * a newline: the record is one line, the other values are the broker's
 * or checked names), with fields to filter on. 0, or -1 if too long.
 */
static int journal_entry(char *b, size_t *n, json_t *body, const char *line,
			 size_t len, uint64_t seq, const char *origin)
{
	json_t *uid = json_object_get(json_object_get(body, "peer"), "uid");
	const char *result = member(body, "result");

	*n = 0;
	if (put(b, n,
		"MESSAGE=%.*s\nMESSAGE_ID=%s\nPRIORITY=%d\n"
		"SYSLOG_IDENTIFIER=%s\nKEYBROKER_SEQ=%llu\n"
		"KEYBROKER_ORIGIN=%.255s\nKEYBROKER_EVENT=%.64s\n",
		(int)len, line, AUDIT_MESSAGE_ID,
		result[0] == '\0' || strcmp(result, "ok") == 0 ? LOG_INFO :
								 LOG_NOTICE,
		IDENT, (unsigned long long)seq, origin,
		member(body, "event")) != 0 ||
	    put(b, n,
		"KEYBROKER_OP=%.64s\nKEYBROKER_RESULT=%.64s\n"
		"KEYBROKER_KEY=%.128s\nKEYBROKER_IDENTITY=%.64s\n",
		member(body, "op"), result, member(body, "key"),
		member(json_object_get(body, "identity"), "name")) != 0)
		return -1;
	if (json_is_integer(uid) &&
	    put(b, n, "KEYBROKER_UID=%lld\n",
		(long long)json_integer_value(uid)) != 0)
		return -1;
	return 0;
}

/* The record as a syslog datagram, as syslog(3) would send it. */
static int syslog_entry(char *b, size_t *n, const char *line, size_t len)
{
	char stamp[32];
	time_t now = time(NULL);
	struct tm tm;

	localtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%b %e %H:%M:%S", &tm);
	*n = 0;
	return put(b, n, "<%d>%s %s[%d]: %.*s", LOG_AUTHPRIV | LOG_INFO, stamp,
		   IDENT, (int)getpid(), (int)len, line);
}

/*
 * Sends b[0..n) to path without ever waiting: a daemon that is not
 * there, or not reading, loses the entry. 0 or -errno.
 */
static int send_to(int fd, const char *path, const char *b, size_t n)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (sendto(fd, b, n, MSG_NOSIGNAL, (struct sockaddr *)&sa,
		   sizeof(sa)) == (ssize_t)n)
		return 0;
	return -errno;
}

void kb_forward_record(struct kb_forward *f, json_t *body, const char *line,
		       size_t len, uint64_t seq)
{
	const char *path = f->to == KB_AUDIT_FORWARD_JOURNAL ? JOURNAL_SOCKET :
							       SYSLOG_SOCKET;
	int64_t now = now_ms();
	struct stat st;
	size_t n;
	char *b;
	int r;

	if (f->to == KB_AUDIT_FORWARD_NONE || f->fd < 0)
		return;
	/* Whether the daemon is there is looked at each minute. */
	if (now >= atomic_load(&f->look_after_ms)) {
		atomic_store(&f->look_after_ms, now + LOOK_AGAIN_MS);
		atomic_store(&f->there,
			     stat(path, &st) == 0 && S_ISSOCK(st.st_mode));
	}
	if (!atomic_load(&f->there) || (b = malloc(ENTRY_MAX)) == NULL) {
		atomic_fetch_add(&f->dropped, 1);
		r = -ENOENT;
	} else {
		r = (f->to == KB_AUDIT_FORWARD_JOURNAL ?
			     journal_entry(b, &n, body, line, len, seq,
					   f->origin) :
			     syslog_entry(b, &n, line, len)) != 0 ?
			    -EMSGSIZE :
			    send_to(f->fd, path, b, n);
		free(b);
		if (r != 0)
			atomic_fetch_add(&f->dropped, 1);
		if (r == -ENOENT || r == -ECONNREFUSED)
			atomic_store(&f->there, false);
	}
	if (r != 0 && !f->quiet && !atomic_exchange(&f->warned, true))
		kb_warn("audit: cannot forward records to %s (%s); the trail in "
			"%s has them all, and forwarding goes on when it can "
			"(said once)",
			path, strerror(-r), f->dir);
}
