// SPDX-License-Identifier: MIT
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "kb_b64.h"
#include "kb_kid.h"
#include "keybroker.h"

#define REPLY_MAX (1024 * 1024)
#define VALUE_MAX 1024
#define TOKEN_MAX 8192
#define IO_TIMEOUT_S 30

struct keybroker {
	pthread_mutex_t lock;
	int fd;
	long long next_id;
	char *in; /* received bytes not yet consumed; may hold a DEK */
	size_t in_len, in_cap;
	char code[32];
	char message[256];
};

/* Wipes memory the compiler may not elide. */
static void wipe(void *p, size_t n)
{
	volatile unsigned char *v = p;

	while (n-- > 0)
		*v++ = 0;
}

void keybroker_free_secret(void *p, size_t len)
{
	if (p == NULL)
		return;
	wipe(p, len);
	free(p);
}

const char *keybroker_strstatus(int status)
{
	switch (status) {
	case KEYBROKER_OK:
		return "success";
	case KEYBROKER_E_BROKER:
		return "the broker refused the request";
	case KEYBROKER_E_IO:
		return "cannot talk to the broker";
	case KEYBROKER_E_PROTOCOL:
		return "malformed reply from the broker";
	case KEYBROKER_E_ARGUMENT:
		return "invalid argument";
	case KEYBROKER_E_NOMEM:
		return "out of memory";
	default:
		return "unknown status";
	}
}

static int set_error(struct keybroker *kb, int status, const char *code,
		     const char *msg)
{
	snprintf(kb->code, sizeof(kb->code), "%s", code);
	snprintf(kb->message, sizeof(kb->message), "%s", msg);
	return status;
}

