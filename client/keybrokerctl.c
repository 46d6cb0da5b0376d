// SPDX-License-Identifier: MIT
/*
 * keybrokerctl: the admin's tool. Key management goes through the running
 * broker as an authenticated identity (keybrokerctl key ..., ctl_keys.h).
 * Provisioning (init-token), identity tokens and break-glass key commands
 * work on the token directly, with the module, token URI and PIN file of
 * the broker's config: no identity, no ACL, only the PIN.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ctl_keys.h"
#include "ctl_socket.h"
#include "kb_audit.h"
#include "kb_config.h"
#include "kb_identity.h"
#include "kb_issuer.h"
#include "kb_json.h"
#include "kb_jwk.h"
#include "kb_jwt.h"
#include "kb_keystore.h"
#include "kb_kid.h"
#include "kb_lifecycle.h"
#include "kb_log.h"
#include "kb_output.h"
#include "kb_proto.h"
#include "kb_secret.h"
#include "kb_user.h"
#include "p11_token.h"
#include "p11_confirm.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77 /* Linux 6.5; newer than this system's headers */
#endif

#define DEFAULT_CONFIG "/etc/keybroker/keybroker.conf"
#define BROKER_REPLY_TIMEOUT_S 10

static void usage(FILE *f)
{
	fprintf(f,
		"usage: keybrokerctl [--config FILE] COMMAND [ARGS]\n"
		"\n"
		"Manages keys through the running broker, and provisions the\n"
		"PKCS#11 token named in the broker's config.\n"
		"\n"
		"through the broker (an identity, checked against the ACL):\n");
	ctl_keys_usage(f);
	fprintf(f,
		"\n"
		"on the token directly (the PIN; no identity, no ACL):\n"
		"  slots\n"
		"        every slot of the config's module: its token, serial,\n"
		"        flags, free memory if known, and which one the config\n"
		"        selects\n"
		"  init-token --so-pin-file FILE [--slot ID]\n"
		"        initialise a fresh token (in slot ID, else the first\n"
		"        uninitialised one): label from the config's token\n"
		"        URI (token=...), SO PIN from FILE, user PIN from the\n"
		"        config's pin_file\n"
		"  set-pin --new-pin-file FILE\n"
		"        change the user PIN from the config's pin_file's to\n"
		"        FILE's\n"
		"  init-pin --so-pin-file FILE\n"
		"        as the SO, set the user PIN to the config's pin_file's\n"
		"        (a locked or lost user PIN); PINs only from files\n"
		"  break-glass, when no broker runs or no admin identity works:\n"
		"  create-key NAME [--size 2048|3072|4096]\n"
		"        generate a new RSA-HSM key, or a new version of NAME,\n"
		"        inside the token (non-extractable); prints its kid\n"
		"  list-keys\n"
		"        list every key version in the token, damaged ones\n"
		"        (metadata unreadable) with the command that repairs\n"
		"        them\n"
		"  enable-key NAME VERSION | disable-key NAME VERSION\n"
		"        allow or refuse wrap/unwrap with one key version\n"
		"  repair-key NAME VERSION --enabled|--disabled [--current]\n"
		"        write new metadata for a damaged version, enabled or\n"
		"        not; dated before the key's oldest version, or with\n"
		"        --current now, making it the current version\n"
		"  running brokers see these changes within a second\n"
		"  identity token IDENTITY [--ttl DURATION] [-o FILE [--force]]\n"
		"        issue a token for a configured identity (ttl: seconds\n"
		"        or 30m, 12h, 7d; default tokens.lifetime, at most\n"
		"        tokens.max_lifetime), signed by the token-signing key;\n"
		"        prints it (or writes FILE, created 0600, never through\n"
		"        a symlink nor over a file unless --force), and its id\n"
		"        (jti) on stderr\n"
		"  identity revoke JTI\n"
		"        revoke a token by its id, in the token (survives\n"
		"        restarts), and tell a running broker, which refuses\n"
		"        it from then on even if the token could not keep it\n"
		"  jwks\n"
		"        print the broker's token-signing key as a JWKS\n"
		"  reload\n"
		"        make the running broker reload its configuration\n"
		"\n"
		"options:\n"
		"  -c, --config FILE   broker config (default %s)\n"
		"  -h, --help          this text\n"
		"      --version       print the version and exit\n"
		"\n"
		"Writes to the token are refused while its storage is nearly\n"
		"full, and count only once a fresh load of the token reads\n"
		"them back; otherwise the command fails and names why.\n"
		"\n"
		"exit status: 0 success, 1 operation failed, 2 usage error\n",
		DEFAULT_CONFIG);
}

