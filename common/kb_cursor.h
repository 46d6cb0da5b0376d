/* SPDX-License-Identifier: MIT */
/*
 * A read cursor over untrusted bytes. Every read is checked against the
 * end with comparisons that cannot overflow (len < n || off > len - n), so
 * code that parses input never does pointer arithmetic of its own.
 */
#ifndef KB_CURSOR_H
#define KB_CURSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

struct kb_cursor {
	const unsigned char *p;
	size_t len, off;
};

static inline void kb_cursor_init(struct kb_cursor *c, const void *p,
				  size_t len)
{
	c->p = p;
	c->len = len;
	c->off = 0;
}

static inline size_t kb_cursor_left(const struct kb_cursor *c)
{
	return c->len - c->off;
}

/* The next byte without taking it, or -1 at the end. */
static inline int kb_cursor_peek(const struct kb_cursor *c)
{
	return c->off < c->len ? c->p[c->off] : -1;
}

/* Takes the next byte, or returns -1 at the end. */
static inline int kb_cursor_get(struct kb_cursor *c)
{
	return c->off < c->len ? c->p[c->off++] : -1;
}

/* Takes n bytes if there are that many. */
static inline bool kb_cursor_skip(struct kb_cursor *c, size_t n)
{
	if (c->len < n || c->off > c->len - n)
		return false;
	c->off += n;
	return true;
}

/* Takes the n bytes of s if the input continues with exactly them. */
static inline bool kb_cursor_expect(struct kb_cursor *c, const char *s,
				    size_t n)
{
	if (c->len < n || c->off > c->len - n ||
	    memcmp(c->p + c->off, s, n) != 0)
		return false;
	c->off += n;
	return true;
}

/*
 * Takes the bytes up to the next delim into s[0..*n) and the delim
 * after them; false, taking nothing, if no delim follows.
 */
static inline bool kb_cursor_until(struct kb_cursor *c, int delim,
				   const char **s, size_t *n)
{
	const unsigned char *start = c->p + c->off;
	const unsigned char *d = memchr(start, delim, c->len - c->off);

	if (d == NULL)
		return false;
	*s = (const char *)start;
	*n = (size_t)(d - start);
	c->off += *n + 1;
	return true;
}

/* Takes everything left into s[0..*n). */
static inline void kb_cursor_rest(struct kb_cursor *c, const char **s,
				  size_t *n)
{
	*s = (const char *)(c->p + c->off);
	*n = c->len - c->off;
	c->off = c->len;
}

#endif
