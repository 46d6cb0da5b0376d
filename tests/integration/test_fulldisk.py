# SPDX-License-Identifier: MIT
"""Writes the token does not keep. SoftHSMv2 on a full disk answers
CKR_OK to a write it lost; the tools must refuse up front when space is
short, confirm every write by a fresh load before they replace anything,
and never let a key vanish. The faults come from the fault-injecting
module (tests/fault/p11_fault.c) in front of SoftHSMv2, and, as root, from
a real full tmpfs under the token."""

import json
import os
import subprocess
import time
import unittest

from harness import (BUILD, FAULT_MODULE, Broker, Client, Token, b64d, b64e, finish,
                     pkcs11_session)

META = "keybroker:key-version"
REVOKED = "keybroker:revoked-jti"
NOBODY = 65534


def set_rules(path, *rules):
    """Gives the fault module of a running process new rules."""
    tmp = path + ".new"
    with open(tmp, "w") as f:
        f.write("\n".join(rules) + "\n")
    os.replace(tmp, path)


def fault(*rules):
    """The environment that makes the fault module apply rules."""
    return {"KB_FAULT": ";".join(rules)}


def lost(app):
    return fault("C_CreateObject lost app=%s" % app)


def listed(token, name, version):
    """The list-keys line of name/version (from a fresh process), or None."""
    out = token.ctl("list-keys").stdout
    for line in out.splitlines():
        if line.split()[0].endswith("/keys/%s/%s" % (name, version)):
            return line
    return None


def state(token, name, version):
    line = listed(token, name, version)
    if line is None:
        return None
    if "damaged" in line:
        return "damaged"
    return "enabled" if line.split()[5] == "enabled" else "disabled"


def metadata_objects(token, name, version=None):
    """The metadata objects of name (of version, if given) in the token."""
    import PyKCS11 as P
    lib, s = pkcs11_session(token)
    try:
        found = []
        for o in s.findObjects([(P.CKA_CLASS, P.CKO_DATA), (P.CKA_APPLICATION, META),
                                (P.CKA_LABEL, name)]):
            meta = json.loads(bytes(s.getAttributeValue(o, [P.CKA_VALUE])[0]))
            if version is None or meta["version"] == version:
                found.append(o)
        return len(found), s, found
    except BaseException:
        s.closeSession()
        raise


def count_metadata(token, name, version=None):
    n, s, _ = metadata_objects(token, name, version)
    s.logout()
    s.closeSession()
    return n


def destroy_metadata(token, name, version):
    """What a lost write did to a version before this fix: its metadata
    is gone, its key pair is still there."""
    n, s, objs = metadata_objects(token, name, version)
    try:
        for o in objs:
            s.destroyObject(o)
    finally:
        s.logout()
        s.closeSession()
    return n


def private_keys(token, name):
    import PyKCS11 as P
    lib, s = pkcs11_session(token)
    try:
        return len(s.findObjects([(P.CKA_CLASS, P.CKO_PRIVATE_KEY), (P.CKA_LABEL, name)]))
    finally:
        s.logout()
        s.closeSession()


def restart(broker):
    """A fresh broker process on the same config: what the token kept."""
    assert broker.stop() == 0, broker.read_log()[-2000:]
    return broker.start()


def identity_token(token, broker):
    """An identity token for the broker's admin identity, and its jti."""
    tok = token.ctl("-c", broker.config, "identity", "token", "it-admin").stdout.strip()
    return tok, json.loads(b64d(tok.split(".")[1]))["jti"]


def authenticates(broker, tok):
    c = Client(broker.socket, authenticate=False)
    try:
        r = c.request("authenticate", token=tok)
    finally:
        c.close()
    return r.get("error", {}).get("message", "ok")


