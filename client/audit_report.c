// SPDX-License-Identifier: MIT
/*
 * keybroker-audit report: what a trail says about the keys and the
 * identities that use them. Usage per identity, key version and op;
 * every refused request; key versions nobody used (safe to retire after a
 * rotation); permissions granted and never used. As text, or as one
 * self-contained HTML page with a chart of the requests over time.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit_records.h"
#include "audit_tool.h"
#include "kb_grant.h"
#include "kb_output.h"

#define TABLE_COLS_MAX 16 /* columns of a table */
#define CHART_BARS_MAX 60 /* buckets the chart's time axis is cut into */
#define CHART_LABELS_MAX 8 /* labels on the time axis */
#define CHART_W 900
#define CHART_H 340
#define CHART_LEFT 70
#define CHART_RIGHT 20
#define CHART_TOP 40
#define CHART_BOTTOM 70

/* ---- a hash table of byte-string keys, in insertion order ---- */

struct hent {
	struct hent *next;
	uint64_t hash;
	size_t klen;
	void *val;
	char key[]; /* klen bytes and a NUL */
};

struct htab {
	struct hent **bucket;
	size_t nbucket;
	struct hent **item; /* in the order they were added */
	size_t n, cap;
};

static uint64_t fnv1a(const char *k, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	size_t i;

	for (i = 0; i < n; i++) {
		h ^= (unsigned char)k[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

static int htab_grow(struct htab *h)
{
	size_t nb = h->nbucket > 0 ? h->nbucket * 2 : 64, i;
	struct hent **b = calloc(nb, sizeof(*b)), *e;

	if (b == NULL)
		return -1;
	for (i = 0; i < h->n; i++) {
		e = h->item[i];
		e->next = b[e->hash % nb];
		b[e->hash % nb] = e;
	}
	free(h->bucket);
	h->bucket = b;
	h->nbucket = nb;
	return 0;
}

/* The entry for k[0..n), or NULL. */
static struct hent *htab_find(const struct htab *h, const char *k, size_t n)
{
	uint64_t hash = fnv1a(k, n);
	struct hent *e;

	if (h->nbucket == 0)
		return NULL;
	for (e = h->bucket[hash % h->nbucket]; e != NULL; e = e->next)
		if (e->hash == hash && e->klen == n &&
		    memcmp(e->key, k, n) == 0)
			return e;
	return NULL;
}

/* The entry for k[0..n), added with a zeroed value of vsize if new. */
static struct hent *htab_get(struct htab *h, const char *k, size_t n,
			     size_t vsize)
{
	uint64_t hash = fnv1a(k, n);
	struct hent *e, **item;

	if ((e = htab_find(h, k, n)) != NULL)
		return e;
	if (h->n == h->cap) {
		item = realloc(h->item,
			       (h->cap ? h->cap * 2 : 64) * sizeof(*item));
		if (item == NULL)
			return NULL;
		h->item = item;
		h->cap = h->cap ? h->cap * 2 : 64;
	}
	if (h->n >= h->nbucket && htab_grow(h) != 0)
		return NULL;
	if ((e = malloc(sizeof(*e) + n + 1)) == NULL)
		return NULL;
	if ((e->val = calloc(1, vsize)) == NULL) {
		free(e);
		return NULL;
	}
	e->hash = hash;
	e->klen = n;
	memcpy(e->key, k, n);
	e->key[n] = '\0';
	e->next = h->bucket[hash % h->nbucket];
	h->bucket[hash % h->nbucket] = e;
	h->item[h->n++] = e;
	return e;
}

static void htab_free(struct htab *h)
{
	size_t i;

	for (i = 0; i < h->n; i++) {
		free(h->item[i]->val);
		free(h->item[i]);
	}
	free(h->item);
	free(h->bucket);
	memset(h, 0, sizeof(*h));
}

/*
 * Joins part[0..4), up to the first NULL, with NUL bytes, which jansson
 * strings (never holding a NUL) cannot make ambiguous. Malloc'ed, its
 * length in *len.
 */
static char *key_join(const char *const part[4], size_t *len)
{
	size_t n = 0, l, i;
	char *key, *p;

	for (i = 0; i < 4 && part[i] != NULL; i++)
		n += strlen(part[i]) + 1;
	if (n == 0 || (key = malloc(n)) == NULL)
		return NULL;
	for (p = key, i = 0; i < 4 && part[i] != NULL; i++, p += l) {
		l = strlen(part[i]) + 1;
		memcpy(p, part[i], l);
	}
	*len = n - 1;
	return key;
}

/* The i-th NUL-separated part of an entry's key. */
static const char *key_part(const struct hent *e, int i)
{
	const char *p = e->key;

	while (i-- > 0)
		p += strlen(p) + 1;
	return p;
}

/* ---- permissions ---- */

/* What each op needs (docs/protocol.md). */
static const struct {
	const char *op;
	const char *perm[2];
} op_perms[] = {
	{ "getKey", { "get" } },
	{ "getKeyRotationPolicy", { "get" } },
	{ "wrapKey", { "wrapKey" } },
	{ "unwrapKey", { "unwrapKey" } },
	{ "rewrapKey", { "unwrapKey", "wrapKey" } },
	{ "createKey", { "create" } },
	{ "importKey", { "import" } },
	{ "updateKey", { "update" } },
	{ "updateKeyRotationPolicy", { "update" } },
	{ "rotateKey", { "rotate" } },
	{ "deleteKey", { "delete" } },
	{ "recoverDeletedKey", { "recover" } },
	{ "purgeDeletedKey", { "purge" } },
	{ "getKeys", { "list" } },
	{ "getKeyVersions", { "list" } },
	{ "getDeletedKey", { "list" } },
	{ "getDeletedKeys", { "list" } },
	{ "getAuditStatus", { "readAudit" } },
};

/* Ops that use a key version's material. */
static const char *const version_uses[] = { "wrapKey", "unwrapKey", "rewrapKey",
					    "getKey" };

/* A permission's bit (common/kb_grant.c), or 0 if it names none. */
static unsigned int perm_bit(const char *name)
{
	unsigned int perm;

	return kb_perm_parse(name, &perm) == 0 ? perm : 0;
}

static unsigned int op_bits(const char *op)
{
	unsigned int bits = 0;
	size_t i, j;

	for (i = 0; op != NULL && i < sizeof(op_perms) / sizeof(op_perms[0]);
	     i++)
		if (strcmp(op, op_perms[i].op) == 0)
			for (j = 0; j < 2 && op_perms[i].perm[j] != NULL; j++)
				bits |= perm_bit(op_perms[i].perm[j]);
	return bits;
}

static bool uses_version(const char *op)
{
	size_t i;

	for (i = 0; i < sizeof(version_uses) / sizeof(version_uses[0]); i++)
		if (strcmp(op, version_uses[i]) == 0)
			return true;
	return false;
}

/* ---- what the report gathers ---- */

enum outcome { OUT_OK, OUT_DENIED, OUT_ERROR };

struct usage {
	const char *identity, *key, *version, *op; /* the entry's key */
	unsigned long n[3]; /* by enum outcome */
	int64_t first, last;
};

struct denial {
	int64_t time;
	bool has_uid;
	long long uid;
	char *identity, *unit, *op, *key, *result, *message;
};

struct kversion {
	const char *key, *version; /* the entry's key */
	int64_t first_seen;
	bool used; /* an ok use at or after the cut-off */
	bool ever_used;
	int64_t last_use;
};

struct sample {
	int64_t time;
	enum outcome out;
};

struct report {
	bool has_since, has_until, has_unused_since, force;
	int64_t since, until, unused_since;
	const char *html;

	const struct audit_files *files;
	unsigned long records, in_range, requests[3];
	int64_t first, last; /* of the records in range */
	struct htab events; /* name -> unsigned long */
	struct htab usage; /* identity, key, version, op -> usage */
	struct denial *denial;
	size_t n_denials, cap_denials;
	struct sample *sample;
	size_t n_samples, cap_samples;
	struct htab versions; /* key, version -> kversion */
	struct htab purged; /* key -> int64_t: last time purged */
	struct htab exercised; /* identity, key or "" -> permission bits */
	json_t *grants; /* of the last ok start or reload */
	char *grants_from; /* "start record at FILE:LINE (seq, time)" */
};

/* Records from --until on are left out of every section. */
static bool before_until(const struct report *rp, int64_t t)
{
	return !rp->has_until || t < rp->until;
}

static bool in_range(const struct report *rp, int64_t t)
{
	return (!rp->has_since || t >= rp->since) && before_until(rp, t);
}

/* The start of what "unused" looks at: --unused-since, or --since. */
static bool after_cutoff(const struct report *rp, int64_t t)
{
	if (rp->has_unused_since)
		return t >= rp->unused_since;
	return !rp->has_since || t >= rp->since;
}

static enum outcome outcome_of(const char *result)
{
	if (result != NULL && strcmp(result, "ok") == 0)
		return OUT_OK;
	if (result != NULL && (strcmp(result, "Unauthorized") == 0 ||
			       strcmp(result, "Forbidden") == 0))
		return OUT_DENIED;
	return OUT_ERROR;
}

static const char *dash(const char *s)
{
	return s != NULL && s[0] != '\0' ? s : "-";
}

static int oom(const struct audit_rec *r, char *err, size_t errlen)
{
	snprintf(err, errlen, "%s:%lu: out of memory", r->file, r->line);
	return -1;
}

/* The entry of the parts a, b, c, d (the first NULL ends them), added. */
static struct hent *entry_of(struct htab *h, size_t vsize, const char *a,
			     const char *b, const char *c, const char *d)
{
	const char *const part[4] = { a, b, c, d };
	struct hent *e = NULL;
	size_t len;
	char *key;

	if ((key = key_join(part, &len)) != NULL)
		e = htab_get(h, key, len, vsize);
	free(key);
	return e;
}

static int count_event(struct report *rp, const struct audit_rec *r, char *err,
		       size_t errlen)
{
	struct hent *e = entry_of(&rp->events, sizeof(unsigned long), r->event,
				  NULL, NULL, NULL);

	if (e == NULL)
		return oom(r, err, errlen);
	(*(unsigned long *)e->val)++;
	return 0;
}

static int add_usage(struct report *rp, const struct audit_rec *r,
		     enum outcome out, char *err, size_t errlen)
{
	struct hent *e = entry_of(&rp->usage, sizeof(struct usage),
				  dash(r->identity), dash(r->key),
				  dash(r->version), dash(r->op));
	struct usage *u;

	if (e == NULL)
		return oom(r, err, errlen);
	u = e->val;
	if (u->identity == NULL) {
		u->identity = key_part(e, 0);
		u->key = key_part(e, 1);
		u->version = key_part(e, 2);
		u->op = key_part(e, 3);
		u->first = u->last = r->time;
	}
	u->n[out]++;
	if (r->time < u->first)
		u->first = r->time;
	if (r->time > u->last)
		u->last = r->time;
	return 0;
}

static char *dup_or_null(const char *s, bool *failed)
{
	char *d;

	if (s == NULL)
		return NULL;
	if ((d = strdup(s)) == NULL)
		*failed = true;
	return d;
}

static int add_denial(struct report *rp, const struct audit_rec *r, char *err,
		      size_t errlen)
{
	struct denial *d, *grown;
	bool failed = false;
	size_t cap;

	if (rp->n_denials == rp->cap_denials) {
		cap = rp->cap_denials ? rp->cap_denials * 2 : 64;
		if ((grown = realloc(rp->denial, cap * sizeof(*grown))) == NULL)
			return oom(r, err, errlen);
		rp->denial = grown;
		rp->cap_denials = cap;
	}
	d = &rp->denial[rp->n_denials++];
	memset(d, 0, sizeof(*d));
	d->time = r->time;
	d->has_uid = r->has_uid;
	d->uid = (long long)r->uid;
	d->identity = dup_or_null(r->identity, &failed);
	d->unit = dup_or_null(r->unit, &failed);
	d->op = dup_or_null(r->op, &failed);
	d->key = dup_or_null(r->key, &failed);
	d->result = dup_or_null(r->result, &failed);
	d->message = dup_or_null(r->message, &failed);
	return failed ? oom(r, err, errlen) : 0;
}

static int add_sample(struct report *rp, const struct audit_rec *r,
		      enum outcome out, char *err, size_t errlen)
{
	struct sample *grown;
	size_t cap;

	if (rp->n_samples == rp->cap_samples) {
		cap = rp->cap_samples ? rp->cap_samples * 2 : 1024;
		if ((grown = realloc(rp->sample, cap * sizeof(*grown))) == NULL)
			return oom(r, err, errlen);
		rp->sample = grown;
		rp->cap_samples = cap;
	}
	rp->sample[rp->n_samples].time = r->time;
	rp->sample[rp->n_samples++].out = out;
	return 0;
}

/* A request in the range: sections 1 and 2, and the chart. */
static int take_request(struct report *rp, const struct audit_rec *r, char *err,
			size_t errlen)
{
	enum outcome out = outcome_of(r->result);

	rp->requests[out]++;
	if (add_usage(rp, r, out, err, errlen) != 0 ||
	    add_sample(rp, r, out, err, errlen) != 0)
		return -1;
	if (out != OUT_OK)
		return add_denial(rp, r, err, errlen);
	return 0;
}

/* Every key version a record names; an ok use marks it used. */
static int take_version(struct report *rp, const struct audit_rec *r, char *err,
			size_t errlen)
{
	struct hent *e;
	struct kversion *v;

	if (r->key == NULL || r->version == NULL || r->version[0] == '\0')
		return 0;
	e = entry_of(&rp->versions, sizeof(*v), r->key, r->version, NULL, NULL);
	if (e == NULL)
		return oom(r, err, errlen);
	v = e->val;
	if (v->key == NULL) {
		v->key = key_part(e, 0);
		v->version = key_part(e, 1);
		v->first_seen = r->time;
	}
	if (r->time < v->first_seen)
		v->first_seen = r->time;
	if (strcmp(r->event, "request") != 0 || r->op == NULL ||
	    outcome_of(r->result) != OUT_OK || !uses_version(r->op))
		return 0;
	if (!v->ever_used || r->time > v->last_use)
		v->last_use = r->time;
	v->ever_used = true;
	if (after_cutoff(rp, r->time))
		v->used = true;
	return 0;
}

/* A key purged (by request, by the broker, by an admin). */
static int take_purge(struct report *rp, const struct audit_rec *r, char *err,
		      size_t errlen)
{
	struct hent *e;
	int64_t *when;

	if (r->key == NULL || r->op == NULL ||
	    outcome_of(r->result) != OUT_OK ||
	    (strcmp(r->op, "purgeDeletedKey") != 0 &&
	     strcmp(r->op, "purge") != 0))
		return 0;
	e = entry_of(&rp->purged, sizeof(*when), r->key, NULL, NULL, NULL);
	if (e == NULL)
		return oom(r, err, errlen);
	when = e->val;
	if (r->time > *when)
		*when = r->time;
	return 0;
}

/* The permissions an ok request exercised, per identity and key. */
static int take_exercise(struct report *rp, const struct audit_rec *r,
			 char *err, size_t errlen)
{
	unsigned int bits = op_bits(r->op);
	struct hent *e;

	if (bits == 0 || r->identity == NULL ||
	    outcome_of(r->result) != OUT_OK || !after_cutoff(rp, r->time))
		return 0;
	e = entry_of(&rp->exercised, sizeof(unsigned int), r->identity,
		     r->key != NULL ? r->key : "", NULL, NULL);
	if (e == NULL)
		return oom(r, err, errlen);
	*(unsigned int *)e->val |= bits;
	return 0;
}

static bool string_list(json_t *a, bool required)
{
	json_t *v;
	size_t i;

	if (a == NULL)
		return !required;
	if (!json_is_array(a))
		return false;
	json_array_foreach(a, i, v)
		if (!json_is_string(v))
			return false;
	return true;
}

/* Keeps the grants of an ok start or reload, checked. */
static int take_grants(struct report *rp, const struct audit_rec *r, char *err,
		       size_t errlen)
{
	json_t *g = json_object_get(r->obj, "grants"), *e;
	char when[AUDIT_TIME_TEXT_MAX];
	size_t i;

	if (!(strcmp(r->event, "start") == 0 ||
	      (strcmp(r->event, "reload") == 0 &&
	       outcome_of(r->result) == OUT_OK)))
		return 0;
	if (!json_is_array(g)) {
		snprintf(err, errlen,
			 "%s:%lu: \"grants\" is missing or not a list", r->file,
			 r->line);
		return -1;
	}
	json_array_foreach(g, i, e)
		if (!json_is_object(e) ||
		    !json_is_string(json_object_get(e, "identity")) ||
		    !string_list(json_object_get(e, "keys"), true) ||
		    !string_list(json_object_get(e, "permissions"), false) ||
		    !string_list(json_object_get(e, "roles"), false)) {
			snprintf(err, errlen,
				 "%s:%lu: grants[%zu] is not {\"identity\": "
				 "string, \"keys\": [string], "
				 "\"permissions\": [string]}",
				 r->file, r->line, i);
			return -1;
		}
	json_decref(rp->grants);
	rp->grants = json_incref(g);
	free(rp->grants_from);
	audit_time_format(r->time, false, when);
	if (asprintf(&rp->grants_from, "the %s record at %s:%lu (seq %lld, %s)",
		     r->event, r->file, r->line, (long long)r->seq, when) < 0) {
		rp->grants_from = NULL;
		return oom(r, err, errlen);
	}
	return 0;
}

static int on_record(const struct audit_rec *r, void *arg, char *err,
		     size_t errlen)
{
	struct report *rp = arg;

	rp->records++;
	if (!before_until(rp, r->time))
		return 0;
	if (take_version(rp, r, err, errlen) != 0 ||
	    take_purge(rp, r, err, errlen) != 0 ||
	    take_grants(rp, r, err, errlen) != 0)
		return -1;
	if (strcmp(r->event, "request") == 0 &&
	    take_exercise(rp, r, err, errlen) != 0)
		return -1;
	if (!in_range(rp, r->time))
		return 0;
	if (rp->in_range == 0 || r->time < rp->first)
		rp->first = r->time;
	if (rp->in_range == 0 || r->time > rp->last)
		rp->last = r->time;
	rp->in_range++;
	if (count_event(rp, r, err, errlen) != 0)
		return -1;
	if (strcmp(r->event, "request") == 0)
		return take_request(rp, r, err, errlen);
	return 0;
}

static void report_free(struct report *rp)
{
	size_t i;

	for (i = 0; i < rp->n_denials; i++) {
		free(rp->denial[i].identity);
		free(rp->denial[i].unit);
		free(rp->denial[i].op);
		free(rp->denial[i].key);
		free(rp->denial[i].result);
		free(rp->denial[i].message);
	}
	free(rp->denial);
	free(rp->sample);
	htab_free(&rp->events);
	htab_free(&rp->usage);
	htab_free(&rp->versions);
	htab_free(&rp->purged);
	htab_free(&rp->exercised);
	json_decref(rp->grants);
	free(rp->grants_from);
}

/* ---- tables, as text or HTML ---- */

struct column {
	const char *head;
	size_t max; /* columns in text; 0: as wide as it takes */
	bool num;
};

struct table {
	const char *id, *title;
	char *note; /* a sentence under the title, or NULL */
	const struct column *col;
	size_t ncol;
	char **cell; /* nrow * ncol, each malloc'ed */
	size_t nrow, cap;
};

static void table_init(struct table *t, const char *id, const char *title,
		       const struct column *col, size_t ncol)
{
	if (ncol > TABLE_COLS_MAX)
		abort(); /* the tables are this file's own */
	memset(t, 0, sizeof(*t));
	t->id = id;
	t->title = title;
	t->col = col;
	t->ncol = ncol;
}

static void table_free(struct table *t)
{
	size_t i;

	for (i = 0; i < t->nrow * t->ncol; i++)
		free(t->cell[i]);
	free(t->cell);
	free(t->note);
	memset(t, 0, sizeof(*t));
}

/* Adds a row of t->ncol strings (copied; NULL shows as "-"). */
static int table_row(struct table *t, ...)
{
	const char *s;
	char **grown;
	size_t i, cap;
	va_list ap;
	int r = 0;

	if (t->nrow == t->cap) {
		cap = t->cap ? t->cap * 2 : 16;
		grown = realloc(t->cell, cap * t->ncol * sizeof(*grown));
		if (grown == NULL)
			return -1;
		t->cell = grown;
		t->cap = cap;
	}
	va_start(ap, t);
	for (i = 0; i < t->ncol; i++) {
		s = va_arg(ap, const char *);
		t->cell[t->nrow * t->ncol + i] = strdup(s != NULL ? s : "-");
		if (t->cell[t->nrow * t->ncol + i] == NULL)
			r = -1;
	}
	va_end(ap);
	t->nrow++;
	return r;
}

static void pad(FILE *f, size_t n)
{
	while (n-- > 0)
		fputc(' ', f);
}

static void text_cell(FILE *f, const struct column *c, const char *s,
		      size_t width, bool last)
{
	size_t cols = audit_put_clean(NULL, s, c->max, false);

	if (c->num)
		pad(f, width - cols);
	audit_put_clean(f, s, c->max, false);
	if (!last)
		pad(f, (c->num ? 0 : width - cols) + 2);
}

static void table_text(FILE *f, const struct table *t)
{
	size_t width[TABLE_COLS_MAX], i, j, w;

	fprintf(f, "\n== %s ==\n", t->title);
	if (t->note != NULL) {
		audit_put_clean(f, t->note, 0, false);
		fputc('\n', f);
	}
	if (t->nrow == 0) {
		fprintf(f, "(none)\n");
		return;
	}
	for (j = 0; j < t->ncol; j++) {
		width[j] = audit_put_clean(NULL, t->col[j].head, 0, false);
		for (i = 0; i < t->nrow; i++) {
			w = audit_put_clean(NULL, t->cell[i * t->ncol + j],
					    t->col[j].max, false);
			if (w > width[j])
				width[j] = w;
		}
	}
	for (j = 0; j < t->ncol; j++)
		text_cell(f, &t->col[j], t->col[j].head, width[j],
			  j + 1 == t->ncol);
	fputc('\n', f);
	for (i = 0; i < t->nrow; i++) {
		for (j = 0; j < t->ncol; j++)
			text_cell(f, &t->col[j], t->cell[i * t->ncol + j],
				  width[j], j + 1 == t->ncol);
		fputc('\n', f);
	}
}

static void table_html(FILE *f, const struct table *t)
{
	size_t i, j;

	fprintf(f, "<section id=\"%s\">\n<h2>", t->id);
	audit_put_clean(f, t->title, 0, true);
	fprintf(f, "</h2>\n");
	if (t->note != NULL) {
		fprintf(f, "<p>");
		audit_put_clean(f, t->note, 0, true);
		fprintf(f, "</p>\n");
	}
	if (t->nrow == 0) {
		fprintf(f, "<p class=\"none\">none</p>\n</section>\n");
		return;
	}
	fprintf(f, "<table>\n<thead><tr>");
	for (j = 0; j < t->ncol; j++) {
		fprintf(f, "<th>");
		audit_put_clean(f, t->col[j].head, 0, true);
		fprintf(f, "</th>");
	}
	fprintf(f, "</tr></thead>\n<tbody>\n");
	for (i = 0; i < t->nrow; i++) {
		fprintf(f, "<tr>");
		for (j = 0; j < t->ncol; j++) {
			fputs(t->col[j].num ? "<td class=\"n\">" : "<td>", f);
			audit_put_clean(f, t->cell[i * t->ncol + j], 0, true);
			fprintf(f, "</td>");
		}
		fprintf(f, "</tr>\n");
	}
	fprintf(f, "</tbody>\n</table>\n</section>\n");
}

/* ---- the sections ---- */

static const char *time_text(int64_t t, bool micro, char *buf)
{
	audit_time_format(t, micro, buf);
	return buf;
}

static const char *cutoff_text(const struct report *rp, char *buf)
{
	if (rp->has_unused_since)
		return time_text(rp->unused_since, false, buf);
	if (rp->has_since)
		return time_text(rp->since, false, buf);
	return NULL;
}

static int summary_table(const struct report *rp, struct table *t)
{
	static const struct column cols[] = { { "what", 0, false },
					      { "value", 0, false } };
	char a[AUDIT_TIME_TEXT_MAX], b[AUDIT_TIME_TEXT_MAX], n[128];
	char *s = NULL;
	size_t i;
	int r = 0;

	table_init(t, "summary", "Summary", cols, 2);
	for (i = 0; i < rp->files->n && r == 0; i++)
		r = table_row(t, "file", rp->files->path[i]);
	snprintf(n, sizeof(n), "%lu read, %lu in the range", rp->records,
		 rp->in_range);
	if (r == 0)
		r = table_row(t, "records", n);
	if (r == 0 && asprintf(&s, "%s to %s",
			       rp->has_since ? time_text(rp->since, false, a) :
					       "the start",
			       rp->has_until ? time_text(rp->until, false, b) :
					       "the end") < 0)
		return -1;
	if (r == 0)
		r = table_row(t, "range", s);
	free(s);
	if (r == 0 && rp->in_range > 0)
		r = table_row(t, "first record", time_text(rp->first, true, a));
	if (r == 0 && rp->in_range > 0)
		r = table_row(t, "last record", time_text(rp->last, true, b));
	snprintf(n, sizeof(n),
		 "%lu ok, %lu denied (Unauthorized, Forbidden), %lu failed "
		 "(other codes)",
		 rp->requests[OUT_OK], rp->requests[OUT_DENIED],
		 rp->requests[OUT_ERROR]);
	if (r == 0)
		r = table_row(t, "requests", n);
	for (i = 0; i < rp->events.n && r == 0; i++) {
		snprintf(n, sizeof(n), "%lu",
			 *(unsigned long *)rp->events.item[i]->val);
		if (asprintf(&s, "event %s", rp->events.item[i]->key) < 0)
			return -1;
		r = table_row(t, s, n);
		free(s);
	}
	return r;
}

static int usage_cmp(const void *a, const void *b)
{
	const struct usage *x = (*(struct hent *const *)a)->val;
	const struct usage *y = (*(struct hent *const *)b)->val;
	int r;

	if ((r = strcmp(x->identity, y->identity)) != 0 ||
	    (r = strcmp(x->key, y->key)) != 0 ||
	    (r = strcmp(x->version, y->version)) != 0)
		return r;
	return strcmp(x->op, y->op);
}

static int usage_table(struct report *rp, struct table *t)
{
	static const struct column cols[] = {
		{ "identity", 24, false }, { "key", 32, false },
		{ "version", 32, false },  { "op", 24, false },
		{ "ok", 0, true },	   { "denied", 0, true },
		{ "errors", 0, true },	   { "first", 0, false },
		{ "last", 0, false },
	};
	char ok[24], den[24], er[24], a[AUDIT_TIME_TEXT_MAX],
		b[AUDIT_TIME_TEXT_MAX];
	const struct usage *u;
	size_t i;

	table_init(t, "usage",
		   "Usage: requests per identity, key version "
		   "and op",
		   cols, sizeof(cols) / sizeof(cols[0]));
	if (rp->usage.n > 1)
		qsort(rp->usage.item, rp->usage.n, sizeof(*rp->usage.item),
		      usage_cmp);
	for (i = 0; i < rp->usage.n; i++) {
		u = rp->usage.item[i]->val;
		snprintf(ok, sizeof(ok), "%lu", u->n[OUT_OK]);
		snprintf(den, sizeof(den), "%lu", u->n[OUT_DENIED]);
		snprintf(er, sizeof(er), "%lu", u->n[OUT_ERROR]);
		if (table_row(t, u->identity, u->key, u->version, u->op, ok,
			      den, er, time_text(u->first, false, a),
			      time_text(u->last, false, b)) != 0)
			return -1;
	}
	return 0;
}

static int denial_table(const struct report *rp, struct table *t)
{
	static const struct column cols[] = {
		{ "time", 0, false },	 { "identity", 24, false },
		{ "uid", 0, true },	 { "unit", 32, false },
		{ "op", 24, false },	 { "key", 32, false },
		{ "result", 20, false }, { "message", 72, false },
	};
	char when[AUDIT_TIME_TEXT_MAX], uid[24];
	const struct denial *d;
	size_t i;

	table_init(t, "denials",
		   "Denials: every refused request (any result but ok)", cols,
		   sizeof(cols) / sizeof(cols[0]));
	for (i = 0; i < rp->n_denials; i++) {
		d = &rp->denial[i];
		snprintf(uid, sizeof(uid), "%lld", d->uid);
		if (table_row(t, time_text(d->time, true, when),
			      dash(d->identity), d->has_uid ? uid : "-",
			      dash(d->unit), dash(d->op), dash(d->key),
			      dash(d->result), dash(d->message)) != 0)
			return -1;
	}
	return 0;
}

static int version_cmp(const void *a, const void *b)
{
	const struct kversion *x = (*(struct hent *const *)a)->val;
	const struct kversion *y = (*(struct hent *const *)b)->val;
	int r = strcmp(x->key, y->key);

	if (r != 0)
		return r;
	if (x->first_seen != y->first_seen)
		return x->first_seen < y->first_seen ? -1 : 1;
	return strcmp(x->version, y->version);
}

/* True if v's key was purged after v was first seen. */
static bool purged_after(const struct report *rp, const struct kversion *v)
{
	const struct hent *e = htab_find(&rp->purged, v->key, strlen(v->key));

	return e != NULL && *(const int64_t *)e->val >= v->first_seen;
}

static int version_table(struct report *rp, struct table *t)
{
	static const struct column cols[] = {
		{ "key", 32, false },	    { "version", 0, false },
		{ "first seen", 0, false }, { "last ok use", 0, false },
		{ "note", 0, false },
	};
	char a[AUDIT_TIME_TEXT_MAX], b[AUDIT_TIME_TEXT_MAX];
	const char *since = cutoff_text(rp, a);
	const struct kversion *v, *next;
	size_t i;

	table_init(t, "unused-versions", "Key versions nobody used", cols,
		   sizeof(cols) / sizeof(cols[0]));
	if (asprintf(&t->note,
		     "No ok wrapKey, unwrapKey, rewrapKey or getKey on them "
		     "%s%s: safe to retire once their key has a newer "
		     "version.",
		     since != NULL ? "since " : "in the trail",
		     since != NULL ? since : "") < 0) {
		t->note = NULL;
		return -1;
	}
	/* By key, then first seen: each key's newest version comes last. */
	if (rp->versions.n > 1)
		qsort(rp->versions.item, rp->versions.n,
		      sizeof(*rp->versions.item), version_cmp);
	for (i = 0; i < rp->versions.n; i++) {
		v = rp->versions.item[i]->val;
		next = i + 1 < rp->versions.n ? rp->versions.item[i + 1]->val :
						NULL;
		if (v->used || purged_after(rp, v))
			continue;
		if (table_row(t, v->key, v->version,
			      time_text(v->first_seen, false, a),
			      v->ever_used ? time_text(v->last_use, false, b) :
					     "never",
			      next == NULL || strcmp(next->key, v->key) != 0 ?
				      "newest version seen: keep" :
				      "") != 0)
			return -1;
	}
	return 0;
}

/*
 * The names of bits, then the strings of extra (a list, or NULL), joined
 * with ", ", malloc'ed; NULL if memory is short.
 */
static char *join_names(unsigned int bits, json_t *extra)
{
	const char *sep = "";
	char *text = NULL;
	size_t i, n;
	json_t *v;
	FILE *m;

	if ((m = open_memstream(&text, &n)) == NULL)
		return NULL;
	for (i = 0; i < 32; i++)
		if (bits & (1u << i)) {
			fprintf(m, "%s%s", sep, kb_perm_name(1u << i));
			sep = ", ";
		}
	json_array_foreach(extra, i, v) {
		fprintf(m, "%s%s", sep, json_string_value(v));
		sep = ", ";
	}
	if (ferror(m) | fclose(m)) {
		free(text);
		return NULL;
	}
	return text;
}

/*
 * What a grant gives: the bits of the permissions and roles we know;
 * names we do not know go to unknown, as nothing here exercises them.
 */
static unsigned int grant_bits(json_t *g, json_t *unknown)
{
	json_t *perms = json_object_get(g, "permissions");
	json_t *roles = json_object_get(g, "roles"), *v;
	unsigned int bits = 0, b, rb;
	size_t i;

	json_array_foreach(perms, i, v) {
		if ((b = perm_bit(json_string_value(v))) == 0)
			json_array_append(unknown, v);
		bits |= b;
	}
	json_array_foreach(roles, i, v) {
		if (kb_role_lookup(json_string_value(v), &rb) != 0) {
			json_array_append_new(
				unknown,
				json_sprintf("role %s", json_string_value(v)));
			continue;
		}
		bits |= rb;
	}
	return bits;
}

/* The permissions who exercised on keys matching any of patterns. */
static unsigned int used_bits(const struct report *rp, const char *who,
			      json_t *patterns)
{
	const struct hent *e;
	unsigned int bits = 0;
	const char *key;
	json_t *p;
	size_t i, j;

	for (i = 0; i < rp->exercised.n; i++) {
		e = rp->exercised.item[i];
		if (strcmp(key_part(e, 0), who) != 0)
			continue;
		key = key_part(e, 1);
		json_array_foreach(patterns, j, p)
			if (key[0] == '\0' ||
			    kb_pattern_match(json_string_value(p), key)) {
				bits |= *(const unsigned int *)e->val;
				break;
			}
	}
	return bits;
}

/* A row for grant g if it holds permissions never exercised. */
static int grant_row(const struct report *rp, struct table *t, json_t *g)
{
	const char *who = json_string_value(json_object_get(g, "identity"));
	json_t *keys = json_object_get(g, "keys"), *unknown = json_array();
	char *kt = NULL, *gt = NULL, *ut = NULL;
	unsigned int granted, unused;
	int r = -1;

	if (unknown == NULL)
		return -1;
	granted = grant_bits(g, unknown);
	unused = granted & ~used_bits(rp, who, keys);
	if (unused == 0 && json_array_size(unknown) == 0) {
		r = 0;
		goto out;
	}
	if ((kt = join_names(0, keys)) != NULL &&
	    (gt = join_names(granted, unknown)) != NULL &&
	    (ut = join_names(unused, unknown)) != NULL)
		r = table_row(t, who, kt, gt, ut);
out:
	free(kt);
	free(gt);
	free(ut);
	json_decref(unknown);
	return r;
}

static int perm_table(const struct report *rp, struct table *t)
{
	static const struct column cols[] = {
		{ "identity", 24, false },
		{ "keys", 40, false },
		{ "granted", 0, false },
		{ "never used", 0, false },
	};
	char cut[AUDIT_TIME_TEXT_MAX];
	const char *since = cutoff_text(rp, cut);
	json_t *g;
	size_t i;
	int n;

	table_init(t, "unused-permissions",
		   "Identities holding permissions they never used", cols,
		   sizeof(cols) / sizeof(cols[0]));
	if (rp->grants == NULL)
		n = asprintf(&t->note, "No start or reload record with the "
				       "grants in force in these files: "
				       "nothing to compare.");
	else
		n = asprintf(&t->note,
			     "The grants in force, from %s, against the ok "
			     "requests of each identity %s%s.",
			     rp->grants_from, since ? "since " : "in the trail",
			     since ? since : "");
	if (n < 0) {
		t->note = NULL;
		return -1;
	}
	json_array_foreach(rp->grants, i, g)
		if (grant_row(rp, t, g) != 0)
			return -1;
	return 0;
}

/* ---- the chart ---- */

static const struct {
	int64_t secs;
	const char *name;
} bucket_sizes[] = {
	{ 1, "second" },
	{ 5, "5 seconds" },
	{ 10, "10 seconds" },
	{ 30, "30 seconds" },
	{ 60, "minute" },
	{ 300, "5 minutes" },
	{ 600, "10 minutes" },
	{ 900, "15 minutes" },
	{ 1800, "30 minutes" },
	{ 3600, "hour" },
	{ 3 * 3600, "3 hours" },
	{ 6 * 3600, "6 hours" },
	{ 12 * 3600, "12 hours" },
	{ 86400, "day" },
	{ 7 * 86400, "week" },
	{ 30 * 86400, "30 days" },
	{ 365 * 86400, "365 days" },
};

struct chart {
	int64_t start, size; /* seconds */
	const char *name; /* of one bucket */
	size_t n;
	unsigned long (*count)[3]; /* per bucket, by enum outcome */
	unsigned long max; /* the most requests in one bucket */
};

static int64_t floor_div(int64_t a, int64_t b)
{
	return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

/* Buckets the requests: the smallest size that keeps the bars few. */
static int chart_build(const struct report *rp, struct chart *c)
{
	int64_t lo = INT64_MAX, hi = INT64_MIN, t;
	size_t i, b;

	memset(c, 0, sizeof(*c));
	if (rp->n_samples == 0)
		return 0;
	for (i = 0; i < rp->n_samples; i++) {
		t = floor_div(rp->sample[i].time, 1000000);
		lo = t < lo ? t : lo;
		hi = t > hi ? t : hi;
	}
	for (i = 0; i < sizeof(bucket_sizes) / sizeof(bucket_sizes[0]); i++) {
		c->size = bucket_sizes[i].secs;
		c->name = bucket_sizes[i].name;
		c->start = floor_div(lo, c->size) * c->size;
		c->n = (size_t)((hi - c->start) / c->size) + 1;
		if (c->n <= CHART_BARS_MAX)
			break;
	}
	if ((c->count = calloc(c->n, sizeof(*c->count))) == NULL)
		return -1;
	for (i = 0; i < rp->n_samples; i++) {
		t = floor_div(rp->sample[i].time, 1000000);
		b = (size_t)((t - c->start) / c->size);
		c->count[b][rp->sample[i].out]++;
	}
	for (b = 0; b < c->n; b++) {
		unsigned long sum =
			c->count[b][0] + c->count[b][1] + c->count[b][2];

		c->max = sum > c->max ? sum : c->max;
	}
	return 0;
}

/* A round step (1, 2 or 5 times a power of ten) for at most 5 ticks. */
static unsigned long nice_step(unsigned long max)
{
	unsigned long m = 1;

	for (;;) {
		if (m * 5 >= max)
			return m;
		if (m * 10 >= max)
			return m * 2;
		if (m * 25 >= max)
			return m * 5;
		m *= 10;
	}
}

static void bucket_label(const struct chart *c, size_t i, bool full, char *buf,
			 size_t n)
{
	time_t t = (time_t)(c->start + (int64_t)i * c->size);
	struct tm tm;
	size_t len = 0;

	if (gmtime_r(&t, &tm) == NULL)
		len = 0;
	else if (full)
		len = strftime(buf, n, "%Y-%m-%d %H:%M:%S UTC", &tm);
	else if (c->size < 60)
		len = strftime(buf, n, "%H:%M:%S", &tm);
	else if (c->size < 86400)
		len = strftime(buf, n, "%m-%d %H:%M", &tm);
	else
		len = strftime(buf, n, "%Y-%m-%d", &tm);
	if (len == 0)
		snprintf(buf, n, "?");
}

static void chart_legend(FILE *f)
{
	static const struct {
		const char *name, *color;
	} keys[] = { { "ok", "#2e7d32" },
		     { "denied", "#ef6c00" },
		     { "error", "#c62828" } };
	size_t i;

	for (i = 0; i < 3; i++)
		fprintf(f,
			"<rect x=\"%zu\" y=\"12\" width=\"12\" height=\"12\" "
			"fill=\"%s\"/><text x=\"%zu\" y=\"22\">%s</text>\n",
			CHART_LEFT + i * 90, keys[i].color,
			CHART_LEFT + i * 90 + 18, keys[i].name);
}

static void chart_axes(FILE *f, const struct chart *c, unsigned long top,
		       unsigned long step)
{
	double pw = CHART_W - CHART_LEFT - CHART_RIGHT;
	double ph = CHART_H - CHART_TOP - CHART_BOTTOM, x, y;
	size_t i, every = (c->n + CHART_LABELS_MAX - 1) / CHART_LABELS_MAX;
	unsigned long v;
	char label[64];

	for (v = 0; v <= top; v += step) {
		y = CHART_TOP + ph - (double)v * ph / (double)top;
		fprintf(f,
			"<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" "
			"stroke=\"#ddd\"/><text x=\"%d\" y=\"%.1f\" "
			"text-anchor=\"end\">%lu</text>\n",
			CHART_LEFT, y, CHART_W - CHART_RIGHT, y, CHART_LEFT - 6,
			y + 4, v);
	}
	for (i = 0; i < c->n; i += every) {
		x = CHART_LEFT + (double)i * pw / (double)c->n;
		bucket_label(c, i, false, label, sizeof(label));
		fprintf(f,
			"<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
			"stroke=\"#333\"/><text x=\"%.1f\" y=\"%.1f\" "
			"text-anchor=\"middle\">%s</text>\n",
			x, CHART_TOP + ph, x, CHART_TOP + ph + 5, x,
			CHART_TOP + ph + 18, label);
	}
	fprintf(f,
		"<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%.1f\" "
		"stroke=\"#333\"/><line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" "
		"y2=\"%.1f\" stroke=\"#333\"/>\n",
		CHART_LEFT, CHART_TOP, CHART_LEFT, CHART_TOP + ph, CHART_LEFT,
		CHART_TOP + ph, CHART_W - CHART_RIGHT, CHART_TOP + ph);
	fprintf(f,
		"<text transform=\"translate(18,%.1f) rotate(-90)\" "
		"text-anchor=\"middle\">requests per %s</text>\n"
		"<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">time (UTC), "
		"one bar per %s</text>\n",
		CHART_TOP + ph / 2, c->name, CHART_LEFT + pw / 2, CHART_H - 14,
		c->name);
}

static void chart_bars(FILE *f, const struct chart *c, unsigned long top)
{
	static const char *const color[3] = { "#2e7d32", "#ef6c00", "#c62828" };
	double pw = CHART_W - CHART_LEFT - CHART_RIGHT;
	double ph = CHART_H - CHART_TOP - CHART_BOTTOM;
	double w = pw / (double)c->n, gap = w > 4 ? 1 : 0, x, y, h;
	char label[64];
	size_t i, k;

	for (i = 0; i < c->n; i++) {
		if (c->count[i][0] + c->count[i][1] + c->count[i][2] == 0)
			continue;
		x = CHART_LEFT + (double)i * w;
		y = CHART_TOP + ph;
		bucket_label(c, i, true, label, sizeof(label));
		fprintf(f,
			"<g><title>%s: %lu ok, %lu denied, %lu errors"
			"</title>",
			label, c->count[i][0], c->count[i][1], c->count[i][2]);
		for (k = 0; k < 3; k++) {
			h = (double)c->count[i][k] * ph / (double)top;
			if (c->count[i][k] == 0)
				continue;
			y -= h;
			fprintf(f,
				"<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" "
				"height=\"%.2f\" fill=\"%s\"/>",
				x + gap / 2, y, w - gap, h, color[k]);
		}
		fprintf(f, "</g>\n");
	}
}

/* The requests of the range over time, stacked ok / denied / error. */
static int chart_svg(FILE *f, const struct report *rp)
{
	struct chart c;
	unsigned long step, top;

	if (chart_build(rp, &c) != 0)
		return -1;
	fprintf(f,
		"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" "
		"height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\" "
		"aria-label=\"requests over time\" font-size=\"12\" "
		"font-family=\"sans-serif\">\n",
		CHART_W, CHART_H, CHART_W, CHART_H);
	if (c.n == 0) {
		fprintf(f,
			"<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">no "
			"requests in the range</text>\n</svg>\n",
			CHART_W / 2, CHART_H / 2);
		return 0;
	}
	step = nice_step(c.max);
	top = (c.max + step - 1) / step * step;
	if (top == 0)
		top = step;
	chart_legend(f);
	chart_axes(f, &c, top, step);
	chart_bars(f, &c, top);
	fprintf(f, "</svg>\n");
	free(c.count);
	return 0;
}

/* ---- output ---- */

enum { T_SUMMARY, T_USAGE, T_DENIALS, T_VERSIONS, T_PERMS, N_TABLES };

static const char html_style[] =
	"body{font-family:sans-serif;margin:2em;color:#222}"
	"table{border-collapse:collapse;margin:0.5em 0 1.5em}"
	"th,td{border:1px solid #ccc;padding:2px 6px;text-align:left;"
	"vertical-align:top;font-size:13px}"
	"th{background:#eee}td.n{text-align:right}"
	"td{font-family:monospace;word-break:break-all}"
	"p.none{color:#666}\n";

static int write_html(const struct report *rp, struct table *t, char *err,
		      size_t errlen)
{
	char *buf = NULL;
	size_t len = 0, i;
	FILE *m;
	int r;

	if ((m = open_memstream(&buf, &len)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	fprintf(m,
		"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n"
		"<meta charset=\"utf-8\">\n"
		"<meta http-equiv=\"Content-Security-Policy\" "
		"content=\"default-src 'none'; style-src 'unsafe-inline'\">\n"
		"<title>keybroker audit report</title>\n<style>%s</style>\n"
		"</head>\n<body>\n<h1>keybroker audit report</h1>\n",
		html_style);
	table_html(m, &t[T_SUMMARY]);
	fprintf(m, "<section id=\"chart\">\n<h2>Requests over time</h2>\n");
	r = chart_svg(m, rp);
	fprintf(m, "</section>\n");
	for (i = T_USAGE; i < N_TABLES; i++)
		table_html(m, &t[i]);
	fprintf(m, "</body>\n</html>\n");
	if (ferror(m))
		r = -1;
	if (fclose(m) != 0 || r != 0) {
		free(buf);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	r = kb_output_save(rp->html, rp->force, buf, len, err, errlen);
	free(buf);
	return r;
}

static int write_text(struct table *t, char *err, size_t errlen)
{
	size_t i;

	printf("keybroker audit report\n");
	for (i = 0; i < N_TABLES; i++)
		table_text(stdout, &t[i]);
	errno = 0;
	if (fflush(stdout) != 0 || ferror(stdout)) {
		snprintf(err, errlen, "standard output: %s",
			 errno ? strerror(errno) : "write error");
		return -1;
	}
	return 0;
}

static int build_tables(struct report *rp, struct table *t, char *err,
			size_t errlen)
{
	if (summary_table(rp, &t[T_SUMMARY]) != 0 ||
	    usage_table(rp, &t[T_USAGE]) != 0 ||
	    denial_table(rp, &t[T_DENIALS]) != 0 ||
	    version_table(rp, &t[T_VERSIONS]) != 0 ||
	    perm_table(rp, &t[T_PERMS]) != 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

/* Reads the trail, then writes the report. */
static int run(struct report *rp, char *err, size_t errlen)
{
	struct table t[N_TABLES];
	size_t i;
	int r;

	memset(t, 0, sizeof(t));
	if (audit_read_files(rp->files, on_record, rp, err, errlen) != 0)
		return -1;
	r = build_tables(rp, t, err, errlen);
	if (r == 0 && rp->html != NULL)
		r = write_html(rp, t, err, errlen);
	else if (r == 0)
		r = write_text(t, err, errlen);
	for (i = 0; i < N_TABLES; i++)
		table_free(&t[i]);
	return r;
}

/* ---- command line ---- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: keybroker-audit report [--since T] [--until T] "
		"[--unused-since T]\n"
		"                              [--html FILE [--force]] "
		"FILE|DIR...\n"
		"\n"
		"Reports what an audit trail says; a DIR stands for its "
		"audit-*.jsonl\n"
		"files in order, then its audit.jsonl. Sections:\n"
		"  summary         files, records, requests, events\n"
		"  usage           per identity, key version and op: ok, "
		"denied\n"
		"                  (Unauthorized, Forbidden), errors (other "
		"codes),\n"
		"                  first and last request\n"
		"  denials         every refused request (any result but ok)\n"
		"  unused versions key versions with no ok wrapKey, "
		"unwrapKey,\n"
		"                  rewrapKey or getKey since the cut-off: "
		"safe to\n"
		"                  retire once their key has a newer one\n"
		"  unused permissions\n"
		"                  per grant in force (the last ok start or "
		"reload\n"
		"                  record), the permissions its identity "
		"never\n"
		"                  exercised on its keys since the cut-off\n"
		"\n"
		"options:\n"
		"  --since T         only records at or after T (usage, "
		"denials, chart)\n"
		"  --until T         only records before T (all sections)\n"
		"                    T: RFC 3339 (2026-11-30T05:18:38Z, with "
		"an optional\n"
		"                    fraction and offset) or a date "
		"(2026-11-30:\n"
		"                    midnight UTC)\n"
		"  --unused-since T  the cut-off of the unused sections "
		"(default: --since,\n"
		"                    else the whole trail)\n"
		"  --html FILE       write one self-contained HTML page "
		"(tables and a\n"
		"                    chart of requests over time) to FILE "
		"instead of\n"
		"                    text to standard output; FILE is made "
		"0600, never\n"
		"                    through a symlink, never over an "
		"existing file\n"
		"  --force           let --html replace an existing FILE "
		"(atomically)\n"
		"  -h, --help        this text\n"
		"\n"
		"Strings from the trail are shown with control characters "
		"escaped\n"
		"(text) or HTML-escaped (page).\n"
		"\n"
		"exit status: 0 done, 2 a file cannot be read or written, "
		"holds a line\n"
		"that is not a record (FILE:LINE says which), or bad usage\n");
}

enum { O_SINCE = 256, O_UNTIL, O_UNUSED, O_HTML, O_FORCE };

/* 0, or -1 having said what is wrong. */
static int time_opt(const char *name, const char *s, bool *has, int64_t *t)
{
	if (*has) {
		audit_usage_error("report", "--%s given twice", name);
		return -1;
	}
	if (audit_time_parse(s, t) != 0) {
		audit_usage_error(
			"report",
			"--%s '%.64s': not an RFC 3339 time "
			"(2026-11-30T05:18:38Z) or a date (2026-11-30)",
			name, s);
		return -1;
	}
	*has = true;
	return 0;
}

/* 0, 1 for --help (done), or -1 having said what is wrong. */
static int parse_args(int argc, char **argv, struct report *rp)
{
	static const struct option opts[] = {
		{ "since", required_argument, NULL, O_SINCE },
		{ "until", required_argument, NULL, O_UNTIL },
		{ "unused-since", required_argument, NULL, O_UNUSED },
		{ "html", required_argument, NULL, O_HTML },
		{ "force", no_argument, NULL, O_FORCE },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c, r = 0;

	optind = 0;
	opterr = 0;
	while (r == 0 && (c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			usage(stdout);
			return 1;
		case O_SINCE:
			r = time_opt("since", optarg, &rp->has_since,
				     &rp->since);
			break;
		case O_UNTIL:
			r = time_opt("until", optarg, &rp->has_until,
				     &rp->until);
			break;
		case O_UNUSED:
			r = time_opt("unused-since", optarg,
				     &rp->has_unused_since, &rp->unused_since);
			break;
		case O_HTML:
			if (rp->html != NULL) {
				audit_usage_error("report",
						  "--html given twice");
				return -1;
			}
			rp->html = optarg;
			break;
		case O_FORCE:
			rp->force = true;
			break;
		default:
			audit_usage_error(
				"report",
				"'%.64s': unknown option, or it needs an "
				"argument",
				argv[optind - 1]);
			return -1;
		}
	}
	if (r != 0)
		return r;
	if (rp->force && rp->html == NULL) {
		audit_usage_error("report", "--force goes with --html FILE");
		return -1;
	}
	if (rp->has_since && rp->has_until && rp->until <= rp->since) {
		audit_usage_error(
			"report",
			"--until is not after --since: an empty range");
		return -1;
	}
	if (optind >= argc) {
		audit_usage_error("report", "no FILE or DIR to read");
		return -1;
	}
	return 0;
}

int audit_report_main(int argc, char **argv)
{
	struct audit_files files;
	struct report rp;
	char err[AUDIT_ERR_MAX];
	int r;

	memset(&rp, 0, sizeof(rp));
	if ((r = parse_args(argc, argv, &rp)) != 0)
		return r > 0 ? AUDIT_EXIT_OK : AUDIT_EXIT_UNREADABLE;
	if (audit_files_expand(argv + optind, (size_t)(argc - optind), &files,
			       err, sizeof(err)) != 0) {
		audit_say("report", err);
		return AUDIT_EXIT_UNREADABLE;
	}
	rp.files = &files;
	r = run(&rp, err, sizeof(err));
	if (r == 0 && rp.html != NULL && strcmp(rp.html, "-") != 0) {
		snprintf(err, sizeof(err), "wrote %s", rp.html);
		audit_say("report", err);
	} else if (r != 0) {
		audit_say("report", err);
	}
	report_free(&rp);
	audit_files_free(&files);
	return r == 0 ? AUDIT_EXIT_OK : AUDIT_EXIT_UNREADABLE;
}
