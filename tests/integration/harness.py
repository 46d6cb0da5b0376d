# SPDX-License-Identifier: MIT
"""Shared fixtures of the integration tests: a SoftHSMv2 token made in a
temporary directory, keybrokerd processes started on it, and a small
client that speaks protocol v1 over the socket."""

import base64
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, os.environ.get("KB_BUILD", "build"))
SOFTHSM_LIB = "/usr/lib/softhsm/libsofthsm2.so"
# The fault-injecting module (tests/fault/p11_fault.c) in front of SoftHSMv2.
FAULT_MODULE = os.path.join(BUILD, "tests", "p11_fault.so")


def b64e(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64d(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Token:
    """A SoftHSMv2 token with keybroker keys, in its own directory. module:
    the PKCS#11 module the configs name (default SoftHSMv2 itself);
    tmpfs: a size, to keep the token's files on a tmpfs of that size
    (needs root; remove() unmounts it)."""

    def __init__(self, keys, module="softhsm2", tmpfs=None):
        self.dir = tempfile.mkdtemp(prefix="kb-it-")
        self.module = module
        self.mounted = False
        try:
            subprocess.run(["sh", os.path.join(ROOT, "scripts/softhsm-token.sh"),
                            self.dir], check=True)
            if tmpfs:
                subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % tmpfs,
                                "tmpfs", self.tokens_dir()], check=True)
                self.mounted = True
            conf = os.path.join(self.dir, "keybroker.conf")
            with open(conf) as f:
                text = f.read()
            with open(conf, "w") as f:
                f.write(text.replace('module = "softhsm2";', 'module = "%s";' % module))
            self.env = dict(os.environ, SOFTHSM2_CONF=os.path.join(self.dir, "softhsm2.conf"))
            self.ctl("init-token", "--so-pin-file", os.path.join(self.dir, "so.pin"))
            self.versions = {}
            for name, size in keys:
                self.create(name, size)
        except BaseException:
            self.remove()
            raise

    def ctl(self, *args, check=True, env=None):
        return subprocess.run([os.path.join(BUILD, "keybrokerctl"), "-c",
                               os.path.join(self.dir, "keybroker.conf"), *args],
                              env=dict(self.env, **(env or {})), capture_output=True,
                              text=True, check=check)

    def pkcs11_config(self):
        """The pkcs11 group of a broker config for this token."""
        return ('{ module = "%s"; token = "pkcs11:token=keybroker"; pin_file = "%s"; }'
                % (self.module, os.path.join(self.dir, "user.pin")))

    def create(self, name, size=2048):
        out = self.ctl("create-key", name, "--size", str(size)).stdout
        version = out.split()[0].rsplit("/", 1)[1]
        self.versions.setdefault(name, []).append(version)
        return version

    @property
    def pin(self):
        with open(os.path.join(self.dir, "user.pin")) as f:
            return f.read().strip()

    def tokens_dir(self):
        return os.path.join(self.dir, "tokens")

    def remove(self):
        if self.mounted:
            subprocess.run(["umount", self.tokens_dir()], check=True)
            self.mounted = False
        shutil.rmtree(self.dir, ignore_errors=True)


class Broker:
    """One keybrokerd on a token, with a config made from settings."""

    ADMIN = ('{ name = "it-admin"; assigned = "system"; uids = [ %d ]; }'
             % os.geteuid())
    ADMIN_ACCESS = '{ identity = "it-admin"; keys = [ "*" ]; roles = [ "Crypto Officer" ]; }'

    def __init__(self, token, name="broker", identities=(), access=(),
                 issuers=(), env=None, **settings):
        self.token = token
        self.env = dict(token.env, **(env or {}))
        self.dir = os.path.join(token.dir, name)
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        self.socket = os.path.join(self.dir, "kb.sock")
        self.config = os.path.join(self.dir, "kb.conf")
        self.log = os.path.join(self.dir, "kb.log")
        base = {
            "instance": '"it"',
            "socket": '"%s"' % self.socket,
            "log_level": '"debug"',
            "workers": "4",
        }
        base.update(settings)
        algs = base.pop("algorithms", None)
        pkcs11 = base.pop("pkcs11", None) or token.pkcs11_config()
        with open(self.config, "w") as f:
            for k, v in base.items():
                f.write("%s = %s;\n" % (k, v))
            f.write("pkcs11 = %s;\n" % pkcs11)
            if algs:
                f.write("algorithms = %s;\n" % algs)
            # Listed first: getToken takes the first system identity that
            # matches, so more specific test identities win over the admin.
            f.write("identities = (\n  %s\n);\n"
                    % ",\n  ".join(list(identities) + [self.ADMIN]))
            f.write("access = (\n  %s\n);\n"
                    % ",\n  ".join([self.ADMIN_ACCESS] + list(access)))
            if issuers:
                f.write("issuers = (\n  %s\n);\n" % ",\n  ".join(issuers))
        self.proc = None

    def start(self, wait=True, nofile_soft=None, timeout=30, prefix=(), env=None):
        """Starts keybrokerd; nofile_soft sets its soft open-file limit
        (as systemd's default of 1024), the hard one left as it is;
        timeout is how long it may take to listen; prefix is a command
        that runs it (its last argument, then keybrokerd's, follow);
        env adds to its environment."""
        def limits():
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile_soft, hard))
        logf = open(self.log, "ab")
        since = logf.tell()
        self.proc = subprocess.Popen([*prefix, os.path.join(BUILD, "keybrokerd"), "-c",
                                      self.config], env=dict(self.env, **(env or {})),
                                     stdout=logf, stderr=logf,
                                     preexec_fn=limits if nofile_soft else None)
        logf.close()
        if not wait:
            return self
        # The socket exists before the token is open: wait for the loop.
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("keybrokerd exited: " + self.read_log())
            with open(self.log, "rb") as f:
                f.seek(since)
                if b"listening on " in f.read():
                    return self
            time.sleep(0.05)
        raise RuntimeError("keybrokerd did not start: " + self.read_log())

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def read_log(self):
        with open(self.log, "rb") as f:
            return f.read().decode(errors="replace")

    def connect(self, authenticate=True):
        return Client(self.socket, authenticate=authenticate)

    def reload(self):
        self.proc.send_signal(signal.SIGHUP)

    def cpu_seconds(self):
        """User plus system CPU time the broker has used so far."""
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            return int(next(l for l in f if l.startswith("VmRSS")).split()[1])

    def log_size(self):
        return os.path.getsize(self.log)


