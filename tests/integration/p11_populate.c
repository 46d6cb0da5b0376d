// SPDX-License-Identifier: MIT
/*
 * p11_populate: fills a token with many keybroker key versions quickly,
 * for the tests and benchmark of catalogue loading. One RSA key pair is
 * generated in the token (sensitive, never extractable, as keybrokerctl
 * makes them) and copied with C_CopyObject under each name and version,
 * each copy with its metadata object, as keybrokerctl writes it.
 *
 *	p11_populate MODULE TOKEN-LABEL PIN-FILE PREFIX KEYS VERSIONS
 *
 * makes keys PREFIX0000 .. with VERSIONS versions each, and prints
 * "NAME VERSION" for each version made. Copying is some hundred times
 * faster than generating a key pair per version.
 */
#include <dlfcn.h>
#include <p11-kit/pkcs11.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static CK_FUNCTION_LIST *fn;

static void check(CK_RV rv, const char *what)
{
	if (rv != CKR_OK) {
		fprintf(stderr, "p11_populate: %s: CKR 0x%lx\n", what,
			(unsigned long)rv);
		exit(1);
	}
}

static CK_SESSION_HANDLE open_token(const char *label, const char *pin_file)
{
	CK_SLOT_ID slots[64];
	CK_ULONG n = 64, i;
	CK_TOKEN_INFO info;
	CK_SESSION_HANDLE h;
	char pin[256];
	size_t plen;
	FILE *f;

	check(fn->C_GetSlotList(CK_TRUE, slots, &n), "C_GetSlotList");
	for (i = 0; i < n; i++) {
		check(fn->C_GetTokenInfo(slots[i], &info), "C_GetTokenInfo");
		if (strncmp((char *)info.label, label, strlen(label)) == 0 &&
		    (strlen(label) == sizeof(info.label) ||
		     info.label[strlen(label)] == ' '))
			break;
	}
	if (i == n) {
		fprintf(stderr, "p11_populate: no token '%s'\n", label);
		exit(1);
	}
	if ((f = fopen(pin_file, "re")) == NULL ||
	    fgets(pin, sizeof(pin), f) == NULL) {
		fprintf(stderr, "p11_populate: cannot read %s\n", pin_file);
		exit(1);
	}
	fclose(f);
	plen = strcspn(pin, "\r\n");
	check(fn->C_OpenSession(slots[i], CKF_SERIAL_SESSION | CKF_RW_SESSION,
				NULL, NULL, &h),
	      "C_OpenSession");
	check(fn->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR)pin, plen), "C_Login");
	return h;
}

int main(int argc, char **argv)
{
	CK_C_GetFunctionList get;
	CK_MECHANISM mech = { CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0 };
	CK_ULONG bits = 2048;
	CK_BYTE e[] = { 1, 0, 1 };
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_OBJECT_CLASS cdata = CKO_DATA;
	CK_ATTRIBUTE pubt[] = {
		{ CKA_TOKEN, &no, sizeof(no) },
		{ CKA_MODULUS_BITS, &bits, sizeof(bits) },
		{ CKA_PUBLIC_EXPONENT, e, sizeof(e) },
		{ CKA_ENCRYPT, &yes, sizeof(yes) },
	};
	CK_ATTRIBUTE privt[] = {
		{ CKA_TOKEN, &no, sizeof(no) },
		{ CKA_PRIVATE, &yes, sizeof(yes) },
		{ CKA_SENSITIVE, &yes, sizeof(yes) },
		{ CKA_EXTRACTABLE, &no, sizeof(no) },
		{ CKA_DECRYPT, &yes, sizeof(yes) },
	};
	CK_OBJECT_HANDLE pub, priv, obj;
	CK_SESSION_HANDLE h;
	unsigned long keys, versions, k, v;
	unsigned char id[16];
	char name[64], hex[33], meta[512];
	time_t now = time(NULL);
	void *lib;
	int i;

	if (argc != 7) {
		fprintf(stderr, "usage: p11_populate MODULE TOKEN-LABEL "
				"PIN-FILE PREFIX KEYS VERSIONS\n");
		return 2;
	}
	keys = strtoul(argv[5], NULL, 10);
	versions = strtoul(argv[6], NULL, 10);
	if ((lib = dlopen(argv[1], RTLD_NOW)) == NULL ||
	    (get = (CK_C_GetFunctionList)dlsym(lib, "C_GetFunctionList")) ==
		    NULL) {
		fprintf(stderr, "p11_populate: cannot load %s\n", argv[1]);
		return 1;
	}
	check(get(&fn), "C_GetFunctionList");
	check(fn->C_Initialize(NULL), "C_Initialize");
	h = open_token(argv[2], argv[3]);
	/* The seed pair lives in the session only; its copies in the token. */
	check(fn->C_GenerateKeyPair(h, &mech, pubt, 4, privt, 5, &pub, &priv),
	      "C_GenerateKeyPair");
	for (k = 0; k < keys; k++)
		for (v = 0; v < versions; v++) {
			CK_ATTRIBUTE copyt[] = {
				{ CKA_TOKEN, &yes, sizeof(yes) },
				{ CKA_LABEL, name, 0 },
				{ CKA_ID, id, sizeof(id) },
			};
			CK_ATTRIBUTE metat[] = {
				{ CKA_CLASS, &cdata, sizeof(cdata) },
				{ CKA_TOKEN, &yes, sizeof(yes) },
				{ CKA_PRIVATE, &yes, sizeof(yes) },
				{ CKA_APPLICATION, "keybroker:key-version",
				  21 },
				{ CKA_LABEL, name, 0 },
				{ CKA_VALUE, meta, 0 },
			};

			snprintf(name, sizeof(name), "%s%04lu", argv[4], k);
			check(fn->C_GenerateRandom(h, id, sizeof(id)),
			      "C_GenerateRandom");
			for (i = 0; i < 16; i++)
				snprintf(hex + 2 * i, 3, "%02x", id[i]);
			snprintf(
				meta, sizeof(meta),
				"{\"created\":%lld,\"createdUs\":%lld,"
				"\"enabled\":true,\"exp\":null,\"name\":\"%s\","
				"\"nbf\":null,\"recoverableDays\":90,"
				"\"recoveryLevel\":\"Recoverable+Purgeable\","
				"\"updated\":%lld,\"version\":\"%s\"}",
				(long long)now,
				(long long)now * 1000000 + (long long)v, name,
				(long long)now, hex);
			copyt[1].ulValueLen = strlen(name);
			metat[4].ulValueLen = strlen(name);
			metat[5].ulValueLen = strlen(meta);
			check(fn->C_CopyObject(h, priv, copyt, 3, &obj),
			      "C_CopyObject (private key)");
			check(fn->C_CopyObject(h, pub, copyt, 3, &obj),
			      "C_CopyObject (public key)");
			check(fn->C_CreateObject(h, metat, 6, &obj),
			      "C_CreateObject (metadata)");
			printf("%s %s\n", name, hex);
		}
	fn->C_Logout(h);
	fn->C_CloseSession(h);
	fn->C_Finalize(NULL);
	return 0;
}
