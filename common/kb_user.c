// SPDX-License-Identifier: MIT
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kb_user.h"

/* Looks user up into *pw (strings in buf). */
static int lookup(const char *user, struct passwd *pw, char *buf, size_t buflen,
		  char *err, size_t errlen)
{
	struct passwd *found = NULL;
	int e = getpwnam_r(user, pw, buf, buflen, &found);

	if (found == NULL) {
		snprintf(err, errlen, "user '%s': %s", user,
			 e != 0 ? strerror(e) : "no such user");
		return -1;
	}
	if (pw->pw_uid == 0 || pw->pw_gid == 0) {
		snprintf(err, errlen,
			 "user '%s' has uid or gid 0: the broker does not "
			 "run as root",
			 user);
		return -1;
	}
	return 0;
}

static bool runs_as(uid_t uid, gid_t gid)
{
	uid_t r, e, s;
	gid_t rg, eg, sg;

	return getresuid(&r, &e, &s) == 0 && getresgid(&rg, &eg, &sg) == 0 &&
	       r == uid && e == uid && s == uid && rg == gid && eg == gid &&
	       sg == gid;
}

int kb_user_check(const char *user, const char **warn, char *err, size_t errlen)
{
	struct passwd pw;
	char buf[4096];

	*warn = NULL;
	if (user == NULL) {
		if (geteuid() == 0)
			*warn = "running as root: set 'user' in the "
				"configuration so that the broker drops root "
				"once the socket and the token are open";
		return 0;
	}
	if (lookup(user, &pw, buf, sizeof(buf), err, errlen) != 0)
		return -1;
	if (geteuid() == 0 || runs_as(pw.pw_uid, pw.pw_gid))
		return 0;
	snprintf(err, errlen,
		 "user '%s' (uid %u): running as uid %u, which can neither "
		 "become it (only root can) nor is it",
		 user, (unsigned int)pw.pw_uid, (unsigned int)geteuid());
	return -1;
}

/* Empties the bounding set (needs CAP_SETPCAP, so before the uid goes). */
static int drop_bounding_set(char *err, size_t errlen)
{
	int cap, in;

	for (cap = 0; (in = prctl(PR_CAPBSET_READ, cap, 0, 0, 0)) >= 0; cap++) {
		if (in == 1 && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
			snprintf(err, errlen,
				 "cannot drop capability %d from the "
				 "bounding set: %s",
				 cap, strerror(errno));
			return -1;
		}
	}
	return 0;
}

static bool bounding_set_empty(void)
{
	int cap, in;

	for (cap = 0; (in = prctl(PR_CAPBSET_READ, cap, 0, 0, 0)) >= 0; cap++)
		if (in != 0)
			return false;
	return true;
}

/*
 * Whether the thread holds a capability it could use: in its effective
 * or permitted set (the inheritable set too, with inheritable).
 */
static bool holds_capability(bool inheritable)
{
	struct __user_cap_header_struct hdr = {
		.version = _LINUX_CAPABILITY_VERSION_3,
	};
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
	size_t i;

	memset(data, 0, sizeof(data));
	if (syscall(SYS_capget, &hdr, data) != 0)
		return true;
	for (i = 0; i < _LINUX_CAPABILITY_U32S_3; i++)
		if (data[i].effective != 0 || data[i].permitted != 0 ||
		    (inheritable && data[i].inheritable != 0))
			return true;
	return false;
}

/* Empties the effective, permitted and inheritable sets. */
static int drop_capabilities(char *err, size_t errlen)
{
	struct __user_cap_header_struct hdr = {
		.version = _LINUX_CAPABILITY_VERSION_3,
	};
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];

	memset(data, 0, sizeof(data));
	if (syscall(SYS_capset, &hdr, data) != 0) {
		snprintf(err, errlen, "cannot drop capabilities: %s",
			 strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * The threads a process may have when it drops root: this one, and in a
 * ThreadSanitizer build (for tests only) the sanitizer's background
 * thread, which runs no code of the broker's or the module's.
 */
#if defined(__SANITIZE_THREAD__)
#define OWN_THREADS 2
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define OWN_THREADS 2
#endif
#endif
#ifndef OWN_THREADS
#define OWN_THREADS 1
#endif

/* The process's threads, from /proc/self/status; -1 if unknown. */
static int thread_count(void)
{
	char line[128];
	int n = -1;
	FILE *f = fopen("/proc/self/status", "re");

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "Threads: %d", &n) == 1)
			break;
	fclose(f);
	return n;
}

/*
 * What no user of this process may keep, whoever it runs as: ambient
 * capabilities for what it runs, the right to gain privileges through
 * exec, a core dump or a ptrace by a peer.
 */
