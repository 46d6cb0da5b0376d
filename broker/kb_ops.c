// SPDX-License-Identifier: MIT
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kb_audit.h"
#include "kb_auditkey.h"
#include "kb_b64.h"
#include "kb_identity.h"
#include "kb_issuer.h"
#include "kb_jwt.h"
#include "kb_lifecycle.h"
#include "kb_rsaimport.h"
#include "kb_log.h"
#include "kb_ops.h"
#include "kb_proto.h"
#include "kb_record.h"
#include "kb_secret.h"

/* revokeToken's ids fit the keystore's list: only memory can fail there. */
_Static_assert(KB_JTI_MAX <= KB_REVOKED_JTI_MAX,
	       "a revokeToken jti fits the list");

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
			  const struct kb_key_info *info)
{
	char kid[KB_KID_MAX];

	kb_kid_format(kid, sizeof(kid), ops->instance, info->name,
		      info->version);
	return json_string(kid);
}

/*
 * A keystore status as a protocol error: its code from the one table
 * (kb_error.h), a message that names the key and the limit.
 */
static void status_error(const struct kb_call *call, struct kb_error *err)
{
	const struct kb_request *req = call->req;
	const struct kb_key_info *info = &call->info;
	/* Only wrapKey and unwrapKey end in UNSUPPORTED or PARAM. */
	const char *alg = "";
	size_t max, hlen;

	if (req->def->fields & KB_F_ALG)
		alg = kb_alg_name(req->crypt.alg);

	err->code = kb_status_code(call->status);
	switch (call->status) {
	case KB_ERR_NOT_FOUND:
		if (req->key.version[0] != '\0')
			snprintf(err->msg, sizeof(err->msg),
				 "key '%s' has no version '%s'", req->key.name,
				 req->key.version);
		else
			snprintf(err->msg, sizeof(err->msg),
				 "key '%s' not found", req->key.name);
		break;
	case KB_ERR_DISABLED:
		snprintf(err->msg, sizeof(err->msg),
			 "key '%s' version %s is %s", info->name, info->version,
			 !info->enabled ? "disabled" :
			 info->nbf != 0 && time(NULL) < info->nbf ?
					  "not yet valid (nbf)" :
					  "expired (exp) and may only unwrap");
		break;
	case KB_ERR_CIPHERTEXT:
		/* One code and message for every ciphertext problem. */
		snprintf(err->msg, sizeof(err->msg),
			 "value cannot be unwrapped with this key version and "
			 "algorithm");
		break;
	case KB_ERR_UNSUPPORTED:
		snprintf(err->msg, sizeof(err->msg),
			 "the token cannot unwrap %s with key '%s'", alg,
			 info->name);
		break;
	case KB_ERR_PARAM:
		if (!(req->def->fields & KB_F_ALG)) {
			snprintf(err->msg, sizeof(err->msg),
				 "a parameter is out of range");
			break;
		}
		hlen = req->crypt.alg == KB_ALG_RSA_OAEP ? 20 : 32;
		max = req->crypt.alg == KB_ALG_RSA1_5 ?
			      info->nlen - 11 :
			      info->nlen - 2 * hlen - 2;
		snprintf(err->msg, sizeof(err->msg),
			 "value too long for %s with a %u-bit key (at most %zu "
			 "bytes)",
			 alg, info->bits, max);
		break;
	case KB_ERR_DAMAGED:
		if (req->key.version[0] == '\0')
			snprintf(
				err->msg, sizeof(err->msg),
				"key '%s' has a damaged version %s (its "
				"metadata in the token is unreadable), so its "
				"current version is not known; name a version, "
				"or repair: keybrokerctl repair-key %s %s "
				"--enabled|--disabled",
				info->name, info->version, info->name,
				info->version);
		else
			snprintf(err->msg, sizeof(err->msg),
				 "key '%s' version %s is damaged: its metadata "
				 "in the token is unreadable; repair: "
				 "keybrokerctl repair-key %s %s "
				 "--enabled|--disabled",
				 info->name, info->version, info->name,
				 info->version);
		break;
	case KB_ERR_HSM:
		snprintf(err->msg, sizeof(err->msg),
			 "the HSM token is unavailable; retry later");
		break;
	case KB_ERR_FORBIDDEN:
		snprintf(err->msg, sizeof(err->msg),
			 "key '%s' version %s does not allow %s (its key_ops)",
			 info->name, info->version,
			 info->key_ops & KB_KEYOP_WRAP ? "unwrapKey" :
							 "wrapKey");
		break;
	default:
		snprintf(err->msg, sizeof(err->msg), "internal error");
		break;
	}
}

/* The attributes of a key version, as getKey and the lists show them. */
static json_t *key_attributes(const struct kb_key_info *info)
{
	json_t *attrs, *paths;
	enum kb_alg a;

	if (info->damaged)
		return json_pack("{s:b, s:b}", "enabled", 0, "damaged", 1);
	paths = json_object();
	for (a = 0; a < KB_ALG_COUNT; a++)
		json_object_set_new(paths, kb_alg_name(a),
				    json_string(kb_path_name(info->path[a])));
	attrs = json_pack("{s:b, s:I, s:I, s:s, s:i, s:b, s:o}", "enabled",
			  info->enabled, "created", (json_int_t)info->created,
			  "updated", (json_int_t)info->updated, "recoveryLevel",
			  info->recovery_level, "recoverableDays",
			  info->recoverable_days, "exportable", 0,
			  "unwrapPaths", paths);
	if (attrs != NULL && info->nbf != 0)
		json_object_set_new(attrs, "nbf", json_integer(info->nbf));
	if (attrs != NULL && info->exp != 0)
		json_object_set_new(attrs, "exp", json_integer(info->exp));
	/* Where the key came from: made in the token unless it says. */
	if (attrs != NULL && info->imported != KB_ORIGIN_TOKEN)
		json_object_set_new(attrs, "imported",
				    json_string(info->imported ==
								KB_ORIGIN_BYOK ?
							"byok" :
							"plain"));
	return attrs;
}

