// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness: what a malicious broker, or a process squatting on
 * its socket, can send libkeybroker. The first byte picks the call; the
 * rest is the reply line, served on a real socket. A second check runs
 * the JSON reader alone against jansson: they must agree on what is JSON.
 */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "kb_jread.h"
#include "keybroker.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int listener = -1;
static char path[108];

static void remove_socket(void)
{
	unlink(path);
}

static void serve_reply(const uint8_t *data, size_t size)
{
	static const uint8_t wrapped[256];
	struct keybroker *kb;
	uint8_t *out;
	size_t out_len;
	char *s;
	int fd;

	if (keybroker_connect(path, &kb) != KEYBROKER_OK)
		abort();
	if ((fd = accept(listener, NULL, NULL)) < 0)
		abort();
	/* The reply goes first; the request then waits in the buffer. */
	if (send(fd, data + 1, size - 1, MSG_NOSIGNAL) != (ssize_t)size - 1 ||
	    send(fd, "\n", 1, MSG_NOSIGNAL) != 1)
		abort();
	shutdown(fd, SHUT_WR);
	switch (data[0] % 4) {
	case 0:
		if (keybroker_unwrap(kb, "k", NULL, NULL, wrapped,
				     sizeof(wrapped), &out, &out_len,
				     NULL) == KEYBROKER_OK)
			keybroker_free_secret(out, out_len);
		break;
	case 1:
		if (keybroker_get_key(kb, "k", NULL, &s) == KEYBROKER_OK)
			free(s);
		break;
	case 2:
		if (keybroker_get_token(kb, &s) == KEYBROKER_OK)
			keybroker_free_secret(s, strlen(s));
		break;
	default:
		if (keybroker_authenticate(kb, "a.b.c", &s) == KEYBROKER_OK)
			free(s);
		break;
	}
	keybroker_close(kb);
	close(fd);
}

/*
 * Our reader and jansson agree on what is JSON, but for their limits:
 * jansson refuses numbers it cannot hold (we keep them as text) and takes
 * a NUL byte for the end of its input (we refuse it), and we refuse
 * nesting deeper than KB_JREAD_MAX_DEPTH.
 */
static void differential(const uint8_t *data, size_t size)
{
	struct kb_jspan root;
	size_t opens = 0, i;
	json_error_t e;
	json_t *j;
	bool ours, theirs;

	ours = kb_jread_check((const char *)data, size, &root) == 0;
	j = json_loadb((const char *)data, size, JSON_DECODE_ANY, &e);
	theirs = j != NULL;
	json_decref(j);
	if (ours && !theirs && strstr(e.text, "too big") == NULL &&
	    strstr(e.text, "overflow") == NULL)
		abort();
	for (i = 0; i < size; i++)
		opens += data[i] == '[' || data[i] == '{';
	if (theirs && !ours && opens <= KB_JREAD_MAX_DEPTH &&
	    memchr(data, '\0', size) == NULL)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	if (listener < 0) {
		snprintf(path, sizeof(path), "/tmp/kb-fuzz-reply-%d.sock",
			 (int)getpid());
		unlink(path);
		strcpy(sa.sun_path, path);
		listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (listener < 0 ||
		    bind(listener, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
		    listen(listener, 4) != 0)
			abort();
		atexit(remove_socket);
	}
	if (size == 0 || size > 60000 || memchr(data + 1, '\n', size - 1))
		return 0;
	serve_reply(data, size);
	differential(data + 1, size - 1);
	return 0;
}
