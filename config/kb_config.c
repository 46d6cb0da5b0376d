// SPDX-License-Identifier: MIT
#include <errno.h>
#include <libconfig.h>
#include <openssl/evp.h>
#include <limits.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kb_config.h"
#include "kb_duration.h"
#include "kb_grant.h"
#include "kb_jws.h"
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
	"instance",
	"socket",
	"socket_mode",
	"log_level",
	"workers",
	"max_connections",
	"max_connections_per_uid",
	"max_unauthenticated_per_uid",
	"authenticate_timeout",
	"max_pipeline",
	"max_queued",
	"idle_timeout",
	"request_timeout",
	"shutdown_grace",
	"pkcs11",
	"algorithms",
	"tokens",
	"identities",
	"issuers",
	"access",
	"rate_limit",
	"keys",
	"audit",
	"user",
	NULL,
};
static const char *const audit_keys[] = {
	"enabled",
	"directory",
	"origin",
	"forward",
	"fsync_interval_ms",
	"checkpoint_records",
	"checkpoint_interval",
	"rotate_size_mb",
	"rotate_interval",
	"reserve_mb",
	"min_free_mb",
	NULL,
};
static const char *const lifecycle_keys[] = { "recoverable_days",
					      "purge_protection",
					      "min_rotation_period",
					      "allow_import", NULL };
static const char *const token_keys[] = { "issuer", "audience", "lifetime",
					  "max_lifetime", NULL };
static const char *const identity_keys[] = { "name", "assigned", "uids",
					     "gids", "units",	 "user_units",
					     NULL };
static const char *const issuer_keys[] = { "issuer",   "audience",
					   "jwks",     "algorithms",
					   "claim",    "max_lifetime",
					   "subjects", NULL };
static const char *const subject_keys[] = { "subject", "identity", NULL };
static const char *const access_keys[] = { "identity", "keys", "permissions",
					   "roles", NULL };
static const char *const rate_keys[] = { "rate", "burst", NULL };
static const char *const pkcs11_keys[] = { "module", "token", "pin_file",
					   "pin_credential", NULL };
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

/* A file mode written as a quoted octal string such as "0660". */
static int get_mode(struct cfg_loader *ld, const config_setting_t *group,
		    const char *name, const char *def, unsigned int *out)
{
	const config_setting_t *s = config_setting_get_member(group, name);
	const char *text = def;
	char *end;
	long m;

	if (s != NULL && (config_setting_type(s) == CONFIG_TYPE_INT ||
			  config_setting_type(s) == CONFIG_TYPE_INT64))
		return cfg_fail(ld, s,
				"must be a quoted octal string such as "
				"\"0660\" (unquoted, 0660 is read as the "
				"number 660)");
	if (get_string(ld, group, name, false, def, &text) != 0)
		return -1;
	m = strtol(text, &end, 8);
	if (*end != '\0' || m < 0 || m > 0777 || text[0] != '0')
		return cfg_fail(ld, s,
				"must be an octal mode string such as "
				"\"0660\"");
	*out = (unsigned int)m;
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

/* A list of strings (or one string) at group.name; may be absent. */
static int get_strings(struct cfg_loader *ld, const config_setting_t *group,
		       const char *name, char ***out, size_t *n)
{
	const config_setting_t *s = config_setting_get_member(group, name);
	const config_setting_t *e;
	unsigned int i, count;

	*out = NULL;
	*n = 0;
	if (s == NULL)
		return 0;
	if (config_setting_type(s) == CONFIG_TYPE_STRING) {
		count = 1;
	} else if (config_setting_is_array(s) || config_setting_is_list(s)) {
		count = (unsigned int)config_setting_length(s);
	} else {
		return cfg_fail(ld, s,
				"must be a string or a list of "
				"strings");
	}
	if (count > 1024)
		return cfg_fail(ld, s, "more than 1024 entries");
	if (count > 0 && (*out = calloc(count, sizeof(**out))) == NULL)
		return cfg_fail(ld, NULL, "out of memory");
	for (i = 0; i < count; i++) {
		e = config_setting_type(s) == CONFIG_TYPE_STRING ?
			    s :
			    config_setting_get_elem(s, i);
		if (config_setting_type(e) != CONFIG_TYPE_STRING ||
		    config_setting_get_string(e)[0] == '\0')
			return cfg_fail(ld, s,
					"element %u is not a non-empty "
					"string",
					i);
		if (((*out)[i] = strdup(config_setting_get_string(e))) == NULL)
			return cfg_fail(ld, NULL, "out of memory");
		(*n)++;
	}
	return 0;
}

static void free_strings(char **v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* A list of non-negative ids (uids or gids) at group.name; may be absent. */
static int get_ids(struct cfg_loader *ld, const config_setting_t *group,
		   const char *name, unsigned int **out, size_t *n)
{
	const config_setting_t *s = config_setting_get_member(group, name);
	const config_setting_t *e;
	unsigned int i;
	long long v;

	*out = NULL;
	*n = 0;
	if (s == NULL)
		return 0;
	if (!config_setting_is_array(s) && !config_setting_is_list(s))
		return cfg_fail(ld, s, "must be a list of ids, e.g. [0, 1000]");
	if (config_setting_length(s) > KB_CONFIG_MAX_UIDS)
		return cfg_fail(ld, s, "more than %d ids", KB_CONFIG_MAX_UIDS);
	if (config_setting_length(s) > 0 &&
	    (*out = calloc((size_t)config_setting_length(s), sizeof(**out))) ==
		    NULL)
		return cfg_fail(ld, NULL, "out of memory");
	for (i = 0; (e = config_setting_get_elem(s, i)) != NULL; i++) {
		if (config_setting_type(e) != CONFIG_TYPE_INT &&
		    config_setting_type(e) != CONFIG_TYPE_INT64)
			return cfg_fail(ld, s, "element %u is not an integer",
					i);
		v = config_setting_get_int64(e);
		if (v < 0 || v >= (long long)UINT32_MAX)
			return cfg_fail(ld, s, "element %u is not a valid id",
					i);
		(*out)[i] = (unsigned int)v;
		(*n)++;
	}
	return 0;
}

/* Identity names: 1-64 of [A-Za-z0-9._-]. */
static bool identity_name_valid(const char *s)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++) {
		char c = s[i];

		if (i >= KB_IDENTITY_MAX ||
		    !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == '-'))
			return false;
	}
	return i > 0;
}

