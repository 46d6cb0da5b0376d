// SPDX-License-Identifier: MIT
/*
 * keybroker-audit query: the records of a trail that match filters, as a
 * table or as their own lines, and with --follow the ones appended after,
 * across rotations, until SIGINT or SIGTERM.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "audit_records.h"
#include "audit_tool.h"

#define FOLLOW_POLL_NS (200 * 1000 * 1000)

/* The widths of the table's columns. */
enum { W_TIME = 20, W_SEQ = 7, W_EVENT = 10, W_OP = 16, W_RESULT = 14 };
enum { W_IDENTITY = 16, W_KEY = 36, W_UID = 6, W_UNIT = 24 };

/* Set by SIGINT and SIGTERM while following. */
static volatile sig_atomic_t stop_following;

struct query {
	bool has_since, has_until, has_uid, json, follow;
	int64_t since, until;
	json_int_t uid;
	const char *identity, *key, *version, *op, *event, *result, *unit,
		*correlation_id;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: keybroker-audit query [FILTERS] [--json] [--follow] "
		"FILE|DIR...\n"
		"\n"
		"Prints the records of an audit trail that match every filter "
		"given.\n"
		"A DIR stands for its audit-*.jsonl files in order, then its "
		"audit.jsonl.\n"
		"\n"
		"filters (each at most once; a record must match all):\n"
		"  --since T             at or after T\n"
		"  --until T             before T\n"
		"                        T: RFC 3339 (2026-11-30T05:18:38Z, "
		"with an\n"
		"                        optional fraction and offset) or a "
		"date\n"
		"                        (2026-11-30: midnight UTC)\n"
		"  --identity NAME       identity.name is NAME\n"
		"  --key NAME            the key named is NAME\n"
		"  --version V           the key version used is V\n"
		"  --op OP               the op is OP (unwrapKey, rotate, ...)\n"
		"  --event E             request, start, reload, stop, token,\n"
		"                        lifecycle, admin, resumed, checkpoint\n"
		"  --result R            ok, error (any result but ok) or an "
		"error code\n"
		"                        (Forbidden, ...); records without a "
		"result\n"
		"                        never match\n"
		"  --uid N               peer.uid is N\n"
		"  --unit U              peer.unit is U\n"
		"  --correlation-id ID   correlationId is ID\n"
		"\n"
		"output:\n"
		"  (default)             a table: time (UTC, to the second), "
		"seq, event,\n"
		"                        op, result, identity, key/version, "
		"uid, unit;\n"
		"                        long values cut (...), control "
		"characters\n"
		"                        shown escaped\n"
		"  -j, --json            the matching lines themselves, "
		"verbatim (for\n"
		"                        a JSON tool; not escaped for a "
		"terminal)\n"
		"  -f, --follow          then keep reading the last file as it "
		"grows,\n"
		"                        and the new audit.jsonl when it is "
		"rotated,\n"
		"                        until SIGINT or SIGTERM (exit 0)\n"
		"  -h, --help            this text\n"
		"\n"
		"exit status: 0 done (whether or not anything matched), 2 a "
		"file cannot\n"
		"be read, holds a line that is not a record (FILE:LINE says "
		"which), or\n"
		"bad usage\n");
}

/* ---- matching ---- */

static bool str_matches(const char *want, const char *have)
{
	return want == NULL || (have != NULL && strcmp(want, have) == 0);
}

static bool result_matches(const char *want, const char *have)
{
	if (want == NULL)
		return true;
	if (have == NULL)
		return false;
	if (strcmp(want, "error") == 0)
		return strcmp(have, "ok") != 0;
	return strcmp(want, have) == 0;
}

static bool rec_matches(const struct query *q, const struct audit_rec *r)
{
	return (!q->has_since || r->time >= q->since) &&
	       (!q->has_until || r->time < q->until) &&
	       (!q->has_uid || (r->has_uid && r->uid == q->uid)) &&
	       str_matches(q->identity, r->identity) &&
	       str_matches(q->key, r->key) &&
	       str_matches(q->version, r->version) &&
	       str_matches(q->op, r->op) && str_matches(q->event, r->event) &&
	       result_matches(q->result, r->result) &&
	       str_matches(q->unit, r->unit) &&
	       str_matches(q->correlation_id, r->correlation_id);
}

/* ---- output ---- */

/*
 * One cell: s cut to width and padded, unless it is the last; a number
 * (right) is aligned right and never cut.
 */
static void cell(const char *s, int width, bool right, bool last)
{
	size_t cols =
		audit_put_clean(NULL, s, right ? 0 : (size_t)width, false);
	int pad = (size_t)width > cols ? width - (int)cols : 0;

	if (right)
		printf("%*s", pad, "");
	audit_put_clean(stdout, s, right ? 0 : (size_t)width, false);
	if (last)
		putchar('\n');
	else
		printf("%*s", right ? 1 : pad + 1, "");
}

