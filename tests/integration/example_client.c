// SPDX-License-Identifier: MIT
/*
 * A service's view of libkeybroker, built against the installed library
 * with `pkg-config keybroker`: wrap a fresh data key, unwrap it again and
 * compare. Usage: example_client SOCKET KEY
 */
#include <keybroker.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
	uint8_t dek[32], *wrapped = NULL, *back = NULL;
	size_t wrapped_len, back_len;
	struct keybroker *kb;
	char *kid = NULL;
	int r, status = 1;

	if (argc != 3) {
		fprintf(stderr, "usage: example_client SOCKET KEY\n");
		return 2;
	}
	for (size_t i = 0; i < sizeof(dek); i++)
		dek[i] = (uint8_t)(i * 7 + 1);
	if ((r = keybroker_connect(argv[1], &kb)) != KEYBROKER_OK) {
		fprintf(stderr, "connect: %s\n", keybroker_strstatus(r));
		return 1;
	}
	r = keybroker_authenticate_self(kb, NULL);
	if (r == KEYBROKER_OK)
		r = keybroker_wrap(kb, argv[2], NULL, NULL, dek, sizeof(dek),
				   &wrapped, &wrapped_len, &kid);
	if (r == KEYBROKER_OK)
		r = keybroker_unwrap(kb, kid, NULL, "RSA-OAEP-256", wrapped,
				     wrapped_len, &back, &back_len, NULL);
	if (r != KEYBROKER_OK)
		fprintf(stderr, "%s: %s: %s\n", keybroker_strstatus(r),
			keybroker_error_code(kb), keybroker_error_message(kb));
	else if (back_len == sizeof(dek) && memcmp(back, dek, back_len) == 0)
		status = 0;
	if (status == 0)
		printf("round trip OK with %s\n", kid);
	keybroker_free_secret(back, back_len);
	free(wrapped);
	free(kid);
	keybroker_close(kb);
	return status;
}
