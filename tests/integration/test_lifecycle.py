# SPDX-License-Identifier: MIT
"""The key lifecycle over the socket: create, rotate, update, soft delete,
recover, purge, purge protection, rotation policies, and several brokers
on one token. Every management op is an authenticated request, checked
against the ACL like any other.

Set KB_TRANSCRIPT=1 to have the end-to-end test print each request and
its outcome."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from harness import (BUILD, SOFTHSM_LIB, Broker, Client, Token, b64d, b64e, finish,
                     pkcs11_session)

TOKEN = BROKER = None

# One identity per management permission, each on "perm-*" only, and a
# service that uses keys ("life-*") without managing them.
PERMS = ("create", "import", "update", "rotate", "delete", "recover", "purge",
         "list", "get", "wrapKey", "unwrapKey")
IDENTITIES = ['{ name = "p-%s"; assigned = "user"; }' % p for p in PERMS] + [
    '{ name = "svc"; assigned = "user"; }',
]
ACCESS = ['{ identity = "p-%s"; keys = [ "perm-*" ]; permissions = [ "%s" ]; }'
          % (p, p) for p in PERMS] + [
    '{ identity = "svc"; keys = [ "life-*" ]; roles = [ "Crypto Service Encryption User" ]; }',
]

# Each management op, the permission(s) it needs and its fields.
POLICY = {"lifetimeActions": [{"trigger": {"timeAfterCreate": "P90D"},
                               "action": {"type": "Rotate"}}],
          "attributes": {"expiryTime": "P1Y"}}
OPS = [
    ("createKey", ["create"], {}),
    # Imports are off on this broker: with the permission, NotSupported.
    ("importKey", ["import"], {"pem": "x"}),
    ("updateKey", ["update"], {"attributes": {"enabled": True}}),
    ("rotateKey", ["rotate"], {}),
    ("getKeyVersions", ["list"], {}),
    ("getKeyRotationPolicy", ["get"], {}),
    ("updateKeyRotationPolicy", ["update"], {"policy": POLICY}),
    ("rewrapKey", ["wrapKey", "unwrapKey"], {"version": "0" * 32, "value": b64e(b"x" * 256)}),
    ("deleteKey", ["delete"], {}),
    ("getDeletedKey", ["list"], {}),
    ("recoverDeletedKey", ["recover"], {}),
    ("purgeDeletedKey", ["purge"], {}),
]


def setUpModule():
    global TOKEN, BROKER
    TOKEN = Token([])
    BROKER = Broker(TOKEN, identities=IDENTITIES, access=ACCESS).start()


def tearDownModule():
    finish(BROKER, TOKEN)


def ctl_token(token, config, identity):
    return token.ctl("-c", config, "identity", "token", identity).stdout.strip()


def client_as(broker, identity):
    c = Client(broker.socket, authenticate=False)
    r = c.request("authenticate", token=ctl_token(broker.token, broker.config, identity))
    assert "result" in r, r
    return c


def error_code(reply):
    return reply.get("error", {}).get("code")


def oaep_wrap(bundle, dek):
    """Wraps dek with a key bundle's public key, in OpenSSL (pyca)."""
    pub = rsa.RSAPublicNumbers(int.from_bytes(b64d(bundle["key"]["e"]), "big"),
                               int.from_bytes(b64d(bundle["key"]["n"]), "big")).public_key()
    return b64e(pub.encrypt(dek, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()),
                                               algorithm=hashes.SHA256(), label=None)))


class Transcript:
    """Requests and their outcomes, printed if KB_TRANSCRIPT is set."""

    def __init__(self):
        self.on = bool(os.environ.get("KB_TRANSCRIPT"))

    def __call__(self, who, c, op, **fields):
        r = c.request(op, **fields)
        if self.on:
            shown = {k: (v if k != "value" else v[:16] + "...") for k, v in fields.items()}
            if "error" in r:
                outcome = "%s: %s" % (r["error"]["code"], r["error"]["message"])
            elif "kid" in r["result"]:
                outcome = "ok kid=" + r["result"]["kid"]
            elif "key" in r["result"]:
                outcome = "ok kid=%s enabled=%s%s" % (
                    r["result"]["key"]["kid"], r["result"]["attributes"]["enabled"],
                    " deleted, purge at %d" % r["result"]["scheduledPurgeDate"]
                    if "deletedDate" in r["result"] else "")
            else:
                outcome = "ok " + json.dumps(r["result"])[:80]
            sys.stderr.write("  %-6s %s %s -> %s\n" % (who, op, json.dumps(shown), outcome))
        return r