/* A group-valued element of a list, checked against known keys. */
static int list_group(struct cfg_loader *ld, const config_setting_t *list,
		      unsigned int i, const char *const *known,
		      config_setting_t **out)
{
	*out = config_setting_get_elem(list, i);
	if (config_setting_type(*out) != CONFIG_TYPE_GROUP)
		return cfg_fail(ld, list, "element %u must be a group { ... }",
				i);
	return check_known(ld, *out, known);
}

static int get_list(struct cfg_loader *ld, const config_setting_t *root,
		    const char *name, config_setting_t **out)
{
	*out = config_setting_get_member(root, name);
	if (*out != NULL && !config_setting_is_list(*out))
		return cfg_fail(ld, *out, "must be a list ( {...}, {...} )");
	return 0;
}

/* A systemd service or scope unit name, as a process's unit is named. */
static bool unit_name_valid(const char *s)
{
	size_t i, len = strlen(s);

	if (len >= 256)
		return false;
	for (i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		      (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || strchr(":_.@\\-", s[i])))
			return false;
	return (len > 8 && strcmp(s + len - 8, ".service") == 0) ||
	       (len > 6 && strcmp(s + len - 6, ".scope") == 0);
}

static int check_units(struct cfg_loader *ld, const config_setting_t *g,
		       const char *name, char *const *units, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!unit_name_valid(units[i]))
			return cfg_fail(
				ld, config_setting_get_member(g, name),
				"'%.64s' is not a systemd service or "
				"scope unit name (e.g. \"etl.service\")",
				units[i]);
	return 0;
}

static int load_identity(struct cfg_loader *ld, const config_setting_t *g,
			 struct kb_config *cfg, struct kb_identity_cfg *id)
{
	struct kb_binding *b = &id->bind;
	const char *name, *assigned;

	id->line = (int)config_setting_source_line(g);
	if (get_string(ld, g, "name", true, NULL, &name) != 0 ||
	    get_string(ld, g, "assigned", false, "user", &assigned) != 0 ||
	    get_ids(ld, g, "uids", &b->uids, &b->n_uids) != 0 ||
	    get_ids(ld, g, "gids", &b->gids, &b->n_gids) != 0 ||
	    get_strings(ld, g, "units", &b->units, &b->n_units) != 0 ||
	    get_strings(ld, g, "user_units", &b->user_units,
			&b->n_user_units) != 0 ||
	    check_units(ld, g, "units", b->units, b->n_units) != 0 ||
	    check_units(ld, g, "user_units", b->user_units, b->n_user_units) !=
		    0)
		return -1;
	if (!identity_name_valid(name))
		return cfg_fail(ld, config_setting_get_member(g, "name"),
				"must be 1-%d of A-Z a-z 0-9 . _ -",
				KB_IDENTITY_MAX);
	if (kb_config_identity(cfg, name) != NULL)
		return cfg_fail(ld, config_setting_get_member(g, "name"),
				"identity '%s' is defined twice", name);
	if (strcmp(assigned, "system") != 0 && strcmp(assigned, "user") != 0)
		return cfg_fail(ld, config_setting_get_member(g, "assigned"),
				"must be \"system\" or \"user\"");
	id->system_assigned = strcmp(assigned, "system") == 0;
	if (id->system_assigned && b->n_uids == 0 && b->n_units == 0)
		return cfg_fail(ld, g,
				"a system-assigned identity needs uids "
				"or units to recognise its callers");
	/* Any user may name a unit of its own manager "pgdata.service". */
	if (b->n_user_units > 0 && b->n_uids == 0)
		return cfg_fail(ld, config_setting_get_member(g, "user_units"),
				"user units are named by their users: bind "
				"them together with 'uids'");
	if ((id->name = strdup(name)) == NULL)
		return cfg_fail(ld, NULL, "out of memory");
	return 0;
}

