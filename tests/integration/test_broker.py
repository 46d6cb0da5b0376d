# SPDX-License-Identifier: MIT
"""Integration tests: a real keybrokerd on a real SoftHSMv2 token, driven
through its Unix socket, its CLI and libkeybroker."""

import json
import os
import select
import signal
import socket
import stat
import subprocess
import threading
import time
import unittest

from harness import BUILD, ROOT, Broker, Client, Token, b64d, b64e, finish

TOKEN = None
BROKER = None
CIPHERTEXT_MSG = "value cannot be unwrapped with this key version and algorithm"


def setUpModule():
    global TOKEN, BROKER
    TOKEN = Token([("k2048", 2048), ("k3072", 3072), ("k4096", 4096),
                   ("rot", 2048), ("dis", 2048)])
    TOKEN.create("rot", 2048)          # a second version of "rot"
    TOKEN.ctl("disable-key", "dis", TOKEN.versions["dis"][0])
    BROKER = Broker(TOKEN, max_connections="12", max_pipeline="8",
                    idle_timeout="3", request_timeout="2").start()


def tearDownModule():
    finish(BROKER, TOKEN)



def fill_unread(c):
    """Pipelines 200 getKey lines and reads no reply: more replies than a
    quarter of the socket's buffer (past which the broker's side is no
    longer writable, for epoll) and fewer than the whole of it (so the
    broker has written each reply it made)."""
    c.send_raw(b'{"id":1,"op":"getKey","key":"k2048"}\n' * 200)
    time.sleep(0.3)


def closed_while_unread(c, timeout):
    """Whether the broker closes c within timeout, seen without reading
    its replies or sending anything: the peer's hang-up is polled."""
    p = select.poll()
    p.register(c.sock, select.POLLRDHUP)
    return bool(p.poll(timeout * 1000))

