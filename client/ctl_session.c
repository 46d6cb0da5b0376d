// SPDX-License-Identifier: MIT
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ctl_session.h"
#include "ctl_socket.h"
#include "kb_json.h"
#include "kb_secret.h"

#define REPLY_MAX (1024 * 1024)
/* Generating a 4096-bit key in a token may take a while. */
#define OP_TIMEOUT_S 300
#define TOKEN_FILE_MAX 8192

/*
 * Sends req (taking it) and returns the result (a new reference), or
 * NULL with the broker's code and message (or why there is none) on
 * stderr.
 */
json_t *ctl_call(struct ctl_session *s, const char *verb, json_t *req)
{
	json_t *reply = NULL, *res = NULL, *e;
	char why[256], *line = NULL;

	if (req == NULL ||
	    json_object_set_new(req, "id", json_integer(s->next_id++)) != 0 ||
	    (line = kb_json_text(req, JSON_COMPACT, NULL)) == NULL) {
		fprintf(stderr, "%s %s: out of memory\n", s->prefix, verb);
		goto out;
	}
	if (ctl_request(s->fd, line, s->reply, REPLY_MAX, OP_TIMEOUT_S, why,
			sizeof(why)) != 0) {
		fprintf(stderr, "%s %s: the broker: %s\n", s->prefix, verb,
			why);
		goto out;
	}
	if ((reply = json_loads(s->reply, JSON_DISABLE_EOF_CHECK, NULL)) ==
	    NULL) {
		fprintf(stderr, "%s %s: the reply is not JSON\n", s->prefix,
			verb);
		goto out;
	}
	if ((res = json_object_get(reply, "result")) != NULL) {
		json_incref(res);
		goto out;
	}
	e = json_object_get(reply, "error");
	fprintf(stderr, "%s %s: %s: %s\n", s->prefix, verb,
		json_string_value(json_object_get(e, "code")) ?: "?",
		json_string_value(json_object_get(e, "message")) ?: "?");
out:
	if (line != NULL)
		kb_wipe_free(line, strlen(line) + 1);
	json_decref(req);
	json_decref(reply);
	return res;
}

int ctl_read_line_file(const char *prefix, const char *path, char *buf,
		       size_t size)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "re");
	size_t n;

	if (f == NULL) {
		fprintf(stderr, "%s: %s: %s\n", prefix, path, strerror(errno));
		return -1;
	}
	/* Unbuffered: no copy of a private key or token in stdio's buffer. */
	setvbuf(f, NULL, _IONBF, 0);
	n = fread(buf, 1, size - 1, f);
	if (f != stdin)
		fclose(f);
	if (n == size - 1) {
		fprintf(stderr, "%s: %s: longer than %zu bytes\n", prefix, path,
			size - 2);
		return -1;
	}
	while (n > 0 &&
	       (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
		n--;
	buf[n] = '\0';
	return 0;
}

/* Binds the session to an identity: the token in token_file, or getToken. */
static int authenticate(struct ctl_session *s, const char *token_file)
{
	char *token = kb_secure_alloc(TOKEN_FILE_MAX);
	json_t *res = NULL;
	int r = -1;

	if (token == NULL)
		return -1;
	if (token_file != NULL) {
		if (ctl_read_line_file(s->prefix, token_file, token,
				       TOKEN_FILE_MAX) != 0)
			goto out;
	} else {
		res = ctl_call(s, "getToken",
			       json_pack("{s:s}", "op", "getToken"));
		if (res == NULL ||
		    !json_is_string(json_object_get(res, "access_token")) ||
		    snprintf(token, TOKEN_FILE_MAX, "%s",
			     json_string_value(json_object_get(
				     res, "access_token"))) >= TOKEN_FILE_MAX)
			goto out;
		json_decref(res);
	}
	res = ctl_call(s, "authenticate",
		       json_pack("{s:s, s:s}", "op", "authenticate", "token",
				 token));
	r = res != NULL ? 0 : -1;
out:
	json_decref(res);
	kb_secure_free(token, TOKEN_FILE_MAX);
	return r;
}

int ctl_session_open(struct ctl_session *s, const char *prefix,
		     const char *socket_path, const char *token_file)
{
	struct ucred cred;
	char why[256];

	*s = (struct ctl_session){ .prefix = prefix, .fd = -1, .next_id = 1 };
	if ((s->reply = malloc(REPLY_MAX)) == NULL) {
		fprintf(stderr, "%s: out of memory\n", prefix);
		return -1;
	}
	if (ctl_connect(socket_path, &s->fd, &cred, why, sizeof(why)) != 0) {
		fprintf(stderr, "%s: cannot reach the broker on %s: %s\n",
			prefix, socket_path, why);
		return -1;
	}
	return authenticate(s, token_file);
}

void ctl_session_close(struct ctl_session *s)
{
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	/* It held the identity token getToken gave. */
	if (s->reply != NULL)
		kb_wipe_free(s->reply, REPLY_MAX);
	s->reply = NULL;
}
