// SPDX-License-Identifier: MIT
#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
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
	int cap;

	for (cap = 0; prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0; cap++) {
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
			snprintf(err, errlen,
				 "cannot drop capability %d from the "
				 "bounding set: %s",
				 cap, strerror(errno));
			return -1;
		}
	}
	return 0;
}

/* True if the thread holds no capability in any set. */
static bool holds_no_capability(void)
{
	struct __user_cap_header_struct hdr = {
		.version = _LINUX_CAPABILITY_VERSION_3,
	};
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
	size_t i;

	memset(data, 0, sizeof(data));
	if (syscall(SYS_capget, &hdr, data) != 0)
		return false;
	for (i = 0; i < _LINUX_CAPABILITY_U32S_3; i++)
		if (data[i].effective != 0 || data[i].permitted != 0 ||
		    data[i].inheritable != 0)
			return false;
	return prctl(PR_CAPBSET_READ, 0, 0, 0, 0) == 0;
}

int kb_user_drop(const char *user, char *err, size_t errlen)
{
	struct passwd pw;
	char buf[4096];

	if (user == NULL)
		return 0;
	if (lookup(user, &pw, buf, sizeof(buf), err, errlen) != 0)
		return -1;
	if (geteuid() != 0) {
		if (runs_as(pw.pw_uid, pw.pw_gid))
			return 0;
		snprintf(err, errlen, "cannot become user '%s': not root",
			 user);
		return -1;
	}
	if (initgroups(pw.pw_name, pw.pw_gid) != 0) {
		snprintf(err, errlen, "user '%s': cannot set its groups: %s",
			 user, strerror(errno));
		return -1;
	}
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 &&
	    errno != EINVAL) {
		snprintf(err, errlen, "cannot clear ambient capabilities: %s",
			 strerror(errno));
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
	/* Changing uid resets dumpability: set it again. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
	    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
		snprintf(err, errlen,
			 "cannot set no_new_privs and "
			 "non-dumpable: %s",
			 strerror(errno));
		return -1;
	}
	/* Check what was done, rather than trust it. */
	if (!runs_as(pw.pw_uid, pw.pw_gid) || setuid(0) == 0 ||
	    setgid(0) == 0 || !holds_no_capability() ||
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
