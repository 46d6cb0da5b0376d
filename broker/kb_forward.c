// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <syslog.h>
#include <systemd/sd-journal.h>
#include <time.h>

#include "kb_forward.h"
#include "kb_log.h"

/* journald's MESSAGE_ID of every audit record. */
#define AUDIT_MESSAGE_ID "MESSAGE_ID=6f1d2c4a9b8e4f7d8a3c5e2b1d0f9a7c"
#define FORWARD_RETRY_MS (60 * 1000)
/* Where journald takes native entries (sd_journal_sendv sends there). */
#define JOURNAL_SOCKET "/run/systemd/journal/socket"

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void kb_forward_init(struct kb_forward *f, enum kb_audit_forward to,
		     const char *origin, const char *dir)
{
	f->to = to;
	f->origin = origin;
	f->dir = dir;
	atomic_init(&f->warned, false);
	atomic_init(&f->journal_checked_ms, 0);
	atomic_init(&f->journal_there, false);
	if (to == KB_AUDIT_FORWARD_SYSLOG)
		openlog("keybrokerd-audit", LOG_PID | LOG_NDELAY, LOG_AUTHPRIV);
}

void kb_forward_close(struct kb_forward *f)
{
	if (f->to == KB_AUDIT_FORWARD_SYSLOG)
		closelog();
}

static const char *member(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));

	return s != NULL ? s : "";
}

struct fields {
	struct iovec iov[12];
	char buf[10][320];
	int n, used;
};

static void field(struct fields *f, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void field(struct fields *f, const char *fmt, ...)
{
	char *b = f->buf[f->used++];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(b, sizeof(f->buf[0]), fmt, ap);
	va_end(ap);
	f->iov[f->n++] = (struct iovec){ b, strlen(b) };
}

/* Sends the record to journald, with fields to filter on. */
static int to_journal(json_t *body, const char *line, size_t len, uint64_t seq,
		      const char *origin)
{
	json_t *uid = json_object_get(json_object_get(body, "peer"), "uid");
	const char *result = member(body, "result");
	struct fields f = { .n = 0 };
	char *msg;
	int r;

	if ((msg = malloc(len + 9)) == NULL)
		return -ENOMEM;
	memcpy(msg, "MESSAGE=", 8);
	memcpy(msg + 8, line, len);
	f.iov[f.n++] = (struct iovec){ msg, len + 8 };
	f.iov[f.n++] = (struct iovec){ AUDIT_MESSAGE_ID,
				       sizeof(AUDIT_MESSAGE_ID) - 1 };
	field(&f, "PRIORITY=%d",
	      result[0] == '\0' || strcmp(result, "ok") == 0 ? LOG_INFO :
							       LOG_NOTICE);
	field(&f, "SYSLOG_IDENTIFIER=keybrokerd-audit");
	field(&f, "KEYBROKER_SEQ=%llu", (unsigned long long)seq);
	field(&f, "KEYBROKER_ORIGIN=%.255s", origin);
	field(&f, "KEYBROKER_EVENT=%.64s", member(body, "event"));
	field(&f, "KEYBROKER_OP=%.64s", member(body, "op"));
	field(&f, "KEYBROKER_RESULT=%.64s", result);
	field(&f, "KEYBROKER_KEY=%.128s", member(body, "key"));
	field(&f, "KEYBROKER_IDENTITY=%.64s",
	      member(json_object_get(body, "identity"), "name"));
	if (json_is_integer(uid))
		field(&f, "KEYBROKER_UID=%lld",
		      (long long)json_integer_value(uid));
	r = sd_journal_sendv(f.iov, f.n);
	free(msg);
	return r;
}

void kb_forward_record(struct kb_forward *f, json_t *body, const char *line,
		       size_t len, uint64_t seq)
{
	int64_t now = now_ms();
	struct stat st;
	int r = 0;

	switch (f->to) {
	case KB_AUDIT_FORWARD_NONE:
		return;
	case KB_AUDIT_FORWARD_JOURNAL:
		/*
		 * libsystemd drops entries quietly where there is no
		 * journal: whether there is one is looked at each minute.
		 */
		if (now >= atomic_load(&f->journal_checked_ms)) {
			atomic_store(&f->journal_checked_ms,
				     now + FORWARD_RETRY_MS);
			atomic_store(&f->journal_there,
				     stat(JOURNAL_SOCKET, &st) == 0 &&
					     S_ISSOCK(st.st_mode));
		}
		r = atomic_load(&f->journal_there) ?
			    to_journal(body, line, len, seq, f->origin) :
			    -ENOENT;
		if (r < 0)
			atomic_store(&f->journal_there, false);
		break;
	case KB_AUDIT_FORWARD_SYSLOG:
		syslog(LOG_AUTHPRIV | LOG_INFO, "%.*s", (int)len, line);
		break;
	}
	if (r < 0 && !atomic_exchange(&f->warned, true))
		kb_warn("audit: cannot forward records to journald (%s); the "
			"trail in %s has them all; looking for it again each "
			"minute (said once)",
			strerror(-r), f->dir);
}
