// SPDX-License-Identifier: MIT
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ctl_keys.h"
#include "ctl_session.h"
#include "kb_json.h"
#include "kb_kid.h"
#include "kb_secret.h"

#define POLICY_FILE_MAX 4096

void ctl_keys_usage(FILE *f)
{
	fprintf(f,
		"  key [--token-file F] [--json] VERB ...\n"
		"        manage keys through the running broker, as the\n"
		"        identity getToken gives this user (or the token in F),\n"
		"        checked against the ACL like any request:\n"
		"    create NAME [--size 2048|3072|4096] [--disabled]\n"
		"           [--nbf TIME] [--exp TIME] [--tag K=V]...\n"
		"           [--ops wrapKey,unwrapKey]\n"
		"    import NAME --kek KEK --blob FILE [--alg RSA-OAEP-256]\n"
		"           | --pem FILE | --jwk FILE, and create's options\n"
		"           (BYOK: the blob from keybroker byok-wrap, the key\n"
		"           never in plain outside an HSM; pem/jwk: in plain,\n"
		"           for migrations)\n"
		"    kek create NAME [--size N]  a key-exchange key for BYOK\n"
		"    rotate NAME               a new current version\n"
		"    update NAME [--version V] [--enable|--disable]\n"
		"           [--nbf TIME|none] [--exp TIME|none]\n"
		"           [--tag K=V]... [--clear-tags] [--ops LIST]\n"
		"    list | versions NAME      keys; versions of one key\n"
		"    delete NAME               soft delete: stops every version\n"
		"    deleted [NAME]            deleted keys, or one\n"
		"    recover NAME | purge NAME\n"
		"    policy get NAME | policy set NAME FILE|-\n"
		"        TIME: Unix seconds or YYYY-MM-DDTHH:MM:SSZ; --json\n"
		"        prints the broker's results as JSON\n");
}

/* A usage error: says what and returns 2. */
static int usage_error(const char *what)
{
	fprintf(stderr, "keybrokerctl: key: %s (see --help)\n", what);
	return 2;
}

/* A time option: Unix seconds, YYYY-MM-DDTHH:MM:SSZ, or "none" (0). */
static int parse_time(const char *text, bool none_ok, json_t **out)
{
	struct tm tm = { 0 };
	char *end;
	long long t;

	if (none_ok && strcmp(text, "none") == 0) {
		*out = json_null();
		return 0;
	}
	errno = 0;
	t = strtoll(text, &end, 10);
	if (end == text || *end != '\0' || errno != 0 || t <= 0) {
		end = strptime(text, "%Y-%m-%dT%H:%M:%SZ", &tm);
		if (end == NULL || *end != '\0')
			return -1;
		t = (long long)timegm(&tm);
	}
	*out = json_integer(t);
	return 0;
}

/*
 * A file's content as a request field: text (a PEM, a blob), or parsed
 * (a JWK). NULL, said, if it cannot be read.
 */
static json_t *read_field(const char *path, bool as_json)
{
	enum { FIELD_MAX = 32768 };
	char *text = kb_secure_alloc(FIELD_MAX);
	json_t *v = NULL;

	if (text != NULL &&
	    ctl_read_line_file("keybrokerctl", path, text, FIELD_MAX) == 0) {
		v = as_json ? json_loads(text, 0, NULL) : json_string(text);
		if (v == NULL)
			fprintf(stderr, "keybrokerctl: %s: not %s\n", path,
				as_json ? "a JSON object" : "text");
	}
	kb_secure_free(text, FIELD_MAX);
	return v;
}

/* --ops wrapKey,unwrapKey as an array. */
static json_t *parse_ops(const char *text)
{
	json_t *a = json_array();
	char *copy = strdup(text), *tok, *save = NULL;

	for (tok = copy != NULL ? strtok_r(copy, ",", &save) : NULL;
	     tok != NULL && a != NULL; tok = strtok_r(NULL, ",", &save))
		json_array_append_new(a, json_string(tok));
	free(copy);
	return a;
}

