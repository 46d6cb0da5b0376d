// SPDX-License-Identifier: MIT
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "kb_listen.h"

#define BACKLOG 128

/*
 * Locks PATH.lock for the broker's life with an open file description
 * lock (not lost if any other fd of the file is closed) and writes this
 * pid into it, so a second broker can name the first. Refuses a lock file
 * that is not a regular file of ours, so nobody can hold it for us.
 */
static int take_lock(struct kb_listener *l, char *err, size_t errlen)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	char lock[sizeof(l->path) + 8], pid[24];
	struct stat st;
	ssize_t n;
	int len;

	snprintf(lock, sizeof(lock), "%s.lock", l->path);
	l->lock_fd =
		open(lock, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (l->lock_fd < 0) {
		snprintf(err, errlen, "lock file %s: %s", lock,
			 strerror(errno));
		return -1;
	}
	if (fstat(l->lock_fd, &st) != 0 || !S_ISREG(st.st_mode) ||
	    st.st_uid != geteuid()) {
		snprintf(err, errlen,
			 "lock file %s is not a regular file owned by uid %u",
			 lock, (unsigned int)geteuid());
		return -1;
	}
	if (fcntl(l->lock_fd, F_OFD_SETLK, &fl) != 0) {
		if (errno != EACCES && errno != EAGAIN) {
			snprintf(err, errlen, "cannot lock %s: %s", lock,
				 strerror(errno));
			return -1;
		}
		n = pread(l->lock_fd, pid, sizeof(pid) - 1, 0);
		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		snprintf(err, errlen,
			 "another keybrokerd (pid %s) is serving %s; refusing "
			 "to take its socket",
			 pid[0] ? pid : "unknown", l->path);
		return -1;
	}
	len = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	if (ftruncate(l->lock_fd, 0) != 0 ||
	    pwrite(l->lock_fd, pid, (size_t)len, 0) != len) {
		snprintf(err, errlen, "cannot write the lock file %s: %s", lock,
			 strerror(errno));
		return -1;
	}
	return 0;
}

/* Others may write there only with the sticky bit: see the header. */
int kb_listener_check_dir(const char *path, char *err, size_t errlen)
{
	char dir[sizeof(((struct kb_listener *)0)->path)], *slash;
	struct stat st;

	if (sd_listen_fds(0) > 0)
		return 0;
	snprintf(dir, sizeof(dir), "%s", path);
	if ((slash = strrchr(dir, '/')) == NULL)
		snprintf(dir, sizeof(dir), ".");
	else
		slash[slash == dir ? 1 : 0] = '\0';
	if (stat(dir, &st) != 0 || access(dir, W_OK | X_OK) != 0) {
		snprintf(err, errlen,
			 "socket %s: directory %s: %s (it must exist and be "
			 "writable by uid %u)",
			 path, dir, strerror(errno), (unsigned int)geteuid());
		return -1;
	}
	if ((st.st_mode & (S_IWGRP | S_IWOTH)) && !(st.st_mode & S_ISVTX)) {
		snprintf(err, errlen,
			 "socket directory %s is writable by group or others "
			 "without the sticky bit (mode %04o): others could "
			 "replace the socket",
			 dir, (unsigned int)(st.st_mode & 07777));
		return -1;
	}
	return 0;
}

/* True if something accepts connections on sa. */
static bool answers(const struct sockaddr_un *sa)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool r = fd >= 0 &&
		 connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0;

	if (fd >= 0)
		close(fd);
	return r;
}

/* Removes a stale socket at the path; refuses anything else there. */
static int clear_path(struct kb_listener *l, const struct sockaddr_un *sa,
		      char *err, size_t errlen)
{
	struct stat st;

	if (lstat(l->path, &st) != 0)
		return 0;
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen,
			 "%s exists and is not a socket; refusing to replace "
			 "it",
			 l->path);
		return -1;
	}
	if (answers(sa)) {
		snprintf(err, errlen,
			 "%s is in use: something answers on it; refusing to "
			 "take it",
			 l->path);
		return -1;
	}
	if (unlink(l->path) != 0 && errno != ENOENT) {
		snprintf(err, errlen, "cannot remove the stale socket %s: %s",
			 l->path, strerror(errno));
		return -1;
	}
	return 0;
}

int kb_listener_open(struct kb_listener *l, const char *path, unsigned int mode,
		     char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	mode_t old;
	int r;

	l->fd = -1;
	l->lock_fd = -1;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "socket path %s is too long", path);
		return -1;
	}
	strcpy(l->path, path);
	strcpy(sa.sun_path, path);
	if (kb_listener_check_dir(path, err, errlen) != 0 ||
	    take_lock(l, err, errlen) != 0 || clear_path(l, &sa, err, errlen))
		return -1;
	l->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (l->fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	/*
	 * Made with its mode (no chmod after, which would follow a link).
	 * Access is decided per identity; the mode only narrows who tries.
	 */
	old = umask(~(mode_t)mode & 0777);
	r = bind(l->fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (r != 0 || lstat(path, &st) != 0) {
		snprintf(err, errlen, "cannot bind %s: %s", path,
			 strerror(errno));
		goto out_close;
	}
	l->dev = st.st_dev;
	l->ino = st.st_ino;
	if (listen(l->fd, BACKLOG) != 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", path,
			 strerror(errno));
		kb_listener_close(l);
		return -1;
	}
	return 0;
out_close:
	close(l->fd);
	l->fd = -1;
	return -1;
}

int kb_listener_adopt(struct kb_listener *l, const char *path, char *err,
		      size_t errlen)
{
	int n = sd_listen_fds(1), flags;

	l->fd = -1;
	l->lock_fd = -1;
	if (n == 0)
		return 0;
	if (n < 0) {
		snprintf(err, errlen, "socket activation: %s", strerror(-n));
		return -1;
	}
	if (n != 1 || sd_is_socket_unix(SD_LISTEN_FDS_START, SOCK_STREAM, 1,
					path, 0) <= 0) {
		snprintf(err, errlen,
			 "socket activation: systemd passed %d sockets, and "
			 "needs to pass one, listening, a Unix stream socket "
			 "bound to %s (the config's socket)",
			 n, path);
		return -1;
	}
	l->fd = SD_LISTEN_FDS_START;
	flags = fcntl(l->fd, F_GETFL);
	if (flags < 0 || fcntl(l->fd, F_SETFL, flags | O_NONBLOCK) != 0 ||
	    fcntl(l->fd, F_SETFD, FD_CLOEXEC) != 0) {
		snprintf(err, errlen, "socket activation: %s", strerror(errno));
		return -1;
	}
	/* systemd's socket: this broker never removes it (no inode of its). */
	snprintf(l->path, sizeof(l->path), "%s", path);
	l->dev = 0;
	l->ino = 0;
	return 1;
}

void kb_listener_close(struct kb_listener *l)
{
	struct stat st;

	if (l->fd < 0)
		return;
	close(l->fd);
	l->fd = -1;
	if (lstat(l->path, &st) == 0 && st.st_dev == l->dev &&
	    st.st_ino == l->ino)
		unlink(l->path);
}

void kb_listener_uninit(struct kb_listener *l)
{
	kb_listener_close(l);
	if (l->lock_fd >= 0)
		close(l->lock_fd);
	l->lock_fd = -1;
}