class Lifecycle(unittest.TestCase):
    def test_end_to_end(self):
        t = Transcript()
        admin = BROKER.connect()  # it-admin: Crypto Officer on every key
        svc = client_as(BROKER, "svc")
        try:
            r = t("admin", admin, "createKey", key="life-a", key_size=2048,
                  tags={"owner": "etl"})
            v1 = r["result"]["key"]["kid"].rsplit("/", 1)[1]
            self.assertEqual(r["result"]["tags"], {"owner": "etl"})
            self.assertEqual(r["result"]["attributes"]["recoveryLevel"], "Recoverable+Purgeable")
            self.assertEqual(r["result"]["attributes"]["recoverableDays"], 90)
            w1 = t("svc", svc, "wrapKey", key="life-a", value=b64e(b"D" * 32))["result"]
            self.assertTrue(w1["kid"].endswith("/" + v1))

            r = t("admin", admin, "rotateKey", key="life-a")
            v2 = r["result"]["key"]["kid"].rsplit("/", 1)[1]
            self.assertNotEqual(v1, v2)
            self.assertEqual(r["result"]["tags"], {"owner": "etl"})  # inherited
            # The old ciphertext still unwraps with its version...
            r = t("svc", svc, "unwrapKey", kid=w1["kid"], value=w1["value"])
            self.assertEqual(b64d(r["result"]["value"]), b"D" * 32)
            # ... and new wraps use the new current version at once.
            r = t("svc", svc, "wrapKey", key="life-a", value=b64e(b"E" * 32))
            self.assertTrue(r["result"]["kid"].endswith("/" + v2))
            # rewrap moves the old ciphertext to the current version.
            r = t("svc", svc, "rewrapKey", kid=w1["kid"], value=w1["value"])
            self.assertTrue(r["result"]["kid"].endswith("/" + v2))
            moved = r["result"]
            r = t("svc", svc, "unwrapKey", kid=moved["kid"], value=moved["value"])
            self.assertEqual(b64d(r["result"]["value"]), b"D" * 32)

            r = t("admin", admin, "updateKey", key="life-a", version=v1,
                  attributes={"enabled": False})
            self.assertFalse(r["result"]["attributes"]["enabled"])
            r = t("svc", svc, "unwrapKey", kid=w1["kid"], value=w1["value"])
            self.assertEqual(error_code(r), "KeyDisabled")

            r = t("admin", admin, "deleteKey", key="life-a")
            res = r["result"]
            self.assertEqual(res["recoveryId"], "keybroker://it/deletedkeys/life-a")
            self.assertEqual(res["scheduledPurgeDate"] - res["deletedDate"], 90 * 86400)
            r = t("svc", svc, "unwrapKey", kid=moved["kid"], value=moved["value"])
            self.assertEqual(error_code(r), "KeyNotFound")
            r = t("svc", svc, "wrapKey", key="life-a", value=b64e(b"F" * 32))
            self.assertEqual(error_code(r), "KeyNotFound")
            self.assertEqual(error_code(t("admin", admin, "getKey", key="life-a")), "KeyNotFound")
            self.assertEqual(error_code(t("admin", admin, "createKey", key="life-a")), "Conflict")
            r = t("admin", admin, "getDeletedKeys")
            self.assertIn("keybroker://it/keys/life-a", [i["kid"] for i in r["result"]["value"]])
            self.assertNotIn("keybroker://it/keys/life-a",
                             [i["kid"] for i in admin.ok("getKeys")["value"]])

            r = t("admin", admin, "recoverDeletedKey", key="life-a")
            self.assertNotIn("deletedDate", r["result"])
            r = t("svc", svc, "unwrapKey", kid=moved["kid"], value=moved["value"])
            self.assertEqual(b64d(r["result"]["value"]), b"D" * 32)
            self.assertEqual(r["result"]["kid"], moved["kid"])  # the same kid

            t("admin", admin, "deleteKey", key="life-a")
            r = t("admin", admin, "purgeDeletedKey", key="life-a")
            self.assertEqual(r["result"], {})
            self.assertEqual(error_code(t("admin", admin, "getDeletedKey", key="life-a")),
                             "KeyNotFound")
            # The name is free again: a new key, new versions.
            r = t("admin", admin, "createKey", key="life-a")
            self.assertNotIn(r["result"]["key"]["kid"].rsplit("/", 1)[1], (v1, v2))
            self.assertEqual(r["result"]["tags"], {})
        finally:
            admin.close()
            svc.close()
        # The token holds nothing of the purged versions.
        lib, session = pkcs11_session(TOKEN)
        try:
            import PyKCS11
            ids = [bytes(session.getAttributeValue(o, [PyKCS11.CKA_ID])[0]).hex()
                   for o in session.findObjects([(PyKCS11.CKA_LABEL, "life-a")])
                   if session.getAttributeValue(o, [PyKCS11.CKA_CLASS])[0]
                   != PyKCS11.CKO_DATA]
            self.assertFalse({v1, v2} & set(ids))
        finally:
            session.logout()
            session.closeSession()

    def test_key_ops_limit_what_a_version_does(self):
        admin = BROKER.connect()
        svc = client_as(BROKER, "svc")
        try:
            r = admin.ok("createKey", key="life-wraponly", key_ops=["wrapKey"])
            self.assertEqual(r["key"]["key_ops"], ["wrapKey"])
            w = svc.wrap("life-wraponly", b"k" * 32)
            r = svc.request("unwrapKey", kid=w["kid"], value=w["value"])
            self.assertEqual(r["error"], {
                "code": "Forbidden",
                "message": "key 'life-wraponly' version %s does not allow "
                           "unwrapKey (its key_ops)" % w["kid"].rsplit("/", 1)[1]})
            admin.ok("updateKey", key="life-wraponly", key_ops=["wrapKey", "unwrapKey"])
            self.assertEqual(b64d(svc.ok("unwrapKey", kid=w["kid"], value=w["value"])["value"]),
                             b"k" * 32)
        finally:
            admin.close()
            svc.close()

    def test_unwraps_what_openssl_wrapped(self):
        admin = BROKER.connect()
        try:
            bundle = admin.ok("createKey", key="life-interop", key_size=3072,
                              attributes={"exp": int(time.time()) + 3600})
            self.assertIn("exp", bundle["attributes"])
            r = admin.ok("unwrapKey", kid=bundle["key"]["kid"],
                         value=oaep_wrap(bundle, b"interop-dek-32-bytes-long-000000"))
            self.assertEqual(b64d(r["value"]), b"interop-dek-32-bytes-long-000000")
        finally:
            admin.close()


class Permissions(unittest.TestCase):
    """Every management op: refused without its permission, not refused
    (by the ACL) with it."""

    @classmethod
    def setUpClass(cls):
        admin = BROKER.connect()
        for name in ("perm-a", "perm-b"):
            admin.ok("createKey", key=name)
        admin.close()

    def test_each_op_needs_its_permission(self):
        cells = 0
        for op, needs, fields in OPS:
            for perm in PERMS:
                c = client_as(BROKER, "p-" + perm)
                key = "perm-new-%s" % perm if op == "createKey" else "perm-a"
                r = c.request(op, key=key, **fields)
                c.close()
                if needs == [perm]:
                    self.assertNotEqual(error_code(r), "Forbidden", (op, perm, r))
                else:
                    missing = needs[0] if perm != needs[0] else needs[1]
                    self.assertEqual(r.get("error"), {
                        "code": "Forbidden",
                        "message": "identity 'p-%s' lacks %s on key '%s'"
                                   % (perm, missing, key)}, (op, perm))
                cells += 1
        self.assertEqual(cells, len(OPS) * len(PERMS))

    def test_lists_show_only_what_the_caller_may_list(self):
        admin = BROKER.connect()
        admin.ok("deleteKey", key="perm-b")
        admin.close()
        for perm in PERMS:
            c = client_as(BROKER, "p-" + perm)
            deleted = [i["kid"] for i in c.ok("getDeletedKeys")["value"]]
            live = [i["kid"] for i in c.ok("getKeys")["value"]]
            c.close()
            if perm == "list":
                self.assertEqual(deleted, ["keybroker://it/keys/perm-b"])
                self.assertIn("keybroker://it/keys/perm-a", live)
                self.assertNotIn("keybroker://it/keys/perm-b", live)
            else:
                self.assertEqual((deleted, live), ([], []))
        admin = BROKER.connect()
        admin.ok("recoverDeletedKey", key="perm-b")
        admin.close()

    def test_without_identity_nothing(self):
        for op, _, fields in OPS:
            c = Client(BROKER.socket, authenticate=False)
            self.assertEqual(error_code(c.request(op, key="perm-a", **fields)), "Unauthorized")
            c.close()


