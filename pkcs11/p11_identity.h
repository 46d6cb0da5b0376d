/* SPDX-License-Identifier: MIT */
/*
 * Revoked identity tokens. Their ids (jti) live in the token, one private
 * data object each, so revocations survive restarts and are shared by
 * every broker on the token; each catalogue load also reads them.
 *
 * p11_keystore_revoked answers from every id this process has known to
 * be revoked (true before the first catalogue: fail closed).
 * p11_keystore_revoke stores one in the token and confirms it by a fresh
 * load; an unconfirmed one is still remembered by this process and left
 * in the token in case it did arrive. p11_keystore_remember_revoked only
 * remembers (a running broker told by keybrokerctl).
 */
#ifndef P11_IDENTITY_H
#define P11_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>

#define P11_JTI_MAX 255 /* bytes of an identity-token id */

struct p11_keystore;

bool p11_keystore_revoked(struct p11_keystore *ks, const char *jti);
int p11_keystore_revoke(struct p11_keystore *ks, const char *jti, char *err,
			size_t errlen);
int p11_keystore_remember_revoked(struct p11_keystore *ks, const char *jti);

#endif
