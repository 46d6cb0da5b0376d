# SPDX-License-Identifier: MIT
"""The token failing under a running broker, and a token of thousands of
key versions. The faults come from the fault-injecting module
(tests/fault/p11_fault.c) in front of SoftHSMv2, given new rules while the
broker runs through the file KB_FAULT_FILE names; the big token is filled
by tests/integration/p11_populate.c, which copies one key pair in the
token instead of generating thousands."""

import json
import os
import select
import subprocess
import time
import unittest

from harness import BUILD, FAULT_MODULE, SOFTHSM_LIB, Broker, Client, Token, b64d, finish


def set_rules(path, *rules):
    """Gives the fault module of a running process new rules."""
    tmp = path + ".new"
    with open(tmp, "w") as f:
        f.write("\n".join(rules) + "\n")
    os.replace(tmp, path)


def counts(path):
    """The per-function call counts the fault module wrote."""
    with open(path) as f:
        return {fn: int(n) for fn, n in (line.split() for line in f)}


class TokenFaults(unittest.TestCase):
    """A broker whose token fails on command: each failure is answered
    clearly, and the broker recovers without a restart."""

    @classmethod
    def setUpClass(cls):
        cls.token = Token([("cmk", 2048)], module=FAULT_MODULE)
        cls.broker = None
        try:
            cls.rules = os.path.join(cls.token.dir, "fault-rules")
            set_rules(cls.rules)
            cls.broker = Broker(cls.token, name="faults",
                                env={"KB_FAULT_FILE": cls.rules}).start()
            cls.dek = os.urandom(32)
            c = cls.broker.connect()
            cls.wrapped = c.wrap("cmk", cls.dek)["value"]
            c.close()
        except BaseException:
            finish(cls.broker, cls.token)
            raise

    @classmethod
    def tearDownClass(cls):
        finish(cls.broker, cls.token)

    def tearDown(self):
        set_rules(self.rules)

    def unwrap(self, c):
        return c.request("unwrapKey", key="cmk", value=self.wrapped)

    def assertUnwraps(self, c):
        r = self.unwrap(c)
        self.assertNotIn("error", r)
        self.assertEqual(b64d(r["result"]["value"]), self.dek)

    def assertUnwrapsSoon(self, c):
        """Recovery is tried on demand, at most once a second: the token
        back, an unwrap succeeds within a few tries."""
        deadline = time.time() + 10
        while "error" in (r := self.unwrap(c)) and time.time() < deadline:
            self.assertEqual(r["error"]["code"], "HsmUnavailable", r)
            time.sleep(0.2)
        self.assertUnwraps(c)

    def setUp(self):
        # Each test starts on a token that works (the last one's fault
        # may still be in the once-a-second recovery window).
        c = self.broker.connect(authenticate=False)
        try:
            deadline = time.time() + 10
            while "error" in (r := c.request("getToken")) and time.time() < deadline:
                time.sleep(0.2)
            self.assertNotIn("error", r)
        finally:
            c.close()

    def wait_log(self, text, since, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if text in self.broker.read_log()[since:]:
                return
            time.sleep(0.05)
        self.fail("%r not logged:\n%s" % (text, self.broker.read_log()[since:]))

    def test_lost_session_is_renewed_and_the_request_retried(self):
        since = len(self.broker.read_log())
        set_rules(self.rules, "C_Decrypt rv=CKR_SESSION_HANDLE_INVALID times=1")
        c = self.broker.connect()
        try:
            self.assertUnwraps(c)
        finally:
            c.close()
        self.wait_log("failed; renewing sessions", since)

    def test_lost_session_on_signing_is_renewed_and_the_request_retried(self):
        since = len(self.broker.read_log())
        c = self.broker.connect()
        try:
            # The next signature finds its session gone: the worker must
            # renew it and sign again, as an unwrap does, not answer
            # HsmUnavailable.
            set_rules(self.rules, "C_Sign rv=CKR_SESSION_HANDLE_INVALID times=1")
            self.assertIn("access_token", c.ok("getToken"))
        finally:
            c.close()
        self.wait_log("failed; renewing sessions", since)

    def test_device_error_is_hsm_unavailable_until_it_clears(self):
        set_rules(self.rules, "C_Decrypt rv=CKR_DEVICE_ERROR")
        c = self.broker.connect()
        try:
            r = self.unwrap(c)
            self.assertEqual(r["error"]["code"], "HsmUnavailable", r)
            # Wraps use the cached public key: the token is not needed.
            c.wrap("cmk", self.dek)
            set_rules(self.rules)
            self.assertUnwrapsSoon(c)
        finally:
            c.close()

    def test_device_error_does_not_change_how_the_token_unwraps(self):
        # Recovery re-reads the catalogue and probes the token's own OAEP
        # mechanism again; a device error during that probe must fail the
        # recovery (tried again a second later), not make the broker
        # settle for raw RSA where the token does OAEP itself.
        c = self.broker.connect()
        try:
            before = c.ok("getKey", key="cmk")["attributes"]["unwrapPaths"]
            self.assertEqual(before["RSA-OAEP"], "token")
            w = c.wrap("cmk", self.dek, alg="RSA-OAEP")["value"]
            set_rules(self.rules, "C_Decrypt rv=CKR_DEVICE_ERROR")
            r = c.request("unwrapKey", key="cmk", value=w, alg="RSA-OAEP")
            self.assertEqual(r["error"]["code"], "HsmUnavailable", r)
            set_rules(self.rules)
            deadline = time.time() + 10
            while "error" in (r := c.request("unwrapKey", key="cmk", value=w,
                                             alg="RSA-OAEP")):
                self.assertLess(time.time(), deadline, r)
                time.sleep(0.2)
            after = c.ok("getKey", key="cmk")["attributes"]["unwrapPaths"]
            self.assertEqual(after, before)
        finally:
            c.close()

    def test_token_removed_and_back(self):
        since = len(self.broker.read_log())
        set_rules(self.rules, "C_Decrypt rv=CKR_TOKEN_NOT_PRESENT",
                  "C_OpenSession rv=CKR_TOKEN_NOT_PRESENT",
                  "C_GetTokenInfo rv=CKR_TOKEN_NOT_PRESENT")
        c = self.broker.connect()
        try:
            r = self.unwrap(c)
            self.assertEqual(r["error"]["code"], "HsmUnavailable", r)
            self.wait_log("token unavailable", since)
            c.wrap("cmk", self.dek)
            set_rules(self.rules)
            self.assertUnwrapsSoon(c)
            self.wait_log("is back", since)
        finally:
            c.close()
        # The audit trail has both, in order.
        with open(os.path.join(self.broker.dir, "audit", "audit.jsonl")) as f:
            events = [json.loads(l) for l in f]
        token = [(r["state"], r.get("result")) for r in events
                 if r["event"] == "token"]
        self.assertEqual(token[-2:], [("lost", None), ("back", None)])
        lost = [r for r in events if r["event"] == "token"][-2]
        self.assertTrue(lost["message"])

    def test_slow_token_still_answers(self):
        set_rules(self.rules, "C_Decrypt sleep=400")
        c = self.broker.connect()
        try:
            self.assertUnwraps(c)
        finally:
            c.close()

    def test_hung_token_call_does_not_stop_other_requests(self):
        set_rules(self.rules, "C_Decrypt hang")
        stuck, other = self.broker.connect(), self.broker.connect()
        try:
            stuck.send_raw(b'{"id":1,"op":"unwrapKey","key":"cmk","value":"%s"}\n'
                           % self.wrapped.encode())
            # Requests that need no token call are answered meanwhile.
            other.wrap("cmk", self.dek)
            other.ok("getKey", key="cmk")
            readable, _, _ = select.select([stuck.sock], [], [], 0.2)
            self.assertEqual(readable, [], "the hung unwrap was answered")
            set_rules(self.rules)
            r = stuck.read_line()
            self.assertEqual(b64d(r["result"]["value"]), self.dek)
        finally:
            stuck.close()
            other.close()

    def test_requests_wait_for_a_hung_token_in_turn(self):
        """One token session, hung: token requests wait for it in turn,
        requests that need no token are served all along, and a request
        merely naming a token op takes no session."""
        b = Broker(self.token, name="queue", workers="1",
                   env={"KB_FAULT_FILE": self.rules}).start()
        line = (b'{"id":1,"op":"unwrapKey","key":"cmk","value":"%s"}\n'
                % self.wrapped.encode())
        conns = [b.connect() for _ in range(4)]
        try:
            set_rules(self.rules, "C_Decrypt hang")
            for c in conns[:3]:
                c.send_raw(line)
            time.sleep(0.3)  # one in the token, two waiting for it
            t0 = time.monotonic()
            conns[3].wrap("cmk", self.dek)
            conns[3].ok("getKey", key="cmk")
            r = conns[3].request("getKey", key="cmk", correlationId="unwrapKey")
            self.assertIn("result", r)
            self.assertLess(time.monotonic() - t0, 2)
            readable, _, _ = select.select([c.sock for c in conns[:3]], [], [], 0.2)
            self.assertEqual(readable, [], "a hung unwrap was answered")
            set_rules(self.rules)
            for c in conns[:3]:
                self.assertEqual(b64d(c.read_line()["result"]["value"]), self.dek)
        finally:
            set_rules(self.rules)
            for c in conns:
                c.close()
            finish(b, None)

    def test_reload_hung_in_the_token_does_not_stop_requests(self):
        since = len(self.broker.read_log())
        set_rules(self.rules, "C_FindObjectsInit hang")
        self.broker.reload()
        self.wait_log("SIGHUP: reloading", since)
        c = self.broker.connect()
        try:
            # The reload waits in the token; requests do not wait for it,
            # not even a miss, which would re-read the catalogue.
            c.wrap("cmk", self.dek)
            self.assertUnwraps(c)
            for _ in range(6):
                r = c.request("getKey", key="nosuchkey")
                self.assertEqual(r["error"]["code"], "KeyNotFound", r)
            self.assertNotIn("in force", self.broker.read_log()[since:])
            set_rules(self.rules)
            self.wait_log("access entries in force", since)
        finally:
            c.close()


class TokenQuirks(unittest.TestCase):
    """Tokens that behave within the standard but unlike SoftHSMv2, and a
    token that hangs when the broker is told to stop."""

    @classmethod
    def setUpClass(cls):
        cls.token = Token([("cmk", 2048)], module=FAULT_MODULE)

    @classmethod
    def tearDownClass(cls):
        cls.token.remove()

    def test_modulus_with_leading_zero(self):
        # Some tokens keep a leading zero byte in CKA_MODULUS: creating,
        # confirming (in a fresh process) and listing a key must not mind.
        quirk = {"KB_FAULT": "C_GetAttributeValue zeropad"}
        r = self.token.ctl("create-key", "padded", check=False, env=quirk)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.token.ctl("list-keys", env=quirk)
        self.assertIn("/padded/", r.stdout)
        self.assertIn("RSA-HSM 2048", r.stdout)
        self.assertNotIn("damaged", r.stdout)

    def test_object_gone_while_the_catalogue_is_read(self):
        # A load reads the token's generation object, then the one key's
        # private key, public key and metadata object: the metadata (the
        # fourth read) vanishes (another process replaced it). The
        # load goes on; the version is listed as damaged, as when its
        # metadata cannot be read.
        token = Token([("solo", 2048)], module=FAULT_MODULE)
        try:
            r = token.ctl("list-keys", check=False, env={
                "KB_FAULT": "C_GetAttributeValue rv=CKR_OBJECT_HANDLE_INVALID "
                            "skip=3 times=1"})
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("damaged", r.stdout)
            r = token.ctl("list-keys")
            self.assertNotIn("damaged", r.stdout)
        finally:
            token.remove()

    def test_stop_while_a_reload_hangs_in_the_token(self):
        rules = os.path.join(self.token.dir, "stop-rules")
        set_rules(rules)
        broker = Broker(self.token, name="stop", shutdown_grace="1",
                        env={"KB_FAULT_FILE": rules}).start()
        try:
            set_rules(rules, "C_FindObjectsInit hang")
            broker.reload()
            deadline = time.time() + 10
            while "SIGHUP: reloading" not in broker.read_log():
                self.assertLess(time.time(), deadline)
                time.sleep(0.05)
            # Stopping does not wait for the token for ever: after the
            # grace period the broker exits, saying why, without closing
            # the token (a thread is still inside it).
            status = broker.stop(timeout=15)
            self.assertEqual(status, 1)
            self.assertIn("a call into the token has not returned",
                          broker.read_log())
        finally:
            set_rules(rules)
            if broker.proc.poll() is None:
                broker.stop()


def populate(token, prefix, keys, versions):
    """Fills token with keys of versions each (p11_populate copies one
    key pair); their (name, version) pairs."""
    out = subprocess.run(
        [os.path.join(BUILD, "tests", "p11_populate"), SOFTHSM_LIB, "keybroker",
         os.path.join(token.dir, "user.pin"), prefix, str(keys), str(versions)],
        env=token.env, check=True, capture_output=True, text=True).stdout
    return [tuple(line.split()) for line in out.splitlines()]


def listed_keys(c):
    """Every key name getKeys lists, page after page, and the pages."""
    names, link, pages = [], None, 0
    while True:
        r = c.ok("getKeys", **({"nextLink": link} if link else {}))
        names += [i["kid"].rsplit("/", 1)[1] for i in r["value"]]
        pages += 1
        link = r.get("nextLink")
        if link is None:
            return names, pages


class BigCatalogue(unittest.TestCase):
    """1,000 keys of 3 versions each: the catalogue is read in one pass
    (each object's attributes once, joined by label and ID), so loading
    it costs in proportion to the objects, not their square."""

    KEYS, VERSIONS = 1000, 3

    @classmethod
    def setUpClass(cls):
        cls.token = Token([], module=FAULT_MODULE)
        try:
            start = time.monotonic()
            cls.made = populate(cls.token, "k", cls.KEYS, cls.VERSIONS)
            print("\n  populated %d versions in %.1f s"
                  % (len(cls.made), time.monotonic() - start))
        except BaseException:
            cls.token.remove()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.token.remove()

    def test_load_reads_each_object_once(self):
        count = os.path.join(self.token.dir, "counts")
        start = time.monotonic()
        r = self.token.ctl("list-keys", env={"KB_FAULT_COUNT": count})
        elapsed = time.monotonic() - start
        listed = {tuple(line.split()[0].rsplit("/", 2)[1:]) for line in r.stdout.splitlines()}
        self.assertEqual(listed, set(self.made))
        self.assertNotIn("damaged", r.stdout)
        # A private key, a public key and a metadata object per version.
        objects = 3 * len(self.made)
        reads = counts(count)["C_GetAttributeValue"]
        print("\n  %d versions listed in %.2f s, %d attribute reads for %d objects"
              % (len(self.made), elapsed, reads, objects))
        self.assertLessEqual(reads, objects + 100)

    def test_broker_serves_the_last_key_of_many(self):
        broker = Broker(self.token, name="big")
        try:
            start = time.monotonic()
            broker.start()
            print("\n  broker up on %d versions in %.2f s"
                  % (len(self.made), time.monotonic() - start))
            name, version = self.made[-2]
            c = broker.connect()
            dek = os.urandom(32)
            w = c.wrap(name, dek, version=version)
            self.assertTrue(w["kid"].endswith("/%s/%s" % (name, version)), w)
            self.assertEqual(b64d(c.unwrap(name, b64d(w["value"]), version=version)["value"]),
                             dek)
            c.close()
        finally:
            finish(broker, None)

    def test_get_keys_pages_through_all(self):
        broker = Broker(self.token, name="pages")
        try:
            broker.start()
            c = broker.connect()
            names, pages = listed_keys(c)
            c.close()
            self.assertEqual(names, sorted({n for n, _ in self.made}))
            self.assertEqual(pages, self.KEYS // 25)
        finally:
            finish(broker, None)


class TenThousandKeys(unittest.TestCase):
    """10,000 keys: the broker starts on them, lists them page by page
    through getKeys, in name order, each once, and leaves out a deleted
    one."""

    def test_get_keys_pages_through_ten_thousand(self):
        token = Token([])
        broker = None
        try:
            start = time.monotonic()
            made = sorted(name for name, _ in populate(token, "t", 10000, 1))
            populated = time.monotonic() - start
            broker = Broker(token, name="tenk")
            start = time.monotonic()
            broker.start(timeout=600)  # slow under the sanitizers
            up = time.monotonic() - start
            # Idle, it checks the token's generation once a second: by
            # handle, not by a search of 30,000 objects (which cost 62 %
            # of a CPU here).
            cpu = broker.cpu_seconds()
            time.sleep(5)
            idle = (broker.cpu_seconds() - cpu) / 5
            # An admin write re-reads the whole catalogue: seconds here,
            # minutes under the sanitizers.
            c = Client(broker.socket, timeout=900)
            start = time.monotonic()
            c.ok("deleteKey", key=made[5000])
            deleted = time.monotonic() - start
            start = time.monotonic()
            names, pages = listed_keys(c)
            listed = time.monotonic() - start
            rss = broker.rss_kib()
            c.close()
            print("\n  10,000 keys: populated in %.1f s, broker up in %.1f s, idle CPU "
                  "%.1f %%, a deleteKey in %.1f s, listed in %d pages in %.1f s, broker "
                  "RSS %.1f MiB" % (populated, up, idle * 100, deleted, pages, listed,
                                    rss / 1024))
            self.assertLess(idle, 0.25)
            self.assertEqual(names, made[:5000] + made[5001:])
            self.assertEqual(pages, 400)
        finally:
            finish(broker, token)


if __name__ == "__main__":
    unittest.main()
