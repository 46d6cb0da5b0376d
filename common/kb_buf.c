// SPDX-License-Identifier: MIT
#include <stdlib.h>
#include <string.h>

#include "kb_buf.h"

void kb_buf_free(struct kb_buf *b)
{
	if (b->p != NULL) {
		explicit_bzero(b->p, b->cap);
		free(b->p);
	}
	b->p = NULL;
	b->len = b->cap = 0;
}

int kb_buf_reserve(struct kb_buf *b, size_t n, size_t first, size_t max)
{
	size_t cap = b->cap != 0 ? b->cap : first > 0 ? first : 1;
	char *p;

	if (n <= b->cap - b->len)
		return 0;
	if (n > max || b->len > max - n)
		return -1;
	if (cap > max)
		cap = max;
	while (cap - b->len < n)
		cap = cap > max / 2 ? max : cap * 2;
	if ((p = malloc(cap)) == NULL)
		return -1;
	if (b->len > 0)
		memcpy(p, b->p, b->len);
	if (b->p != NULL) {
		explicit_bzero(b->p, b->cap);
		free(b->p);
	}
	b->p = p;
	b->cap = cap;
	return 0;
}

int kb_buf_append(struct kb_buf *b, const void *p, size_t n, size_t first,
		  size_t max)
{
	if (n == 0)
		return 0;
	if (kb_buf_reserve(b, n, first, max) != 0)
		return -1;
	memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

void kb_buf_shift(struct kb_buf *b, size_t n)
{
	if (n > b->len)
		n = b->len;
	if (n == 0)
		return;
	memmove(b->p, b->p + n, b->len - n);
	explicit_bzero(b->p + b->len - n, n);
	b->len -= n;
}

void kb_buf_consume(struct kb_buf *b, size_t n)
{
	if (n >= b->len)
		kb_buf_free(b);
	else
		kb_buf_shift(b, n);
}
