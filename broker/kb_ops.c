// SPDX-License-Identifier: MIT
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "kb_b64.h"
#include "kb_log.h"
#include "kb_ops.h"
#include "kb_proto.h"
#include "kb_secret.h"

static enum p11_alg to_p11_alg(enum kb_alg alg)
{
	switch (alg) {
	case KB_ALG_RSA_OAEP:
		return P11_ALG_RSA_OAEP;
	case KB_ALG_RSA1_5:
		return P11_ALG_RSA1_5;
	default:
		return P11_ALG_RSA_OAEP_256;
	}
}

static json_t *b64_string(const unsigned char *p, size_t n)
{
	char buf[P11_MODULUS_MAX * 2];
	json_t *s;

	kb_b64_encode(buf, p, n);
	s = json_string(buf);
	kb_wipe(buf, sizeof(buf));
	return s;
}

static json_t *kid_string(const struct kb_ops *ops,
			  const struct p11_key_info *info)
{
	char kid[KB_KID_MAX];

	kb_kid_format(kid, sizeof(kid), ops->cfg->instance, info->name,
		      info->version);
	return json_string(kid);
}

/* Maps a keystore status to a protocol error with a specific message. */
static void status_error(const struct kb_ops *ops, const struct kb_request *req,
			 const struct p11_key_info *info, int status,
			 struct kb_error *err)
{
	const char *alg = kb_alg_name(req->alg);
	size_t max, hlen;

	switch (status) {
	case P11_ERR_NOT_FOUND:
		err->code = KB_KEY_NOT_FOUND;
		if (req->key.version[0] != '\0')
			snprintf(err->msg, sizeof(err->msg),
				 "key '%s' has no version '%s'", req->key.name,
				 req->key.version);
		else
			snprintf(err->msg, sizeof(err->msg),
				 "key '%s' not found", req->key.name);
		break;
	case P11_ERR_DISABLED:
		err->code = KB_KEY_DISABLED;
		snprintf(err->msg, sizeof(err->msg),
			 "key '%s' version %s is %s", info->name, info->version,
			 !info->enabled ? "disabled" :
			 info->nbf != 0 && time(NULL) < info->nbf ?
					  "not yet valid (nbf)" :
					  "expired (exp) and may only unwrap");
		break;
	case P11_ERR_CIPHERTEXT:
		/* One code and message for every ciphertext problem. */
		err->code = KB_BAD_PARAMETER;
		snprintf(err->msg, sizeof(err->msg),
			 "value cannot be unwrapped with this key version and "
			 "algorithm");
		break;
	case P11_ERR_UNSUPPORTED:
		err->code = KB_NOT_SUPPORTED;
		snprintf(err->msg, sizeof(err->msg),
			 "the token cannot unwrap %s with key '%s'", alg,
			 info->name);
		break;
	case P11_ERR_PARAM:
		hlen = req->alg == KB_ALG_RSA_OAEP ? 20 : 32;
		max = req->alg == KB_ALG_RSA1_5 ? info->nlen - 11 :
						  info->nlen - 2 * hlen - 2;
		err->code = KB_BAD_PARAMETER;
		snprintf(err->msg, sizeof(err->msg),
			 "value too long for %s with a %u-bit key (at most %zu "
			 "bytes)",
			 alg, info->bits, max);
		break;
	case P11_ERR_HSM:
		err->code = KB_HSM_UNAVAILABLE;
		snprintf(err->msg, sizeof(err->msg),
			 "the HSM token is unavailable; retry later");
		break;
	default:
		err->code = KB_INTERNAL;
		snprintf(err->msg, sizeof(err->msg), "internal error");
		break;
	}
}

static json_t *key_bundle(const struct kb_ops *ops,
			  const struct p11_key_info *info)
{
	json_t *attrs, *paths;
	enum p11_alg a;

	paths = json_object();
	for (a = 0; a < P11_ALG_COUNT; a++)
		json_object_set_new(paths, p11_alg_name(a),
				    json_string(p11_path_name(info->path[a])));
	attrs = json_pack("{s:b, s:I, s:I, s:s, s:i, s:o}", "enabled",
			  info->enabled, "created", (json_int_t)info->created,
			  "updated", (json_int_t)info->updated, "recoveryLevel",
			  info->recovery_level, "recoverableDays",
			  info->recoverable_days, "unwrapPaths", paths);
	if (attrs != NULL && info->nbf != 0)
		json_object_set_new(attrs, "nbf", json_integer(info->nbf));
	if (attrs != NULL && info->exp != 0)
		json_object_set_new(attrs, "exp", json_integer(info->exp));
	return json_pack("{s:{s:o, s:s, s:o, s:o, s:[ss]}, s:o}", "key", "kid",
			 kid_string(ops, info), "kty", "RSA-HSM", "n",
			 b64_string(info->n, info->nlen), "e",
			 b64_string(info->e, info->elen), "key_ops", "wrapKey",
			 "unwrapKey", "attributes", attrs);
}

