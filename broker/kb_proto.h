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

#include "kb_error.h"
#include "kb_key.h"
#include "kb_kid.h"

#define KB_LINE_MAX 65536 /* bytes of one request line, without '\n' */
#define KB_VALUE_MAX 1024 /* decoded bytes of a "value" */
#define KB_ID_STRING_MAX 128
#define KB_JTI_MAX 255 /* bytes of an identity-token id (revokeToken) */

struct kb_error {
	enum kb_code code;
	/* Room for two key names and versions (a repair command). */
	char msg[512];
};

/* The fields a request may carry besides "id" and "op". */
#define KB_F_KEY 0x01u /* key (+ version), or kid: required */
#define KB_F_ALG 0x02u /* optional, RSA-OAEP-256 if absent */
#define KB_F_VALUE 0x04u /* required, base64url */
#define KB_F_TOKEN 0x08u /* required, a JWT */
#define KB_F_JTI 0x10u /* required, an identity-token id */
#define KB_F_PAGE 0x20u /* optional: maxresults, nextLink */
#define KB_F_KTY 0x40u /* optional: kty (RSA-HSM), key_size */
#define KB_F_ATTRS 0x80u /* optional: attributes, tags, key_ops */
#define KB_F_POLICY 0x100u /* required: policy (a rotation policy) */
#define KB_F_IMPORT 0x200u /* jwk, pem, or kek + blob (+ alg) */

#define KB_PEM_MAX 16384 /* bytes of an imported PEM */
#define KB_BLOB_MAX 8192 /* decoded bytes of a BYOK blob */

#define KB_PAGE_MAX 25 /* most items in one page of a list */

/*
 * How an op is run. TOKEN: it calls the token, so it needs a token
 * session. IDENTITY: it needs an authenticated identity, not expired or
 * revoked, within its rate, and perm on the key if perm is set. (A
 * connection's requests run one after the other, so an authenticate
 * holds back the lines after it by itself.)
 */
#define KB_OPF_TOKEN 0x02u
#define KB_OPF_IDENTITY 0x04u
/*
 * UNRECORDED: served even while the audit trail cannot be written
 * (nothing secret is at stake); every other op is then refused with
 * AuditUnavailable.
 */
#define KB_OPF_UNRECORDED 0x08u
/* CHANGES: it changes what the token or the broker holds. */
#define KB_OPF_CHANGES 0x10u

#define KB_CORRELATION_MAX 64 /* bytes of a request's correlationId */

struct kb_call; /* what a handler works with: kb_ops.h */

/*
 * One op of protocol v1: a row of the one op table (kb_ops.c). The
 * parser accepts exactly its fields, the request handler authorises and
 * dispatches from it, the server schedules from its flags. Adding an op
 * is one row and one handler.
 */
struct kb_op_def {
	const char *name;
	unsigned int fields; /* KB_F_* */
	unsigned int perm; /* KB_PERM_* needed on the key; 0: none */
	unsigned int flags; /* KB_OPF_* */
	/*
	 * Runs the op: a result object, or NULL with err set (or, for an op
	 * on a key, with call->status set).
	 */
	json_t *(*handle)(struct kb_call *call, struct kb_error *err);
};

struct kb_op_table {
	const struct kb_op_def *rows;
	size_t n;
};

/* The parameters of each kind of op, parsed from the fields its row takes. */
struct kb_crypt_params { /* wrapKey, unwrapKey: KB_F_ALG, KB_F_VALUE */
	enum kb_alg alg;
	unsigned char value[KB_VALUE_MAX]; /* a DEK for wrapKey: wiped */
	size_t value_len;
};

struct kb_auth_params { /* authenticate: KB_F_TOKEN */
	const char *token; /* borrowed from the request's root */
	size_t token_len;
};

struct kb_revoke_params { /* revokeToken: KB_F_JTI */
	const char *jti; /* borrowed from the root, no NUL inside */
};

struct kb_page_params { /* getKeys, getKeyVersions: KB_F_PAGE */
	unsigned int max; /* 1..KB_PAGE_MAX */
	/* Where the previous page ended (a key name or version), or "". */
	char next[KB_NAME_MAX + 1];
};

struct kb_manage_params { /* KB_F_KTY, KB_F_ATTRS, KB_F_POLICY, KB_F_IMPORT */
	unsigned int bits; /* key_size: 2048 unless given */
	struct kb_version_update attrs; /* .set: what the request gave */
	const json_t *policy; /* borrowed from the root */
	/* importKey: one of jwk, pem, or kek + blob; borrowed. */
	const json_t *jwk;
	const char *pem;
	size_t pem_len;
	struct kb_keyref kek; /* name "" unless given */
	const char *blob; /* base64url, at most KB_BLOB_MAX decoded */
	size_t blob_len;
	enum kb_alg kek_alg; /* the OAEP of the blob's AES key */
};

struct kb_request {
	json_t *root;
	json_t *id; /* borrowed from root; NULL until parsed */
	const struct kb_op_def *def; /* NULL until the op is known */
	char opname[32];
	char correlation[KB_CORRELATION_MAX + 1]; /* "" if none */
	struct kb_keyref key; /* KB_F_KEY: what the ACL is checked on */
	union { /* which one: by def's fields */
		struct kb_crypt_params crypt;
		struct kb_auth_params auth;
		struct kb_revoke_params revoke;
		struct kb_page_params page;
		struct kb_manage_params manage;
	};
};

/*
 * Installs a jansson allocator that wipes every block it frees, so request
 * and response text (which carry DEKs) never linger in freed heap memory.
 * Call once, before any thread uses jansson.
 */
void kb_proto_init(void);

/*
 * Parses and validates line[0..len) as a request for one of the ops of
 * table. On failure fills err; req->id is set whenever the line carried
 * a usable id, so the error can echo it. Always call kb_request_uninit
 * afterwards.
 */
int kb_proto_parse(const char *line, size_t len, const char *instance,
		   const struct kb_op_table *table, struct kb_request *req,
		   struct kb_error *err);
void kb_request_uninit(struct kb_request *req);

/*
 * The flags of the op line[0..len) names in table, before the line is
 * handled (to know whether it needs a token session); 0 if it names none
 * or is not a JSON object. Exact: a line is parsed if its text may name
 * a KB_OPF_TOKEN op, so mentioning one elsewhere takes no session.
 */
unsigned int kb_proto_op_flags(const char *line, size_t len,
			       const struct kb_op_table *table);

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
