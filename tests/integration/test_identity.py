# SPDX-License-Identifier: MIT
"""Identities, tokens and access control, through the real socket.

External tokens are made with python3-jwt (an independent JOSE
implementation); the broker's own come from getToken and keybrokerctl."""

import hashlib
import hmac
import json
import os
import subprocess
import threading
import time
import unittest

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from harness import BUILD, Broker, Cgroup, Client, Token, b64d, b64e, finish, run_as

ISS = "https://issuer.test"
TOKEN = BROKER = None
RSA_KEY = EC_KEY = OTHER_RSA = None
KEYS = ("cmk", "etl-2026", "other")
IDENTITIES = [
    '{ name = "unit-svc"; assigned = "system"; units = [ "kbtest.service" ]; }',
    '{ name = "svc-enc"; assigned = "user"; }',
    '{ name = "svc-wrap"; assigned = "user"; }',
    '{ name = "auditor"; assigned = "user"; }',
    '{ name = "nobody-id"; assigned = "user"; }',
    '{ name = "bound"; assigned = "user"; uids = [ 65534 ]; }',
]
ACCESS = [
    '{ identity = "svc-enc"; keys = [ "cmk" ]; roles = [ "Crypto Service Encryption User" ]; }',
    '{ identity = "svc-wrap"; keys = [ "etl-*" ]; permissions = [ "wrapKey" ]; }',
    '{ identity = "auditor"; keys = [ "*" ]; roles = [ "Auditor" ]; }',
    '{ identity = "bound"; keys = [ "cmk" ]; permissions = [ "get" ]; }',
    '{ identity = "unit-svc"; keys = [ "cmk" ]; permissions = [ "get" ]; }',
]
# What each identity may do, per key and op (the ACL above, spelt out).
EXPECTED = {
    "svc-enc": {"cmk": {"getKey", "wrapKey", "unwrapKey"}},
    "svc-wrap": {"etl-2026": {"wrapKey"}},
    "auditor": {k: {"getKey"} for k in KEYS},
    "nobody-id": {},
}
PERM = {"getKey": "get", "wrapKey": "wrapKey", "unwrapKey": "unwrapKey"}


def issuer_config(name, issuer, algs, jwks_path, max_lifetime=3600):
    return ('{ issuer = "%s"; audience = "keybroker"; jwks = "%s"; algorithms = [ %s ]; '
            'claim = "sub"; max_lifetime = %d; subjects = ( '
            '{ subject = "spiffe://test/enc"; identity = "svc-enc"; }, '
            '{ subject = "spiffe://test/bound"; identity = "bound"; } ); }'
            % (issuer, jwks_path, ", ".join('"%s"' % a for a in algs), max_lifetime))


def ec_jwk(pub, kid):
    """RFC 7518 6.2.1: x and y at the full 32 bytes (python3-jwt's
    to_jwk drops leading zero bytes, which the broker rightly refuses)."""
    n = pub.public_numbers()
    return {"kty": "EC", "crv": "P-256", "kid": kid,
            "x": b64e(n.x.to_bytes(32, "big")), "y": b64e(n.y.to_bytes(32, "big"))}


def setUpModule():
    global TOKEN, BROKER, RSA_KEY, EC_KEY, OTHER_RSA
    TOKEN = Token([(k, 2048) for k in KEYS])
    RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    OTHER_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    EC_KEY = ec.generate_private_key(ec.SECP256R1())
    jwks = {"keys": [dict(json.loads(RSAAlgorithm.to_jwk(RSA_KEY.public_key())), kid="r1"),
                     ec_jwk(EC_KEY.public_key(), "e1")]}
    path = os.path.join(TOKEN.dir, "issuer-jwks.json")
    with open(path, "w") as f:
        json.dump(jwks, f)
    BROKER = Broker(TOKEN, identities=IDENTITIES, access=ACCESS, issuers=[
        issuer_config("ext", ISS, ["RS256", "PS256", "ES256"], path),
        issuer_config("rs-only", ISS + "/rs-only", ["RS256"], path),
    ]).start()


def tearDownModule():
    finish(BROKER, TOKEN)


def claims(**over):
    now = int(time.time())
    c = {"iss": ISS, "sub": "spiffe://test/enc", "aud": "keybroker", "iat": now,
         "nbf": now, "exp": now + 600, "jti": os.urandom(8).hex()}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def ext_token(alg="RS256", key=None, kid=None, headers=None, **over):
    key = key or (EC_KEY if alg == "ES256" else RSA_KEY)
    kid = kid or ("e1" if alg == "ES256" else "r1")
    return jwt.encode(claims(**over), key, algorithm=alg,
                      headers=dict(kid=kid, **(headers or {})))


