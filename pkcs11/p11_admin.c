// SPDX-License-Identifier: MIT
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p11_internal.h"

/* ---- the admin session ---- */

/* Serialises admin work and keeps recovery out of the module meanwhile. */
void p11_admin_enter(struct p11_keystore *ks)
{
	pthread_mutex_lock(&ks->admin_lock);
	pthread_rwlock_rdlock(&ks->module_lock);
}

void p11_admin_leave(struct p11_keystore *ks)
{
	pthread_rwlock_unlock(&ks->module_lock);
	pthread_mutex_unlock(&ks->admin_lock);
}

/* ---- what a load refused ---- */

void p11_note(struct p11_findings *f, const char *fmt, ...)
{
	size_t room = sizeof(f->text) - f->len;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(f->text + f->len, room, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n + 1 >= room) {
		f->text[f->len] = '\0';
		f->dropped++;
		return;
	}
	f->len += (size_t)n;
	f->text[f->len++] = '\n';
	f->text[f->len] = '\0';
	f->n++;
}

/* ---- reading objects ---- */

int p11_find_all(struct p11_keystore *ks, CK_ATTRIBUTE *tmpl, CK_ULONG ntmpl,
		 CK_OBJECT_HANDLE **out, size_t *count)
{
	CK_OBJECT_HANDLE *objs = NULL, *grown;
	CK_ULONG got;
	size_t n = 0, cap = 0;
	CK_RV rv;

	*out = NULL;
	*count = 0;
	if ((rv = ks->fn->C_FindObjectsInit(ks->admin, tmpl, ntmpl)) != CKR_OK)
		return P11_ERR_HSM;
	for (;;) {
		if (cap - n < FIND_BATCH) {
			cap += FIND_BATCH * 4;
			if ((grown = realloc(objs, cap * sizeof(*objs))) ==
			    NULL) {
				ks->fn->C_FindObjectsFinal(ks->admin);
				free(objs);
				return P11_ERR_NOMEM;
			}
			objs = grown;
		}
		rv = ks->fn->C_FindObjects(ks->admin, objs + n, FIND_BATCH,
					   &got);
		if (rv != CKR_OK) {
			ks->fn->C_FindObjectsFinal(ks->admin);
			free(objs);
			return P11_ERR_HSM;
		}
		n += got;
		if (got == 0)
			break;
	}
	ks->fn->C_FindObjectsFinal(ks->admin);
	*out = objs;
	*count = n;
	return P11_OK;
}

/* Reads one attribute of at most max bytes. */
int p11_get_attr(struct p11_keystore *ks, CK_OBJECT_HANDLE obj,
		 CK_ATTRIBUTE_TYPE type, void *buf, size_t max, size_t *len)
{
	CK_ATTRIBUTE a = { type, NULL, 0 };
	CK_RV rv;

	rv = ks->fn->C_GetAttributeValue(ks->admin, obj, &a, 1);
	if (rv != CKR_OK)
		return p11_rv_is_token_lost(rv) ? P11_ERR_HSM : P11_ERR_PARAM;
	if (a.ulValueLen == (CK_ULONG)-1 || a.ulValueLen > max)
		return P11_ERR_PARAM;
	a.pValue = buf;
	rv = ks->fn->C_GetAttributeValue(ks->admin, obj, &a, 1);
	if (rv != CKR_OK)
		return p11_rv_is_token_lost(rv) ? P11_ERR_HSM : P11_ERR_PARAM;
	*len = a.ulValueLen;
	return P11_OK;
}

int p11_label_taken(struct p11_keystore *ks, const char *label, bool *taken)
{
	CK_ATTRIBUTE t = { CKA_LABEL, (void *)label, strlen(label) };
	CK_OBJECT_HANDLE *found;
	size_t n;
	int r;

	if ((r = p11_find_all(ks, &t, 1, &found, &n)) == P11_OK) {
		free(found);
		*taken = n > 0;
	}
	return r;
}

