"""Real servers on loopback that count what reaches them, and readers for violation lines.

Counting without timing: every server here has a ``settle()`` that makes one unguarded
sentinel exchange and waits for the server to have handled it. Connections are accepted
and datagrams received in order, so once the sentinel has been handled, any attempt made
before it has been counted too; a count of zero after ``settle()`` means nothing arrived.
"""

from __future__ import annotations

import http.server
import json
import os
import select
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

SETTLE = b"__settle__"


class TCPListener:
    """A listening TCP socket whose accept loop counts connections (sentinels excluded)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.host = host
        self.port: int = self.sock.getsockname()[1]
        self._start()

    def _start(self) -> None:
        self.sock.listen(64)
        self._accepted = 0
        self._sentinels = 0
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def address(self) -> Any:
        return (self.host, self.port)

    @property
    def hostport(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def _serve(self) -> None:
        while not self._stop:
            ready, _, _ = select.select([self.sock], [], [], 0.05)
            if not ready:
                continue
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    first = conn.recv(len(SETTLE))
                except OSError:
                    first = b""
                with self._cond:
                    self._accepted += 1
                    if first == SETTLE:
                        self._sentinels += 1
                    self._cond.notify_all()

    @property
    def attempts(self) -> int:
        """Connections that reached the listener, sentinels excluded."""
        with self._cond:
            return self._accepted - self._sentinels

    def settle(self) -> None:
        """Make one sentinel connection and wait until the accept loop has handled it."""
        with self._cond:
            target = self._sentinels + 1
        with socket.socket(self.sock.family, socket.SOCK_STREAM) as s:
            s.connect(self.address)
            s.sendall(SETTLE)
            with self._cond:
                assert self._cond.wait_for(lambda: self._sentinels >= target, timeout=10)

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        self.sock.close()


class UnixListener(TCPListener):
    """A listening AF_UNIX stream socket at ``path`` (or a Linux abstract name) that counts."""

    def __init__(self, path: str | bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.path = path
        self.host = "unix"
        self.port = 0
        self._start()

    @property
    def address(self) -> Any:
        return self.path


class UDPReceiver:
    """A bound UDP socket whose receive loop counts datagrams (sentinels excluded)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.host = host
        self.port: int = self.sock.getsockname()[1]
        self.payloads: list[bytes] = []
        self._sentinels = 0
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def _serve(self) -> None:
        while not self._stop:
            ready, _, _ = select.select([self.sock], [], [], 0.05)
            if not ready:
                continue
            data, _ = self.sock.recvfrom(65536)
            with self._cond:
                if data == SETTLE:
                    self._sentinels += 1
                else:
                    self.payloads.append(data)
                self._cond.notify_all()

    @property
    def received(self) -> int:
        with self._cond:
            return len(self.payloads)

    def settle(self) -> None:
        with self._cond:
            target = self._sentinels + 1
        with socket.socket(self.sock.family, socket.SOCK_DGRAM) as s:
            s.sendto(SETTLE, self.address)
        with self._cond:
            assert self._cond.wait_for(lambda: self._sentinels >= target, timeout=10)

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        self.sock.close()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass


class HTTPServer(http.server.ThreadingHTTPServer):
    """A real HTTP/1.1 server on 127.0.0.1 that counts accepted connections."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.port: int = self.server_address[1]
        self.connections = 0
        self._sentinel_connections = 0
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up mid-response (a blocked one never arrives) is no news

    def get_request(self) -> Any:
        request = super().get_request()
        self.connections += 1
        return request

    @property
    def attempts(self) -> int:
        return self.connections - self._sentinel_connections

    def settle(self) -> None:
        """One unguarded request, answered: every earlier connection has been accepted."""
        before = self.connections
        with socket.create_connection(("127.0.0.1", self.port)) as s:
            s.sendall(b"GET /settle HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            while s.recv(4096):
                pass
        assert self.connections >= before + 1
        self._sentinel_connections += 1

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join()


class TCPForwarder(TCPListener):
    """A counting TCP proxy: each accepted connection is piped to ``upstream``."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        super().__init__("127.0.0.1")

    def _serve(self) -> None:
        while not self._stop:
            ready, _, _ = select.select([self.sock], [], [], 0.05)
            if not ready:
                continue
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            first = conn.recv(65536)
            with self._cond:
                self._accepted += 1
                if first == SETTLE:
                    self._sentinels += 1
                self._cond.notify_all()
            if first == SETTLE or not first:
                conn.close()
                continue
            threading.Thread(target=self._pipe, args=(conn, first), daemon=True).start()

    def _pipe(self, conn: socket.socket, first: bytes) -> None:
        with conn, socket.create_connection(self.upstream) as up:
            up.sendall(first)
            sockets = [conn, up]
            while True:
                ready, _, _ = select.select(sockets, [], [], 10)
                if not ready:
                    return
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    (up if s is conn else conn).sendall(data)


@contextmanager
def running(server: Any) -> Iterator[Any]:
    try:
        yield server
    finally:
        server.close()


# --- reading violation lines ----------------------------------------------------------------


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every non-blank line of ``text`` parsed as JSON (a line that is not JSON fails)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def violations(text: str) -> list[dict[str, Any]]:
    """The ``lambdaguard`` objects of the violation lines in ``text``."""
    return [
        line["lambdaguard"]
        for line in json_lines(text)
        if isinstance(line.get("lambdaguard"), dict)
        and line["lambdaguard"].get("event") == "violation"
    ]


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


# --- scenarios in a fresh interpreter ------------------------------------------------------------


def run_scenario(code: str, env: dict[str, str] | None = None) -> tuple[list[dict[str, Any]], str]:
    """Run ``code`` in a fresh interpreter; return its stdout as JSON lines, and its stderr.

    The scenario prints its own findings as JSON lines (``{"result": ...}``) next to the
    violation lines lambdaguard writes. A non-zero exit fails the test with stderr shown.
    """
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LAMBDAGUARD_")}
    environ.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json_lines(proc.stdout), proc.stderr


def results(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``{"result": {...}}`` lines of a scenario, merged into one dict."""
    merged: dict[str, Any] = {}
    for line in lines:
        if "result" in line:
            merged.update(line["result"])
    return merged