static void format_time(char *buf, size_t size, int64_t when)
{
	time_t t = (time_t)when;
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void print_version(const struct kb_key_info *info, void *arg)
{
	const struct kb_config *cfg = arg;
	char kid[KB_KID_MAX], when[32], repaired[32];

	kb_kid_format(kid, sizeof(kid), cfg->instance, info->name,
		      info->version);
	if (info->damaged) {
		printf("%s  RSA-HSM %u  damaged: metadata unreadable; "
		       "keybrokerctl repair-key %s %s --enabled|--disabled\n",
		       kid, info->bits, info->name, info->version);
		return;
	}
	format_time(when, sizeof(when), info->created);
	format_time(repaired, sizeof(repaired), info->repaired);
	printf("%s  RSA-HSM %u  created %s  %s%s%s\n", kid, info->bits, when,
	       info->enabled ? "enabled" : "disabled",
	       info->repaired != 0 ? "  repaired " : "",
	       info->repaired != 0 ? repaired : "");
}

/*
 * The PIN file this program reads: pin_file (pin_credential is the
 * broker's, under its unit). NULL with a message if the config has none.
 */
static const char *pin_file_of(const struct kb_config *cfg)
{
	if (cfg->pkcs11_pin_file == NULL)
		fprintf(stderr,
			"keybrokerctl: %s: pkcs11.pin_file is not set: this "
			"program reads the PIN from a file (pin_credential "
			"is the broker's, under its unit); set it too\n",
			cfg->path);
	return cfg->pkcs11_pin_file;
}

/*
 * Run as root with the config's `user` set, the token is that user's: its
 * files must stay readable by the broker, so this program becomes that
 * user before it touches the token, once it has opened the PIN files it
 * needs (the config's if pin, and other_pin if any) as root.
 */
static int become_broker_user(const struct kb_config *cfg, bool pin,
			      const char *other_pin)
{
	char err[512];

	if (cfg->user == NULL || geteuid() != 0)
		return 0;
	if ((pin && kb_secret_file_keep(cfg->pkcs11_pin_file, err,
					sizeof(err)) != 0) ||
	    (other_pin != NULL &&
	     kb_secret_file_keep(other_pin, err, sizeof(err)) != 0) ||
	    kb_user_drop(cfg->user, err, sizeof(err)) != 0) {
		fprintf(stderr, "keybrokerctl: %s\n", err);
		return -1;
	}
	return 0;
}

/*
 * Opens the token of the config; as_user: as the broker's user (see
 * become_broker_user), for commands that write to it.
 */
static int open_keystore_in(const struct kb_config *cfg, const char *so_pin,
			    const char *slot, bool as_user,
			    struct kb_keystore **ks)
{
	struct kb_keystore_params p = {
		.module = cfg->pkcs11_module,
		.token_uri = cfg->pkcs11_token,
		.pin_file = cfg->pkcs11_pin_file,
		.allow_rsa1_5 = cfg->allow_rsa1_5,
		/* This program again, which runs the check (see main). */
		.confirm_exe = "/proc/self/exe",
		.recoverable_days = cfg->recoverable_days,
		.allow_import = cfg->allow_import,
		.init_any_slot = slot == NULL,
	};
	char err[512], *end;

	if (slot != NULL) {
		errno = 0;
		p.init_slot = strtoul(slot, &end, 10);
		if (*end != '\0' || end == slot || errno != 0) {
			fprintf(stderr,
				"keybrokerctl: --slot '%.32s' is not a "
				"slot id (keybrokerctl slots)\n",
				slot);
			return -1;
		}
	}
	if (pin_file_of(cfg) == NULL ||
	    (as_user && become_broker_user(cfg, true, so_pin) != 0))
		return -1;
	if (kb_keystore_open(&p, so_pin, ks, err, sizeof(err)) !=
	    KB_STATUS_OK) {
		fprintf(stderr, "keybrokerctl: %s\n", err);
		return -1;
	}
	return 0;
}

static int open_keystore(const struct kb_config *cfg, struct kb_keystore **ks)
{
	return open_keystore_in(cfg, NULL, NULL, true, ks);
}

static int cmd_init_token(const struct kb_config *cfg, int argc, char **argv)
{
	enum { OPT_SLOT = 256 };
	static const struct option opts[] = {
		{ "so-pin-file", required_argument, NULL, 's' },
		{ "slot", required_argument, NULL, OPT_SLOT },
		{ NULL, 0, NULL, 0 },
	};
	struct kb_keystore *ks;
	const char *so_pin = NULL, *slot = NULL;
	char err[512];
	int c;

	while ((c = getopt_long(argc, argv, "s:", opts, NULL)) != -1) {
		if (c == 's')
			so_pin = optarg;
		else if (c == OPT_SLOT)
			slot = optarg;
		else
			return 2;
	}
	if (so_pin == NULL || optind != argc) {
		fprintf(stderr, "keybrokerctl: init-token needs "
				"--so-pin-file FILE (and --slot ID to choose "
				"the slot)\n");
		return 2;
	}
	if (open_keystore_in(cfg, so_pin, slot, true, &ks) != 0)
		return 1;
	printf("initialised token '%s'\n", kb_keystore_token_label(ks));
	if (kb_issuer_create(ks, err, sizeof(err)) != KB_STATUS_OK) {
		fprintf(stderr, "keybrokerctl: %s\n", err);
		kb_keystore_free(ks);
		return 1;
	}
	printf("created the token-signing key for identity tokens\n");
	kb_keystore_free(ks);
	return 0;
}

static int cmd_create_key(const struct kb_config *cfg, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "size", required_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	struct kb_version_spec spec = { .enabled = true,
					.key_ops = KB_KEYOPS_ALL };
	struct kb_keystore *ks;
	struct kb_key_info info;
	char err[512], *end;
	unsigned long bits = 2048;
	int c, r;

	while ((c = getopt_long(argc, argv, "s:", opts, NULL)) != -1) {
		if (c != 's')
			return 2;
		bits = strtoul(optarg, &end, 10);
		if (*end != '\0' ||
		    (bits != 2048 && bits != 3072 && bits != 4096)) {
			fprintf(stderr, "keybrokerctl: --size must be 2048, "
					"3072 or 4096\n");
			return 2;
		}
	}
	if (optind + 1 != argc) {
		fprintf(stderr, "keybrokerctl: create-key needs one NAME\n");
		return 2;
	}
	if (open_keystore(cfg, &ks) != 0)
		return 1;
	spec.bits = (unsigned int)bits;
	r = kb_lifecycle_add_version(ks, argv[optind], &spec, &info, err,
				     sizeof(err));
	if (r != KB_STATUS_OK)
		fprintf(stderr, "keybrokerctl: create-key %s: %s\n",
			argv[optind], err);
	else
		print_version(&info, (void *)cfg);
	kb_keystore_free(ks);
	return r == KB_STATUS_OK ? 0 : 1;
}

static int cmd_list_keys(const struct kb_config *cfg, int argc, char **argv)
{
	struct kb_keystore *ks;

	if (argc != 1) {
		fprintf(stderr, "keybrokerctl: list-keys takes no arguments\n");
		return 2;
	}
	if (open_keystore(cfg, &ks) != 0)
		return 1;
	kb_keystore_foreach(ks, print_version, (void *)cfg);
	kb_keystore_free(ks);
	return 0;
}

static int usage_repair(void)
{
	fprintf(stderr, "keybrokerctl: repair-key needs NAME, VERSION (32 "
			"lowercase hex) and one of --enabled or --disabled "
			"(and --current to make it the current version)\n");
	return 2;
}

static int cmd_set_enabled(const struct kb_config *cfg, int argc, char **argv,
			   bool enabled)
{
	struct kb_version_update u = { .set = KB_SET_ENABLED,
				       .enabled = enabled };
	struct kb_keystore *ks;
	struct kb_key_info info;
	char err[512];
	int r;

	if (argc != 3 || !kb_name_valid(argv[1], strlen(argv[1])) ||
	    !kb_version_valid(argv[2], strlen(argv[2]))) {
		fprintf(stderr,
			"keybrokerctl: %s needs NAME and VERSION (32 "
			"lowercase hex)\n",
			argv[0]);
		return 2;
	}
	if (open_keystore(cfg, &ks) != 0)
		return 1;
	r = kb_lifecycle_update(ks, argv[1], argv[2], &u, &info, err,
				sizeof(err));
	if (r != KB_STATUS_OK)
		fprintf(stderr, "keybrokerctl: %s: %s\n", argv[0], err);
	else
		printf("key %s version %s %s\n", argv[1], argv[2],
		       enabled ? "enabled" : "disabled");
	kb_keystore_free(ks);
	return r == KB_STATUS_OK ? 0 : 1;
}

static int cmd_repair_key(const struct kb_config *cfg, int argc, char **argv)
{
	enum { OPT_ENABLED = 1, OPT_DISABLED, OPT_CURRENT };
	static const struct option opts[] = {
		{ "enabled", no_argument, NULL, OPT_ENABLED },
		{ "disabled", no_argument, NULL, OPT_DISABLED },
		{ "current", no_argument, NULL, OPT_CURRENT },
		{ NULL, 0, NULL, 0 },
	};
	struct kb_keystore *ks;
	bool current = false;
	int c, r, enabled = -1;
	char err[512];

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == OPT_CURRENT)
			current = true;
		else if ((c == OPT_ENABLED || c == OPT_DISABLED) &&
			 enabled == -1)
			enabled = c == OPT_ENABLED;
		else
			return usage_repair();
	}
	if (enabled == -1 || optind + 2 != argc ||
	    !kb_name_valid(argv[optind], strlen(argv[optind])) ||
	    !kb_version_valid(argv[optind + 1], strlen(argv[optind + 1])))
		return usage_repair();
	if (open_keystore(cfg, &ks) != 0)
		return 1;
	r = kb_lifecycle_repair(ks, argv[optind], argv[optind + 1],
				enabled == 1, current, err, sizeof(err));
	if (r != KB_STATUS_OK)
		fprintf(stderr, "keybrokerctl: repair-key: %s\n", err);
	else
		printf("key %s version %s repaired, %s%s (running brokers see "
		       "it within a second)\n",
		       argv[optind], argv[optind + 1],
		       enabled == 1 ? "enabled" : "disabled",
		       current ? ", current" : "");
	kb_keystore_free(ks);
	return r == KB_STATUS_OK ? 0 : 1;
}