int p11_get_attrs(struct p11_keystore *ks, CK_OBJECT_HANDLE obj,
		  CK_ATTRIBUTE *t, size_t n)
{
	CK_RV rv = ks->fn->C_GetAttributeValue(ks->admin, obj, t, n);
	size_t i;

	switch (rv) {
	case CKR_OK:
	case CKR_ATTRIBUTE_SENSITIVE:
	case CKR_ATTRIBUTE_TYPE_INVALID:
	case CKR_BUFFER_TOO_SMALL:
		/* The module marked each attribute it could not return. */
		return P11_OK;
	default:
		for (i = 0; i < n; i++)
			t[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
		return p11_rv_is_token_lost(rv) ? P11_ERR_HSM : P11_ERR_PARAM;
	}
}

/* A CK_BBOOL attribute; -1 if it cannot be read. */
int p11_get_bool(struct p11_keystore *ks, CK_OBJECT_HANDLE obj,
		 CK_ATTRIBUTE_TYPE type)
{
	CK_BBOOL v;
	size_t len;

	if (p11_get_attr(ks, obj, type, &v, sizeof(v), &len) != P11_OK ||
	    len != sizeof(v))
		return -1;
	return v == CK_TRUE;
}

/* What a private key that stays in the token has, in the order checked. */
static const struct {
	CK_ATTRIBUTE_TYPE type;
	CK_BBOOL want;
	const char *why;
} protection[P11_PROTECTION_ATTRS] = {
	/* Public objects can be made without the PIN. */
	{ CKA_PRIVATE, CK_TRUE, "is a public object (made without the PIN?)" },
	{ CKA_SENSITIVE, CK_TRUE, "is not sensitive" },
	{ CKA_EXTRACTABLE, CK_FALSE, "is extractable" },
	{ CKA_LOCAL, CK_TRUE, "was not generated in the token (CKA_LOCAL)" },
	{ CKA_ALWAYS_SENSITIVE, CK_TRUE, "was not always sensitive" },
	{ CKA_NEVER_EXTRACTABLE, CK_TRUE, "was extractable once" },
};

void p11_protection_template(CK_ATTRIBUTE *t, CK_BBOOL *vals)
{
	size_t i;

	for (i = 0; i < P11_PROTECTION_ATTRS; i++)
		t[i] = (CK_ATTRIBUTE){ protection[i].type, &vals[i],
				       sizeof(vals[i]) };
}

bool p11_protection_judge(const CK_ATTRIBUTE *t, const char *what,
			  struct p11_findings *f)
{
	size_t i;

	for (i = 0; i < P11_PROTECTION_ATTRS; i++)
		if (t[i].ulValueLen != sizeof(CK_BBOOL) ||
		    (*(CK_BBOOL *)t[i].pValue == CK_TRUE) !=
			    (protection[i].want == CK_TRUE)) {
			p11_note(f, "%s: the private key %s; refused", what,
				 protection[i].why);
			return false;
		}
	return true;
}

bool p11_key_protected(struct p11_keystore *ks, CK_OBJECT_HANDLE priv,
		       const char *what, struct p11_findings *f)
{
	CK_ATTRIBUTE t[P11_PROTECTION_ATTRS];
	CK_BBOOL vals[P11_PROTECTION_ATTRS];

	p11_protection_template(t, vals);
	p11_get_attrs(ks, priv, t, P11_PROTECTION_ATTRS);
	return p11_protection_judge(t, what, f);
}

/* ---- writing objects ---- */

int p11_keystore_confirm(struct p11_keystore *ks, const struct p11_expect *want,
			 size_t n, char *err, size_t errlen)
{
	if (ks->confirm.exe == NULL) {
		snprintf(err, errlen,
			 "this program cannot confirm token writes by a fresh "
			 "load");
		return P11_ERR_UNSUPPORTED;
	}
	return p11_confirm(&ks->confirm, want, n, err, errlen);
}

/* Destroys obj; true if it is gone (or was never kept). */
bool p11_destroy(struct p11_keystore *ks, CK_OBJECT_HANDLE obj, CK_RV *rv)
{
	*rv = ks->fn->C_DestroyObject(ks->admin, obj);
	return *rv == CKR_OK || *rv == CKR_OBJECT_HANDLE_INVALID;
}

/* A new private data object in the token. Needs admin_lock. */
CK_RV p11_create_data(struct p11_keystore *ks, const char *application,
		      const char *label, const char *value,
		      CK_OBJECT_HANDLE *obj)
{
	CK_OBJECT_CLASS cls = CKO_DATA;
	CK_BBOOL yes = CK_TRUE;
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_PRIVATE, &yes, sizeof(yes) },
		{ CKA_APPLICATION, (void *)application, strlen(application) },
		{ CKA_LABEL, (void *)label, strlen(label) },
		{ CKA_VALUE, (void *)value, strlen(value) },
	};

	return ks->fn->C_CreateObject(ks->admin, t, sizeof(t) / sizeof(t[0]),
				      obj);
}

int p11_create_confirmed(struct p11_keystore *ks, const char *application,
			 const char *label, const char *value, bool keep,
			 const char *what, CK_OBJECT_HANDLE *obj, char *err,
			 size_t errlen)
{
	struct p11_expect want = {
		.cls = CKO_DATA,
		.label = label,
		.application = application,
		.value_type = CKA_VALUE,
		.value = value,
		.value_len = strlen(value),
		.what = what,
	};
	char why[384];
	CK_RV rv;
	int r;

	if ((rv = p11_create_data(ks, application, label, value, obj)) !=
	    CKR_OK) {
		snprintf(err, errlen, "storing %s in the token failed: %s",
			 what, p11_rv_name(rv));
		return P11_ERR_HSM;
	}
	if ((r = p11_keystore_confirm(ks, &want, 1, why, sizeof(why))) ==
	    P11_OK)
		return P11_OK;
	if (r == P11_ERR_STORAGE)
		snprintf(err, errlen,
			 "the token did not keep %s (is its storage full?): %s",
			 what, why);
	else
		snprintf(err, errlen,
			 "%s could not be confirmed by a fresh load of the "
			 "token: %s",
			 what, why);
	/* Unconfirmed, it may or may not be stored: take it back. */
	if (!keep && !p11_destroy(ks, *obj, &rv))
		snprintf(err + strlen(err), errlen - strlen(err),
			 "; removing it again failed (%s), so it may still "
			 "take effect",
			 p11_rv_name(rv));
	return P11_ERR_STORAGE;
}