class BadInput(unittest.TestCase):
    def setUp(self):
        self.c = BROKER.connect()

    def tearDown(self):
        self.c.close()

    def refused(self, op, message, **fields):
        r = self.c.request(op, **fields)
        self.assertEqual(error_code(r), "BadParameter", r)
        self.assertIn(message, r["error"]["message"])

    def test_create_refuses(self):
        self.refused("createKey", "'kty' must be \"RSA-HSM\"", key="bad-1", kty="EC")
        self.refused("createKey", "'key_size' must be 2048", key="bad-1", key_size=1024)
        self.refused("createKey", "unknown or read-only attribute 'created'",
                     key="bad-1", attributes={"created": 1})
        self.refused("createKey", "unknown or read-only attribute 'recoveryLevel'",
                     key="bad-1", attributes={"recoveryLevel": "Purgeable"})
        self.refused("createKey", "attribute 'enabled' must be true or false",
                     key="bad-1", attributes={"enabled": "yes"})
        self.refused("createKey", "'nbf' must come before 'exp'",
                     key="bad-1", attributes={"nbf": 2000000000, "exp": 1900000000})
        self.refused("createKey", "attribute 'exp' must be Unix seconds",
                     key="bad-1", attributes={"exp": -5})
        self.refused("createKey", "'key_ops' must be a non-empty array",
                     key="bad-1", key_ops=["sign"])
        self.refused("createKey", "'key_ops' must be a non-empty array",
                     key="bad-1", key_ops=["wrapKey", "wrapKey"])
        self.refused("createKey", "give no version", key="bad-1", version="0" * 32)
        self.refused("createKey", "unknown field 'value'", key="bad-1", value="AA")
        self.assertEqual(error_code(self.c.request("getKey", key="bad-1")), "KeyNotFound")

    def test_huge_tag_maps(self):
        self.refused("createKey", "at most 15 tags, not 16", key="bad-2",
                     tags={"t%d" % i: "v" for i in range(16)})
        self.refused("createKey", "at most 15 tags, not 2000", key="bad-2",
                     tags={"t%d" % i: "v" for i in range(2000)})
        self.refused("createKey", "a tag name must be 1-64 bytes", key="bad-2",
                     tags={"n" * 65: "v"})
        self.refused("createKey", "a tag value must be a string of at most 256", key="bad-2",
                     tags={"n": "v" * 257})
        self.refused("createKey", "a tag value must be a string", key="bad-2", tags={"n": 5})
        self.refused("createKey", "without control characters", key="bad-2",
                     tags={"n": "a\nb"})
        self.refused("createKey", "the tags take more than 2047 bytes", key="bad-2",
                     tags={"t%02d" % i: "\"" * 200 for i in range(15)})
        r = self.c.ok("createKey", key="bad-2", tags={"t%02d" % i: "v" * 100 for i in range(15)})
        self.assertEqual(len(r["tags"]), 15)

    def test_update_refuses(self):
        self.c.ok("createKey", key="bad-3")
        self.refused("updateKey", "nothing to update", key="bad-3")
        self.refused("updateKey", "unknown or read-only attribute 'kty'",
                     key="bad-3", attributes={"kty": "RSA"})
        r = self.c.request("updateKey", key="bad-3", version="f" * 32,
                           attributes={"enabled": False})
        self.assertEqual(r["error"], {"code": "KeyNotFound",
                                      "message": "key 'bad-3' has no version '%s'" % ("f" * 32)})
        r = self.c.ok("updateKey", key="bad-3", attributes={"exp": 4000000000},
                      tags={"a": "b"})
        self.assertEqual((r["attributes"]["exp"], r["tags"]), (4000000000, {"a": "b"}))
        r = self.c.ok("updateKey", key="bad-3", attributes={"exp": None}, tags={})
        self.assertNotIn("exp", r["attributes"])
        self.assertEqual(r["tags"], {})

    def test_bad_durations_and_policies(self):
        self.c.ok("createKey", key="bad-4")
        for policy, message in [
            ({"lifetimeActions": [{"trigger": {"timeAfterCreate": "90 days"},
                                   "action": {"type": "Rotate"}}]}, "ISO 8601 duration"),
            ({"lifetimeActions": [{"trigger": {"timeAfterCreate": "P1.5D"},
                                   "action": {"type": "Rotate"}}]}, "ISO 8601 duration"),
            ({"lifetimeActions": [{"trigger": {"timeAfterCreate": "P0D"},
                                   "action": {"type": "Rotate"}}]}, "ISO 8601 duration"),
            ({"lifetimeActions": [{"trigger": {"timeAfterCreate": "PT30S"},
                                   "action": {"type": "Rotate"}}]},
             "rotates 30 s after creation; the broker's minimum is 604800 s"),
            ({"lifetimeActions": [{"trigger": {"timeBeforeExpiry": "P30D"},
                                   "action": {"type": "Rotate"}}]}, "needs an expiryTime"),
            ({"lifetimeActions": [{"trigger": {"timeAfterCreate": "P30D"},
                                   "action": {"type": "Notify"}}]},
             "Notify is triggered by timeBeforeExpiry"),
            ({"lifetimeActions": [{"trigger": {"timeAfterCreate": "P30D"},
                                   "action": {"type": "Delete"}}]}, "Rotate or Notify"),
            ({"lifetimeActions": [], "owner": "x"}, "a rotation policy is"),
            ({"attributes": {"expiryTime": "P1Y", "x": 1}}, "a rotation policy is"),
        ]:
            self.refused("updateKeyRotationPolicy", message, key="bad-4", policy=policy)
        r = self.c.ok("getKeyRotationPolicy", key="bad-4")
        self.assertEqual(r, {"id": "keybroker://it/keys/bad-4/rotationpolicy",
                             "lifetimeActions": []})
        r = self.c.ok("updateKeyRotationPolicy", key="bad-4", policy=POLICY)
        self.assertEqual(r["lifetimeActions"], POLICY["lifetimeActions"])
        self.assertEqual(self.c.ok("getKeyRotationPolicy", key="bad-4"), r)

    def test_deleted_key_ops_on_live_keys(self):
        self.c.ok("createKey", key="bad-5")
        for op in ("recoverDeletedKey", "purgeDeletedKey", "getDeletedKey"):
            r = self.c.request(op, key="bad-5")
            self.assertEqual(r["error"], {"code": "KeyNotFound",
                                          "message": "key 'bad-5' is not a deleted key"}, op)
        self.assertEqual(error_code(self.c.request("rotateKey", key="nosuch")), "KeyNotFound")
        self.assertEqual(error_code(self.c.request("deleteKey", key="nosuch")), "KeyNotFound")


