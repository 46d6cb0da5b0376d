// SPDX-License-Identifier: MIT
/*
 * Secret output files: created 0600, never through a symlink nor over a
 * file unless forced, and a failed write never costs the file it was to
 * replace (a failure is simulated by closing the fd before the commit).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kb_output.h"

static char dir[64], path[128];

static int setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/kb-output-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(path, sizeof(path), "%s/out", dir);
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void put(const char *p, const char *text)
{
	FILE *f = fopen(p, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static char *get(const char *p)
{
	static char buf[64];
	FILE *f = fopen(p, "r");
	size_t n;

	if (f == NULL)
		return NULL;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static int entries(void)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	while ((e = readdir(d)) != NULL)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

static void test_created_0600_and_not_over_a_file(void **state)
{
	struct kb_output o;
	struct stat st;
	char err[256];

	unlink(path);
	assert_int_equal(kb_output_open(&o, path, false, err, sizeof(err)), 0);
	assert_int_equal(kb_output_write(&o, "dek", 3, err, sizeof(err)), 0);
	assert_int_equal(kb_output_commit(&o, err, sizeof(err)), 0);
	kb_output_abort(&o); /* harmless after success */
	assert_int_equal(lstat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_string_equal(get(path), "dek");
	assert_int_equal(kb_output_open(&o, path, false, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "exists (or is a symlink); --force"));
	assert_string_equal(get(path), "dek");
}

static void test_symlink_not_followed(void **state)
{
	char target[160];
	struct kb_output o;
	char err[256];

	unlink(path);
	snprintf(target, sizeof(target), "%s/victim", dir);
	put(target, "keep");
	assert_int_equal(symlink(target, path), 0);
	assert_int_equal(kb_output_open(&o, path, false, err, sizeof(err)), -1);
	assert_string_equal(get(target), "keep");
	unlink(path);
	unlink(target);
}

static void test_failed_forced_write_keeps_the_old_file(void **state)
{
	struct kb_output o;
	char err[256];

	put(path, "old");
	assert_int_equal(kb_output_open(&o, path, true, err, sizeof(err)), 0);
	assert_int_equal(kb_output_write(&o, "new", 3, err, sizeof(err)), 0);
	close(o.fd); /* fsync now fails */
	assert_int_equal(kb_output_commit(&o, err, sizeof(err)), -1);
	kb_output_abort(&o);
	kb_output_abort(&o); /* idempotent */
	assert_string_equal(get(path), "old");
	assert_int_equal(entries(), 1); /* no temporary file left */
}

static void test_failed_new_file_is_removed(void **state)
{
	struct kb_output o;
	char err[256];

	unlink(path);
	assert_int_equal(kb_output_open(&o, path, false, err, sizeof(err)), 0);
	close(o.fd);
	assert_int_equal(kb_output_commit(&o, err, sizeof(err)), -1);
	kb_output_abort(&o);
	assert_null(get(path));
	assert_int_equal(entries(), 0);
}

static void test_forced_write_replaces(void **state)
{
	struct kb_output o;
	struct stat st;
	char err[256];

	put(path, "old");
	chmod(path, 0644);
	assert_int_equal(kb_output_open(&o, path, true, err, sizeof(err)), 0);
	assert_int_equal(kb_output_write(&o, "new", 3, err, sizeof(err)), 0);
	assert_int_equal(kb_output_commit(&o, err, sizeof(err)), 0);
	assert_string_equal(get(path), "new");
	assert_int_equal(lstat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(entries(), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_created_0600_and_not_over_a_file),
		cmocka_unit_test(test_symlink_not_followed),
		cmocka_unit_test(test_failed_forced_write_keeps_the_old_file),
		cmocka_unit_test(test_failed_new_file_is_removed),
		cmocka_unit_test(test_forced_write_replaces),
	};

	return cmocka_run_group_tests_name("output", tests, setup, teardown);
}
