// SPDX-License-Identifier: MIT
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kb_log.h"

static const char *log_progname = "keybroker";
/* Set on reload while workers log: atomic. */
static atomic_int log_max = KB_LOG_INFO;

static const char *const level_names[] = {
	[KB_LOG_ERROR] = "error",
	[KB_LOG_WARN] = "warning",
	[KB_LOG_INFO] = "info",
	[KB_LOG_DEBUG] = "debug",
};

void kb_log_init(const char *progname, enum kb_log_level level)
{
	log_progname = progname;
	atomic_store_explicit(&log_max, (int)level, memory_order_relaxed);
}

void kb_log_set_level(enum kb_log_level level)
{
	atomic_store_explicit(&log_max, (int)level, memory_order_relaxed);
}

int kb_log_level_parse(const char *name, enum kb_log_level *level)
{
	size_t i;

	for (i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcmp(name, level_names[i]) == 0) {
			*level = (enum kb_log_level)i;
			return 0;
		}
	}
	return -1;
}

bool kb_log_enabled(enum kb_log_level level)
{
	return (int)level <=
	       atomic_load_explicit(&log_max, memory_order_relaxed);
}

/* One write(2) per line so that lines from several threads never mix. */
void kb_log(enum kb_log_level level, const char *fmt, ...)
{
	char line[1024];
	struct timespec ts;
	struct tm tm;
	va_list ap;
	int n, m;

	if ((int)level > atomic_load_explicit(&log_max, memory_order_relaxed))
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof(line),
		     "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s[%d]: %s: ",
		     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		     tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, log_progname,
		     (int)getpid(), level_names[level]);
	if (n < 0 || (size_t)n >= sizeof(line))
		return;
	va_start(ap, fmt);
	m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		return;
	n += m;
	if ((size_t)n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, (size_t)n) < 0)
		return;
}
