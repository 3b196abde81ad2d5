"""Routes that fork or exec the process itself, pools, the audit backstop, and inheritance.

Each scenario runs in a fresh interpreter (conftest.run_scenario), so that a guard that
failed to refuse a fork or an exec cannot take pytest down with it. ``MARKER`` is the file
the forbidden program would write; the tests assert it is absent.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

ScenarioRunner = Any  # conftest.run_scenario: (code, *, env=None) -> Scenario

TOUCH = os.path.abspath(shutil.which("touch") or "/usr/bin/touch")
PYTHON = os.path.abspath(sys.executable)

PRELUDE = f"""
import os, sys, subprocess
from lambdaguard import guard, Subprocess, ProcessViolation
MARKER = os.environ["MARKER"]
TOUCH = {TOUCH!r}
"""


class TestForkIsRefusedInTheParent:
    @pytest.mark.parametrize(
        "call", ["os.fork()", "os.forkpty()[0]", "__import__('pty').fork()[0]"]
    )
    def test_fork_is_refused_and_no_child_exists(
        self, call: str, run_scenario: ScenarioRunner, marker: Path
    ) -> None:
        """os.fork, os.forkpty and pty.fork raise in the parent; no child runs."""
        result = run_scenario(
            PRELUDE
            + f"""
with guard(subprocess="block"):
    try:
        pid = {call}
    except ProcessViolation as exc:
        print("refused", isinstance(exc, PermissionError))
    else:
        if pid == 0:
            open(MARKER, "w").close()
            os._exit(0)
        os.waitpid(pid, 0)
"""
        )
        assert "refused True" in result.stdout, result
        assert not marker.exists()
        assert [(v["action"], v["target"]) for v in result.violations] == [("fork", PYTHON)]

    def test_allowed_fork_child_stays_in_the_scope(
        self, run_scenario: ScenarioRunner, marker: Path, tmp_path: Path
    ) -> None:
        """A forked child inherits the scope: its own os.system is still refused."""
        result = run_scenario(
            PRELUDE
            + f"""
with guard(subprocess=Subprocess("block", allow=[sys.executable])):
    pid = os.fork()
    if pid == 0:
        try:
            os.system("touch " + MARKER)
        except ProcessViolation:
            open({str(tmp_path / "child-refused")!r}, "w").close()
        os._exit(0)
    os.waitpid(pid, 0)
"""
        )
        assert (tmp_path / "child-refused").exists(), result
        assert not marker.exists()


class TestExecIsRefusedBeforeReplacement:
    @pytest.mark.parametrize(
        "call",
        [
            "os.execv(TOUCH, ['touch', MARKER])",
            "os.execve(TOUCH, ['touch', MARKER], dict(os.environ))",
            "os.execl(TOUCH, 'touch', MARKER)",
            "os.execle(TOUCH, 'touch', MARKER, dict(os.environ))",
            "os.execlp('touch', 'touch', MARKER)",
            "os.execlpe('touch', 'touch', MARKER, dict(os.environ))",
            "os.execvp('touch', ['touch', MARKER])",
            "os.execvpe('touch', ['touch', MARKER], dict(os.environ))",
        ],
    )
    def test_exec_is_refused_and_the_process_goes_on(
        self, call: str, run_scenario: ScenarioRunner, marker: Path
    ) -> None:
        """Every os.exec* variant raises before the process is replaced."""
        result = run_scenario(
            PRELUDE
            + f"""
with guard(subprocess="block"):
    try:
        {call}
    except ProcessViolation as exc:
        print("still here", isinstance(exc, PermissionError))
"""
        )
        assert "still here True" in result.stdout, result
        assert not marker.exists()
        assert [(v["action"], v["target"]) for v in result.violations] == [("exec", TOUCH)]

    def test_allowed_exec_replaces_the_process(
        self, run_scenario: ScenarioRunner, marker: Path
    ) -> None:
        """An allow-listed exec goes ahead: the process becomes the program."""
        result = run_scenario(
            PRELUDE
            + """
with guard(subprocess=Subprocess("block", allow=["touch"])):
    os.execvp("touch", ["touch", MARKER])
print("not replaced")
"""
        )
        assert "not replaced" not in result.stdout, result
        assert marker.exists()


class TestSpawnAfterFork:
    def test_alerted_spawn_is_reported_once(
        self, run_scenario: ScenarioRunner, marker: Path
    ) -> None:
        """os.spawnv forks and execs in the child; the operation is reported once, not thrice."""
        result = run_scenario(
            PRELUDE
            + """
with guard(subprocess="alert"):
    os.spawnv(os.P_WAIT, TOUCH, ["touch", MARKER])
"""
        )
        assert marker.exists(), result
        assert [(v["action"], v["target"]) for v in result.violations] == [("spawn", TOUCH)]

    def test_allowed_pty_spawn_runs(self, run_scenario: ScenarioRunner, marker: Path) -> None:
        """An allow-listed pty.spawn runs the program, with no line for its forkpty or exec."""
        result = run_scenario(
            PRELUDE
            + """
with guard(subprocess=Subprocess("block", allow=["touch"])):
    import pty
    pty.spawn(["touch", MARKER])
"""
        )
        assert marker.exists(), result
        assert result.violations == []


class TestMultiprocessing:
    def test_fork_start_method_is_refused(self, run_scenario: ScenarioRunner, marker: Path) -> None:
        """A Process with the fork start method is refused before forking."""
        result = run_scenario(
            PRELUDE
            + """
