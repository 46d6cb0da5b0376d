// SPDX-License-Identifier: MIT
#include <string.h>

#include "kb_cursor.h"
#include "kb_jread.h"

#define NAME_MAX_DECODED 128 /* longer member names match no lookup */

static void skip_ws(struct kb_cursor *c)
{
	int b;

	while ((b = kb_cursor_peek(c)) == ' ' || b == '\t' || b == '\n' ||
	       b == '\r')
		kb_cursor_skip(c, 1);
}

/* The rest of a UTF-8 sequence whose lead byte b was taken; or -1. */
static long utf8_rest(struct kb_cursor *c, int b)
{
	int n, x;
	long cp;

	if (b < 0x80)
		return b;
	if (b < 0xc2 || b > 0xf4) /* continuation, overlong, > U+10FFFF */
		return -1;
	n = b < 0xe0 ? 1 : b < 0xf0 ? 2 : 3;
	cp = b & (0x3f >> n);
	while (n-- > 0) {
		if (((x = kb_cursor_get(c)) & 0xc0) != 0x80)
			return -1;
		cp = cp << 6 | (x & 0x3f);
	}
	if ((b >= 0xe0 && cp < 0x800) || (b >= 0xf0 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return -1;
	return cp;
}

static int hex4(struct kb_cursor *c, long *v)
{
	int i, x;

	*v = 0;
	for (i = 0; i < 4; i++) {
		x = kb_cursor_get(c);
		if (x >= '0' && x <= '9')
			x -= '0';
		else if (x >= 'a' && x <= 'f')
			x -= 'a' - 10;
		else if (x >= 'A' && x <= 'F')
			x -= 'A' - 10;
		else
			return -1;
		*v = *v << 4 | x;
	}
	return 0;
}

/* Appends n bytes to out (if any) at *o, keeping room for the NUL. */
static int emit(char *out, size_t max, size_t *o, const void *p, size_t n)
{
	if (out != NULL) {
		if (max == 0 || n > max - 1 || *o > max - 1 - n)
			return -1;
		memcpy(out + *o, p, n);
	}
	*o += n;
	return 0;
}

static int emit_cp(char *out, size_t max, size_t *o, long cp)
{
	unsigned char u[4];
	size_t n;

	if (cp < 0x80) {
		u[0] = (unsigned char)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (unsigned char)(0xc0 | cp >> 6);
		u[1] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (unsigned char)(0xe0 | cp >> 12);
		u[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
		u[2] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		u[0] = (unsigned char)(0xf0 | cp >> 18);
		u[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
		u[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
		u[3] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	return emit(out, max, o, u, n);
}

/* One \uXXXX escape (the "\u" taken), joining a surrogate pair. */
static long unicode_escape(struct kb_cursor *c)
{
	long hi, lo;

	if (hex4(c, &hi) != 0 || (hi >= 0xdc00 && hi <= 0xdfff))
		return -1;
	if (hi < 0xd800 || hi > 0xdbff)
		return hi;
	if (!kb_cursor_expect(c, "\\u", 2) || hex4(c, &lo) != 0 ||
	    lo < 0xdc00 || lo > 0xdfff)
		return -1;
	return 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
}

static long simple_escape(int e)
{
	switch (e) {
	case '"':
	case '\\':
	case '/':
		return e;
	case 'b':
		return '\b';
	case 'f':
		return '\f';
	case 'n':
		return '\n';
	case 'r':
		return '\r';
	case 't':
		return '\t';
	default:
		return -1;
	}
}

/*
 * The rest of a string whose opening quote was taken, decoded into out
 * (NUL-terminated) when out is not NULL.
 */
static int scan_string(struct kb_cursor *c, char *out, size_t max,
		       size_t *outlen)
{
	size_t o = 0, start;
	long cp;
	int b;

	for (;;) {
		start = c->off;
		if ((b = kb_cursor_get(c)) < 0 || b < 0x20)
			return -1;
		if (b == '"')
			break;
		if (b == '\\') {
			b = kb_cursor_get(c);
			cp = b == 'u' ? unicode_escape(c) : simple_escape(b);
			if (cp <= 0 || emit_cp(out, max, &o, cp) != 0)
				return -1; /* U+0000 is refused too */
		} else if (utf8_rest(c, b) < 0 ||
			   emit(out, max, &o, c->p + start, c->off - start)) {
			return -1;
		}
	}
	if (out != NULL)
		out[o] = '\0';
	if (outlen != NULL)
		*outlen = o;
	return 0;
}

static bool digit(int b)
{
	return b >= '0' && b <= '9';
}

static int scan_digits(struct kb_cursor *c)
{
	if (!digit(kb_cursor_peek(c)))
		return -1;
	while (digit(kb_cursor_peek(c)))
		kb_cursor_skip(c, 1);
	return 0;
}

static int scan_number(struct kb_cursor *c)
{
	int b;

	if (kb_cursor_peek(c) == '-')
		kb_cursor_skip(c, 1);
	if (kb_cursor_peek(c) == '0')
		kb_cursor_skip(c, 1);
	else if (scan_digits(c) != 0)
		return -1;
	if (kb_cursor_peek(c) == '.' &&
	    (!kb_cursor_skip(c, 1) || scan_digits(c) != 0))
		return -1;
	if ((b = kb_cursor_peek(c)) == 'e' || b == 'E') {
		kb_cursor_skip(c, 1);
		if ((b = kb_cursor_peek(c)) == '+' || b == '-')
			kb_cursor_skip(c, 1);
		if (scan_digits(c) != 0)
			return -1;
	}
	return 0;
}

static int scan_value(struct kb_cursor *c, int depth, struct kb_jspan *span);

/* The members or elements of a container whose opening byte was taken. */
static int scan_container(struct kb_cursor *c, int depth, bool object)
{
	struct kb_jspan v;
	int b;

	if (depth >= KB_JREAD_MAX_DEPTH)
		return -1;
	skip_ws(c);
	if (kb_cursor_peek(c) == (object ? '}' : ']'))
		return kb_cursor_skip(c, 1) ? 0 : -1;
	for (;;) {
		if (object) {
			skip_ws(c);
			if (kb_cursor_get(c) != '"' ||
			    scan_string(c, NULL, 0, NULL) != 0)
				return -1;
			skip_ws(c);
			if (kb_cursor_get(c) != ':')
				return -1;
		}
		if (scan_value(c, depth + 1, &v) != 0)
			return -1;
		skip_ws(c);
		b = kb_cursor_get(c);
		if (b == (object ? '}' : ']'))
			return 0;
		if (b != ',')
			return -1;
	}
}

static int scan_value(struct kb_cursor *c, int depth, struct kb_jspan *span)
{
	int b, r;

	skip_ws(c);
	span->off = c->off;
	switch ((b = kb_cursor_peek(c))) {
	case '{':
	case '[':
		kb_cursor_skip(c, 1);
		span->type = b == '{' ? KB_J_OBJECT : KB_J_ARRAY;
		r = scan_container(c, depth, b == '{');
		break;
	case '"':
		kb_cursor_skip(c, 1);
		span->type = KB_J_STRING;
		r = scan_string(c, NULL, 0, NULL);
		break;
	case 't':
		span->type = KB_J_TRUE;
		r = kb_cursor_expect(c, "true", 4) ? 0 : -1;
		break;
	case 'f':
		span->type = KB_J_FALSE;
		r = kb_cursor_expect(c, "false", 5) ? 0 : -1;
		break;
	case 'n':
		span->type = KB_J_NULL;
		r = kb_cursor_expect(c, "null", 4) ? 0 : -1;
		break;
	default:
		span->type = KB_J_NUMBER;
		r = b == '-' || digit(b) ? scan_number(c) : -1;
		break;
	}
	span->len = c->off - span->off;
	return r;
}

int kb_jread_check(const char *text, size_t len, struct kb_jspan *root)
{
	struct kb_cursor c;

	kb_cursor_init(&c, text, len);
	if (scan_value(&c, 0, root) != 0)
		return -1;
	skip_ws(&c);
	return kb_cursor_left(&c) == 0 ? 0 : -1;
}

/* The cursor over a checked span. */
static void span_cursor(struct kb_cursor *c, const char *text,
			const struct kb_jspan *s)
{
	kb_cursor_init(c, text + s->off, s->len);
}

int kb_jread_member(const char *text, const struct kb_jspan *obj,
		    const char *name, struct kb_jspan *out)
{
	char key[NAME_MAX_DECODED];
	struct kb_jspan v;
	struct kb_cursor c;
	size_t start;
	bool found = false, decoded, match;
	int b;

	if (obj->type != KB_J_OBJECT)
		return KB_JREAD_AMBIGUOUS;
	span_cursor(&c, text, obj);
	kb_cursor_skip(&c, 1);
	skip_ws(&c);
	if (kb_cursor_peek(&c) == '}')
		return KB_JREAD_ABSENT;
	do {
		skip_ws(&c);
		if (kb_cursor_get(&c) != '"')
			return KB_JREAD_AMBIGUOUS;
		start = c.off;
		decoded = scan_string(&c, key, sizeof(key), NULL) == 0;
		if (!decoded) { /* too long to be name: skip it whole */
			c.off = start;
			if (scan_string(&c, NULL, 0, NULL) != 0)
				return KB_JREAD_AMBIGUOUS;
		}
		match = decoded && strcmp(key, name) == 0;
		skip_ws(&c);
		if (kb_cursor_get(&c) != ':' || scan_value(&c, 0, &v) != 0)
			return KB_JREAD_AMBIGUOUS;
		if (match) {
			if (found)
				return KB_JREAD_AMBIGUOUS; /* a second one */
			found = true;
			*out = v;
			out->off += obj->off;
		}
		skip_ws(&c);
	} while ((b = kb_cursor_get(&c)) == ',');
	if (b != '}')
		return KB_JREAD_AMBIGUOUS;
	return found ? 0 : KB_JREAD_ABSENT;
}

int kb_jread_string(const char *text, const struct kb_jspan *s, char *out,
		    size_t max, size_t *outlen)
{
	struct kb_cursor c;

	if (s->type != KB_J_STRING)
		return -1;
	span_cursor(&c, text, s);
	kb_cursor_skip(&c, 1);
	return scan_string(&c, out, max, outlen);
}

int kb_jread_int(const char *text, const struct kb_jspan *s, long long *out)
{
	const long long max = (1LL << 53) - 1;
	struct kb_cursor c;
	long long v = 0;
	bool neg;
	int b;

	if (s->type != KB_J_NUMBER)
		return -1;
	span_cursor(&c, text, s);
	if ((neg = kb_cursor_peek(&c) == '-'))
		kb_cursor_skip(&c, 1);
	if (kb_cursor_left(&c) == 0)
		return -1;
	while ((b = kb_cursor_get(&c)) >= 0) {
		if (!digit(b) || v > (max - (b - '0')) / 10)
			return -1;
		v = v * 10 + (b - '0');
	}
	*out = neg ? -v : v;
	return 0;
}
