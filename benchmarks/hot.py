"""Hot-path worker: a process that times rounds of one operation on request.

    python benchmarks/hot.py listener
    python benchmarks/hot.py ROLE PORT      (ROLE: pristine | lambdaguard | spawned | peer)

run.py starts one worker per role and drives them over stdin/stdout, one JSON line per
request and per answer, so that the rounds of the three processes alternate strictly
(only one process runs at a time) and every round of a guarded condition is paired with
a pristine round taken just before or after it. Machine noise that comes and goes (other
processes, frequency changes) then hits both sides of a pair alike.

* ``pristine`` never imports lambdaguard: no patch, no audit hook. The baseline.
* ``lambdaguard`` enters and leaves a guard once at start-up, so the patches and the audit
  hook are in place for good; its conditions are ``noscope`` (no scope active) and
  ``scope`` (every policy on, the operation allowed by its allow-list). It never starts a
  child process. It also answers the absolute measurements: decorator, blocked
  operation, flood.
* ``spawned`` is the same after it has started child processes: ``subprocess.run`` is
  measured here, and an open under /tmp again (once a child has been started, the files
  sensor no longer trusts its memory of link-free /tmp paths).
* ``listener`` accepts the loopback connections of the other three, in its own process.
* ``peer`` runs the loopback connect bare and under pytest-socket's host allow-list
  (which, unlike an audit hook, can be switched off again).

A round times ``n`` calls of one operation with the garbage collector off (as timeit
does) and answers nanoseconds per call.
"""

from __future__ import annotations

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