static int sign_admin(const unsigned char *digest, unsigned char *sig,
		      void *arg)
{
	return kb_issuer_sign(arg, NULL, digest, sig) == KB_STATUS_OK ? 0 : -1;
}

/* A lifetime: seconds, or a number with s, m, h or d; -1 if invalid. */
static long long parse_ttl(const char *text)
{
	long long v, unit = 1, r;
	char *end;

	errno = 0;
	v = strtoll(text, &end, 10);
	if (end == text || errno != 0 || v < 0)
		return -1;
	if (*end != '\0') {
		unit = end[0] == 's' ? 1 :
		       end[0] == 'm' ? 60 :
		       end[0] == 'h' ? 3600 :
		       end[0] == 'd' ? 86400 :
				       0;
		if (unit == 0 || end[1] != '\0')
			return -1;
	}
	return __builtin_mul_overflow(v, unit, &r) ? -1 : r;
}

static int cmd_token(const struct kb_config *cfg, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "ttl", required_argument, NULL, 't' },
		{ "out", required_argument, NULL, 'o' },
		{ "force", no_argument, NULL, 'f' },
		{ NULL, 0, NULL, 0 },
	};
	struct kb_jwt_mint m = { .ttl_s = cfg->token_lifetime_s };
	char tok[2048], jti[33], kid[KB_VERSION_LEN + 1], err[512];
	const char *out = NULL;
	struct kb_keystore *ks;
	bool force = false;
	EVP_PKEY *pub;
	int c, n, r;

	while ((c = getopt_long(argc, argv, "t:o:f", opts, NULL)) != -1) {
		if (c == 'o') {
			out = optarg;
			continue;
		}
		if (c == 'f') {
			force = true;
			continue;
		}
		if (c != 't')
			return 2;
		m.ttl_s = parse_ttl(optarg);
		if (m.ttl_s < 60 || m.ttl_s > cfg->token_max_lifetime_s) {
			fprintf(stderr,
				"keybrokerctl: --ttl '%.32s': must be 60 s to "
				"%lld s (tokens.max_lifetime), e.g. 3600, 30m, "
				"12h\n",
				optarg, cfg->token_max_lifetime_s);
			return 2;
		}
	}
	if (optind + 1 != argc) {
		fprintf(stderr, "keybrokerctl: token needs one IDENTITY\n");
		return 2;
	}
	if (kb_config_identity(cfg, argv[optind]) == NULL) {
		fprintf(stderr, "keybrokerctl: no identity '%.64s' in %s\n",
			argv[optind], cfg->path);
		return 2;
	}
	/*
	 * Only a signature, nothing written to the token: as the caller,
	 * whose the output file is.
	 */
	if (open_keystore_in(cfg, NULL, NULL, false, &ks) != 0)
		return 1;
	if ((pub = kb_issuer_key(ks, kid)) == NULL) {
		fprintf(stderr, "keybrokerctl: the token has no token-signing "
				"key yet (keybrokerd makes it at start)\n");
		kb_keystore_free(ks);
		return 1;
	}
	EVP_PKEY_free(pub);
	m.issuer = cfg->token_issuer;
	m.audience = cfg->token_audience;
	m.subject = argv[optind];
	m.kid = kid;
	m.now = (int64_t)time(NULL);
	n = kb_jwt_mint(&m, sign_admin, ks, tok, sizeof(tok), jti);
	kb_keystore_free(ks);
	if (n < 0) {
		fprintf(stderr, "keybrokerctl: signing the token failed\n");
		return 1;
	}
	tok[n] = '\n'; /* for its NUL: the token is written as a line */
	r = kb_output_save(out, force, tok, (size_t)n + 1, err, sizeof(err));
	explicit_bzero(tok, sizeof(tok));
	if (r != 0) {
		fprintf(stderr, "keybrokerctl: %s\n", err);
		return 1;
	}
	fprintf(stderr, "token %s for identity '%s', expires in %lld s\n", jti,
		argv[optind], (long long)m.ttl_s);
	return 0;
}

