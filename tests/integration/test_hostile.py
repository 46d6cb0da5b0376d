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
import subprocess
import threading
import time
import unittest

from harness import BUILD, Broker, Client, Token, b64d, b64e, finish

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
