// SPDX-License-Identifier: MIT
#include <errno.h>
#include <p11-kit/p11-kit.h>
#include <p11-kit/uri.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kb_secret.h"
#include "p11_store.h"
#include "p11_token.h"

#define PIN_MAX 256

struct p11_token {
	CK_FUNCTION_LIST *fn;
	P11KitUri *uri;
	char *uri_text; /* for messages */
	CK_SLOT_ID slot;
	bool selected;
	char label[33];
	unsigned char *pin; /* kb_secure_alloc'ed, PIN_MAX + 1 */
	size_t pinlen;
};

const char *p11_rv_name(CK_RV rv)
{
	switch (rv) {
	case CKR_OK:
		return "CKR_OK";
	case CKR_HOST_MEMORY:
		return "CKR_HOST_MEMORY";
	case CKR_SLOT_ID_INVALID:
		return "CKR_SLOT_ID_INVALID";
	case CKR_GENERAL_ERROR:
		return "CKR_GENERAL_ERROR";
	case CKR_FUNCTION_FAILED:
		return "CKR_FUNCTION_FAILED";
	case CKR_ARGUMENTS_BAD:
		return "CKR_ARGUMENTS_BAD";
	case CKR_DEVICE_ERROR:
		return "CKR_DEVICE_ERROR";
	case CKR_DEVICE_MEMORY:
		return "CKR_DEVICE_MEMORY";
	case CKR_DEVICE_REMOVED:
		return "CKR_DEVICE_REMOVED";
	case CKR_ENCRYPTED_DATA_INVALID:
		return "CKR_ENCRYPTED_DATA_INVALID";
	case CKR_ENCRYPTED_DATA_LEN_RANGE:
		return "CKR_ENCRYPTED_DATA_LEN_RANGE";
	case CKR_KEY_HANDLE_INVALID:
		return "CKR_KEY_HANDLE_INVALID";
	case CKR_MECHANISM_INVALID:
		return "CKR_MECHANISM_INVALID";
	case CKR_MECHANISM_PARAM_INVALID:
		return "CKR_MECHANISM_PARAM_INVALID";
	case CKR_OBJECT_HANDLE_INVALID:
		return "CKR_OBJECT_HANDLE_INVALID";
	case CKR_OPERATION_ACTIVE:
		return "CKR_OPERATION_ACTIVE";
	case CKR_PIN_INCORRECT:
		return "CKR_PIN_INCORRECT";
	case CKR_PIN_LOCKED:
		return "CKR_PIN_LOCKED";
	case CKR_SESSION_CLOSED:
		return "CKR_SESSION_CLOSED";
	case CKR_SESSION_HANDLE_INVALID:
		return "CKR_SESSION_HANDLE_INVALID";
	case CKR_TOKEN_NOT_PRESENT:
		return "CKR_TOKEN_NOT_PRESENT";
	case CKR_TOKEN_NOT_RECOGNIZED:
		return "CKR_TOKEN_NOT_RECOGNIZED";
	case CKR_USER_NOT_LOGGED_IN:
		return "CKR_USER_NOT_LOGGED_IN";
	case CKR_USER_ALREADY_LOGGED_IN:
		return "CKR_USER_ALREADY_LOGGED_IN";
	case CKR_USER_PIN_NOT_INITIALIZED:
		return "CKR_USER_PIN_NOT_INITIALIZED";
	case CKR_CRYPTOKI_NOT_INITIALIZED:
		return "CKR_CRYPTOKI_NOT_INITIALIZED";
	case CKR_BUFFER_TOO_SMALL:
		return "CKR_BUFFER_TOO_SMALL";
	case CKR_TEMPLATE_INCONSISTENT:
		return "CKR_TEMPLATE_INCONSISTENT";
	case CKR_ATTRIBUTE_VALUE_INVALID:
		return "CKR_ATTRIBUTE_VALUE_INVALID";
	case CKR_ATTRIBUTE_TYPE_INVALID:
		return "CKR_ATTRIBUTE_TYPE_INVALID";
	case CKR_ATTRIBUTE_READ_ONLY:
		return "CKR_ATTRIBUTE_READ_ONLY";
	case CKR_TEMPLATE_INCOMPLETE:
		return "CKR_TEMPLATE_INCOMPLETE";
	case CKR_KEY_TYPE_INCONSISTENT:
		return "CKR_KEY_TYPE_INCONSISTENT";
	case CKR_KEY_FUNCTION_NOT_PERMITTED:
		return "CKR_KEY_FUNCTION_NOT_PERMITTED";
	case CKR_WRAPPED_KEY_INVALID:
		return "CKR_WRAPPED_KEY_INVALID";
	case CKR_WRAPPED_KEY_LEN_RANGE:
		return "CKR_WRAPPED_KEY_LEN_RANGE";
	case CKR_UNWRAPPING_KEY_HANDLE_INVALID:
		return "CKR_UNWRAPPING_KEY_HANDLE_INVALID";
	case CKR_UNWRAPPING_KEY_SIZE_RANGE:
		return "CKR_UNWRAPPING_KEY_SIZE_RANGE";
	case CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT:
		return "CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT";
	default:
		return "CKR_(other)";
	}
}

