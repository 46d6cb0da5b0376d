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
 * Opens a file that holds a secret (a PIN) for reading, or returns -1
 * with a message naming path and what is wrong. It must be a regular file
 * (not a symlink, FIFO or device: opening never blocks), inaccessible to
 * others, not group-writable, and owned by root or the effective uid.
 */
int kb_secret_file_open(const char *path, char *err, size_t errlen);

/*
 * Opens path now, as kb_secret_file_open does, and keeps it open for the
 * life of the process: a later kb_secret_file_open of the same path
 * returns a new descriptor of it, read from the start, even after the
 * process lost the right to open it (kb_user_drop). For a tool that
 * drops root before it reads the PINs it was given. 0, or -1 with err.
 * Not thread-safe: before any thread starts.
 */
#define KB_SECRET_KEEP_MAX 4
int kb_secret_file_keep(const char *path, char *err, size_t errlen);

/*
 * Makes the process unable to leave a core dump or be ptrace'd by peers of
 * the same uid. Returns 0 or -1.
 */
int kb_secret_harden_process(void);

#endif
