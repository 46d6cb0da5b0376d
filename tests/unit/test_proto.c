// SPDX-License-Identifier: MIT
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kb_b64.h"
#include "kb_ops.h"
#include "kb_proto.h"

#define V "0123456789abcdef0123456789abcdef"

static int parse(const char *line, struct kb_request *req, struct kb_error *err)
{
	return kb_proto_parse(line, strlen(line), "inst", kb_ops_table(), req,
			      err);
}

/* Parses line, expects failure with code and a message containing want. */
static void expect_fail(const char *line, enum kb_code code, const char *want)
{
	struct kb_request req;
	struct kb_error err;

	assert_int_equal(parse(line, &req, &err), -1);
	if (err.code != code || strstr(err.msg, want) == NULL)
		fail_msg("%s: got %s '%s', want %s '%s'", line,
			 kb_code_name(err.code), err.msg, kb_code_name(code),
			 want);
	kb_request_uninit(&req);
}

static void test_valid_requests(void **state)
{
	struct kb_request req;
	struct kb_error err;

	assert_int_equal(parse("{\"id\":7,\"op\":\"getKey\",\"key\":\"cmk\"}",
			       &req, &err),
			 0);
	assert_string_equal(req.def->name, "getKey");
	assert_string_equal(req.key.name, "cmk");
	assert_string_equal(req.key.version, "");
	assert_int_equal(json_integer_value(req.id), 7);
	kb_request_uninit(&req);

	assert_int_equal(parse("{\"id\":\"a\",\"op\":\"unwrapKey\",\"kid\":"
			       "\"keybroker://inst/keys/cmk/" V "\",\"alg\":"
			       "\"RSA-OAEP\",\"value\":\"Zm9v\"}",
			       &req, &err),
			 0);
	assert_string_equal(req.def->name, "unwrapKey");
	assert_int_equal(req.crypt.alg, KB_ALG_RSA_OAEP);
	assert_string_equal(req.key.version, V);
	assert_int_equal(req.crypt.value_len, 3);
	assert_memory_equal(req.crypt.value, "foo", 3);
	kb_request_uninit(&req);

	/* alg defaults to RSA-OAEP-256. */
	assert_int_equal(parse("{\"id\":1,\"op\":\"wrapKey\",\"key\":\"k\","
			       "\"version\":\"" V "\",\"value\":\"AA\"}",
			       &req, &err),
			 0);
	assert_int_equal(req.crypt.alg, KB_ALG_RSA_OAEP_256);
	kb_request_uninit(&req);
}

static void test_framing_errors(void **state)
{
	expect_fail("", KB_BAD_REQUEST, "malformed JSON");
	expect_fail("{\"id\":1,", KB_BAD_REQUEST, "malformed JSON");
	expect_fail("garbage", KB_BAD_REQUEST, "malformed JSON");
	expect_fail("[1,2]", KB_BAD_REQUEST, "must be a JSON object");
	expect_fail("{\"id\":1,\"op\":\"getKey\",\"key\":\"a\"} x",
		    KB_BAD_REQUEST, "malformed JSON");
	expect_fail("{\"id\":1,\"id\":2,\"op\":\"getKey\",\"key\":\"a\"}",
		    KB_BAD_REQUEST, "malformed JSON");
	expect_fail("{\"id\":1,\"op\":\"getKey\",\"key\":\"\xff\"}",
		    KB_BAD_REQUEST, "malformed JSON");
}

static void test_malformed_json_is_not_echoed(void **state)
{
	struct kb_request req;
	struct kb_error err;

	assert_int_equal(parse("{\"id\":1,\"value\":SECRETDEK}", &req, &err),
			 -1);
	assert_null(strstr(err.msg, "SECRET"));
	kb_request_uninit(&req);
}

