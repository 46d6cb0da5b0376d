/* SPDX-License-Identifier: MIT */
/*
 * Key names, versions and key identifiers (kid):
 *   keybroker://<instance>/keys/<name>[/<version>]
 * A name is 1-127 of [A-Za-z0-9-]; a version is 32 lowercase hex digits;
 * an instance is 1-63 of [A-Za-z0-9.-].
 */
#ifndef KB_KID_H
#define KB_KID_H

#include <stdbool.h>
#include <stddef.h>

#define KB_NAME_MAX 127
#define KB_INSTANCE_MAX 63
#define KB_VERSION_LEN 32
#define KB_VERSION_BYTES 16
#define KB_KID_PREFIX "keybroker://"
/* prefix + instance + "/keys/" + name + "/" + version + NUL */
#define KB_KID_MAX                                                           \
	(sizeof(KB_KID_PREFIX) - 1 + KB_INSTANCE_MAX + 6 + KB_NAME_MAX + 1 + \
	 KB_VERSION_LEN + 1)

struct kb_keyref {
	char name[KB_NAME_MAX + 1];
	char version[KB_VERSION_LEN + 1]; /* "" means the current version */
};

enum kb_kid_status {
	KB_KID_OK = 0,
	KB_KID_BAD_SYNTAX = -1,
	KB_KID_OTHER_INSTANCE = -2,
};

bool kb_name_valid(const char *s, size_t len);
bool kb_instance_valid(const char *s, size_t len);
bool kb_version_valid(const char *s, size_t len);

/* Parses kid[0..len) for this broker's instance into ref. */
enum kb_kid_status kb_kid_parse(const char *kid, size_t len,
				const char *instance, struct kb_keyref *ref);

/* Formats a kid; version may be NULL or "". Returns 0 or -1 if too long. */
int kb_kid_format(char *buf, size_t size, const char *instance,
		  const char *name, const char *version);

/* Lowercase hex of n bytes into dst (room for 2n+1). */
void kb_hex_encode(char *dst, const unsigned char *src, size_t n);
/* Parses exactly 2n lowercase hex digits. Returns 0 or -1. */
int kb_hex_decode(unsigned char *dst, size_t n, const char *src);

#endif