def serve_loopback() -> None:
    """The ``listener`` role: accept and close connections on 127.0.0.1 until stdin closes.

    It is a process of its own, so that accepting costs the measured processes nothing
    and does not compete with them for their GIL (a listener thread inside the worker
    amplified every extra microsecond of the connect several times over).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)

    def accept_forever() -> None:
        while True:
            conn, _ = sock.accept()
            conn.close()

    threading.Thread(target=accept_forever, daemon=True).start()
    print(json.dumps({"ready": "listener", "port": sock.getsockname()[1]}), flush=True)
    sys.stdin.read()


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


def make_operations(workdir: str, port: int) -> Operations:
    """name -> (operation, calls per round), sized so a round takes roughly 10-20 ms."""
    small = os.path.join(workdir, "small.txt")
    with open(small, "wb") as f:
        f.write(b"x" * 1024)
    address = ("127.0.0.1", port)
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


class Worker:
    """One role's state: the operations, and for lambdaguard the guard of the scope."""

    def __init__(self, role: str, port: int, *, warm: bool = True) -> None:
        """``warm``: run every operation a few times now (instructions.py warms up its own)."""
        self.role = role
        self.workdir = tempfile.mkdtemp(prefix="lambdaguard-bench-")
        self.ops = make_operations(self.workdir, port)
        if role == "lambdaguard":
            # This worker never starts a child process: the files sensor stops trusting its
            # memory of link-free /tmp paths for good once one is started (a child may make
            # links it cannot see), and the "spawned" worker measures that state.
            del self.ops["subprocess_true"]
        self.scope: object = None
        self.found: dict[str, bool] = {}
        if role in ("lambdaguard", "spawned"):
            from lambdaguard import guard

            self.found = features(self.workdir, spawn=role == "spawned")
            self.scope = guard(**scope_policy(self.workdir))  # type: ignore[arg-type]
            if role == "spawned":
                with self.scope:  # type: ignore[attr-defined]
                    self.ops["subprocess_true"][0]()  # the state it measures, warm or not
            if warm:
                with self.scope:  # type: ignore[attr-defined]
                    for fn, n in self.ops.values():
                        time_round(fn, max(1, n // 4))
        for fn, n in self.ops.values() if warm else ():
            time_round(fn, max(1, n // 4))  # warm-up: caches, page faults, first-call paths

    def round(self, op: str, condition: str) -> float:
        fn, n = self.ops[op]
        if condition == "scope":
            with self.scope:  # type: ignore[attr-defined]
                return time_round(fn, n)
        if condition == "pytest_socket":
            import pytest_socket

            pytest_socket.socket_allow_hosts(["127.0.0.1", "localhost"])
            try:
                return time_round(fn, n)
            finally:
                pytest_socket._remove_restrictions()
        return time_round(fn, n)

    def answer(self, request: dict[str, object]) -> object:
        what = request["what"]
        if what == "round":
            return self.round(str(request["op"]), str(request["condition"]))
        if what == "features":
            return self.found
        if what == "decorator":
            return measure_decorator(int(request["rounds"]))  # type: ignore[call-overload]
        if what == "blocked":
            return measure_blocked(int(request["rounds"]), self.workdir, self.found)  # type: ignore[call-overload]
        if what == "flood":
            return measure_flood(int(request["count"]), self.workdir, self.found)  # type: ignore[call-overload]
        raise ValueError(f"unknown request {request!r}")


class _Context:
    """The attributes of a Lambda context object that lambdaguard reads."""

    function_name = "bench"
    memory_limit_in_mb = 128
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id = "00000000-0000-0000-0000-000000000000"


def decorator_calls() -> dict[str, Callable[[], object]]:
    """A trivial handler called bare and through ``@guard(...)``, each as a call of no
    arguments (the same lambda around both, so that only the decorator differs)."""
    from lambdaguard import guard

    def handler(event: object, context: object) -> object:
        return event

    guarded = guard(network="block", tmp="block", subprocess="block", handler_source="block")(
        handler
    )
    event, context = {"k": 1}, _Context()
    return {
        label: lambda fn=fn: fn(event, context)  # type: ignore[misc]
        for label, fn in (("bare", handler), ("guarded", guarded))
    }


def measure_decorator(rounds: int) -> dict[str, list[float]]:
    """The bare and the decorated handler, alternating rounds."""
    calls = decorator_calls()
    n = 2000
    out: dict[str, list[float]] = {"bare": [], "guarded": []}
    time_round(calls["guarded"], n // 4)
    for r in range(rounds):
        pair = ("bare", "guarded")
        for label in pair if r % 2 == 0 else pair[::-1]:
            out[label].append(time_round(calls[label], n))
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


def features(workdir: str, *, spawn: bool) -> dict[str, bool]:
    """Which policies block for real in this checkout: tmp, or (``spawn``) subprocess."""
    from lambdaguard import Violation, guard

    target = os.path.join(tempfile.gettempdir(), "lambdaguard-bench-feature.txt")
    found = {}
    with stdout_to(LineCounter()):
        if not spawn:
            with guard(tmp="block"):
                try:
                    with open(target, "w"):
                        pass
                    found["tmp"] = False
                except Violation:
                    found["tmp"] = True
            return found
        with guard(subprocess="block"):
            try:
                subprocess.run([shutil.which("true") or "/bin/true"], check=True)
                found["subprocess"] = False
            except Violation:
                found["subprocess"] = True
    with contextlib.suppress(OSError):
        os.unlink(target)
    return found


def blocked_invocations(
    workdir: str, found: dict[str, bool], attempts: int
) -> dict[str, Callable[[], object]]:
    """By blocked operation, one invocation of a guarded handler that attempts it
    ``attempts`` times, as a call of no arguments."""
    from lambdaguard import guard

    out: dict[str, Callable[[], object]] = {}
    context = _Context()
    for label, attempt in _blocked_attempts(workdir, found).items():
        policy = {"network": "block"} if label.startswith("network") else {"tmp": "block"}

        @guard(**policy)  # type: ignore[arg-type]
        def handler(event: object, context: object, attempt: Callable[[], None] = attempt) -> None:
            for _ in range(attempts):
                attempt()

        out[label] = lambda h=handler: h({}, context)  # type: ignore[misc]
    return out


def measure_blocked(rounds: int, workdir: str, found: dict[str, bool]) -> dict[str, object]:
    """Per blocked attempt, its JSON line included: 100 attempts per guarded invocation."""
    out: dict[str, object] = {}
    for label, invoke in blocked_invocations(workdir, found, BLOCKED_PER_INVOCATION).items():
        sink = LineCounter()
        with stdout_to(sink):
            invoke()
            lines_per_invocation = sink.lines
            per_op = [time_round(invoke, 20) / BLOCKED_PER_INVOCATION for _ in range(rounds)]
        out[label] = {
            "ns_per_op": per_op,
            "lines_per_invocation": lines_per_invocation,
            "bytes_per_line": sink.chars / max(1, sink.lines),
        }
    return out


def measure_flood(count: int, workdir: str, found: dict[str, bool]) -> dict[str, object]:
    """``count`` blocked attempts in one invocation: wall time and lines written."""
    out: dict[str, object] = {}
    for label, invoke in blocked_invocations(workdir, found, count).items():
        sink = LineCounter()
        with stdout_to(sink):
            start = time.perf_counter()
            invoke()
            seconds = time.perf_counter() - start
        out[label] = {"attempts": count, "seconds": seconds, "lines": sink.lines}
    return out


def main() -> None:
    role = sys.argv[1]
    if role == "listener":
        serve_loopback()
        return
    if role not in ("pristine", "lambdaguard", "spawned", "peer") or len(sys.argv) != 3:
        raise SystemExit("usage: hot.py listener | hot.py pristine|lambdaguard|spawned|peer PORT")
    # Answers go to the real stdout; anything else printed (violation lines) is dropped.
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115
    worker = Worker(role, int(sys.argv[2]))
    if role == "pristine":
        assert "lambdaguard" not in sys.modules, "the pristine worker must not import lambdaguard"
    answers.write(json.dumps({"ready": role}) + "\n")
    for line in sys.stdin:
        answers.write(json.dumps({"answer": worker.answer(json.loads(line))}) + "\n")
    shutil.rmtree(worker.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
