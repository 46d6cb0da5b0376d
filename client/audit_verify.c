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
/*
 * Hashes remembered per chain, for the records a checkpoint names. A
 * broker's checkpoint lags its own place only by the records appended
 * while the token signed: one further back is not one of its.
 */
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
	uint64_t before_files; /* checkpoints naming records not given */
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
	bool from_given; /* --from: where the retained files begin */
	uint64_t from;
	bool records_given; /* --records: how long the chain must be */
	uint64_t records;
	const char *file;
	unsigned long line;
	char why[1024]; /* the first tampering */
	char torn_at[512]; /* a torn last line: FILE:LINE, or "" */
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
	if (strlen(reason) > 16)
		return tampered(v,
				"checkpoint seq %llu: its reason is not a "
				"checkpoint's: modified",
				(unsigned long long)seq);
	/* Before the files given: it vouches for none of what is here. */
	if (size - 1 < c->first_seq) {
		c->before_files++;
		return 0;
	}
	if (seq - (size - 1) >= RING)
		return tampered(v,
				"checkpoint seq %llu names record seq %llu, "
				"further back than a broker's checkpoint ever "
				"is: moved or forged",
				(unsigned long long)seq,
				(unsigned long long)(size - 1));
	/* The record it names must be the one this chain has. */
	if (strcmp(c->ring[(size - 1) % RING], head) != 0)
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
		len = kb_trail_signed_text(text, c->origin, size, head, reason);
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
	size_t i;

	/* The broker writes ASCII without controls (\u escapes) only. */
	for (i = 0; i < len; i++)
		if ((unsigned char)line[i] < 0x20 ||
		    (unsigned char)line[i] > 0x7f) {
			tampered(v,
				 "byte 0x%02x at column %zu: not a record "
				 "(records are ASCII without controls)",
				 (unsigned char)line[i], i + 1);
			goto out;
		}

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

/*
 * Reads file line by line, each at most KB_TRAIL_LINE_MAX bytes. 0, -1
 * tampered (v->why), -2 unreadable. A last line without its newline at
 * the end of the last file is what a crash leaves: noted, not tampered.
 */
