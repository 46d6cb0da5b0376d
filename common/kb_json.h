/* SPDX-License-Identifier: MIT */
/*
 * JSON text of a jansson value in a buffer of our own malloc(), so that
 * callers free it the same way whatever allocator jansson was given (the
 * daemon's wipes every block jansson frees).
 */
#ifndef KB_JSON_H
#define KB_JSON_H

#include <jansson.h>
#include <stddef.h>

/* NUL-terminated text of o, malloc'ed; *len (if not NULL) its length. */
char *kb_json_text(const json_t *o, size_t flags, size_t *len);

#endif
