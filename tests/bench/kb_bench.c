// SPDX-License-Identifier: MIT
/*
 * kb_bench: throughput and latency of keybrokerd against a baseline
 * measured in the same run on the same token.
 *
 *   kb_bench -c CONFIG -s SOCKET -k KEY [-t SECONDS]
 *
 * Baseline: in-process C_DecryptInit + C_Decrypt (RSA-OAEP) on one session
 * per thread, 1 and 2 threads. Then unwrapKey and wrapKey through the
 * broker with several concurrent clients, getKey while another client
 * pipelines unwraps as fast as the broker takes them, and the broker's
 * resident memory with 1,000 idle connections. Prints figures and
 * ratios; asserts nothing.
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

struct run {
	const char *what;
	int threads;
	double seconds;
	/* baseline */
	struct kb_keystore *ks;
	/* broker */
	const char *socket;
	enum { OP_UNWRAP, OP_WRAP, OP_GET } op;
	/* shared */
	const char *key;
	const unsigned char *ct;
	size_t ct_len;
};

struct result {
	double ops_per_s, p50_us, p99_us;
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
	double *lat; /* microseconds */
	size_t n;
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
	}
	keybroker_close(kb);
	return NULL;
}

static int measure(struct run *run, void *(*fn)(void *), struct result *res)
{
	struct worker *ws = calloc((size_t)run->threads, sizeof(*ws));
	double *all, start, elapsed, cpu_self, cpu_broker;
	size_t total = 0, k = 0;
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
	res->ops_per_s = (double)total / elapsed;
	res->p50_us = total ? all[total / 2] : 0;
	res->p99_us = total ? all[total * 99 / 100] : 0;
	printf("%-36s %2d %-7s %6.0f ops/s  p50 %5.0f us  p99 %5.0f us  "
	       "cpu/op: %s %4.0f us, bench %4.0f us%s\n",
	       run->what, run->threads,
	       run->threads == 1 ? "thread" : "threads", res->ops_per_s,
	       res->p50_us, res->p99_us, broker > 0 ? "broker" : "(none)",
	       broker > 0 ? cpu_broker * 1e6 / (double)total : 0.0,
	       cpu_self * 1e6 / (double)total, failed ? "  (FAILURES)" : "");
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
	printf("broker RSS: %.1f MiB before, %.1f MiB with %d idle "
	       "connections (goal <= 16 MiB)\n",
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

int main(int argc, char **argv)
{
	const char *config = NULL, *sock = NULL, *key = NULL, *plain = NULL;
	struct result d1, d2, b1, b2, b8, w8, g1, gf, on[3], off[3], won[3],
		woff[3];
	struct flood flood = { 0 };
	pthread_t flooder;
	unsigned char ct[P11_MODULUS_MAX];
	struct kb_keystore_params params;
	struct kb_key_info info;
	struct kb_config *cfg;
	double seconds = 3;
	char err[512];
	size_t ct_len;
	int c, i, bad = 0;

	while ((c = getopt(argc, argv, "c:s:S:k:t:h")) != -1) {
		switch (c) {
		case 'S':
			plain = optarg;
			break;
		case 'c':
			config = optarg;
			break;
		case 's':
			sock = optarg;
			break;
		case 'k':
			key = optarg;
			break;
		case 't':
			seconds = atof(optarg);
			break;
		default:
			fprintf(stderr, "usage: kb_bench -c CONFIG -s SOCKET "
					"[-S SOCKET_WITHOUT_TRAIL] -k KEY "
					"[-t SECONDS]\n");
			return 2;
		}
	}
	if (!config || !sock || !key) {
		fprintf(stderr, "usage: kb_bench -c CONFIG -s SOCKET -k KEY "
				"[-t SECONDS]\n");
		return 2;
	}
	if (kb_config_load(config, &cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "kb_bench: %s\n", err);
		return 1;
	}
	params = (struct kb_keystore_params){
		.module = cfg->pkcs11_module,
		.token_uri = cfg->pkcs11_token,
		.pin_file = cfg->pkcs11_pin_file,
	};
	struct run run = { .seconds = seconds, .key = key, .socket = sock };

	if (kb_keystore_open(&params, NULL, &run.ks, err, sizeof(err)) != 0 ||
	    kb_keystore_wrap(
		    run.ks, NULL, key, "", KB_ALG_RSA_OAEP,
		    (const unsigned char *)"0123456789abcdef0123456789abcdef",
		    32, ct, &ct_len, &info) != 0) {
		fprintf(stderr, "kb_bench: %s\n", err);
		return 1;
	}
	run.ct = ct;
	run.ct_len = ct_len;
	printf("key %s: RSA-%u, RSA-OAEP (SHA-1) unwrap, %.0f s per "
	       "measurement, %ld cores\n",
	       key, info.bits, seconds, sysconf(_SC_NPROCESSORS_ONLN));

	run.what = "direct C_Decrypt (baseline)";
	run.threads = 1;
	bad |= measure(&run, direct_worker, &d1);
	run.threads = 2;
	bad |= measure(&run, direct_worker, &d2);
	kb_keystore_free(run.ks);
	run.ks = NULL;

	broker = broker_pid(sock);
	run.what = "broker unwrapKey";
	run.threads = 1;
	bad |= measure(&run, broker_worker, &b1);
	run.threads = 2;
	bad |= measure(&run, broker_worker, &b2);
	run.threads = 8;
	bad |= measure(&run, broker_worker, &b8);
	run.what = "broker wrapKey";
	run.op = OP_WRAP;
	bad |= measure(&run, broker_worker, &w8);
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
	flood = (struct flood){
		.socket = sock, .key = key, .ct = ct, .ct_len = ct_len
	};
	pthread_create(&flooder, NULL, flood_writer, &flood);
	usleep(500000);
	bad |= measure(&run, broker_worker, &gf);
	flood.stop = 1;
	pthread_join(flooder, NULL);

	printf("\nunwrapKey 1 client / direct 1 thread:    %.2f\n",
	       b1.ops_per_s / d1.ops_per_s);
	printf("unwrapKey 2 clients / direct 2 threads:  %.2f  (goal >= 0.90)\n",
	       b2.ops_per_s / d2.ops_per_s);
	printf("unwrapKey 8 clients / direct 2 threads:  %.2f  (goal >= 0.90)\n",
	       b8.ops_per_s / d2.ops_per_s);
	printf("p99 2 clients / direct p99 2 threads:    %.2f  (goal <= 2.00)\n",
	       b2.p99_us / d2.p99_us);
	if (plain != NULL) {
		printf("unwrapKey 2 clients, trail on / off:     %.2f  (goal >= "
		       "0.95)\n",
		       sum_rate(on, 3) / sum_rate(off, 3));
		printf("wrapKey 8 clients, trail on / off:       %.2f\n",
		       sum_rate(won, 3) / sum_rate(woff, 3));
	}
	printf("wrapKey 8 clients:                       %.0f ops/s  (goal >= "
	       "20000)\n",
	       w8.ops_per_s);
	printf("getKey p99 beside a pipelining client:   %.1f ms, %.1f x idle "
	       "(goal < 5 ms)\n",
	       gf.p99_us / 1000, gf.p99_us / g1.p99_us);
	idle_connections(sock);
	kb_config_free(cfg);
	return bad ? 1 : 0;
}