/* The tags of a version as an object (empty if none). */
static json_t *key_tags(const struct kb_key_info *info)
{
	json_t *t = info->tags[0] != '\0' ? json_loads(info->tags, 0, NULL) :
					    NULL;

	return t != NULL ? t : json_object();
}

/*
 * A key bundle, as getKey and the management ops return it; for a
 * deleted key, with what a deleted bundle adds.
 */
static json_t *key_bundle(const struct kb_ops *ops,
			  const struct kb_key_info *info)
{
	char rid[KB_KID_MAX + 16];
	json_t *b;

	b = json_pack("{s:{s:o, s:s, s:o, s:o, s:o}, s:o, s:o}", "key", "kid",
		      kid_string(ops, info), "kty",
		      info->imported == KB_ORIGIN_PLAIN ? "RSA" : "RSA-HSM",
		      "n", b64_string(info->n, info->nlen), "e",
		      b64_string(info->e, info->elen), "key_ops",
		      kb_key_ops_json(info->damaged ? 0 : info->key_ops),
		      "attributes", key_attributes(info), "tags",
		      key_tags(info));
	if (b == NULL || info->deleted == 0)
		return b;
	snprintf(rid, sizeof(rid), "keybroker://%s/deletedkeys/%s",
		 ops->instance, info->name);
	json_object_set_new(b, "recoveryId", json_string(rid));
	json_object_set_new(b, "deletedDate", json_integer(info->deleted));
	json_object_set_new(b, "scheduledPurgeDate",
			    json_integer(info->scheduled_purge));
	return b;
}

static json_t *do_get_key(struct kb_call *call, struct kb_error *err)
{
	struct kb_request *req = call->req;

	call->status = kb_keystore_describe(call->ops->ks, req->key.name,
					    req->key.version, &call->info);
	return call->status == KB_STATUS_OK ?
		       key_bundle(call->ops, &call->info) :
		       NULL;
}

/*
 * One page of a list: items in a JSON array, and where the page ended if
 * more follow. Filled in catalogue order by the foreach callbacks below.
 */
struct page {
	struct kb_call *call;
	json_t *items;
	unsigned int n;
	bool more; /* an item past the page exists */
	bool started; /* past the previous page's end */
	bool deleted; /* getKeys: live keys; getDeletedKeys: deleted ones */
	char last[KB_NAME_MAX + 1]; /* the last item's name or version */
	char seen[KB_NAME_MAX + 1]; /* getKeys: the name last looked at */
};

/* getKeys: each key name the caller may list, after the previous page. */
static void page_key(const struct kb_key_info *info, void *arg)
{
	struct page *pg = arg;
	const struct kb_request *req = pg->call->req;

	if (pg->more || strcmp(info->name, pg->seen) == 0)
		return;
	snprintf(pg->seen, sizeof(pg->seen), "%s", info->name);
	if ((info->deleted != 0) != pg->deleted ||
	    strcmp(info->name, req->page.next) <= 0 ||
	    !kb_acl_allows(pg->call->pol->acl, pg->call->caller->identity,
			   info->name, req->def->perm))
		return;
	if (pg->n == req->page.max) {
		pg->more = true;
		return;
	}
	json_array_append_new(pg->items, json_string(info->name));
	snprintf(pg->last, sizeof(pg->last), "%s", info->name);
	pg->n++;
}

/* getKeyVersions: each version of the key, after the previous page. */
static void page_version(const struct kb_key_info *info, void *arg)
{
	struct page *pg = arg;
	const struct kb_request *req = pg->call->req;
	char kid[KB_KID_MAX];

	if (pg->more || strcmp(info->name, req->key.name) != 0 ||
	    info->deleted != 0)
		return;
	pg->call->status = KB_STATUS_OK; /* the key exists */
	if (!pg->started) {
		pg->started = strcmp(info->version, req->page.next) == 0;
		return;
	}
	if (pg->n == req->page.max) {
		pg->more = true;
		return;
	}
	kb_kid_format(kid, sizeof(kid), pg->call->ops->instance, info->name,
		      info->version);
	json_array_append_new(pg->items,
			      json_pack("{s:s, s:o, s:o}", "kid", kid,
					"attributes", key_attributes(info),
					"tags", key_tags(info)));
	snprintf(pg->last, sizeof(pg->last), "%s", info->version);
	pg->n++;
}

/* The result of a list: {"value": [...], "nextLink": ...}. */
static json_t *page_result(struct page *pg)
{
	json_t *res = json_pack("{s:o}", "value", pg->items);

	if (res != NULL && pg->more)
		json_object_set_new(res, "nextLink", json_string(pg->last));
	return res;
}

/*
 * getKeys and getDeletedKeys: the keys the caller may list (others are
 * left out, not refused: a list does not reveal them), each with its
 * current version's attributes, in name order.
 */
static json_t *list_keys(struct kb_call *call, bool deleted)
{
	struct page pg = { .call = call,
			   .items = json_array(),
			   .deleted = deleted };
	struct kb_key_info *info;
	json_t *names, *v, *item;
	char kid[KB_KID_MAX];
	size_t i;
	int r;

	if (pg.items == NULL ||
	    (call->status = kb_keystore_foreach(call->ops->ks, page_key,
						&pg)) != KB_STATUS_OK) {
		json_decref(pg.items);
		return NULL;
	}
	names = pg.items;
	if ((pg.items = json_array()) == NULL ||
	    (info = malloc(sizeof(*info))) == NULL) {
		json_decref(pg.items);
		json_decref(names);
		return NULL;
	}
	json_array_foreach(names, i, v) {
		r = deleted ?
			    kb_lifecycle_describe_deleted(
				    call->ops->ks, json_string_value(v), info) :
			    kb_keystore_describe(call->ops->ks,
						 json_string_value(v), "",
						 info);
		if (r != KB_STATUS_OK && r != KB_ERR_DAMAGED)
			continue; /* gone since the walk */
		if (deleted) {
			item = key_bundle(call->ops, info);
			json_object_del(item, "key");
			kb_kid_format(kid, sizeof(kid), call->ops->instance,
				      json_string_value(v), NULL);
			json_object_set_new(item, "kid", json_string(kid));
		} else {
			kb_kid_format(kid, sizeof(kid), call->ops->instance,
				      json_string_value(v), NULL);
			item = json_pack("{s:s, s:o, s:o}", "kid", kid,
					 "attributes", key_attributes(info),
					 "tags", key_tags(info));
		}
		json_array_append_new(pg.items, item);
	}
	free(info);
	json_decref(names);
	return page_result(&pg);
}