import multiprocessing
def write():
    open(MARKER, "w").close()
if __name__ == "__main__":
    with guard(subprocess="block"):
        try:
            multiprocessing.get_context("fork").Process(target=write).start()
        except ProcessViolation:
            print("refused")
"""
        )
        assert "refused" in result.stdout, result
        assert not marker.exists()
        assert [(v["action"], v["target"]) for v in result.violations] == [("fork", PYTHON)]

    @pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
    def test_process_pool_workers_are_not_created(
        self, method: str, run_scenario: ScenarioRunner, marker: Path
    ) -> None:
        """A blocked scope cannot start ProcessPoolExecutor workers, whatever the start method."""
        result = run_scenario(
            PRELUDE
            + f"""
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
def write():
    open(MARKER, "w").close()
if __name__ == "__main__":
    context = multiprocessing.get_context({method!r})
    with guard(subprocess="block"):
        try:
            with ProcessPoolExecutor(1, mp_context=context) as pool:
                pool.submit(write).result()
        except ProcessViolation:
            print("refused")
    print("children", multiprocessing.active_children())
"""
        )
        assert "refused" in result.stdout, result
        assert "children []" in result.stdout
        assert not marker.exists()

    def test_multiprocessing_pool_workers_are_not_created(
        self, run_scenario: ScenarioRunner, marker: Path
    ) -> None:
        """A blocked scope cannot create a multiprocessing.Pool."""
        result = run_scenario(
            PRELUDE
            + """
import multiprocessing
def write(_):
    open(MARKER, "w").close()
if __name__ == "__main__":
    with guard(subprocess="block"):
        try:
            with multiprocessing.get_context("spawn").Pool(1) as pool:
                pool.map(write, [1])
        except ProcessViolation:
            print("refused")
"""
        )
        assert "refused" in result.stdout, result
        assert not marker.exists()

    def test_allowed_pool_still_carries_the_scope_into_workers(
        self, run_scenario: ScenarioRunner, marker: Path
    ) -> None:
        """With the interpreter allowed, workers start and each submission runs in its scope."""
        result = run_scenario(
            PRELUDE
            + """
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
def touch():
    subprocess.run([TOUCH, MARKER], check=True)
if __name__ == "__main__":
    context = multiprocessing.get_context("spawn")
    with guard(subprocess=Subprocess("block", allow=[sys.executable])):
        with ProcessPoolExecutor(1, mp_context=context) as pool:
            print("sum", pool.submit(sum, [1, 2]).result())
            try:
                pool.submit(touch).result()
            except ProcessViolation as exc:
                print("worker refused", exc.target)
"""
        )
        assert "sum 3" in result.stdout, result
        assert f"worker refused {TOUCH}" in result.stdout
        assert not marker.exists()


class TestLimits:
    def test_native_code_is_not_seen(self, run_scenario: ScenarioRunner, marker: Path) -> None:
        """libc's system() called through ctypes raises no audit event: it is not refused."""
        result = run_scenario(
            PRELUDE
            + """
import ctypes, ctypes.util
libc = ctypes.CDLL(ctypes.util.find_library("c"))
with guard(subprocess="block"):
    libc.system(("touch " + MARKER).encode())
"""
        )
        assert marker.exists(), result
        assert result.violations == []


class TestAuditBackstop:
    @pytest.mark.parametrize(
        "call",
        [
            "__import__('posix').system('touch ' + MARKER)",
            "__import__('posix').execv(TOUCH, ['touch', MARKER])",
            "__import__('posix').posix_spawn(TOUCH, ['touch', MARKER], os.environ)",
            "P = subprocess.Popen; P.__init__.__wrapped__(object.__new__(P), [TOUCH, MARKER])",
        ],
    )
    def test_original_functions_are_still_refused(
        self, call: str, run_scenario: ScenarioRunner, marker: Path
    ) -> None:
        """Calling the unpatched originals is caught by the audit hook and refused."""
        result = run_scenario(
            PRELUDE
            + f"""
with guard(subprocess="block"):
    try:
        {call}
    except ProcessViolation:
        print("refused")
"""
        )
        assert "refused" in result.stdout, result
        assert not marker.exists()
        assert len(result.violations) == 1
        assert result.violations[0]["target"] in (TOUCH, "/bin/sh")
        assert result.violations[0]["details"]["route"].endswith(" (audit)")

    def test_original_fork_is_refused(self, run_scenario: ScenarioRunner, marker: Path) -> None:
        """posix.fork (not the patched os.fork) is refused by the audit hook in the parent."""
        result = run_scenario(
            PRELUDE
            + """
import posix
with guard(subprocess="block"):
    try:
        pid = posix.fork()
    except ProcessViolation:
        print("refused")
    else:
        if pid == 0:
            open(MARKER, "w").close()
            os._exit(0)
        os.waitpid(pid, 0)
"""
        )
        assert "refused" in result.stdout, result
        assert not marker.exists()

    def test_alerted_original_popen_is_reported_once(
        self, run_scenario: ScenarioRunner, marker: Path
    ) -> None:
        """Going around the patch in alert mode still gives one line (3.13 adds posix_spawn)."""
        result = run_scenario(
            PRELUDE
            + """
with guard(subprocess="alert"):
    p = subprocess.Popen.__new__(subprocess.Popen)
    subprocess.Popen.__init__.__wrapped__(p, "touch " + MARKER, shell=True)
    p.wait()
"""
        )
        assert marker.exists(), result
        assert [v["target"] for v in result.violations] == ["/bin/sh"]
