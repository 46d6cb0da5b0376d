/* SPDX-License-Identifier: MIT */
/*
 * What an admin sets on a key besides its material: tags, the operations
 * a version allows (key_ops) and the key's rotation policy. Each is
 * validated here, once, whether it comes from a request or back from the
 * token (where anyone holding the PIN could have written it), and kept as
 * canonical compact JSON text so that it can be stored, compared and
 * shown without being parsed again.
 */
#ifndef KB_KEYATTR_H
#define KB_KEYATTR_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KB_TAGS_MAX 15 /* tags on one key version */
#define KB_TAG_NAME_MAX 64 /* bytes */
#define KB_TAG_VALUE_MAX 256 /* bytes */
#define KB_TAGS_TEXT_MAX 2048 /* bytes of the canonical text, with NUL */

/*
 * What a key version may be used for: wrapping and unwrapping DEKs (a
 * data key), or, alone, unwrapping keys brought in by importKey (a
 * key-exchange key, made so in the token: it never decrypts a DEK).
 */
#define KB_KEYOP_WRAP 0x1u
#define KB_KEYOP_UNWRAP 0x2u
#define KB_KEYOPS_ALL (KB_KEYOP_WRAP | KB_KEYOP_UNWRAP)
#define KB_KEYOP_IMPORT 0x4u

/*
 * Tags: a JSON object of at most KB_TAGS_MAX string members, names of
 * 1..KB_TAG_NAME_MAX bytes, values of at most KB_TAG_VALUE_MAX, neither
 * with control characters. Writes the canonical text (sorted, compact)
 * into out (KB_TAGS_TEXT_MAX bytes); "" for an empty object. -1 with why
 * filled if tags is not such an object.
 */
int kb_tags_canonical(const json_t *tags, char *out, char *why, size_t whylen);

/*
 * key_ops: a non-empty JSON array of distinct "wrapKey" / "unwrapKey",
 * or ["import"] alone. -1 with why filled otherwise.
 */
int kb_key_ops_parse(const json_t *ops, unsigned int *bits, char *why,
		     size_t whylen);
/* The array form of bits (new reference). */
json_t *kb_key_ops_json(unsigned int bits);

/* A change to one key version: only the fields named in set. */
#define KB_SET_ENABLED 0x01u
#define KB_SET_NBF 0x02u
#define KB_SET_EXP 0x04u
#define KB_SET_TAGS 0x08u
#define KB_SET_KEY_OPS 0x10u

struct kb_version_update {
	unsigned int set;
	bool enabled;
	int64_t nbf, exp; /* Unix seconds; 0 clears */
	unsigned int key_ops;
	char tags[KB_TAGS_TEXT_MAX];
};

#define KB_TIME_MAX INT64_C(9007199254) /* seconds: 2^53 us, year 2255 */

#define KB_POLICY_TEXT_MAX 512 /* bytes of a canonical policy, with NUL */

/*
 * A rotation policy, as a key vault writes it:
 *   {"lifetimeActions": [
 *      {"trigger": {"timeAfterCreate": "P90D"}, "action": {"type": "Rotate"}},
 *      {"trigger": {"timeBeforeExpiry": "P30D"}, "action": {"type": "Notify"}}],
 *    "attributes": {"expiryTime": "P1Y"}}
 * At most one Rotate (after creation or before expiry) and one Notify
 * (before expiry); a time before expiry needs expiryTime and must be
 * shorter than it. Durations are ISO 8601 (kb_duration.h). All times in
 * seconds, 0 where not set.
 */
struct kb_rotation_policy {
	int64_t rotate_after_create;
	int64_t rotate_before_expiry;
	int64_t notify_before_expiry;
	int64_t expiry_time; /* how long a new version is valid */
	char text[KB_POLICY_TEXT_MAX]; /* canonical; "" for no policy */
};

/*
 * Parses policy into p. A rotation sooner than min_rotation_s after
 * creation (or before expiry, counted from creation) is refused: a
 * policy may not make a key rotate itself into a flood of versions.
 * -1 with why filled if it is not such a policy.
 */
int kb_rotation_policy_parse(const json_t *policy, int64_t min_rotation_s,
			     struct kb_rotation_policy *p, char *why,
			     size_t whylen);

#endif