static void test_id(void **state)
{
	char line[400], id[KB_ID_STRING_MAX + 2];

	expect_fail("{\"op\":\"getKey\",\"key\":\"a\"}", KB_BAD_REQUEST,
		    "missing field 'id'");
	expect_fail("{\"id\":1.5,\"op\":\"getKey\",\"key\":\"a\"}",
		    KB_BAD_REQUEST, "integer or a string");
	expect_fail("{\"id\":null,\"op\":\"getKey\",\"key\":\"a\"}",
		    KB_BAD_REQUEST, "integer or a string");
	expect_fail("{\"id\":9007199254740992,\"op\":\"getKey\",\"key\":\"a\"}",
		    KB_BAD_REQUEST, "2^53");
	memset(id, 'x', sizeof(id));
	id[KB_ID_STRING_MAX + 1] = '\0';
	snprintf(line, sizeof(line),
		 "{\"id\":\"%s\",\"op\":\"getKey\",\"key\":\"a\"}", id);
	expect_fail(line, KB_BAD_REQUEST, "longer than 128");
	id[KB_ID_STRING_MAX] = '\0'; /* exactly at the limit */
	snprintf(line, sizeof(line),
		 "{\"id\":\"%s\",\"op\":\"getKey\",\"key\":\"a\"}", id);
	{
		struct kb_request req;
		struct kb_error err;

		assert_int_equal(parse(line, &req, &err), 0);
		kb_request_uninit(&req);
	}
}

static void test_ops(void **state)
{
	expect_fail("{\"id\":1}", KB_BAD_REQUEST, "missing string field 'op'");
	expect_fail("{\"id\":1,\"op\":7}", KB_BAD_REQUEST, "'op'");
	expect_fail("{\"id\":1,\"op\":\"getkey\"}", KB_BAD_REQUEST,
		    "unknown op 'getkey'");
	expect_fail("{\"id\":1,\"op\":\"importKey\",\"key\":\"a\"}",
		    KB_BAD_PARAMETER, "give one of 'jwk'");
	expect_fail("{\"id\":1,\"op\":\"getKey\",\"key\":\"a\",\"value\":"
		    "\"AA\"}",
		    KB_BAD_PARAMETER, "unknown field 'value'");
}

static void test_identity_ops(void **state)
{
	struct kb_request req;
	struct kb_error err;

	assert_int_equal(parse("{\"id\":1,\"op\":\"authenticate\",\"token\":"
			       "\"a.b.c\"}",
			       &req, &err),
			 0);
	assert_string_equal(req.def->name, "authenticate");
	assert_int_equal(req.auth.token_len, 5);
	kb_request_uninit(&req);
	assert_int_equal(parse("{\"id\":1,\"op\":\"getToken\"}", &req, &err),
			 0);
	assert_string_equal(req.def->name, "getToken");
	kb_request_uninit(&req);
	expect_fail("{\"id\":1,\"op\":\"authenticate\"}", KB_BAD_PARAMETER,
		    "'token' (a JWT) must be a string");
	expect_fail("{\"id\":1,\"op\":\"authenticate\",\"token\":5}",
		    KB_BAD_PARAMETER, "'token'");
	expect_fail("{\"id\":1,\"op\":\"getToken\",\"key\":\"k\"}",
		    KB_BAD_PARAMETER, "unknown field 'key' for op 'getToken'");
}

