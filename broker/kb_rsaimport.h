/* SPDX-License-Identifier: MIT */
/*
 * RSA private keys that come in from outside in plain, for importKey
 * (migrations): a PEM (PKCS#8, or PKCS#1 "RSA PRIVATE KEY"; never one
 * protected by a passphrase), or a private JWK (RFC 7518 6.3.2 with every
 * CRT member). Parsed by OpenSSL, checked to be one consistent key of
 * 2048, 3072 or 4096 bits, and taken apart into the parts a token takes
 * (p11_import_rsa). The parts live in locked memory, wiped when freed.
 */
#ifndef KB_RSAIMPORT_H
#define KB_RSAIMPORT_H

#include <jansson.h>
#include <stddef.h>

#include "p11_object.h"

struct kb_rsa_import;

/* 0, or -1 with why filled (never quoting the key). */
int kb_rsa_import_pem(const char *pem, size_t len, struct kb_rsa_import **out,
		      char *why, size_t whylen);
int kb_rsa_import_jwk(const json_t *jwk, struct kb_rsa_import **out, char *why,
		      size_t whylen);

const struct p11_rsa_parts *kb_rsa_import_parts(const struct kb_rsa_import *k);
void kb_rsa_import_free(struct kb_rsa_import *k);

#endif