bool p11_rv_is_token_lost(CK_RV rv)
{
	switch (rv) {
	case CKR_DEVICE_ERROR:
	case CKR_DEVICE_REMOVED:
	case CKR_DEVICE_MEMORY:
	case CKR_TOKEN_NOT_PRESENT:
	case CKR_TOKEN_NOT_RECOGNIZED:
	case CKR_SESSION_CLOSED:
	case CKR_SESSION_HANDLE_INVALID:
	case CKR_USER_NOT_LOGGED_IN:
	case CKR_CRYPTOKI_NOT_INITIALIZED:
	case CKR_SLOT_ID_INVALID:
	case CKR_KEY_HANDLE_INVALID:
	case CKR_OBJECT_HANDLE_INVALID:
		return true;
	default:
		return false;
	}
}

/*
 * Where p11-kit registers modules: the system's configuration, which
 * overrides the packages'. Only these, not a user's: the broker must not
 * load what its user's home says.
 */
static const char *const module_config_dirs[] = { "/etc/pkcs11/modules",
						  KB_P11_MODULE_CONFIGS };

/*
 * The library a registered module's NAME.module names ("module: PATH",
 * relative paths being p11-kit's module directory's), into path; false
 * if no configuration names one. Read here so that only that module is
 * loaded: loading every registered one (p11_kit_modules_load) would
 * bring their code, and the threads some start, into the broker.
 */
static bool registered_path(const char *name, char *path, size_t pathlen)
{
	char file[512], line[1024], *v, *end;
	bool found = false;
	size_t i;
	FILE *f;

	for (i = 0;
	     i < sizeof(module_config_dirs) / sizeof(*module_config_dirs);
	     i++) {
		snprintf(file, sizeof(file), "%s/%s.module",
			 module_config_dirs[i], name);
		if ((f = fopen(file, "re")) == NULL)
			continue;
		while (!found && fgets(line, sizeof(line), f) != NULL) {
			if (strncmp(line, "module:", 7) != 0)
				continue;
			for (v = line + 7; *v == ' ' || *v == '\t'; v++)
				;
			end = v + strcspn(v, "\r\n");
			while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
				end--;
			*end = '\0';
			if (*v != '\0' && (size_t)(end - v) < pathlen) {
				memcpy(path, v, (size_t)(end - v) + 1);
				found = true;
			}
		}
		fclose(f);
		if (found)
			return true;
	}
	return false;
}

/* Loads a registered module by its p11-kit name, and no other. */
static CK_FUNCTION_LIST *load_registered(const char *name)
{
	char path[512];

	if (strchr(name, '/') != NULL ||
	    !registered_path(name, path, sizeof(path)))
		return NULL;
	return p11_kit_module_load(path, P11_KIT_MODULE_UNMANAGED);
}

