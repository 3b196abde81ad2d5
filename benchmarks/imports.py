"""Where the cold start goes: import costs, measured by hand (not part of `make bench`).

    python benchmarks/imports.py [--rounds N]

Needs the bench venvs that `make bench` builds. Prints three markdown tables for
docs/performance.md ("Where the cold start goes"):

1. ``import wrapt`` alone, wrapt 2.5.2 against 1.17.3 (scratch venvs
   ``.venv-wrapt<version>-X.Y`` built here, holding nothing else);
2. cumulative import sets: the floor any guard of this design pays, then wrapt's C types,
   then lambdaguard's import, first activation and first violation, step by step;
3. ``python -X importtime`` of ``import lambdaguard`` and of the first activation: the
   heaviest imports under each lambdaguard module.

Each process is timed wall and CPU (user + system), the sets alternating, N rounds,
medians; peak memory is VmHWM.
"""

from __future__ import annotations

import argparse
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HWM = (
    "\nimport sys as _s\n"
    "for _l in open('/proc/self/status'):\n"
    "    _l.startswith('VmHWM') and _s.stderr.write(_l.split()[1])\n"
)
# Which modules a guarded bare handler loads, in layers: what any guard of this design
# cannot avoid, then wrapt's C types, then lambdaguard's own modules, step by step.
_WRAPT_EXTENSION_ALONE = (
    "from importlib.machinery import PathFinder as _P\n"
    "_w = _P.find_spec('wrapt')\n"
    "_e = _P.find_spec('wrapt._wrappers', list(_w.submodule_search_locations))\n"
    "_e.loader.create_module(_e)"
)
CUMULATIVE = (
    ("`python -c pass`", ""),
    (
        "+ `enum` (`Mode`), `threading`, `contextvars`, `_socket`, `_json` and one audit hook:"
        " the floor of any guard of this design",
        "import enum, threading, contextvars, _socket, _json, sys\n"
        "sys.addaudithook(lambda e, a: None)",
    ),
    ("+ wrapt's C extension alone (`wrapt._wrappers`)", _WRAPT_EXTENSION_ALONE),
    ("+ `import lambdaguard`", "import lambdaguard"),
    (
        "+ first activation: all four policies, patches, audit hook, scope entered",
        "_g = lambdaguard.guard(network='block', tmp='block', subprocess='block',"
        " handler_source='block')\n_g.__enter__()",
    ),
    (
        "+ first violation: a blocked open under /tmp, decided and reported",
        "import io as _io, sys as _sys\n_out, _sys.stdout = _sys.stdout, _io.StringIO()\n"
        "try:\n    open('/tmp/lambdaguard-imports-probe', 'w')\n"
        "except PermissionError:\n    pass\n_sys.stdout = _out",
    ),
)


def run(python: str, code: str) -> tuple[float, float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([python, "-c", code + HWM], capture_output=True, text=True, check=True)
    wall = (time.perf_counter() - start) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    return wall, cpu, int(proc.stderr.strip() or 0) / 1024


def measure(python: str, sets: list[tuple[str, str]], rounds: int) -> dict[str, tuple[float, ...]]:
    samples: dict[str, list[tuple[float, float, float]]] = {label: [] for label, _ in sets}
    for _, code in sets:
        run(python, code)
    for r in range(rounds):
        for label, code in sets if r % 2 == 0 else sets[::-1]:
            samples[label].append(run(python, code))
    return {
        label: tuple(statistics.median(s[i] for s in values) for i in range(3))
        for label, values in samples.items()
    }


def wrapt_venv(python: str, version: str, wrapt_version: str) -> str:
    """A scratch venv with nothing but one wrapt version, for the standalone import."""
    venv = ROOT / f".venv-wrapt{wrapt_version}-{version}"
    if not (venv / "bin" / "python").exists():
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
             f"wrapt=={wrapt_version}"],
            check=True,
        )
    return str(venv / "bin" / "python")


def importtime(python: str, code: str, limit: int = 12) -> list[tuple[int, int, str]]:
    proc = subprocess.run(
        [python, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True
    )
    rows = []
    for line in proc.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (.*)$", line)
        if match:
            rows.append((int(match.group(1)), int(match.group(2)), match.group(3)))
    return sorted(rows, key=lambda row: -row[1])[:limit]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    venvs = sorted(ROOT.glob(".venv-bench-*"))
    if not venvs:
        print("run `make bench` first: it builds the bench venvs")
        return 1
    for venv in venvs:
        version = venv.name.removeprefix(".venv-bench-")
        python = str(venv / "bin" / "python")
        base = subprocess.run(
            [python, "-c", "import sys; print(sys._base_executable)"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        print(f"\n### Python {version}\n")
        print("| `import wrapt` | wall | CPU | peak memory |\n|---|---:|---:|---:|")
        for wrapt_version in ("2.5.2", "1.17.3"):
            py = wrapt_venv(base, version, wrapt_version)
            m = measure(py, [("pass", ""), ("wrapt", "import wrapt")], args.rounds)
            wall, cpu, mib = (m["wrapt"][i] - m["pass"][i] for i in range(3))
            print(f"| wrapt {wrapt_version} | {wall:+.1f} ms | {cpu:+.1f} ms | {mib:+.1f} MiB |")
        sets, acc = [], []
        for label, code in CUMULATIVE:
            if code:
                acc.append(code)
            sets.append((label, "\n".join(acc)))
        m = measure(python, sets, args.rounds)
        print("\n| cumulative import set | wall | CPU | peak memory |\n|---|---:|---:|---:|")
        previous = None
        for label, _ in sets:
            wall, cpu, mib = m[label]
            if previous is None:
                print(f"| {label} | {wall:.1f} ms | {cpu:.1f} ms | {mib:.1f} MiB |")
            else:
                print(
                    f"| {label} | {wall - previous[0]:+.1f} ms | {cpu - previous[1]:+.1f} ms "
                    f"| {mib - previous[2]:+.1f} MiB |"
                )
            previous = (wall, cpu, mib)
        for what, code in (
            ("import lambdaguard", "import lambdaguard"),
            (
                "import lambdaguard and activate",
                "import lambdaguard\nlambdaguard.guard(network='block').__enter__()",
            ),
        ):
            print(f"\n`python -X importtime -c '{what}'`, heaviest cumulative (µs):\n")
            print("| module | self | cumulative |\n|---|---:|---:|")
            for self_us, total_us, name in importtime(python, code):
                print(f"| `{name.strip()}` (depth {len(name) - len(name.lstrip())}) "
                      f"| {self_us} | {total_us} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