class FaultCase(unittest.TestCase):
    """A token behind the fault module, with keys, a broker and a DEK
    wrapped with each version before any fault."""

    KEYS = [("cmk", 2048)]

    @classmethod
    def setUpClass(cls):
        cls.token = Token(cls.KEYS, module=FAULT_MODULE)
        cls.broker = None
        try:
            cls.broker = Broker(cls.token, name="fault").start()
            cls.dek = os.urandom(32)
            c = cls.broker.connect()
            cls.wrapped = {}
            for name, versions in cls.token.versions.items():
                for v in versions:
                    cls.wrapped[v] = c.wrap(name, cls.dek, version=v)["value"]
            c.close()
        except BaseException:
            finish(cls.broker, cls.token)
            raise

    @classmethod
    def tearDownClass(cls):
        finish(cls.broker, cls.token)

    def ctl(self, *args, env=None):
        return self.token.ctl("-c", self.broker.config, *args, check=False, env=env)

    def assertUnwraps(self, name, version):
        c = self.broker.connect()
        try:
            r = c.unwrap(name, b64d(self.wrapped[version]), version=version)
            self.assertEqual(b64d(r["value"]), self.dek)
        finally:
            c.close()


class LostMetadataWrite(FaultCase):
    """C_CreateObject of the metadata says CKR_OK and keeps nothing."""

    KEYS = [("cmk", 2048), ("cmk", 2048), ("off", 2048)]

    def test_disable_fails_and_the_version_stays(self):
        v = self.token.versions["cmk"][0]
        r = self.ctl("disable-key", "cmk", v, env=lost(META))
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("disable-key: the token did not keep the new metadata object (is its "
                      "storage full?): a fresh load of the token does not find the new "
                      "metadata object (label 'cmk')", r.stderr)
        self.assertEqual(state(self.token, "cmk", v), "enabled")
        self.assertEqual(count_metadata(self.token, "cmk", v), 1)
        restart(self.broker)
        self.assertUnwraps("cmk", v)

    def test_enable_fails_and_the_version_stays_disabled(self):
        v = self.token.versions["off"][0]
        self.assertEqual(self.ctl("disable-key", "off", v).returncode, 0)
        r = self.ctl("enable-key", "off", v, env=lost(META))
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("the token did not keep the new metadata object", r.stderr)
        self.assertEqual(state(self.token, "off", v), "disabled")
        restart(self.broker)
        c = self.broker.connect()
        self.assertEqual(c.request("getKey", key="off")["result"]["attributes"]["enabled"],
                         False)
        c.close()

    def test_create_fails_and_leaves_nothing(self):
        r = self.ctl("create-key", "fresh", env=lost(META))
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("create-key fresh: the token did not keep the new version (is its "
                      "storage full?): a fresh load of the token does not find the new "
                      "metadata object (label 'fresh'); nothing was created", r.stderr)
        self.assertNotIn("/keys/fresh/", self.token.ctl("list-keys").stdout)
        self.assertEqual(private_keys(self.token, "fresh"), 0)

    def test_unchanged_after_the_faults(self):
        """What the other tests tried left the token as it was."""
        r = self.ctl("create-key", "cmk", env=lost(META))
        self.assertEqual(r.returncode, 1)
        self.assertEqual(len([line for line in self.token.ctl("list-keys").stdout.splitlines()
                              if "/keys/cmk/" in line]), 2)
        restart(self.broker)
        c = self.broker.connect()
        kid = c.ok("getKey", key="cmk")["key"]["kid"]
        c.close()
        self.assertTrue(kid.endswith(self.token.versions["cmk"][1]), kid)


class LostKeyPair(FaultCase):
    """C_GenerateKeyPair says CKR_OK and keeps nothing."""

    def test_create_fails_and_leaves_nothing(self):
        r = self.ctl("create-key", "gone", env=fault("C_GenerateKeyPair lost"))
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("create-key gone: the token did not keep the new version (is its "
                      "storage full?): a fresh load of the token does not find the new "
                      "private key (label 'gone'); nothing was created", r.stderr)
        self.assertNotIn("/keys/gone/", self.token.ctl("list-keys").stdout)
        self.assertEqual(count_metadata(self.token, "gone"), 0)