static int shed_privileges(char *err, size_t errlen)
{
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 &&
	    errno != EINVAL) {
		snprintf(err, errlen, "cannot clear ambient capabilities: %s",
			 strerror(errno));
		return -1;
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
	    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
		snprintf(err, errlen,
			 "cannot set no_new_privs and non-dumpable: %s",
			 strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * Already the user: only what the manager may have left it (ambient or
 * other capabilities) goes. Under a unit without capabilities nothing
 * is left, and nothing is called that its system-call filter refuses.
 */
int kb_user_shed(char *err, size_t errlen)
{
	if (shed_privileges(err, errlen) != 0 ||
	    (holds_capability(true) && drop_capabilities(err, errlen) != 0))
		return -1;
	if (holds_capability(true) ||
	    prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1) {
		snprintf(err, errlen,
			 "capabilities or the right to gain "
			 "privileges remain");
		return -1;
	}
	return 0;
}

static int stay_as(const struct passwd *pw, char *err, size_t errlen)
{
	if (!runs_as(pw->pw_uid, pw->pw_gid)) {
		snprintf(err, errlen, "cannot become user '%s': not root",
			 pw->pw_name);
		return -1;
	}
	return kb_user_shed(err, errlen);
}

int kb_user_drop(const char *user, char *err, size_t errlen)
{
	struct passwd pw;
	char buf[4096];
	int threads;

	if (user == NULL)
		return 0;
	if (lookup(user, &pw, buf, sizeof(buf), err, errlen) != 0)
		return -1;
	if (geteuid() != 0)
		return stay_as(&pw, err, errlen);
	/* The bounding set and no_new_privs are each thread's own. */
	if ((threads = thread_count()) < 1 || threads > OWN_THREADS) {
		snprintf(err, errlen,
			 "cannot drop root for user '%s': the process has %d "
			 "threads (started by the PKCS#11 module?), and only "
			 "this one would lose its capabilities; start the "
			 "broker as '%s' instead (as keybrokerd.service does)",
			 user, threads, user);
		return -1;
	}
	if (initgroups(pw.pw_name, pw.pw_gid) != 0) {
		snprintf(err, errlen, "user '%s': cannot set its groups: %s",
			 user, strerror(errno));
		return -1;
	}
	if (drop_bounding_set(err, errlen) != 0)
		return -1;
	if (setresgid(pw.pw_gid, pw.pw_gid, pw.pw_gid) != 0 ||
	    setresuid(pw.pw_uid, pw.pw_uid, pw.pw_uid) != 0) {
		snprintf(err, errlen, "cannot become user '%s': %s", user,
			 strerror(errno));
		return -1;
	}
	/* Changing uid resets dumpability: it is set again here. */
	if (shed_privileges(err, errlen) != 0)
		return -1;
	/* Check what was done, rather than trust it. */
	if (!runs_as(pw.pw_uid, pw.pw_gid) || setuid(0) == 0 ||
	    setgid(0) == 0 || holds_capability(true) || !bounding_set_empty() ||
	    prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0 ||
	    prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1) {
		snprintf(err, errlen,
			 "became user '%s' but privileges remain (uid, gid, "
			 "capabilities or dumpable)",
			 user);
		return -1;
	}
	return 0;
}

/* In a child that became user: the first path it cannot use, or 0. */
static int probe(const char *user, const struct kb_user_access *want, size_t n,
		 int fd)
{
	char err[512], parent[PATH_MAX], *slash;
	size_t i;
	int mode;

	if (kb_user_drop(user, err, sizeof(err)) != 0) {
		dprintf(fd, "%s", err);
		return 1;
	}
	for (i = 0; i < n; i++) {
		mode = want[i].write ? W_OK | X_OK : R_OK;
		if (access(want[i].path, mode) == 0)
			continue;
		/* A directory not made yet: the broker makes it there. */
		if (want[i].write && errno == ENOENT &&
		    strlen(want[i].path) < sizeof(parent)) {
			strcpy(parent, want[i].path);
			if ((slash = strrchr(parent, '/')) != NULL) {
				slash[slash == parent ? 1 : 0] = '\0';
				if (access(parent, W_OK | X_OK) == 0)
					continue;
			}
		}
		dprintf(fd, "user '%s' cannot %s %s: %s", user,
			want[i].write ? "write in" : "read", want[i].path,
			strerror(errno));
		return 1;
	}
	return 0;
}

int kb_user_check_access(const char *user, const struct kb_user_access *want,
			 size_t n, char *err, size_t errlen)
{
	int p[2], status = 0;
	ssize_t got;
	pid_t pid, r;

	if (user == NULL || geteuid() != 0)
		return 0;
	if (pipe2(p, O_CLOEXEC) != 0) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		return -1;
	}
	if ((pid = fork()) < 0) {
		snprintf(err, errlen, "fork: %s", strerror(errno));
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid == 0) {
		close(p[0]);
		_exit(probe(user, want, n, p[1]));
	}
	close(p[1]);
	got = read(p[0], err, errlen > 0 ? errlen - 1 : 0);
	close(p[0]);
	while ((r = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
		;
	if (r == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	if (got <= 0)
		snprintf(err, errlen,
			 "user '%s': the check of its access "
			 "failed",
			 user);
	else
		err[got] = '\0';
	return -1;
}
