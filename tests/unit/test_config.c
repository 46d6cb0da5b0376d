// SPDX-License-Identifier: MIT
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kb_acl.h"
#include "kb_config.h"
#include "kb_kid.h"
#include "kb_jwt.h"

static char dir[] = "/tmp/kb-config-test-XXXXXX";
static char path[64];

#define PKCS11                                                            \
	"pkcs11 = { module = \"softhsm2\"; token = \"pkcs11:token=t\";\n" \
	"  pin_file = \"pin\"; };\n"
#define MINIMAL "instance = \"i1\";\nsocket = \"s.sock\";\n" PKCS11

static int setup(void **state)
{
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(path, sizeof(path), "%s/kb.conf", dir);
	return 0;
}

static int teardown(void **state)
{
	unlink(path);
	rmdir(dir);
	return 0;
}

/* Writes text to the config file and loads it. */
static int load(const char *text, struct kb_config **cfg, char *err,
		size_t errlen)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return kb_config_load(path, cfg, err, errlen);
}

static void expect_error(const char *text, const char *want)
{
	struct kb_config *cfg = NULL;
	char err[512];

	assert_int_equal(load(text, &cfg, err, sizeof(err)), -1);
	assert_null(cfg);
	if (strstr(err, want) == NULL)
		fail_msg("error '%s' does not contain '%s'", err, want);
}

static void test_minimal_and_defaults(void **state)
{
	struct kb_config *cfg;
	char err[512], want[128];

	assert_int_equal(load(MINIMAL, &cfg, err, sizeof(err)), 0);
	assert_string_equal(cfg->instance, "i1");
	snprintf(want, sizeof(want), "%s/s.sock", dir);
	assert_string_equal(cfg->socket_path, want);
	snprintf(want, sizeof(want), "%s/pin", dir);
	assert_string_equal(cfg->pkcs11_pin_file, want);
	assert_true(cfg->workers >= 2);
	assert_int_equal(cfg->max_connections, 4096);
	assert_int_equal(cfg->max_connections_per_uid, 128);
	assert_int_equal(cfg->max_unauthenticated_per_uid, 16);
	assert_int_equal(cfg->authenticate_timeout_ms, 10000);
	assert_string_equal(cfg->obsolete, "");
	assert_int_equal(cfg->idle_timeout_ms, 300000);
	assert_false(cfg->allow_rsa1_5);
	kb_config_free(cfg);
}

static void test_all_settings(void **state)
{
	struct kb_config *cfg;
	char err[512];

	assert_int_equal(load("instance = \"i\"; socket = \"/run/x.sock\";\n"
			      "log_level = \"debug\"; workers = 64;\n"
			      "max_connections = 1; max_pipeline = 4096;\n"
			      "max_connections_per_uid = 2;\n"
			      "max_unauthenticated_per_uid = 3;\n"
			      "authenticate_timeout = 30; max_queued = 5;\n"
			      "idle_timeout = 1; request_timeout = 3600;\n"
			      "shutdown_grace = 0; socket_mode = \"0660\";\n"
			      "algorithms = { rsa1_5 = true; };\n" PKCS11,
			      &cfg, err, sizeof(err)),
			 0);
	assert_string_equal(cfg->socket_path, "/run/x.sock");
	assert_int_equal(cfg->workers, 64);
	assert_int_equal(cfg->max_pipeline, 4096);
	assert_int_equal(cfg->max_connections_per_uid, 2);
	assert_int_equal(cfg->max_unauthenticated_per_uid, 3);
	assert_int_equal(cfg->authenticate_timeout_ms, 30000);
	/* Taken, still checked, but said to have no effect. */
	assert_non_null(strstr(cfg->obsolete,
			       ":6: setting 'max_queued' no longer has an "
			       "effect"));
	assert_int_equal(cfg->request_timeout_ms, 3600000);
	assert_int_equal(cfg->log_level, KB_LOG_DEBUG);
	assert_true(cfg->allow_rsa1_5);
	assert_int_equal(cfg->socket_mode, 0660);
	kb_config_free(cfg);
}

static void test_syntax_error_names_line(void **state)
{
	char want[128];

	snprintf(want, sizeof(want), "%s:3: syntax error", path);
	expect_error("instance = \"i\";\nsocket = \"s\";\nworkers = ;\n", want);
}

static void test_unknown_setting(void **state)
{
	char want[128];

	snprintf(want, sizeof(want), "%s:5: setting 'wokers': unknown", path);
	expect_error(MINIMAL "wokers = 2;\n", want);
	expect_error(MINIMAL "algorithms = { rsa15 = true; };\n",
		     "setting 'rsa15': unknown setting");
}

