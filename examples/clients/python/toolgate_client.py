"""A small toolgate client in Python, on Debian's python3-grpcio and python3-protobuf.

No grpc_tools: the message classes come from protoc --python_out (Debian's
protobuf-compiler), and each method is called through the channel by its
full name, with the message classes' own serializers:

    protos = load_protos("proto")            # toolgate/v1/*.proto -> *_pb2 modules
    client = ToolgateClient("localhost:50051", admin_target="localhost:50052")
    r = client.check("run_command", "agent-7", {"command": "ls"})
    if r.decision == protos.decision.DECISION_REQUIRE_APPROVAL: ...

Arguments go as args_json (JSON text), not as the google.protobuf.Struct
field `args`: the server reads the text with a strict parser and decides
exactly as for the same Struct, and nothing is lost in a conversion.
"""

import glob
import importlib
import json
import os
import subprocess
import sys
import tempfile
import types

import grpc

# How long a call may take unless the caller says otherwise (seconds).
DEFAULT_TIMEOUT = 2.0


def load_protos(proto_root, out_dir=None):
    """Generates Python message classes for toolgate/v1/*.proto under
    `proto_root` with protoc, into `out_dir` (a new temporary directory by
    default), and imports them. Returns a namespace with `decision` and
    `approval` (the decision_pb2 and approval_pb2 modules)."""
    proto_root = os.path.abspath(proto_root)
    sources = sorted(glob.glob(os.path.join(proto_root, "toolgate", "v1", "*.proto")))
    if not sources:
        raise FileNotFoundError(f"no toolgate/v1/*.proto under {proto_root}")
    out_dir = out_dir or tempfile.mkdtemp(prefix="toolgate-py-")
    os.makedirs(out_dir, exist_ok=True)
    # protoc finds google/protobuf/*.proto (Struct, Duration, Timestamp) in
    # its own include directory; the generated code imports them from the
    # python3-protobuf package.
    subprocess.run(["protoc", f"--proto_path={proto_root}", f"--python_out={out_dir}", *sources],
                   check=True)
    if out_dir not in sys.path:
        sys.path.insert(0, out_dir)
    return types.SimpleNamespace(
        decision=importlib.import_module("toolgate.v1.decision_pb2"),
        approval=importlib.import_module("toolgate.v1.approval_pb2"),
    )


def _pb():
    # The modules load_protos imported (it must have run first).
    return (importlib.import_module("toolgate.v1.decision_pb2"),
            importlib.import_module("toolgate.v1.approval_pb2"))


def _unary(channel, method, request_class, response_class):
    return channel.unary_unary(method,
                               request_serializer=request_class.SerializeToString,
                               response_deserializer=response_class.FromString)


class ToolgateClient:
    """DecisionService on `target`; ApprovalService on `admin_target` (the
    server's --admin-listen), sending `admin_token` when the server was
    started with --admin-token-file. Plaintext channels; for TLS pass
    `credentials` (grpc.ssl_channel_credentials(...)), used for both.
    `timeout` (seconds) is the deadline of each call unless it gives its own."""

    def __init__(self, target, admin_target=None, admin_token=None, credentials=None,
                 timeout=DEFAULT_TIMEOUT):
        decision, approval = _pb()
        self.timeout = timeout  # each call's deadline, unless the call says otherwise
        self.decision_pb2, self.approval_pb2 = decision, approval

        def channel(address):
            if credentials is not None:
                return grpc.secure_channel(address, credentials)
            return grpc.insecure_channel(address)

        self.channel = channel(target)
        svc = "/toolgate.v1.DecisionService/"
        self._check = _unary(self.channel, svc + "Check", decision.CheckRequest,
                             decision.CheckResponse)
        self._wait = _unary(self.channel, svc + "WaitApproval", decision.WaitApprovalRequest,
                            approval.Approval)
        self._visible = _unary(self.channel, svc + "ListVisibleTools",
                               decision.ListVisibleToolsRequest, decision.ListVisibleToolsResponse)
        self.admin_channel = None
        self._metadata = [("authorization", f"Bearer {admin_token}")] if admin_token else None
        if admin_target:
            self.admin_channel = channel(admin_target)
            svc = "/toolgate.v1.ApprovalService/"
            self._decide = _unary(self.admin_channel, svc + "DecideApproval",
                                  approval.DecideApprovalRequest, approval.Approval)
            self._get = _unary(self.admin_channel, svc + "GetApproval",
                               approval.GetApprovalRequest, approval.Approval)

    def close(self):
        self.channel.close()
        if self.admin_channel is not None:
            self.admin_channel.close()

    def check(self, tool, grant, args=None, *, server="", session="", approval_id="",
              dry_run=False, request_id="", timeout=None):
        """Decides one call; `args` is a dict (or None for no arguments).
        Returns the CheckResponse (a decision of any kind); raises
        grpc.RpcError when the call cannot be decided (INVALID_ARGUMENT,
        UNAVAILABLE, ...)."""
        request = self.decision_pb2.CheckRequest(
            tool=tool, grant=grant, server=server, session=session, approval_id=approval_id,
            dry_run=dry_run, request_id=request_id,
            # allow_nan=False: NaN and Infinity are not JSON; the server would
            # refuse them, better to fail here with Python's message.
            args_json=json.dumps(args, allow_nan=False) if args is not None else "")
        return self._check(request, timeout=timeout or self.timeout)

    def wait_approval(self, approval_id, wait_seconds=30.0):
        """Blocks until the approval is decided or `wait_seconds` pass (the
        server bounds it to 10 minutes), and returns the Approval as it is
        then: PENDING when the wait ran out."""
        request = self.decision_pb2.WaitApprovalRequest(approval_id=approval_id)
        request.timeout.FromMilliseconds(int(wait_seconds * 1000))
        # The call's own deadline leaves the server time to answer at its timeout.
        return self._wait(request, timeout=wait_seconds + self.timeout)

    def list_visible_tools(self, grant, tools, *, server="", session="",
                           timeout=None):
        """{tool: ToolVisibility} for each of `tools`: what the policy alone
        says (ALLOW, REQUIRE_APPROVAL or DENY), e.g. to filter MCP's tools/list."""
        request = self.decision_pb2.ListVisibleToolsRequest(grant=grant, server=server,
                                                            session=session, tools=list(tools))
        response = self._visible(request, timeout=timeout or self.timeout)
        return {v.tool: v for v in response.tools}

    def decide_approval(self, approval_id, approve, approver, note="", timeout=None):
        """Approves (approve=True) or denies a pending approval, as `approver`
        (ApprovalService on the admin listener). Returns the Approval."""
        self._need_admin()
        request = self.approval_pb2.DecideApprovalRequest(id=approval_id, approve=approve,
                                                          approver=approver, note=note)
        return self._decide(request, timeout=timeout or self.timeout, metadata=self._metadata)

    def get_approval(self, approval_id, timeout=None):
        self._need_admin()
        return self._get(self.approval_pb2.GetApprovalRequest(id=approval_id),
                         timeout=timeout or self.timeout, metadata=self._metadata)

    def _need_admin(self):
        if self.admin_channel is None:
            raise ValueError("approvals are decided on the admin listener: pass admin_target")

    def decision_name(self, value):
        """"ALLOW" for DECISION_ALLOW."""
        return self.decision_pb2.Decision.Name(value).removeprefix("DECISION_")

    def state_name(self, value):
        """"APPROVED" for APPROVAL_STATE_APPROVED."""
        return self.approval_pb2.ApprovalState.Name(value).removeprefix("APPROVAL_STATE_")
