// SPDX-License-Identifier: MIT
/* keybroker: command-line client of keybrokerd. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kb_b64.h"
#include "kb_byok.h"
#include "kb_jread.h"
#include "kb_kid.h"
#include "kb_output.h"
#include "kb_secret.h"
#include "keybroker.h"

#define DEFAULT_SOCKET "/run/keybroker/keybroker.sock"
#define INPUT_MAX 4096

enum { EXIT_LOCAL = 1, EXIT_USAGE = 2, EXIT_CONNECT = 3 };

/* Broker error codes and the exit status each gives. */
static const struct {
	const char *code;
	int status;
} exit_codes[] = {
	{ "BadRequest", 4 },	{ "BadParameter", 5 },
	{ "Unauthorized", 6 },	{ "Forbidden", 7 },
	{ "KeyNotFound", 8 },	{ "KeyDisabled", 9 },
	{ "NotSupported", 10 }, { "Conflict", 11 },
	{ "Throttled", 12 },	{ "HsmUnavailable", 13 },
	{ "Internal", 14 },	{ "AuditUnavailable", 15 },
};
#define EXIT_OTHER_BROKER_ERROR 14

static void usage(FILE *f)
{
	fprintf(f,
		"usage: keybroker [OPTIONS] get|wrap|unwrap\n"
		"       keybroker byok-wrap --kek FILE [--in KEY.pem] [--out F] "
		"[--alg A]\n"
		"\n"
		"  get      print the key's public JWK and attributes (JSON)\n"
		"  wrap     wrap a data key read from stdin (raw bytes); print\n"
		"           the wrapped key in an envelope that names the key\n"
		"           version that made it: {\"kid\":...,\"value\":...}\n"
		"  unwrap   unwrap a wrapped key read from stdin: an envelope\n"
		"           (unwrapped with the version it names; --key may be\n"
		"           left out) or bare base64url; write the data key as\n"
		"           raw bytes\n"
		"  byok-wrap  wrap an RSA private key (PEM, from --in or stdin)\n"
		"           for importKey with a key-exchange key of the broker's\n"
		"           token, on this machine, without a broker: --kek FILE is\n"
		"           the KEK as `keybroker get` prints it (or a JWK or PEM\n"
		"           public key); --alg RSA-OAEP (default: what SoftHSMv2\n"
		"           unwraps) or RSA-OAEP-256 wraps the AES key; prints\n"
		"           the blob, base64url\n"
		"\n"
		"options:\n"
		"  -s, --socket PATH       broker socket (default "
		"$KEYBROKER_SOCKET or\n"
		"                          %s)\n"
		"  -k, --key NAME|KID      key name or keybroker://... kid "
		"(required\n"
		"                          but for unwrapping an envelope)\n"
		"  -V, --key-version VER   key version (32 hex); default: "
		"current\n"
		"  -a, --alg ALG           RSA-OAEP, RSA-OAEP-256 (default) or "
		"RSA1_5\n"
		"  -i, --in FILE           read input from FILE (default stdin)\n"
		"  -o, --out FILE          write output to FILE (default "
		"stdout), created\n"
		"                          0600, never through a symlink, never "
		"over an\n"
		"                          existing file\n"
		"  -f, --force             replace an existing --out FILE "
		"(atomically)\n"
		"      --inform FMT        input format: raw, base64url or "
		"envelope\n"
		"      --outform FMT       output format: raw, base64url or "
		"envelope\n"
		"  -t, --token-file F      authenticate with the token (JWT) in "
		"F;\n"
		"                          default: getToken for this "
		"process's\n"
		"                          system-assigned identity\n"
		"  -j, --json              print the result as one JSON object\n"
		"  -T, --timeout SECONDS   give up on the broker after this long "
		"(default\n"
		"                          30); a timeout exits 3\n"
		"  -h, --help              this text\n"
		"      --version           print the version and exit\n"
		"\n"
		"exit status: 0 ok, 1 local I/O error (input, output or token "
		"file),\n"
		"2 usage error (an unknown option, command or invalid argument),"
		"\n"
		"3 cannot reach the broker; broker errors: 4 BadRequest,\n"
		"5 BadParameter, 6 Unauthorized, 7 Forbidden, 8 KeyNotFound,\n"
		"9 KeyDisabled, 10 NotSupported, 11 Conflict, 12 Throttled,\n"
		"13 HsmUnavailable, 14 Internal (or an error code this version\n"
		"does not know), 15 AuditUnavailable\n",
		DEFAULT_SOCKET);
}