static int load_identities(struct cfg_loader *ld, const config_setting_t *root,
			   struct kb_config *cfg)
{
	config_setting_t *list, *g;
	unsigned int i, n;

	if (get_list(ld, root, "identities", &list) != 0)
		return -1;
	n = list ? (unsigned int)config_setting_length(list) : 0;
	if (n > 0 &&
	    (cfg->identities = calloc(n, sizeof(*cfg->identities))) == NULL)
		return cfg_fail(ld, NULL, "out of memory");
	for (i = 0; i < n; i++) {
		if (list_group(ld, list, i, identity_keys, &g) != 0 ||
		    load_identity(ld, g, cfg, &cfg->identities[i]) != 0) {
			cfg->n_identities = i + 1; /* freed on error */
			return -1;
		}
		cfg->n_identities = i + 1;
	}
	return 0;
}

static int load_subjects(struct cfg_loader *ld, const config_setting_t *g,
			 const struct kb_config *cfg, struct kb_issuer_cfg *is)
{
	config_setting_t *list, *sg;
	const char *subject, *identity;
	unsigned int i, n;

	if (get_list(ld, g, "subjects", &list) != 0)
		return -1;
	n = list ? (unsigned int)config_setting_length(list) : 0;
	if (n == 0)
		return cfg_fail(ld, g,
				"an issuer needs a 'subjects' list "
				"mapping its subjects to identities");
	if ((is->subjects = calloc(n, sizeof(*is->subjects))) == NULL)
		return cfg_fail(ld, NULL, "out of memory");
	for (i = 0; i < n; i++) {
		if (list_group(ld, list, i, subject_keys, &sg) != 0 ||
		    get_string(ld, sg, "subject", true, NULL, &subject) != 0 ||
		    get_string(ld, sg, "identity", true, NULL, &identity) != 0)
			return -1;
		if (kb_config_identity(cfg, identity) == NULL)
			return cfg_fail(
				ld, config_setting_get_member(sg, "identity"),
				"no identity named '%s'", identity);
		is->subjects[i].subject = strdup(subject);
		is->subjects[i].identity = strdup(identity);
		is->n_subjects++;
		if (!is->subjects[i].subject || !is->subjects[i].identity)
			return cfg_fail(ld, NULL, "out of memory");
	}
	return 0;
}

static int load_issuer(struct cfg_loader *ld, const config_setting_t *g,
		       const struct kb_config *cfg, struct kb_issuer_cfg *is)
{
	const char *issuer, *aud, *jwks, *claim;
	char **algs = NULL;
	size_t nalgs = 0, i;
	unsigned int a;
	int lifetime, r = -1;

	if (get_string(ld, g, "issuer", true, NULL, &issuer) != 0 ||
	    get_string(ld, g, "audience", true, NULL, &aud) != 0 ||
	    get_string(ld, g, "jwks", true, NULL, &jwks) != 0 ||
	    get_string(ld, g, "claim", false, "sub", &claim) != 0 ||
	    get_int(ld, g, "max_lifetime", 3600, 60, 31 * 86400, &lifetime) !=
		    0 ||
	    get_strings(ld, g, "algorithms", &algs, &nalgs) != 0)
		goto out;
	if (nalgs == 0) {
		cfg_fail(ld, g,
			 "an issuer needs an explicit 'algorithms' list "
			 "(RS256, PS256, ES256)");
		goto out;
	}
	for (i = 0; i < nalgs; i++) {
		if (kb_jws_alg_parse(algs[i], &a) != 0) {
			cfg_fail(ld, config_setting_get_member(g, "algorithms"),
				 "'%.32s' is not RS256, PS256 or ES256",
				 algs[i]);
			goto out;
		}
		is->algs |= a;
	}
	is->line = (int)config_setting_source_line(
		config_setting_get_member(g, "jwks"));
	is->issuer = strdup(issuer);
	is->audience = strdup(aud);
	is->claim = strdup(claim);
	is->jwks_path = resolve_path(ld, jwks);
	is->max_lifetime_s = lifetime;
	if (!is->issuer || !is->audience || !is->claim || !is->jwks_path) {
		cfg_fail(ld, NULL, "out of memory");
		goto out;
	}
	r = load_subjects(ld, g, cfg, is);
out:
	free_strings(algs, nalgs);
	return r;
}

static int load_issuers(struct cfg_loader *ld, const config_setting_t *root,
			struct kb_config *cfg)
{
	config_setting_t *list, *g;
	unsigned int i, j, n;