static void format_time(char *buf, size_t size, const json_t *when)
{
	time_t t = (time_t)json_integer_value(when);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* One line for a key bundle or list item. */
static void print_item(const json_t *item)
{
	const json_t *attrs = json_object_get(item, "attributes");
	const json_t *tags = json_object_get(item, "tags"), *ops, *v;
	const char *kid = json_string_value(json_object_get(item, "kid")), *k;
	char when[32];
	size_t i;

	if (kid == NULL)
		kid = json_string_value(
			json_object_get(json_object_get(item, "key"), "kid"));
	printf("%s", kid != NULL ? kid : "?");
	if (json_is_true(json_object_get(attrs, "damaged"))) {
		printf("  damaged (metadata unreadable)\n");
		return;
	}
	printf("  %s", json_is_true(json_object_get(attrs, "enabled")) ?
			       "enabled" :
			       "disabled");
	if ((v = json_object_get(attrs, "created")) != NULL) {
		format_time(when, sizeof(when), v);
		printf("  created %s", when);
	}
	if ((v = json_object_get(attrs, "nbf")) != NULL) {
		format_time(when, sizeof(when), v);
		printf("  nbf %s", when);
	}
	if ((v = json_object_get(attrs, "exp")) != NULL) {
		format_time(when, sizeof(when), v);
		printf("  exp %s", when);
	}
	ops = json_object_get(json_object_get(item, "key"), "key_ops");
	if (json_array_size(ops) == 1)
		printf("  only %s", json_string_value(json_array_get(ops, 0)));
	if ((v = json_object_get(item, "deletedDate")) != NULL) {
		format_time(when, sizeof(when), v);
		printf("  deleted %s", when);
		format_time(when, sizeof(when),
			    json_object_get(item, "scheduledPurgeDate"));
		printf(", purge due %s", when);
	}
	i = 0;
	json_object_foreach((json_t *)tags, k, v) {
		printf("%s%s=%s", i++ == 0 ? "  tags " : ",", k,
		       json_string_value(v));
	}
	printf("\n");
}

/* Prints a result: as JSON, or as lines. */
static void print_result(const struct ctl_session *s, const json_t *res)
{
	char *text;
	size_t i;
	json_t *v;

	if (s->json || json_object_get(res, "lifetimeActions") != NULL) {
		if ((text = kb_json_text(res, JSON_INDENT(2) | JSON_SORT_KEYS,
					 NULL)) != NULL)
			printf("%s\n", text);
		free(text);
		return;
	}
	if (json_is_array(json_object_get(res, "value"))) {
		json_array_foreach(json_object_get(res, "value"), i, v) {
			print_item(v);
		}
		return;
	}
	print_item(res);
}

/* A list, page after page. */
static int list(struct ctl_session *s, const char *verb, const char *op,
		const char *key)
{
	json_t *req, *res, *link = NULL, *all = json_array();
	int r = 1;

	for (;;) {
		req = json_pack("{s:s}", "op", op);
		if (req != NULL && key != NULL)
			json_object_set_new(req, "key", json_string(key));
		if (req != NULL && link != NULL)
			json_object_set(req, "nextLink", link);
		json_decref(link);
		link = NULL;
		if ((res = ctl_call(s, verb, req)) == NULL)
			goto out;
		json_array_extend(all, json_object_get(res, "value"));
		link = json_incref(json_object_get(res, "nextLink"));
		json_decref(res);
		if (link == NULL)
			break;
	}
	res = json_pack("{s:O}", "value", all);
	print_result(s, res);
	json_decref(res);
	r = 0;
out:
	json_decref(all);
	return r;
}

/* Sends op on key with the fields of extra (taken); prints the result. */
static int simple(struct ctl_session *s, const char *verb, const char *op,
		  const char *key, json_t *extra)
{
	json_t *req = json_pack("{s:s, s:s}", "op", op, "key", key), *res;

	if (req != NULL && extra != NULL)
		json_object_update(req, extra);
	json_decref(extra);
	if ((res = ctl_call(s, verb, req)) == NULL)
		return 1;
	if (strcmp(op, "purgeDeletedKey") == 0 && !s->json)
		printf("key %s purged\n", key);
	else
		print_result(s, res);
	json_decref(res);
	return 0;
}

/*
 * The options of create, update and import into fields: attributes,
 * tags, key_ops (and key_size, version; what to import). -1 after a
 * usage error (said).
 */
static int attr_options(int argc, char **argv, bool update, bool import,
			json_t *fields)
{
	enum {
		O_SIZE = 256,
		O_DISABLED,
		O_ENABLE,
		O_NBF,
		O_EXP,
		O_TAG,
		O_CLEAR,
		O_OPS,
		O_VERSION,
		O_PEM,
		O_JWK,
		O_KEK,
		O_BLOB,
		O_ALG,
	};
	static const struct option opts[] = {
		{ "size", required_argument, NULL, O_SIZE },
		{ "disabled", no_argument, NULL, O_DISABLED },
		{ "disable", no_argument, NULL, O_DISABLED },
		{ "enable", no_argument, NULL, O_ENABLE },
		{ "nbf", required_argument, NULL, O_NBF },
		{ "exp", required_argument, NULL, O_EXP },
		{ "tag", required_argument, NULL, O_TAG },
		{ "clear-tags", no_argument, NULL, O_CLEAR },
		{ "ops", required_argument, NULL, O_OPS },
		{ "version", required_argument, NULL, O_VERSION },
		{ "pem", required_argument, NULL, O_PEM },
		{ "jwk", required_argument, NULL, O_JWK },
		{ "kek", required_argument, NULL, O_KEK },
		{ "blob", required_argument, NULL, O_BLOB },
		{ "alg", required_argument, NULL, O_ALG },
		{ NULL, 0, NULL, 0 },
	};
	json_t *attrs = json_object(), *tags = NULL, *t;
	char *eq, *end;
	long size;
	int c;

	optind = 0;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case O_PEM:
		case O_JWK:
		case O_BLOB:
			if (!import ||
			    (t = read_field(optarg, c == O_JWK)) == NULL)
				goto bad;
			json_object_set_new(fields,
					    c == O_PEM ? "pem" :
					    c == O_JWK ? "jwk" :
							 "blob",
					    t);
			break;
		case O_KEK:
		case O_ALG:
			if (!import)
				goto bad;
			json_object_set_new(fields, c == O_KEK ? "kek" : "alg",
					    json_string(optarg));
			break;
		case O_SIZE:
			size = strtol(optarg, &end, 10);
			if (update || import || *end != '\0' ||
			    (size != 2048 && size != 3072 && size != 4096))
				goto bad;
			json_object_set_new(fields, "key_size",
					    json_integer(size));
			break;
		case O_DISABLED:
		case O_ENABLE:
			json_object_set_new(attrs, "enabled",
					    json_boolean(c == O_ENABLE));
			break;
		case O_NBF:
		case O_EXP:
			if (parse_time(optarg, update, &t) != 0)
				goto bad;
			json_object_set_new(attrs, c == O_NBF ? "nbf" : "exp",
					    t);
			break;
		case O_TAG:
			if ((eq = strchr(optarg, '=')) == NULL)
				goto bad;
			*eq = '\0';
			if (tags == NULL)
				tags = json_object();
			json_object_set_new(tags, optarg, json_string(eq + 1));
			break;
		case O_CLEAR:
			if (!update)
				goto bad;
			if (tags == NULL)
				tags = json_object();
			break;
		case O_OPS:
			json_object_set_new(fields, "key_ops",
					    parse_ops(optarg));
			break;
		case O_VERSION:
			if (!update)
				goto bad;
			json_object_set_new(fields, "version",
					    json_string(optarg));
			break;
		default:
			goto bad;
		}
	}
	if (optind + 1 != argc)
		goto bad;
	if (json_object_size(attrs) > 0)
		json_object_set(fields, "attributes", attrs);
	if (tags != NULL)
		json_object_set(fields, "tags", tags);
	json_decref(attrs);
	json_decref(tags);
	return 0;
