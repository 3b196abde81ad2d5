"""The PATH-searching exec family runs the file that was judged, and only that file.

``os.execvp``/``execvpe``/``execlp``/``execlpe``, ``os.spawnvp``/``spawnvpe``/``spawnlp``/
``spawnlpe``, ``os.posix_spawnp`` and ``pty.spawn`` search PATH for the program. lambdaguard
searches once, judges the file found, and hands that absolute path to the non-searching
form (``execv``, ``execve``, ``spawnv``, ``spawnve``, ``posix_spawn``; pty.spawn's child
execs it), with ``argv[0]`` as the caller gave it. Every case runs in a fresh interpreter:
an exec replaces it.

Two directories, ``first`` and ``second``, are on PATH, in that order; each may hold a
``tool``. A ``tool`` that is a link to ``/bin/sh`` run as ``[argv0, "-c", SCRIPT]`` writes
its own ``argv[0]`` (``$0``) to a marker file named after its directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

ScenarioRunner = Any  # conftest.run_scenario: (code, *, env=None) -> Scenario
Scenario = Any  # conftest.Scenario

# $0 of `sh -c SCRIPT` with no further arguments is the shell's own argv[0].
SCRIPT = 'printf %s "$0" > "$TOOL_MARKER"'

# entry point -> a statement that runs `tool` with argv [A0, "-c", SCRIPT] (A0: argv[0]).
CALLS = {
    "execvp": "os.execvp('tool', [A0, '-c', SCRIPT])",
    "execvpe": "os.execvpe('tool', [A0, '-c', SCRIPT], dict(os.environ))",
    "execlp": "os.execlp('tool', A0, '-c', SCRIPT)",
    "execlpe": "os.execlpe('tool', A0, '-c', SCRIPT, dict(os.environ))",
    "spawnvp": "print('status', os.spawnvp(os.P_WAIT, 'tool', [A0, '-c', SCRIPT]))",
    "spawnvpe": (
        "print('status', os.spawnvpe(os.P_WAIT, 'tool', [A0, '-c', SCRIPT], dict(os.environ)))"
    ),
    "spawnlp": "print('status', os.spawnlp(os.P_WAIT, 'tool', A0, '-c', SCRIPT))",
    "spawnlpe": (
        "print('status', os.spawnlpe(os.P_WAIT, 'tool', A0, '-c', SCRIPT, dict(os.environ)))"
    ),
    "posix_spawnp": (
        "print('status', os.waitpid(os.posix_spawnp('tool', [A0, '-c', SCRIPT], os.environ), 0))"
    ),
    # pty.spawn runs os.execlp(argv[0], *argv) in its child: argv[0] is the name searched.
    "pty.spawn": "import pty; A0 = 'tool'; print('status', pty.spawn([A0, '-c', SCRIPT]))",
}
EXEC_CALLS = [name for name in CALLS if name.startswith("exec")]


class Tools:
    """``first`` and ``second`` on PATH (in that order), for ``tool`` files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.first = root / "first"
        self.second = root / "second"
        self.first.mkdir()
        self.second.mkdir()
        self.path = f"{self.first}{os.pathsep}{self.second}{os.pathsep}{os.environ['PATH']}"

    def shell(self, directory: Path) -> Path:
        """``directory/tool``: a link to /bin/sh (judged as ``directory/tool``, not /bin/sh)."""
        tool = directory / "tool"
        tool.symlink_to("/bin/sh")
        return tool

    def marker(self, directory: Path) -> Path:
        return self.root / f"{directory.name}.ran"

    def ran(self, directory: Path) -> str | None:
        """The argv[0] the tool in ``directory`` saw, or None if it never ran."""
        marker = self.marker(directory)
        return marker.read_text() if marker.exists() else None

    def run(
        self,
        run_scenario: ScenarioRunner,
        call: str,
        *,
        allow: list[Path] | None = None,
        mode: str = "block",
        marker_of: Path | None = None,
    ) -> Scenario:
        """Run ``call`` under Subprocess(``mode``, allow=``allow``) in a fresh interpreter."""
        allowed = [str(p) for p in allow or []]
        code = f"""
import os
from lambdaguard import ProcessViolation, Subprocess, guard

A0 = "as-called"
SCRIPT = {SCRIPT!r}
try:
    with guard(subprocess=Subprocess({mode!r}, allow={allowed!r})):
        {call}
except ProcessViolation as error:
    print("blocked", error.target)
except OSError as error:
    print("oserror", type(error).__name__, error.errno, repr(error.filename))
"""
        env = {"PATH": self.path, "TOOL_MARKER": str(self.marker(marker_of or self.first))}
        return run_scenario(code, env=env)