/* Loads module (a path or a registered name), not yet initialised. */
static CK_FUNCTION_LIST *load_module(const char *module, char *err,
				     size_t errlen)
{
	CK_FUNCTION_LIST *fn;

	if (module[0] == '/')
		fn = p11_kit_module_load(module, P11_KIT_MODULE_UNMANAGED);
	else
		fn = load_registered(module);
	if (fn == NULL)
		snprintf(
			err, errlen, "cannot load PKCS#11 module '%s': %s",
			module,
			module[0] == '/' ?
				p11_kit_message() :
				"no p11-kit module of that name is registered "
				"in /etc/pkcs11/modules or " KB_P11_MODULE_CONFIGS
				" (p11-kit list-modules shows them), or its "
				"library does not load");
	return fn;
}

int p11_token_check_module(const char *module, char *err, size_t errlen)
{
	CK_FUNCTION_LIST *fn = load_module(module, err, errlen);

	if (fn == NULL)
		return KB_ERR_HSM;
	p11_kit_module_release(fn);
	return KB_STATUS_OK;
}

int p11_token_load(const char *module, const char *uri, struct p11_token **out,
		   char *err, size_t errlen)
{
	CK_C_INITIALIZE_ARGS args = { .flags = CKF_OS_LOCKING_OK };
	struct p11_token *tok;
	CK_RV rv;
	int r;

	*out = NULL;
	if ((tok = calloc(1, sizeof(*tok))) == NULL)
		return KB_ERR_NOMEM;
	tok->pin = kb_secure_alloc(PIN_MAX + 1);
	tok->uri = p11_kit_uri_new();
	tok->uri_text = strdup(uri);
	if (tok->pin == NULL || tok->uri == NULL || tok->uri_text == NULL) {
		r = KB_ERR_NOMEM;
		goto out_free;
	}
	if (p11_kit_uri_parse(uri, P11_KIT_URI_FOR_TOKEN, tok->uri) !=
	    P11_KIT_URI_OK) {
		snprintf(err, errlen,
			 "token URI is not a valid PKCS#11 URI "
			 "(RFC 7512)");
		r = KB_ERR_PARAM;
		goto out_free;
	}
	if ((tok->fn = load_module(module, err, errlen)) == NULL) {
		r = KB_ERR_HSM;
		goto out_free;
	}
	rv = tok->fn->C_Initialize(&args);
	if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		snprintf(err, errlen, "C_Initialize of module '%s' failed: %s",
			 module, p11_rv_name(rv));
		p11_kit_module_release(tok->fn);
		tok->fn = NULL;
		r = KB_ERR_HSM;
		goto out_free;
	}
	*out = tok;
	return KB_STATUS_OK;
out_free:
	p11_token_free(tok);
	return r;
}

void p11_token_free(struct p11_token *tok)
{
	if (tok == NULL)
		return;
	if (tok->fn != NULL) {
		tok->fn->C_Finalize(NULL);
		p11_kit_module_release(tok->fn);
	}
	if (tok->uri != NULL)
		p11_kit_uri_free(tok->uri);
	kb_secure_free(tok->pin, PIN_MAX + 1);
	free(tok->uri_text);
	free(tok);
}

/* Reads a PIN from fd until end of file; what names it in messages. */
static int read_pin_from(struct p11_token *tok, int fd, const char *what,
			 char *err, size_t errlen)
{
	ssize_t n;
	size_t len = 0;

	while ((n = read(fd, tok->pin + len, PIN_MAX + 1 - len)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(err, errlen, "%s: %s", what, strerror(errno));
			goto out_wipe;
		}
		len += (size_t)n;
		if (len == PIN_MAX + 1)
			break;
	}
	while (len > 0 &&
	       (tok->pin[len - 1] == '\n' || tok->pin[len - 1] == '\r'))
		len--;
	if (len == 0 || len > PIN_MAX) {
		snprintf(err, errlen, "%s: PIN must be 1-%d bytes", what,
			 PIN_MAX);
		goto out_wipe;
	}
	tok->pinlen = len;
	return KB_STATUS_OK;
out_wipe:
	kb_wipe(tok->pin, PIN_MAX + 1);
	tok->pinlen = 0;
	return KB_ERR_PIN;
}

