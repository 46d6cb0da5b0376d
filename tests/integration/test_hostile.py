# SPDX-License-Identifier: MIT
"""One local user must not be able to take the broker from the others:
connection limits, an authenticate deadline, fair service of pipelined
requests, a log that cannot be flooded, revocations that stop live
connections, and clients that do not wait forever. The tests that need
other uids run as root and skip with a message otherwise."""

import os
import resource
import signal
import socket
import sys
import subprocess
import threading
import time
import unittest
import warnings

from harness import BUILD, Broker, Client, OpenDirs, Token, finish

TOKEN = None


def setUpModule():
    global TOKEN
    TOKEN = Token([("cmk", 2048)])


def tearDownModule():
    finish(None, TOKEN)


class ClientTimeout(unittest.TestCase):
    def test_cli_gives_up_on_a_silent_socket(self):
        path = os.path.join(TOKEN.dir, "silent.sock")
        silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        silent.bind(path)
        silent.listen(8)
        held = []
        stop = threading.Event()

        def accept_and_hold():  # accepts, reads nothing, answers nothing
            silent.settimeout(0.2)
            while not stop.is_set():
                try:
                    held.append(silent.accept()[0])
                except socket.timeout:
                    pass
        t = threading.Thread(target=accept_and_hold)
        t.start()
        try:
            t0 = time.monotonic()
            r = subprocess.run([os.path.join(BUILD, "keybroker"), "--socket", path,
                                "--timeout", "2", "get", "--key", "cmk"],
                               capture_output=True, text=True, timeout=30)
            took = time.monotonic() - t0
        finally:
            stop.set()
            t.join()
            for s in held:
                s.close()
            silent.close()
            os.unlink(path)
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("timed out after 2000 ms waiting for the broker", r.stderr)
        self.assertLess(took, 5)


NOBODY = 65534
ROOT_ONLY = unittest.skipUnless(os.geteuid() == 0, "needs root (another uid)")



def as_nobody(fn):
    """Runs fn() in a child of uid 65534 (its open-file limit raised);
    returns the child's pid; the caller waits for it."""
    pid = os.fork()
    if pid == 0:
        try:
            # Its sockets are left for the kernel to close at exit.
            warnings.simplefilter("ignore", ResourceWarning)
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            os._exit(fn() or 0)
        except BaseException:  # noqa: BLE001 - a child reports by status
            os._exit(99)
    return pid


