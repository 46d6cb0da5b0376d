/* SPDX-License-Identifier: MIT */
/*
 * A growable byte buffer for bytes that may be secret (request and reply
 * lines carry DEKs). It knows its capacity, so it always wipes all of
 * it: growing copies into a new block and wipes the old one (never
 * realloc, which may leave the bytes behind in freed memory), consuming
 * wipes the tail the move leaves behind, and an emptied buffer gives its
 * block back (an idle connection holds no buffer). Standalone (glibc's
 * explicit_bzero), so the client library can use it too.
 */
#ifndef KB_BUF_H
#define KB_BUF_H

#include <stddef.h>

struct kb_buf {
	char *p; /* NULL while empty */
	size_t len, cap;
};

/*
 * Makes room for n more bytes: the capacity doubles from first, but never
 * past max. -1 (nothing changed) if max leaves no room or memory is short.
 */
int kb_buf_reserve(struct kb_buf *b, size_t n, size_t first, size_t max);

/* Appends p[0..n) (growing as kb_buf_reserve does). */
int kb_buf_append(struct kb_buf *b, const void *p, size_t n, size_t first,
		  size_t max);

/* Drops the first n bytes (n <= len), and the block once it is empty. */
void kb_buf_consume(struct kb_buf *b, size_t n);
/* Drops the first n bytes (n <= len), keeping the block (a scratch one). */
void kb_buf_shift(struct kb_buf *b, size_t n);

/* Wipes and frees the block; the buffer is empty and usable again. */
void kb_buf_free(struct kb_buf *b);

#endif
