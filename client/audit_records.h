/* SPDX-License-Identifier: MIT */
/*
 * Reading audit trails (docs/audit.md) for keybroker-audit's query and
 * report: which files a command line names, one record per line of them,
 * bounded and checked, times as the filters give them, and strings from
 * the trail made safe to print. Every byte of a trail file is untrusted:
 * whoever could write the file chose it.
 */
#ifndef AUDIT_RECORDS_H
#define AUDIT_RECORDS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define AUDIT_LINE_MAX (1024 * 1024) /* bytes of a line, without its \n */
#define AUDIT_ERR_MAX 1024 /* room for an error message */
#define AUDIT_TIME_TEXT_MAX 32 /* room for a formatted time */

/*
 * One record, as a callback sees it. The strings point into obj or text
 * and live as long as the callback runs; a field the record does not
 * have is NULL (has_uid false).
 */
struct audit_rec {
	const char *file; /* the file, as named on the command line or found */
	unsigned long line; /* from 1 */
	const char *text; /* the line without its newline, NUL-terminated */
	size_t len;
	json_t *obj; /* the whole record */
	json_int_t seq;
	int64_t time; /* microseconds since the epoch */
	const char *event;
	const char *op, *result, *message, *state, *correlation_id;
	const char *key;
	const char *version; /* the key version; NULL on start, where
				 * "version" is the broker's release */
	const char *identity; /* identity.name */
	const char *unit; /* peer.unit */
	bool has_uid;
	json_int_t uid; /* peer.uid */
};

/*
 * Called for each record; returns 0 to go on, or -1 with a message in
 * err, which stops the read.
 */
typedef int (*audit_rec_fn)(const struct audit_rec *rec, void *arg, char *err,
			    size_t errlen);

/* The files a command line names, in the order to read them. */
struct audit_files {
	char **path;
	size_t n;
	/*
	 * What --follow keeps reading: the last argument, or if that is a
	 * directory its audit.jsonl, which need not exist yet.
	 */
	char *follow;
};

/*
 * Expands arg[0..n): a directory gives its audit-*.jsonl files in name
 * order (digit runs compared as numbers), then its audit.jsonl if there
 * is one; anything else is taken as a file. 0, or -1 with err (an
 * argument that does not exist, a directory without a trail).
 */
int audit_files_expand(char *const *arg, size_t n, struct audit_files *f,
		       char *err, size_t errlen);
void audit_files_free(struct audit_files *f);

/* Reads one file, at once or (for --follow) as it grows. */
struct audit_reader {
	const char *path;
	int fd; /* -1: closed */
	dev_t dev;
	ino_t ino;
	off_t off; /* bytes read so far */
	unsigned long line; /* lines given so far */
	char *buf; /* the line being read, not yet ended */
	size_t len, cap;
};

/* Opens path (kept, not copied). 0, or -1 with err. */
int audit_reader_open(struct audit_reader *r, const char *path, char *err,
		      size_t errlen);
/*
 * Reads to the current end of the file and gives fn each line ended by a
 * newline. With final, a last line without one is given too (and must be
 * a whole record); without, it waits in r for the rest. 0, or -1 with
 * err: a read error, a line over AUDIT_LINE_MAX, a line that is not a
 * record ("FILE:LINE: what"), or fn's error.
 */
int audit_reader_read(struct audit_reader *r, bool final, audit_rec_fn fn,
		      void *arg, char *err, size_t errlen);
/* Starts again from the beginning of the file (it was truncated). */
int audit_reader_rewind(struct audit_reader *r, char *err, size_t errlen);
/* Closes r; closing a closed reader does nothing. */
void audit_reader_close(struct audit_reader *r);

/* Reads every file of f, whole, in order. 0, or -1 with err. */
int audit_read_files(const struct audit_files *f, audit_rec_fn fn, void *arg,
		     char *err, size_t errlen);

/*
 * Parses an RFC 3339 time ("2026-11-30T05:18:38Z", with an optional
 * fraction, Z or a +HH:MM/-HH:MM offset) or a date ("2026-11-30", midnight
 * UTC) into microseconds since the epoch; digits past microseconds are
 * dropped. 0, or -1 if s is neither.
 */
int audit_time_parse(const char *s, int64_t *us);
/*
 * Formats us as RFC 3339 UTC into buf (AUDIT_TIME_TEXT_MAX bytes): with
 * micro "2026-11-30T05:18:38.123456Z", else "2026-11-30T05:18:38Z".
 */
void audit_time_format(int64_t us, bool micro, char *buf);

/*
 * Writes s to f (or, with f NULL, only measures it) so that it cannot
 * end a line or reach a terminal as a control: C0 and C1 controls, DEL,
 * line and paragraph separators and the invisible and bidirectional
 * format characters become \xHH or \uHHHH, a backslash \\, and bytes that
 * are not UTF-8 \xHH. With html, & < > " ' are escaped as entities too.
 * maxcols > 0 cuts the text to that many columns, the last one an
 * ellipsis. Returns the columns written (wide characters count two).
 */
size_t audit_put_clean(FILE *f, const char *s, size_t maxcols, bool html);

/*
 * Prints "keybroker-audit CMD: MSG" on stderr (an error, or what was
 * done), MSG made safe to print.
 */
void audit_say(const char *cmd, const char *msg);

/*
 * A usage error of command cmd: says fmt's message (made safe) and where
 * the help is, and returns AUDIT_EXIT_UNREADABLE.
 */
int audit_usage_error(const char *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif
