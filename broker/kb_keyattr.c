// SPDX-License-Identifier: MIT
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kb_duration.h"
#include "kb_json.h"
#include "kb_keyattr.h"

/* Whether s[0..len) is free of control characters and NUL. */
static bool printable(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

/* Writes o's canonical text into out[0..max); -1 if it does not fit. */
static int canonical(const json_t *o, char *out, size_t max)
{
	size_t len;
	char *text = kb_json_text(o, JSON_COMPACT | JSON_SORT_KEYS, &len);
	int r = -1;

	if (text != NULL && len < max) {
		memcpy(out, text, len + 1);
		r = 0;
	}
	free(text);
	return r;
}

int kb_tags_canonical(const json_t *tags, char *out, char *why, size_t whylen)
{
	const char *k;
	json_t *v;

	out[0] = '\0';
	if (!json_is_object(tags)) {
		snprintf(why, whylen, "'tags' must be an object of strings");
		return -1;
	}
	if (json_object_size(tags) > KB_TAGS_MAX) {
		snprintf(why, whylen, "at most %d tags, not %zu", KB_TAGS_MAX,
			 json_object_size(tags));
		return -1;
	}
	json_object_foreach((json_t *)tags, k, v) {
		if (strlen(k) == 0 || strlen(k) > KB_TAG_NAME_MAX ||
		    !printable(k, strlen(k))) {
			snprintf(
				why, whylen,
				"a tag name must be 1-%d bytes without control "
				"characters",
				KB_TAG_NAME_MAX);
			return -1;
		}
		if (!json_is_string(v) ||
		    json_string_length(v) > KB_TAG_VALUE_MAX ||
		    !printable(json_string_value(v), json_string_length(v))) {
			snprintf(why, whylen,
				 "a tag value must be a string of at most %d "
				 "bytes without control characters",
				 KB_TAG_VALUE_MAX);
			return -1;
		}
	}
	if (json_object_size(tags) == 0)
		return 0;
	if (canonical(tags, out, KB_TAGS_TEXT_MAX) != 0) {
		out[0] = '\0';
		snprintf(why, whylen, "the tags take more than %d bytes",
			 KB_TAGS_TEXT_MAX - 1);
		return -1;
	}
	return 0;
}

static const struct {
	const char *name;
	unsigned int bit;
} key_ops[] = {
	{ "wrapKey", KB_KEYOP_WRAP },
	{ "unwrapKey", KB_KEYOP_UNWRAP },
	{ "import", KB_KEYOP_IMPORT },
};

int kb_key_ops_parse(const json_t *ops, unsigned int *bits, char *why,
		     size_t whylen)
{
	size_t i, j;
	json_t *v;

	*bits = 0;
	if (!json_is_array(ops) || json_array_size(ops) == 0)
		goto bad;
	json_array_foreach(ops, i, v) {
		for (j = 0; j < sizeof(key_ops) / sizeof(key_ops[0]); j++)
			if (json_is_string(v) &&
			    strcmp(json_string_value(v), key_ops[j].name) == 0)
				break;
		if (j == sizeof(key_ops) / sizeof(key_ops[0]) ||
		    (*bits & key_ops[j].bit))
			goto bad;
		*bits |= key_ops[j].bit;
	}
	if ((*bits & KB_KEYOP_IMPORT) && *bits != KB_KEYOP_IMPORT)
		goto bad;
	return 0;
bad:
	snprintf(why, whylen,
		 "'key_ops' must be a non-empty array of distinct \"wrapKey\" "
		 "and \"unwrapKey\", or [\"import\"] alone");
	return -1;
}

json_t *kb_key_ops_json(unsigned int bits)
{
	json_t *a = json_array();
	size_t j;

	for (j = 0; a != NULL && j < sizeof(key_ops) / sizeof(key_ops[0]); j++)
		if (bits & key_ops[j].bit)
			json_array_append_new(a, json_string(key_ops[j].name));
	return a;
}

/* A duration member of o into *s; -1 if present and not a duration. */
static int duration_member(const json_t *o, const char *name, int64_t *s,
			   bool *present)
{
	const json_t *v = json_object_get(o, name);

	*present = v != NULL;
	*s = 0;
	if (v == NULL)
		return 0;
	return json_is_string(v) && kb_duration_parse(json_string_value(v),
						      json_string_length(v),
						      s) == 0 ?
		       0 :
		       -1;
}

/* Whether o has no members but those of names[0..n). */
static bool only_members(const json_t *o, const char *const *names, size_t n)
{
	const char *k;
	json_t *v;
	size_t i;

	json_object_foreach((json_t *)o, k, v) {
		for (i = 0; i < n && strcmp(k, names[i]) != 0; i++)
			;
		if (i == n)
			return false;
	}
	return true;
}

/* One lifetime action into p; -1 with why filled. */
static int parse_action(const json_t *a, struct kb_rotation_policy *p,
			char *why, size_t whylen)
{
	static const char *const action_keys[] = { "trigger", "action" };
	static const char *const trigger_keys[] = { "timeAfterCreate",
						    "timeBeforeExpiry" };
	static const char *const type_keys[] = { "type" };
	const json_t *trigger = json_object_get(a, "trigger");
	const json_t *action = json_object_get(a, "action");
	const json_t *type = json_object_get(action, "type");
	int64_t after, before;
	bool has_after, has_before, rotate;

	if (!json_is_object(a) || !only_members(a, action_keys, 2) ||
	    !json_is_object(trigger) ||
	    !only_members(trigger, trigger_keys, 2) ||
	    !json_is_object(action) || !only_members(action, type_keys, 1) ||
	    !json_is_string(type)) {
		snprintf(why, whylen,
			 "each lifetime action is {\"trigger\": "
			 "{\"timeAfterCreate\" or \"timeBeforeExpiry\": "
			 "duration}, \"action\": {\"type\": \"Rotate\" or "
			 "\"Notify\"}}");
		return -1;
	}
	if (duration_member(trigger, "timeAfterCreate", &after, &has_after) !=
		    0 ||
	    duration_member(trigger, "timeBeforeExpiry", &before,
			    &has_before) != 0) {
		snprintf(why, whylen,
			 "a trigger time must be an ISO 8601 duration such as "
			 "\"P90D\" or \"PT12H\"");
		return -1;
	}
	if (has_after == has_before) {
		snprintf(why, whylen,
			 "a trigger has one of timeAfterCreate and "
			 "timeBeforeExpiry");
		return -1;
	}
	rotate = strcmp(json_string_value(type), "Rotate") == 0;
	if (!rotate && strcmp(json_string_value(type), "Notify") != 0) {
		snprintf(why, whylen, "an action type is Rotate or Notify");
		return -1;
	}
	if (!rotate && has_after) {
		snprintf(why, whylen,
			 "Notify is triggered by timeBeforeExpiry");
		return -1;
	}
	if (rotate ? p->rotate_after_create || p->rotate_before_expiry :
		     p->notify_before_expiry != 0) {
		snprintf(why, whylen, "at most one %s action",
			 rotate ? "Rotate" : "Notify");
		return -1;
	}
	if (rotate && has_after)
		p->rotate_after_create = after;
	else if (rotate)
		p->rotate_before_expiry = before;
	else
		p->notify_before_expiry = before;
	return 0;
}

int kb_rotation_policy_parse(const json_t *policy, int64_t min_rotation_s,
			     struct kb_rotation_policy *p, char *why,
			     size_t whylen)
{
	static const char *const policy_keys[] = { "lifetimeActions",
						   "attributes" };
	static const char *const attr_keys[] = { "expiryTime" };
	const json_t *actions = json_object_get(policy, "lifetimeActions");
	const json_t *attrs = json_object_get(policy, "attributes");
	int64_t first;
	bool present;
	size_t i;
	json_t *a;

	memset(p, 0, sizeof(*p));
	if (!json_is_object(policy) || !only_members(policy, policy_keys, 2) ||
	    (actions != NULL && !json_is_array(actions)) ||
	    (attrs != NULL &&
	     (!json_is_object(attrs) || !only_members(attrs, attr_keys, 1)))) {
		snprintf(why, whylen,
			 "a rotation policy is {\"lifetimeActions\": [...], "
			 "\"attributes\": {\"expiryTime\": duration}}");
		return -1;
	}
	if (actions != NULL && json_array_size(actions) > 2) {
		snprintf(why, whylen, "at most two lifetime actions");
		return -1;
	}
	json_array_foreach(actions, i, a)
		if (parse_action(a, p, why, whylen) != 0)
			return -1;
	if (duration_member(attrs, "expiryTime", &p->expiry_time, &present) !=
	    0) {
		snprintf(why, whylen,
			 "expiryTime must be an ISO 8601 duration such as "
			 "\"P1Y\"");
		return -1;
	}
	if ((p->rotate_before_expiry || p->notify_before_expiry) &&
	    (p->expiry_time <= p->rotate_before_expiry ||
	     p->expiry_time <= p->notify_before_expiry)) {
		snprintf(why, whylen,
			 "a time before expiry needs an expiryTime longer "
			 "than it");
		return -1;
	}
	/* How soon after its creation a version would be rotated. */
	first = p->rotate_after_create ?
			p->rotate_after_create :
		p->rotate_before_expiry ?
			p->expiry_time - p->rotate_before_expiry :
			0;
	if (first != 0 && first < min_rotation_s) {
		snprintf(why, whylen,
			 "the policy rotates %lld s after creation; the "
			 "broker's minimum is %lld s",
			 (long long)first, (long long)min_rotation_s);
		return -1;
	}
	if (canonical(policy, p->text, sizeof(p->text)) != 0) {
		snprintf(why, whylen, "the policy takes more than %d bytes",
			 KB_POLICY_TEXT_MAX - 1);
		return -1;
	}
	return 0;
}
