// SPDX-License-Identifier: MIT
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kb_buf.h"
#include "kb_json.h"

/* Most texts fit at once; a larger one is measured and written again. */
#define FIRST_TRY 2048
#define COMPACT_ASCII (JSON_COMPACT | JSON_ENSURE_ASCII)

/* ---- the compact ASCII writer: the request path's replies and records */

static int put(struct kb_buf *b, const char *p, size_t n)
{
	return kb_buf_append(b, p, n, FIRST_TRY, SIZE_MAX);
}

/* The code point of the UTF-8 sequence at s (jansson keeps strings valid). */
static uint32_t utf8_next(const unsigned char *s, size_t left, size_t *n)
{
	if (s[0] < 0xE0 && left >= 2) {
		*n = 2;
		return (uint32_t)(s[0] & 0x1F) << 6 | (s[1] & 0x3F);
	}
	if (s[0] < 0xF0 && left >= 3) {
		*n = 3;
		return (uint32_t)(s[0] & 0x0F) << 12 |
		       (uint32_t)(s[1] & 0x3F) << 6 | (s[2] & 0x3F);
	}
	if (left >= 4) {
		*n = 4;
		return (uint32_t)(s[0] & 0x07) << 18 |
		       (uint32_t)(s[1] & 0x3F) << 12 |
		       (uint32_t)(s[2] & 0x3F) << 6 | (s[3] & 0x3F);
	}
	*n = left;
	return 0xFFFD;
}

/* A string as jansson escapes it with JSON_ENSURE_ASCII. */
static int put_string(struct kb_buf *b, const char *str, size_t len)
{
	/* The characters with a short escape, and their letters. */
	static const char named[] = "\"\\\b\f\n\r\t", letter[] = "\"\\bfnrt";
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0, run, n;
	const char *at;
	char esc[16];
	uint32_t cp;
	int m;

	if (put(b, "\"", 1) != 0)
		return -1;
	while (i < len) {
		for (run = i; run < len && s[run] >= 0x20 && s[run] < 0x80 &&
			      s[run] != '"' && s[run] != '\\';
		     run++)
			;
		if (run > i && put(b, str + i, run - i) != 0)
			return -1;
		if ((i = run) == len)
			break;
		n = 1;
		if ((at = memchr(named, s[i], sizeof(named) - 1)) != NULL) {
			esc[0] = '\\';
			esc[1] = letter[at - named];
			m = 2;
		} else {
			cp = s[i] < 0x80 ? s[i] : utf8_next(s + i, len - i, &n);
			if (cp < 0x10000)
				m = snprintf(esc, sizeof(esc), "\\u%04X",
					     (unsigned int)cp);
			else /* a UTF-16 surrogate pair */
				m = snprintf(esc, sizeof(esc), "\\u%04X\\u%04X",
					     (unsigned int)(0xD800 |
							    (cp - 0x10000) >>
								    10),
					     (unsigned int)(0xDC00 |
							    ((cp - 0x10000) &
							     0x3FF)));
		}
		if (put(b, esc, (size_t)m) != 0)
			return -1;
		i += n;
	}
	return put(b, "\"", 1);
}

/* 0, -1 if memory is short, 1 if o holds what this writer leaves to jansson. */
static int put_value(struct kb_buf *b, const json_t *o)
{
	const char *key;
	char num[32];
	json_t *v;
	size_t i;
	int r, first = 1;

	switch (json_typeof(o)) {
	case JSON_OBJECT:
		if (put(b, "{", 1) != 0)
			return -1;
		json_object_foreach((json_t *)o, key, v) {
			if ((!first && put(b, ",", 1) != 0) ||
			    put_string(b, key, strlen(key)) != 0 ||
			    put(b, ":", 1) != 0)
				return -1;
			if ((r = put_value(b, v)) != 0)
				return r;
			first = 0;
		}
		return put(b, "}", 1);
	case JSON_ARRAY:
		if (put(b, "[", 1) != 0)
			return -1;
		for (i = 0; i < json_array_size(o); i++) {
			if (i > 0 && put(b, ",", 1) != 0)
				return -1;
			if ((r = put_value(b, json_array_get(o, i))) != 0)
				return r;
		}
		return put(b, "]", 1);
	case JSON_STRING:
		return put_string(b, json_string_value(o),
				  json_string_length(o));
	case JSON_INTEGER:
		r = snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT,
			     json_integer_value(o));
		return put(b, num, (size_t)r);
	case JSON_TRUE:
		return put(b, "true", 4);
	case JSON_FALSE:
		return put(b, "false", 5);
	case JSON_NULL:
		return put(b, "null", 4);
	default:
		return 1; /* reals: jansson's own formatting */
	}
}

/* ---- text ---- */

static char *jansson_text(const json_t *o, size_t flags, size_t *len)
{
	char *text = malloc(FIRST_TRY);
	size_t need;

	if (text == NULL)
		return NULL;
	need = json_dumpb(o, text, FIRST_TRY - 1, flags);
	if (need > FIRST_TRY - 1) {
		/* What was cut off may have been a secret's start. */
		explicit_bzero(text, FIRST_TRY);
		free(text);
		if ((text = malloc(need + 1)) == NULL)
			return NULL;
		if (json_dumpb(o, text, need, flags) != need)
			need = 0;
	}
	if (need == 0) {
		free(text);
		return NULL;
	}
	text[need] = '\0';
	if (len != NULL)
		*len = need;
	return text;
}

/* o's compact ASCII text and then tail (NUL included) in one block. */
static char *compact_text(const json_t *o, const char *tail, size_t taillen,
			  size_t *len)
{
	struct kb_buf b = { 0 };
	char *text;
	size_t n;
	int r;

	if ((r = put_value(&b, o)) == 0 && put(&b, tail, taillen) == 0) {
		*len = b.len - 1;
		return b.p;
	}
	kb_buf_free(&b);
	if (r <= 0 || (text = jansson_text(o, COMPACT_ASCII, &n)) == NULL)
		return NULL;
	/* Reals: jansson's text, and the tail after it. */
	r = kb_buf_append(&b, text, n, n + taillen, SIZE_MAX) != 0 ||
	    put(&b, tail, taillen) != 0;
	explicit_bzero(text, n + 1);
	free(text);
	if (r != 0) {
		kb_buf_free(&b);
		return NULL;
	}
	*len = b.len - 1;
	return b.p;
}

char *kb_json_text(const json_t *o, size_t flags, size_t *len)
{
	size_t n;
	char *text;

	if (flags != COMPACT_ASCII || !(json_is_object(o) || json_is_array(o)))
		return jansson_text(o, flags, len);
	text = compact_text(o, "", 1, &n);
	if (text != NULL && len != NULL)
		*len = n;
	return text;
}

char *kb_json_line(const json_t *o, size_t *len)
{
	if (!(json_is_object(o) || json_is_array(o)))
		return NULL;
	return compact_text(o, "\n", 2, len);
}