enum fmt { FMT_DEFAULT, FMT_RAW, FMT_B64, FMT_ENVELOPE };

struct opts {
	const char *socket, *key, *version, *alg, *in, *out, *token_file, *kek;
	enum fmt inform, outform;
	bool json, force;
	int timeout_ms;
};

static int usage_error(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

/* Says what is wrong with the command line; the usage exit status. */
static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "keybroker: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (see --help)\n");
	return EXIT_USAGE;
}

static int parse_fmt(const char *s, enum fmt *f)
{
	if (strcmp(s, "raw") == 0)
		*f = FMT_RAW;
	else if (strcmp(s, "base64url") == 0 || strcmp(s, "b64") == 0)
		*f = FMT_B64;
	else if (strcmp(s, "envelope") == 0)
		*f = FMT_ENVELOPE;
	else
		return -1;
	return 0;
}

/* Checks the key, version and alg before anything is sent. */
static int check_args(const struct opts *o)
{
	size_t klen = o->key != NULL ? strlen(o->key) : 0;

	if (o->key != NULL &&
	    strncmp(o->key, KB_KID_PREFIX, sizeof(KB_KID_PREFIX) - 1) != 0 &&
	    !kb_name_valid(o->key, klen))
		return usage_error("--key '%.64s': not a key name (1-127 of "
				   "A-Z a-z 0-9 -) nor a kid "
				   "(keybroker://INSTANCE/keys/NAME[/VERSION])",
				   o->key);
	if (o->version != NULL &&
	    !kb_version_valid(o->version, strlen(o->version)))
		return usage_error("--key-version '%.64s': not 32 lowercase "
				   "hex digits",
				   o->version);
	if (o->alg != NULL && strcmp(o->alg, "RSA-OAEP") != 0 &&
	    strcmp(o->alg, "RSA-OAEP-256") != 0 &&
	    strcmp(o->alg, "RSA1_5") != 0)
		return usage_error("--alg '%.32s': not RSA-OAEP, RSA-OAEP-256 "
				   "or RSA1_5",
				   o->alg);
	return 0;
}

/*
 * The kid and value of an envelope, text[0..n): {"kid": ..., "value": ...},
 * each once. 0, or -1 with the reason on stderr.
 */
static int read_envelope(const char *text, size_t n, char *kid, uint8_t *buf,
			 size_t *len)
{
	struct kb_jspan root, k, v;
	char value[INPUT_MAX * 2];
	size_t klen, vlen;
	int r = -1;

	if (kb_jread_check(text, n, &root) != 0 || root.type != KB_J_OBJECT ||
	    kb_jread_member(text, &root, "kid", &k) != 0 ||
	    kb_jread_member(text, &root, "value", &v) != 0 ||
	    kb_jread_string(text, &k, kid, KB_KID_MAX, &klen) != 0 ||
	    kb_jread_string(text, &v, value, sizeof(value), &vlen) != 0)
		goto bad;
	if (strncmp(kid, KB_KID_PREFIX, sizeof(KB_KID_PREFIX) - 1) != 0)
		goto bad;
	if (kb_b64_decode(buf, INPUT_MAX, len, value, vlen) != 0)
		goto bad;
	r = 0;
	goto out;
bad:
	fprintf(stderr,
		"keybroker: input is not an envelope "
		"{\"kid\":\"keybroker://...\",\"value\":\"<base64url>\"}\n");
out:
	explicit_bzero(value, sizeof(value));
	return r;
}

/*
 * Reads the input value; a secret for wrap, so wiped by the caller. An
 * envelope (fmt ENVELOPE, or DEFAULT and the input is one) also gives
 * the kid that made it; kid is "" otherwise.
 */