class RoundTrips(unittest.TestCase):
    def test_every_alg_and_key_size(self):
        c = BROKER.connect()
        for key, bits in (("k2048", 2048), ("k3072", 3072), ("k4096", 4096)):
            for alg in ("RSA-OAEP", "RSA-OAEP-256"):
                dek = os.urandom(32)
                w = c.wrap(key, dek, alg=alg)
                self.assertEqual(len(b64d(w["value"])), bits // 8)
                self.assertTrue(w["kid"].startswith("keybroker://it/keys/%s/" % key))
                u = c.unwrap(key, b64d(w["value"]), alg=alg)
                self.assertEqual(b64d(u["value"]), dek, (key, alg))
                self.assertEqual(u["kid"], w["kid"])
        c.close()

    def test_default_alg_is_oaep_256(self):
        c = BROKER.connect()
        dek = os.urandom(32)
        w = c.wrap("k2048", dek)
        # Only OAEP-256 opens it: RSA-OAEP (SHA-1) must refuse.
        self.assertEqual(b64d(c.unwrap("k2048", b64d(w["value"]),
                                       alg="RSA-OAEP-256")["value"]), dek)
        r = c.request("unwrapKey", key="k2048", alg="RSA-OAEP", value=w["value"])
        self.assertEqual(r["error"]["code"], "BadParameter")
        c.close()

    def test_message_size_limits(self):
        c = BROKER.connect()
        # 2048-bit OAEP-256: at most 256 - 2*32 - 2 = 190 bytes.
        dek = os.urandom(190)
        w = c.wrap("k2048", dek)
        self.assertEqual(b64d(c.unwrap("k2048", b64d(w["value"]))["value"]), dek)
        r = c.request("wrapKey", key="k2048", value=b64e(os.urandom(191)))
        self.assertEqual(r["error"]["code"], "BadParameter")
        self.assertIn("at most 190 bytes", r["error"]["message"])
        c.close()

    def test_rsa1_5_when_enabled(self):
        b = Broker(TOKEN, name="rsa15", algorithms="{ rsa1_5 = true; }").start()
        try:
            c = b.connect()
            dek = os.urandom(32)
            w = c.wrap("k2048", dek, alg="RSA1_5")
            self.assertEqual(b64d(c.unwrap("k2048", b64d(w["value"]),
                                           alg="RSA1_5")["value"]), dek)
            paths = c.ok("getKey", key="k2048")["attributes"]["unwrapPaths"]
            self.assertEqual(paths["RSA1_5"], "token-raw-rsa+pkcs1-implicit-rejection")
            c.close()
        finally:
            self.assertEqual(b.stop(), 0)


class Versions(unittest.TestCase):
    def test_versionless_means_current(self):
        v1, v2 = TOKEN.versions["rot"]
        c = BROKER.connect()
        key = c.ok("getKey", key="rot")["key"]
        self.assertEqual(key["kid"], "keybroker://it/keys/rot/" + v2)
        w = c.wrap("rot", b"x" * 32)
        self.assertEqual(w["kid"], "keybroker://it/keys/rot/" + v2)
        c.close()

    def test_old_version_by_version_and_kid(self):
        v1, v2 = TOKEN.versions["rot"]
        c = BROKER.connect()
        dek = os.urandom(32)
        w = c.wrap("rot", dek, version=v1)
        self.assertEqual(w["kid"], "keybroker://it/keys/rot/" + v1)
        self.assertEqual(b64d(c.ok("unwrapKey", kid=w["kid"], value=w["value"])["value"]), dek)
        self.assertEqual(b64d(c.unwrap("rot", b64d(w["value"]), version=v1)["value"]), dek)
        # The current version cannot open what v1 wrapped.
        r = c.request("unwrapKey", key="rot", value=w["value"])
        self.assertEqual(r["error"], {"code": "BadParameter", "message": CIPHERTEXT_MSG})
        got = c.ok("getKey", kid="keybroker://it/keys/rot/" + v1)
        self.assertEqual(got["key"]["kid"], "keybroker://it/keys/rot/" + v1)
        c.close()

    def test_unknown_version_and_key(self):
        c = BROKER.connect()
        r = c.request("getKey", key="rot", version="0" * 32)
        self.assertEqual(r["error"], {"code": "KeyNotFound",
                                      "message": "key 'rot' has no version '%s'" % ("0" * 32)})
        r = c.request("unwrapKey", key="nope", value="AAAA")
        self.assertEqual(r["error"], {"code": "KeyNotFound", "message": "key 'nope' not found"})
        c.close()

    def test_key_created_while_running_is_found(self):
        TOKEN.create("late", 2048)
        c = BROKER.connect()
        time.sleep(2.1)  # past the catalogue's miss-reload interval
        self.assertIn("/keys/late/", c.ok("getKey", key="late")["key"]["kid"])
        c.close()


class KeyBundle(unittest.TestCase):
    def test_get_key_fields(self):
        c = BROKER.connect()
        r = c.ok("getKey", key="k3072")
        key, attrs = r["key"], r["attributes"]
        self.assertEqual(key["kty"], "RSA-HSM")
        self.assertEqual(b64d(key["e"]), b"\x01\x00\x01")
        self.assertEqual(len(b64d(key["n"])), 384)
        self.assertEqual(key["key_ops"], ["wrapKey", "unwrapKey"])
        self.assertTrue(attrs["enabled"])
        self.assertEqual(attrs["recoveryLevel"], "Recoverable+Purgeable")
        self.assertLessEqual(abs(attrs["created"] - time.time()), 600)
        # SoftHSMv2 2.6.1 refuses OAEP with SHA-256: raw RSA + OAEP decode.
        self.assertEqual(attrs["unwrapPaths"], {
            "RSA-OAEP": "token", "RSA-OAEP-256": "token-raw-rsa+oaep-decode",
            "RSA1_5": "unavailable"})
        c.close()

    def test_paths_are_logged(self):
        self.assertIn("unwrap paths: RSA-OAEP via token, RSA-OAEP-256 via "
                      "token-raw-rsa+oaep-decode", BROKER.read_log())


class Errors(unittest.TestCase):
    def setUp(self):
        self.c = BROKER.connect()

    def tearDown(self):
        self.c.close()

    def error(self, line):
        self.c.send_raw(line if isinstance(line, bytes) else line.encode())
        return self.c.read_line()["error"]

    def test_bad_request(self):
        self.assertEqual(self.error("{bad json\n")["code"], "BadRequest")
        self.assertEqual(self.error('{"id":1,"op":"nope"}\n'),
                         {"code": "BadRequest", "message": "unknown op 'nope'"})
        self.assertEqual(self.error('"str"\n')["code"], "BadRequest")
        self.assertEqual(self.error('{"op":"getKey","key":"a"}\n')["message"],
                         "missing field 'id'")
        # The connection survives every one of them.
        self.assertIn("key", self.c.ok("getKey", key="k2048"))

    def test_bad_parameter(self):
        e = self.error('{"id":1,"op":"wrapKey","key":"k2048","value":"%%%"}\n')
        self.assertEqual(e, {"code": "BadParameter",
                             "message": "'value' is not base64url without padding"})
        e = self.error('{"id":1,"op":"getKey","key":"k2048","alg":"RSA-OAEP"}\n')
        self.assertEqual(e["message"], "unknown field 'alg' for op 'getKey'")
        e = self.error('{"id":1,"op":"getKey","kid":"keybroker://other/keys/k2048"}\n')
        self.assertEqual(e["message"], "'kid' names another broker instance; this one is 'it'")

    def test_every_ciphertext_failure_is_one_error(self):
        dek = os.urandom(32)
        w = b64d(self.c.wrap("k2048", dek, alg="RSA-OAEP")["value"])
        flipped = bytes([w[0] ^ 1]) + w[1:]
        cases = [
            dict(key="k2048", alg="RSA-OAEP", value=b64e(flipped)),
            dict(key="k2048", alg="RSA-OAEP-256", value=b64e(w)),
            dict(key="k2048", alg="RSA-OAEP", value=b64e(w[:-1])),
            dict(key="k2048", alg="RSA-OAEP", value=b64e(os.urandom(256))),
            dict(key="k2048", alg="RSA-OAEP-256", value=b64e(os.urandom(256))),
            dict(key="k3072", alg="RSA-OAEP", value=b64e(w)),
            dict(key="k2048", alg="RSA-OAEP", value=b64e(b"\xff" * 256)),
        ]
        for fields in cases:
            r = self.c.request("unwrapKey", **fields)
            self.assertEqual(r["error"], {"code": "BadParameter", "message": CIPHERTEXT_MSG})

    def test_key_disabled(self):
        r = self.c.request("unwrapKey", key="dis", value=b64e(b"\0" * 256))
        self.assertEqual(r["error"]["code"], "KeyDisabled")
        self.assertIn("is disabled", r["error"]["message"])
        r = self.c.request("wrapKey", key="dis", value=b64e(b"k" * 32))
        self.assertEqual(r["error"]["code"], "KeyDisabled")
        # getKey still describes it, with enabled false.
        self.assertFalse(self.c.ok("getKey", key="dis")["attributes"]["enabled"])

    def test_enable_takes_effect_on_sighup(self):
        v = TOKEN.versions["dis"][0]
        TOKEN.ctl("enable-key", "dis", v)
        try:
            BROKER.proc.send_signal(signal.SIGHUP)
            deadline = time.time() + 10
            while time.time() < deadline:
                r = self.c.request("wrapKey", key="dis", value=b64e(b"k" * 32))
                if "result" in r:
                    break
                time.sleep(0.1)
            self.assertIn("result", r)
        finally:
            TOKEN.ctl("disable-key", "dis", v)
            BROKER.proc.send_signal(signal.SIGHUP)
            deadline = time.time() + 10
            while time.time() < deadline:
                r = self.c.request("wrapKey", key="dis", value=b64e(b"k" * 32))
                if "error" in r:
                    break
                time.sleep(0.1)
        self.assertEqual(r["error"]["code"], "KeyDisabled")

    def test_not_supported(self):
        r = self.c.request("unwrapKey", key="k2048", alg="RSA1_5", value=b64e(b"\0" * 256))
        self.assertEqual(r["error"], {"code": "NotSupported",
                                      "message": "RSA1_5 is disabled by the broker configuration"})
        r = self.c.request("importKey", key="x", pem="x")
        self.assertEqual(r["error"]["code"], "NotSupported")

    def test_line_too_long_closes(self):
        self.c.send_raw(b'{"id":1,"op":"getKey","key":"k2048"}\n')
        self.c.send_raw(b"x" * (64 * 1024 + 1))
        self.assertIn("result", self.c.read_line())  # earlier request first
        e = self.c.read_line()
        self.assertEqual(e["error"], {"code": "BadRequest",
                                      "message": "request line longer than 65536 bytes"})
        self.assertTrue(self.c.closed_by_peer())

    def test_line_of_exactly_64k_is_served(self):
        line = b'{"id":5,"op":"getKey","key":"k2048"}'
        line += b" " * (64 * 1024 - len(line)) + b"\n"
        self.c.send_raw(line)
        self.assertEqual(self.c.read_line()["id"], 5)

    def test_throttled_at_connection_limit(self):
        conns = []
        try:
            # max_connections = 12; this test's own connection is one.
            for _ in range(11):
                conns.append(BROKER.connect())
                conns[-1].ok("getKey", key="k2048")
            extra = BROKER.connect(authenticate=False)
            self.assertEqual(extra.read_line()["error"],
                             {"code": "Throttled",
                              "message": "too many connections (max_connections 12)"})
            self.assertTrue(extra.closed_by_peer())
            extra.close()
        finally:
            for c in conns:
                c.close()
        # The broker counts the closes when it gets to them: wait for it.
        deadline = time.time() + 10
        while True:
            probe = BROKER.connect(authenticate=False)
            # Not request(): a Throttled reply has no id, and is retried.
            probe.send_raw(b'{"id":1,"op":"getKey","key":"k2048"}\n')
            reply = probe.read_line()
            probe.close()
            if reply.get("id") is not None or time.time() > deadline:
                break
            time.sleep(0.1)

    @staticmethod
    def as_nobody(path, lines):
        """Sends lines from a child running as uid 65534; returns replies."""
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                os.setgid(65534)
                os.setuid(65534)
                try:
                    c = Client(path, timeout=5, authenticate=False)
                    out = []
                    for line in lines:
                        c.send_raw(line)
                        out.append(c.read_line())
                    msg = json.dumps(out)
                except Exception as e:  # noqa: BLE001 - reported to parent
                    msg = json.dumps(repr(e))
                os.write(w, msg.encode())
            finally:
                os._exit(0)
        os.close(w)
        os.waitpid(pid, 0)
        got = json.loads(os.read(r, 65536).decode())
        os.close(r)
        return got

    @unittest.skipUnless(os.geteuid() == 0, "needs root to connect as another uid")
    def test_unauthorized_uid(self):
        dirs = [TOKEN.dir, BROKER.dir]
        for d in dirs:
            os.chmod(d, 0o711)
        try:
            got = self.as_nobody(BROKER.socket, [
                b'{"id":1,"op":"getToken"}\n',
                b'{"id":2,"op":"getKey","key":"k2048"}\n'])
        finally:
            for d in dirs:
                os.chmod(d, 0o700)
        self.assertEqual(got[0]["error"]["code"], "Unauthorized")
        self.assertIn("no system-assigned identity matches this caller (uid 65534",
                      got[0]["error"]["message"])
        self.assertEqual(got[1]["error"]["code"], "Unauthorized")


class Connections(unittest.TestCase):
    def test_socket_mode(self):
        # Anyone may connect; what they may do is decided per identity.
        self.assertEqual(stat.S_IMODE(os.stat(BROKER.socket).st_mode), 0o666)

    def test_pipelining_keeps_order(self):
        c = BROKER.connect()
        deks = [os.urandom(32) for _ in range(6)]
        wrapped = [b64d(c.wrap("k2048", d, alg="RSA-OAEP")["value"]) for d in deks]
        batch = b""
        for i, w in enumerate(wrapped):
            batch += b'{"id":%d,"op":"unwrapKey","key":"k2048","alg":"RSA-OAEP","value":"%s"}\n' % (
                100 + i, b64e(w).encode())
            batch += b'{"id":%d,"op":"getKey","key":"k3072"}\n' % (200 + i)
        c.send_raw(batch)
        for i in range(len(deks)):
            u = c.read_line()
            self.assertEqual(u["id"], 100 + i)
            self.assertEqual(b64d(u["result"]["value"]), deks[i])
            self.assertEqual(c.read_line()["id"], 200 + i)
        c.close()

    def test_pipelined_mixed_load(self):
        """Slow unwraps and fast getKeys pipelined on several connections:
        every reply arrives, in order, with no stall."""
        w = BROKER.connect().wrap("k2048", b"d" * 32, alg="RSA-OAEP")["value"]
        errors = []

        def run(n):
            try:
                c = BROKER.connect()
                for rnd in range(8):
                    batch = b""
                    for i in range(20):
                        rid = rnd * 100 + i
                        if i % 3 == 0:
                            batch += b'{"id":%d,"op":"unwrapKey","key":"k2048","alg":"RSA-OAEP","value":"%s"}\n' % (rid, w.encode())
                        else:
                            batch += b'{"id":%d,"op":"getKey","key":"rot"}\n' % rid
                    c.send_raw(batch)
                    for i in range(20):
                        got = c.read_line()
                        if got["id"] != rnd * 100 + i or "result" not in got:
                            errors.append((n, rnd, i, got))
                c.close()
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))

        threads = [threading.Thread(target=run, args=(n,)) for n in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])

    def test_idle_connection_times_out(self):
        c = BROKER.connect()
        c.ok("getKey", key="k2048")
        c.sock.settimeout(8)
        start = time.time()
        self.assertTrue(c.closed_by_peer())
        self.assertGreaterEqual(time.time() - start, 2.0)
        c.close()

    def test_half_sent_request_times_out(self):
        c = BROKER.connect()
        c.send_raw(b'{"id":1,"op":"getK')
        c.sock.settimeout(8)
        self.assertTrue(c.closed_by_peer())
        c.close()

    def test_stalled_client_does_not_block_others(self):
        stalled = BROKER.connect()
        stalled.send_raw(b'{"id":1,"op":"getKey",')
        other = BROKER.connect()
        start = time.time()
        for _ in range(20):
            other.ok("getKey", key="k2048")
        self.assertLess(time.time() - start, 1.5)
        other.close()
        stalled.close()

    def test_client_not_reading_is_closed(self):
        """A client that pipelines requests and reads none of the
        replies: once its socket holds more than the broker may add to,
        the rest wait in the broker, and after request_timeout without
        progress the connection is closed."""
        c = BROKER.connect()
        fill_unread(c)
        start = time.time()
        self.assertTrue(closed_while_unread(c, 10))
        waited = time.time() - start
        self.assertGreaterEqual(waited, 1.0)
        c.close()

    def test_client_half_close_still_gets_replies(self):
        c = BROKER.connect()
        c.send_raw(b'{"id":1,"op":"getKey","key":"k2048"}\n{"id":2,"op":"getKey","key":"rot"}\n')
        c.sock.shutdown(socket.SHUT_WR)
        self.assertEqual(c.read_line()["id"], 1)
        self.assertEqual(c.read_line()["id"], 2)
        self.assertTrue(c.closed_by_peer())
        c.close()

    def test_concurrent_clients(self):
        errors = []

        def run():
            try:
                c = BROKER.connect()
                for _ in range(10):
                    d = os.urandom(32)
                    w = c.wrap("k2048", d)
                    if b64d(c.unwrap("k2048", b64d(w["value"]))["value"]) != d:
                        errors.append("mismatch")
                c.close()
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))

        threads = [threading.Thread(target=run) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])


