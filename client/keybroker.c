// SPDX-License-Identifier: MIT
/* keybroker: command-line client of keybrokerd. */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kb_b64.h"
#include "keybroker.h"

#define DEFAULT_SOCKET "/run/keybroker/keybroker.sock"
#define INPUT_MAX 4096

enum { EXIT_LOCAL = 1, EXIT_USAGE = 2, EXIT_CONNECT = 3 };

/* Broker error codes and the exit status each gives. */
static const struct {
	const char *code;
	int status;
} exit_codes[] = {
	{ "BadRequest", 4 },	  { "BadParameter", 5 }, { "Unauthorized", 6 },
	{ "Forbidden", 7 },	  { "KeyNotFound", 8 },	 { "KeyDisabled", 9 },
	{ "NotSupported", 10 },	  { "Conflict", 11 },	 { "Throttled", 12 },
	{ "HsmUnavailable", 13 }, { "Internal", 14 },
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: keybroker [OPTIONS] get|wrap|unwrap\n"
		"\n"
		"  get      print the key's public JWK and attributes (JSON)\n"
		"  wrap     wrap a data key read from stdin (raw bytes); print\n"
		"           the wrapped key as base64url\n"
		"  unwrap   unwrap a base64url wrapped key read from stdin;\n"
		"           write the data key as raw bytes\n"
		"\n"
		"options:\n"
		"  -s, --socket PATH    broker socket (default $KEYBROKER_SOCKET"
		" or\n"
		"                       %s)\n"
		"  -k, --key NAME|KID   key name or keybroker://... kid "
		"(required)\n"
		"  -V, --version VER    key version (32 hex); default: current\n"
		"  -a, --alg ALG        RSA-OAEP, RSA-OAEP-256 (default) or "
		"RSA1_5\n"
		"  -i, --in FILE        read input from FILE (default stdin)\n"
		"  -o, --out FILE       write output to FILE (default stdout)\n"
		"      --inform FMT     input format: raw or base64url\n"
		"      --outform FMT    output format: raw or base64url\n"
		"  -t, --token-file F   authenticate with the token (JWT) in F;\n"
		"                       default: getToken for this process's\n"
		"                       system-assigned identity\n"
		"  -j, --json           print the result as one JSON object\n"
		"  -h, --help           this text\n"
		"\n"
		"exit status: 0 ok, 1 local I/O error, 2 usage, 3 cannot reach "
		"the\n"
		"broker; broker errors: 4 BadRequest, 5 BadParameter,\n"
		"6 Unauthorized, 7 Forbidden, 8 KeyNotFound, 9 KeyDisabled,\n"
		"10 NotSupported, 11 Conflict, 12 Throttled, 13 "
		"HsmUnavailable,\n"
		"14 Internal\n",
		DEFAULT_SOCKET);
}

enum fmt { FMT_DEFAULT, FMT_RAW, FMT_B64 };

struct opts {
	const char *socket, *key, *version, *alg, *in, *out, *token_file;
	enum fmt inform, outform;
	bool json;
};

static int parse_fmt(const char *s, enum fmt *f)
{
	if (strcmp(s, "raw") == 0)
		*f = FMT_RAW;
	else if (strcmp(s, "base64url") == 0 || strcmp(s, "b64") == 0)
		*f = FMT_B64;
	else
		return -1;
	return 0;
}

/* Reads the input value; a secret for wrap, so wiped by the caller. */
static int read_input(const struct opts *o, enum fmt fmt, uint8_t *buf,
		      size_t *len)
{
	char text[INPUT_MAX + 1];
	FILE *f = stdin;
	size_t n;
	int r = -1;

	if (o->in != NULL && strcmp(o->in, "-") != 0 &&
	    (f = fopen(o->in, "rb")) == NULL) {
		fprintf(stderr, "keybroker: %s: %s\n", o->in, strerror(errno));
		return -1;
	}
	n = fread(text, 1, sizeof(text), f);
	if (ferror(f) || n > INPUT_MAX) {
		fprintf(stderr,
			"keybroker: input larger than %d bytes or "
			"unreadable\n",
			INPUT_MAX);
		goto out;
	}
	if (fmt == FMT_RAW) {
		memcpy(buf, text, n);
		*len = n;
		r = 0;
		goto out;
	}
	while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r' ||
			 text[n - 1] == ' '))
		n--;
	if (kb_b64_decode(buf, INPUT_MAX, len, text, n) != 0) {
		fprintf(stderr, "keybroker: input is not base64url without "
				"padding\n");
		goto out;
	}
	r = 0;