static int read_input(const struct opts *o, enum fmt fmt, uint8_t *buf,
		      size_t *len, char *kid)
{
	char text[INPUT_MAX * 2 + KB_KID_MAX + 64];
	FILE *f = stdin;
	size_t n, start = 0;
	int r = -1;

	kid[0] = '\0';
	if (o->in != NULL && strcmp(o->in, "-") != 0 &&
	    (f = fopen(o->in, "rb")) == NULL) {
		fprintf(stderr, "keybroker: %s: %s\n", o->in, strerror(errno));
		return -1;
	}
	/* Unbuffered: no copy of a DEK in stdio's buffer. */
	setvbuf(f, NULL, _IONBF, 0);
	n = fread(text, 1, sizeof(text), f);
	if (ferror(f) || n == sizeof(text) ||
	    (fmt == FMT_RAW && n > INPUT_MAX)) {
		fprintf(stderr,
			"keybroker: input larger than %d bytes or "
			"unreadable\n",
			fmt == FMT_RAW ? INPUT_MAX : (int)sizeof(text) - 1);
		goto out;
	}
	if (fmt == FMT_RAW) {
		memcpy(buf, text, n);
		*len = n;
		r = 0;
		goto out;
	}
	while (start < n && (text[start] == ' ' || text[start] == '\n'))
		start++;
	if (fmt == FMT_ENVELOPE ||
	    (fmt == FMT_DEFAULT && start < n && text[start] == '{')) {
		r = read_envelope(text, n, kid, buf, len);
		goto out;
	}
	while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r' ||
			 text[n - 1] == ' '))
		n--;
	if (kb_b64_decode(buf, INPUT_MAX, len, text, n) != 0) {
		fprintf(stderr, "keybroker: input is not base64url without "
				"padding, nor an envelope\n");
		goto out;
	}
	r = 0;
out:
	explicit_bzero(text, sizeof(text));
	if (f != stdin)
		fclose(f);
	return r;
}

/* Writes text[0..n) to --out (or stdout) and confirms it; 0 or -1. */
static int emit(const struct opts *o, const char *text, size_t n)
{
	char err[512];

	if (kb_output_save(o->out, o->force, text, n, err, sizeof(err)) != 0) {
		fprintf(stderr, "keybroker: %s\n", err);
		return -1;
	}
	return 0;
}

static int write_result(const struct opts *o, enum fmt fmt, const char *kid,
			const uint8_t *p, size_t n)
{
	char b64[INPUT_MAX * 2], text[INPUT_MAX * 2 + KB_KID_MAX + 32];
	size_t len;
	int r;

	kb_b64_encode(b64, p, n);
	if (o->json || fmt == FMT_ENVELOPE)
		len = (size_t)snprintf(text, sizeof(text),
				       "{\"kid\":\"%s\",\"value\":\"%s\"}\n",
				       kid, b64);
	else if (fmt == FMT_RAW)
		memcpy(text, p, len = n);
	else
		len = (size_t)snprintf(text, sizeof(text), "%s\n", b64);
	r = emit(o, text, len);
	explicit_bzero(b64, sizeof(b64));
	explicit_bzero(text, sizeof(text));
	return r;
}

static int broker_failure(struct keybroker *kb, int r)
{
	size_t i;

	if (r != KEYBROKER_E_BROKER) {
		fprintf(stderr, "keybroker: %s: %s\n", keybroker_strstatus(r),
			keybroker_error_message(kb));
		return r == KEYBROKER_E_IO	 ? EXIT_CONNECT :
		       r == KEYBROKER_E_ARGUMENT ? EXIT_USAGE :
						   EXIT_LOCAL;
	}
	fprintf(stderr, "keybroker: %s: %s\n", keybroker_error_code(kb),
		keybroker_error_message(kb));
	for (i = 0; i < sizeof(exit_codes) / sizeof(exit_codes[0]); i++)
		if (strcmp(exit_codes[i].code, keybroker_error_code(kb)) == 0)
			return exit_codes[i].status;
	return EXIT_OTHER_BROKER_ERROR;
}

static int cmd_get(struct keybroker *kb, const struct opts *o)
{
	char *bundle;
	size_t n;
	int r;

	if ((r = keybroker_get_key(kb, o->key, o->version, &bundle)) != 0)
		return broker_failure(kb, r);
	n = strlen(bundle);
	bundle[n] = '\n'; /* the NUL becomes the line's end */
	r = emit(o, bundle, n + 1) == 0 ? 0 : EXIT_LOCAL;
	free(bundle);
	return r;
}

/*
 * The key an envelope's kid names must be the one --key (and
 * --key-version) name, if given: the kid says which version made it.
 */
static int check_envelope_key(const struct opts *o, const char *kid)
{
	const char *keys = strstr(kid, "/keys/"), *name, *ver;
	size_t nlen;

	if (o->key == NULL)
		return 0;
	if (keys == NULL)
		return -1;
	name = keys + 6;
	ver = strchr(name, '/');
	nlen = ver != NULL ? (size_t)(ver - name) : strlen(name);
	/* A kid given: the envelope's, with or without its version. */
	if (strncmp(o->key, KB_KID_PREFIX, sizeof(KB_KID_PREFIX) - 1) == 0) {
		if (strcmp(o->key, kid) != 0 &&
		    (ver == NULL || strlen(o->key) != (size_t)(ver - kid) ||
		     strncmp(o->key, kid, strlen(o->key)) != 0))
			return -1;
	} else if (strlen(o->key) != nlen || strncmp(o->key, name, nlen) != 0) {
		return -1;
	}
	if (o->version != NULL && (ver == NULL || strcmp(ver + 1, o->version)))
		return -1;
	return 0;
}

