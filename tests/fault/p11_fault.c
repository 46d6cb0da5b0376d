// SPDX-License-Identifier: MIT
/*
 * p11_fault: a PKCS#11 module for tests that stands in for a real one
 * (SoftHSMv2, or the module KB_FAULT_MODULE names), the way p11-kit's
 * common/mock.c stands in for a module: every call goes to the real
 * module, except chosen ones, which fail or "succeed" without effect.
 *
 * The rules come from the environment variable KB_FAULT, read at every
 * call a rule can apply to; they are separated by ';' or newlines:
 *
 *	FUNCTION ACTION [app=APPLICATION] [skip=N] [times=N]
 *
 * FUNCTION is C_CreateObject, C_DestroyObject or C_GenerateKeyPair.
 * ACTION is one of
 *	fail       return CKR_FUNCTION_FAILED and do nothing;
 *	lost       return CKR_OK and keep nothing, as SoftHSMv2 does on a
 *	           full disk: new objects are made as session objects (this
 *	           process sees them while its session lasts, no other
 *	           process ever does); a destroy does nothing;
 *	fill=PATH  fill the file system that holds PATH (append to PATH
 *	           until ENOSPC), then call the module: a real full disk.
 * app=A acts only on objects whose CKA_APPLICATION is A (from the
 * template, or read from the object to destroy). skip=N lets the first N
 * matching calls through; times=N acts on N calls (default: all). Counts
 * are per process, and start again when the rules change.
 *
 * Built without the sanitizers and loaded by absolute path as the
 * config's pkcs11.module.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <p11-kit/pkcs11.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

#define DEFAULT_MODULE "/usr/lib/softhsm/libsofthsm2.so"
#define RULES_MAX 16
#define RULES_TEXT_MAX 4096
#define APP_MAX 128
#define FILL_MAX (64 << 20)

enum action { ACT_FAIL, ACT_LOST, ACT_FILL };

struct rule {
	char function[32];
	enum action action;
	char path[512]; /* fill= */
	char app[APP_MAX]; /* "" matches every object */
	unsigned long skip, times; /* times 0: no limit */
};

static struct {
	pthread_mutex_t lock;
	CK_FUNCTION_LIST *real;
	CK_FUNCTION_LIST list; /* the real one's, with ours in place */
	char text[RULES_TEXT_MAX]; /* the rules last read */
	unsigned long seen[RULES_MAX], done[RULES_MAX];
} fault = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* The rules now in force. */
static void read_rules(char *text, size_t size)
{
	const char *env = getenv("KB_FAULT");

	snprintf(text, size, "%s", env != NULL ? env : "");
}

static int parse_rule(char *line, struct rule *r)
{
	char *word, *save = NULL;
	int i = 0;

	memset(r, 0, sizeof(*r));
	for (word = strtok_r(line, " \t", &save); word != NULL;
	     word = strtok_r(NULL, " \t", &save), i++) {
		if (i == 0)
			snprintf(r->function, sizeof(r->function), "%s", word);
		else if (i == 1 && strcmp(word, "fail") == 0)
			r->action = ACT_FAIL;
		else if (i == 1 && strcmp(word, "lost") == 0)
			r->action = ACT_LOST;
		else if (i == 1 && strncmp(word, "fill=", 5) == 0) {
			r->action = ACT_FILL;
			snprintf(r->path, sizeof(r->path), "%s", word + 5);
		} else if (i > 1 && strncmp(word, "app=", 4) == 0)
			snprintf(r->app, sizeof(r->app), "%s", word + 4);
		else if (i > 1 && strncmp(word, "skip=", 5) == 0)
			r->skip = strtoul(word + 5, NULL, 10);
		else if (i > 1 && strncmp(word, "times=", 6) == 0)
			r->times = strtoul(word + 6, NULL, 10);
		else
			return -1;
	}
	return i >= 2 ? 0 : -1;
}

