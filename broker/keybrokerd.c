// SPDX-License-Identifier: MIT
/* keybrokerd: the key broker daemon. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "kb_audit.h"
#include "kb_auditkey.h"
#include "kb_config.h"
#include "kb_issuer.h"
#include "kb_jwk.h"
#include "kb_keystore.h"
#include "kb_lifecycle.h"
#include "kb_listen.h"
#include "kb_log.h"
#include "kb_peer.h"
#include "kb_policy.h"
#include "kb_proto.h"
#include "kb_secret.h"
#include "kb_record.h"
#include "kb_server.h"
#include "kb_user.h"
#include "p11_confirm.h"

#define DEFAULT_CONFIG "/etc/keybroker/keybroker.conf"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: keybrokerd [-c FILE] [-t]\n"
		"\n"
		"Serves wrapKey / unwrapKey / getKey on RSA keys held in a\n"
		"PKCS#11 token to local services over a Unix socket. Runs in\n"
		"the foreground and logs to stderr. Started as root with the\n"
		"config's user set, it becomes that user once the socket and\n"
		"the token are open. Under systemd (keybrokerd.socket and\n"
		".service) it takes the socket passed, and reports readiness,\n"
		"status and watchdog pings; see keybrokerd(8).\n"
		"\n"
		"  -c, --config FILE   configuration (default %s)\n"
		"  -t, --check-config  check the configuration and everything\n"
		"                      start-up checks short of logging in to\n"
		"                      the token (module, PIN file, socket\n"
		"                      directory, JWKS files, unit bindings,\n"
		"                      the user to run as),\n"
		"                      then exit\n"
		"  -h, --help          this text\n"
		"  -V, --version       print the version and exit\n"
		"\n"
		"signals: SIGTERM/SIGINT finish requests in flight and exit 0;\n"
		"         SIGHUP reloads the configuration (identities, issuers,\n"
		"         access) atomically and re-reads the token's keys\n",
		DEFAULT_CONFIG);
}

static void log_key(const struct kb_key_info *info, void *arg)
{
	int *n = arg;

	if ((*n)++ == 0)
		kb_info("unwrap paths: RSA-OAEP via %s, RSA-OAEP-256 via %s, "
			"RSA1_5 %s",
			kb_path_name(info->path[KB_ALG_RSA_OAEP]),
			kb_path_name(info->path[KB_ALG_RSA_OAEP_256]),
			kb_path_name(info->path[KB_ALG_RSA1_5]));
	if (info->damaged)
		kb_warn("key %s version %s: RSA-HSM %u, damaged (metadata "
			"unreadable): refused until keybrokerctl repair-key %s "
			"%s --enabled|--disabled",
			info->name, info->version, info->bits, info->name,
			info->version);
	else
		kb_info("key %s version %s: RSA-HSM %u, %s", info->name,
			info->version, info->bits,
			info->enabled ? "enabled" : "disabled");
}

/*
 * The PIN's file: the credential systemd passed when the config names
 * one and the broker runs under a unit that has credentials, else
 * pin_file. Into buf; NULL with a message when there is neither.
 */
static const char *pin_path(const struct kb_config *cfg, char *buf,
			    size_t buflen, char *err, size_t errlen)
{
	const char *dir = getenv("CREDENTIALS_DIRECTORY");

	if (cfg->pkcs11_pin_credential != NULL && dir != NULL &&
	    dir[0] == '/') {
		snprintf(buf, buflen, "%s/%s", dir, cfg->pkcs11_pin_credential);
		return buf;
	}
	if (cfg->pkcs11_pin_file != NULL)
		return cfg->pkcs11_pin_file;
	snprintf(err, errlen,
		 "%s: pkcs11.pin_credential '%s': $CREDENTIALS_DIRECTORY is "
		 "not set (it comes from a unit's LoadCredential=); outside "
		 "the unit, pkcs11.pin_file names the PIN",
		 cfg->path, cfg->pkcs11_pin_credential);
	return NULL;
}

/*
 * Started as root with a user: what the broker reads or writes once it
 * is that user (the configuration, at each reload too; the JWKS files;
 * the trail's directory) must be that user's to use.
 */
