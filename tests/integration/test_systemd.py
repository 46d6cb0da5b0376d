# SPDX-License-Identifier: MIT
"""keybrokerd under a service manager, without one running: socket
activation (the socket systemd passes, taken as it is), sd_notify
(READY, RELOADING, STOPPING, STATUS on $NOTIFY_SOCKET) and the watchdog,
the units make install puts in place (systemd-analyze verify, the
sandbox's exposure, sysusers and tmpfiles), the drop to the broker's own
user, the PIN as a credential, and unit identities in both cgroup
layouts."""

import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from harness import (BUILD, FAULT_MODULE, ROOT, Broker, Cgroup, Client, Token, b64d,
                     finish, run_as)
from test_faults import set_rules

TOKEN = None


def setUpModule():
    global TOKEN
    TOKEN = Token([("cmk", 2048)])


def tearDownModule():
    if TOKEN:
        TOKEN.remove()


class SocketActivation(unittest.TestCase):
    def test_serves_on_the_socket_it_is_passed_from_the_first_request(self):
        b = Broker(TOKEN, name="activated", audit='{ forward = "none"; }')
        # The socket exists before the broker does: a client may connect
        # and send at once, and is answered once the broker is up.
        b.start(wait=False, prefix=("systemd-socket-activate", "-E", "SOFTHSM2_CONF", "-l", b.socket))
        try:
            deadline = time.time() + 10
            while not os.path.exists(b.socket) and time.time() < deadline:
                time.sleep(0.01)
            c = Client(b.socket, timeout=60, authenticate=False)
            token = c.ok("getToken")["access_token"]
            c.ok("authenticate", token=token)
            self.assertEqual(c.ok("getKey", key="cmk")["key"]["kid"].split("/")[-2], "cmk")
            c.close()
            self.assertIn("socket activation: serving on the socket systemd passed",
                          b.read_log())
        finally:
            status = b.stop()
        self.assertEqual(status, 0, b.read_log()[-2000:])
        # systemd's socket: the broker leaves it for systemd to remove.
        self.assertTrue(os.path.exists(b.socket))
        self.assertFalse(os.path.exists(b.socket + ".lock"))

    def test_a_socket_bound_elsewhere_is_refused(self):
        b = Broker(TOKEN, name="elsewhere-socket", audit='{ forward = "none"; }')
        other = os.path.join(b.dir, "other.sock")
        b.start(wait=False, prefix=("systemd-socket-activate", "-E", "SOFTHSM2_CONF", "-l", other))
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                c.connect(other)
                break
            except OSError:
                time.sleep(0.01)
        self.assertEqual(b.proc.wait(30), 1)
        c.close()
        self.assertIn("socket activation: systemd passed 1 sockets, and needs to pass "
                      "one, listening, a Unix stream socket bound to %s" % b.socket,
                      b.read_log())


class Notify(unittest.TestCase):
    def test_ready_reloading_stopping(self):
        path = os.path.join(TOKEN.dir, "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(30)
        b = Broker(TOKEN, name="notified", audit='{ forward = "none"; }')
        try:
            b.start(env={"NOTIFY_SOCKET": path})
            ready = sock.recv(4096).decode()
            self.assertIn("READY=1", ready)
            self.assertIn("STATUS=serving on %s, token keybroker" % b.socket, ready)
            b.reload()
            reloading = sock.recv(4096).decode()
            self.assertIn("RELOADING=1", reloading)
            self.assertRegex(reloading, r"MONOTONIC_USEC=\d+")
            usec = int(reloading.split("MONOTONIC_USEC=")[1].split()[0])
            now = time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6
            self.assertLess(abs(now - usec), 30e6)
            again = sock.recv(4096).decode()
            self.assertIn("READY=1", again)
            self.assertIn("STATUS=reloaded", again)
            b.proc.send_signal(signal.SIGTERM)
            stopping = sock.recv(4096).decode()
            self.assertIn("STOPPING=1", stopping)
            self.assertEqual(b.proc.wait(30), 0)
        finally:
            finish(b, None)
            sock.close()


ROOT_ONLY = unittest.skipUnless(os.geteuid() == 0, "needs root")


def notify_socket(dirname):
    """A NOTIFY_SOCKET to listen on, and a list its datagrams land in, as
    (monotonic time, text), from a thread."""
    path = os.path.join(dirname, "notify-%d.sock" % len(os.listdir(dirname)))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.2)
    got = []
    stop = threading.Event()

    def listen():
        while not stop.is_set():
            try:
                got.append((time.monotonic(), sock.recv(4096).decode()))
            except socket.timeout:
                pass
    t = threading.Thread(target=listen, daemon=True)
    t.start()

    def close():
        stop.set()
        t.join()
        sock.close()
    return path, got, close