out:
	explicit_bzero(text, sizeof(text));
	if (f != stdin)
		fclose(f);
	return r;
}

static FILE *open_output(const struct opts *o)
{
	FILE *f;

	if (o->out == NULL || strcmp(o->out, "-") == 0)
		return stdout;
	if ((f = fopen(o->out, "wb")) == NULL)
		fprintf(stderr, "keybroker: %s: %s\n", o->out, strerror(errno));
	return f;
}

static int write_output(const struct opts *o, enum fmt fmt, const char *kid,
			const uint8_t *p, size_t n)
{
	char text[INPUT_MAX * 2];
	FILE *f;
	int r = 0;

	if ((f = open_output(o)) == NULL)
		return -1;
	kb_b64_encode(text, p, n);
	if (o->json)
		fprintf(f, "{\"kid\":\"%s\",\"value\":\"%s\"}\n", kid, text);
	else if (fmt == FMT_RAW)
		fwrite(p, 1, n, f);
	else
		fprintf(f, "%s\n", text);
	explicit_bzero(text, sizeof(text));
	if (fflush(f) != 0 || ferror(f))
		r = -1;
	if (f != stdout && fclose(f) != 0)
		r = -1;
	if (r != 0)
		fprintf(stderr, "keybroker: cannot write the output\n");
	return r;
}

static int broker_failure(struct keybroker *kb, int r)
{
	size_t i;

	if (r != KEYBROKER_E_BROKER) {
		fprintf(stderr, "keybroker: %s: %s\n", keybroker_strstatus(r),
			keybroker_error_message(kb));
		return r == KEYBROKER_E_IO ? EXIT_CONNECT : EXIT_LOCAL;
	}
	fprintf(stderr, "keybroker: %s: %s\n", keybroker_error_code(kb),
		keybroker_error_message(kb));
	for (i = 0; i < sizeof(exit_codes) / sizeof(exit_codes[0]); i++)
		if (strcmp(exit_codes[i].code, keybroker_error_code(kb)) == 0)
			return exit_codes[i].status;
	return 14;
}

static int cmd_get(struct keybroker *kb, const struct opts *o)
{
	char *bundle;
	FILE *f;
	int r;

	if ((r = keybroker_get_key(kb, o->key, o->version, &bundle)) != 0)
		return broker_failure(kb, r);
	if ((f = open_output(o)) == NULL) {
		free(bundle);
		return EXIT_LOCAL;
	}
	fprintf(f, "%s\n", bundle);
	free(bundle);
	if (f != stdout)
		fclose(f);
	return 0;
}

static int cmd_transform(struct keybroker *kb, const struct opts *o, bool wrap)
{
	uint8_t in[INPUT_MAX], *out = NULL;
	size_t in_len = 0, out_len = 0;
	enum fmt inform = o->inform, outform = o->outform;
	char *kid = NULL;
	int r;

	if (inform == FMT_DEFAULT)
		inform = wrap ? FMT_RAW : FMT_B64;
	if (outform == FMT_DEFAULT)
		outform = wrap ? FMT_B64 : FMT_RAW;
	if (read_input(o, inform, in, &in_len) != 0)
		return EXIT_LOCAL;
	if (wrap)
		r = keybroker_wrap(kb, o->key, o->version, o->alg, in, in_len,
				   &out, &out_len, &kid);
	else
		r = keybroker_unwrap(kb, o->key, o->version, o->alg, in, in_len,
				     &out, &out_len, &kid);
	explicit_bzero(in, sizeof(in));
	if (r != KEYBROKER_OK)
		return broker_failure(kb, r);
	r = write_output(o, outform, kid, out, out_len) == 0 ? 0 : EXIT_LOCAL;
	keybroker_free_secret(out, out_len);
	free(kid);
	return r;
}