	if (get_list(ld, root, "issuers", &list) != 0)
		return -1;
	n = list ? (unsigned int)config_setting_length(list) : 0;
	if (n > 0 && (cfg->issuers = calloc(n, sizeof(*cfg->issuers))) == NULL)
		return cfg_fail(ld, NULL, "out of memory");
	for (i = 0; i < n; i++) {
		cfg->n_issuers = i + 1;
		if (list_group(ld, list, i, issuer_keys, &g) != 0 ||
		    load_issuer(ld, g, cfg, &cfg->issuers[i]) != 0)
			return -1;
		/* "iss" picks the keys: it must name one issuer only. */
		for (j = 0; j <= i; j++)
			if (strcmp(cfg->issuers[i].issuer,
				   j < i ? cfg->issuers[j].issuer :
					   cfg->token_issuer) == 0)
				return cfg_fail(
					ld,
					config_setting_get_member(g, "issuer"),
					"issuer '%.64s' is already "
					"configured%s",
					cfg->issuers[i].issuer,
					j == i ? " as this broker's "
						 "own (tokens.issuer)" :
						 "");
	}
	return 0;
}

static int load_grant(struct cfg_loader *ld, const config_setting_t *g,
		      const struct kb_config *cfg, struct kb_grant_cfg *gr)
{
	char **perms = NULL, **roles = NULL;
	size_t nperms = 0, nroles = 0, i;
	const char *identity;
	unsigned int bits;
	int r = -1;

	if (get_string(ld, g, "identity", true, NULL, &identity) != 0 ||
	    get_strings(ld, g, "keys", &gr->keys, &gr->n_keys) != 0 ||
	    get_strings(ld, g, "permissions", &perms, &nperms) != 0 ||
	    get_strings(ld, g, "roles", &roles, &nroles) != 0)
		goto out;
	if (kb_config_identity(cfg, identity) == NULL) {
		cfg_fail(ld, config_setting_get_member(g, "identity"),
			 "no identity named '%s'", identity);
		goto out;
	}
	if (gr->n_keys == 0) {
		cfg_fail(ld, g,
			 "an access entry needs 'keys' (names or "
			 "patterns such as \"etl-*\")");
		goto out;
	}
	for (i = 0; i < gr->n_keys; i++)
		if (!kb_pattern_valid(gr->keys[i])) {
			cfg_fail(ld, config_setting_get_member(g, "keys"),
				 "'%.64s' is not a key name or pattern "
				 "(A-Z a-z 0-9 - *)",
				 gr->keys[i]);
			goto out;
		}
	for (i = 0; i < nperms; i++) {
		if (kb_perm_parse(perms[i], &bits) != 0) {
			cfg_fail(ld,
				 config_setting_get_member(g, "permissions"),
				 "unknown permission '%.32s'", perms[i]);
			goto out;
		}
		gr->perms |= bits;
	}
	for (i = 0; i < nroles; i++) {
		if (kb_role_lookup(roles[i], &bits) != 0) {
			cfg_fail(ld, config_setting_get_member(g, "roles"),
				 "unknown role '%.48s'", roles[i]);
			goto out;
		}
		gr->perms |= bits;
	}
	if (gr->perms == 0) {
		cfg_fail(ld, g,
			 "an access entry needs 'permissions' or "
			 "'roles'");
		goto out;
	}
	if ((gr->identity = strdup(identity)) == NULL) {
		cfg_fail(ld, NULL, "out of memory");
		goto out;
	}
	r = 0;
out:
	free_strings(perms, nperms);
	free_strings(roles, nroles);
	return r;
}

static int load_access(struct cfg_loader *ld, const config_setting_t *root,
		       struct kb_config *cfg)
{
	config_setting_t *list, *g;
	unsigned int i, n;

	if (get_list(ld, root, "access", &list) != 0)
		return -1;
	n = list ? (unsigned int)config_setting_length(list) : 0;
	if (n > 0 && (cfg->grants = calloc(n, sizeof(*cfg->grants))) == NULL)
		return cfg_fail(ld, NULL, "out of memory");
	for (i = 0; i < n; i++) {
		cfg->n_grants = i + 1;
		if (list_group(ld, list, i, access_keys, &g) != 0 ||
		    load_grant(ld, g, cfg, &cfg->grants[i]) != 0)
			return -1;
	}
	return 0;
}

static int load_tokens(struct cfg_loader *ld, const config_setting_t *root,
		       struct kb_config *cfg)
{
	const char *issuer, *aud = "keybroker";
	char def_issuer[128];
	int life = 3600, max = 86400;
	config_setting_t *g;

