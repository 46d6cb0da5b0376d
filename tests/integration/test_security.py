# SPDX-License-Identifier: MIT
"""Defences against hostile local users and misuse: who a peer is (systemd
units, recycled pids), who owns the socket, what the broker's keys may do,
and what the tools write. Most of these need root (other uids, cgroups,
pid reuse) and skip with a message without it."""

import json
import os
import signal
import socket
import stat
import subprocess
import threading
import time
import unittest

from harness import (BUILD, ROOT, Broker, Cgroup, Client, OpenDirs, Token, b64d, b64e,
                     finish, pkcs11_session, run_as)

TOKEN = None
SHIM = os.path.join(BUILD, "tests", "syscall_shim.so")
NOBODY = 65534
ROOT_ONLY = unittest.skipUnless(os.geteuid() == 0, "needs root (other uids, cgroups)")
PGDATA = '{ name = "pgdata"; assigned = "system"; units = [ "pgdata.service" ]; }'
PGDATA_ACCESS = ('{ identity = "pgdata"; keys = [ "cmk" ]; '
                 'roles = [ "Crypto Service Encryption User" ]; }')


def setUpModule():
    global TOKEN
    TOKEN = Token([("cmk", 2048)])


def tearDownModule():
    finish(None, TOKEN)


def shim_env(err, scope="accepted"):
    """LD_PRELOAD of the shim that makes getsockopt(SO_PEERPIDFD) fail."""
    return {"LD_PRELOAD": SHIM, "KB_SHIM_PEERPIDFD_ERRNO": err,
            "KB_SHIM_PEERPIDFD_SCOPE": scope,
            "ASAN_OPTIONS": "verify_asan_link_order=0:" + os.environ.get("ASAN_OPTIONS", "")}



def get_token(path):
    c = Client(path, timeout=5, authenticate=False)
    try:
        return c.request("getToken")
    finally:
        c.close()


class UnitBinding(unittest.TestCase):
    """A system unit binding is matched only by a system unit, read
    through a pidfd of the connecting process itself."""

    @classmethod
    def setUpClass(cls):
        cls.broker = Broker(TOKEN, name="units", identities=[
            PGDATA,
            '{ name = "pg-user"; assigned = "system"; uids = [ 999 ]; '
            'user_units = [ "pgdata.service" ]; }'],
            access=[PGDATA_ACCESS]).start()

    @classmethod
    def tearDownClass(cls):
        finish(cls.broker, None)

    @ROOT_ONLY
    def test_system_unit_gets_its_identity(self):
        with OpenDirs(TOKEN.dir, self.broker.dir), \
                Cgroup("system.slice/pgdata.service") as cg:
            got = run_as(NOBODY, cg, lambda: get_token(self.broker.socket))
        self.assertEqual(got["result"]["identity"], "pgdata")

    @ROOT_ONLY
    def test_user_manager_unit_is_not_a_system_unit(self):
        # What "systemd-run --user --unit=pgdata.service" makes for uid 999.
        rel = "user.slice/user-999.slice/user@999.service/app.slice/pgdata.service"
        with OpenDirs(TOKEN.dir, self.broker.dir), Cgroup(rel) as cg:
            got = run_as(999, cg, lambda: get_token(self.broker.socket))
        # Not pgdata: a user unit matches only user_units with its uid.
        self.assertEqual(got["result"]["identity"], "pg-user")

    @ROOT_ONLY
    def test_user_unit_of_another_uid_matches_nothing(self):
        rel = "user.slice/user-998.slice/user@998.service/app.slice/pgdata.service"
        with OpenDirs(TOKEN.dir, self.broker.dir), Cgroup(rel) as cg:
            got = run_as(998, cg, lambda: get_token(self.broker.socket))
        self.assertEqual(got["error"]["code"], "Unauthorized")
        self.assertIn("no system-assigned identity matches this caller (uid 998",
                      got["error"]["message"])


def connect_and_exit(uid, path):
    """A connection made by a process of uid that has exited and been
    reaped by the time this returns; returns (socket, that pid)."""
    a, b = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            socket.send_fds(a, [b"x"], [s.fileno()])
        finally:
            os._exit(0)
    _, fds, _, _ = socket.recv_fds(b, 1, 1)
    os.waitpid(pid, 0)
    a.close()
    b.close()
    return socket.socket(fileno=fds[0]), pid


def spawn_with_pid(target):
    """A sleeping child that got pid target (root: ns_last_pid), or None."""
    for _ in range(200):
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(target - 1))
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        if pid == target:
            return pid
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    return None


