// SPDX-License-Identifier: MIT
#include <dirent.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "kb_audit.h"
#include "kb_buf.h"
#include "kb_auditkey.h"
#include "kb_b64.h"
#include "kb_error.h"
#include "kb_forward.h"
#include "kb_json.h"
#include "kb_keystore.h"
#include "kb_log.h"
#include "kb_secret.h"

#define CURRENT "audit.jsonl"
#define LOCKFILE "audit.lock"
#define ZERO_HASH \
	"0000000000000000000000000000000000000000000000000000000000000000"
#define RECOVER_MS 1000 /* how often an unavailable trail is retried */
#define FREE_CHECK_MS 10000
#define FREE_WARN_MS (10 * 60 * 1000)
#define ROTATE_RETRY_MS (60 * 1000)
/* How long an append waits for another process's hold of the lock file. */
#define LOCK_WAIT_MS 1000
/* How long closing waits for the thread (it may be in the token). */
#define CLOSE_WAIT_S 10
/* What the token's HMAC secret signs to give valueHmac's key. */
#define VALUE_KEY_LABEL "keybroker audit valueHmac key v1"

struct kb_audit {
	pthread_mutex_t lock;
	pthread_cond_t wake; /* the thread: something is due, or stop */
	pthread_cond_t synced; /* a sync finished */
	struct kb_audit_cfg cfg; /* its strings are the caller's until open */
	char *dir_path;
	char origin[256], keyid[KB_TRAIL_KEYID_LEN + 1];
	char *origin_json, *instance_json; /* quoted, escaped */

	int dirfd, lockfd, fd; /* fd: audit.jsonl, O_APPEND */
	dev_t dev;
	ino_t ino;
	off_t size; /* where this process believes the file ends */
	off_t reserved; /* space is allocated up to here */
	bool no_fallocate; /* the file system cannot reserve */
	uint64_t next_seq; /* seq of the next record */
	char head[KB_TRAIL_HEX_LEN + 1]; /* hash of the last record */
	uint64_t file_first_seq;
	time_t file_started;
	size_t torn; /* bytes of a torn last line cut at open, not yet said */

	bool available;
	char reason[160];
	uint64_t unrec_served, unrec_refused;
	char unrec_since[KB_TRAIL_TIME_LEN];

	bool strict; /* each append syncs before it returns */
	bool syncing; /* a thread is in fdatasync, without the lock */
	uint64_t synced_seq; /* records [0, synced_seq) are on disk */
	int64_t last_sync_ms;

	uint64_t since_checkpoint; /* records appended since the last one */
	int64_t last_checkpoint_ms;
	uint64_t checkpoint_size;
	char checkpoint_time[KB_TRAIL_TIME_LEN];
	bool sign_failed; /* said once until a checkpoint succeeds */

	int64_t free_checked_ms, free_warned_ms;
	int64_t rotate_after_ms; /* a failed rotation is tried after then */
	struct kb_forward fwd; /* its own locking */

	/* valueHmac's key, derived in the token (32 bytes, locked), or NULL. */
	_Atomic(unsigned char *) value_key;
	EVP_MAC *hmac; /* HMAC, fetched once */
	struct kb_keystore *ks;
	struct kb_keyworker *w;
	pthread_t thread;
	bool running, stop;
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- reading the chain's end ---- */

/* The seq of a record line; -1 if it is not a record. */
static int64_t line_seq(const char *line, size_t len)
{
	json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, NULL);
	json_t *seq = json_object_get(o, "seq");
	int64_t v = json_is_integer(seq) ? json_integer_value(seq) : -1;

	json_decref(o);
	return v;
}

/* The time of a record line as Unix seconds; 0 if it has none. */
static time_t line_time(const char *line, size_t len)
{
	json_t *o = json_loadb(line, len, 0, NULL);
	const char *t = json_string_value(json_object_get(o, "time"));
	struct tm tm = { 0 };
	time_t v = 0;

	if (t != NULL && strptime(t, "%Y-%m-%dT%H:%M:%S", &tm) != NULL)
		v = timegm(&tm);
	json_decref(o);
	return v;
}

/*
 * Reads the first line of fd (of size bytes) into the file's own fields:
 * its first seq and when it was started.
 */
static void read_first(struct kb_audit *a, int fd, off_t size)
{
	char buf[8192];
	ssize_t n = pread(fd, buf, sizeof(buf), 0);
	char *nl = n > 0 ? memchr(buf, '\n', (size_t)n) : NULL;
	int64_t seq;

	a->file_started = time(NULL);
	a->file_first_seq = a->next_seq;
	if (size == 0 || nl == NULL)
		return;
	if ((seq = line_seq(buf, (size_t)(nl - buf))) >= 0)
		a->file_first_seq = (uint64_t)seq;
	if (line_time(buf, (size_t)(nl - buf)) != 0)
		a->file_started = line_time(buf, (size_t)(nl - buf));
}

/* The most adopt_end reads from the end: a torn line and a whole one. */
#define TAIL_MAX (2 * (KB_TRAIL_LINE_MAX + 1))

/* What adopt_end and open_current return when the file ends in no record. */
#define NOT_A_CHAIN (-2)

/*
 * Takes the chain's end from the file fd (name, size bytes): the seq and
 * hash of its last record. A torn last line (no newline) is cut off when
 * cut is set, else left for its writer. -1 with err if the file cannot be
 * read or cut, NOT_A_CHAIN if its last line is not a record.
 */
