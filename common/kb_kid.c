// SPDX-License-Identifier: MIT
#include <stdio.h>
#include <string.h>

#include "kb_cursor.h"
#include "kb_kid.h"

static bool is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9');
}

static bool is_lower_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

bool kb_name_valid(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > KB_NAME_MAX)
		return false;
	for (i = 0; i < len; i++)
		if (!is_alnum(s[i]) && s[i] != '-')
			return false;
	return true;
}

bool kb_instance_valid(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > KB_INSTANCE_MAX)
		return false;
	for (i = 0; i < len; i++)
		if (!is_alnum(s[i]) && s[i] != '-' && s[i] != '.')
			return false;
	return true;
}

bool kb_version_valid(const char *s, size_t len)
{
	size_t i;

	if (len != KB_VERSION_LEN)
		return false;
	for (i = 0; i < len; i++)
		if (!is_lower_hex(s[i]))
			return false;
	return true;
}

enum kb_kid_status kb_kid_parse(const char *kid, size_t len,
				const char *instance, struct kb_keyref *ref)
{
	const char *inst, *name, *version = NULL;
	size_t ilen, nlen, vlen = 0;
	struct kb_cursor c;

	memset(ref, 0, sizeof(*ref));
	kb_cursor_init(&c, kid, len);
	/* keybroker://<instance>/keys/<name>[/<version>] */
	if (!kb_cursor_expect(&c, KB_KID_PREFIX, sizeof(KB_KID_PREFIX) - 1) ||
	    !kb_cursor_until(&c, '/', &inst, &ilen) ||
	    !kb_instance_valid(inst, ilen) || !kb_cursor_expect(&c, "keys/", 5))
		return KB_KID_BAD_SYNTAX;
	if (kb_cursor_until(&c, '/', &name, &nlen))
		kb_cursor_rest(&c, &version, &vlen);
	else
		kb_cursor_rest(&c, &name, &nlen);
	if (!kb_name_valid(name, nlen) ||
	    (version != NULL && !kb_version_valid(version, vlen)))
		return KB_KID_BAD_SYNTAX;
	memcpy(ref->name, name, nlen);
	if (version != NULL)
		memcpy(ref->version, version, KB_VERSION_LEN);
	if (strlen(instance) != ilen || memcmp(inst, instance, ilen) != 0)
		return KB_KID_OTHER_INSTANCE;
	return KB_KID_OK;
}

int kb_kid_format(char *buf, size_t size, const char *instance,
		  const char *name, const char *version)
{
	int n;

	if (version != NULL && version[0] != '\0')
		n = snprintf(buf, size, KB_KID_PREFIX "%s/keys/%s/%s", instance,
			     name, version);
	else
		n = snprintf(buf, size, KB_KID_PREFIX "%s/keys/%s", instance,
			     name);
	return n < 0 || (size_t)n >= size ? -1 : 0;
}

void kb_hex_encode(char *dst, const unsigned char *src, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		dst[2 * i] = digits[src[i] >> 4];
		dst[2 * i + 1] = digits[src[i] & 15];
	}
	dst[2 * n] = '\0';
}

static int hex_nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int kb_hex_decode(unsigned char *dst, size_t n, const char *src)
{
	size_t i;
	int hi, lo;

	for (i = 0; i < n; i++) {
		if ((hi = hex_nibble(src[2 * i])) < 0 ||
		    (lo = hex_nibble(src[2 * i + 1])) < 0)
			return -1;
		dst[i] = (unsigned char)(hi << 4 | lo);
	}
	return src[2 * n] == '\0' ? 0 : -1;
}
