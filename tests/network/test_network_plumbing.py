"""Lambda's own plumbing works under any network policy, as the environment said at build."""

from __future__ import annotations

import http.client
import os
import pickle
import socket
import subprocess
import sys

import pytest
from netkit import HTTPServer, TCPListener, UDPReceiver, violations

from lambdaguard import Network, NetworkViolation, guard


def init_error(runtime_api: str) -> int:
    # What awslambdaric does to report an init error: a plain http.client POST.
    conn = http.client.HTTPConnection(runtime_api, timeout=10)
    try:
        conn.request("POST", "/2018-06-01/runtime/init/error", body=b"{}")
        return conn.getresponse().status
    finally:
        conn.close()


class TestRuntimeAPI:
    @pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
    def test_runtime_api_is_reachable_under_block(
        self,
        host: str,
        http: HTTPServer,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """A plain http.client call to AWS_LAMBDA_RUNTIME_API works under network="block"."""
        monkeypatch.setenv("AWS_LAMBDA_RUNTIME_API", f"{host}:{http.port}")
        with guard(network="block"):
            assert init_error(f"{host}:{http.port}") == 200
        http.settle()
        assert http.attempts == 1
        assert violations(capsys.readouterr().out) == []

    def test_extensions_api_shares_the_runtime_api_address(
        self, http: HTTPServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The extensions API shares the Runtime API address: allowed, also under the env policy."""
        monkeypatch.setenv("AWS_LAMBDA_RUNTIME_API", f"127.0.0.1:{http.port}")
        monkeypatch.setenv("LAMBDAGUARD_NETWORK", "block")
        with guard():
            conn = http_client(http.port)
            conn.request("POST", "/2020-01-01/extension/register", body=b"{}")
            assert conn.getresponse().status == 200
            conn.close()
        assert violations(capsys.readouterr().out) == []

    def test_only_the_runtime_api_port_is_opened(
        self, http: HTTPServer, tcp: TCPListener, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The exemption is host:port, not the whole host."""
        monkeypatch.setenv("AWS_LAMBDA_RUNTIME_API", f"127.0.0.1:{http.port}")
        with guard(network="block"), socket.socket() as s, pytest.raises(NetworkViolation):
            s.connect(tcp.address)
        tcp.settle()
        assert tcp.attempts == 0

    def test_setting_the_variable_after_the_policy_is_built_does_not_loosen_it(
        self, http: HTTPServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A guard built before AWS_LAMBDA_RUNTIME_API was set still blocks that address."""
        monkeypatch.delenv("AWS_LAMBDA_RUNTIME_API", raising=False)
        g = guard(network="block")
        monkeypatch.setenv("AWS_LAMBDA_RUNTIME_API", f"127.0.0.1:{http.port}")
        with g, pytest.raises(NetworkViolation):
            init_error(f"127.0.0.1:{http.port}")
        http.settle()
        assert http.attempts == 0
        assert len(violations(capsys.readouterr().out)) == 1

    def test_changing_the_variable_later_neither_loosens_nor_breaks_the_policy(
        self, http: HTTPServer, tcp: TCPListener, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Repointing AWS_LAMBDA_RUNTIME_API later opens nothing new and keeps the old address."""
        monkeypatch.setenv("AWS_LAMBDA_RUNTIME_API", f"127.0.0.1:{http.port}")
        rule = Network("block")
        monkeypatch.setenv("AWS_LAMBDA_RUNTIME_API", f"127.0.0.1:{tcp.port}")
        with guard(network=rule):
            with socket.socket() as s, pytest.raises(NetworkViolation):
                s.connect(tcp.address)
            assert init_error(f"127.0.0.1:{http.port}") == 200
        tcp.settle()
        assert tcp.attempts == 0


class TestXRayDaemon:
    @pytest.mark.parametrize("form", ["plain", "udp-and-tcp"])
    def test_xray_daemon_receives_udp_under_block(
        self,
        form: str,
        udp: UDPReceiver,
        tcp: TCPListener,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """Segments sent over UDP to AWS_XRAY_DAEMON_ADDRESS arrive, in both of its formats."""
        value = (
            f"127.0.0.1:{udp.port}"
            if form == "plain"
            else f"udp:127.0.0.1:{udp.port} tcp:127.0.0.1:{tcp.port}"
        )
        monkeypatch.setenv("AWS_XRAY_DAEMON_ADDRESS", value)
        with guard(network="block"):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(b'{"format":"json","version":1}\nsegment', udp.address)
            if form == "udp-and-tcp":
                with socket.create_connection(tcp.address):  # the sampling-rules endpoint
                    pass
        udp.settle()
        assert udp.received == 1
        assert violations(capsys.readouterr().out) == []

    def test_xray_address_set_after_the_policy_is_built_is_not_allowed(
        self, udp: UDPReceiver, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A daemon address that appears after the policy was built is not exempt."""
        monkeypatch.delenv("AWS_XRAY_DAEMON_ADDRESS", raising=False)
        g = guard(network="block")
        monkeypatch.setenv("AWS_XRAY_DAEMON_ADDRESS", f"127.0.0.1:{udp.port}")
        with (
            g,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s,
            pytest.raises(NetworkViolation),
        ):
            s.sendto(b"segment", udp.address)
        udp.settle()
        assert udp.received == 0

    def test_malformed_lambda_variables_are_ignored_not_raised(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Lambda's own variables are not the function's to fix: a malformed one exempts nothing."""
        monkeypatch.setenv("AWS_XRAY_DAEMON_ADDRESS", "udp:not a host:99999")
        monkeypatch.setenv("AWS_LAMBDA_RUNTIME_API", "")
        with (
            guard(network="block"),
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s,
            pytest.raises(NetworkViolation),
        ):
            s.sendto(b"x", ("127.0.0.1", 9))


def http_client(port: int) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", port, timeout=10)


class TestParsedOnFirstUse:
    def test_building_a_guard_in_lambda_does_not_import_ipaddress(self) -> None:
        """The plumbing's IP is read at build but parsed at the first decision: no ipaddress yet."""
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        code = (
            "import sys\n"
            f"sys.path.insert(0, {root!r})\n"
            "before = 'ipaddress' in sys.modules\n"
            "from lambdaguard import Network, guard\n"
            "guard(network=Network('block', allow=['*.amazonaws.com:443']), tmp='block')\n"
            "print(before, 'ipaddress' in sys.modules)\n"
        )
        # -S: no site, whose editable-install finder would import ipaddress itself.
        out = subprocess.run(
            [sys.executable, "-S", "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001"},
        ).stdout
        assert out.split() == ["False", "False"]

    def test_a_rule_pickled_before_its_first_decision_still_allows_the_plumbing(
        self, http: HTTPServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A rule travels to a process-pool worker unparsed and still exempts the Runtime API."""
        monkeypatch.setenv("AWS_LAMBDA_RUNTIME_API", f"127.0.0.1:{http.port}")
        rule = pickle.loads(pickle.dumps(Network("block")))
        monkeypatch.delenv("AWS_LAMBDA_RUNTIME_API")
        with guard(network=rule):
            assert init_error(f"127.0.0.1:{http.port}") == 200
            with socket.socket() as s, pytest.raises(NetworkViolation):
                s.connect(("127.0.0.1", http.port + 1 if http.port < 65535 else 1))
        http.settle()
        assert http.attempts == 1