	snprintf(def_issuer, sizeof(def_issuer), "keybroker://%s",
		 cfg->instance);
	issuer = def_issuer;
	if (get_group(ld, root, "tokens", false, &g) != 0)
		return -1;
	if (g != NULL &&
	    (check_known(ld, g, token_keys) != 0 ||
	     get_string(ld, g, "issuer", false, def_issuer, &issuer) != 0 ||
	     get_string(ld, g, "audience", false, "keybroker", &aud) != 0 ||
	     get_int(ld, g, "lifetime", 3600, 60, 86400, &life) != 0 ||
	     get_int(ld, g, "max_lifetime", 86400, 60, 90 * 86400, &max) != 0))
		return -1;
	if (life > max)
		return cfg_fail(ld, g,
				"tokens.lifetime exceeds "
				"tokens.max_lifetime");
	cfg->token_issuer = strdup(issuer);
	cfg->token_audience = strdup(aud);
	cfg->token_lifetime_s = life;
	cfg->token_max_lifetime_s = max;
	if (!cfg->token_issuer || !cfg->token_audience)
		return cfg_fail(ld, NULL, "out of memory");
	return 0;
}

static int load_rate_limit(struct cfg_loader *ld, const config_setting_t *root,
			   struct kb_config *cfg)
{
	const config_setting_t *r;
	config_setting_t *g;

	if (get_group(ld, root, "rate_limit", false, &g) != 0)
		return -1;
	if (g == NULL)
		return 0;
	if (check_known(ld, g, rate_keys) != 0 ||
	    get_int(ld, g, "burst", 0, 1, 1000000, &cfg->rate_burst) != 0)
		return -1;
	r = config_setting_get_member(g, "rate");
	if (r == NULL || (config_setting_type(r) != CONFIG_TYPE_FLOAT &&
			  config_setting_type(r) != CONFIG_TYPE_INT))
		return cfg_fail(ld, r ? r : g,
				"'rate' (requests per second "
				"per identity) must be a number");
	cfg->rate_per_s = config_setting_type(r) == CONFIG_TYPE_FLOAT ?
				  config_setting_get_float(r) :
				  (double)config_setting_get_int(r);
	if (cfg->rate_per_s <= 0 || cfg->rate_per_s > 1e6)
		return cfg_fail(ld, r, "must be between 0 and 1000000");
	if (cfg->rate_burst == 0)
		cfg->rate_burst =
			(int)(cfg->rate_per_s < 1 ? 1 : cfg->rate_per_s);
	return 0;
}

static int load_lifecycle(struct cfg_loader *ld, const config_setting_t *root,
			  struct kb_config *cfg)
{
	const char *period = "P7D";
	config_setting_t *g;

	cfg->recoverable_days = 90;
	cfg->min_rotation_s = 7 * 86400;
	if (get_group(ld, root, "keys", false, &g) != 0)
		return -1;
	if (g == NULL)
		return 0;
	if (check_known(ld, g, lifecycle_keys) != 0 ||
	    get_int(ld, g, "recoverable_days", 90, 7, 90,
		    &cfg->recoverable_days) != 0 ||
	    get_bool(ld, g, "purge_protection", false,
		     &cfg->purge_protection) != 0 ||
	    get_bool(ld, g, "allow_import", false, &cfg->allow_import) != 0 ||
	    get_string(ld, g, "min_rotation_period", false, "P7D", &period) !=
		    0)
		return -1;
	if (kb_duration_parse(period, strlen(period), &cfg->min_rotation_s) !=
	    0)
		return cfg_fail(
			ld, config_setting_get_member(g, "min_rotation_period"),
			"must be an ISO 8601 duration such as \"P7D\" "
			"or \"PT30S\"");
	return 0;
}

/* An ISO 8601 duration at group.name into seconds, within [min, max]. */
static int get_duration(struct cfg_loader *ld, const config_setting_t *group,
			const char *name, const char *def, int64_t min,
			int64_t max, int64_t *out)
{
	const char *text = def;

	if (get_string(ld, group, name, false, def, &text) != 0)
		return -1;
	if (kb_duration_parse(text, strlen(text), out) != 0 || *out < min ||
	    *out > max)
		return cfg_fail(ld, config_setting_get_member(group, name),
				"must be an ISO 8601 duration such as \"P1D\" "
				"or \"PT1H\", from %lld to %lld seconds",
				(long long)min, (long long)max);
	return 0;
}

static int load_audit(struct cfg_loader *ld, const config_setting_t *root,
		      struct kb_config *cfg)
{
	struct kb_audit_cfg *a = &cfg->audit;
	const char *dir = "audit", *origin = NULL, *forward = "journal";
	int rotate_mb, reserve_mb, free_mb;
	char host[256];
	config_setting_t *g;

