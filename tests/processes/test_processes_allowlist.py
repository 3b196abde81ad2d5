"""The allow-list: absolute paths, names resolved on PATH, the shell caveat, alert mode.

Two executables named ``lgtool`` live in two directories on PATH; each writes a marker
naming its directory, so a test can tell which one ran (or that neither did).
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

from lambdaguard import ConfigError, ProcessViolation, Subprocess, guard

Violations = Callable[[], list[dict[str, Any]]]
TOUCH = os.path.abspath(shutil.which("touch") or "/usr/bin/touch")


class Tools:
    """Two programs with the same name, ``first/lgtool`` and ``second/lgtool``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.first = self._make("first")
        self.second = self._make("second")

    def _make(self, name: str) -> Path:
        directory = self.root / name
        directory.mkdir()
        tool = directory / "lgtool"
        tool.write_text(f"#!/bin/sh\ntouch '{self.root}/{name}.ran'\n")
        tool.chmod(0o755)
        return tool

    def ran(self, name: str) -> bool:
        return (self.root / f"{name}.ran").exists()


@pytest.fixture
def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Tools:
    made = Tools(tmp_path)
    monkeypatch.setenv(
        "PATH",
        f"{made.first.parent}{os.pathsep}{made.second.parent}{os.pathsep}{os.environ['PATH']}",
    )
    return made