static json_t *do_get_keys(struct kb_call *call, struct kb_error *err)
{
	return list_keys(call, false);
}

static json_t *do_get_deleted_keys(struct kb_call *call, struct kb_error *err)
{
	return list_keys(call, true);
}

/* getKeyVersions: the versions of one key, oldest first. */
static json_t *do_get_key_versions(struct kb_call *call, struct kb_error *err)
{
	struct kb_request *req = call->req;
	struct page pg = { .call = call, .items = json_array() };
	int r;

	pg.started = req->page.next[0] == '\0';
	if (pg.started == false &&
	    !kb_version_valid(req->page.next, strlen(req->page.next))) {
		json_decref(pg.items);
		kb_error_set(
			err, KB_BAD_PARAMETER,
			"'nextLink' must be what a previous page returned");
		return NULL;
	}
	snprintf(call->info.name, sizeof(call->info.name), "%s", req->key.name);
	call->status = KB_ERR_NOT_FOUND; /* until a version is seen */
	if (pg.items == NULL ||
	    (r = kb_keystore_foreach(call->ops->ks, page_version, &pg)) !=
		    KB_STATUS_OK) {
		call->status = pg.items == NULL ? KB_ERR_NOMEM : r;
		json_decref(pg.items);
		return NULL;
	}
	if (call->status != KB_STATUS_OK || !pg.started) {
		json_decref(pg.items);
		if (call->status == KB_STATUS_OK)
			kb_error_set(err, KB_BAD_PARAMETER,
				     "'nextLink' names no version of key "
				     "'%s' (deleted since?); list from the "
				     "start",
				     req->key.name);
		return NULL;
	}
	return page_result(&pg);
}

static json_t *do_wrap(struct kb_call *call, struct kb_error *err)
{
	struct kb_request *req = call->req;
	unsigned char out[P11_MODULUS_MAX];
	size_t outlen;

	call->status = kb_keystore_wrap(call->ops->ks, req->key.name,
					req->key.version, req->crypt.alg,
					req->crypt.value, req->crypt.value_len,
					out, &outlen, &call->info);
	if (call->status != KB_STATUS_OK)
		return NULL;
	return json_pack("{s:o, s:o}", "kid",
			 kid_string(call->ops, &call->info), "value",
			 b64_string(out, outlen));
}

static json_t *do_unwrap(struct kb_call *call, struct kb_error *err)
{
	struct kb_request *req = call->req;
	enum kb_alg alg = req->crypt.alg;
	unsigned char out[P11_MODULUS_MAX];
	size_t outlen = 0;
	json_t *res = NULL;

	call->status = kb_keyworker_unwrap(
		call->w, req->key.name, req->key.version, alg, req->crypt.value,
		req->crypt.value_len, out, &outlen, &call->info);
	if (call->status == KB_STATUS_OK) {
		res = json_pack("{s:o, s:o}", "kid",
				kid_string(call->ops, &call->info), "value",
				b64_string(out, outlen));
		call->note = kb_path_name(call->info.path[alg]);
	}
	kb_wipe(out, sizeof(out));
	return res;
}

static int64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void describe_peer(const struct kb_peer *p, char *buf, size_t size)
{
	snprintf(buf, size, "uid %u gid %u pid %d unit %.64s%s%.64s",
		 (unsigned int)p->uid, (unsigned int)p->gid, (int)p->pid,
		 p->unit[0] ? p->unit : "-",
		 p->user_unit[0] ? " user unit " : "", p->user_unit);
}

/* Takes one request from identity's bucket, or says Throttled. */
static int rate_limit(const struct kb_ops *ops, const struct kb_policy *pol,
		      const char *identity, struct kb_error *err)
{
	if (pol->cfg->rate_per_s <= 0 ||
	    kb_rate_take(ops->rate, identity, pol->cfg->rate_per_s,
			 pol->cfg->rate_burst, now_us()))
		return 0;
	return kb_error_set(err, KB_THROTTLED,
			    "identity '%s' is over its rate limit of %g "
			    "requests/s; retry later",
			    identity, pol->cfg->rate_per_s);
}

static json_t *do_authenticate(struct kb_call *call, struct kb_error *err)
{
	const struct kb_ops *ops = call->ops;
	const struct kb_request *req = call->req;
	struct kb_caller *caller = call->caller;
	const struct kb_identity_cfg *id;
	char why[256], peer[240];
	struct kb_token_ids ids;
	int64_t expires;

	if (kb_policy_authenticate(call->pol, ops->ks, req->auth.token,
				   req->auth.token_len, now_us() / 1000000, &id,
				   &expires, &ids, why, sizeof(why)) != 0) {
		kb_error_set(err, KB_UNAUTHORIZED, "%s", why);
		return NULL;
	}
	if (!kb_peer_bound(&id->bind, &caller->peer)) {
		describe_peer(&caller->peer, peer, sizeof(peer));
		kb_error_set(err, KB_FORBIDDEN,
			     "identity '%s' is not bound to this caller (%s)",
			     id->name, peer);
		return NULL;
	}
	snprintf(caller->identity, sizeof(caller->identity), "%s", id->name);
	caller->expires = expires;
	caller->token = ids;
	return json_pack("{s:s, s:I}", "identity", id->name, "expires",
			 (json_int_t)expires);
}

struct signer {
	struct kb_keystore *ks;
	struct kb_keyworker *w;
};

static int sign_in_token(const unsigned char *digest, unsigned char *sig,
			 void *arg)
{
	struct signer *s = arg;

	return kb_issuer_sign(s->ks, s->w, digest, sig) == KB_STATUS_OK ? 0 :
									  -1;
}