def wait_for(cond, timeout=30, what="condition"):
    deadline = time.time() + timeout
    while not cond():
        if time.time() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.05)


class Watchdog(unittest.TestCase):
    """WatchdogSec=: WATCHDOG=1 at half the interval while requests make
    progress; none while a worker is stuck in the token."""

    def test_pings_stop_while_a_worker_hangs_in_the_token(self):
        token = Token([("cmk", 2048)], module=FAULT_MODULE)
        rules = os.path.join(token.dir, "fault-rules")
        set_rules(rules)
        path, got, close = notify_socket(token.dir)
        b = Broker(token, name="watched", audit='{ forward = "none"; }',
                   env={"KB_FAULT_FILE": rules})
        stuck = None
        try:
            b.start(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"})
            self.assertIn("watchdog: pinging every 500 ms", b.read_log())

            def pings(since=0.0):
                return [t for t, m in got if "WATCHDOG=1" in m and t >= since]
            wait_for(lambda: len(pings()) >= 5, what="5 pings")
            # At half the interval (the median gap, against a noisy host).
            gaps = sorted(b2 - a2 for a2, b2 in zip(pings(), pings()[1:]))
            self.assertTrue(0.3 <= gaps[len(gaps) // 2] <= 0.9, gaps)
            # STATUS= says what the broker serves.
            wait_for(lambda: any("STATUS=serving 1 key (1 version), token keybroker"
                                 in m for _, m in got), what="a status line")
            c = b.connect()
            dek = os.urandom(32)
            wrapped = c.wrap("cmk", dek)["value"]
            c.close()
            # A worker hangs in C_Decrypt: the pings stop.
            set_rules(rules, "C_Decrypt hang")
            stuck = b.connect()
            stuck.send_raw(b'{"id":1,"op":"unwrapKey","key":"cmk","value":"%s"}\n'
                           % wrapped.encode())
            wait_for(lambda: "has been in one call for" in b.read_log(), what="the hold")
            held = time.monotonic()
            self.assertRegex(b.read_log(), r"watchdog: worker \d+ has been in one call "
                             r"for \d+ ms; no more pings")
            time.sleep(2)
            self.assertEqual(pings(held + 0.05), [])
            # Other requests are still served meanwhile: the loop turns.
            c = b.connect()
            c.ok("getKey", key="cmk")
            c.close()
            # The call returns: pings again.
            set_rules(rules)
            self.assertEqual(b64d(stuck.read_line()["result"]["value"]), dek)
            back = time.monotonic()
            wait_for(lambda: len(pings(back)) >= 2, what="pings again")
            self.assertIn("watchdog: progress again", b.read_log())
            # The token goes away: the status says so, and the pings go
            # on (requests are answered, with HsmUnavailable).
            set_rules(rules, "C_Decrypt rv=CKR_TOKEN_NOT_PRESENT",
                      "C_OpenSession rv=CKR_TOKEN_NOT_PRESENT",
                      "C_GetTokenInfo rv=CKR_TOKEN_NOT_PRESENT")
            c = b.connect()
            r = c.request("unwrapKey", key="cmk", value=wrapped)
            self.assertEqual(r["error"]["code"], "HsmUnavailable", r)
            c.close()
            lost = time.monotonic()
            wait_for(lambda: any("STATUS=token keybroker unavailable, retrying" in m
                                 for _, m in got), what="the status of a lost token")
            wait_for(lambda: len(pings(lost)) >= 2, what="pings while the token is away")
        finally:
            set_rules(rules)
            if stuck:
                stuck.close()
            close()
            finish(b, token)

    def test_admin_writes_waiting_in_turn_are_not_a_hang(self):
        """Key generations are serialised: one that waits for the others
        is not stuck, and the pings go on while each makes progress (each
        generation takes 4 s here, under the 6 s a call may take)."""
        token = Token([("cmk", 2048)], module=FAULT_MODULE)
        rules = os.path.join(token.dir, "fault-rules")
        set_rules(rules, "C_GenerateKeyPair sleep=4000")
        path, got, close = notify_socket(token.dir)
        b = Broker(token, name="queued", audit='{ forward = "none"; }',
                   env={"KB_FAULT_FILE": rules})
        try:
            # Pings every 6 s; a call over 6 s would stop them. The fourth
            # create waits about 13 s for the others: a check falls in
            # its wait with 6 s or more of it behind.
            b.start(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "12000000"})
            errors = []

            def create(i):
                try:
                    c = b.connect()
                    c.ok("createKey", key="queued-%d" % i, kty="RSA-HSM", key_size=2048)
                    c.close()
                except Exception as e:  # noqa: BLE001 - reported below
                    errors.append(e)
            threads = [threading.Thread(target=create, args=(i,)) for i in range(4)]
            started = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            self.assertEqual(errors, [])
            self.assertGreater(time.monotonic() - started, 16)
            self.assertNotIn("has been in one call", b.read_log())
            self.assertTrue([t for t, m in got if "WATCHDOG=1" in m and t > started + 6])
        finally:
            set_rules(rules)
            close()
            finish(b, token)

    def test_no_watchdog_no_pings(self):
        token = Token([("cmk", 2048)])
        path, got, close = notify_socket(token.dir)
        b = Broker(token, name="unwatched", audit='{ forward = "none"; }')
        try:
            b.start(env={"NOTIFY_SOCKET": path})
            wait_for(lambda: any("READY=1" in m for _, m in got), what="READY=1")
            time.sleep(1.5)
            self.assertFalse(any("WATCHDOG=1" in m for _, m in got), got)
            self.assertNotIn("watchdog", b.read_log())
        finally:
            close()
            finish(b, token)


def install(prefix):
    """make install of this build into prefix (as PREFIX, so the unit's
    ExecStart names the binary there); returns the unit directory."""
    units = os.path.join(prefix, "lib/systemd/system")
    subprocess.run(["make", "-s", "-C", ROOT, "B=" + BUILD, "install",
                    "PREFIX=" + os.path.join(prefix, "usr"),
                    "SYSTEMDUNITDIR=" + units,
                    "SYSUSERSDIR=" + os.path.join(prefix, "usr/lib/sysusers.d"),
                    "TMPFILESDIR=" + os.path.join(prefix, "usr/lib/tmpfiles.d")],
                   check=True, capture_output=True)
    return units


# The exposure systemd-analyze gives keybrokerd.service (0 best, 10 worst):
# what the unit reaches now; loosening the sandbox fails this test.
SECURITY_EXPOSURE_MAX = 0.6


class Units(unittest.TestCase):
    """The units, users and directories make install puts in place."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="kb-units-")
        cls.units = install(cls.dir)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def test_installed_files(self):
        files = {os.path.relpath(os.path.join(d, f), self.dir)
                 for d, _, fs in os.walk(self.dir) for f in fs}
        for want in ("lib/systemd/system/keybrokerd.service",
                     "lib/systemd/system/keybrokerd.socket",
                     "usr/lib/sysusers.d/keybroker.conf",
                     "usr/lib/tmpfiles.d/keybroker.conf",
                     "usr/sbin/keybrokerd", "usr/sbin/keybrokerctl",
                     "usr/bin/keybroker", "usr/bin/keybroker-audit",
                     "usr/share/man/man8/keybrokerd.8", "usr/share/man/man8/keybrokerctl.8",
                     "usr/share/man/man1/keybroker.1", "usr/share/man/man1/keybroker-audit.1",
                     "usr/share/man/man5/keybroker.conf.5",
                     "usr/share/man/man3/libkeybroker.3",
                     "usr/share/keybroker/examples/keybroker.conf",
                     "usr/share/keybroker/examples/softhsm2.conf",
                     "usr/share/keybroker/examples/device-hsm.conf",
                     "usr/share/keybroker/examples/network-hsm.conf"):
            self.assertIn(want, files)
        with open(os.path.join(self.units, "keybrokerd.service")) as f:
            self.assertIn("ExecStart=%s/usr/sbin/keybrokerd -c /etc/keybroker/keybroker.conf"
                          % self.dir, f.read())

    def test_man_pages_render_without_warnings(self):
        """Each page, as installed: mandoc's lint and groff's warnings say
        nothing, and man renders it."""
        pages = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(self.dir, "usr/share/man"))
                 for f in fs]
        self.assertEqual(len(pages), 6, pages)
        for page in pages:
            for cmd in (["mandoc", "-Tlint", "-Wwarning", page],
                        ["groff", "-ww", "-mandoc", "-z", page]):
                r = subprocess.run(cmd, capture_output=True, text=True)
                self.assertEqual((r.returncode, r.stdout + r.stderr), (0, ""), cmd)
            r = subprocess.run(["man", "-l", page], capture_output=True, text=True,
                               env=dict(os.environ, MANWIDTH="80"))
            self.assertEqual((r.returncode, r.stderr), (0, ""), page)
            self.assertIn("NAME", r.stdout)

    def test_systemd_analyze_verify(self):
        r = subprocess.run(["systemd-analyze", "verify",
                            os.path.join(self.units, "keybrokerd.service"),
                            os.path.join(self.units, "keybrokerd.socket")],
                           env=dict(os.environ, MANPATH=os.path.join(self.dir, "usr/share/man")),
                           capture_output=True, text=True)
        self.assertEqual((r.returncode, r.stdout + r.stderr), (0, ""))

    def test_security_exposure(self):
        r = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager",
                            os.path.join(self.units, "keybrokerd.service")],
                           capture_output=True, text=True)
        m = re.search(r"Overall exposure level for keybrokerd.service: ([0-9.]+)", r.stdout)
        self.assertIsNotNone(m, r.stdout + r.stderr)
        print("\nsystemd-analyze security: exposure %s" % m.group(1), file=sys.stderr)
        self.assertLessEqual(float(m.group(1)), SECURITY_EXPOSURE_MAX, r.stdout)

    def test_drop_ins_verify(self):
        """The examples are valid drop-ins for the service."""
        for name in ("device-hsm.conf", "network-hsm.conf"):
            unit = os.path.join(self.dir, "dropin", "keybrokerd.service")
            os.makedirs(unit + ".d", exist_ok=True)
            shutil.copy(os.path.join(self.units, "keybrokerd.service"), unit)
            shutil.copy(os.path.join(self.units, "keybrokerd.socket"),
                        os.path.dirname(unit))
            for old in os.listdir(unit + ".d"):
                os.unlink(os.path.join(unit + ".d", old))
            shutil.copy(os.path.join(self.dir, "usr/share/keybroker/examples", name),
                        unit + ".d")
            r = subprocess.run(["systemd-analyze", "verify", "--man=no", unit],
                               capture_output=True, text=True)
            self.assertEqual((r.returncode, r.stdout + r.stderr), (0, ""), name)

    def test_sysusers_and_tmpfiles(self):
        """In an empty root: the user and group, then the directories
        with their owners and modes."""
        root = os.path.join(self.dir, "root")
        os.makedirs(os.path.join(root, "etc"))
        subprocess.run(["systemd-sysusers", "--root=" + root,
                        os.path.join(self.dir, "usr/lib/sysusers.d/keybroker.conf")],
                       check=True, capture_output=True)
        with open(os.path.join(root, "etc/passwd")) as f:
            user = next(l.split(":") for l in f if l.startswith("keybroker:"))
        uid, gid = int(user[2]), int(user[3])
        self.assertNotEqual(uid, 0)
        self.assertEqual(user[6].strip(), "/usr/sbin/nologin")
        r = subprocess.run(["systemd-tmpfiles", "--root=" + root, "--create",
                            os.path.join(self.dir, "usr/lib/tmpfiles.d/keybroker.conf")],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        for path, mode, owner, group in (("etc/keybroker", 0o750, 0, gid),
                                         ("var/lib/keybroker", 0o750, 0, gid),
                                         ("var/lib/keybroker/tokens", 0o700, uid, gid),
                                         ("var/lib/keybroker/audit", 0o750, uid, gid),
                                         ("run/keybroker", 0o755, 0, 0)):
            st = os.stat(os.path.join(root, path))
            self.assertEqual((stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid),
                             (mode, owner, group), path)


def the_user():
    """The broker's own user, made as the package makes it."""
    subprocess.run(["systemd-sysusers", os.path.join(ROOT, "systemd/sysusers.d/keybroker.conf")],
                   check=True, capture_output=True)
    return pwd.getpwnam("keybroker")


def proc_status(pid):
    with open("/proc/%d/status" % pid) as f:
        return dict(l.rstrip("\n").split(":\t", 1) for l in f if ":\t" in l)


@ROOT_ONLY
class PrivilegeDrop(unittest.TestCase):
    """Started as root with user = "keybroker": the socket and the token
    opened as root, then that user's uid and gid, no capabilities, no new
    privileges, not dumpable, and it still serves and writes."""

    def test_drops_to_its_user_and_serves(self):
        pw = the_user()
        token = Token([("cmk", 2048)])
        b = None
        try:
            b = Broker(token, name="dropped", user='"keybroker"')
            # The user's: the token and the broker's directory (socket,
            # trail). Root's: the PIN file, read before the drop.
            os.chmod(token.dir, 0o711)
            os.mkdir(os.path.join(b.dir, "audit"), 0o750)  # as tmpfiles.d makes it
            for d in (token.tokens_dir(), b.dir):
                for dirpath, _, files in os.walk(d):
                    os.chown(dirpath, pw.pw_uid, pw.pw_gid)
                    for f in files:
                        os.chown(os.path.join(dirpath, f), pw.pw_uid, pw.pw_gid)
            # An admin's keybrokerctl, as root, starts the trail: its files
            # are still the broker's user's.
            r = subprocess.run([os.path.join(BUILD, "keybrokerctl"), "-c", b.config,
                                "enable-key", "cmk", token.versions["cmk"][0]],
                               env=b.env, capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            for f in ("audit.jsonl", "audit.lock"):
                self.assertEqual(os.stat(os.path.join(b.dir, "audit", f)).st_uid, pw.pw_uid)
            # A command that only signs stays root, whose its output is.
            out = os.path.join(token.dir, "admin.token")  # root's directory
            r = subprocess.run([os.path.join(BUILD, "keybrokerctl"), "-c", b.config,
                                "identity", "token", "it-admin", "--out", out],
                               env=b.env, capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(os.stat(out).st_uid, 0)
            # It became the user to write the token: every object file is
            # the broker's to read.
            for dirpath, _, files in os.walk(token.tokens_dir()):
                for f in files:
                    self.assertEqual(os.stat(os.path.join(dirpath, f)).st_uid, pw.pw_uid, f)
            b.start()
            self.assertIn("now running as user 'keybroker' (uid %d, gid %d), without "
                          "capabilities" % (pw.pw_uid, pw.pw_gid), b.read_log())
            st = proc_status(b.proc.pid)
            self.assertEqual(st["Uid"].split(), [str(pw.pw_uid)] * 4)
            self.assertEqual(st["Gid"].split(), [str(pw.pw_gid)] * 4)
            for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
                self.assertEqual(int(st[cap], 16), 0, cap)
            self.assertEqual(st["NoNewPrivs"], "1")
            # Not dumpable: its /proc files stay root's.
            self.assertEqual(os.stat("/proc/%d/status" % b.proc.pid).st_uid, 0)
            # The module it names and no other registered one (opensc's
            # would bring GLib's thread along, which would keep root).
            with open("/proc/%d/maps" % b.proc.pid) as f:
                maps = f.read()
            self.assertIn("libsofthsm2.so", maps)
            self.assertNotIn("opensc-pkcs11", maps)
            self.assertNotIn("p11-kit-trust", maps)
            c = b.connect()
            dek = os.urandom(32)
            self.assertEqual(b64d(c.unwrap("cmk", b64d(c.wrap("cmk", dek)["value"]))
                                  ["value"]), dek)
            # A token write (confirmed by a fresh load as that user too).
            c.ok("createKey", key="made-as-user", kty="RSA-HSM", key_size=2048)
            c.close()
            b.reload()
            wait_for(lambda: "reload: " in b.read_log(), what="the reload")
            # Everything it wrote is its user's.
            for dirpath, _, files in os.walk(os.path.join(b.dir, "audit")):
                for f in files:
                    self.assertEqual(os.stat(os.path.join(dirpath, f)).st_uid, pw.pw_uid, f)
        finally:
            finish(b, token)

    def test_the_trail_gives_away_only_files_root_made_there(self):
        """Root's tools give the trail's new files to the directory's
        owner; a file that owner linked in from elsewhere stays as it is,
        and an audit directory that is a symlink is refused."""
        pw = the_user()
        token = Token([("cmk", 2048)])
        try:
            b = Broker(token, name="owned")
            audit = os.path.join(b.dir, "audit")
            os.mkdir(audit, 0o750)
            os.chown(audit, pw.pw_uid, pw.pw_gid)
            elsewhere = os.path.join(token.dir, "roots-file")
            open(elsewhere, "w").close()
            os.link(elsewhere, os.path.join(audit, "audit.jsonl"))

            def ctl():
                return subprocess.run([os.path.join(BUILD, "keybrokerctl"), "-c", b.config,
                                       "enable-key", "cmk", token.versions["cmk"][0]],
                                      env=b.env, capture_output=True, text=True)
            r = ctl()
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(os.stat(elsewhere).st_uid, 0)
            self.assertEqual(os.stat(os.path.join(audit, "audit.lock")).st_uid, pw.pw_uid)
            shutil.rmtree(audit)
            os.symlink(token.dir, audit)
            r = ctl()
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("%s: is a symlink" % audit, r.stderr)
        finally:
            token.remove()

    def test_checks_what_its_user_will_read_and_write(self):
        """-t (and every start) refuses a configuration its user could
        not read at the next reload, or a trail it could not write."""
        pw = the_user()
        token = Token([])
        try:
            b = Broker(token, name="access", user='"keybroker"')
            os.chmod(token.dir, 0o711)
            os.chmod(b.dir, 0o755)
            os.chmod(b.config, 0o600)  # root's only

            def check():
                return subprocess.run([os.path.join(BUILD, "keybrokerd"), "-t", "-c",
                                       b.config], env=b.env, capture_output=True, text=True)
            r = check()
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn("%s: user: user 'keybroker' cannot read %s: Permission denied"
                          % (b.config, b.config), r.stderr)
            os.chmod(b.config, 0o644)
            r = check()
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn("user 'keybroker' cannot write in %s: Permission denied"
                          % os.path.join(b.dir, "audit"), r.stderr)
            os.mkdir(os.path.join(b.dir, "audit"), 0o700)
            os.chown(os.path.join(b.dir, "audit"), pw.pw_uid, pw.pw_gid)
            r = check()
            self.assertEqual(r.returncode, 0, r.stderr)
        finally:
            token.remove()

    def test_refuses_to_drop_when_the_module_started_threads(self):
        """The bounding set and no_new_privs are per thread: a thread the
        module started would keep root's, so the broker does not start."""
        pw = the_user()
        token = Token([("cmk", 2048)], module=FAULT_MODULE)
        b = Broker(token, name="threaded", user='"keybroker"', env={"KB_FAULT_THREAD": "1"})
        try:
            os.chmod(token.dir, 0o711)
            os.chown(b.dir, pw.pw_uid, pw.pw_gid)
            b.start(wait=False)
            self.assertEqual(b.proc.wait(60), 1)
            # (One more under ThreadSanitizer, whose own thread is allowed.)
            self.assertRegex(b.read_log(), r"cannot drop root for user 'keybroker': the "
                             r"process has [23] threads \(started by the PKCS#11 module\?\)")
            self.assertNotIn("listening on", b.read_log())
        finally:
            token.remove()

    def check(self, user, want, as_user=None):
        token = Token([])
        try:
            b = Broker(token, name="check", user='"%s"' % user)
            prefix = ()
            if as_user is not None:
                os.chmod(token.dir, 0o755)
                os.chmod(b.dir, 0o755)
                os.chmod(b.config, 0o644)
                prefix = ("setpriv", "--reuid=" + as_user, "--regid=" + as_user,
                          "--init-groups")
            r = subprocess.run([*prefix, os.path.join(BUILD, "keybrokerd"), "-t", "-c",
                                b.config], env=b.env, capture_output=True, text=True)
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn("%s: user: %s" % (b.config, want), r.stderr)
        finally:
            token.remove()

    def test_refuses_a_user_that_does_not_exist(self):
        self.check("kb-no-such-user", "user 'kb-no-such-user': no such user")

    def test_refuses_root_as_its_user(self):
        self.check("root", "user 'root' has uid or gid 0: the broker does not run as root")

    def test_refuses_a_user_it_cannot_become(self):
        pw = the_user()
        self.check("nobody", "user 'nobody' (uid %d): running as uid %d, which can neither "
                   "become it (only root can) nor is it"
                   % (pwd.getpwnam("nobody").pw_uid, pw.pw_uid), as_user="keybroker")

    def test_root_without_a_user_is_warned(self):
        token = Token([])
        try:
            b = Broker(token, name="rootwarn")
            r = subprocess.run([os.path.join(BUILD, "keybrokerd"), "-t", "-c", b.config],
                               env=b.env, capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("running as root: set 'user'", r.stderr)
        finally:
            token.remove()


@ROOT_ONLY
class UnderTheUnit(unittest.TestCase):
    """As keybrokerd.service runs it: its own user from the start, the
    socket from systemd in a directory the broker cannot write, the PIN
    as a credential it reads and the PIN file it cannot."""

    def test_serves_as_its_user_on_systemds_socket(self):
        pw = the_user()
        token = Token([("cmk", 2048)])
        b = None
        try:
            run = os.path.join(token.dir, "run")  # root's, 0755
            os.makedirs(run, 0o755, exist_ok=True)
            os.chmod(run, 0o755)
            sock = os.path.join(run, "keybroker.sock")
            creds = os.path.join(token.dir, "credentials")
            os.mkdir(creds, 0o700)
            shutil.copy(os.path.join(token.dir, "user.pin"), os.path.join(creds, "pin"))
            pkcs11 = ('{ module = "softhsm2"; token = "pkcs11:token=keybroker"; '
                      'pin_credential = "pin"; pin_file = "%s"; }'
                      % os.path.join(token.dir, "user.pin"))
            b = Broker(token, name="unit", socket='"%s"' % sock, pkcs11=pkcs11,
                       user='"keybroker"')
            b.socket = sock
            os.chmod(token.dir, 0o711)
            for d in (token.tokens_dir(), b.dir, creds):
                for dirpath, _, files in os.walk(d):
                    os.chown(dirpath, pw.pw_uid, pw.pw_gid)
                    for f in files:
                        os.chown(os.path.join(dirpath, f), pw.pw_uid, pw.pw_gid)
            # The first connection starts it, as systemd would.
            # A manager that leaves it a capability (an AmbientCapabilities=
            # in a drop-in): the broker does not keep it.
            b.start(wait=False, env={"CREDENTIALS_DIRECTORY": creds}, prefix=(
                "systemd-socket-activate", "-E", "SOFTHSM2_CONF", "-E",
                "CREDENTIALS_DIRECTORY", "-l", sock, "setpriv", "--reuid=keybroker",
                "--regid=keybroker", "--init-groups", "--inh-caps=+net_bind_service",
                "--ambient-caps=+net_bind_service"))
            wait_for(lambda: os.path.exists(sock), what="the socket")
            c = Client(sock, timeout=60)
            st = proc_status(b.proc.pid)
            self.assertEqual(st["Uid"].split(), [str(pw.pw_uid)] * 4)
            for cap in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
                self.assertEqual(int(st[cap], 16), 0, cap)
            self.assertEqual(st["NoNewPrivs"], "1")
            dek = os.urandom(32)
            self.assertEqual(b64d(c.unwrap("cmk", b64d(c.wrap("cmk", dek)["value"]))
                                  ["value"]), dek)
            c.ok("createKey", key="made-under-unit", kty="RSA-HSM", key_size=2048)
            c.close()
            log = b.read_log()
            self.assertIn("socket activation: serving on the socket systemd passed", log)
            self.assertNotIn("now running as user", log)  # it was that user from the start
        finally:
            finish(b, token)


class Credential(unittest.TestCase):
    """pkcs11.pin_credential: the PIN from $CREDENTIALS_DIRECTORY, as a
    unit's LoadCredential= gives it."""

    def test_pin_from_the_credentials_directory(self):
        token = Token([("cmk", 2048)])
        creds = os.path.join(token.dir, "credentials")
        os.mkdir(creds, 0o700)
        shutil.copy(os.path.join(token.dir, "user.pin"), os.path.join(creds, "pin"))
        os.chmod(os.path.join(creds, "pin"), 0o400)
        pkcs11 = ('{ module = "softhsm2"; token = "pkcs11:token=keybroker"; '
                  'pin_credential = "pin"; }')
        b = Broker(token, name="credential", pkcs11=pkcs11)
        try:
            # Without the directory: refused, and said why.
            r = subprocess.run([os.path.join(BUILD, "keybrokerd"), "-c", b.config],
                               env=b.env, capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 1)
            self.assertIn("kb.conf: pkcs11.pin_credential 'pin': $CREDENTIALS_DIRECTORY is "
                          "not set", r.stderr)
            # keybrokerctl reads pin_file only, and says so.
            r = subprocess.run([os.path.join(BUILD, "keybrokerctl"), "-c", b.config,
                                "list-keys"], env=dict(b.env, CREDENTIALS_DIRECTORY=creds),
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 1)
            self.assertIn("pkcs11.pin_file is not set: this program reads the PIN from a file",
                          r.stderr)
            b.start(env={"CREDENTIALS_DIRECTORY": creds})
            c = b.connect()
            c.ok("getKey", key="cmk")
            c.close()
        finally:
            finish(b, token)


def hybrid_cgroups():
    """A host with the legacy name=systemd hierarchy and the unified one
    beside it: a broker in a mount namespace without the unified one sees
    the cgroup v1 layout."""
    try:
        return (os.path.isdir("/sys/fs/cgroup/systemd") and
                subprocess.run(["stat", "-f", "-c", "%T", "/sys/fs/cgroup/unified"],
                               capture_output=True, text=True).stdout.strip() == "cgroup2fs")
    except OSError:
        return False


@ROOT_ONLY
class UnitIdentity(unittest.TestCase):
    """A service started as etl.service gets its system-assigned identity,
    in the cgroup layout the host has and in the v1 one."""

    def get_identity(self, b, cgroup_root):
        with Cgroup("system.slice/etl.service", root=cgroup_root) as cg:
            return run_as(None, cg, lambda: Client(b.socket, authenticate=False)
                          .ok("getToken")["identity"])

    def broker(self, token, name, prefix=()):
        b = Broker(token, name=name, identities=[
            '{ name = "etl"; assigned = "system"; units = [ "etl.service" ]; }'])
        return b.start(prefix=prefix)

    def test_unit_identity_in_the_hosts_layout(self):
        token = Token([("cmk", 2048)])
        b = None
        try:
            b = self.broker(token, "unit-host")
            self.assertEqual(self.get_identity(b, None), "etl")
        finally:
            finish(b, token)

    @unittest.skipUnless(hybrid_cgroups(), "needs a host with both cgroup hierarchies")
    def test_unit_identity_in_the_cgroup_v1_layout(self):
        token = Token([("cmk", 2048)])
        b = None
        try:
            b = self.broker(token, "unit-v1", prefix=(
                "unshare", "-m", "--propagation", "private", "sh", "-c",
                'umount /sys/fs/cgroup/unified && exec "$0" "$@"'))
            self.assertEqual(self.get_identity(b, "/sys/fs/cgroup/systemd"), "etl")
        finally:
            finish(b, token)


if __name__ == "__main__":
    unittest.main()