class TestNamesOnPath:
    def test_allowed_name_runs_the_program_found_on_path(self, tools: Tools) -> None:
        """A name entry allows the program that name resolves to on PATH."""
        with guard(subprocess=Subprocess("block", allow=["lgtool"])):
            subprocess.run(["lgtool"], check=True)
        assert tools.ran("first")

    def test_same_name_elsewhere_on_path_is_blocked(
        self, tools: Tools, violations: Violations
    ) -> None:
        """A program with the allowed name in another directory does not run."""
        with (
            guard(subprocess=Subprocess("block", allow=["lgtool"])),
            pytest.raises(ProcessViolation),
        ):
            subprocess.run([str(tools.second)], check=True)
        assert not tools.ran("second")
        assert violations()[0]["target"] == str(tools.second)

    def test_a_different_path_for_the_child_does_not_change_what_is_allowed(
        self, tools: Tools
    ) -> None:
        """env={"PATH": ...} that makes the name find another program is refused."""
        with (
            guard(subprocess=Subprocess("block", allow=["lgtool"])),
            pytest.raises(ProcessViolation),
        ):
            subprocess.run(["lgtool"], env={"PATH": str(tools.second.parent)}, check=True)
        assert not tools.ran("second")

    def test_changing_path_after_the_rule_is_built_never_loosens_it(
        self, tools: Tools, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The PATH a name is resolved on is the one the rule saw when it was built."""
        rule = Subprocess("block", allow=["lgtool"])
        monkeypatch.setenv("PATH", f"{tools.second.parent}{os.pathsep}{os.environ['PATH']}")
        with guard(subprocess=rule), pytest.raises(ProcessViolation):
            subprocess.run(["lgtool"], check=True)
        assert not tools.ran("second")
        assert not tools.ran("first")

    def test_name_is_looked_up_on_the_file_system_at_decision_time(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A program installed after the rule was built is found and allowed."""
        late = tmp_path / "late"
        late.mkdir()
        monkeypatch.setenv("PATH", f"{late}{os.pathsep}{os.environ['PATH']}")
        rule = Subprocess("block", allow=["lgtool"])
        tool = late / "lgtool"
        tool.write_text(f"#!/bin/sh\ntouch '{tmp_path}/late.ran'\n")
        tool.chmod(0o755)
        with guard(subprocess=rule):
            subprocess.run(["lgtool"], check=True)
        assert (tmp_path / "late.ran").exists()


class TestAbsolutePaths:
    def test_absolute_entry_allows_exactly_that_file(self, tools: Tools) -> None:
        """An absolute entry allows that path and not the same name found on PATH elsewhere."""
        with guard(subprocess=Subprocess("block", allow=[str(tools.second)])):
            subprocess.run([str(tools.second)], check=True)
            with pytest.raises(ProcessViolation):
                subprocess.run(["lgtool"], check=True)  # resolves to first/lgtool
        assert tools.ran("second")
        assert not tools.ran("first")

    def test_symbolic_links_are_not_followed(self, tools: Tools, tmp_path: Path) -> None:
        """A link to an allowed program is judged by the link's own path."""
        link = tmp_path / "alias"
        link.symlink_to(tools.first)
        with (
            guard(subprocess=Subprocess("block", allow=[str(tools.first)])),
            pytest.raises(ProcessViolation),
        ):
            subprocess.run([str(link)], check=True)
        assert not tools.ran("first")

    def test_relative_entry_is_a_config_error(self) -> None:
        """A relative path entry is refused, naming the entry and what is accepted."""
        with pytest.raises(ConfigError) as caught:
            Subprocess("block", allow=["bin/tool"])
        assert str(caught.value) == (
            "Subprocess(allow=...): allow-list entry 'bin/tool' is a relative path, which would "
            "depend on the working directory; accepted: an absolute path (/usr/bin/ffmpeg) or a "
            "bare program name resolved on PATH (ffmpeg)."
        )

    def test_allow_list_from_the_environment(
        self, tools: Tools, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """LAMBDAGUARD_SUBPROCESS and LAMBDAGUARD_SUBPROCESS_ALLOW build the same rule."""
        monkeypatch.setenv("LAMBDAGUARD_SUBPROCESS", "block")
        monkeypatch.setenv("LAMBDAGUARD_SUBPROCESS_ALLOW", f"lgtool,{TOUCH}")
        with guard():
            subprocess.run(["lgtool"], check=True)
            with pytest.raises(ProcessViolation):
                subprocess.run([str(tools.second)], check=True)
        assert tools.ran("first")
        assert not tools.ran("second")


class TestShellCaveat:
    def test_allowing_the_shell_allows_every_command(self, marker: Path) -> None:
        """With /bin/sh allowed, shell=True runs any command: the shell is what is judged."""
        with guard(subprocess=Subprocess("block", allow=["/bin/sh"])):
            subprocess.run(f"{TOUCH} {marker}", shell=True, check=True)
        assert marker.exists()

    def test_allowing_a_program_does_not_allow_it_through_a_shell(self, marker: Path) -> None:
        """With only touch allowed, the same command through a shell is refused."""
        with guard(subprocess=Subprocess("block", allow=[TOUCH])), pytest.raises(ProcessViolation):
            subprocess.run(f"{TOUCH} {marker}", shell=True, check=True)
        assert not marker.exists()


class TestAlert:
    def test_alert_runs_the_program_and_reports_it_once(
        self, marker: Path, violations: Violations
    ) -> None:
        """In alert mode the program runs and exactly one line reports it, argv masked."""
        with guard(subprocess="alert"):
            subprocess.run(
                ["/bin/sh", "-c", f"touch {marker}", "sh", "--password=hunter2"], check=True
            )
        assert marker.exists()
        lines = violations()
        assert len(lines) == 1
        assert lines[0]["mode"] == "alert"
        assert lines[0]["details"]["argv"] == [
            "/bin/sh",
            "-c",
            f"touch {marker}",
            "sh",
            "--password=***",
        ]
        assert "hunter2" not in str(lines[0])

    def test_alerted_shell_command_is_reported_once(
        self, marker: Path, violations: Violations
    ) -> None:
        """A shell command in alert mode gives one line (3.13 also raises os.posix_spawn)."""
        with guard(subprocess="alert"):
            subprocess.run(f"touch {marker}", shell=True, check=True)
        assert marker.exists()
        assert [v["target"] for v in violations()] == ["/bin/sh"]

    def test_python_child_is_judged_as_the_interpreter(self, violations: Violations) -> None:
        """Popen([sys.executable, ...]) is judged by the interpreter's path."""
        with guard(subprocess="alert"):
            subprocess.run([sys.executable, "-c", "pass"], check=True)
        assert [v["target"] for v in violations()] == [os.path.abspath(sys.executable)]
