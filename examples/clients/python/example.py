#!/usr/bin/env python3
"""What a gateway in Python does with toolgate: check calls (arguments as
args_json), take a call that needs a human through its approval, and ask
which tools a grant may see.

Run against a toolgated on this directory's policy.yaml:

    build/toolgated --policy examples/clients/python/policy.yaml &
    python3 examples/clients/python/example.py   # localhost:50051, admin localhost:50052

It checks each answer against what policy.yaml says and exits 1 on a
surprise (its test runs it that way).
"""

import argparse
import os
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from toolgate_client import ToolgateClient, load_protos  # noqa: E402


def expect(what, got, want):
    print(f"{what}: {got}")
    if got != want:
        sys.exit(f"example: {what}: expected {want}, got {got}")


def demonstrate(client, grant):
    name = client.decision_name

    # 1. A call with arguments, sent as JSON text.
    r = client.check("search_docs", grant, {"query": "rate limits"})
    expect("search_docs", name(r.decision), "ALLOW")
    for limit in r.limits:
        # int64 fields are plain Python ints here (no Long objects).
        print(f"  limit {limit.counter}: {limit.remaining}/{limit.max} left")

    # 2. Arguments the schema refuses: DENY, every violation listed.
    r = client.check("search_docs", grant, {"query": "x" * 150})
    expect("search_docs with a 150-character query", name(r.decision), "DENY")
    for v in r.violations:
        print(f"  violation {v.path}: {v.message}")
    expect("violation paths", [v.path for v in r.violations], ["/query"])

    # 3. A denied tool.
    r = client.check("delete_repository", grant, {"name": "toolgate"})
    expect("delete_repository", name(r.decision), "DENY")
    print(f"  reason: {r.reason}")

    # 4. A call that needs a human. The gateway holds it open with
    # WaitApproval while an approver (here a thread; in life a person with
    # `toolgate approvals approve ID`) approves it on the admin listener, then
    # repeats the identical call with the approval's id.
    call = {"command": "ls -la"}
    r = client.check("run_command", grant, call, session="s-1")
    expect("run_command", name(r.decision), "REQUIRE_APPROVAL")
    approval_id = r.approval_id
    print(f"  approval {approval_id}: {r.reason}")
    if not approval_id:
        sys.exit("example: REQUIRE_APPROVAL without an approval_id")

    approver = threading.Thread(target=client.decide_approval,
                                args=(approval_id, True, "example-approver", "looks fine"))
    started = time.monotonic()
    approver.start()
    approval = client.wait_approval(approval_id, wait_seconds=30)
    approver.join()
    expect("approval after WaitApproval", client.state_name(approval.state), "APPROVED")
    print(f"  decided by {approval.decided_by} ({approval.note}); "
          f"WaitApproval returned after {1000 * (time.monotonic() - started):.0f} ms")

    r = client.check("run_command", grant, call, session="s-1", approval_id=approval_id)
    expect("run_command with the approval", name(r.decision), "ALLOW")
    r = client.check("run_command", grant, call, session="s-1", approval_id=approval_id)
    expect("run_command with the approval again", name(r.decision), "DENY")
    print(f"  reason: {r.reason}")

    # 5. Which tools this grant may see (e.g. to filter MCP's tools/list).
    tools = ["search_docs", "run_command", "delete_repository", "format_disk"]
    visible = client.list_visible_tools(grant, tools)
    for tool in tools:
        print(f"visible {tool}: {name(visible[tool].decision)} ({visible[tool].rule})")
    expect("visible tools", {t: name(v.decision) for t, v in visible.items()},
           {"search_docs": "ALLOW", "run_command": "REQUIRE_APPROVAL",
            "delete_repository": "DENY", "format_disk": "DENY"})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="localhost:50051", help="toolgated --listen")
    parser.add_argument("--admin-target", default="localhost:50052",
                        help="toolgated --admin-listen (ApprovalService)")
    parser.add_argument("--grant", default="python-example")
    parser.add_argument("--timeout", type=float, default=2.0, help="deadline of each call (s)")
    parser.add_argument("--proto-root", default=os.path.join(HERE, "..", "..", "..", "proto"),
                        help="the directory holding toolgate/v1/*.proto")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="toolgate-py-") as generated:
        load_protos(opts.proto_root, generated)
        client = ToolgateClient(opts.target, admin_target=opts.admin_target,
                                timeout=opts.timeout)
        try:
            demonstrate(client, opts.grant)
        finally:
            client.close()
    print("example: every answer as policy.yaml says")


if __name__ == "__main__":
    main()
