/* SPDX-License-Identifier: MIT */
/*
 * The broker's configuration: loaded from a libconfig file, validated as a
 * whole, then immutable. Relative paths are resolved against the directory
 * of the configuration file. docs/configuration.md documents every setting.
 */
#ifndef KB_CONFIG_H
#define KB_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

#include "kb_log.h"

#define KB_CONFIG_MAX_UIDS 64
#define KB_IDENTITY_MAX 64 /* bytes of an identity name */

/* Who may hold an identity: every non-empty list must match the peer. */
struct kb_binding {
	uid_t *uids;
	size_t n_uids;
	gid_t *gids;
	size_t n_gids;
	char **units; /* system units, e.g. "etl.service" */
	size_t n_units;
	char **user_units; /* units under the uid's own manager; with uids */
	size_t n_user_units;
};

struct kb_identity_cfg {
	char *name;
	bool system_assigned; /* getToken mints it from peer credentials */
	struct kb_binding bind;
	int line; /* for messages about its bindings */
};

struct kb_subject_cfg {
	char *subject; /* value of the issuer's identity claim */
	char *identity; /* the identity it maps to */
};

struct kb_issuer_cfg {
	char *issuer, *audience, *jwks_path, *claim;
	unsigned int algs; /* kb_jws_alg bits */
	long long max_lifetime_s;
	struct kb_subject_cfg *subjects;
	size_t n_subjects;
	int line; /* for messages about the JWKS file */
};

struct kb_grant_cfg {
	char *identity;
	char **keys; /* names or patterns */
	size_t n_keys;
	unsigned int perms; /* kb_perm bits, roles expanded */
};

enum kb_audit_forward {
	KB_AUDIT_FORWARD_NONE,
	KB_AUDIT_FORWARD_JOURNAL, /* native journald fields */
	KB_AUDIT_FORWARD_SYSLOG, /* LOG_AUTHPRIV */
};

/* audit { ... }: the trail (docs/audit.md) */
struct kb_audit_cfg {
	bool enabled;
	char *directory;
	char *origin; /* the chain's name; default: the host name */
	enum kb_audit_forward forward;
	int fsync_interval_ms; /* 0: each record synced before its reply */
	int checkpoint_records; /* sign after this many records */
	int checkpoint_interval_s; /* or this long, whichever is first */
	int64_t rotate_size; /* bytes */
	int64_t rotate_interval_s;
	int64_t reserve; /* bytes preallocated ahead of the records */
	int64_t min_free; /* warn below this much free space */
};

struct kb_config {
	char *path;
	char digest[65]; /* SHA-256 of the file's text, hex */
	char *instance;
	char *socket_path;
	enum kb_log_level log_level;

	int workers; /* default: one per online CPU, at least 2 */
	int max_connections; /* at most; lowered to fit the fd limit */
	int max_connections_per_uid;
	int max_unauthenticated_per_uid;
	int authenticate_timeout_ms; /* from connect to an identity */
	int max_pipeline; /* requests of one connection served in a turn */
	/* Settings that are taken but no longer act, said at start, or "". */
	char obsolete[256];
	int idle_timeout_ms; /* no request and no data for this long */
	int request_timeout_ms; /* a started line must complete in this */
	int shutdown_grace_ms; /* in-flight work allowed after SIGTERM */

	unsigned int socket_mode;
	char *user; /* started as root, the broker changes to it; or NULL */

	/* Identity tokens this broker issues. */
	char *token_issuer;
	char *token_audience;
	long long token_lifetime_s;
	long long token_max_lifetime_s;

	struct kb_identity_cfg *identities;
	size_t n_identities;
	struct kb_issuer_cfg *issuers;
	size_t n_issuers;
	struct kb_grant_cfg *grants;
	size_t n_grants;

	double rate_per_s; /* per identity; 0: unlimited */
	int rate_burst;

	char *pkcs11_module; /* registered p11-kit name or absolute path */
	char *pkcs11_token; /* RFC 7512 URI selecting the token */
	/*
	 * At least one: the PIN's file (the tools read it), and the name of
	 * the systemd credential the broker reads instead under its unit.
	 */
	char *pkcs11_pin_file;
	char *pkcs11_pin_credential;

	bool allow_rsa1_5;

	/* keys { ... }: the lifecycle of keys */
	int recoverable_days; /* a deleted key's retention, 7-90 */
	bool purge_protection; /* turn it on for the token (for good) */
	int64_t min_rotation_s; /* the shortest rotation a policy may ask */
	bool allow_import; /* importKey, and believing imported keys */

	struct kb_audit_cfg audit;
};

/*
 * Loads and validates path. On error returns -1 and writes a message naming
 * the file, the line and the setting into err.
 */
int kb_config_load(const char *path, struct kb_config **out, char *err,
		   size_t errlen);
/*
 * The same from text already in memory; path names it in messages and
 * anchors relative paths (for tests and fuzzing).
 */
int kb_config_load_text(const char *path, const char *text,
			struct kb_config **out, char *err, size_t errlen);
void kb_config_free(struct kb_config *cfg);

const struct kb_identity_cfg *kb_config_identity(const struct kb_config *cfg,
						 const char *name);

#endif
