// SPDX-License-Identifier: MIT
/*
 * p11_fault: a PKCS#11 module for tests that stands in for a real one
 * (SoftHSMv2, or the module KB_FAULT_MODULE names), the way p11-kit's
 * common/mock.c stands in for a module: every call goes to the real
 * module, except chosen ones, which fail, "succeed" without effect, wait
 * or hang.
 *
 * The rules come from the environment variable KB_FAULT and from the file
 * KB_FAULT_FILE names (so a running process can be given new ones), read
 * at every call a rule can apply to; they are separated by ';' or
 * newlines:
 *
 *	FUNCTION ACTION [app=APPLICATION] [skip=N] [times=N]
 *
 * FUNCTION is C_CreateObject, C_DestroyObject, C_GenerateKeyPair or one
 * of the functions WRAP()s below.
 * ACTION is one of
 *	fail       return CKR_FUNCTION_FAILED and do nothing;
 *	rv=NAME    return CKR_NAME (e.g. rv=CKR_DEVICE_ERROR,
 *	           rv=CKR_SESSION_HANDLE_INVALID, rv=CKR_TOKEN_NOT_PRESENT)
 *	           and do nothing;
 *	sleep=MS   wait MS milliseconds, then make the call;
 *	hang       wait until the rule is no longer in force, then make the
 *	           call (a token that stops answering);
 *	lost       (C_CreateObject, C_DestroyObject, C_GenerateKeyPair)
 *	           return CKR_OK and keep nothing, as SoftHSMv2 does on a
 *	           full disk: new objects are made as session objects (this
 *	           process sees them while its session lasts, no other
 *	           process ever does); a destroy does nothing;
 *	fill=PATH  (the same three) fill the file system that holds PATH
 *	           (append to PATH until ENOSPC), then call the module: a
 *	           real full disk;
 *	zeropad    (C_GetAttributeValue) return CKA_MODULUS with a leading
 *	           zero byte, as some tokens keep it.
 * app=A acts only on objects whose CKA_APPLICATION is A (from the
 * template, or read from the object to destroy). skip=N lets the first N
 * matching calls through; times=N acts on N calls (default: all). Counts
 * are per process, and start again when the rules change.
 *
 * If KB_FAULT_THREAD is set, C_Initialize starts a thread that waits for
 * good, as vendor modules start threads of their own.
 *
 * If KB_FAULT_COUNT names a file, the number of calls of each wrapped
 * function is written there, one "FUNCTION N" line each, when the module
 * is finalised and when the process exits.
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
#define COUNTED_MAX 32

enum action {
	ACT_FAIL,
	ACT_RV,
	ACT_SLEEP,
	ACT_HANG,
	ACT_LOST,
	ACT_FILL,
	ACT_ZEROPAD,
};

struct rule {
	char function[32];
	enum action action;
	CK_RV rv; /* rv= */
	unsigned long ms; /* sleep= */
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
	struct {
		const char *function;
		unsigned long n;
	} counted[COUNTED_MAX];
} fault = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* The rules now in force: KB_FAULT's, then KB_FAULT_FILE's. */
static void read_rules(char *text, size_t size)
{
	const char *env = getenv("KB_FAULT"), *file = getenv("KB_FAULT_FILE");
	size_t len;
	ssize_t got;
	int fd;

	len = (size_t)snprintf(text, size, "%s\n", env != NULL ? env : "");
	if (len >= size || file == NULL ||
	    (fd = open(file, O_RDONLY | O_CLOEXEC)) < 0)
		return;
	while (len < size - 1 &&
	       (got = read(fd, text + len, size - 1 - len)) > 0)
		len += (size_t)got;
	text[len] = '\0';
	close(fd);
}

