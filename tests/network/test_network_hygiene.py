"""What a blocked connect leaves behind: no open descriptor, and the line before the error."""

from __future__ import annotations

import io
import socket
import sys
from typing import Any

import pytest
import requests
from netkit import HTTPServer, TCPListener, fd_count, violations

from lambdaguard import NetworkViolation, guard


class _RecordingStdout(io.StringIO):
    """A stdout that notes, for each write, whether an exception was already in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight: list[Any] = []

    def write(self, text: str) -> int:
        if text.strip():
            self.in_flight.append(sys.exc_info()[1])
        return super().write(text)


class TestNoDescriptorLeak:
    def test_blocked_connect_closes_the_socket(self, tcp: TCPListener) -> None:
        """The socket is closed before the Violation is raised: its fd is gone."""
        before = fd_count()
        s = socket.socket()
        with guard(network="block"), pytest.raises(NetworkViolation):
            s.connect(tcp.address)
        assert s.fileno() == -1
        assert fd_count() == before
        s.close()  # a second close is harmless

    def test_many_blocked_requests_leak_no_descriptors(
        self, http: HTTPServer, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Fifty blocked connects (create_connection, requests) leave the fd count as it was."""
        with requests.Session() as session:
            session.trust_env = False
            before = fd_count()
            with guard(network="block"):
                for _ in range(25):
                    with pytest.raises(NetworkViolation):
                        socket.create_connection(("127.0.0.1", http.port))
                    with pytest.raises(NetworkViolation):
                        session.get(http.url, timeout=5)
            after = fd_count()
        assert after == before
        assert len(violations(capsys.readouterr().out)) == 50


class TestLineBeforeError:
    def test_violation_line_is_written_before_the_exception_is_raised(
        self, tcp: TCPListener, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The line is written with no exception in flight, and is there when it is caught."""
        out = _RecordingStdout()
        monkeypatch.setattr(sys, "stdout", out)
        with guard(network="block"), socket.socket() as s:
            try:
                s.connect(tcp.address)
            except NetworkViolation:
                written_when_caught = out.getvalue()
        assert out.in_flight == [None]
        assert len(violations(written_when_caught)) == 1


class TestPooledConnections:
    def test_keep_alive_connection_pooled_before_the_scope_is_reused_inside_it(
        self, http: HTTPServer, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Limit: a Session connection opened before the scope carries requests inside it."""
        with requests.Session() as session:
            session.trust_env = False
            assert session.get(http.url, timeout=5).content == b"ok"
            with guard(network="block"):
                assert session.get(http.url, timeout=5).content == b"ok"
        http.settle()
        assert http.attempts == 1  # one connection, opened before the scope, used twice
        assert violations(capsys.readouterr().out) == []
