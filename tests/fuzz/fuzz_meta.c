// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness: key-version metadata read back from the token
 * (CKO_DATA objects anyone holding the user PIN can write).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kb_keystore_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kb_key_info info;

	if (size > META_MAX)
		return 0;
	memset(&info, 0, sizeof(info));
	if (kb_catalog_parse_metadata((const char *)data, size, &info) !=
	    KB_STATUS_OK)
		return 0;
	/*
	 * What it accepted is a usable, terminated version and level, and
	 * times that leave room for arithmetic (an update adds 1 s).
	 */
	if (strlen(info.version) != KB_VERSION_LEN ||
	    memchr(info.recovery_level, '\0', sizeof(info.recovery_level)) ==
		    NULL ||
	    info.created_us < 0 || info.created_us > INT64_MAX / 2 ||
	    info.updated < 0 || info.updated > INT64_MAX / 2)
		abort();
	return 0;
}