static void table_head(void)
{
	cell("TIME", W_TIME, false, false);
	cell("SEQ", W_SEQ, true, false);
	cell("EVENT", W_EVENT, false, false);
	cell("OP", W_OP, false, false);
	cell("RESULT", W_RESULT, false, false);
	cell("IDENTITY", W_IDENTITY, false, false);
	cell("KEY/VERSION", W_KEY, false, false);
	cell("UID", W_UID, true, false);
	cell("UNIT", W_UNIT, false, true);
}

static const char *or_dash(const char *s)
{
	return s != NULL ? s : "-";
}

static int table_row(const struct audit_rec *r, char *err, size_t errlen)
{
	char when[AUDIT_TIME_TEXT_MAX], seq[24], uid[24];
	char *key = NULL;

	audit_time_format(r->time, false, when);
	snprintf(seq, sizeof(seq), "%lld", (long long)r->seq);
	snprintf(uid, sizeof(uid), "%lld", (long long)r->uid);
	if (r->key != NULL && r->version != NULL && r->version[0] != '\0' &&
	    asprintf(&key, "%s/%s", r->key, r->version) < 0) {
		snprintf(err, errlen, "%s:%lu: out of memory", r->file,
			 r->line);
		return -1;
	}
	cell(when, W_TIME, false, false);
	cell(seq, W_SEQ, true, false);
	cell(r->event, W_EVENT, false, false);
	cell(or_dash(r->op), W_OP, false, false);
	/* A token record's outcome is its state. */
	cell(or_dash(r->result != NULL ? r->result : r->state), W_RESULT, false,
	     false);
	cell(or_dash(r->identity), W_IDENTITY, false, false);
	cell(key != NULL ? key : or_dash(r->key), W_KEY, false, false);
	cell(r->has_uid ? uid : "-", W_UID, true, false);
	cell(or_dash(r->unit), W_UNIT, false, true);
	free(key);
	return 0;
}

static int on_record(const struct audit_rec *r, void *arg, char *err,
		     size_t errlen)
{
	const struct query *q = arg;

	if (!rec_matches(q, r))
		return 0;
	if (q->json) {
		fwrite(r->text, 1, r->len, stdout);
		putchar('\n');
		return 0;
	}
	return table_row(r, err, errlen);
}

static int flush_out(char *err, size_t errlen)
{
	errno = 0;
	if (fflush(stdout) != 0 || ferror(stdout)) {
		snprintf(err, errlen, "standard output: %s",
			 errno != 0 ? strerror(errno) : "write error");
		return -1;
	}
	return 0;
}

/* ---- following ---- */

static void on_stop(int sig)
{
	stop_following = 1;
}

static void catch_stop_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;
	sigemptyset(&sa.sa_mask);
	/* No SA_RESTART: the poll's sleep ends at once. */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

/*
 * One look at the followed path: reads what was appended; if the path is
 * now another file (rotated), finishes the old one and opens the new; if
 * the file shrank, reads it again from the start.
 */
static int follow_step(struct query *q, const char *path,
		       struct audit_reader *rd, char *err, size_t errlen)
{
	struct stat st;