/* Return codes a rule can name, and what it means by a number. */
static bool parse_rv(const char *word, CK_RV *rv)
{
	static const struct {
		const char *name;
		CK_RV rv;
	} names[] = {
		{ "CKR_FUNCTION_FAILED", CKR_FUNCTION_FAILED },
		{ "CKR_GENERAL_ERROR", CKR_GENERAL_ERROR },
		{ "CKR_DEVICE_ERROR", CKR_DEVICE_ERROR },
		{ "CKR_DEVICE_MEMORY", CKR_DEVICE_MEMORY },
		{ "CKR_DEVICE_REMOVED", CKR_DEVICE_REMOVED },
		{ "CKR_SESSION_HANDLE_INVALID", CKR_SESSION_HANDLE_INVALID },
		{ "CKR_SESSION_CLOSED", CKR_SESSION_CLOSED },
		{ "CKR_TOKEN_NOT_PRESENT", CKR_TOKEN_NOT_PRESENT },
		{ "CKR_TOKEN_NOT_RECOGNIZED", CKR_TOKEN_NOT_RECOGNIZED },
		{ "CKR_USER_NOT_LOGGED_IN", CKR_USER_NOT_LOGGED_IN },
		{ "CKR_HOST_MEMORY", CKR_HOST_MEMORY },
		{ "CKR_OBJECT_HANDLE_INVALID", CKR_OBJECT_HANDLE_INVALID },
	};
	char *end;
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(word, names[i].name) == 0) {
			*rv = names[i].rv;
			return true;
		}
	*rv = strtoul(word, &end, 0);
	return end != word && *end == '\0';
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
		else if (i == 1 && strncmp(word, "rv=", 3) == 0) {
			r->action = ACT_RV;
			if (!parse_rv(word + 3, &r->rv))
				return -1;
		} else if (i == 1 && strncmp(word, "sleep=", 6) == 0) {
			r->action = ACT_SLEEP;
			r->ms = strtoul(word + 6, NULL, 10);
		} else if (i == 1 && strcmp(word, "hang") == 0)
			r->action = ACT_HANG;
		else if (i == 1 && strcmp(word, "zeropad") == 0)
			r->action = ACT_ZEROPAD;
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

/* Counts a call of function (a string literal). Needs fault.lock. */
static void count_locked(const char *function)
{
	size_t i;

	for (i = 0; i < COUNTED_MAX && fault.counted[i].function != NULL; i++)
		if (strcmp(fault.counted[i].function, function) == 0)
			break;
	if (i == COUNTED_MAX)
		return;
	fault.counted[i].function = function;
	fault.counted[i].n++;
}

/* Writes the counts to KB_FAULT_COUNT, if it is set. */
static void write_counts(void)
{
	const char *path = getenv("KB_FAULT_COUNT");
	FILE *f;
	size_t i;

	if (path == NULL || (f = fopen(path, "we")) == NULL)
		return;
	pthread_mutex_lock(&fault.lock);
	for (i = 0; i < COUNTED_MAX && fault.counted[i].function != NULL; i++)
		fprintf(f, "%s %lu\n", fault.counted[i].function,
			fault.counted[i].n);
	pthread_mutex_unlock(&fault.lock);
	fclose(f);
}

__attribute__((destructor)) static void at_exit(void)
{
	write_counts();
}

/*
 * Whether a rule acts on this call of function on an object of
 * application app (NULL: none); the rule in *out. Counts the call.
 */
