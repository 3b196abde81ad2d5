"""What the cheap decision for a plain Popen must still get right.

An allowed ``subprocess.run(["name", ...])`` is decided by a short path (no signature
binding, one PATH search, remembered per-scope state). These tests pin what that path may
not lose: the file system is searched afresh on every call, arguments are read the way
Python binds them, and what is carried into a child follows the policy in force.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lambdaguard import ProcessViolation, Subprocess, configure, guard

Violations = Callable[[], list[dict[str, Any]]]
TOUCH = os.path.abspath(shutil.which("touch") or "/usr/bin/touch")


class Path2:
    """Two directories on PATH, ``early`` before ``late``, and a program ``lgtool`` in late."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.early = root / "early"
        self.late = root / "late"
        self.early.mkdir()
        self.late.mkdir()
        self.late_tool = self.make(self.late)

    def make(self, directory: Path, *, executable: bool = True) -> Path:
        tool = directory / "lgtool"
        tool.write_text(f"#!/bin/sh\n{TOUCH} '{self.root}/{directory.name}.ran'\n")
        tool.chmod(0o755 if executable else 0o644)
        return tool

    def ran(self, name: str) -> bool:
        return (self.root / f"{name}.ran").exists()

    def forget(self, name: str) -> None:
        (self.root / f"{name}.ran").unlink(missing_ok=True)


@pytest.fixture
def dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path2:
    made = Path2(tmp_path)
    monkeypatch.setenv(
        "PATH", f"{made.early}{os.pathsep}{made.late}{os.pathsep}{os.environ['PATH']}"
    )
    return made


