// SPDX-License-Identifier: MIT
/*
 * keybroker-audit status and pubkey: getAuditStatus on the running
 * broker, as an identity holding readAudit (the Auditor role).
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit_tool.h"
#include "ctl_session.h"
#include "kb_json.h"

#define DEFAULT_SOCKET "/run/keybroker/keybroker.sock"

struct status_opts {
	const char *socket, *token_file;
	bool json, jwk;
};

static int status_usage(FILE *f, const char *cmd)
{
	fprintf(f,
		"usage: keybroker-audit %s [--socket PATH] [--token-file F]%s\n"
		"\n"
		"Asks the running broker for its audit trail's %s\n"
		"(getAuditStatus), as the identity getToken gives this user\n"
		"or the one of the token in F; it needs the readAudit\n"
		"permission (the Auditor role). --socket defaults to\n"
		"$KEYBROKER_SOCKET, else %s.\n",
		cmd, strcmp(cmd, "pubkey") == 0 ? " [--jwk]" : " [--json]",
		strcmp(cmd, "pubkey") == 0 ?
			"public key, as PEM (or a JWK with --jwk), to give\n"
			"keybroker-audit verify --pubkey" :
			"state: its head, its last checkpoint, and how many\n"
			"requests went unrecorded while it could not be written",
		DEFAULT_SOCKET);
	return f == stdout ? AUDIT_EXIT_OK : AUDIT_EXIT_UNREADABLE;
}

static int parse(int argc, char **argv, struct status_opts *o)
{
	enum { O_SOCKET = 256, O_TOKEN, O_JSON, O_JWK, O_HELP };
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, O_SOCKET },
		{ "token-file", required_argument, NULL, O_TOKEN },
		{ "json", no_argument, NULL, O_JSON },
		{ "jwk", no_argument, NULL, O_JWK },
		{ "help", no_argument, NULL, O_HELP },
		{ NULL, 0, NULL, 0 },
	};
	bool pubkey = strcmp(argv[0], "pubkey") == 0;
	int c;

	*o = (struct status_opts){ .socket = getenv("KEYBROKER_SOCKET") };
	if (o->socket == NULL || o->socket[0] == '\0')
		o->socket = DEFAULT_SOCKET;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case O_SOCKET:
			o->socket = optarg;
			break;
		case O_TOKEN:
			o->token_file = optarg;
			break;
		case O_JSON:
			if (pubkey)
				return status_usage(stderr, argv[0]);
			o->json = true;
			break;
		case O_JWK:
			if (!pubkey)
				return status_usage(stderr, argv[0]);
			o->jwk = true;
			break;
		case O_HELP:
			status_usage(stdout, argv[0]);
			return -1;
		default:
			return status_usage(stderr, argv[0]);
		}
	}
	if (optind != argc)
		return status_usage(stderr, argv[0]);
	return 0;
}

/* getAuditStatus's result, or NULL (said). */
static json_t *ask(const struct status_opts *o, const char *prefix)
{
	struct ctl_session s;
	json_t *res = NULL;

	if (ctl_session_open(&s, prefix, o->socket, o->token_file) == 0)
		res = ctl_call(&s, "getAuditStatus",
			       json_pack("{s:s}", "op", "getAuditStatus"));
	ctl_session_close(&s);
	return res;
}

static void print_status(json_t *r)
{
	json_t *cp = json_object_get(r, "lastCheckpoint"),
	       *un = json_object_get(r, "unrecorded");

	printf("origin        %s\n",
	       json_string_value(json_object_get(r, "origin")) ?: "?");
	printf("available     %s%s%s\n",
	       json_is_true(json_object_get(r, "available")) ? "yes" : "NO",
	       json_object_get(r, "reason") ? ": " : "",
	       json_string_value(json_object_get(r, "reason")) ?: "");
	printf("records       %lld\n",
	       (long long)json_integer_value(json_object_get(r, "records")));
	printf("head          %s\n",
	       json_string_value(json_object_get(r, "head")) ?: "?");
	if (json_is_object(cp))
		printf("checkpoint    %lld records, at %s\n",
		       (long long)json_integer_value(
			       json_object_get(cp, "size")),
		       json_string_value(json_object_get(cp, "time")) ?: "?");
	else
		printf("checkpoint    none yet from this broker run\n");
	printf("unrecorded    %lld served, %lld refused\n",
	       (long long)json_integer_value(json_object_get(un, "served")),
	       (long long)json_integer_value(json_object_get(un, "refused")));
	printf("audit key     %s\n",
	       json_string_value(json_object_get(r, "keyid")) ?:
		       "none: checkpoints are not signed");
}

int audit_status_main(int argc, char **argv)
{
	struct status_opts o;
	json_t *r;
	char *text;
	int rc;

	if ((rc = parse(argc, argv, &o)) != 0)
		return rc < 0 ? AUDIT_EXIT_OK : rc;
	if ((r = ask(&o, "keybroker-audit status")) == NULL)
		return AUDIT_EXIT_UNREADABLE;
	if (o.json) {
		text = kb_json_text(r, JSON_COMPACT, NULL);
		if (text != NULL)
			printf("%s\n", text);
		free(text);
	} else {
		print_status(r);
	}
	json_decref(r);
	return AUDIT_EXIT_OK;
}

int audit_pubkey_main(int argc, char **argv)
{
	struct status_opts o;
	json_t *r, *jwk;
	const char *pem;
	char *text = NULL;
	int rc;

	if ((rc = parse(argc, argv, &o)) != 0)
		return rc < 0 ? AUDIT_EXIT_OK : rc;
	if ((r = ask(&o, "keybroker-audit pubkey")) == NULL)
		return AUDIT_EXIT_UNREADABLE;
	jwk = json_object_get(r, "publicKey");
	pem = json_string_value(json_object_get(r, "publicKeyPem"));
	rc = AUDIT_EXIT_UNREADABLE;
	if (jwk == NULL || pem == NULL) {
		fprintf(stderr, "keybroker-audit pubkey: the broker has no "
				"audit key (its log says why)\n");
	} else if (o.jwk) {
		json_object_set_new(jwk, "kid",
				    json_copy(json_object_get(r, "keyid")));
		if ((text = kb_json_text(jwk, JSON_COMPACT, NULL)) != NULL) {
			printf("%s\n", text);
			rc = AUDIT_EXIT_OK;
		}
	} else {
		fputs(pem, stdout);
		rc = AUDIT_EXIT_OK;
	}
	free(text);
	json_decref(r);
	return rc;
}