class FailedDestroy(FaultCase):
    """C_DestroyObject fails: the replaced object stays behind."""

    KEYS = [("cmk", 2048)]

    def test_replaced_metadata_left_behind_newest_wins(self):
        v = self.token.versions["cmk"][0]
        r = self.ctl("disable-key", "cmk", v,
                     env=fault("C_DestroyObject fail app=%s" % META))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("a replaced metadata object was not removed (CKR_FUNCTION_FAILED); "
                      "the newest one is used", r.stderr)
        self.assertEqual(count_metadata(self.token, "cmk", v), 2)
        self.assertEqual(state(self.token, "cmk", v), "disabled")
        restart(self.broker)
        c = self.broker.connect()
        self.assertEqual(c.request("wrapKey", key="cmk", value=b64e(b"x" * 32))["error"]["code"],
                         "KeyDisabled")
        c.close()
        # The next update starts from the newest and clears what was left.
        self.assertEqual(self.ctl("enable-key", "cmk", v).returncode, 0)
        self.assertEqual(count_metadata(self.token, "cmk", v), 1)
        self.assertEqual(state(self.token, "cmk", v), "enabled")

    def test_create_cleanup_fails_version_listed_damaged(self):
        r = self.ctl("create-key", "half", env=fault("C_CreateObject lost app=%s" % META,
                                                     "C_DestroyObject fail"))
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("removing what was made failed (CKR_FUNCTION_FAILED): if the private key "
                      "stayed, keybrokerctl list-keys shows the version as damaged", r.stderr)
        lines = [line for line in self.token.ctl("list-keys").stdout.splitlines()
                 if "/keys/half/" in line]
        self.assertEqual(len(lines), 1, lines)
        v = lines[0].split()[0].rsplit("/", 1)[1]
        self.assertIn("damaged: metadata unreadable; keybrokerctl repair-key half %s "
                      "--enabled|--disabled" % v, lines[0])


class DamagedVersion(FaultCase):
    """A version whose metadata a lost write took (as the tools did before
    they confirmed writes): its private key is still in the token."""

    KEYS = [("cmk", 2048), ("cmk", 2048)]

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.old, cls.new = cls.token.versions["cmk"]
        assert destroy_metadata(cls.token, "cmk", cls.new) == 1
        restart(cls.broker)

    def test_listed_with_the_repair_command(self):
        self.assertIn("damaged: metadata unreadable; keybrokerctl repair-key cmk %s "
                      "--enabled|--disabled" % self.new, listed(self.token, "cmk", self.new))
        self.assertEqual(state(self.token, "cmk", self.old), "enabled")
        self.assertIn("key cmk version %s: RSA-HSM 2048, damaged (metadata unreadable): refused "
                      "until keybrokerctl repair-key cmk %s --enabled|--disabled"
                      % (self.new, self.new), self.broker.read_log())

    def test_refused_with_a_clear_error(self):
        c = self.broker.connect()
        want = {"code": "KeyDisabled",
                "message": "key 'cmk' version %s is damaged: its metadata in the token is "
                           "unreadable; repair: keybrokerctl repair-key cmk %s "
                           "--enabled|--disabled" % (self.new, self.new)}
        for op, fields in (("getKey", {}), ("wrapKey", {"value": b64e(b"x" * 32)}),
                           ("unwrapKey", {"value": self.wrapped[self.new]})):
            r = c.request(op, key="cmk", version=self.new, **fields)
            self.assertEqual(r.get("error"), want, op)
        c.close()

    def test_current_version_unknown_while_one_is_damaged(self):
        c = self.broker.connect()
        r = c.request("wrapKey", key="cmk", value=b64e(b"x" * 32))
        self.assertEqual(r["error"]["code"], "KeyDisabled")
        self.assertIn("key 'cmk' has a damaged version %s (its metadata in the token is "
                      "unreadable), so its current version is not known" % self.new,
                      r["error"]["message"])
        c.close()
        # A healthy version named explicitly still works.
        self.assertUnwraps("cmk", self.old)

    def test_enable_key_points_to_repair(self):
        r = self.ctl("enable-key", "cmk", self.new)
        self.assertEqual(r.returncode, 1)
        self.assertIn("key cmk version %s is damaged (no readable metadata); keybrokerctl "
                      "repair-key cmk %s --enabled|--disabled rewrites it"
                      % (self.new, self.new), r.stderr)


