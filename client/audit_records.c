// SPDX-License-Identifier: MIT
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "audit_records.h"
#include "audit_tool.h"
#include "kb_cursor.h"

#define READ_CHUNK 65536
#define LINE_FIRST 4096 /* first allocation of a line buffer */
#define QUOTE_MAX 40 /* columns of a value quoted in an error */

/* ---- times ---- */

static bool leap_year(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int month_days(int y, int m)
{
	static const int days[] = { 31, 28, 31, 30, 31, 30,
				    31, 31, 30, 31, 30, 31 };

	return m == 2 && leap_year(y) ? 29 : days[m - 1];
}

/* Days from 1970-01-01 to y-m-d, proleptic Gregorian (Hinnant's). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/* Takes exactly n decimal digits. */
static int take_digits(struct kb_cursor *c, int n, int *v)
{
	int ch, i;

	*v = 0;
	for (i = 0; i < n; i++) {
		ch = kb_cursor_get(c);
		if (ch < '0' || ch > '9')
			return -1;
		*v = *v * 10 + (ch - '0');
	}
	return 0;
}

/* ".123456789": microseconds, the digits past them dropped. */
static int take_fraction(struct kb_cursor *c, int64_t *us)
{
	int64_t scale = 100000;
	int n = 0;

	*us = 0;
	while (kb_cursor_peek(c) >= '0' && kb_cursor_peek(c) <= '9') {
		*us += scale * (kb_cursor_get(c) - '0');
		scale /= 10;
		if (++n > 9)
			return -1;
	}
	return n > 0 ? 0 : -1;
}

/* "Z", or "+HH:MM" / "-HH:MM": seconds east of UTC. */
static int take_offset(struct kb_cursor *c, int64_t *east)
{
	int ch = kb_cursor_get(c), h, m;

	*east = 0;
	if (ch == 'Z' || ch == 'z')
		return 0;
	if (ch != '+' && ch != '-')
		return -1;
	if (take_digits(c, 2, &h) != 0 || !kb_cursor_expect(c, ":", 1) ||
	    take_digits(c, 2, &m) != 0 || h > 23 || m > 59)
		return -1;
	*east = (ch == '-' ? -1 : 1) * (int64_t)(h * 3600 + m * 60);
	return 0;
}

int audit_time_parse(const char *s, int64_t *us)
{
	struct kb_cursor c;
	int y, mo, d, h, mi, sec, ch;
	int64_t frac = 0, east, secs;

	kb_cursor_init(&c, s, strlen(s));
	if (take_digits(&c, 4, &y) != 0 || !kb_cursor_expect(&c, "-", 1) ||
	    take_digits(&c, 2, &mo) != 0 || !kb_cursor_expect(&c, "-", 1) ||
	    take_digits(&c, 2, &d) != 0 || mo < 1 || mo > 12 || d < 1 ||
	    d > month_days(y, mo))
		return -1;
	secs = days_from_civil(y, mo, d) * 86400;
	if (kb_cursor_left(&c) == 0) {
		*us = secs * 1000000;
		return 0;
	}
	ch = kb_cursor_get(&c);
	if ((ch != 'T' && ch != 't') || take_digits(&c, 2, &h) != 0 ||
	    !kb_cursor_expect(&c, ":", 1) || take_digits(&c, 2, &mi) != 0 ||
	    !kb_cursor_expect(&c, ":", 1) || take_digits(&c, 2, &sec) != 0 ||
	    h > 23 || mi > 59 || sec > 60)
		return -1;
	if (kb_cursor_peek(&c) == '.' &&
	    (!kb_cursor_skip(&c, 1) || take_fraction(&c, &frac) != 0))
		return -1;
	if (take_offset(&c, &east) != 0 || kb_cursor_left(&c) != 0)
		return -1;
	secs += h * 3600 + mi * 60 + sec - east;
	*us = secs * 1000000 + frac;
	return 0;
}

void audit_time_format(int64_t us, bool micro, char *buf)
{
	int64_t s = us / 1000000, frac = us % 1000000;
	time_t t;
	struct tm tm;
	size_t n;

	if (frac < 0) {
		frac += 1000000;
		s--;
	}
	t = (time_t)s;
	if (gmtime_r(&t, &tm) == NULL ||
	    (n = strftime(buf, AUDIT_TIME_TEXT_MAX, "%Y-%m-%dT%H:%M:%S",
			  &tm)) == 0) {
		snprintf(buf, AUDIT_TIME_TEXT_MAX, "?");
		return;
	}
	if (micro)
		snprintf(buf + n, AUDIT_TIME_TEXT_MAX - n, ".%06dZ", (int)frac);
	else
		snprintf(buf + n, AUDIT_TIME_TEXT_MAX - n, "Z");
}

/* ---- printing untrusted text ---- */

/* One code point's worth of output. */
struct piece {
	char text[16];
	size_t n, cols;
};

/* Decodes one UTF-8 sequence at s[*i]; -1 (nothing taken) if invalid. */
static int utf8_next(const unsigned char *s, size_t *i, uint32_t *cp)
{
	unsigned char c = s[*i];
	uint32_t v, min;
	size_t n, k;

	if (c < 0x80) {
		*cp = c;
		(*i)++;
		return 0;
	}
	if (c >= 0xc2 && c <= 0xdf) {
		n = 1, v = c & 0x1f, min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 2, v = c & 0x0f, min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 3, v = c & 0x07, min = 0x10000;
	} else {
		return -1;
	}
	/* A NUL is no continuation byte: this never reads past the end. */
	for (k = 1; k <= n; k++) {
		if ((s[*i + k] & 0xc0) != 0x80)
			return -1;
		v = (v << 6) | (s[*i + k] & 0x3f);
	}
	if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return -1;
	*i += n + 1;
	*cp = v;
	return 0;
}

/* Characters that change how the rest of a line shows, or hide. */
static bool invisible(uint32_t c)
{
	return c == 0xad || c == 0x34f || c == 0x61c || c == 0x180e ||
	       (c >= 0x200b && c <= 0x200f) || (c >= 0x2028 && c <= 0x202e) ||
	       (c >= 0x2060 && c <= 0x206f) || c == 0xfeff ||
	       (c >= 0xfff9 && c <= 0xfffb) || (c >= 0xe0000 && c <= 0xe007f);
}

/* East Asian wide and emoji ranges: two columns on a terminal. */
static bool wide(uint32_t c)
{
	return (c >= 0x1100 && c <= 0x115f) ||
	       (c >= 0x2e80 && c <= 0xa4cf && c != 0x303f) ||
	       (c >= 0xac00 && c <= 0xd7a3) || (c >= 0xf900 && c <= 0xfaff) ||
	       (c >= 0xfe30 && c <= 0xfe4f) || (c >= 0xff00 && c <= 0xff60) ||
	       (c >= 0xffe0 && c <= 0xffe6) || (c >= 0x1f300 && c <= 0x1f64f) ||
	       (c >= 0x1f900 && c <= 0x1f9ff) || (c >= 0x20000 && c <= 0x3fffd);
}

static void piece_set(struct piece *p, const char *text, size_t cols)
{
	p->n = strlen(text);
	memcpy(p->text, text, p->n);
	p->cols = cols;
}

static const char *html_entity(uint32_t c)
{
	switch (c) {
	case '&':
		return "&amp;";
	case '<':
		return "&lt;";
	case '>':
		return "&gt;";
	case '"':
		return "&quot;";
	case '\'':
		return "&#39;";
	default:
		return NULL;
	}
}

/* Takes the next code point (or bad byte) of s and what shows for it. */
static void next_piece(const unsigned char *s, size_t *i, bool html,
		       struct piece *p)
{
	size_t start = *i;
	const char *entity;
	uint32_t c;

	if (utf8_next(s, i, &c) != 0) {
		p->n = (size_t)snprintf(p->text, sizeof(p->text), "\\x%02x",
					s[(*i)++]);
		p->cols = p->n;
	} else if (c < 0x20 || c == 0x7f) {
		p->n = (size_t)snprintf(p->text, sizeof(p->text), "\\x%02x",
					(unsigned int)c);
		p->cols = p->n;
	} else if ((c >= 0x80 && c <= 0x9f) || invisible(c)) {
		p->n = (size_t)snprintf(p->text, sizeof(p->text),
					c > 0xffff ? "\\U%08x" : "\\u%04x",
					(unsigned int)c);
		p->cols = p->n;
	} else if (c == '\\') {
		piece_set(p, "\\\\", 2);
	} else if (html && (entity = html_entity(c)) != NULL) {
		piece_set(p, entity, 1);
	} else {
		p->n = *i - start;
		memcpy(p->text, s + start, p->n);
		p->cols = wide(c) ? 2 : (c >= 0x300 && c <= 0x36f) ? 0 : 1;
	}
}

size_t audit_put_clean(FILE *f, const char *s, size_t maxcols, bool html)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i, total = 0, cols = 0, limit = (size_t)-1;
	struct piece p;
	bool cut = false;

	if (maxcols > 0) {
		for (i = 0; u[i] != '\0' && total <= maxcols;) {
			next_piece(u, &i, html, &p);
			total += p.cols;
		}
		if (total > maxcols) {
			cut = true;
			limit = maxcols - 1;
		}
	}
	for (i = 0; u[i] != '\0';) {
		next_piece(u, &i, html, &p);
		if (cols + p.cols > limit)
			break;
		if (f != NULL)
			fwrite(p.text, 1, p.n, f);
		cols += p.cols;
	}
	if (cut) {
		if (f != NULL)
			fputs("\u2026", f);
		cols++;
	}
	return cols;
}

