"""The network policy on raw sockets: TCP connect, UDP sends, bind and listen, IPv4 and IPv6."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from netkit import TCPListener, UDPReceiver, violations

from lambdaguard import Network, NetworkViolation, Violation, guard


def one_violation(out: str, action: str, target: str, mode: str = "block") -> dict[str, object]:
    lines = violations(out)
    assert len(lines) == 1, lines
    line = lines[0]
    assert (line["policy"], line["mode"], line["action"], line["target"]) == (
        "network",
        mode,
        action,
        target,
    )
    return line


class TestTCPConnect:
    @pytest.mark.parametrize("family_fixture", ["tcp", "tcp6"])
    def test_blocked_connect_never_reaches_the_listener(
        self,
        family_fixture: str,
        request: pytest.FixtureRequest,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """A connect under network="block" raises a NetworkViolation and no connection arrives."""
        listener: TCPListener = request.getfixturevalue(family_fixture)
        family = socket.AF_INET6 if family_fixture == "tcp6" else socket.AF_INET
        with (
            guard(network="block"),
            socket.socket(family) as s,
            pytest.raises(NetworkViolation) as info,
        ):
            s.connect(listener.address)
        listener.settle()
        assert listener.attempts == 0
        assert not isinstance(info.value, OSError)
        assert (info.value.action, info.value.target) == ("connect", listener.hostport)
        one_violation(capsys.readouterr().out, "connect", listener.hostport)

    def test_blocked_connect_ex_raises_instead_of_returning_an_errno(
        self, tcp: TCPListener, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """connect_ex is governed like connect: a Violation, not an error number to ignore."""
        with guard(network="block"), socket.socket() as s, pytest.raises(NetworkViolation):
            s.connect_ex(tcp.address)
        tcp.settle()
        assert tcp.attempts == 0
        one_violation(capsys.readouterr().out, "connect", tcp.hostport)

    def test_create_connection_is_blocked_once(
        self, tcp: TCPListener, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """socket.create_connection does not turn the Violation into an OSError or try again."""
        with guard(network="block"), pytest.raises(NetworkViolation):
            socket.create_connection(tcp.address)
        tcp.settle()
        assert tcp.attempts == 0
        one_violation(capsys.readouterr().out, "connect", tcp.hostport)

    def test_alerted_connect_goes_ahead_and_is_logged(
        self, tcp6: TCPListener, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Under network="alert" the connection is made and one alert line is written."""
        with guard(network="alert"), socket.socket(socket.AF_INET6) as s:
            s.connect(tcp6.address)
        tcp6.settle()
        assert tcp6.attempts == 1
        one_violation(capsys.readouterr().out, "connect", tcp6.hostport, mode="alert")

    def test_ipv4_mapped_ipv6_address_is_judged_as_ipv4(
        self, tcp: TCPListener, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """::ffff:127.0.0.1 on an IPv6 socket is matched against IPv4 entries, both ways."""
        s6 = socket.socket(socket.AF_INET6)
        s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        with (
            guard(network=Network("block", allow=["10.0.0.0/8"])),
            s6,
            pytest.raises(NetworkViolation),
        ):
            s6.connect(("::ffff:127.0.0.1", tcp.port))
        with (
            guard(network=Network("block", allow=[f"127.0.0.1:{tcp.port}"])),
            socket.socket(socket.AF_INET6) as ok,
        ):
            ok.connect(("::ffff:127.0.0.1", tcp.port))
        tcp.settle()
        assert tcp.attempts == 1
        one_violation(capsys.readouterr().out, "connect", f"[::ffff:127.0.0.1]:{tcp.port}")

    def test_connect_by_name_is_judged_by_the_name_before_any_lookup(
        self, tcp: TCPListener, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """socket.connect(("localhost", port)) resolves inside C; the name is judged first."""
        with (
            guard(network=Network("block", allow=[f"127.0.0.1:{tcp.port}"])),
            socket.socket() as s,
            pytest.raises(NetworkViolation),
        ):
            s.connect(("localhost", tcp.port))
        tcp.settle()
        assert tcp.attempts == 0
        one_violation(capsys.readouterr().out, "connect", f"localhost:{tcp.port}")


class TestUDP:
    @pytest.mark.parametrize("family_fixture", ["udp", "udp6"])
    def test_blocked_sendto_sends_nothing(
        self,
        family_fixture: str,
        request: pytest.FixtureRequest,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """sendto under network="block" raises and no datagram arrives."""
        receiver: UDPReceiver = request.getfixturevalue(family_fixture)
        with guard(network="block"), socket.socket(receiver.sock.family, socket.SOCK_DGRAM) as s:
            with pytest.raises(NetworkViolation):
                s.sendto(b"secret", receiver.address)
            with pytest.raises(NetworkViolation):
                s.sendto(b"secret", 0, receiver.address)
        receiver.settle()
        assert receiver.received == 0
        host = f"[{receiver.host}]" if ":" in receiver.host else receiver.host
        lines = violations(capsys.readouterr().out)
        assert [(v["action"], v["target"]) for v in lines] == [
            ("sendto", f"{host}:{receiver.port}")
        ] * 2

    def test_blocked_sendmsg_sends_nothing(
        self, udp: UDPReceiver, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """sendmsg with an address is judged like sendto."""
        with (
            guard(network="block"),
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s,
            pytest.raises(NetworkViolation),
        ):
            s.sendmsg([b"secret"], [], 0, udp.address)
        udp.settle()
        assert udp.received == 0
        one_violation(capsys.readouterr().out, "sendmsg", f"127.0.0.1:{udp.port}")

    def test_connected_udp_socket_is_judged_at_connect(
        self, udp: UDPReceiver, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A UDP connect() is the decision point for later send() calls, which carry no address."""
        with guard(network="block"), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            with pytest.raises(NetworkViolation):
                s.connect(udp.address)
            with pytest.raises(OSError):  # the socket was closed by the block
                s.send(b"secret")
        udp.settle()
        assert udp.received == 0
        one_violation(capsys.readouterr().out, "connect", f"127.0.0.1:{udp.port}")

    def test_allow_listed_datagrams_arrive(
        self, udp6: UDPReceiver, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """sendto and sendmsg to an allow-listed [IPv6]:port go ahead unreported."""
        with (
            guard(network=Network("block", allow=[f"[::1]:{udp6.port}"])),
            socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s,
        ):
            s.sendto(b"one", udp6.address)
            s.sendmsg([b"two"], [], 0, udp6.address)
        udp6.settle()
        assert sorted(udp6.payloads) == [b"one", b"two"]
        assert violations(capsys.readouterr().out) == []


class TestListening:
    def test_blocked_bind_leaves_the_socket_unbound(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """bind under network="block" raises before the address is taken."""
        with guard(network="block"), socket.socket() as s:
            with pytest.raises(NetworkViolation):
                s.bind(("0.0.0.0", 0))
            assert s.getsockname() == ("0.0.0.0", 0)
        one_violation(capsys.readouterr().out, "bind", "0.0.0.0:0")

    def test_blocked_listen_leaves_the_socket_not_listening(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A socket bound before the scope cannot start listening inside it."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            with guard(network="block"), pytest.raises(NetworkViolation):
                s.listen()
            with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
                probe.connect(("127.0.0.1", port))
        one_violation(capsys.readouterr().out, "listen", f"127.0.0.1:{port}")

    def test_allow_listed_bind_and_listen_work(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A server on an allow-listed address binds and listens unreported."""
        with guard(network=Network("block", allow=["[::1]"])), socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
            s.listen()
            with socket.socket(socket.AF_INET6) as client:
                client.connect(s.getsockname()[:2])
        assert violations(capsys.readouterr().out) == []


class TestBeforeTheScope:
    def test_connections_opened_before_the_scope_are_not_cut(
        self, tcp: TCPListener, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A socket connected before network="block" took effect keeps working inside it."""
        with socket.create_connection(tcp.address) as s, guard(network="block"):
            s.sendall(b"still open")
        tcp.settle()
        assert tcp.attempts == 1
        assert violations(capsys.readouterr().out) == []


class TestViolationType:
    def test_network_violation_is_a_violation_and_not_an_oserror(self, tcp: TCPListener) -> None:
        """HTTP clients retry OSErrors; a NetworkViolation is deliberately none."""
        with guard(network="block"), socket.socket() as s, pytest.raises(Violation) as info:
            s.connect(tcp.address)
        assert isinstance(info.value, NetworkViolation)
        assert not isinstance(info.value, OSError | ConnectionError)
        assert (info.value.policy, info.value.mode) == ("network", "block")


def test_socket_imported_after_activation_is_patched_and_blocked() -> None:
    """socket is patched when first imported: a late import still gets the precise patch layer."""
    code = """
import sys, lambdaguard
with lambdaguard.guard(network="block"):
    pass
print("imported by lambdaguard:", "socket" in sys.modules)
import socket
import subprocess
import sys
print("patched:", hasattr(socket.socket.connect, "__wrapped__"), hasattr(socket.getaddrinfo, "__wrapped__"))
try:
    with lambdaguard.guard(network="block"):
        socket.getaddrinfo("late.example", 443)
except lambdaguard.NetworkViolation as exc:
    print("refused", exc.action, exc.target)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    lines = [line for line in result.stdout.splitlines() if not line.startswith("{")]
    assert lines == [
        "imported by lambdaguard: False",
        "patched: True True",
        "refused resolve late.example:443",
    ], result.stderr