class RecycledPid(unittest.TestCase):
    """The pid of a connection's process, reused by a process of a bound
    unit, must not lend that unit to the connection."""

    def scenario(self, err):
        broker = Broker(TOKEN, name="recycle-" + err.lower(), identities=[PGDATA],
                        access=[PGDATA_ACCESS], env=shim_env(err)).start()
        impostor = None
        try:
            with OpenDirs(TOKEN.dir, broker.dir), \
                    Cgroup("system.slice/pgdata.service") as cg:
                # A stopped (or busy) broker accepts late.
                broker.proc.send_signal(signal.SIGSTOP)
                try:
                    sock, pid = connect_and_exit(NOBODY, broker.socket)
                    impostor = spawn_with_pid(pid)
                    if impostor is None:
                        self.skipTest("could not get pid %d back" % pid)
                    cg.add(impostor)
                finally:
                    broker.proc.send_signal(signal.SIGCONT)
                sock.settimeout(10)
                sock.sendall(b'{"id":1,"op":"getToken"}\n')
                reply = json.loads(sock.makefile("rb").readline())
                sock.close()
                os.kill(impostor, signal.SIGKILL)
                os.waitpid(impostor, 0)
                impostor = None
        finally:
            if impostor is not None:
                os.kill(impostor, signal.SIGKILL)
                os.waitpid(impostor, 0)
            finish(broker, None)
        self.assertNotIn("result", reply, "a recycled pid lent its unit")
        self.assertEqual(reply["error"]["code"], "Unauthorized")
        self.assertIn("(uid %d gid %d pid %d unit -)" % (NOBODY, NOBODY, pid),
                      reply["error"]["message"])

    @ROOT_ONLY
    def test_peerpidfd_enoprotoopt(self):
        self.scenario("ENOPROTOOPT")

    @ROOT_ONLY
    def test_peerpidfd_einval(self):
        self.scenario("EINVAL")

    def test_kernel_without_peerpidfd_refuses_unit_bindings(self):
        env = shim_env("ENOPROTOOPT", scope="all")
        broker = Broker(TOKEN, name="nopidfd", identities=[PGDATA], access=[PGDATA_ACCESS],
                        env=env)
        broker.start(wait=False)
        try:
            self.assertEqual(broker.proc.wait(30), 1)
        finally:
            finish(broker, None) if broker.proc.poll() is None else None
        want = ("identity 'pgdata' is bound to systemd units, but this kernel "
                "cannot name a connecting process (SO_PEERPIDFD, Linux 6.5 or "
                "later): bind it by uids instead")
        self.assertIn(want, broker.read_log())
        check = subprocess.run([os.path.join(BUILD, "keybrokerd"), "-t", "-c", broker.config],
                               env=broker.env, capture_output=True, text=True)
        self.assertEqual(check.returncode, 1)
        self.assertIn(want, check.stderr)
        self.assertRegex(check.stderr, r"kb\.conf:\d+: ")