void audit_say(const char *cmd, const char *msg)
{
	fprintf(stderr, "keybroker-audit %s: ", cmd);
	audit_put_clean(stderr, msg, 0, false);
	fputc('\n', stderr);
}

/* ---- which files ---- */

/* Name order, but runs of digits compared as the numbers they are. */
static int name_cmp(const char *a, const char *b)
{
	const char *ea, *eb;
	size_t la, lb;
	int r;

	while (*a != '\0' && *b != '\0') {
		if (*a >= '0' && *a <= '9' && *b >= '0' && *b <= '9') {
			for (ea = a; *ea >= '0' && *ea <= '9'; ea++)
				;
			for (eb = b; *eb >= '0' && *eb <= '9'; eb++)
				;
			while (*a == '0' && a + 1 < ea)
				a++;
			while (*b == '0' && b + 1 < eb)
				b++;
			la = (size_t)(ea - a);
			lb = (size_t)(eb - b);
			if (la != lb)
				return la < lb ? -1 : 1;
			if ((r = memcmp(a, b, la)) != 0)
				return r;
			a = ea;
			b = eb;
			continue;
		}
		if (*a != *b)
			return (unsigned char)*a < (unsigned char)*b ? -1 : 1;
		a++;
		b++;
	}
	return (unsigned char)*a - (unsigned char)*b;
}

