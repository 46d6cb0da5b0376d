// SPDX-License-Identifier: MIT
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kb_identity.h"
#include "kb_issuer.h"
#include "kb_policy.h"

_Static_assert(sizeof(((struct kb_token_ids *)0)->jti) ==
			       sizeof(((struct kb_jwt_claims *)0)->jti) &&
		       sizeof(((struct kb_token_ids *)0)->sub) ==
			       sizeof(((struct kb_jwt_claims *)0)->subject),
	       "a caller keeps its token's jti and sub whole");

const struct kb_identity_cfg *
kb_policy_system_identity(const struct kb_policy *pol,
			  const struct kb_peer *peer)
{
	const struct kb_identity_cfg *id;
	size_t i;

	for (i = 0; i < pol->cfg->n_identities; i++) {
		id = &pol->cfg->identities[i];
		if (id->system_assigned && kb_peer_bound(&id->bind, peer))
			return id;
	}
	return NULL;
}

static int build_acl(struct kb_policy *pol, char *err, size_t errlen)
{
	const struct kb_grant_cfg *g;
	size_t i, k;

	if ((pol->acl = kb_acl_new()) == NULL)
		return -1;
	for (i = 0; i < pol->cfg->n_grants; i++) {
		g = &pol->cfg->grants[i];
		for (k = 0; k < g->n_keys; k++)
			if (kb_acl_grant(pol->acl, g->identity, g->keys[k],
					 g->perms) != 0) {
				snprintf(err, errlen, "%s: out of memory",
					 pol->cfg->path);
				return -1;
			}
	}
	return 0;
}

static int build_issuers(struct kb_policy *pol, struct kb_keystore *ks,
			 char *err, size_t errlen)
{
	const struct kb_config *cfg = pol->cfg;
	size_t n = cfg->n_issuers + 1, i, k = 0;
	char msg[400];
	EVP_PKEY *self;

	pol->issuers = calloc(n, sizeof(*pol->issuers));
	pol->jwks = calloc(n, sizeof(*pol->jwks));
	if (pol->issuers == NULL || pol->jwks == NULL)
		return -1;
	if (ks != NULL && (self = kb_issuer_key(ks, pol->self_kid)) != NULL) {
		pol->jwks[0] = kb_jwks_from_ec(self, pol->self_kid);
		EVP_PKEY_free(self);
		if (pol->jwks[0] == NULL)
			return -1;
		pol->issuers[0] = (struct kb_jwt_issuer){
			.issuer = cfg->token_issuer,
			.audience = cfg->token_audience,
			.algs = KB_JWS_ES256,
			.keys = pol->jwks[0],
			.max_lifetime_s = cfg->token_max_lifetime_s,
			.identity_claim = "sub",
			.low_s_only = true,
		};
		pol->self_issuer = true;
		k = 1;
	}
	for (i = 0; i < cfg->n_issuers; i++, k++) {
		const struct kb_issuer_cfg *is = &cfg->issuers[i];

		if (kb_jwks_load(is->jwks_path, &pol->jwks[k], msg,
				 sizeof(msg)) != 0) {
			snprintf(err, errlen, "%s:%d: setting 'jwks': %s",
				 cfg->path, is->line, msg);
			pol->n_issuers = k;
			return -1;
		}
		pol->issuers[k] = (struct kb_jwt_issuer){
			.issuer = is->issuer,
			.audience = is->audience,
			.algs = is->algs,
			.keys = pol->jwks[k],
			.max_lifetime_s = is->max_lifetime_s,
			.identity_claim = is->claim,
		};
	}
	pol->n_issuers = k;
	return 0;
}

