// SPDX-License-Identifier: MIT
/*
 * keybroker-audit verify: walks each chain of the files given (one per
 * origin) record by record, checking seq, prev and every checkpoint's
 * head and signature, and stops at the first record that breaks it.
 */
#include <errno.h>
#include <stdarg.h>
#include <getopt.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit_records.h"
#include "audit_tool.h"
#include "kb_b64.h"
#include "kb_trail.h"

#define MAX_KEYS 16
#define MAX_CHAINS 64
/* Hashes remembered per chain, for the records a checkpoint names. */
#define RING 65536

static const char zero_hash[] =
	"0000000000000000000000000000000000000000000000000000000000000000";

struct pubkey {
	EVP_PKEY *pkey;
	char keyid[KB_TRAIL_KEYID_LEN + 1];
};

struct chain {
	char origin[256];
	uint64_t first_seq, next_seq;
	char head[KB_TRAIL_HEX_LEN + 1];
	char (*ring)[KB_TRAIL_HEX_LEN + 1]; /* hash of seq s at s % RING */
	uint64_t records, checkpoints, signatures;
	/* The last checkpoint: how many records it covers, and why. */
	uint64_t covered, checkpoint_seq;
	char reason[16];
	bool last_is_checkpoint;
	char last_at[512]; /* where the last record is: FILE:LINE */
};

struct verify {
	struct pubkey keys[MAX_KEYS];
	size_t nkeys;
	struct chain *chains[MAX_CHAINS];
	size_t nchains;
	const char *file;
	unsigned long line;
	char why[1024]; /* the first tampering */
};

