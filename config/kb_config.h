/* SPDX-License-Identifier: MIT */
/*
 * The broker's configuration: loaded from a libconfig file, validated as a
 * whole, then immutable. Relative paths are resolved against the directory
 * of the configuration file. docs/configuration.md documents every setting.
 */
#ifndef KB_CONFIG_H
#define KB_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "kb_log.h"

#define KB_CONFIG_MAX_UIDS 64

struct kb_config {
	char *path;
	char *instance;
	char *socket_path;
	enum kb_log_level log_level;

	int workers; /* default: one per online CPU, at least 2 */
	int max_connections;
	int max_pipeline; /* requests in flight per connection */
	int idle_timeout_ms; /* no request and no data for this long */
	int request_timeout_ms; /* a started line must complete in this */
	int shutdown_grace_ms; /* in-flight work allowed after SIGTERM */

	uid_t allow_uids[KB_CONFIG_MAX_UIDS];
	size_t n_allow_uids;

	char *pkcs11_module; /* registered p11-kit name or absolute path */
	char *pkcs11_token; /* RFC 7512 URI selecting the token */
	char *pkcs11_pin_file;

	bool allow_rsa1_5;
};

/*
 * Loads and validates path. On error returns -1 and writes a message naming
 * the file, the line and the setting into err.
 */
int kb_config_load(const char *path, struct kb_config **out, char *err,
		   size_t errlen);
void kb_config_free(struct kb_config *cfg);

bool kb_config_uid_allowed(const struct kb_config *cfg, uid_t uid);

#endif
