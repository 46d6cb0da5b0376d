/* SPDX-License-Identifier: MIT */
/*
 * Logging for the daemon and tools: one line per event on stderr (journald
 * or a terminal picks it up). On journald's stream ($JOURNAL_STREAM names
 * stderr) a line starts with its syslog priority, "<3>" (error) to "<7>"
 * (debug), so that journalctl -p err works; elsewhere with the time and
 * the program. Never pass a PIN, token, DEK or ciphertext.
 */
#ifndef KB_LOG_H
#define KB_LOG_H

#include <stdbool.h>

enum kb_log_level {
	KB_LOG_ERROR,
	KB_LOG_WARN,
	KB_LOG_INFO,
	KB_LOG_DEBUG,
};

/* Before any thread starts. */
void kb_log_init(const char *progname, enum kb_log_level level);
/* Safe while other threads log. */
void kb_log_set_level(enum kb_log_level level);
int kb_log_level_parse(const char *name, enum kb_log_level *level);
/* True if lines of level are written now. */
bool kb_log_enabled(enum kb_log_level level);
void kb_log(enum kb_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define kb_err(...) kb_log(KB_LOG_ERROR, __VA_ARGS__)
#define kb_warn(...) kb_log(KB_LOG_WARN, __VA_ARGS__)
#define kb_info(...) kb_log(KB_LOG_INFO, __VA_ARGS__)
#define kb_debug(...) kb_log(KB_LOG_DEBUG, __VA_ARGS__)

#endif