class PurgeProtection(unittest.TestCase):
    def test_protection_holds_for_good(self):
        token = Token([])
        broker = Broker(token, name="protected", keys="{ purge_protection = true; recoverable_days = 7; }")
        try:
            broker.start()
            c = broker.connect()
            r = c.ok("createKey", key="pp")
            self.assertEqual(r["attributes"]["recoveryLevel"], "CustomizedRecoverable")
            self.assertEqual(r["attributes"]["recoverableDays"], 7)
            r = c.ok("deleteKey", key="pp")
            self.assertEqual(r["scheduledPurgeDate"] - r["deletedDate"], 7 * 86400)
            r = c.request("purgeDeletedKey", key="pp")
            self.assertEqual(error_code(r), "Forbidden")
            self.assertIn("purge protection is on for this token", r["error"]["message"])
            c.close()
            self.assertEqual(broker.stop(), 0)
            # The flag is in the token: a config without it changes nothing.
            with open(broker.config) as f:
                text = f.read()
            with open(broker.config, "w") as f:
                f.write(text.replace("purge_protection = true", "purge_protection = false"))
            broker.start()
            self.assertIn("it cannot be turned off", broker.read_log())
            c = broker.connect()
            self.assertEqual(error_code(c.request("purgeDeletedKey", key="pp")), "Forbidden")
            c.ok("recoverDeletedKey", key="pp")
            self.assertEqual(c.ok("getKey", key="pp")["attributes"]["recoveryLevel"],
                             "CustomizedRecoverable")
            c.close()
        finally:
            finish(broker, token)

    def test_retention_ends_in_a_purge(self):
        # A deletion whose retention ended (its state object rewritten
        # into the past, as another broker days ago would have left it)
        # is purged by the broker itself.
        import PyKCS11
        admin = BROKER.connect()
        admin.ok("createKey", key="life-expiring")
        admin.ok("deleteKey", key="life-expiring")
        lib, session = pkcs11_session(TOKEN)
        try:
            past = int(time.time()) - 8 * 86400
            state = {"name": "life-expiring", "updatedUs": int(time.time() * 1e6) + 10**6,
                     "deleted": past, "scheduledPurge": past + 7 * 86400}
            session.createObject([
                (PyKCS11.CKA_CLASS, PyKCS11.CKO_DATA), (PyKCS11.CKA_TOKEN, True),
                (PyKCS11.CKA_PRIVATE, True), (PyKCS11.CKA_LABEL, "life-expiring"),
                (PyKCS11.CKA_APPLICATION, "keybroker:key"),
                (PyKCS11.CKA_VALUE, json.dumps(state).encode())])
        finally:
            session.logout()
            session.closeSession()
        # The direct write bumped no generation: SIGHUP has the broker
        # read it, and its own periodic check then purges the key.
        BROKER.reload()
        deadline = time.time() + 30
        while time.time() < deadline:
            time.sleep(0.5)
            if "key life-expiring purged: its retention ended" in BROKER.read_log():
                break
        self.assertIn("key life-expiring purged: its retention ended", BROKER.read_log())
        self.assertEqual(error_code(admin.request("getDeletedKey", key="life-expiring")),
                         "KeyNotFound")
        admin.close()


class RotationPolicy(unittest.TestCase):
    def test_the_broker_rotates_by_itself_and_notifies(self):
        token = Token([])
        broker = Broker(token, name="rotating", keys='{ min_rotation_period = "PT1S"; }')
        try:
            broker.start()
            c = broker.connect()
            first = c.ok("createKey", key="auto")["key"]["kid"]
            c.ok("updateKeyRotationPolicy", key="auto", policy={
                "lifetimeActions": [
                    {"trigger": {"timeAfterCreate": "PT4S"}, "action": {"type": "Rotate"}},
                    {"trigger": {"timeBeforeExpiry": "PT58S"}, "action": {"type": "Notify"}}],
                "attributes": {"expiryTime": "PT1M"}})
            deadline = time.time() + 30
            while time.time() < deadline:
                versions = c.ok("getKeyVersions", key="auto")["value"]
                if len(versions) >= 2:
                    break
                time.sleep(0.5)
            self.assertGreaterEqual(len(versions), 2)
            self.assertEqual(versions[0]["kid"], first)
            current = c.ok("getKey", key="auto")
            # The new version expires after the policy's expiryTime ...
            self.assertAlmostEqual(current["attributes"]["exp"] - current["attributes"]["created"],
                                   60, delta=2)
            # ... and 2 s into its life the notify action is due.
            deadline = time.time() + 10
            while time.time() < deadline and "rotation policy notify" not in broker.read_log():
                time.sleep(0.5)
            self.assertIn("rotation policy notify", broker.read_log())
            self.assertIn("key auto rotated by its policy", broker.read_log())
            c.close()
        finally:
            finish(broker, token)


