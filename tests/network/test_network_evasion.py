"""Code that goes around the patches is still caught by the audit hook (fresh interpreters).

Each scenario runs in its own interpreter so that the audit hook and the patches are
installed fresh, and so that references to the unpatched functions can be taken before
lambdaguard ever loads. The listener is in the test process and counts what arrives.
"""

from __future__ import annotations

import pytest
from netkit import TCPListener, UDPReceiver, results, run_scenario, violations

PROLOGUE = """
import json, os, sys
PORT = int(os.environ["PORT"])
def result(**kw):
    print(json.dumps({"result": kw}), flush=True)
"""

# After lambdaguard's hook: sees only lookups that reach the C resolver (conftest.LookupRecorder).
OBSERVER = """
from lambdaguard.sensors import ensure_installed
ensure_installed()
LOOKUPS = []
def _observe(event, args):
    if event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr",
                 "socket.getnameinfo"):
        LOOKUPS.append(repr(args[0]))
sys.addaudithook(_observe)
"""


def scenario(body: str, port: int) -> tuple[dict[str, object], list[dict[str, object]]]:
    lines, _ = run_scenario(PROLOGUE + body, env={"PORT": str(port)})
    return results(lines), violations("\n".join(__import__("json").dumps(x) for x in lines))


class TestAuditBackstop:
    def test_underscore_socket_connect_is_blocked(self, tcp: TCPListener) -> None:
        """_socket.socket().connect never passes a patch; the audit hook blocks it and closes it."""
        found, lines = scenario(
            """
import _socket
from lambdaguard import guard, NetworkViolation
with guard(network="block"):
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    try:
        s.connect(("127.0.0.1", PORT))
        result(outcome="connected")
    except NetworkViolation as exc:
        result(outcome="blocked", target=exc.target, closed=s.fileno() == -1)
""",
            tcp.port,
        )
        tcp.settle()
        assert tcp.attempts == 0
        assert found == {"outcome": "blocked", "target": f"127.0.0.1:{tcp.port}", "closed": True}
        assert [(v["action"], v["target"]) for v in lines] == [("connect", f"127.0.0.1:{tcp.port}")]

    def test_underscore_socket_sendto_is_blocked(self, udp: UDPReceiver) -> None:
        """A datagram sent through _socket is blocked by the audit hook."""
        found, lines = scenario(
            """
import _socket
from lambdaguard import guard, NetworkViolation
with guard(network="block"):
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        s.sendto(b"secret", ("127.0.0.1", PORT))
        result(outcome="sent")
    except NetworkViolation:
        result(outcome="blocked")
    s.close()
""",
            udp.port,
        )
        udp.settle()
        assert udp.received == 0
        assert found == {"outcome": "blocked"}
        assert [v["action"] for v in lines] == ["sendto"]

    def test_references_taken_before_patching_are_still_blocked(self, tcp: TCPListener) -> None:
        """getaddrinfo and socket.connect saved before lambdaguard loaded are still caught."""
        found, lines = scenario(
            """
import socket
saved_getaddrinfo = socket.getaddrinfo
saved_connect = socket.socket.connect
"""
            + OBSERVER
            + """
from lambdaguard import guard, NetworkViolation
outcomes = []
with guard(network="block"):
    try:
        saved_getaddrinfo("saved-reference.exfil.invalid", 80)
        outcomes.append("resolved")
    except NetworkViolation:
        outcomes.append("lookup blocked")
    s = socket.socket()
    try:
        saved_connect(s, ("127.0.0.1", PORT))
        outcomes.append("connected")
    except NetworkViolation:
        outcomes.append("connect blocked")
    s.close()
result(outcomes=outcomes, lookups=LOOKUPS)
""",
            tcp.port,
        )
        tcp.settle()
        assert tcp.attempts == 0
        assert found == {"outcomes": ["lookup blocked", "connect blocked"], "lookups": []}
        assert [v["action"] for v in lines] == ["resolve", "connect"]

    def test_underscore_socket_lookups_never_reach_the_resolver(self, tcp: TCPListener) -> None:
        """_socket's lookup functions are blocked before the C resolver is called."""
        found, lines = scenario(
            OBSERVER
            + """
import _socket
from lambdaguard import guard, Network, NetworkViolation
outcomes = []
# The glob must not let "<name>\\0.amazonaws.com" through: C resolves up to the NUL.
with guard(network=Network("block", allow=["*.amazonaws.com"])):
    for call in (
        lambda: _socket.getaddrinfo("a.exfil.invalid\\0.amazonaws.com", 80),
        lambda: _socket.gethostbyname("b.exfil.invalid"),
        lambda: _socket.gethostbyname_ex("c.exfil.invalid"),
        lambda: _socket.gethostbyaddr("192.0.2.1"),
        lambda: _socket.getnameinfo(("192.0.2.1", 80), 0),
        # the audit event carries no flags: a numeric-only call is judged as a lookup too
        lambda: _socket.getnameinfo(("192.0.2.2", 80), _socket.NI_NUMERICHOST),
    ):
        try:
            call()
            outcomes.append("resolved")
        except NetworkViolation:
            outcomes.append("blocked")
result(outcomes=outcomes, lookups=LOOKUPS)
""",
            tcp.port,
        )
        assert found == {"outcomes": ["blocked"] * 6, "lookups": []}
        assert [(v["action"], v["target"]) for v in lines] == [
            ("resolve", "a.exfil.invalid:80"),
            ("resolve", "b.exfil.invalid"),
            ("resolve", "c.exfil.invalid"),
            ("reverse-resolve", "192.0.2.1"),
            ("reverse-resolve", "192.0.2.1"),
            ("reverse-resolve", "192.0.2.2"),
        ]

    def test_restoring_the_original_function_does_not_help(self, tcp: TCPListener) -> None:
        """Putting the unwrapped socket.getaddrinfo back leaves the audit hook in place."""
        found, lines = scenario(
            OBSERVER
            + """
import socket
from lambdaguard import guard, NetworkViolation
socket.getaddrinfo = socket.getaddrinfo.__wrapped__
socket.socket.connect = socket.socket.connect.__wrapped__
outcomes = []
with guard(network="block"):
    try:
        socket.create_connection(("127.0.0.1", PORT))
        outcomes.append("connected")
    except NetworkViolation:
        outcomes.append("blocked")
    try:
        socket.getaddrinfo("restored.exfil.invalid", 80)
        outcomes.append("resolved")
    except NetworkViolation:
        outcomes.append("blocked")
result(outcomes=outcomes, lookups=LOOKUPS)
""",
            tcp.port,
        )
        tcp.settle()
        assert tcp.attempts == 0
        # create_connection's getaddrinfo of the IP literal is no lookup (nothing is sent).
        assert found == {"outcomes": ["blocked", "blocked"], "lookups": ["'127.0.0.1'"]}
        assert len(lines) == 2

    def test_patched_calls_are_reported_once_not_once_per_layer(self, tcp: TCPListener) -> None:
        """A connect seen by both the patch and the audit hook gives one line."""
        found, lines = scenario(
            """
import socket
from lambdaguard import guard
with guard(network="alert"):
    with socket.create_connection(("127.0.0.1", PORT)):
        pass
    socket.getaddrinfo("localhost", PORT)
result(done=True)
""",
            tcp.port,
        )
        assert found == {"done": True}
        assert [(v["mode"], v["action"]) for v in lines] == [
            ("alert", "connect"),
            ("alert", "resolve"),
        ]