static json_t *do_get_token(struct kb_call *call, struct kb_error *err)
{
	const struct kb_ops *ops = call->ops;
	const struct kb_policy *pol = call->pol;
	const struct kb_caller *caller = call->caller;
	const struct kb_identity_cfg *id;
	struct signer sg = { ops->ks, call->w };
	struct kb_jwt_mint m;
	char tok[2048], jti[33], peer[240];
	json_t *res;
	int n;

	if ((id = kb_policy_system_identity(pol, &caller->peer)) == NULL) {
		describe_peer(&caller->peer, peer, sizeof(peer));
		kb_error_set(err, KB_UNAUTHORIZED,
			     "no system-assigned identity matches this caller "
			     "(%s)",
			     peer);
		return NULL;
	}
	/* Minting signs in the token: it counts against the rate limit. */
	if (rate_limit(ops, pol, id->name, err) != 0)
		return NULL;
	if (!pol->self_issuer) {
		kb_error_set(err, KB_NOT_SUPPORTED,
			     "the token has no issuer key; see keybrokerctl "
			     "issuer-key");
		return NULL;
	}
	m = (struct kb_jwt_mint){
		.issuer = pol->cfg->token_issuer,
		.subject = id->name,
		.audience = pol->cfg->token_audience,
		.kid = pol->self_kid,
		.now = now_us() / 1000000,
		.ttl_s = pol->cfg->token_lifetime_s,
	};
	if ((n = kb_jwt_mint(&m, sign_in_token, &sg, tok, sizeof(tok), jti)) <
	    0) {
		kb_error_set(err, KB_HSM_UNAVAILABLE,
			     "the token could not sign; retry later");
		return NULL;
	}
	memcpy(call->minted_jti, jti, sizeof(call->minted_jti));
	kb_info("getToken: issued token %s for identity '%s' to %s", jti,
		id->name,
		(describe_peer(&caller->peer, peer, sizeof(peer)), peer));
	res = json_pack("{s:s#, s:I, s:s}", "access_token", tok, (size_t)n,
			"expires_on", (json_int_t)(m.now + m.ttl_s), "identity",
			id->name);
	kb_wipe(tok, sizeof(tok));
	return res;
}

/*
 * revokeToken: keybrokerctl telling the running broker a token id it has
 * revoked, so that the broker refuses it even when the token did not
 * keep the revocation. Only root and the broker's own uid may: the
 * callers who may signal the broker and read its PIN file anyway. It can
 * only ever refuse more.
 */
static json_t *do_revoke_token(struct kb_call *call, struct kb_error *err)
{
	const struct kb_ops *ops = call->ops;
	const struct kb_request *req = call->req;
	const struct kb_caller *caller = call->caller;
	char q[80];

	if (caller->peer.uid != 0 && caller->peer.uid != geteuid()) {
		kb_error_set(err, KB_FORBIDDEN,
			     "revokeToken is for root and the broker's own uid "
			     "(%u), not uid %u",
			     (unsigned int)geteuid(),
			     (unsigned int)caller->peer.uid);
		return NULL;
	}
	if (kb_identity_remember_revoked(ops->ks, req->revoke.jti) !=
	    KB_STATUS_OK) {
		kb_error_set(err, KB_INTERNAL, "out of memory");
		return NULL;
	}
	kb_proto_quote(q, sizeof(q), req->revoke.jti, 64);
	kb_info("revokeToken: token %s is refused from now on (told by uid "
		"%u pid %d)",
		q, (unsigned int)caller->peer.uid, (int)caller->peer.pid);
	return json_pack("{s:s}", "jti", req->revoke.jti);
}

/* ---- management ---- */

/* What a lifecycle call returned: the key bundle, or its error. */
static json_t *managed(struct kb_call *call, int r, const char *msg,
		       struct kb_error *err)
{
	if (r == KB_STATUS_OK)
		return key_bundle(call->ops, &call->info);
	kb_error_set(err, kb_status_code(r), "%s",
		     msg[0] != '\0' ? msg : "internal error");
	return NULL;
}

/* Ops on a key as a whole take no version. */
static bool whole_key(struct kb_call *call, struct kb_error *err)
{
	if (call->req->key.version[0] == '\0')
		return true;
	kb_error_set(err, KB_BAD_PARAMETER,
		     "%s works on key '%s' as a whole: give no version",
		     call->req->opname, call->req->key.name);
	return false;
}

/*
 * An op on a key as a whole whose result is the key's bundle: rotate,
 * delete, recover.
 */
static json_t *on_whole_key(struct kb_call *call, struct kb_error *err,
			    int (*op)(struct kb_keystore *ks, const char *name,
				      struct kb_key_info *info, char *err,
				      size_t errlen))
{
	char msg[512] = "";

	if (!whole_key(call, err))
		return NULL;
	return managed(call,
		       op(call->ops->ks, call->req->key.name, &call->info, msg,
			  sizeof(msg)),
		       msg, err);
}

/*
 * What a new version is made with: the request's attributes, tags and
 * key_ops, enabled and good for wrap and unwrap where it says nothing.
 */
static void version_spec(const struct kb_manage_params *m,
			 struct kb_version_spec *spec)
{
	*spec = (struct kb_version_spec){
		.bits = m->bits,
		.enabled = (m->attrs.set & KB_SET_ENABLED) ? m->attrs.enabled :
							     true,
		.nbf = m->attrs.nbf,
		.exp = m->attrs.exp,
		.key_ops = (m->attrs.set & KB_SET_KEY_OPS) ? m->attrs.key_ops :
							     KB_KEYOPS_ALL,
	};
	memcpy(spec->tags, m->attrs.tags, sizeof(spec->tags));
}

static json_t *do_create_key(struct kb_call *call, struct kb_error *err)
{
	struct kb_version_spec spec;
	char msg[512] = "";

	if (!whole_key(call, err))
		return NULL;
	version_spec(&call->req->manage, &spec);
	return managed(call,
		       kb_lifecycle_create(call->ops->ks, call->req->key.name,
					   &spec, &call->info, msg,
					   sizeof(msg)),
		       msg, err);
}