static int cmd_jwks(const struct kb_config *cfg, int argc, char **argv)
{
	char kid[KB_VERSION_LEN + 1], *jwk;
	struct kb_keystore *ks;
	EVP_PKEY *pub;

	if (argc != 1) {
		fprintf(stderr, "keybrokerctl: jwks takes no arguments\n");
		return 2;
	}
	if (open_keystore(cfg, &ks) != 0)
		return 1;
	pub = kb_issuer_key(ks, kid);
	jwk = pub ? kb_jwk_ec_json(pub, kid) : NULL;
	EVP_PKEY_free(pub);
	kb_keystore_free(ks);
	if (jwk == NULL) {
		fprintf(stderr, "keybrokerctl: the token has no token-signing "
				"key yet\n");
		return 1;
	}
	printf("{\"keys\":[%s]}\n", jwk);
	free(jwk);
	return 0;
}

/*
 * SIGHUP to the broker behind the config's socket: to the process that
 * listens there, through its pidfd (SO_PEERPIDFD), so a recycled pid is
 * never signalled; by pid only on kernels without SO_PEERPIDFD.
 */
static int signal_broker(const struct kb_config *cfg)
{
	struct ucred cred;
	socklen_t len;
	char why[256];
	int fd, pidfd = -1, r = -1;

	if (ctl_connect(cfg->socket_path, &fd, &cred, why, sizeof(why)) != 0)
		goto out;
	len = sizeof(pidfd);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) == 0) {
		r = pidfd_send_signal(pidfd, SIGHUP, NULL, 0);
	} else if (errno == ENOPROTOOPT) {
		/* A kernel before 6.5: the pid is all there is. */
		r = kill(cred.pid, SIGHUP);
	} else {
		/* E.g. the listening process is gone: its pid may be reused. */
		snprintf(why, sizeof(why),
			 "cannot name the listening process (SO_PEERPIDFD: "
			 "%s); not signalling a pid that may have been reused",
			 strerror(errno));
		goto out;
	}
	if (r != 0)
		snprintf(why, sizeof(why), "%s", strerror(errno));
