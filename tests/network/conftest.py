"""Fixtures for the network policy tests: loopback servers and a lookup observer."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from netkit import HTTPServer, TCPListener, UDPReceiver

from lambdaguard.policies.network import forget_resolutions
from lambdaguard.sensors import ensure_installed

LOOKUP_EVENTS = frozenset(
    {"socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr", "socket.getnameinfo"}
)


@pytest.fixture(autouse=True)
def _no_remembered_resolutions() -> Iterator[None]:
    forget_resolutions()
    yield
    forget_resolutions()


@pytest.fixture
def tcp() -> Iterator[TCPListener]:
    listener = TCPListener("127.0.0.1")
    yield listener
    listener.close()


@pytest.fixture
def tcp6() -> Iterator[TCPListener]:
    listener = TCPListener("::1")
    yield listener
    listener.close()


@pytest.fixture
def udp() -> Iterator[UDPReceiver]:
    receiver = UDPReceiver("127.0.0.1")
    yield receiver
    receiver.close()


@pytest.fixture
def udp6() -> Iterator[UDPReceiver]:
    receiver = UDPReceiver("::1")
    yield receiver
    receiver.close()


@pytest.fixture
def http() -> Iterator[HTTPServer]:
    server = HTTPServer()
    yield server
    server.close()


class LookupRecorder:
    """Records the name lookups that reach the C resolver call.

    CPython raises a lookup's audit event immediately before it calls the C library's
    resolver, and stops calling audit hooks at the first one that raises. This hook is
    added *after* lambdaguard's: it sees a lookup only if lambdaguard let it through, i.e.
    only lookups that really reach getaddrinfo(3) / gethostbyname(3) and friends.
    """

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.recording = False
        self._lock = threading.Lock()

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        if self.recording and event in LOOKUP_EVENTS:
            with self._lock:
                self.seen.append((event, repr(args[0]) if args else ""))

    def names(self) -> list[str]:
        return [name for _, name in self.seen]


_recorder: LookupRecorder | None = None


@pytest.fixture
def lookups() -> Iterator[LookupRecorder]:
    global _recorder
    if _recorder is None:
        ensure_installed()  # lambdaguard's audit hook first, so ours comes after it
        _recorder = LookupRecorder()
        sys.addaudithook(_recorder.hook)  # cannot be removed (PEP 578); inert when not recording
    _recorder.seen.clear()
    _recorder.recording = True
    yield _recorder
    _recorder.recording = False