static void test_wrong_types_and_ranges(void **state)
{
	expect_error(MINIMAL "workers = \"4\";\n",
		     "setting 'workers': must be an integer");
	expect_error(MINIMAL "workers = 0;\n",
		     "setting 'workers': must be between 1 and 64");
	expect_error(MINIMAL "workers = 65;\n", "between 1 and 64");
	expect_error(
		MINIMAL "authenticate_timeout = 31;\n",
		"setting 'authenticate_timeout': must be between 1 and 30");
	expect_error(MINIMAL "max_connections_per_uid = 0;\n",
		     "setting 'max_connections_per_uid': must be between 1");
	expect_error(MINIMAL "log_level = \"loud\";\n", "must be one of");
	expect_error(MINIMAL "socket_mode = \"666\";\n", "octal mode string");
	expect_error(MINIMAL "socket_mode = \"01777\";\n", "octal mode string");
	expect_error(MINIMAL "socket_mode = 0600;\n",
		     "setting 'socket_mode': must be a quoted octal string "
		     "such as \"0660\" (unquoted, 0660 is read as the number "
		     "660)");
	expect_error(MINIMAL "algorithms = { rsa1_5 = 1; };\n",
		     "must be true or false");
	expect_error("instance = \"a b\"; socket = \"s\";\n" PKCS11,
		     "setting 'instance'");
}

static void test_missing_and_bad_values(void **state)
{
	expect_error("socket = \"s\";\n" PKCS11,
		     "missing required setting 'instance'");
	expect_error(
		"instance = \"i\"; socket = \"s\"; allow_uids = [0];\n" PKCS11,
		"setting 'allow_uids': unknown setting");
	expect_error("instance = \"i\"; socket = \"s\";\n",
		     "missing required group 'pkcs11'");
	expect_error("instance = \"i\"; socket = \"s\";\n"
		     "pkcs11 = { module = \"softhsm2\"; token = \"token=t\";\n"
		     "pin_file = \"p\"; };\n",
		     "setting 'token': must be a PKCS#11 URI");
	expect_error("instance = \"i\"; socket = \"s\";\n"
		     "pkcs11 = { module = \"lib/x.so\"; token = \"pkcs11:\";\n"
		     "pin_file = \"p\"; };\n",
		     "absolute path");
	expect_error("instance = \"i\"; socket = \"s\";\n"
		     "pkcs11 = { module = \"\"; token = \"pkcs11:\";\n"
		     "pin_file = \"p\"; };\n",
		     "setting 'module': must not be empty");
}

#define PKCS11_CRED(rest)                                                      \
	"instance = \"i\"; socket = \"s\";\n"                                  \
	"pkcs11 = { module = \"softhsm2\"; token = \"pkcs11:token=t\";\n" rest \
	" };\n"

/* The PIN's sources: pin_file, a systemd credential's name, or both. */
static void test_pin_credential(void **state)
{
	struct kb_config *cfg;
	char err[512], want[128];

	expect_error(PKCS11_CRED(""), "needs pin_file or pin_credential");
	expect_error(PKCS11_CRED("pin_credential = \"a/pin\";"),
		     "setting 'pin_credential': must be a credential name");
	expect_error(PKCS11_CRED("pin_credential = \"..\";"),
		     "must be a credential name");
	expect_error(PKCS11_CRED("pin_credential = 1;"), "must be a string");
	assert_int_equal(load(PKCS11_CRED("pin_credential = \"pin\"; "
					  "pin_file = \"user.pin\";"),
			      &cfg, err, sizeof(err)),
			 0);
	snprintf(want, sizeof(want), "%s/user.pin", dir);
	assert_string_equal(cfg->pkcs11_pin_file, want);
	assert_string_equal(cfg->pkcs11_pin_credential, "pin");
	kb_config_free(cfg);
	/* The credential alone: the broker resolves it, under its unit. */
	assert_int_equal(load(PKCS11_CRED("pin_credential = \"pin\";"), &cfg,
			      err, sizeof(err)),
			 0);
	assert_null(cfg->pkcs11_pin_file);
	assert_string_equal(cfg->pkcs11_pin_credential, "pin");
	kb_config_free(cfg);
	assert_int_equal(load(MINIMAL, &cfg, err, sizeof(err)), 0);
	assert_null(cfg->pkcs11_pin_credential);
	kb_config_free(cfg);
}