class CheckConfig(unittest.TestCase):
    """keybrokerd -t passes only what can start, and says which check
    failed; start-up refuses the same things the same way."""

    def check(self, broker):
        t0 = time.monotonic()
        r = subprocess.run([os.path.join(BUILD, "keybrokerd"), "-t", "-c", broker.config],
                           env=broker.env, capture_output=True, text=True, timeout=20)
        self.assertLess(time.monotonic() - t0, 5)
        return r

    def refused(self, broker, want):
        r = self.check(broker)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn(want, r.stderr)
        broker.start(wait=False)
        try:
            self.assertEqual(broker.proc.wait(5), 1)
        finally:
            if broker.proc.poll() is None:
                broker.proc.kill()
                broker.proc.wait()
        self.assertIn(want, broker.read_log())

    def pkcs11(self, module="softhsm2", pin=None):
        return ('{ module = "%s"; token = "pkcs11:token=keybroker"; pin_file = "%s"; }'
                % (module, pin or os.path.join(TOKEN.dir, "user.pin")))

    def test_unknown_module_name(self):
        b = Broker(TOKEN, name="t-mod", pkcs11=self.pkcs11(module="no-such-module"))
        self.refused(b, "kb.conf: pkcs11.module: cannot load PKCS#11 module "
                        "'no-such-module': no p11-kit module of that name is registered "
                        "in /etc/pkcs11/modules or /usr/share/p11-kit/modules")

    def test_missing_pin_file(self):
        pin = os.path.join(TOKEN.dir, "absent.pin")
        b = Broker(TOKEN, name="t-nopin", pkcs11=self.pkcs11(pin=pin))
        self.refused(b, "kb.conf: pkcs11.pin_file: %s: No such file or directory" % pin)

    def test_pin_file_too_open(self):
        pin = os.path.join(TOKEN.dir, "open-t.pin")
        with open(pin, "w") as f:
            f.write(TOKEN.pin)
        os.chmod(pin, 0o640 | stat.S_IWGRP)
        b = Broker(TOKEN, name="t-openpin", pkcs11=self.pkcs11(pin=pin))
        self.refused(b, "%s: mode 0660 is too open" % pin)

    def test_fifo_pin_file(self):
        pin = os.path.join(TOKEN.dir, "fifo.pin")
        os.mkfifo(pin, 0o600)
        b = Broker(TOKEN, name="t-fifo", pkcs11=self.pkcs11(pin=pin))
        self.refused(b, "kb.conf: pkcs11.pin_file: %s: not a regular file" % pin)

    def test_socket_directory_missing(self):
        sock = os.path.join(TOKEN.dir, "no-such-dir", "kb.sock")
        b = Broker(TOKEN, name="t-sockdir", socket='"%s"' % sock)
        self.refused(b, "socket %s: directory %s: No such file or directory"
                     % (sock, os.path.dirname(sock)))

    def test_good_config_passes(self):
        r = self.check(Broker(TOKEN, name="t-good"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("configuration OK", r.stdout)


class SocketOwnership(unittest.TestCase):
    """One broker per socket: a second one refuses to start, and a broker
    removes only the socket it made."""

    def test_second_broker_refuses_a_live_socket(self):
        a = Broker(TOKEN, name="own-a").start()
        try:
            b = Broker(TOKEN, name="own-b", socket='"%s"' % a.socket)
            b.start(wait=False)
            try:
                self.assertEqual(b.proc.wait(10), 1)
            finally:
                finish(b, None) if b.proc.poll() is None else None
            self.assertIn("another keybrokerd (pid %d) is serving %s; refusing to take "
                          "its socket" % (a.proc.pid, a.socket), b.read_log())
            c = a.connect()
            self.assertIn("key", c.ok("getKey", key="cmk"))
            c.close()
        finally:
            finish(a, None)

    def test_something_else_listening_is_not_replaced(self):
        path = os.path.join(TOKEN.dir, "other.sock")
        other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        other.bind(path)
        other.listen()
        try:
            b = Broker(TOKEN, name="own-c", socket='"%s"' % path)
            b.start(wait=False)
            self.assertEqual(b.proc.wait(10), 1)
            self.assertIn("%s is in use: something answers on it" % path, b.read_log())
            self.assertTrue(stat.S_ISSOCK(os.lstat(path).st_mode))
        finally:
            other.close()
            os.unlink(path)

    def test_stale_socket_is_replaced(self):
        b = Broker(TOKEN, name="own-d")
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(b.socket)
        stale.close()  # bound, never listening: what a crash leaves
        b.start()
        finish(b, None)
        self.assertFalse(os.path.exists(b.socket))

    def test_exit_removes_only_its_own_socket(self):
        a = Broker(TOKEN, name="own-e").start()
        os.unlink(a.socket)
        other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        other.bind(a.socket)
        other.listen()
        try:
            ino = os.lstat(a.socket).st_ino
            self.assertEqual(a.stop(), 0)
            self.assertEqual(os.lstat(a.socket).st_ino, ino)
        finally:
            other.close()
            os.unlink(a.socket)


USAGES = ("CKA_ENCRYPT", "CKA_DECRYPT", "CKA_SIGN", "CKA_SIGN_RECOVER", "CKA_VERIFY",
          "CKA_VERIFY_RECOVER", "CKA_WRAP", "CKA_UNWRAP", "CKA_DERIVE")


class KeyUsage(unittest.TestCase):
    """Every key the broker generates allows its one use and nothing else,
    read back with PyKCS11 (an independent PKCS#11 binding)."""

    def objects(self, token):
        import PyKCS11
        lib = PyKCS11.PyKCS11Lib()
        old = os.environ.get("SOFTHSM2_CONF")
        os.environ["SOFTHSM2_CONF"] = token.env["SOFTHSM2_CONF"]
        try:
            lib.load("/usr/lib/softhsm/libsofthsm2.so")
            slot = next(s for s in lib.getSlotList(tokenPresent=True)
                        if lib.getTokenInfo(s).label.strip() == "keybroker")
            session = lib.openSession(slot)
            session.login(token.pin)
            found = {}
            for cls, kind in ((PyKCS11.CKO_PRIVATE_KEY, "private"),
                              (PyKCS11.CKO_PUBLIC_KEY, "public")):
                for obj in session.findObjects([(PyKCS11.CKA_CLASS, cls)]):
                    names = ("CKA_LABEL", "CKA_MODIFIABLE") + USAGES
                    vals = session.getAttributeValue(
                        obj, [getattr(PyKCS11, n) for n in names])
                    attrs = dict(zip(names, vals))
                    label = attrs.pop("CKA_LABEL")
                    if not isinstance(label, str):
                        label = bytes(label).decode()
                    found[(label, kind)] = attrs
            session.logout()
            session.closeSession()
            return found
        finally:
            if old is None:
                del os.environ["SOFTHSM2_CONF"]
            else:
                os.environ["SOFTHSM2_CONF"] = old

    def test_generated_keys_allow_only_their_use(self):
        allowed = {("keybroker-issuer", "private"): {"CKA_SIGN"},
                   ("keybroker-issuer", "public"): {"CKA_VERIFY"},
                   ("cmk", "private"): {"CKA_DECRYPT"},
                   ("cmk", "public"): set()}
        found = self.objects(TOKEN)
        self.assertEqual(set(found), set(allowed))
        for obj, attrs in found.items():
            granted = {u for u in USAGES if attrs[u]}
            self.assertEqual(granted, allowed[obj], obj)
            self.assertFalse(attrs["CKA_MODIFIABLE"], obj)


class LibrarySecrets(unittest.TestCase):
    """libkeybroker leaves no copy of a DEK or a token in its heap once the
    caller has released them (tests/integration/heap_scan.c)."""

    @classmethod
    def setUpClass(cls):
        cls.broker = Broker(TOKEN, name="libsecrets").start()

    @classmethod
    def tearDownClass(cls):
        finish(cls.broker, None)

    @unittest.skipIf("-fsanitize" in os.environ.get("KB_CLIENT_CFLAGS", ""),
                     "the sanitizers' allocators keep freed memory in regions too large "
                     "to scan; the plain run checks this")
    def test_no_dek_or_token_left_in_heap(self):
        exe = os.path.join(TOKEN.dir, "heap_scan")
        subprocess.run(["cc", "-g", "-o", exe, os.path.join(ROOT, "tests/integration/heap_scan.c"),
                        "-I" + os.path.join(ROOT, "client"), "-I" + os.path.join(ROOT, "common"),
                        os.path.join(BUILD, "libkeybroker.a"), "-lpthread"]
                       + os.environ.get("KB_CLIENT_CFLAGS", "").split(), check=True)
        c = self.broker.connect()
        for _ in range(3):
            dek = os.urandom(32)
            wrapped = c.wrap("cmk", dek)["value"]
            r = subprocess.run([exe, self.broker.socket, "cmk", dek.hex(), wrapped],
                               capture_output=True, text=True)
            self.assertEqual((r.returncode, r.stdout), (0, "clean\n"), r.stderr)
        c.close()


class ToolOutput(unittest.TestCase):
    """Secrets the tools write go to 0600 files, never through a symlink,
    never over an existing file unless --force (then atomically)."""

    @classmethod
    def setUpClass(cls):
        cls.broker = Broker(TOKEN, name="tools").start()
        cls.dek = os.urandom(32)
        c = cls.broker.connect()
        cls.wrapped = c.wrap("cmk", cls.dek)["value"].encode()
        c.close()
        cls.dir = os.path.join(TOKEN.dir, "out")
        os.makedirs(cls.dir, exist_ok=True)

    @classmethod
    def tearDownClass(cls):
        finish(cls.broker, None)

    def unwrap(self, *args):
        old = os.umask(0o022)
        try:
            return subprocess.run([os.path.join(BUILD, "keybroker"), "--socket",
                                   self.broker.socket, "unwrap", "--key", "cmk", *args],
                                  input=self.wrapped, capture_output=True)
        finally:
            os.umask(old)

    def test_out_file_is_0600(self):
        path = os.path.join(self.dir, "dek1")
        r = self.unwrap("-o", path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(stat.S_IMODE(os.lstat(path).st_mode), 0o600)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), self.dek)

    def test_existing_file_is_not_replaced(self):
        path = os.path.join(self.dir, "dek2")
        with open(path, "w") as f:
            f.write("keep")
        r = self.unwrap("-o", path)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr.decode(), "keybroker: %s: exists (or is a symlink); "
                         "--force replaces it\n" % path)
        with open(path) as f:
            self.assertEqual(f.read(), "keep")

    def test_symlink_is_not_followed(self):
        target = os.path.join(self.dir, "victim")
        with open(target, "w") as f:
            f.write("keep")
        os.chmod(target, 0o644)
        link = os.path.join(self.dir, "dek3")
        os.symlink(target, link)
        self.assertEqual(self.unwrap("-o", link).returncode, 1)
        # --force replaces the link itself, never writes through it.
        r = self.unwrap("-o", link, "--force")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertFalse(os.path.islink(link))
        self.assertEqual(stat.S_IMODE(os.lstat(link).st_mode), 0o600)
        with open(link, "rb") as f:
            self.assertEqual(f.read(), self.dek)
        with open(target) as f:
            self.assertEqual(f.read(), "keep")
        self.assertEqual(sorted(n for n in os.listdir(self.dir) if n.startswith("dek3")),
                         ["dek3"])

    def test_identity_token_out_file(self):
        path = os.path.join(self.dir, "admin.jwt")
        r = TOKEN.ctl("-c", self.broker.config, "identity", "token", "it-admin", "-o", path,
                      check=False)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "")
        self.assertEqual(stat.S_IMODE(os.lstat(path).st_mode), 0o600)
        with open(path) as f:
            self.assertEqual(f.read().count("."), 2)
        r = TOKEN.ctl("-c", self.broker.config, "identity", "token", "it-admin", "-o", path,
                      check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("exists (or is a symlink); --force replaces it", r.stderr)


class ToolUsage(unittest.TestCase):
    """Usage errors exit 2 and name the argument; every tool has --version."""

    def run_tool(self, tool, *args):
        return subprocess.run([os.path.join(BUILD, tool), *args], capture_output=True,
                              text=True)

    def test_version(self):
        for tool in ("keybroker", "keybrokerd", "keybrokerctl"):
            r = self.run_tool(tool, "--version")
            self.assertEqual(r.returncode, 0)
            self.assertRegex(r.stdout, r"^%s \d+\.\d+\.\d+\n$" % tool)

    def test_keybroker_invalid_arguments(self):
        cases = [
            (("get", "--key", "a b"), "--key 'a b': not a key name"),
            (("get", "--key", "k", "--key-version", "12"),
             "--key-version '12': not 32 lowercase hex digits"),
            (("wrap", "--key", "k", "--alg", "RSA-OAEP-512"),
             "--alg 'RSA-OAEP-512': not RSA-OAEP, RSA-OAEP-256 or RSA1_5"),
            (("frob", "--key", "k"), "unknown command 'frob': get, wrap or unwrap"),
            (("get",), "--key NAME or --key KID is required"),
            (("--inform", "hex", "get", "--key", "k"), "--inform: 'hex' is not raw or base64url"),
        ]
        for args, want in cases:
            r = self.run_tool("keybroker", "--socket", "/nonexistent", *args)
            self.assertEqual(r.returncode, 2, args)
            self.assertIn(want, r.stderr, args)

    def test_keybrokerctl_invalid_arguments(self):
        b = Broker(TOKEN, name="usage")
        for args, want in ((("identity", "token", "ghost"), "no identity 'ghost'"),
                           (("identity", "token", "it-admin", "--ttl", "99999999999999999999d"),
                            "--ttl '99999999999999999999d': must be 60 s to"),
                           (("identity", "token", "it-admin", "--ttl", "106751991167301d"),
                            "--ttl '106751991167301d': must be 60 s to"),
                           (("identity", "token", "it-admin", "--ttl", "10x"), "--ttl '10x'")):
            r = TOKEN.ctl("-c", b.config, *args, check=False)
            self.assertEqual(r.returncode, 2, args)
            self.assertIn(want, r.stderr, args)


class SignalBroker(unittest.TestCase):
    """keybrokerctl reload/revoke signal only a listener that owns its
    socket in a directory nobody else could have put it in."""

    @ROOT_ONLY
    def test_planted_listener_is_not_signalled(self):
        d = os.path.join(TOKEN.dir, "shared")
        os.makedirs(d, exist_ok=True)
        os.chmod(d, 0o1777)
        sock = os.path.join(d, "kb.sock")
        b = Broker(TOKEN, name="planted", socket='"%s"' % sock)
        r, w = os.pipe()
        opened = OpenDirs(TOKEN.dir)
        opened.__enter__()  # before the fork: the child must reach d
        pid = os.fork()
        if pid == 0:  # uid 65534 plants a listener at the broker's path
            os.close(r)
            try:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.bind(sock)
                s.listen()
                os.write(w, b"x")
                time.sleep(30)
            finally:
                os._exit(0)
        os.close(w)
        try:
            self.assertEqual(os.read(r, 1), b"x")
            out = TOKEN.ctl("-c", b.config, "reload", check=False)
            opened.__exit__(None, None, None)
            self.assertEqual(out.returncode, 1)
            self.assertIn("cannot signal the broker on %s: its directory is writable by "
                          "group or others (mode 1777)" % sock, out.stderr)
            # Still alive: no SIGHUP reached it.
            self.assertEqual(os.waitpid(pid, os.WNOHANG), (0, 0))
        finally:
            opened.__exit__(None, None, None)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(r)


class NoTokenHint(unittest.TestCase):
    def test_hint_names_the_module_configuration_first(self):
        env = dict(TOKEN.env)
        del env["SOFTHSM2_CONF"]
        r = subprocess.run([os.path.join(BUILD, "keybrokerctl"), "-c",
                            os.path.join(TOKEN.dir, "keybroker.conf"), "list-keys"],
                           env=env, capture_output=True, text=True)
        self.assertEqual(r.returncode, 1)
        self.assertIn("no initialised token matches 'pkcs11:token=keybroker'; check "
                      "SoftHSMv2's configuration: SOFTHSM2_CONF is not set, so it reads "
                      "/etc/softhsm/softhsm2.conf and its token directory; only for a new "
                      "token, keybrokerctl init-token makes one there", r.stderr)
        r = TOKEN.ctl("-c", os.path.join(TOKEN.dir, "keybroker.conf"), "list-keys")
        self.assertEqual(r.returncode, 0)


class PlantedObjects(unittest.TestCase):
    """Anyone holding the user PIN can write objects; the catalogue
    refuses key versions that were not made to stay in the token, whose
    public object is another key, and says so in the log."""

    @classmethod
    def setUpClass(cls):
        import PyKCS11
        cls.P = PyKCS11
        cls.token = Token([("cmk", 2048), ("other", 2048)])
        cls.real = cls.token.versions["cmk"][0]
        lib, s = pkcs11_session(cls.token)
        try:
            # 1. An extractable key pair, with metadata: a version "leaky".
            cls.plant_pair(s, "leaky", extractable=True)
            # 2. A known key imported (CKA_LOCAL false) as the newest cmk.
            cls.import_known(s, "cmk")
            # 3. A good private key whose public object is another key's.
            cls.swap_public(s, "swapped")
            s.logout()
            # 4. Without the PIN: a public key pair and public metadata.
            cls.public_cmk = cls.plant_public(s, "cmk")
        finally:
            s.closeSession()
            del lib
        cls.broker = Broker(cls.token, name="planted").start()

    @classmethod
    def tearDownClass(cls):
        finish(cls.broker, cls.token)

    @classmethod
    def metadata(cls, s, name, vid, created_us):
        P = cls.P
        meta = json.dumps({"name": name, "version": vid, "created": created_us // 10**6,
                           "createdUs": created_us, "updated": created_us // 10**6,
                           "enabled": True, "nbf": None, "exp": None,
                           "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90})
        s.createObject([(P.CKA_CLASS, P.CKO_DATA), (P.CKA_TOKEN, True), (P.CKA_PRIVATE, True),
                        (P.CKA_APPLICATION, "keybroker:key-version"), (P.CKA_LABEL, name),
                        (P.CKA_VALUE, meta.encode())])

    @classmethod
    def generate(cls, s, name, vid, extractable=False):
        P = cls.P
        pub = [(P.CKA_TOKEN, True), (P.CKA_MODULUS_BITS, 2048),
               (P.CKA_PUBLIC_EXPONENT, (1, 0, 1)), (P.CKA_LABEL, name),
               (P.CKA_ID, bytes.fromhex(vid))]
        priv = [(P.CKA_TOKEN, True), (P.CKA_PRIVATE, True), (P.CKA_SENSITIVE, not extractable),
                (P.CKA_EXTRACTABLE, extractable), (P.CKA_DECRYPT, True), (P.CKA_LABEL, name),
                (P.CKA_ID, bytes.fromhex(vid))]
        return s.generateKeyPair(pub, priv, mecha=P.MechanismRSAGENERATEKEYPAIR)

    @classmethod
    def plant_pair(cls, s, name, extractable):
        vid = os.urandom(16).hex()
        cls.generate(s, name, vid, extractable=extractable)
        cls.metadata(s, name, vid, int(time.time() * 10**6))

    @classmethod
    def import_known(cls, s, name):
        from cryptography.hazmat.primitives.asymmetric import rsa
        P = cls.P
        k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        n = k.private_numbers()

        def b(x):
            return x.to_bytes((x.bit_length() + 7) // 8, "big")
        vid = os.urandom(16).hex()
        cls.planted_cmk = vid
        common = [(P.CKA_TOKEN, True), (P.CKA_KEY_TYPE, P.CKK_RSA), (P.CKA_LABEL, name),
                  (P.CKA_ID, bytes.fromhex(vid)), (P.CKA_MODULUS, b(n.public_numbers.n)),
                  (P.CKA_PUBLIC_EXPONENT, b(n.public_numbers.e))]
        s.createObject([(P.CKA_CLASS, P.CKO_PRIVATE_KEY), (P.CKA_PRIVATE, True),
                        (P.CKA_SENSITIVE, True), (P.CKA_EXTRACTABLE, False),
                        (P.CKA_DECRYPT, True), (P.CKA_PRIVATE_EXPONENT, b(n.d)),
                        (P.CKA_PRIME_1, b(n.p)), (P.CKA_PRIME_2, b(n.q)),
                        (P.CKA_EXPONENT_1, b(n.dmp1)), (P.CKA_EXPONENT_2, b(n.dmq1)),
                        (P.CKA_COEFFICIENT, b(n.iqmp))] + common)
        s.createObject([(P.CKA_CLASS, P.CKO_PUBLIC_KEY), (P.CKA_ENCRYPT, True)] + common)
        # Claims to be the newest version, far in the future.
        cls.metadata(s, name, vid, int((time.time() + 10**6) * 10**6))

    @classmethod
    def plant_public(cls, s, name):
        P = cls.P
        vid = os.urandom(16).hex()
        pub = [(P.CKA_TOKEN, True), (P.CKA_PRIVATE, False), (P.CKA_MODULUS_BITS, 2048),
               (P.CKA_PUBLIC_EXPONENT, (1, 0, 1)), (P.CKA_LABEL, name),
               (P.CKA_ID, bytes.fromhex(vid))]
        priv = [(P.CKA_TOKEN, True), (P.CKA_PRIVATE, False), (P.CKA_SENSITIVE, True),
                (P.CKA_EXTRACTABLE, False), (P.CKA_DECRYPT, True), (P.CKA_LABEL, name),
                (P.CKA_ID, bytes.fromhex(vid))]
        s.generateKeyPair(pub, priv, mecha=P.MechanismRSAGENERATEKEYPAIR)
        meta = json.dumps({"name": name, "version": vid, "created": 2 * 10**9,
                           "createdUs": 2 * 10**15, "updated": 2 * 10**9,
                           "enabled": True})
        s.createObject([(P.CKA_CLASS, P.CKO_DATA), (P.CKA_TOKEN, True),
                        (P.CKA_PRIVATE, False),
                        (P.CKA_APPLICATION, "keybroker:key-version"), (P.CKA_LABEL, name),
                        (P.CKA_VALUE, meta.encode())])
        return vid

    @classmethod
    def swap_public(cls, s, name):
        P = cls.P
        vid, other = os.urandom(16).hex(), os.urandom(16).hex()
        pub, _ = cls.generate(s, name, vid)
        opub, _ = cls.generate(s, "decoy", other)
        mod, exp = s.getAttributeValue(opub, [P.CKA_MODULUS, P.CKA_PUBLIC_EXPONENT])
        s.destroyObject(pub)
        s.destroyObject(opub)
        s.createObject([(P.CKA_CLASS, P.CKO_PUBLIC_KEY), (P.CKA_KEY_TYPE, P.CKK_RSA),
                        (P.CKA_TOKEN, True), (P.CKA_LABEL, name),
                        (P.CKA_ID, bytes.fromhex(vid)), (P.CKA_MODULUS, bytes(mod)),
                        (P.CKA_PUBLIC_EXPONENT, bytes(exp))])
        cls.metadata(s, name, vid, int(time.time() * 10**6))

    def test_extractable_version_is_refused(self):
        c = self.broker.connect()
        self.assertEqual(c.request("getKey", key="leaky")["error"]["code"], "KeyNotFound")
        c.close()
        self.assertRegex(self.broker.read_log(),
                         r"key leaky version [0-9a-f]{32}: the private key is not "
                         r"sensitive; refused")

    def test_imported_key_is_not_the_current_version(self):
        c = self.broker.connect()
        kid = c.ok("getKey", key="cmk")["key"]["kid"]
        self.assertTrue(kid.endswith("/" + self.real), kid)
        r = c.request("getKey", key="cmk", version=self.planted_cmk)
        self.assertEqual(r["error"]["code"], "KeyNotFound")
        c.close()
        self.assertIn("key cmk version %s: the private key was not generated in the "
                      "token (CKA_LOCAL); refused" % self.planted_cmk, self.broker.read_log())

    def test_public_objects_made_without_the_pin_are_refused(self):
        c = self.broker.connect()
        kid = c.ok("getKey", key="cmk")["key"]["kid"]
        self.assertTrue(kid.endswith("/" + self.real), kid)
        self.assertEqual(c.request("getKey", key="cmk", version=self.public_cmk)["error"]["code"],
                         "KeyNotFound")
        c.close()
        self.assertIn("key cmk version %s: the private key is a public object (made "
                      "without the PIN?); refused" % self.public_cmk, self.broker.read_log())

    def test_swapped_public_key_is_refused(self):
        c = self.broker.connect()
        self.assertEqual(c.request("wrapKey", key="swapped", value="AAAA")["error"]["code"],
                         "KeyNotFound")
        c.close()
        self.assertRegex(self.broker.read_log(),
                         r"key swapped version [0-9a-f]{32}: the public key object is not "
                         r"the private key's; refused")

    def test_findings_are_logged_once(self):
        c = self.broker.connect()
        for _ in range(2):  # each miss may re-read the catalogue
            c.request("getKey", key="absent")
            time.sleep(2.1)
        c.close()
        self.assertEqual(self.broker.read_log().count("leaky version"), 1)


P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


class TokenMalleability(unittest.TestCase):
    """Each token of this broker has one spelling: its ES256 signatures
    are low-s, and the other spelling (r, n - s) is refused."""

    @classmethod
    def setUpClass(cls):
        cls.broker = Broker(TOKEN, name="lows").start()

    @classmethod
    def tearDownClass(cls):
        finish(cls.broker, None)

    def test_tokens_are_low_s_and_high_s_is_refused(self):
        c = Client(self.broker.socket, authenticate=False)
        for _ in range(16):
            tok = c.ok("getToken")["access_token"]
            head, sig = tok.rsplit(".", 1)
            raw = b64d(sig)
            s = int.from_bytes(raw[32:], "big")
            self.assertLessEqual(s, P256_N // 2)
        flipped = "%s.%s" % (head, b64e(raw[:32] + (P256_N - s).to_bytes(32, "big")))
        r = c.request("authenticate", token=flipped)
        self.assertEqual(r["error"], {
            "code": "Unauthorized",
            "message": "token signature is not in low-s form, as issuer keybroker://it "
                       "makes them"})
        self.assertIn("result", c.request("authenticate", token=tok))
        c.close()


class Rsa15ImplicitRejection(unittest.TestCase):
    """With RSA1_5 enabled, a ciphertext whose padding is wrong unwraps to
    a synthetic value (the same every time, another for another
    ciphertext), never to an error a Bleichenbacher attack could read."""

    @classmethod
    def setUpClass(cls):
        cls.broker = Broker(TOKEN, name="rsa15ir", algorithms="{ rsa1_5 = true; }").start()

    @classmethod
    def tearDownClass(cls):
        finish(cls.broker, None)

    def test_bad_padding_gives_a_synthetic_value(self):
        c = self.broker.connect()
        jwk = c.ok("getKey", key="cmk")["key"]
        n, e = (int.from_bytes(b64d(jwk[x]), "big") for x in ("n", "e"))
        dek = os.urandom(32)
        good = c.wrap("cmk", dek, alg="RSA1_5")["value"]
        self.assertEqual(b64d(c.ok("unwrapKey", key="cmk", alg="RSA1_5",
                                   value=good)["value"]), dek)

        def bad(first_bytes):
            em = first_bytes + os.urandom(256 - len(first_bytes))
            return b64e(pow(int.from_bytes(em, "big"), e, n).to_bytes(256, "big"))
        outs = []
        for ct in (bad(b"\x00\x01"), bad(b"\x00\x02" + b"\x00"), bad(b"\x01\x02")):
            first = c.request("unwrapKey", key="cmk", alg="RSA1_5", value=ct)
            self.assertIn("result", first, first)
            again = c.ok("unwrapKey", key="cmk", alg="RSA1_5", value=ct)
            self.assertEqual(first["result"]["value"], again["value"])
            self.assertLessEqual(len(b64d(again["value"])), 256 - 11)
            outs.append(again["value"])
        self.assertEqual(len(set(outs)), 3)
        self.assertEqual(c.ok("getKey", key="cmk")["attributes"]["unwrapPaths"]["RSA1_5"],
                         "token-raw-rsa+pkcs1-implicit-rejection")
        c.close()


class IssuerSwap(unittest.TestCase):
    """The token-signing key's public object can be replaced without the
    PIN; the broker believes it only once the pair is shown to match."""

    def test_swapped_issuer_public_object_is_refused(self):
        import PyKCS11 as P
        token = Token([("cmk", 2048)])
        try:
            lib, s = pkcs11_session(token)
            try:
                pub = s.findObjects([(P.CKA_CLASS, P.CKO_PUBLIC_KEY),
                                     (P.CKA_LABEL, "keybroker-issuer")])[0]
                params, kid = s.getAttributeValue(pub, [P.CKA_EC_PARAMS, P.CKA_ID])
                other, _ = s.generateKeyPair(
                    [(P.CKA_TOKEN, False), (P.CKA_EC_PARAMS, bytes(params))],
                    [(P.CKA_TOKEN, False), (P.CKA_SIGN, True)],
                    mecha=P.MechanismECGENERATEKEYPAIR)
                point = s.getAttributeValue(other, [P.CKA_EC_POINT])[0]
                s.destroyObject(pub)
                s.createObject([(P.CKA_CLASS, P.CKO_PUBLIC_KEY), (P.CKA_KEY_TYPE, P.CKK_EC),
                                (P.CKA_TOKEN, True), (P.CKA_LABEL, "keybroker-issuer"),
                                (P.CKA_ID, bytes(kid)), (P.CKA_EC_PARAMS, bytes(params)),
                                (P.CKA_EC_POINT, bytes(point)), (P.CKA_VERIFY, True)])
            finally:
                s.logout()
                s.closeSession()
            b = Broker(token, name="swap")
            b.start(wait=False)
            self.assertEqual(b.proc.wait(30), 1)
            log = b.read_log()
            self.assertIn("the token-signing key's public object does not verify what the "
                          "private key signs; refused", log)
            self.assertIn("the token already has objects labelled 'keybroker-issuer'", log)
        finally:
            token.remove()


class Rsa15Secret(unittest.TestCase):
    """The RSA1_5 secret is made by the broker, once; never by the tools,
    and never a second one beside one it refuses."""

    def count(self, token):
        import PyKCS11 as P
        lib, s = pkcs11_session(token)
        try:
            return len(s.findObjects([(P.CKA_LABEL, "keybroker-rsa1_5-kdk")]))
        finally:
            s.logout()
            s.closeSession()
            del lib

    def test_made_once_by_the_broker(self):
        token = Token([("cmk", 2048)])
        try:
            b = Broker(token, name="kdk", algorithms="{ rsa1_5 = true; }")
            self.assertEqual(token.ctl("-c", b.config, "list-keys").returncode, 0)
            self.assertEqual(self.count(token), 0)
            b.start()
            finish(b, None)
            b.start()
            finish(b, None)
            self.assertEqual(self.count(token), 1)
        finally:
            token.remove()


class SignalRecycled(unittest.TestCase):
    """Without a pidfd of the listener, keybrokerctl signals a pid only on
    kernels that have no SO_PEERPIDFD at all."""

    def reload(self, b, err):
        env = dict(TOKEN.env, **shim_env(err, scope="all"))
        return subprocess.run([os.path.join(BUILD, "keybrokerctl"), "-c", b.config, "reload"],
                              env=env, capture_output=True, text=True)

    def test_einval_is_not_answered_with_a_pid(self):
        b = Broker(TOKEN, name="sigrec").start()
        try:
            r = self.reload(b, "EINVAL")
            self.assertEqual(r.returncode, 1)
            self.assertIn("cannot name the listening process (SO_PEERPIDFD: Invalid "
                          "argument); not signalling a pid that may have been reused",
                          r.stderr)
            r = self.reload(b, "ENOPROTOOPT")
            self.assertEqual(r.returncode, 0, r.stderr)
            deadline = time.time() + 10
            while "SIGHUP" not in b.read_log() and time.time() < deadline:
                time.sleep(0.1)
            self.assertEqual(b.read_log().count("SIGHUP: reloading"), 1)
        finally:
            finish(b, None)


class SocketDirectory(unittest.TestCase):
    def test_open_directory_without_sticky_bit_is_refused(self):
        d = os.path.join(TOKEN.dir, "open-dir")
        os.makedirs(d, exist_ok=True)
        os.chmod(d, 0o777)
        b = Broker(TOKEN, name="opendir", socket='"%s/kb.sock"' % d)
        b.start(wait=False)
        self.assertEqual(b.proc.wait(30), 1)
        self.assertIn("socket directory %s is writable by group or others without the "
                      "sticky bit (mode 0777)" % d, b.read_log())


class MaliciousBroker(unittest.TestCase):
    """What a process squatting on the socket sends cannot pass for a
    broker's answer."""

    def test_two_error_members_are_not_a_success(self):
        tok = os.path.join(TOKEN.dir, "t.jwt")
        with open(tok, "w") as f:
            f.write("a.b.c\n")
        path = os.path.join(TOKEN.dir, "fake.sock")
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(path)
        srv.listen(1)

        def answer():
            c, _ = srv.accept()
            f = c.makefile("rb")
            f.readline()
            c.sendall(b'{"id":1,"error":{"code":"X","message":"a"},'
                      b'"error":{"code":"Y","message":"b"},"result":{"identity":"x"}}\n')
            c.close()
        t = threading.Thread(target=answer)
        t.start()
        try:
            r = subprocess.run([os.path.join(BUILD, "keybroker"), "--socket", path,
                                "--timeout", "5", "--token-file", tok, "get", "--key", "cmk"],
                               capture_output=True, text=True)
        finally:
            t.join()
            srv.close()
            os.unlink(path)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("reply is not a protocol v1 response to this request", r.stderr)
