"""Name lookups under the network policy: a blocked name is never resolved.

"Never resolved" is observed, not inferred from the exception: the ``lookups`` fixture is
an audit hook added after lambdaguard's, which sees exactly the lookups that reach the C
library's resolver (see conftest.LookupRecorder). The positive controls prove it does.
"""

from __future__ import annotations

import socket
import uuid

import pytest
from conftest import LookupRecorder
from netkit import TCPListener, violations

from lambdaguard import Network, NetworkViolation, guard


def secret_name() -> str:
    # What an exfiltrating lookup looks like: data in the labels of a name nobody knows.
    return f"lg-{uuid.uuid4().hex}.exfil.invalid"


class TestBlockedLookups:
    def test_getaddrinfo_of_a_blocked_name_never_reaches_the_resolver(
        self, lookups: LookupRecorder, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """getaddrinfo raises a NetworkViolation and the resolver is never asked."""
        name = secret_name()
        with guard(network="block"), pytest.raises(NetworkViolation) as info:
            socket.getaddrinfo(name, 443)
        assert lookups.seen == []
        assert (info.value.action, info.value.target) == ("resolve", f"{name}:443")
        [line] = violations(capsys.readouterr().out)
        assert (line["action"], line["target"]) == ("resolve", f"{name}:443")

    @pytest.mark.parametrize("function", ["gethostbyname", "gethostbyname_ex"])
    def test_gethostbyname_of_a_blocked_name_never_reaches_the_resolver(
        self, function: str, lookups: LookupRecorder, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """gethostbyname and gethostbyname_ex are blocked before the lookup."""
        name = secret_name()
        with guard(network="block"), pytest.raises(NetworkViolation):
            getattr(socket, function)(name)
        assert lookups.seen == []
        [line] = violations(capsys.readouterr().out)
        assert (line["action"], line["target"]) == ("resolve", name)

    def test_gethostbyaddr_is_a_blocked_reverse_lookup(
        self, lookups: LookupRecorder, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A reverse lookup of an IP is governed too (it sends a PTR query)."""
        with guard(network="block"), pytest.raises(NetworkViolation):
            socket.gethostbyaddr("192.0.2.1")
        assert lookups.seen == []
        [line] = violations(capsys.readouterr().out)
        assert (line["action"], line["target"]) == ("reverse-resolve", "192.0.2.1")

    def test_gethostbyaddr_of_a_name_is_a_blocked_forward_lookup(
        self, lookups: LookupRecorder, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """gethostbyaddr("name") resolves the name first, so it is judged as a lookup of it."""
        name = secret_name()
        with guard(network="block"), pytest.raises(NetworkViolation):
            socket.gethostbyaddr(name)
        assert lookups.seen == []
        [line] = violations(capsys.readouterr().out)
        assert (line["action"], line["target"]) == ("resolve", name)

    def test_getnameinfo_reverse_lookup_is_blocked(
        self, lookups: LookupRecorder, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """getnameinfo without NI_NUMERICHOST asks the resolver for a name: blocked."""
        with guard(network="block"), pytest.raises(NetworkViolation):
            socket.getnameinfo(("192.0.2.1", 80), 0)
        assert lookups.seen == []
        [line] = violations(capsys.readouterr().out)
        assert (line["action"], line["target"]) == ("reverse-resolve", "192.0.2.1")

    def test_asyncio_getaddrinfo_of_a_blocked_name_never_reaches_the_resolver(
        self, lookups: LookupRecorder, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """loop.getaddrinfo runs in the default executor, which stays inside the scope."""
        import asyncio

        name = secret_name()

        async def lookup() -> None:
            await asyncio.get_running_loop().getaddrinfo(name, 80)

        with guard(network="block"), pytest.raises(NetworkViolation):
            asyncio.run(lookup())
        assert lookups.seen == []
        assert len(violations(capsys.readouterr().out)) == 1


class TestNamesWithNul:
    @pytest.mark.parametrize("as_bytes", [False, True])
    def test_nul_cannot_smuggle_a_name_past_a_glob(
        self,
        as_bytes: bool,
        tcp: TCPListener,
        lookups: LookupRecorder,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """getaddrinfo resolves up to a NUL: "localhost\\0.example.com" is judged as localhost."""
        host: str | bytes = "localhost\0.example.com"
        if as_bytes:
            host = host.encode()
        with guard(network=Network("block", allow=["*.example.com"])):
            with pytest.raises(NetworkViolation):
                socket.getaddrinfo(host, tcp.port)
            with socket.socket() as s, pytest.raises(NetworkViolation):
                s.connect(("127.0.0.1", tcp.port))  # nothing was remembered for the glob
        tcp.settle()
        assert tcp.attempts == 0
        assert lookups.seen == []
        lines = violations(capsys.readouterr().out)
        assert [v["target"] for v in lines] == [f"localhost:{tcp.port}", f"127.0.0.1:{tcp.port}"]


class TestLookupsThatLeaveNothing:
    def test_numeric_hosts_are_not_lookups(
        self, lookups: LookupRecorder, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """getaddrinfo / gethostbyname of an IP literal send no query: not reported."""
        with guard(network="block"):
            assert socket.getaddrinfo("127.0.0.1", 80)[0][4][0] == "127.0.0.1"
            assert socket.getaddrinfo("::1", 80, socket.AF_INET6)[0][4][0] == "::1"
            assert socket.gethostbyname("127.0.0.1") == "127.0.0.1"
        assert violations(capsys.readouterr().out) == []

    def test_numeric_getnameinfo_is_not_a_lookup(
        self, lookups: LookupRecorder, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """getnameinfo with NI_NUMERICHOST | NI_NUMERICSERV only formats: allowed, unreported."""
        flags = socket.NI_NUMERICHOST | socket.NI_NUMERICSERV
        with guard(network="block"):
            assert socket.getnameinfo(("127.0.0.1", 80), flags) == ("127.0.0.1", "80")
        assert violations(capsys.readouterr().out) == []


class TestAllowedLookups:
    def test_allowed_name_is_resolved(
        self, lookups: LookupRecorder, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Positive control: an allow-listed name reaches the resolver, once per call."""
        with guard(network=Network("block", allow=["localhost"])):
            assert socket.gethostbyname("localhost") == "127.0.0.1"
            socket.getaddrinfo("localhost", 80)
        assert lookups.names() == ["'localhost'", "'localhost'"]
        assert violations(capsys.readouterr().out) == []

    def test_alerted_lookup_is_resolved_and_logged(
        self, lookups: LookupRecorder, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Under alert the lookup goes ahead and is logged once (not once per layer)."""
        with guard(network="alert"):
            socket.getaddrinfo("localhost", None)
        assert lookups.names() == ["'localhost'"]
        [line] = violations(capsys.readouterr().out)
        assert (line["mode"], line["action"], line["target"]) == ("alert", "resolve", "localhost")

    def test_allowed_name_allows_the_addresses_it_resolved_to(
        self, tcp: TCPListener, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """127.0.0.1 is allowed under "localhost:<port>" only once localhost resolved to it."""
        with guard(network=Network("block", allow=[f"localhost:{tcp.port}"])):
            with socket.socket() as s, pytest.raises(NetworkViolation):
                s.connect(("127.0.0.1", tcp.port))
            with socket.create_connection(("localhost", tcp.port)):
                pass
            with socket.socket() as s:
                s.connect(("127.0.0.1", tcp.port))  # now known as localhost
            with socket.socket() as s, pytest.raises(NetworkViolation):
                s.connect(("127.0.0.1", tcp.port + 1 if tcp.port < 65535 else tcp.port - 1))
        tcp.settle()
        assert tcp.attempts == 2
        targets = [v["target"] for v in violations(capsys.readouterr().out)]
        assert targets[0] == f"127.0.0.1:{tcp.port}"

    def test_resolution_of_an_allowed_name_does_not_open_the_address_to_other_scopes(
        self, tcp: TCPListener
    ) -> None:
        """The remembered answer counts only under a rule that allows that name."""
        with guard(network=Network("block", allow=["localhost"])):
            socket.getaddrinfo("localhost", tcp.port)
        with (
            guard(network=Network("block", allow=["example.com"])),
            socket.socket() as s,
            pytest.raises(NetworkViolation),
        ):
            s.connect(("127.0.0.1", tcp.port))
        tcp.settle()
        assert tcp.attempts == 0


class TestRememberedAnswers:
    def test_lookups_outside_any_scope_are_not_remembered(self, tcp: TCPListener) -> None:
        """An answer obtained with no policy in force opens nothing later."""
        socket.getaddrinfo("localhost", tcp.port)
        with (
            guard(network=Network("block", allow=[f"localhost:{tcp.port}"])),
            socket.socket() as s,
            pytest.raises(NetworkViolation),
        ):
            s.connect(("127.0.0.1", tcp.port))
        tcp.settle()
        assert tcp.attempts == 0

    def test_remembered_answers_are_bounded_oldest_first(self) -> None:
        """At most 4096 addresses are remembered; the oldest is forgotten first."""
        from lambdaguard.policies.network import names_for, parse_ip, remember_resolution

        remember_resolution("first.example", ["10.0.0.1"])
        for i in range(4096):
            remember_resolution(f"n{i}.example", [f"10.1.{i // 256}.{i % 256}"])
        first, last = parse_ip("10.0.0.1"), parse_ip("10.1.15.255")
        assert first is not None
        assert last is not None
        assert names_for(first) == frozenset()
        assert names_for(last) == frozenset({"n4095.example"})
