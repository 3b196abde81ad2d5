"""The fast paths of an allowed connect or lookup never let anything else through.

An operation the merged rules allowed before is called straight through by the patch, and
the audit hook lets it pass after one look at the same memo (sensors/network.py). Each
test first makes the memo warm with a real allowed operation, then tries something that
differs in one way (port, host, a lying subclass, another scope, another thread, a route
around the patch) and checks that it is decided on its own.
"""

from __future__ import annotations

import _socket
import json
import pickle
import socket
import threading
from typing import Any

import pytest
from netkit import TCPListener, results, run_scenario, violations

from lambdaguard import Network, NetworkViolation, configure, guard
from lambdaguard.scope import reset_for_tests


def connect(address: object) -> str:
    """Try one connection through the patched socket; say what happened."""
    with socket.socket() as s:
        try:
            s.connect(address)
        except NetworkViolation:
            return "blocked"
        except ConnectionRefusedError:
            return "refused"  # allowed, and nothing listens there
        return "connected"


def lying(value: object, claimed: object) -> Any:
    """``value`` as a str or int subclass that hashes like ``claimed`` and equals anything.

    Put in an address, it collides with ``claimed``'s key in any dict: a memo read with it
    as it is would hand it ``claimed``'s verdict.
    """
    base = type(value)
    kind = type(
        f"Lying{base.__name__}",
        (base,),
        {"__eq__": lambda self, other: True, "__hash__": lambda self: hash(claimed)},
    )
    return kind(value)