static json_t *do_get_key(const struct kb_ops *ops, struct kb_request *req,
			  struct p11_key_info *info, int *status)
{
	*status = p11_keystore_describe(ops->ks, req->key.name,
					req->key.version, info);
	return *status == P11_OK ? key_bundle(ops, info) : NULL;
}

static json_t *do_wrap(const struct kb_ops *ops, struct p11_worker *w,
		       struct kb_request *req, struct p11_key_info *info,
		       int *status)
{
	unsigned char out[P11_MODULUS_MAX];
	size_t outlen;

	*status = p11_keystore_wrap(ops->ks, w, req->key.name, req->key.version,
				    to_p11_alg(req->alg), req->value,
				    req->value_len, out, &outlen, info);
	if (*status != P11_OK)
		return NULL;
	return json_pack("{s:o, s:o}", "kid", kid_string(ops, info), "value",
			 b64_string(out, outlen));
}

static json_t *do_unwrap(const struct kb_ops *ops, struct p11_worker *w,
			 struct kb_request *req, struct p11_key_info *info,
			 int *status)
{
	unsigned char out[P11_MODULUS_MAX];
	size_t outlen = 0;
	json_t *res = NULL;

	*status = p11_worker_unwrap(w, req->key.name, req->key.version,
				    to_p11_alg(req->alg), req->value,
				    req->value_len, out, &outlen, info);
	if (*status == P11_OK)
		res = json_pack("{s:o, s:o}", "kid", kid_string(ops, info),
				"value", b64_string(out, outlen));
	kb_wipe(out, sizeof(out));
	return res;
}

char *kb_ops_handle(const struct kb_ops *ops, struct p11_worker *w,
		    const char *line, size_t len, size_t *resplen)
{
	struct kb_request req;
	struct kb_error err = { KB_OK, "" };
	struct p11_key_info info;
	json_t *result = NULL;
	char *resp;
	int status = P11_OK;

	memset(&info, 0, sizeof(info));
	if (kb_proto_parse(line, len, ops->cfg->instance, &req, &err) != 0)
		goto reply;
	if (req.alg == KB_ALG_RSA1_5 && !ops->cfg->allow_rsa1_5 &&
	    req.op != KB_OP_GET_KEY) {
		err.code = KB_NOT_SUPPORTED;
		snprintf(err.msg, sizeof(err.msg),
			 "RSA1_5 is disabled by the broker configuration");
		goto reply;
	}
	switch (req.op) {
	case KB_OP_GET_KEY:
		result = do_get_key(ops, &req, &info, &status);
		break;
	case KB_OP_WRAP_KEY:
		result = do_wrap(ops, w, &req, &info, &status);
		break;
	case KB_OP_UNWRAP_KEY:
		result = do_unwrap(ops, w, &req, &info, &status);
		break;
	default:
		status = P11_ERR_UNSUPPORTED;
		break;
	}
	if (status != P11_OK)
		status_error(ops, &req, &info, status, &err);
	else if (result == NULL)
		status_error(ops, &req, &info, P11_ERR_NOMEM, &err);
reply:
	if (err.code == KB_OK) {
		kb_debug("%s %s/%s: ok%s%s", req.opname, info.name,
			 info.version,
			 req.op == KB_OP_UNWRAP_KEY ? " via " : "",
			 req.op == KB_OP_UNWRAP_KEY ?
				 p11_path_name(info.path[to_p11_alg(req.alg)]) :
				 "");
		resp = kb_proto_result(req.id, result, resplen);
	} else {
		kb_info("%s%s%s%s%s: %s: %s",
			req.opname[0] ? req.opname : "request",
			req.key.name[0] ? " " : "", req.key.name,
			req.key.version[0] ? "/" : "", req.key.version,
			kb_code_name(err.code), err.msg);
		json_decref(result);
		resp = kb_proto_error(req.id, err.code, err.msg, resplen);
	}
	kb_request_uninit(&req);
	return resp;
}
