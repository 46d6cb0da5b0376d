// SPDX-License-Identifier: MIT
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kb_keystore_parts.h"
#include "kb_progress.h"
#include "kb_log.h"
#include "p11_store.h"

/* ---- the admin session ---- */

/* How long admin work waits for another process on the token's storage. */
#define STORAGE_WAIT_MS 30000

void kb_keyadmin_look(struct kb_keystore *ks)
{
	struct p11_match m = { .cls = P11_CLASS_DATA,
			       .label = GENERATION_LABEL,
			       .application = GENERATION_APPLICATION,
			       .private_only = true };
	CK_OBJECT_HANDLE *objs = NULL;
	size_t n;

	if (ks->admin != CK_INVALID_HANDLE &&
	    p11_find(ks->tok, ks->admin, &m, &objs, &n) == KB_STATUS_OK)
		free(objs);
}

/*
 * Serialises admin work with this process's other admin work, with the
 * other processes on a file-backed token (p11_store_lock), and keeps
 * recovery out of the module meanwhile.
 */
void kb_keyadmin_enter(struct kb_keystore *ks)
{
	char err[256];

	/* Waiting for other threads' (and processes') admin work. */
	kb_progress_wait();
	pthread_mutex_lock(&ks->admin_lock);
	ks->storage_lock = p11_token_lock_storage(ks->tok, STORAGE_WAIT_MS, err,
						  sizeof(err));
	/*
	 * A process that holds the token that long is stuck: going on
	 * without the lock is what every process did before it existed,
	 * and a write is still only done once a fresh load reads it back.
	 */
	if (ks->storage_lock == P11_STORE_BUSY ||
	    ks->storage_lock == P11_STORE_FAILED)
		kb_warn("%s; going on without it", err);
	pthread_rwlock_rdlock(&ks->module_lock);
	kb_progress_restart();
	kb_keyadmin_look(ks);
}

bool kb_keyadmin_try_enter(struct kb_keystore *ks)
{
	char err[256];

	if (pthread_mutex_trylock(&ks->admin_lock) != 0)
		return false;
	ks->storage_lock = p11_token_lock_storage(ks->tok, 0, err, sizeof(err));
	if (ks->storage_lock == P11_STORE_BUSY) {
		pthread_mutex_unlock(&ks->admin_lock);
		return false;
	}
	pthread_rwlock_rdlock(&ks->module_lock);
	return true;
}

void kb_keyadmin_leave(struct kb_keystore *ks)
{
	p11_store_unlock(ks->storage_lock);
	ks->storage_lock = P11_STORE_NONE;
	pthread_rwlock_unlock(&ks->module_lock);
	pthread_mutex_unlock(&ks->admin_lock);
}

/* ---- what a load refused ---- */

void kb_keyadmin_note(struct kb_findings *f, const char *fmt, ...)
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

int kb_keyadmin_label_taken(struct kb_keystore *ks, const char *label,
			    bool *taken)
{
	struct p11_match m = { .cls = P11_CLASS_ANY, .label = label };
	CK_OBJECT_HANDLE *found;
	size_t n;
	int r;

	if ((r = p11_find(ks->tok, ks->admin, &m, &found, &n)) ==
	    KB_STATUS_OK) {
		free(found);
		*taken = n > 0;
	}
	return r;
}

/*
 * What a private key that stays in the token has, in the order checked;
 * the last three say it never was anywhere else (origin), which an
 * imported key cannot say.
 */
static const struct {
	unsigned int attr;
	bool want;
	bool origin;
	const char *why;
} protection[] = {
	/* Public objects can be made without the PIN. */
	{ P11_A_PRIVATE, true, false,
	  "is a public object (made without the PIN?)" },
	{ P11_A_SENSITIVE, true, false, "is not sensitive" },
	{ P11_A_EXTRACTABLE, false, false, "is extractable" },
	{ P11_A_LOCAL, true, true,
	  "was not generated in the token (CKA_LOCAL)" },
	{ P11_A_ALWAYS_SENSITIVE, true, true, "was not always sensitive" },
	{ P11_A_NEVER_EXTRACTABLE, true, true, "was extractable once" },
};

bool kb_keyadmin_protection_judge(unsigned int have, unsigned int set,
				  bool imported, const char *what,
				  struct kb_findings *f)
{
	size_t i;

	for (i = 0; i < sizeof(protection) / sizeof(protection[0]); i++)
		if (imported && protection[i].origin)
			continue;
		else if (!(have & protection[i].attr) ||
			 ((set & protection[i].attr) != 0) !=
				 protection[i].want) {
			kb_keyadmin_note(f, "%s: the private key %s; refused",
					 what, protection[i].why);
			return false;
		}
	return true;
}

bool kb_keyadmin_key_protected(struct kb_keystore *ks, CK_OBJECT_HANDLE priv,
			       const char *what, struct kb_findings *f)
{
	struct p11_object o;

	p11_read(ks->tok, ks->admin, priv, KB_KEYADMIN_PROTECTION_ATTRS, &o);
	return kb_keyadmin_protection_judge(o.have, o.set, false, what, f);
}

/* ---- writing objects ---- */

int kb_keyadmin_confirm(struct kb_keystore *ks, const struct p11_expect *want,
			size_t n, char *err, size_t errlen)
{
	if (ks->confirm.exe == NULL) {
		snprintf(err, errlen,
			 "this program cannot confirm token writes by a fresh "
			 "load");
		return KB_ERR_UNSUPPORTED;
	}
	return p11_confirm(&ks->confirm, want, n, err, errlen);
}

int kb_keyadmin_create_confirmed(struct kb_keystore *ks,
				 const char *application, const char *label,
				 const char *value, bool keep, const char *what,
				 CK_OBJECT_HANDLE *obj, char *err,
				 size_t errlen)
{
	struct p11_expect want = {
		.cls = P11_CLASS_DATA,
		.label = label,
		.application = application,
		.value_attr = P11_A_VALUE,
		.value = value,
		.value_len = strlen(value),
		.what = what,
	};
	char why[384];
	CK_RV rv;
	int r;

	if ((rv = p11_create_data(ks->tok, ks->admin, application, label, value,
				  strlen(value), obj)) != CKR_OK) {
		snprintf(err, errlen, "storing %s in the token failed: %s",
			 what, p11_rv_name(rv));
		return KB_ERR_HSM;
	}
	if ((r = kb_keyadmin_confirm(ks, &want, 1, why, sizeof(why))) ==
	    KB_STATUS_OK)
		return KB_STATUS_OK;
	if (r == KB_ERR_STORAGE)
		snprintf(err, errlen,
			 "the token did not keep %s (is its storage full?): %s",
			 what, why);
	else
		snprintf(err, errlen,
			 "%s could not be confirmed by a fresh load of the "
			 "token: %s",
			 what, why);
	/* Unconfirmed, it may or may not be stored: take it back. */
	if (!keep && (rv = p11_destroy(ks->tok, ks->admin, *obj)) != CKR_OK)
		snprintf(err + strlen(err), errlen - strlen(err),
			 "; removing it again failed (%s), so it may still "
			 "take effect",
			 p11_rv_name(rv));
	return KB_ERR_STORAGE;
}
