// SPDX-License-Identifier: MIT
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kb_kid.h"
#include "kb_progress.h"
#include "p11_confirm.h"
#include "p11_token.h"

extern char **environ;

/* argv of the check: command, module, uri, then per object: */
#define ARGS_HEAD 3
#define ARGS_PER_OBJECT 7 /* class label id app value-type digest what */
#define DIGEST_HEX (2 * 32 + 1)
#define OUTPUT_MAX 512 /* of the check's stderr, kept for messages */

/* ---- the writer's side ---- */

static void sha256_hex(const void *p, size_t n, char *hex)
{
	unsigned char md[32];
	unsigned int len = 0;

	if (EVP_Digest(p, n, md, &len, EVP_sha256(), NULL) != 1 || len != 32)
		memset(md, 0, sizeof(md)); /* never matches a real digest */
	kb_hex_encode(hex, md, sizeof(md));
}

/* Reads the check's stderr until it closes or the deadline passes. */
static bool collect(int fd, char *out, size_t size)
{
	time_t deadline = time(NULL) + P11_CONFIRM_TIMEOUT_S;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	size_t len = 0;
	char skip[256];
	ssize_t n;
	int left;

	out[0] = '\0';
	for (;;) {
		left = (int)(deadline - time(NULL));
		if (left <= 0)
			return false;
		if (poll(&p, 1, left * 1000) < 0) {
			if (errno == EINTR)
				continue;
			return false;
		}
		if (len + 1 < size)
			n = read(fd, out + len, size - 1 - len);
		else
			n = read(fd, skip, sizeof(skip));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return true;
		if (len + 1 < size) {
			len += (size_t)n;
			out[len] = '\0';
		}
	}
}

/*
 * Starts the check with its stderr on a pipe, the PIN on another (fd
 * P11_CONFIRM_PIN_FD, written whole and closed before the check runs),
 * stdin and stdout /dev/null.
 */
static int spawn(const struct p11_confirm_target *t, char **argv, pid_t *pid,
		 int *fd)
{
	posix_spawn_file_actions_t fa;
	int p[2], pin[2], r;

	if (pipe2(p, O_CLOEXEC) != 0)
		return errno;
	if (pipe2(pin, O_CLOEXEC) != 0) {
		r = errno;
		goto out_pipe;
	}
	r = p11_token_send_pin(t->tok, pin[1]);
	close(pin[1]);
	if (r != 0)
		goto out_pin;
	if ((r = posix_spawn_file_actions_init(&fa)) != 0)
		goto out_pin;
	if ((r = posix_spawn_file_actions_adddup2(&fa, p[1], 2)) == 0 &&
	    (r = posix_spawn_file_actions_adddup2(&fa, pin[0],
						  P11_CONFIRM_PIN_FD)) == 0 &&
	    (r = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY,
						  0)) == 0 &&
	    (r = posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY,
						  0)) == 0 &&
	    (r = posix_spawn_file_actions_addclosefrom_np(
		     &fa, P11_CONFIRM_PIN_FD + 1)) == 0)
		r = posix_spawn(pid, t->exe, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
out_pin:
	close(pin[0]);
out_pipe:
	close(p[1]);
	if (r != 0) {
		close(p[0]);
		return r;
	}
	*fd = p[0];
	return 0;
}

/* Runs the check with argv and returns its exit status, or -1 (why in err). */
static int run_check(const struct p11_confirm_target *t, char **argv, char *out,
		     size_t size, char *err, size_t errlen)
{
	int fd = -1, r, status;
	bool finished;
	pid_t pid;

	if ((r = spawn(t, argv, &pid, &fd)) != 0) {
		snprintf(err, errlen, "cannot run %s: %s", t->exe, strerror(r));
		return -1;
	}
	finished = collect(fd, out, size);
	close(fd);
	if (!finished)
		kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR) {
			snprintf(err, errlen, "waiting for the check: %s",
				 strerror(errno));
			return -1;
		}
	out[strcspn(out, "\n")] = '\0';
	if (!finished) {
		snprintf(err, errlen, "the check did not finish within %d s",
			 P11_CONFIRM_TIMEOUT_S);
		return -1;
	}
	if (!WIFEXITED(status)) {
		snprintf(err, errlen, "the check was killed by signal %d",
			 WIFSIGNALED(status) ? WTERMSIG(status) : 0);
		return -1;
	}
	return WEXITSTATUS(status);
}

