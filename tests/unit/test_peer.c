// SPDX-License-Identifier: MIT
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "kb_peer.h"

static const char *unit_of(const char *text)
{
	static char unit[KB_UNIT_MAX];

	return kb_peer_unit_from_cgroup(text, unit, sizeof(unit)) ? unit : "";
}

static void test_unified_hierarchy(void **state)
{
	assert_string_equal(unit_of("0::/system.slice/etl.service\n"),
			    "etl.service");
	assert_string_equal(unit_of("0::/user.slice/user-1000.slice/"
				    "session-3.scope\n"),
			    "session-3.scope");
	/* The deepest unit wins (a service's own sub-cgroup). */
	assert_string_equal(unit_of("0::/system.slice/db.service/worker\n"),
			    "db.service");
}

static void test_legacy_hierarchy(void **state)
{
	assert_string_equal(unit_of("4:memory:/x\n1:name=systemd:/system.slice/"
				    "etl.service\n0::/\n"),
			    "etl.service");
	/* The unified line is preferred when it names a unit. */
	assert_string_equal(unit_of("1:name=systemd:/system.slice/a.service\n"
				    "0::/system.slice/b.service\n"),
			    "b.service");
}

static void test_no_unit(void **state)
{
	assert_string_equal(unit_of(""), "");
	assert_string_equal(unit_of("0::/\n"), "");
	assert_string_equal(unit_of("0::/system.slice/.service\n"), "");
	assert_string_equal(unit_of("0::/docker/abc\n"), "");
	assert_string_equal(unit_of("3:cpu:/system.slice/x.service\n"), "");
}

static void test_too_long(void **state)
{
	char text[600], unit[16];

	memset(text, 'a', sizeof(text));
	memcpy(text, "0::/", 4);
	memcpy(text + 500, ".service\n", 10);
	assert_false(kb_peer_unit_from_cgroup(text, unit, sizeof(unit)));
	assert_string_equal(unit, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unified_hierarchy),
		cmocka_unit_test(test_legacy_hierarchy),
		cmocka_unit_test(test_no_unit),
		cmocka_unit_test(test_too_long),
	};

	return cmocka_run_group_tests_name("peer", tests, NULL, NULL);
}
