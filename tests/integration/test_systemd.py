# SPDX-License-Identifier: MIT
"""keybrokerd under a service manager, without one running: socket
activation (the socket systemd passes, taken as it is) and sd_notify
(READY, RELOADING, STOPPING, STATUS on $NOTIFY_SOCKET)."""

import os
import signal
import socket
import time
import unittest

from harness import Broker, Client, Token, finish

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


if __name__ == "__main__":
    unittest.main()