class TestLimits:
    def test_underscore_socket_connect_by_name_resolves_before_the_hook_sees_it(
        self, tcp: TCPListener
    ) -> None:
        """Limit: _socket's connect(("name", port)) resolves in C before raising its audit event."""
        found, lines = scenario(
            """
import _socket
from lambdaguard import guard, NetworkViolation
with guard(network="block"):
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    try:
        s.connect(("unresolvable.exfil.invalid", PORT))
        result(outcome="connected")
    except NetworkViolation:
        result(outcome="blocked")
    except OSError as exc:
        result(outcome=type(exc).__name__)
    s.close()
""",
            tcp.port,
        )
        # The lookup went out (the resolver's own error proves it) and nothing was reported;
        # a name that resolves would then be blocked at the connect, by its address.
        assert found == {"outcome": "gaierror"}
        assert lines == []

    def test_native_code_calling_connect_itself_is_not_seen(self, tcp: TCPListener) -> None:
        """Limit: connect(2) called through ctypes raises no audit event: it goes through."""
        found, lines = scenario(
            """
import ctypes, socket, struct
from lambdaguard import guard
libc = ctypes.CDLL(None, use_errno=True)
with guard(network="block"):
    s = socket.socket()
    sockaddr = struct.pack("!HH4s8x", socket.AF_INET, PORT, socket.inet_aton("127.0.0.1"))
    sockaddr = struct.pack("=H", socket.AF_INET) + sockaddr[2:]  # sa_family is host order
    rc = libc.connect(s.fileno(), ctypes.c_char_p(sockaddr), len(sockaddr))
    s.close()
result(rc=rc)
""",
            tcp.port,
        )
        tcp.settle()
        assert found == {"rc": 0}
        assert tcp.attempts == 1
        assert lines == []


@pytest.mark.parametrize("when", ["before", "after"])
def test_botocore_is_unwrapped_whether_imported_before_or_after_lambdaguard(
    when: str, tcp: TCPListener
) -> None:
    """The botocore post-import patch applies whatever the import order."""
    early = "import botocore.httpsession\n" if when == "before" else ""
    late = "import botocore.httpsession\n" if when == "after" else ""
    found, lines = scenario(
        early
        + """
from lambdaguard import guard, NetworkViolation
from lambdaguard.sensors import ensure_installed
ensure_installed()
"""
        + late
        + """
import boto3
from botocore.config import Config
client = boto3.client("s3", region_name="us-east-1", endpoint_url=f"http://127.0.0.1:{PORT}",
                      aws_access_key_id="x", aws_secret_access_key="x",
                      config=Config(retries={"mode": "standard", "max_attempts": 5}))
with guard(network="block"):
    try:
        client.list_buckets()
    except NetworkViolation:
        result(outcome="violation")
    except Exception as exc:
        result(outcome=type(exc).__name__)
""",
        tcp.port,
    )
    tcp.settle()
    assert tcp.attempts == 0
    assert found == {"outcome": "violation"}
    assert len(lines) == 1
