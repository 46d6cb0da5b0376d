/* SPDX-License-Identifier: MIT */
/*
 * Access control: which identity may do what on which key. Deny by
 * default; an ACL is a list of grants (identity, key pattern,
 * permissions: kb_grant.h), built once from the configuration and then
 * read-only.
 */
#ifndef KB_ACL_H
#define KB_ACL_H

#include <stdbool.h>
#include <stddef.h>

#include "kb_grant.h"

struct kb_acl;

struct kb_acl *kb_acl_new(void);
void kb_acl_free(struct kb_acl *acl);

/* Grants perms on keys matching pattern to identity. */
int kb_acl_grant(struct kb_acl *acl, const char *identity, const char *pattern,
		 unsigned int perms);

/* True if some grant gives identity every bit of perm on key. */
bool kb_acl_allows(const struct kb_acl *acl, const char *identity,
		   const char *key, unsigned int perm);
/* The same, naming the key pattern of the first grant that does; or NULL. */
const char *kb_acl_match(const struct kb_acl *acl, const char *identity,
			 const char *key, unsigned int perm);
/* The key pattern of the first grant giving identity perm on any key. */
const char *kb_acl_holds(const struct kb_acl *acl, const char *identity,
			 unsigned int perm);

#endif