static int adopt_end(struct kb_audit *a, int fd, const char *name, off_t size,
		     bool cut, char *err, size_t errlen)
{
	/* The last whole line (and its newline) after a torn one. */
	size_t want = size < (off_t)TAIL_MAX ? (size_t)size : TAIL_MAX;
	off_t from = size - (off_t)want;
	size_t end;
	char *buf = malloc(want + 1), *p;
	ssize_t n;
	int64_t seq;
	int r = -1;

	if (buf == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if ((n = pread(fd, buf, want, from)) != (ssize_t)want) {
		snprintf(err, errlen, "%s/%s: cannot read: %s", a->dir_path,
			 name, n < 0 ? strerror(errno) : "short read");
		goto out;
	}
	/* From here, a failure is about what the file holds. */
	r = NOT_A_CHAIN;
	/* Where the last whole line ends (after its newline). */
	for (end = want; end > 0 && buf[end - 1] != '\n'; end--)
		;
	if (end < want && cut && (end > 0 || from == 0)) {
		if (ftruncate(fd, from + (off_t)end) != 0) {
			snprintf(err, errlen,
				 "%s/%s: cannot cut a torn line: %s",
				 a->dir_path, name, strerror(errno));
			r = -1;
			goto out;
		}
		a->torn = want - end;
		kb_warn("audit: %s/%s ended in a torn record of %zu bytes "
			"(a crash while writing it); cut off",
			a->dir_path, name, a->torn);
	}
	if (end == 0) {
		if (from != 0) {
			snprintf(
				err, errlen,
				"%s/%s: its last line is longer than %u bytes: "
				"not a record",
				a->dir_path, name, KB_TRAIL_LINE_MAX);
			goto out;
		}
		r = 0; /* nothing but a torn line: the chain goes on before */
		goto out;
	}
	buf[end - 1] = '\0';
	p = memrchr(buf, '\n', end - 1);
	p = p != NULL ? p + 1 : buf;
	if (p == buf && from != 0) {
		snprintf(err, errlen,
			 "%s/%s: its last line is longer than %u bytes: not a "
			 "record",
			 a->dir_path, name, KB_TRAIL_LINE_MAX);
		goto out;
	}
	if ((seq = line_seq(p, strlen(p))) < 0) {
		snprintf(err, errlen,
			 "%s/%s: its last line is not an audit record; move "
			 "the file aside to start a new chain",
			 a->dir_path, name);
		goto out;
	}
	a->next_seq = (uint64_t)seq + 1;
	kb_trail_hash_hex(p, strlen(p), a->head);
	r = 0;
out:
	free(buf);
	return r;
}

/*
 * The rotated file with the highest first seq (their names begin with it,
 * zero-padded) into name (NAME_MAX + 1): 1, 0 if there is none, -1 if the
 * directory cannot be listed.
 */
static int newest_rotated(struct kb_audit *a, char *name)
{
	/* Its own open directory: a dup would share (and move) the offset. */
	int fd = openat(a->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *e;
	size_t n;

	name[0] = '\0';
	if (d == NULL) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	while ((e = readdir(d)) != NULL) {
		n = strlen(e->d_name);
		if (strncmp(e->d_name, "audit-", 6) == 0 && n > 12 &&
		    strcmp(e->d_name + n - 6, ".jsonl") == 0 &&
		    strcmp(e->d_name, name) > 0)
			snprintf(name, NAME_MAX + 1, "%s", e->d_name);
	}
	closedir(d);
	return name[0] != '\0';
}

/*
 * Continues the chain from the newest rotated file, for a new or empty
 * audit.jsonl.
 */
static int adopt_rotated(struct kb_audit *a, char *err, size_t errlen)
{
	char name[NAME_MAX + 1];
	struct stat st;
	int fd, r;

	if ((r = newest_rotated(a, name)) == 0)
		return 0;
	if (r < 0) {
		snprintf(err, errlen, "%s: cannot list it: %s", a->dir_path,
			 strerror(errno));
		return -1;
	}
	if ((fd = openat(a->dirfd, name, O_RDONLY | O_CLOEXEC)) < 0 ||
	    fstat(fd, &st) != 0) {
		snprintf(err, errlen, "%s/%s: %s", a->dir_path, name,
			 strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	r = adopt_end(a, fd, name, st.st_size, false, err, errlen);
	close(fd);
	return r;
}

/*
 * The trail's files belong to the directory's owner: root (keybrokerctl
 * run by an admin) must not leave a file that the broker's own user
 * cannot append to. Only a file root made here is given away: a regular
 * file with one link, root's, in a directory that is not root's; never
 * what that directory's owner may have put in its place.
 */
static int own_like_dir(const struct kb_audit *a, int fd, const char *name,
			char *err, size_t errlen)
{
	struct stat dir, st;

	if (geteuid() != 0 || fstat(a->dirfd, &dir) != 0 ||
	    fstat(fd, &st) != 0 || dir.st_uid == 0 || st.st_uid != 0 ||
	    !S_ISREG(st.st_mode) || st.st_nlink != 1)
		return 0;
	if (fchown(fd, dir.st_uid, dir.st_gid) != 0) {
		snprintf(err, errlen, "%s/%s: cannot give it to uid %u: %s",
			 a->dir_path, name, (unsigned int)dir.st_uid,
			 strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * Opens audit.jsonl (creating it) and takes the chain's end from it, or
 * from the rotated file before it. Needs the file lock.
 */
static int open_current(struct kb_audit *a, char *err, size_t errlen)
{
	struct stat st;
	int fd, r;

	fd = openat(a->dirfd, CURRENT,
		    O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 || fstat(fd, &st) != 0) {
		snprintf(err, errlen, "%s/%s: %s", a->dir_path, CURRENT,
			 strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (own_like_dir(a, fd, CURRENT, err, errlen) != 0) {
		close(fd);
		return -1;
	}
	if (a->fd >= 0)
		close(a->fd);
	a->fd = fd;
	a->dev = st.st_dev;
	a->ino = st.st_ino;
	a->reserved = 0;
	a->next_seq = 0;
	memcpy(a->head, ZERO_HASH, sizeof(a->head));
	if (st.st_size > 0 &&
	    (r = adopt_end(a, fd, CURRENT, st.st_size, true, err, errlen)) != 0)
		return r;
	if (fstat(fd, &st) != 0) {
		snprintf(err, errlen, "%s/%s: %s", a->dir_path, CURRENT,
			 strerror(errno));
		return -1;
	}
	/* Empty (or only a torn line): the chain is in the file before. */
	if (st.st_size == 0 && (r = adopt_rotated(a, err, errlen)) != 0)
		return r;
	a->size = st.st_size;
	read_first(a, fd, st.st_size);
	return 0;
}

/*
 * Makes this process's idea of the chain's end the file's: another
 * process may have appended, or rotated the file. Needs the file lock.
 */
static int catch_up(struct kb_audit *a, char *err, size_t errlen)
{
	struct stat st, cur;

	/* Only the broker rotates: a tool looks for its rotations. */
	if (a->fd < 0 ||
	    (a->ks == NULL &&
	     (fstatat(a->dirfd, CURRENT, &cur, AT_SYMLINK_NOFOLLOW) != 0 ||
	      cur.st_dev != a->dev || cur.st_ino != a->ino)))
		return open_current(a, err, errlen);
	if (fstat(a->fd, &st) != 0) {
		snprintf(err, errlen, "%s/%s: %s", a->dir_path, CURRENT,
			 strerror(errno));
		return -1;
	}
	if (st.st_size == a->size)
		return 0;
	if (adopt_end(a, a->fd, CURRENT, st.st_size, true, err, errlen) != 0 ||
	    fstat(a->fd, &st) != 0)
		return -1;
	a->size = st.st_size;
	return 0;
}

/* ---- writing ---- */

/*
 * Takes the lock file, waiting at most LOCK_WAIT_MS for another process
 * (keybrokerctl) that holds it: one stopped while holding it must not
 * stop every request. 0, or -1 with errno (EWOULDBLOCK: it waited).
 */
static int lock_file(struct kb_audit *a)
{
	const struct timespec pause = { 0, 1000000 };
	int64_t deadline = now_ms() + LOCK_WAIT_MS;

	while (flock(a->lockfd, LOCK_EX | LOCK_NB) != 0) {
		if ((errno != EWOULDBLOCK && errno != EINTR) ||
		    now_ms() >= deadline)
			return -1;
		nanosleep(&pause, NULL);
	}
	return 0;
}

static void set_unavailable(struct kb_audit *a, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void set_unavailable(struct kb_audit *a, const char *fmt, ...)
{
	va_list ap;

	if (!a->available)
		return;
	va_start(ap, fmt);
	vsnprintf(a->reason, sizeof(a->reason), fmt, ap);
	va_end(ap);
	a->available = false;
	kb_trail_time(a->unrec_since);
	if (a->ks == NULL)
		kb_err("audit: the trail cannot be written: %s", a->reason);
	else
		kb_err("audit: the trail cannot be written (%s): unwrapKey, "
		       "getToken and management are refused (AuditUnavailable) "
		       "until it can; retrying every second",
		       a->reason);
}

/*
 * Keeps audit.reserve bytes allocated past the records, renewed when half
 * is used, so that the records of requests already served still fit when
 * the disk fills. -1 (errno) if it cannot be renewed.
 */
static int reserve_space(struct kb_audit *a)
{
	if (a->no_fallocate || a->reserved - a->size >= a->cfg.reserve / 2)
		return 0;
	if (fallocate(a->fd, FALLOC_FL_KEEP_SIZE, a->size, a->cfg.reserve) ==
	    0) {
		a->reserved = a->size + a->cfg.reserve;
		return 0;
	}
	if (errno == EOPNOTSUPP || errno == ENOSYS) {
		kb_warn("audit: %s cannot reserve space (%s); a full disk is "
			"noticed only when a write fails",
			a->dir_path, strerror(errno));
		a->no_fallocate = true;
		return 0;
	}
	return -1;
}

/*
 * Formats the records of b[0..n) as the chain's next lines into out:
 * seq, time, origin and instance, the body's members, prev. A record too
 * long for any reader is left out (said in the log; its written stays
 * false). Needs a->lock and the file lock.
 */
static int format_records(struct kb_audit *a, struct kb_audit_staged *r,
			  size_t n, struct kb_buf *out, uint64_t *seq,
			  char head[KB_TRAIL_HEX_LEN + 1])
{
	char t[KB_TRAIL_TIME_LEN];
	size_t i, cap, fixed;
	int len;

	kb_trail_time(t);
	fixed = 2 * sizeof(a->origin) + 256 + strlen(a->instance_json) +
		strlen(a->origin_json);
	for (i = 0; i < n; i++) {
		cap = r[i].tlen + fixed;
		if (kb_buf_reserve(out, cap, 4096, SIZE_MAX) != 0)
			return -1;
		len = snprintf(out->p + out->len, cap,
			       "{\"seq\":%llu,\"time\":\"%s\",\"origin\":%s,"
			       "\"instance\":%s,%.*s,\"prev\":\"%s\"}\n",
			       (unsigned long long)*seq, t, a->origin_json,
			       a->instance_json, (int)(r[i].tlen - 2),
			       r[i].text + 1, head);
		if (len <= 0 || (size_t)len >= cap)
			return -1;
		/* No reader takes a longer line: it is not written. */
		if ((size_t)len - 1 > KB_TRAIL_LINE_MAX) {
			kb_err("audit: a record of %d bytes (%.40s...) is "
			       "longer than a record may be (%u); not written",
			       len - 1, r[i].text, KB_TRAIL_LINE_MAX);
			explicit_bzero(out->p + out->len, (size_t)len);
			continue;
		}
		r[i].seq = (*seq)++;
		r[i].off = out->len;
		r[i].llen = (size_t)len - 1;
		r[i].written = true;
		kb_trail_hash_hex(out->p + out->len, (size_t)len - 1, head);
		out->len += (size_t)len;
	}
	return 0;
}

/*
 * Writes the records of r[0..n) as the chain's next lines, with one
 * write under the file lock; their lines stay in out, for forwarding.
 * Each one's written says whether it is in the trail; on a failed write
 * none is, and the trail is now unavailable. Needs a->lock.
 */
static void write_records(struct kb_audit *a, struct kb_audit_staged *r,
			  size_t n, struct kb_buf *out)
{
	char err[256], head[KB_TRAIL_HEX_LEN + 1];
	uint64_t seq;
	size_t i, done = 0;
	ssize_t w;

	if (lock_file(a) != 0) {
		set_unavailable(a, "%s/%s: %s", a->dir_path, LOCKFILE,
				errno == EWOULDBLOCK ?
					"another process holds it for more "
					"than a second" :
					strerror(errno));
		return;
	}
	if (catch_up(a, err, sizeof(err)) != 0) {
		set_unavailable(a, "%s", err);
		goto out;
	}
	seq = a->next_seq;
	memcpy(head, a->head, sizeof(head));
	if (format_records(a, r, n, out, &seq, head) != 0) {
		kb_err("audit: out of memory; %zu records not written", n);
		goto none;
	}
	if (out->len == 0)
		goto out;
	if (reserve_space(a) != 0)
		set_unavailable(a, "%s/%s: cannot reserve %lld MiB: %s",
				a->dir_path, CURRENT,
				(long long)(a->cfg.reserve >> 20),
				strerror(errno));
	while (done < out->len) {
		if ((w = write(a->fd, out->p + done, out->len - done)) < 0) {
			int e = errno;

			if (e == EINTR)
				continue;
			/* Nothing half-written stays: the chain ends whole. */
			if (ftruncate(a->fd, a->size) != 0)
				kb_err("audit: cannot cut a failed write from "
				       "%s/%s: %s",
				       a->dir_path, CURRENT, strerror(errno));
			a->available = true; /* so that the reason is this */
			set_unavailable(a, "%s/%s: write: %s", a->dir_path,
					CURRENT, strerror(e));
			goto none;
		}
		done += (size_t)w;
	}
	a->size += (off_t)out->len;
	a->since_checkpoint += seq - a->next_seq;
	a->next_seq = seq;
	memcpy(a->head, head, sizeof(head));
	goto out;
none:
	for (i = 0; i < n; i++)
		r[i].written = false;
out:
	flock(a->lockfd, LOCK_UN);
}

/*
 * Waits until the records before seq are on disk: one fdatasync for every
 * thread waiting then (group commit). Needs a->lock. -1 if it failed.
 */
static int sync_to(struct kb_audit *a, uint64_t seq)
{
	uint64_t target;
	int fd, r;

	while (a->synced_seq < seq) {
		if (a->syncing) {
			pthread_cond_wait(&a->synced, &a->lock);
			continue;
		}
		if (a->fd < 0)
			return -1;
		a->syncing = true;
		target = a->next_seq;
		fd = a->fd;
		pthread_mutex_unlock(&a->lock);
		r = fdatasync(fd);
		pthread_mutex_lock(&a->lock);
		a->syncing = false;
		a->last_sync_ms = now_ms();
		pthread_cond_broadcast(&a->synced);
		if (r != 0) {
			set_unavailable(a, "%s/%s: fdatasync: %s", a->dir_path,
					CURRENT, strerror(errno));
			return -1;
		}
		if (target > a->synced_seq)
			a->synced_seq = target;
	}
	return 0;
}

/*
 * Writes the records of r[0..n) and forwards those written. Needs
 * a->lock; drops it while forwarding. Returns how many were not written.
 */
static size_t write_locked(struct kb_audit *a, struct kb_audit_staged *r,
			   size_t n)
{
	struct kb_buf lines = { 0 };
	size_t i, failed = 0;

	for (i = 0; i < n; i++)
		r[i].written = false;
	write_records(a, r, n, &lines);
	if (lines.len > 0 && a->strict && sync_to(a, a->next_seq) != 0)
		for (i = 0; i < n; i++)
			r[i].written = false;
	for (i = 0; i < n; i++)
		failed += !r[i].written;
	if (failed < n && a->running &&
	    a->since_checkpoint >= (uint64_t)a->cfg.checkpoint_records)
		pthread_cond_signal(&a->wake);
	if (failed < n) {
		pthread_mutex_unlock(&a->lock);
		for (i = 0; i < n; i++)
			if (r[i].written)
				kb_forward_record(&a->fwd, r[i].body,
						  lines.p + r[i].off, r[i].llen,
						  r[i].seq);
		pthread_mutex_lock(&a->lock);
	}
	kb_buf_free(&lines);
	return failed;
}

/* Text for a body, as a record wants it (an object, "event" first). */
static int body_text(struct kb_audit_staged *r)
{
	r->text = kb_json_text(r->body, JSON_COMPACT | JSON_ENSURE_ASCII,
			       &r->tlen);
	if (r->text != NULL && strncmp(r->text, "{\"event\":", 9) == 0)
		return 0;
	free(r->text);
	r->text = NULL;
	return -1;
}

/* Writes one record (the trail's own: checkpoints, resumptions). */
static int append_locked(struct kb_audit *a, json_t *body)
{
	struct kb_audit_staged r = { .body = body };
	size_t failed;

	if (body_text(&r) != 0)
		return -1;
	failed = write_locked(a, &r, 1);
	free(r.text);
	return failed == 0 ? 0 : -1;
}

/* The record saying the trail is back, and what it missed. */
static int append_resumed(struct kb_audit *a)
{
	uint64_t served = a->unrec_served, refused = a->unrec_refused;
	char since[KB_TRAIL_TIME_LEN], reason[sizeof(a->reason)];
	json_t *b;
	int r;

	memcpy(since, a->unrec_since, sizeof(since));
	memcpy(reason, a->reason, sizeof(reason));
	b = json_pack("{s:s, s:{s:I, s:I}, s:s, s:s}", "event", "resumed",
		      "unrecorded", "served", (json_int_t)served, "refused",
		      (json_int_t)refused, "since", since, "message", reason);
	if (b == NULL)
		return -1;
	a->available = true;
	if ((r = append_locked(a, b)) == 0) {
		kb_info("audit: the trail can be written again; %llu served "
			"and %llu refused requests went unrecorded since %s",
			(unsigned long long)served, (unsigned long long)refused,
			since);
		/* Those counted while the lock was down are the next ones'. */
		a->unrec_served -= served;
		a->unrec_refused -= refused;
		if (a->available)
			a->reason[0] = '\0';
	} else {
		/* Still down, as since then. */
		a->available = false;
		memcpy(a->unrec_since, since, sizeof(since));
	}
	json_decref(b);
	return r;
}

/* A record that could not be written, counted. Needs a->lock. */
static void count_unrecorded(struct kb_audit *a, bool served)
{
	if (served)
		a->unrec_served++;
	else
		a->unrec_refused++;
}

int kb_audit_stage(struct kb_audit_batch *b, json_t *body, bool served)
{
	struct kb_audit_staged *r;
	size_t cap;

	if (b->n == b->cap) {
		cap = b->cap != 0 ? 2 * b->cap : 16;
		if ((r = realloc(b->rec, cap * sizeof(*r))) == NULL)
			return -1;
		b->rec = r;
		b->cap = cap;
	}
	r = &b->rec[b->n];
	*r = (struct kb_audit_staged){ .body = body, .served = served };
	if (body_text(r) != 0)
		return -1;
	json_incref(body);
	b->n++;
	return 0;
}

size_t kb_audit_commit(struct kb_audit *a, struct kb_audit_batch *b)
{
	size_t i, failed = b->n;

	if (a == NULL || b->n == 0)
		return 0;
	pthread_mutex_lock(&a->lock);
	if (a->available && a->torn > 0) {
		/* Said in the first record after the cut. */
		struct kb_audit_staged r = b->rec[0];

		json_object_set_new(r.body, "tornBytes",
				    json_integer((json_int_t)a->torn));
		if (body_text(&r) == 0) {
			free(b->rec[0].text);
			b->rec[0] = r;
			a->torn = 0;
		}
	}
	if (a->available)
		failed = write_locked(a, b->rec, b->n);
	for (i = 0; i < b->n; i++)
		if (!b->rec[i].written)
			count_unrecorded(a, b->rec[i].served);
	pthread_mutex_unlock(&a->lock);
	return failed;
}

bool kb_audit_written(const struct kb_audit_batch *b, size_t i)
{
	return b->rec[i].written;
}

void kb_audit_batch_clear(struct kb_audit_batch *b)
{
	size_t i;

	for (i = 0; i < b->n; i++) {
		json_decref(b->rec[i].body);
		free(b->rec[i].text);
	}
	b->n = 0;
}

void kb_audit_batch_free(struct kb_audit_batch *b)
{
	kb_audit_batch_clear(b);
	free(b->rec);
	b->rec = NULL;
	b->cap = 0;
}

int kb_audit_append(struct kb_audit *a, json_t *body, bool served)
{
	struct kb_audit_staged r;
	struct kb_audit_batch b = { .rec = &r, .cap = 1 };
	size_t failed;

	if (a == NULL)
		return 0;
	if (kb_audit_stage(&b, body, served) != 0) {
		pthread_mutex_lock(&a->lock);
		count_unrecorded(a, served);
		pthread_mutex_unlock(&a->lock);
		return -1;
	}
	failed = kb_audit_commit(a, &b);
	json_decref(r.body);
	free(r.text);
	return failed == 0 ? 0 : -1;
}

bool kb_audit_available(struct kb_audit *a)
{
	bool ok;

	if (a == NULL)
		return true;
	pthread_mutex_lock(&a->lock);
	ok = a->available;
	pthread_mutex_unlock(&a->lock);
	return ok;
}

/* ---- valueHmac ---- */

/*
 * Derives valueHmac's key in the token, once it can (the token may be
 * away at start). Without the lock: only this thread sets it.
 */
static void derive_value_key(struct kb_audit *a)
{
	unsigned char *k;

	if (atomic_load(&a->value_key) != NULL ||
	    (k = kb_secure_alloc(32)) == NULL)
		return;
	if (kb_auditkey_hmac(a->ks, a->w,
			     (const unsigned char *)VALUE_KEY_LABEL,
			     sizeof(VALUE_KEY_LABEL) - 1, k) != 0) {
		kb_secure_free(k, 32);
		return;
	}
	atomic_store(&a->value_key, k);
}

int kb_audit_value_hmac(struct kb_audit *a, const unsigned char *v, size_t len,
			unsigned char mac[32])
{
	static char digest[] = "SHA256";
	const OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest,
						 0),
		OSSL_PARAM_construct_end(),
	};
	unsigned char *k = a != NULL ? atomic_load(&a->value_key) : NULL;
	EVP_MAC_CTX *ctx;
	size_t n = 0;
	int ok;

	/* The MAC fetched once: looking it up per record costs more. */
	if (k == NULL || a->hmac == NULL ||
	    (ctx = EVP_MAC_CTX_new(a->hmac)) == NULL)
		return -1;
	ok = EVP_MAC_init(ctx, k, 32, params) == 1 &&
	     EVP_MAC_update(ctx, v, len) == 1 &&
	     EVP_MAC_final(ctx, mac, &n, 32) == 1 && n == 32;
	EVP_MAC_CTX_free(ctx);
	return ok ? 0 : -1;
}

/* ---- the broker's thread: sync, checkpoints, rotation, recovery ---- */

/*
 * Signs the chain as it is now and appends the checkpoint. Needs
 * a->lock; drops it while the token signs.
 */
static void checkpoint(struct kb_audit *a, const char *reason)
{
	unsigned char sig[KB_TRAIL_SIG_LEN];
	char head[KB_TRAIL_HEX_LEN + 1], text[KB_TRAIL_SIGNED_MAX];
	char sig64[96], keyid[KB_TRAIL_KEYID_LEN + 1];
	uint64_t size = a->next_seq;
	EVP_PKEY *pub;
	size_t len;
	json_t *b;
	int r = KB_ERR_NOT_FOUND;

	/* After a failure, the next try is an interval later. */
	a->last_checkpoint_ms = now_ms();
	if (size == 0)
		return;
	memcpy(head, a->head, sizeof(head));
	if ((len = kb_trail_signed_text(text, a->origin, size, head, reason)) ==
	    0)
		return;
	pthread_mutex_unlock(&a->lock);
	/* The key of the catalogue now: it may have come, or changed. */
	if ((pub = kb_auditkey_public(a->ks, keyid)) != NULL)
		r = kb_auditkey_sign(a->ks, a->w, text, len, sig);
	EVP_PKEY_free(pub);
	pthread_mutex_lock(&a->lock);
	if (r != 0) {
		if (!a->sign_failed)
			kb_warn("audit: the token cannot sign a checkpoint (%s); "
				"retrying every %d s",
				kb_code_name(kb_status_code(r)),
				a->cfg.checkpoint_interval_s);
		a->sign_failed = true;
		return;
	}
	a->sign_failed = false;
	memcpy(a->keyid, keyid, sizeof(keyid));
	kb_b64_encode(sig64, sig, sizeof(sig));
	b = json_pack("{s:s, s:s, s:I, s:s, s:s, s:s}", "event", "checkpoint",
		      "reason", reason, "size", (json_int_t)size, "head", head,
		      "keyid", a->keyid, "sig", sig64);
	if (b != NULL && append_locked(a, b) == 0) {
		/* Records appended while the token signed are not covered. */
		a->since_checkpoint = a->next_seq - size - 1;
		a->checkpoint_size = size;
		kb_trail_time(a->checkpoint_time);
	}
	json_decref(b);
}

/*
 * Renames audit.jsonl aside and starts a new one; the chain goes on from
 * what this process holds. A rotation that fails is tried again a minute
 * later. Needs a->lock.
 */
static void rotate(struct kb_audit *a)
{
	char name[NAME_MAX + 1], stamp[32], err[256] = "";
	char head[KB_TRAIL_HEX_LEN + 1];
	time_t now = time(NULL);
	uint64_t next;
	struct tm tm;

	a->rotate_after_ms = now_ms() + ROTATE_RETRY_MS;
	while (a->syncing)
		pthread_cond_wait(&a->synced, &a->lock);
	if (lock_file(a) != 0)
		return;
	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
	/* The first seq leads, so that names sort as the chain runs. */
	snprintf(name, sizeof(name), "audit-%020llu-%s.jsonl",
		 (unsigned long long)a->file_first_seq, stamp);
	if (catch_up(a, err, sizeof(err)) != 0 || fdatasync(a->fd) != 0 ||
	    renameat(a->dirfd, CURRENT, a->dirfd, name) != 0) {
		kb_err("audit: cannot rotate %s/%s: %s; trying again in a "
		       "minute",
		       a->dir_path, CURRENT, err[0] ? err : strerror(errno));
		goto out;
	}
	a->synced_seq = a->next_seq;
	next = a->next_seq;
	memcpy(head, a->head, sizeof(head));
	/* Nothing more goes into the file now rotated. */
	close(a->fd);
	a->fd = -1;
	if (open_current(a, err, sizeof(err)) != 0 || fsync(a->dirfd) != 0) {
		set_unavailable(a, "after rotating to %s: %s", name,
				err[0] ? err : strerror(errno));
		goto out;
	}
	if (a->size == 0) {
		a->next_seq = next;
		memcpy(a->head, head, sizeof(head));
	}
	kb_info("audit: rotated %s/%s to %s", a->dir_path, CURRENT, name);
	a->file_first_seq = a->next_seq;
	a->file_started = now;
	a->rotate_after_ms = 0;
out:
	flock(a->lockfd, LOCK_UN);
}

static int open_dir(struct kb_audit *a, char *err, size_t errlen);

static void recover(struct kb_audit *a)
{
	char err[256];
	int r;

	/* The directory itself may be what could not be opened. */
	if (a->lockfd < 0) {
		if (a->dirfd >= 0)
			close(a->dirfd);
		a->dirfd = -1;
		if (open_dir(a, err, sizeof(err)) != 0)
			return;
	}
	if (lock_file(a) != 0)
		return;
	r = catch_up(a, err, sizeof(err));
	if (r == 0) {
		a->reserved = 0;
		r = reserve_space(a);
	}
	flock(a->lockfd, LOCK_UN);
	if (r == 0)
		append_resumed(a);
}

static void check_free_space(struct kb_audit *a, int64_t now)
{
	struct statvfs sv;
	int64_t avail;

	a->free_checked_ms = now;
	if (a->fd < 0 || fstatvfs(a->fd, &sv) != 0)
		return;
	avail = (int64_t)sv.f_bavail * (int64_t)sv.f_frsize;
	if (avail >= a->cfg.min_free || now - a->free_warned_ms < FREE_WARN_MS)
		return;
	a->free_warned_ms = now;
	kb_warn("audit: only %lld MiB free for %s (audit.min_free_mb is "
		"%lld); when it runs out, unwrapKey, getToken and management "
		"are refused",
		(long long)(avail >> 20), a->dir_path,
		(long long)(a->cfg.min_free >> 20));
}

static bool rotation_due(const struct kb_audit *a)
{
	return a->next_seq > a->file_first_seq &&
	       now_ms() >= a->rotate_after_ms &&
	       (a->size >= a->cfg.rotate_size ||
		time(NULL) - a->file_started >= a->cfg.rotate_interval_s);
}

static void *audit_thread(void *arg)
{
	struct kb_audit *a = arg;
	int64_t now, next,
		ckpt_ms = (int64_t)a->cfg.checkpoint_interval_s * 1000;
	struct timespec ts;
	bool by_count;

	pthread_mutex_lock(&a->lock);
	while (!a->stop) {
		if (atomic_load(&a->value_key) == NULL) {
			pthread_mutex_unlock(&a->lock);
			derive_value_key(a);
			pthread_mutex_lock(&a->lock);
		}
		now = now_ms();
		if (a->available && a->synced_seq < a->next_seq &&
		    now - a->last_sync_ms >= a->cfg.fsync_interval_ms)
			sync_to(a, a->next_seq);
		if (!a->available && now - a->last_sync_ms >= RECOVER_MS) {
			a->last_sync_ms = now;
			recover(a);
		}
		by_count = a->since_checkpoint >=
				   (uint64_t)a->cfg.checkpoint_records &&
			   !a->sign_failed;
		if (a->available && a->since_checkpoint > 0 &&
		    (by_count || now - a->last_checkpoint_ms >= ckpt_ms))
			checkpoint(a, by_count ? "count" : "interval");
		if (a->available && rotation_due(a)) {
			if (a->since_checkpoint > 0)
				checkpoint(a, "rotation");
			rotate(a);
		}
		if (now - a->free_checked_ms >= FREE_CHECK_MS)
			check_free_space(a, now);
		/* The next thing due: a sync, or a second at most. */
		next = now + RECOVER_MS;
		if (a->available && a->synced_seq < a->next_seq &&
		    a->last_sync_ms + a->cfg.fsync_interval_ms < next)
			next = a->last_sync_ms + a->cfg.fsync_interval_ms;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		next -= now_ms();
		if (next < 1)
			next = 1;
		ts.tv_sec += next / 1000;
		ts.tv_nsec += (next % 1000) * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		if (!a->stop)
			pthread_cond_timedwait(&a->wake, &a->lock, &ts);
	}
	pthread_mutex_unlock(&a->lock);
	return NULL;
}

/* ---- opening and closing ---- */

static char *json_quote(const char *s)
{
	json_t *j = json_string(s);
	char *q = j != NULL ?
			  kb_json_text(j, JSON_ENCODE_ANY | JSON_ENSURE_ASCII,
				       NULL) :
			  NULL;

	json_decref(j);
	return q;
}

/* The directory, made 0700 if missing. */
static int open_dir(struct kb_audit *a, char *err, size_t errlen)
{
	struct stat st;
	int e;

	if (mkdir(a->dir_path, 0700) != 0 && errno != EEXIST) {
		snprintf(err, errlen, "%s: cannot create: %s", a->dir_path,
			 strerror(errno));
		return -1;
	}
	/* Not through a symlink its owner could point anywhere. */
	a->dirfd = open(a->dir_path,
			O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (a->dirfd < 0) {
		/* O_DIRECTORY may say ENOTDIR of a symlink first. */
		e = errno;
		snprintf(err, errlen, "%s: %s", a->dir_path,
			 e == ELOOP || (lstat(a->dir_path, &st) == 0 &&
					S_ISLNK(st.st_mode)) ?
				 "is a symlink" :
				 strerror(e));
		return -1;
	}
	a->lockfd = openat(a->dirfd, LOCKFILE,
			   O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (a->lockfd < 0) {
		snprintf(err, errlen, "%s/%s: %s", a->dir_path, LOCKFILE,
			 strerror(errno));
		return -1;
	}
	return own_like_dir(a, a->lockfd, LOCKFILE, err, errlen);
}

static void audit_free(struct kb_audit *a)
{
	if (a->fd >= 0)
		close(a->fd);
	if (a->lockfd >= 0)
		close(a->lockfd);
	if (a->dirfd >= 0)
		close(a->dirfd);
	if (a->w != NULL)
		kb_keyworker_free(a->w);
	kb_secure_free(atomic_load(&a->value_key), 32);
	EVP_MAC_free(a->hmac);
	free(a->dir_path);
	free(a->origin_json);
	free(a->instance_json);
	pthread_cond_destroy(&a->wake);
	pthread_cond_destroy(&a->synced);
	pthread_mutex_destroy(&a->lock);
	free(a);
}

/* The audit key's id, and a session to sign with. */
static int take_key(struct kb_audit *a, char *err, size_t errlen)
{
	EVP_PKEY *pub = kb_auditkey_public(a->ks, a->keyid);

	if (pub == NULL) {
		a->keyid[0] = '\0';
		kb_err("audit: the token has no usable audit key; the trail "
		       "is chained but its checkpoints are not signed");
	}
	EVP_PKEY_free(pub);
	if (kb_keyworker_new(a->ks, &a->w) != 0) {
		snprintf(err, errlen, "audit: cannot open a token session");
		return -1;
	}
	return 0;
}

struct kb_audit *kb_audit_open(const struct kb_audit_cfg *cfg,
			       const char *instance, struct kb_keystore *ks,
			       char *err, size_t errlen)
{
	struct kb_audit *a = calloc(1, sizeof(*a));
	pthread_condattr_t ca;
	char why[256];
	int r;

	if (a == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&a->lock, NULL);
	/* The thread's deadlines are CLOCK_MONOTONIC times. */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&a->wake, &ca);
	pthread_condattr_destroy(&ca);
	pthread_cond_init(&a->synced, NULL);
	a->dirfd = a->lockfd = a->fd = -1;
	a->cfg = *cfg;
	a->ks = ks;
	a->strict = ks == NULL || cfg->fsync_interval_ms == 0;
	a->available = true;
	snprintf(a->origin, sizeof(a->origin), "%s", cfg->origin);
	a->dir_path = strdup(cfg->directory);
	a->origin_json = json_quote(cfg->origin);
	a->instance_json = json_quote(instance);
	a->cfg.directory = a->cfg.origin = NULL;
	if (a->dir_path == NULL || a->origin_json == NULL ||
	    a->instance_json == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	kb_forward_init(&a->fwd, cfg->forward, a->origin, a->dir_path,
			ks == NULL);
	if (ks != NULL && take_key(a, err, errlen) != 0)
		goto fail;
	if (ks != NULL) {
		a->hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
		derive_value_key(a); /* else the thread tries each second */
	}
	a->last_sync_ms = a->last_checkpoint_ms = now_ms();
	/* A directory that cannot be written: unavailable until it can. */
	if (open_dir(a, why, sizeof(why)) != 0) {
		if (a->dirfd < 0 && ks == NULL) {
			snprintf(err, errlen, "%s", why);
			goto fail;
		}
		set_unavailable(a, "%s", why);
	} else if (lock_file(a) != 0) {
		set_unavailable(a, "%s/%s: lock: %s", a->dir_path, LOCKFILE,
				errno == EWOULDBLOCK ?
					"another process holds it" :
					strerror(errno));
	} else {
		r = open_current(a, why, sizeof(why));
		if (r == 0 && reserve_space(a) != 0)
			set_unavailable(a, "%s/%s: cannot reserve %lld MiB: %s",
					a->dir_path, CURRENT,
					(long long)(cfg->reserve >> 20),
					strerror(errno));
		flock(a->lockfd, LOCK_UN);
		/* A chain that cannot be continued is not guessed. */
		if (r == NOT_A_CHAIN) {
			snprintf(err, errlen, "%s", why);
			goto fail;
		}
		if (r != 0)
			set_unavailable(a, "%s", why);
	}
	a->synced_seq = a->next_seq;
	if (ks != NULL) {
		if (pthread_create(&a->thread, NULL, audit_thread, a) != 0) {
			snprintf(err, errlen, "audit: cannot start its thread");
			goto fail;
		}
		a->running = true;
	}
	return a;
fail:
	audit_free(a);
	return NULL;
}

int kb_audit_close(struct kb_audit *a)
{
	struct timespec deadline;

	if (a == NULL)
		return 0;
	pthread_mutex_lock(&a->lock);
	if (a->running) {
		a->stop = true;
		pthread_cond_signal(&a->wake);
		pthread_mutex_unlock(&a->lock);
		clock_gettime(CLOCK_REALTIME, &deadline);
		deadline.tv_sec += CLOSE_WAIT_S;
		if (pthread_timedjoin_np(a->thread, NULL, &deadline) != 0) {
			kb_err("audit: its thread has been in the token for %d "
			       "s; stopping without the shutdown checkpoint",
			       CLOSE_WAIT_S);
			return -1;
		}
		pthread_mutex_lock(&a->lock);
		a->running = false;
		/* The last record: what seals the trail. */
		if (a->available && a->next_seq > 0)
			checkpoint(a, "shutdown");
	}
	if (a->available)
		sync_to(a, a->next_seq);
	pthread_mutex_unlock(&a->lock);
	kb_forward_close(&a->fwd);
	audit_free(a);
	return 0;
}

void kb_audit_status(struct kb_audit *a, struct kb_audit_status *st)
{
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&a->lock);
	st->available = a->available;
	snprintf(st->reason, sizeof(st->reason), "%s",
		 a->available ? "" : a->reason);
	st->next_seq = a->next_seq;
	memcpy(st->head, a->head, sizeof(st->head));
	st->checkpoint_size = a->checkpoint_size;
	memcpy(st->checkpoint_time, a->checkpoint_time,
	       sizeof(st->checkpoint_time));
	st->unrecorded_served = a->unrec_served;
	st->unrecorded_refused = a->unrec_refused;
	memcpy(st->origin, a->origin, sizeof(st->origin));
	memcpy(st->keyid, a->keyid, sizeof(st->keyid));
	pthread_mutex_unlock(&a->lock);
}
