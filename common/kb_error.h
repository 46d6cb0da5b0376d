/* SPDX-License-Identifier: MIT */
/*
 * The one error model.
 *
 * enum kb_status is what an operation inside keybroker returns: 0 or one
 * of a closed set of negative values, the same in the token adapter and
 * the broker. Details for people go into an err/errlen message beside it
 * (kb_errorf writes one).
 *
 * enum kb_code is the closed set of codes a request ends with on the
 * wire (docs/protocol.md). kb_status_code is the one table from the
 * first to the second; a handler that knows more (which key, which
 * limit) writes its own message, never its own mapping.
 *
 * kb_fatal is for a broken invariant of the program itself, never for
 * anything a client, a file or the token can cause: it logs and aborts
 * (no core is written: the daemon is not dumpable).
 */
#ifndef KB_ERROR_H
#define KB_ERROR_H

#include <stddef.h>

enum kb_status {
	KB_STATUS_OK = 0,
	KB_ERR_HSM = -1, /* token absent, session lost, device error */
	KB_ERR_NOT_FOUND = -2, /* no such key or version */
	KB_ERR_CIPHERTEXT = -3, /* unwrap input rejected */
	KB_ERR_UNSUPPORTED = -4, /* the token or broker cannot do it */
	KB_ERR_PARAM = -5, /* caller input out of range */
	KB_ERR_NOMEM = -6,
	KB_ERR_CONFLICT = -7, /* already exists / already initialised */
	KB_ERR_PIN = -8, /* PIN file refused or PIN wrong */
	KB_ERR_DISABLED = -9, /* key version disabled, not yet valid, expired */
	KB_ERR_DAMAGED = -10, /* private key there, its metadata not */
	KB_ERR_STORAGE = -11, /* the token's storage refused or lost a write */
	/*
	 * The key or the token itself does not allow it, whoever asks: an
	 * operation outside a version's key_ops, a purge under purge
	 * protection.
	 */
	KB_ERR_FORBIDDEN = -12,
};
#define KB_ERR_LAST KB_ERR_FORBIDDEN

enum kb_code {
	KB_OK = 0,
	KB_BAD_REQUEST,
	KB_BAD_PARAMETER,
	KB_UNAUTHORIZED,
	KB_FORBIDDEN,
	KB_KEY_NOT_FOUND,
	KB_KEY_DISABLED,
	KB_NOT_SUPPORTED,
	KB_CONFLICT,
	KB_THROTTLED,
	KB_HSM_UNAVAILABLE,
	KB_AUDIT_UNAVAILABLE, /* the trail cannot be written */
	KB_INTERNAL,
};

/* The wire name of code ("KeyNotFound"). */
const char *kb_code_name(enum kb_code code);

/* The wire code a status ends a request with. */
enum kb_code kb_status_code(int status);

/* Writes a message into err[0..errlen) and returns -1. */
int kb_errorf(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* A broken invariant: logs fmt as an error and aborts. */
_Noreturn void kb_fatal(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

#endif
