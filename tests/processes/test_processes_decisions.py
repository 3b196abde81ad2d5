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
ScenarioRunner = Any  # conftest.run_scenario: (code, *, env=None) -> Scenario
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


class TestRememberedVerdictsCannotBeBorrowed:
    """An allowed plain call is remembered per merged policy view (the scope's Active),
    keyed by the strings it was judged on; no other scope, PATH or file can use it."""

    def test_path_allowed_in_one_scope_is_refused_in_another(
        self, dirs: Path2, violations: Violations
    ) -> None:
        """A program path allowed (and remembered) in one scope is refused in a scope
        whose allow-list does not have it."""
        tool = str(dirs.late_tool)
        with guard(subprocess=Subprocess("block", allow=[tool])):
            subprocess.run([tool], check=True)
            subprocess.run([tool], check=True)  # the second call is the remembered one
        assert dirs.ran("late")
        dirs.forget("late")
        with (
            guard(subprocess=Subprocess("block", allow=[TOUCH])),
            pytest.raises(ProcessViolation) as caught,
        ):
            subprocess.run([tool], check=True)
        assert caught.value.target == tool
        assert not dirs.ran("late")
        assert [v["target"] for v in violations()] == [tool]

    def test_stricter_scope_inside_refuses_what_the_outer_scope_remembered(
        self, dirs: Path2
    ) -> None:
        """A nested scope that blocks every program refuses a path its parent allowed."""
        tool = str(dirs.late_tool)
        with guard(subprocess=Subprocess("block", allow=[tool])):
            subprocess.run([tool], check=True)
            subprocess.run([tool], check=True)
            dirs.forget("late")
            with guard(subprocess="block"), pytest.raises(ProcessViolation):
                subprocess.run([tool], check=True)
        assert not dirs.ran("late")

    def test_baseline_tightened_after_an_allowed_call_refuses_it(self, dirs: Path2) -> None:
        """configure() adding a blocking layer applies to a name the scope remembered."""
        with guard(subprocess=Subprocess("block", allow=["lgtool"])):
            subprocess.run(["lgtool"], check=True)
            subprocess.run(["lgtool"], check=True)
            dirs.forget("late")
            configure(subprocess=Subprocess("block", allow=[TOUCH]))
            with pytest.raises(ProcessViolation):
                subprocess.run(["lgtool"], check=True)
        assert not dirs.ran("late")

    def test_name_remembered_on_one_path_is_judged_again_on_another(
        self, dirs: Path2, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """After an allowed name, prepending a directory with another program of that name
        to PATH makes the name find that program, and it is refused."""
        rule = Subprocess("block", allow=["lgtool"])  # built on PATH: early, late, ...
        with guard(subprocess=rule):
            subprocess.run(["lgtool"], check=True)
            subprocess.run(["lgtool"], check=True)
            assert dirs.ran("late")
            other = dirs.root / "other"
            other.mkdir()
            dirs.make(other)
            monkeypatch.setenv("PATH", f"{other}{os.pathsep}{os.environ['PATH']}")
            with pytest.raises(ProcessViolation) as caught:
                subprocess.run(["lgtool"], check=True)
        assert caught.value.target == str(other / "lgtool")
        assert not dirs.ran("other")

    def test_name_allowed_on_its_rules_path_runs_the_program_found_now(
        self, dirs: Path2
    ) -> None:
        """A name entry allows what the name resolves to when decided: once a program of
        that name appears earlier on PATH, that program is the one judged and run."""
        with guard(subprocess=Subprocess("block", allow=["lgtool"])):
            subprocess.run(["lgtool"], check=True)
            subprocess.run(["lgtool"], check=True)
            assert dirs.ran("late")
            dirs.forget("late")
            dirs.make(dirs.early)
            subprocess.run(["lgtool"], check=True)
        assert dirs.ran("early")
        assert not dirs.ran("late")

    def test_path_with_dotdot_is_remembered_only_in_normal_form(
        self, dirs: Path2, violations: Violations
    ) -> None:
        """late/../late/lgtool is judged as late/lgtool each time, allowed or not."""
        winding = f"{dirs.late}/../late/lgtool"
        with guard(subprocess=Subprocess("block", allow=[str(dirs.late_tool)])):
            subprocess.run([winding], check=True)
            subprocess.run([winding], check=True)
        assert dirs.ran("late")
        dirs.forget("late")
        with guard(subprocess=Subprocess("block")), pytest.raises(ProcessViolation) as caught:
            subprocess.run([winding], check=True)
        assert caught.value.target == str(dirs.late_tool)
        assert not dirs.ran("late")


    def test_alerted_call_is_reported_every_time(
        self, dirs: Path2, violations: Violations
    ) -> None:
        """Only allow verdicts are remembered: an alerted program is reported on every
        call, also inside a scope that allows it on its own."""
        tool = str(dirs.late_tool)
        with guard(subprocess=Subprocess("block", allow=[tool])):
            subprocess.run([tool], check=True)
            with guard(subprocess=Subprocess("alert", allow=[TOUCH])):
                for _ in range(3):
                    subprocess.run([tool], check=True)
        assert [(v["mode"], v["target"]) for v in violations()] == [("alert", tool)] * 3


class TestWhatRunsIsWhatWasJudged:
    """Popen is told to exec the file the decision found, so that no second search, and
    no path the kernel reads differently, can run another file."""

    def test_dotdot_after_a_link_runs_the_file_that_was_judged(self, dirs: Path2) -> None:
        """a/link/../lgtool is judged as a/lgtool; the kernel would read it through the
        link (b/lgtool): a/lgtool is what runs."""
        judged = dirs.make(dirs.early)  # early/lgtool, allowed
        elsewhere = dirs.root / "b"
        (elsewhere / "sub").mkdir(parents=True)
        dirs.make(elsewhere)  # b/lgtool, not allowed
        (dirs.early / "link").symlink_to(elsewhere / "sub")
        with guard(subprocess=Subprocess("block", allow=[str(judged)])):
            for _ in range(2):  # the second call finds the first one's verdict remembered
                subprocess.run([f"{dirs.early}/link/../lgtool"], check=True)
            subprocess.run([f"{dirs.early}/link/../lgtool"], cwd=dirs.root, check=True)
        assert dirs.ran("early")
        assert not dirs.ran("b")

    def test_relative_path_entry_is_searched_from_the_childs_working_directory(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, violations: Violations
    ) -> None:
        """With a relative PATH entry and cwd=, the program judged is the one the child
        would find from its own working directory, and only that one may run."""
        made = {}
        for side in ("parent", "child"):
            (tmp_path / side / "rel").mkdir(parents=True)
            tool = tmp_path / side / "rel" / "lgtool"
            tool.write_text(f"#!/bin/sh\n{TOUCH} '{tmp_path}/{side}.ran'\n")
            tool.chmod(0o755)
            made[side] = str(tool)
        monkeypatch.chdir(tmp_path / "parent")
        monkeypatch.setenv("PATH", f"rel{os.pathsep}{os.environ['PATH']}")
        child_cwd = tmp_path / "child"
        with (
            guard(subprocess=Subprocess("block", allow=[made["parent"]])),
            pytest.raises(ProcessViolation) as caught,
        ):
            subprocess.run(["lgtool"], cwd=child_cwd, check=True)
        assert caught.value.target == made["child"]
        assert not (tmp_path / "parent.ran").exists()
        assert not (tmp_path / "child.ran").exists()
        with guard(subprocess=Subprocess("block", allow=[made["child"]])):
            subprocess.run(["lgtool"], cwd=child_cwd, check=True)
        assert (tmp_path / "child.ran").exists()
        assert not (tmp_path / "parent.ran").exists()

    @pytest.mark.parametrize("call", ['["lgtool"]', '["lgtool"], cwd="/"'], ids=["plain", "cwd"])
    def test_program_placed_earlier_on_path_after_the_decision_does_not_run(
        self, call: str, dirs: Path2, run_scenario: ScenarioRunner
    ) -> None:
        """A program that appears earlier on PATH between the decision and the exec (made
        here by an audit hook on subprocess.Popen, which fires in between) does not run:
        the file that was judged does."""
        result = run_scenario(
            f"""
            import os, subprocess, sys
            from lambdaguard import Subprocess, guard
            early = {str(dirs.early / "lgtool")!r}
            def plant(event, args):
                if event == "subprocess.Popen" and not os.path.exists(early):
                    with open(early, "w") as f:
                        f.write("#!/bin/sh\\n{TOUCH} {dirs.root}/early.ran\\n")
                    os.chmod(early, 0o755)
            with guard(subprocess=Subprocess("block", allow=[{str(dirs.late_tool)!r}])):
                sys.addaudithook(plant)
                subprocess.run({call}, check=True)
            print("done")
            """,
            env={"PATH": f"{dirs.early}{os.pathsep}{dirs.late}{os.pathsep}{os.environ['PATH']}"},
        )
        assert result.stdout.splitlines()[-1:] == ["done"], result
        assert (dirs.early / "lgtool").exists()
        assert dirs.ran("late")
        assert not dirs.ran("early")


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