static int verify_file(struct verify *v, const char *path, bool last)
{
	FILE *f = fopen(path, "re");
	char *line = malloc(KB_TRAIL_LINE_MAX + 2);
	size_t n;
	int r = 0;

	if (f == NULL || line == NULL) {
		fprintf(stderr, "keybroker-audit verify: %s: %s\n", path,
			strerror(f == NULL ? errno : ENOMEM));
		free(line);
		if (f != NULL)
			fclose(f);
		return -2;
	}
	v->file = path;
	v->line = 0;
	while (r == 0 && fgets(line, KB_TRAIL_LINE_MAX + 2, f) != NULL) {
		v->line++;
		n = strlen(line);
		if (n > 0 && line[n - 1] == '\n') {
			r = check_line(v, line, n - 1);
			continue;
		}
		if (n > KB_TRAIL_LINE_MAX)
			r = tampered(v,
				     "a line longer than %u bytes: not a "
				     "record",
				     KB_TRAIL_LINE_MAX);
		else if (last && feof(f))
			snprintf(v->torn_at, sizeof(v->torn_at), "%s:%lu", path,
				 v->line);
		else
			r = tampered(v, "a line without its newline, before "
					"the end of the trail: modified");
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

/*
 * What the auditor knows from elsewhere: where the retained files begin
 * (--from), and how many records the broker said it had (--records,
 * from getAuditStatus or a shipped copy). 0, or -1 tampered.
 */
static int check_ends(struct verify *v)
{
	const struct chain *c;
	size_t i;

	v->file = "(end)";
	v->line = 0;
	if (v->records_given && v->nchains != 1)
		return tampered(v,
				"--records needs exactly one chain, and the "
				"files hold %zu",
				v->nchains);
	for (i = 0; i < v->nchains; i++) {
		c = v->chains[i];
		if (v->from_given && c->first_seq != v->from)
			return tampered(v,
					"'%s' begins at seq %llu, not at "
					"--from %llu: records were removed at "
					"its start",
					c->origin,
					(unsigned long long)c->first_seq,
					(unsigned long long)v->from);
		if (v->records_given && c->next_seq < v->records)
			return tampered(
				v,
				"'%s' ends at seq %llu, but the broker "
				"had %llu records (--records): the tail "
				"was cut off",
				c->origin,
				(unsigned long long)(c->next_seq - 1),
				(unsigned long long)v->records);
	}
	return 0;
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
		if (c->before_files > 0)
			printf("%s: %llu checkpoints name records before the "
			       "files given and vouch for none of them\n",
			       c->origin, (unsigned long long)c->before_files);
		if (c->first_seq > 0 && !v->from_given) {
			printf("%s: NOT SEALED: begins at seq %llu, and the "
			       "records before are not given (if the retained "
			       "files start there, say so with --from %llu)\n",
			       c->origin, (unsigned long long)c->first_seq,
			       (unsigned long long)c->first_seq);
			rc = AUDIT_EXIT_UNSEALED;
		}
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
	if (v->torn_at[0] != '\0') {
		printf("NOT SEALED: the last line, %s, is torn (no newline): "
		       "the broker crashed while writing it, or the file was "
		       "cut there\n",
		       v->torn_at);
		rc = AUDIT_EXIT_UNSEALED;
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

/* A decimal count, 0 to 2^63. */
static int parse_count(const char *text, uint64_t *out)
{
	unsigned long long v;
	char *end;

	errno = 0;
	v = strtoull(text, &end, 10);
	if (text[0] < '0' || text[0] > '9' || *end != '\0' || errno != 0 ||
	    v > (1ull << 63))
		return -1;
	*out = v;
	return 0;
}

static void verify_usage(FILE *f)
{
	fprintf(f,
		"usage: keybroker-audit verify [--pubkey PEM]... [--from SEQ]\n"
		"                              [--records N] FILE|DIR...\n"
		"\n"
		"Checks that each chain (one per origin) is whole: every\n"
		"record's seq follows the one before and its prev is that\n"
		"record's SHA-256, every checkpoint names the right head and,\n"
		"with --pubkey, is signed by one of those keys. Stops at the\n"
		"first record that breaks the chain and names it. Give the\n"
		"files in order, or a directory.\n"
		"\n"
		"  --pubkey PEM  the audit key (keybroker-audit pubkey); several\n"
		"                for several brokers' trails\n"
		"  --from SEQ    the retained files begin at record SEQ (else a\n"
		"                chain must begin at 0 to be sealed)\n"
		"  --records N   the broker said it had N records (status, or a\n"
		"                shipped copy): fewer means the tail was cut\n"
		"\n"
		"exit status: 0 intact, and sealed by a shutdown checkpoint\n"
		"whose signature verified; 1 tampered; 2 unreadable or bad\n"
		"usage; 3 intact but not sealed (records after the last\n"
		"checkpoint, a torn last line, a chain that begins later than\n"
		"--from says, or no --pubkey): the broker is running or\n"
		"crashed, or the tail was cut off.\n");
}

int audit_verify_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "pubkey", required_argument, NULL, 'k' },
		{ "from", required_argument, NULL, 'f' },
		{ "records", required_argument, NULL, 'r' },
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
		if (c == 'f' || c == 'r') {
			if (parse_count(optarg,
					c == 'f' ? &v.from : &v.records) != 0) {
				audit_usage_error(
					"verify", "--%s needs a number",
					c == 'f' ? "from" : "records");
				goto out;
			}
			*(c == 'f' ? &v.from_given : &v.records_given) = true;
			continue;
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
		r = verify_file(&v, files.path[i], i + 1 == files.n);
	if (r == 0)
		r = check_ends(&v);
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
