// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness: what someone who can write a trail file can make
 * keybroker-audit read. The first byte picks the command (verify with a
 * key, verify without, query, report); the rest is the file. Whatever
 * the bytes, the tools must only ever say "tampered" or "unreadable".
 */
#include <getopt.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "audit_tool.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[] = "/tmp/kb-fuzz-audit-XXXXXX";
static char trail[64], pem[64];

static void setup(void)
{
	EVP_PKEY *k;
	FILE *f;

	if (mkdtemp(dir) == NULL)
		abort();
	snprintf(trail, sizeof(trail), "%s/audit.jsonl", dir);
	snprintf(pem, sizeof(pem), "%s/audit.pem", dir);
	k = EVP_EC_gen("P-256");
	if (k == NULL || (f = fopen(pem, "w")) == NULL ||
	    PEM_write_PUBKEY(f, k) != 1)
		abort();
	fclose(f);
	EVP_PKEY_free(k);
	/* What the commands print is not the point (stderr is libFuzzer's). */
	if (freopen("/dev/null", "w", stdout) == NULL)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	char *verify_key[] = { "verify", "--pubkey", pem, trail, NULL };
	char *verify[] = { "verify", trail, NULL };
	char *query[] = { "query", "--json", "--result", "error", trail, NULL };
	char *report[] = { "report", trail, NULL };
	char **argv;
	int argc, rc;
	FILE *f;

	if (!ready) {
		setup();
		ready = 1;
	}
	if (size < 1)
		return 0;
	if ((f = fopen(trail, "w")) == NULL)
		abort();
	fwrite(data + 1, 1, size - 1, f);
	fclose(f);
	switch (data[0] % 4) {
	case 0:
		argv = verify_key;
		break;
	case 1:
		argv = verify;
		break;
	case 2:
		argv = query;
		break;
	default:
		argv = report;
		break;
	}
	for (argc = 0; argv[argc] != NULL; argc++)
		;
	optind = 0; /* getopt starts afresh for each command */
	if (argv == query)
		rc = audit_query_main(argc, argv);
	else if (argv == report)
		rc = audit_report_main(argc, argv);
	else
		rc = audit_verify_main(argc, argv);
	if (rc < AUDIT_EXIT_OK || rc > AUDIT_EXIT_UNSEALED)
		abort();
	return 0;
}
