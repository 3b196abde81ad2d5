"""AF_UNIX sockets: governed by the network policy as ``unix:/path``, allowed by ``unix:`` globs."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator

import pytest
from netkit import UnixListener, violations

from lambdaguard import Network, NetworkViolation, guard


@pytest.fixture
def sockdir() -> Iterator[str]:
    # Short paths: an AF_UNIX path is limited to 107 bytes, and pytest's tmp_path can be longer.
    path = tempfile.mkdtemp(prefix="lgu-")
    yield path
    shutil.rmtree(path)


@pytest.fixture
def unix_listener(sockdir: str) -> Iterator[UnixListener]:
    listener = UnixListener(os.path.join(sockdir, "app.sock"))
    yield listener
    listener.close()


class TestUnixSockets:
    def test_blocked_unix_connect_never_reaches_the_listener(
        self, unix_listener: UnixListener, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """connect() to a unix socket under network="block" is a Violation on unix:/path."""
        with (
            guard(network="block"),
            socket.socket(socket.AF_UNIX) as s,
            pytest.raises(NetworkViolation) as info,
        ):
            s.connect(unix_listener.path)
        unix_listener.settle()
        assert unix_listener.attempts == 0
        assert info.value.target == f"unix:{unix_listener.path}"
        [line] = violations(capsys.readouterr().out)
        assert (line["action"], line["target"]) == ("connect", f"unix:{unix_listener.path}")

    def test_allow_listed_unix_glob_connects(
        self, sockdir: str, unix_listener: UnixListener, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A ``unix:<dir>/*.sock`` entry allows the sockets in that directory."""
        with (
            guard(network=Network("block", allow=[f"unix:{sockdir}/*.sock"])),
            socket.socket(socket.AF_UNIX) as s,
        ):
            s.connect(unix_listener.path)
        unix_listener.settle()
        assert unix_listener.attempts == 1
        assert violations(capsys.readouterr().out) == []

    def test_dot_dot_does_not_escape_an_allow_listed_directory(
        self, sockdir: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A path is normalised before matching: <dir>/sub/../../x.sock is not under <dir>/sub."""
        os.mkdir(os.path.join(sockdir, "sub"))
        outside = UnixListener(os.path.join(sockdir, "outside.sock"))
        try:
            sneaky = os.path.join(sockdir, "sub", "..", "outside.sock")
            with (
                guard(network=Network("block", allow=[f"unix:{sockdir}/sub/*"])),
                socket.socket(socket.AF_UNIX) as s,
                pytest.raises(NetworkViolation),
            ):
                s.connect(sneaky)
            outside.settle()
            assert outside.attempts == 0
        finally:
            outside.close()
        [line] = violations(capsys.readouterr().out)
        assert line["target"] == f"unix:{sockdir}/outside.sock"

    def test_relative_paths_are_judged_as_absolute(
        self, sockdir: str, unix_listener: UnixListener, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A relative socket path is matched and reported as the absolute path it names."""
        monkeypatch.chdir(sockdir)
        with (
            guard(network=Network("block", allow=[f"unix:{sockdir}/app.sock"])),
            socket.socket(socket.AF_UNIX) as s,
        ):
            s.connect("app.sock")
        with (
            guard(network="block"),
            socket.socket(socket.AF_UNIX) as s,
            pytest.raises(NetworkViolation) as info,
        ):
            s.connect("app.sock")
        unix_listener.settle()
        assert unix_listener.attempts == 1
        assert info.value.target == f"unix:{sockdir}/app.sock"

    def test_abstract_namespace_names_are_shown_and_allowed_with_an_at_sign(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Linux abstract names (leading NUL) appear as unix:@name and are allow-listed that way."""
        name = f"lg-{uuid.uuid4().hex[:12]}"
        listener = UnixListener(b"\0" + name.encode())
        try:
            with (
                guard(network="block"),
                socket.socket(socket.AF_UNIX) as s,
                pytest.raises(NetworkViolation),
            ):
                s.connect(b"\0" + name.encode())
            with (
                guard(network=Network("block", allow=[f"unix:@{name}"])),
                socket.socket(socket.AF_UNIX) as s,
            ):
                s.connect("\0" + name)
            listener.settle()
            assert listener.attempts == 1
        finally:
            listener.close()
        [line] = violations(capsys.readouterr().out)
        assert line["target"] == f"unix:@{name}"

    def test_blocked_unix_bind_creates_no_socket_file(
        self, sockdir: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """bind() of a unix path is blocked before the socket file exists."""
        path = os.path.join(sockdir, "server.sock")
        with (
            guard(network="block"),
            socket.socket(socket.AF_UNIX) as s,
            pytest.raises(NetworkViolation),
        ):
            s.bind(path)
        assert not os.path.exists(path)
        [line] = violations(capsys.readouterr().out)
        assert (line["action"], line["target"]) == ("bind", f"unix:{path}")

    def test_blocked_unix_datagram_is_not_delivered(self, sockdir: str) -> None:
        """sendto() on an AF_UNIX datagram socket is governed like UDP."""
        path = os.path.join(sockdir, "log.sock")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
            receiver.bind(path)
            receiver.setblocking(False)
            with (
                guard(network="block"),
                socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s,
                pytest.raises(NetworkViolation),
            ):
                s.sendto(b"secret", path)
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.sendto(b"sentinel", path)
            assert receiver.recv(100) == b"sentinel"

    def test_symbolic_links_are_not_followed(self, sockdir: str) -> None:
        """Limit: a link inside an allowed directory reaches the socket it points to."""
        os.mkdir(os.path.join(sockdir, "allowed"))
        target = UnixListener(os.path.join(sockdir, "elsewhere.sock"))
        try:
            link = os.path.join(sockdir, "allowed", "link.sock")
            os.symlink(target.path, link)
            with (
                guard(network=Network("block", allow=[f"unix:{sockdir}/allowed/*"])),
                socket.socket(socket.AF_UNIX) as s,
            ):
                s.connect(link)
            target.settle()
            assert target.attempts == 1
        finally:
            target.close()

    def test_socketpair_is_not_governed(self, capsys: pytest.CaptureFixture[str]) -> None:
        """socketpair() names no address and reaches nothing outside the process: not governed."""
        with guard(network="block"):
            a, b = socket.socketpair()
            with a, b:
                a.sendall(b"ping")
                assert b.recv(4) == b"ping"
        assert violations(capsys.readouterr().out) == []