/*
 * Whether a rule acts on this call of function on an object of
 * application app (NULL: none); the rule in *out.
 */
static bool decide(const char *function, const char *app, struct rule *out)
{
	char text[RULES_TEXT_MAX], *line, *save = NULL;
	bool act = false;
	struct rule r;
	int i = 0;

	read_rules(text, sizeof(text));
	pthread_mutex_lock(&fault.lock);
	if (strcmp(text, fault.text) != 0) {
		memcpy(fault.text, text, sizeof(text));
		memset(fault.seen, 0, sizeof(fault.seen));
		memset(fault.done, 0, sizeof(fault.done));
	}
	for (line = strtok_r(text, ";\n", &save); line != NULL && !act;
	     line = strtok_r(NULL, ";\n", &save)) {
		if (parse_rule(line, &r) != 0)
			continue;
		if (i >= RULES_MAX)
			break;
		if (strcmp(r.function, function) == 0 &&
		    (r.app[0] == '\0' ||
		     (app != NULL && strcmp(r.app, app) == 0)) &&
		    fault.seen[i]++ >= r.skip &&
		    (r.times == 0 || fault.done[i] < r.times)) {
			fault.done[i]++;
			*out = r;
			act = true;
		}
		i++;
	}
	pthread_mutex_unlock(&fault.lock);
	return act;
}

/*
 * Fills the file system holding path, down to its last byte, but writes
 * at most FILL_MAX (a misdirected rule must not fill a real disk).
 */
static void fill(const char *path)
{
	static const char zero[65536];
	size_t chunk = sizeof(zero), total = 0;
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	ssize_t n;

	if (fd < 0) {
		fprintf(stderr, "p11_fault: fill %s: %s\n", path,
			strerror(errno));
		return;
	}
	while (chunk > 0 && total < FILL_MAX)
		if ((n = write(fd, zero, chunk)) < 0)
			chunk /= 2;
		else
			total += (size_t)n;
	close(fd);
}

/* CKA_APPLICATION of a template, as a string, or NULL. */
static const char *template_app(CK_ATTRIBUTE_PTR t, CK_ULONG n, char *buf)
{
	CK_ULONG i;

	for (i = 0; i < n; i++)
		if (t[i].type == CKA_APPLICATION && t[i].ulValueLen < APP_MAX) {
			memcpy(buf, t[i].pValue, t[i].ulValueLen);
			buf[t[i].ulValueLen] = '\0';
			return buf;
		}
	return NULL;
}

/* CKA_APPLICATION of an object, or NULL. */
static const char *object_app(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE obj,
			      char *buf)
{
	CK_ATTRIBUTE a = { CKA_APPLICATION, buf, APP_MAX - 1 };

	if (fault.real->C_GetAttributeValue(s, obj, &a, 1) != CKR_OK ||
	    a.ulValueLen >= APP_MAX)
		return NULL;
	buf[a.ulValueLen] = '\0';
	return buf;
}

/* A copy of t whose objects are session objects (CKA_TOKEN false). */
static CK_ATTRIBUTE_PTR session_template(CK_ATTRIBUTE_PTR t, CK_ULONG n,
					 CK_ULONG *out)
{
	static CK_BBOOL no = CK_FALSE;
	CK_ATTRIBUTE_PTR c = calloc(n + 1, sizeof(*c));
	CK_ULONG i, o = 0;

	if (c == NULL)
		return NULL;
	for (i = 0; i < n; i++)
		if (t[i].type != CKA_TOKEN)
			c[o++] = t[i];
	c[o++] = (CK_ATTRIBUTE){ CKA_TOKEN, &no, sizeof(no) };
	*out = o;
	return c;
}

