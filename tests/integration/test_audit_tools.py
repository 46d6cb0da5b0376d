# SPDX-License-Identifier: MIT
"""keybroker-audit query and report, on trails written here in Python per
docs/audit.md (with a correct prev chain), without a broker: each filter
alone and together, --json and the table, --follow across a rotation, the
report's sections as text and as an HTML page, and trails that are broken
or hostile (malformed and over-long lines, key names with markup or
terminal controls)."""

import datetime
import hashlib
import html.parser
import json
import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from harness import BUILD

AUDIT = os.path.join(BUILD, "keybroker-audit")
LINE_MAX = 1024 * 1024
T0 = datetime.datetime(2026, 11, 30, 5, 0, 0, tzinfo=datetime.timezone.utc)

VA1, VA2, VB1, VX = "a1" * 16, "a2" * 16, "b1" * 16, "cc" * 16
GRANTS = [
    {"identity": "etl", "keys": ["etl-*"], "permissions": ["get", "wrapKey", "unwrapKey"]},
    {"identity": "ops", "keys": ["*"], "permissions": ["create", "rotate", "list", "delete"]},
    {"identity": "reader", "keys": ["cmk"], "permissions": ["get"]},
]


def at(seconds):
    """RFC 3339 UTC with microseconds, seconds after T0."""
    t = T0 + datetime.timedelta(seconds=seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def short(seconds):
    """The time as the report's tables show it (to the second)."""
    return (T0 + datetime.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


class Trail:
    """Writes a trail into a directory as the broker would: audit.jsonl,
    rotated to audit-STAMP-SEQ.jsonl, records chained by prev."""

    def __init__(self, directory, origin="host-a"):
        self.dir = directory
        self.origin = origin
        self.seq = 0
        self.prev = "0" * 64
        self.records = []  # (line, record) in chain order
        self.path = os.path.join(directory, "audit.jsonl")
        self.file_first = 0  # seq of audit.jsonl's first record

    def line(self, event, when, **fields):
        """The next record's line, chained, without writing it."""
        rec = {"seq": self.seq, "time": at(when), "origin": self.origin,
               "instance": "it", "event": event, "prev": self.prev}
        rec.update(fields)
        text = json.dumps(rec, separators=(",", ":"), ensure_ascii=True)
        self.prev = hashlib.sha256(text.encode()).hexdigest()
        self.seq += 1
        self.records.append((text, rec))
        return text

    def add(self, event, when, **fields):
        text = self.line(event, when, **fields)
        with open(self.path, "ab") as f:
            f.write(text.encode() + b"\n")
        return text

    def request(self, when, op, result="ok", identity=None, key=None, version=None,
                uid=1000, unit=None, message=None, correlation=None, **extra):
        fields = {"op": op, "result": result}
        if message is not None:
            fields["message"] = message
        fields.update(duration_us=120, id=self.seq, conn=1)
        if correlation is not None:
            fields["correlationId"] = correlation
        peer = {"uid": uid, "gid": uid, "pid": 4242}
        if unit is not None:
            peer["unit"] = unit
        fields["peer"] = peer
        if identity is not None:
            fields["identity"] = {"name": identity, "iss": "keybroker", "sub": identity,
                                  "jti": "j%d" % self.seq}
        if key is not None:
            fields["key"] = key
            fields["versionAsked"] = ""
        if version is not None:
            fields["version"] = version
        fields.update(extra)
        return self.add("request", when, **fields)

    def checkpoint(self, when, reason):
        return self.add("checkpoint", when, reason=reason, size=self.seq, head=self.prev,
                        keyid="k" * 43, sig="s" * 342)

    def rotate(self, when):
        """Renames audit.jsonl aside, as the broker's rotation does:
        audit-STAMP-SEQ.jsonl, SEQ that of its first record."""
        stamp = (T0 + datetime.timedelta(seconds=when)).strftime("%Y%m%dT%H%M%SZ")
        target = os.path.join(self.dir, "audit-%s-%d.jsonl" % (stamp, self.file_first))
        os.rename(self.path, target)
        self.file_first = self.seq
        return target

    def rotated(self):
        return sorted(os.path.join(self.dir, n) for n in os.listdir(self.dir)
                      if n.startswith("audit-"))

    def lines(self):
        return [text for text, _ in self.records]


def write_scenario(directory):
    """Two files of a day's trail: keys etl-a (versions VA1, VA2) and etl-b
    (VB1), identities etl, ops and reader, one admin key (VX)."""
    t = Trail(directory)
    t.add("start", 0, version="0.1.0", policy="ab" * 32, grants=GRANTS, keyid="k" * 43)
    t.request(10, "createKey", identity="ops", key="etl-a", version=VA1, uid=0,
              unit="ops.service")
    t.request(20, "rotateKey", identity="ops", key="etl-a", version=VA2, uid=0,
              unit="ops.service")
    t.request(30, "wrapKey", identity="etl", key="etl-a", version=VA2, unit="etl.service",
              correlation="c-1", alg="RSA-OAEP-256", valueHmac="h1")
    t.request(31, "wrapKey", identity="etl", key="etl-a", version=VA2, unit="etl.service",
              alg="RSA-OAEP-256", valueHmac="h2")
    t.request(40, "unwrapKey", identity="etl", key="etl-a", version=VA1, unit="etl.service",
              alg="RSA-OAEP-256", valueHmac="h3")
    t.request(50, "unwrapKey", "Forbidden", identity="etl", key="cmk", unit="etl.service",
              message="identity 'etl' lacks unwrapKey on key 'cmk'", missing="unwrapKey",
              correlation="c-2")
    t.request(55, "getKey", "Unauthorized", key="etl-a", uid=1001, unit="evil.service",
              message="no identity token")
    t.checkpoint(60, "rotation")
    t.rotate(60)
    t.add("token", 120, state="lost", message="C_GetSessionInfo: CKR_DEVICE_REMOVED")
    t.add("token", 130, state="back", message="logged in again")
    t.request(3600, "wrapKey", "BadParameter", identity="etl", key="etl-a", version=VA2,
              unit="etl.service", message="value is not base64url")
    t.request(3660, "getKeys", identity="ops", uid=0, unit="ops.service")
    t.request(3700, "createKey", identity="ops", key="etl-b", version=VB1, uid=0,
              unit="ops.service")
    t.add("reload", 3800, result="ok", policy="cd" * 32, grants=GRANTS)
    t.request(7200, "unwrapKey", identity="etl", key="etl-a", version=VA2, unit="etl.service",
              correlation="c-3", alg="RSA-OAEP-256", valueHmac="h1")
    t.add("admin", 7400, op="create-key", key="break", version=VX, result="ok",
          peer={"uid": 0, "gid": 0, "pid": 99})
    t.add("stop", 7500)
    t.checkpoint(7501, "shutdown")
    return t


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def run(*args, timeout=60):
    return subprocess.run([AUDIT, *args], capture_output=True, text=True, timeout=timeout)


def sections(text):
    """The report's text split into {title: [lines]} (the lines after the
    title, blank ones left out)."""
    out, title = {}, None
    for line in text.splitlines():
        m = re.match(r"^== (.*) ==$", line)
        if m:
            title = m.group(1)
            out[title] = []
        elif title is not None and line.strip():
            out[title].append(line)
    return out


def section(text, prefix):
    found = [lines for title, lines in sections(text).items() if title.startswith(prefix)]
    assert len(found) == 1, (prefix, text)
    return found[0]


HEADS = ("what ", "identity ", "time ", "key ")


def rows(lines):
    """A text table's rows (after its header, and the note before that if
    there is one), cells split on 2+ spaces."""
    head = next(i for i, line in enumerate(lines) if line.startswith(HEADS))
    return [re.split(r"\s{2,}", line.strip()) for line in lines[head + 1:]]


class Page(html.parser.HTMLParser):
    """Checks that tags nest and close, and keeps the text and tags."""

    VOID = {"meta", "br", "hr", "img", "input", "link", "wbr", "col", "area", "base",
            "source", "track", "embed"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.tags, self.text, self.attrs = [], [], {}, [], []

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        self.attrs.extend(attrs)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        self.attrs.extend(attrs)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append("</%s> closes %s" % (tag, self.stack[-1:] or "nothing"))
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


class Base(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="kb-audit-")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)


class Query(Base):
    def setUp(self):
        super().setUp()
        self.trail = write_scenario(self.dir)

    def json_lines(self, *args):
        r = run("query", "--json", *args, self.dir)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.splitlines()

    def check_filter(self, args, keep):
        """query --json with args gives exactly the lines keep selects, in
        order; and they are some of the trail's lines, not none or all."""
        want = [text for text, rec in self.trail.records if keep(rec)]
        self.assertTrue(0 < len(want) < len(self.trail.records), args)
        self.assertEqual(self.json_lines(*args), want)

    def test_json_without_filters_is_every_line_verbatim_across_files(self):
        self.assertEqual(len(self.trail.rotated()), 1)
        self.assertEqual(self.json_lines(), self.trail.lines())

    def test_files_given_one_by_one_are_read_in_the_order_given(self):
        current = os.path.join(self.dir, "audit.jsonl")
        r = run("query", "--json", current, self.trail.rotated()[0])
        self.assertEqual(r.returncode, 0, r.stderr)
        n = len(read(current).splitlines())
        self.assertEqual(r.stdout.splitlines(), self.trail.lines()[-n:] + self.trail.lines()[:-n])

    def test_filter_since(self):
        self.check_filter(["--since", at(3600)], lambda r: r["time"] >= at(3600))

    def test_filter_until_excludes_its_own_instant(self):
        self.check_filter(["--until", at(50)], lambda r: r["time"] < at(50))

    def test_filter_since_takes_a_date_and_an_offset(self):
        # 06:00+01:00 is 05:00Z; a date is midnight UTC.
        self.check_filter(["--since", "2026-11-30T06:00:30+01:00"],
                          lambda r: r["time"] >= at(30))
        r = run("query", "--json", "--since", "2026-12-01", self.dir)
        self.assertEqual((r.returncode, r.stdout), (0, ""))
        self.assertEqual(self.json_lines("--since", "2026-11-30"), self.trail.lines())

    def test_filter_identity(self):
        self.check_filter(["--identity", "etl"],
                          lambda r: r.get("identity", {}).get("name") == "etl")

    def test_filter_key(self):
        self.check_filter(["--key", "etl-a"], lambda r: r.get("key") == "etl-a")

    def test_filter_version(self):
        self.check_filter(["--version", VA2], lambda r: r.get("version") == VA2)

    def test_filter_version_never_matches_the_brokers_release(self):
        r = run("query", "--json", "--version", "0.1.0", self.dir)
        self.assertEqual((r.returncode, r.stdout), (0, ""))

    def test_filter_op(self):
        self.check_filter(["--op", "unwrapKey"], lambda r: r.get("op") == "unwrapKey")

    def test_filter_event(self):
        self.check_filter(["--event", "token"], lambda r: r["event"] == "token")

    def test_filter_result_ok(self):
        self.check_filter(["--result", "ok"], lambda r: r.get("result") == "ok")

    def test_filter_result_error_is_anything_but_ok(self):
        self.check_filter(["--result", "error"],
                          lambda r: "result" in r and r["result"] != "ok")

    def test_filter_result_code(self):
        self.check_filter(["--result", "Forbidden"], lambda r: r.get("result") == "Forbidden")

    def test_filter_uid(self):
        self.check_filter(["--uid", "1001"], lambda r: r.get("peer", {}).get("uid") == 1001)

    def test_filter_uid_zero_matches_admin_records_too(self):
        self.check_filter(["--uid", "0"], lambda r: r.get("peer", {}).get("uid") == 0)

    def test_filter_unit(self):
        self.check_filter(["--unit", "etl.service"],
                          lambda r: r.get("peer", {}).get("unit") == "etl.service")

    def test_filter_correlation_id(self):
        self.check_filter(["--correlation-id", "c-2"], lambda r: r.get("correlationId") == "c-2")

    def test_filters_combine_with_and(self):
        self.check_filter(
            ["--identity", "etl", "--op", "wrapKey", "--result", "ok", "--until", at(31)],
            lambda r: (r.get("identity", {}).get("name") == "etl" and r.get("op") == "wrapKey"
                       and r.get("result") == "ok" and r["time"] < at(31)))
        self.check_filter(["--key", "etl-a", "--result", "error", "--since", at(100)],
                          lambda r: (r.get("key") == "etl-a" and r["time"] >= at(100)
                                     and r.get("result", "ok") != "ok"))

    def test_filters_that_contradict_match_nothing(self):
        r = run("query", "--json", "--identity", "etl", "--uid", "0", self.dir)
        self.assertEqual((r.returncode, r.stdout), (0, ""))

    def test_table_has_one_aligned_row_per_record(self):
        long_key = "k" + "-long" * 30
        self.trail.request(8000, "getKey", "KeyNotFound", identity="etl", key=long_key,
                           version="", unit="a-unit-name-that-goes-on-and-on.service",
                           message="no such key")
        r = run("query", "--since", at(7000), self.dir)
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        head = lines[0]
        for word in ("TIME", "SEQ", "EVENT", "OP", "RESULT", "IDENTITY", "KEY/VERSION", "UID",
                     "UNIT"):
            self.assertIn(word, head)
        self.assertEqual(len(lines), 1 + 5)  # request, admin, stop, checkpoint, request
        unwrap = next(line for line in lines if "unwrapKey" in line)
        self.assertTrue(unwrap.startswith(short(7200)))
        self.assertIn("etl-a/" + VA2[:20], unwrap)
        self.assertIn("etl.service", unwrap)
        # Columns line up: every row has its event, op, result, identity
        # and unit starting where the header has their names, and its uid
        # ending where the header's UID ends.
        for line in lines[1:]:
            for word in ("EVENT", "OP", "RESULT", "IDENTITY", "KEY/VERSION", "UNIT"):
                col = head.index(word)
                self.assertNotEqual(line[col], " ", (word, line))
                self.assertEqual(line[col - 1], " ", (word, line))
        uid_end = head.index("UID") + len("UID")
        self.assertEqual(unwrap[uid_end - 4:uid_end], "1000")
        admin = next(line for line in lines if "create-key" in line)
        self.assertEqual(admin[uid_end - 1:uid_end + 1], "0 ")
        # The long key and unit are cut with an ellipsis, and every line
        # stays as wide as the header's columns allow.
        cut = next(line for line in lines if "KeyNotFound" in line)
        self.assertIn("k-long-long", cut)
        self.assertNotIn(long_key, cut)
        self.assertIn("\u2026", cut)
        unit_max = 24
        self.assertEqual(max(len(line) for line in lines), head.index("UNIT") + unit_max)

    def test_follow_sees_appended_lines_and_a_rotation(self):
        p = subprocess.Popen([AUDIT, "query", "--json", "--follow", self.dir],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            got = read_lines(p, len(self.trail.records))
            self.assertEqual(got, self.trail.lines())
            # Appended, and a line written in two halves.
            a = self.trail.request(8000, "wrapKey", identity="etl", key="etl-a", version=VA2)
            self.assertEqual(read_lines(p, 1), [a])
            b = self.trail.line("token", 8001, state="lost", message="gone")
            with open(self.trail.path, "ab") as f:
                f.write(b[:20].encode())
                f.flush()
                time.sleep(0.6)
                f.write(b[20:].encode() + b"\n")
            self.assertEqual(read_lines(p, 1), [b])
            # The last record of the old file, the rotation and the
            # first record of the new file: all seen, in order.
            c = self.trail.checkpoint(8002, "rotation")
            self.trail.rotate(8002)
            d = self.trail.add("token", 8003, state="back", message="here")
            e = self.trail.request(8004, "unwrapKey", identity="etl", key="etl-a", version=VA2)
            self.assertEqual(read_lines(p, 3), [c, d, e])
        finally:
            p.send_signal(signal.SIGTERM)
            rc = p.wait(timeout=10)
            err = p.stderr.read().decode()
            p.stdout.close()
            p.stderr.close()
        self.assertEqual(rc, 0, err)

    def test_follow_reads_a_file_that_shrank_again_from_the_start(self):
        n = len(read(self.trail.path).splitlines())
        p = subprocess.Popen([AUDIT, "query", "--json", "--follow", self.trail.path],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            self.assertEqual(read_lines(p, n), self.trail.lines()[-n:])
            line = self.trail.line("stop", 9000)
            with open(self.trail.path, "w") as f:
                f.write(line + "\n")
            self.assertEqual(read_lines(p, 1), [line])
        finally:
            p.send_signal(signal.SIGTERM)
            rc = p.wait(timeout=10)
            err = p.stderr.read().decode()
            p.stdout.close()
            p.stderr.close()
        self.assertEqual(rc, 0, err)
        self.assertIn(self.trail.path + " shrank", err)

    def test_follow_applies_filters_and_stops_on_sigint(self):
        p = subprocess.Popen([AUDIT, "query", "--json", "--follow", "--op", "wrapKey",
                              "--result", "ok", self.dir],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            self.assertEqual(len(read_lines(p, 2)), 2)
            self.trail.request(8000, "unwrapKey", identity="etl", key="etl-a", version=VA2)
            w = self.trail.request(8001, "wrapKey", identity="etl", key="etl-a", version=VA2)
            self.assertEqual(read_lines(p, 1), [w])
        finally:
            p.send_signal(signal.SIGINT)
            rc = p.wait(timeout=10)
            p.stdout.close()
            p.stderr.close()
        self.assertEqual(rc, 0)

    def test_bad_usage_exits_2_and_says_what(self):
        for args, words in [
            (["--since", "yesterday"], "--since 'yesterday': not an RFC 3339 time"),
            (["--since", "2026-02-30"], "not an RFC 3339 time"),
            (["--uid", "-1"], "--uid '-1': not a number"),
            (["--op", "a", "--op", "b"], "--op given twice"),
            (["--colour"], "unknown option"),
            ([], None),
        ]:
            with self.subTest(args=args):
                r = run("query", *args, *([self.dir] if words else []))
                self.assertEqual(r.returncode, 2)
                self.assertIn(words or "no FILE or DIR", r.stderr)

    def test_help_prints_the_synopsis_and_exits_0(self):
        r = run("query", "--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("usage: keybroker-audit query [FILTERS] [--json] [--follow] FILE|DIR",
                      r.stdout)
        for opt in ("--since", "--until", "--identity", "--key", "--version", "--op",
                    "--event", "--result", "--uid", "--unit", "--correlation-id"):
            self.assertIn(opt, r.stdout)

    def test_a_path_that_does_not_exist_exits_2(self):
        r = run("query", os.path.join(self.dir, "nope"))
        self.assertEqual(r.returncode, 2)
        self.assertIn("nope: No such file or directory", r.stderr)

    def test_a_directory_without_a_trail_exits_2(self):
        empty = os.path.join(self.dir, "empty")
        os.mkdir(empty)
        r = run("query", empty)
        self.assertEqual(r.returncode, 2)
        self.assertIn("no audit trail in it", r.stderr)


def read_lines(p, n, timeout=10):
    """n lines from p's stdout, or fails after timeout seconds."""
    out, buf = [], b""
    deadline = time.monotonic() + timeout
    fd = p.stdout.fileno()
    while len(out) < n:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError("got %d of %d lines: %r" % (len(out), n, out))
        chunk = os.read(fd, 65536)
        if not chunk:
            raise AssertionError("output ended after %d lines: %r" % (len(out), out))
        buf += chunk
        while b"\n" in buf and len(out) < n:
            line, buf = buf.split(b"\n", 1)
            out.append(line.decode())
    if buf:
        raise AssertionError("more than %d lines: %r" % (n, buf))
    return out


class Files(Base):
    def test_rotated_files_are_read_in_order_with_seq_compared_as_numbers(self):
        t = Trail(self.dir)
        for i in range(9):
            t.add("token", i, state="lost", message="m%d" % i)
        t.rotate(0)  # audit-20261130T050000Z-0.jsonl: seq 0-8
        t.add("token", 9, state="back", message="m9")
        t.rotate(1)  # audit-20261130T050001Z-9.jsonl: seq 9
        t.add("token", 10, state="lost", message="m10")
        t.add("token", 11, state="back", message="m11")
        # Two rotations in one second: -9 before -10, though "1" < "9".
        t.rotate(1)  # audit-20261130T050001Z-10.jsonl: seq 10-11
        t.add("stop", 12)
        names = sorted(os.listdir(self.dir))
        self.assertEqual(names[:2], ["audit-20261130T050000Z-0.jsonl",
                                     "audit-20261130T050001Z-10.jsonl"])
        r = run("query", "--json", self.dir)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.splitlines(), t.lines())

    def test_malformed_line_exits_2_naming_file_and_line(self):
        t = Trail(self.dir)
        t.add("stop", 1)
        t.add("stop", 2)
        good = read(t.path)
        for bad, words in [
            ("{not json", "not JSON"),
            ("[1,2]", "not a JSON object"),
            ('{"time":"%s","event":"stop"}' % at(3), '"seq" is missing'),
            ('{"seq":2,"time":"yesterday","event":"stop"}', '"time" is not an RFC 3339 time'),
            ('{"seq":2,"time":"%s","event":"stop","seq":3}' % at(3), "duplicate"),
            ('{"seq":2,"time":"%s","event":"request","peer":{"uid":"root"}}' % at(3),
             '"peer.uid" is not an integer'),
            ('{"seq":2,"time":"%s","event":"request","key":7}' % at(3), '"key" is not a string'),
            ("", "empty line"),
        ]:
            with self.subTest(bad=bad):
                with open(t.path, "w") as f:
                    f.write(good + bad + "\n")
                    f.write(t.line("stop", 4) + "\n")
                for cmd in ("query", "report"):
                    r = run(cmd, self.dir)
                    self.assertEqual(r.returncode, 2, r.stderr)
                    self.assertIn(t.path + ":3: ", r.stderr)
                    self.assertIn(words, r.stderr)

    def test_a_last_line_cut_short_exits_2_and_says_so(self):
        t = Trail(self.dir)
        t.add("stop", 1)
        with open(t.path, "a") as f:
            f.write(t.line("stop", 2)[:30])
        r = run("query", "--json", self.dir)
        self.assertEqual(r.returncode, 2)
        self.assertIn(t.path + ":2: not JSON", r.stderr)
        self.assertIn("the file ends inside this line", r.stderr)

    def test_a_whole_last_record_without_its_newline_is_read(self):
        t = Trail(self.dir)
        t.add("stop", 1)
        with open(t.path, "a") as f:
            f.write(t.line("stop", 2))
        r = run("query", "--json", self.dir)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.splitlines(), t.lines())

    def test_a_line_of_exactly_the_limit_is_read(self):
        t = Trail(self.dir)
        t.add("stop", 0)
        prev, seq = t.prev, t.seq
        probe = t.line("token", 1, state="lost", message="")
        t.records.pop()
        t.prev, t.seq = prev, seq
        t.add("token", 1, state="lost", message="x" * (LINE_MAX - len(probe)))
        self.assertEqual(len(t.lines()[-1].encode()), LINE_MAX)
        r = run("query", "--json", self.dir)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.splitlines(), t.lines())

    def test_an_over_long_line_is_refused(self):
        t = Trail(self.dir)
        t.add("stop", 0)
        t.add("token", 1, state="lost", message="x" * LINE_MAX)
        t.add("stop", 2)
        for cmd in ("query", "report"):
            r = run(cmd, self.dir)
            self.assertEqual(r.returncode, 2)
            self.assertIn("%s:2: line longer than %d bytes" % (t.path, LINE_MAX), r.stderr)

    def test_a_huge_unterminated_line_is_refused_at_the_limit(self):
        path = os.path.join(self.dir, "audit.jsonl")
        with open(path, "wb") as f:
            f.write(b"{" + b" " * (64 * LINE_MAX))
        r = run("query", self.dir)
        self.assertEqual(r.returncode, 2)
        self.assertIn("%s:1: line longer than" % path, r.stderr)


class Hostile(Base):
    # Short enough not to be cut in any table.
    KEY = "\u009b1\u202ea\x1b[\nc\u200b"

    def setUp(self):
        super().setUp()
        self.trail = Trail(self.dir)
        self.trail.add("start", 0, version="0.1.0", policy="ab" * 32, grants=GRANTS,
                       keyid="k" * 43)
        self.trail.request(10, "unwrapKey", "Forbidden", identity="etl", key=self.KEY,
                           unit="\x1b\x7f\u2028.svc",
                           message="lacks\runwrapKey\x1b[0m\nseq 99 forged",
                           correlation="c\x7f-\u2028x")
        self.trail.request(20, "createKey", identity="ops", key=self.KEY, version=VB1, uid=0)

    def check_safe(self, out):
        for bad in ("\x1b", "\r", "\x7f", "\u009b", "\u202e", "\u200b", "\u2028"):
            self.assertNotIn(bad, out)
        self.assertIn("\\x1b", out)
        self.assertIn("\\u009b", out)
        self.assertIn("\\u202e", out)
        self.assertFalse([line for line in out.splitlines() if line.startswith("seq 99")])

    def test_control_characters_in_a_key_name_do_not_reach_the_table(self):
        r = run("query", self.dir)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.check_safe(r.stdout)
        self.assertEqual(len(r.stdout.splitlines()), 1 + 3)

    def test_control_characters_in_a_key_name_do_not_reach_the_report(self):
        r = run("report", self.dir)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.check_safe(r.stdout)
        denials = rows(section(r.stdout, "Denials"))
        self.assertEqual(len(denials), 1)
        self.assertEqual(denials[0][5], "\\u009b1\\u202ea\\x1b[\\x0ac\\u200b")
        self.assertEqual(denials[0][7], "lacks\\x0dunwrapKey\\x1b[0m\\x0aseq 99 forged")

    def test_control_characters_in_a_file_name_do_not_reach_stderr(self):
        name = os.path.join(self.dir, "bad\x1b[31m.jsonl")
        with open(name, "w") as f:
            f.write("nonsense\n")
        r = run("query", name)
        self.assertEqual(r.returncode, 2)
        self.assertNotIn("\x1b", r.stderr)
        self.assertIn("bad\\x1b[31m.jsonl:1: not JSON", r.stderr)

    def test_markup_in_a_key_name_is_escaped_in_the_html_page(self):
        key = "<script>alert(1)</script>"
        self.trail.request(30, "wrapKey", "Forbidden", identity="etl", key=key,
                           message="<img src=x onerror=alert(2)>")
        self.trail.request(40, "createKey", identity="ops", key=key, version=VA1, uid=0)
        page = os.path.join(self.dir, "report.html")
        r = run("report", "--html", page, self.dir)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "")
        self.assertIn("wrote " + page, r.stderr)
        with open(page, encoding="utf-8") as f:
            text = f.read()
        p = Page()
        p.feed(text)
        p.close()
        self.assertEqual(p.errors, [])
        self.assertEqual(p.stack, [])
        self.assertNotIn("script", p.tags)
        self.assertNotIn("img", p.tags)
        self.assertNotIn("<script>", text)
        self.assertIn("&lt;script&gt;alert(1)&lt;/script&gt;", text)
        self.assertIn(key, "".join(p.text))
        self.assertIn("<img src=x onerror=alert(2)>", "".join(p.text))
        for bad in ("\x1b", "\u009b", "\u202e"):
            self.assertNotIn(bad, text)


class Report(Base):
    def setUp(self):
        super().setUp()
        self.trail = write_scenario(self.dir)

    def report(self, *args):
        r = run("report", *args, self.dir)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def test_usage_counts_per_identity_version_and_op(self):
        usage = rows(section(self.report(), "Usage"))
        got = {tuple(r[:7]) for r in usage}
        self.assertEqual(got, {
            ("-", "etl-a", "-", "getKey", "0", "1", "0"),
            ("etl", "cmk", "-", "unwrapKey", "0", "1", "0"),
            ("etl", "etl-a", VA1, "unwrapKey", "1", "0", "0"),
            ("etl", "etl-a", VA2, "unwrapKey", "1", "0", "0"),
            ("etl", "etl-a", VA2, "wrapKey", "2", "0", "1"),
            ("ops", "-", "-", "getKeys", "1", "0", "0"),
            ("ops", "etl-a", VA1, "createKey", "1", "0", "0"),
            ("ops", "etl-a", VA2, "rotateKey", "1", "0", "0"),
            ("ops", "etl-b", VB1, "createKey", "1", "0", "0"),
        })
        self.assertEqual(len(usage), len(got))
        wrap = next(r for r in usage if r[2] == VA2 and r[3] == "wrapKey")
        self.assertEqual(wrap[7:], [short(30), short(3600)])
        # Sorted by identity, key, version, op.
        self.assertEqual(usage, sorted(usage, key=lambda r: r[:4]))

    def test_usage_honours_since_and_until(self):
        usage = rows(section(self.report("--since", at(3000), "--until", at(7200)), "Usage"))
        self.assertEqual({tuple(r[:7]) for r in usage}, {
            ("etl", "etl-a", VA2, "wrapKey", "0", "0", "1"),
            ("ops", "-", "-", "getKeys", "1", "0", "0"),
            ("ops", "etl-b", VB1, "createKey", "1", "0", "0"),
        })

    def test_denials_list_every_refused_request(self):
        denials = rows(section(self.report(), "Denials"))
        self.assertEqual(denials, [
            [at(50), "etl", "1000", "etl.service", "unwrapKey", "cmk", "Forbidden",
             "identity 'etl' lacks unwrapKey on key 'cmk'"],
            [at(55), "-", "1001", "evil.service", "getKey", "etl-a", "Unauthorized",
             "no identity token"],
            [at(3600), "etl", "1000", "etl.service", "wrapKey", "etl-a", "BadParameter",
             "value is not base64url"],
        ])

    def test_unused_versions_since_the_start_of_the_range(self):
        unused = rows(section(self.report(), "Key versions"))
        self.assertEqual([r[:4] for r in unused], [
            ["break", VX, short(7400), "never"],
            ["etl-b", VB1, short(3700), "never"],
        ])
        self.assertTrue(all("newest" in r[4] for r in unused))

    def test_unused_versions_since_a_cutoff_include_the_rotated_out_one(self):
        unused = rows(section(self.report("--unused-since", at(60)), "Key versions"))
        self.assertEqual([r[:4] for r in unused], [
            ["break", VX, short(7400), "never"],
            ["etl-a", VA1, short(10), short(40)],
            ["etl-b", VB1, short(3700), "never"],
        ])
        self.assertEqual(len(unused[1]), 4)  # VA1 is not its key's newest

    def test_unused_versions_see_nothing_from_until_on(self):
        # Before 3650: VB1 and VX do not exist yet, and VA2's only use
        # since the cut-off failed.
        unused = rows(section(self.report("--until", at(3650), "--unused-since", at(60)),
                              "Key versions"))
        self.assertEqual([r[:4] for r in unused], [
            ["etl-a", VA1, short(10), short(40)],
            ["etl-a", VA2, short(20), short(31)],
        ])
        self.assertEqual(unused[1][4], "newest version seen: keep")

    def test_unused_versions_leave_out_a_purged_key(self):
        self.trail.request(7600, "purgeDeletedKey", identity="ops", key="etl-b", uid=0)
        unused = rows(section(self.report(), "Key versions"))
        self.assertEqual([r[:2] for r in unused], [["break", VX]])

    def test_unused_permissions_against_the_last_grants(self):
        perms = rows(section(self.report(), "Identities holding"))
        self.assertEqual(perms, [
            ["etl", "etl-*", "get, wrapKey, unwrapKey", "get"],
            ["ops", "*", "list, create, rotate, delete", "delete"],
            ["reader", "cmk", "get", "get"],
        ])
        note = section(self.report(), "Identities holding")[0]
        self.assertIn("reload record at %s:" % self.trail.path, note)

    def test_unused_permissions_since_a_cutoff(self):
        perms = rows(section(self.report("--unused-since", at(3000)), "Identities holding"))
        self.assertEqual([r[0::3] for r in perms], [
            ["etl", "get, wrapKey"],  # wrapKey only failed since
            ["ops", "rotate, delete"],
            ["reader", "get"],
        ])

    def test_unused_permissions_count_a_use_only_on_a_granted_key(self):
        # etl's get on a key outside etl-* does not use its etl-* grant.
        self.trail.add("reload", 7600, result="ok", policy="ef" * 32, grants=GRANTS + [
            {"identity": "etl", "keys": ["cmk"], "permissions": ["get"]}])
        self.trail.request(7700, "getKey", identity="etl", key="cmk", version=VX)
        perms = rows(section(self.report(), "Identities holding"))
        self.assertEqual([r[0::3] for r in perms], [
            ["etl", "get"], ["ops", "delete"], ["reader", "get"]])
        self.assertEqual(perms[0][1], "etl-*")

    def test_unused_permissions_count_get_audit_status_as_read_audit(self):
        self.trail.add("reload", 7600, result="ok", policy="ef" * 32, grants=GRANTS + [
            {"identity": "auditor", "keys": ["*"], "permissions": ["list", "readAudit"]}])
        self.trail.request(7700, "getAuditStatus", identity="auditor")
        perms = rows(section(self.report(), "Identities holding"))
        self.assertEqual(perms[-1], ["auditor", "*", "list, readAudit", "list"])

    def test_a_refused_reload_does_not_change_the_grants(self):
        self.trail.add("reload", 7600, result="BadConfig", message="syntax error",
                       policy="ef" * 32, grants=[])
        perms = rows(section(self.report(), "Identities holding"))
        self.assertEqual(len(perms), 3)

    def test_summary_counts_records_and_requests(self):
        summary = section(self.report(), "Summary")
        text = "\n".join(summary)
        self.assertIn("%d read, %d in the range" % (len(self.trail.records),
                                                     len(self.trail.records)), text)
        self.assertIn("8 ok, 2 denied (Unauthorized, Forbidden), 1 failed (other codes)", text)
        self.assertIn("event request", text)

    def test_html_page_is_self_contained_with_a_chart_and_the_tables(self):
        page = os.path.join(self.dir, "out.html")
        r = run("report", "--html", page, self.dir)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(os.stat(page).st_mode & 0o777, 0o600)
        with open(page, encoding="utf-8") as f:
            text = f.read()
        p = Page()
        p.feed(text)
        p.close()
        self.assertEqual((p.errors, p.stack), ([], []))
        self.assertEqual(p.tags.get("svg"), 1)
        self.assertGreater(p.tags.get("rect", 0), 3)
        self.assertNotIn("script", p.tags)
        for name, value in p.attrs:
            self.assertNotIn(name, ("src", "href"), (name, value))
        body = "".join(p.text)
        self.assertIn("requests per", body)  # the y axis
        self.assertIn("time (UTC)", body)  # the x axis
        for title in ("Usage", "Denials", "Key versions", "Identities holding"):
            self.assertIn(title, body)
        self.assertIn("value is not base64url", body)
        self.assertEqual(p.tags.get("table"), 5)

    def test_html_never_replaces_a_file_unless_forced(self):
        page = os.path.join(self.dir, "out.html")
        with open(page, "w") as f:
            f.write("keep")
        r = run("report", "--html", page, self.dir)
        self.assertEqual(r.returncode, 2)
        self.assertIn("exists", r.stderr)
        self.assertNotIn("wrote", r.stderr)
        self.assertEqual(read(page), "keep")
        r = run("report", "--html", page, "--force", self.dir)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(read(page).startswith("<!DOCTYPE html>"))

    def test_help_and_bad_usage(self):
        r = run("report", "--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("usage: keybroker-audit report [--since T] [--until T] [--unused-since T]",
                      r.stdout)
        r = run("report", "--until", "2026-11-29", "--since", "2026-11-30", self.dir)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--until is not after --since", r.stderr)
        r = run("report", "--force", self.dir)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--force goes with --html", r.stderr)


if __name__ == "__main__":
    unittest.main()
