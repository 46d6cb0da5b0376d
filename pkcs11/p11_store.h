/* SPDX-License-Identifier: MIT */
/*
 * Where a module keeps its objects, as far as keybroker knows: the one
 * place with module-specific knowledge of storage. SoftHSMv2 keeps each
 * object in a file under the token directory of its configuration and,
 * on a full disk, reports a write it lost as done (CKR_OK, a 0-byte file,
 * an object the next process does not see). So admin writes to such a
 * module are refused up front while its storage is nearly full; other
 * modules are not checked (their storage is not a local file system this
 * process can measure).
 */
#ifndef P11_STORE_H
#define P11_STORE_H

#include <p11-kit/pkcs11.h>
#include <stddef.h>

/*
 * Free space an admin write needs on a file-backed token. One write is
 * a few KiB (an object file of 0.5-4 KiB, its lock file, the token's
 * generation file); 1 MiB leaves room for hundreds of them and for the
 * other processes writing there at the same time, while a disk that is
 * really full is caught.
 */
#define P11_STORE_MARGIN_KIB 1024
/* Free inodes an admin write needs (each object is two files). */
#define P11_STORE_MARGIN_INODES 64

/*
 * KB_STATUS_OK if the storage of the module behind fn has room for an admin
 * write, or is not known to be a local file system. Otherwise
 * KB_ERR_STORAGE, and err names the directory, what is free and the
 * margin.
 */
int p11_store_check_space(CK_FUNCTION_LIST *fn, char *err, size_t errlen);

/*
 * Serialises admin work (catalogue loads and writes) between the
 * processes that share a file-backed token: SoftHSMv2 does not, and a
 * load that reads while another process writes sees objects half made,
 * while two processes writing at once can lose objects. The lock is an
 * exclusive flock on the token directory, waited for at most wait_ms.
 *
 * Returns the fd that holds it, for p11_store_unlock; P11_STORE_NONE
 * for a module without such storage (its own device or service orders
 * concurrent clients); P11_STORE_BUSY if another process held it all
 * along; P11_STORE_FAILED if the directory cannot be locked (err says
 * why).
 */
#define P11_STORE_NONE (-1)
#define P11_STORE_BUSY (-2)
#define P11_STORE_FAILED (-3)
int p11_store_lock(CK_FUNCTION_LIST *fn, int wait_ms, char *err, size_t errlen);
/* Releases what p11_store_lock returned (anything below 0: nothing). */
void p11_store_unlock(int fd);

/*
 * Where the module behind fn keeps its tokens, for a message about a
 * token that is not found: for SoftHSMv2, the configuration it reads.
 */
void p11_store_where(CK_FUNCTION_LIST *fn, char *where, size_t size);

#endif
