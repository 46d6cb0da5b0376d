/* SPDX-License-Identifier: MIT */
/*
 * The access policy in force: identities and their bindings, the trusted
 * token issuers (this broker, with its key in the token, and the external
 * ones of the config with their JWKS), and the ACL. Built whole from one
 * configuration, immutable, reference-counted, and swapped atomically on
 * reload, so no request ever sees half of an old and half of a new policy.
 */
#ifndef KB_POLICY_H
#define KB_POLICY_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kb_acl.h"
#include "kb_config.h"
#include "kb_jwt.h"
#include "kb_keystore.h"
#include "kb_peer.h"

struct kb_policy {
	struct kb_config *cfg; /* owned */
	struct kb_acl *acl;
	struct kb_jwt_issuer *issuers; /* [0] is this broker, if it can sign */
	struct kb_jwks **jwks; /* one per issuer, owned */
	size_t n_issuers;
	bool self_issuer;
	char self_kid[KB_VERSION_LEN + 1];
	unsigned int refs;
};

/*
 * Builds a policy from cfg (taking it over on success) and the issuer key
 * of ks (none if ks is NULL: a policy that trusts only the config's
 * external issuers, as the request handler's tests use). Errors name the
 * file and line (e.g. an unreadable JWKS, or unit
 * bindings on a kernel that cannot serve them).
 */
struct kb_policy *kb_policy_new(struct kb_config *cfg, struct kb_keystore *ks,
				char *err, size_t errlen);
void kb_policy_free(struct kb_policy *pol);

/* The first system-assigned identity whose binding matches peer. */
const struct kb_identity_cfg *
kb_policy_system_identity(const struct kb_policy *pol,
			  const struct kb_peer *peer);

/*
 * Verifies token and maps it to an identity: tokens of this broker name
 * the identity in "sub"; an external issuer's subject goes through its
 * subjects list. Returns 0 with *id, *expires and the token's iss, sub
 * and jti ("" if it has none), or -1 with err.
 */
int kb_policy_authenticate(const struct kb_policy *pol, struct kb_keystore *ks,
			   const char *token, size_t len, int64_t now,
			   const struct kb_identity_cfg **id, int64_t *expires,
			   struct kb_token_ids *ids, char *err, size_t errlen);

/* A holder that hands out references to the current policy. */
struct kb_policy_holder {
	pthread_mutex_t lock;
	struct kb_policy *cur;
};

void kb_policy_holder_init(struct kb_policy_holder *h, struct kb_policy *pol);
void kb_policy_holder_uninit(struct kb_policy_holder *h);
struct kb_policy *kb_policy_get(struct kb_policy_holder *h);
void kb_policy_put(struct kb_policy_holder *h, struct kb_policy *pol);
/* Publishes pol; the old one goes when its last user puts it. */
void kb_policy_replace(struct kb_policy_holder *h, struct kb_policy *pol);

#endif