static void test_user(void **state)
{
	struct kb_config *cfg;
	char err[512];

	assert_int_equal(load(MINIMAL, &cfg, err, sizeof(err)), 0);
	assert_null(cfg->user);
	kb_config_free(cfg);
	assert_int_equal(load("user = \"keybroker\";\n" MINIMAL, &cfg, err,
			      sizeof(err)),
			 0);
	assert_string_equal(cfg->user, "keybroker");
	kb_config_free(cfg);
	expect_error("user = \"\";\n" MINIMAL,
		     "setting 'user': must not be empty");
	expect_error("user = 0;\n" MINIMAL, "setting 'user': must be a string");
}

static void test_missing_file(void **state)
{
	struct kb_config *cfg;
	char err[256];

	assert_int_equal(kb_config_load("/nonexistent/kb.conf", &cfg, err,
					sizeof(err)),
			 -1);
	assert_string_equal(err, "/nonexistent/kb.conf: cannot read file");
}

#define IDS                                                           \
	"identities = (\n"                                            \
	"  { name = \"etl\"; assigned = \"system\"; uids = [1001];\n" \
	"    units = [\"etl.service\"]; },\n"                         \
	"  { name = \"reports\"; gids = [20]; }\n);\n"

static void test_identities_issuers_access(void **state)
{
	struct kb_config *cfg;
	char err[512];

	assert_int_equal(
		load(MINIMAL IDS
		     "tokens = { lifetime = 600; max_lifetime = 3600; };\n"
		     "issuers = ( { issuer = \"https://k8s\"; audience = "
		     "\"kb\"; jwks = \"k8s.json\"; algorithms = [\"RS256\", "
		     "\"ES256\"]; subjects = ( { subject = \"sa:etl\"; "
		     "identity = \"etl\"; } ); } );\n"
		     "access = ( { identity = \"etl\"; keys = [\"cmk\", "
		     "\"etl-*\"]; roles = [\"Crypto Service Encryption "
		     "User\"]; }, { identity = \"reports\"; keys = \"*\"; "
		     "permissions = [\"get\", \"list\"]; } );\n"
		     "rate_limit = { rate = 5.5; burst = 10; };\n",
		     &cfg, err, sizeof(err)),
		0);
	assert_int_equal(cfg->n_identities, 2);
	assert_true(cfg->identities[0].system_assigned);
	assert_int_equal(cfg->identities[0].bind.uids[0], 1001);
	assert_string_equal(cfg->identities[0].bind.units[0], "etl.service");
	assert_false(cfg->identities[1].system_assigned);
	assert_string_equal(cfg->token_issuer, "keybroker://i1");
	assert_int_equal(cfg->token_lifetime_s, 600);
	assert_int_equal(cfg->n_issuers, 1);
	assert_int_equal(cfg->issuers[0].algs, KB_JWS_RS256 | KB_JWS_ES256);
	assert_string_equal(cfg->issuers[0].claim, "sub");
	assert_string_equal(cfg->issuers[0].subjects[0].identity, "etl");
	assert_int_equal(cfg->n_grants, 2);
	assert_int_equal(cfg->grants[0].perms,
			 KB_PERM_GET | KB_PERM_WRAP_KEY | KB_PERM_UNWRAP_KEY);
	assert_int_equal(cfg->grants[1].n_keys, 1);
	assert_true(cfg->rate_per_s > 5.4 && cfg->rate_per_s < 5.6);
	assert_int_equal(cfg->rate_burst, 10);
	kb_config_free(cfg);
}

static void test_identity_errors(void **state)
{
	expect_error(MINIMAL "identities = ( { name = \"a\"; }, "
			     "{ name = \"a\"; } );\n",
		     "identity 'a' is defined twice");
	expect_error(MINIMAL "identities = ( { name = \"a\"; assigned = "
			     "\"system\"; } );\n",
		     "needs uids or units");
	expect_error(MINIMAL "identities = ( { name = \"a b\"; } );\n",
		     "setting 'name': must be 1-64");
	expect_error(MINIMAL "identities = ( { name = \"a\"; assigned = "
			     "\"both\"; } );\n",
		     "must be \"system\" or \"user\"");
	expect_error(MINIMAL "identities = ( { name = \"a\"; uid = [1]; } "
			     ");\n",
		     "setting 'uid': unknown setting");
}