/*
 * importKey: a key brought in from outside as a new version of the key,
 * in plain (jwk, pem) or wrapped for a key-exchange key (kek, blob).
 */
static json_t *do_import_key(struct kb_call *call, struct kb_error *err)
{
	const struct kb_manage_params *m = &call->req->manage;
	struct kb_version_spec spec;
	struct kb_import_src src = { .kek = m->kek.name,
				     .kek_version = m->kek.version,
				     .kek_alg = m->kek_alg };
	struct kb_rsa_import *parts = NULL;
	unsigned char *blob = NULL;
	char msg[512] = "";
	json_t *res = NULL;
	int r;

	if (!whole_key(call, err))
		return NULL;
	/* Said before anything of the key is looked at. */
	if ((r = kb_lifecycle_imports_allowed(call->ops->ks, msg,
					      sizeof(msg))) != KB_STATUS_OK) {
		kb_error_set(err, kb_status_code(r), "%s", msg);
		return NULL;
	}
	/*
	 * A blob is safe to hand around only because its KEK is guarded:
	 * the caller needs import on the KEK as well as on the key.
	 */
	if (m->kek.name[0] != '\0' &&
	    !kb_acl_allows(call->pol->acl, call->caller->identity, m->kek.name,
			   KB_PERM_IMPORT)) {
		kb_error_set(err, KB_FORBIDDEN,
			     "identity '%s' lacks import on key-exchange key "
			     "'%s'",
			     call->caller->identity, m->kek.name);
		return NULL;
	}
	version_spec(m, &spec);
	if ((m->jwk != NULL &&
	     kb_rsa_import_jwk(m->jwk, &parts, msg, sizeof(msg)) != 0) ||
	    (m->pem != NULL && kb_rsa_import_pem(m->pem, m->pem_len, &parts,
						 msg, sizeof(msg)) != 0)) {
		kb_error_set(err, KB_BAD_PARAMETER, "%s", msg);
		return NULL;
	}
	if (parts != NULL) {
		src.parts = kb_rsa_import_parts(parts);
	} else if ((blob = malloc(KB_BLOB_MAX)) == NULL ||
		   kb_b64_decode(blob, KB_BLOB_MAX, &src.bloblen, m->blob,
				 m->blob_len) != 0) {
		kb_error_set(err, KB_BAD_PARAMETER,
			     "'blob' is not base64url without padding");
		goto out;
	} else {
		src.blob = blob;
	}
	res = managed(call,
		      kb_lifecycle_import(call->ops->ks, call->req->key.name,
					  &src, &spec, &call->info, msg,
					  sizeof(msg)),
		      msg, err);
out:
	kb_rsa_import_free(parts);
	free(blob);
	return res;
}

static json_t *do_rotate_key(struct kb_call *call, struct kb_error *err)
{
	return on_whole_key(call, err, kb_lifecycle_rotate);
}

static json_t *do_update_key(struct kb_call *call, struct kb_error *err)
{
	const struct kb_request *req = call->req;
	char msg[512] = "";

	if (req->manage.attrs.set == 0) {
		kb_error_set(err, KB_BAD_PARAMETER,
			     "nothing to update: give attributes, tags or "
			     "key_ops");
		return NULL;
	}
	return managed(call,
		       kb_lifecycle_update(call->ops->ks, req->key.name,
					   req->key.version, &req->manage.attrs,
					   &call->info, msg, sizeof(msg)),
		       msg, err);
}

static json_t *do_delete_key(struct kb_call *call, struct kb_error *err)
{
	return on_whole_key(call, err, kb_lifecycle_delete);
}

static json_t *do_get_deleted_key(struct kb_call *call, struct kb_error *err)
{
	char msg[512];

	if (!whole_key(call, err))
		return NULL;
	snprintf(msg, sizeof(msg), "key '%s' is not a deleted key",
		 call->req->key.name);
	return managed(call,
		       kb_lifecycle_describe_deleted(
			       call->ops->ks, call->req->key.name, &call->info),
		       msg, err);
}

static json_t *do_recover_key(struct kb_call *call, struct kb_error *err)
{
	return on_whole_key(call, err, kb_lifecycle_recover);
}

static json_t *do_purge_key(struct kb_call *call, struct kb_error *err)
{
	char msg[512] = "";
	int r;

	if (!whole_key(call, err))
		return NULL;
	r = kb_lifecycle_purge(call->ops->ks, call->req->key.name, msg,
			       sizeof(msg));
	if (r == KB_STATUS_OK)
		return json_object();
	kb_error_set(err, kb_status_code(r), "%s", msg);
	return NULL;
}

/* A rotation policy as the policy ops return it. */
static json_t *policy_result(const struct kb_call *call,
			     const struct kb_rotation_policy *p)
{
	char id[KB_KID_MAX + 32];
	json_t *o = p->text[0] != '\0' ? json_loads(p->text, 0, NULL) :
					 json_pack("{s:[]}", "lifetimeActions");

	kb_kid_format(id, sizeof(id), call->ops->instance, call->req->key.name,
		      NULL);
	strcat(id, "/rotationpolicy");
	if (o != NULL)
		json_object_set_new(o, "id", json_string(id));
	return o;
}

static json_t *do_get_policy(struct kb_call *call, struct kb_error *err)
{
	struct kb_rotation_policy p;
	int r;

	if (!whole_key(call, err))
		return NULL;
	if ((r = kb_lifecycle_get_policy(call->ops->ks, call->req->key.name,
					 &p)) != KB_STATUS_OK) {
		kb_error_set(err, kb_status_code(r), "key '%s' not found",
			     call->req->key.name);
		return NULL;
	}
	return policy_result(call, &p);
}