/* revokeToken's jti: 1-KB_JTI_MAX bytes, no NUL; truncated, exact, over. */
static void test_revoke_token(void **state)
{
	char line[KB_JTI_MAX + 64], jti[KB_JTI_MAX + 2];
	struct kb_request req;
	struct kb_error err;

	assert_int_equal(parse("{\"id\":1,\"op\":\"revokeToken\",\"jti\":"
			       "\"abc\"}",
			       &req, &err),
			 0);
	assert_string_equal(req.def->name, "revokeToken");
	assert_string_equal(req.revoke.jti, "abc");
	kb_request_uninit(&req);

	memset(jti, 'j', KB_JTI_MAX);
	jti[KB_JTI_MAX] = '\0';
	snprintf(line, sizeof(line),
		 "{\"id\":1,\"op\":\"revokeToken\",\"jti\":\"%s\"}", jti);
	assert_int_equal(parse(line, &req, &err), 0);
	assert_int_equal(strlen(req.revoke.jti), KB_JTI_MAX);
	kb_request_uninit(&req);
	jti[KB_JTI_MAX] = 'j';
	jti[KB_JTI_MAX + 1] = '\0';
	snprintf(line, sizeof(line),
		 "{\"id\":1,\"op\":\"revokeToken\",\"jti\":\"%s\"}", jti);
	expect_fail(line, KB_BAD_PARAMETER, "'jti' must be 1-255 bytes");

	expect_fail("{\"id\":1,\"op\":\"revokeToken\"}", KB_BAD_PARAMETER,
		    "'jti' (a token id) must be a string");
	expect_fail("{\"id\":1,\"op\":\"revokeToken\",\"jti\":7}",
		    KB_BAD_PARAMETER, "'jti' (a token id) must be a string");
	expect_fail("{\"id\":1,\"op\":\"revokeToken\",\"jti\":\"\"}",
		    KB_BAD_PARAMETER, "'jti' must be 1-255 bytes");
	/* The JSON reader refuses a NUL before the jti check would. */
	expect_fail("{\"id\":1,\"op\":\"revokeToken\",\"jti\":\"a\\u0000b\"}",
		    KB_BAD_REQUEST, "is not allowed");
	expect_fail("{\"id\":1,\"op\":\"revokeToken\",\"jti\":\"a\","
		    "\"key\":\"k\"}",
		    KB_BAD_PARAMETER,
		    "unknown field 'key' for op 'revokeToken'");
	expect_fail("{\"id\":1,\"op\":\"getKey\",\"key\":\"k\",\"jti\":\"a\"}",
		    KB_BAD_PARAMETER, "unknown field 'jti' for op 'getKey'");
}

static unsigned int op_flags(const char *line)
{
	return kb_proto_op_flags(line, strlen(line), kb_ops_table());
}

static bool is_token_op(const char *line)
{
	return op_flags(line) & KB_OPF_TOKEN;
}

static void test_token_ops(void **state)
{
	assert_true(is_token_op("{\"id\":1,\"op\":\"unwrapKey\"}"));
	assert_true(is_token_op("{\"id\":1,\"op\":\"getToken\"}"));
	assert_true(is_token_op("{\"id\":1,\"op\":\"\\u0075nwrapKey\"}"));
	assert_false(is_token_op("{\"id\":1,\"op\":\"wrapKey\"}"));
	assert_false(is_token_op("{\"id\":1,\"op\":\"getKey\"}"));
	assert_false(is_token_op("{\"id\":1,\"op\":\"authenticate\"}"));
	/* Exact: naming a token op elsewhere takes no token session. */
	assert_false(is_token_op("{\"id\":1,\"op\":\"getKey\",\"key\":"
				 "\"unwrapKey\"}"));
	assert_false(is_token_op("{\"id\":1,\"op\":\"getKey\",\"x\":"
				 "\"unwrapKey\"}"));
	assert_false(is_token_op("unwrapKey"));
	assert_false(is_token_op("[\"unwrapKey\"]"));
	/* What it needs besides the token. */
	assert_true(op_flags("{\"op\":\"unwrapKey\"}") & KB_OPF_IDENTITY);
	assert_false(op_flags("{\"op\":\"getToken\"}") & KB_OPF_IDENTITY);
}

static void test_key_selection(void **state)
{
	expect_fail("{\"id\":1,\"op\":\"getKey\"}", KB_BAD_PARAMETER,
		    "missing field 'key'");
	expect_fail("{\"id\":1,\"op\":\"getKey\",\"key\":\"a/b\"}",
		    KB_BAD_PARAMETER, "'key' must be a key name");
	expect_fail("{\"id\":1,\"op\":\"getKey\",\"key\":5}", KB_BAD_PARAMETER,
		    "'key' must be a key name");
	expect_fail("{\"id\":1,\"op\":\"getKey\",\"key\":\"a\",\"version\":"
		    "\"0123\"}",
		    KB_BAD_PARAMETER, "32 lowercase hex");
	expect_fail("{\"id\":1,\"op\":\"getKey\",\"key\":\"a\",\"kid\":"
		    "\"keybroker://inst/keys/a\"}",
		    KB_BAD_PARAMETER, "not both");
	expect_fail("{\"id\":1,\"op\":\"getKey\",\"kid\":"
		    "\"keybroker://other/keys/a\"}",
		    KB_BAD_PARAMETER,
		    "another broker instance; this one is 'inst'");
	expect_fail("{\"id\":1,\"op\":\"getKey\",\"kid\":\"cmk\"}",
		    KB_BAD_PARAMETER, "'kid' must be keybroker://");
}

