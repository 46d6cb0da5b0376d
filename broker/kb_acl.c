// SPDX-License-Identifier: MIT
#include <stdlib.h>
#include <string.h>

#include "kb_acl.h"

struct grant {
	char *identity;
	char *pattern;
	unsigned int perms;
};

struct kb_acl {
	struct grant *grants;
	size_t n, cap;
};

struct kb_acl *kb_acl_new(void)
{
	return calloc(1, sizeof(struct kb_acl));
}

void kb_acl_free(struct kb_acl *acl)
{
	size_t i;

	if (acl == NULL)
		return;
	for (i = 0; i < acl->n; i++) {
		free(acl->grants[i].identity);
		free(acl->grants[i].pattern);
	}
	free(acl->grants);
	free(acl);
}

int kb_acl_grant(struct kb_acl *acl, const char *identity, const char *pattern,
		 unsigned int perms)
{
	struct grant *g;
	size_t cap;

	if (!kb_pattern_valid(pattern))
		return -1;
	if (acl->n == acl->cap) {
		cap = acl->cap ? acl->cap * 2 : 16;
		if ((g = realloc(acl->grants, cap * sizeof(*g))) == NULL)
			return -1;
		acl->grants = g;
		acl->cap = cap;
	}
	g = &acl->grants[acl->n];
	g->identity = strdup(identity);
	g->pattern = strdup(pattern);
	g->perms = perms;
	if (g->identity == NULL || g->pattern == NULL) {
		free(g->identity);
		free(g->pattern);
		return -1;
	}
	acl->n++;
	return 0;
}

const char *kb_acl_match(const struct kb_acl *acl, const char *identity,
			 const char *key, unsigned int perm)
{
	const struct grant *g;
	size_t i;

	if (perm == 0)
		return NULL;
	for (i = 0; i < acl->n; i++) {
		g = &acl->grants[i];
		if ((g->perms & perm) == perm &&
		    strcmp(g->identity, identity) == 0 &&
		    (key == NULL || kb_pattern_match(g->pattern, key)))
			return g->pattern;
	}
	return NULL;
}

bool kb_acl_allows(const struct kb_acl *acl, const char *identity,
		   const char *key, unsigned int perm)
{
	return kb_acl_match(acl, identity, key, perm) != NULL;
}

const char *kb_acl_holds(const struct kb_acl *acl, const char *identity,
			 unsigned int perm)
{
	return kb_acl_match(acl, identity, NULL, perm);
}