@pytest.fixture
def tools(tmp_path: Path) -> Tools:
    return Tools(tmp_path)


class TestTheJudgedFileIsTheOneThatRuns:
    @pytest.mark.parametrize("entry", list(CALLS))
    def test_an_allowed_program_runs_with_the_callers_argv0(
        self, entry: str, tools: Tools, run_scenario: ScenarioRunner
    ) -> None:
        """Each entry point runs the allowed file found on PATH, and it sees the caller's argv[0]."""
        tool = tools.shell(tools.first)
        outcome = tools.run(run_scenario, CALLS[entry], allow=[tool])
        expected = "tool" if entry == "pty.spawn" else "as-called"
        assert tools.ran(tools.first) == expected, outcome
        assert outcome.violations == []

    @pytest.mark.parametrize("entry", list(CALLS))
    def test_a_blocked_program_first_on_path_never_runs(
        self, entry: str, tools: Tools, run_scenario: ScenarioRunner
    ) -> None:
        """A refused file found first on PATH does not run, and neither does a later allowed one."""
        tools.shell(tools.first)
        later = tools.shell(tools.second)
        outcome = tools.run(run_scenario, CALLS[entry], allow=[later])
        assert f"blocked {tools.first / 'tool'}" in outcome.stdout, outcome
        assert tools.ran(tools.first) is None
        assert tools.ran(tools.second) is None
        assert [v["target"] for v in outcome.violations] == [str(tools.first / "tool")]

    @pytest.mark.parametrize("entry", list(CALLS))
    def test_a_file_that_fails_to_exec_does_not_let_the_next_one_on_path_run(
        self, entry: str, tools: Tools, run_scenario: ScenarioRunner
    ) -> None:
        """An allowed first/tool the kernel refuses (ENOEXEC) fails the call: second/tool, which
        os.execvp's own loop would go on to, is never run unjudged."""
        broken = tools.first / "tool"
        broken.write_text("not a program: no #! line\n")
        broken.chmod(0o755)
        tools.shell(tools.second)
        outcome = tools.run(run_scenario, CALLS[entry], allow=[broken], marker_of=tools.second)
        assert tools.ran(tools.second) is None, outcome
        if entry.startswith("exec"):
            assert "oserror OSError 8" in outcome.stdout, outcome  # ENOEXEC
        elif entry.startswith("spawn"):
            assert "status 127" in outcome.stdout, outcome  # the child's exec failed
        assert outcome.violations == []

    @pytest.mark.parametrize("entry", list(CALLS))
    def test_a_non_executable_file_first_on_path_is_skipped_and_the_next_one_is_judged(
        self, entry: str, tools: Tools, run_scenario: ScenarioRunner
    ) -> None:
        """A non-executable first/tool is skipped, as exec skips it (EACCES); second/tool, the
        file that would run, is judged, and refused even though first/tool is allowed."""
        skipped = tools.first / "tool"
        skipped.write_text('#!/bin/sh\ntouch "$TOOL_MARKER"\n')
        skipped.chmod(0o644)
        tools.shell(tools.second)
        outcome = tools.run(run_scenario, CALLS[entry], allow=[skipped], marker_of=tools.second)
        assert f"blocked {tools.second / 'tool'}" in outcome.stdout, outcome
        assert tools.ran(tools.second) is None

    @pytest.mark.parametrize("entry", list(CALLS))
    def test_the_later_file_runs_when_it_is_the_one_allowed(
        self, entry: str, tools: Tools, run_scenario: ScenarioRunner
    ) -> None:
        """With first/tool not executable, the allowed second/tool is the one judged and run."""
        skipped = tools.first / "tool"
        skipped.write_text('#!/bin/sh\ntouch "$TOOL_MARKER"\n')
        skipped.chmod(0o644)
        later = tools.shell(tools.second)
        outcome = tools.run(run_scenario, CALLS[entry], allow=[later], marker_of=tools.second)
        expected = "tool" if entry == "pty.spawn" else "as-called"
        assert tools.ran(tools.second) == expected, outcome
        assert outcome.violations == []