class Ctl(unittest.TestCase):
    """keybrokerctl key ...: through the socket, as an identity."""

    def ctl(self, *args, stdin=None):
        return subprocess.run([os.path.join(BUILD, "keybrokerctl"), "-c", BROKER.config,
                               "key", *args], env=TOKEN.env, capture_output=True,
                              text=True, input=stdin)

    def test_an_admins_day(self):
        r = self.ctl("create", "life-ctl", "--size", "3072", "--tag", "team=db",
                     "--exp", "2030-01-01T00:00:00Z")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"^keybroker://it/keys/life-ctl/[0-9a-f]{32}  enabled  "
                                   r"created \S+  exp 2030-01-01T00:00:00Z  tags team=db\n$")
        r = self.ctl("rotate", "life-ctl")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.ctl("--json", "versions", "life-ctl")
        self.assertEqual(len(json.loads(r.stdout)["value"]), 2)
        r = self.ctl("update", "life-ctl", "--disable", "--exp", "none", "--clear-tags")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("  disabled  ", r.stdout)
        self.assertNotIn("exp ", r.stdout)
        self.assertNotIn("tags", r.stdout)
        r = self.ctl("policy", "set", "life-ctl", "-", stdin=json.dumps(POLICY))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(self.ctl("policy", "get", "life-ctl").stdout)
                         ["lifetimeActions"], POLICY["lifetimeActions"])
        self.assertEqual(self.ctl("delete", "life-ctl").returncode, 0)
        r = self.ctl("deleted")
        self.assertIn("keybroker://it/keys/life-ctl  disabled", r.stdout)
        self.assertIn("purge due", r.stdout)
        self.assertEqual(self.ctl("recover", "life-ctl").returncode, 0)
        self.assertIn("keybroker://it/keys/life-ctl ", self.ctl("list").stdout)
        self.assertEqual(self.ctl("delete", "life-ctl").returncode, 0)
        r = self.ctl("purge", "life-ctl")
        self.assertEqual((r.returncode, r.stdout), (0, "key life-ctl purged\n"), r.stderr)

    def test_refusals_are_the_brokers(self):
        # An identity without create, by token file: the ACL decides.
        path = os.path.join(TOKEN.dir, "p-list.jwt")
        with open(path, "w") as f:
            f.write(ctl_token(TOKEN, BROKER.config, "p-list"))
        r = self.ctl("--token-file", path, "create", "perm-x")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr, "keybrokerctl: key create: Forbidden: identity 'p-list' "
                                   "lacks create on key 'perm-x'\n")
        r = self.ctl("--token-file", path, "list")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.ctl("create", "life-bad", "--tag", "x=" + "v" * 300)
        self.assertEqual(r.returncode, 1)
        self.assertIn("BadParameter: a tag value must be a string of at most 256", r.stderr)
        for args in (("frob",), ("create",), ("create", "a", "--size", "1024"),
                     ("update", "a", "--nbf", "tomorrow"), ("policy", "set", "a")):
            r = self.ctl(*args)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertIn("see --help", r.stderr)


def openssl_key(directory, name, bits=2048, traditional=False):
    """An RSA private key made by openssl on "another machine"."""
    path = os.path.join(directory, name + ".pem")
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                    "rsa_keygen_bits:%d" % bits, "-out", path], check=True,
                   capture_output=True)
    if traditional:
        subprocess.run(["openssl", "rsa", "-in", path, "-out", path, "-traditional"],
                       check=True, capture_output=True)
    return path