static json_t *do_update_policy(struct kb_call *call, struct kb_error *err)
{
	struct kb_rotation_policy p;
	char msg[512] = "";
	int r;

	if (!whole_key(call, err))
		return NULL;
	if (kb_rotation_policy_parse(call->req->manage.policy,
				     call->pol->cfg->min_rotation_s, &p, msg,
				     sizeof(msg)) != 0) {
		kb_error_set(err, KB_BAD_PARAMETER, "policy: %s", msg);
		return NULL;
	}
	if ((r = kb_lifecycle_set_policy(call->ops->ks, call->req->key.name, &p,
					 msg, sizeof(msg))) != KB_STATUS_OK) {
		kb_error_set(err, kb_status_code(r), "%s", msg);
		return NULL;
	}
	return policy_result(call, &p);
}

/*
 * rewrapKey: unwraps value with the version it names and wraps what came
 * out with the key's current version, in one call: the DEK never leaves
 * the broker.
 */
static json_t *do_rewrap(struct kb_call *call, struct kb_error *err)
{
	struct kb_request *req = call->req;
	enum kb_alg alg = req->crypt.alg;
	unsigned char dek[P11_MODULUS_MAX], out[P11_MODULUS_MAX];
	size_t deklen = 0, outlen;
	json_t *res = NULL;

	if (req->key.version[0] == '\0') {
		kb_error_set(err, KB_BAD_PARAMETER,
			     "rewrapKey needs the version that wrapped the "
			     "value ('version', or a 'kid' with one)");
		return NULL;
	}
	call->status = kb_keyworker_unwrap(
		call->w, req->key.name, req->key.version, alg, req->crypt.value,
		req->crypt.value_len, dek, &deklen, &call->info);
	if (call->status == KB_STATUS_OK)
		call->status = kb_keystore_wrap(call->ops->ks, req->key.name,
						"", alg, dek, deklen, out,
						&outlen, &call->info);
	if (call->status == KB_STATUS_OK)
		res = json_pack("{s:o, s:o}", "kid",
				kid_string(call->ops, &call->info), "value",
				b64_string(out, outlen));
	kb_wipe(dek, sizeof(dek));
	return res;
}

/* The audit public key as a JWK and a PEM, into res. */
static int add_public_key(json_t *res, EVP_PKEY *pub)
{
	unsigned char point[65];
	char x[44], y[44], *pem = NULL;
	BIO *bio = BIO_new(BIO_s_mem());
	long n;
	size_t len;
	int r = -1;

	if (bio == NULL ||
	    EVP_PKEY_get_octet_string_param(pub, OSSL_PKEY_PARAM_PUB_KEY, point,
					    sizeof(point), &len) != 1 ||
	    len != sizeof(point) || PEM_write_bio_PUBKEY(bio, pub) != 1 ||
	    (n = BIO_get_mem_data(bio, &pem)) <= 0)
		goto out;
	kb_b64_encode(x, point + 1, 32);
	kb_b64_encode(y, point + 33, 32);
	json_object_set_new(res, "publicKey",
			    json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "kty",
				      "EC", "crv", "P-256", "x", x, "y", y,
				      "alg", "ES256", "use", "sig"));
	json_object_set_new(res, "publicKeyPem", json_stringn(pem, (size_t)n));
	r = 0;
out:
	BIO_free(bio);
	return r;
}

/*
 * getAuditStatus [readAudit]: the trail's head, its last checkpoint,
 * what went unrecorded, and the public key its checkpoints verify with.
 */
static json_t *do_get_audit_status(struct kb_call *call, struct kb_error *err)
{
	struct kb_audit_status st;
	char keyid[KB_TRAIL_KEYID_LEN + 1];
	EVP_PKEY *pub;
	json_t *res;

	if (call->ops->audit == NULL) {
		kb_error_set(err, KB_NOT_SUPPORTED,
			     "this broker keeps no audit trail (audit.enabled "
			     "is false)");
		return NULL;
	}
	kb_audit_status(call->ops->audit, &st);
	res = json_pack("{s:s, s:b, s:I, s:s, s:{s:I, s:I}}", "origin",
			st.origin, "available", st.available, "records",
			(json_int_t)st.next_seq, "head", st.head, "unrecorded",
			"served", (json_int_t)st.unrecorded_served, "refused",
			(json_int_t)st.unrecorded_refused);
	if (res == NULL)
		return NULL;
	if (!st.available)
		json_object_set_new(res, "reason", json_string(st.reason));
	json_object_set_new(res, "lastCheckpoint",
			    st.checkpoint_size == 0 ?
				    json_null() :
				    json_pack("{s:I, s:s}", "size",
					      (json_int_t)st.checkpoint_size,
					      "time", st.checkpoint_time));
	if ((pub = kb_auditkey_public(call->ops->ks, keyid)) != NULL) {
		json_object_set_new(res, "keyid", json_string(keyid));
		add_public_key(res, pub);
		EVP_PKEY_free(pub);
	}
	return res;
}

/*
 * Who may do this: an identity that has not expired, within its rate,
 * holding the op's permission on the key. Never reveals whether a key the
 * caller may not use exists.
 */
/* Names the access entry (identity, key pattern) that allowed call. */
static void add_grant(struct kb_call *call, const char *pattern)
{
	size_t n = strlen(call->grant);
	char one[sizeof(call->grant)];

	snprintf(one, sizeof(one), "%s on %s", call->caller->identity, pattern);
	/* Several permissions may come from one entry or several. */
	if (strstr(call->grant, one) == NULL)
		snprintf(call->grant + n, sizeof(call->grant) - n, "%s%s",
			 n > 0 ? "; " : "", one);
}

