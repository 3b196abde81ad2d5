"""Fixtures for the subprocess policy tests: marker files, violation lines, scenarios.

Every route test asks a real program to write a marker file and asserts afterwards that
the marker is absent (blocked) or present (allowed). Scenarios that fork, exec or add
state that cannot be undone run in a fresh interpreter (``run_scenario``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ScenarioRunner = Callable[..., "Scenario"]


def violation_lines(text: str) -> list[dict[str, Any]]:
    """The ``lambdaguard`` objects of the JSON violation lines in ``text``."""
    out = []
    for line in text.splitlines():
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        payload = record.get("lambdaguard", {})
        if payload.get("event") == "violation":
            out.append(payload)
    return out


class Scenario:
    """A finished scenario: its exit status, output and violation lines."""

    def __init__(self, completed: subprocess.CompletedProcess[str]) -> None:
        self.returncode = completed.returncode
        self.stdout = completed.stdout
        self.stderr = completed.stderr
        self.violations = violation_lines(completed.stdout)

    def __repr__(self) -> str:
        return f"Scenario(rc={self.returncode}, stdout={self.stdout!r}, stderr={self.stderr!r})"


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    """A path that a program writes to prove it ran; absent at the start."""
    return tmp_path / "ran.marker"


@pytest.fixture
def violations(capsys: pytest.CaptureFixture[str]) -> Callable[[], list[dict[str, Any]]]:
    """Read the violation lines written to stdout so far."""
    return lambda: violation_lines(capsys.readouterr().out)


@pytest.fixture
def run_scenario(tmp_path: Path) -> ScenarioRunner:
    """Run a Python script in a fresh interpreter; ``MARKER`` names the marker path."""

    def run(code: str, *, env: dict[str, str] | None = None, timeout: float = 120) -> Scenario:
        script = tmp_path / "scenario.py"
        script.write_text(textwrap.dedent(code))
        environment = {k: v for k, v in os.environ.items() if not k.startswith("LAMBDAGUARD_")}
        environment["MARKER"] = str(tmp_path / "ran.marker")
        environment.update(env or {})
        completed = subprocess.run(
            [sys.executable, str(script)],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            text=True,
            env=environment,
            cwd=tmp_path,
            timeout=timeout,
            check=False,
        )
        return Scenario(completed)

    return run