	if (gethostname(host, sizeof(host)) != 0 || host[0] == '\0')
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	if (get_group(ld, root, "audit", false, &g) != 0)
		return -1;
	/* The defaults, as the settings below have them. */
	a->enabled = true;
	a->fsync_interval_ms = 50;
	a->checkpoint_records = 1000;
	a->checkpoint_interval_s = 60;
	rotate_mb = 64;
	a->rotate_interval_s = 86400;
	reserve_mb = 4;
	free_mb = 64;
	if (g != NULL &&
	    (check_known(ld, g, audit_keys) != 0 ||
	     get_bool(ld, g, "enabled", true, &a->enabled) != 0 ||
	     get_string(ld, g, "directory", false, "audit", &dir) != 0 ||
	     get_string(ld, g, "origin", false, host, &origin) != 0 ||
	     get_string(ld, g, "forward", false, "journal", &forward) != 0 ||
	     get_int(ld, g, "fsync_interval_ms", 50, 0, 10000,
		     &a->fsync_interval_ms) != 0 ||
	     get_int(ld, g, "checkpoint_records", 1000, 1, 1000000,
		     &a->checkpoint_records) != 0 ||
	     get_int(ld, g, "checkpoint_interval", 60, 1, 86400,
		     &a->checkpoint_interval_s) != 0 ||
	     get_int(ld, g, "rotate_size_mb", 64, 1, 65536, &rotate_mb) != 0 ||
	     get_duration(ld, g, "rotate_interval", "P1D", 60, 366 * 86400,
			  &a->rotate_interval_s) != 0 ||
	     get_int(ld, g, "reserve_mb", 4, 1, 1024, &reserve_mb) != 0 ||
	     get_int(ld, g, "min_free_mb", 64, 0, 1048576, &free_mb) != 0))
		return -1;
	if (origin == NULL)
		origin = host;
	if (strlen(origin) > 255 || strpbrk(origin, "\n\r") != NULL)
		return cfg_fail(
			ld, g ? config_setting_get_member(g, "origin") : NULL,
			"must be one line of at most 255 bytes");
	if (strcmp(forward, "journal") == 0)
		a->forward = KB_AUDIT_FORWARD_JOURNAL;
	else if (strcmp(forward, "syslog") == 0)
		a->forward = KB_AUDIT_FORWARD_SYSLOG;
	else if (strcmp(forward, "none") == 0)
		a->forward = KB_AUDIT_FORWARD_NONE;
	else
		return cfg_fail(ld, config_setting_get_member(g, "forward"),
				"must be one of journal, syslog, none");
	a->rotate_size = (int64_t)rotate_mb << 20;
	a->reserve = (int64_t)reserve_mb << 20;
	a->min_free = (int64_t)free_mb << 20;
	a->directory = resolve_path(ld, dir);
	a->origin = strdup(origin);
	if (a->directory == NULL || a->origin == NULL)
		return cfg_fail(ld, NULL, "out of memory");
	return 0;
}

/* The PIN's sources: pin_file, pin_credential, or both. */
static int pin_sources(struct cfg_loader *ld, const config_setting_t *g,
		       const char *file, const char *cred,
		       struct kb_config *cfg)
{
	if (file == NULL && cred == NULL)
		return cfg_fail(ld, g, "needs pin_file or pin_credential");
	if (cred != NULL && (strlen(cred) > 255 || strchr(cred, '/') != NULL ||
			     strcmp(cred, ".") == 0 || strcmp(cred, "..") == 0))
		return cfg_fail(ld,
				config_setting_get_member(g, "pin_credential"),
				"must be a credential name: 1-255 bytes, no "
				"'/'");
	if ((file != NULL &&
	     (cfg->pkcs11_pin_file = resolve_path(ld, file)) == NULL) ||
	    (cred != NULL &&
	     (cfg->pkcs11_pin_credential = strdup(cred)) == NULL))
		return cfg_fail(ld, NULL, "out of memory");
	return 0;
}

static int load_pkcs11(struct cfg_loader *ld, const config_setting_t *root,
		       struct kb_config *cfg)
{
	config_setting_t *g;
	const char *module, *token, *pin, *cred;

	if (get_group(ld, root, "pkcs11", true, &g) != 0 ||
	    check_known(ld, g, pkcs11_keys) != 0 ||
	    get_string(ld, g, "module", true, NULL, &module) != 0 ||
	    get_string(ld, g, "token", true, NULL, &token) != 0 ||
	    get_string(ld, g, "pin_file", false, NULL, &pin) != 0 ||
	    get_string(ld, g, "pin_credential", false, NULL, &cred) != 0)
		return -1;
	if (strncmp(token, "pkcs11:", 7) != 0)
		return cfg_fail(ld, config_setting_get_member(g, "token"),
				"must be a PKCS#11 URI (RFC 7512) starting "
				"with 'pkcs11:'");
	if (strchr(module, '/') != NULL && module[0] != '/')
		return cfg_fail(ld, config_setting_get_member(g, "module"),
				"must be a registered p11-kit module name or "
				"an absolute path");
	if (pin_sources(ld, g, pin, cred, cfg) != 0)
		return -1;
	cfg->pkcs11_module = strdup(module);
	cfg->pkcs11_token = strdup(token);
	if (!cfg->pkcs11_module || !cfg->pkcs11_token)
		return cfg_fail(ld, NULL, "out of memory");
	return 0;
}

