"""Instructions per hot-path operation, counted by valgrind: a figure the load cannot move.

    python benchmarks/instructions.py [--python PATH] [--ops connect,dns_localhost]

Wall-clock ratios on a shared machine move by 0.05-0.1 from run to run, which is as much as
a change to the network hot path saves. This script counts the user-space instructions
(valgrind's cachegrind, no cache simulation) of a benchmarks/hot.py worker running one
operation 500 and 2,500 times, with ``PYTHONHASHSEED=0``; the difference over 2,000 is the
cost of one operation, start-up and warm-up cancelled out. It prints that for the pristine
worker (lambdaguard never imported) and the lambdaguard worker with no scope and in scope.
Kernel work is not counted, so these are not wall-clock ratios: a loopback connect spends
most of its time in the kernel. Needs ``valgrind`` and a bench venv (``make bench`` or
``benchmarks/run.py --hot ...`` builds it). Takes a few minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SMALL, LARGE = 500, 2500
CONDITIONS = (("pristine", "noscope"), ("lambdaguard", "noscope"), ("lambdaguard", "scope"))


def child(role: str, op: str, port: int, condition: str, n: int) -> None:
    """Inside valgrind: a worker of ``role`` runs ``op`` ``n`` times in ``condition``."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import hot

    sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (violation lines, if any)
    worker = hot.Worker(role, port)
    fn, _ = worker.ops[op]
    scope = worker.scope if condition == "scope" else contextlib.nullcontext()
    with scope:  # type: ignore[attr-defined]
        for _ in range(n):
            fn()


def instructions(python: str, role: str, op: str, port: int, condition: str, n: int) -> int:
    out = subprocess.run(
        [
            "valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
            python, __file__, "--child", role, op, str(port), condition, str(n),
        ],
        capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"}, check=True,
    )
    match = re.search(r"I\s+refs:\s+([\d,]+)", out.stderr)
    if match is None:
        raise RuntimeError(f"no instruction count from valgrind:\n{out.stderr[-2000:]}")
    return int(match.group(1).replace(",", ""))


def main() -> int:
    if sys.argv[1:2] == ["--child"]:
        role, op, port, condition, n = sys.argv[2:7]
        child(role, op, int(port), condition, int(n))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", help="the interpreter (default: this one's .venv-bench-X.Y)")
    parser.add_argument("--ops", default="connect,dns_localhost", help="hot.py operations")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed")
    python = args.python or str(
        ROOT / f".venv-bench-{sys.version_info[0]}.{sys.version_info[1]}" / "bin" / "python"
    )
    listener = subprocess.Popen(
        [python, str(ROOT / "benchmarks" / "hot.py"), "listener"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert listener.stdout is not None
        port = json.loads(listener.stdout.readline())["port"]
        for op in args.ops.split(","):
            per_op = {}
            for role, condition in CONDITIONS:
                small = instructions(python, role, op, port, condition, SMALL)
                large = instructions(python, role, op, port, condition, LARGE)
                per_op[(role, condition)] = (large - small) / (LARGE - SMALL)
            base = per_op[("pristine", "noscope")]
            print(
                f"{op:16s} unguarded {base:8,.0f}   no scope "
                f"{per_op[('lambdaguard', 'noscope')] - base:+8,.0f}   in scope "
                f"{per_op[('lambdaguard', 'scope')] - base:+8,.0f}   instructions per operation",
                flush=True,
            )
    finally:
        if listener.stdin is not None:
            listener.stdin.close()
        listener.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