static void test_unit_bindings(void **state)
{
	struct kb_config *cfg;
	char err[512];

	assert_int_equal(load(MINIMAL
			      "identities = ( { name = \"a\"; assigned = "
			      "\"system\"; uids = [999]; user_units = "
			      "[\"pg.service\", \"run-u7.scope\"]; } );\n",
			      &cfg, err, sizeof(err)),
			 0);
	assert_int_equal(cfg->identities[0].bind.n_user_units, 2);
	assert_string_equal(cfg->identities[0].bind.user_units[1],
			    "run-u7.scope");
	assert_int_equal(cfg->identities[0].line, 5);
	kb_config_free(cfg);
	/* Any user can name a unit of its own manager: never alone. */
	expect_error(MINIMAL "identities = ( { name = \"a\"; assigned = "
			     "\"system\"; units = [\"x.service\"]; "
			     "user_units = [\"pg.service\"]; } );\n",
		     "setting 'user_units': user units are named by their "
		     "users: bind them together with 'uids'");
	expect_error(MINIMAL "identities = ( { name = \"a\"; units = "
			     "[\"system.slice/x.service\"]; } );\n",
		     "setting 'units': 'system.slice/x.service' is not a "
		     "systemd service or scope unit name");
	expect_error(MINIMAL "identities = ( { name = \"a\"; units = "
			     "[\"etl\"]; } );\n",
		     "'etl' is not a systemd service or scope unit name");
	expect_error(MINIMAL "identities = ( { name = \"a\"; uids = [1]; "
			     "user_units = [\".service\"]; } );\n",
		     "setting 'user_units': '.service' is not");
}

static void test_access_errors(void **state)
{
	expect_error(MINIMAL IDS "access = ( { identity = \"ghost\"; keys = "
				 "\"k\"; permissions = \"get\"; } );\n",
		     "no identity named 'ghost'");
	expect_error(MINIMAL IDS "access = ( { identity = \"etl\"; keys = "
				 "\"k\"; roles = \"Owner\"; } );\n",
		     "unknown role 'Owner'");
	expect_error(MINIMAL IDS "access = ( { identity = \"etl\"; keys = "
				 "\"k\"; permissions = \"decrypt\"; } );\n",
		     "unknown permission 'decrypt'");
	expect_error(MINIMAL IDS "access = ( { identity = \"etl\"; keys = "
				 "\"a/b\"; permissions = \"get\"; } );\n",
		     "not a key name or pattern");
	expect_error(MINIMAL IDS "access = ( { identity = \"etl\"; keys = "
				 "\"k\"; } );\n",
		     "needs 'permissions' or 'roles'");
	expect_error(MINIMAL IDS "access = { identity = \"etl\"; };\n",
		     "setting 'access': must be a list");
}

static void test_issuer_and_token_errors(void **state)
{
	expect_error(MINIMAL IDS
		     "issuers = ( { issuer = \"x\"; audience = "
		     "\"a\"; jwks = \"j\"; subjects = ( { subject = "
		     "\"s\"; identity = \"etl\"; } ); } );\n",
		     "explicit 'algorithms' list");
	expect_error(MINIMAL IDS "issuers = ( { issuer = \"x\"; audience = "
				 "\"a\"; jwks = \"j\"; algorithms = \"HS256\"; "
				 "subjects = ( { subject = \"s\"; identity = "
				 "\"etl\"; } ); } );\n",
		     "'HS256' is not RS256, PS256 or ES256");
	expect_error(MINIMAL IDS "issuers = ( { issuer = \"x\"; audience = "
				 "\"a\"; jwks = \"j\"; algorithms = \"RS256\"; "
				 "subjects = ( { subject = \"s\"; identity = "
				 "\"nope\"; } ); } );\n",
		     "no identity named 'nope'");
	expect_error(MINIMAL IDS "issuers = ( { issuer = \"x\"; audience = "
				 "\"a\"; jwks = \"j\"; algorithms = \"RS256\"; "
				 "} );\n",
		     "needs a 'subjects' list");
	expect_error(MINIMAL IDS "issuers = ( { issuer = \"keybroker://i1\"; "
				 "audience = \"a\"; jwks = \"j\"; algorithms = "
				 "\"RS256\"; subjects = ( { subject = \"s\"; "
				 "identity = \"etl\"; } ); } );\n",
		     "already configured as this broker's own");
	expect_error(MINIMAL IDS
		     "issuers = ( { issuer = \"x\"; audience = "
		     "\"a\"; jwks = \"j\"; algorithms = \"RS256\"; "
		     "subjects = ( { subject = \"s\"; identity = "
		     "\"etl\"; } ); }, { issuer = \"x\"; audience = "
		     "\"b\"; jwks = \"j\"; algorithms = \"RS256\"; "
		     "subjects = ( { subject = \"s\"; identity = "
		     "\"etl\"; } ); } );\n",
		     "issuer 'x' is already configured");
	expect_error(MINIMAL "tokens = { lifetime = 7200; max_lifetime = 3600; "
			     "};\n",
		     "tokens.lifetime exceeds tokens.max_lifetime");
	expect_error(MINIMAL "rate_limit = { rate = \"fast\"; };\n",
		     "must be a number");
}

