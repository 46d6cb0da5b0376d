// SPDX-License-Identifier: MIT
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kb_config.h"

static char dir[] = "/tmp/kb-config-test-XXXXXX";
static char path[64];

#define PKCS11                                                            \
	"pkcs11 = { module = \"softhsm2\"; token = \"pkcs11:token=t\";\n" \
	"  pin_file = \"pin\"; };\n"
#define MINIMAL \
	"instance = \"i1\";\nsocket = \"s.sock\";\nallow_uids = [ 0 ];\n" PKCS11

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
	assert_int_equal(cfg->max_connections, 1024);
	assert_int_equal(cfg->idle_timeout_ms, 300000);
	assert_false(cfg->allow_rsa1_5);
	assert_true(kb_config_uid_allowed(cfg, 0));
	assert_false(kb_config_uid_allowed(cfg, 1000));
	kb_config_free(cfg);
}

static void test_all_settings(void **state)
{
	struct kb_config *cfg;
	char err[512];

	assert_int_equal(load("instance = \"i\"; socket = \"/run/x.sock\";\n"
			      "log_level = \"debug\"; workers = 64;\n"
			      "max_connections = 1; max_pipeline = 4096;\n"
			      "idle_timeout = 1; request_timeout = 3600;\n"
			      "shutdown_grace = 0; allow_uids = [0, 1000];\n"
			      "algorithms = { rsa1_5 = true; };\n" PKCS11,
			      &cfg, err, sizeof(err)),
			 0);
	assert_string_equal(cfg->socket_path, "/run/x.sock");
	assert_int_equal(cfg->workers, 64);
	assert_int_equal(cfg->max_pipeline, 4096);
	assert_int_equal(cfg->request_timeout_ms, 3600000);
	assert_int_equal(cfg->log_level, KB_LOG_DEBUG);
	assert_true(cfg->allow_rsa1_5);
	assert_true(kb_config_uid_allowed(cfg, 1000));
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

	snprintf(want, sizeof(want), "%s:6: setting 'wokers': unknown", path);
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
	expect_error(MINIMAL "log_level = \"loud\";\n", "must be one of");
	expect_error(MINIMAL "algorithms = { rsa1_5 = 1; };\n",
		     "must be true or false");
	expect_error("instance = \"a b\"; socket = \"s\";\n"
		     "allow_uids = [0];\n" PKCS11,
		     "setting 'instance'");
}

static void test_missing_and_bad_values(void **state)
{
	expect_error("socket = \"s\"; allow_uids = [0];\n" PKCS11,
		     "missing required setting 'instance'");
	expect_error("instance = \"i\"; socket = \"s\";\n" PKCS11,
		     "missing required setting 'allow_uids'");
	expect_error(
		"instance = \"i\"; socket = \"s\"; allow_uids = [];\n" PKCS11,
		"at least one uid");
	expect_error(
		"instance = \"i\"; socket = \"s\"; allow_uids = [-1];\n" PKCS11,
		"not a valid uid");
	expect_error("instance = \"i\"; socket = \"s\"; allow_uids = [0];\n",
		     "missing required group 'pkcs11'");
	expect_error("instance = \"i\"; socket = \"s\"; allow_uids = [0];\n"
		     "pkcs11 = { module = \"softhsm2\"; token = \"token=t\";\n"
		     "pin_file = \"p\"; };\n",
		     "setting 'token': must be a PKCS#11 URI");
	expect_error("instance = \"i\"; socket = \"s\"; allow_uids = [0];\n"
		     "pkcs11 = { module = \"lib/x.so\"; token = \"pkcs11:\";\n"
		     "pin_file = \"p\"; };\n",
		     "absolute path");
	expect_error("instance = \"i\"; socket = \"s\"; allow_uids = [0];\n"
		     "pkcs11 = { module = \"\"; token = \"pkcs11:\";\n"
		     "pin_file = \"p\"; };\n",
		     "setting 'module': must not be empty");
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
	};

	return cmocka_run_group_tests_name("config", tests, setup, teardown);
}