int p11_token_read_pin(struct p11_token *tok, const char *path, char *err,
		       size_t errlen)
{
	char why[384], what[320];
	int fd, r;

	if ((fd = kb_secret_file_open(path, why, sizeof(why))) < 0) {
		snprintf(err, errlen, "PIN file %s", why);
		return KB_ERR_PIN;
	}
	snprintf(what, sizeof(what), "PIN file %s", path);
	r = read_pin_from(tok, fd, what, err, errlen);
	close(fd);
	return r;
}

int p11_token_send_pin(const struct p11_token *tok, int fd)
{
	ssize_t n;

	if (tok->pinlen == 0)
		return EINVAL;
	do
		n = write(fd, tok->pin, tok->pinlen);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno;
	return (size_t)n == tok->pinlen ? 0 : EIO;
}

int p11_token_receive_pin(struct p11_token *tok, int fd, char *err,
			  size_t errlen)
{
	return read_pin_from(tok, fd, "the PIN from the writer", err, errlen);
}

/* Lists slots that have a token; *slots is malloc'ed. */
static int list_slots(struct p11_token *tok, CK_SLOT_ID **slots,
		      CK_ULONG *count)
{
	CK_RV rv;

	*slots = NULL;
	if ((rv = tok->fn->C_GetSlotList(CK_TRUE, NULL, count)) != CKR_OK)
		return KB_ERR_HSM;
	if ((*slots = calloc(*count + 1, sizeof(**slots))) == NULL)
		return KB_ERR_NOMEM;
	if ((rv = tok->fn->C_GetSlotList(CK_TRUE, *slots, count)) != CKR_OK) {
		free(*slots);
		*slots = NULL;
		return KB_ERR_HSM;
	}
	return KB_STATUS_OK;
}

/*
 * No token matches: where to look, the module's own configuration first,
 * since init-token would otherwise make a second token in the wrong place.
 */
static void no_token_hint(const struct p11_token *tok, char *err, size_t errlen)
{
	char where[320];

	p11_store_where(tok->fn, where, sizeof(where));
	snprintf(err, errlen,
		 "no initialised token matches '%.200s'; check %s; only for "
		 "a new token, keybrokerctl init-token makes one there",
		 tok->uri_text, where);
}

int p11_token_select(struct p11_token *tok, char *err, size_t errlen)
{
	CK_TOKEN_INFO info;
	CK_SLOT_ID *slots;
	CK_ULONG count, i, matches = 0;
	int r;

	tok->selected = false;
	if ((r = list_slots(tok, &slots, &count)) != KB_STATUS_OK) {
		snprintf(err, errlen, "cannot list PKCS#11 slots");
		return r;
	}
	for (i = 0; i < count; i++) {
		if (tok->fn->C_GetTokenInfo(slots[i], &info) != CKR_OK ||
		    !(info.flags & CKF_TOKEN_INITIALIZED) ||
		    p11_kit_uri_match_token_info(tok->uri, &info) != 1)
			continue;
		if (matches++ == 0) {
			tok->slot = slots[i];
			memcpy(tok->label, info.label, 32);
			tok->label[32] = '\0';
		}
	}
	free(slots);
	if (matches != 1) {
		if (matches == 0)
			no_token_hint(tok, err, errlen);
		else
			snprintf(err, errlen,
				 "%lu tokens match '%.200s'; make "
				 "the URI more specific (e.g. add serial=)",
				 (unsigned long)matches, tok->uri_text);
		return matches == 0 ? KB_ERR_HSM : KB_ERR_PARAM;
	}
	for (i = 32; i > 0 && tok->label[i - 1] == ' '; i--)
		tok->label[i - 1] = '\0';
	tok->selected = true;
	return KB_STATUS_OK;
}