static int check_user_access(const struct kb_config *cfg, char *err,
			     size_t errlen)
{
	struct kb_user_access *want;
	char why[384];
	size_t i, n = 0;
	int r;

	if (cfg->user == NULL || geteuid() != 0)
		return 0;
	if ((want = calloc(cfg->n_issuers + 2, sizeof(*want))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	want[n++] = (struct kb_user_access){ cfg->path, false };
	for (i = 0; i < cfg->n_issuers; i++)
		want[n++] = (struct kb_user_access){ cfg->issuers[i].jwks_path,
						     false };
	if (cfg->audit.enabled)
		want[n++] =
			(struct kb_user_access){ cfg->audit.directory, true };
	r = kb_user_check_access(cfg->user, want, n, why, sizeof(why));
	free(want);
	if (r != 0)
		snprintf(err, errlen, "%s: user: %s", cfg->path, why);
	return r;
}

/*
 * Everything start-up checks before it logs in to the token, so that -t
 * passes only configurations that can start. Names the failed check.
 */
static int preflight(const struct kb_config *cfg, const char *pin, char *err,
		     size_t errlen)
{
	struct kb_jwks *jwks;
	const char *warn;
	char why[384];
	size_t i;
	int fd;

	if (kb_user_check(cfg->user, &warn, why, sizeof(why)) != 0) {
		snprintf(err, errlen, "%s: user: %s", cfg->path, why);
		return -1;
	}
	if (warn != NULL)
		kb_warn("%s", warn);
	if (check_user_access(cfg, err, errlen) != 0)
		return -1;
	if (kb_peer_check_bindings(cfg, err, errlen) != 0)
		return -1;
	if (p11_token_check_module(cfg->pkcs11_module, why, sizeof(why)) !=
	    KB_STATUS_OK) {
		snprintf(err, errlen, "%s: pkcs11.module: %s", cfg->path, why);
		return -1;
	}
	if ((fd = kb_secret_file_open(pin, why, sizeof(why))) < 0) {
		snprintf(err, errlen, "%s: pkcs11.%s: %s", cfg->path,
			 pin == cfg->pkcs11_pin_file ? "pin_file" :
						       "pin_credential",
			 why);
		return -1;
	}
	close(fd);
	if (kb_listener_check_dir(cfg->socket_path, err, errlen) != 0)
		return -1;
	for (i = 0; i < cfg->n_issuers; i++) {
		if (kb_jwks_load(cfg->issuers[i].jwks_path, &jwks, why,
				 sizeof(why)) != 0) {
			snprintf(err, errlen, "%s:%d: setting 'jwks': %s",
				 cfg->path, cfg->issuers[i].line, why);
			return -1;
		}
		kb_jwks_free(jwks);
	}
	return 0;
}

/*
 * Services start with a soft open-file limit of 1024 under systemd; a
 * broker that serves many connections raises it to the hard limit, as
 * systemd advises for such daemons.
 */
static void raise_fd_limit(void)
{
	struct rlimit rl;
	rlim_t was;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max)
		return;
	was = rl.rlim_cur;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		kb_warn("cannot raise the open-file limit from %llu: %s",
			(unsigned long long)was, strerror(errno));
	else
		kb_info("open-file limit raised from %llu to %llu",
			(unsigned long long)was,
			(unsigned long long)rl.rlim_max);
}

/*
 * The socket takes connections (into its backlog) before the token is
 * open; a SIGTERM, SIGINT or SIGHUP from then on waits, blocked, for the
 * event loop's signalfd rather than killing a broker half started.
 */
static void block_signals(void)
{
	sigset_t mask;

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
}

/* Identity tokens need the token-signing key: made once per token. */
static int ensure_issuer_key(struct kb_keystore *ks)
{
	char kid[KB_VERSION_LEN + 1], err[256];
	EVP_PKEY *pub = kb_issuer_key(ks, kid);

	if (pub != NULL) {
		EVP_PKEY_free(pub);
		return 0;
	}
	if (kb_issuer_create(ks, err, sizeof(err)) != 0) {
		kb_err("creating the token-signing key: %s", err);
		return -1;
	}
	if ((pub = kb_issuer_key(ks, kid)) == NULL) {
		kb_err("the token-signing key just made is not in the token");
		return -1;
	}
	kb_info("created the token-signing key (EC P-256, kid %s)", kid);
	EVP_PKEY_free(pub);
	return 0;
}

/*
 * Purge protection: turned on for the token when the config asks, and
 * never off (the flag lives in the token); said at start either way.
 */
static int protect_purges(struct kb_keystore *ks, const struct kb_config *cfg)
{
	char err[512];

	if (cfg->purge_protection && !kb_lifecycle_purges_protected(ks)) {
		if (kb_lifecycle_protect_purges(ks, err, sizeof(err)) !=
		    KB_STATUS_OK) {
			kb_err("cannot turn purge protection on: %s", err);
			return -1;
		}
		kb_info("purge protection is now on for token '%s', for good",
			kb_keystore_token_label(ks));
	} else if (kb_lifecycle_purges_protected(ks)) {
		kb_info("purge protection is on for token '%s'%s",
			kb_keystore_token_label(ks),
			cfg->purge_protection ?
				"" :
				" (it cannot be turned off: keys.purge_"
				"protection = false changes nothing)");
	}
	return 0;
}

/* What the key store saw by itself, into the trail. */
static void record_notice(void *arg, const struct kb_notice *n)
{
	json_t *rec = kb_record_notice(n);

	if (rec != NULL)
		kb_audit_append(arg, rec, true);
	json_decref(rec);
}

/*
 * The trail, with its keys made in the token if need be: NULL with
 * *failed false when the config turns it off.
 */
static struct kb_audit *open_trail(const struct kb_config *cfg,
				   struct kb_keystore *ks, bool *failed)
{
	struct kb_audit *audit;
	char err[512];

	*failed = false;
	if (!cfg->audit.enabled) {
		kb_warn("audit.enabled is false: this broker keeps no audit "
			"trail");
		return NULL;
	}
	if (kb_auditkey_ensure(ks, err, sizeof(err)) != 0)
		kb_err("cannot make the audit keys in the token: %s", err);
	if ((audit = kb_audit_open(&cfg->audit, cfg->instance, ks, err,
				   sizeof(err))) == NULL) {
		kb_err("audit trail: %s", err);
		*failed = true;
		return NULL;
	}
	kb_keystore_observe(ks, record_notice, audit);
	return audit;
}

/* The first record of this run: the version, policy and audit key. */
static void record_start(struct kb_audit *audit, const struct kb_config *cfg)
{
	struct kb_audit_status st;
	json_t *rec;

	if (audit == NULL || (rec = kb_record_policy("start", cfg, "")) == NULL)
		return;
	kb_audit_status(audit, &st);
	json_object_set_new(rec, "release", json_string(KB_VERSION));
	if (st.keyid[0] != '\0')
		json_object_set_new(rec, "keyid", json_string(st.keyid));
	kb_audit_append(audit, rec, true);
	json_decref(rec);
}

static void record_stop(struct kb_audit *audit)
{
	json_t *rec = json_pack("{s:s}", "event", "stop");

	if (rec != NULL)
		kb_audit_append(audit, rec, true);
	json_decref(rec);
}

/*
 * Fixed allocator thresholds, at glibc's own starting values: left to
 * themselves they rise after the first large block is freed (up to 32
 * MiB), and then the heap that a burst of pipelined requests used stays
 * resident for good (2 MiB more here). Fixed, blocks of 128 KiB and more
 * are mappings of their own and free memory at the top of a heap goes
 * back past 128 KiB.
 */
static void tune_allocator(void)
{
	mallopt(M_MMAP_THRESHOLD, 128 * 1024);
	mallopt(M_TRIM_THRESHOLD, 128 * 1024);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = DEFAULT_CONFIG, *pin;
	char pin_buf[PATH_MAX];
	struct kb_keystore_params params;
	struct kb_keystore *ks = NULL;
	struct kb_config *cfg = NULL, *policy_cfg = NULL;
	struct kb_listener listener = { .fd = -1, .lock_fd = -1 };
	struct kb_policy_holder holder;
	struct kb_policy *pol;
	struct kb_audit *audit = NULL;
	bool check_only = false, audit_failed, was_root;
	char err[512];
	int c, r, nkeys = 0, status = 1;

	kb_log_init("keybrokerd", KB_LOG_INFO);
	tune_allocator();
	/* This program run again to confirm its own token writes. */
	if (argc >= 2 && strcmp(argv[1], P11_CONFIRM_COMMAND) == 0) {
		kb_secret_harden_process();
		return p11_confirm_main(argc - 1, argv + 1);
	}
	while ((c = getopt_long(argc, argv, "c:thV", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case 't':
			check_only = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("keybrokerd %s\n", KB_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (kb_secret_harden_process() != 0)
		kb_warn("cannot disable core dumps");
	block_signals();
	kb_proto_init();
	if (kb_config_load(path, &cfg, err, sizeof(err)) != 0 ||
	    (pin = pin_path(cfg, pin_buf, sizeof(pin_buf), err, sizeof(err))) ==
		    NULL ||
	    preflight(cfg, pin, err, sizeof(err)) != 0) {
		kb_err("%s", err);
		kb_config_free(cfg);
		return 1;
	}
	if (cfg->obsolete[0] != '\0')
		kb_warn("%s", cfg->obsolete);
	if (check_only) {
		printf("%s: configuration OK\n", path);
		kb_config_free(cfg);
		return 0;
	}
	kb_log_set_level(cfg->log_level);
	raise_fd_limit();
	/*
	 * The socket systemd passed (socket activation), else one of its
	 * own with its lock: a second broker stops here.
	 */
	if ((r = kb_listener_adopt(&listener, cfg->socket_path, err,
				   sizeof(err))) < 0 ||
	    (r == 0 &&
	     kb_listener_open(&listener, cfg->socket_path, cfg->socket_mode,
			      err, sizeof(err)) != 0)) {
		kb_err("%s", err);
		goto out;
	}
	if (r > 0)
		kb_info("socket activation: serving on the socket systemd "
			"passed, %s",
			cfg->socket_path);
	params = (struct kb_keystore_params){
		.module = cfg->pkcs11_module,
		.token_uri = cfg->pkcs11_token,
		.pin_file = pin,
		.allow_rsa1_5 = cfg->allow_rsa1_5,
		.confirm_exe = "/proc/self/exe",
		.recoverable_days = cfg->recoverable_days,
		.allow_import = cfg->allow_import,
	};
	if (kb_keystore_open(&params, NULL, &ks, err, sizeof(err)) != 0) {
		kb_err("%s", err);
		goto out;
	}
	kb_info("token '%s' open (module %s)", kb_keystore_token_label(ks),
		cfg->pkcs11_module);
	/*
	 * Root's part is done: the socket and the token are open. As the
	 * user already, what the manager may have left goes too.
	 */
	was_root = geteuid() == 0;
	if (cfg->user != NULL)
		r = kb_user_drop(cfg->user, err, sizeof(err));
	else
		r = was_root ? 0 : kb_user_shed(err, sizeof(err));
	if (r != 0) {
		kb_err("%s", err);
		goto out;
	}
	if (cfg->user != NULL && was_root)
		kb_info("now running as user '%s' (uid %u, gid %u), without "
			"capabilities",
			cfg->user, (unsigned int)getuid(),
			(unsigned int)getgid());
	if (ensure_issuer_key(ks) != 0)
		goto out;
	if (cfg->allow_rsa1_5)
		kb_keystore_ensure_rsa15_secret(ks); /* says why if it fails */
	if (protect_purges(ks, cfg) != 0)
		goto out;
	audit = open_trail(cfg, ks, &audit_failed);
	if (audit_failed)
		goto out;
	kb_keystore_foreach(ks, log_key, &nkeys);
	if (nkeys == 0)
		kb_warn("the token holds no keys yet (keybrokerctl create-key)");
	if (kb_config_load(path, &policy_cfg, err, sizeof(err)) != 0 ||
	    (pol = kb_policy_new(policy_cfg, ks, err, sizeof(err))) == NULL) {
		kb_err("%s", err);
		kb_config_free(policy_cfg);
		goto out;
	}
	kb_info("%zu identities, %zu external issuers, %zu access entries",
		policy_cfg->n_identities, policy_cfg->n_issuers,
		policy_cfg->n_grants);
	kb_policy_holder_init(&holder, pol);
	record_start(audit, policy_cfg);
	switch (kb_server_run(cfg, ks, &holder, &listener, audit)) {
	case 0:
		status = 0;
		break;
	case KB_SERVER_STUCK:
		/* A thread is still inside the module: touch nothing. */
		_exit(1);
	}
	kb_policy_holder_uninit(&holder);
	record_stop(audit);
out:
	/* Its thread stuck in the token: touch nothing, as above. */
	if (kb_audit_close(audit) != 0)
		_exit(1);
	kb_listener_uninit(&listener);
	kb_keystore_free(ks);
	kb_config_free(cfg);
	return status;
}