class TestSearchSemantics:
    @pytest.mark.parametrize("entry", ["execvpe", "spawnvpe"])
    def test_an_empty_path_is_the_working_directory(
        self, entry: str, tools: Tools, run_scenario: ScenarioRunner
    ) -> None:
        """PATH='' in the env argument searches the working directory, as os.execvpe does."""
        tool = tools.shell(tools.root)  # the scenario's working directory
        call = CALLS[entry].replace("dict(os.environ)", "{**os.environ, 'PATH': ''}")
        outcome = tools.run(run_scenario, call, allow=[tool], marker_of=tools.root)
        assert tools.ran(tools.root) == "as-called", outcome

    def test_a_name_with_a_slash_is_not_searched(
        self, tools: Tools, run_scenario: ScenarioRunner
    ) -> None:
        """os.execvp('second/tool') runs that path from the working directory, not a PATH hit."""
        tools.shell(tools.first)
        tool = tools.shell(tools.second)
        call = "os.execvp('second/tool', [A0, '-c', SCRIPT])"
        outcome = tools.run(run_scenario, call, allow=[tool], marker_of=tools.second)
        assert tools.ran(tools.second) == "as-called", outcome
        assert tools.ran(tools.first) is None

    def test_execvpe_searches_the_path_of_its_env(
        self, tools: Tools, run_scenario: ScenarioRunner
    ) -> None:
        """os.execvpe judges and runs the tool found on its env argument's PATH."""
        tools.shell(tools.first)
        tool = tools.shell(tools.second)
        call = (
            "os.execvpe('tool', [A0, '-c', SCRIPT], "
            f"{{**os.environ, 'PATH': {str(tools.second)!r}}})"
        )
        outcome = tools.run(run_scenario, call, allow=[tool], marker_of=tools.second)
        assert tools.ran(tools.second) == "as-called", outcome

    def test_posix_spawnp_searches_the_path_of_this_process(
        self, tools: Tools, run_scenario: ScenarioRunner
    ) -> None:
        """os.posix_spawnp judges and runs the tool on this process's PATH, not its env's."""
        tool = tools.shell(tools.first)
        tools.shell(tools.second)
        call = (
            "print('status', os.waitpid(os.posix_spawnp('tool', [A0, '-c', SCRIPT], "
            f"{{**os.environ, 'PATH': {str(tools.second)!r}}}), 0))"
        )
        outcome = tools.run(run_scenario, call, allow=[tool])
        assert tools.ran(tools.first) == "as-called", outcome
        assert outcome.violations == []


class TestProgramNotFound:
    @pytest.mark.parametrize("entry", [*EXEC_CALLS, "posix_spawnp"])
    def test_a_missing_program_raises_file_not_found_as_without_lambdaguard(
        self, entry: str, tools: Tools, run_scenario: ScenarioRunner
    ) -> None:
        """With the operation allowed (alert mode), a name found nowhere raises
        FileNotFoundError (ENOENT), as the original does, and is reported once."""
        call = CALLS[entry]
        unguarded = run_scenario(
            f"""
import os
A0, SCRIPT = "as-called", {SCRIPT!r}
try:
    {call}
except OSError as error:
    print("oserror", type(error).__name__, error.errno, repr(error.filename))
""",
            env={"PATH": tools.path},
        )
        outcome = tools.run(run_scenario, call, mode="alert")
        assert "oserror FileNotFoundError 2" in unguarded.stdout, unguarded
        assert "oserror FileNotFoundError 2" in outcome.stdout, outcome
        assert [v["target"] for v in outcome.violations] == ["tool"]

    @pytest.mark.parametrize("entry", ["spawnvp", "spawnvpe", "spawnlp", "spawnlpe"])
    def test_a_missing_program_spawned_exits_127_as_without_lambdaguard(
        self, entry: str, tools: Tools, run_scenario: ScenarioRunner
    ) -> None:
        """spawn*p of a name found nowhere returns the child's 127, reported once."""
        outcome = tools.run(run_scenario, CALLS[entry], mode="alert")
        assert "status 127" in outcome.stdout, outcome
        assert [v["target"] for v in outcome.violations] == ["tool"]

    @pytest.mark.parametrize("entry", list(CALLS))
    def test_a_missing_program_is_refused_in_block_mode(
        self, entry: str, tools: Tools, run_scenario: ScenarioRunner
    ) -> None:
        """A name found nowhere on PATH is refused and reported by name."""
        outcome = tools.run(run_scenario, CALLS[entry])
        assert "blocked tool" in outcome.stdout, outcome
        assert [v["target"] for v in outcome.violations] == ["tool"]
