// SPDX-License-Identifier: MIT
#include <string.h>

#include "kb_grant.h"

static const struct {
	const char *name;
	unsigned int perm;
} perm_names[] = {
	{ "get", KB_PERM_GET },
	{ "wrapKey", KB_PERM_WRAP_KEY },
	{ "unwrapKey", KB_PERM_UNWRAP_KEY },
	{ "list", KB_PERM_LIST },
	{ "create", KB_PERM_CREATE },
	{ "import", KB_PERM_IMPORT },
	{ "update", KB_PERM_UPDATE },
	{ "rotate", KB_PERM_ROTATE },
	{ "delete", KB_PERM_DELETE },
	{ "recover", KB_PERM_RECOVER },
	{ "purge", KB_PERM_PURGE },
	{ "readAudit", KB_PERM_READ_AUDIT },
};

#define PERM_DATA (KB_PERM_GET | KB_PERM_WRAP_KEY | KB_PERM_UNWRAP_KEY)
#define PERM_MANAGE                                                        \
	(KB_PERM_LIST | KB_PERM_CREATE | KB_PERM_IMPORT | KB_PERM_UPDATE | \
	 KB_PERM_ROTATE | KB_PERM_DELETE | KB_PERM_RECOVER | KB_PERM_PURGE)

/* Built-in roles, after the key vault's: docs/identities.md. */
static const struct {
	const char *name;
	unsigned int perms;
} roles[] = {
	/* What a data service needs for its customer-managed key. */
	{ "Crypto Service Encryption User", PERM_DATA },
	/* Uses keys and sees which exist. */
	{ "Crypto User", PERM_DATA | KB_PERM_LIST },
	/* Manages keys: every permission. */
	{ "Crypto Officer", PERM_DATA | PERM_MANAGE },
	/* Reads key metadata and the trail's status, never uses a key. */
	{ "Auditor", KB_PERM_GET | KB_PERM_LIST | KB_PERM_READ_AUDIT },
};

int kb_perm_parse(const char *name, unsigned int *perm)
{
	size_t i;

	for (i = 0; i < sizeof(perm_names) / sizeof(perm_names[0]); i++)
		if (strcmp(name, perm_names[i].name) == 0) {
			*perm = perm_names[i].perm;
			return 0;
		}
	return -1;
}

int kb_role_lookup(const char *name, unsigned int *perms)
{
	size_t i;

	for (i = 0; i < sizeof(roles) / sizeof(roles[0]); i++)
		if (strcmp(name, roles[i].name) == 0) {
			*perms = roles[i].perms;
			return 0;
		}
	return -1;
}

const char *kb_perm_name(unsigned int perm)
{
	size_t i;

	for (i = 0; i < sizeof(perm_names) / sizeof(perm_names[0]); i++)
		if (perm_names[i].perm == perm)
			return perm_names[i].name;
	return "?";
}

bool kb_pattern_valid(const char *pattern)
{
	size_t i;

	for (i = 0; pattern[i] != '\0'; i++) {
		char c = pattern[i];

		if (i >= KB_PATTERN_MAX ||
		    !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '-' || c == '*'))
			return false;
	}
	return i > 0;
}

/*
 * Glob match with '*' only, iterative with one backtrack point: linear in
 * practice and never recursive, whatever the pattern.
 */
bool kb_pattern_match(const char *pattern, const char *key)
{
	const char *p = pattern, *k = key, *star = NULL, *resume = NULL;

	while (*k != '\0') {
		if (*p == '*') {
			star = p++;
			resume = k;
		} else if (*p == *k) {
			p++;
			k++;
		} else if (star != NULL) {
			p = star + 1;
			k = ++resume;
		} else {
			return false;
		}
	}
	while (*p == '*')
		p++;
	return *p == '\0';
}