static CK_RV fault_create_object(CK_SESSION_HANDLE s, CK_ATTRIBUTE_PTR t,
				 CK_ULONG n, CK_OBJECT_HANDLE_PTR obj)
{
	char app[APP_MAX];
	CK_ATTRIBUTE_PTR st;
	struct rule r;
	CK_ULONG sn;
	CK_RV rv;

	if (!decide("C_CreateObject", template_app(t, n, app), &r))
		return fault.real->C_CreateObject(s, t, n, obj);
	if (r.action == ACT_FAIL)
		return CKR_FUNCTION_FAILED;
	if (r.action == ACT_FILL) {
		fill(r.path);
		return fault.real->C_CreateObject(s, t, n, obj);
	}
	if ((st = session_template(t, n, &sn)) == NULL)
		return CKR_HOST_MEMORY;
	rv = fault.real->C_CreateObject(s, st, sn, obj);
	free(st);
	return rv;
}

static CK_RV fault_destroy_object(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE obj)
{
	char app[APP_MAX];
	struct rule r;

	if (!decide("C_DestroyObject", object_app(s, obj, app), &r))
		return fault.real->C_DestroyObject(s, obj);
	if (r.action == ACT_FAIL)
		return CKR_FUNCTION_FAILED;
	if (r.action == ACT_FILL) {
		fill(r.path);
		return fault.real->C_DestroyObject(s, obj);
	}
	return CKR_OK;
}

static CK_RV fault_generate_key_pair(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m,
				     CK_ATTRIBUTE_PTR pt, CK_ULONG pn,
				     CK_ATTRIBUTE_PTR kt, CK_ULONG kn,
				     CK_OBJECT_HANDLE_PTR pub,
				     CK_OBJECT_HANDLE_PTR priv)
{
	CK_ATTRIBUTE_PTR spt, skt;
	CK_ULONG spn, skn;
	struct rule r;
	CK_RV rv = CKR_HOST_MEMORY;

	if (!decide("C_GenerateKeyPair", NULL, &r))
		return fault.real->C_GenerateKeyPair(s, m, pt, pn, kt, kn, pub,
						     priv);
	if (r.action == ACT_FAIL)
		return CKR_FUNCTION_FAILED;
	if (r.action == ACT_FILL) {
		fill(r.path);
		return fault.real->C_GenerateKeyPair(s, m, pt, pn, kt, kn, pub,
						     priv);
	}
	spt = session_template(pt, pn, &spn);
	skt = session_template(kt, kn, &skn);
	if (spt != NULL && skt != NULL)
		rv = fault.real->C_GenerateKeyPair(s, m, spt, spn, skt, skn,
						   pub, priv);
	free(spt);
	free(skt);
	return rv;
}

EXPORT CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR out);

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR out)
{
	const char *path = getenv("KB_FAULT_MODULE");
	CK_C_GetFunctionList get;
	CK_RV rv = CKR_OK;
	void *lib;

	pthread_mutex_lock(&fault.lock);
	if (fault.real == NULL) {
		lib = dlopen(path != NULL ? path : DEFAULT_MODULE,
			     RTLD_NOW | RTLD_LOCAL);
		get = lib != NULL ?
			      (CK_C_GetFunctionList)dlsym(lib,
							  "C_GetFunctionList") :
			      NULL;
		if (get == NULL || (rv = get(&fault.real)) != CKR_OK) {
			fprintf(stderr, "p11_fault: cannot load %s: %s\n",
				path != NULL ? path : DEFAULT_MODULE,
				dlerror());
			rv = rv != CKR_OK ? rv : CKR_GENERAL_ERROR;
			fault.real = NULL;
		} else {
			fault.list = *fault.real;
			fault.list.C_GetFunctionList = C_GetFunctionList;
			fault.list.C_CreateObject = fault_create_object;
			fault.list.C_DestroyObject = fault_destroy_object;
			fault.list.C_GenerateKeyPair = fault_generate_key_pair;
		}
	}
	pthread_mutex_unlock(&fault.lock);
	if (rv == CKR_OK)
		*out = &fault.list;
	return rv;
}