static void test_alg_and_value(void **state)
{
	char line[KB_LINE_MAX + 64], *b64;
	unsigned char raw[KB_VALUE_MAX + 1];
	struct kb_request req;
	struct kb_error err;

	expect_fail("{\"id\":1,\"op\":\"wrapKey\",\"key\":\"a\",\"alg\":"
		    "\"RSA-OAEP-384\",\"value\":\"AA\"}",
		    KB_BAD_PARAMETER, "'alg' must be");
	expect_fail("{\"id\":1,\"op\":\"wrapKey\",\"key\":\"a\"}",
		    KB_BAD_PARAMETER, "missing field 'value'");
	expect_fail("{\"id\":1,\"op\":\"wrapKey\",\"key\":\"a\",\"value\":"
		    "\"Zg==\"}",
		    KB_BAD_PARAMETER, "base64url");
	expect_fail("{\"id\":1,\"op\":\"wrapKey\",\"key\":\"a\",\"value\":"
		    "\"\"}",
		    KB_BAD_PARAMETER, "'value' is empty");
	expect_fail("{\"id\":1,\"op\":\"wrapKey\",\"key\":\"a\",\"value\":"
		    "1}",
		    KB_BAD_PARAMETER, "base64url string");

	memset(raw, 0xa5, sizeof(raw));
	b64 = malloc(kb_b64_encoded_len(sizeof(raw)) + 1);
	assert_non_null(b64);
	/* Exactly KB_VALUE_MAX bytes is accepted... */
	kb_b64_encode(b64, raw, KB_VALUE_MAX);
	snprintf(line, sizeof(line),
		 "{\"id\":1,\"op\":\"unwrapKey\",\"key\":"
		 "\"a\",\"value\":\"%s\"}",
		 b64);
	assert_int_equal(parse(line, &req, &err), 0);
	assert_int_equal(req.crypt.value_len, KB_VALUE_MAX);
	kb_request_uninit(&req);
	/* ...one more byte is not. */
	kb_b64_encode(b64, raw, KB_VALUE_MAX + 1);
	snprintf(line, sizeof(line),
		 "{\"id\":1,\"op\":\"unwrapKey\",\"key\":"
		 "\"a\",\"value\":\"%s\"}",
		 b64);
	expect_fail(line, KB_BAD_PARAMETER, "longer than 1024");
	free(b64);
}

static void test_line_limit(void **state)
{
	size_t n = KB_LINE_MAX + 1;
	char *line = malloc(n + 1);
	struct kb_request req;
	struct kb_error err;

	assert_non_null(line);
	memset(line, ' ', n);
	memcpy(line, "{\"id\":1,\"op\":\"getKey\",\"key\":\"a\"}", 32);
	line[n] = '\0';
	/* Exactly KB_LINE_MAX bytes (trailing blanks) is still parsed. */
	assert_int_equal(kb_proto_parse(line, KB_LINE_MAX, "inst",
					kb_ops_table(), &req, &err),
			 0);
	kb_request_uninit(&req);
	assert_int_equal(kb_proto_parse(line, n, "inst", kb_ops_table(), &req,
					&err),
			 -1);
	assert_int_equal(err.code, KB_BAD_REQUEST);
	kb_request_uninit(&req);
	free(line);
}