class Lifecycle(unittest.TestCase):
    def test_sigterm_finishes_in_flight_requests(self):
        b = Broker(TOKEN, name="term", workers="2").start()
        c = b.connect()
        deks = [os.urandom(32) for _ in range(8)]
        wrapped = [c.wrap("k4096", d, alg="RSA-OAEP")["value"] for d in deks]
        batch = b"".join(b'{"id":%d,"op":"unwrapKey","key":"k4096","alg":"RSA-OAEP","value":"%s"}\n'
                         % (i, w.encode()) for i, w in enumerate(wrapped))
        c.send_raw(batch)
        time.sleep(0.05)
        b.proc.send_signal(signal.SIGTERM)
        got = [c.read_line() for _ in deks]
        self.assertEqual([b64d(g["result"]["value"]) for g in got], deks)
        self.assertEqual(b.proc.wait(20), 0)
        self.assertFalse(os.path.exists(b.socket))
        self.assertIn("stopped", b.read_log())

    def test_sigterm_with_a_client_not_reading(self):
        """Draining does not wait the whole grace period for a client
        that reads nothing: it is closed after request_timeout."""
        b = Broker(TOKEN, name="term-unread", request_timeout="1",
                   shutdown_grace="20").start()
        c = b.connect()
        fill_unread(c)
        start = time.time()
        b.proc.send_signal(signal.SIGTERM)
        self.assertEqual(b.proc.wait(20), 0)
        self.assertLess(time.time() - start, 5)
        c.close()

    def test_sigterm_in_one_batch_with_connection_events(self):
        """SIGTERM closes connections whose events are still in the same
        epoll batch; those events must not touch freed connections (the
        sanitizer runs report a use-after-free if they do)."""
        b = Broker(TOKEN, name="term-batch", workers="2").start()
        conns = [b.connect(authenticate=False) for _ in range(32)]
        b.proc.send_signal(signal.SIGSTOP)
        try:
            b.proc.send_signal(signal.SIGTERM)
            for c in conns:
                c.send_raw(b'{"id":1,"op":"getKey","key":"k2048"}\n')
                c.sock.shutdown(socket.SHUT_WR)
        finally:
            b.proc.send_signal(signal.SIGCONT)
        self.assertEqual(b.proc.wait(20), 0)
        for c in conns:
            c.close()
        log = b.read_log()
        self.assertNotIn("Sanitizer", log)
        self.assertIn("stopped", log)

    def test_no_core_dumps(self):
        with open("/proc/%d/limits" % BROKER.proc.pid) as f:
            core = [l for l in f if l.startswith("Max core file size")][0]
        self.assertEqual(core.split()[4:6], ["0", "0"])
        with open("/proc/%d/status" % BROKER.proc.pid) as f:
            status = f.read()
        # Not dumpable: /proc/PID/mem etc. become root-only.
        self.assertEqual(os.stat("/proc/%d/mem" % BROKER.proc.pid).st_uid, 0)
        self.assertIn("VmLck", status)

    def test_no_secrets_in_log(self):
        c = BROKER.connect()
        dek = os.urandom(32)
        w = c.wrap("k2048", dek)
        c.unwrap("k2048", b64d(w["value"]))
        c.request("unwrapKey", key="k2048", value=w["value"][:-4])
        c.close()
        log = BROKER.read_log()
        for secret in (b64e(dek), w["value"], w["value"][:40], TOKEN.pin):
            self.assertNotIn(secret, log)