bad:
	json_decref(attrs);
	json_decref(tags);
	usage_error(
		update ? "update NAME [--version V] [--enable|--disable] "
			 "[--nbf TIME|none] [--exp TIME|none] [--tag K=V]... "
			 "[--clear-tags] [--ops LIST]" :
			 "create NAME [--size 2048|3072|4096] [--disabled] "
			 "[--nbf TIME] [--exp TIME] [--tag K=V]... [--ops "
			 "LIST]");
	return -1;
}

static int policy(struct ctl_session *s, int argc, char **argv)
{
	char text[POLICY_FILE_MAX];
	json_t *p;

	if (argc == 3 && strcmp(argv[1], "get") == 0)
		return simple(s, "policy get", "getKeyRotationPolicy", argv[2],
			      NULL);
	if (argc != 4 || strcmp(argv[1], "set") != 0)
		return usage_error("policy get NAME | policy set NAME FILE|-");
	if (ctl_read_line_file("keybrokerctl", argv[3], text, sizeof(text)) !=
	    0)
		return 1;
	if ((p = json_loads(text, 0, NULL)) == NULL) {
		fprintf(stderr, "keybrokerctl: %s: not a JSON policy\n",
			argv[3]);
		return 1;
	}
	return simple(s, "policy set", "updateKeyRotationPolicy", argv[2],
		      json_pack("{s:o}", "policy", p));
}

