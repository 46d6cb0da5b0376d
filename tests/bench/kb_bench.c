// SPDX-License-Identifier: MIT
/*
 * kb_bench: throughput and latency of keybrokerd against baselines
 * measured in the same run on the same token.
 *
 *   kb_bench -c CONFIG -s SOCKET -k KEY [-S SOCKET_WITHOUT_TRAIL]
 *            [-H SOCKET_OF_A_SLOW_TOKEN] [-K KEY,KEY...]
 *            [-P P11KIT_CLIENT_MODULE] [-t SECONDS]
 *
 * Baselines: in-process C_DecryptInit + C_Decrypt (RSA-OAEP) on one
 * session per thread, 1 and 2 threads; and the same through
 * "p11-kit server" remoting the token (-P: the p11-kit client module,
 * with P11_KIT_SERVER_ADDRESS set). Then unwrapKey through the broker at
 * 1, 2 and 8 clients (and at 2 for the keys of -K, larger ones), wrapKey
 * at 8 clients one request at a time and pipelining 16 deep, one
 * wrapKey client alone and while unwraps saturate the token (a software
 * one, which takes the CPUs, and with -H a broker whose token takes 5 ms
 * more per decryption without them, as a network HSM), getKey, the broker's CPU time per
 * request, the audit trail's cost (-S: a second broker without one),
 * getKey beside a client pipelining unwraps, and the broker's resident
 * memory with 1,000 idle connections. Prints figures and ratios, with
 * the goals beside them; asserts nothing.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "kb_b64.h"
#include "kb_config.h"
#include "kb_keystore.h"
#include "keybroker.h"

#define MAX_SAMPLES 2000000
#define IDLE_CONNECTIONS 1000
#define PIPELINE 16 /* requests a pipelining client keeps in flight */
#define MAX_KEYS 4 /* -K */

struct run {
	const char *what;
	int threads;
	double seconds;
	/* baseline */
	struct kb_keystore *ks;
	/* broker */
	const char *socket;
	enum { OP_UNWRAP, OP_WRAP, OP_GET } op;
	int depth; /* > 1: each client pipelines this many requests */
	/* shared */
	const char *key;
	const unsigned char *ct;
	size_t ct_len;
};

struct result {
	double ops_per_s, p50_us, p99_us;
	double broker_cpu_us, bench_cpu_us; /* per request */
};

static pid_t broker;

static pid_t broker_pid(const char *path);