out:
	if (r != 0)
		fprintf(stderr,
			"keybrokerctl: cannot signal the broker on %s: "
			"%s\n",
			cfg->socket_path, why);
	if (pidfd >= 0)
		close(pidfd);
	if (fd >= 0)
		close(fd);
	return r;
}

/*
 * Tells the running broker that jti is revoked (revokeToken), so that it
 * refuses it whether or not the token kept the revocation.
 */
static int tell_broker_revoked(const struct kb_config *cfg, const char *jti)
{
	json_t *req = json_pack("{s:i, s:s, s:s}", "id", 1, "op", "revokeToken",
				"jti", jti);
	json_t *reply = NULL, *e;
	char why[256], buf[2048], *line = NULL;
	struct ucred cred;
	int fd = -1, r = -1;

	snprintf(why, sizeof(why), "out of memory");
	if (req == NULL ||
	    (line = kb_json_text(req, JSON_COMPACT, NULL)) == NULL)
		goto out;
	/* The request is one line: jansson escapes newlines in strings. */
	if (ctl_connect(cfg->socket_path, &fd, &cred, why, sizeof(why)) != 0 ||
	    ctl_request(fd, line, buf, sizeof(buf), BROKER_REPLY_TIMEOUT_S, why,
			sizeof(why)) != 0)
		goto out;
	if ((reply = json_loads(buf, JSON_DISABLE_EOF_CHECK, NULL)) == NULL) {
		snprintf(why, sizeof(why), "its reply is not JSON");
	} else if (json_object_get(reply, "result") != NULL) {
		r = 0;
	} else {
		e = json_object_get(json_object_get(reply, "error"), "message");
		snprintf(why, sizeof(why), "it answered: %.200s",
			 json_is_string(e) ? json_string_value(e) : "?");
	}
out:
	if (r != 0)
		fprintf(stderr,
			"keybrokerctl: cannot tell the broker on %s: %s\n",
			cfg->socket_path, why);
	if (fd >= 0)
		close(fd);
	json_decref(reply);
	json_decref(req);
	free(line);
	return r;
}