static void test_responses(void **state)
{
	json_t *id = json_integer(42), *o;
	size_t len;
	char *s;

	s = kb_proto_error(id, KB_FORBIDDEN, "no \"way\"", &len);
	assert_non_null(s);
	assert_int_equal(s[len - 1], '\n');
	assert_string_equal(s, "{\"id\":42,\"error\":{\"code\":\"Forbidden\","
			       "\"message\":\"no \\\"way\\\"\"}}\n");
	free(s);
	s = kb_proto_error(NULL, KB_BAD_REQUEST, "x", &len);
	assert_string_equal(s, "{\"id\":null,\"error\":{\"code\":"
			       "\"BadRequest\",\"message\":\"x\"}}\n");
	free(s);
	o = json_pack("{s:s}", "value", "AA");
	s = kb_proto_result(id, o, &len);
	assert_string_equal(s, "{\"id\":42,\"result\":{\"value\":\"AA\"}}\n");
	free(s);
	json_decref(id);
}

static void test_quote(void **state)
{
	char q[16];

	kb_proto_quote(q, sizeof(q), "ab\x01\xff", 10);
	assert_string_equal(q, "ab??");
	kb_proto_quote(q, sizeof(q), "abcdefghij", 4);
	assert_string_equal(q, "abcd...");
}

static void test_list_paging(void **state)
{
	struct kb_request req;
	struct kb_error err;

	assert_int_equal(parse("{\"id\":1,\"op\":\"getKeys\"}", &req, &err), 0);
	assert_int_equal(req.page.max, KB_PAGE_MAX);
	assert_string_equal(req.page.next, "");
	kb_request_uninit(&req);
	assert_int_equal(parse("{\"id\":1,\"op\":\"getKeyVersions\",\"key\":"
			       "\"k\",\"maxresults\":3,\"nextLink\":\"" V "\"}",
			       &req, &err),
			 0);
	assert_string_equal(req.key.name, "k");
	assert_int_equal(req.page.max, 3);
	assert_string_equal(req.page.next, V);
	kb_request_uninit(&req);
	expect_fail("{\"id\":1,\"op\":\"getKeys\",\"maxresults\":0}",
		    KB_BAD_PARAMETER, "'maxresults' must be an integer from 1");
	expect_fail("{\"id\":1,\"op\":\"getKeys\",\"maxresults\":26}",
		    KB_BAD_PARAMETER, "'maxresults' must be an integer from 1");
	expect_fail("{\"id\":1,\"op\":\"getKeys\",\"maxresults\":\"5\"}",
		    KB_BAD_PARAMETER, "'maxresults' must be an integer from 1");
	expect_fail("{\"id\":1,\"op\":\"getKeys\",\"nextLink\":\"a/b\"}",
		    KB_BAD_PARAMETER,
		    "'nextLink' must be what a previous page");
	expect_fail("{\"id\":1,\"op\":\"getKeys\",\"nextLink\":\"\"}",
		    KB_BAD_PARAMETER,
		    "'nextLink' must be what a previous page");
	expect_fail("{\"id\":1,\"op\":\"getKeys\",\"key\":\"k\"}",
		    KB_BAD_PARAMETER, "unknown field 'key' for op 'getKeys'");
	expect_fail("{\"id\":1,\"op\":\"getKeyVersions\"}", KB_BAD_PARAMETER,
		    "missing field 'key'");
}

