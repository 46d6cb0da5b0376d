// SPDX-License-Identifier: MIT
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "kb_error.h"
#include "kb_log.h"

static const char *const code_names[] = {
	[KB_OK] = "OK",
	[KB_BAD_REQUEST] = "BadRequest",
	[KB_BAD_PARAMETER] = "BadParameter",
	[KB_UNAUTHORIZED] = "Unauthorized",
	[KB_FORBIDDEN] = "Forbidden",
	[KB_KEY_NOT_FOUND] = "KeyNotFound",
	[KB_KEY_DISABLED] = "KeyDisabled",
	[KB_NOT_SUPPORTED] = "NotSupported",
	[KB_CONFLICT] = "Conflict",
	[KB_THROTTLED] = "Throttled",
	[KB_HSM_UNAVAILABLE] = "HsmUnavailable",
	[KB_AUDIT_UNAVAILABLE] = "AuditUnavailable",
	[KB_INTERNAL] = "Internal",
};

const char *kb_code_name(enum kb_code code)
{
	if ((unsigned int)code > KB_INTERNAL)
		kb_fatal("error code %d is not one of the protocol's",
			 (int)code);
	return code_names[code];
}

/* Indexed by -status. */
static const enum kb_code status_codes[] = {
	[-KB_STATUS_OK] = KB_OK,
	[-KB_ERR_HSM] = KB_HSM_UNAVAILABLE,
	[-KB_ERR_NOT_FOUND] = KB_KEY_NOT_FOUND,
	[-KB_ERR_CIPHERTEXT] = KB_BAD_PARAMETER,
	[-KB_ERR_UNSUPPORTED] = KB_NOT_SUPPORTED,
	[-KB_ERR_PARAM] = KB_BAD_PARAMETER,
	[-KB_ERR_NOMEM] = KB_INTERNAL,
	[-KB_ERR_CONFLICT] = KB_CONFLICT,
	[-KB_ERR_PIN] = KB_INTERNAL,
	/*
	 * A damaged version is, like a disabled one, a state of the key
	 * that an admin changes: not the token's absence (HsmUnavailable,
	 * retried) nor a fault of the broker (Internal).
	 */
	[-KB_ERR_DISABLED] = KB_KEY_DISABLED,
	[-KB_ERR_DAMAGED] = KB_KEY_DISABLED,
	[-KB_ERR_STORAGE] = KB_INTERNAL,
	[-KB_ERR_FORBIDDEN] = KB_FORBIDDEN,
};

_Static_assert(sizeof(status_codes) / sizeof(status_codes[0]) ==
		       -KB_ERR_LAST + 1,
	       "every status has a wire code");

enum kb_code kb_status_code(int status)
{
	if (status > 0 || status < KB_ERR_LAST)
		kb_fatal("status %d is not one of keybroker's", status);
	return status_codes[-status];
}

int kb_errorf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

void kb_fatal(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	kb_err("fatal: %s", msg);
	abort();
}
