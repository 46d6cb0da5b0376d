// SPDX-License-Identifier: MIT
/*
 * The request handler without a token: every refusal it makes before a
 * key is looked up, each with its wire code and a message that says
 * why, and the id of the request echoed. The policy is built from a
 * config text with no key store (no issuer key of its own).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kb_log.h"
#include "kb_ops.h"
#include "kb_secret.h"

static const char config_text[] =
	"instance = \"t\";\n"
	"socket = \"/run/kb-test.sock\";\n"
	"pkcs11 = { module = \"softhsm2\"; token = \"pkcs11:token=t\";\n"
	"           pin_file = \"/nonexistent/user.pin\"; };\n"
	"identities = (\n"
	"  { name = \"svc\"; assigned = \"system\"; uids = [ 4000 ]; }\n"
	");\n"
	"access = (\n"
	"  { identity = \"svc\"; keys = [ \"cmk\" ];\n"
	"    permissions = [ \"get\", \"wrapKey\" ]; }\n"
	");\n";

struct fixture {
	struct kb_policy_holder holder;
	struct kb_ops ops;
	struct kb_caller caller;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct kb_config *cfg;
	struct kb_policy *pol;
	char err[512];

	assert_non_null(f);
	if (kb_config_load_text("/tmp/test-ops.conf", config_text, &cfg, err,
				sizeof(err)) != 0)
		fail_msg("config: %s", err);
	if ((pol = kb_policy_new(cfg, NULL, err, sizeof(err))) == NULL)
		fail_msg("policy: %s", err);
	kb_policy_holder_init(&f->holder, pol);
	f->ops = (struct kb_ops){
		.policy = &f->holder,
		.rate = kb_rate_new(),
		.lograte = kb_lograte_new(KB_LOGRATE_BURST, KB_LOGRATE_PER_S),
		.instance = "t",
		.allow_rsa1_5 = false,
	};
	assert_non_null(f->ops.rate);
	assert_non_null(f->ops.lograte);
	/* An authenticated caller: svc, for an hour, from uid 4000. */
	f->caller.peer = (struct kb_peer){ .pid = 7, .uid = 4000, .gid = 4000 };
	strcpy(f->caller.identity, "svc");
	f->caller.expires = (int64_t)time(NULL) + 3600;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	kb_policy_holder_uninit(&f->holder);
	kb_rate_free(f->ops.rate);
	kb_lograte_free(f->ops.lograte);
	free(f);
	return 0;
}

/*
 * Handles line for caller and expects the error code (by its wire name)
 * with a message containing want, and the id echoed.
 */
static void expect(struct fixture *f, struct kb_caller *caller,
		   const char *line, enum kb_code code, const char *want)
{
	enum kb_code got;
	size_t len;
	char *resp = kb_ops_handle(&f->ops, NULL, caller, line, strlen(line),
				   NULL, NULL, &len, &got);
	json_t *r, *e;

	assert_non_null(resp);
	assert_int_equal(resp[len - 1], '\n');
	if ((r = json_loadb(resp, len, 0, NULL)) == NULL)
		fail_msg("reply is not JSON: %s", resp);
	e = json_object_get(r, "error");
	if (got != code || !json_is_object(e) ||
	    strcmp(json_string_value(json_object_get(e, "code")),
		   kb_code_name(code)) != 0 ||
	    strstr(json_string_value(json_object_get(e, "message")), want) ==
		    NULL)
		fail_msg("%s: got %s", line, resp);
	if (strstr(line, "\"id\":9") != NULL)
		assert_int_equal(json_integer_value(json_object_get(r, "id")),
				 9);
	json_decref(r);
	kb_wipe_free(resp, len);
}

static void test_malformed_line(void **state)
{
	struct fixture *f = *state;

	expect(f, &f->caller, "{\"op\":", KB_BAD_REQUEST, "malformed JSON");
	expect(f, &f->caller, "[1]", KB_BAD_REQUEST, "must be a JSON object");
}

static void test_unknown_op(void **state)
{
	struct fixture *f = *state;

	expect(f, &f->caller, "{\"id\":9,\"op\":\"frobKey\"}", KB_BAD_REQUEST,
	       "unknown op 'frobKey'");
}