struct kb_policy *kb_policy_new(struct kb_config *cfg, struct kb_keystore *ks,
				char *err, size_t errlen)
{
	struct kb_policy *pol = calloc(1, sizeof(*pol));

	snprintf(err, errlen, "out of memory");
	if (pol == NULL)
		return NULL;
	pol->cfg = cfg;
	pol->refs = 1;
	if (kb_peer_check_bindings(cfg, err, errlen) != 0 ||
	    build_acl(pol, err, errlen) != 0 ||
	    build_issuers(pol, ks, err, errlen) != 0) {
		pol->cfg = NULL; /* the caller keeps it */
		kb_policy_free(pol);
		return NULL;
	}
	return pol;
}

void kb_policy_free(struct kb_policy *pol)
{
	size_t i;

	if (pol == NULL)
		return;
	for (i = 0; i < pol->n_issuers; i++)
		kb_jwks_free(pol->jwks[i]);
	free(pol->jwks);
	free(pol->issuers);
	kb_acl_free(pol->acl);
	kb_config_free(pol->cfg);
	free(pol);
}

static bool revoked(const char *jti, void *arg)
{
	return kb_identity_revoked(arg, jti);
}

int kb_policy_authenticate(const struct kb_policy *pol, struct kb_keystore *ks,
			   const char *token, size_t len, int64_t now,
			   const struct kb_identity_cfg **id, int64_t *expires,
			   struct kb_token_ids *ids, char *err, size_t errlen)
{
	const struct kb_issuer_cfg *is;
	struct kb_jwt_claims c;
	const char *name = NULL;
	size_t i;

	*id = NULL;
	if (kb_jwt_verify(token, len, pol->issuers, pol->n_issuers, now,
			  revoked, ks, &c, err, errlen) != 0)
		return -1;
	if (pol->self_issuer && c.issuer == &pol->issuers[0]) {
		name = c.subject;
	} else {
		/* External issuer k maps to cfg->issuers[k - self]. */
		is = &pol->cfg->issuers[c.issuer - pol->issuers -
					(pol->self_issuer ? 1 : 0)];
		for (i = 0; i < is->n_subjects && name == NULL; i++)
			if (strcmp(is->subjects[i].subject, c.subject) == 0)
				name = is->subjects[i].identity;
		if (name == NULL) {
			snprintf(err, errlen,
				 "subject of issuer %s maps to no "
				 "identity",
				 is->issuer);
			return -1;
		}
	}
	if ((*id = kb_config_identity(pol->cfg, name)) == NULL) {
		snprintf(err, errlen, "token names no configured identity");
		return -1;
	}
	*expires = c.exp;
	snprintf(ids->iss, sizeof(ids->iss), "%s", c.issuer->issuer);
	snprintf(ids->sub, sizeof(ids->sub), "%s", c.subject);
	snprintf(ids->jti, sizeof(ids->jti), "%s", c.jti);
	return 0;
}

void kb_policy_holder_init(struct kb_policy_holder *h, struct kb_policy *pol)
{
	pthread_mutex_init(&h->lock, NULL);
	h->cur = pol;
}

void kb_policy_holder_uninit(struct kb_policy_holder *h)
{
	kb_policy_put(h, h->cur);
	h->cur = NULL;
	pthread_mutex_destroy(&h->lock);
}

struct kb_policy *kb_policy_get(struct kb_policy_holder *h)
{
	struct kb_policy *pol;

	pthread_mutex_lock(&h->lock);
	pol = h->cur;
	pol->refs++;
	pthread_mutex_unlock(&h->lock);
	return pol;
}

void kb_policy_put(struct kb_policy_holder *h, struct kb_policy *pol)
{
	bool last;

	if (pol == NULL)
		return;
	pthread_mutex_lock(&h->lock);
	last = --pol->refs == 0;
	pthread_mutex_unlock(&h->lock);
	if (last)
		kb_policy_free(pol);
}

void kb_policy_replace(struct kb_policy_holder *h, struct kb_policy *pol)
{
	struct kb_policy *old;

	pthread_mutex_lock(&h->lock);
	old = h->cur;
	h->cur = pol;
	pthread_mutex_unlock(&h->lock);
	kb_policy_put(h, old);
}