static int cmd_transform(struct keybroker *kb, const struct opts *o, bool wrap)
{
	uint8_t in[INPUT_MAX], *out = NULL;
	size_t in_len = 0, out_len = 0;
	enum fmt inform = o->inform, outform = o->outform;
	char *kid = NULL, in_kid[KB_KID_MAX];
	const char *key = o->key, *version = o->version;
	int r;

	if (inform == FMT_DEFAULT && wrap)
		inform = FMT_RAW;
	if (outform == FMT_DEFAULT)
		outform = wrap ? FMT_ENVELOPE : FMT_RAW;
	if (read_input(o, inform, in, &in_len, in_kid) != 0) {
		explicit_bzero(in, sizeof(in));
		return EXIT_LOCAL;
	}
	if (in_kid[0] != '\0') {
		if (check_envelope_key(o, in_kid) != 0) {
			explicit_bzero(in, sizeof(in));
			return usage_error("the envelope was made by %.200s, "
					   "not by the --key/--key-version "
					   "given",
					   in_kid);
		}
		key = in_kid; /* its version with it */
		version = NULL;
	} else if (key == NULL) {
		explicit_bzero(in, sizeof(in));
		return usage_error("%s", "--key is required unless the input "
					 "is an envelope");
	}
	if (wrap)
		r = keybroker_wrap(kb, key, version, o->alg, in, in_len, &out,
				   &out_len, &kid);
	else
		r = keybroker_unwrap(kb, key, version, o->alg, in, in_len, &out,
				     &out_len, &kid);
	explicit_bzero(in, sizeof(in));
	if (r != KEYBROKER_OK)
		return broker_failure(kb, r);
	r = write_result(o, outform, kid, out, out_len) == 0 ? 0 : EXIT_LOCAL;
	keybroker_free_secret(out, out_len);
	free(kid);
	return r;
}

/* Reads all of path ("-" or NULL: stdin) into buf (size bytes); 0 or -1. */
static int slurp(const char *path, char *buf, size_t size, size_t *len)
{
	FILE *f = path == NULL || strcmp(path, "-") == 0 ? stdin :
							   fopen(path, "rb");

	if (f == NULL) {
		fprintf(stderr, "keybroker: %s: %s\n", path, strerror(errno));
		return -1;
	}
	/* Unbuffered: no copy of a private key in stdio's buffer. */
	setvbuf(f, NULL, _IONBF, 0);
	*len = fread(buf, 1, size, f);
	if (ferror(f) || *len == size) {
		fprintf(stderr,
			"keybroker: %s: unreadable or longer than %zu "
			"bytes\n",
			path != NULL ? path : "stdin", size - 1);
		if (f != stdin)
			fclose(f);
		return -1;
	}
	if (f != stdin)
		fclose(f);
	return 0;
}