static int authorise(struct kb_call *call, struct kb_error *err)
{
	const struct kb_ops *ops = call->ops;
	const struct kb_policy *pol = call->pol;
	const struct kb_caller *caller = call->caller;
	const struct kb_request *req = call->req;
	unsigned int perm = req->def->perm, bit;
	const char *pattern;

	if (caller->identity[0] == '\0')
		return kb_error_set(
			err, KB_UNAUTHORIZED,
			"no identity: send authenticate with a token "
			"first (getToken mints one for a "
			"system-assigned identity)");
	if (now_us() / 1000000 >= caller->expires)
		return kb_error_set(err, KB_UNAUTHORIZED,
				    "token expired: authenticate again");
	/* A revocation stops connections that already authenticated. */
	if (caller->token.jti[0] != '\0' &&
	    kb_identity_revoked(ops->ks, caller->token.jti))
		return kb_error_set(err, KB_UNAUTHORIZED,
				    "token has been revoked: authenticate "
				    "again with another token");
	if (rate_limit(ops, pol, caller->identity, err) != 0)
		return -1;
	/*
	 * An op on no one key (a list) applies perm to each key itself. An
	 * op needing several permissions (rewrapKey) may hold them by
	 * several grants.
	 */
	if (perm == KB_PERM_READ_AUDIT) {
		if ((pattern = kb_acl_holds(pol->acl, caller->identity,
					    perm)) == NULL) {
			call->missing = kb_perm_name(perm);
			return kb_error_set(err, KB_FORBIDDEN,
					    "identity '%s' lacks readAudit",
					    caller->identity);
		}
		add_grant(call, pattern);
		return 0;
	}
	if (!(req->def->fields & KB_F_KEY))
		return 0;
	for (bit = 1; bit <= perm; bit <<= 1) {
		if (!(perm & bit))
			continue;
		if ((pattern = kb_acl_match(pol->acl, caller->identity,
					    req->key.name, bit)) == NULL) {
			call->missing = kb_perm_name(bit);
			return kb_error_set(
				err, KB_FORBIDDEN,
				"identity '%s' lacks %s on key '%s'",
				caller->identity, kb_perm_name(bit),
				req->key.name);
		}
		add_grant(call, pattern);
	}
	return 0;
}

/* A failed request, in the log as far as its uid's share allows. */
static void log_refusal(const struct kb_ops *ops,
			const struct kb_caller *caller,
			const struct kb_request *req,
			const struct kb_error *err)
{
	char note[KB_LOGRATE_NOTE_MAX];

	if (!kb_lograte_allow(ops->lograte, caller->peer.uid, now_us() / 1000,
			      note, sizeof(note)))
		return;
	kb_info("%s %s%s%s%s%s: %s: %s (uid %u)%s",
		caller->identity[0] ? caller->identity : "-",
		req->opname[0] ? req->opname : "request",
		req->key.name[0] ? " " : "", req->key.name,
		req->key.version[0] ? "/" : "", req->key.version,
		kb_code_name(err->code), err->msg,
		(unsigned int)caller->peer.uid, note);
}

/* The op table: every op of protocol v1. */
static const struct kb_op_def op_rows[] = {
	{ "authenticate", KB_F_TOKEN, 0, KB_OPF_UNRECORDED, do_authenticate },
	{ "getToken", 0, 0, KB_OPF_TOKEN, do_get_token },
	{ "getKey", KB_F_KEY, KB_PERM_GET, KB_OPF_IDENTITY | KB_OPF_UNRECORDED,
	  do_get_key },
	{ "wrapKey", KB_F_KEY | KB_F_ALG | KB_F_VALUE, KB_PERM_WRAP_KEY,
	  KB_OPF_IDENTITY | KB_OPF_UNRECORDED, do_wrap },
	{ "unwrapKey", KB_F_KEY | KB_F_ALG | KB_F_VALUE, KB_PERM_UNWRAP_KEY,
	  KB_OPF_IDENTITY | KB_OPF_TOKEN, do_unwrap },
	{ "revokeToken", KB_F_JTI, 0, KB_OPF_CHANGES, do_revoke_token },
	{ "createKey", KB_F_KEY | KB_F_KTY | KB_F_ATTRS, KB_PERM_CREATE,
	  KB_OPF_IDENTITY | KB_OPF_TOKEN | KB_OPF_CHANGES, do_create_key },
	{ "importKey", KB_F_KEY | KB_F_ATTRS | KB_F_IMPORT, KB_PERM_IMPORT,
	  KB_OPF_IDENTITY | KB_OPF_TOKEN | KB_OPF_CHANGES, do_import_key },
	{ "rotateKey", KB_F_KEY, KB_PERM_ROTATE,
	  KB_OPF_IDENTITY | KB_OPF_TOKEN | KB_OPF_CHANGES, do_rotate_key },
	{ "updateKey", KB_F_KEY | KB_F_ATTRS, KB_PERM_UPDATE,
	  KB_OPF_IDENTITY | KB_OPF_TOKEN | KB_OPF_CHANGES, do_update_key },
	{ "getKeys", KB_F_PAGE, KB_PERM_LIST, KB_OPF_IDENTITY, do_get_keys },
	{ "getKeyVersions", KB_F_KEY | KB_F_PAGE, KB_PERM_LIST, KB_OPF_IDENTITY,
	  do_get_key_versions },
	{ "deleteKey", KB_F_KEY, KB_PERM_DELETE,
	  KB_OPF_IDENTITY | KB_OPF_TOKEN | KB_OPF_CHANGES, do_delete_key },
	{ "getDeletedKey", KB_F_KEY, KB_PERM_LIST, KB_OPF_IDENTITY,
	  do_get_deleted_key },
	{ "getDeletedKeys", KB_F_PAGE, KB_PERM_LIST, KB_OPF_IDENTITY,
	  do_get_deleted_keys },
	{ "recoverDeletedKey", KB_F_KEY, KB_PERM_RECOVER,
	  KB_OPF_IDENTITY | KB_OPF_TOKEN | KB_OPF_CHANGES, do_recover_key },
	{ "purgeDeletedKey", KB_F_KEY, KB_PERM_PURGE,
	  KB_OPF_IDENTITY | KB_OPF_TOKEN | KB_OPF_CHANGES, do_purge_key },
	{ "getKeyRotationPolicy", KB_F_KEY, KB_PERM_GET, KB_OPF_IDENTITY,
	  do_get_policy },
	{ "updateKeyRotationPolicy", KB_F_KEY | KB_F_POLICY, KB_PERM_UPDATE,
	  KB_OPF_IDENTITY | KB_OPF_TOKEN | KB_OPF_CHANGES, do_update_policy },
	{ "rewrapKey", KB_F_KEY | KB_F_ALG | KB_F_VALUE,
	  KB_PERM_UNWRAP_KEY | KB_PERM_WRAP_KEY, KB_OPF_IDENTITY | KB_OPF_TOKEN,
	  do_rewrap },
	{ "getAuditStatus", 0, KB_PERM_READ_AUDIT,
	  KB_OPF_IDENTITY | KB_OPF_UNRECORDED, do_get_audit_status },
};

