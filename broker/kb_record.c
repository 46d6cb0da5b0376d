// SPDX-License-Identifier: MIT
#include <string.h>

#include "kb_audit.h"
#include "kb_b64.h"
#include "kb_grant.h"
#include "kb_key.h"
#include "kb_kid.h"
#include "kb_record.h"
#include "kb_secret.h"

/* "ok", or the error code's wire name. */
static const char *result_name(enum kb_code code)
{
	return code == KB_OK ? "ok" : kb_code_name(code);
}

static void set_str(json_t *o, const char *k, const char *v)
{
	if (v != NULL && v[0] != '\0')
		json_object_set_new(o, k, json_string(v));
}

static json_t *peer_object(const struct kb_peer *p)
{
	json_t *o = json_pack("{s:I, s:I, s:I}", "uid", (json_int_t)p->uid,
			      "gid", (json_int_t)p->gid, "pid",
			      (json_int_t)p->pid);

	if (o != NULL)
		set_str(o, "unit", p->unit);
	return o;
}

static json_t *identity_object(const struct kb_caller *c)
{
	json_t *o = json_pack("{s:s}", "name", c->identity);

	if (o != NULL) {
		set_str(o, "iss", c->token.iss);
		set_str(o, "sub", c->token.sub);
		set_str(o, "jti", c->token.jti);
	}
	return o;
}

/*
 * The keyed hash of a wrapped value (kb_audit_value_hmac), base64url, or
 * JSON null if there is no key for it.
 */
static json_t *value_hmac(const struct kb_call *call, const unsigned char *v,
			  size_t len)
{
	unsigned char mac[32];
	char text[48];

	if (len == 0 || kb_audit_value_hmac(call->ops->audit, v, len, mac) != 0)
		return json_null();
	kb_b64_encode(text, mac, sizeof(mac));
	return json_string(text);
}

/* The wrapped value a result carries ("value", base64url). */
static json_t *result_hmac(const struct kb_call *call, json_t *result)
{
	const char *text = json_string_value(json_object_get(result, "value"));
	unsigned char v[P11_MODULUS_MAX];
	size_t len = 0;

	if (text == NULL ||
	    kb_b64_decode(v, sizeof(v), &len, text, strlen(text)) != 0)
		return json_null();
	return value_hmac(call, v, len);
}

/* What the request was about: its key and how it was used. */
static void key_fields(json_t *o, const struct kb_call *call)
{
	const struct kb_request *req = call->req;
	const struct kb_key_info *info = &call->info;
	char kid[KB_KID_MAX];

	if (!(req->def->fields & KB_F_KEY) || req->key.name[0] == '\0')
		return;
	set_str(o, "key", req->key.name);
	json_object_set_new(o, "versionAsked", json_string(req->key.version));
	if (info->version[0] != '\0' &&
	    strcmp(info->name, req->key.name) == 0) {
		set_str(o, "version", info->version);
		kb_kid_format(kid, sizeof(kid), call->ops->instance, info->name,
			      info->version);
		set_str(o, "kid", kid);
	}
	if (!(req->def->fields & KB_F_ALG))
		return;
	set_str(o, "alg", kb_alg_name(req->crypt.alg));
	if (strcmp(req->def->name, "wrapKey") != 0 && info->version[0] != '\0')
		set_str(o, "path", kb_path_name(info->path[req->crypt.alg]));
}

/* The keyed hashes of the wrapped values it took and gave. */
static void hmac_fields(json_t *o, const struct kb_call *call, json_t *result)
{
	const struct kb_request *req = call->req;
	const char *op = req->def->name;

	if (!(req->def->fields & KB_F_VALUE))
		return;
	if (strcmp(op, "wrapKey") == 0) {
		if (result != NULL)
			json_object_set_new(o, "valueHmac",
					    result_hmac(call, result));
		return;
	}
	json_object_set_new(o, "valueHmac",
			    value_hmac(call, req->crypt.value,
				       req->crypt.value_len));
	/* unwrapKey's result is a DEK: only rewrapKey's is wrapped. */
	if (result != NULL && strcmp(op, "rewrapKey") == 0)
		json_object_set_new(o, "newValueHmac",
				    result_hmac(call, result));
}

json_t *kb_record_request(const struct kb_call *call,
			  const struct kb_error *err, json_t *result,
			  int64_t duration_us)
{
	const struct kb_request *req = call->req;
	const struct kb_caller *caller = call->caller;
	json_t *o;

	o = json_pack("{s:s, s:s, s:s}", "event", "request", "op", req->opname,
		      "result", result_name(err->code));
	if (o == NULL)
		return NULL;
	if (err->code != KB_OK)
		set_str(o, "message", err->msg);
	json_object_set_new(o, "duration_us", json_integer(duration_us));
	if (req->id != NULL)
		json_object_set(o, "id", req->id);
	json_object_set_new(o, "conn", json_integer((json_int_t)caller->conn));
	set_str(o, "correlationId", req->correlation);
	json_object_set_new(o, "peer", peer_object(&caller->peer));
	if (caller->identity[0] != '\0')
		json_object_set_new(o, "identity", identity_object(caller));
	if (req->def != NULL) {
		key_fields(o, call);
		hmac_fields(o, call, err->code == KB_OK ? result : NULL);
		if (req->def->fields & KB_F_JTI)
			set_str(o, "jti", req->revoke.jti);
	}
	set_str(o, "minted", call->minted_jti);
	set_str(o, "grant", call->grant);
	set_str(o, "missing", call->missing);
	set_str(o, "policy", call->pol->cfg->digest);
	return o;
}

/* The access entries of cfg, as the trail lists them. */
static json_t *grants_array(const struct kb_config *cfg)
{
	json_t *a = json_array(), *g, *keys, *perms;
	unsigned int bit;
	size_t i, k;

	for (i = 0; a != NULL && i < cfg->n_grants; i++) {
		keys = json_array();
		perms = json_array();
		for (k = 0; k < cfg->grants[i].n_keys; k++)
			json_array_append_new(
				keys, json_string(cfg->grants[i].keys[k]));
		for (bit = 1; bit != 0 && bit <= cfg->grants[i].perms;
		     bit <<= 1)
			if (cfg->grants[i].perms & bit)
				json_array_append_new(
					perms, json_string(kb_perm_name(bit)));
		g = json_pack("{s:s, s:o, s:o}", "identity",
			      cfg->grants[i].identity, "keys", keys,
			      "permissions", perms);
		json_array_append_new(a, g);
	}
	return a;
}

json_t *kb_record_policy(const char *event, const struct kb_config *cfg,
			 const char *why)
{
	json_t *o = json_pack("{s:s, s:s}", "event", event, "result",
			      cfg != NULL ? "ok" : "refused");

	if (o == NULL)
		return NULL;
	if (cfg == NULL) {
		set_str(o, "message", why);
		return o;
	}
	set_str(o, "policy", cfg->digest);
	json_object_set_new(o, "grants", grants_array(cfg));
	return o;
}

json_t *kb_record_notice(const struct kb_notice *n)
{
	json_t *o = json_pack("{s:s}", "event", n->event);

	if (o == NULL)
		return NULL;
	set_str(o, "state", n->state);
	set_str(o, "op", n->op);
	set_str(o, "key", n->key);
	set_str(o, "version", n->version);
	if (strcmp(n->event, "lifecycle") == 0)
		json_object_set_new(
			o, "result",
			json_string(result_name(kb_status_code(n->status))));
	set_str(o, "message", n->message);
	return o;
}
