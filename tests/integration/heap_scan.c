// SPDX-License-Identifier: MIT
/*
 * Test program: unwraps a DEK and gets an identity token through
 * libkeybroker, releases both as the API says, then scans its own heap
 * (every private anonymous mapping) for any copy of the DEK, its
 * base64url form, or the token's signature. Prints "clean" and exits 0,
 * or names what it found and exits 1.
 *
 * usage: heap_scan SOCKET KEY DEK_HEX WRAPPED_B64URL
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kb_b64.h"
#include "keybroker.h"

#define NO_ASAN __attribute__((no_sanitize("address")))

/* A byte loop, not memmem: freed memory is poisoned under ASan. */
static NO_ASAN int contains(const unsigned char *p, size_t n,
			    const unsigned char *pat, size_t m)
{
	size_t i, j;

	for (i = 0; m <= n && i <= n - m; i++) {
		for (j = 0; j < m && p[i + j] == pat[j]; j++)
			;
		if (j == m)
			return 1;
	}
	return 0;
}

/*
 * Scans private anonymous and [heap] mappings for pat; ones of 1 GiB or
 * more are address space reserved, not heap (a sanitizer's shadow).
 */
static int in_heap(const char *maps, const void *pat, size_t m)
{
	const char *line = maps, *nl;
	unsigned long lo, hi;
	char perms[5];
	int off = 0;

	for (; *line != '\0'; line = nl + 1) {
		nl = strchr(line, '\n');
		if (nl == NULL)
			break;
		if (sscanf(line, "%lx-%lx %4s %*s %*s %*s%n", &lo, &hi, perms,
			   &off) != 3)
			continue;
		while (line[off] == ' ')
			off++;
		if (strncmp(perms, "rw", 2) != 0 || hi - lo >= 1UL << 30 ||
		    !(line + off == nl ||
		      strncmp(line + off, "[heap]", 6) == 0))
			continue;
		if (contains((const unsigned char *)lo, hi - lo, pat, m))
			return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static char maps[1 << 20];
	unsigned char dek[64], wrapped[1024], *out;
	char dek64[100], sig[100], *token, *dot;
	size_t dek_len, wrapped_len, out_len, n = 0;
	struct keybroker *kb;
	ssize_t r;
	int fd, found = 0;

	if (argc != 5 || strlen(argv[3]) / 2 > sizeof(dek))
		return 2;
	for (dek_len = 0; argv[3][2 * dek_len] != '\0'; dek_len++)
		sscanf(argv[3] + 2 * dek_len, "%2hhx", &dek[dek_len]);
	if (kb_b64_decode(wrapped, sizeof(wrapped), &wrapped_len, argv[4],
			  strlen(argv[4])) != 0)
		return 2;
	kb_b64_encode(dek64, dek, dek_len);
	if (keybroker_connect(argv[1], &kb) != KEYBROKER_OK ||
	    keybroker_get_token(kb, &token) != KEYBROKER_OK) {
		fprintf(stderr, "getToken failed\n");
		return 2;
	}
	dot = strrchr(token, '.');
	snprintf(sig, sizeof(sig), "%s", dot ? dot + 1 : token);
	if (keybroker_authenticate(kb, token, NULL) != KEYBROKER_OK ||
	    keybroker_unwrap(kb, argv[2], NULL, NULL, wrapped, wrapped_len,
			     &out, &out_len, NULL) != KEYBROKER_OK ||
	    out_len != dek_len || memcmp(out, dek, dek_len) != 0) {
		fprintf(stderr, "unwrap failed: %s\n",
			keybroker_error_message(kb));
		return 2;
	}
	keybroker_free_secret(token, strlen(token));
	keybroker_free_secret(out, out_len);
	keybroker_close(kb);

	if ((fd = open("/proc/self/maps", O_RDONLY)) < 0)
		return 2;
	while ((r = read(fd, maps + n, sizeof(maps) - 1 - n)) > 0)
		n += (size_t)r;
	close(fd);
	maps[n] = '\0';
	if (in_heap(maps, dek, dek_len)) {
		printf("found the DEK\n");
		found = 1;
	}
	if (in_heap(maps, dek64, strlen(dek64))) {
		printf("found the DEK in base64url\n");
		found = 1;
	}
	if (in_heap(maps, sig, strlen(sig))) {
		printf("found the token\n");
		found = 1;
	}
	if (!found)
		printf("clean\n");
	return found;
}