class StartupErrors(unittest.TestCase):
    def failing_start(self, broker):
        broker.start(wait=False)
        self.assertEqual(broker.proc.wait(30), 1)
        return broker.read_log()

    def test_world_readable_pin_file(self):
        pin = os.path.join(TOKEN.dir, "open.pin")
        with open(pin, "w") as f:
            f.write(TOKEN.pin)
        os.chmod(pin, 0o644)
        b = Broker(TOKEN, name="openpin", pkcs11='{ module = "softhsm2"; '
                   'token = "pkcs11:token=keybroker"; pin_file = "%s"; }' % pin)
        self.assertIn("mode 0644 is too open", self.failing_start(b))

    def test_wrong_pin(self):
        pin = os.path.join(TOKEN.dir, "wrong.pin")
        fd = os.open(pin, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"not-the-pin\n")
        os.close(fd)
        b = Broker(TOKEN, name="wrongpin", pkcs11='{ module = "softhsm2"; '
                   'token = "pkcs11:token=keybroker"; pin_file = "%s"; }' % pin)
        self.assertIn("CKR_PIN_INCORRECT (wrong PIN in the PIN file)", self.failing_start(b))

    def test_missing_token(self):
        b = Broker(TOKEN, name="notoken", pkcs11='{ module = "softhsm2"; '
                   'token = "pkcs11:token=absent"; pin_file = "%s"; }'
                   % os.path.join(TOKEN.dir, "user.pin"))
        self.assertIn("no initialised token matches 'pkcs11:token=absent'",
                      self.failing_start(b))

    def test_missing_module(self):
        b = Broker(TOKEN, name="nomodule", pkcs11='{ module = "/nonexistent/lib.so"; '
                   'token = "pkcs11:token=keybroker"; pin_file = "%s"; }'
                   % os.path.join(TOKEN.dir, "user.pin"))
        self.assertIn("cannot load PKCS#11 module '/nonexistent/lib.so'",
                      self.failing_start(b))

    def test_bad_config_names_file_and_line(self):
        b = Broker(TOKEN, name="badconf", workers="0")
        # Line 4 of the generated file: instance, socket, log_level, workers.
        self.assertIn("%s:4: setting 'workers': must be between 1 and 64" % b.config,
                      self.failing_start(b))

    def test_check_config(self):
        out = subprocess.run([os.path.join(BUILD, "keybrokerd"), "-t", "-c",
                              BROKER.config], capture_output=True, text=True)
        self.assertEqual(out.returncode, 0)
        self.assertIn("configuration OK", out.stdout)