int p11_token_open_session(struct p11_token *tok, bool rw,
			   CK_SESSION_HANDLE *out, char *err, size_t errlen)
{
	CK_FLAGS flags = CKF_SERIAL_SESSION | (rw ? CKF_RW_SESSION : 0);
	CK_RV rv;

	if (!tok->selected) {
		snprintf(err, errlen, "no token selected");
		return KB_ERR_HSM;
	}
	rv = tok->fn->C_OpenSession(tok->slot, flags, NULL, NULL, out);
	if (rv != CKR_OK) {
		snprintf(err, errlen, "C_OpenSession on token '%s': %s",
			 tok->label, p11_rv_name(rv));
		return KB_ERR_HSM;
	}
	rv = tok->fn->C_Login(*out, CKU_USER, tok->pin, tok->pinlen);
	if (rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN)
		return KB_STATUS_OK;
	snprintf(err, errlen, "login to token '%s' failed: %s%s", tok->label,
		 p11_rv_name(rv),
		 rv == CKR_PIN_INCORRECT ? " (wrong PIN in the PIN file)" : "");
	tok->fn->C_CloseSession(*out);
	return rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LOCKED ? KB_ERR_PIN :
								 KB_ERR_HSM;
}

void p11_token_close_session(struct p11_token *tok, CK_SESSION_HANDLE h)
{
	tok->fn->C_CloseSession(h);
}

static int read_pin_file(const char *path, unsigned char *pin, size_t *len,
			 char *err, size_t errlen)
{
	struct p11_token tmp = { .pin = pin };
	int r;

	r = p11_token_read_pin(&tmp, path, err, errlen);
	*len = tmp.pinlen;
	return r;
}

int p11_token_initialise(struct p11_token *tok, CK_SLOT_ID slot,
			 const char *so_pin_file, char *err, size_t errlen)
{
	CK_TOKEN_INFO info, *want = p11_kit_uri_get_token_info(tok->uri);
	unsigned char *so_pin, label[32];
	CK_SESSION_HANDLE h;
	CK_SLOT_ID *slots;
	CK_ULONG count, i;
	size_t so_len = 0;
	CK_RV rv;
	int r;

	if (tok->pinlen == 0) {
		snprintf(err, errlen, "no user PIN read");
		return KB_ERR_PIN;
	}
	if (p11_token_select(tok, err, errlen) == KB_STATUS_OK) {
		snprintf(err, errlen, "token '%s' is already initialised",
			 tok->label);
		return KB_ERR_CONFLICT;
	}
	memcpy(label, want->label, sizeof(label));
	if (label[0] == ' ' || label[0] == '\0') {
		snprintf(err, errlen,
			 "the token URI must name the token "
			 "label to create (pkcs11:token=NAME)");
		return KB_ERR_PARAM;
	}
	if ((so_pin = kb_secure_alloc(PIN_MAX + 1)) == NULL)
		return KB_ERR_NOMEM;
	if ((r = read_pin_file(so_pin_file, so_pin, &so_len, err, errlen)) != 0)
		goto out_pin;
	if ((r = list_slots(tok, &slots, &count)) != KB_STATUS_OK) {
		snprintf(err, errlen, "cannot list PKCS#11 slots");
		goto out_pin;
	}
	for (i = 0; i < count; i++)
		if ((slot == P11_ANY_SLOT || slots[i] == slot) &&
		    tok->fn->C_GetTokenInfo(slots[i], &info) == CKR_OK &&
		    !(info.flags & CKF_TOKEN_INITIALIZED))
			break;
	if (i == count) {
		if (slot == P11_ANY_SLOT)
			snprintf(err, errlen,
				 "no uninitialised token slot available");
		else
			snprintf(err, errlen,
				 "slot %lu has no uninitialised token "
				 "(keybrokerctl slots lists them)",
				 (unsigned long)slot);
		r = KB_ERR_HSM;
		goto out_slots;
	}
	if ((r = p11_store_check_space(tok->fn, err, errlen)) != KB_STATUS_OK)
		goto out_slots;
	r = KB_ERR_HSM;
	rv = tok->fn->C_InitToken(slots[i], so_pin, so_len, label);
	if (rv != CKR_OK) {
		snprintf(err, errlen, "C_InitToken: %s", p11_rv_name(rv));
		goto out_slots;
	}
	rv = tok->fn->C_OpenSession(
		slots[i], CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h);
	if (rv != CKR_OK) {
		snprintf(err, errlen, "C_OpenSession: %s", p11_rv_name(rv));
		goto out_slots;
	}
	if ((rv = tok->fn->C_Login(h, CKU_SO, so_pin, so_len)) != CKR_OK ||
	    (rv = tok->fn->C_InitPIN(h, tok->pin, tok->pinlen)) != CKR_OK) {
		snprintf(err, errlen, "setting the user PIN: %s",
			 p11_rv_name(rv));
		goto out_session;
	}
	tok->fn->C_Logout(h);
	r = p11_token_select(tok, err, errlen);
out_session:
	tok->fn->C_CloseSession(h);
out_slots:
	free(slots);
out_pin:
	kb_secure_free(so_pin, PIN_MAX + 1);
	return r;
}

