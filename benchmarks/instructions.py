"""Instructions per hot-path operation, counted by valgrind: figures the load cannot move.

    python benchmarks/instructions.py [--python PATH] [--rows open_read,connect,...]

Wall-clock ratios on a shared machine move by a few hundredths from run to run, which is
as much as a change to the hot path saves. ``run.py`` (``make bench``) therefore also
counts, with this module, the user-space instructions each hot-path operation executes.
One ``benchmarks/hot.py`` worker per role (pristine, lambdaguard, spawned) runs under
valgrind's callgrind with ``PYTHONHASHSEED=0``; for each operation and condition it warms
up, runs the marker (``os.getpgrp()``) alone, then ``SEGMENTS`` segments of ``n`` calls,
each after a shift of malloc's heap, with a marker between them; callgrind
(``--dump-before=getpgrp``) writes the count of each stretch to a file of its own. One
operation is the median segment, less the marker, over ``n``: start-up and warm-up do not
count, and one process serves every row of its role.

Kernel work is not counted, so these are not wall-clock ratios: an open or a loopback
connect spends much of its time in the kernel, on both sides of the ratio. Run standalone,
this prints the table for the interpreter of a bench venv (``make bench`` builds them).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MARKER = "getpgrp"  # a libc call none of the measured operations makes, in this process

# Calls per segment. Most operations execute the same instructions call after call, so a
# few calls suffice; the median of SEGMENTS segments drops the odd one (an allocator
# arena, a first call on a new path); the slow operations get fewer calls.
SEGMENTS = 5
# Calls before the first segment: from 3.11 on, the interpreter specialises a function's
# bytecode after its first few calls, which costs tens of thousands of instructions once.
# And before each segment, uncounted, after the heap was shifted (see shift_heap).
WARMUP = 20
SETTLE = 2
ITERATIONS = {
    "open_read": 50,
    "connect": 10,
    "dns_localhost": 10,
    "subprocess_true": 2,
    "handler_body": 2,
    "decorator": 100,
    "blocked": 1,  # invocations, each of BLOCKED_ATTEMPTS blocked attempts
}
BLOCKED_ATTEMPTS = 10

# The conditions of a row: "pristine" (the unguarded worker, or the undecorated handler),
# "noscope" and "scope" (as in run.py's hot rows).
Plan = list[tuple[str, str, str, int]]  # (row, call, condition, n)


def valgrind_version() -> str | None:
    """``valgrind-X.Y.Z``, or None when valgrind is not on ``PATH``."""
    if shutil.which("valgrind") is None:
        return None
    out = subprocess.run(["valgrind", "--version"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


# --- inside valgrind -----------------------------------------------------------------------


def child(role: str, port: int, plan: Plan) -> None:
    """Run ``plan`` in a hot.py worker of ``role``: per item, a warm-up, the marker alone,
    then SEGMENTS segments of ``n`` calls, each after a shift of the heap and a few calls
    to settle; a marker ends each part."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import hot

    sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (violation lines, if any)
    worker = hot.Worker(role, port, warm=False)
    calls: dict[str, Callable[[], object]] = {name: fn for name, (fn, _) in worker.ops.items()}
    if role == "lambdaguard":
        for label, fn in hot.decorator_calls().items():
            calls[f"decorator_{label}"] = fn
        invocations = hot.blocked_invocations(worker.workdir, worker.found, BLOCKED_ATTEMPTS)
        for label, fn in invocations.items():
            calls[f"blocked_{label}"] = fn
    gc.disable()  # as in the timed rounds
    with hot.stdout_to(hot.LineCounter()):
        for _, call, condition, n in plan:
            if call not in calls:  # a blocked open where the tmp policy does not block
                raise SystemExit(f"{call}: not measurable in this checkout's {role} worker")
            fn = calls[call]
            scope = worker.scope if condition == "scope" else contextlib.nullcontext()
            with scope:  # type: ignore[attr-defined]
                for _ in range(max(n, WARMUP)):
                    fn()
                os.getpgrp()  # callgrind writes what came since the last marker, and zeroes
                os.getpgrp()  # the marker alone
                for segment in range(SEGMENTS):
                    shift_heap(segment)
                    for _ in range(SETTLE):
                        fn()
                    os.getpgrp()
                    for _ in range(n):
                        fn()
                    os.getpgrp()


_kept: list[bytes] = []


def shift_heap(segment: int) -> None:
    """Leave a block of a size of its own on malloc's heap before each segment.

    A call that allocates a few KiB outside the interpreter's small-object allocator (an
    open's 8 KiB buffer) costs glibc's malloc a number of instructions that depends on the
    heap's layout, which depends on everything the process did before: compiling a module
    instead of loading its .pyc, or a change anywhere in lambdaguard, moved such a row by
    up to 2%. Each segment runs in a layout of its own, and the median is taken over them.
    """
    _kept.append(bytes(1000 + 3000 * segment))
    _kept.append(bytes(8192 + 700 * segment))


# --- the driver ----------------------------------------------------------------------------


def plans(
    rows: Iterable[tuple[str, str, str]], *, decorator: bool, blocked: list[str], scale: float
) -> dict[str, Plan]:
    """By worker role, what it runs: ``rows`` are run.py's (row, operation, guarded role).
    An item's key is the row, or for the pristine worker the operation (two rows share it)."""

    def n(kind: str) -> int:
        return max(1, round(ITERATIONS[kind] * scale))

    pristine: dict[str, tuple[str, str, str, int]] = {}
    out: dict[str, Plan] = {"lambdaguard": [], "spawned": []}
    for row, op, role in rows:
        pristine[op] = (op, op, "pristine", n(op))
        for condition in ("noscope", "scope"):
            out[role].append((row, op, condition, n(op)))
    if decorator:
        out["lambdaguard"] += [
            ("decorator", "decorator_bare", "pristine", n("decorator")),
            ("decorator", "decorator_guarded", "scope", n("decorator")),
        ]
    for label in blocked:
        out["lambdaguard"].append((f"blocked_{label}", f"blocked_{label}", "scope", n("blocked")))
    out["pristine"] = list(pristine.values())
    return {role: plan for role, plan in out.items() if plan}


