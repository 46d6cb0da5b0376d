/* SPDX-License-Identifier: MIT */
/*
 * One PKCS#11 token: the module that serves it (loaded through p11-kit and
 * initialised for multi-threaded use), the slot selected by an RFC 7512
 * URI, and the user PIN kept in locked, non-dumpable memory for
 * re-login after the token comes back.
 */
#ifndef P11_TOKEN_H
#define P11_TOKEN_H

#include <p11-kit/pkcs11.h>
#include <stdbool.h>
#include <stddef.h>

#include "kb_error.h"

struct p11_token;

/*
 * Loads module (a p11-kit registered module name such as "softhsm2", or an
 * absolute path), initialises it with CKF_OS_LOCKING_OK and parses uri.
 */
int p11_token_load(const char *module, const char *uri, struct p11_token **out,
		   char *err, size_t errlen);
void p11_token_free(struct p11_token *tok);

/* Checks that module can be loaded (without initialising it). */
int p11_token_check_module(const char *module, char *err, size_t errlen);

/*
 * Reads the user PIN from path, opened with kb_secret_file_open (which
 * says what it refuses).
 */
int p11_token_read_pin(struct p11_token *tok, const char *path, char *err,
		       size_t errlen);

/*
 * The PIN handed to a process this one starts, on a pipe: send writes
 * tok's PIN to fd (a pipe's write end, which holds it whole) and returns
 * 0 or an errno; receive reads it from fd until end of file, as
 * p11_token_read_pin reads a file.
 */
int p11_token_send_pin(const struct p11_token *tok, int fd);
int p11_token_receive_pin(struct p11_token *tok, int fd, char *err,
			  size_t errlen);

/* Selects the initialised token that matches the URI (exactly one). */
int p11_token_select(struct p11_token *tok, char *err, size_t errlen);

/* Opens a session on the selected token and makes sure it is logged in. */
int p11_token_open_session(struct p11_token *tok, bool rw,
			   CK_SESSION_HANDLE *out, char *err, size_t errlen);
void p11_token_close_session(struct p11_token *tok, CK_SESSION_HANDLE h);

/*
 * Provisions a fresh token: in slot (or, with P11_ANY_SLOT, the first
 * slot whose token is not initialised), labels the token with the URI's
 * token= attribute, sets the SO PIN from so_pin_file and the user PIN
 * from the PIN already read.
 */
#define P11_ANY_SLOT ((CK_SLOT_ID)-1)
int p11_token_initialise(struct p11_token *tok, CK_SLOT_ID slot,
			 const char *so_pin_file, char *err, size_t errlen);

/* One slot of the module, as an admin provisioning it sees it. */
struct p11_slot {
	CK_SLOT_ID id;
	char description[65];
	bool has_token;
	char label[33], serial[17], manufacturer[33], model[17];
	CK_FLAGS flags; /* the token's (CKF_TOKEN_INITIALIZED, ...) */
	long long free_private, free_public; /* bytes; -1: not known */
	bool selected; /* an initialised token the URI matches */
};

/* Every slot of the module, with or without a token; *out malloc'ed. */
int p11_token_slots(struct p11_token *tok, struct p11_slot **out, size_t *n,
		    char *err, size_t errlen);

/*
 * Changes the user PIN of the selected token from the one read (the
 * broker's PIN file) to the one in new_pin_file (C_SetPIN, as the user).
 */
int p11_token_set_pin(struct p11_token *tok, const char *new_pin_file,
		      char *err, size_t errlen);

/*
 * Sets the user PIN of the selected token to the one read, as the SO
 * whose PIN is in so_pin_file (C_InitPIN): for a user PIN locked or lost.
 */
int p11_token_init_pin(struct p11_token *tok, const char *so_pin_file,
		       char *err, size_t errlen);

/*
 * Finalises and initialises the module again, for tokens that come back
 * only to a fresh C_Initialize. No other thread may be in the module.
 */
int p11_token_reinitialise(struct p11_token *tok, char *err, size_t errlen);

/* Closes every session of this process on the token (for recovery). */
void p11_token_close_all_sessions(struct p11_token *tok);

/*
 * Whether the token's storage has room for an admin write (p11_store.h):
 * KB_STATUS_OK, or KB_ERR_STORAGE with err saying what is short.
 */
int p11_token_check_space(struct p11_token *tok, char *err, size_t errlen);
/* p11_store_lock and p11_store_unlock for tok's storage (p11_store.h). */
int p11_token_lock_storage(struct p11_token *tok, int wait_ms, char *err,
			   size_t errlen);

CK_FUNCTION_LIST *p11_token_functions(const struct p11_token *tok);
const char *p11_token_label(const struct p11_token *tok);
CK_SLOT_ID p11_token_slot(const struct p11_token *tok);

/* True if rv means the token or session is gone, not a bad request. */
bool p11_rv_is_token_lost(CK_RV rv);
const char *p11_rv_name(CK_RV rv);

#endif