def raw_token(header, payload, signature=b""):
    def part(o):
        return b64e(json.dumps(o).encode())
    return "%s.%s.%s" % (part(header), part(payload), b64e(signature))


def authenticate(c, token):
    return c.request("authenticate", token=token)


def ctl_token(identity, config=None):
    """A token from keybrokerctl, made with the broker's own config."""
    return TOKEN.ctl("-c", config or BROKER.config, "identity", "token", identity).stdout.strip()


class Matrix(unittest.TestCase):
    def test_every_identity_key_and_op(self):
        admin = BROKER.connect()
        wrapped = {k: admin.wrap(k, b"d" * 32)["value"] for k in KEYS}
        admin.close()
        cells = 0
        for ident, allowed in EXPECTED.items():
            c = Client(BROKER.socket, authenticate=False)
            self.assertIn("result", authenticate(c, ctl_token(ident)))
            for key in KEYS:
                for op in ("getKey", "wrapKey", "unwrapKey"):
                    fields = {"key": key}
                    if op != "getKey":
                        fields["value"] = wrapped[key] if op == "unwrapKey" else b64e(b"k" * 32)
                    r = c.request(op, **fields)
                    if op in allowed.get(key, set()):
                        self.assertIn("result", r, (ident, key, op, r))
                    else:
                        self.assertEqual(r.get("error"), {
                            "code": "Forbidden",
                            "message": "identity '%s' lacks %s on key '%s'"
                                       % (ident, PERM[op], key)}, (ident, key, op))
                    cells += 1
            c.close()
        self.assertEqual(cells, 4 * 3 * 3)

    def test_forbidden_does_not_reveal_existence(self):
        c = Client(BROKER.socket, authenticate=False)
        authenticate(c, ctl_token("nobody-id"))
        for key in ("cmk", "no-such-key"):
            self.assertEqual(c.request("getKey", key=key)["error"], {
                "code": "Forbidden",
                "message": "identity 'nobody-id' lacks get on key '%s'" % key})
        c.close()

    def test_unauthenticated_and_management_ops(self):
        c = Client(BROKER.socket, authenticate=False)
        r = c.request("unwrapKey", key="cmk", value=b64e(b"\0" * 256))
        self.assertEqual(r["error"]["code"], "Unauthorized")
        self.assertIn("no identity", r["error"]["message"])
        c.close()


class Lists(unittest.TestCase):
    """getKeys and getKeyVersions: paged, and filtered by the list
    permission; a list never reveals a key the caller may not list."""

    def client_as(self, identity):
        c = Client(BROKER.socket, authenticate=False)
        self.assertIn("result", authenticate(c, ctl_token(identity)))
        return c

    def pages(self, c, op, **fields):
        """Every item of a paged list, and the number of pages."""
        items, pages, link = [], 0, None
        while True:
            extra = dict(fields, nextLink=link) if link else fields
            r = c.ok(op, maxresults=1, **extra)
            items += r["value"]
            pages += 1
            link = r.get("nextLink")
            if link is None:
                return items, pages

    def test_auditor_lists_every_key_page_by_page(self):
        c = self.client_as("auditor")
        try:
            items, pages = self.pages(c, "getKeys")
            self.assertEqual([i["kid"] for i in items],
                             ["keybroker://it/keys/%s" % k for k in sorted(KEYS)])
            self.assertEqual(pages, len(KEYS))
            self.assertTrue(all(i["attributes"]["enabled"] for i in items))
            whole = c.ok("getKeys")
            self.assertEqual(whole["value"], items)
            self.assertNotIn("nextLink", whole)
        finally:
            c.close()

    def test_versions_oldest_first(self):
        c = self.client_as("auditor")
        try:
            items, _ = self.pages(c, "getKeyVersions", key="cmk")
            self.assertEqual([i["kid"] for i in items],
                             ["keybroker://it/keys/cmk/%s" % v for v in TOKEN.versions["cmk"]])
            r = c.request("getKeyVersions", key="nosuchkey")
            self.assertEqual(r["error"]["code"], "KeyNotFound")
            r = c.request("getKeyVersions", key="cmk", nextLink="0" * 32)
            self.assertEqual(r["error"]["code"], "BadParameter")
            self.assertIn("names no version of key 'cmk'", r["error"]["message"])
        finally:
            c.close()

    def test_without_list_nothing_is_shown(self):
        # svc-enc may use cmk but not list it: an empty list, not an error,
        # and getKeyVersions is Forbidden.
        c = self.client_as("svc-enc")
        try:
            self.assertEqual(c.ok("getKeys"), {"value": []})
            r = c.request("getKeyVersions", key="cmk")
            self.assertEqual(r["error"]["code"], "Forbidden")
            self.assertIn("lacks list on key 'cmk'", r["error"]["message"])
        finally:
            c.close()
        c = Client(BROKER.socket, authenticate=False)
        try:
            r = c.request("getKeys")
            self.assertEqual(r["error"]["code"], "Unauthorized")
        finally:
            c.close()