class RepairKey(FaultCase):
    KEYS = [("keep", 2048), ("keep", 2048), ("promote", 2048), ("promote", 2048),
            ("off", 2048), ("lost", 2048)]

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        for name in ("keep", "promote", "off", "lost"):
            assert destroy_metadata(cls.token, name, cls.token.versions[name][-1]) == 1

    def current(self, name):
        """The current version of name, once the broker has reloaded."""
        deadline = time.time() + 10
        while True:
            c = self.broker.connect()
            r = c.request("getKey", key=name)
            c.close()
            if "result" in r or time.time() > deadline:
                break
            time.sleep(0.1)
        return r["result"]["key"]["kid"].rsplit("/", 1)[1]

    def reload(self):
        self.assertEqual(self.ctl("reload").returncode, 0)

    def test_repair_keeps_the_current_version_by_default(self):
        old, new = self.token.versions["keep"]
        r = self.ctl("repair-key", "keep", new, "--enabled")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("key keep version %s repaired, enabled" % new, r.stdout)
        self.assertRegex(listed(self.token, "keep", new), r"enabled  repaired \S+Z$")
        self.reload()
        self.assertEqual(self.current("keep"), old)
        self.assertUnwraps("keep", new)

    def test_repair_current_makes_it_the_current_version(self):
        old, new = self.token.versions["promote"]
        r = self.ctl("repair-key", "promote", new, "--enabled", "--current")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.reload()
        self.assertEqual(self.current("promote"), new)
        self.assertUnwraps("promote", new)

    def test_repair_disabled(self):
        v = self.token.versions["off"][0]
        self.assertEqual(self.ctl("repair-key", "off", v, "--disabled").returncode, 0)
        self.assertEqual(state(self.token, "off", v), "disabled")

    def test_repair_write_lost_stays_damaged(self):
        v = self.token.versions["lost"][0]
        r = self.ctl("repair-key", "lost", v, "--enabled", env=lost(META))
        self.assertEqual(r.returncode, 1)
        self.assertIn("repair-key: the token did not keep the new metadata object", r.stderr)
        self.assertEqual(state(self.token, "lost", v), "damaged")

    def test_repair_refuses_a_healthy_version(self):
        v = self.token.versions["keep"][0]
        r = self.ctl("repair-key", "keep", v, "--enabled")
        self.assertEqual(r.returncode, 1)
        self.assertIn("key keep version %s is not damaged (its metadata reads back); "
                      "enable-key or disable-key changes it" % v, r.stderr)

    def test_repair_refuses_an_unknown_version(self):
        r = self.ctl("repair-key", "keep", "0" * 32, "--enabled")
        self.assertEqual(r.returncode, 1)
        self.assertIn("key 'keep' has no version '%s'" % ("0" * 32), r.stderr)

    def test_repair_usage(self):
        v = self.token.versions["keep"][0]
        for args in ((v,), (v, "--enabled", "--disabled"), ("nothex", "--enabled")):
            r = self.ctl("repair-key", "keep", *args)
            self.assertEqual(r.returncode, 2, args)
            self.assertIn("repair-key needs NAME, VERSION (32 lowercase hex) and one of "
                          "--enabled or --disabled", r.stderr)