static const struct kb_op_table op_table = {
	op_rows,
	sizeof(op_rows) / sizeof(op_rows[0]),
};

const struct kb_op_table *kb_ops_table(void)
{
	return &op_table;
}

/* What a request whose result the trail lacks is told instead. */
static void withhold(struct kb_error *err, const char *opname, bool changes)
{
	kb_error_set(err, KB_AUDIT_UNAVAILABLE,
		     "%s could not be recorded in the audit trail, so its "
		     "result is withheld%s",
		     opname, changes ? " (the change itself was made)" : "");
}

/*
 * The request's record, appended to the trail before its reply can go,
 * or staged in batch (then pending says what the reply depends on). An
 * op that must not go unrecorded is refused if its record cannot be
 * written, its result (a DEK, a token) dropped: AuditUnavailable.
 */
static void record(struct kb_call *call, struct kb_error *err, json_t **result,
		   int64_t start_us, struct kb_audit_batch *batch,
		   struct kb_pending *pending)
{
	const struct kb_request *req = call->req;
	unsigned long held = 0;
	bool served, must;
	json_t *rec;
	int r = -1;

	if (call->ops->audit == NULL)
		return;
	/* Anonymous refusals: as many as their uid's share allows. */
	if (err->code != KB_OK && call->caller->identity[0] == '\0' &&
	    call->ops->auditrate != NULL &&
	    !kb_lograte_take(call->ops->auditrate, call->caller->peer.uid,
			     now_us() / 1000, &held))
		return;
	/* Unrecorded, only these are served; the others are withheld. */
	served = err->code == KB_OK && (req->def->flags & KB_OPF_UNRECORDED);
	must = err->code == KB_OK && !(req->def->flags & KB_OPF_UNRECORDED);
	if ((rec = kb_record_request(call, err, *result,
				     now_us() - start_us)) != NULL) {
		if (held > 0)
			json_object_set_new(rec, "heldBack",
					    json_integer((json_int_t)held));
		if (batch == NULL)
			r = kb_audit_append(call->ops->audit, rec, served);
		else if ((r = kb_audit_stage(batch, rec, served)) == 0 && must)
			*pending = (struct kb_pending){
				.staged = true,
				.record = batch->n - 1,
				.id = json_incref(req->id),
				.opname = req->def->name,
				.changes = req->def->flags & KB_OPF_CHANGES,
			};
	}
	json_decref(rec);
	if (r == 0 || !must)
		return;
	json_decref(*result);
	*result = NULL;
	withhold(err, req->opname, req->def->flags & KB_OPF_CHANGES);
}

char *kb_ops_withheld(const struct kb_pending *p, size_t *len)
{
	struct kb_error err;

	withhold(&err, p->opname, p->changes);
	return kb_proto_error(p->id, err.code, err.msg, len);
}

void kb_pending_clear(struct kb_pending *p)
{
	json_decref(p->id);
	*p = (struct kb_pending){ .staged = false };
}

char *kb_ops_handle(const struct kb_ops *ops, struct kb_keyworker *w,
		    struct kb_caller *caller, const char *line, size_t len,
		    struct kb_audit_batch *batch, struct kb_pending *pending,
		    size_t *resplen, enum kb_code *code)
{
	struct kb_policy *pol = kb_policy_get(ops->policy);
	struct kb_request req;
	struct kb_error err = { KB_OK, "" };
	struct kb_call call = {
		.ops = ops,
		.pol = pol,
		.w = w,
		.caller = caller,
		.req = &req,
		.status = KB_STATUS_OK,
		.note = "",
	};
	int64_t start_us = now_us();
	json_t *result = NULL;
	char *resp;

	if (kb_proto_parse(line, len, ops->instance, &op_table, &req, &err) !=
	    0)
		goto reply;
	if (!(req.def->flags & KB_OPF_UNRECORDED) &&
	    !kb_audit_available(ops->audit)) {
		kb_error_set(&err, KB_AUDIT_UNAVAILABLE,
			     "the audit trail cannot be written, so %s is "
			     "refused until it can (the broker's log says why)",
			     req.opname);
		goto reply;
	}
	if ((req.def->flags & KB_OPF_IDENTITY) && authorise(&call, &err) != 0)
		goto reply;
	if ((req.def->fields & KB_F_ALG) && req.crypt.alg == KB_ALG_RSA1_5 &&
	    !ops->allow_rsa1_5) {
		kb_error_set(&err, KB_NOT_SUPPORTED,
			     "RSA1_5 is disabled by the broker configuration");
		goto reply;
	}
	result = req.def->handle(&call, &err);
	if (call.status == KB_STATUS_OK && result == NULL && err.code == KB_OK)
		call.status = KB_ERR_NOMEM;
	if (call.status != KB_STATUS_OK)
		status_error(&call, &err);
reply:
	if (err.code == KB_OK && result == NULL)
		kb_error_set(&err, KB_INTERNAL, "internal error");
	record(&call, &err, &result, start_us, batch, pending);
	if (err.code == KB_OK) {
		kb_debug("%s %s %s%s%s: ok%s%s",
			 caller->identity[0] ? caller->identity : "-",
			 req.opname, call.info.name,
			 call.info.version[0] ? "/" : "", call.info.version,
			 call.note[0] ? " via " : "", call.note);
		resp = kb_proto_result(req.id, result, resplen);
	} else {
		log_refusal(ops, caller, &req, &err);
		json_decref(result);
		resp = kb_proto_error(req.id, err.code, err.msg, resplen);
	}
	*code = err.code;
	kb_request_uninit(&req);
	kb_policy_put(ops->policy, pol);
	return resp;
}