static int path_cmp(const void *a, const void *b)
{
	return name_cmp(*(char *const *)a, *(char *const *)b);
}

static char *path_join(const char *dir, const char *name)
{
	size_t n = strlen(dir);
	const char *sep = n > 0 && dir[n - 1] == '/' ? "" : "/";
	char *p;

	if (asprintf(&p, "%s%s%s", dir, sep, name) < 0)
		return NULL;
	return p;
}

static int files_add(struct audit_files *f, char *path)
{
	char **grown;

	if (path == NULL)
		return -1;
	grown = realloc(f->path, (f->n + 1) * sizeof(*f->path));
	if (grown == NULL) {
		free(path);
		return -1;
	}
	f->path = grown;
	f->path[f->n++] = path;
	return 0;
}

static bool rotated_name(const char *name)
{
	size_t n = strlen(name);

	return n > strlen("audit-.jsonl") && strncmp(name, "audit-", 6) == 0 &&
	       strcmp(name + n - 6, ".jsonl") == 0;
}

/* Adds a directory's rotated files in order, then its audit.jsonl. */
static int expand_dir(const char *dir, struct audit_files *f, char *err,
		      size_t errlen)
{
	size_t first = f->n;
	struct dirent *e;
	struct stat st;
	char *cur;
	DIR *d;

	if ((d = opendir(dir)) == NULL) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		return -1;
	}
	while ((e = readdir(d)) != NULL)
		if (rotated_name(e->d_name) &&
		    files_add(f, path_join(dir, e->d_name)) != 0) {
			closedir(d);
			snprintf(err, errlen, "out of memory");
			return -1;
		}
	closedir(d);
	if (f->n > first)
		qsort(f->path + first, f->n - first, sizeof(*f->path),
		      path_cmp);
	if ((cur = path_join(dir, "audit.jsonl")) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (stat(cur, &st) != 0) {
		free(cur);
		if (f->n > first)
			return 0;
		snprintf(err, errlen,
			 "%s: no audit trail in it (no audit-*.jsonl, no "
			 "audit.jsonl)",
			 dir);
		return -1;
	}
	if (files_add(f, cur) != 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

int audit_files_expand(char *const *arg, size_t n, struct audit_files *f,
		       char *err, size_t errlen)
{
	struct stat st;
	size_t i;

	memset(f, 0, sizeof(*f));
	for (i = 0; i < n; i++) {
		if (stat(arg[i], &st) != 0) {
			snprintf(err, errlen, "%s: %s", arg[i],
				 strerror(errno));
			goto fail;
		}
		if (S_ISDIR(st.st_mode)) {
			if (expand_dir(arg[i], f, err, errlen) != 0)
				goto fail;
			if (i + 1 == n &&
			    (f->follow = path_join(arg[i], "audit.jsonl")) ==
				    NULL)
				goto oom;
		} else if (files_add(f, strdup(arg[i])) != 0 ||
			   (i + 1 == n &&
			    (f->follow = strdup(arg[i])) == NULL)) {
			goto oom;
		}
	}
	return 0;
oom:
	snprintf(err, errlen, "out of memory");
fail:
	audit_files_free(f);
	return -1;
}

void audit_files_free(struct audit_files *f)
{
	size_t i;

	for (i = 0; i < f->n; i++)
		free(f->path[i]);
	free(f->path);
	free(f->follow);
	memset(f, 0, sizeof(*f));
}

/* ---- records ---- */

static int rec_bad(const struct audit_rec *rec, char *err, size_t errlen,
		   const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* "FILE:LINE: what"; returns -1. */
static int rec_bad(const struct audit_rec *rec, char *err, size_t errlen,
		   const char *fmt, ...)
{
	va_list ap;
	int n;

	n = snprintf(err, errlen, "%s:%lu: ", rec->file, rec->line);
	if (n >= 0 && (size_t)n < errlen) {
		va_start(ap, fmt);
		vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* A string member of o, if there is one; -1 if it is not a string. */
static int opt_string(json_t *o, const char *name, const char **out)
{
	json_t *v = json_object_get(o, name);

	*out = NULL;
	if (v == NULL)
		return 0;
	if (!json_is_string(v))
		return -1;
	*out = json_string_value(v);
	return 0;
}

/* The string members the commands look at. */
static int rec_strings(struct audit_rec *rec, char *err, size_t errlen)
{
	const struct {
		const char *name;
		const char **out;
	} fields[] = {
		{ "op", &rec->op },
		{ "result", &rec->result },
		{ "message", &rec->message },
		{ "state", &rec->state },
		{ "correlationId", &rec->correlation_id },
		{ "key", &rec->key },
		{ "version", &rec->version },
	};
	size_t i;

	for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if (opt_string(rec->obj, fields[i].name, fields[i].out) != 0)
			return rec_bad(rec, err, errlen,
				       "\"%s\" is not a string",
				       fields[i].name);
	if (strcmp(rec->event, "start") == 0)
		rec->version = NULL;
	return 0;
}

/* identity.name, peer.uid and peer.unit. */
static int rec_objects(struct audit_rec *rec, char *err, size_t errlen)
{
	json_t *id = json_object_get(rec->obj, "identity");
	json_t *peer = json_object_get(rec->obj, "peer");
	json_t *uid;

	if (id != NULL && (!json_is_object(id) ||
			   opt_string(id, "name", &rec->identity) != 0))
		return rec_bad(rec, err, errlen,
			       "\"identity\" is not an object with a string "
			       "\"name\"");
	if (peer == NULL)
		return 0;
	if (!json_is_object(peer) || opt_string(peer, "unit", &rec->unit) != 0)
		return rec_bad(rec, err, errlen,
			       "\"peer\" is not an object with a string "
			       "\"unit\"");
	if ((uid = json_object_get(peer, "uid")) == NULL)
		return 0;
	if (!json_is_integer(uid) || json_integer_value(uid) < 0)
		return rec_bad(rec, err, errlen,
			       "\"peer.uid\" is not an integer >= 0");
	rec->has_uid = true;
	rec->uid = json_integer_value(uid);
	return 0;
}

/* Quotes an untrusted value in an error, cut short. */
static const char *quote(const char *s, char *buf, size_t n)
{
	size_t len = strlen(s);

	snprintf(buf, n, "%.*s%s", QUOTE_MAX, s, len > QUOTE_MAX ? "..." : "");
	return buf;
}

/* Parses rec->text into the record's fields. */
static int rec_parse(struct audit_rec *rec, char *err, size_t errlen)
{
	json_t *seq, *tm, *ev;
	json_error_t je;
	char q[QUOTE_MAX + 8];
	size_t i;

	if (rec->len == 0)
		return rec_bad(rec, err, errlen, "empty line");
	/* The broker writes records in ASCII without controls (\u escapes). */
	for (i = 0; i < rec->len; i++)
		if ((unsigned char)rec->text[i] < 0x20 ||
		    (unsigned char)rec->text[i] > 0x7f)
			return rec_bad(rec, err, errlen,
				       "byte 0x%02x at column %zu: a record is "
				       "ASCII without control characters",
				       (unsigned char)rec->text[i], i + 1);
	rec->obj = json_loadb(rec->text, rec->len, JSON_REJECT_DUPLICATES, &je);
	if (rec->obj == NULL)
		return rec_bad(rec, err, errlen, "not JSON: %s (column %d)",
			       je.text, je.column);
	if (!json_is_object(rec->obj))
		return rec_bad(rec, err, errlen, "not a JSON object");
	seq = json_object_get(rec->obj, "seq");
	tm = json_object_get(rec->obj, "time");
	ev = json_object_get(rec->obj, "event");
	if (!json_is_integer(seq) || json_integer_value(seq) < 0)
		return rec_bad(rec, err, errlen,
			       "\"seq\" is missing or not an integer >= 0");
	if (!json_is_string(tm))
		return rec_bad(rec, err, errlen,
			       "\"time\" is missing or not a string");
	if (audit_time_parse(json_string_value(tm), &rec->time) != 0)
		return rec_bad(rec, err, errlen,
			       "\"time\" is not an RFC 3339 time: \"%s\"",
			       quote(json_string_value(tm), q, sizeof(q)));
	if (!json_is_string(ev) || json_string_length(ev) == 0)
		return rec_bad(
			rec, err, errlen,
			"\"event\" is missing or not a non-empty string");
	rec->seq = json_integer_value(seq);
	rec->event = json_string_value(ev);
	if (rec_strings(rec, err, errlen) != 0 ||
	    rec_objects(rec, err, errlen) != 0)
		return -1;
	return 0;
}

/* Parses the line in r's buffer and gives it to fn. */
static int give_line(struct audit_reader *r, bool ended, audit_rec_fn fn,
		     void *arg, char *err, size_t errlen)
{
	struct audit_rec rec;
	size_t n;
	int ret;

	memset(&rec, 0, sizeof(rec));
	rec.file = r->path;
	rec.line = ++r->line;
	rec.len = r->len;
	r->buf[r->len] = '\0';
	rec.text = r->buf;
	r->len = 0;
	ret = rec_parse(&rec, err, errlen);
	if (ret != 0 && !ended) {
		n = strlen(err);
		snprintf(err + n, errlen - n,
			 " (the file ends inside this line: no newline)");
	}
	if (ret == 0)
		ret = fn(&rec, arg, err, errlen);
	json_decref(rec.obj);
	return ret;
}

/* Appends p[0..n) to the line being read, within AUDIT_LINE_MAX. */
static int line_append(struct audit_reader *r, const char *p, size_t n,
		       char *err, size_t errlen)
{
	size_t cap;
	char *grown;

	if (n > AUDIT_LINE_MAX - r->len) {
		snprintf(err, errlen, "%s:%lu: line longer than %d bytes",
			 r->path, r->line + 1, AUDIT_LINE_MAX);
		return -1;
	}
	if (r->len + n + 1 > r->cap) {
		cap = r->cap > 0 ? r->cap : LINE_FIRST;
		while (cap < r->len + n + 1)
			cap *= 2;
		if (cap > AUDIT_LINE_MAX + 1)
			cap = AUDIT_LINE_MAX + 1;
		if ((grown = realloc(r->buf, cap)) == NULL) {
			snprintf(err, errlen, "%s:%lu: out of memory", r->path,
				 r->line + 1);
			return -1;
		}
		r->buf = grown;
		r->cap = cap;
	}
	memcpy(r->buf + r->len, p, n);
	r->len += n;
	return 0;
}

/* Splits chunk[0..n) into lines, giving each complete one to fn. */
static int take_chunk(struct audit_reader *r, const char *chunk, size_t n,
		      audit_rec_fn fn, void *arg, char *err, size_t errlen)
{
	struct kb_cursor c;
	const char *s;
	size_t len;

	kb_cursor_init(&c, chunk, n);
	while (kb_cursor_until(&c, '\n', &s, &len))
		if (line_append(r, s, len, err, errlen) != 0 ||
		    give_line(r, true, fn, arg, err, errlen) != 0)
			return -1;
	return line_append(r, chunk + c.off, kb_cursor_left(&c), err, errlen);
}

int audit_reader_open(struct audit_reader *r, const char *path, char *err,
		      size_t errlen)
{
	struct stat st;

	memset(r, 0, sizeof(*r));
	r->path = path;
	r->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (r->fd < 0 || fstat(r->fd, &st) != 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		audit_reader_close(r);
		return -1;
	}
	if (S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "%s: is a directory", path);
		audit_reader_close(r);
		return -1;
	}
	r->dev = st.st_dev;
	r->ino = st.st_ino;
	return 0;
}

int audit_reader_read(struct audit_reader *r, bool final, audit_rec_fn fn,
		      void *arg, char *err, size_t errlen)
{
	char chunk[READ_CHUNK];
	ssize_t n;

	for (;;) {
		n = read(r->fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(err, errlen, "%s: %s", r->path,
				 strerror(errno));
			return -1;
		}
		if (n == 0)
			break;
		r->off += n;
		if (take_chunk(r, chunk, (size_t)n, fn, arg, err, errlen) != 0)
			return -1;
	}
	if (final && r->len > 0)
		return give_line(r, false, fn, arg, err, errlen);
	return 0;
}

int audit_reader_rewind(struct audit_reader *r, char *err, size_t errlen)
{
	if (lseek(r->fd, 0, SEEK_SET) != 0) {
		snprintf(err, errlen, "%s: %s", r->path, strerror(errno));
		return -1;
	}
	r->off = 0;
	r->line = 0;
	r->len = 0;
	return 0;
}

void audit_reader_close(struct audit_reader *r)
{
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
	free(r->buf);
	r->buf = NULL;
	r->len = r->cap = 0;
}

int audit_read_files(const struct audit_files *f, audit_rec_fn fn, void *arg,
		     char *err, size_t errlen)
{
	struct audit_reader r;
	size_t i;
	int ret;

	for (i = 0; i < f->n; i++) {
		if (audit_reader_open(&r, f->path[i], err, errlen) != 0)
			return -1;
		ret = audit_reader_read(&r, true, fn, arg, err, errlen);
		audit_reader_close(&r);
		if (ret != 0)
			return -1;
	}
	return 0;
}

int audit_usage_error(const char *cmd, const char *fmt, ...)
{
	char msg[AUDIT_ERR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	audit_say(cmd, msg);
	fprintf(stderr, "(see keybroker-audit %s --help)\n", cmd);
	return AUDIT_EXIT_UNREADABLE;
}