int p11_confirm(const struct p11_confirm_target *t,
		const struct p11_expect *want, size_t n, char *err,
		size_t errlen)
{
	char *argv[ARGS_HEAD + ARGS_PER_OBJECT * P11_CONFIRM_MAX + 1];
	char cls[P11_CONFIRM_MAX][24], type[P11_CONFIRM_MAX][24];
	char id[P11_CONFIRM_MAX][2 * P11_CONFIRM_ID_MAX + 1];
	char digest[P11_CONFIRM_MAX][DIGEST_HEX], out[OUTPUT_MAX];
	size_t i, a = 0;
	int status;

	if (n == 0 || n > P11_CONFIRM_MAX)
		return KB_ERR_PARAM;
	argv[a++] = program_invocation_short_name;
	argv[a++] = P11_CONFIRM_COMMAND;
	argv[a++] = (char *)t->module;
	argv[a++] = (char *)t->uri;
	for (i = 0; i < n; i++) {
		if (want[i].id_len > P11_CONFIRM_ID_MAX)
			return KB_ERR_PARAM;
		snprintf(cls[i], sizeof(cls[i]), "%lu",
			 (unsigned long)p11_class_ck(want[i].cls));
		snprintf(type[i], sizeof(type[i]), "%lu",
			 (unsigned long)(want[i].value_attr == P11_A_MODULUS ?
						 CKA_MODULUS :
						 CKA_VALUE));
		id[i][0] = digest[i][0] = '\0';
		if (want[i].id != NULL)
			kb_hex_encode(id[i], want[i].id, want[i].id_len);
		if (want[i].value != NULL)
			sha256_hex(want[i].value, want[i].value_len, digest[i]);
		argv[a++] = cls[i];
		argv[a++] = (char *)want[i].label;
		argv[a++] = id[i];
		argv[a++] = (char *)(want[i].application ? want[i].application :
							   "");
		argv[a++] = want[i].value != NULL ? type[i] : (char *)"";
		argv[a++] = digest[i];
		argv[a++] = (char *)want[i].what;
	}
	argv[a] = NULL;
	/* The check is a piece of work of its own, with its own deadline. */
	kb_progress_restart();
	status = run_check(t, argv, out, sizeof(out), err, errlen);
	if (status == P11_CONFIRM_FOUND)
		return KB_STATUS_OK;
	if (status == P11_CONFIRM_MISSING) {
		snprintf(err, errlen, "%s", out);
		return KB_ERR_STORAGE;
	}
	if (status >= 0)
		snprintf(err, errlen, "the check failed: %s",
			 out[0] ? out : "(no message)");
	return KB_ERR_HSM;
}

/* ---- the check ---- */

struct wanted {
	CK_OBJECT_CLASS cls;
	const char *label;
	unsigned char id[P11_CONFIRM_ID_MAX];
	size_t id_len; /* 0: no CKA_ID to match */
	const char *application; /* "": none */
	CK_ATTRIBUTE_TYPE value_type;
	unsigned char digest[32];
	bool has_value;
	const char *what;
};

static int parse_ulong(const char *s, unsigned long *v)
{
	char *end;

	errno = 0;
	*v = strtoul(s, &end, 10);
	return s[0] >= '0' && s[0] <= '9' && *end == '\0' && errno == 0 ? 0 :
									  -1;
}

static int parse_wanted(char **a, struct wanted *w)
{
	size_t idhex = strlen(a[2]), labellen = strlen(a[1]);
	unsigned long cls, type = 0;

	memset(w, 0, sizeof(*w));
	if (parse_ulong(a[0], &cls) != 0 || labellen == 0 || idhex % 2 != 0 ||
	    idhex > 2 * P11_CONFIRM_ID_MAX ||
	    (idhex > 0 && kb_hex_decode(w->id, idhex / 2, a[2]) != 0) ||
	    (a[4][0] != '\0' && parse_ulong(a[4], &type) != 0) ||
	    (a[5][0] != '\0' &&
	     (strlen(a[5]) != 2 * sizeof(w->digest) ||
	      kb_hex_decode(w->digest, sizeof(w->digest), a[5]) != 0)) ||
	    (a[4][0] != '\0') != (a[5][0] != '\0'))
		return -1;
	w->cls = cls;
	w->label = a[1];
	w->id_len = idhex / 2;
	w->application = a[3];
	w->value_type = type;
	w->has_value = a[5][0] != '\0';
	w->what = a[6];
	return 0;
}

/*
 * Whether obj reads back as w wants: its value attribute, if any, has
 * the expected digest. 0 yes, 1 no, -1 the token failed.
 */
static int matches(CK_FUNCTION_LIST *fn, CK_SESSION_HANDLE s,
		   CK_OBJECT_HANDLE obj, const struct wanted *w,
		   unsigned char *buf)
{
	CK_ATTRIBUTE a = { w->has_value ? w->value_type : CKA_LABEL, NULL, 0 };
	unsigned char md[32];
	unsigned int len = 0;
	CK_RV rv;

	if ((rv = fn->C_GetAttributeValue(s, obj, &a, 1)) != CKR_OK)
		return p11_rv_is_token_lost(rv) ? -1 : 1;
	if (a.ulValueLen == (CK_ULONG)-1 ||
	    a.ulValueLen > P11_CONFIRM_VALUE_MAX)
		return 1;
	a.pValue = buf;
	if ((rv = fn->C_GetAttributeValue(s, obj, &a, 1)) != CKR_OK)
		return p11_rv_is_token_lost(rv) ? -1 : 1;
	if (!w->has_value)
		return 0;
	/* A modulus is compared without leading zero bytes, as p11_read has it. */
	if (w->value_type == CKA_MODULUS)
		while (a.ulValueLen > 0 && buf[0] == 0) {
			buf++;
			a.ulValueLen--;
		}
	if (EVP_Digest(buf, a.ulValueLen, md, &len, EVP_sha256(), NULL) != 1)
		return -1;
	return len == 32 && CRYPTO_memcmp(md, w->digest, 32) == 0 ? 0 : 1;
}

