// SPDX-License-Identifier: MIT
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kb_log.h"

static const char *log_progname = "keybroker";
/* stderr is journald's stream: lines start with "<N>", no time. */
static bool log_journal;
/* Set on reload while workers log: atomic. */
static atomic_int log_max = KB_LOG_INFO;

static const char *const level_names[] = {
	[KB_LOG_ERROR] = "error",
	[KB_LOG_WARN] = "warning",
	[KB_LOG_INFO] = "info",
	[KB_LOG_DEBUG] = "debug",
};

/* Syslog priorities of the levels: err, warning, info, debug. */
static const int level_priority[] = {
	[KB_LOG_ERROR] = 3,
	[KB_LOG_WARN] = 4,
	[KB_LOG_INFO] = 6,
	[KB_LOG_DEBUG] = 7,
};

/*
 * Whether stderr is the stream systemd connected to journald: it says so
 * in $JOURNAL_STREAM as "DEVICE:INODE" of that stream.
 */
static bool stderr_is_journal(void)
{
	const char *v = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;
	char end;

	return v != NULL && sscanf(v, "%llu:%llu%c", &dev, &ino, &end) == 2 &&
	       fstat(STDERR_FILENO, &st) == 0 &&
	       (unsigned long long)st.st_dev == dev &&
	       (unsigned long long)st.st_ino == ino;
}

void kb_log_init(const char *progname, enum kb_log_level level)
{
	log_progname = progname;
	log_journal = stderr_is_journal();
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
	/* journald stamps and names each line itself, and reads <N>. */
	if (log_journal)
		n = snprintf(line, sizeof(line),
			     "<%d>%s: ", level_priority[level],
			     level_names[level]);
	else
		n = snprintf(
			line, sizeof(line),
			"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s[%d]: %s: ",
			tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
			tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
			log_progname, (int)getpid(), level_names[level]);
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