/* CPU seconds used so far by pid (user + system), from /proc. */
static double cpu_seconds(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long ut = 0, st = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((f = fopen(path, "r")) == NULL)
		return 0;
	if (fgets(buf, sizeof(buf), f) != NULL &&
	    (p = strrchr(buf, ')')) != NULL)
		sscanf(p + 2,
		       "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
		       &ut, &st);
	fclose(f);
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

struct worker {
	struct run *run;
	double *lat; /* microseconds, one per request or pipelined batch */
	size_t n; /* samples */
	size_t ops; /* requests answered */
	int failed;
	pthread_t th;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void *direct_worker(void *arg)
{
	struct worker *w = arg;
	struct kb_keyworker *p11;
	unsigned char out[P11_MODULUS_MAX];
	struct kb_key_info info;
	size_t outlen;
	double end, t0, t1;

	if (kb_keyworker_new(w->run->ks, &p11) != 0) {
		w->failed++;
		return NULL;
	}
	end = now_s() + w->run->seconds;
	while ((t0 = now_s()) < end && w->n < MAX_SAMPLES) {
		if (kb_keyworker_unwrap(p11, w->run->key, "", KB_ALG_RSA_OAEP,
					w->run->ct, w->run->ct_len, out,
					&outlen, &info) != KB_STATUS_OK)
			w->failed++;
		t1 = now_s();
		w->lat[w->n++] = (t1 - t0) * 1e6;
		w->ops++;
	}
	kb_keyworker_free(p11);
	return NULL;
}

static void *broker_worker(void *arg)
{
	struct worker *w = arg;
	static const unsigned char dek[32] = { 1, 2, 3 };
	struct keybroker *kb;
	uint8_t *out;
	size_t outlen;
	double end, t0, t1;
	int r;

	if (keybroker_connect(w->run->socket, &kb) != KEYBROKER_OK ||
	    keybroker_authenticate_self(kb, NULL) != KEYBROKER_OK) {
		w->failed++;
		return NULL;
	}
	end = now_s() + w->run->seconds;
	while ((t0 = now_s()) < end && w->n < MAX_SAMPLES) {
		out = NULL;
		outlen = 0;
		if (w->run->op == OP_WRAP)
			r = keybroker_wrap(kb, w->run->key, NULL, "RSA-OAEP",
					   dek, sizeof(dek), &out, &outlen,
					   NULL);
		else if (w->run->op == OP_UNWRAP)
			r = keybroker_unwrap(kb, w->run->key, NULL, "RSA-OAEP",
					     w->run->ct, w->run->ct_len, &out,
					     &outlen, NULL);
		else
			r = keybroker_get_key(kb, w->run->key, NULL,
					      (char **)&out);
		t1 = now_s();
		if (r != KEYBROKER_OK)
			w->failed++;
		keybroker_free_secret(out, outlen);
		w->lat[w->n++] = (t1 - t0) * 1e6;
		w->ops++;
	}
	keybroker_close(kb);
	return NULL;
}

/* A connected socket that has authenticated with a fresh token, or -1. */
static int raw_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char *token = NULL, line[2048];
	struct keybroker *kb;
	int fd = -1;
	size_t n;

	if (keybroker_connect(path, &kb) != KEYBROKER_OK)
		return -1;
	if (keybroker_get_token(kb, &token) != KEYBROKER_OK)
		goto out;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM, 0)) < 0)
		goto out;
	n = (size_t)snprintf(line, sizeof(line),
			     "{\"id\":0,\"op\":\"authenticate\","
			     "\"token\":\"%s\"}\n",
			     token);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    write(fd, line, n) != (ssize_t)n || read(fd, line, 1) != 1) {
		close(fd);
		fd = -1;
	}
	/* The rest of the reply: a line of a few dozen bytes. */
	while (fd >= 0 && line[0] != '\n' && read(fd, line, 1) == 1)
		;
out:
	keybroker_free_secret(token, token ? strlen(token) : 0);
	keybroker_close(kb);
	return fd;
}

/* The request line of run's op (with a fixed 32-byte DEK for wrapKey). */
static size_t request_line(const struct run *run, char *line, size_t size)
{
	char b64[700];

	if (run->op == OP_WRAP)
		return (size_t)snprintf(
			line, size,
			"{\"id\":1,\"op\":\"wrapKey\",\"key\":\"%s\",\"alg\":"
			"\"RSA-OAEP\",\"value\":\"AQIDAAAAAAAAAAAAAAAAAAAAAAAA"
			"AAAAAAAAAAAAAAA\"}\n",
			run->key);
	if (run->op == OP_UNWRAP) {
		kb_b64_encode(b64, run->ct, run->ct_len);
		return (size_t)snprintf(
			line, size,
			"{\"id\":1,\"op\":\"unwrapKey\",\"key\":\"%s\","
			"\"alg\":\"RSA-OAEP\",\"value\":\"%s\"}\n",
			run->key, b64);
	}
	return (size_t)snprintf(line, size,
				"{\"id\":1,\"op\":\"getKey\",\"key\":\"%s\"}\n",
				run->key);
}

/*
 * A client that keeps run->depth requests in flight: writes them in one
 * send, reads the replies, again. One latency sample per batch.
 */
