# SPDX-License-Identifier: MIT
"""The audit trail: one record per request (allowed or refused) with the
fields of docs/audit.md and no secret, a hash chain with checkpoints
signed by the audit key in the token, keybroker-audit verify catching
each kind of tampering at the right record, the trail after a kill -9,
and a full disk: fail closed for unwrap, management and getToken, served
and counted for getKey and wrapKey, and back by itself."""

import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

from harness import BUILD, Broker, Client, Token, b64d, b64e, finish

TOKEN = BROKER = None
PUBKEY = None  # the audit key's PEM, as keybroker-audit pubkey gave it
AUDIT = os.path.join(BUILD, "keybroker-audit")
DEK = b"audit-test-dek-0123456789abcdef!"

IDENTITIES = [
    '{ name = "svc"; assigned = "user"; }',
    '{ name = "nobody"; assigned = "user"; }',
]
ACCESS = [
    '{ identity = "svc"; keys = [ "cmk" ]; roles = [ "Crypto Service Encryption User" ]; }',
    '{ identity = "it-admin"; keys = [ "*" ]; roles = [ "Auditor" ]; }',
]


def setUpModule():
    global TOKEN, BROKER, PUBKEY
    TOKEN = Token([("cmk", 2048)])
    BROKER = Broker(TOKEN, identities=IDENTITIES, access=ACCESS,
                    audit='{ checkpoint_records = 8; forward = "none"; }').start()
    PUBKEY = os.path.join(TOKEN.dir, "audit.pem")
    with open(PUBKEY, "w") as f:
        f.write(audit_tool("pubkey", "--socket", BROKER.socket).stdout)


def tearDownModule():
    finish(BROKER, TOKEN)


