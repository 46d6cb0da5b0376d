/* SPDX-License-Identifier: MIT */
/*
 * keybroker-audit's commands: verify (audit_verify.c), query
 * (audit_query.c), report (audit_report.c), and status and pubkey, which
 * ask the running broker (audit_status.c). Each takes its own argv, argv[0] being the command's
 * name, and returns the process's exit code. docs/audit.md is the record
 * schema they read.
 */
#ifndef AUDIT_TOOL_H
#define AUDIT_TOOL_H

/* Exit codes every command shares. */
#define AUDIT_EXIT_OK 0
#define AUDIT_EXIT_TAMPERED 1 /* verify: the trail was changed */
#define AUDIT_EXIT_UNREADABLE 2 /* a file cannot be read, or bad usage */
#define AUDIT_EXIT_UNSEALED 3 /* verify: intact, but ends unsigned */

int audit_verify_main(int argc, char **argv);
int audit_status_main(int argc, char **argv);
int audit_pubkey_main(int argc, char **argv);
int audit_query_main(int argc, char **argv);
int audit_report_main(int argc, char **argv);

#endif
