/* SPDX-License-Identifier: MIT */
/*
 * A tool's session with the running broker, as one identity: connected
 * (ctl_socket.h checks the socket is the broker's), authenticated with
 * an identity token from a file or from getToken, then one request at a
 * time. Shared by keybrokerctl's key commands and keybroker-audit.
 */
#ifndef CTL_SESSION_H
#define CTL_SESSION_H

#include <jansson.h>
#include <stdbool.h>

struct ctl_session {
	const char *prefix; /* of messages: "keybrokerctl: key" */
	int fd;
	long long next_id;
	bool json; /* the tool prints results as JSON */
	char *reply; /* the last reply line: it may hold a token */
};

/*
 * Connects to the broker on socket_path and authenticates: with the
 * token in token_file ("-": standard input), or else with the one
 * getToken gives this process. 0, or -1 said on stderr; either way
 * ctl_session_close it.
 */
int ctl_session_open(struct ctl_session *s, const char *prefix,
		     const char *socket_path, const char *token_file);
void ctl_session_close(struct ctl_session *s);

/*
 * Sends req (taking it) and returns the result (a new reference), or
 * NULL with the broker's code and message (or why there is none) on
 * stderr, as "PREFIX VERB: ...".
 */
json_t *ctl_call(struct ctl_session *s, const char *verb, json_t *req);

/* Reads the first line of path ("-": stdin) into buf (size bytes). 0 or -1. */
int ctl_read_line_file(const char *prefix, const char *path, char *buf,
		       size_t size);

#endif