class Client:
    def __init__(self, path, timeout=20, authenticate=True):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.next_id = 1
        if authenticate:
            self.identity = self.ok("authenticate",
                                    token=self.ok("getToken")["access_token"])["identity"]

    def close(self):
        self.sock.close()

    def send_raw(self, data):
        self.sock.sendall(data)

    def read_line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def closed_by_peer(self):
        """True if the broker closed the connection (EOF, nothing left)."""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def request(self, op, **fields):
        rid = self.next_id
        self.next_id += 1
        msg = dict(id=rid, op=op, **fields)
        self.send_raw((json.dumps(msg) + "\n").encode())
        reply = self.read_line()
        assert reply.get("id") == rid, reply
        return reply

    def ok(self, op, **fields):
        reply = self.request(op, **fields)
        if "error" in reply:
            raise AssertionError("%s failed: %r" % (op, reply["error"]))
        return reply["result"]

    def wrap(self, key, value, **fields):
        return self.ok("wrapKey", key=key, value=b64e(value), **fields)

    def unwrap(self, key, value, **fields):
        return self.ok("unwrapKey", key=key, value=b64e(value), **fields)


def pkcs11_session(token):
    """A logged-in read-write PyKCS11 session on token (close it)."""
    import PyKCS11
    os.environ["SOFTHSM2_CONF"] = token.env["SOFTHSM2_CONF"]
    lib = PyKCS11.PyKCS11Lib()
    lib.load(SOFTHSM_LIB)
    slot = next(s for s in lib.getSlotList(tokenPresent=True)
                if lib.getTokenInfo(s).label.strip() == "keybroker")
    session = lib.openSession(slot, PyKCS11.CKF_SERIAL_SESSION | PyKCS11.CKF_RW_SESSION)
    session.login(token.pin)
    return lib, session


class OpenDirs:
    """Lets other uids reach the sockets under these directories (0711),
    and closes them again (0700) on the way out."""

    def __init__(self, *dirs):
        self.dirs = dirs

    def __enter__(self):
        for d in self.dirs:
            os.chmod(d, 0o711)
        return self

    def __exit__(self, *exc):
        for d in self.dirs:
            os.chmod(d, 0o700)


def systemd_cgroup_root():
    """The cgroup hierarchy in which libsystemd looks up a process's unit:
    the unified one (at /sys/fs/cgroup, or /sys/fs/cgroup/unified on a
    hybrid layout), else the legacy name=systemd one."""
    for path in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
        kind = subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True,
                              text=True).stdout.strip()
        if kind == "cgroup2fs":
            return path
    return "/sys/fs/cgroup/systemd"


class Cgroup:
    """A cgroup path made under the hierarchy libsystemd reads (or under
    root), removed (with the parents it had to make) afterwards."""

    def __init__(self, rel, root=None):
        self.root = root or systemd_cgroup_root()
        self.rel = rel
        self.made = []

    def __enter__(self):
        path = self.root
        for part in self.rel.split("/"):
            path = os.path.join(path, part)
            if not os.path.isdir(path):
                os.mkdir(path)
                self.made.append(path)
        self.path = path
        return self

    def add(self, pid):
        with open(os.path.join(self.path, "cgroup.procs"), "w") as f:
            f.write(str(pid))

    def __exit__(self, *exc):
        for path in reversed(self.made):
            for _ in range(50):
                try:
                    os.rmdir(path)
                    break
                except OSError:
                    time.sleep(0.05)


def run_as(uid, cgroup, fn):
    """Runs fn() in a child placed in cgroup (a Cgroup, or None), as uid
    (None: this process's); returns what it returned, through JSON."""
    r, w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.close(go_w)
        try:
            os.read(go_r, 1)  # wait until moved into the cgroup
            if uid is not None:
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
            os.write(w, json.dumps(fn()).encode())
        finally:
            os._exit(0)
    os.close(w)
    os.close(go_r)
    try:
        if cgroup is not None:
            cgroup.add(pid)
        os.write(go_w, b"x")
        os.waitpid(pid, 0)
        return json.loads(os.read(r, 1 << 20).decode())
    finally:
        os.close(r)
        os.close(go_w)


def finish(broker, token):
    """Stops a module's broker and removes its token; fails if the broker
    did not exit cleanly (under the sanitizers a leak or an error shows as
    an exit status or a report in its log)."""
    status = broker.stop() if broker else 0
    log = broker.read_log() if broker else ""
    if token:
        token.remove()
    if status != 0 or "Sanitizer" in log or "runtime error" in log:
        raise AssertionError("keybrokerd exited with %s:\n%s" % (status, log[-4000:]))
