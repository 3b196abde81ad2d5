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


class TestLookalikeArguments:
    def test_code_run_inside_an_allowed_lookup_cannot_smuggle_its_own(
        self, tcp: TCPListener
    ) -> None:
        """A lookup made from user code running inside an allowed lookup never reaches the resolver.

        The patch decides a call, then marks its audit event as decided while the original
        runs. getaddrinfo calls its host's ``encode`` before raising its audit event, so a
        str subclass could run code in that window and borrow the mark.
        """
        found, lines = scenario(
            OBSERVER
            + """
import _socket, socket
from lambdaguard import guard, Network, NetworkViolation
inner = []
class Host(str):
    def encode(self, *args, **kwargs):
        try:
            _socket.getaddrinfo("smuggled.exfil.invalid", 80)
            inner.append("resolved")
        except NetworkViolation:
            inner.append("blocked")
        except OSError:
            inner.append("resolver asked")
        return str.encode(self, *args, **kwargs)
with guard(network=Network("block", allow=["localhost"])):
    socket.getaddrinfo(Host("localhost"), PORT)
result(inner=inner, lookups=LOOKUPS)
""",
            tcp.port,
        )
        assert found["lookups"] == ["'localhost'"]
        assert set(found["inner"]) <= {"blocked"}
        assert all(v["target"] == "smuggled.exfil.invalid:80" for v in lines)

    def test_host_whose_encode_lies_is_resolved_as_its_characters(self, tcp: TCPListener) -> None:
        """getaddrinfo(Host("localhost")) whose encode() says otherwise resolves localhost."""
        found, lines = scenario(
            OBSERVER
            + """
import socket
from lambdaguard import guard, Network
class Host(str):
    def encode(self, *args, **kwargs):
        return b"smuggled.exfil.invalid"
with guard(network=Network("block", allow=["localhost"])):
    answer = socket.getaddrinfo(Host("localhost"), PORT)[0][4][0]
result(answer=answer, lookups=LOOKUPS)
""",
            tcp.port,
        )
        assert found == {"answer": "127.0.0.1", "lookups": ["'localhost'"]}
        assert lines == []

    def test_lying_host_through_underscore_socket_matches_no_name(self, tcp: TCPListener) -> None:
        """Through _socket, a str subclass host cannot be trusted: it matches no name entry."""
        found, lines = scenario(
            OBSERVER
            + """
import _socket
from lambdaguard import guard, Network, NetworkViolation
class Host(str):
    def encode(self, *args, **kwargs):
        return b"smuggled.exfil.invalid"
with guard(network=Network("block", allow=["localhost"])):
    try:
        _socket.getaddrinfo(Host("localhost"), 80)
        result(outcome="resolved", lookups=LOOKUPS)
    except NetworkViolation:
        result(outcome="blocked", lookups=LOOKUPS)
""",
            tcp.port,
        )
        assert found == {"outcome": "blocked", "lookups": []}
        assert [v["target"] for v in lines] == ["<Host 'localhost'>:80"]

    def test_str_and_int_subclasses_cannot_misstate_an_address(self, tcp: TCPListener) -> None:
        """A host whose __str__, or a port whose __eq__, lies is judged by its real value."""
        found, lines = scenario(
            """
import socket
from lambdaguard import guard, Network, NetworkViolation
class Host(str):
    def __str__(self):
        return "127.0.0.2"
class Port(int):
    def __eq__(self, other):
        return True
    __hash__ = int.__hash__
outcomes = []
with guard(network=Network("block", allow=["127.0.0.2", "127.0.0.1:1"])):
    for address in ((Host("127.0.0.1"), PORT), ("127.0.0.1", Port(PORT))):
        s = socket.socket()
        try:
            s.connect(address)
            outcomes.append("connected")
        except NetworkViolation:
            outcomes.append("blocked")
        s.close()
result(outcomes=outcomes)
""",
            tcp.port,
        )
        tcp.settle()
        assert tcp.attempts == 0
        assert found == {"outcomes": ["blocked", "blocked"]}
        assert [v["target"] for v in lines] == [f"127.0.0.1:{tcp.port}"] * 2

    def test_socket_subclass_cannot_misstate_its_family(self, tcp: TCPListener) -> None:
        """A socket whose ``family`` or ``getsockname`` lies is judged by what it really is."""
        found, lines = scenario(
            """
import socket, _socket
from lambdaguard import guard, Network, NetworkViolation
class Liar(socket.socket):
    @property
    def family(self):
        return socket.AF_UNIX
class ListenLiar(socket.socket):
    def getsockname(self):
        return ("127.0.0.1", 8080)
outcomes = []
bound = ListenLiar()
bound.bind(("127.0.0.1", 0))
with guard(network=Network("block", allow=["127.0.0.1:8080"])):
    try:
        bound.listen()
        outcomes.append("listening")
    except NetworkViolation:
        outcomes.append("blocked")
bound.close()
with guard(network=Network("block", allow=["unix:/*"])):
    for make in (Liar, lambda: _socket.socket.__new__(type("RawLiar", (_socket.socket,), {
            "family": property(lambda self: socket.AF_UNIX)}))):
        s = make()
        if type(s).__name__ == "RawLiar":
            _socket.socket.__init__(s)
        try:
            s.connect(("127.0.0.1", PORT))
            outcomes.append("connected")
        except NetworkViolation:
            outcomes.append("blocked")
        s.close()
result(outcomes=outcomes)
""",
            tcp.port,
        )
        tcp.settle()
        assert tcp.attempts == 0
        assert found == {"outcomes": ["blocked", "blocked", "blocked"]}
        assert [v["action"] for v in lines] == ["listen", "connect", "connect"]
        assert [v["target"] for v in lines][1:] == [f"127.0.0.1:{tcp.port}"] * 2

    def test_signal_handler_run_inside_an_allowed_connect_is_still_judged(
        self, tcp: TCPListener
    ) -> None:
        """A handler that fires while an allowed connect waits cannot borrow its decision.

        The patch marks the audit event of the call it allowed as decided while the original
        runs; a signal handler runs inside that window (here: while the connect waits on a
        full listen queue) and must not pass its own _socket connect off as that call.
        """
        found, lines = scenario(
            """
import signal, socket, _socket
from lambdaguard import guard, Network, NetworkViolation
slow = socket.socket()
slow.bind(("127.0.0.1", 0))
slow.listen(0)
slow_port = slow.getsockname()[1]
filler = socket.create_connection(("127.0.0.1", slow_port))  # the queue is now full
inner = []
def handler(signum, frame):
    s = _socket.socket()
    try:
        s.connect(("127.0.0.1", PORT))
        inner.append("connected")
    except NetworkViolation:
        inner.append("blocked")
    s.close()
signal.signal(signal.SIGALRM, handler)
with guard(network=Network("block", allow=[f"127.0.0.1:{slow_port}"])):
    c = socket.socket()
    c.settimeout(1.0)
    signal.setitimer(signal.ITIMER_REAL, 0.1)
    try:
        c.connect(("127.0.0.1", slow_port))
    except TimeoutError:
        pass
    c.close()
result(inner=inner)
""",
            tcp.port,
        )
        tcp.settle()
        assert tcp.attempts == 0
        assert found == {"inner": ["blocked"]}
        assert [v["target"] for v in lines] == [f"127.0.0.1:{tcp.port}"]


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

    def test_code_that_targets_lambdaguard_itself_can_switch_the_backstop_off(
        self, tcp: TCPListener
    ) -> None:
        """Limit: clearing the audit hook's handler table lets a _socket connect through."""
        found, lines = scenario(
            """
import _socket
from lambdaguard import guard
from lambdaguard.sensors import audit, ensure_installed
ensure_installed()
audit._table.clear()
with guard(network="block"):
    s = _socket.socket()
    s.connect(("127.0.0.1", PORT))
    s.close()
result(outcome="connected")
""",
            tcp.port,
        )
        tcp.settle()
        assert found == {"outcome": "connected"}
        assert tcp.attempts == 1
        assert lines == []

    def test_switching_the_backstop_off_also_frees_connects_the_hook_decides(
        self, tcp: TCPListener
    ) -> None:
        """Limit: with the handler table cleared, a connect to a seen IP host is no longer judged."""
        found, _ = scenario(
            """
import socket
from lambdaguard import guard, NetworkViolation
from lambdaguard.sensors import audit, ensure_installed
ensure_installed()
outcomes = []
with guard(network="block"):
    for clear in (False, True):
        if clear:
            audit._table.clear()
        s = socket.socket()
        try:
            s.connect(("127.0.0.1", PORT))
            outcomes.append("connected")
        except NetworkViolation:
            outcomes.append("blocked")
        s.close()
result(outcomes=outcomes)
""",
            tcp.port,
        )
        tcp.settle()
        assert found == {"outcomes": ["blocked", "connected"]}
        assert tcp.attempts == 1


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