static void test_key_op_needs_an_identity(void **state)
{
	struct fixture *f = *state;
	struct kb_caller anon = { .peer = f->caller.peer };

	expect(f, &anon, "{\"id\":9,\"op\":\"getKey\",\"key\":\"cmk\"}",
	       KB_UNAUTHORIZED, "no identity: send authenticate");
	expect(f, &anon, "{\"id\":9,\"op\":\"getKeys\"}", KB_UNAUTHORIZED,
	       "no identity: send authenticate");
}

static void test_expired_identity(void **state)
{
	struct fixture *f = *state;
	struct kb_caller old = f->caller;

	old.expires = (int64_t)time(NULL) - 1;
	expect(f, &old, "{\"id\":9,\"op\":\"getKey\",\"key\":\"cmk\"}",
	       KB_UNAUTHORIZED, "token expired");
}

static void test_missing_permission(void **state)
{
	struct fixture *f = *state;

	/* svc may get and wrap with cmk, not unwrap; nothing on other keys. */
	expect(f, &f->caller,
	       "{\"id\":9,\"op\":\"unwrapKey\",\"key\":\"cmk\",\"value\":\"AA\"}",
	       KB_FORBIDDEN, "identity 'svc' lacks unwrapKey on key 'cmk'");
	expect(f, &f->caller, "{\"id\":9,\"op\":\"getKey\",\"key\":\"other\"}",
	       KB_FORBIDDEN, "identity 'svc' lacks get on key 'other'");
	expect(f, &f->caller,
	       "{\"id\":9,\"op\":\"getKeyVersions\",\"key\":\"cmk\"}",
	       KB_FORBIDDEN, "identity 'svc' lacks list on key 'cmk'");
}

static void test_rsa1_5_disabled(void **state)
{
	struct fixture *f = *state;

	expect(f, &f->caller,
	       "{\"id\":9,\"op\":\"wrapKey\",\"key\":\"cmk\",\"alg\":\"RSA1_5\","
	       "\"value\":\"AA\"}",
	       KB_NOT_SUPPORTED, "RSA1_5 is disabled");
}

static void test_revoke_token_only_for_root_and_broker(void **state)
{
	struct fixture *f = *state;
	struct kb_caller other = f->caller;

	/* uid 4000 is neither root nor this process's uid (unless it is). */
	if (geteuid() == 4000)
		skip();
	expect(f, &other, "{\"id\":9,\"op\":\"revokeToken\",\"jti\":\"abc\"}",
	       KB_FORBIDDEN,
	       "revokeToken is for root and the broker's own uid");
}

static void test_get_token_needs_a_system_identity(void **state)
{
	struct fixture *f = *state;
	struct kb_caller stranger = { .peer = { .pid = 8, .uid = 4242 } };

	expect(f, &stranger, "{\"id\":9,\"op\":\"getToken\"}", KB_UNAUTHORIZED,
	       "no system-assigned identity matches this caller (uid 4242");
}

static void test_get_token_without_an_issuer_key(void **state)
{
	struct fixture *f = *state;
	struct kb_caller svc = { .peer = f->caller.peer };

	/* svc is bound to uid 4000, but this policy has no key to sign. */
	expect(f, &svc, "{\"id\":9,\"op\":\"getToken\"}", KB_NOT_SUPPORTED,
	       "the token has no issuer key");
}

static void test_authenticate_with_a_bad_token(void **state)
{
	struct fixture *f = *state;
	struct kb_caller anon = { .peer = f->caller.peer };

	expect(f, &anon,
	       "{\"id\":9,\"op\":\"authenticate\",\"token\":\"not-a-jwt\"}",
	       KB_UNAUTHORIZED, "token is not three dot-separated parts");
	assert_string_equal(anon.identity, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_malformed_line, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_unknown_op, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_key_op_needs_an_identity,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_expired_identity, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_missing_permission, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_rsa1_5_disabled, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_revoke_token_only_for_root_and_broker, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_get_token_needs_a_system_identity, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_get_token_without_an_issuer_key, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_authenticate_with_a_bad_token, setup, teardown),
	};

	kb_log_init("test_ops", KB_LOG_ERROR);
	kb_proto_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