def wait_child(pid, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError("child %d did not finish" % pid)


def served_within(broker, seconds):
    """True if a new client authenticates and gets a key in time."""
    t0 = time.monotonic()
    c = Client(broker.socket, timeout=seconds)
    try:
        c.ok("getKey", key="cmk")
    finally:
        c.close()
    return time.monotonic() - t0 < seconds


class ConnectionLimits(unittest.TestCase):
    """Per-uid limits refuse with a line that names them, never another
    uid; an unauthenticated connection is closed at the deadline, which
    blank lines do not move."""

    @ROOT_ONLY
    def test_per_uid_limits_and_the_deadline(self):
        b = Broker(TOKEN, name="limits", log_level='"info"', max_connections_per_uid="6",
                   max_unauthenticated_per_uid="3", authenticate_timeout="2").start()
        r, w = os.pipe()

        def attacker():
            os.close(r)
            conns, refusals = [], []
            for _ in range(8):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(0.3)
                s.connect(b.socket)
                try:
                    refusals.append(s.recv(4096).decode())
                    s.close()
                except socket.timeout:
                    conns.append(s)
            t0 = time.monotonic()
            lines = {}
            while conns and time.monotonic() - t0 < 6:
                for s in list(conns):
                    try:
                        s.send(b"\n")  # blank lines: no more time
                        data = s.recv(4096)
                        if not data:
                            conns.remove(s)
                        else:
                            lines[s.fileno()] = data.decode()
                    except socket.timeout:
                        pass
                    except OSError:
                        conns.remove(s)
            os.write(w, repr((len(refusals), refusals[:1], len(conns),
                              round(time.monotonic() - t0, 1),
                              sorted(set(lines.values())))).encode())
        with OpenDirs(TOKEN.dir, b.dir):
            pid = as_nobody(attacker)
            os.close(w)
            time.sleep(0.5)
            self.assertTrue(served_within(b, 1.0))  # root is another uid
            self.assertEqual(wait_child(pid), 0)
            got = eval(os.read(r, 65536).decode())  # noqa: S307 - our child's repr
            os.close(r)
        finish(b, None)
        refused, first, left, took, said = got
        self.assertEqual(refused, 5)
        self.assertIn('"code":"Throttled","message":"too many connections from uid 65534 '
                      'waiting to authenticate (max_unauthenticated_per_uid 3)"', first[0])
        self.assertEqual(left, 0)  # all three closed at the deadline
        self.assertLess(took, 4)
        self.assertEqual(len(said), 1)
        self.assertIn('"code":"Unauthorized","message":"no authenticate within '
                      'authenticate_timeout; closing"', said[0])


class FdExhaustion(unittest.TestCase):
    """The issue's case: a soft fd limit of 1024 and 1,100 connections of
    one uid, kept alive with blank lines."""

    @ROOT_ONLY
    def test_1100_connections_of_one_uid(self):
        b = Broker(TOKEN, name="fds", log_level='"info"', authenticate_timeout="3")
        b.start(nofile_soft=1024)
        r, w = os.pipe()
        go_r, go_w = os.pipe()

        def attacker():
            os.close(r)
            os.close(go_w)
            conns = []
            for _ in range(1100):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.setblocking(False)
                try:
                    s.connect(b.socket)
                except BlockingIOError:
                    pass
                conns.append(s)
            os.write(w, b"c")
            os.read(go_r, 1)  # until the parent has measured
            t0 = time.monotonic()
            while time.monotonic() - t0 < 5:
                for s in conns:
                    try:
                        s.send(b"\n")
                    except OSError:
                        pass
                time.sleep(0.5)
            closed = 0
            for s in conns:
                try:
                    while True:
                        if not s.recv(65536):
                            closed += 1
                            break
                except BlockingIOError:
                    pass
                except OSError:
                    closed += 1
            os.write(w, str(closed).encode())
        with OpenDirs(TOKEN.dir, b.dir):
            pid = as_nobody(attacker)
            os.close(w)
            os.close(go_r)
            self.assertEqual(os.read(r, 1), b"c")
            cpu0, log0, t0 = b.cpu_seconds(), b.log_size(), time.monotonic()
            os.write(go_w, b"g")
            time.sleep(1)
            self.assertTrue(served_within(b, 1.0), "another user waited")
            time.sleep(3)
            cpu = (b.cpu_seconds() - cpu0) / (time.monotonic() - t0)
            log_rate = (b.log_size() - log0) / (time.monotonic() - t0)
            self.assertEqual(wait_child(pid), 0)
            closed = int(os.read(r, 64).decode())
            os.close(r)
            os.close(go_w)
        log = b.read_log()
        finish(b, None)
        print("\n  1,100 connections of one uid: broker CPU %.1f %%, log %.0f bytes/s, "
              "%d closed" % (cpu * 100, log_rate, closed), file=sys.stderr)
        self.assertLess(cpu, 0.10, "broker CPU %.0f %%" % (cpu * 100))
        self.assertLess(log_rate, 2048, "log %.0f bytes/s" % log_rate)
        self.assertEqual(closed, 1100)
        self.assertIn("open-file limit raised from 1024", log)


class AcceptBackoff(unittest.TestCase):
    """Out of file descriptors, the broker stops polling the listener for
    a while instead of spinning on it, says so once, and serves the
    waiting clients when it can."""

    def test_emfile_does_not_spin(self):
        flag = os.path.join(TOKEN.dir, "emfile.flag")
        b = Broker(TOKEN, name="emfile", log_level='"info"',
                   env={"LD_PRELOAD": os.path.join(BUILD, "tests", "syscall_shim.so"),
                        "KB_SHIM_EMFILE_WHILE": flag,
                        "ASAN_OPTIONS": "verify_asan_link_order=0"}).start()
        try:
            open(flag, "w").close()
            waiting = Client(b.socket, authenticate=False, timeout=10)
            cpu0, t0 = b.cpu_seconds(), time.monotonic()
            time.sleep(2)
            cpu = (b.cpu_seconds() - cpu0) / (time.monotonic() - t0)
            os.unlink(flag)
            t1 = time.monotonic()
            self.assertIn("access_token", waiting.ok("getToken"))
            self.assertLess(time.monotonic() - t1, 1)
            waiting.close()
            log = b.read_log()
        finally:
            finish(b, None)
        print("\n  out of fds: broker CPU %.1f %%" % (cpu * 100), file=sys.stderr)
        self.assertLess(cpu, 0.10, "broker CPU %.0f %%" % (cpu * 100))
        self.assertEqual(log.count("accept: Too many open files; new connections wait "
                                   "100 ms at a time"), 1)


def pipeline_flood(path, line, seconds):
    """In a child process (its own interpreter lock): one authenticated
    connection that writes line as fast as the socket takes it and reads
    the replies. Returns the child's pid."""
    pid = os.fork()
    if pid != 0:
        return pid
    try:
        c = Client(path)
        stop = threading.Event()

        def reader():
            c.sock.settimeout(0.5)
            while not stop.is_set():
                try:
                    c.sock.recv(1 << 20)
                except OSError:
                    pass
        t = threading.Thread(target=reader)
        t.start()
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            c.sock.sendall(line * 16)
        stop.set()
        t.join()
    finally:
        os._exit(0)


class FairPipelining(unittest.TestCase):
    """One client pipelining unwraps as fast as the socket takes them
    does not make another client's getKey wait."""

    def test_other_client_served_promptly(self):
        # Workers as the broker's default: one per CPU (at least two).
        b = Broker(TOKEN, name="fair", log_level='"info"',
                   workers=str(max(2, os.cpu_count()))).start()
        try:
            c = b.connect()
            wrapped = c.wrap("cmk", os.urandom(32), alg="RSA-OAEP")["value"]
            line = ('{"id":9,"op":"unwrapKey","key":"cmk","alg":"RSA-OAEP","value":"%s"}\n'
                    % wrapped).encode()
            # What one unwrap costs here and now (the sanitizers, a
            # busy machine): the bound below is in these units.
            alone = []
            for _ in range(30):
                s = time.monotonic()
                c.ok("unwrapKey", key="cmk", alg="RSA-OAEP", value=wrapped)
                alone.append(time.monotonic() - s)
            unwrap = sorted(alone)[len(alone) // 2]
            pid = pipeline_flood(b.socket, line, 5)
            time.sleep(1)
            lat = []
            t0 = time.monotonic()
            while time.monotonic() - t0 < 3:
                s = time.monotonic()
                c.ok("getKey", key="cmk")
                lat.append(time.monotonic() - s)
            rss = b.rss_kib()
            self.assertEqual(wait_child(pid), 0)
            c.close()
        finally:
            finish(b, None)
        lat.sort()
        p99 = lat[int(len(lat) * 0.99)]
        print("\n  getKey beside a pipelining client: p50 %.2f ms, p99 %.2f ms, %d calls "
              "(one unwrap alone: %.2f ms), broker RSS %.1f MiB"
              % (lat[len(lat) // 2] * 1000, p99 * 1000, len(lat), unwrap * 1000, rss / 1024),
              file=sys.stderr)
        # The goal is 5 ms (make bench prints the figure). A queue that
        # served the flood first made getKey wait for dozens of unwraps
        # (20-30 ms on a quiet machine); fair, it waits for a few. The
        # bound is 6 unwrap round trips as measured in this run, at
        # least 10 ms, so that the sanitizers or a noisy machine do not
        # fail the suite while an unfair queue still would.
        bound = max(0.010, 6 * unwrap)
        self.assertLess(p99, bound, "getKey p99 %.1f ms over %d calls, bound %.1f ms"
                        % (p99 * 1000, len(lat), bound * 1000))
        if "-fsanitize" not in os.environ.get("KB_CLIENT_CFLAGS", ""):
            self.assertLess(rss, 64 * 1024)  # the sanitizers' quarantines are not


class GarbageFlood(unittest.TestCase):
    """Connections of one uid sending invalid lines cannot flood the log,
    are closed after a run of them, and keep nobody else waiting."""

    @ROOT_ONLY
    def test_garbage_from_one_uid(self):
        b = Broker(TOKEN, name="garbage", log_level='"info"').start()

        def flooder():
            t0 = time.monotonic()
            while time.monotonic() - t0 < 5:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.connect(b.socket)
                    s.settimeout(1)
                    while time.monotonic() - t0 < 5:
                        s.sendall(b"this is not json\n" * 8)
                        if not s.recv(65536):
                            break
                except OSError:
                    pass
                finally:
                    s.close()
        with OpenDirs(TOKEN.dir, b.dir):
            log0 = b.log_size()
            pids = [as_nobody(flooder) for _ in range(4)]
            worst = 0
            t0 = time.monotonic()
            while time.monotonic() - t0 < 4.5:
                s = time.monotonic()
                self.assertTrue(served_within(b, 1.0))
                worst = max(worst, time.monotonic() - s)
                time.sleep(0.2)
            for pid in pids:
                self.assertEqual(wait_child(pid), 0)
            grown = b.log_size() - log0
            log = b.read_log()
        finish(b, None)
        print("\n  garbage flood: log grew %d bytes in 5 s, others waited at most %.0f ms"
              % (grown, worst * 1000), file=sys.stderr)
        self.assertLess(grown, 64 * 1024, "log grew %d bytes in 5 s" % grown)
        self.assertLess(worst, 0.2, "another user waited %.0f ms" % (worst * 1000))
        self.assertIn("more held back", log)


class LiveRevocation(unittest.TestCase):
    def test_revoked_token_stops_a_live_connection(self):
        b = Broker(TOKEN, name="revoke-live").start()
        try:
            out = TOKEN.ctl("-c", b.config, "identity", "token", "it-admin")
            token = out.stdout.strip()
            jti = out.stderr.split()[1]
            c = Client(b.socket, authenticate=False)
            self.assertIn("result", c.request("authenticate", token=token))
            self.assertIn("result", c.request("getKey", key="cmk"))
            self.assertEqual(TOKEN.ctl("-c", b.config, "identity", "revoke", jti).returncode, 0)
            t0 = time.monotonic()
            while time.monotonic() - t0 < 2:
                r = c.request("getKey", key="cmk")
                if "error" in r:
                    break
                time.sleep(0.05)
            self.assertEqual(r.get("error"), {
                "code": "Unauthorized",
                "message": "token has been revoked: authenticate again with another token"})
            c.close()
        finally:
            finish(b, None)
