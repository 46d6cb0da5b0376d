// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <sys/statvfs.h>

#include "p11_store.h"
#include "p11_token.h"

/* SoftHSMv2's own defaults (Debian's build), used as it uses them. */
#define SOFTHSM_MANUFACTURER "SoftHSM"
#define SOFTHSM_CONF_DEFAULT "/etc/softhsm/softhsm2.conf"
#define SOFTHSM_TOKENDIR_DEFAULT "/var/lib/softhsm/tokens/"
#define SOFTHSM_LINE_MAX 1024 /* SoftHSMv2 reads lines of at most this */

/* Whether fn is SoftHSMv2, by the manufacturer its C_GetInfo names. */
static bool is_softhsm(CK_FUNCTION_LIST *fn)
{
	size_t n = sizeof(SOFTHSM_MANUFACTURER) - 1, i;
	CK_INFO info;

	if (fn->C_GetInfo(&info) != CKR_OK ||
	    memcmp(info.manufacturerID, SOFTHSM_MANUFACTURER, n) != 0)
		return false;
	for (i = n; i < sizeof(info.manufacturerID); i++)
		if (info.manufacturerID[i] != ' ')
			return false;
	return true;
}

/*
 * The configuration file SoftHSMv2 reads: $SOFTHSM2_CONF, else the
 * user's ~/.config/softhsm2/softhsm2.conf if there is one, else the
 * system's.
 */
static void softhsm_conf_path(char *path, size_t size)
{
	const char *conf = getenv("SOFTHSM2_CONF"), *home = getenv("HOME");
	struct stat st;
	int n;

	if (conf != NULL) {
		snprintf(path, size, "%s", conf);
		return;
	}
	if (home != NULL) {
		n = snprintf(path, size, "%s/.config/softhsm2/softhsm2.conf",
			     home);
		if (n > 0 && (size_t)n < size && stat(path, &st) == 0)
			return;
	}
	snprintf(path, size, "%s", SOFTHSM_CONF_DEFAULT);
}

static char *trim(char *s)
{
	char *end;

	while (*s == ' ' || *s == '\t')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
		*--end = '\0';
	return s;
}

/*
 * directories.tokendir of the SoftHSMv2 configuration at conf, read as
 * SoftHSMv2 reads it (a '#' ends a line; name = value; the last one
 * counts), or its default when the file does not set it.
 */
static int softhsm_tokendir(const char *conf, char *dir, size_t size, char *err,
			    size_t errlen)
{
	char line[SOFTHSM_LINE_MAX], *eq, *value;
	bool found = false;
	FILE *f;

	if ((f = fopen(conf, "re")) == NULL) {
		snprintf(err, errlen,
			 "cannot read SoftHSMv2's configuration %s to find its "
			 "token directory: %s",
			 conf, strerror(errno));
		return KB_ERR_STORAGE;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		line[strcspn(line, "#\n\r")] = '\0';
		if ((eq = strchr(line, '=')) == NULL)
			continue;
		*eq = '\0';
		value = eq + 1;
		value[strcspn(value, "=")] = '\0';
		if (strcmp(trim(line), "directories.tokendir") != 0)
			continue;
		snprintf(dir, size, "%s", trim(value));
		found = dir[0] != '\0';
	}
	fclose(f);
	if (!found)
		snprintf(dir, size, "%s", SOFTHSM_TOKENDIR_DEFAULT);
	return KB_STATUS_OK;
}

