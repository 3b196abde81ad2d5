"""Allow-list syntax and matching: hosts, globs, IPs, CIDR blocks, ports, IPv6 brackets, errors."""

from __future__ import annotations

import socket

import pytest
from netkit import TCPListener, violations

from lambdaguard import ConfigError, Network, NetworkViolation, guard
from lambdaguard.policies.network import NetworkTarget
from lambdaguard.policy import Event

ACCEPTED = (
    "accepted: host, host:port, *.glob, *.glob:port, IPv4, IPv4:port, IPv6, [IPv6]:port, "
    "CIDR, CIDR:port, [IPv6-CIDR]:port, unix:/path/glob, unix:@abstract-name."
)


NOT_ABSOLUTE = (
    "is not an absolute socket path; unix: takes /an/absolute/path/glob or @abstract-name"
)


def permits(entry: str, action: str, family: str, host: str, port: int | None) -> bool:
    target = NetworkTarget(family, host, port)
    return Network("block", allow=[entry]).permits(Event("network", action, str(target), target))


class TestMatching:
    @pytest.mark.parametrize(
        ("entry", "action", "family", "host", "port", "expected"),
        [
            # host names: any port, or one port; case and a trailing dot do not matter
            ("api.example.com", "connect", "inet", "api.example.com", 443, True),
            ("api.example.com:443", "connect", "inet", "api.example.com", 443, True),
            ("api.example.com:443", "connect", "inet", "api.example.com", 80, False),
            ("API.Example.COM.", "connect", "inet", "api.example.com", 80, True),
            ("api.example.com", "connect", "inet", "API.EXAMPLE.COM.", 80, True),
            ("api.example.com", "connect", "inet", "evil-api.example.com", 80, False),
            # a port on a name entry does not restrict the lookup of that name
            ("api.example.com:443", "resolve", "name", "api.example.com", 80, True),
            ("api.example.com:443", "resolve", "name", "other.example.com", 443, False),
            # globs: * spans labels, but the suffix must match
            ("*.amazonaws.com", "resolve", "name", "s3.eu-west-1.amazonaws.com", 443, True),
            ("*.amazonaws.com", "resolve", "name", "amazonaws.com", 443, False),
            ("*.amazonaws.com", "resolve", "name", "evilamazonaws.com", 443, False),
            ("*.amazonaws.com", "resolve", "name", "amazonaws.com.evil.com", 443, False),
            ("*.amazonaws.com:443", "connect", "inet", "sts.amazonaws.com", 80, False),
            ("*", "resolve", "name", "anything.example", None, True),
            # a name entry never allows an IP by itself (only what that name resolved to)
            ("*", "connect", "inet", "203.0.113.7", 443, False),
            # IPv4 addresses and blocks, with and without a port
            ("203.0.113.7", "connect", "inet", "203.0.113.7", 8080, True),
            ("203.0.113.7:443", "connect", "inet", "203.0.113.7", 8080, False),
            ("203.0.113.7:443", "sendto", "inet", "203.0.113.7", 443, True),
            ("10.0.0.0/8", "connect", "inet", "10.200.1.2", 5432, True),
            ("10.0.0.0/8", "connect", "inet", "11.0.0.1", 5432, False),
            ("10.0.0.0/8:5432", "connect", "inet", "10.200.1.2", 5433, False),
            ("10.1.2.3/8", "connect", "inet", "10.9.9.9", 1, True),  # host bits are ignored
            # IPv4-mapped IPv6 targets are judged as the IPv4 address they carry
            ("10.0.0.0/8", "connect", "inet6", "::ffff:10.0.0.1", 80, True),
            ("::/0", "connect", "inet6", "::ffff:10.0.0.1", 80, False),
            # IPv6: bare, bracketed with a port, blocks, scope ids dropped
            ("::1", "connect", "inet6", "::1", 9000, True),
            ("[::1]:8080", "connect", "inet6", "::1", 8080, True),
            ("[::1]:8080", "connect", "inet6", "::1", 8081, False),
            ("2001:db8::/32", "connect", "inet6", "2001:db8:1::5", 443, True),
            ("[2001:db8::/32]:443", "connect", "inet6", "2001:db8:1::5", 443, True),
            ("[2001:db8::/32]:443", "connect", "inet6", "2001:db9::5", 443, False),
            ("fe80::1", "connect", "inet6", "fe80::1%eth0", 80, True),
            ("::1", "connect", "inet", "127.0.0.1", 80, False),
            # reverse lookups are judged by the address, whatever the entry's port
            ("192.0.2.0/24:443", "reverse-resolve", "ip", "192.0.2.1", None, True),
            # unix entries only match unix targets, and vice versa
            ("unix:/run/app/*.sock", "connect", "unix", "/run/app/db.sock", None, True),
            ("unix:/run/app/*.sock", "connect", "unix", "/run/other/db.sock", None, False),
            ("unix:@agent", "connect", "unix", "@agent", None, True),
            ("unix:/run/app/*", "connect", "unix", "/run/app/sub/deep.sock", None, True),
            ("unix:/run/app/*", "connect", "inet", "/run/app/x", 80, False),
        ],
    )
    def test_entry_matches_exactly_what_the_table_says(
        self, entry: str, action: str, family: str, host: str, port: int | None, expected: bool
    ) -> None:
        """Each allow-list form permits the targets docs/network.md says it does, and no others."""
        assert permits(entry, action, family, host, port) is expected