static int load_settings(struct cfg_loader *ld, const config_setting_t *root,
			 struct kb_config *cfg)
{
	const char *instance, *sock, *level, *user;
	const config_setting_t *old;
	config_setting_t *algs;
	int idle, req, grace, auth, unused;

	if (check_known(ld, root, top_keys) != 0 ||
	    get_string(ld, root, "instance", true, NULL, &instance) != 0 ||
	    get_string(ld, root, "socket", true, NULL, &sock) != 0 ||
	    get_string(ld, root, "log_level", false, "info", &level) != 0 ||
	    get_string(ld, root, "user", false, NULL, &user) != 0 ||
	    get_int(ld, root, "workers", 0, 1, 64, &cfg->workers) != 0 ||
	    get_int(ld, root, "max_connections", 4096, 1, 65536,
		    &cfg->max_connections) != 0 ||
	    get_int(ld, root, "max_connections_per_uid", 128, 1, 65536,
		    &cfg->max_connections_per_uid) != 0 ||
	    get_int(ld, root, "max_unauthenticated_per_uid", 16, 1, 65536,
		    &cfg->max_unauthenticated_per_uid) != 0 ||
	    get_int(ld, root, "authenticate_timeout", 10, 1, 30, &auth) != 0 ||
	    get_int(ld, root, "max_pipeline", 64, 1, 4096,
		    &cfg->max_pipeline) != 0 ||
	    get_int(ld, root, "max_queued", 1024, 1, 65536, &unused) != 0 ||
	    get_int(ld, root, "idle_timeout", 300, 1, 86400, &idle) != 0 ||
	    get_int(ld, root, "request_timeout", 10, 1, 3600, &req) != 0 ||
	    get_int(ld, root, "shutdown_grace", 10, 0, 600, &grace) != 0 ||
	    get_mode(ld, root, "socket_mode", "0666", &cfg->socket_mode) != 0 ||
	    load_pkcs11(ld, root, cfg) != 0 ||
	    get_group(ld, root, "algorithms", false, &algs) != 0)
		return -1;
	/* Still taken, so that an older file loads, and said. */
	if ((old = config_setting_get_member(root, "max_queued")) != NULL)
		snprintf(cfg->obsolete, sizeof(cfg->obsolete),
			 "%s:%u: setting 'max_queued' no longer has an effect "
			 "(the requests waiting for the token are bounded by "
			 "the connection limits); it can be removed",
			 ld->path, config_setting_source_line(old));
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
	cfg->authenticate_timeout_ms = auth * 1000;
	cfg->request_timeout_ms = req * 1000;
	cfg->shutdown_grace_ms = grace * 1000;
	cfg->instance = strdup(instance);
	cfg->socket_path = resolve_path(ld, sock);
	if (user != NULL && (cfg->user = strdup(user)) == NULL)
		return cfg_fail(ld, NULL, "out of memory");
	if (!cfg->instance || !cfg->socket_path)
		return cfg_fail(ld, NULL, "out of memory");
	if (strlen(cfg->socket_path) >= 108)
		return cfg_fail(ld, config_setting_get_member(root, "socket"),
				"resolved path longer than 107 bytes");
	if (load_tokens(ld, root, cfg) != 0 ||
	    load_identities(ld, root, cfg) != 0 ||
	    load_issuers(ld, root, cfg) != 0 ||
	    load_access(ld, root, cfg) != 0 ||
	    load_rate_limit(ld, root, cfg) != 0 ||
	    load_lifecycle(ld, root, cfg) != 0 ||
	    load_audit(ld, root, cfg) != 0)
		return -1;
	return 0;
}

/* Validates what libconfig read from path into a new configuration. */
static int load_parsed(const char *path, config_t *lc, struct kb_config **out,
		       char *err, size_t errlen)
{
	struct cfg_loader ld = { .path = path, .err = err, .errlen = errlen };
	struct kb_config *cfg = NULL;
	const char *slash;
	char *dir;
	int r = -1;

	slash = strrchr(path, '/');
	dir = slash == NULL ?
		      strdup(".") :
		      strndup(path, (size_t)(slash - path) + (slash == path));
	ld.dir = dir != NULL ? realpath(dir, NULL) : NULL;
	free(dir);
	if (ld.dir == NULL) {
		snprintf(err, errlen, "%s: cannot resolve its directory: %s",
			 path, strerror(errno));
		goto out;
	}
	if ((cfg = calloc(1, sizeof(*cfg))) == NULL ||
	    (cfg->path = strdup(path)) == NULL) {
		snprintf(err, errlen, "%s: out of memory", path);
		goto out;
	}
	if (load_settings(&ld, config_root_setting(lc), cfg) != 0)
		goto out;
	*out = cfg;
	cfg = NULL;
	r = 0;
out:
	kb_config_free(cfg);
	free(ld.dir);
	return r;
}

