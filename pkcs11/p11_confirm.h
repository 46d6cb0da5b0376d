/* SPDX-License-Identifier: MIT */
/*
 * Confirming a token write by a fresh load. A module may report a write
 * as done that it did not keep (SoftHSMv2 on a full disk: CKR_OK, a
 * 0-byte object file, an object the next process does not see), and the
 * process that wrote may still see the object in the module's memory. So
 * a write counts only once another process, with its own C_Initialize,
 * login and search, finds the objects and reads the expected values back.
 *
 * That process is the writing program run again: exec'ed, since calling
 * into a module from a fork of a process that initialised it is not safe.
 * The program hands argv[1] == P11_CONFIRM_COMMAND to p11_confirm_main
 * before anything else. The check only reads.
 */
#ifndef P11_CONFIRM_H
#define P11_CONFIRM_H

#include <p11-kit/pkcs11.h>
#include <stddef.h>

#include "p11_object.h"
#include "p11_token.h"

#define P11_CONFIRM_COMMAND "__confirm-token-write"
#define P11_CONFIRM_MAX 4 /* objects in one check */
#define P11_CONFIRM_ID_MAX 64 /* bytes of a CKA_ID to look for */
#define P11_CONFIRM_VALUE_MAX 65536 /* bytes of an attribute read back */
#define P11_CONFIRM_TIMEOUT_S 60

/* Exit statuses of the check. */
enum p11_confirm_status {
	P11_CONFIRM_FOUND = 0, /* every object there, values as expected */
	P11_CONFIRM_MISSING = 1, /* at least one not there or different */
	P11_CONFIRM_ERROR = 2, /* the check could not be made */
};

/* One object a fresh load must find. */
struct p11_expect {
	enum p11_class cls;
	const char *label; /* CKA_LABEL */
	const unsigned char *id; /* CKA_ID, or NULL */
	size_t id_len;
	const char *application; /* CKA_APPLICATION, or NULL */
	/*
	 * An attribute that must read back as value[0..value_len):
	 * P11_A_VALUE, or P11_A_MODULUS (compared without leading zero
	 * bytes, as p11_read returns it).
	 */
	unsigned int value_attr;
	const void *value; /* NULL: none */
	size_t value_len;
	const char *what; /* for messages: "the new metadata object" */
};

/*
 * The token to look in, as the writer opened it. The check logs in with
 * the writer's PIN, passed on a pipe (fd P11_CONFIRM_PIN_FD): it need
 * not be able to read the PIN file, which a broker that dropped root
 * cannot.
 */
struct p11_confirm_target {
	const char *exe; /* the program to run, e.g. "/proc/self/exe" */
	const char *module;
	const char *uri;
	const struct p11_token *tok; /* the writer's, with its PIN read */
};

#define P11_CONFIRM_PIN_FD 3

/*
 * Runs the check for want[0..n) and waits for it (at most
 * P11_CONFIRM_TIMEOUT_S). KB_STATUS_OK if a fresh load finds every object;
 * KB_ERR_STORAGE if one is missing or different; KB_ERR_HSM if the
 * check could not be made. err says which object or why.
 */
int p11_confirm(const struct p11_confirm_target *t,
		const struct p11_expect *want, size_t n, char *err,
		size_t errlen);

/* The check itself: argv[0] is P11_CONFIRM_COMMAND. An exit status. */
int p11_confirm_main(int argc, char **argv);

#endif