/* Runs one verb on an authenticated session. */
static int run(struct ctl_session *s, int argc, char **argv)
{
	const char *verb = argv[0];
	json_t *fields;

	if (strcmp(verb, "create") == 0 || strcmp(verb, "update") == 0 ||
	    strcmp(verb, "import") == 0) {
		if ((fields = json_object()) == NULL ||
		    attr_options(argc, argv, verb[0] == 'u', verb[0] == 'i',
				 fields) != 0) {
			json_decref(fields);
			return 2;
		}
		return simple(s, verb,
			      verb[0] == 'u' ? "updateKey" :
			      verb[0] == 'i' ? "importKey" :
					       "createKey",
			      argv[argc - 1], fields);
	}
	if (strcmp(verb, "kek") == 0) {
		fields = json_pack("{s:[s]}", "key_ops", "import");
		if (argc < 3 || strcmp(argv[1], "create") != 0 ||
		    fields == NULL ||
		    attr_options(argc - 1, argv + 1, false, false, fields) !=
			    0) {
			json_decref(fields);
			return usage_error("kek create NAME [--size N]");
		}
		return simple(s, "kek create", "createKey", argv[argc - 1],
			      fields);
	}
	if (strcmp(verb, "list") == 0 && argc == 1)
		return list(s, verb, "getKeys", NULL);
	if (strcmp(verb, "versions") == 0 && argc == 2)
		return list(s, verb, "getKeyVersions", argv[1]);
	if (strcmp(verb, "deleted") == 0 && argc == 1)
		return list(s, verb, "getDeletedKeys", NULL);
	if (strcmp(verb, "deleted") == 0 && argc == 2)
		return simple(s, verb, "getDeletedKey", argv[1], NULL);
	if (strcmp(verb, "policy") == 0)
		return policy(s, argc, argv);
	if (argc == 2 && strcmp(verb, "rotate") == 0)
		return simple(s, verb, "rotateKey", argv[1], NULL);
	if (argc == 2 && strcmp(verb, "delete") == 0)
		return simple(s, verb, "deleteKey", argv[1], NULL);
	if (argc == 2 && strcmp(verb, "recover") == 0)
		return simple(s, verb, "recoverDeletedKey", argv[1], NULL);
	if (argc == 2 && strcmp(verb, "purge") == 0)
		return simple(s, verb, "purgeDeletedKey", argv[1], NULL);
	return usage_error("unknown verb or wrong arguments");
}

int ctl_keys(const char *socket_path, int argc, char **argv)
{
	enum { O_TOKEN = 256, O_JSON };
	static const struct option opts[] = {
		{ "token-file", required_argument, NULL, O_TOKEN },
		{ "json", no_argument, NULL, O_JSON },
		{ NULL, 0, NULL, 0 },
	};
	struct ctl_session s;
	const char *token_file = NULL;
	bool json = false;
	int c, r = 1;

	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		if (c == O_TOKEN)
			token_file = optarg;
		else if (c == O_JSON)
			json = true;
		else
			return usage_error(
				"key [--token-file F] [--json] VERB");
	}
	if (optind >= argc)
		return usage_error("a verb is needed");
	argc -= optind;
	argv += optind;
	if (ctl_session_open(&s, "keybrokerctl: key", socket_path,
			     token_file) == 0) {
		s.json = json;
		r = run(&s, argc, argv);
	}
	ctl_session_close(&s);
	return r;
}
