#!/usr/bin/env python3
"""Runs the Python client example against a real toolgated.

    python3 test_example.py --toolgated build/toolgated --proto-root proto

Starts toolgated on free loopback ports with policy.yaml, runs example.py
against it, then checks the client's answers one by one: args_json and the
schema, limits, a denied tool, the approval round trip and each way an
approval can fail to fit a call, WaitApproval's timeout, ListVisibleTools.

Needs Debian's python3-grpcio and python3-protobuf. Without them it exits
77 (ctest: skipped) with a message, or 1 when CI=true: CI must run it.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SKIP = 77

try:
    import grpc  # noqa: F401
    import google.protobuf  # noqa: F401
except ImportError as e:
    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    print(f"test_example: {e}: install python3-grpcio and python3-protobuf "
          f"(scripts/install-deps.sh) and run with Debian's python3 ({sys.executable} here)",
          file=sys.stderr)
    sys.exit(1 if in_ci else SKIP)

sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from toolgate_client import ToolgateClient, load_protos  # noqa: E402

OPTS = None  # command-line options, set in __main__
# Generous: a sanitizer build on a busy machine is slow to start and to answer.
START_TIMEOUT = 60.0
CALL_TIMEOUT = 30.0


class Toolgated:
    """A toolgated child on free loopback ports, its output in a log file."""

    def __init__(self, binary, policy, workdir):
        self.log_path = os.path.join(workdir, "toolgated.log")
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [binary, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
             "--policy", policy],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if not k.startswith("TOOLGATE_")})
        deadline = time.monotonic() + START_TIMEOUT
        self.address = self.admin_address = None
        while time.monotonic() < deadline and self.process.poll() is None:
            log = self.log()
            listening = re.search(r"toolgated listening on (\S+)", log)
            admin = re.search(r"toolgated admin listening on (\S+)", log)
            if listening and admin:
                self.address, self.admin_address = listening.group(1), admin.group(1)
                return
            time.sleep(0.01)  # polling the log for a condition, not waiting out a window
        self.stop()
        raise RuntimeError(f"toolgated did not start listening; log:\n{self.log()}")

    def log(self):
        with open(self.log_path, "r", errors="replace") as f:
            return f.read()

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


class PythonClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.workdir = tempfile.mkdtemp(prefix="toolgate-py-test-")
        cls.pb = load_protos(OPTS.proto_root, os.path.join(cls.workdir, "gen"))
        cls.server = Toolgated(OPTS.toolgated, os.path.join(HERE, "policy.yaml"), cls.workdir)
        cls.client = ToolgateClient(cls.server.address, admin_target=cls.server.admin_address,
                                    timeout=CALL_TIMEOUT)

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        cls.server.stop()
        if any(not r.wasSuccessful() for r in getattr(cls, "_results", [])):
            print(cls.server.log(), file=sys.stderr)
        shutil.rmtree(cls.workdir, ignore_errors=True)

    def run(self, result=None):
        result = super().run(result)
        type(self)._results = getattr(type(self), "_results", []) + [result]
        return result

    # Decision and state names, for readable assertions.
    def d(self, response):
        return self.client.decision_name(response.decision)

    def s(self, approval):
        return self.client.state_name(approval.state)

    def test_example_runs_and_gets_what_the_policy_says(self):
        r = subprocess.run(
            [sys.executable, os.path.join(HERE, "example.py"), "--target", self.server.address,
             "--admin-target", self.server.admin_address, "--grant", "example-run",
             "--timeout", str(CALL_TIMEOUT),
             "--proto-root", OPTS.proto_root],
            capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("search_docs: ALLOW", r.stdout)
        self.assertIn("limit search_docs: 1/2 left", r.stdout)
        self.assertIn("violation /query", r.stdout)
        self.assertIn("run_command with the approval: ALLOW", r.stdout)
        self.assertIn("visible run_command: REQUIRE_APPROVAL (tools.run_command)", r.stdout)
        self.assertIn("every answer as policy.yaml says", r.stdout)

    def test_args_json_schema_and_limits(self):
        c, g = self.client, "g-limits"
        first = c.check("search_docs", g, {"query": "a"})
        self.assertEqual(self.d(first), "ALLOW")
        self.assertEqual(first.rule, "tools.search_docs")
        self.assertEqual(first.policy_version, "python-example-1")
        self.assertEqual([(l.counter, l.max, l.remaining) for l in first.limits],
                         [("search_docs", 2, 1)])
        # Refused arguments consume nothing.
        too_long = c.check("search_docs", g, {"query": "é" * 101})
        self.assertEqual(self.d(too_long), "DENY")
        self.assertEqual([v.path for v in too_long.violations], ["/query"])
        extra = c.check("search_docs", g, {"query": "a", "limit": 5})
        self.assertEqual(self.d(extra), "DENY")
        self.assertEqual([v.path for v in extra.violations], ["/limit"])
        self.assertEqual(self.d(c.check("search_docs", g, {"query": "b"})), "ALLOW")
        limited = c.check("search_docs", g, {"query": "c"})
        self.assertEqual(self.d(limited), "RATE_LIMITED")
        self.assertGreater(limited.retry_after.seconds, 0)
        # A dry run decides without consuming (another grant: its own counter).
        self.assertEqual(self.d(c.check("search_docs", "g-dry", {"query": "a"}, dry_run=True)),
                         "ALLOW")

    def test_denied_and_unlisted_tools(self):
        r = self.client.check("delete_repository", "g-deny", {"name": "x"})
        self.assertEqual(self.d(r), "DENY")
        self.assertEqual(r.reason, "Agents may not delete repositories")
        unlisted = self.client.check("format_disk", "g-deny")
        self.assertEqual(self.d(unlisted), "DENY")
        self.assertEqual(unlisted.rule, "default")

    def test_calls_that_cannot_be_decided_are_rpc_errors(self):
        with self.assertRaises(grpc.RpcError) as no_grant:
            self.client.check("search_docs", "")
        self.assertEqual(no_grant.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        # args_json that is not JSON: INVALID_ARGUMENT with the byte offset.
        request = self.pb.decision.CheckRequest(tool="search_docs", grant="g",
                                                args_json='{"query": "a",}')
        with self.assertRaises(grpc.RpcError) as bad_json:
            self.client._check(request, timeout=CALL_TIMEOUT)
        self.assertEqual(bad_json.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("byte", bad_json.exception.details())
        # NaN is not JSON: refused before anything is sent.
        with self.assertRaises(ValueError):
            self.client.check("search_docs", "g", {"query": float("nan")})

    def approve(self, approval_id, approve=True, note=""):
        return self.client.decide_approval(approval_id, approve, "test-approver", note)

    def pending(self, grant, call, session="s-1"):
        r = self.client.check("run_command", grant, call, session=session)
        self.assertEqual(self.d(r), "REQUIRE_APPROVAL")
        self.assertEqual(r.reason, "Shell commands need a human")
        self.assertRegex(r.approval_id, r"^apr_[0-9a-f]{32}$")
        return r.approval_id

    def test_approval_round_trip(self):
        c, g, call = self.client, "g-approval", {"command": "ls -la"}
        approval_id = self.pending(g, call)
        # The same call while pending: the same approval, not a new one.
        self.assertEqual(self.pending(g, call), approval_id)
        # Before a decision the call with the id is not admitted.
        early = c.check("run_command", g, call, session="s-1", approval_id=approval_id)
        self.assertEqual(self.d(early), "DENY")

        # WaitApproval returns as soon as the approver decides.
        waited = {}

        def wait():
            started = time.monotonic()
            waited["approval"] = c.wait_approval(approval_id, wait_seconds=60)
            waited["seconds"] = time.monotonic() - started

        waiter = threading.Thread(target=wait)
        waiter.start()
        decided = self.approve(approval_id, note="ok for now")
        self.assertEqual(self.s(decided), "APPROVED")
        waiter.join(timeout=90)
        self.assertFalse(waiter.is_alive(), "WaitApproval did not return")
        self.assertEqual(self.s(waited["approval"]), "APPROVED")
        self.assertEqual(waited["approval"].decided_by, "test-approver")
        self.assertLess(waited["seconds"], 60)  # not at its timeout
        print(f"\nWaitApproval returned {waited['seconds'] * 1000:.0f} ms after it started "
              "(approved meanwhile)", file=sys.stderr)

        # The identical call with the id: ALLOW once, then DENY.
        allowed = c.check("run_command", g, call, session="s-1", approval_id=approval_id)
        self.assertEqual(self.d(allowed), "ALLOW", allowed.reason)
        used = c.check("run_command", g, call, session="s-1", approval_id=approval_id)
        self.assertEqual(self.d(used), "DENY")
        self.assertIn("used", used.reason)
        got = c.get_approval(approval_id)
        self.assertEqual(self.s(got), "USED")
        self.assertEqual(got.used_by_decision, allowed.decision_id)
        self.assertEqual(got.note, "ok for now")

    def test_an_approval_admits_only_its_own_call(self):
        c, g, call = self.client, "g-binding", {"command": "git status"}
        approval_id = self.pending(g, call)
        self.approve(approval_id)
        for what, kwargs in [
            ("arguments", dict(grant=g, args={"command": "git push"}, session="s-1")),
            ("grant", dict(grant="g-other", args=call, session="s-1")),
            ("session", dict(grant=g, args=call, session="s-2")),
        ]:
            with self.subTest(what):
                r = c.check("run_command", kwargs["grant"], kwargs["args"],
                            session=kwargs["session"], approval_id=approval_id)
                self.assertEqual(self.d(r), "DENY", r.reason)
                self.assertIn(f"different {what}", r.reason)
        # None of those used it up: the right call still goes through.
        self.assertEqual(
            self.d(c.check("run_command", g, call, session="s-1", approval_id=approval_id)),
            "ALLOW")

    def test_a_denied_approval_says_who_denied_it(self):
        c, g, call = self.client, "g-denied", {"command": "rm -rf"}
        approval_id = self.pending(g, call)
        self.assertEqual(self.s(self.approve(approval_id, approve=False, note="not today")),
                         "DENIED")
        r = c.check("run_command", g, call, session="s-1", approval_id=approval_id)
        self.assertEqual(self.d(r), "DENY")
        self.assertIn("test-approver", r.reason)
        self.assertIn("not today", r.reason)
        # Deciding again is refused.
        with self.assertRaises(grpc.RpcError) as again:
            self.approve(approval_id)
        self.assertEqual(again.exception.code(), grpc.StatusCode.FAILED_PRECONDITION)

    def test_wait_approval_returns_at_its_timeout(self):
        approval_id = self.pending("g-wait", {"command": "uptime"})
        started = time.monotonic()
        approval = self.client.wait_approval(approval_id, wait_seconds=0.3)
        self.assertEqual(self.s(approval), "PENDING")
        self.assertGreaterEqual(time.monotonic() - started, 0.3)
        with self.assertRaises(grpc.RpcError) as unknown:
            self.client.wait_approval("apr_" + "0" * 32, wait_seconds=0.1)
        self.assertEqual(unknown.exception.code(), grpc.StatusCode.NOT_FOUND)

    def test_list_visible_tools(self):
        tools = ["search_docs", "run_command", "delete_repository", "format_disk"]
        visible = self.client.list_visible_tools("g-visible", tools)
        self.assertEqual({t: self.client.decision_name(v.decision) for t, v in visible.items()},
                         {"search_docs": "ALLOW", "run_command": "REQUIRE_APPROVAL",
                          "delete_repository": "DENY", "format_disk": "DENY"})
        self.assertEqual(visible["run_command"].rule, "tools.run_command")
        self.assertEqual(visible["format_disk"].rule, "default")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--toolgated", required=True, help="the toolgated binary")
    parser.add_argument("--proto-root", default=os.path.join(HERE, "..", "..", "..", "proto"))
    OPTS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0], "-v"] + rest)