static bool decide(const char *function, const char *app, struct rule *out)
{
	char text[RULES_TEXT_MAX], *line, *save = NULL;
	bool act = false;
	struct rule r;
	int i = 0;

	read_rules(text, sizeof(text));
	pthread_mutex_lock(&fault.lock);
	count_locked(function);
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

/* Waits until the rules are no longer the ones that made a call hang. */
static void hang(void)
{
	char text[RULES_TEXT_MAX], now[RULES_TEXT_MAX];

	pthread_mutex_lock(&fault.lock);
	memcpy(text, fault.text, sizeof(text));
	pthread_mutex_unlock(&fault.lock);
	do {
		usleep(20000);
		read_rules(now, sizeof(now));
	} while (strcmp(now, text) == 0);
}

/*
 * Carries out the actions every function has. True if the call is to
 * return *rv without reaching the module.
 */
static bool act(const struct rule *r, CK_RV *rv)
{
	switch (r->action) {
	case ACT_FAIL:
		*rv = CKR_FUNCTION_FAILED;
		return true;
	case ACT_RV:
		*rv = r->rv;
		return true;
	case ACT_SLEEP:
		usleep((useconds_t)(r->ms * 1000));
		return false;
	case ACT_HANG:
		hang();
		return false;
	default:
		return false;
	}
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

	if (!decide("C_CreateObject", template_app(t, n, app), &r) ||
	    (r.action != ACT_LOST && r.action != ACT_FILL && !act(&r, &rv)))
		return fault.real->C_CreateObject(s, t, n, obj);
	if (r.action != ACT_LOST && r.action != ACT_FILL)
		return rv;
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
	CK_RV rv;

	if (!decide("C_DestroyObject", object_app(s, obj, app), &r) ||
	    (r.action != ACT_LOST && r.action != ACT_FILL && !act(&r, &rv)))
		return fault.real->C_DestroyObject(s, obj);
	if (r.action != ACT_LOST && r.action != ACT_FILL)
		return rv;
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

	if (!decide("C_GenerateKeyPair", NULL, &r) ||
	    (r.action != ACT_LOST && r.action != ACT_FILL && !act(&r, &rv)))
		return fault.real->C_GenerateKeyPair(s, m, pt, pn, kt, kn, pub,
						     priv);
	if (r.action != ACT_LOST && r.action != ACT_FILL)
		return rv;
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

/*
 * The functions that only fail, wait or hang on command: each is counted
 * and asks the rules before it calls the module.
 */
#define WRAP(name, params, args)                             \
	static CK_RV fault_##name params                     \
	{                                                    \
		struct rule r;                               \
		CK_RV rv;                                    \
                                                             \
		if (decide(#name, NULL, &r) && act(&r, &rv)) \
			return rv;                           \
		return fault.real->name args;                \
	}

WRAP(C_GetSlotList, (CK_BBOOL present, CK_SLOT_ID_PTR list, CK_ULONG_PTR n),
     (present, list, n))
WRAP(C_GetTokenInfo, (CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info), (slot, info))
WRAP(C_OpenSession,
     (CK_SLOT_ID slot, CK_FLAGS flags, CK_VOID_PTR app, CK_NOTIFY notify,
      CK_SESSION_HANDLE_PTR h),
     (slot, flags, app, notify, h))
WRAP(C_Login,
     (CK_SESSION_HANDLE h, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin,
      CK_ULONG len),
     (h, user, pin, len))
WRAP(C_FindObjectsInit, (CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n),
     (h, t, n))
WRAP(C_FindObjects,
     (CK_SESSION_HANDLE h, CK_OBJECT_HANDLE_PTR objs, CK_ULONG max,
      CK_ULONG_PTR n),
     (h, objs, max, n))
WRAP(C_DecryptInit,
     (CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key),
     (h, m, key))
WRAP(C_SignInit,
     (CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key),
     (h, m, key))
WRAP(C_GenerateRandom, (CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG len),
     (h, out, len))

/*
 * C_Decrypt and C_Sign end the operation C_DecryptInit or C_SignInit
 * began, also when they fail: one that fails on command ends the real
 * module's operation too (into a buffer that is then wiped), as a module
 * that failed would.
 */
#define WRAP_ENDING(name)                                                   \
	static CK_RV fault_##name(CK_SESSION_HANDLE h, CK_BYTE_PTR in,      \
				  CK_ULONG inlen, CK_BYTE_PTR out,          \
				  CK_ULONG_PTR outlen)                      \
	{                                                                   \
		unsigned char scratch[1024];                                \
		CK_ULONG n = sizeof(scratch);                               \
		struct rule r;                                              \
		CK_RV rv;                                                   \
                                                                            \
		if (!decide(#name, NULL, &r) || !act(&r, &rv))              \
			return fault.real->name(h, in, inlen, out, outlen); \
		fault.real->name(h, in, inlen, scratch, &n);                \
		memset(scratch, 0, sizeof(scratch));                        \
		return rv;                                                  \
	}

WRAP_ENDING(C_Decrypt)
WRAP_ENDING(C_Sign)

/* Gives each CKA_MODULUS in t[0..n) a leading zero byte, where it fits. */
static CK_RV zeropad(CK_ATTRIBUTE_PTR t, CK_ULONG n, const CK_ULONG *size,
		     CK_RV rv)
{
	CK_ULONG i;

	for (i = 0; i < n; i++) {
		if (t[i].type != CKA_MODULUS ||
		    t[i].ulValueLen == CK_UNAVAILABLE_INFORMATION)
			continue;
		if (t[i].pValue == NULL) {
			t[i].ulValueLen++;
		} else if (t[i].ulValueLen < size[i]) {
			memmove((unsigned char *)t[i].pValue + 1, t[i].pValue,
				t[i].ulValueLen);
			*(unsigned char *)t[i].pValue = 0;
			t[i].ulValueLen++;
		} else {
			t[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
			rv = rv == CKR_OK ? CKR_BUFFER_TOO_SMALL : rv;
		}
	}
	return rv;
}

static CK_RV fault_C_GetAttributeValue(CK_SESSION_HANDLE h,
				       CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_PTR t,
				       CK_ULONG n)
{
	CK_ULONG size[64], i;
	struct rule r;
	CK_RV rv;

	if (!decide("C_GetAttributeValue", NULL, &r))
		return fault.real->C_GetAttributeValue(h, obj, t, n);
	if (r.action != ACT_ZEROPAD || n > 64)
		return act(&r, &rv) ?
			       rv :
			       fault.real->C_GetAttributeValue(h, obj, t, n);
	for (i = 0; i < n; i++)
		size[i] = t[i].ulValueLen;
	rv = fault.real->C_GetAttributeValue(h, obj, t, n);
	if (rv != CKR_OK && rv != CKR_BUFFER_TOO_SMALL &&
	    rv != CKR_ATTRIBUTE_SENSITIVE && rv != CKR_ATTRIBUTE_TYPE_INVALID)
		return rv;
	return zeropad(t, n, size, rv);
}

static void *idle_thread(void *arg)
{
	for (;;)
		pause();
	return arg;
}

static CK_RV fault_C_Initialize(CK_VOID_PTR args)
{
	pthread_t t;

	if (getenv("KB_FAULT_THREAD") != NULL &&
	    pthread_create(&t, NULL, idle_thread, NULL) == 0)
		pthread_detach(t);
	return fault.real->C_Initialize(args);
}

static CK_RV fault_C_Finalize(CK_VOID_PTR reserved)
{
	write_counts();
	return fault.real->C_Finalize(reserved);
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
			fault.list.C_Initialize = fault_C_Initialize;
			fault.list.C_Finalize = fault_C_Finalize;
			fault.list.C_GetSlotList = fault_C_GetSlotList;
			fault.list.C_GetTokenInfo = fault_C_GetTokenInfo;
			fault.list.C_OpenSession = fault_C_OpenSession;
			fault.list.C_Login = fault_C_Login;
			fault.list.C_FindObjectsInit = fault_C_FindObjectsInit;
			fault.list.C_FindObjects = fault_C_FindObjects;
			fault.list.C_GetAttributeValue =
				fault_C_GetAttributeValue;
			fault.list.C_DecryptInit = fault_C_DecryptInit;
			fault.list.C_Decrypt = fault_C_Decrypt;
			fault.list.C_SignInit = fault_C_SignInit;
			fault.list.C_Sign = fault_C_Sign;
			fault.list.C_GenerateRandom = fault_C_GenerateRandom;
		}
	}
	pthread_mutex_unlock(&fault.lock);
	if (rv == CKR_OK)
		*out = &fault.list;
	return rv;
}