/* A blank-padded PKCS#11 string of len bytes as a C string in out. */
static void padded(char *out, const unsigned char *in, size_t len)
{
	memcpy(out, in, len);
	while (len > 0 && (out[len - 1] == ' ' || out[len - 1] == '\0'))
		len--;
	out[len] = '\0';
}

static long long memory(CK_ULONG v)
{
	return v == CK_UNAVAILABLE_INFORMATION || v == CK_EFFECTIVELY_INFINITE ?
		       -1 :
		       (long long)v;
}

int p11_token_slots(struct p11_token *tok, struct p11_slot **out, size_t *n,
		    char *err, size_t errlen)
{
	CK_SLOT_ID *ids = NULL;
	CK_SLOT_INFO si;
	CK_TOKEN_INFO ti;
	CK_ULONG count = 0, i;
	struct p11_slot *s;

	*out = NULL;
	*n = 0;
	if (tok->fn->C_GetSlotList(CK_FALSE, NULL, &count) != CKR_OK ||
	    (ids = calloc(count + 1, sizeof(*ids))) == NULL ||
	    tok->fn->C_GetSlotList(CK_FALSE, ids, &count) != CKR_OK ||
	    (*out = calloc(count + 1, sizeof(**out))) == NULL) {
		snprintf(err, errlen, "cannot list the module's slots");
		free(ids);
		return KB_ERR_HSM;
	}
	for (i = 0; i < count; i++) {
		s = &(*out)[*n];
		s->id = ids[i];
		if (tok->fn->C_GetSlotInfo(ids[i], &si) != CKR_OK)
			continue;
		padded(s->description, si.slotDescription,
		       sizeof(si.slotDescription));
		s->free_private = s->free_public = -1;
		s->has_token = (si.flags & CKF_TOKEN_PRESENT) &&
			       tok->fn->C_GetTokenInfo(ids[i], &ti) == CKR_OK;
		if (s->has_token) {
			padded(s->label, ti.label, sizeof(ti.label));
			padded(s->serial, ti.serialNumber,
			       sizeof(ti.serialNumber));
			padded(s->manufacturer, ti.manufacturerID,
			       sizeof(ti.manufacturerID));
			padded(s->model, ti.model, sizeof(ti.model));
			s->flags = ti.flags;
			s->free_private = memory(ti.ulFreePrivateMemory);
			s->free_public = memory(ti.ulFreePublicMemory);
			s->selected = (ti.flags & CKF_TOKEN_INITIALIZED) &&
				      p11_kit_uri_match_token_info(tok->uri,
								   &ti) == 1;
		}
		(*n)++;
	}
	free(ids);
	return KB_STATUS_OK;
}