/* Looks for w: P11_CONFIRM_FOUND, _MISSING or _ERROR. */
static int look_for(CK_FUNCTION_LIST *fn, CK_SESSION_HANDLE s,
		    const struct wanted *w, unsigned char *buf)
{
	CK_OBJECT_CLASS cls = w->cls;
	CK_ATTRIBUTE t[4] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_LABEL, (void *)w->label, strlen(w->label) },
	};
	CK_OBJECT_HANDLE objs[16];
	CK_ULONG nt = 2, got, i;
	int st = P11_CONFIRM_MISSING, m;

	if (w->id_len > 0)
		t[nt++] = (CK_ATTRIBUTE){ CKA_ID, (void *)w->id, w->id_len };
	if (w->application[0] != '\0')
		t[nt++] = (CK_ATTRIBUTE){ CKA_APPLICATION,
					  (void *)w->application,
					  strlen(w->application) };
	if (fn->C_FindObjectsInit(s, t, nt) != CKR_OK)
		return P11_CONFIRM_ERROR;
	while (st == P11_CONFIRM_MISSING) {
		if (fn->C_FindObjects(s, objs, 16, &got) != CKR_OK) {
			st = P11_CONFIRM_ERROR;
			break;
		}
		if (got == 0)
			break;
		for (i = 0; i < got && st == P11_CONFIRM_MISSING; i++)
			if ((m = matches(fn, s, objs[i], w, buf)) == 0)
				st = P11_CONFIRM_FOUND;
			else if (m < 0)
				st = P11_CONFIRM_ERROR;
	}
	fn->C_FindObjectsFinal(s);
	return st;
}

/* Opens the token anew, as a process that never saw it. */
static int open_fresh(char **argv, struct p11_token **tok, CK_SESSION_HANDLE *s,
		      char *err, size_t errlen)
{
	int r;

	if ((r = p11_token_load(argv[1], argv[2], tok, err, errlen)) !=
		    KB_STATUS_OK ||
	    (r = p11_token_receive_pin(*tok, P11_CONFIRM_PIN_FD, err,
				       errlen)) != KB_STATUS_OK ||
	    (r = p11_token_select(*tok, err, errlen)) != KB_STATUS_OK)
		return r;
	return p11_token_open_session(*tok, false, s, err, errlen);
}

int p11_confirm_main(int argc, char **argv)
{
	struct wanted w[P11_CONFIRM_MAX];
	struct p11_token *tok = NULL;
	unsigned char *buf = NULL;
	CK_SESSION_HANDLE s;
	size_t n, i;
	char err[512];
	int st = P11_CONFIRM_ERROR;

	if (argc < ARGS_HEAD + ARGS_PER_OBJECT ||
	    (argc - ARGS_HEAD) % ARGS_PER_OBJECT != 0 ||
	    (n = (size_t)(argc - ARGS_HEAD) / ARGS_PER_OBJECT) >
		    P11_CONFIRM_MAX) {
		fprintf(stderr,
			"%s: internal use only: MODULE URI then 1-%d "
			"objects, the PIN on fd %d\n",
			P11_CONFIRM_COMMAND, P11_CONFIRM_MAX,
			P11_CONFIRM_PIN_FD);
		return P11_CONFIRM_ERROR;
	}
	for (i = 0; i < n; i++)
		if (parse_wanted(argv + ARGS_HEAD + i * ARGS_PER_OBJECT,
				 &w[i]) != 0) {
			fprintf(stderr, "%s: object %zu is malformed\n",
				P11_CONFIRM_COMMAND, i + 1);
			return P11_CONFIRM_ERROR;
		}
	if ((buf = malloc(P11_CONFIRM_VALUE_MAX)) == NULL) {
		fprintf(stderr, "out of memory\n");
		return P11_CONFIRM_ERROR;
	}
	if (open_fresh(argv, &tok, &s, err, sizeof(err)) != KB_STATUS_OK) {
		fprintf(stderr, "%s\n", err);
		goto out_free;
	}
	for (i = 0, st = P11_CONFIRM_FOUND; i < n && st == P11_CONFIRM_FOUND;
	     i++)
		if ((st = look_for(p11_token_functions(tok), s, &w[i], buf)) ==
		    P11_CONFIRM_MISSING)
			fprintf(stderr,
				"a fresh load of the token does not find %s "
				"(label '%.64s')\n",
				w[i].what, w[i].label);
		else if (st == P11_CONFIRM_ERROR)
			fprintf(stderr, "searching the token for %s failed\n",
				w[i].what);
	p11_token_close_session(tok, s);
out_free:
	p11_token_free(tok);
	free(buf);
	return st;
}
