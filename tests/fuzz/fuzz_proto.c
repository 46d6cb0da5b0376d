// SPDX-License-Identifier: MIT
/* libFuzzer harness: request lines through the protocol parser. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "kb_ops.h"
#include "kb_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int initialised;
	struct kb_request req;
	struct kb_error err;
	size_t len;
	char *resp;

	if (!initialised) {
		kb_proto_init();
		initialised = 1;
	}
	kb_proto_parse((const char *)data, size, "fuzz", kb_ops_table(), &req,
		       &err);
	/* Whatever the outcome, the reply must be formattable. */
	resp = err.code == KB_OK ?
		       kb_proto_result(req.id, json_object(), &len) :
		       kb_proto_error(req.id, err.code, err.msg, &len);
	if (resp == NULL || len == 0 || resp[len - 1] != '\n')
		abort();
	free(resp);
	kb_request_uninit(&req);
	return 0;
}
