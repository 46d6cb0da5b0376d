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

/*
 * NUL-terminated text of o, malloc'ed; *len (if not NULL) its length.
 * With JSON_COMPACT | JSON_ENSURE_ASCII (replies and audit records) an
 * object or array is written by a writer of its own, byte for byte as
 * jansson would, in a third of the time; any other text by jansson.
 */
char *kb_json_text(const json_t *o, size_t flags, size_t *len);
/*
 * A protocol line: o's compact ASCII text and '\n' (then a NUL),
 * malloc'ed; *len counts the '\n'. NULL if o is not an object or array,
 * or memory is short.
 */
char *kb_json_line(const json_t *o, size_t *len);

#endif