class HsmLoss(unittest.TestCase):
    def test_token_gone_then_back(self):
        token = Token([("k", 2048)])
        b = Broker(token, name="loss").start()
        try:
            c = b.connect()
            dek = os.urandom(32)
            w = c.wrap("k", dek, alg="RSA-OAEP")["value"]
            tokens = token.tokens_dir()
            os.rename(tokens, tokens + ".away")
            os.mkdir(tokens)
            r = c.request("unwrapKey", key="k", alg="RSA-OAEP", value=w)
            self.assertEqual(r["error"], {"code": "HsmUnavailable",
                                          "message": "the HSM token is unavailable; retry later"})
            # Wrap needs only the cached public key and keeps working.
            self.assertIn("result", c.request("wrapKey", key="k", value=b64e(dek)))
            os.rmdir(tokens)
            os.rename(tokens + ".away", tokens)
            deadline = time.time() + 10
            while time.time() < deadline:
                r = c.request("unwrapKey", key="k", alg="RSA-OAEP", value=w)
                if "result" in r:
                    break
                time.sleep(0.3)
            self.assertEqual(b64d(r["result"]["value"]), dek)
            log = b.read_log()
            self.assertIn("token unavailable", log)
            self.assertIn("token 'keybroker' is back", log)
            c.close()
        finally:
            b.stop()
            token.remove()