class Revocations(FaultCase):
    def test_lost_revocation_fails_but_the_running_broker_refuses(self):
        tok, jti = identity_token(self.token, self.broker)
        r = self.ctl("identity", "revoke", jti, env=lost(REVOKED))
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("revoke: the token did not keep the revocation (is its storage full?)",
                      r.stderr)
        self.assertIn("the running broker refuses it from now on (until it restarts: run "
                      "revoke again once the token can keep it)", r.stderr)
        self.assertEqual(authenticates(self.broker, tok), "token has been revoked")
        # The token kept nothing: a new broker does not know it...
        restart(self.broker)
        self.assertEqual(authenticates(self.broker, tok), "ok")
        # ...until the revocation is made again and confirmed.
        r = self.ctl("identity", "revoke", jti)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("revoked token %s" % jti, r.stdout)
        restart(self.broker)
        self.assertEqual(authenticates(self.broker, tok), "token has been revoked")

    def test_reload_does_not_forget_a_revocation(self):
        tok, jti = identity_token(self.token, self.broker)
        self.ctl("identity", "revoke", jti, env=lost(REVOKED))
        self.assertEqual(self.ctl("reload").returncode, 0)
        time.sleep(0.5)
        self.assertEqual(authenticates(self.broker, tok), "token has been revoked")

    def test_revocation_of_the_old_form_still_counts(self):
        """Before this version a revocation was a label, without a value."""
        import PyKCS11 as P
        tok, jti = identity_token(self.token, self.broker)
        lib, s = pkcs11_session(self.token)
        try:
            s.createObject([(P.CKA_CLASS, P.CKO_DATA), (P.CKA_TOKEN, True),
                            (P.CKA_PRIVATE, True), (P.CKA_APPLICATION, REVOKED),
                            (P.CKA_LABEL, jti)])
        finally:
            s.logout()
            s.closeSession()
        restart(self.broker)
        self.assertEqual(authenticates(self.broker, tok), "token has been revoked")

    @unittest.skipUnless(os.geteuid() == 0, "needs root (another uid)")
    def test_revoke_token_only_for_root_and_the_broker_uid(self):
        os.chmod(self.token.dir, 0o711)
        os.chmod(self.broker.dir, 0o711)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
                c = Client(self.broker.socket, authenticate=False)
                os.write(w, json.dumps(c.request("revokeToken", jti="x" * 16)).encode())
            finally:
                os._exit(0)
        os.close(w)
        try:
            reply = json.loads(os.read(r, 4096))
        finally:
            os.close(r)
            os.waitpid(pid, 0)
            os.chmod(self.token.dir, 0o700)
            os.chmod(self.broker.dir, 0o700)
        self.assertEqual(reply["error"], {
            "code": "Forbidden",
            "message": "revokeToken is for root and the broker's own uid (%d), not uid %d"
                       % (os.geteuid(), NOBODY)})


class ConfirmCheck(FaultCase):
    """The check that confirms a write, run on its own: it finds what is
    there and nothing else, and refuses malformed requests."""

    def check(self, *objects, pin=None):
        """Runs the check with the PIN on fd 3, as the writer passes it."""
        args = [FAULT_MODULE, "pkcs11:token=keybroker"]
        for o in objects:
            args += o
        r, w = os.pipe()
        os.write(w, (self.token.pin if pin is None else pin).encode())
        os.close(w)
        try:
            return subprocess.run([os.path.join(BUILD, "keybrokerctl"),
                                   "__confirm-token-write", *args],
                                  env=self.token.env, capture_output=True, text=True,
                                  pass_fds=(r,), preexec_fn=lambda: os.dup2(r, 3))
        finally:
            os.close(r)

    def test_finds_a_private_key_by_label_and_id(self):
        v = self.token.versions["cmk"][0]
        r = self.check(["3", "cmk", v, "", "", "", "the key"])
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_missing_object(self):
        r = self.check(["3", "cmk", "0" * 32, "", "", "", "the key"])
        self.assertEqual(r.returncode, 1)
        self.assertIn("a fresh load of the token does not find the key (label 'cmk')", r.stderr)

    def test_different_value(self):
        r = self.check(["0", "cmk", "", META, "17", "0" * 64, "the metadata"])
        self.assertEqual(r.returncode, 1)

    def test_no_pin_on_its_pipe(self):
        r = self.check(["3", "cmk", self.token.versions["cmk"][0], "", "", "", "the key"],
                       pin="")
        self.assertEqual(r.returncode, 2)
        self.assertIn("the PIN from the writer: PIN must be 1-256 bytes", r.stderr)

    def test_malformed(self):
        r = self.check(["3", "cmk", "abc", "", "", "", "the key"])
        self.assertEqual(r.returncode, 2)
        self.assertIn("object 1 is malformed", r.stderr)


