"""Not a test: the cost of an open under the file policies, against an unguarded baseline.

    python benchmarks/files_open.py [ROUNDS] [NAME=LAMBDAGUARD_PARENT_DIR ...]

Run it from a directory outside the checkout, with an interpreter in which lambdaguard is
*not* installed (each NAME=DIR puts that copy of the ``lambdaguard`` package first on the
path of its own worker; without one, the copy next to this file is measured), and with the
interpreter's site-packages outside /tmp (the ``site`` case reads a botocore data file,
which must not itself be under the tmp policy). For example, before and after a change::

    git archive BASE lambdaguard | tar -x -C /var/tmp/before
    python benchmarks/files_open.py 15 before=/var/tmp/before after=$PWD

Workers, taking turns round by round so that the machine's noise hits all of them alike:
``pristine`` never imports lambdaguard; ``hookfloor`` adds one audit hook that does a
dict lookup and nothing else (the floor of any audit-hook design); one worker per NAME
with lambdaguard's sensors installed. Ratios are medians of each round over the pristine
round taken in the same turn. Timed assertions do not belong in tests: this prints.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

CALLS = 5000
CASES = (("noscope", "outside"), ("scope", "outside"), ("scope", "site"), ("allowed", "tmp"))


def _worker(role: str) -> None:
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (violation lines, if any, go nowhere)
    outside = tempfile.mkdtemp(prefix="lambdaguard-perf-", dir="/var/tmp")
    in_tmp = tempfile.mkdtemp(prefix="lambdaguard-perf-", dir="/tmp")
    paths = {}
    for label, directory in (("outside", outside), ("tmp", in_tmp)):
        paths[label] = os.path.join(directory, "small.txt")
        with open(paths[label], "wb") as f:
            f.write(b"x" * 1024)
    import botocore

    paths["site"] = os.path.join(os.path.dirname(botocore.__file__), "data", "endpoints.json")
    scopes: dict[str, Any] = {}
    if role == "hookfloor":
        table: dict[str, None] = {"open": None}

        def floor(event: str, args: tuple[Any, ...], get: Any = table.get) -> None:
            get(event)

        sys.addaudithook(floor)
    elif role == "guarded":
        from lambdaguard import Tmp, guard

        scopes["scope"] = guard(tmp="block", handler_source="block")
        scopes["allowed"] = guard(tmp=Tmp("block", allow=[in_tmp + "/**"]), handler_source="block")
        with scopes["scope"]:
            pass  # installs the sensors

    def operation(path: str) -> Callable[[], None]:
        def run() -> None:
            with open(path, "rb") as f:
                f.read(1)

        return run

    for line in sys.stdin:
        condition, label = json.loads(line)
        scope = scopes.get(condition)
        fn = operation(paths[label])
        gc.disable()
        try:
            if scope is not None:
                scope.__enter__()
            start = time.perf_counter_ns()
            for _ in range(CALLS):
                fn()
            elapsed = time.perf_counter_ns() - start
            if scope is not None:
                scope.__exit__(None, None, None)
        finally:
            gc.enable()
        answers.write(json.dumps(elapsed / CALLS / 1000) + "\n")


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    versions = sys.argv[2:] or [
        f"current={os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))}"
    ]
    workers: dict[str, subprocess.Popen[str]] = {}

    def start(name: str, role: str, pythonpath: str | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LAMBDAGUARD_")}
        env.pop("PYTHONPATH", None)
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        workers[name] = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), role],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    start("pristine", "pristine")
    start("hookfloor", "hookfloor")
    for version in versions:
        name, _, directory = version.partition("=")
        start(name, "guarded", directory)
    names = list(workers)

    def ask(name: str, condition: str, label: str) -> float:
        worker = workers[name]
        assert worker.stdin is not None
        assert worker.stdout is not None
        if name in ("pristine", "hookfloor"):
            condition = "noscope"
        worker.stdin.write(json.dumps([condition, label]) + "\n")
        worker.stdin.flush()
        return float(json.loads(worker.stdout.readline()))

    print(
        f"Python {sys.version.split()[0]}, {rounds} rounds x {CALLS} calls of "
        "open(path, 'rb') + read(1) + close; medians"
    )
    print(f"{'case':18s} {'pristine':>9s}" + "".join(f" {n:>10s} {'ratio':>6s}" for n in names[1:]))
    for condition, label in CASES:
        for name in names:  # warm-up
            ask(name, condition, label)
        times: dict[str, list[float]] = {name: [] for name in names}
        ratios: dict[str, list[float]] = {name: [] for name in names[1:]}
        for r in range(rounds):
            turn = names[r % len(names) :] + names[: r % len(names)]
            got = {name: ask(name, condition, label) for name in turn}
            for name in names:
                times[name].append(got[name])
            for name in names[1:]:
                ratios[name].append(got[name] / got["pristine"])
        row = f"{condition + ' / ' + label:18s} {statistics.median(times['pristine']):7.2f}µs"
        for name in names[1:]:
            row += (
                f" {statistics.median(times[name]):8.2f}µs {statistics.median(ratios[name]):5.3f}x"
            )
        print(row, flush=True)
    for worker in workers.values():
        assert worker.stdin is not None
        worker.stdin.close()
        worker.wait()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("pristine", "hookfloor", "guarded"):
        _worker(sys.argv[1])
    else:
        main()
