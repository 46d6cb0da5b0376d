/* SPDX-License-Identifier: MIT */
/*
 * libkeybroker: the C client of keybrokerd's protocol v1.
 *
 * A handle is one connection; calls on one handle may come from several
 * threads (they are serialised). Each call returns KEYBROKER_OK or a
 * negative status; after KEYBROKER_E_BROKER, keybroker_error_code() gives
 * the broker's error code ("Forbidden", "KeyNotFound", ...) and
 * keybroker_error_message() its message. A key is named by its name or by
 * a kid ("keybroker://<instance>/keys/<name>[/<version>]"); version may be
 * NULL for the current version; alg may be NULL for RSA-OAEP-256.
 */
#ifndef KEYBROKER_H
#define KEYBROKER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum keybroker_status {
	KEYBROKER_OK = 0,
	KEYBROKER_E_BROKER = -1, /* the broker answered with an error */
	KEYBROKER_E_IO = -2, /* cannot connect, send or receive */
	KEYBROKER_E_PROTOCOL = -3, /* the reply is not protocol v1 */
	KEYBROKER_E_ARGUMENT = -4, /* bad argument; nothing was sent */
	KEYBROKER_E_NOMEM = -5,
};

struct keybroker;

#define KEYBROKER_DEFAULT_TIMEOUT_MS 30000

/*
 * Connects to the broker's Unix socket. Every call then fails with
 * KEYBROKER_E_IO ("timed out ...", errno ETIMEDOUT) if its reply has not
 * come in whole within the handle's timeout: KEYBROKER_DEFAULT_TIMEOUT_MS,
 * or timeout_ms with keybroker_connect_timeout (which also bounds the
 * connect). keybroker_set_timeout changes it for later calls.
 */
int keybroker_connect(const char *socket_path, struct keybroker **out);
int keybroker_connect_timeout(const char *socket_path, int timeout_ms,
			      struct keybroker **out);
int keybroker_set_timeout(struct keybroker *kb, int timeout_ms);
void keybroker_close(struct keybroker *kb);

/*
 * Binds the connection to the identity a token (a JWT) names, until the
 * token expires. *identity (free() it; may be NULL if not wanted) is set on
 * success.
 */
int keybroker_authenticate(struct keybroker *kb, const char *token,
			   char **identity);

/*
 * Asks the broker for a token of the caller's system-assigned identity
 * (recognised from the connection's peer credentials). *token is a
 * secret: release it with keybroker_free_secret(*token, strlen(*token)).
 */
int keybroker_get_token(struct keybroker *kb, char **token);

/* getToken then authenticate: the usual start for a local service. */
int keybroker_authenticate_self(struct keybroker *kb, char **identity);

/* The key bundle (JSON text of getKey's result); free() it. */
int keybroker_get_key(struct keybroker *kb, const char *key,
		      const char *version, char **bundle_json);

/*
 * Wraps dek with the key's public key. *wrapped (free() it) and *kid
 * (free() it; may be NULL if not wanted) are set on success.
 */
int keybroker_wrap(struct keybroker *kb, const char *key, const char *version,
		   const char *alg, const uint8_t *dek, size_t dek_len,
		   uint8_t **wrapped, size_t *wrapped_len, char **kid);

/*
 * Unwraps in the broker's token. *dek is a secret: release it with
 * keybroker_free_secret(*dek, *dek_len).
 */
int keybroker_unwrap(struct keybroker *kb, const char *key, const char *version,
		     const char *alg, const uint8_t *wrapped,
		     size_t wrapped_len, uint8_t **dek, size_t *dek_len,
		     char **kid);

/* Wipes and frees a secret returned by this library. */
void keybroker_free_secret(void *p, size_t len);

/* Of the last failed call on this handle (valid until the next call). */
const char *keybroker_error_code(const struct keybroker *kb);
const char *keybroker_error_message(const struct keybroker *kb);

/* A short description of a status. */
const char *keybroker_strstatus(int status);

#ifdef __cplusplus
}
#endif

#endif
