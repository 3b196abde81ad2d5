"""Carrying the policy into an allowed Python child (Subprocess(inherit=True)).

The child is a real interpreter started with no code change: lambdaguard_inherit.pth,
installed next to the package, restores the carried policy at its startup.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ScenarioRunner = Any  # conftest.run_scenario: (code, *, env=None) -> Scenario

TOUCH = os.path.abspath(shutil.which("touch") or "/usr/bin/touch")

PRELUDE = f"""
import os, sys, subprocess
from lambdaguard import guard, Subprocess, ProcessViolation
MARKER = os.environ["MARKER"]
TOUCH = {TOUCH!r}
CHILD = (
    "import subprocess, os\\n"
    "try:\\n"
    "    subprocess.run([{TOUCH!r}, os.environ['MARKER']], check=True)\\n"
    "except PermissionError as exc:\\n"
    "    print('child refused', type(exc).__name__)\\n"
)
"""


class TestInheritance:
    def test_without_inherit_an_allowed_python_child_runs_unguarded(
        self, run_scenario: ScenarioRunner, marker: Path
    ) -> None:
        """By default the policy stays in the parent: an allowed Python child can run touch."""
        result = run_scenario(
            PRELUDE
            + """
with guard(subprocess=Subprocess("block", allow=[sys.executable])):
    subprocess.run([sys.executable, "-c", CHILD], check=True)
"""
        )
        assert marker.exists(), result

    def test_inherit_carries_the_policy_into_a_python_child(
        self, run_scenario: ScenarioRunner, marker: Path
    ) -> None:
        """With inherit=True the child enforces the same policy from its first line."""
        result = run_scenario(
            PRELUDE
            + """
with guard(subprocess=Subprocess("block", allow=[sys.executable], inherit=True)):
    subprocess.run([sys.executable, "-c", CHILD], check=True)
"""
        )
        assert "child refused ProcessViolation" in result.stdout, result
        assert not marker.exists()
        assert [v["target"] for v in result.violations] == [TOUCH]

    def test_inherit_from_the_environment(self, run_scenario: ScenarioRunner, marker: Path) -> None:
        """LAMBDAGUARD_SUBPROCESS_INHERIT=true turns inheritance on without code."""
        result = run_scenario(
            PRELUDE
            + """
with guard(subprocess=Subprocess("block", allow=[sys.executable])):
    subprocess.run([sys.executable, "-c", CHILD], check=True)
""",
            env={"LAMBDAGUARD_SUBPROCESS_INHERIT": "true"},
        )
        assert "child refused ProcessViolation" in result.stdout, result
        assert not marker.exists()

    @pytest.mark.parametrize(
        "start",
        [
            "os.system(sys.executable + ' -c ' + __import__('shlex').quote(CHILD))",
            "os.spawnv(os.P_WAIT, sys.executable, [sys.executable, '-c', CHILD])",
            "os.waitpid(os.posix_spawn(sys.executable, ARGV, os.environ), 0)",
            "os.execv(sys.executable, [sys.executable, '-c', CHILD])",
        ],
    )
    def test_every_route_carries_it(
        self, start: str, run_scenario: ScenarioRunner, marker: Path
    ) -> None:
        """os.system, os.spawnv, os.posix_spawn and os.execv children carry the policy too."""
        result = run_scenario(
            PRELUDE
            + f"""
allowed = [sys.executable, "/bin/sh"]
ARGV = [sys.executable, "-c", CHILD]
with guard(subprocess=Subprocess("block", allow=allowed, inherit=True)):
    {start}
"""
        )
        assert "child refused ProcessViolation" in result.stdout, result
        assert not marker.exists()

    @pytest.mark.parametrize("method", ["spawn", "forkserver"])
    def test_multiprocessing_child_carries_it(
        self, method: str, run_scenario: ScenarioRunner, marker: Path
    ) -> None:
        """A multiprocessing spawn or forkserver child starts under the carried policy."""
        result = run_scenario(
            PRELUDE
            + f"""
import multiprocessing
METHOD = {method!r}
def work():
    try:
        subprocess.run([TOUCH, MARKER], check=True)
    except ProcessViolation:
        print("worker refused", flush=True)
if __name__ == "__main__":
    with guard(subprocess=Subprocess("block", allow=[sys.executable], inherit=True)):
        p = multiprocessing.get_context(METHOD).Process(target=work)
        p.start()
        p.join()
"""
        )
        assert "worker refused" in result.stdout, result
        assert not marker.exists()

    def test_other_policies_travel_with_it(self, run_scenario: ScenarioRunner) -> None:
        """Every policy in force is carried, e.g. network: the child cannot connect."""
        result = run_scenario(
            PRELUDE
            + """
child = (
    "import socket\\n"
    "try:\\n"
    "    socket.create_connection(('127.0.0.1', 9), timeout=5)\\n"
    "except Exception as exc:\\n"
    "    print('child got', type(exc).__name__)\\n"
)
with guard(network="block", subprocess=Subprocess("allow", inherit=True)):
    subprocess.run([sys.executable, "-c", child], check=True)
"""
        )
        assert "child got NetworkViolation" in result.stdout, result

    def test_a_tampered_carrier_stops_the_child(self, tmp_path: Path) -> None:
        """A child that cannot restore the carried policy exits (70) rather than run unguarded."""
        env = {**os.environ, "LAMBDAGUARD_INHERITED_POLICY": "{not json"}
        marker = tmp_path / "ran"
        completed = subprocess.run(
            [sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert completed.returncode == 70
        assert "cannot restore the inherited policy" in completed.stderr
        assert not marker.exists()

    def test_interpreters_without_the_variable_do_not_import_lambdaguard(self) -> None:
        """When the variable is absent the .pth line imports nothing."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("LAMBDAGUARD_")}
        completed = subprocess.run(
            [sys.executable, "-c", "import sys; print('lambdaguard' in sys.modules)"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert completed.stdout.strip() == "False"

    def test_the_pth_file_is_installed(self) -> None:
        """The bootstrap line is installed in site-packages (the interpreter runs it)."""
        import site

        places = [*site.getsitepackages(), site.getusersitepackages()]
        assert any(Path(p, "lambdaguard_inherit.pth").is_file() for p in places)
