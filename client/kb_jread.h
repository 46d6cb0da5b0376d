/* SPDX-License-Identifier: MIT */
/*
 * A strict JSON reader (RFC 8259) for the client library's replies. It
 * never copies or allocates: it checks a line in place and hands out spans
 * of it, so a secret in a reply (an unwrapped DEK, an identity token) is
 * copied only where the caller decodes it, into memory the caller wipes.
 * (jansson's allocator is process-wide and frees its copies unwiped, and a
 * library must not replace the application's allocator.)
 *
 * Every byte is read through bounds checks; nesting is limited; strings
 * must be valid UTF-8 with valid escapes and no U+0000.
 */
#ifndef KB_JREAD_H
#define KB_JREAD_H

#include <stdbool.h>
#include <stddef.h>

#define KB_JREAD_MAX_DEPTH 32

enum kb_jtype {
	KB_J_OBJECT,
	KB_J_ARRAY,
	KB_J_STRING,
	KB_J_NUMBER,
	KB_J_TRUE,
	KB_J_FALSE,
	KB_J_NULL,
};

/* One value: text[off .. off + len) of the checked line. */
struct kb_jspan {
	enum kb_jtype type;
	size_t off, len;
};

/*
 * Checks that text[0..len) is one JSON value, optionally surrounded by
 * whitespace, and returns its span. 0 or -1.
 */
int kb_jread_check(const char *text, size_t len, struct kb_jspan *root);

#define KB_JREAD_ABSENT (-1)
#define KB_JREAD_AMBIGUOUS (-2)

/*
 * The value of member name in object obj (checked by kb_jread_check).
 * Returns 0; KB_JREAD_ABSENT if obj has no such member; or
 * KB_JREAD_AMBIGUOUS if obj is not an object or has the member more than
 * once (no two readers may disagree on which one counts: callers must
 * refuse the whole value, not take it as absent).
 */
int kb_jread_member(const char *text, const struct kb_jspan *obj,
		    const char *name, struct kb_jspan *out);

/*
 * Decodes string s into out (room for max bytes, NUL-terminated).
 * Returns 0 with *outlen, or -1 if s is not a string or does not fit.
 */
int kb_jread_string(const char *text, const struct kb_jspan *s, char *out,
		    size_t max, size_t *outlen);

/* An integer in [-(2^53 - 1), 2^53 - 1] without fraction or exponent. */
int kb_jread_int(const char *text, const struct kb_jspan *s, long long *out);

#endif