static void *pipeline_worker(void *arg)
{
	struct worker *w = arg;
	char line[2048], batch[PIPELINE * 2048], buf[65536];
	size_t n, len = 0;
	double end, t0;
	int fd, i, got;
	ssize_t r;

	if ((fd = raw_connect(w->run->socket)) < 0) {
		w->failed++;
		return NULL;
	}
	n = request_line(w->run, line, sizeof(line));
	for (i = 0; i < w->run->depth; i++, len += n)
		memcpy(batch + len, line, n);
	end = now_s() + w->run->seconds;
	while ((t0 = now_s()) < end && w->n < MAX_SAMPLES) {
		if (write(fd, batch, len) != (ssize_t)len) {
			w->failed++;
			break;
		}
		for (got = 0; got < w->run->depth;) {
			if ((r = read(fd, buf, sizeof(buf))) <= 0) {
				w->failed++;
				goto out;
			}
			if (memmem(buf, (size_t)r, "\"error\"", 7) != NULL)
				w->failed++;
			for (i = 0; i < r; i++)
				got += buf[i] == '\n';
		}
		w->lat[w->n++] = (now_s() - t0) * 1e6;
		w->ops += (size_t)w->run->depth;
	}
out:
	close(fd);
	return NULL;
}

static int measure(struct run *run, void *(*fn)(void *), struct result *res)
{
	struct worker *ws = calloc((size_t)run->threads, sizeof(*ws));
	double *all, start, elapsed, cpu_self, cpu_broker;
	size_t total = 0, ops = 0, k = 0;
	int i, failed = 0;

	if (ws == NULL)
		return -1;
	start = now_s();
	cpu_self = cpu_seconds(getpid());
	cpu_broker = broker > 0 ? cpu_seconds(broker) : 0;
	for (i = 0; i < run->threads; i++) {
		ws[i].run = run;
		ws[i].lat = malloc(MAX_SAMPLES * sizeof(double));
		pthread_create(&ws[i].th, NULL, fn, &ws[i]);
	}
	for (i = 0; i < run->threads; i++) {
		pthread_join(ws[i].th, NULL);
		total += ws[i].n;
		ops += ws[i].ops;
		failed += ws[i].failed;
	}
	elapsed = now_s() - start;
	cpu_self = cpu_seconds(getpid()) - cpu_self;
	cpu_broker = broker > 0 ? cpu_seconds(broker) - cpu_broker : 0;
	all = malloc((total + 1) * sizeof(double));
	for (i = 0; i < run->threads; i++) {
		memcpy(all + k, ws[i].lat, ws[i].n * sizeof(double));
		k += ws[i].n;
		free(ws[i].lat);
	}
	qsort(all, total, sizeof(double), cmp_double);
	if (ops == 0)
		ops = 1;
	res->ops_per_s = (double)ops / elapsed;
	res->p50_us = total ? all[total / 2] : 0;
	res->p99_us = total ? all[total * 99 / 100] : 0;
	res->broker_cpu_us = cpu_broker * 1e6 / (double)ops;
	res->bench_cpu_us = cpu_self * 1e6 / (double)ops;
	printf("%-44s %2d %-7s %6.0f ops/s  p50 %5.0f us  p99 %5.0f us  "
	       "cpu/op: broker %4.0f us, bench %4.0f us%s\n",
	       run->what, run->threads,
	       run->threads == 1 ? "thread" : "threads", res->ops_per_s,
	       res->p50_us, res->p99_us, res->broker_cpu_us,
	       cpu_self * 1e6 / (double)ops, failed ? "  (FAILURES)" : "");
	free(all);
	free(ws);
	return failed ? -1 : 0;
}

/* The broker's pid, from the peer credentials of a connection. */
static pid_t broker_pid(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct ucred cred;
	socklen_t len = sizeof(cred);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	pid_t pid = -1;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
		pid = cred.pid;
	close(fd);
	return pid;
}