class TestSearchFollowsTheFileSystem:
    def test_program_placed_earlier_on_path_after_an_allowed_call_is_refused(
        self, dirs: Path2, violations: Violations
    ) -> None:
        """A same-named program that appears earlier on PATH is found, and refused."""
        with guard(subprocess=Subprocess("block", allow=[str(dirs.late_tool)])):
            subprocess.run(["lgtool"], check=True)
            assert dirs.ran("late")
            violations()
            early_tool = dirs.make(dirs.early)
            with pytest.raises(ProcessViolation) as caught:
                subprocess.run(["lgtool"], check=True)
        assert caught.value.target == str(early_tool)
        assert not dirs.ran("early")
        assert [v["target"] for v in violations()] == [str(early_tool)]

    def test_program_placed_earlier_on_the_calls_own_path_is_refused(
        self, dirs: Path2, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With env={"PATH": ...}, a program appearing earlier on that PATH is refused."""
        monkeypatch.setenv("PATH", f"{dirs.late}{os.pathsep}{os.environ['PATH']}")
        rule = Subprocess("block", allow=["lgtool"])  # resolves to late/lgtool
        child_path = {"PATH": f"{dirs.early}{os.pathsep}{dirs.late}"}
        with guard(subprocess=rule):
            subprocess.run(["lgtool"], env=child_path, check=True)
            assert dirs.ran("late")
            dirs.make(dirs.early)
            with pytest.raises(ProcessViolation):
                subprocess.run(["lgtool"], env=child_path, check=True)
        assert not dirs.ran("early")

    def test_program_made_executable_earlier_on_path_is_refused(self, dirs: Path2) -> None:
        """A non-executable file is skipped, and refused once it is made executable."""
        early_tool = dirs.make(dirs.early, executable=False)
        with guard(subprocess=Subprocess("block", allow=[str(dirs.late_tool)])):
            subprocess.run(["lgtool"], check=True)
            assert dirs.ran("late")
            early_tool.chmod(0o755)
            with pytest.raises(ProcessViolation):
                subprocess.run(["lgtool"], check=True)
        assert not dirs.ran("early")

    def test_program_removed_from_earlier_on_path_falls_back_to_the_next(self, dirs: Path2) -> None:
        """Once the earlier program is gone, the allowed later one is found and runs."""
        early_tool = dirs.make(dirs.early)
        with guard(subprocess=Subprocess("block", allow=[str(dirs.late_tool)])):
            with pytest.raises(ProcessViolation):
                subprocess.run(["lgtool"], check=True)
            early_tool.unlink()
            subprocess.run(["lgtool"], check=True)
        assert dirs.ran("late")
        assert not dirs.ran("early")

    def test_directory_named_like_the_program_is_skipped(self, dirs: Path2) -> None:
        """A directory called lgtool earlier on PATH is not what runs, as for exec."""
        (dirs.early / "lgtool").mkdir()
        with guard(subprocess=Subprocess("block", allow=[str(dirs.late_tool)])):
            subprocess.run(["lgtool"], check=True)
        assert dirs.ran("late")

    def test_program_not_on_path_is_refused_and_reported(
        self, dirs: Path2, violations: Violations
    ) -> None:
        """A name found nowhere on PATH is refused by name, even if the name is allowed."""
        with (
            guard(subprocess=Subprocess("block", allow=["lgtool-missing"])),
            pytest.raises(ProcessViolation) as caught,
        ):
            subprocess.run(["lgtool-missing"], check=True)
        assert caught.value.target == "lgtool-missing"
        assert [v["target"] for v in violations()] == ["lgtool-missing"]


class TestPopenArguments:
    def test_executable_given_by_position_is_what_is_judged(
        self, dirs: Path2, violations: Violations
    ) -> None:
        """Popen(args, bufsize, executable) is judged by the positional executable."""
        with (
            guard(subprocess=Subprocess("block", allow=["lgtool"])),
            pytest.raises(ProcessViolation) as caught,
        ):
            subprocess.Popen(["lgtool"], -1, "/bin/sh").wait()
        assert caught.value.target == "/bin/sh"
        assert not dirs.ran("late")

    def test_args_given_by_keyword_are_judged(self, dirs: Path2) -> None:
        """Popen(args=[...]) is decided like Popen([...])."""
        with guard(subprocess=Subprocess("block", allow=["lgtool"])):
            subprocess.Popen(args=["lgtool"]).wait()
        assert dirs.ran("late")
        dirs.forget("late")
        with guard(subprocess=Subprocess("block")), pytest.raises(ProcessViolation):
            subprocess.Popen(args=["lgtool"]).wait()
        assert not dirs.ran("late")

    def test_allowed_call_with_other_keywords_runs(self, dirs: Path2) -> None:
        """Keywords that do not change the program (stdout, text, ...) keep it allowed."""
        with guard(subprocess=Subprocess("block", allow=["lgtool"])):
            done = subprocess.run(["lgtool"], capture_output=True, text=True, check=True)
        assert done.returncode == 0
        assert dirs.ran("late")

    @pytest.mark.parametrize(
        "call",
        [
            lambda: subprocess.Popen(["lgtool"], no_such_argument=True),
            lambda: subprocess.Popen(["lgtool"], args=["lgtool"]),
            lambda: subprocess.Popen(*([["lgtool"]] + [None] * 30)),
            lambda: subprocess.Popen(),
        ],
        ids=["unknown keyword", "given twice", "too many", "missing"],
    )
    def test_call_that_does_not_bind_starts_nothing_and_reports_nothing(
        self, call: Callable[[], object], dirs: Path2, violations: Violations
    ) -> None:
        """A call Popen cannot bind raises Popen's own TypeError: no program, no line."""
        with guard(subprocess=Subprocess("block")), pytest.raises(TypeError):
            call()
        assert not dirs.ran("late")
        assert violations() == []


CHILD_SEES = (
    "import os; print('carried' if os.environ.get('LAMBDAGUARD_INHERITED_POLICY') else 'none')"
)


def _child_sees() -> str:
    done = subprocess.run(
        [sys.executable, "-c", CHILD_SEES], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


class TestCarriedPolicyFollowsTheLayers:
    def test_each_scope_carries_its_own_policy(self) -> None:
        """Leaving a scope that carries its policy stops carrying it, and entering starts."""
        plain = Subprocess("block", allow=[sys.executable])
        carrying = Subprocess("block", allow=[sys.executable], inherit=True)
        with guard(subprocess=plain):
            assert _child_sees() == "none"
            with guard(subprocess=carrying):
                assert _child_sees() == "carried"
            assert _child_sees() == "none"

    def test_a_baseline_layer_added_later_is_carried(self) -> None:
        """configure(..., inherit=True) after a first child is carried into the next one."""
        configure(subprocess=Subprocess("block", allow=[sys.executable]))
        assert _child_sees() == "none"
        configure(subprocess=Subprocess("block", allow=[sys.executable], inherit=True))
        assert _child_sees() == "carried"


def test_subprocess_imported_after_activation_is_patched_and_blocked(tmp_path: Path) -> None:
    """subprocess and pty are patched when first imported, not imported by lambdaguard."""
    marker = tmp_path / "ran"
    code = f"""
import sys, lambdaguard
with lambdaguard.guard(subprocess="block"):
    pass
print("imported by lambdaguard:", "subprocess" in sys.modules, "pty" in sys.modules)
import subprocess, pty
print("patched:", hasattr(subprocess.Popen.__init__, "__wrapped__"), hasattr(pty.spawn, "__wrapped__"))
try:
    with lambdaguard.guard(subprocess="block"):
        subprocess.run(["touch", {str(marker)!r}])
except lambdaguard.ProcessViolation:
    print("refused")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    lines = [line for line in result.stdout.splitlines() if not line.startswith("{")]
    assert lines == ["imported by lambdaguard: False False", "patched: True True", "refused"], result.stderr
    assert not marker.exists()
