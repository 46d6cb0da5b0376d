// SPDX-License-Identifier: MIT
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kb_b64.h"
#include "kb_json.h"
#include "kb_proto.h"
#include "kb_secret.h"

#define SAFE_INT_MAX 9007199254740991LL /* 2^53 - 1 */

/* A header in front of each jansson block remembers its size. */
struct json_block {
	size_t size;
	size_t pad;
};

static void *wiping_malloc(size_t n)
{
	struct json_block *b;

	if (n > SIZE_MAX - sizeof(*b) || (b = malloc(sizeof(*b) + n)) == NULL)
		return NULL;
	b->size = n;
	return b + 1;
}

static void wiping_free(void *p)
{
	struct json_block *b;

	if (p == NULL)
		return;
	b = (struct json_block *)p - 1;
	OPENSSL_cleanse(p, b->size);
	free(b);
}

void kb_proto_init(void)
{
	json_set_alloc_funcs(wiping_malloc, wiping_free);
}

void kb_proto_quote(char *dst, size_t dstlen, const char *src, size_t max)
{
	size_t i, o = 0;

	for (i = 0; i < max && src[i] != '\0' && o + 2 < dstlen; i++) {
		unsigned char c = (unsigned char)src[i];

		dst[o++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	if (src[i] != '\0' && o + 4 < dstlen) {
		memcpy(dst + o, "...", 3);
		o += 3;
	}
	dst[o] = '\0';
}

int kb_error_set(struct kb_error *err, enum kb_code code, const char *fmt, ...)
{
	va_list ap;

	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return -1;
}

static int parse_id(struct kb_request *req, struct kb_error *err)
{
	json_t *id = json_object_get(req->root, "id");

	if (id == NULL)
		return kb_error_set(err, KB_BAD_REQUEST, "missing field 'id'");
	if (json_is_integer(id)) {
		if (json_integer_value(id) > SAFE_INT_MAX ||
		    json_integer_value(id) < -SAFE_INT_MAX)
			return kb_error_set(
				err, KB_BAD_REQUEST,
				"'id' must be an integer of at most 2^53");
	} else if (json_is_string(id)) {
		if (json_string_length(id) > KB_ID_STRING_MAX)
			return kb_error_set(err, KB_BAD_REQUEST,
					    "'id' string longer than %d bytes",
					    KB_ID_STRING_MAX);
	} else {
		return kb_error_set(err, KB_BAD_REQUEST,
				    "'id' must be an integer or a string");
	}
	req->id = id;
	return 0;
}

/* correlationId: optional, 1-64 printable ASCII characters. */
static int parse_correlation(struct kb_request *req, struct kb_error *err)
{
	json_t *v = json_object_get(req->root, "correlationId");
	const char *s;
	size_t i, n;

	if (v == NULL)
		return 0;
	if (!json_is_string(v))
		return kb_error_set(err, KB_BAD_PARAMETER,
				    "'correlationId' must be a string");
	s = json_string_value(v);
	n = json_string_length(v);
	if (n == 0 || n > KB_CORRELATION_MAX)
		return kb_error_set(err, KB_BAD_PARAMETER,
				    "'correlationId' must be 1-%d characters",
				    KB_CORRELATION_MAX);
	for (i = 0; i < n; i++)
		if (s[i] < 0x20 || s[i] > 0x7e)
			return kb_error_set(err, KB_BAD_PARAMETER,
					    "'correlationId' must be printable "
					    "ASCII");
	memcpy(req->correlation, s, n + 1);
	return 0;
}

static int check_fields(struct kb_request *req, unsigned int allowed,
			struct kb_error *err)
{
	const char *k;
	char q[48];
	json_t *v;

	json_object_foreach(req->root, k, v) {
		if (strcmp(k, "id") == 0 || strcmp(k, "op") == 0 ||
		    strcmp(k, "correlationId") == 0)
			continue;
		if ((allowed & KB_F_KEY) &&
		    (strcmp(k, "key") == 0 || strcmp(k, "version") == 0 ||
		     strcmp(k, "kid") == 0))
			continue;
		if ((allowed & KB_F_ALG) && strcmp(k, "alg") == 0)
			continue;
		if ((allowed & KB_F_VALUE) && strcmp(k, "value") == 0)
			continue;
		if ((allowed & KB_F_TOKEN) && strcmp(k, "token") == 0)
			continue;
		if ((allowed & KB_F_JTI) && strcmp(k, "jti") == 0)
			continue;
		if ((allowed & KB_F_PAGE) && (strcmp(k, "maxresults") == 0 ||
					      strcmp(k, "nextLink") == 0))
			continue;
		if ((allowed & KB_F_KTY) &&
		    (strcmp(k, "kty") == 0 || strcmp(k, "key_size") == 0))
			continue;
		if ((allowed & KB_F_ATTRS) &&
		    (strcmp(k, "attributes") == 0 || strcmp(k, "tags") == 0 ||
		     strcmp(k, "key_ops") == 0))
			continue;
		if ((allowed & KB_F_POLICY) && strcmp(k, "policy") == 0)
			continue;
		if ((allowed & KB_F_IMPORT) &&
		    (strcmp(k, "jwk") == 0 || strcmp(k, "pem") == 0 ||
		     strcmp(k, "kek") == 0 || strcmp(k, "blob") == 0 ||
		     strcmp(k, "alg") == 0))
			continue;
		kb_proto_quote(q, sizeof(q), k, 32);
		return kb_error_set(err, KB_BAD_PARAMETER,
				    "unknown field '%s' for op '%s'", q,
				    req->opname);
	}
	return 0;
}

static int parse_key(struct kb_request *req, const char *instance,
		     struct kb_error *err)
{
	json_t *key = json_object_get(req->root, "key");
	json_t *ver = json_object_get(req->root, "version");
	json_t *kid = json_object_get(req->root, "kid");
	enum kb_kid_status st;

	if (kid != NULL) {
		if (key != NULL || ver != NULL)
			return kb_error_set(
				err, KB_BAD_PARAMETER,
				"give either 'kid' or 'key' (+ 'version'),"
				" not both");
		if (!json_is_string(kid))
			return kb_error_set(err, KB_BAD_PARAMETER,
					    "'kid' must be a string");
		st = kb_kid_parse(json_string_value(kid),
				  json_string_length(kid), instance, &req->key);
		if (st == KB_KID_OTHER_INSTANCE)
			return kb_error_set(
				err, KB_BAD_PARAMETER,
				"'kid' names another broker instance; "
				"this one is '%s'",
				instance);
		if (st != KB_KID_OK)
			return kb_error_set(
				err, KB_BAD_PARAMETER,
				"'kid' must be keybroker://<instance>/keys/"
				"<name>[/<version>]");
		return 0;
	}
	if (key == NULL)
		return kb_error_set(err, KB_BAD_PARAMETER,
				    "missing field 'key'");
	if (!json_is_string(key) ||
	    !kb_name_valid(json_string_value(key), json_string_length(key)))
		return kb_error_set(
			err, KB_BAD_PARAMETER,
			"'key' must be a key name: 1-%d of A-Z a-z 0-9 -",
			KB_NAME_MAX);
	memcpy(req->key.name, json_string_value(key),
	       json_string_length(key) + 1);
	if (ver == NULL)
		return 0;
	if (!json_is_string(ver) ||
	    !kb_version_valid(json_string_value(ver), json_string_length(ver)))
		return kb_error_set(
			err, KB_BAD_PARAMETER,
			"'version' must be 32 lowercase hex characters");
	memcpy(req->key.version, json_string_value(ver), KB_VERSION_LEN + 1);
	return 0;
}

static int parse_alg(struct kb_request *req, struct kb_error *err)
{
	json_t *alg = json_object_get(req->root, "alg");

	req->crypt.alg = KB_ALG_RSA_OAEP_256;
	if (alg == NULL ||
	    (json_is_string(alg) &&
	     kb_alg_parse(json_string_value(alg), &req->crypt.alg) == 0))
		return 0;
	return kb_error_set(err, KB_BAD_PARAMETER,
			    "'alg' must be RSA-OAEP, RSA-OAEP-256 or RSA1_5");
}

static int parse_value(struct kb_request *req, struct kb_error *err)
{
	json_t *v = json_object_get(req->root, "value");

	if (v == NULL)
		return kb_error_set(err, KB_BAD_PARAMETER,
				    "missing field 'value'");
	if (!json_is_string(v))
		return kb_error_set(err, KB_BAD_PARAMETER,
				    "'value' must be a base64url string");
	if (json_string_length(v) > kb_b64_encoded_len(KB_VALUE_MAX))
		return kb_error_set(err, KB_BAD_PARAMETER,
				    "'value' longer than %d bytes",
				    KB_VALUE_MAX);
	if (kb_b64_decode(req->crypt.value, sizeof(req->crypt.value),
			  &req->crypt.value_len, json_string_value(v),
			  json_string_length(v)) != 0)
		return kb_error_set(err, KB_BAD_PARAMETER,
				    "'value' is not base64url without padding");
	if (req->crypt.value_len == 0)
		return kb_error_set(err, KB_BAD_PARAMETER, "'value' is empty");
	return 0;
}

static int parse_token(struct kb_request *req, struct kb_error *err)
{
	json_t *t = json_object_get(req->root, "token");

	if (!json_is_string(t))
		return kb_error_set(err, KB_BAD_PARAMETER,
				    "'token' (a JWT) must be a string");
	req->auth.token = json_string_value(t);
	req->auth.token_len = json_string_length(t);
	return 0;
}

static int parse_jti(struct kb_request *req, struct kb_error *err)
{
	json_t *t = json_object_get(req->root, "jti");
	size_t len;

	if (!json_is_string(t))
		return kb_error_set(err, KB_BAD_PARAMETER,
				    "'jti' (a token id) must be a string");
	len = json_string_length(t);
	if (len == 0 || len > KB_JTI_MAX || strlen(json_string_value(t)) != len)
		return kb_error_set(err, KB_BAD_PARAMETER,
				    "'jti' must be 1-%d bytes, without NUL",
				    KB_JTI_MAX);
	req->revoke.jti = json_string_value(t);
	return 0;
}

/* The row of table named name, or NULL. */
static const struct kb_op_def *find_op(const struct kb_op_table *table,
				       const char *name)
{
	size_t i;

	for (i = 0; i < table->n; i++)
		if (strcmp(name, table->rows[i].name) == 0)
			return &table->rows[i];
	return NULL;
}

/* Whether line may name an op with any of flags (a plain-text search). */
static bool may_name(const char *line, size_t len,
		     const struct kb_op_table *table, unsigned int flags)
{
	size_t i;

	for (i = 0; i < table->n; i++)
		if ((table->rows[i].flags & flags) &&
		    memmem(line, len, table->rows[i].name,
			   strlen(table->rows[i].name)) != NULL)
			return true;
	return false;
}

static int parse_page(struct kb_request *req, struct kb_error *err)
{
	json_t *max = json_object_get(req->root, "maxresults");
	json_t *next = json_object_get(req->root, "nextLink");
	const char *s;
	size_t i, len;

	req->page.max = KB_PAGE_MAX;
	if (max != NULL) {
		if (!json_is_integer(max) || json_integer_value(max) < 1 ||
		    json_integer_value(max) > KB_PAGE_MAX)
			return kb_error_set(err, KB_BAD_PARAMETER,
					    "'maxresults' must be an integer "
					    "from 1 to %d",
					    KB_PAGE_MAX);
		req->page.max = (unsigned int)json_integer_value(max);
	}
	if (next == NULL)
		return 0;
	/* A key name or a version: what an earlier page gave. */
	s = json_is_string(next) ? json_string_value(next) : NULL;
	len = s != NULL ? json_string_length(next) : 0;
	for (i = 0; i < len && kb_name_valid(s + i, 1); i++)
		;
	if (s == NULL || len == 0 || len > KB_NAME_MAX || i != len)
		return kb_error_set(err, KB_BAD_PARAMETER,
				    "'nextLink' must be what a previous page "
				    "returned");
	memcpy(req->page.next, s, len + 1);
	return 0;
}

static int parse_kty(struct kb_request *req, struct kb_error *err)
{
	json_t *kty = json_object_get(req->root, "kty");
	json_t *size = json_object_get(req->root, "key_size");

	req->manage.bits = 2048;
	if (kty != NULL && (!json_is_string(kty) ||
			    strcmp(json_string_value(kty), "RSA-HSM") != 0))
		return kb_error_set(err, KB_BAD_PARAMETER,
				    "'kty' must be \"RSA-HSM\": keys are made "
				    "in the token and never leave it");
	if (size == NULL)
		return 0;
	if (!json_is_integer(size) || (json_integer_value(size) != 2048 &&
				       json_integer_value(size) != 3072 &&
				       json_integer_value(size) != 4096))
		return kb_error_set(err, KB_BAD_PARAMETER,
				    "'key_size' must be 2048, 3072 or 4096");
	req->manage.bits = (unsigned int)json_integer_value(size);
	return 0;
}

/* A time attribute: Unix seconds, or null to clear it. */
static int parse_time(const json_t *v, const char *name, int64_t *t,
		      struct kb_error *err)
{
	if (json_is_null(v)) {
		*t = 0;
		return 0;
	}
	if (!json_is_integer(v) || json_integer_value(v) <= 0 ||
	    json_integer_value(v) > KB_TIME_MAX)
		return kb_error_set(err, KB_BAD_PARAMETER,
				    "attribute '%s' must be Unix seconds "
				    "(1 to %lld) or null",
				    name, (long long)KB_TIME_MAX);
	*t = json_integer_value(v);
	return 0;
}

static int parse_attrs(struct kb_request *req, struct kb_error *err)
{
	struct kb_version_update *u = &req->manage.attrs;
	json_t *attrs = json_object_get(req->root, "attributes");
	json_t *tags = json_object_get(req->root, "tags");
	json_t *ops = json_object_get(req->root, "key_ops");
	const char *k;
	char q[48], why[160];
	json_t *v;

	if (attrs != NULL && !json_is_object(attrs))
		return kb_error_set(err, KB_BAD_PARAMETER,
				    "'attributes' must be an object");
	json_object_foreach(attrs, k, v) {
		if (strcmp(k, "enabled") == 0) {
			if (!json_is_boolean(v))
				return kb_error_set(
					err, KB_BAD_PARAMETER,
					"attribute 'enabled' must be true or "
					"false");
			u->enabled = json_is_true(v);
			u->set |= KB_SET_ENABLED;
		} else if (strcmp(k, "nbf") == 0) {
			if (parse_time(v, k, &u->nbf, err) != 0)
				return -1;
			u->set |= KB_SET_NBF;
		} else if (strcmp(k, "exp") == 0) {
			if (parse_time(v, k, &u->exp, err) != 0)
				return -1;
			u->set |= KB_SET_EXP;
		} else {
			kb_proto_quote(q, sizeof(q), k, 32);
			return kb_error_set(err, KB_BAD_PARAMETER,
					    "unknown or read-only attribute "
					    "'%s': enabled, nbf and exp may "
					    "be set",
					    q);
		}
	}
	if ((u->set & KB_SET_NBF) && (u->set & KB_SET_EXP) && u->nbf != 0 &&
	    u->exp != 0 && u->nbf >= u->exp)
		return kb_error_set(err, KB_BAD_PARAMETER,
				    "attribute 'nbf' must come before 'exp'");
	if (tags != NULL) {
		if (kb_tags_canonical(tags, u->tags, why, sizeof(why)) != 0)
			return kb_error_set(err, KB_BAD_PARAMETER, "%s", why);
		u->set |= KB_SET_TAGS;
	}
	if (ops != NULL) {
		if (kb_key_ops_parse(ops, &u->key_ops, why, sizeof(why)) != 0)
			return kb_error_set(err, KB_BAD_PARAMETER, "%s", why);
		u->set |= KB_SET_KEY_OPS;
	}
	return 0;
}

static int parse_policy(struct kb_request *req, struct kb_error *err)
{
	json_t *p = json_object_get(req->root, "policy");

	if (!json_is_object(p))
		return kb_error_set(err, KB_BAD_PARAMETER,
				    "missing object field 'policy'");
	req->manage.policy = p;
	return 0;
}

static int parse_import(struct kb_request *req, const char *instance,
			struct kb_error *err)
{
	struct kb_manage_params *m = &req->manage;
	json_t *jwk = json_object_get(req->root, "jwk");
	json_t *pem = json_object_get(req->root, "pem");
	json_t *kek = json_object_get(req->root, "kek");
	json_t *blob = json_object_get(req->root, "blob");
	json_t *alg = json_object_get(req->root, "alg");

	if ((jwk != NULL) + (pem != NULL) + (kek != NULL || blob != NULL) !=
		    1 ||
	    (kek != NULL) != (blob != NULL))
		return kb_error_set(err, KB_BAD_PARAMETER,
				    "give one of 'jwk' (a private JWK), 'pem' "
				    "(a PEM private key), or 'kek' with 'blob' "
				    "(made by keybroker byok-wrap)");
	if (alg != NULL && kek == NULL)
		return kb_error_set(err, KB_BAD_PARAMETER,
				    "'alg' goes with 'kek': the OAEP of the "
				    "blob's AES key");
	m->kek_alg = KB_ALG_RSA_OAEP;
	if (alg != NULL &&
	    (!json_is_string(alg) ||
	     kb_alg_parse(json_string_value(alg), &m->kek_alg) != 0 ||
	     m->kek_alg == KB_ALG_RSA1_5))
		return kb_error_set(err, KB_BAD_PARAMETER,
				    "'alg' must be RSA-OAEP or RSA-OAEP-256");
	if (jwk != NULL && !json_is_object(jwk))
		return kb_error_set(err, KB_BAD_PARAMETER,
				    "'jwk' must be a private JWK (an object)");
	m->jwk = jwk;
	if (pem != NULL) {
		if (!json_is_string(pem) || json_string_length(pem) == 0 ||
		    json_string_length(pem) > KB_PEM_MAX)
			return kb_error_set(err, KB_BAD_PARAMETER,
					    "'pem' must be a string of at most "
					    "%d bytes",
					    KB_PEM_MAX);
		m->pem = json_string_value(pem);
		m->pem_len = json_string_length(pem);
	}
	if (kek == NULL)
		return 0;
	if (!json_is_string(blob) || json_string_length(blob) == 0 ||
	    json_string_length(blob) > kb_b64_encoded_len(KB_BLOB_MAX))
		return kb_error_set(err, KB_BAD_PARAMETER,
				    "'blob' must be base64url of at most %d "
				    "bytes",
				    KB_BLOB_MAX);
	m->blob = json_string_value(blob);
	m->blob_len = json_string_length(blob);
	if (json_is_string(kek) &&
	    strncmp(json_string_value(kek), KB_KID_PREFIX,
		    sizeof(KB_KID_PREFIX) - 1) == 0)
		return kb_kid_parse(json_string_value(kek),
				    json_string_length(kek), instance,
				    &m->kek) == KB_KID_OK ?
			       0 :
			       kb_error_set(err, KB_BAD_PARAMETER,
					    "'kek' must be a key name or this "
					    "broker's kid");
	if (!json_is_string(kek) ||
	    !kb_name_valid(json_string_value(kek), json_string_length(kek)))
		return kb_error_set(err, KB_BAD_PARAMETER,
				    "'kek' must be a key name or this broker's "
				    "kid");
	memcpy(m->kek.name, json_string_value(kek),
	       json_string_length(kek) + 1);
	return 0;
}

unsigned int kb_proto_op_flags(const char *line, size_t len,
			       const struct kb_op_table *table)
{
	const struct kb_op_def *def;
	unsigned int flags = 0;
	json_t *root, *op;

	/*
	 * Cheap test first: most lines cannot be one. A line with escapes
	 * may spell the op in \u form, so it is always parsed.
	 */
	if (!may_name(line, len, table, KB_OPF_TOKEN) &&
	    memchr(line, '\\', len) == NULL)
		return 0;
	if ((root = json_loadb(line, len, 0, NULL)) == NULL)
		return 0;
	op = json_object_get(root, "op");
	if (json_is_string(op) &&
	    (def = find_op(table, json_string_value(op))) != NULL)
		flags = def->flags;
	json_decref(root);
	return flags;
}

int kb_proto_parse(const char *line, size_t len, const char *instance,
		   const struct kb_op_table *table, struct kb_request *req,
		   struct kb_error *err)
{
	const struct kb_op_def *def;
	json_error_t jerr;
	json_t *op;
	char q[48], *near;

	memset(req, 0, sizeof(*req));
	err->code = KB_OK;
	err->msg[0] = '\0';
	if (len > KB_LINE_MAX)
		return kb_error_set(err, KB_BAD_REQUEST,
				    "request line longer than %d "
				    "bytes",
				    KB_LINE_MAX);
	req->root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (req->root == NULL) {
		/* Never echo the input: it may carry a DEK. */
		if ((near = strstr(jerr.text, " near ")) != NULL)
			*near = '\0';
		kb_proto_quote(q, sizeof(q), jerr.text, 40);
		return kb_error_set(err, KB_BAD_REQUEST,
				    "malformed JSON at column %d: %s",
				    jerr.column, q);
	}
	if (!json_is_object(req->root))
		return kb_error_set(err, KB_BAD_REQUEST,
				    "request must be a JSON object");
	if (parse_id(req, err) != 0)
		return -1;
	op = json_object_get(req->root, "op");
	if (!json_is_string(op))
		return kb_error_set(err, KB_BAD_REQUEST,
				    "missing string field 'op'");
	if ((def = find_op(table, json_string_value(op))) == NULL) {
		kb_proto_quote(q, sizeof(q), json_string_value(op), 32);
		return kb_error_set(err, KB_BAD_REQUEST, "unknown op '%s'", q);
	}
	req->def = def;
	snprintf(req->opname, sizeof(req->opname), "%s", def->name);
	if (check_fields(req, def->fields, err) != 0 ||
	    parse_correlation(req, err) != 0)
		return -1;
	if ((def->fields & KB_F_TOKEN) && parse_token(req, err) != 0)
		return -1;
	if ((def->fields & KB_F_JTI) && parse_jti(req, err) != 0)
		return -1;
	if ((def->fields & KB_F_PAGE) && parse_page(req, err) != 0)
		return -1;
	if ((def->fields & KB_F_KTY) && parse_kty(req, err) != 0)
		return -1;
	if ((def->fields & KB_F_ATTRS) && parse_attrs(req, err) != 0)
		return -1;
	if ((def->fields & KB_F_POLICY) && parse_policy(req, err) != 0)
		return -1;
	if ((def->fields & KB_F_IMPORT) &&
	    parse_import(req, instance, err) != 0)
		return -1;
	if (!(def->fields & KB_F_KEY))
		return 0;
	if (parse_key(req, instance, err) != 0)
		return -1;
	if ((def->fields & KB_F_ALG) && parse_alg(req, err) != 0)
		return -1;
	if ((def->fields & KB_F_VALUE) && parse_value(req, err) != 0)
		return -1;
	return 0;
}

void kb_request_uninit(struct kb_request *req)
{
	json_decref(req->root);
	OPENSSL_cleanse(req->crypt.value, sizeof(req->crypt.value));
	req->root = NULL;
	req->id = NULL;
}

static char *finish_line(json_t *o, size_t *len)
{
	char *line;

	if (o == NULL)
		return NULL;
	line = kb_json_line(o, len);
	json_decref(o);
	return line;
}

char *kb_proto_result(const json_t *id, json_t *result, size_t *len)
{
	json_t *idc = id != NULL ? json_copy((json_t *)id) : json_null();

	return finish_line(json_pack("{s:o, s:o}", "id", idc, "result", result),
			   len);
}

char *kb_proto_error(const json_t *id, enum kb_code code, const char *msg,
		     size_t *len)
{
	json_t *idc = id != NULL ? json_copy((json_t *)id) : json_null();

	return finish_line(json_pack("{s:o, s:{s:s, s:s}}", "id", idc, "error",
				     "code", kb_code_name(code), "message",
				     msg),
			   len);
}