class Cli(unittest.TestCase):
    def test_token_file_allowed_and_denied(self):
        admin = BROKER.connect()
        w = {k: admin.wrap(k, b"D" * 32)["value"] for k in ("cmk", "other")}
        admin.close()
        path = os.path.join(TOKEN.dir, "svc-enc.jwt")
        with open(path, "w") as f:
            f.write(ctl_token("svc-enc") + "\n")

        def unwrap(key):
            return subprocess.run([os.path.join(BUILD, "keybroker"), "--socket", BROKER.socket,
                                   "--token-file", path, "unwrap", "--key", key],
                                  input=w[key].encode(), capture_output=True)
        r = unwrap("cmk")
        self.assertEqual((r.returncode, r.stdout), (0, b"D" * 32), r.stderr)
        r = unwrap("other")
        self.assertEqual(r.returncode, 7)
        self.assertEqual(r.stderr, b"keybroker: Forbidden: identity 'svc-enc' lacks "
                                   b"unwrapKey on key 'other'\n")


class GetToken(unittest.TestCase):
    def test_token_from_peer_credentials(self):
        c = Client(BROKER.socket, authenticate=False)
        r = c.ok("getToken")
        self.assertEqual(r["identity"], "it-admin")
        self.assertLessEqual(abs(r["expires_on"] - time.time() - 3600), 5)
        header = json.loads(b64d(r["access_token"].split(".")[0]))
        self.assertEqual(header["alg"], "ES256")
        # The token verifies with the published JWKS (independent JOSE).
        jwks = json.loads(TOKEN.ctl("jwks").stdout)
        pub = ECAlgorithm.from_jwk(json.dumps(jwks["keys"][0]))
        decoded = jwt.decode(r["access_token"], pub, algorithms=["ES256"],
                             audience="keybroker", issuer="keybroker://it")
        self.assertEqual(decoded["sub"], "it-admin")
        for claim in ("iat", "nbf", "exp", "jti"):
            self.assertIn(claim, decoded)
        c.close()

    @unittest.skipUnless(os.geteuid() == 0, "needs root to fake a systemd unit")
    def test_unit_identity(self):
        def get_token():
            c = Client(BROKER.socket, timeout=5, authenticate=False)
            return c.request("getToken")

        with Cgroup("system.slice/kbtest.service") as cg:
            got = run_as(None, cg, get_token)
        self.assertEqual(got["result"]["identity"], "unit-svc")