int keybroker_connect(const char *socket_path, struct keybroker **out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = IO_TIMEOUT_S };
	struct keybroker *kb;

	*out = NULL;
	if (socket_path == NULL || strlen(socket_path) >= sizeof(sa.sun_path))
		return KEYBROKER_E_ARGUMENT;
	if ((kb = calloc(1, sizeof(*kb))) == NULL)
		return KEYBROKER_E_NOMEM;
	pthread_mutex_init(&kb->lock, NULL);
	kb->next_id = 1;
	strcpy(sa.sun_path, socket_path);
	kb->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (kb->fd < 0 ||
	    connect(kb->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		int e = errno;

		if (kb->fd >= 0)
			close(kb->fd);
		pthread_mutex_destroy(&kb->lock);
		free(kb);
		errno = e;
		return KEYBROKER_E_IO;
	}
	setsockopt(kb->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(kb->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	*out = kb;
	return KEYBROKER_OK;
}

void keybroker_close(struct keybroker *kb)
{
	if (kb == NULL)
		return;
	close(kb->fd);
	keybroker_free_secret(kb->in, kb->in_cap);
	pthread_mutex_destroy(&kb->lock);
	free(kb);
}

const char *keybroker_error_code(const struct keybroker *kb)
{
	return kb->code;
}

const char *keybroker_error_message(const struct keybroker *kb)
{
	return kb->message;
}

static int send_all(struct keybroker *kb, const char *p, size_t n)
{
	ssize_t w;

	while (n > 0) {
		w = send(kb->fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return set_error(kb, KEYBROKER_E_IO, "",
					 "cannot send to the broker");
		p += w;
		n -= (size_t)w;
	}
	return KEYBROKER_OK;
}

/* Receives one reply line into a new buffer *line (a secret). */
static int recv_line(struct keybroker *kb, char **line, size_t *len)
{
	char *nl, *grown;
	size_t cap;
	ssize_t n;

	while ((nl = kb->in_len ? memchr(kb->in, '\n', kb->in_len) : NULL) ==
	       NULL) {
		if (kb->in_len == kb->in_cap) {
			if (kb->in_cap >= REPLY_MAX)
				return set_error(kb, KEYBROKER_E_PROTOCOL, "",
						 "reply line too long");
			cap = kb->in_cap ? kb->in_cap * 2 : 4096;
			if ((grown = malloc(cap)) == NULL)
				return KEYBROKER_E_NOMEM;
			if (kb->in_len)
				memcpy(grown, kb->in, kb->in_len);
			keybroker_free_secret(kb->in, kb->in_cap);
			kb->in = grown;
			kb->in_cap = cap;
		}
		n = recv(kb->fd, kb->in + kb->in_len, kb->in_cap - kb->in_len,
			 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return set_error(kb, KEYBROKER_E_IO, "",
					 n == 0 ? "the broker closed the "
						  "connection" :
						  "cannot receive from the "
						  "broker");
		kb->in_len += (size_t)n;
	}
	*len = (size_t)(nl - kb->in);
	if ((*line = malloc(*len + 1)) == NULL)
		return KEYBROKER_E_NOMEM;
	memcpy(*line, kb->in, *len);
	(*line)[*len] = '\0';
	memmove(kb->in, nl + 1, kb->in_len - *len - 1);
	kb->in_len -= *len + 1;
	wipe(kb->in + kb->in_len, *len + 1);
	return KEYBROKER_OK;
}

/*
 * Appends the key selector to a request: "kid" for a kid, else "key"
 * and optional "version". Only validated characters reach the line, so
 * no JSON escaping is needed.
 */
static int key_fields(char *buf, size_t size, const char *key,
		      const char *version)
{
	size_t klen = key ? strlen(key) : 0;
	int n;

	if (key == NULL)
		return -1;
	if (strncmp(key, KB_KID_PREFIX, sizeof(KB_KID_PREFIX) - 1) == 0) {
		struct kb_keyref ref;
		const char *inst = key + sizeof(KB_KID_PREFIX) - 1;
		const char *slash = strchr(inst, '/');
		char instance[KB_INSTANCE_MAX + 1];

		if (slash == NULL || slash - inst > KB_INSTANCE_MAX ||
		    version != NULL)
			return -1;
		memcpy(instance, inst, (size_t)(slash - inst));
		instance[slash - inst] = '\0';
		if (kb_kid_parse(key, klen, instance, &ref) != KB_KID_OK)
			return -1;
		n = snprintf(buf, size, "\"kid\":\"%s\"", key);
	} else {
		if (!kb_name_valid(key, klen) ||
		    (version != NULL &&
		     !kb_version_valid(version, strlen(version))))
			return -1;
		if (version != NULL)
			n = snprintf(buf, size,
				     "\"key\":\"%s\",\"version\":"
				     "\"%s\"",
				     key, version);
		else
			n = snprintf(buf, size, "\"key\":\"%s\"", key);
	}
	return n < 0 || (size_t)n >= size ? -1 : 0;
}

static bool alg_valid(const char *alg)
{
	return alg == NULL || strcmp(alg, "RSA-OAEP") == 0 ||
	       strcmp(alg, "RSA-OAEP-256") == 0 || strcmp(alg, "RSA1_5") == 0;
}

/*
 * Sends one request line and returns the "result" of the matching reply.
 * Needs kb->lock.
 */
static int call(struct keybroker *kb, const char *op, const char *keysel,
		const char *alg, const uint8_t *value, size_t value_len,
		json_t **reply, json_t **result)
{
	size_t b64len = value ? kb_b64_encoded_len(value_len) : 0;
	size_t cap = 256 + (keysel ? strlen(keysel) : 0) + b64len, len, rlen;
	long long id = kb->next_id++;
	char *line, *resp = NULL;
	json_t *err, *rid;
	int r;

	if ((line = malloc(cap)) == NULL)
		return KEYBROKER_E_NOMEM;
	len = (size_t)snprintf(line, cap, "{\"id\":%lld,\"op\":\"%s\"%s%s", id,
			       op, keysel ? "," : "", keysel ? keysel : "");
	if (alg != NULL)
		len += (size_t)snprintf(line + len, cap - len,
					",\"alg\":\"%s\"", alg);
	if (value != NULL) {
		memcpy(line + len, ",\"value\":\"", 10);
		len += 10;
		len += kb_b64_encode(line + len, value, value_len);
		line[len++] = '"';
	}
	line[len++] = '}';
	line[len++] = '\n';
	r = send_all(kb, line, len);
	keybroker_free_secret(line, cap);
	if (r != KEYBROKER_OK || (r = recv_line(kb, &resp, &rlen)) != 0)
		return r;
	*reply = json_loadb(resp, rlen, 0, NULL);
	keybroker_free_secret(resp, rlen + 1);
	if (*reply == NULL || !json_is_object(*reply))
		goto bad_reply;
	rid = json_object_get(*reply, "id");
	if (!json_is_integer(rid) || json_integer_value(rid) != id)
		goto bad_reply;
	if ((err = json_object_get(*reply, "error")) != NULL) {
		set_error(kb, KEYBROKER_E_BROKER,
			  json_string_value(json_object_get(err, "code")) ?:
				  "Internal",
			  json_string_value(json_object_get(err, "message")) ?:
				  "");
		return KEYBROKER_E_BROKER;
	}
	if ((*result = json_object_get(*reply, "result")) == NULL ||
	    !json_is_object(*result))
		goto bad_reply;
	return KEYBROKER_OK;
bad_reply:
	return set_error(kb, KEYBROKER_E_PROTOCOL, "",
			 "reply is not a protocol v1 response to this request");
}

/* JWS compact serialisation: base64url parts and dots only. */
static bool token_valid(const char *t)
{
	size_t i;

	for (i = 0; t[i] != '\0'; i++) {
		char c = t[i];

		if (i >= TOKEN_MAX ||
		    !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '-' || c == '_' ||
		      c == '.'))
			return false;
	}
	return i > 0;
}

int keybroker_authenticate(struct keybroker *kb, const char *token,
			   char **identity)
{
	json_t *reply = NULL, *result, *id;
	char *sel;
	size_t n;
	int r;

	if (identity != NULL)
		*identity = NULL;
	if (token == NULL || !token_valid(token))
		return set_error(kb, KEYBROKER_E_ARGUMENT, "",
				 "not a token (JWS compact serialisation)");
	n = strlen(token) + 16;
	if ((sel = malloc(n)) == NULL)
		return KEYBROKER_E_NOMEM;
	snprintf(sel, n, "\"token\":\"%s\"", token);
	pthread_mutex_lock(&kb->lock);
	r = call(kb, "authenticate", sel, NULL, NULL, 0, &reply, &result);
	pthread_mutex_unlock(&kb->lock);
	keybroker_free_secret(sel, n);
	if (r == KEYBROKER_OK) {
		id = json_object_get(result, "identity");
		if (!json_is_string(id))
			r = set_error(kb, KEYBROKER_E_PROTOCOL, "",
				      "malformed result from the broker");
		else if (identity != NULL &&
			 (*identity = strdup(json_string_value(id))) == NULL)
			r = KEYBROKER_E_NOMEM;
	}
	json_decref(reply);
	return r;
}

int keybroker_get_token(struct keybroker *kb, char **token)
{
	json_t *reply = NULL, *result, *t;
	int r;

	*token = NULL;
	pthread_mutex_lock(&kb->lock);
	r = call(kb, "getToken", NULL, NULL, NULL, 0, &reply, &result);
	pthread_mutex_unlock(&kb->lock);
	if (r == KEYBROKER_OK) {
		t = json_object_get(result, "access_token");
		if (!json_is_string(t))
			r = set_error(kb, KEYBROKER_E_PROTOCOL, "",
				      "malformed result from the broker");
		else if ((*token = strdup(json_string_value(t))) == NULL)
			r = KEYBROKER_E_NOMEM;
	}
	json_decref(reply);
	return r;
}

int keybroker_authenticate_self(struct keybroker *kb, char **identity)
{
	char *token;
	int r;

	if ((r = keybroker_get_token(kb, &token)) != KEYBROKER_OK)
		return r;
	r = keybroker_authenticate(kb, token, identity);
	keybroker_free_secret(token, strlen(token));
	return r;
}

int keybroker_get_key(struct keybroker *kb, const char *key,
		      const char *version, char **bundle_json)
{
	json_t *reply = NULL, *result;
	char sel[KB_KID_MAX + 64];
	int r;

	*bundle_json = NULL;
	if (key_fields(sel, sizeof(sel), key, version) != 0)
		return set_error(kb, KEYBROKER_E_ARGUMENT, "",
				 "invalid key name, kid or version");
	pthread_mutex_lock(&kb->lock);
	r = call(kb, "getKey", sel, NULL, NULL, 0, &reply, &result);
	if (r == KEYBROKER_OK &&
	    (*bundle_json = json_dumps(result, JSON_COMPACT)) == NULL)
		r = KEYBROKER_E_NOMEM;
	pthread_mutex_unlock(&kb->lock);
	json_decref(reply);
	return r;
}

/* Shared by wrap and unwrap: sends value, decodes the result's value. */
static int transform(struct keybroker *kb, const char *op, const char *key,
		     const char *version, const char *alg, const uint8_t *in,
		     size_t in_len, uint8_t **out, size_t *out_len, char **kid)
{
	json_t *reply = NULL, *result, *v, *k;
	char sel[KB_KID_MAX + 64];
	int r;

	*out = NULL;
	*out_len = 0;
	if (kid != NULL)
		*kid = NULL;
	if (key_fields(sel, sizeof(sel), key, version) != 0 ||
	    !alg_valid(alg) || in == NULL || in_len == 0 || in_len > VALUE_MAX)
		return set_error(kb, KEYBROKER_E_ARGUMENT, "",
				 "invalid key, version, alg or value");
	pthread_mutex_lock(&kb->lock);
	r = call(kb, op, sel, alg, in, in_len, &reply, &result);
	pthread_mutex_unlock(&kb->lock);
	if (r != KEYBROKER_OK)
		goto out;
	v = json_object_get(result, "value");
	k = json_object_get(result, "kid");
	r = KEYBROKER_E_PROTOCOL;
	if (!json_is_string(v) || !json_is_string(k) ||
	    json_string_length(v) > kb_b64_encoded_len(VALUE_MAX))
		goto out;
	if ((*out = malloc(VALUE_MAX)) == NULL) {
		r = KEYBROKER_E_NOMEM;
		goto out;
	}
	if (kb_b64_decode(*out, VALUE_MAX, out_len, json_string_value(v),
			  json_string_length(v)) != 0) {
		keybroker_free_secret(*out, VALUE_MAX);
		*out = NULL;
		goto out;
	}
	if (kid != NULL && (*kid = strdup(json_string_value(k))) == NULL) {
		keybroker_free_secret(*out, VALUE_MAX);
		*out = NULL;
		r = KEYBROKER_E_NOMEM;
		goto out;
	}
	r = KEYBROKER_OK;
out:
	if (r == KEYBROKER_E_PROTOCOL)
		set_error(kb, r, "", "malformed result from the broker");
	json_decref(reply);
	return r;
}

int keybroker_wrap(struct keybroker *kb, const char *key, const char *version,
		   const char *alg, const uint8_t *dek, size_t dek_len,
		   uint8_t **wrapped, size_t *wrapped_len, char **kid)
{
	return transform(kb, "wrapKey", key, version, alg, dek, dek_len,
			 wrapped, wrapped_len, kid);
}

int keybroker_unwrap(struct keybroker *kb, const char *key, const char *version,
		     const char *alg, const uint8_t *wrapped,
		     size_t wrapped_len, uint8_t **dek, size_t *dek_len,
		     char **kid)
{
	return transform(kb, "unwrapKey", key, version, alg, wrapped,
			 wrapped_len, dek, dek_len, kid);
}