	if (rd->fd >= 0 &&
	    audit_reader_read(rd, false, on_record, q, err, errlen) != 0)
		return -1;
	if (stat(path, &st) != 0) {
		if (errno == ENOENT)
			return 0; /* between rename and create */
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (rd->fd >= 0 && st.st_dev == rd->dev && st.st_ino == rd->ino) {
		if (st.st_size >= rd->off)
			return 0;
		snprintf(err, errlen,
			 "%s shrank (from %lld to %lld bytes): reading it "
			 "again from the start",
			 path, (long long)rd->off, (long long)st.st_size);
		audit_say("query", err);
		return audit_reader_rewind(rd, err, errlen);
	}
	if (rd->fd >= 0) {
		if (audit_reader_read(rd, true, on_record, q, err, errlen) != 0)
			return -1;
		audit_reader_close(rd);
	}
	if (audit_reader_open(rd, path, err, errlen) != 0)
		return -1;
	return audit_reader_read(rd, false, on_record, q, err, errlen);
}

/* Follows path (rd open on it, or closed if it did not exist yet). */
static int follow(struct query *q, const char *path, struct audit_reader *rd,
		  char *err, size_t errlen)
{
	const struct timespec poll = { 0, FOLLOW_POLL_NS };

	while (!stop_following) {
		if (follow_step(q, path, rd, err, errlen) != 0 ||
		    flush_out(err, errlen) != 0)
			return -1;
		if (!stop_following)
			nanosleep(&poll, NULL);
	}
	return 0;
}

/* Reads the files, the followed one left open in rd; then follows. */
static int run(struct query *q, const struct audit_files *files, char *err,
	       size_t errlen)
{
	struct audit_reader rd = { .fd = -1 };
	bool last_followed;
	size_t i;
	int ret = -1;

	if (!q->json)
		table_head();
	for (i = 0; i < files->n && !stop_following; i++) {
		last_followed = q->follow && i + 1 == files->n &&
				strcmp(files->path[i], files->follow) == 0;
		if (audit_reader_open(&rd, files->path[i], err, errlen) != 0 ||
		    audit_reader_read(&rd, !last_followed, on_record, q, err,
				      errlen) != 0)
			goto out;
		if (!last_followed)
			audit_reader_close(&rd);
	}
	if (flush_out(err, errlen) != 0)
		goto out;
	ret = q->follow ? follow(q, files->follow, &rd, err, errlen) : 0;
out:
	audit_reader_close(&rd);
	return ret;
}

/* ---- command line ---- */

enum {
	O_SINCE = 256,
	O_UNTIL,
	O_IDENTITY,
	O_KEY,
	O_VERSION,
	O_OP,
	O_EVENT,
	O_RESULT,
	O_UID,
	O_UNIT,
	O_CORRELATION,
};

static int parse_time_opt(const char *name, const char *s, bool *has,
			  int64_t *t)
{
	if (*has)
		return audit_usage_error("query", "--%s given twice", name);
	if (audit_time_parse(s, t) != 0)
		return audit_usage_error("query",
					 "--%s '%.64s': not an RFC 3339 time "
					 "(2026-11-30T05:18:38Z) or a date "
					 "(2026-11-30)",
					 name, s);
	*has = true;
	return 0;
}

static int parse_uid(const char *s, struct query *q)
{
	char *end;
	unsigned long long v;

	if (q->has_uid)
		return audit_usage_error("query", "--uid given twice");
	errno = 0;
	v = strtoull(s, &end, 10);
	if (s[0] < '0' || s[0] > '9' || *end != '\0' || errno != 0 ||
	    v > INT64_MAX)
		return audit_usage_error("query", "--uid '%.32s': not a number",
					 s);
	q->uid = (json_int_t)v;
	q->has_uid = true;
	return 0;
}

static int set_string(const char *name, const char **slot, const char *s)
{
	if (*slot != NULL)
		return audit_usage_error("query", "--%s given twice", name);
	*slot = s;
	return 0;
}

static int parse_opt(int c, const char *name, struct query *q)
{
	switch (c) {
	case O_SINCE:
		return parse_time_opt(name, optarg, &q->has_since, &q->since);
	case O_UNTIL:
		return parse_time_opt(name, optarg, &q->has_until, &q->until);
	case O_UID:
		return parse_uid(optarg, q);
	case O_IDENTITY:
		return set_string(name, &q->identity, optarg);
	case O_KEY:
		return set_string(name, &q->key, optarg);
	case O_VERSION:
		return set_string(name, &q->version, optarg);
	case O_OP:
		return set_string(name, &q->op, optarg);
	case O_EVENT:
		return set_string(name, &q->event, optarg);
	case O_RESULT:
		return set_string(name, &q->result, optarg);
	case O_UNIT:
		return set_string(name, &q->unit, optarg);
	case O_CORRELATION:
		return set_string(name, &q->correlation_id, optarg);
	case 'j':
		q->json = true;
		return 0;
	case 'f':
		q->follow = true;
		return 0;
	default:
		return audit_usage_error("query",
					 "unknown option or missing argument");
	}
}

int audit_query_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "since", required_argument, NULL, O_SINCE },
		{ "until", required_argument, NULL, O_UNTIL },
		{ "identity", required_argument, NULL, O_IDENTITY },
		{ "key", required_argument, NULL, O_KEY },
		{ "version", required_argument, NULL, O_VERSION },
		{ "op", required_argument, NULL, O_OP },
		{ "event", required_argument, NULL, O_EVENT },
		{ "result", required_argument, NULL, O_RESULT },
		{ "uid", required_argument, NULL, O_UID },
		{ "unit", required_argument, NULL, O_UNIT },
		{ "correlation-id", required_argument, NULL, O_CORRELATION },
		{ "json", no_argument, NULL, 'j' },
		{ "follow", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct audit_files files;
	struct query q = { 0 };
	char err[AUDIT_ERR_MAX];
	int c, idx, ret;

	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "jfh", opts, &idx)) != -1) {
		if (c == 'h') {
			usage(stdout);
			return AUDIT_EXIT_OK;
		}
		if (c == '?')
			return audit_usage_error(
				"query",
				"'%.64s': unknown option, or it "
				"needs an argument",
				argv[optind - 1]);
		if (parse_opt(c, c >= O_SINCE ? opts[idx].name : "", &q) != 0)
			return AUDIT_EXIT_UNREADABLE;
	}
	if (optind >= argc)
		return audit_usage_error("query", "no FILE or DIR to read");
	if (audit_files_expand(argv + optind, (size_t)(argc - optind), &files,
			       err, sizeof(err)) != 0) {
		audit_say("query", err);
		return AUDIT_EXIT_UNREADABLE;
	}
	if (q.follow)
		catch_stop_signals();
	ret = run(&q, &files, err, sizeof(err));
	audit_files_free(&files);
	if (ret != 0) {
		fflush(stdout);
		audit_say("query", err);
		return AUDIT_EXIT_UNREADABLE;
	}
	return AUDIT_EXIT_OK;
}
