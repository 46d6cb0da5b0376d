/* SPDX-License-Identifier: MIT */
/*
 * keybrokerctl key ...: the key lifecycle through the running broker, as
 * an authenticated identity (getToken for the caller's system-assigned
 * identity, or a token file), so that every change is permission-checked
 * against the ACL and logged like any other request. docs/operations.md
 * shows an admin's day with it.
 */
#ifndef CTL_KEYS_H
#define CTL_KEYS_H

#include <stdio.h>

/* Prints the verbs and their options. */
void ctl_keys_usage(FILE *f);

/*
 * Runs argv ("key", options, a verb and its arguments) against the broker
 * on socket_path. An exit status: 0 done, 1 refused or failed (the
 * broker's code and message on stderr), 2 usage error.
 */
int ctl_keys(const char *socket_path, int argc, char **argv);

#endif