static int cmd_revoke(const struct kb_config *cfg, int argc, char **argv)
{
	struct kb_keystore *ks;
	char err[512];
	int r = 1;

	if (argc != 2) {
		fprintf(stderr, "keybrokerctl: revoke needs one JTI\n");
		return 2;
	}
	if (argv[1][0] == '\0' || strlen(argv[1]) > KB_REVOKED_JTI_MAX) {
		fprintf(stderr,
			"keybrokerctl: revoke: a token id is 1-%d "
			"bytes\n",
			KB_REVOKED_JTI_MAX);
		return 2;
	}
	if (open_keystore(cfg, &ks) == 0) {
		if (kb_identity_revoke(ks, argv[1], err, sizeof(err)) ==
		    KB_STATUS_OK)
			r = 0;
		else
			fprintf(stderr, "keybrokerctl: revoke: %s\n", err);
		kb_keystore_free(ks);
	}
	if (r == 0)
		printf("revoked token %s\n", argv[1]);
	/* Told either way: a revocation the token lost still holds there. */
	if (tell_broker_revoked(cfg, argv[1]) == 0)
		fprintf(stderr,
			"keybrokerctl: the running broker refuses it "
			"from now on%s\n",
			r == 0 ? "" :
				 " (until it restarts: run revoke again once "
				 "the token can keep it)");
	else if (r == 0)
		fprintf(stderr, "keybrokerctl: a broker started later, or "
				"reloaded, will refuse it\n");
	return r;
}

static int cmd_reload(const struct kb_config *cfg, int argc, char **argv)
{
	if (argc != 1) {
		fprintf(stderr, "keybrokerctl: reload takes no arguments\n");
		return 2;
	}
	if (signal_broker(cfg) != 0)
		return 1;
	printf("asked the broker to reload (see its log for the result)\n");
	return 0;
}

static int cmd_enable_key(const struct kb_config *cfg, int argc, char **argv)
{
	return cmd_set_enabled(cfg, argc, argv, true);
}

static int cmd_disable_key(const struct kb_config *cfg, int argc, char **argv)
{
	return cmd_set_enabled(cfg, argc, argv, false);
}

/*
 * The module and URI of the config, not yet on a token; pin_file: a PIN
 * file the command reads besides the config's, or NULL if it reads none.
 */
static struct p11_token *load_module_of(const struct kb_config *cfg,
					const char *pin_file)
{
	struct p11_token *tok;
	char err[512];

	if (become_broker_user(cfg, pin_file != NULL, pin_file) != 0)
		return NULL;
	if (p11_token_load(cfg->pkcs11_module, cfg->pkcs11_token, &tok, err,
			   sizeof(err)) == KB_STATUS_OK)
		return tok;
	fprintf(stderr, "keybrokerctl: %s\n", err);
	return NULL;
}

static void print_flag(bool on, const char *what, bool *first)
{
	if (!on)
		return;
	printf("%s%s", *first ? "" : ", ", what);
	*first = false;
}

static void print_memory(const char *what, long long bytes)
{
	if (bytes >= 0)
		printf("  %s %lld KiB free", what, bytes / 1024);
}

/* keybrokerctl slots: every slot of the module and what it holds. */
static int cmd_slots(const struct kb_config *cfg, int argc, char **argv)
{
	struct p11_token *tok;
	struct p11_slot *slots;
	char err[512];
	size_t n, i;
	bool first;

	if (argc != 1) {
		fprintf(stderr, "keybrokerctl: slots takes no arguments\n");
		return 2;
	}
	if ((tok = load_module_of(cfg, NULL)) == NULL)
		return 1;
	if (p11_token_slots(tok, &slots, &n, err, sizeof(err)) !=
	    KB_STATUS_OK) {
		fprintf(stderr, "keybrokerctl: %s\n", err);
		p11_token_free(tok);
		return 1;
	}
	printf("module %s, config token %s\n", cfg->pkcs11_module,
	       cfg->pkcs11_token);
	for (i = 0; i < n; i++) {
		printf("slot %lu%s  %s\n", (unsigned long)slots[i].id,
		       slots[i].selected ? "  (the config's token)" : "",
		       slots[i].description);
		if (!slots[i].has_token) {
			printf("  no token\n");
			continue;
		}
		printf("  token '%s'  serial %s  %s %s\n  ", slots[i].label,
		       slots[i].serial, slots[i].manufacturer, slots[i].model);
		first = true;
		print_flag(slots[i].flags & CKF_TOKEN_INITIALIZED,
			   "initialized", &first);
		print_flag(!(slots[i].flags & CKF_TOKEN_INITIALIZED),
			   "not initialized (init-token --slot)", &first);
		print_flag(slots[i].flags & CKF_USER_PIN_INITIALIZED,
			   "user PIN set", &first);
		print_flag(slots[i].flags & CKF_LOGIN_REQUIRED,
			   "login required", &first);
		print_flag(slots[i].flags & CKF_WRITE_PROTECTED,
			   "write-protected", &first);
		print_flag(slots[i].flags & CKF_USER_PIN_COUNT_LOW,
			   "user PIN count low", &first);
		print_flag(slots[i].flags & CKF_USER_PIN_LOCKED,
			   "USER PIN LOCKED (init-pin)", &first);
		print_flag(slots[i].flags & CKF_SO_PIN_LOCKED, "SO PIN LOCKED",
			   &first);
		print_memory("private", slots[i].free_private);
		print_memory("public", slots[i].free_public);
		printf("\n");
	}
	free(slots);
	p11_token_free(tok);
	return 0;
}

