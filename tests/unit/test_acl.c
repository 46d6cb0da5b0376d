// SPDX-License-Identifier: MIT
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "kb_acl.h"

static void test_patterns(void **state)
{
	assert_true(kb_pattern_match("cmk", "cmk"));
	assert_false(kb_pattern_match("cmk", "cmk2"));
	assert_false(kb_pattern_match("cmk2", "cmk"));
	assert_true(kb_pattern_match("*", "anything"));
	assert_true(kb_pattern_match("etl-*", "etl-"));
	assert_true(kb_pattern_match("etl-*", "etl-2026"));
	assert_false(kb_pattern_match("etl-*", "etl"));
	assert_false(kb_pattern_match("etl-*", "xetl-1"));
	assert_true(kb_pattern_match("*-cmk", "db-cmk"));
	assert_true(kb_pattern_match("a*b*c", "aXXbYYc"));
	assert_true(kb_pattern_match("a*b*c", "abc"));
	assert_false(kb_pattern_match("a*b*c", "aXXbYY"));
	assert_true(kb_pattern_match("a**b", "ab"));
	assert_true(kb_pattern_match("*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaab"));
	assert_false(kb_pattern_match("*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaa"));
}

static void test_pattern_validity(void **state)
{
	char p[KB_PATTERN_MAX + 2];

	assert_true(kb_pattern_valid("etl-*"));
	assert_false(kb_pattern_valid(""));
	assert_false(kb_pattern_valid("a/b"));
	assert_false(kb_pattern_valid("a?"));
	assert_false(kb_pattern_valid("[ab]"));
	memset(p, 'a', sizeof(p));
	p[KB_PATTERN_MAX] = '\0';
	assert_true(kb_pattern_valid(p));
	p[KB_PATTERN_MAX] = 'a';
	p[KB_PATTERN_MAX + 1] = '\0';
	assert_false(kb_pattern_valid(p));
}

static void test_perms_and_roles(void **state)
{
	unsigned int p;

	assert_int_equal(kb_perm_parse("unwrapKey", &p), 0);
	assert_int_equal(p, KB_PERM_UNWRAP_KEY);
	assert_int_equal(kb_perm_parse("unwrapkey", &p), -1);
	assert_string_equal(kb_perm_name(KB_PERM_PURGE), "purge");
	assert_int_equal(kb_role_lookup("Crypto Service Encryption User", &p),
			 0);
	assert_int_equal(p,
			 KB_PERM_GET | KB_PERM_WRAP_KEY | KB_PERM_UNWRAP_KEY);
	assert_int_equal(kb_role_lookup("Auditor", &p), 0);
	assert_false(p & (KB_PERM_WRAP_KEY | KB_PERM_UNWRAP_KEY));
	assert_int_equal(kb_role_lookup("Crypto Officer", &p), 0);
	assert_true(p & KB_PERM_PURGE);
	assert_int_equal(kb_role_lookup("Owner", &p), -1);
}

static void test_deny_by_default_and_grants(void **state)
{
	struct kb_acl *acl = kb_acl_new();

	assert_non_null(acl);
	assert_false(kb_acl_allows(acl, "etl", "cmk", KB_PERM_GET));
	assert_int_equal(kb_acl_grant(acl, "etl", "cmk",
				      KB_PERM_WRAP_KEY | KB_PERM_UNWRAP_KEY),
			 0);
	assert_int_equal(kb_acl_grant(acl, "ops", "*", KB_PERM_GET), 0);
	assert_int_equal(kb_acl_grant(acl, "etl", "bad/pattern", 1), -1);
	/* wrap/unwrap do not need get, and do not imply it. */
	assert_true(kb_acl_allows(acl, "etl", "cmk", KB_PERM_UNWRAP_KEY));
	assert_true(kb_acl_allows(acl, "etl", "cmk", KB_PERM_WRAP_KEY));
	assert_false(kb_acl_allows(acl, "etl", "cmk", KB_PERM_GET));
	/* Other key, other identity, identity prefix: nothing. */
	assert_false(kb_acl_allows(acl, "etl", "cmk2", KB_PERM_UNWRAP_KEY));
	assert_false(kb_acl_allows(acl, "et", "cmk", KB_PERM_UNWRAP_KEY));
	assert_false(kb_acl_allows(acl, "ops", "cmk", KB_PERM_UNWRAP_KEY));
	assert_true(kb_acl_allows(acl, "ops", "anything", KB_PERM_GET));
	/* Asking for several bits needs all of them in one grant. */
	assert_false(kb_acl_allows(acl, "etl", "cmk",
				   KB_PERM_UNWRAP_KEY | KB_PERM_GET));
	assert_false(kb_acl_allows(acl, "etl", "cmk", 0));
	kb_acl_free(acl);
	kb_acl_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_patterns),
		cmocka_unit_test(test_pattern_validity),
		cmocka_unit_test(test_perms_and_roles),
		cmocka_unit_test(test_deny_by_default_and_grants),
	};

	return cmocka_run_group_tests_name("acl", tests, NULL, NULL);
}