static void test_audit_defaults_and_settings(void **state)
{
	struct kb_config *cfg;
	char err[512], want[128], hex[65];
	unsigned char buf[4096], md[32];
	FILE *f;
	size_t n;

	assert_int_equal(load(MINIMAL, &cfg, err, sizeof(err)), 0);
	assert_true(cfg->audit.enabled);
	snprintf(want, sizeof(want), "%s/audit", dir);
	assert_string_equal(cfg->audit.directory, want);
	assert_int_equal(cfg->audit.forward, KB_AUDIT_FORWARD_JOURNAL);
	assert_int_equal(cfg->audit.fsync_interval_ms, 50);
	assert_int_equal(cfg->audit.checkpoint_records, 1000);
	assert_int_equal(cfg->audit.checkpoint_interval_s, 60);
	assert_int_equal(cfg->audit.rotate_size, 64 << 20);
	assert_int_equal(cfg->audit.rotate_interval_s, 86400);
	assert_int_equal(cfg->audit.reserve, 4 << 20);
	assert_true(cfg->audit.origin[0] != '\0');
	/* The policy digest is the SHA-256 of the file as read. */
	f = fopen(path, "r");
	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	EVP_Digest(buf, n, md, NULL, EVP_sha256(), NULL);
	kb_hex_encode(hex, md, sizeof(md));
	assert_string_equal(cfg->digest, hex);
	kb_config_free(cfg);
	assert_int_equal(load(MINIMAL
			      "audit = { enabled = false; directory = "
			      "\"/var/t\"; origin = \"h7\"; forward = "
			      "\"syslog\"; fsync_interval_ms = 0; "
			      "checkpoint_records = 5; checkpoint_interval = "
			      "2; rotate_size_mb = 1; rotate_interval = "
			      "\"PT1H\"; reserve_mb = 2; min_free_mb = 0; };\n",
			      &cfg, err, sizeof(err)),
			 0);
	assert_false(cfg->audit.enabled);
	assert_string_equal(cfg->audit.directory, "/var/t");
	assert_string_equal(cfg->audit.origin, "h7");
	assert_int_equal(cfg->audit.forward, KB_AUDIT_FORWARD_SYSLOG);
	assert_int_equal(cfg->audit.fsync_interval_ms, 0);
	assert_int_equal(cfg->audit.checkpoint_records, 5);
	assert_int_equal(cfg->audit.rotate_interval_s, 3600);
	assert_int_equal(cfg->audit.reserve, 2 << 20);
	assert_int_equal(cfg->audit.min_free, 0);
	kb_config_free(cfg);
}

static void test_audit_errors(void **state)
{
	expect_error(
		MINIMAL "audit = { forward = \"kafka\"; };\n",
		":5: setting 'forward': must be one of journal, syslog, none");
	expect_error(MINIMAL "audit = { rotate_interval = \"daily\"; };\n",
		     ":5: setting 'rotate_interval': must be an ISO 8601");
	expect_error(MINIMAL "audit = { rotate_interval = \"PT1S\"; };\n",
		     "from 60 to");
	expect_error(
		MINIMAL "audit = { fsync_interval_ms = -1; };\n",
		"setting 'fsync_interval_ms': must be between 0 and 10000");
	expect_error(MINIMAL "audit = { origin = \"a\\nb\"; };\n",
		     "setting 'origin': must be one line");
	expect_error(MINIMAL "audit = { fsync = 1; };\n",
		     ":5: setting 'fsync': unknown setting");
	expect_error(MINIMAL "audit = { enabled = 1; };\n",
		     "setting 'enabled': must be true or false");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_minimal_and_defaults),
		cmocka_unit_test(test_all_settings),
		cmocka_unit_test(test_syntax_error_names_line),
		cmocka_unit_test(test_unknown_setting),
		cmocka_unit_test(test_wrong_types_and_ranges),
		cmocka_unit_test(test_missing_and_bad_values),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_pin_credential),
		cmocka_unit_test(test_user),
		cmocka_unit_test(test_identities_issuers_access),
		cmocka_unit_test(test_identity_errors),
		cmocka_unit_test(test_unit_bindings),
		cmocka_unit_test(test_access_errors),
		cmocka_unit_test(test_issuer_and_token_errors),
		cmocka_unit_test(test_audit_defaults_and_settings),
		cmocka_unit_test(test_audit_errors),
	};

	return cmocka_run_group_tests_name("config", tests, setup, teardown);
}
