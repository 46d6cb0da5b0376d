/* SPDX-License-Identifier: MIT */
/*
 * Revoked identity tokens. Their ids (jti) live in the token, one private
 * data object each, so revocations survive restarts and are shared by
 * every broker on the token; each catalogue load also reads them.
 *
 * kb_identity_revoked answers from every id this process has known to
 * be revoked (true before the first catalogue: fail closed).
 * kb_identity_revoke stores one in the token and confirms it by a fresh
 * load; an unconfirmed one is still remembered by this process and left
 * in the token in case it did arrive. kb_identity_remember_revoked only
 * remembers (a running broker told by keybrokerctl).
 */
#ifndef KB_IDENTITY_H
#define KB_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>

#define KB_REVOKED_JTI_MAX 255 /* bytes of an identity-token id */

struct kb_keystore;

bool kb_identity_revoked(struct kb_keystore *ks, const char *jti);
int kb_identity_revoke(struct kb_keystore *ks, const char *jti, char *err,
		       size_t errlen);
int kb_identity_remember_revoked(struct kb_keystore *ks, const char *jti);

#endif
