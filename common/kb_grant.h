/* SPDX-License-Identifier: MIT */
/*
 * The words of an access grant, shared by the configuration that names
 * them and the ACL that enforces them: permissions (a bit each), the
 * built-in roles (sets of permissions, after the key vault's:
 * docs/identities.md), and key patterns, key names where '*' matches any
 * run of characters (possibly empty), so "cmk", "etl-*" and "*" are all
 * patterns.
 */
#ifndef KB_GRANT_H
#define KB_GRANT_H

#include <stdbool.h>

enum kb_perm {
	KB_PERM_GET = 1u << 0,
	KB_PERM_WRAP_KEY = 1u << 1,
	KB_PERM_UNWRAP_KEY = 1u << 2,
	KB_PERM_LIST = 1u << 3,
	KB_PERM_CREATE = 1u << 4,
	KB_PERM_IMPORT = 1u << 5,
	KB_PERM_UPDATE = 1u << 6,
	KB_PERM_ROTATE = 1u << 7,
	KB_PERM_DELETE = 1u << 8,
	KB_PERM_RECOVER = 1u << 9,
	KB_PERM_PURGE = 1u << 10,
	/* The audit trail's status (getAuditStatus): on no key in particular. */
	KB_PERM_READ_AUDIT = 1u << 11,
};

#define KB_PATTERN_MAX 128 /* bytes of one key pattern */

/* Looks up a permission ("unwrapKey") or a built-in role by name. */
int kb_perm_parse(const char *name, unsigned int *perm);
int kb_role_lookup(const char *name, unsigned int *perms);
/* The name of one permission bit. */
const char *kb_perm_name(unsigned int perm);

/* True if pattern is well formed: 1-128 of [A-Za-z0-9-*]. */
bool kb_pattern_valid(const char *pattern);
/* True if key matches pattern ('*' matches any run, including none). */
bool kb_pattern_match(const char *pattern, const char *key);

#endif
