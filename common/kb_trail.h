/* SPDX-License-Identifier: MIT */
/*
 * The audit trail's format, shared by its writers (keybrokerd,
 * keybrokerctl) and its reader (keybroker-audit verify): how a record
 * line is hashed into the chain, the text a checkpoint signs, the audit
 * key's id, and the ES256 signature over that text. docs/audit.md is the
 * schema.
 */
#ifndef KB_TRAIL_H
#define KB_TRAIL_H

#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KB_TRAIL_HASH_LEN 32
#define KB_TRAIL_HEX_LEN (2 * KB_TRAIL_HASH_LEN) /* without the NUL */
#define KB_TRAIL_KEYID_LEN 43 /* base64url of a SHA-256, without the NUL */
#define KB_TRAIL_SIG_LEN 64 /* ES256: r || s */
#define KB_TRAIL_LINE_MAX \
	(1u << 20) /* the longest record line a reader takes */
#define KB_TRAIL_ORIGIN_MAX 255 /* bytes of a chain's name */
/* What a checkpoint's signed text holds at most. */
#define KB_TRAIL_SIGNED_MAX 512

/* The hash of the record line[0..len) (without its newline), in hex. */
void kb_trail_hash_hex(const char *line, size_t len,
		       char hex[KB_TRAIL_HEX_LEN + 1]);

/*
 * The text a checkpoint of reason ("count", "interval", "rotation",
 * "shutdown") signs for the chain of origin whose first size records end
 * in head (hex): five lines, see docs/audit.md. The reason is signed so
 * that no checkpoint can be made to look like the one a broker writes
 * last, at shutdown. Returns the text's length, or 0 if origin is longer
 * than KB_TRAIL_ORIGIN_MAX, reason than 16 bytes, or the text does not
 * fit in KB_TRAIL_SIGNED_MAX bytes.
 */
size_t kb_trail_signed_text(char *buf, const char *origin, uint64_t size,
			    const char *head, const char *reason);

/*
 * The audit key's id: the RFC 7638 thumbprint of pub (a P-256 key) as
 * base64url. 0, or -1 if pub is not a P-256 key.
 */
int kb_trail_keyid(EVP_PKEY *pub, char keyid[KB_TRAIL_KEYID_LEN + 1]);

/* True if sig (r || s) is pub's ES256 signature of text[0..len). */
bool kb_trail_verify(EVP_PKEY *pub, const char *text, size_t len,
		     const unsigned char sig[KB_TRAIL_SIG_LEN]);

/* Now as RFC 3339 UTC with microseconds: 28 bytes with the NUL. */
#define KB_TRAIL_TIME_LEN 28
void kb_trail_time(char buf[KB_TRAIL_TIME_LEN]);

#endif