def independent_blob(kek_bundle, pem_path, oaep_hash=hashes.SHA1):
    """A BYOK blob made by pyca/cryptography, not by this project:
    RSA-OAEP(AES-256 key) || AES-KWP(PKCS#8 DER)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding
    kek = rsa.RSAPublicNumbers(int.from_bytes(b64d(kek_bundle["key"]["e"]), "big"),
                               int.from_bytes(b64d(kek_bundle["key"]["n"]), "big")).public_key()
    with open(pem_path, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None)
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    aes = os.urandom(32)
    head = kek.encrypt(aes, padding.OAEP(mgf=padding.MGF1(oaep_hash()), algorithm=oaep_hash(),
                                         label=None))
    return b64e(head + aes_key_wrap_with_padding(aes, der))


def pem_public_wrap(pem_path, dek):
    """Wraps dek with the public half of the PEM key, in OpenSSL."""
    from cryptography.hazmat.primitives import serialization
    with open(pem_path, "rb") as f:
        pub = serialization.load_pem_private_key(f.read(), None).public_key()
    return b64e(pub.encrypt(dek, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()),
                                               algorithm=hashes.SHA256(), label=None)))


class Import(unittest.TestCase):
    """importKey: BYOK (the key never in plain outside an HSM) and plain
    (JWK, PEM), on a broker that allows imports."""

    @classmethod
    def setUpClass(cls):
        cls.token = Token([])
        cls.broker = Broker(cls.token, name="importing", keys="{ allow_import = true; }",
                            identities=['{ name = "imp-b"; assigned = "user"; }'],
                            access=['{ identity = "imp-b"; keys = [ "tenant-b*" ]; '
                                    'permissions = [ "import", "get" ]; }']).start()
        cls.workstation = tempfile.mkdtemp(prefix="kb-admin-workstation-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.workstation, ignore_errors=True)
        finish(cls.broker, cls.token)

    def ctl(self, *args):
        return subprocess.run([os.path.join(BUILD, "keybrokerctl"), "-c", self.broker.config,
                               "key", *args], env=self.token.env, capture_output=True,
                              text=True)

    def test_byok_end_to_end(self):
        r = self.ctl("kek", "create", "kek-a")
        self.assertEqual(r.returncode, 0, r.stderr)
        c = self.broker.connect()
        kek = c.ok("getKey", key="kek-a")
        self.assertEqual(kek["key"]["key_ops"], ["import"])
        # On the admin's workstation: the KEK's public key as getKey
        # printed it, a key made by openssl, and byok-wrap.
        kek_file = os.path.join(self.workstation, "kek-a.json")
        with open(kek_file, "w") as f:
            json.dump(kek, f)
        pem = openssl_key(self.workstation, "tenant-key")
        blob_file = os.path.join(self.workstation, "tenant-key.byok")
        r = subprocess.run([os.path.join(BUILD, "keybroker"), "byok-wrap", "--kek", kek_file,
                            "--in", pem, "--out", blob_file], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.ctl("--json", "import", "tenant", "--kek", "kek-a", "--blob", blob_file,
                     "--tag", "origin=byok")
        self.assertEqual(r.returncode, 0, r.stderr)
        bundle = json.loads(r.stdout)
        self.assertEqual(bundle["key"]["kty"], "RSA-HSM")
        self.assertEqual(bundle["attributes"]["imported"], "byok")
        self.assertEqual(bundle["tags"], {"origin": "byok"})
        # What OpenSSL wraps with the tenant's own public key unwraps in
        # the token.
        dek = os.urandom(32)
        r = c.ok("unwrapKey", kid=bundle["key"]["kid"], value=pem_public_wrap(pem, dek))
        self.assertEqual(b64d(r["value"]), dek)
        # The private key cannot be read out of the token: pkcs11-tool
        # sees it sensitive and not extractable; its private exponent
        # does not read, and the token refuses to wrap it out.
        version = bundle["key"]["kid"].rsplit("/", 1)[1]
        out = subprocess.run(["pkcs11-tool", "--module", SOFTHSM_LIB, "--token-label", "keybroker",
                              "--login", "--pin", self.token.pin, "--list-objects",
                              "--type", "privkey", "--id", version],
                             env=self.token.env, capture_output=True, text=True, check=True)
        access = next(l for l in out.stdout.splitlines() if "Access:" in l)
        self.assertIn("sensitive", access)
        self.assertNotIn(" extractable", access.replace("never extractable", ""))
        import PyKCS11
        lib, session = pkcs11_session(self.token)
        try:
            priv = session.findObjects([(PyKCS11.CKA_CLASS, PyKCS11.CKO_PRIVATE_KEY),
                                        (PyKCS11.CKA_ID, bytes.fromhex(version))])[0]
            # PyKCS11 gives None for an attribute the token calls
            # sensitive (CKR_ATTRIBUTE_SENSITIVE).
            self.assertEqual(session.getAttributeValue(priv, [PyKCS11.CKA_PRIVATE_EXPONENT]),
                             [None])
            wrapper = session.generateKey([(PyKCS11.CKA_CLASS, PyKCS11.CKO_SECRET_KEY),
                                           (PyKCS11.CKA_KEY_TYPE, PyKCS11.CKK_AES),
                                           (PyKCS11.CKA_VALUE_LEN, 32),
                                           (PyKCS11.CKA_TOKEN, False), (PyKCS11.CKA_WRAP, True)],
                                          mecha=PyKCS11.Mechanism(PyKCS11.CKM_AES_KEY_GEN))
            with self.assertRaises(PyKCS11.PyKCS11Error) as e:
                session.wrapKey(wrapper, priv, mecha=PyKCS11.Mechanism(0x210A))
            self.assertIn("CKR_KEY_UNEXTRACTABLE", str(e.exception))
        finally:
            session.logout()
            session.closeSession()
        # A blob made by another implementation imports as well, as a
        # new version; a tampered one is refused and changes nothing.
        blob = independent_blob(kek, pem)
        r = c.ok("importKey", key="tenant", kek=kek["key"]["kid"].rsplit("/", 1)[0], blob=blob)
        self.assertEqual(len(c.ok("getKeyVersions", key="tenant")["value"]), 2)
        raw = bytearray(b64d(blob))
        raw[-5] ^= 1
        r = c.request("importKey", key="tenant", kek="kek-a", blob=b64e(bytes(raw)))
        self.assertEqual(r["error"]["code"], "BadParameter")
        self.assertIn("the blob does not unwrap with key-exchange key 'kek-a'", r["error"]["message"])
        r = c.request("importKey", key="tenant", kek="kek-a", blob=blob, alg="RSA-OAEP-256")
        self.assertEqual(r["error"]["code"], "BadParameter")
        self.assertEqual(len(c.ok("getKeyVersions", key="tenant")["value"]), 2)
        # The KEK imports; it never wraps or unwraps a DEK.
        r = c.request("wrapKey", key="kek-a", value=b64e(dek))
        self.assertEqual(r["error"]["code"], "Forbidden")
        r = c.request("importKey", key="tenant", kek="tenant", blob=blob)
        self.assertIn("is not a key-exchange key", r["error"]["message"])
        # Whoever may import into their own keys may not use another's
        # KEK: a copied blob would otherwise become their key.
        b = client_as(self.broker, "imp-b")
        r = b.request("importKey", key="tenant-b1", kek="kek-a", blob=blob)
        self.assertEqual(r["error"], {"code": "Forbidden", "message":
                                      "identity 'imp-b' lacks import on key-exchange key "
                                      "'kek-a'"})
        b.close()
        r = c.request("updateKey", key="kek-a", key_ops=["wrapKey"])
        self.assertIn("cannot be given to a data key nor taken", r["error"]["message"])
        c.close()

    def test_repair_keeps_what_the_token_says_a_key_is(self):
        # A key-exchange key whose metadata is lost is repaired as one
        # (the token says it only unwraps), not widened to a data key.
        import PyKCS11
        c = self.broker.connect()
        version = c.ok("createKey", key="kek-r", key_ops=["import"])["key"]["kid"].rsplit("/", 1)[1]
        lib, session = pkcs11_session(self.token)
        try:
            for o in session.findObjects([(PyKCS11.CKA_CLASS, PyKCS11.CKO_DATA),
                                          (PyKCS11.CKA_LABEL, "kek-r"),
                                          (PyKCS11.CKA_APPLICATION, "keybroker:key-version")]):
                session.destroyObject(o)
        finally:
            session.logout()
            session.closeSession()
        self.broker.reload()
        deadline = time.time() + 10
        while not c.ok("getKeyVersions", key="kek-r")["value"][0]["attributes"].get("damaged"):
            self.assertLess(time.time(), deadline)
            time.sleep(0.1)
        r = self.token.ctl("-c", self.broker.config, "repair-key", "kek-r", version, "--enabled",
                           check=False)
        self.assertEqual(r.returncode, 0, r.stderr)
        deadline = time.time() + 5
        while "error" in c.request("getKey", key="kek-r"):
            self.assertLess(time.time(), deadline)
            time.sleep(0.1)
        self.assertEqual(c.ok("getKey", key="kek-r")["key"]["key_ops"], ["import"])
        c.close()

    def test_plain_pem_and_jwk(self):
        import jwt
        from jwt.algorithms import RSAAlgorithm
        from cryptography.hazmat.primitives import serialization
        c = self.broker.connect()
        for name, traditional in (("mig-pkcs8", False), ("mig-pkcs1", True)):
            pem = openssl_key(self.workstation, name, traditional=traditional)
            with open(pem) as f:
                r = c.ok("importKey", key=name, pem=f.read())
            self.assertEqual((r["key"]["kty"], r["attributes"]["imported"]), ("RSA", "plain"))
            dek = os.urandom(32)
            self.assertEqual(b64d(c.ok("unwrapKey", kid=r["key"]["kid"],
                                       value=pem_public_wrap(pem, dek))["value"]), dek)
        key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
        jwk = json.loads(RSAAlgorithm.to_jwk(key))
        r = c.ok("importKey", key="mig-jwk", jwk=jwk)
        self.assertEqual(b64d(r["key"]["n"]), key.public_key().public_numbers().n.to_bytes(384, "big"))
        bad = dict(jwk, d=jwk["dp"])
        r = c.request("importKey", key="mig-bad", jwk=bad)
        self.assertEqual(r["error"]["code"], "BadParameter")
        self.assertNotIn(jwk["d"][:16], json.dumps(r))
        r = c.request("importKey", key="mig-bad", jwk={k: v for k, v in jwk.items() if k != "qi"})
        self.assertIn("'jwk' member 'qi' must be base64url", r["error"]["message"])
        three = os.path.join(self.workstation, "three-primes.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                        "rsa_keygen_bits:2048", "-pkeyopt", "rsa_keygen_primes:3",
                        "-out", three], check=True, capture_output=True)
        with open(three) as f:
            r = c.request("importKey", key="mig-bad", pem=f.read())
        self.assertEqual(r["error"]["message"], "the key has more than two primes: not imported")
        small = openssl_key(self.workstation, "small", bits=1024)
        with open(small) as f:
            r = c.request("importKey", key="mig-bad", pem=f.read())
        self.assertEqual(r["error"]["message"], "the key is 1024 bits: 2048, 3072 or 4096 only")
        enc = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.BestAvailableEncryption(b"secret"))
        r = c.request("importKey", key="mig-bad", pem=enc.decode())
        self.assertIn("not a PEM private key without a passphrase", r["error"]["message"])
        for fields, message in (({}, "give one of 'jwk'"),
                                ({"pem": "x", "jwk": jwk}, "give one of 'jwk'"),
                                ({"kek": "kek-a"}, "give one of 'jwk'"),
                                ({"pem": "x", "alg": "RSA-OAEP"}, "'alg' goes with 'kek'"),
                                ({"kek": "kek-a", "blob": "!!"}, "'blob' is not base64url")):
            r = c.request("importKey", key="mig-bad", **fields)
            self.assertEqual(r["error"]["code"], "BadParameter", fields)
            self.assertIn(message, r["error"]["message"])
        self.assertEqual(c.request("getKey", key="mig-bad")["error"]["code"], "KeyNotFound")
        c.close()

    def test_imported_keys_need_imports_allowed(self):
        # The main broker does not allow imports: refused, and a broker
        # that stops allowing them stops believing imported keys.
        c = BROKER.connect()
        r = c.request("importKey", key="life-imp", pem="x")
        self.assertEqual(r["error"], {"code": "NotSupported", "message":
                                      "importKey is off: keys.allow_import = true in the "
                                      "configuration turns it on (for every broker of the "
                                      "token)"})
        c.close()
        token = Token([])
        broker = Broker(token, name="imp-toggle", keys="{ allow_import = true; }")
        try:
            broker.start()
            c = broker.connect()
            with open(openssl_key(token.dir, "t")) as f:
                c.ok("importKey", key="imp", pem=f.read())
            c.ok("createKey", key="gen")
            c.close()
            broker.stop()
            with open(broker.config) as f:
                text = f.read()
            with open(broker.config, "w") as f:
                f.write(text.replace("allow_import = true", "allow_import = false"))
            broker.start()
            c = broker.connect()
            self.assertEqual(c.request("getKey", key="imp")["error"]["code"], "KeyNotFound")
            self.assertIn("result", c.request("getKey", key="gen"))
            # The name is not free: its versions are in the token.
            r = c.request("createKey", key="imp")
            self.assertEqual(r["error"]["code"], "Conflict")
            self.assertIn("the token holds 1 private keys of a key named 'imp' that this "
                          "broker does not use", r["error"]["message"])
            c.close()
            self.assertIn("imported, and this broker does not allow imported keys "
                          "(keys.allow_import); refused", broker.read_log())
        finally:
            finish(broker, token)


class Provisioning(unittest.TestCase):
    """keybrokerctl slots, init-token --slot, set-pin, init-pin: directly
    on the token, PINs only from files."""

    def setUp(self):
        self.token = Token([("prov", 2048)])

    def tearDown(self):
        self.token.remove()

    def ctl(self, *args, config=None):
        return self.token.ctl(*(("-c", config) if config else ()), *args, check=False)

    def pin_file(self, name, pin):
        path = os.path.join(self.token.dir, name)
        with open(path, "w") as f:
            f.write(pin + "\n")
        os.chmod(path, 0o600)
        return path

    def test_slots_and_a_second_token_in_a_chosen_slot(self):
        r = self.ctl("slots")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"slot \d+  \(the config's token\)  .*\n  token 'keybroker'  "
                                   r"serial \S+  SoftHSM project SoftHSM v2\n  initialized, "
                                   r"user PIN set")
        empty = re.search(r"slot (\d+)  .*\n  token ''.*\n  not initialized", r.stdout).group(1)
        conf = os.path.join(self.token.dir, "second.conf")
        with open(os.path.join(self.token.dir, "keybroker.conf")) as f:
            text = f.read()
        with open(conf, "w") as f:
            f.write(text.replace("pkcs11:token=keybroker", "pkcs11:token=second"))
        so = os.path.join(self.token.dir, "so.pin")
        r = self.ctl("init-token", "--so-pin-file", so, "--slot", "999999", config=conf)
        self.assertEqual(r.returncode, 1)
        self.assertIn("slot 999999 has no uninitialised token", r.stderr)
        r = self.ctl("init-token", "--so-pin-file", so, "--slot", "x1", config=conf)
        self.assertIn("--slot 'x1' is not a slot id", r.stderr)
        r = self.ctl("init-token", "--so-pin-file", so, "--slot", empty, config=conf)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.ctl("slots", config=conf)
        # SoftHSMv2 numbers an initialised token's slot anew.
        self.assertRegex(r.stdout, r"slot \d+  \(the config's token\)  .*\n  token 'second'")
        self.assertRegex(r.stdout, r"slot \d+  SoftHSM.*\n  token 'keybroker'")

    def test_pin_change_and_reset(self):
        new = self.pin_file("new.pin", "87654321")
        r = self.ctl("set-pin", "--new-pin-file", new)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("the user PIN is now the one in %s" % new, r.stdout)
        # The config's PIN file is the old PIN now.
        r = self.ctl("list-keys")
        self.assertEqual(r.returncode, 1)
        self.assertIn("CKR_PIN_INCORRECT (wrong PIN in the PIN file)", r.stderr)
        r = self.ctl("init-pin", "--so-pin-file", new)
        self.assertEqual(r.returncode, 1)
        self.assertIn("as the SO: CKR_PIN_INCORRECT (wrong SO PIN)", r.stderr)
        r = self.ctl("init-pin", "--so-pin-file", os.path.join(self.token.dir, "so.pin"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("/prov/", self.ctl("list-keys").stdout)
        loose = self.pin_file("loose.pin", "11112222")
        os.chmod(loose, 0o644)
        r = self.ctl("set-pin", "--new-pin-file", loose)
        self.assertEqual(r.returncode, 1)
        self.assertIn(loose, r.stderr)
        for args in (("set-pin",), ("set-pin", "--so-pin-file", new), ("init-pin",),
                     ("set-pin", "1234")):
            r = self.ctl(*args)
            self.assertEqual(r.returncode, 2, args)


class TwoBrokers(unittest.TestCase):
    """Two brokers on one token: what one changes, the other sees within
    about a second, without SIGHUP; concurrent writes corrupt nothing."""

    @classmethod
    def setUpClass(cls):
        cls.token = Token([])
        cls.a = Broker(cls.token, name="a").start()
        cls.b = Broker(cls.token, name="b").start()

    @classmethod
    def tearDownClass(cls):
        cls.b.stop()
        finish(cls.a, cls.token)

    def seen_within(self, check, limit=3.0):
        start = time.time()
        while time.time() - start < limit:
            if check():
                return time.time() - start
            time.sleep(0.05)
        self.fail("not seen within %.1f s" % limit)

    def test_changes_through_one_are_live_on_the_other(self):
        ca, cb = self.a.connect(), self.b.connect()
        try:
            ca.ok("createKey", key="shared")
            took = [self.seen_within(lambda: "result" in cb.request("getKey", key="shared"))]
            v2 = ca.ok("rotateKey", key="shared")["key"]["kid"]
            took.append(self.seen_within(
                lambda: cb.wrap("shared", b"s" * 32)["kid"] == v2))
            cb.ok("updateKey", key="shared", attributes={"enabled": False})
            took.append(self.seen_within(
                lambda: error_code(ca.request("wrapKey", key="shared",
                                              value=b64e(b"s" * 32))) == "KeyDisabled"))
            ca.ok("deleteKey", key="shared")
            took.append(self.seen_within(
                lambda: error_code(cb.request("getKey", key="shared")) == "KeyNotFound"))
            sys.stderr.write("\n  seen by the other broker after %s s\n"
                             % ", ".join("%.2f" % t for t in took))
        finally:
            ca.close()
            cb.close()

    def test_a_revocation_reaches_the_other_broker(self):
        # Revoked on the token and told to broker a only: broker b, which
        # nobody tells, refuses the token within about a second.
        tok = self.token.ctl("-c", self.a.config, "identity", "token", "it-admin").stdout.strip()
        jti = json.loads(b64d(tok.split(".")[1]))["jti"]
        cb = Client(self.b.socket, authenticate=False)
        self.assertIn("result", cb.request("authenticate", token=tok))
        r = self.token.ctl("-c", self.a.config, "identity", "revoke", jti)
        self.assertIn("revoked token", r.stdout)
        took = self.seen_within(
            lambda: error_code(cb.request("getKeys")) == "Unauthorized")
        sys.stderr.write("\n  revocation seen by the other broker after %.2f s\n" % took)
        cb.close()

    def test_concurrent_writes_corrupt_nothing(self):
        errors = []

        def work(broker, prefix):
            try:
                c = broker.connect()
                for i in range(4):
                    c.ok("createKey", key="%s-%d" % (prefix, i))
                for _ in range(3):
                    c.ok("rotateKey", key="race")
                    c.ok("updateKey", key="race", tags={"by": prefix})
                c.close()
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        c = self.a.connect()
        c.ok("createKey", key="race")
        threads = [threading.Thread(target=work, args=(self.a, "ca")),
                   threading.Thread(target=work, args=(self.b, "cb"))]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        self.assertEqual(errors, [])
        time.sleep(1.5)
        cb = self.b.connect()
        for broker_client in (c, cb):
            names = [i["kid"].rsplit("/", 1)[1] for i in broker_client.ok("getKeys")["value"]]
            for p in ("ca", "cb"):
                for i in range(4):
                    self.assertIn("%s-%d" % (p, i), names)
            versions = broker_client.ok("getKeyVersions", key="race")["value"]
            self.assertEqual(len(versions), 7)
            self.assertFalse([v for v in versions if v["attributes"].get("damaged")])
            w = broker_client.wrap("race", b"r" * 32)
            self.assertEqual(b64d(broker_client.unwrap("race", b64d(w["value"]),
                                                       version=w["kid"].rsplit("/", 1)[1])
                                  ["value"]), b"r" * 32)
        c.close()
        cb.close()


if __name__ == "__main__":
    unittest.main()
