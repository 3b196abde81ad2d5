"""Hot-path worker: per-operation costs inside one process, written as JSON.

    python benchmarks/hot.py lambdaguard OUT.json [--rounds N] [--flood N]
    python benchmarks/hot.py peer OUT.json [--rounds N]

``lambdaguard`` mode runs in three phases, each a series of timed rounds:

1. pristine: lambdaguard is not even imported (no patch, no audit hook). This is the
   baseline, the same process as the guarded rounds that follow.
2. lambdaguard activated once (a guard entered and left, so the patches and the audit
   hook are in place for good), then rounds that alternate "no scope active" and "scope
   active, operation allowed" (ABBA order, so drift hits both alike).
3. absolute costs: the decorator per invocation, a blocked operation with its log line,
   and a flood of blocked attempts in one invocation.

``peer`` mode times the same loopback connect bare and under pytest-socket's host
allow-list, alternating (pytest-socket can be switched off again, unlike an audit hook).

A round times ``n`` calls of one operation with the garbage collector off (as timeit
does) and records nanoseconds per call. run.py starts several workers, alternating, and
takes medians; this file only measures.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import io
import json
import logging
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator

LINGER_RESET = struct.pack("ii", 1, 0)  # close with RST: no TIME_WAIT, no port exhaustion
BLOCKED_NAME = "exfil.example.com"
BLOCKED_PER_INVOCATION = 100  # within the reporter's default cap, so every one is logged


# --- the operations ------------------------------------------------------------------------


class Loopback:
    """A TCP listener on 127.0.0.1 whose thread accepts and closes every connection."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.address = self.sock.getsockname()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            conn, _ = self.sock.accept()
            conn.close()


@dataclasses.dataclass
class Order:
    """The dataclass of the generic handler body."""

    order_id: str
    amount: float
    items: list[str]


class _Discard(io.TextIOBase):
    def write(self, s: str) -> int:
        return len(s)


Operations = dict[str, tuple[Callable[[], object], int]]


def make_operations(workdir: str, listener: Loopback) -> Operations:
    """name -> (operation, calls per round), sized so a round takes roughly 10-20 ms."""
    small = os.path.join(workdir, "small.txt")
    with open(small, "wb") as f:
        f.write(b"x" * 1024)
    address = listener.address
    true = shutil.which("true") or "/bin/true"
    doc = {"records": [{"id": i, "name": f"item-{i}", "tags": ["a", "b"]} for i in range(180)]}
    assert 9_000 < len(json.dumps(doc)) < 11_000  # the 10 KB of the issue
    log = logging.getLogger("lambdaguard-bench")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(logging.StreamHandler(_Discard()))

    def open_read() -> object:
        with open(small, "rb") as f:
            return f.read()

    def connect() -> object:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        s.connect(address)
        s.close()
        return None

    def dns_localhost() -> object:
        return socket.getaddrinfo("localhost", 80, socket.AF_INET, socket.SOCK_STREAM)

    def subprocess_true() -> object:
        return subprocess.run([true], check=True)

    def handler_body() -> object:
        text = json.dumps(doc)
        back = json.loads(text)
        log.info("processed %d records", len(back["records"]))
        return Order("o-1", 12.5, ["a", "b"])

    return {
        "open_read": (open_read, 2000),
        "connect": (connect, 200),
        "dns_localhost": (dns_localhost, 300),
        "subprocess_true": (subprocess_true, 8),
        "handler_body": (handler_body, 150),
    }


def time_round(fn: Callable[[], object], n: int) -> float:
    """Nanoseconds per call over ``n`` calls, collector off."""
    gc_was = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        for _ in range(n):
            fn()
        return (time.perf_counter_ns() - start) / n
    finally:
        if gc_was:
            gc.enable()


@contextlib.contextmanager
def stdout_to(stream: object) -> Iterator[None]:
    saved = sys.stdout
    sys.stdout = stream  # type: ignore[assignment]
    try:
        yield
    finally:
        sys.stdout = saved


class LineCounter(io.TextIOBase):
    """A stdout that counts lines and keeps their text, like CloudWatch would."""

    def __init__(self) -> None:
        self.lines = 0
        self.chars = 0

    def write(self, s: str) -> int:
        self.lines += s.count("\n")
        self.chars += len(s)
        return len(s)