/* Whether the file system holding dir has the margin free. */
static int check_dir(const char *dir, char *err, size_t errlen)
{
	unsigned long long kib;
	struct statvfs sv;

	if (statvfs(dir, &sv) != 0) {
		snprintf(err, errlen,
			 "cannot measure the free space of the token directory "
			 "%s: %s",
			 dir, strerror(errno));
		return KB_ERR_STORAGE;
	}
	/* What an unprivileged writer may use: root's reserve is not ours. */
	kib = (unsigned long long)sv.f_bavail * sv.f_frsize / 1024;
	if (kib < P11_STORE_MARGIN_KIB) {
		snprintf(err, errlen,
			 "not enough free space for a token write: the token "
			 "directory %s has %llu KiB free, below the %d KiB "
			 "margin keybroker keeps (a full disk loses writes "
			 "that SoftHSMv2 reports as done); nothing was "
			 "written; free some space and retry",
			 dir, kib, P11_STORE_MARGIN_KIB);
		return KB_ERR_STORAGE;
	}
	/* f_files is 0 where a file system has no inode limit. */
	if (sv.f_files != 0 && sv.f_favail < P11_STORE_MARGIN_INODES) {
		snprintf(err, errlen,
			 "not enough free inodes for a token write: the token "
			 "directory %s has %llu free, below the %d keybroker "
			 "keeps; nothing was written; free some and retry",
			 dir, (unsigned long long)sv.f_favail,
			 P11_STORE_MARGIN_INODES);
		return KB_ERR_STORAGE;
	}
	return KB_STATUS_OK;
}

int p11_store_check_space(CK_FUNCTION_LIST *fn, char *err, size_t errlen)
{
	char conf[4096], dir[SOFTHSM_LINE_MAX];
	int r;

	if (!is_softhsm(fn))
		return KB_STATUS_OK;
	softhsm_conf_path(conf, sizeof(conf));
	if ((r = softhsm_tokendir(conf, dir, sizeof(dir), err, errlen)) !=
	    KB_STATUS_OK)
		return r;
	return check_dir(dir, err, errlen);
}

int p11_store_lock(CK_FUNCTION_LIST *fn, int wait_ms, char *err, size_t errlen)
{
	char conf[4096], dir[SOFTHSM_LINE_MAX];
	struct timespec pause = { 0, 10 * 1000 * 1000 };
	int fd, waited;

	if (!is_softhsm(fn))
		return P11_STORE_NONE;
	softhsm_conf_path(conf, sizeof(conf));
	if (softhsm_tokendir(conf, dir, sizeof(dir), err, errlen) !=
	    KB_STATUS_OK)
		return P11_STORE_FAILED;
	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		snprintf(err, errlen, "cannot open the token directory %s: %s",
			 dir, strerror(errno));
		return P11_STORE_FAILED;
	}
	for (waited = 0; flock(fd, LOCK_EX | LOCK_NB) != 0; waited += 10) {
		if (errno != EWOULDBLOCK && errno != EINTR) {
			snprintf(err, errlen,
				 "cannot lock the token directory %s: %s", dir,
				 strerror(errno));
			close(fd);
			return P11_STORE_FAILED;
		}
		if (waited >= wait_ms) {
			snprintf(err, errlen,
				 "another process has held the token directory "
				 "%s for %d ms",
				 dir, waited);
			close(fd);
			return P11_STORE_BUSY;
		}
		nanosleep(&pause, NULL);
	}
	return fd;
}

void p11_store_unlock(int fd)
{
	if (fd >= 0)
		close(fd); /* the flock goes with the last descriptor */
}

void p11_store_where(CK_FUNCTION_LIST *fn, char *where, size_t size)
{
	const char *env = getenv("SOFTHSM2_CONF");
	char conf[4096];

	if (!is_softhsm(fn)) {
		snprintf(where, size,
			 "the module's own configuration (its token store or "
			 "device)");
		return;
	}
	softhsm_conf_path(conf, sizeof(conf));
	if (env == NULL)
		snprintf(where, size,
			 "SoftHSMv2's configuration: SOFTHSM2_CONF is not set, "
			 "so it reads %.200s and its token directory",
			 conf);
	else
		snprintf(where, size,
			 "SoftHSMv2's configuration: SOFTHSM2_CONF=%.200s and "
			 "the token directory it names",
			 env);
}