/*
 * set-pin --new-pin-file F: the user PIN from the config's PIN file's to
 * F's; init-pin --so-pin-file F: the user PIN set to the config's PIN
 * file's, by the SO. PINs only ever come from files.
 */
static int cmd_pin(const struct kb_config *cfg, int argc, char **argv,
		   bool as_so)
{
	static const struct option opts[] = {
		{ "new-pin-file", required_argument, NULL, 'n' },
		{ "so-pin-file", required_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	const char *file = NULL;
	struct p11_token *tok;
	char err[512];
	int c, r;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if ((c != 's' && c != 'n') || (c == 's') != as_so)
			goto usage;
		file = optarg;
	}
	if (file == NULL || optind != argc)
		goto usage;
	if (pin_file_of(cfg) == NULL ||
	    (tok = load_module_of(cfg, file)) == NULL)
		return 1;
	if ((r = p11_token_read_pin(tok, cfg->pkcs11_pin_file, err,
				    sizeof(err))) == KB_STATUS_OK &&
	    (r = p11_token_select(tok, err, sizeof(err))) == KB_STATUS_OK)
		r = as_so ? p11_token_init_pin(tok, file, err, sizeof(err)) :
			    p11_token_set_pin(tok, file, err, sizeof(err));
	if (r != KB_STATUS_OK)
		fprintf(stderr, "keybrokerctl: %s: %s\n", argv[0], err);
	else if (as_so)
		printf("token '%s': the user PIN is now the one in %s\n",
		       p11_token_label(tok), cfg->pkcs11_pin_file);
	else
		printf("token '%s': the user PIN is now the one in %s; put it "
		       "in %s (or point pkcs11.pin_file there) and restart "
		       "the brokers\n",
		       p11_token_label(tok), file, cfg->pkcs11_pin_file);
	p11_token_free(tok);
	return r == KB_STATUS_OK ? 0 : 1;
usage:
	fprintf(stderr, "keybrokerctl: %s\n",
		as_so ? "init-pin needs --so-pin-file FILE" :
			"set-pin needs --new-pin-file FILE");
	return 2;
}

static int cmd_set_pin(const struct kb_config *cfg, int argc, char **argv)
{
	return cmd_pin(cfg, argc, argv, false);
}

static int cmd_init_pin(const struct kb_config *cfg, int argc, char **argv)
{
	return cmd_pin(cfg, argc, argv, true);
}

/* keybrokerctl key ...: through the broker's socket (ctl_keys.h). */
static int cmd_key(const struct kb_config *cfg, int argc, char **argv)
{
	return ctl_keys(cfg->socket_path, argc, argv);
}

/* keybrokerctl identity token|revoke ... */
static int cmd_identity(const struct kb_config *cfg, int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "token") == 0)
		return cmd_token(cfg, argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "revoke") == 0)
		return cmd_revoke(cfg, argc - 1, argv + 1);
	fprintf(stderr, "keybrokerctl: identity token NAME [--ttl D] | "
			"identity revoke JTI\n");
	return 2;
}

typedef int (*command_fn)(const struct kb_config *, int, char **);

/*
 * The commands; "direct" ones work on the token with the PIN and are
 * recorded in the broker's audit trail by this process (the broker
 * records what goes through its socket, and its reloads).
 */