/* createKey, updateKey and updateKeyRotationPolicy: their fields. */
static void test_management_fields(void **state)
{
	struct kb_request req;
	struct kb_error err;

	assert_int_equal(parse("{\"id\":1,\"op\":\"createKey\",\"key\":\"k\","
			       "\"kty\":\"RSA-HSM\",\"key_size\":3072,"
			       "\"attributes\":{\"enabled\":false,\"exp\":"
			       "4000000000},\"tags\":{\"b\":\"2\",\"a\":\"1\"},"
			       "\"key_ops\":[\"unwrapKey\"]}",
			       &req, &err),
			 0);
	assert_int_equal(req.manage.bits, 3072);
	assert_int_equal(req.manage.attrs.set, KB_SET_ENABLED | KB_SET_EXP |
						       KB_SET_TAGS |
						       KB_SET_KEY_OPS);
	assert_false(req.manage.attrs.enabled);
	assert_int_equal(req.manage.attrs.exp, 4000000000);
	assert_string_equal(req.manage.attrs.tags, "{\"a\":\"1\",\"b\":\"2\"}");
	assert_int_equal(req.manage.attrs.key_ops, KB_KEYOP_UNWRAP);
	kb_request_uninit(&req);
	/* Defaults; null clears a time. */
	assert_int_equal(parse("{\"id\":1,\"op\":\"createKey\",\"key\":\"k\"}",
			       &req, &err),
			 0);
	assert_int_equal(req.manage.bits, 2048);
	assert_int_equal(req.manage.attrs.set, 0);
	kb_request_uninit(&req);
	assert_int_equal(parse("{\"id\":1,\"op\":\"updateKey\",\"key\":\"k\","
			       "\"attributes\":{\"nbf\":null}}",
			       &req, &err),
			 0);
	assert_int_equal(req.manage.attrs.set, KB_SET_NBF);
	assert_int_equal(req.manage.attrs.nbf, 0);
	kb_request_uninit(&req);

	expect_fail("{\"id\":1,\"op\":\"createKey\",\"key\":\"k\",\"kty\":"
		    "\"RSA\"}",
		    KB_BAD_PARAMETER, "'kty' must be \"RSA-HSM\"");
	expect_fail("{\"id\":1,\"op\":\"createKey\",\"key\":\"k\","
		    "\"key_size\":1024}",
		    KB_BAD_PARAMETER, "'key_size' must be 2048, 3072 or 4096");
	expect_fail("{\"id\":1,\"op\":\"createKey\",\"key\":\"k\","
		    "\"attributes\":[]}",
		    KB_BAD_PARAMETER, "'attributes' must be an object");
	expect_fail("{\"id\":1,\"op\":\"createKey\",\"key\":\"k\","
		    "\"attributes\":{\"created\":1}}",
		    KB_BAD_PARAMETER,
		    "unknown or read-only attribute 'created'");
	expect_fail("{\"id\":1,\"op\":\"createKey\",\"key\":\"k\","
		    "\"attributes\":{\"exp\":9007199255}}",
		    KB_BAD_PARAMETER, "attribute 'exp' must be Unix seconds");
	expect_fail("{\"id\":1,\"op\":\"createKey\",\"key\":\"k\","
		    "\"attributes\":{\"nbf\":5,\"exp\":5}}",
		    KB_BAD_PARAMETER, "'nbf' must come before 'exp'");
	expect_fail("{\"id\":1,\"op\":\"createKey\",\"key\":\"k\","
		    "\"tags\":[]}",
		    KB_BAD_PARAMETER, "'tags' must be an object of strings");
	expect_fail("{\"id\":1,\"op\":\"createKey\",\"key\":\"k\","
		    "\"tags\":{\"\":\"v\"}}",
		    KB_BAD_PARAMETER, "a tag name must be 1-64 bytes");
	expect_fail("{\"id\":1,\"op\":\"createKey\",\"key\":\"k\","
		    "\"key_ops\":[]}",
		    KB_BAD_PARAMETER, "'key_ops' must be a non-empty array");
	expect_fail("{\"id\":1,\"op\":\"rotateKey\",\"key\":\"k\","
		    "\"tags\":{}}",
		    KB_BAD_PARAMETER,
		    "unknown field 'tags' for op 'rotateKey'");
	expect_fail("{\"id\":1,\"op\":\"updateKeyRotationPolicy\",\"key\":"
		    "\"k\"}",
		    KB_BAD_PARAMETER, "missing object field 'policy'");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_requests),
		cmocka_unit_test(test_framing_errors),
		cmocka_unit_test(test_malformed_json_is_not_echoed),
		cmocka_unit_test(test_id),
		cmocka_unit_test(test_ops),
		cmocka_unit_test(test_identity_ops),
		cmocka_unit_test(test_revoke_token),
		cmocka_unit_test(test_token_ops),
		cmocka_unit_test(test_key_selection),
		cmocka_unit_test(test_alg_and_value),
		cmocka_unit_test(test_line_limit),
		cmocka_unit_test(test_responses),
		cmocka_unit_test(test_quote),
		cmocka_unit_test(test_list_paging),
		cmocka_unit_test(test_management_fields),
	};

	kb_proto_init();
	return cmocka_run_group_tests_name("protocol", tests, NULL, NULL);
}