/* byok-wrap: local, no broker; see kb_byok.h. */
static int cmd_byok_wrap(const struct opts *o)
{
	enum { TEXT_MAX = 32768 };
	char *text = kb_secure_alloc(TEXT_MAX), why[256], *b64 = NULL;
	EVP_PKEY *kek = NULL, *key = NULL;
	unsigned char *blob = NULL;
	size_t len, bloblen = 0;
	int r = EXIT_LOCAL;

	if (o->kek == NULL || o->key != NULL || o->version != NULL ||
	    (o->alg != NULL && strcmp(o->alg, "RSA-OAEP") != 0 &&
	     strcmp(o->alg, "RSA-OAEP-256") != 0)) {
		kb_secure_free(text, TEXT_MAX);
		return usage_error("%s", "byok-wrap takes --kek FILE, the key "
					 "(--in, or stdin) and --alg RSA-OAEP "
					 "or RSA-OAEP-256");
	}
	if (text == NULL || slurp(o->kek, text, TEXT_MAX, &len) != 0)
		goto out;
	if ((kek = kb_byok_read_kek(text, len, why, sizeof(why))) == NULL)
		goto fail;
	if (slurp(o->in, text, TEXT_MAX, &len) != 0)
		goto out;
	key = kb_byok_read_key(text, len, why, sizeof(why));
	kb_wipe(text, TEXT_MAX);
	if (key == NULL ||
	    kb_byok_wrap(kek,
			 o->alg != NULL && strcmp(o->alg, "RSA-OAEP-256") == 0 ?
				 EVP_sha256() :
				 EVP_sha1(),
			 key, &blob, &bloblen, why, sizeof(why)) != 0)
		goto fail;
	if ((b64 = malloc(kb_b64_encoded_len(bloblen) + 2)) == NULL)
		goto out;
	kb_b64_encode(b64, blob, bloblen);
	strcat(b64, "\n");
	r = emit(o, b64, strlen(b64)) == 0 ? 0 : EXIT_LOCAL;
	goto out;
fail:
	fprintf(stderr, "keybroker: byok-wrap: %s\n", why);
out:
	free(b64);
	free(blob);
	EVP_PKEY_free(key);
	EVP_PKEY_free(kek);
	kb_secure_free(text, TEXT_MAX);
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
	enum { OPT_INFORM = 256, OPT_OUTFORM, OPT_VERSION, OPT_KEK };
	static const struct option lopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "key", required_argument, NULL, 'k' },
		{ "key-version", required_argument, NULL, 'V' },
		{ "alg", required_argument, NULL, 'a' },
		{ "in", required_argument, NULL, 'i' },
		{ "out", required_argument, NULL, 'o' },
		{ "force", no_argument, NULL, 'f' },
		{ "inform", required_argument, NULL, OPT_INFORM },
		{ "outform", required_argument, NULL, OPT_OUTFORM },
		{ "json", no_argument, NULL, 'j' },
		{ "token-file", required_argument, NULL, 't' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "kek", required_argument, NULL, OPT_KEK },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, OPT_VERSION },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { .socket = getenv("KEYBROKER_SOCKET"),
			  .timeout_ms = KEYBROKER_DEFAULT_TIMEOUT_MS };
	char *end;
	long secs;
	struct keybroker *kb;
	const char *cmd;
	int c, r;

	while ((c = getopt_long(argc, argv, "s:k:V:a:i:o:ft:T:jh", lopts,
				NULL)) != -1) {
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
		case 'f':
			o.force = true;
			break;
		case 'j':
			o.json = true;
			break;
		case 't':
			o.token_file = optarg;
			break;
		case 'T':
			secs = strtol(optarg, &end, 10);
			if (end == optarg || *end != '\0' || secs < 1 ||
			    secs > 3600)
				return usage_error("--timeout '%.32s': not a "
						   "number of seconds from 1 "
						   "to 3600",
						   optarg);
			o.timeout_ms = (int)secs * 1000;
			break;
		case OPT_INFORM:
		case OPT_OUTFORM:
			if (parse_fmt(optarg, c == OPT_INFORM ?
						      &o.inform :
						      &o.outform) != 0)
				return usage_error("--%s: '%.32s' is not raw "
						   "or base64url",
						   c == OPT_INFORM ? "inform" :
								     "outform",
						   optarg);
			break;
		case OPT_KEK:
			o.kek = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case OPT_VERSION:
			printf("keybroker %s\n", KB_VERSION);
			return 0;
		default:
			fprintf(stderr, "keybroker: see --help\n");
			return EXIT_USAGE;
		}
	}
	if (optind + 1 != argc)
		return usage_error("%s", optind >= argc ?
						 "a command is required: get, "
						 "wrap or unwrap" :
						 "one command only");
	cmd = argv[optind];
	if (strcmp(cmd, "byok-wrap") == 0)
		return cmd_byok_wrap(&o);
	if (strcmp(cmd, "get") != 0 && strcmp(cmd, "wrap") != 0 &&
	    strcmp(cmd, "unwrap") != 0)
		return usage_error("unknown command '%.32s': get, wrap or "
				   "unwrap",
				   cmd);
	if (o.key == NULL && strcmp(cmd, "unwrap") != 0)
		return usage_error("%s", "--key NAME or --key KID is required");
	if ((r = check_args(&o)) != 0)
		return r;
	if (o.socket == NULL)
		o.socket = DEFAULT_SOCKET;
	if ((r = keybroker_connect_timeout(o.socket, o.timeout_ms, &kb)) !=
	    KEYBROKER_OK) {
		fprintf(stderr, "keybroker: cannot connect to %s: %s\n",
			o.socket,
			r == KEYBROKER_E_ARGUMENT ? "path too long" :
						    strerror(errno));
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
