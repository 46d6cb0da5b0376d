/* SPDX-License-Identifier: MIT */
/*
 * Memory for secrets. Long-lived secrets (the token PIN) live in pages that
 * are locked in RAM and excluded from core dumps; short-lived ones are
 * wiped before they are freed or go out of scope.
 */
#ifndef KB_SECRET_H
#define KB_SECRET_H

#include <stddef.h>

/* Zeroed, mlock'ed, MADV_DONTDUMP memory of n bytes, or NULL. */
void *kb_secure_alloc(size_t n);
/* Wipes and unmaps memory from kb_secure_alloc; NULL is a no-op. */
void kb_secure_free(void *p, size_t n);
/* Wipes n bytes at p, then frees p; NULL is a no-op. */
void kb_wipe_free(void *p, size_t n);
/* Wipes n bytes at p; not optimised away. */
void kb_wipe(void *p, size_t n);

/*
 * Makes the process unable to leave a core dump or be ptrace'd by peers of
 * the same uid. Returns 0 or -1.
 */
int kb_secret_harden_process(void);

#endif