static const struct {
	const char *name;
	command_fn fn;
	bool direct;
} commands[] = {
	{ "init-token", cmd_init_token, true },
	{ "create-key", cmd_create_key, true },
	{ "list-keys", cmd_list_keys, true },
	{ "enable-key", cmd_enable_key, true },
	{ "disable-key", cmd_disable_key, true },
	{ "repair-key", cmd_repair_key, true },
	{ "identity", cmd_identity, true },
	{ "jwks", cmd_jwks, true },
	{ "reload", cmd_reload, false },
	{ "key", cmd_key, false },
	{ "slots", cmd_slots, true },
	{ "set-pin", cmd_set_pin, true },
	{ "init-pin", cmd_init_pin, true },
	{ NULL, NULL, false },
};

/*
 * The record of a direct command: what was run (its arguments, never a
 * secret: PINs and keys come from files), by whom, and how it ended
 * ("started" before it runs, then "ok" or "failed" with its exit status).
 */
static json_t *admin_record(int argc, char **argv, const char *result,
			    int status)
{
	json_t *args = json_array(), *rec;
	int i;

	for (i = 1; i < argc; i++)
		json_array_append_new(args, json_string(argv[i]));
	rec = json_pack("{s:s, s:s, s:o, s:s, s:{s:I, s:I, s:I}}", "event",
			"admin", "op", argv[0], "args", args, "result", result,
			"peer", "uid", (json_int_t)getuid(), "gid",
			(json_int_t)getgid(), "pid", (json_int_t)getpid());
	if (rec != NULL && strcmp(result, "started") != 0)
		json_object_set_new(rec, "exit", json_integer(status));
	return rec;
}

/* Appends a record of the command; 0, or -1 (said) if not written. */
static int record(struct kb_audit *audit, int argc, char **argv,
		  const char *result, int status)
{
	json_t *rec = admin_record(argc, argv, result, status);
	int r = rec != NULL ? kb_audit_append(audit, rec, true) : -1;

	json_decref(rec);
	if (r != 0)
		fprintf(stderr,
			"keybrokerctl: %s: the audit trail cannot be written "
			"(see the message above)\n",
			argv[0]);
	return r;
}

/*
 * Runs a direct command recorded in the broker's trail: its start before
 * it runs (refused if that cannot be written, as the broker refuses
 * management then), and its end.
 */
static int run_recorded(const struct kb_config *cfg, command_fn fn, int argc,
			char **argv)
{
	struct kb_audit *audit;
	char err[512];
	int r;

	if (!cfg->audit.enabled)
		return fn(cfg, argc, argv);
	audit = kb_audit_open(&cfg->audit, "keybrokerctl", NULL, err,
			      sizeof(err));
	if (audit == NULL)
		fprintf(stderr, "keybrokerctl: %s: audit trail: %s\n", argv[0],
			err);
	if (audit == NULL || record(audit, argc, argv, "started", 0) != 0) {
		fprintf(stderr,
			"keybrokerctl: %s: refused, as the broker "
			"refuses management while its trail cannot be "
			"written\n",
			argv[0]);
		kb_audit_close(audit);
		return 1;
	}
	r = fn(cfg, argc, argv);
	if (record(audit, argc, argv, r == 0 ? "ok" : "failed", r) != 0) {
		fprintf(stderr, "keybrokerctl: %s: done, but not its record\n",
			argv[0]);
		if (r == 0)
			r = 1;
	}
	kb_audit_close(audit);
	return r;
}

int main(int argc, char **argv)
{
	enum { OPT_VERSION = 256 };
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, OPT_VERSION },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = DEFAULT_CONFIG, *cmd;
	struct kb_config *cfg;
	char err[512];
	int c, r;

	kb_log_init("keybrokerctl", KB_LOG_WARN);
	kb_secret_harden_process();
	/* jansson wipes what it frees: keys to import pass through it. */
	kb_proto_init();
	/* This program run again to confirm its own token writes. */
	if (argc >= 2 && strcmp(argv[1], P11_CONFIRM_COMMAND) == 0)
		return p11_confirm_main(argc - 1, argv + 1);
	while ((c = getopt_long(argc, argv, "+c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case OPT_VERSION:
			printf("keybrokerctl %s\n", KB_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	cmd = argv[optind];
	argc -= optind;
	argv += optind;
	optind = 0; /* full re-initialisation of getopt for the command */
	for (c = 0; commands[c].name != NULL; c++)
		if (strcmp(cmd, commands[c].name) == 0)
			break;
	if (commands[c].name == NULL) {
		fprintf(stderr,
			"keybrokerctl: unknown command '%.64s' "
			"(see --help)\n",
			cmd);
		return 2;
	}
	if (kb_config_load(path, &cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "keybrokerctl: %s\n", err);
		return 1;
	}
	r = commands[c].direct ? run_recorded(cfg, commands[c].fn, argc, argv) :
				 commands[c].fn(cfg, argc, argv);
	kb_config_free(cfg);
	return r;
}
