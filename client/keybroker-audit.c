// SPDX-License-Identifier: MIT
/*
 * keybroker-audit: the auditor's tool. Checks, searches and summarises
 * the broker's audit trail (docs/audit.md) from its files alone, on any
 * machine; only status and pubkey ask a running broker.
 */
#include <stdio.h>
#include <string.h>

#include "audit_tool.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: keybroker-audit COMMAND [OPTIONS] [FILE|DIR]...\n"
		"\n"
		"Reads keybrokerd's audit trail: JSON lines chained by SHA-256,\n"
		"with checkpoints signed by the audit key in the token. A DIR\n"
		"stands for its rotated files (audit-*.jsonl) then audit.jsonl.\n"
		"\n"
		"commands:\n"
		"  verify [--pubkey PEM]... FILE|DIR...\n"
		"        check the chain and every checkpoint signature; name\n"
		"        the first record modified, inserted, deleted or\n"
		"        reordered, and records after the last checkpoint\n"
		"  query [FILTERS] [--json] [--follow] FILE|DIR...\n"
		"        print the records that match (see query --help)\n"
		"  report [--since T] [--until T] [--unused-since T]\n"
		"         [--html FILE] FILE|DIR...\n"
		"        usage per identity, key version and op; denials;\n"
		"        key versions unused; permissions never used\n"
		"  status [--socket PATH] [--token-file F] [--json]\n"
		"        the running broker's trail: head, last checkpoint,\n"
		"        records that could not be written (readAudit)\n"
		"  pubkey [--socket PATH] [--token-file F] [--jwk]\n"
		"        the audit public key, PEM (or JWK), for verify\n"
		"\n"
		"exit status: 0 ok; 1 the trail was tampered with; 2 a file\n"
		"cannot be read, bad usage, or the broker refused; 3 intact but\n"
		"not sealed: records after the last checkpoint, or no\n"
		"shutdown checkpoint at the end (the broker is running or\n"
		"crashed, or the tail was cut off)\n");
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*run)(int argc, char **argv);
	} commands[] = {
		{ "verify", audit_verify_main },
		{ "query", audit_query_main },
		{ "report", audit_report_main },
		{ "status", audit_status_main },
		{ "pubkey", audit_pubkey_main },
	};
	size_t i;

	if (argc < 2) {
		usage(stderr);
		return AUDIT_EXIT_UNREADABLE;
	}
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		usage(stdout);
		return AUDIT_EXIT_OK;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("keybroker-audit %s\n", KB_VERSION);
		return AUDIT_EXIT_OK;
	}
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].run(argc - 1, argv + 1);
	fprintf(stderr, "keybroker-audit: unknown command '%.64s'\n", argv[1]);
	usage(stderr);
	return AUDIT_EXIT_UNREADABLE;
}