class TestConnectFastPath:
    def test_another_port_on_an_allowed_host_is_still_blocked(self, tcp: TCPListener) -> None:
        """Allowed and remembered on one port, the same host on another port is blocked."""
        other = TCPListener("127.0.0.1")
        try:
            with guard(network=Network("block", allow=[tcp.hostport])):
                assert [connect(tcp.address) for _ in range(3)] == ["connected"] * 3
                assert connect(other.address) == "blocked"
            other.settle()
            assert other.attempts == 0
        finally:
            other.close()

    def test_a_host_whose_equality_lies_does_not_hit_the_memo(
        self, tcp: TCPListener, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A str subclass that collides with a remembered host is judged by its characters."""
        with guard(network=Network("block", allow=[f"127.0.0.2:{tcp.port}"])):
            assert connect(("127.0.0.2", tcp.port)) == "refused"  # allowed, so remembered
            assert connect((lying("127.0.0.1", "127.0.0.2"), tcp.port)) == "blocked"
        tcp.settle()
        assert tcp.attempts == 0
        assert [v["target"] for v in violations(capsys.readouterr().out)] == [
            f"127.0.0.1:{tcp.port}"
        ]

    def test_an_address_tuple_whose_equality_lies_does_not_hit_the_memo(
        self, tcp: TCPListener
    ) -> None:
        """A tuple subclass that collides with a remembered address is judged by its content."""
        other = TCPListener("127.0.0.1")
        try:
            with guard(network=Network("block", allow=[other.hostport])):
                assert connect(other.address) == "connected"
                assert connect(lying(tcp.address, other.address)) == "blocked"
            tcp.settle()
            assert tcp.attempts == 0
        finally:
            other.close()

    def test_the_audit_hook_passes_only_the_remembered_address(self, tcp: TCPListener) -> None:
        """Through _socket, the remembered address goes ahead; a colliding lookalike does not."""
        other = TCPListener("127.0.0.1")
        outcomes = []
        try:
            with guard(network=Network("block", allow=[tcp.hostport])):
                assert connect(tcp.address) == "connected"
                lookalikes = (
                    ("127.0.0.1", lying(other.port, tcp.port)),
                    (lying("127.0.0.1", "127.0.0.1"), other.port),
                    other.address,
                )
                for address in (tcp.address, *lookalikes):
                    raw = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
                    try:
                        raw.connect(address)
                        outcomes.append("connected")
                    except NetworkViolation:
                        outcomes.append("blocked")
                    finally:
                        raw.close()
            other.settle()
            assert outcomes == ["connected", "blocked", "blocked", "blocked"]
            assert other.attempts == 0
        finally:
            other.close()

    def test_a_remembered_inet_address_is_no_verdict_for_a_unix_socket(
        self, tcp: TCPListener, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The memo key holds the socket's real family: the same tuple on AF_UNIX is judged anew."""
        with guard(network=Network("block", allow=[tcp.hostport])):
            assert connect(tcp.address) == "connected"
            with socket.socket(socket.AF_UNIX) as s, pytest.raises(NetworkViolation):
                s.connect(tcp.address)  # the original would raise TypeError: never reached
        targets = [v["target"] for v in violations(capsys.readouterr().out)]
        assert len(targets) == 1
        assert targets[0].startswith("unix:")

    def test_a_stricter_nested_scope_does_not_reuse_the_outer_verdict(
        self, tcp: TCPListener
    ) -> None:
        """The memo belongs to one merged policy: a nested guard decides again, and blocks."""
        allowed = Network("block", allow=[tcp.hostport])
        with guard(network=allowed):
            assert connect(tcp.address) == "connected"
            with guard(network=Network("block", allow=["127.0.0.2"])):
                assert connect(tcp.address) == "blocked"
            assert connect(tcp.address) == "connected"
        tcp.settle()
        assert tcp.attempts == 2

    def test_a_relaxation_ending_does_not_keep_its_verdicts(self, tcp: TCPListener) -> None:
        """A connect allowed inside relaxed() is blocked again once the relaxation ends."""
        g = guard(network="block")
        with g:
            with g.relaxed(network=Network("block", allow=[tcp.hostport])):
                assert connect(tcp.address) == "connected"
            assert connect(tcp.address) == "blocked"
        tcp.settle()
        assert tcp.attempts == 1

    def test_tightening_the_baseline_forgets_what_it_allowed(self, tcp: TCPListener) -> None:
        """Baseline.update() to a stricter rule: the next connect is decided again, and blocked."""
        try:
            handle = configure(network=Network("block", allow=[tcp.hostport]))
            assert [connect(tcp.address) for _ in range(2)] == ["connected"] * 2
            handle.update(network="block")
            assert connect(tcp.address) == "blocked"
        finally:
            reset_for_tests()
        tcp.settle()
        assert tcp.attempts == 2

    def test_a_baseline_added_inside_a_scope_applies_to_its_next_connect(
        self, tcp: TCPListener
    ) -> None:
        """configure() while a scope has the address remembered: the next connect is blocked."""
        try:
            with guard(network=Network("block", allow=[tcp.hostport])):
                assert connect(tcp.address) == "connected"
                configure(network="block")
                assert connect(tcp.address) == "blocked"
        finally:
            reset_for_tests()
        tcp.settle()
        assert tcp.attempts == 1

    def test_a_thread_in_a_stricter_scope_does_not_borrow_another_thread_verdict(
        self, tcp: TCPListener
    ) -> None:
        """While one thread's scope has the address remembered, another thread's scope blocks it."""
        outcomes: list[str] = []
        allowed_once = threading.Event()
        done = threading.Event()

        def permissive() -> None:
            with guard(network=Network("block", allow=[tcp.hostport])):
                outcomes.append(connect(tcp.address))
                allowed_once.set()
                done.wait(10)
                outcomes.append(connect(tcp.address))

        worker = threading.Thread(target=permissive)
        worker.start()
        assert allowed_once.wait(10)
        with guard(network=Network("block", allow=["127.0.0.2"])):
            strict = connect(tcp.address)
        done.set()
        worker.join(10)
        tcp.settle()
        assert (outcomes, strict) == (["connected", "connected"], "blocked")
        assert tcp.attempts == 2

    def test_a_connect_left_to_the_audit_hook_is_blocked_closed_and_reported_once(
        self, tcp: TCPListener, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Once an IP host is known the hook alone decides: still blocked, closed, one line each."""
        sockets = []
        with guard(network="block"):
            for _ in range(3):
                s = socket.socket()
                sockets.append(s)
                with pytest.raises(NetworkViolation):
                    s.connect(tcp.address)
        tcp.settle()
        assert tcp.attempts == 0
        assert [s.fileno() for s in sockets] == [-1, -1, -1]
        assert [v["target"] for v in violations(capsys.readouterr().out)] == [tcp.hostport] * 3

    def test_alerted_connects_are_reported_every_time(
        self, tcp: TCPListener, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An alert is never remembered: three alerted connects, three lines, none doubled."""
        with guard(network="alert"):
            assert [connect(tcp.address) for _ in range(3)] == ["connected"] * 3
        assert [v["mode"] for v in violations(capsys.readouterr().out)] == ["alert"] * 3

    def test_the_patched_methods_still_bind_and_pickle_like_the_originals(
        self, tcp: TCPListener
    ) -> None:
        """Called through the class they are still judged; they pickle as themselves."""
        with guard(network="block"), socket.socket() as s, pytest.raises(NetworkViolation):
            socket.socket.connect(s, tcp.address)
        tcp.settle()
        assert tcp.attempts == 0
        for function in (socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo):
            assert pickle.loads(pickle.dumps(function)) is function


class TestLookupFastPath:
    def test_a_host_whose_equality_lies_does_not_hit_the_lookup_memo(self) -> None:
        """A str subclass that collides with a remembered name is judged by its characters."""
        with guard(network=Network("block", allow=["localhost"])):
            socket.getaddrinfo("localhost", 80)
            with pytest.raises(NetworkViolation) as info:
                socket.getaddrinfo(lying("exfil.example.invalid", "localhost"), 80)
        assert info.value.target == "exfil.example.invalid:80"

    def test_a_repeated_lookup_still_records_its_answers(self, tcp: TCPListener) -> None:
        """A lookup allowed from the memo records its answers, so the connect that follows works."""
        from lambdaguard.policies.network import forget_resolutions

        with guard(network=Network("block", allow=[f"localhost:{tcp.port}"])):
            socket.getaddrinfo("localhost", tcp.port, socket.AF_INET)
            forget_resolutions()  # as if the name now resolved to addresses never seen
            answers = socket.getaddrinfo("localhost", tcp.port, socket.AF_INET)
            assert connect(answers[0][4]) == "connected"
        tcp.settle()
        assert tcp.attempts == 1


def test_a_signal_handler_inside_a_remembered_connect_is_still_judged(tcp: TCPListener) -> None:
    """A handler that runs while a remembered (fast-path) connect waits is judged on its own.

    The fast path sets no quiet mark at all; the handler's _socket connect to another port
    is not in the memo, so the audit hook decides it, and blocks it.
    """
    lines, _ = run_scenario(
        f"""
import json, signal, socket, _socket
from lambdaguard import guard, Network, NetworkViolation
def result(**kw):
    print(json.dumps({{"result": kw}}), flush=True)
PORT = {tcp.port}
slow = socket.socket()
slow.bind(("127.0.0.1", 0))
slow.listen(0)
slow_port = slow.getsockname()[1]
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
with guard(network=Network("block", allow=[f"127.0.0.1:{{slow_port}}"])):
    filler = socket.create_connection(("127.0.0.1", slow_port))  # remembered; queue now full
    c = socket.socket()
    c.settimeout(1.0)
    signal.setitimer(signal.ITIMER_REAL, 0.1)
    try:
        c.connect(("127.0.0.1", slow_port))
    except TimeoutError:
        pass
    c.close()
result(inner=inner)
"""
    )
    tcp.settle()
    assert tcp.attempts == 0
    assert results(lines) == {"inner": ["blocked"]}
    assert [v["target"] for v in violations("\n".join(json.dumps(x) for x in lines))] == [
        f"127.0.0.1:{tcp.port}"
    ]


# The compiled fast path (lambdaguard/_socket_fastpath.c) in front of connect, connect_ex
# and bind: it calls the original C method itself in two cases only, and hands every other
# call to the Python replacement. Driven here with recording stand-ins for both, so that
# which one ran is observed, not inferred; the real sockets above run through it too.
FORWARD_SCENARIO = """
import _socket, contextvars, json, socket, types
from lambdaguard._socket_fastpath import Forward

ran = []
def original(*args, **kwargs):
    ran.append("original")
def slow(*args, **kwargs):
    ran.append("slow")
slow.__qualname__ = "socket.connect"

scope_var = contextvars.ContextVar("scope", default=None)
scope_module = types.ModuleType("fake_scope")
scope_module._baseline_active = None
ip_hosts = {"127.0.0.1"}
forward = Forward(
    original, slow, ip_hosts, frozenset({_socket.AF_INET, _socket.AF_INET6}),
    _socket.socket.__dict__["family"], scope_var, scope_module,
)

class Str(str):
    pass

class Tuple(tuple):
    pass

class ClaimsInet(_socket.socket):
    @property
    def family(self):
        return _socket.AF_INET

inet = _socket.socket()
unix = ClaimsInet(_socket.AF_UNIX, _socket.SOCK_STREAM)

def which(*args, **kwargs):
    del ran[:]
    forward(*args, **kwargs)
    return ran[0]

out = {"no policy": which(inet, ("10.0.0.1", 80))}
scope_var.set(object())
out.update({
    "known ip": which(inet, ("127.0.0.1", 80)),
    "unknown host": which(inet, ("10.0.0.1", 80)),
    "str subclass host": which(inet, (Str("127.0.0.1"), 80)),
    "tuple subclass": which(inet, Tuple(("127.0.0.1", 80))),
    "bool port": which(inet, ("127.0.0.1", True)),
    "three items": which(inet, ("127.0.0.1", 80, 0)),
    "unix socket claiming inet": which(unix, ("127.0.0.1", 80)),
    "not a socket": which(object(), ("127.0.0.1", 80)),
    "keyword": which(inet, address=("127.0.0.1", 80)),
    "extra argument": which(inet, ("127.0.0.1", 80), 1),
})
ip_hosts.clear()
out["forgotten ip"] = which(inet, ("127.0.0.1", 80))
scope_var.set(None)
scope_module._baseline_active = object()
out["baseline, unknown host"] = which(inet, ("10.0.0.1", 80))
print(json.dumps({"result": out}))
"""


class TestCompiledConnectFastPath:
    def test_only_two_cases_skip_the_python_replacement(self) -> None:
        """No policy in force, or an exact known IP on a real IP socket: the original; anything else: Python."""
        out = results(run_scenario(FORWARD_SCENARIO)[0])
        assert out.pop("no policy") == "original"
        assert out.pop("known ip") == "original"
        assert out == dict.fromkeys(out, "slow")
        assert set(out) >= {"str subclass host", "unix socket claiming inet", "baseline, unknown host"}

    def test_it_is_in_front_of_the_socket_methods_and_reads_like_them(self) -> None:
        """Where it is built, connect, connect_ex and bind go through it and keep name, module and __wrapped__."""
        out = results(
            run_scenario(
                """
                import _socket, json, socket, lambdaguard
                with lambdaguard.guard(network="block"):
                    pass
                out = {}
                for name in ("connect", "connect_ex", "bind"):
                    method = getattr(socket.socket, name)
                    out[name] = [
                        type(method).__name__, method.__name__, method.__module__,
                        method.__wrapped__ is getattr(_socket.socket, name),
                    ]
                print(json.dumps({"result": out}))
                """
            )[0]
        )
        assert out == {
            "connect": ["Forward", "connect", "socket", True],
            "connect_ex": ["Forward", "connect_ex", "socket", True],
            "bind": ["Forward", "bind", "socket", True],
        }

    def test_without_it_the_python_replacement_guards_alone(self, tcp: TCPListener) -> None:
        """With the extension missing, connect is the Python function and still allows and blocks."""
        lines, _ = run_scenario(
            f"""
            import sys
            sys.modules["lambdaguard._socket_fastpath"] = None  # as if it had not been compiled
            import json, socket, lambdaguard
            out = {{}}
            with lambdaguard.guard(network=lambdaguard.Network("block", allow=["{tcp.hostport}"])):
                out["kind"] = type(socket.socket.connect).__name__
                for name, port in (("allowed", {tcp.address[1]}), ("other port", {tcp.address[1]} + 1)):
                    with socket.socket() as s:
                        try:
                            s.connect(("127.0.0.1", port))
                            out[name] = "connected"
                        except lambdaguard.NetworkViolation:
                            out[name] = "blocked"
            print(json.dumps({{"result": out}}))
            """
        )
        assert results(lines) == {"kind": "function", "allowed": "connected", "other port": "blocked"}
        assert [line["lambdaguard"]["event"] for line in lines if "lambdaguard" in line] == [
            "violation"
        ]
        tcp.settle()
        assert tcp.attempts == 1