static long rss_kib(pid_t pid)
{
	char path[64], line[256];
	long kib = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

static void idle_connections(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct rlimit rl = { 4096, 4096 };
	int fds[IDLE_CONNECTIONS], i, n = 0;
	pid_t pid = broker_pid(path);
	long before, after;

	setrlimit(RLIMIT_NOFILE, &rl);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	before = rss_kib(pid);
	for (i = 0; i < IDLE_CONNECTIONS; i++) {
		fds[n] = socket(AF_UNIX, SOCK_STREAM, 0);
		if (connect(fds[n], (struct sockaddr *)&sa, sizeof(sa)) == 0)
			n++;
		else
			close(fds[n]);
	}
	usleep(500000);
	after = rss_kib(pid);
	printf("broker RSS:                                    %.1f MiB idle, "
	       "%.1f MiB with %d idle connections (goal <= 16 MiB)\n",
	       before / 1024.0, after / 1024.0, n);
	for (i = 0; i < n; i++)
		close(fds[i]);
}

struct flood {
	const char *socket;
	const char *key;
	const unsigned char *ct;
	size_t ct_len;
	volatile int stop;
	int fd;
};

static void *flood_reader(void *arg)
{
	struct flood *f = arg;
	char buf[65536];

	while (!f->stop && read(f->fd, buf, sizeof(buf)) > 0)
		;
	return NULL;
}

/*
 * One connection that authenticates and then writes unwrapKey lines as
 * fast as the broker takes them, its replies drained by flood_reader.
 */
static void *flood_writer(void *arg)
{
	struct flood *f = arg;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char *token = NULL, line[2048], b64[700], batch[16 * 2048];
	struct keybroker *kb;
	size_t n, len = 0;
	pthread_t reader;
	int i;

	if (keybroker_connect(f->socket, &kb) != KEYBROKER_OK ||
	    keybroker_get_token(kb, &token) != KEYBROKER_OK)
		return NULL;
	keybroker_close(kb);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->socket);
	f->fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (connect(f->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		goto out;
	n = (size_t)snprintf(line, sizeof(line),
			     "{\"id\":0,\"op\":\"authenticate\","
			     "\"token\":\"%s\"}\n",
			     token);
	if (write(f->fd, line, n) != (ssize_t)n)
		goto out;
	kb_b64_encode(b64, f->ct, f->ct_len);
	n = (size_t)snprintf(line, sizeof(line),
			     "{\"id\":1,\"op\":\"unwrapKey\",\"key\":"
			     "\"%s\",\"alg\":\"RSA-OAEP\",\"value\":"
			     "\"%s\"}\n",
			     f->key, b64);
	for (i = 0; i < 16; i++, len += n)
		memcpy(batch + len, line, n);
	pthread_create(&reader, NULL, flood_reader, f);
	while (!f->stop && write(f->fd, batch, len) > 0)
		;
	shutdown(f->fd, SHUT_RDWR);
	pthread_join(reader, NULL);
out:
	close(f->fd);
	keybroker_free_secret(token, token ? strlen(token) : 0);
	return NULL;
}

/* One turn of the trail comparison: unwrap at 2 clients, wrap at 8. */
static void trail_turn(struct run *run, const char *sock, const char *how,
		       struct result *unwrap, struct result *wrap, int *bad)
{
	char what[2][48];

	snprintf(what[0], sizeof(what[0]), "broker unwrapKey, trail %s", how);
	snprintf(what[1], sizeof(what[1]), "broker wrapKey, trail %s", how);
	run->socket = sock;
	broker = broker_pid(sock);
	run->op = OP_UNWRAP;
	run->threads = 2;
	run->what = what[0];
	*bad |= measure(run, broker_worker, unwrap);
	run->op = OP_WRAP;
	run->threads = 8;
	run->what = what[1];
	*bad |= measure(run, broker_worker, wrap);
}

static double sum_rate(const struct result *r, int n)
{
	double s = 0;
	int i;

	for (i = 0; i < n; i++)
		s += r[i].ops_per_s;
	return s;
}

/* Clients that keep the broker busy while something else is measured. */
struct load {
	struct run run;
	struct worker ws[8];
	int n;
};

static void load_start(struct load *l, const struct run *like, int op, int n)
{
	int i;

	l->run = *like;
	l->run.op = op;
	l->run.depth = 1;
	l->run.seconds = like->seconds + 0.6;
	l->n = n;
	for (i = 0; i < n; i++) {
		l->ws[i] = (struct worker){ .run = &l->run };
		l->ws[i].lat = malloc(MAX_SAMPLES * sizeof(double));
		pthread_create(&l->ws[i].th, NULL, broker_worker, &l->ws[i]);
	}
	usleep(300000);
}

static void load_stop(struct load *l)
{
	int i;

	for (i = 0; i < l->n; i++) {
		pthread_join(l->ws[i].th, NULL);
		free(l->ws[i].lat);
	}
}

/* A key of the token and a wrapped DEK for it, by the in-process path. */
struct bench_key {
	const char *name;
	unsigned int bits;
	unsigned char ct[P11_MODULUS_MAX];
	size_t ct_len;
};

static int prepare_key(struct kb_keystore *ks, struct bench_key *k)
{
	struct kb_key_info info;

	if (kb_keystore_wrap(
		    ks, k->name, "", KB_ALG_RSA_OAEP,
		    (const unsigned char *)"0123456789abcdef0123456789abcdef",
		    32, k->ct, &k->ct_len, &info) != 0)
		return -1;
	k->bits = info.bits;
	return 0;
}

static int open_store(const struct kb_config *cfg, const char *module,
		      struct kb_keystore **ks)
{
	struct kb_keystore_params params = {
		.module = module != NULL ? module : cfg->pkcs11_module,
		.token_uri = cfg->pkcs11_token,
		.pin_file = cfg->pkcs11_pin_file,
	};
	char err[512];

	if (kb_keystore_open(&params, NULL, ks, err, sizeof(err)) != 0) {
		fprintf(stderr, "kb_bench: %s\n", err);
		return -1;
	}
	return 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: kb_bench -c CONFIG -s SOCKET -k KEY "
		"[-S SOCKET_WITHOUT_TRAIL] [-K KEY,KEY...]\n"
		"                [-P P11KIT_CLIENT_MODULE] [-t SECONDS]\n");
}

int main(int argc, char **argv)
{
	const char *config = NULL, *sock = NULL, *plain = NULL, *p11kit = NULL,
		   *hsm = NULL;
	struct result d1, d2, b1, b2, b8, w8, wp, w1, wl, wh, g1, gf, pk, on[3],
		off[3], won[3], woff[3], kd[MAX_KEYS], kb[MAX_KEYS];
	struct bench_key keys[1 + MAX_KEYS];
	struct flood flood = { 0 };
	struct load load;
	pthread_t flooder;
	struct kb_config *cfg;
	char err[512], what[64], *more = NULL, *tok, *save;
	int c, i, nkeys = 1, bad = 0;
	double seconds = 3;

	memset(keys, 0, sizeof(keys));
	while ((c = getopt(argc, argv, "c:s:S:H:k:K:P:t:h")) != -1) {
		switch (c) {
		case 'H':
			hsm = optarg;
			break;
		case 'c':
			config = optarg;
			break;
		case 's':
			sock = optarg;
			break;
		case 'S':
			plain = optarg;
			break;
		case 'k':
			keys[0].name = optarg;
			break;
		case 'K':
			more = optarg;
			break;
		case 'P':
			p11kit = optarg;
			break;
		case 't':
			seconds = atof(optarg);
			break;
		default:
			usage();
			return c == 'h' ? 0 : 2;
		}
	}
	if (!config || !sock || !keys[0].name) {
		usage();
		return 2;
	}
	for (tok = more ? strtok_r(more, ",", &save) : NULL;
	     tok != NULL && nkeys <= MAX_KEYS; tok = strtok_r(NULL, ",", &save))
		keys[nkeys++].name = tok;
	if (kb_config_load(config, &cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "kb_bench: %s\n", err);
		return 1;
	}
	struct run run = { .seconds = seconds, .socket = sock, .depth = 1 };

	if (open_store(cfg, NULL, &run.ks) != 0)
		return 1;
	for (i = 0; i < nkeys; i++)
		if (prepare_key(run.ks, &keys[i]) != 0) {
			fprintf(stderr, "kb_bench: cannot wrap with key %s\n",
				keys[i].name);
			return 1;
		}
	run.key = keys[0].name;
	run.ct = keys[0].ct;
	run.ct_len = keys[0].ct_len;
	printf("key %s: RSA-%u, RSA-OAEP (SHA-1) unwrap, %.0f s per "
	       "measurement, %ld cores\n",
	       run.key, keys[0].bits, seconds, sysconf(_SC_NPROCESSORS_ONLN));

	run.what = "direct C_Decrypt (baseline)";
	run.threads = 1;
	bad |= measure(&run, direct_worker, &d1);
	run.threads = 2;
	bad |= measure(&run, direct_worker, &d2);
	for (i = 1; i < nkeys; i++) {
		snprintf(what, sizeof(what), "direct C_Decrypt, RSA-%u",
			 keys[i].bits);
		run.what = what;
		run.key = keys[i].name;
		run.ct = keys[i].ct;
		run.ct_len = keys[i].ct_len;
		bad |= measure(&run, direct_worker, &kd[i - 1]);
	}
	kb_keystore_free(run.ks);
	run.ks = NULL;
	run.key = keys[0].name;
	run.ct = keys[0].ct;
	run.ct_len = keys[0].ct_len;
	if (p11kit != NULL) {
		if (open_store(cfg, p11kit, &run.ks) != 0)
			return 1;
		run.what = "C_Decrypt through p11-kit server";
		bad |= measure(&run, direct_worker, &pk);
		kb_keystore_free(run.ks);
		run.ks = NULL;
	}

	broker = broker_pid(sock);
	run.what = "broker unwrapKey";
	run.threads = 1;
	bad |= measure(&run, broker_worker, &b1);
	run.threads = 2;
	bad |= measure(&run, broker_worker, &b2);
	run.threads = 8;
	bad |= measure(&run, broker_worker, &b8);
	for (i = 1; i < nkeys; i++) {
		snprintf(what, sizeof(what), "broker unwrapKey, RSA-%u",
			 keys[i].bits);
		run.what = what;
		run.threads = 2;
		run.key = keys[i].name;
		run.ct = keys[i].ct;
		run.ct_len = keys[i].ct_len;
		bad |= measure(&run, broker_worker, &kb[i - 1]);
	}
	run.key = keys[0].name;
	run.ct = keys[0].ct;
	run.ct_len = keys[0].ct_len;
	run.what = "broker wrapKey";
	run.op = OP_WRAP;
	run.threads = 8;
	bad |= measure(&run, broker_worker, &w8);
	run.what = "broker wrapKey, pipelining 16 deep";
	run.depth = PIPELINE;
	bad |= measure(&run, pipeline_worker, &wp);
	run.depth = 1;
	/*
	 * Cheap requests beside token work: one wrapKey client alone, then
	 * while 8 clients keep every token session busy, on the software
	 * token (whose work takes the CPUs) and, with -H, on one that takes
	 * 5 ms more per decryption without them (as a network HSM).
	 */
	run.threads = 1;
	run.what = "broker wrapKey, alone";
	bad |= measure(&run, broker_worker, &w1);
	run.what = "broker wrapKey while 8 clients unwrap";
	load_start(&load, &run, OP_UNWRAP, 8);
	bad |= measure(&run, broker_worker, &wl);
	load_stop(&load);
	if (hsm != NULL) {
		run.socket = hsm;
		broker = broker_pid(hsm);
		run.what = "wrapKey while 8 unwrap, token of 5 ms";
		load_start(&load, &run, OP_UNWRAP, 8);
		bad |= measure(&run, broker_worker, &wh);
		load_stop(&load);
		run.socket = sock;
		broker = broker_pid(sock);
	}
	run.what = "broker getKey (round trip only)";
	run.op = OP_GET;
	run.threads = 1;
	bad |= measure(&run, broker_worker, &g1);

	/*
	 * The audit trail's cost: two brokers of one build on one token, with
	 * the trail and without, measured in turns.
	 */
	if (plain != NULL) {
		for (i = 0; i < 3; i++) {
			trail_turn(&run, sock, "on", &on[i], &won[i], &bad);
			trail_turn(&run, plain, "off", &off[i], &woff[i], &bad);
		}
		run.socket = sock;
		broker = broker_pid(sock);
		run.op = OP_GET;
		run.threads = 1;
	}

	run.what = "getKey while 1 client pipelines unwraps";
	flood = (struct flood){ .socket = sock,
				.key = run.key,
				.ct = run.ct,
				.ct_len = run.ct_len };
	pthread_create(&flooder, NULL, flood_writer, &flood);
	usleep(500000);
	bad |= measure(&run, broker_worker, &gf);
	flood.stop = 1;
	pthread_join(flooder, NULL);

	printf("\nunwrapKey 1 client / direct 1 thread:          %.2f\n",
	       b1.ops_per_s / d1.ops_per_s);
	printf("unwrapKey 2 clients / direct 2 threads:        %.2f  (goal >= "
	       "0.90, stretch 0.95)\n",
	       b2.ops_per_s / d2.ops_per_s);
	printf("unwrapKey 8 clients / direct 2 threads:        %.2f\n",
	       b8.ops_per_s / d2.ops_per_s);
	printf("p99 2 clients / direct p99 2 threads:          %.2f  (goal <= "
	       "1.50)\n",
	       b2.p99_us / d2.p99_us);
	for (i = 1; i < nkeys; i++)
		printf("RSA-%u unwrapKey 2 clients / direct 2 threads: %.2f\n",
		       keys[i].bits, kb[i - 1].ops_per_s / kd[i - 1].ops_per_s);
	if (p11kit != NULL)
		printf("unwrapKey 2 clients / p11-kit server 2 threads: %.2f  "
		       "(goal >= 2)\n",
		       b2.ops_per_s / pk.ops_per_s);
	printf("wrapKey 8 clients:                             %.0f ops/s\n",
	       w8.ops_per_s);
	printf("wrapKey 8 clients pipelining 16 deep:          %.0f ops/s  "
	       "(goal >= 50000)\n",
	       wp.ops_per_s);
	printf("wrapKey, 1 client alone:                       p50 %.2f ms, "
	       "p99 %.2f ms\n",
	       w1.p50_us / 1000, w1.p99_us / 1000);
	printf("wrapKey while unwraps saturate the token:      p50 %.2f ms, "
	       "p99 %.2f ms  (goal: p99 < 1 ms)\n",
	       wl.p50_us / 1000, wl.p99_us / 1000);
	if (hsm != NULL)
		printf("wrapKey while unwraps saturate a 5 ms token:   p50 %.2f "
		       "ms, p99 %.2f ms  (goal: p99 < 1 ms)\n",
		       wh.p50_us / 1000, wh.p99_us / 1000);
	printf("broker CPU per request:                        getKey %.0f us, "
	       "wrapKey %.0f us (%.0f us pipelined), unwrapKey %.0f us "
	       "(direct C_Decrypt: %.0f us of the bench's)\n",
	       g1.broker_cpu_us, w8.broker_cpu_us, wp.broker_cpu_us,
	       b2.broker_cpu_us, d2.bench_cpu_us);
	if (plain != NULL) {
		printf("unwrapKey 2 clients, trail on / off:           %.2f\n",
		       sum_rate(on, 3) / sum_rate(off, 3));
		printf("wrapKey 8 clients, trail on / off:             %.2f\n",
		       sum_rate(won, 3) / sum_rate(woff, 3));
	}
	printf("getKey p99 beside a pipelining client:         %.1f ms, %.1f x "
	       "idle (goal < 5 ms)\n",
	       gf.p99_us / 1000, gf.p99_us / g1.p99_us);
	idle_connections(sock);
	kb_config_free(cfg);
	return bad ? 1 : 0;
}