/* A session on the selected token, not logged in. */
static int plain_session(struct p11_token *tok, CK_SESSION_HANDLE *h, char *err,
			 size_t errlen)
{
	CK_RV rv;

	if (!tok->selected) {
		snprintf(err, errlen, "no token selected");
		return KB_ERR_HSM;
	}
	rv = tok->fn->C_OpenSession(
		tok->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, h);
	if (rv == CKR_OK)
		return KB_STATUS_OK;
	snprintf(err, errlen, "C_OpenSession on token '%s': %s", tok->label,
		 p11_rv_name(rv));
	return KB_ERR_HSM;
}

/*
 * Changes the user PIN of the selected token: as the user, from the PIN
 * read to the one in file (C_SetPIN); or, with as_so, as the SO whose PIN
 * is in file, to the PIN read (C_InitPIN).
 */
static int change_pin(struct p11_token *tok, const char *file, bool as_so,
		      char *err, size_t errlen)
{
	unsigned char *pin = kb_secure_alloc(PIN_MAX + 1);
	CK_SESSION_HANDLE h;
	size_t len = 0;
	CK_RV rv;
	int r;

	if (pin == NULL)
		return KB_ERR_NOMEM;
	if ((r = read_pin_file(file, pin, &len, err, errlen)) != 0 ||
	    (r = plain_session(tok, &h, err, errlen)) != 0)
		goto out;
	if (as_so) {
		if ((rv = tok->fn->C_Login(h, CKU_SO, pin, len)) == CKR_OK)
			rv = tok->fn->C_InitPIN(h, tok->pin, tok->pinlen);
	} else {
		rv = tok->fn->C_Login(h, CKU_USER, tok->pin, tok->pinlen);
		if (rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN)
			rv = tok->fn->C_SetPIN(h, tok->pin, tok->pinlen, pin,
					       len);
	}
	if (rv != CKR_OK) {
		snprintf(err, errlen, "%s the user PIN of token '%s'%s: %s%s",
			 as_so ? "setting" : "changing", tok->label,
			 as_so ? " as the SO" : "", p11_rv_name(rv),
			 rv != CKR_PIN_INCORRECT ? "" :
			 as_so			 ? " (wrong SO PIN)" :
						   " (the PIN file's PIN is not "
						   "the current one)");
		r = rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LOCKED ?
			    KB_ERR_PIN :
			    KB_ERR_HSM;
	}
	tok->fn->C_Logout(h);
	tok->fn->C_CloseSession(h);
out:
	kb_secure_free(pin, PIN_MAX + 1);
	return r;
}

int p11_token_set_pin(struct p11_token *tok, const char *new_pin_file,
		      char *err, size_t errlen)
{
	return change_pin(tok, new_pin_file, false, err, errlen);
}

int p11_token_init_pin(struct p11_token *tok, const char *so_pin_file,
		       char *err, size_t errlen)
{
	return change_pin(tok, so_pin_file, true, err, errlen);
}

int p11_token_reinitialise(struct p11_token *tok, char *err, size_t errlen)
{
	CK_C_INITIALIZE_ARGS args = { .flags = CKF_OS_LOCKING_OK };
	CK_RV rv;

	tok->selected = false;
	tok->fn->C_Finalize(NULL);
	rv = tok->fn->C_Initialize(&args);
	if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		snprintf(err, errlen, "C_Initialize: %s", p11_rv_name(rv));
		return KB_ERR_HSM;
	}
	return KB_STATUS_OK;
}

void p11_token_close_all_sessions(struct p11_token *tok)
{
	tok->fn->C_CloseAllSessions(tok->slot);
}

int p11_token_check_space(struct p11_token *tok, char *err, size_t errlen)
{
	return p11_store_check_space(tok->fn, err, errlen);
}

int p11_token_lock_storage(struct p11_token *tok, int wait_ms, char *err,
			   size_t errlen)
{
	return p11_store_lock(tok->fn, wait_ms, err, errlen);
}

CK_FUNCTION_LIST *p11_token_functions(const struct p11_token *tok)
{
	return tok->fn;
}

const char *p11_token_label(const struct p11_token *tok)
{
	return tok->label;
}

CK_SLOT_ID p11_token_slot(const struct p11_token *tok)
{
	return tok->slot;
}