static int tampered(struct verify *v, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int tampered(struct verify *v, const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(v->why, sizeof(v->why), "%s:%lu: %s", v->file, v->line, msg);
	return -1;
}

static struct chain *chain_of(struct verify *v, const char *origin)
{
	struct chain *c;
	size_t i;

	for (i = 0; i < v->nchains; i++)
		if (strcmp(v->chains[i]->origin, origin) == 0)
			return v->chains[i];
	if (v->nchains == MAX_CHAINS || strlen(origin) >= sizeof(c->origin) ||
	    (c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	if ((c->ring = calloc(RING, sizeof(*c->ring))) == NULL) {
		free(c);
		return NULL;
	}
	snprintf(c->origin, sizeof(c->origin), "%s", origin);
	v->chains[v->nchains++] = c;
	return c;
}

static const char *str(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

static bool is_hex_hash(const char *s)
{
	size_t i;

	if (s == NULL || strlen(s) != KB_TRAIL_HEX_LEN)
		return false;
	for (i = 0; i < KB_TRAIL_HEX_LEN; i++)
		if (!((s[i] >= '0' && s[i] <= '9') ||
		      (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/* Checks a checkpoint record o (seq) of chain c. */
static int check_checkpoint(struct verify *v, struct chain *c, json_t *o,
			    uint64_t seq)
{
	json_t *jsize = json_object_get(o, "size");
	const char *head = str(o, "head"), *keyid = str(o, "keyid"),
		   *sig64 = str(o, "sig"), *reason = str(o, "reason");
	unsigned char sig[KB_TRAIL_SIG_LEN];
	char text[KB_TRAIL_SIGNED_MAX];
	struct pubkey *k = NULL;
	uint64_t size;
	size_t i, n, len;

	if (!json_is_integer(jsize) || json_integer_value(jsize) < 1 ||
	    (uint64_t)json_integer_value(jsize) > seq || !is_hex_hash(head) ||
	    keyid == NULL || sig64 == NULL || reason == NULL ||
	    kb_b64_decode(sig, sizeof(sig), &n, sig64, strlen(sig64)) != 0 ||
	    n != sizeof(sig))
		return tampered(v,
				"checkpoint seq %llu: its fields are not a "
				"checkpoint's: modified",
				(unsigned long long)seq);
	size = (uint64_t)json_integer_value(jsize);
	/* The record it names must be the one this chain has. */
	if (size - 1 >= c->first_seq && seq - (size - 1) < RING &&
	    strcmp(c->ring[(size - 1) % RING], head) != 0)
		return tampered(
			v,
			"checkpoint seq %llu signs head %.16s... for "
			"record seq %llu, but that record's hash is "
			"%.16s...: that record, or this checkpoint, was "
			"modified",
			(unsigned long long)seq, head,
			(unsigned long long)(size - 1),
			c->ring[(size - 1) % RING]);
	c->checkpoints++;
	if (v->nkeys > 0) {
		for (i = 0; i < v->nkeys && k == NULL; i++)
			if (strcmp(v->keys[i].keyid, keyid) == 0)
				k = &v->keys[i];
		if (k == NULL)
			return tampered(v,
					"checkpoint seq %llu is signed by key "
					"%.43s, which is none of the --pubkey "
					"keys",
					(unsigned long long)seq, keyid);
		len = kb_trail_signed_text(text, c->origin, size, head);
		if (len == 0 || !kb_trail_verify(k->pkey, text, len, sig))
			return tampered(v,
					"checkpoint seq %llu: its signature "
					"does not verify with key %s: the "
					"checkpoint was modified or forged",
					(unsigned long long)seq, keyid);
		c->signatures++;
	}
	c->covered = size;
	c->checkpoint_seq = seq;
	snprintf(c->reason, sizeof(c->reason), "%s", reason);
	return 0;
}

/* Checks one line: a record that continues its chain. */
static int check_line(struct verify *v, const char *line, size_t len)
{
	char hash[KB_TRAIL_HEX_LEN + 1];
	json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, NULL);
	json_t *jseq = json_object_get(o, "seq");
	const char *origin = str(o, "origin"), *prev = str(o, "prev"),
		   *event = str(o, "event");
	struct chain *c;
	uint64_t seq;
	int r = -1;

	if (!json_is_integer(jseq) || json_integer_value(jseq) < 0 ||
	    origin == NULL || event == NULL || str(o, "time") == NULL ||
	    str(o, "instance") == NULL || !is_hex_hash(prev)) {
		tampered(v, "not an audit record (%s): modified or inserted",
			 o == NULL ? "not JSON" : "a field is missing");
		goto out;
	}
	seq = (uint64_t)json_integer_value(jseq);
	if ((c = chain_of(v, origin)) == NULL) {
		tampered(v, "too many chains, or an origin too long");
		goto out;
	}
	if (c->records == 0) {
		c->first_seq = c->next_seq = seq;
		if (seq == 0 && strcmp(prev, zero_hash) != 0) {
			tampered(v, "record seq 0 does not start a chain "
				    "(its prev is not zero): modified");
			goto out;
		}
		memcpy(c->head, prev, sizeof(c->head));
	}
	if (seq != c->next_seq) {
		tampered(v,
			 "expected record seq %llu of '%s' here, found seq "
			 "%llu: records were deleted, inserted or reordered "
			 "(the one before is at %s)",
			 (unsigned long long)c->next_seq, origin,
			 (unsigned long long)seq, c->last_at);
		goto out;
	}
	if (strcmp(prev, c->head) != 0) {
		tampered(v,
			 "record seq %llu does not follow record seq %llu "
			 "(%s): that record was modified (its hash is not "
			 "this record's prev), or this record's prev was",
			 (unsigned long long)seq, (unsigned long long)(seq - 1),
			 c->last_at);
		goto out;
	}
	kb_trail_hash_hex(line, len, hash);
	memcpy(c->ring[seq % RING], hash, sizeof(hash));
	memcpy(c->head, hash, sizeof(hash));
	c->next_seq = seq + 1;
	c->records++;
	c->last_is_checkpoint = strcmp(event, "checkpoint") == 0;
	if (c->last_is_checkpoint && check_checkpoint(v, c, o, seq) != 0)
		goto out;
	snprintf(c->last_at, sizeof(c->last_at), "%s:%lu", v->file, v->line);
	r = 0;
out:
	json_decref(o);
	return r;
}

/* Reads file line by line. 0, -1 tampered (v->why), -2 unreadable. */
static int verify_file(struct verify *v, const char *path)
{
	FILE *f = fopen(path, "re");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int r = 0;

	if (f == NULL) {
		fprintf(stderr, "keybroker-audit verify: %s: %s\n", path,
			strerror(errno));
		return -2;
	}
	v->file = path;
	v->line = 0;
	while (r == 0 && (n = getline(&line, &cap, f)) > 0) {
		v->line++;
		if (line[n - 1] != '\n') {
			r = tampered(v, "the last line is torn (no newline): "
					"a crash while it was written, or the "
					"file was cut");
			break;
		}
		if ((size_t)n - 1 > KB_TRAIL_LINE_MAX)
			r = tampered(v,
				     "a line longer than %u bytes: not a "
				     "record",
				     KB_TRAIL_LINE_MAX);
		else
			r = check_line(v, line, (size_t)n - 1);
	}
	if (r == 0 && ferror(f)) {
		fprintf(stderr, "keybroker-audit verify: %s: %s\n", path,
			strerror(errno));
		r = -2;
	}
	free(line);
	fclose(f);
	return r;
}

/* Says how each chain ends; AUDIT_EXIT_UNSEALED if one is not sealed. */
static int report(const struct verify *v)
{
	const struct chain *c;
	int rc = AUDIT_EXIT_OK;
	size_t i;

	for (i = 0; i < v->nchains; i++) {
		c = v->chains[i];
		printf("%s: records %llu..%llu intact (%llu records), %llu "
		       "checkpoints, %llu signatures verified\n",
		       c->origin, (unsigned long long)c->first_seq,
		       (unsigned long long)(c->next_seq - 1),
		       (unsigned long long)c->records,
		       (unsigned long long)c->checkpoints,
		       (unsigned long long)c->signatures);
		if (c->first_seq > 0)
			printf("%s: begins at seq %llu: the records before "
			       "are in files not given\n",
			       c->origin, (unsigned long long)c->first_seq);
		if (c->last_is_checkpoint && c->covered == c->next_seq - 1 &&
		    strcmp(c->reason, "shutdown") == 0) {
			printf("%s: sealed: ends in the shutdown checkpoint at "
			       "%s\n",
			       c->origin, c->last_at);
			continue;
		}
		rc = AUDIT_EXIT_UNSEALED;
		if (c->last_is_checkpoint && c->covered == c->next_seq - 1)
			printf("%s: NOT SEALED: ends in a checkpoint (%s) at "
			       "%s, not a shutdown one: records after it were "
			       "cut off, or the broker is running or crashed\n",
			       c->origin, c->reason, c->last_at);
		else
			printf("%s: NOT SEALED: records seq %llu..%llu (the "
			       "last at %s) come after what the last "
			       "checkpoint signed: a cut or change there cannot "
			       "be told; the broker is running or crashed, or "
			       "the tail was cut off\n",
			       c->origin, (unsigned long long)c->covered,
			       (unsigned long long)(c->next_seq - 1),
			       c->last_at);
	}
	/* Anyone can rebuild a chain: only the signatures tie it to the key. */
	if (v->nkeys == 0) {
		printf("NOT SEALED: signatures not checked; give the audit key "
		       "with --pubkey (keybroker-audit pubkey)\n");
		rc = AUDIT_EXIT_UNSEALED;
	}
	return rc;
}

static int load_key(struct verify *v, const char *path)
{
	FILE *f = fopen(path, "re");
	EVP_PKEY *k = f != NULL ? PEM_read_PUBKEY(f, NULL, NULL, NULL) : NULL;

	if (f != NULL)
		fclose(f);
	if (k == NULL || v->nkeys == MAX_KEYS ||
	    kb_trail_keyid(k, v->keys[v->nkeys].keyid) != 0) {
		fprintf(stderr, "keybroker-audit verify: %s: %s\n", path,
			f == NULL	     ? strerror(errno) :
			k == NULL	     ? "not a PEM public key" :
			v->nkeys == MAX_KEYS ? "too many keys" :
					       "not a P-256 key (ES256)");
		EVP_PKEY_free(k);
		return -1;
	}
	v->keys[v->nkeys++].pkey = k;
	return 0;
}

static void verify_free(struct verify *v)
{
	size_t i;

	for (i = 0; i < v->nkeys; i++)
		EVP_PKEY_free(v->keys[i].pkey);
	for (i = 0; i < v->nchains; i++) {
		free(v->chains[i]->ring);
		free(v->chains[i]);
	}
}

static void verify_usage(FILE *f)
{
	fprintf(f,
		"usage: keybroker-audit verify [--pubkey PEM]... FILE|DIR...\n"
		"\n"
		"Checks that each chain (one per origin) is whole: every\n"
		"record's seq follows the one before and its prev is that\n"
		"record's SHA-256, every checkpoint names the right head and,\n"
		"with --pubkey, is signed by one of those keys. Stops at the\n"
		"first record that breaks the chain and names it. Give the\n"
		"files in order, or a directory. Exit: 0 intact and sealed by\n"
		"a shutdown checkpoint whose signature verified; 1 tampered;\n"
		"2 unreadable; 3 intact but not sealed (records after the last\n"
		"checkpoint, or no --pubkey to check signatures with).\n");
}

int audit_verify_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "pubkey", required_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct verify v = { .nkeys = 0 };
	struct audit_files files = { 0 };
	char err[AUDIT_ERR_MAX];
	int c, rc = AUDIT_EXIT_UNREADABLE, r = 0;
	size_t i;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'h') {
			verify_usage(stdout);
			rc = AUDIT_EXIT_OK;
			goto out;
		}
		if (c != 'k' || load_key(&v, optarg) != 0) {
			if (c != 'k')
				verify_usage(stderr);
			goto out;
		}
	}
	if (optind == argc) {
		verify_usage(stderr);
		goto out;
	}
	if (audit_files_expand(argv + optind, (size_t)(argc - optind), &files,
			       err, sizeof(err)) != 0) {
		audit_say("verify", err);
		goto out;
	}
	for (i = 0; i < files.n && r == 0; i++)
		r = verify_file(&v, files.path[i]);
	if (r == -2)
		goto out;
	if (r == -1) {
		printf("TAMPERED: %s\n", v.why);
		rc = AUDIT_EXIT_TAMPERED;
		goto out;
	}
	rc = report(&v);
out:
	audit_files_free(&files);
	verify_free(&v);
	return rc;
}
