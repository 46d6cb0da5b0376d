// SPDX-License-Identifier: MIT
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "kb_secret.h"

static size_t page_round(size_t n)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);

	return (n + pg - 1) / pg * pg;
}

void *kb_secure_alloc(size_t n)
{
	size_t len = page_round(n);
	void *p;

	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		 -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	/* Best effort: an unprivileged tool may lack RLIMIT_MEMLOCK. */
	(void)mlock(p, len);
	(void)madvise(p, len, MADV_DONTDUMP);
	return p;
}

void kb_secure_free(void *p, size_t n)
{
	size_t len = page_round(n);

	if (p == NULL)
		return;
	OPENSSL_cleanse(p, len);
	munlock(p, len);
	munmap(p, len);
}

void kb_wipe_free(void *p, size_t n)
{
	if (p == NULL)
		return;
	OPENSSL_cleanse(p, n);
	free(p);
}

void kb_wipe(void *p, size_t n)
{
	OPENSSL_cleanse(p, n);
}

/* Files kept open by kb_secret_file_keep, for after a drop of root. */
static struct {
	char path[PATH_MAX];
	int fd;
} kept[KB_SECRET_KEEP_MAX];
static size_t n_kept;

int kb_secret_file_keep(const char *path, char *err, size_t errlen)
{
	int fd;

	if (n_kept == KB_SECRET_KEEP_MAX || strlen(path) >= PATH_MAX) {
		snprintf(err, errlen, "%s: cannot keep it open", path);
		return -1;
	}
	if ((fd = kb_secret_file_open(path, err, errlen)) < 0)
		return -1;
	snprintf(kept[n_kept].path, sizeof(kept[n_kept].path), "%s", path);
	kept[n_kept++].fd = fd;
	return 0;
}

int kb_secret_file_open(const char *path, char *err, size_t errlen)
{
	struct stat st;
	size_t i;
	int fd;

	for (i = 0; i < n_kept; i++) {
		if (strcmp(kept[i].path, path) != 0)
			continue;
		if ((fd = fcntl(kept[i].fd, F_DUPFD_CLOEXEC, 0)) < 0 ||
		    lseek(fd, 0, SEEK_SET) != 0) {
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
			if (fd >= 0)
				close(fd);
			return -1;
		}
		return fd;
	}
	/* O_NONBLOCK: a FIFO planted at path must not hang the caller. */
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path,
			 errno == ELOOP ? "is a symlink" : strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		goto out_close;
	}
	if ((st.st_mode & (S_IRWXO | S_IWGRP)) != 0) {
		snprintf(err, errlen,
			 "%s: mode %04o is too open; it must not be "
			 "accessible to others nor group-writable (chmod 600)",
			 path, (unsigned int)(st.st_mode & 07777));
		goto out_close;
	}
	if (st.st_uid != 0 && st.st_uid != geteuid()) {
		snprintf(err, errlen,
			 "%s: owned by uid %u, must be owned by root or by "
			 "uid %u",
			 path, (unsigned int)st.st_uid,
			 (unsigned int)geteuid());
		goto out_close;
	}
	return fd;
out_close:
	close(fd);
	return -1;
}

int kb_secret_harden_process(void)
{
	struct rlimit rl = { 0, 0 };

	if (setrlimit(RLIMIT_CORE, &rl) != 0)
		return -1;
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
		return -1;
	return 0;
}