class Interop(unittest.TestCase):
    """Against tools this project did not write: openssl and pkcs11-tool."""

    @staticmethod
    def der_len(n):
        if n < 0x80:
            return bytes([n])
        b = n.to_bytes((n.bit_length() + 7) // 8, "big")
        return bytes([0x80 | len(b)]) + b

    def der(self, tag, body):
        return bytes([tag]) + self.der_len(len(body)) + body

    def der_int(self, raw):
        if raw[0] & 0x80:
            raw = b"\0" + raw
        return self.der(0x02, raw)

    def jwk_to_pem(self, jwk):
        """SubjectPublicKeyInfo PEM from a JWK, by hand (RFC 8017 A.1.1)."""
        rsa_key = self.der(0x30, self.der_int(b64d(jwk["n"])) + self.der_int(b64d(jwk["e"])))
        alg = self.der(0x30, bytes.fromhex("06092a864886f70d0101010500"))
        spki = self.der(0x30, alg + self.der(0x03, b"\0" + rsa_key))
        import base64
        body = base64.encodebytes(spki).decode()
        return "-----BEGIN PUBLIC KEY-----\n%s-----END PUBLIC KEY-----\n" % body

    def test_openssl_encrypts_broker_unwraps(self):
        c = BROKER.connect()
        jwk = c.ok("getKey", key="k2048")["key"]
        pem = os.path.join(TOKEN.dir, "k2048.pem")
        with open(pem, "w") as f:
            f.write(self.jwk_to_pem(jwk))
        # openssl itself must accept the converted key.
        out = subprocess.run(["openssl", "pkey", "-pubin", "-in", pem, "-noout", "-text"],
                             capture_output=True, text=True)
        self.assertIn("Public-Key: (2048 bit)", out.stdout)
        for alg, md in (("RSA-OAEP", "sha1"), ("RSA-OAEP-256", "sha256")):
            dek = os.urandom(32)
            enc = subprocess.run(["openssl", "pkeyutl", "-encrypt", "-pubin", "-inkey", pem,
                                  "-pkeyopt", "rsa_padding_mode:oaep",
                                  "-pkeyopt", "rsa_oaep_md:" + md,
                                  "-pkeyopt", "rsa_mgf1_md:" + md],
                                 input=dek, capture_output=True, check=True).stdout
            self.assertEqual(b64d(c.unwrap("k2048", enc, alg=alg)["value"]), dek, alg)
        c.close()

    def test_pkcs11_tool_decrypts_broker_wrap(self):
        c = BROKER.connect()
        dek = os.urandom(32)
        w = c.wrap("k2048", dek, alg="RSA-OAEP")
        version = w["kid"].rsplit("/", 1)[1]
        src = os.path.join(TOKEN.dir, "wrapped.bin")
        dst = os.path.join(TOKEN.dir, "plain.bin")
        with open(src, "wb") as f:
            f.write(b64d(w["value"]))
        out = subprocess.run(["pkcs11-tool", "--module", "/usr/lib/softhsm/libsofthsm2.so",
                              "--token-label", "keybroker", "--login", "--pin", TOKEN.pin,
                              "--decrypt", "-m", "RSA-PKCS-OAEP", "--hash-algorithm", "SHA-1",
                              "--mgf", "MGF1-SHA1", "--id", version,
                              "-i", src, "-o", dst],
                             env=TOKEN.env, capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        with open(dst, "rb") as f:
            self.assertEqual(f.read(), dek)
        c.close()

    def test_key_attributes_seen_by_pkcs11_tool(self):
        out = subprocess.run(["pkcs11-tool", "--module", "/usr/lib/softhsm/libsofthsm2.so",
                              "--token-label", "keybroker", "--login", "--pin", TOKEN.pin,
                              "--list-objects", "--type", "privkey"],
                             env=TOKEN.env, capture_output=True, text=True, check=True)
        self.assertIn("never extractable", out.stdout)
        self.assertNotIn("extractable,", out.stdout.replace("never extractable", ""))


class Cli(unittest.TestCase):
    def kb(self, *args, stdin=b""):
        return subprocess.run([os.path.join(BUILD, "keybroker"), "--socket", BROKER.socket,
                               *args], input=stdin, capture_output=True)

    def test_wrap_unwrap_round_trip(self):
        dek = os.urandom(32)
        w = self.kb("wrap", "--key", "k2048", stdin=dek)
        self.assertEqual(w.returncode, 0, w.stderr)
        u = self.kb("unwrap", "--key", "k2048", stdin=w.stdout)
        self.assertEqual(u.returncode, 0, u.stderr)
        self.assertEqual(u.stdout, dek)
        j = self.kb("unwrap", "--key", "k2048", "--json", stdin=w.stdout)
        self.assertIn(b'"kid":"keybroker://it/keys/k2048/', j.stdout)

    def test_envelope_names_the_version_across_rotation(self):
        # wrap writes {"kid", "value"}; unwrap reads it back and uses the
        # version it names, so a rotation in between changes nothing.
        dek = os.urandom(32)
        TOKEN.create("cli-rot")
        admin = BROKER.connect()
        deadline = time.time() + 5
        while "error" in admin.request("getKey", key="cli-rot"):
            self.assertLess(time.time(), deadline)
            time.sleep(0.1)
        admin.close()
        w = self.kb("wrap", "--key", "cli-rot", stdin=dek)
        env = json.loads(w.stdout)
        self.assertEqual(set(env), {"kid", "value"})
        old = env["kid"].rsplit("/", 1)[1]
        TOKEN.create("cli-rot")
        admin = BROKER.connect()
        try:
            deadline = time.time() + 5
            while admin.ok("getKey", key="cli-rot")["key"]["kid"].endswith(old):
                self.assertLess(time.time(), deadline)
                time.sleep(0.1)
        finally:
            admin.close()
        for args in ((), ("--key", "cli-rot"), ("--key", env["kid"]),
                     ("--key", "cli-rot", "--key-version", old)):
            u = self.kb("unwrap", *args, stdin=w.stdout)
            self.assertEqual((u.returncode, u.stdout), (0, dek), (args, u.stderr))
        # The bare value, as before, goes to the current version.
        bare = self.kb("unwrap", "--key", "cli-rot", stdin=env["value"].encode())
        self.assertEqual(bare.returncode, 5, bare.stderr)
        u = self.kb("unwrap", "--key", "k2048", stdin=w.stdout)
        self.assertEqual(u.returncode, 2)
        self.assertIn(b"the envelope was made by keybroker://it/keys/cli-rot/", u.stderr)
        for bad in (b'{"kid":"x","value":"AA"}', b'{"kid":"keybroker://it/keys/a/b"}',
                    b'{"kid":"keybroker://it/keys/a","value":"!!"}', b'{"kid":'):
            u = self.kb("unwrap", stdin=bad)
            self.assertEqual(u.returncode, 1, bad)
            self.assertIn(b"input is not an envelope", u.stderr)
        self.assertEqual(self.kb("unwrap", stdin=b"AAAA").returncode, 2)
        b64 = self.kb("wrap", "--key", "k2048", "--outform", "base64url", stdin=dek)
        self.assertNotIn(b"{", b64.stdout)

    def test_exit_codes(self):
        r = self.kb("get", "--key", "nope")
        self.assertEqual(r.returncode, 8)
        self.assertEqual(r.stderr, b"keybroker: KeyNotFound: key 'nope' not found\n")
        r = self.kb("unwrap", "--key", "k2048", "--inform", "raw", stdin=b"\0" * 256)
        self.assertEqual(r.returncode, 5)
        r = self.kb("unwrap", "--key", "dis", "--inform", "raw", stdin=b"\0" * 256)
        self.assertEqual(r.returncode, 9)
        r = self.kb("unwrap", "--key", "k2048", "--alg", "RSA1_5", "--inform", "raw",
                    stdin=b"\0" * 256)
        self.assertEqual(r.returncode, 10)
        r = subprocess.run([os.path.join(BUILD, "keybroker"), "--socket", "/nonexistent",
                            "get", "--key", "k"], capture_output=True)
        self.assertEqual(r.returncode, 3)
        r = self.kb("frob", "--key", "k")
        self.assertEqual(r.returncode, 2)

    def test_help(self):
        for tool in ("keybroker", "keybrokerd", "keybrokerctl"):
            r = subprocess.run([os.path.join(BUILD, tool), "--help"], capture_output=True,
                               text=True)
            self.assertEqual(r.returncode, 0)
            self.assertIn("usage:", r.stdout)


class Library(unittest.TestCase):
    def test_pkg_config_and_example_client(self):
        dest = os.path.join(TOKEN.dir, "dest")
        subprocess.run(["make", "-s", "-C", ROOT, "B=" + os.path.relpath(BUILD, ROOT),
                        "install", "DESTDIR=" + dest, "PREFIX=/usr"], check=True,
                       capture_output=True)
        env = dict(os.environ, PKG_CONFIG_SYSROOT_DIR=dest,
                   PKG_CONFIG_PATH=os.path.join(dest, "usr/lib/pkgconfig"))
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "keybroker"],
                               env=env, capture_output=True, text=True, check=True).stdout.split()
        self.assertIn("-I%s/usr/include" % dest, flags)
        exe = os.path.join(TOKEN.dir, "example_client")
        subprocess.run(["cc", "-o", exe, os.path.join(ROOT, "tests/integration/example_client.c")]
                       + flags + ["-Wl,-rpath," + os.path.join(dest, "usr/lib")]
                       + os.environ.get("KB_CLIENT_CFLAGS", "").split(), check=True)
        out = subprocess.run([exe, BROKER.socket, "k2048"], capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("round trip OK with keybroker://it/keys/k2048/", out.stdout)
