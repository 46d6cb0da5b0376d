/* SPDX-License-Identifier: MIT */
/*
 * The audit trail's keys in the token: an EC P-256 pair labelled
 * "keybroker-audit" that signs checkpoints (sign-only, non-extractable),
 * and a 32-byte HMAC secret labelled "keybroker-audit-hmac" that links
 * the uses of one wrapped value without the trail holding it
 * (docs/audit.md). Shared by every broker on the token.
 */
#ifndef KB_AUDITKEY_H
#define KB_AUDITKEY_H

#include <openssl/evp.h>
#include <stddef.h>

#include "kb_trail.h"

struct kb_keystore;
struct kb_keyworker;

/*
 * Makes whichever of the two keys the token lacks (none if an object of
 * its label is there, refused or not: the log says why). 0, or a
 * KB_ERR_* with err.
 */
int kb_auditkey_ensure(struct kb_keystore *ks, char *err, size_t errlen);

/*
 * A new reference to the audit public key and its keyid
 * (kb_trail_keyid); NULL if the token has none usable.
 */
EVP_PKEY *kb_auditkey_public(struct kb_keystore *ks,
			     char keyid[KB_TRAIL_KEYID_LEN + 1]);

/* The checkpoint signature (ES256, r || s) of text, on w's session. */
int kb_auditkey_sign(struct kb_keystore *ks, struct kb_keyworker *w,
		     const char *text, size_t len,
		     unsigned char sig[KB_TRAIL_SIG_LEN]);

/* HMAC-SHA-256 of in[0..len) under the audit secret, on w's session. */
int kb_auditkey_hmac(struct kb_keystore *ks, struct kb_keyworker *w,
		     const unsigned char *in, size_t len,
		     unsigned char mac[32]);

#endif
