/* SPDX-License-Identifier: MIT */
/*
 * Access control: which identity may do what on which key. Deny by
 * default; an ACL is a list of grants (identity, key patterns,
 * permissions), built once from the configuration and then read-only.
 *
 * Key patterns are key names where '*' matches any run of characters
 * (possibly empty), so "cmk", "etl-*" and "*" are all patterns.
 */
#ifndef KB_ACL_H
#define KB_ACL_H

#include <stdbool.h>
#include <stddef.h>

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
};

#define KB_PATTERN_MAX 128 /* bytes of one key pattern */

struct kb_acl;

/* Looks up a permission ("unwrapKey") or a built-in role by name. */
int kb_perm_parse(const char *name, unsigned int *perm);
int kb_role_lookup(const char *name, unsigned int *perms);
/* The name of one permission bit. */
const char *kb_perm_name(unsigned int perm);

/* True if pattern is well formed: 1-128 of [A-Za-z0-9-*]. */
bool kb_acl_pattern_valid(const char *pattern);
/* True if key matches pattern ('*' matches any run, including none). */
bool kb_acl_pattern_match(const char *pattern, const char *key);

struct kb_acl *kb_acl_new(void);
void kb_acl_free(struct kb_acl *acl);

/* Grants perms on keys matching pattern to identity. */
int kb_acl_grant(struct kb_acl *acl, const char *identity, const char *pattern,
		 unsigned int perms);

/* True if some grant gives identity every bit of perm on key. */
bool kb_acl_allows(const struct kb_acl *acl, const char *identity,
		   const char *key, unsigned int perm);

#endif
