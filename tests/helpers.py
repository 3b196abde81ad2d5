"""Real servers and log readers shared by the tests (no mocks of lambdaguard's behaviour)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


class CountingListener:
    """A TCP listener on 127.0.0.1 that counts the connections it accepts."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self.port: int = self._sock.getsockname()[1]
        self._lock = threading.Lock()
        self._accepted = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._stopped = False
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopped:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self._accepted += 1
            conn.close()

    @property
    def accepted(self) -> int:
        with self._lock:
            return self._accepted

    def wait_for(self, count: int, timeout: float = 5.0) -> int:
        """Wait until ``count`` connections were accepted (or the timeout); return the count."""
        import time

        deadline = time.monotonic() + timeout
        while self.accepted < count and time.monotonic() < deadline:
            time.sleep(0.005)
        return self.accepted

    def close(self) -> None:
        self._stopped = True
        self._sock.close()


@contextmanager
def counting_listener() -> Iterator[CountingListener]:
    listener = CountingListener()
    try:
        yield listener
    finally:
        listener.close()


def violation_lines(text: str) -> list[dict[str, Any]]:
    """Every line of ``text`` that is a lambdaguard JSON line, parsed; other lines are ignored.

    Every line that mentions lambdaguard must be valid JSON: a malformed one fails the test.
    """
    out = []
    for line in text.splitlines():
        if '"lambdaguard"' in line:
            record = json.loads(line)
            out.append(record)
    return out


def events(text: str, kind: str = "violation") -> list[dict[str, Any]]:
    return [r for r in violation_lines(text) if r["lambdaguard"].get("event") == kind]


@dataclass
class FakeLambdaContext:
    function_name: str = "test-function"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:eu-west-1:123456789012:function:test-function"
    aws_request_id: str = "req-1"


def connect(port: int) -> None:
    """Open and close one TCP connection to 127.0.0.1:port."""
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