def segment_counts(directory: str, pid: int) -> list[int]:
    """The instruction count of each dump callgrind wrote for ``pid``, in order."""
    dumps = []
    for path in Path(directory).glob(f"cg.{pid}.*"):
        match = re.search(r"^summary:\s*(\d+)", path.read_text(), re.MULTILINE)
        if match is None:
            raise RuntimeError(f"no summary line in callgrind's {path.name}")
        dumps.append((int(path.suffix[1:]), int(match.group(1))))
    return [count for _, count in sorted(dumps)]


def per_call(plan: Plan, counts: list[int]) -> dict[tuple[str, str], list[float]]:
    """By (key, condition), instructions per call in each segment: its count less the
    marker's alone, over its calls (per attempt for the blocked operations)."""
    dumps = 2 + 2 * SEGMENTS  # warm-up, marker alone, then a settling part per segment
    if len(counts) != dumps * len(plan):
        raise RuntimeError(f"expected {dumps * len(plan)} callgrind dumps, found {len(counts)}")
    out = {}
    for i, (key, call, condition, n) in enumerate(plan):
        marker, segments = counts[dumps * i + 1], counts[dumps * i + 3 : dumps * (i + 1) : 2]
        calls = n * (BLOCKED_ATTEMPTS if call.startswith("blocked_") else 1)
        out[key, condition] = [(count - marker) / calls for count in segments]
    return out


def measure(
    python: str,
    rows: list[tuple[str, str, str]],
    env: dict[str, str],
    *,
    decorator: bool = True,
    blocked: list[str] | None = None,
    scale: float = 1.0,
) -> dict[str, Any]:
    """Instructions per call for ``rows`` (run.py's hot rows), and optionally the decorator
    and the ``blocked`` operations, with the valgrind version and the iterations used.
    The workers of the three roles run at once: their counts do not depend on the load."""
    role_plans = plans(rows, decorator=decorator, blocked=blocked or [], scale=scale)
    # Every worker loads its modules from .pyc files: one compiled from source instead
    # leaves a heap of another layout behind (see shift_heap), and the workers would race
    # to write them.
    subprocess.run(
        [python, "-m", "compileall", "-q", str(ROOT / "lambdaguard"), str(ROOT / "benchmarks")],
        check=True, env=env, stdout=subprocess.DEVNULL,
    )
    listener = subprocess.Popen(
        [python, str(ROOT / "benchmarks" / "hot.py"), "listener"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )
    counted: dict[tuple[str, str], list[float]] = {}
    try:
        assert listener.stdout is not None
        port = json.loads(listener.stdout.readline())["port"]
        with tempfile.TemporaryDirectory(prefix="lambdaguard-callgrind-") as directory:
            procs = {
                role: subprocess.Popen(
                    [
                        "valgrind", "--tool=callgrind", f"--dump-before={MARKER}",
                        "--dump-line=no", f"--callgrind-out-file={directory}/cg.%p",
                        python, __file__, "--child", role, str(port), json.dumps(plan),
                    ],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                    env={**env, "PYTHONHASHSEED": "0"},
                )
                for role, plan in role_plans.items()
            }
            for role, proc in procs.items():
                _, err = proc.communicate()
                if proc.returncode != 0:
                    raise RuntimeError(f"callgrind of the {role} worker failed:\n{err[-3000:]}")
                counted.update(per_call(role_plans[role], segment_counts(directory, proc.pid)))
    finally:
        if listener.stdin is not None:
            listener.stdin.close()
        listener.wait(timeout=30)
    per = {key: statistics.median(segments) for key, segments in counted.items()}
    by_row: dict[str, dict[str, float]] = {
        row: {
            "pristine": per[op, "pristine"],
            "noscope": per[row, "noscope"],
            "scope": per[row, "scope"],
        }
        for row, op, _ in rows
    }
    for (key, condition), count in per.items():
        if key == "decorator" or key.startswith("blocked_"):
            by_row.setdefault(key, {})[condition] = count
    return {
        "valgrind": valgrind_version(),
        "iterations": {k: max(1, round(v * scale)) for k, v in ITERATIONS.items()},
        "segments": SEGMENTS,
        "blocked_attempts_per_invocation": BLOCKED_ATTEMPTS,
        "rows": by_row,
        "per_segment": {f"{key} {condition}": got for (key, condition), got in counted.items()},
    }


def main() -> int:
    if sys.argv[1:2] == ["--child"]:
        role, port, plan = sys.argv[2:5]
        child(role, int(port), [tuple(item) for item in json.loads(plan)])  # type: ignore[misc]
        return 0
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import run  # the bench venvs, the rows and the table live there

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", help="an interpreter (default: this one); its bench venv")
    parser.add_argument(
        "--rows", help="hot rows, comma-separated (default: all, with decorator and blocked)"
    )
    args = parser.parse_args()
    if valgrind_version() is None:
        parser.error("valgrind is not installed")
    only = set(args.rows.split(",")) if args.rows else None
    venv_python = str(run.bench_venv(args.python or sys.executable) / "bin" / "python")
    got = measure(
        venv_python,
        [row for row in run.HOT_ROWS if only is None or row[0] in only],
        run.child_env(),
        decorator=only is None or "decorator" in only,
        blocked=["network_lookup", "tmp_open"] if only is None or "blocked" in only else [],
    )
    print("\n".join(run.instruction_lines(got)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