class Refusals(unittest.TestCase):
    """Every token the issue says must be refused, each on its own."""

    def refused(self, token, message):
        c = Client(BROKER.socket, authenticate=False)
        r = authenticate(c, token)
        self.assertEqual(r.get("error", {}).get("code"), "Unauthorized", r)
        self.assertIn(message, r["error"]["message"])
        # And the connection has no identity afterwards.
        r = c.request("getKey", key="cmk")
        self.assertIn("no identity", r["error"]["message"])
        c.close()

    def test_accepts_rs256_ps256_es256_from_python_jwt(self):
        for alg in ("RS256", "PS256", "ES256"):
            c = Client(BROKER.socket, authenticate=False)
            r = authenticate(c, ext_token(alg))
            self.assertEqual(r.get("result", {}).get("identity"), "svc-enc", (alg, r))
            self.assertIn("result", c.request("getKey", key="cmk"))
            c.close()

    def test_alg_none(self):
        self.refused(raw_token({"alg": "none"}, claims()), "algorithm is not accepted")

    def test_alg_not_pinned(self):
        self.refused(ext_token("ES256", iss=ISS + "/rs-only"), "algorithm is not accepted")

    def test_hs256_signed_with_public_key(self):
        pem = RSA_KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
        h = b64e(json.dumps({"alg": "HS256", "kid": "r1"}).encode())
        p = b64e(json.dumps(claims()).encode())
        sig = hmac.new(pem, ("%s.%s" % (h, p)).encode(), hashlib.sha256).digest()
        self.refused("%s.%s.%s" % (h, p, b64e(sig)), "algorithm is not accepted")

    def test_jwk_header(self):
        self.refused(ext_token(headers={"jwk": json.loads(RSAAlgorithm.to_jwk(
            OTHER_RSA.public_key()))}, key=OTHER_RSA), "carries \"jwk\"")

    def test_jku_header(self):
        self.refused(ext_token(headers={"jku": "https://evil.test/jwks"}), "carries \"jku\"")

    def test_x5u_header(self):
        self.refused(ext_token(headers={"x5u": "https://evil.test/c.pem"}), "carries \"x5u\"")

    def test_unknown_kid(self):
        self.refused(ext_token(kid="nope"), "matches no key")
        self.refused(ext_token(kid="../../../etc/passwd"), "matches no key")

    def test_bad_signature(self):
        self.refused(ext_token(key=OTHER_RSA), "signature is invalid")

    def test_truncated_signature(self):
        t = ext_token()
        self.refused(t[:-20], "signature is invalid")

    def test_wrong_issuer(self):
        self.refused(ext_token(iss="https://evil.test"), "issuer is not trusted")

    def test_wrong_audience(self):
        self.refused(ext_token(aud="someone-else"), "audience is not keybroker")

    def test_expired(self):
        now = int(time.time())
        self.refused(ext_token(iat=now - 700, nbf=now - 700, exp=now - 100), "token expired")

    def test_nbf_in_future(self):
        now = int(time.time())
        self.refused(ext_token(nbf=now + 120, exp=now + 600), "not valid yet")

    def test_iat_in_future(self):
        now = int(time.time())
        self.refused(ext_token(iat=now + 120, nbf=None, exp=now + 600), "issued in the future")

    def test_lifetime_over_maximum(self):
        now = int(time.time())
        self.refused(ext_token(iat=now, exp=now + 3601), "lifetime exceeds")

    def test_revoked_jti(self):
        token = ctl_token("svc-enc")
        jti = json.loads(b64d(token.split(".")[1]))["jti"]
        c = Client(BROKER.socket, authenticate=False)
        self.assertIn("result", authenticate(c, token))
        c.close()
        out = TOKEN.ctl("-c", BROKER.config, "identity", "revoke", jti)
        self.assertIn("revoked token", out.stdout)
        deadline = time.time() + 10
        while time.time() < deadline:
            c = Client(BROKER.socket, authenticate=False)
            r = authenticate(c, token)
            c.close()
            if "error" in r:
                break
            time.sleep(0.1)
        self.assertEqual(r["error"]["message"], "token has been revoked")
        # It stays revoked across a restart.
        b = Broker(TOKEN, name="restarted", identities=IDENTITIES, access=ACCESS).start()
        try:
            c = Client(b.socket, authenticate=False)
            self.assertEqual(authenticate(c, token)["error"]["message"],
                             "token has been revoked")
            c.close()
        finally:
            self.assertEqual(b.stop(), 0)

    def test_two_segments(self):
        self.refused(".".join(ext_token().split(".")[:2]), "three dot-separated parts")

    def test_four_segments(self):
        self.refused(ext_token() + ".AAAA", "three dot-separated parts")

    def test_not_base64url(self):
        t = ext_token().split(".")
        self.refused("%s.%s.%s" % (t[0], "!!" + t[1], t[2]), "not base64url JSON")

    def test_not_json(self):
        t = ext_token().split(".")
        self.refused("%s.%s.%s" % (b64e(b"not json"), t[1], t[2]), "not base64url JSON")

    def test_over_8k(self):
        self.refused(ext_token(pad="x" * 8192), "longer than 8192 bytes")

    def test_subject_without_identity(self):
        self.refused(ext_token(sub="spiffe://test/unknown"), "maps to no identity")