/* The SHA-256 of text[0..len) in hex: the policy's digest in the trail. */
static void digest_text(const char *text, size_t len, char hex[65])
{
	unsigned char md[32];

	EVP_Digest(text, len, md, NULL, EVP_sha256(), NULL);
	kb_hex_encode(hex, md, sizeof(md));
}

/*
 * The digest of the file at path as it is now (read once more: a file
 * replaced between the two reads gets the digest of what was read here,
 * which the next reload corrects). -1 if it cannot be read.
 */
static int digest_file(const char *path, char hex[65], char *err, size_t errlen)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char buf[8192], md[32];
	FILE *f = fopen(path, "re");
	size_t n;
	int r = -1;

	if (f == NULL || ctx == NULL ||
	    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
		goto out;
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		if (EVP_DigestUpdate(ctx, buf, n) != 1)
			goto out;
	if (ferror(f) || EVP_DigestFinal_ex(ctx, md, NULL) != 1)
		goto out;
	kb_hex_encode(hex, md, sizeof(md));
	r = 0;
out:
	if (r != 0)
		snprintf(err, errlen, "%s: cannot read file", path);
	EVP_MD_CTX_free(ctx);
	if (f != NULL)
		fclose(f);
	return r;
}

static void syntax_error(const char *path, const config_t *lc, char *err,
			 size_t errlen)
{
	snprintf(err, errlen, "%s:%d: syntax error: %s", path,
		 config_error_line(lc), config_error_text(lc));
}

int kb_config_load(const char *path, struct kb_config **out, char *err,
		   size_t errlen)
{
	config_t lc;
	int r = -1;

	*out = NULL;
	config_init(&lc);
	if (config_read_file(&lc, path) != CONFIG_TRUE) {
		if (config_error_type(&lc) == CONFIG_ERR_FILE_IO)
			snprintf(err, errlen, "%s: cannot read file", path);
		else
			syntax_error(path, &lc, err, errlen);
	} else if ((r = load_parsed(path, &lc, out, err, errlen)) == 0 &&
		   (r = digest_file(path, (*out)->digest, err, errlen)) != 0) {
		kb_config_free(*out);
		*out = NULL;
	}
	config_destroy(&lc);
	return r;
}

int kb_config_load_text(const char *path, const char *text,
			struct kb_config **out, char *err, size_t errlen)
{
	config_t lc;
	int r = -1;

	*out = NULL;
	config_init(&lc);
	if (config_read_string(&lc, text) != CONFIG_TRUE)
		syntax_error(path, &lc, err, errlen);
	else if ((r = load_parsed(path, &lc, out, err, errlen)) == 0)
		digest_text(text, strlen(text), (*out)->digest);
	config_destroy(&lc);
	return r;
}

void kb_config_free(struct kb_config *cfg)
{
	size_t i, j;

	if (cfg == NULL)
		return;
	free(cfg->path);
	free(cfg->instance);
	free(cfg->socket_path);
	free(cfg->user);
	free(cfg->pkcs11_module);
	free(cfg->pkcs11_token);
	free(cfg->pkcs11_pin_file);
	free(cfg->pkcs11_pin_credential);
	free(cfg->token_issuer);
	free(cfg->token_audience);
	for (i = 0; i < cfg->n_identities; i++) {
		free(cfg->identities[i].name);
		free(cfg->identities[i].bind.uids);
		free(cfg->identities[i].bind.gids);
		free_strings(cfg->identities[i].bind.units,
			     cfg->identities[i].bind.n_units);
		free_strings(cfg->identities[i].bind.user_units,
			     cfg->identities[i].bind.n_user_units);
	}
	free(cfg->identities);
	for (i = 0; i < cfg->n_issuers; i++) {
		struct kb_issuer_cfg *is = &cfg->issuers[i];

		free(is->issuer);
		free(is->audience);
		free(is->jwks_path);
		free(is->claim);
		for (j = 0; j < is->n_subjects; j++) {
			free(is->subjects[j].subject);
			free(is->subjects[j].identity);
		}
		free(is->subjects);
	}
	free(cfg->issuers);
	for (i = 0; i < cfg->n_grants; i++) {
		free(cfg->grants[i].identity);
		free_strings(cfg->grants[i].keys, cfg->grants[i].n_keys);
	}
	free(cfg->grants);
	free(cfg->audit.directory);
	free(cfg->audit.origin);
	free(cfg);
}

const struct kb_identity_cfg *kb_config_identity(const struct kb_config *cfg,
						 const char *name)
{
	size_t i;

	for (i = 0; i < cfg->n_identities; i++)
		if (cfg->identities[i].name != NULL &&
		    strcmp(cfg->identities[i].name, name) == 0)
			return &cfg->identities[i];
	return NULL;
}
