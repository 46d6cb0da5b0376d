// SPDX-License-Identifier: MIT
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "kb_b64.h"
#include "kb_buf.h"
#include "kb_jread.h"
#include "kb_kid.h"
#include "keybroker.h"

#define REPLY_MAX (1024 * 1024)
#define VALUE_MAX 1024
#define TOKEN_MAX 8192

struct keybroker {
	pthread_mutex_t lock;
	int fd;
	long long next_id;
	int timeout_ms; /* for each call, from sending to the whole reply */
	int64_t deadline_ms; /* of the call in progress */
	struct kb_buf in; /* received bytes not yet consumed; may hold a DEK */
	char code[32];
	char message[512];
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

static int64_t monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int keybroker_connect_timeout(const char *socket_path, int timeout_ms,
			      struct keybroker **out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = timeout_ms / 1000,
			      .tv_usec = timeout_ms % 1000 * 1000 };
	struct keybroker *kb;
	int e;

	*out = NULL;
	if (socket_path == NULL || strlen(socket_path) >= sizeof(sa.sun_path) ||
	    timeout_ms <= 0)
		return KEYBROKER_E_ARGUMENT;
	if ((kb = calloc(1, sizeof(*kb))) == NULL)
		return KEYBROKER_E_NOMEM;
	pthread_mutex_init(&kb->lock, NULL);
	kb->next_id = 1;
	kb->timeout_ms = timeout_ms;
	strcpy(sa.sun_path, socket_path);
	kb->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	/* A Unix socket's connect waits (for backlog room) up to SNDTIMEO. */
	if (kb->fd < 0 ||
	    setsockopt(kb->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0 ||
	    connect(kb->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		e = errno == EAGAIN ? ETIMEDOUT : errno;
		if (kb->fd >= 0)
			close(kb->fd);
		pthread_mutex_destroy(&kb->lock);
		free(kb);
		errno = e;
		return KEYBROKER_E_IO;
	}
	*out = kb;
	return KEYBROKER_OK;
}

int keybroker_connect(const char *socket_path, struct keybroker **out)
{
	return keybroker_connect_timeout(socket_path,
					 KEYBROKER_DEFAULT_TIMEOUT_MS, out);
}

int keybroker_set_timeout(struct keybroker *kb, int timeout_ms)
{
	if (timeout_ms <= 0)
		return set_error(kb, KEYBROKER_E_ARGUMENT, "",
				 "timeout: must be a positive number of ms");
	pthread_mutex_lock(&kb->lock);
	kb->timeout_ms = timeout_ms;
	pthread_mutex_unlock(&kb->lock);
	return KEYBROKER_OK;
}

void keybroker_close(struct keybroker *kb)
{
	if (kb == NULL)
		return;
	close(kb->fd);
	kb_buf_free(&kb->in);
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

/*
 * Waits until the socket is ready for events or the call's deadline
 * passes. Needs kb->lock.
 */
static int wait_ready(struct keybroker *kb, short events)
{
	struct pollfd p = { .fd = kb->fd, .events = events };
	int64_t left;
	int n;

	for (;;) {
		left = kb->deadline_ms - monotonic_ms();
		if (left <= 0)
			break;
		n = poll(&p, 1, (int)left);
		if (n > 0)
			return KEYBROKER_OK;
		if (n < 0 && errno != EINTR)
			return set_error(kb, KEYBROKER_E_IO, "",
					 "cannot wait for the broker");
	}
	errno = ETIMEDOUT;
	snprintf(kb->message, sizeof(kb->message),
		 "timed out after %d ms waiting for the broker",
		 kb->timeout_ms);
	kb->code[0] = '\0';
	return KEYBROKER_E_IO;
}

static int send_all(struct keybroker *kb, const char *p, size_t n)
{
	ssize_t w;
	int r;

	while (n > 0) {
		if ((r = wait_ready(kb, POLLOUT)) != KEYBROKER_OK)
			return r;
		w = send(kb->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && (errno == EINTR || errno == EAGAIN))
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
	char *nl;
	ssize_t n;
	int r;

	while ((nl = kb->in.len ? memchr(kb->in.p, '\n', kb->in.len) : NULL) ==
	       NULL) {
		if (kb->in.len == kb->in.cap) {
			if (kb->in.cap >= REPLY_MAX)
				return set_error(kb, KEYBROKER_E_PROTOCOL, "",
						 "reply line too long");
			if (kb_buf_reserve(&kb->in, 1, 4096, REPLY_MAX) != 0)
				return KEYBROKER_E_NOMEM;
		}
		if ((r = wait_ready(kb, POLLIN)) != KEYBROKER_OK)
			return r;
		n = recv(kb->fd, kb->in.p + kb->in.len, kb->in.cap - kb->in.len,
			 MSG_DONTWAIT);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			return set_error(kb, KEYBROKER_E_IO, "",
					 n == 0 ? "the broker closed the "
						  "connection" :
						  "cannot receive from the "
						  "broker");
		kb->in.len += (size_t)n;
	}
	*len = (size_t)(nl - kb->in.p);
	if ((*line = malloc(*len + 1)) == NULL)
		return KEYBROKER_E_NOMEM;
	memcpy(*line, kb->in.p, *len);
	(*line)[*len] = '\0';
	kb_buf_consume(&kb->in, *len + 1);
	return KEYBROKER_OK;
}

/* Whether kid is well formed, for whichever instance it names. */
static bool kid_valid(const char *kid, size_t len)
{
	const char *inst = kid + sizeof(KB_KID_PREFIX) - 1;
	const char *slash = strchr(inst, '/');
	char instance[KB_INSTANCE_MAX + 1];
	struct kb_keyref ref;

	if (slash == NULL || slash - inst > KB_INSTANCE_MAX)
		return false;
	memcpy(instance, inst, (size_t)(slash - inst));
	instance[slash - inst] = '\0';
	return kb_kid_parse(kid, len, instance, &ref) == KB_KID_OK;
}

/*
 * Appends the key selector to a request: "kid" for a kid, else "key"
 * and optional "version". Only validated characters reach the line, so
 * no JSON escaping is needed. On a bad argument, says which.
 */
static int key_fields(struct keybroker *kb, char *buf, size_t size,
		      const char *key, const char *version)
{
	size_t klen = key ? strlen(key) : 0;
	int n;

	if (key == NULL)
		return set_error(kb, KEYBROKER_E_ARGUMENT, "",
				 "key: a key name or kid is required");
	if (strncmp(key, KB_KID_PREFIX, sizeof(KB_KID_PREFIX) - 1) == 0) {
		if (!kid_valid(key, klen))
			return set_error(kb, KEYBROKER_E_ARGUMENT, "",
					 "key: not a kid (keybroker://"
					 "INSTANCE/keys/NAME[/VERSION])");
		if (version != NULL)
			return set_error(kb, KEYBROKER_E_ARGUMENT, "",
					 "version: a kid names its version; "
					 "give no separate version");
		n = snprintf(buf, size, "\"kid\":\"%s\"", key);
	} else {
		if (!kb_name_valid(key, klen))
			return set_error(kb, KEYBROKER_E_ARGUMENT, "",
					 "key: not a key name (1-127 of "
					 "A-Z a-z 0-9 -) or a kid");
		if (version != NULL &&
		    !kb_version_valid(version, strlen(version)))
			return set_error(kb, KEYBROKER_E_ARGUMENT, "",
					 "version: not 32 lowercase hex "
					 "digits");
		if (version != NULL)
			n = snprintf(buf, size,
				     "\"key\":\"%s\",\"version\":"
				     "\"%s\"",
				     key, version);
		else
			n = snprintf(buf, size, "\"key\":\"%s\"", key);
	}
	if (n < 0 || (size_t)n >= size)
		return set_error(kb, KEYBROKER_E_ARGUMENT, "", "key: too long");
	return KEYBROKER_OK;
}

static int check_alg(struct keybroker *kb, const char *alg)
{
	if (alg == NULL || strcmp(alg, "RSA-OAEP") == 0 ||
	    strcmp(alg, "RSA-OAEP-256") == 0 || strcmp(alg, "RSA1_5") == 0)
		return KEYBROKER_OK;
	return set_error(kb, KEYBROKER_E_ARGUMENT, "",
			 "alg: not RSA-OAEP, RSA-OAEP-256 or RSA1_5");
}

/* A reply line (a secret: it may carry a DEK or a token) and its result. */
struct reply {
	char *line;
	size_t len;
	struct kb_jspan result;
};

static void reply_release(struct reply *rep)
{
	keybroker_free_secret(rep->line, rep->len + 1);
	rep->line = NULL;
}

static int bad_reply(struct keybroker *kb)
{
	return set_error(kb, KEYBROKER_E_PROTOCOL, "",
			 "reply is not a protocol v1 response to this request");
}

/* Takes the broker's error code and message from an "error" member. */
static int broker_error(struct keybroker *kb, const struct reply *rep,
			const struct kb_jspan *err)
{
	struct kb_jspan code, msg;

	if (kb_jread_member(rep->line, err, "code", &code) != 0 ||
	    kb_jread_string(rep->line, &code, kb->code, sizeof(kb->code),
			    NULL) != 0)
		snprintf(kb->code, sizeof(kb->code), "Internal");
	if (kb_jread_member(rep->line, err, "message", &msg) != 0 ||
	    kb_jread_string(rep->line, &msg, kb->message, sizeof(kb->message),
			    NULL) != 0)
		snprintf(kb->message, sizeof(kb->message),
			 "(no readable message)");
	return KEYBROKER_E_BROKER;
}

/*
 * Sends one request line and reads the reply to it; on success rep holds
 * the line and its "result" object (release it). Needs kb->lock.
 */
static int call(struct keybroker *kb, const char *op, const char *keysel,
		const char *alg, const uint8_t *value, size_t value_len,
		struct reply *rep)
{
	size_t b64len = value ? kb_b64_encoded_len(value_len) : 0;
	size_t cap = 256 + (keysel ? strlen(keysel) : 0) + b64len, len;
	long long id = kb->next_id++, rid;
	struct kb_jspan root, v;
	char *line;
	int r;

	memset(rep, 0, sizeof(*rep));
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
	kb->deadline_ms = monotonic_ms() + kb->timeout_ms;
	r = send_all(kb, line, len);
	keybroker_free_secret(line, cap);
	if (r != KEYBROKER_OK ||
	    (r = recv_line(kb, &rep->line, &rep->len)) != KEYBROKER_OK)
		return r;
	if (kb_jread_check(rep->line, rep->len, &root) != 0 ||
	    root.type != KB_J_OBJECT ||
	    kb_jread_member(rep->line, &root, "id", &v) != 0 ||
	    kb_jread_int(rep->line, &v, &rid) != 0 || rid != id)
		goto out_bad;
	if ((r = kb_jread_member(rep->line, &root, "error", &v)) !=
	    KB_JREAD_ABSENT) {
		r = r == 0 && v.type == KB_J_OBJECT ?
			    broker_error(kb, rep, &v) :
			    bad_reply(kb);
		reply_release(rep);
		return r;
	}
	if (kb_jread_member(rep->line, &root, "result", &rep->result) != 0 ||
	    rep->result.type != KB_J_OBJECT)
		goto out_bad;
	return KEYBROKER_OK;
out_bad:
	reply_release(rep);
	return bad_reply(kb);
}

/*
 * A string member of the result as a new string of at most max bytes
 * (wipe it with keybroker_free_secret if it is a secret).
 */
static int result_string(struct keybroker *kb, const struct reply *rep,
			 const char *name, size_t max, char **out)
{
	struct kb_jspan v;
	size_t n;

	*out = NULL;
	/* An escape is at most 6 bytes per character: a cheap bound first. */
	if (kb_jread_member(rep->line, &rep->result, name, &v) != 0 ||
	    v.type != KB_J_STRING || v.len > 6 * max + 2)
		return set_error(kb, KEYBROKER_E_PROTOCOL, "",
				 "malformed result from the broker");
	/* Decoding never lengthens: the span (with its quotes) bounds it. */
	if ((*out = malloc(v.len)) == NULL)
		return KEYBROKER_E_NOMEM;
	if (kb_jread_string(rep->line, &v, *out, v.len, &n) != 0 || n > max) {
		keybroker_free_secret(*out, v.len);
		*out = NULL;
		return set_error(kb, KEYBROKER_E_PROTOCOL, "",
				 "malformed result from the broker");
	}
	return KEYBROKER_OK;
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
	struct reply rep;
	char *sel, *id;
	size_t n;
	int r;

	if (identity != NULL)
		*identity = NULL;
	if (token == NULL || !token_valid(token))
		return set_error(kb, KEYBROKER_E_ARGUMENT, "",
				 "token: not a JWS compact serialisation of "
				 "at most 8192 bytes");
	n = strlen(token) + 16;
	if ((sel = malloc(n)) == NULL)
		return KEYBROKER_E_NOMEM;
	snprintf(sel, n, "\"token\":\"%s\"", token);
	pthread_mutex_lock(&kb->lock);
	r = call(kb, "authenticate", sel, NULL, NULL, 0, &rep);
	pthread_mutex_unlock(&kb->lock);
	keybroker_free_secret(sel, n);
	if (r != KEYBROKER_OK)
		return r;
	r = result_string(kb, &rep, "identity", 64, &id);
	reply_release(&rep);
	if (r == KEYBROKER_OK && identity != NULL)
		*identity = id;
	else
		free(id);
	return r;
}

int keybroker_get_token(struct keybroker *kb, char **token)
{
	struct reply rep;
	int r;

	*token = NULL;
	pthread_mutex_lock(&kb->lock);
	r = call(kb, "getToken", NULL, NULL, NULL, 0, &rep);
	pthread_mutex_unlock(&kb->lock);
	if (r != KEYBROKER_OK)
		return r;
	r = result_string(kb, &rep, "access_token", TOKEN_MAX, token);
	reply_release(&rep);
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
	char sel[KB_KID_MAX + 64];
	struct reply rep;
	int r;

	*bundle_json = NULL;
	if ((r = key_fields(kb, sel, sizeof(sel), key, version)) != 0)
		return r;
	pthread_mutex_lock(&kb->lock);
	r = call(kb, "getKey", sel, NULL, NULL, 0, &rep);
	pthread_mutex_unlock(&kb->lock);
	if (r != KEYBROKER_OK)
		return r;
	/* The result as the broker sent it: checked JSON text. */
	if ((*bundle_json = strndup(rep.line + rep.result.off,
				    rep.result.len)) == NULL)
		r = KEYBROKER_E_NOMEM;
	reply_release(&rep);
	return r;
}

/* Shared by wrap and unwrap: sends value, decodes the result's value. */
static int transform(struct keybroker *kb, const char *op, const char *key,
		     const char *version, const char *alg, const uint8_t *in,
		     size_t in_len, uint8_t **out, size_t *out_len, char **kid)
{
	char sel[KB_KID_MAX + 64], *b64 = NULL, *k = NULL;
	struct reply rep;
	int r;

	*out = NULL;
	*out_len = 0;
	if (kid != NULL)
		*kid = NULL;
	if ((r = key_fields(kb, sel, sizeof(sel), key, version)) != 0 ||
	    (r = check_alg(kb, alg)) != 0)
		return r;
	if (in == NULL || in_len == 0 || in_len > VALUE_MAX)
		return set_error(kb, KEYBROKER_E_ARGUMENT, "",
				 "value: must be 1-1024 bytes");
	pthread_mutex_lock(&kb->lock);
	r = call(kb, op, sel, alg, in, in_len, &rep);
	pthread_mutex_unlock(&kb->lock);
	if (r != KEYBROKER_OK)
		return r;
	if ((r = result_string(kb, &rep, "value", kb_b64_encoded_len(VALUE_MAX),
			       &b64)) != KEYBROKER_OK ||
	    (r = result_string(kb, &rep, "kid", KB_KID_MAX, &k)) !=
		    KEYBROKER_OK)
		goto out;
	if ((*out = malloc(VALUE_MAX)) == NULL) {
		r = KEYBROKER_E_NOMEM;
		goto out;
	}
	if (kb_b64_decode(*out, VALUE_MAX, out_len, b64, strlen(b64)) != 0) {
		keybroker_free_secret(*out, VALUE_MAX);
		*out = NULL;
		*out_len = 0;
		r = set_error(kb, KEYBROKER_E_PROTOCOL, "",
			      "malformed result from the broker");
		goto out;
	}
	if (kid != NULL) {
		*kid = k;
		k = NULL;
	}
out:
	if (b64 != NULL)
		keybroker_free_secret(b64, strlen(b64));
	free(k);
	reply_release(&rep);
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
