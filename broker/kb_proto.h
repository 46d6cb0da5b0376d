/* SPDX-License-Identifier: MIT */
/*
 * Wire protocol v1: one JSON object per line in each direction. This module
 * turns a request line into a validated struct kb_request and formats
 * response lines; it knows nothing of keys or tokens. docs/protocol.md is
 * its public description.
 */
#ifndef KB_PROTO_H
#define KB_PROTO_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "kb_kid.h"

#define KB_LINE_MAX 65536 /* bytes of one request line, without '\n' */
#define KB_VALUE_MAX 1024 /* decoded bytes of a "value" */
#define KB_ID_STRING_MAX 128
#define KB_JTI_MAX 255 /* bytes of an identity-token id (revokeToken) */

/* The closed set of error codes, in docs/protocol.md. */
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
	KB_INTERNAL,
};

enum kb_op {
	KB_OP_AUTHENTICATE,
	KB_OP_GET_TOKEN,
	KB_OP_GET_KEY,
	KB_OP_WRAP_KEY,
	KB_OP_UNWRAP_KEY,
	KB_OP_REVOKE_TOKEN,
	KB_OP_UNAVAILABLE, /* a v1 op this broker does not offer yet */
};

enum kb_alg {
	KB_ALG_RSA_OAEP,
	KB_ALG_RSA_OAEP_256,
	KB_ALG_RSA1_5,
};

struct kb_error {
	enum kb_code code;
	/* Room for two key names and versions (a repair command). */
	char msg[512];
};

struct kb_request {
	json_t *root;
	json_t *id; /* borrowed from root; NULL until parsed */
	enum kb_op op;
	char opname[32];
	struct kb_keyref key;
	enum kb_alg alg;
	unsigned char value[KB_VALUE_MAX]; /* secret for wrapKey: wiped */
	size_t value_len;
	const char *token; /* authenticate: borrowed from root */
	size_t token_len;
	const char *jti; /* revokeToken: borrowed from root, no NUL inside */
};

/*
 * Installs a jansson allocator that wipes every block it frees, so request
 * and response text (which carry DEKs) never linger in freed heap memory.
 * Call once, before any thread uses jansson.
 */
void kb_proto_init(void);

const char *kb_code_name(enum kb_code code);
const char *kb_alg_name(enum kb_alg alg);

/*
 * Parses and validates line[0..len). On failure fills err; req->id is set
 * whenever the line carried a usable id, so the error can echo it.
 * Always call kb_request_uninit afterwards.
 */
int kb_proto_parse(const char *line, size_t len, const char *instance,
		   struct kb_request *req, struct kb_error *err);
void kb_request_uninit(struct kb_request *req);

/*
 * What the event loop needs to know of a line before a worker parses it:
 * *barrier if it is an authenticate (it changes who the connection is,
 * so no later request may start before it has finished, exactly), and
 * *token_op if it may need the token (unwrapKey, getToken: a guess from
 * the text that only steers scheduling, so a wrong guess costs only the
 * line's own sender).
 */
void kb_proto_classify(const char *line, size_t len, bool *barrier,
		       bool *token_op);

/* Response lines, '\n'-terminated, malloc'ed; *len excludes nothing. */
char *kb_proto_result(const json_t *id, json_t *result, size_t *len);
char *kb_proto_error(const json_t *id, enum kb_code code, const char *msg,
		     size_t *len);

/* Fills err with code and a formatted message; returns -1. */
int kb_error_set(struct kb_error *err, enum kb_code code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Copies at most max bytes of an untrusted string for a message. */
void kb_proto_quote(char *dst, size_t dstlen, const char *src, size_t max);

#endif
