"""The ``lambdaguard`` command: check the environment's policy, summarise violation logs.

lambdaguard check            build the policy from LAMBDAGUARD_* and print it
lambdaguard report [FILE..]  count violation lines (CloudWatch exports, stdout captures)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TextIO

from lambdaguard import __version__
from lambdaguard.errors import ConfigError


def _check(out: TextIO) -> int:
    from lambdaguard.scope import guard

    try:
        policy = guard().policy
    except ConfigError as exc:
        print(f"lambdaguard: {exc}", file=sys.stderr)
        return 2
    for name, rule in sorted(policy.rules.items()):
        allow = ", ".join(rule.allow) if rule.allow else "-"
        print(f"{name:<16} {rule.mode.value:<6} allow: {allow}", file=out)
    return 0


def _records(lines: Iterable[str]) -> Iterable[dict[str, object]]:
    for line in lines:
        start = line.find("{")  # CloudWatch exports prefix a timestamp
        if start < 0 or '"lambdaguard"' not in line:
            continue
        try:
            record = json.loads(line[start:])
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("lambdaguard"), dict):
            yield record


def summarise(lines: Iterable[str]) -> Counter[tuple[str, str, str, str, str]]:
    """Count violations by (function, policy, mode, action, target), suppressed ones included."""
    counts: Counter[tuple[str, str, str, str, str]] = Counter()
    for record in _records(lines):
        body = record["lambdaguard"]
        assert isinstance(body, dict)
        function = str(record.get("function_name", "-"))
        if body.get("event") == "violation":
            action, target = str(body.get("action")), str(body.get("target"))
            counts[function, str(body.get("policy")), str(body.get("mode")), action, target] += 1
        elif body.get("event") == "suppressed":
            suppressed = body.get("suppressed", 0)
            policy, mode = str(body.get("policy")), str(body.get("mode"))
            counts[function, policy, mode, "(suppressed)", "-"] += (
                suppressed if isinstance(suppressed, int) else 0
            )
    return counts


def _report(paths: Sequence[str], out: TextIO) -> int:
    counts: Counter[tuple[str, str, str, str, str]] = Counter()
    if not paths:
        counts = summarise(sys.stdin)
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as handle:
            counts.update(summarise(handle))
    if not counts:
        print("no lambdaguard violations found", file=out)
        return 0
    print(
        f"{'count':>7}  {'function':<24} {'policy':<15} {'mode':<6} {'action':<16} target", file=out
    )
    for (function, policy, mode, action, target), count in counts.most_common():
        print(f"{count:>7}  {function:<24} {policy:<15} {mode:<6} {action:<16} {target}", file=out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lambdaguard", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"lambdaguard {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("check", help="build the policy from LAMBDAGUARD_* and print it")
    report = commands.add_parser("report", help="summarise violation lines from files or stdin")
    report.add_argument("files", nargs="*", help="log files (default: standard input)")
    args = parser.parse_args(argv)
    if args.command == "check":
        return _check(sys.stdout)
    return _report(args.files, sys.stdout)


if __name__ == "__main__":
    raise SystemExit(main())