class TestAllowListOnRealConnections:
    @pytest.mark.parametrize(
        ("entry", "connect_to", "allowed"),
        [
            ("127.0.0.1", "127.0.0.1", True),
            ("127.0.0.1:{port}", "127.0.0.1", True),
            ("127.0.0.1:{other}", "127.0.0.1", False),
            ("127.0.0.0/8", "127.0.0.1", True),
            ("127.0.0.0/8:{port}", "127.0.0.1", True),
            ("127.0.0.0/8:{other}", "127.0.0.1", False),
            ("10.0.0.0/8", "127.0.0.1", False),
            ("localhost", "localhost", True),
            ("localhost:{port}", "localhost", True),
            ("local*:{port}", "localhost", True),
            ("*.localhost", "localhost", False),
            ("localhost:{other}", "localhost", False),
        ],
    )
    def test_ipv4_listener(
        self,
        entry: str,
        connect_to: str,
        allowed: bool,
        tcp: TCPListener,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """Real connects to 127.0.0.1 (by address or name) pass exactly the matching entries."""
        other = tcp.port + 1 if tcp.port < 65535 else tcp.port - 1
        rule = Network("block", allow=[entry.format(port=tcp.port, other=other)])
        with guard(network=rule):
            try:
                socket.create_connection((connect_to, tcp.port)).close()
                outcome = True
            except NetworkViolation:
                outcome = False
        tcp.settle()
        assert (outcome, tcp.attempts) == (allowed, int(allowed))
        assert len(violations(capsys.readouterr().out)) == int(not allowed)

    @pytest.mark.parametrize(
        ("entry", "allowed"),
        [
            ("::1", True),
            ("[::1]", True),
            ("[::1]:{port}", True),
            ("[::1]:{other}", False),
            ("::1/128", True),
            ("[::/0]:{port}", True),
            ("::2", False),
            ("127.0.0.1", False),
            ("0:0:0:0:0:0:0:1", True),
        ],
    )
    def test_ipv6_listener(
        self, entry: str, allowed: bool, tcp6: TCPListener, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Real connects to [::1] pass exactly the matching IPv6 entries."""
        other = tcp6.port + 1 if tcp6.port < 65535 else tcp6.port - 1
        rule = Network("block", allow=[entry.format(port=tcp6.port, other=other)])
        with guard(network=rule):
            try:
                socket.create_connection(("::1", tcp6.port)).close()
                outcome = True
            except NetworkViolation:
                outcome = False
        tcp6.settle()
        assert (outcome, tcp6.attempts) == (allowed, int(allowed))
        assert len(violations(capsys.readouterr().out)) == int(not allowed)

    def test_environment_allow_list_is_used(
        self, tcp: TCPListener, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """LAMBDAGUARD_NETWORK_ALLOW with a bare @guard() and LAMBDAGUARD_NETWORK=block."""
        monkeypatch.setenv("LAMBDAGUARD_NETWORK", "block")
        monkeypatch.setenv("LAMBDAGUARD_NETWORK_ALLOW", f" 10.0.0.0/8 , 127.0.0.1:{tcp.port}")
        with guard():
            socket.create_connection(tcp.address).close()
            with pytest.raises(NetworkViolation):
                socket.create_connection(("127.0.0.1", 9))
        tcp.settle()
        assert tcp.attempts == 1
        assert len(violations(capsys.readouterr().out)) == 1

    def test_nested_allow_lists_intersect(self, tcp: TCPListener, tcp6: TCPListener) -> None:
        """An address must be allowed by every blocking layer."""
        outer = Network("block", allow=["127.0.0.1", "::1"])
        inner = Network("block", allow=["::1", "10.0.0.0/8"])
        with guard(network=outer), guard(network=inner):
            socket.create_connection(tcp6.address).close()
            with pytest.raises(NetworkViolation):
                socket.create_connection(tcp.address)
        tcp.settle()
        tcp6.settle()
        assert (tcp.attempts, tcp6.attempts) == (0, 1)


class TestBadEntries:
    @pytest.mark.parametrize(
        ("entry", "problem"),
        [
            ("api.example.com:99999", "has port '99999'; a port is a whole number from 1 to 65535"),
            ("api.example.com:0", "has port '0'; a port is a whole number from 1 to 65535"),
            ("api.example.com:", "has port ''; a port is a whole number from 1 to 65535"),
            ("api.example.com:https", "has port 'https'; a port is a whole number from 1 to 65535"),
            ("[::1]:", "has port ''; a port is a whole number from 1 to 65535"),
            ("10.0.0.0/33", "is not a valid CIDR block"),
            ("10.0.0/8x", "is not a valid CIDR block"),
            ("10.0.0.256", "is not a valid IPv4 address"),
            ("[::1", "is malformed"),
            ("[::1]8080", "is malformed"),
            ("::zz", "is not a valid IPv6 address"),
            ("1.2.3.4:80:90", "is not a valid IPv6 address"),
            (
                "[example.com]:443",
                "has brackets around 'example.com'; brackets hold an IPv6 address or block",
            ),
            ("bad host!", "is not a host name, address or block"),
            (
                "https://api.example.com:443",
                "is a URL; give the host and optional port only (api.example.com:443)",
            ),
            (
                "unix:",
                NOT_ABSOLUTE,
            ),
            (
                "unix:run/app.sock",
                NOT_ABSOLUTE,
            ),
        ],
    )
    def test_bad_entry_raises_config_error_naming_it(self, entry: str, problem: str) -> None:
        """A malformed entry is a ConfigError naming the source, the entry and what is accepted."""
        with pytest.raises(ConfigError) as info:
            Network("block", allow=["ok.example.com", entry])
        assert (
            str(info.value)
            == f"Network(allow=...): allow-list entry {entry!r} {problem}; {ACCEPTED}"
        )

    def test_bad_environment_entry_names_the_variable(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A bad LAMBDAGUARD_NETWORK_ALLOW entry is reported against that variable."""
        monkeypatch.setenv("LAMBDAGUARD_NETWORK_ALLOW", "10.0.0.0/8,10.0.0.0/99")
        with pytest.raises(ConfigError) as info:
            guard(network="block")
        assert str(info.value) == (
            "LAMBDAGUARD_NETWORK_ALLOW: allow-list entry '10.0.0.0/99' is not a valid CIDR block; "
            + ACCEPTED
        )

    def test_config_error_is_a_value_error(self) -> None:
        """ConfigError is a ValueError, per the contract."""
        with pytest.raises(ValueError, match="is not a valid CIDR block"):
            Network("block", allow="10.0.0.0/40")