class Binding(unittest.TestCase):
    def test_token_expiry_on_connection(self):
        now = int(time.time())
        c = Client(BROKER.socket, authenticate=False)
        self.assertIn("result", authenticate(c, ext_token(iat=now, nbf=now, exp=now + 2)))
        self.assertIn("result", c.request("getKey", key="cmk"))
        time.sleep(2.5)
        self.assertEqual(c.request("getKey", key="cmk")["error"],
                         {"code": "Unauthorized", "message": "token expired: authenticate again"})
        self.assertIn("result", authenticate(c, ext_token()))
        self.assertIn("result", c.request("getKey", key="cmk"))
        c.close()

    def test_pipelined_authenticate_applies_to_later_requests(self):
        c = Client(BROKER.socket, authenticate=False)
        c.send_raw(('{"id":1,"op":"authenticate","token":"%s"}\n' % ext_token()).encode()
                   + b'{"id":2,"op":"getKey","key":"cmk"}\n' * 3)
        self.assertIn("result", c.read_line())
        for _ in range(3):
            self.assertIn("result", c.read_line())
        c.close()

    @unittest.skipUnless(os.geteuid() == 0, "needs root to present a token as another uid")
    def test_same_token_from_two_uids(self):
        token = ext_token(sub="spiffe://test/bound")
        c = Client(BROKER.socket, authenticate=False)
        r = authenticate(c, token)
        self.assertEqual(r["error"]["code"], "Forbidden")
        self.assertIn("identity 'bound' is not bound to this caller (uid 0", r["error"]["message"])
        c.close()
        for d in (TOKEN.dir, BROKER.dir):
            os.chmod(d, 0o711)
        try:
            rd, wr = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(rd)
                try:
                    os.setgid(65534)
                    os.setuid(65534)
                    cc = Client(BROKER.socket, timeout=5, authenticate=False)
                    out = [authenticate(cc, token), cc.request("getKey", key="cmk")]
                    os.write(wr, json.dumps(out).encode())
                finally:
                    os._exit(0)
            os.close(wr)
            os.waitpid(pid, 0)
            got = json.loads(os.read(rd, 65536).decode())
            os.close(rd)
        finally:
            for d in (TOKEN.dir, BROKER.dir):
                os.chmod(d, 0o700)
        self.assertEqual(got[0]["result"]["identity"], "bound")
        self.assertIn("result", got[1])


class RateLimit(unittest.TestCase):
    def test_throttled(self):
        b = Broker(TOKEN, name="rate", identities=IDENTITIES, access=ACCESS,
                   rate_limit="{ rate = 1.0; burst = 3; }").start()
        try:
            c = b.connect()  # getToken takes one of the burst of 3
            codes = [c.request("getKey", key="cmk").get("error", {}).get("code")
                     for _ in range(6)]
            self.assertEqual(codes[:2], [None, None])
            self.assertIn("Throttled", codes[2:])
            r = c.request("getKey", key="cmk")
            if "error" in r:
                self.assertIn("over its rate limit of 1 requests/s", r["error"]["message"])
            c.close()
        finally:
            self.assertEqual(b.stop(), 0)


class Reload(unittest.TestCase):
    def test_reload_under_load(self):
        grant = '{ identity = "svc-wrap"; keys = [ "other" ]; permissions = [ "get" ]; }'
        b = Broker(TOKEN, name="reload", identities=IDENTITIES, access=ACCESS + [grant])
        b.start()
        with open(b.config) as f:
            with_grant = f.read()
        without_grant = with_grant.replace(grant + ",", "").replace(",\n  " + grant, "")
        broken = with_grant.replace('roles = [ "Auditor" ]', 'roles = [ "Nope" ]')
        self.assertNotEqual(with_grant, without_grant)
        errors, counts = [], {"result": 0, "Forbidden": 0}
        stop = threading.Event()
        # Made before the config file starts changing under the test.
        token = ctl_token("svc-wrap", b.config)

        def hammer():
            try:
                c = Client(b.socket, authenticate=False)
                authenticate(c, token)
                while not stop.is_set():
                    r = c.request("getKey", key="other")
                    if "result" in r:
                        counts["result"] += 1
                    elif r["error"]["code"] == "Forbidden":
                        counts["Forbidden"] += 1
                    else:
                        errors.append(r)
                c.close()
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))

        threads = [threading.Thread(target=hammer) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            for i in range(12):
                text = (without_grant, with_grant, broken)[i % 3]
                with open(b.config, "w") as f:
                    f.write(text)
                b.reload()
                time.sleep(0.15)
            with open(b.config, "w") as f:
                f.write(with_grant)
            b.reload()
            time.sleep(0.3)
        finally:
            stop.set()
            for t in threads:
                t.join()
        self.assertEqual(errors, [])
        self.assertGreater(counts["result"], 0)
        self.assertGreater(counts["Forbidden"], 0)
        c = Client(b.socket, authenticate=False)
        authenticate(c, token)
        self.assertIn("result", c.request("getKey", key="other"))
        c.close()
        log = b.read_log()
        self.assertIn("reload refused, the running configuration stays: %s:" % b.config, log)
        self.assertIn("unknown role 'Nope'", log)
        self.assertEqual(b.stop(), 0)

    def test_keybrokerctl_reload(self):
        r = TOKEN.ctl("-c", BROKER.config, "reload", check=False)
        # ctl() passes the token's own config first; the explicit -c wins.
        self.assertEqual(r.returncode, 0, r.stderr)
        deadline = time.time() + 5
        while time.time() < deadline and "SIGHUP: reloading" not in BROKER.read_log():
            time.sleep(0.1)
        self.assertIn("SIGHUP: reloading", BROKER.read_log())
