// SPDX-License-Identifier: MIT
#include <libconfig.h>
#include <limits.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kb_config.h"
#include "kb_kid.h"

struct cfg_loader {
	const char *path;
	char *dir; /* directory of path, for relative paths */
	char *err;
	size_t errlen;
};

static int cfg_fail(struct cfg_loader *ld, const config_setting_t *s,
		    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int cfg_fail(struct cfg_loader *ld, const config_setting_t *s,
		    const char *fmt, ...)
{
	char msg[384];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (s != NULL)
		snprintf(ld->err, ld->errlen, "%s:%u: setting '%s': %s",
			 ld->path, config_setting_source_line(s),
			 config_setting_name(s) ? config_setting_name(s) : "",
			 msg);
	else
		snprintf(ld->err, ld->errlen, "%s: %s", ld->path, msg);
	return -1;
}

/* Known settings: anything else is a typo and refused. */
static const char *const top_keys[] = {
	"instance",	"socket",	   "log_level",
	"workers",	"max_connections", "max_pipeline",
	"idle_timeout", "request_timeout", "shutdown_grace",
	"allow_uids",	"pkcs11",	   "algorithms",
	NULL,
};
static const char *const pkcs11_keys[] = { "module", "token", "pin_file",
					   NULL };
static const char *const alg_keys[] = { "rsa1_5", NULL };

static int check_known(struct cfg_loader *ld, const config_setting_t *group,
		       const char *const *known)
{
	const config_setting_t *s;
	unsigned int i;
	size_t k;

	for (i = 0; (s = config_setting_get_elem(group, i)) != NULL; i++) {
		for (k = 0; known[k] != NULL; k++)
			if (strcmp(config_setting_name(s), known[k]) == 0)
				break;
		if (known[k] == NULL)
			return cfg_fail(ld, s, "unknown setting");
	}
	return 0;
}

static int get_string(struct cfg_loader *ld, const config_setting_t *group,
		      const char *name, bool required, const char *def,
		      const char **out)
{
	const config_setting_t *s = config_setting_get_member(group, name);

	if (s == NULL) {
		if (required)
			return cfg_fail(ld, group,
					"missing required setting '%s'", name);
		*out = def;
		return 0;
	}
	if (config_setting_type(s) != CONFIG_TYPE_STRING)
		return cfg_fail(ld, s, "must be a string");
	*out = config_setting_get_string(s);
	if ((*out)[0] == '\0')
		return cfg_fail(ld, s, "must not be empty");
	return 0;
}

static int get_int(struct cfg_loader *ld, const config_setting_t *group,
		   const char *name, int def, int min, int max, int *out)
{
	const config_setting_t *s = config_setting_get_member(group, name);
	long long v;

	if (s == NULL) {
		*out = def;
		return 0;
	}
	if (config_setting_type(s) != CONFIG_TYPE_INT &&
	    config_setting_type(s) != CONFIG_TYPE_INT64)
		return cfg_fail(ld, s, "must be an integer");
	v = config_setting_get_int64(s);
	if (v < min || v > max)
		return cfg_fail(ld, s, "must be between %d and %d", min, max);
	*out = (int)v;
	return 0;
}

static int get_bool(struct cfg_loader *ld, const config_setting_t *group,
		    const char *name, bool def, bool *out)
{
	const config_setting_t *s = config_setting_get_member(group, name);

	if (s == NULL) {
		*out = def;
		return 0;
	}
	if (config_setting_type(s) != CONFIG_TYPE_BOOL)
		return cfg_fail(ld, s, "must be true or false");
	*out = config_setting_get_bool(s) != 0;
	return 0;
}

static int get_group(struct cfg_loader *ld, const config_setting_t *parent,
		     const char *name, bool required, config_setting_t **out)
{
	config_setting_t *s = config_setting_get_member(parent, name);

	*out = s;
	if (s == NULL)
		return required ?
			       cfg_fail(ld, NULL, "missing required group '%s'",
					name) :
			       0;
	if (config_setting_type(s) != CONFIG_TYPE_GROUP)
		return cfg_fail(ld, s, "must be a group { ... }");
	return 0;
}

/* Resolves p against the config directory; returns a new string. */
static char *resolve_path(struct cfg_loader *ld, const char *p)
{
	size_t n;
	char *r;

	if (p[0] == '/')
		return strdup(p);
	n = strlen(ld->dir) + 1 + strlen(p) + 1;
	if ((r = malloc(n)) != NULL)
		snprintf(r, n, "%s/%s", ld->dir, p);
	return r;
}

static int load_uids(struct cfg_loader *ld, const config_setting_t *root,
		     struct kb_config *cfg)
{
	const config_setting_t *s =
		config_setting_get_member(root, "allow_uids");
	const config_setting_t *e;
	unsigned int i;
	long long v;

	if (s == NULL)
		return cfg_fail(
			ld, root,
			"missing required setting "
			"'allow_uids' (list of uids allowed to connect)");
	if (!config_setting_is_array(s) && !config_setting_is_list(s))
		return cfg_fail(ld, s,
				"must be a list of uids, e.g. [0, 1000]");
	for (i = 0; (e = config_setting_get_elem(s, i)) != NULL; i++) {
		if (config_setting_type(e) != CONFIG_TYPE_INT &&
		    config_setting_type(e) != CONFIG_TYPE_INT64)
			return cfg_fail(ld, s, "element %u is not an integer",
					i);
		v = config_setting_get_int64(e);
		if (v < 0 || v >= (long long)UINT32_MAX)
			return cfg_fail(ld, s, "element %u is not a valid uid",
					i);
		if (i >= KB_CONFIG_MAX_UIDS)
			return cfg_fail(ld, s, "more than %d uids",
					KB_CONFIG_MAX_UIDS);
		cfg->allow_uids[i] = (uid_t)v;
	}
	if (i == 0)
		return cfg_fail(ld, s, "must name at least one uid");
	cfg->n_allow_uids = i;
	return 0;
}

static int load_pkcs11(struct cfg_loader *ld, const config_setting_t *root,
		       struct kb_config *cfg)
{
	config_setting_t *g;
	const char *module, *token, *pin;

	if (get_group(ld, root, "pkcs11", true, &g) != 0 ||
	    check_known(ld, g, pkcs11_keys) != 0 ||
	    get_string(ld, g, "module", true, NULL, &module) != 0 ||
	    get_string(ld, g, "token", true, NULL, &token) != 0 ||
	    get_string(ld, g, "pin_file", true, NULL, &pin) != 0)
		return -1;
	if (strncmp(token, "pkcs11:", 7) != 0)
		return cfg_fail(ld, config_setting_get_member(g, "token"),
				"must be a PKCS#11 URI (RFC 7512) starting "
				"with 'pkcs11:'");
	if (strchr(module, '/') != NULL && module[0] != '/')
		return cfg_fail(ld, config_setting_get_member(g, "module"),
				"must be a registered p11-kit module name or "
				"an absolute path");
	cfg->pkcs11_module = strdup(module);
	cfg->pkcs11_token = strdup(token);
	cfg->pkcs11_pin_file = resolve_path(ld, pin);
	if (!cfg->pkcs11_module || !cfg->pkcs11_token || !cfg->pkcs11_pin_file)
		return cfg_fail(ld, NULL, "out of memory");
	return 0;
}

static int load_settings(struct cfg_loader *ld, const config_setting_t *root,
			 struct kb_config *cfg)
{
	const char *instance, *sock, *level;
	config_setting_t *algs;
	int idle, req, grace;

	if (check_known(ld, root, top_keys) != 0 ||
	    get_string(ld, root, "instance", true, NULL, &instance) != 0 ||
	    get_string(ld, root, "socket", true, NULL, &sock) != 0 ||
	    get_string(ld, root, "log_level", false, "info", &level) != 0 ||
	    get_int(ld, root, "workers", 0, 1, 64, &cfg->workers) != 0 ||
	    get_int(ld, root, "max_connections", 1024, 1, 65536,
		    &cfg->max_connections) != 0 ||
	    get_int(ld, root, "max_pipeline", 64, 1, 4096,
		    &cfg->max_pipeline) != 0 ||
	    get_int(ld, root, "idle_timeout", 300, 1, 86400, &idle) != 0 ||
	    get_int(ld, root, "request_timeout", 10, 1, 3600, &req) != 0 ||
	    get_int(ld, root, "shutdown_grace", 10, 0, 600, &grace) != 0 ||
	    load_uids(ld, root, cfg) != 0 || load_pkcs11(ld, root, cfg) != 0 ||
	    get_group(ld, root, "algorithms", false, &algs) != 0)
		return -1;
	if (algs != NULL &&
	    (check_known(ld, algs, alg_keys) != 0 ||
	     get_bool(ld, algs, "rsa1_5", false, &cfg->allow_rsa1_5) != 0))
		return -1;
	if (!kb_instance_valid(instance, strlen(instance)))
		return cfg_fail(ld, config_setting_get_member(root, "instance"),
				"must be 1-%d characters of A-Z a-z 0-9 . -",
				KB_INSTANCE_MAX);
	if (kb_log_level_parse(level, &cfg->log_level) != 0)
		return cfg_fail(ld,
				config_setting_get_member(root, "log_level"),
				"must be one of error, warning, info, debug");
	/* Unset: one worker per online CPU, at least two. */
	if (cfg->workers == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		cfg->workers = n < 2 ? 2 : n > 64 ? 64 : (int)n;
	}
	cfg->idle_timeout_ms = idle * 1000;
	cfg->request_timeout_ms = req * 1000;
	cfg->shutdown_grace_ms = grace * 1000;
	cfg->instance = strdup(instance);
	cfg->socket_path = resolve_path(ld, sock);
	if (!cfg->instance || !cfg->socket_path)
		return cfg_fail(ld, NULL, "out of memory");
	if (strlen(cfg->socket_path) >= 108)
		return cfg_fail(ld, config_setting_get_member(root, "socket"),
				"resolved path longer than 107 bytes");
	return 0;
}

int kb_config_load(const char *path, struct kb_config **out, char *err,
		   size_t errlen)
{
	struct cfg_loader ld = { .path = path, .err = err, .errlen = errlen };
	struct kb_config *cfg = NULL;
	const char *slash;
	char *dir;
	config_t lc;
	int r = -1;

	*out = NULL;
	config_init(&lc);
	if (config_read_file(&lc, path) != CONFIG_TRUE) {
		if (config_error_type(&lc) == CONFIG_ERR_FILE_IO)
			snprintf(err, errlen, "%s: cannot read file", path);
		else
			snprintf(err, errlen, "%s:%d: syntax error: %s", path,
				 config_error_line(&lc),
				 config_error_text(&lc));
		goto out_destroy;
	}
	slash = strrchr(path, '/');
	dir = slash == NULL ?
		      strdup(".") :
		      strndup(path, (size_t)(slash - path) + (slash == path));
	ld.dir = dir != NULL ? realpath(dir, NULL) : NULL;
	free(dir);
	if ((cfg = calloc(1, sizeof(*cfg))) == NULL || ld.dir == NULL ||
	    (cfg->path = strdup(path)) == NULL) {
		snprintf(err, errlen, "%s: out of memory", path);
		goto out_free;
	}
	if (load_settings(&ld, config_root_setting(&lc), cfg) != 0)
		goto out_free;
	*out = cfg;
	cfg = NULL;
	r = 0;
out_free:
	kb_config_free(cfg);
	free(ld.dir);
out_destroy:
	config_destroy(&lc);
	return r;
}

void kb_config_free(struct kb_config *cfg)
{
	if (cfg == NULL)
		return;
	free(cfg->path);
	free(cfg->instance);
	free(cfg->socket_path);
	free(cfg->pkcs11_module);
	free(cfg->pkcs11_token);
	free(cfg->pkcs11_pin_file);
	free(cfg);
}

bool kb_config_uid_allowed(const struct kb_config *cfg, uid_t uid)
{
	size_t i;

	for (i = 0; i < cfg->n_allow_uids; i++)
		if (cfg->allow_uids[i] == uid)
			return true;
	return false;
}