# --- lambdaguard mode --------------------------------------------------------------------------


def scope_policy(workdir: str) -> dict[str, object]:
    """Every policy on, each operation of the benchmark allowed by its allow-list."""
    from lambdaguard import ConfigError, Network, Subprocess, Tmp

    true = shutil.which("true") or "/bin/true"
    subprocess_rule: object
    try:
        subprocess_rule = Subprocess("block", allow=[true, "true"])
    except ConfigError:
        subprocess_rule = Subprocess("block", allow=[true])
    return {
        "network": Network("block", allow=["127.0.0.1", "localhost"]),
        "tmp": Tmp("block", allow=[f"{workdir}/**"]),
        "subprocess": subprocess_rule,
        "handler_source": "block",
    }


def run_lambdaguard(rounds: int, flood: int) -> dict[str, object]:
    workdir = tempfile.mkdtemp(prefix="lambdaguard-bench-")
    listener = Loopback()
    ops = make_operations(workdir, listener)
    result: dict[str, object] = {"mode": "lambdaguard", "python": sys.version.split()[0]}
    times: dict[str, dict[str, list[float]]] = {name: {} for name in ops}

    for fn, n in ops.values():
        time_round(fn, max(1, n // 4))  # warm-up: caches, page faults, first-call paths
    for _ in range(rounds):
        for name, (fn, n) in ops.items():
            times[name].setdefault("pristine", []).append(time_round(fn, n))
    assert "lambdaguard" not in sys.modules, "the pristine phase must not import lambdaguard"

    from lambdaguard import guard

    found = features(workdir)
    scope = guard(**scope_policy(workdir))  # type: ignore[arg-type]
    with scope:
        for fn, n in ops.values():
            time_round(fn, max(1, n // 4))
    for fn, n in ops.values():
        time_round(fn, max(1, n // 4))
    for r in range(rounds):
        order = ("noscope", "scope") if r % 2 == 0 else ("scope", "noscope")
        for name, (fn, n) in ops.items():
            for condition in order:
                if condition == "scope":
                    with scope:
                        t = time_round(fn, n)
                else:
                    t = time_round(fn, n)
                times[name].setdefault(condition, []).append(t)
    result["ops"] = times
    result["decorator"] = measure_decorator(rounds)
    result["blocked"] = measure_blocked(rounds, workdir, found)
    result["flood"] = measure_flood(flood, workdir, found)
    result["features"] = found
    shutil.rmtree(workdir, ignore_errors=True)
    return result


class _Context:
    """The attributes of a Lambda context object that lambdaguard reads."""

    function_name = "bench"
    memory_limit_in_mb = 128
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id = "00000000-0000-0000-0000-000000000000"


def measure_decorator(rounds: int) -> dict[str, list[float]]:
    """A trivial handler called bare and through ``@guard(...)``, alternating rounds."""
    from lambdaguard import guard

    def handler(event: object, context: object) -> object:
        return event

    guarded = guard(network="block", tmp="block", subprocess="block", handler_source="block")(
        handler
    )
    event, context = {"k": 1}, _Context()
    n = 5000
    out: dict[str, list[float]] = {"bare": [], "guarded": []}
    time_round(lambda: guarded(event, context), n // 4)
    for r in range(rounds):
        pair = (("bare", handler), ("guarded", guarded))
        for label, fn in pair if r % 2 == 0 else pair[::-1]:
            out[label].append(time_round(lambda fn=fn: fn(event, context), n))  # type: ignore[misc]
    return out


def _blocked_attempts(workdir: str, found: dict[str, bool]) -> dict[str, Callable[[], None]]:
    """Blocked operations by policy; each swallows its Violation as hostile code would."""
    from lambdaguard import Violation

    def lookup() -> None:
        with contextlib.suppress(Violation):
            socket.getaddrinfo(BLOCKED_NAME, 443)

    target = os.path.join(tempfile.gettempdir(), "lambdaguard-bench-blocked.txt")

    def open_tmp() -> None:
        try:
            with open(target, "w"):
                pass
        except Violation:
            pass

    attempts = {"network_lookup": lookup}
    if found.get("tmp"):
        attempts["tmp_open"] = open_tmp
    return attempts


def features(workdir: str) -> dict[str, bool]:
    """Which policies block for real in this checkout (the file and process sensors may not)."""
    from lambdaguard import Violation, guard

    target = os.path.join(tempfile.gettempdir(), "lambdaguard-bench-feature.txt")
    found = {}
    with stdout_to(LineCounter()):
        with guard(tmp="block"):
            try:
                with open(target, "w"):
                    pass
                found["tmp"] = False
            except Violation:
                found["tmp"] = True
        with guard(subprocess="block"):
            try:
                subprocess.run([shutil.which("true") or "/bin/true"], check=True)
                found["subprocess"] = False
            except Violation:
                found["subprocess"] = True
    with contextlib.suppress(OSError):
        os.unlink(target)
    return found


def measure_blocked(rounds: int, workdir: str, found: dict[str, bool]) -> dict[str, object]:
    """Per blocked attempt, its JSON line included: 100 attempts per guarded invocation."""
    from lambdaguard import guard

    out: dict[str, object] = {}
    attempts = _blocked_attempts(workdir, found)
    for label, attempt in attempts.items():
        policy = {"network": "block"} if label.startswith("network") else {"tmp": "block"}

        @guard(**policy)  # type: ignore[arg-type]
        def handler(event: object, context: object, attempt: Callable[[], None] = attempt) -> None:
            for _ in range(BLOCKED_PER_INVOCATION):
                attempt()

        sink = LineCounter()
        context = _Context()
        with stdout_to(sink):
            handler({}, context)
            lines_per_invocation = sink.lines
            per_op = [
                time_round(lambda h=handler, c=context: h({}, c), 20)  # type: ignore[misc]
                / BLOCKED_PER_INVOCATION
                for _ in range(rounds)
            ]
        out[label] = {
            "ns_per_op": per_op,
            "lines_per_invocation": lines_per_invocation,
            "bytes_per_line": sink.chars / max(1, sink.lines),
        }
    return out


def measure_flood(count: int, workdir: str, found: dict[str, bool]) -> dict[str, object]:
    """``count`` blocked attempts in one invocation: wall time and lines written."""
    from lambdaguard import guard

    out: dict[str, object] = {}
    for label, attempt in _blocked_attempts(workdir, found).items():
        policy = {"network": "block"} if label.startswith("network") else {"tmp": "block"}

        @guard(**policy)  # type: ignore[arg-type]
        def handler(event: object, context: object, attempt: Callable[[], None] = attempt) -> None:
            for _ in range(count):
                attempt()

        sink = LineCounter()
        with stdout_to(sink):
            start = time.perf_counter()
            handler({}, _Context())
            seconds = time.perf_counter() - start
        out[label] = {"attempts": count, "seconds": seconds, "lines": sink.lines}
    return out


# --- peer mode ---------------------------------------------------------------------------------


def run_peer(rounds: int) -> dict[str, object]:
    """The same loopback connect bare and under pytest-socket's allow-list, alternating."""
    import pytest_socket

    workdir = tempfile.mkdtemp(prefix="lambdaguard-bench-")
    listener = Loopback()
    fn, n = make_operations(workdir, listener)["connect"]
    out: dict[str, list[float]] = {"pristine": [], "pytest_socket": []}
    time_round(fn, n // 4)
    for r in range(rounds):
        for label in ("pristine", "pytest_socket") if r % 2 == 0 else ("pytest_socket", "pristine"):
            if label == "pytest_socket":
                pytest_socket.socket_allow_hosts(["127.0.0.1", "localhost"])
            try:
                out[label].append(time_round(fn, n))
            finally:
                pytest_socket._remove_restrictions()
    shutil.rmtree(workdir, ignore_errors=True)
    return {"mode": "peer", "python": sys.version.split()[0], "ops": {"connect": out}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("lambdaguard", "peer"))
    parser.add_argument("out")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--flood", type=int, default=100_000)
    args = parser.parse_args()
    if args.mode == "lambdaguard":
        result = run_lambdaguard(args.rounds, args.flood)
    else:
        result = run_peer(args.rounds)
    with open(args.out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