def audit_tool(*args, check=True):
    r = subprocess.run([AUDIT, *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError("keybroker-audit %s: %d\n%s%s"
                             % (args[0], r.returncode, r.stdout, r.stderr))
    return r


def trail_dir(broker):
    return os.path.join(broker.dir, "audit")


def records(broker):
    out = []
    d = trail_dir(broker)
    names = sorted(n for n in os.listdir(d) if n.startswith("audit-")) + ["audit.jsonl"]
    for n in names:
        with open(os.path.join(d, n)) as f:
            out += [json.loads(line) for line in f]
    return out


def client_as(broker, identity):
    tok = broker.token.ctl("-c", broker.config, "identity", "token",
                           identity).stdout.strip()
    c = Client(broker.socket, authenticate=False)
    assert "result" in c.request("authenticate", token=tok)
    return c, tok


def by_correlation(broker, cid):
    return [r for r in records(broker) if r.get("correlationId") == cid]


def wait_for(pred, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


class Records(unittest.TestCase):
    """What a request leaves in the trail."""

    def test_each_op_allowed_and_refused_leaves_one_record(self):
        svc, _ = client_as(BROKER, "svc")
        nobody, _ = client_as(BROKER, "nobody")
        wrapped = svc.wrap("cmk", DEK)["value"]
        version = TOKEN.versions["cmk"][0]
        calls = [
            ("getKey", {"key": "cmk"}, "get"),
            ("wrapKey", {"key": "cmk", "value": b64e(DEK)}, "wrapKey"),
            ("unwrapKey", {"key": "cmk", "value": wrapped}, "unwrapKey"),
            ("rewrapKey", {"key": "cmk", "version": version, "value": wrapped},
             "wrapKey"),
            ("getKeys", {}, None),
            ("createKey", {"key": "made-by-audit-test"}, "create"),
        ]
        for op, fields, perm in calls:
            for who, c, allowed in (("svc", svc, True), ("nobody", nobody, False)):
                if op in ("getKeys", "createKey") and who == "svc":
                    allowed = op == "getKeys"
                cid = "each-%s-%s" % (op, who)
                reply = c.request(op, correlationId=cid, **fields)
                recs = by_correlation(BROKER, cid)
                self.assertEqual(len(recs), 1, (op, who, recs))
                r = recs[0]
                self.assertEqual(r["event"], "request")
                self.assertEqual(r["op"], op)
                self.assertEqual(r["id"], reply["id"])
                self.assertEqual(r["identity"]["name"], who)
                self.assertEqual(r["identity"]["iss"], "keybroker://it")
                self.assertTrue(r["identity"]["jti"])
                self.assertEqual(r["peer"]["uid"], os.geteuid())
                self.assertEqual(r["peer"]["pid"], os.getpid())
                self.assertGreater(r["conn"], 0)
                self.assertGreaterEqual(r["duration_us"], 0)
                self.assertRegex(r["policy"], "^[0-9a-f]{64}$")
                self.assertRegex(r["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
                if "error" in reply:
                    self.assertEqual(r["result"], reply["error"]["code"])
                    self.assertEqual(r["message"], reply["error"]["message"])
                else:
                    self.assertEqual(r["result"], "ok")
                if "key" in fields:
                    self.assertEqual(r["key"], fields["key"])
                    self.assertEqual(r["versionAsked"], fields.get("version", ""))
                if allowed and perm and "error" not in reply:
                    self.assertEqual(r["grant"], "svc on cmk")
                    self.assertEqual(r["version"], version)
                    self.assertTrue(r["kid"].endswith("/cmk/" + version))
                if not allowed and perm:
                    self.assertEqual(r["result"], "Forbidden")
                    self.assertEqual(r["missing"], perm)
                if op in ("wrapKey", "unwrapKey", "rewrapKey"):
                    self.assertEqual(r["alg"], "RSA-OAEP-256")
                    if allowed:
                        self.assertIn("valueHmac", r)
                if op in ("unwrapKey", "rewrapKey") and allowed:
                    self.assertEqual(r["path"], "token-raw-rsa+oaep-decode")
        svc.close()
        nobody.close()

    def test_every_op_of_the_table_allowed_and_refused_has_one_record(self):
        admin = BROKER.connect()
        nobody, _ = client_as(BROKER, "nobody")
        svc, _ = client_as(BROKER, "svc")
        wrapped = svc.wrap("cmk", DEK)["value"]
        version = TOKEN.versions["cmk"][0]
        policy = {"lifetimeActions": [{"trigger": {"timeAfterCreate": "P90D"},
                                       "action": {"type": "Rotate"}}],
                  "attributes": {"expiryTime": "P1Y"}}
        k = {"key": "matrix"}
        steps = [
            # (op, fields, client allowed, whether it should succeed)
            ("authenticate", {"token": "x.y.z"}, None, False),
            ("getToken", {}, admin, True),
            ("getKey", {"key": "cmk"}, svc, True),
            ("wrapKey", {"key": "cmk", "value": b64e(DEK)}, svc, True),
            ("unwrapKey", {"key": "cmk", "value": wrapped}, svc, True),
            ("rewrapKey", {"key": "cmk", "version": version, "value": wrapped}, svc, True),
            ("createKey", k, admin, True),
            ("importKey", dict(k, pem="x"), admin, False),
            ("rotateKey", k, admin, True),
            ("updateKey", dict(k, attributes={"enabled": True}), admin, True),
            ("getKeys", {}, admin, True),
            ("getKeyVersions", k, admin, True),
            ("getKeyRotationPolicy", k, admin, True),
            ("updateKeyRotationPolicy", dict(k, policy=policy), admin, True),
            ("deleteKey", k, admin, True),
            ("getDeletedKey", k, admin, True),
            ("getDeletedKeys", {}, admin, True),
            ("recoverDeletedKey", k, admin, True),
            ("revokeToken", {"jti": "0" * 32}, admin, True),
            ("getAuditStatus", {}, admin, True),
        ]
        for op, fields, allowed_client, succeeds in steps:
            for who, c in (("allowed", allowed_client), ("refused", nobody)):
                if c is None:
                    c = nobody
                cid = "matrix-%s-%s" % (op, who)
                reply = c.request(op, correlationId=cid, **fields)
                recs = by_correlation(BROKER, cid)
                self.assertEqual(len(recs), 1, (op, who, reply, recs))
                r = recs[0]
                self.assertEqual(r["op"], op)
                self.assertEqual(r["event"], "request")
                if "error" in reply:
                    self.assertEqual(r["result"], reply["error"]["code"], (op, who))
                else:
                    self.assertEqual(r["result"], "ok", (op, who))
                if who == "allowed":
                    self.assertEqual("error" not in reply, succeeds, (op, reply))
                for field in ("time", "seq", "prev", "conn", "peer", "policy", "id"):
                    self.assertIn(field, r, (op, who))
                if "key" in fields:
                    self.assertEqual(r["key"], fields["key"])
        # The refusals an identity without grants gets, by permission.
        for op in ("createKey", "rotateKey", "deleteKey", "unwrapKey", "getAuditStatus"):
            r = by_correlation(BROKER, "matrix-%s-refused" % op)[0]
            self.assertEqual(r["result"], "Forbidden", op)
            self.assertIn("missing", r)
        for c in (admin, nobody, svc):
            c.close()

    def test_requests_without_identity_and_bad_tokens_are_recorded(self):
        c = Client(BROKER.socket, authenticate=False)
        c.request("getKey", key="cmk", correlationId="no-identity")
        c.request("authenticate", token="not.a.token", correlationId="bad-token")
        c.send_raw(b'{"id":77,"op":"getKey","key":"cmk","correlationId":"x",\n')
        c.read_line()
        r = by_correlation(BROKER, "no-identity")
        self.assertEqual([x["result"] for x in r], ["Unauthorized"])
        self.assertNotIn("identity", r[0])
        r = by_correlation(BROKER, "bad-token")
        self.assertEqual([x["result"] for x in r], ["Unauthorized"])
        bad = [x for x in records(BROKER)
               if x.get("result") == "BadRequest" and x["peer"]["pid"] == os.getpid()]
        self.assertTrue(bad)
        c.close()

    def test_refusals_without_identity_are_limited_per_uid_and_counted(self):
        b = Broker(TOKEN, name="garbage", identities=IDENTITIES, access=ACCESS,
                   audit='{ forward = "none"; }').start()
        sent = 0
        for i in range(25):
            c = Client(b.socket, authenticate=False)
            c.send_raw(b"garbage\n" * 8)
            for j in range(8):
                c.read_line()
            c.close()
            sent += 8
        time.sleep(1.2)
        c = Client(b.socket, authenticate=False)
        c.send_raw(b"garbage\n")
        c.read_line()
        c.close()
        sent += 1
        b.stop()
        bad = [r for r in records(b) if r.get("result") == "BadRequest"]
        self.assertLess(len(bad), 150)
        self.assertGreaterEqual(len(bad), 100)
        self.assertGreater(bad[-1].get("heldBack", 0), 0)
        # Each refusal is a record or counted in the next one.
        self.assertEqual(len(bad) + sum(r.get("heldBack", 0) for r in bad), sent)

    def test_same_wrapped_value_gives_the_same_hmac(self):
        svc, _ = client_as(BROKER, "svc")
        wrapped = svc.wrap("cmk", DEK, correlationId="hmac-wrap")["value"]
        svc.ok("unwrapKey", key="cmk", value=wrapped, correlationId="hmac-unwrap-1")
        svc.ok("unwrapKey", key="cmk", value=wrapped, correlationId="hmac-unwrap-2")
        other = svc.wrap("cmk", DEK)["value"]
        svc.ok("unwrapKey", key="cmk", value=other, correlationId="hmac-unwrap-3")
        h = [by_correlation(BROKER, c)[0]["valueHmac"]
             for c in ("hmac-wrap", "hmac-unwrap-1", "hmac-unwrap-2", "hmac-unwrap-3")]
        self.assertEqual(h[0], h[1])
        self.assertEqual(h[1], h[2])
        self.assertNotEqual(h[2], h[3])
        # It is keyed: not the plain SHA-256 of the value.
        plain = base64.urlsafe_b64encode(hashlib.sha256(b64d(wrapped)).digest())
        self.assertNotEqual(h[0], plain.rstrip(b"=").decode())
        svc.close()

    def test_no_secret_in_any_record(self):
        svc, token = client_as(BROKER, "svc")
        wrapped = svc.wrap("cmk", DEK)["value"]
        got = svc.ok("unwrapKey", key="cmk", value=wrapped)["value"]
        self.assertEqual(b64d(got), DEK)
        minted = Client(BROKER.socket, authenticate=False).ok("getToken")["access_token"]
        with open(os.path.join(TOKEN.dir, "user.pin")) as f:
            pin = f.read().strip()
        text = ""
        d = trail_dir(BROKER)
        for n in os.listdir(d):
            with open(os.path.join(d, n), errors="replace") as f:
                text += f.read()
        for secret in (DEK.decode(), b64e(DEK), DEK.hex(), wrapped, token, minted,
                       token.split(".")[2], minted.split(".")[2], pin):
            self.assertNotIn(secret, text)
        svc.close()

    def test_correlation_id_is_checked(self):
        c = BROKER.connect()
        for bad in ("", "x" * 65, "tab\there", "é"):
            e = c.request("getKey", key="cmk", correlationId=bad)["error"]
            self.assertEqual(e["code"], "BadParameter")
            self.assertIn("correlationId", e["message"])
        e = c.request("getKey", key="cmk", correlationId=5)["error"]
        self.assertEqual(e["code"], "BadParameter")
        c.close()

    def test_reload_records_the_policy_it_installed(self):
        before = len([r for r in records(BROKER) if r["event"] == "reload"])
        BROKER.reload()
        self.assertTrue(wait_for(lambda: len(
            [r for r in records(BROKER) if r["event"] == "reload"]) > before))
        r = [r for r in records(BROKER) if r["event"] == "reload"][-1]
        self.assertEqual(r["result"], "ok")
        with open(BROKER.config, "rb") as f:
            self.assertEqual(r["policy"], hashlib.sha256(f.read()).hexdigest())
        self.assertIn({"identity": "svc", "keys": ["cmk"],
                       "permissions": ["get", "wrapKey", "unwrapKey"]}, r["grants"])

    def test_keybrokerctl_direct_commands_are_recorded_in_the_same_chain(self):
        n = len(records(BROKER))
        BROKER.token.ctl("-c", BROKER.config, "list-keys")
        recs = records(BROKER)
        mine = [r for r in recs[n:] if r["event"] == "admin"]
        # Its start, before it ran, and its end.
        self.assertEqual([(r["op"], r["result"]) for r in mine],
                         [("list-keys", "started"), ("list-keys", "ok")])
        self.assertEqual(mine[1]["exit"], 0)
        self.assertEqual(mine[1]["instance"], "keybrokerctl")
        self.assertEqual(mine[1]["peer"]["pid"], mine[0]["peer"]["pid"])
        # The broker's next record continues after it.
        c = BROKER.connect()
        c.close()
        after = [r for r in records(BROKER) if r["seq"] == mine[1]["seq"] + 1][0]
        self.assertEqual(after["instance"], "it")
        line = [l for l in open(os.path.join(trail_dir(BROKER), "audit.jsonl"))
                if json.loads(l)["seq"] == mine[1]["seq"]][0]
        self.assertEqual(after["prev"], hashlib.sha256(line.rstrip("\n").encode()).hexdigest())

    def test_audit_status_needs_read_audit(self):
        c = BROKER.connect()
        st = c.ok("getAuditStatus")
        self.assertTrue(st["available"])
        self.assertEqual(st["unrecorded"], {"served": 0, "refused": 0})
        self.assertEqual(st["publicKey"]["crv"], "P-256")
        self.assertGreater(st["records"], 0)
        c.close()
        svc, _ = client_as(BROKER, "svc")
        e = svc.request("getAuditStatus")["error"]
        self.assertEqual(e["code"], "Forbidden")
        self.assertIn("readAudit", e["message"])
        svc.close()
        out = audit_tool("status", "--socket", BROKER.socket).stdout
        self.assertIn("available     yes", out)


class Chain(unittest.TestCase):
    """A sealed trail of its own broker, and each kind of tampering."""

    @classmethod
    def setUpClass(cls):
        cls.broker = Broker(TOKEN, name="chain", identities=IDENTITIES, access=ACCESS,
                            audit='{ checkpoint_records = 5; forward = "none"; }').start()
        c = cls.broker.connect()
        for i in range(30):
            c.ok("wrapKey", key="cmk", value=b64e(DEK), correlationId="c%d" % i)
            # Time for the checkpoint each 5 records ask for.
            if i % 5 == 4:
                time.sleep(0.1)
        c.close()
        cls.broker.stop()
        cls.dir = trail_dir(cls.broker)
        with open(os.path.join(cls.dir, "audit.jsonl")) as f:
            cls.lines = f.read().splitlines(True)

    def tampered_copy(self, lines):
        d = tempfile.mkdtemp(prefix="kb-audit-", dir=TOKEN.dir)
        with open(os.path.join(d, "audit.jsonl"), "w") as f:
            f.writelines(lines)
        return d

    def verify(self, d, *extra):
        return audit_tool("verify", "--pubkey", PUBKEY, *extra, d, check=False)

    def seq_line(self, lines, event=None, start=3):
        for i, l in enumerate(lines):
            if i >= start and (event is None or json.loads(l)["event"] == event):
                return i
        raise AssertionError("no such line")

    def test_an_untouched_trail_verifies_and_is_sealed(self):
        r = self.verify(self.dir)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr + self.broker.read_log())
        self.assertIn("sealed: ends in the shutdown checkpoint", r.stdout)
        n = len([l for l in self.lines if '"event":"checkpoint"' in l])
        self.assertGreaterEqual(n, 2)
        self.assertIn("%d checkpoints, %d signatures verified" % (n, n), r.stdout)

    def test_signatures_verify_with_an_independent_library(self):
        with open(PUBKEY, "rb") as f:
            pub = serialization.load_pem_public_key(f.read())
        hashes_by_seq = {}
        for l in self.lines:
            rec = json.loads(l)
            hashes_by_seq[rec["seq"]] = hashlib.sha256(l.rstrip("\n").encode()).hexdigest()
            if rec["event"] != "checkpoint":
                continue
            self.assertEqual(rec["head"], hashes_by_seq[rec["size"] - 1])
            text = ("keybroker audit checkpoint v1\norigin %s\nsize %d\nhead %s\n"
                    "reason %s\n"
                    % (rec["origin"], rec["size"], rec["head"], rec["reason"])).encode()
            sig = b64d(rec["sig"])
            der = utils.encode_dss_signature(int.from_bytes(sig[:32], "big"),
                                             int.from_bytes(sig[32:], "big"))
            pub.verify(der, text, ec.ECDSA(hashes.SHA256()))

    def test_one_changed_byte_is_caught_at_that_record(self):
        lines = list(self.lines)
        i = next(i for i in range(10, len(lines))
                 if json.loads(lines[i]).get("op") == "wrapKey")
        rec = json.loads(lines[i])
        lines[i] = lines[i].replace('"wrapKey"', '"wrapKez"', 1)
        r = self.verify(self.tampered_copy(lines))
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("TAMPERED", r.stdout)
        self.assertIn("audit.jsonl:%d: record seq %d does not follow record seq %d ("
                      % (i + 2, rec["seq"] + 1, rec["seq"]), r.stdout)
        self.assertIn("audit.jsonl:%d): that record was modified" % (i + 1), r.stdout)

    def test_a_deleted_record_is_caught(self):
        lines = list(self.lines)
        gone = json.loads(lines[12])["seq"]
        del lines[12]
        r = self.verify(self.tampered_copy(lines))
        self.assertEqual(r.returncode, 1)
        self.assertIn("audit.jsonl:13: expected record seq %d" % gone, r.stdout)
        self.assertIn("found seq %d" % (gone + 1), r.stdout)

    def test_two_swapped_records_are_caught(self):
        lines = list(self.lines)
        lines[14], lines[15] = lines[15], lines[14]
        want = json.loads(lines[15])["seq"]
        r = self.verify(self.tampered_copy(lines))
        self.assertEqual(r.returncode, 1)
        self.assertIn("audit.jsonl:15: expected record seq %d" % want, r.stdout)

    def test_an_inserted_record_is_caught(self):
        lines = list(self.lines)
        lines.insert(9, lines[4])
        r = self.verify(self.tampered_copy(lines))
        self.assertEqual(r.returncode, 1)
        self.assertIn("audit.jsonl:10: expected record seq", r.stdout)

    def test_a_cut_tail_is_not_sealed(self):
        lines = list(self.lines)[:-3]
        r = self.verify(self.tampered_copy(lines))
        self.assertEqual(r.returncode, 3, r.stdout)
        self.assertIn("NOT SEALED", r.stdout)
        self.assertNotIn("TAMPERED", r.stdout)
        # Cut right after a checkpoint: still not sealed (not a shutdown).
        last_cp = max(i for i, l in enumerate(self.lines[:-1])
                      if '"event":"checkpoint"' in l)
        r = self.verify(self.tampered_copy(self.lines[:last_cp + 1]))
        self.assertEqual(r.returncode, 3, r.stdout)
        self.assertIn("NOT SEALED", r.stdout)

    def test_a_replaced_checkpoint_signature_is_caught(self):
        lines = list(self.lines)
        cps = [i for i, l in enumerate(lines) if '"event":"checkpoint"' in l]
        i, j = cps[0], cps[-1]
        a, b = json.loads(lines[i]), json.loads(lines[j])
        lines[i] = lines[i].replace(a["sig"], b["sig"])
        r = self.verify(self.tampered_copy(lines))
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("audit.jsonl:%d: checkpoint seq %d: its signature does not verify"
                      % (i + 1, a["seq"]), r.stdout)

    def test_a_rebuilt_chain_fails_at_its_first_checkpoint(self):
        # Whoever can write the file can rehash every record, not sign.
        out, prev = [], "0" * 64
        for l in self.lines:
            rec = json.loads(l)
            if rec.get("op") == "wrapKey":
                rec["peer"]["uid"] = 4242
            rec["prev"] = prev
            if rec["event"] == "checkpoint":
                rec["head"] = prev if rec["size"] == rec["seq"] else rec["head"]
            text = json.dumps(rec, separators=(",", ":"))
            prev = hashlib.sha256(text.encode()).hexdigest()
            out.append(text + "\n")
        r = self.verify(self.tampered_copy(out))
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertRegex(r.stdout, "checkpoint seq \\d+: its signature does not verify"
                         "|checkpoint seq \\d+ signs head")

    def test_a_checkpoint_made_to_look_like_the_last_one_is_caught(self):
        # Cut after a checkpoint and call it the shutdown one: its reason
        # is signed.
        i = next(i for i, l in enumerate(self.lines)
                 if '"event":"checkpoint"' in l and '"reason":"shutdown"' not in l)
        lines = self.lines[:i + 1]
        rec = json.loads(lines[i])
        lines[i] = lines[i].replace('"reason":"%s"' % rec["reason"], '"reason":"shutdown"')
        r = self.verify(self.tampered_copy(lines))
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("checkpoint seq %d: its signature does not verify" % rec["seq"],
                      r.stdout)

    def test_a_tail_cut_at_an_old_seal_is_caught_with_the_live_count(self):
        b = Broker(TOKEN, name="reseal", identities=IDENTITIES, access=ACCESS,
                   audit='{ forward = "none"; }')
        b.start()
        b.connect().ok("getKey", key="cmk")
        b.stop()
        first = tempfile.mkdtemp(prefix="kb-audit-", dir=TOKEN.dir)
        shutil.copy(os.path.join(trail_dir(b), "audit.jsonl"), first)
        # A later run, whose records are then cut off: what is left ends
        # in the earlier run's genuine shutdown checkpoint.
        b.start()
        b.connect().ok("getKey", key="cmk")
        st = b.connect().ok("getAuditStatus")
        b.stop()
        r = self.verify(first)
        self.assertEqual(r.returncode, 0, r.stdout)
        r = self.verify(first, "--records", str(st["records"]))
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("the tail was cut off", r.stdout)
        r = self.verify(trail_dir(b), "--records", str(st["records"]))
        self.assertEqual(r.returncode, 0, r.stdout)

    def test_a_chain_that_begins_later_is_not_sealed_unless_told(self):
        lines = self.lines[10:]
        start = json.loads(lines[0])["seq"]
        d = self.tampered_copy(lines)
        r = self.verify(d)
        self.assertEqual(r.returncode, 3, r.stdout)
        self.assertIn("begins at seq %d" % start, r.stdout)
        r = self.verify(d, "--from", str(start))
        self.assertEqual(r.returncode, 0, r.stdout)
        r = self.verify(d, "--from", "0")
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("records were removed at its start", r.stdout)

    def test_renumbered_records_vouch_for_nothing(self):
        out, prev = [], "0" * 64
        for l in self.lines:
            rec = json.loads(l)
            rec["seq"] += 1000000
            rec["prev"] = prev
            text = json.dumps(rec, separators=(",", ":"))
            prev = hashlib.sha256(text.encode()).hexdigest()
            out.append(text + "\n")
        r = self.verify(self.tampered_copy(out))
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertIn("vouch for none of them", r.stdout)
        self.assertIn("0 signatures verified", r.stdout)

    def test_a_torn_last_line_is_not_sealed(self):
        lines = self.lines + ['{"seq":99999,"time":"2026']
        r = self.verify(self.tampered_copy(lines))
        self.assertEqual(r.returncode, 3, r.stdout)
        self.assertIn("is torn", r.stdout)

    def test_bytes_a_broker_never_writes_are_caught(self):
        lines = list(self.lines)
        i = next(i for i, l in enumerate(lines) if '"cmk"' in l)
        lines[i] = lines[i].replace('"cmk"', '"cm\u202ek"', 1)
        r = self.verify(self.tampered_copy(lines))
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("audit.jsonl:%d: byte 0xe2" % (i + 1), r.stdout)

    def test_another_key_is_refused(self):
        k = ec.generate_private_key(ec.SECP256R1()).public_key()
        other = os.path.join(TOKEN.dir, "other.pem")
        with open(other, "wb") as f:
            f.write(k.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo))
        r = audit_tool("verify", "--pubkey", other, self.dir, check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("none of the --pubkey keys", r.stdout)

    def test_without_a_pubkey_it_is_not_sealed(self):
        r = audit_tool("verify", self.dir, check=False)
        self.assertEqual(r.returncode, 3)
        self.assertIn("signatures not checked", r.stdout)

    def test_two_spliced_files_are_caught_at_the_seam(self):
        other = Broker(TOKEN, name="splice", identities=IDENTITIES, access=ACCESS,
                       audit='{ checkpoint_records = 5; forward = "none"; origin = "%s"; }'
                       % json.loads(self.lines[0])["origin"]).start()
        c = other.connect()
        for i in range(30):
            c.ok("getKey", key="cmk")
        c.close()
        other.stop()
        with open(os.path.join(trail_dir(other), "audit.jsonl")) as f:
            theirs = f.read().splitlines(True)
        lines = self.lines[:20] + theirs[20:]
        r = self.verify(self.tampered_copy(lines))
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("audit.jsonl:21: record seq 20 does not follow record seq 19",
                      r.stdout)

    def test_unreadable_files_are_exit_2(self):
        r = audit_tool("verify", "--pubkey", PUBKEY,
                       os.path.join(TOKEN.dir, "no-such-trail"), check=False)
        self.assertEqual(r.returncode, 2)


class AnotherMachine(unittest.TestCase):
    """An auditor with the files and the public key, and nothing else."""

    def test_verify_query_report_from_copies_alone(self):
        b = Broker(TOKEN, name="elsewhere", identities=IDENTITIES, access=ACCESS,
                   audit='{ forward = "none"; }').start()
        c = b.connect()
        for i in range(30):
            c.ok("wrapKey", key="cmk", value=b64e(DEK))
        c.close()
        b.stop()
        where = tempfile.mkdtemp(prefix="kb-auditor-", dir=TOKEN.dir)
        shutil.copytree(trail_dir(b), os.path.join(where, "trail"))
        shutil.copy(PUBKEY, os.path.join(where, "audit.pem"))
        tool = os.path.join(where, "keybroker-audit")
        shutil.copy(AUDIT, tool)
        # It needs no token, module, config or broker library.
        libs = subprocess.run(["ldd", tool], capture_output=True, text=True).stdout
        for lib in ("p11-kit", "softhsm", "libconfig", "libsystemd"):
            self.assertNotIn(lib, libs)
        env = {}  # not even PATH, SOFTHSM2_CONF or a socket

        def run(*args):
            return subprocess.run([tool, *args], cwd=where, env=env,
                                  capture_output=True, text=True)
        r = run("verify", "--pubkey", "audit.pem", "trail")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        r = run("query", "--op", "wrapKey", "--json", "trail")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(r.stdout.splitlines()), 30)
        r = run("report", "--html", "report.html", "trail")
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(where, "report.html")) as f:
            self.assertIn("<svg", f.read())


    def test_two_hosts_verify_together_one_chain_each(self):
        dirs = []
        for origin in ("host-a", "host-b"):
            b = Broker(TOKEN, name=origin, identities=IDENTITIES, access=ACCESS,
                       audit='{ forward = "none"; origin = "%s"; }' % origin).start()
            b.connect().ok("getKey", key="cmk")
            b.stop()
            dirs.append(trail_dir(b))
        r = audit_tool("verify", "--pubkey", PUBKEY, *dirs, check=False)
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertIn("host-a: sealed", r.stdout)
        self.assertIn("host-b: sealed", r.stdout)


class Rotation(unittest.TestCase):
    def test_the_chain_runs_across_rotation_and_restarts(self):
        b = Broker(TOKEN, name="rotation", identities=IDENTITIES, access=ACCESS,
                   audit='{ rotate_size_mb = 1; checkpoint_records = 50; forward = "none"; }'
                   ).start()
        c = b.connect()
        # Records of a few hundred bytes: ~1 MiB needs a few thousand.
        for i in range(3000):
            c.request("getKey", key="cmk", correlationId="r" * 60)
        c.close()
        self.assertTrue(wait_for(lambda: any(
            n.startswith("audit-") for n in os.listdir(trail_dir(b))), 15))
        b.stop()
        b.start()
        b.connect().ok("getKey", key="cmk")
        b.stop()
        names = os.listdir(trail_dir(b))
        self.assertTrue(any(n.startswith("audit-") for n in names), names)
        r = audit_tool("verify", "--pubkey", PUBKEY, trail_dir(b), check=False)
        self.assertEqual(r.returncode, 0, r.stdout)
        starts = [r for r in records(b) if r["event"] == "start"]
        self.assertEqual(len(starts), 2)
        self.assertGreater(starts[1]["seq"], 0)


class Crash(unittest.TestCase):
    def test_every_reply_a_client_got_has_its_record_after_kill_9(self):
        b = Broker(TOKEN, name="crash", identities=IDENTITIES, access=ACCESS,
                   audit='{ forward = "none"; }').start()
        got, stop = [], threading.Event()

        def load(n):
            c = b.connect()
            i = 0
            try:
                while not stop.is_set():
                    cid = "k%d-%d" % (n, i)
                    op = ("unwrapKey", "wrapKey", "getKey")[i % 3]
                    if op == "unwrapKey":
                        v = c.wrap("cmk", DEK)["value"]
                        c.ok("unwrapKey", key="cmk", value=v, correlationId=cid)
                    else:
                        c.ok(op, key="cmk", correlationId=cid,
                             **({"value": b64e(DEK)} if op == "wrapKey" else {}))
                    got.append(cid)
                    i += 1
            except (EOFError, OSError, AssertionError):
                pass

        threads = [threading.Thread(target=load, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        b.proc.send_signal(signal.SIGKILL)
        b.proc.wait()
        stop.set()
        for t in threads:
            t.join()
        self.assertGreater(len(got), 50)
        recorded = {r.get("correlationId") for r in records(b)}
        missing = [c for c in got if c not in recorded]
        self.assertEqual(missing, [])
        r = audit_tool("verify", "--pubkey", PUBKEY, trail_dir(b), check=False)
        self.assertEqual(r.returncode, 3, r.stdout)
        self.assertNotIn("TAMPERED", r.stdout)
        # The next start continues the chain and seals it at shutdown.
        b.start()
        b.stop()
        r = audit_tool("verify", "--pubkey", PUBKEY, trail_dir(b), check=False)
        self.assertEqual(r.returncode, 0, r.stdout)


class Restart(unittest.TestCase):
    """What a start finds at the end of the trail."""

    def test_a_torn_last_line_is_cut_and_said(self):
        b = Broker(TOKEN, name="torn", identities=IDENTITIES, access=ACCESS,
                   audit='{ forward = "none"; }').start()
        b.stop()
        path = os.path.join(trail_dir(b), "audit.jsonl")
        with open(path, "ab") as f:
            f.write(b'{"seq":99,"time":"2026-')
        b.start()
        b.stop()
        self.assertIn("ended in a torn record of 23 bytes", b.read_log())
        recs = records(b)
        self.assertEqual([r.get("tornBytes") for r in recs if r["event"] == "start"],
                         [None, 23])
        r = audit_tool("verify", "--pubkey", PUBKEY, trail_dir(b), check=False)
        self.assertEqual(r.returncode, 0, r.stdout)

    def test_a_last_line_that_is_no_record_stops_the_start(self):
        b = Broker(TOKEN, name="junk", identities=IDENTITIES, access=ACCESS,
                   audit='{ forward = "none"; }').start()
        b.stop()
        path = os.path.join(trail_dir(b), "audit.jsonl")
        with open(path, "ab") as f:
            f.write(b"this is not a record\n")
        with self.assertRaises(RuntimeError):
            b.start()
        self.assertIn("audit.jsonl: its last line is not an audit record; move the "
                      "file aside to start a new chain", b.read_log())
        # Moved aside, the chain goes on from the last rotated file, or anew.
        os.rename(path, path + ".bad")
        b.start()
        b.stop()
        self.assertEqual(records(b)[0]["seq"], 0)

    def test_low_free_space_is_warned_of(self):
        b = Broker(TOKEN, name="lowspace", identities=IDENTITIES, access=ACCESS,
                   audit='{ forward = "none"; min_free_mb = 1048576; }').start()
        self.assertTrue(wait_for(lambda: "audit.min_free_mb is 1048576" in b.read_log()))
        b.stop()
        self.assertIn("warning: audit: only ", b.read_log())

    def test_an_unwritable_directory_is_unavailable_until_it_is_not(self):
        d = os.path.join(TOKEN.dir, "late-audit")
        b = Broker(TOKEN, name="late", identities=IDENTITIES, access=ACCESS,
                   audit='{ directory = "%s/sub"; forward = "none"; }' % d)
        os.makedirs(d)
        os.chmod(d, 0o500)
        # Root passes permission checks: a file where the directory goes.
        with open(os.path.join(d, "sub"), "w"):
            pass
        os.chmod(d, 0o700)
        b.start()
        c = b.connect(authenticate=False)
        self.assertEqual(c.request("getToken")["error"]["code"], "AuditUnavailable")
        os.unlink(os.path.join(d, "sub"))
        self.assertTrue(wait_for(lambda: "result" in c.request("getToken"), 10))
        c.close()
        b.stop()
        self.assertIn("resumed", [r["event"] for r in records_in(os.path.join(d, "sub"))])


class DiskFull(unittest.TestCase):
    """The trail on a small tmpfs that fills up."""

    def setUp(self):
        self.mnt = tempfile.mkdtemp(prefix="kb-audit-full-", dir=TOKEN.dir)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs",
                        self.mnt], check=True)
        self.broker = Broker(TOKEN, name="full", identities=IDENTITIES, access=ACCESS,
                             audit='{ directory = "%s"; reserve_mb = 1; forward = "none"; }'
                             % self.mnt).start()

    def tearDown(self):
        self.broker.stop()
        subprocess.run(["umount", self.mnt], check=True)

    def fill(self):
        filler = os.path.join(self.mnt, "filler")
        with open(filler, "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass
        return filler

    def test_full_disk_fails_closed_then_recovers(self):
        svc, _ = client_as(self.broker, "svc")
        adm = self.broker.connect()
        anon = self.broker.connect(authenticate=False)
        wrapped = svc.wrap("cmk", DEK)["value"]
        filler = self.fill()
        # Records go into the space reserved ahead until it cannot be
        # renewed; then the trail is unavailable before any is lost.
        served = []
        for i in range(5000):
            self.assertIn("result", svc.request("getKey", key="cmk",
                                                correlationId="f%d" % i))
            served.append("f%d" % i)
            if "error" in svc.request("unwrapKey", key="cmk", value=wrapped):
                break
        e = svc.request("unwrapKey", key="cmk", value=wrapped)["error"]
        self.assertEqual(e["code"], "AuditUnavailable")
        self.assertEqual(anon.request("getToken")["error"]["code"], "AuditUnavailable")
        self.assertEqual(adm.request("createKey", key="during-full")["error"]["code"],
                         "AuditUnavailable")
        # Nothing secret at stake: served, and counted.
        self.assertIn("result", svc.request("getKey", key="cmk"))
        self.assertIn("result", svc.request("wrapKey", key="cmk", value=b64e(DEK)))
        st = adm.ok("getAuditStatus")
        self.assertFalse(st["available"])
        self.assertIn("No space left", st["reason"])
        self.assertGreaterEqual(st["unrecorded"]["served"], 2)
        self.assertGreaterEqual(st["unrecorded"]["refused"], 3)
        # Room again: back by itself, saying what it missed.
        os.unlink(filler)
        self.assertTrue(wait_for(lambda: "result" in svc.request(
            "unwrapKey", key="cmk", value=wrapped), 10))
        resumed = [r for r in records_in(self.mnt) if r["event"] == "resumed"]
        self.assertEqual(len(resumed), 1)
        self.assertGreaterEqual(resumed[0]["unrecorded"]["served"], 2)
        self.assertGreaterEqual(resumed[0]["unrecorded"]["refused"], 3)
        # Every request served while the trail was up has its record: all
        # but the last getKey, which the trail may have missed.
        recorded = {r.get("correlationId") for r in records_in(self.mnt)}
        self.assertEqual([c for c in served[:-1] if c not in recorded], [])
        for x in (svc, anon, adm):
            x.close()
        self.broker.stop()
        r = audit_tool("verify", "--pubkey", PUBKEY, self.mnt, check=False)
        self.assertEqual(r.returncode, 0, r.stdout)


class FailedWrite(unittest.TestCase):
    """A write of the trail that fails (EIO, a disk gone bad) takes the
    records of a turn of pipelined requests with it: of that turn's
    replies, those that must not go unrecorded become AuditUnavailable,
    the others stand, and all come in request order."""

    def test_pipelined_replies_stand_only_with_their_records(self):
        flag = os.path.join(TOKEN.dir, "eio.flag")
        b = Broker(TOKEN, name="eio", identities=IDENTITIES, access=ACCESS,
                   audit='{ forward = "none"; }',
                   env={"LD_PRELOAD": os.path.join(BUILD, "tests", "syscall_shim.so"),
                        "KB_SHIM_EIO_AUDIT_WHILE": flag,
                        "ASAN_OPTIONS": "verify_asan_link_order=0"}).start()
        try:
            svc, _ = client_as(b, "svc")
            wrapped = svc.wrap("cmk", DEK)["value"]
            calls = [("unwrapKey", {"key": "cmk", "value": wrapped}),
                     ("getKey", {"key": "cmk"}),
                     ("unwrapKey", {"key": "cmk", "value": wrapped}),
                     ("wrapKey", {"key": "cmk", "value": b64e(DEK)})]
            batch = b"".join(json.dumps(dict(id=i, op=op, **f)).encode() + b"\n"
                             for i, (op, f) in enumerate(calls))
            open(flag, "w").close()
            svc.send_raw(batch)
            got = [svc.read_line() for _ in calls]
            os.unlink(flag)
            # The first unwrap is handled in the first turn, whatever the
            # reads bring: its reply was made, then withheld.
            self.assertEqual([g["id"] for g in got], [0, 1, 2, 3])
            self.assertNotIn("result", got[0])
            self.assertEqual(got[0]["error"]["code"], "AuditUnavailable")
            self.assertIn("could not be recorded in the audit trail, so its result is "
                          "withheld", got[0]["error"]["message"])
            self.assertNotIn("result", got[2])
            self.assertEqual(got[2]["error"]["code"], "AuditUnavailable")
            # Nothing secret at stake: served, and counted.
            self.assertIn("result", got[1])
            self.assertIn("result", got[3])
            # Back by itself once writes work, saying what it missed.
            self.assertTrue(wait_for(lambda: "result" in svc.request(
                "unwrapKey", key="cmk", value=wrapped), 10))
            resumed = [r for r in records(b) if r["event"] == "resumed"]
            self.assertEqual(len(resumed), 1)
            self.assertGreaterEqual(resumed[0]["unrecorded"]["served"], 2)
            self.assertGreaterEqual(resumed[0]["unrecorded"]["refused"], 2)
            self.assertIn("Input/output error", resumed[0]["message"])
            svc.close()
        finally:
            finish(b, None)
        r = audit_tool("verify", "--pubkey", PUBKEY, trail_dir(b), check=False)
        self.assertEqual(r.returncode, 0, r.stdout)


def datagrams(sock, until):
    """The native-protocol entries (KEY=value lines) sent to sock."""
    out = []
    deadline = time.time() + 10
    sock.settimeout(0.2)
    while time.time() < deadline and not until(out):
        try:
            data = sock.recv(1 << 20)
        except socket.timeout:
            continue
        out.append(data)
    return out


class Forwarding(unittest.TestCase):
    """Records also go to journald or syslog; log lines carry priorities."""

    def test_records_go_to_journald_with_fields(self):
        d = tempfile.mkdtemp(prefix="kb-journal-", dir=TOKEN.dir)
        path = os.path.join(d, "journal.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        # journald's socket, in a mount namespace of the broker's own.
        wrap = ("unshare", "-m", "--propagation", "private", "sh", "-c",
                'mount -t tmpfs tmpfs /run/systemd && mkdir /run/systemd/journal && '
                'ln -s "$0" /run/systemd/journal/socket && exec "$@"', path)
        b = Broker(TOKEN, name="journal", identities=IDENTITIES, access=ACCESS)
        b.start(prefix=wrap)
        c = b.connect()
        c.ok("getKey", key="cmk", correlationId="to-journal")
        got = datagrams(sock, lambda out: any(b"to-journal" in x for x in out))
        c.close()
        b.stop()
        sock.close()
        entry = [x for x in got if b"to-journal" in x][0].decode()
        fields = dict(l.split("=", 1) for l in entry.splitlines())
        self.assertEqual(fields["MESSAGE_ID"], "6f1d2c4a9b8e4f7d8a3c5e2b1d0f9a7c")
        self.assertEqual(fields["SYSLOG_IDENTIFIER"], "keybrokerd-audit")
        self.assertEqual(fields["KEYBROKER_OP"], "getKey")
        self.assertEqual(fields["KEYBROKER_RESULT"], "ok")
        self.assertEqual(fields["KEYBROKER_KEY"], "cmk")
        self.assertEqual(fields["KEYBROKER_IDENTITY"], "it-admin")
        self.assertEqual(fields["KEYBROKER_UID"], str(os.geteuid()))
        self.assertEqual(fields["PRIORITY"], "6")
        rec = json.loads(fields["MESSAGE"])
        self.assertEqual(rec, by_correlation(b, "to-journal")[0])

    @unittest.skipIf(os.path.exists("/dev/log"), "a syslog daemon owns /dev/log")
    def test_records_go_to_syslog(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind("/dev/log")
        try:
            b = Broker(TOKEN, name="syslog", identities=IDENTITIES, access=ACCESS,
                       audit='{ forward = "syslog"; }').start()
            c = b.connect()
            c.ok("getKey", key="cmk", correlationId="to-syslog")
            got = datagrams(sock, lambda out: any(b"to-syslog" in x for x in out))
            c.close()
            b.stop()
        finally:
            sock.close()
            os.unlink("/dev/log")
        line = [x for x in got if b"to-syslog" in x][0].decode()
        # <PRI> = LOG_AUTHPRIV (10) * 8 + LOG_INFO (6)
        self.assertTrue(line.startswith("<86>"), line)
        self.assertIn("keybrokerd-audit[", line)
        rec = json.loads(line[line.index("{"):])
        self.assertEqual(rec, by_correlation(b, "to-syslog")[0])

    def test_log_lines_carry_syslog_priorities_under_journald(self):
        b = Broker(TOKEN, name="prio", identities=IDENTITIES, access=ACCESS)
        with open(b.log, "ab"):
            pass
        st = os.stat(b.log)
        # stderr is the log file: make it the "journal stream".
        b.start(env={"JOURNAL_STREAM": "%d:%d" % (st.st_dev, st.st_ino)})
        b.stop()
        lines = b.read_log().splitlines()
        self.assertTrue(any(l.startswith("<6>info: listening on ") for l in lines),
                        lines[:5])
        self.assertFalse([l for l in lines if not l.startswith("<")], lines)


def records_in(d):
    with open(os.path.join(d, "audit.jsonl")) as f:
        return [json.loads(l) for l in f]


if __name__ == "__main__":
    unittest.main()