/* Binds the connection to an identity: from a token file, or getToken. */
static int authenticate(struct keybroker *kb, const struct opts *o)
{
	char token[8200];
	size_t n;
	FILE *f;
	int r;

	if (o->token_file == NULL) {
		r = keybroker_authenticate_self(kb, NULL);
		return r == KEYBROKER_OK ? 0 : broker_failure(kb, r);
	}
	if ((f = fopen(o->token_file, "r")) == NULL) {
		fprintf(stderr, "keybroker: %s: %s\n", o->token_file,
			strerror(errno));
		return EXIT_LOCAL;
	}
	n = fread(token, 1, sizeof(token) - 1, f);
	fclose(f);
	while (n > 0 && (token[n - 1] == '\n' || token[n - 1] == '\r' ||
			 token[n - 1] == ' '))
		n--;
	token[n] = '\0';
	r = keybroker_authenticate(kb, token, NULL);
	explicit_bzero(token, sizeof(token));
	return r == KEYBROKER_OK ? 0 : broker_failure(kb, r);
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "key", required_argument, NULL, 'k' },
		{ "version", required_argument, NULL, 'V' },
		{ "alg", required_argument, NULL, 'a' },
		{ "in", required_argument, NULL, 'i' },
		{ "out", required_argument, NULL, 'o' },
		{ "inform", required_argument, NULL, 'I' },
		{ "outform", required_argument, NULL, 'O' },
		{ "json", no_argument, NULL, 'j' },
		{ "token-file", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { .socket = getenv("KEYBROKER_SOCKET") };
	struct keybroker *kb;
	const char *cmd;
	int c, r;

	while ((c = getopt_long(argc, argv, "s:k:V:a:i:o:t:jh", lopts, NULL)) !=
	       -1) {
		switch (c) {
		case 's':
			o.socket = optarg;
			break;
		case 'k':
			o.key = optarg;
			break;
		case 'V':
			o.version = optarg;
			break;
		case 'a':
			o.alg = optarg;
			break;
		case 'i':
			o.in = optarg;
			break;
		case 'o':
			o.out = optarg;
			break;
		case 'j':
			o.json = true;
			break;
		case 't':
			o.token_file = optarg;
			break;
		case 'I':
		case 'O':
			if (parse_fmt(optarg,
				      c == 'I' ? &o.inform : &o.outform) != 0) {
				fprintf(stderr, "keybroker: format must be raw "
						"or base64url\n");
				return EXIT_USAGE;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind + 1 != argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	cmd = argv[optind];
	if (strcmp(cmd, "get") != 0 && strcmp(cmd, "wrap") != 0 &&
	    strcmp(cmd, "unwrap") != 0) {
		fprintf(stderr,
			"keybroker: unknown command '%.32s' (see "
			"--help)\n",
			cmd);
		return EXIT_USAGE;
	}
	if (o.key == NULL) {
		fprintf(stderr, "keybroker: --key NAME or --key KID is "
				"required\n");
		return EXIT_USAGE;
	}
	if (o.socket == NULL)
		o.socket = DEFAULT_SOCKET;
	if ((r = keybroker_connect(o.socket, &kb)) != KEYBROKER_OK) {
		fprintf(stderr, "keybroker: cannot connect to %s: %s\n",
			o.socket, strerror(errno));
		return r == KEYBROKER_E_IO ? EXIT_CONNECT : EXIT_USAGE;
	}
	r = authenticate(kb, &o);
	if (r == 0 && strcmp(cmd, "get") == 0)
		r = cmd_get(kb, &o);
	else if (r == 0)
		r = cmd_transform(kb, &o, strcmp(cmd, "wrap") == 0);
	keybroker_close(kb);
	return r;
}
