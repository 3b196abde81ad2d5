"""Where lambdaguard's part of a typical handler's cold start goes, step by step.

    python benchmarks/typical_steps.py [--rounds N] [--python PATH] [--instructions]

Not part of ``make bench``; needs a bench venv (``make bench`` builds ``.venv-bench-X.Y``).
Each round is a fresh process that imports boto3 and the powertools Logger first (what a
typical handler has loaded before lambdaguard), then times with ``perf_counter``: ``import
lambdaguard``; building a guard with every policy on plus the modules its activation
loads (reporter, propagation, audit hook, wrapt's extension); each sensor area's module;
installing the patches and the hook; and the first invocation with one violation
reported. Prints the median of each step over the rounds, in milliseconds; with
``--instructions``, one round under valgrind's callgrind instead, and the user-space
instructions of each step (a count the machine's load cannot move; each step ends at an
``os.getpgrp()`` marker, where callgrind dumps, as benchmarks/instructions.py does).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import io, json, os, sys, time
import boto3
from aws_lambda_powertools import Logger
steps = {}
os.getpgrp()  # the marker: callgrind dumps here, with --instructions
t = time.perf_counter()
def mark(name):
    global t
    now = time.perf_counter()
    steps[name] = (now - t) * 1000
    os.getpgrp()
    t = time.perf_counter()
import lambdaguard
mark("import lambdaguard")
guard = lambdaguard.guard(network="block", tmp="block", subprocess="block", handler_source="block")
from lambdaguard import sensors
import lambdaguard.decide, lambdaguard.propagation, lambdaguard.sensors.audit
mark("guard built; reporter, propagation, audit hook and wrapt's extension loaded")
import lambdaguard.sensors.network
mark("network sensor module")
import lambdaguard.sensors.files
mark("files sensor module")
import lambdaguard.sensors.processes
mark("processes sensor module")
sensors.ensure_installed()
mark("patches and audit hook installed")
def handler(event, context):
    try:
        open("/tmp/lambdaguard-bench-typical-steps.txt", "w")
    except PermissionError:
        pass
guarded = guard(handler)
out, sys.stdout = sys.stdout, io.StringIO()
guarded({}, None)
sys.stdout = out
mark("first invocation, one violation reported")
print(json.dumps(steps))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--python", help="an interpreter with boto3 and powertools")
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions under valgrind instead"
    )
    args = parser.parse_args()
    pythons = [args.python] if args.python else [
        str(venv / "bin" / "python") for venv in sorted(ROOT.glob(".venv-bench-*"))
    ]
    if not pythons:
        print("run `make bench` first: it builds the bench venvs")
        return 1
    if args.instructions:
        return count_instructions(pythons)
    for python in pythons:
        samples: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            done = subprocess.run(
                [python, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r})\n{CHILD}"],
                capture_output=True, text=True, check=True,
            )
            for step, ms in json.loads(done.stdout.strip().splitlines()[-1]).items():
                samples.setdefault(step, []).append(ms)
        print(f"\n{python} ({args.rounds} rounds, medians)\n")
        print("| step | ms |\n|---|---:|")
        for step, values in samples.items():
            print(f"| {step} | {statistics.median(values):.2f} |")
        total = sum(statistics.median(v) for v in samples.values())
        print(f"| total | {total:.2f} |")
    return 0


def count_instructions(pythons: list[str]) -> int:
    """One round of each interpreter under callgrind: instructions per step, in millions."""
    from instructions import segment_counts, valgrind_version

    if valgrind_version() is None:
        print("valgrind is not installed")
        return 1
    for python in pythons:
        with tempfile.TemporaryDirectory() as directory:
            child = subprocess.Popen(
                [
                    "valgrind", "--tool=callgrind", "--dump-before=getpgrp",
                    f"--callgrind-out-file={directory}/cg.%p",
                    python, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r})\n{CHILD}",
                ],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                env={**os.environ, "PYTHONHASHSEED": "0"},
            )
            stdout, _ = child.communicate()
            if child.returncode != 0:
                raise RuntimeError(f"{python} under valgrind exited {child.returncode}")
            names = list(json.loads(stdout.strip().splitlines()[-1]))
            # Dump 0 is start-up and the typical imports; then one dump per step.
            counts = segment_counts(directory, child.pid)[1 : 1 + len(names)]
        print(f"\n{python} (one round under {valgrind_version()}, PYTHONHASHSEED=0)\n")
        print("| step | million instructions |\n|---|---:|")
        for name, count in zip(names, counts, strict=True):
            print(f"| {name} | {count / 1e6:.2f} |")
        print(f"| total | {sum(counts) / 1e6:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
