// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness: key-version metadata and key state (deletion,
 * rotation policy) read back from the token (CKO_DATA objects anyone
 * holding the user PIN can write).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kb_keystore_parts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What a key state it accepted must be: a name, dates that add up. */
static void key_state(const uint8_t *data, size_t size)
{
	struct key_state st;

	if (kb_keystate_parse((const char *)data, size, &st) != KB_STATUS_OK)
		return;
	if (!kb_name_valid(st.name, strlen(st.name)) || st.updated_us < 0 ||
	    (st.deleted != 0 && st.scheduled_purge < st.deleted) ||
	    memchr(st.policy.text, '\0', sizeof(st.policy.text)) == NULL ||
	    st.policy.rotate_after_create < 0 || st.policy.expiry_time < 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kb_key_info info;

	if (size > META_MAX)
		return 0;
	key_state(data, size);
	memset(&info, 0, sizeof(info));
	if (kb_catalog_parse_metadata((const char *)data, size, &info) !=
	    KB_STATUS_OK)
		return 0;
	/*
	 * What it accepted is a usable, terminated version, tags and level, and
	 * times that leave room for arithmetic (an update adds 1 s).
	 */
	if (strlen(info.version) != KB_VERSION_LEN ||
	    memchr(info.tags, '\0', sizeof(info.tags)) == NULL ||
	    (info.key_ops & ~(KB_KEYOPS_ALL | KB_KEYOP_IMPORT)) != 0 ||
	    memchr(info.recovery_level, '\0', sizeof(info.recovery_level)) ==
		    NULL ||
	    info.created_us < 0 || info.created_us > INT64_MAX / 2 ||
	    info.updated < 0 || info.updated > INT64_MAX / 2)
		abort();
	return 0;
}