class FullTmpfs(unittest.TestCase):
    """The token's files on a 4 MiB tmpfs, filled up: every admin write
    either fails with a clear message and changes nothing, or succeeds
    and is there after a restart; no key vanishes."""

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root (mount -t tmpfs)")
        cls.token = Token([("cmk", 2048), ("cmk", 2048)], module=FAULT_MODULE, tmpfs="4m")
        cls.broker = None
        try:
            cls.v1, cls.v2 = cls.token.versions["cmk"]
            cls.rules = os.path.join(cls.token.dir, "fault-rules")
            set_rules(cls.rules)
            cls.broker = Broker(cls.token, name="tmpfs",
                                env={"KB_FAULT_FILE": cls.rules}).start()
            cls.dek = os.urandom(32)
            c = cls.broker.connect()
            cls.wrapped = {v: c.wrap("cmk", cls.dek, version=v)["value"] for v in (cls.v1, cls.v2)}
            c.close()
            assert cls.token.ctl("disable-key", "cmk", cls.v1).returncode == 0
        except BaseException:
            finish(cls.broker, cls.token)
            raise

    @classmethod
    def tearDownClass(cls):
        finish(cls.broker, cls.token)

    def setUp(self):
        self.filler = os.path.join(self.token.tokens_dir(), "filler")

    def tearDown(self):
        self.free()

    def fill(self):
        subprocess.run(["dd", "if=/dev/zero", "of=" + self.filler, "bs=4k"],
                       capture_output=True)
        st = os.statvfs(self.token.tokens_dir())
        self.assertLess(st.f_bavail * st.f_frsize, 64 * 1024)

    def free(self):
        if os.path.exists(self.filler):
            os.unlink(self.filler)

    def ctl(self, *args, env=None):
        return self.token.ctl("-c", self.broker.config, *args, check=False, env=env)

    def assertNothingChanged(self):
        """After space is back and a restart: both versions, as they were."""
        self.free()
        restart(self.broker)
        self.assertEqual(state(self.token, "cmk", self.v1), "disabled")
        self.assertEqual(state(self.token, "cmk", self.v2), "enabled")
        c = self.broker.connect()
        r = c.unwrap("cmk", b64d(self.wrapped[self.v2]), version=self.v2)
        self.assertEqual(b64d(r["value"]), self.dek)
        self.assertEqual(c.request("unwrapKey", key="cmk", version=self.v1,
                                   value=self.wrapped[self.v1])["error"]["code"], "KeyDisabled")
        c.close()

    def refused(self, r, what):
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("%s: not enough free space for a token write: the token directory %s has "
                      % (what, self.token.tokens_dir()), r.stderr)
        self.assertIn("KiB free, below the 1024 KiB margin keybroker keeps (a full disk loses "
                      "writes that SoftHSMv2 reports as done); nothing was written; free some "
                      "space and retry", r.stderr)

    def test_full_disable_is_refused(self):
        self.fill()
        self.refused(self.ctl("disable-key", "cmk", self.v2), "disable-key")
        self.assertNothingChanged()

    def test_full_enable_is_refused(self):
        self.fill()
        self.refused(self.ctl("enable-key", "cmk", self.v1), "enable-key")
        self.assertNothingChanged()

    def test_full_create_is_refused(self):
        self.fill()
        self.refused(self.ctl("create-key", "cmk2"), "create-key cmk2")
        self.assertNothingChanged()
        self.assertNotIn("/keys/cmk2/", self.token.ctl("list-keys").stdout)

    def test_full_delete_over_the_socket_is_refused(self):
        self.fill()
        c = self.broker.connect()
        r = c.request("deleteKey", key="cmk")
        c.close()
        self.assertEqual(r["error"]["code"], "Internal")
        self.assertIn("not enough free space for a token write", r["error"]["message"])
        self.assertNothingChanged()

    def test_lost_delete_leaves_the_key_as_it_was(self):
        """The disk fills as the key's state object is written: SoftHSMv2
        says CKR_OK, the fresh load does not find it, and deleteKey says
        so; the key was never deleted."""
        set_rules(self.rules, "C_CreateObject fill=%s app=keybroker:key" % self.filler)
        try:
            c = self.broker.connect()
            r = c.request("deleteKey", key="cmk")
            c.close()
        finally:
            set_rules(self.rules)
        self.assertEqual(r["error"]["code"], "Internal")
        self.assertIn("the token did not keep the new key state object (is its storage "
                      "full?)", r["error"]["message"])
        self.assertNothingChanged()
        c = self.broker.connect()
        self.assertEqual(c.request("getDeletedKey", key="cmk")["error"]["code"], "KeyNotFound")
        c.close()

    def test_full_revoke_is_refused_the_running_broker_refuses(self):
        tok, jti = identity_token(self.token, self.broker)
        self.fill()
        r = self.ctl("identity", "revoke", jti)
        self.refused(r, "revoke")
        self.assertIn("the running broker refuses it from now on (until it restarts", r.stderr)
        self.assertEqual(authenticates(self.broker, tok), "token has been revoked")
        self.assertNothingChanged()
        self.assertEqual(authenticates(self.broker, tok), "ok")

    def test_disk_fills_during_the_metadata_write(self):
        """Past the margin check, then the disk fills: SoftHSMv2 loses
        the write for real and reports CKR_OK."""
        rule = "C_CreateObject fill=%s app=%s" % (self.filler, META)
        r = self.ctl("disable-key", "cmk", self.v2, env=fault(rule))
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("disable-key: the token did not keep the new metadata object (is its "
                      "storage full?)", r.stderr)
        self.assertNothingChanged()

    def test_disk_fills_during_the_revocation(self):
        tok, jti = identity_token(self.token, self.broker)
        rule = "C_CreateObject fill=%s app=%s" % (self.filler, REVOKED)
        r = self.ctl("identity", "revoke", jti, env=fault(rule))
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("revoke: the token did not keep the revocation", r.stderr)
        self.assertEqual(authenticates(self.broker, tok), "token has been revoked")
        self.assertNothingChanged()

    def test_disk_fills_during_the_new_version_metadata(self):
        """The metadata, written first, is lost to a disk that fills as
        it is written (CKR_OK); the key pair then cannot be made, and
        what was made is taken back."""
        r = self.ctl("create-key", "cmk3",
                     env=fault("C_CreateObject fill=%s app=%s" % (self.filler, META)))
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("create-key cmk3: the token refused to generate the key pair "
                      "(C_GenerateKeyPair: ", r.stderr)
        self.assertIn("; nothing was created", r.stderr)
        self.assertNothingChanged()
        self.assertNotIn("/keys/cmk3/", self.token.ctl("list-keys").stdout)
        self.assertEqual(private_keys(self.token, "cmk3"), 0)

    def test_disk_fills_during_key_generation(self):
        """SoftHSMv2 does report this one (and removes what it made)."""
        r = self.ctl("create-key", "cmk5",
                     env=fault("C_GenerateKeyPair fill=%s" % self.filler))
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("create-key cmk5: the token refused to generate the key pair "
                      "(C_GenerateKeyPair: ", r.stderr)
        self.assertNothingChanged()
        self.assertNotIn("/keys/cmk5/", self.token.ctl("list-keys").stdout)
        self.assertEqual(private_keys(self.token, "cmk5"), 0)

    def test_full_init_token_is_refused(self):
        """A second SoftHSMv2 token directory on the same full tmpfs."""
        other = os.path.join(self.token.tokens_dir(), "other")
        os.mkdir(other, 0o700)
        conf = os.path.join(self.token.dir, "other-softhsm2.conf")
        with open(conf, "w") as f:
            f.write("directories.tokendir = %s\nobjectstore.backend = file\n" % other)
        self.fill()
        r = self.token.ctl("init-token", "--so-pin-file", os.path.join(self.token.dir, "so.pin"),
                           check=False, env={"SOFTHSM2_CONF": conf})
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("keybrokerctl: not enough free space for a token write: the token "
                      "directory %s has " % other, r.stderr)
        self.assertEqual(os.listdir(other), [])
        self.assertNothingChanged()

    def test_with_space_writes_succeed_and_stay(self):
        tok, jti = identity_token(self.token, self.broker)
        r = self.ctl("create-key", "cmk4")
        self.assertEqual(r.returncode, 0, r.stderr)
        v = r.stdout.split()[0].rsplit("/", 1)[1]
        self.assertEqual(self.ctl("disable-key", "cmk4", v).returncode, 0)
        self.assertEqual(self.ctl("identity", "revoke", jti).returncode, 0)
        restart(self.broker)
        self.assertEqual(state(self.token, "cmk4", v), "disabled")
        self.assertEqual(authenticates(self.broker, tok), "token has been revoked")


if __name__ == "__main__":
    unittest.main()
