// SPDX-License-Identifier: MIT
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kb_peer.h"

static struct kb_peer peer_of(uid_t uid, const char *unit,
			      const char *user_unit)
{
	struct kb_peer p = { .pid = 1234, .uid = uid, .gid = uid };

	strcpy(p.unit, unit);
	strcpy(p.user_unit, user_unit);
	return p;
}

static void test_system_unit_binding(void **state)
{
	char *units[] = { "pgdata.service" };
	struct kb_binding b = { .units = units, .n_units = 1 };
	struct kb_peer sys = peer_of(70, "pgdata.service", "");
	/* systemd-run --user --unit=pgdata.service, as uid 999. */
	struct kb_peer user =
		peer_of(999, "user@999.service", "pgdata.service");
	struct kb_peer unproven = peer_of(70, "", "");

	assert_true(kb_peer_bound(&b, &sys));
	assert_false(kb_peer_bound(&b, &user));
	assert_false(kb_peer_bound(&b, &unproven));
}

static void test_user_unit_binding(void **state)
{
	char *units[] = { "pgdata.service" };
	uid_t uids[] = { 999 };
	struct kb_binding b = { .user_units = units,
				.n_user_units = 1,
				.uids = uids,
				.n_uids = 1 };
	struct kb_peer user =
		peer_of(999, "user@999.service", "pgdata.service");
	struct kb_peer other =
		peer_of(998, "user@998.service", "pgdata.service");
	struct kb_peer sys = peer_of(999, "pgdata.service", "");

	assert_true(kb_peer_bound(&b, &user));
	assert_false(kb_peer_bound(&b, &other));
	assert_false(kb_peer_bound(&b, &sys));
}

static void test_every_list_must_match(void **state)
{
	uid_t uids[] = { 0, 1000 };
	gid_t gids[] = { 50 };
	char *units[] = { "etl.service", "etl-batch.service" };
	struct kb_binding b = { .uids = uids,
				.n_uids = 2,
				.gids = gids,
				.n_gids = 1,
				.units = units,
				.n_units = 2 };
	struct kb_binding none = { 0 };
	struct kb_peer p = peer_of(1000, "etl-batch.service", "");

	assert_false(kb_peer_bound(&b, &p)); /* gid 1000 is not 50 */
	p.gid = 50;
	assert_true(kb_peer_bound(&b, &p));
	p.uid = 1001;
	assert_false(kb_peer_bound(&b, &p));
	assert_true(kb_peer_bound(&none, &p));
}

static void test_peer_of_socketpair(void **state)
{
	struct kb_peer p;
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(kb_peer_from_socket(sv[0], &p), 0);
	assert_int_equal(p.pid, getpid());
	assert_int_equal(p.uid, geteuid());
	assert_int_equal(p.gid, getegid());
	close(sv[0]);
	close(sv[1]);
	assert_int_equal(kb_peer_from_socket(-1, &p), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_system_unit_binding),
		cmocka_unit_test(test_user_unit_binding),
		cmocka_unit_test(test_every_list_must_match),
		cmocka_unit_test(test_peer_of_socketpair),
	};

	return cmocka_run_group_tests_name("peer", tests, NULL, NULL);
}
