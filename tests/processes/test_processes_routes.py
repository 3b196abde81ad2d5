"""Every route to a child process, blocked in the pytest process: nothing runs.

Each test asks ``touch`` (or a Python child) to write a marker file under a blocking
``subprocess`` policy and asserts that the call raised a ProcessViolation (also a
PermissionError), that exactly one violation line names the program, and that the marker
is absent: the program did not run. Routes that would fork or exec the pytest process
itself if the guard failed are in test_processes_scenarios.py.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import pty
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lambdaguard import ProcessViolation, Subprocess, guard

TOUCH = shutil.which("touch")
assert TOUCH is not None
TOUCH = os.path.abspath(TOUCH)

Violations = Callable[[], list[dict[str, Any]]]


def _write_marker(path: str) -> None:
    Path(path).write_text("ran")


def _assert_blocked(
    call: Callable[[], object], marker: Path, violations: Violations, *, target: str, action: str
) -> dict[str, Any]:
    with pytest.raises(ProcessViolation) as caught, guard(subprocess="block"):
        call()
    assert isinstance(caught.value, PermissionError)
    assert caught.value.target == target
    assert not marker.exists()
    lines = violations()
    assert [(v["policy"], v["mode"], v["action"], v["target"]) for v in lines] == [
        ("subprocess", "block", action, target)
    ]
    return lines[0]


class TestSubprocessModule:
    def test_run_is_blocked(self, marker: Path, violations: Violations) -> None:
        """subprocess.run of a program on PATH is refused and the program does not run."""
        line = _assert_blocked(
            lambda: subprocess.run(["touch", str(marker)], check=False),
            marker,
            violations,
            target=TOUCH,
            action="run",
        )
        assert line["details"]["argv"] == ["touch", str(marker)]
        assert line["details"]["executable"] == TOUCH

    def test_call_is_blocked(self, marker: Path, violations: Violations) -> None:
        """subprocess.call is refused."""
        _assert_blocked(
            lambda: subprocess.call([TOUCH, str(marker)]),
            marker,
            violations,
            target=TOUCH,
            action="run",
        )

    def test_check_output_is_blocked(self, marker: Path, violations: Violations) -> None:
        """subprocess.check_output is refused."""
        _assert_blocked(
            lambda: subprocess.check_output([TOUCH, str(marker)]),
            marker,
            violations,
            target=TOUCH,
            action="run",
        )

    def test_popen_with_shell_is_judged_by_the_shell(
        self, marker: Path, violations: Violations
    ) -> None:
        """Popen(..., shell=True) is judged as /bin/sh, with the command in argv."""
        line = _assert_blocked(
            lambda: subprocess.Popen(f"touch {marker}", shell=True),
            marker,
            violations,
            target="/bin/sh",
            action="run",
        )
        assert line["details"]["argv"] == ["/bin/sh", "-c", f"touch {marker}"]

    @pytest.mark.parametrize(
        "call",
        [
            lambda m: subprocess.check_call([TOUCH, m]),
            lambda m: subprocess.getstatusoutput(f"{TOUCH} {m}"),
        ],
        ids=["check_call", "getstatusoutput"],
    )
    def test_other_helpers_are_blocked(
        self, call: Callable[[str], object], marker: Path, violations: Violations
    ) -> None:
        """check_call and getstatusoutput go through Popen and are refused."""
        with pytest.raises(ProcessViolation), guard(subprocess="block"):
            call(str(marker))
        assert not marker.exists()
        assert len(violations()) == 1

    def test_refused_popen_leaves_no_pipe_open(self, marker: Path) -> None:
        """A refused Popen with pipes opens no file descriptor: it is refused before any."""
        before = sorted(os.listdir("/proc/self/fd"))
        with pytest.raises(ProcessViolation), guard(subprocess="block"):
            subprocess.Popen([TOUCH, str(marker)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert sorted(os.listdir("/proc/self/fd")) == before

    def test_getoutput_is_blocked(self, marker: Path, violations: Violations) -> None:
        """subprocess.getoutput (a shell command) is refused."""
        _assert_blocked(
            lambda: subprocess.getoutput(f"touch {marker}"),
            marker,
            violations,
            target="/bin/sh",
            action="run",
        )

    def test_executable_argument_is_what_is_judged(
        self, marker: Path, violations: Violations
    ) -> None:
        """Popen(["harmless"], executable=X) is judged as X, the program that runs."""
        _assert_blocked(
            lambda: subprocess.run(["ls", str(marker)], executable=TOUCH, check=False),
            marker,
            violations,
            target=TOUCH,
            action="run",
        )

    def test_asyncio_create_subprocess_exec_is_blocked(
        self, marker: Path, violations: Violations
    ) -> None:
        """asyncio.create_subprocess_exec is refused inside the guarded task."""

        async def main() -> None:
            process = await asyncio.create_subprocess_exec(TOUCH, str(marker))
            await process.wait()

        _assert_blocked(lambda: asyncio.run(main()), marker, violations, target=TOUCH, action="run")

    def test_asyncio_create_subprocess_shell_is_blocked(
        self, marker: Path, violations: Violations
    ) -> None:
        """asyncio.create_subprocess_shell is judged as /bin/sh and refused."""

        async def main() -> None:
            process = await asyncio.create_subprocess_shell(f"touch {marker}")
            await process.wait()

        _assert_blocked(
            lambda: asyncio.run(main()), marker, violations, target="/bin/sh", action="run"
        )


class TestOsModule:
    def test_system_is_blocked(self, marker: Path, violations: Violations) -> None:
        """os.system is judged as /bin/sh and refused."""
        line = _assert_blocked(
            lambda: os.system(f"touch {marker}"),
            marker,
            violations,
            target="/bin/sh",
            action="system",
        )
        assert line["details"]["argv"] == ["/bin/sh", "-c", f"touch {marker}"]

    def test_popen_is_blocked(self, marker: Path, violations: Violations) -> None:
        """os.popen is judged as /bin/sh and refused."""
        _assert_blocked(
            lambda: os.popen(f"touch {marker}").close(),
            marker,
            violations,
            target="/bin/sh",
            action="run",
        )

    @pytest.mark.parametrize(
        ("name", "call"),
        [
            ("spawnl", lambda m: os.spawnl(os.P_WAIT, TOUCH, "touch", m)),
            ("spawnle", lambda m: os.spawnle(os.P_WAIT, TOUCH, "touch", m, dict(os.environ))),
            ("spawnlp", lambda m: os.spawnlp(os.P_WAIT, "touch", "touch", m)),
            ("spawnlpe", lambda m: os.spawnlpe(os.P_WAIT, "touch", "touch", m, dict(os.environ))),
            ("spawnv", lambda m: os.spawnv(os.P_WAIT, TOUCH, ["touch", m])),
            ("spawnve", lambda m: os.spawnve(os.P_WAIT, TOUCH, ["touch", m], dict(os.environ))),
            ("spawnvp", lambda m: os.spawnvp(os.P_WAIT, "touch", ["touch", m])),
            ("spawnvpe", lambda m: os.spawnvpe(os.P_WAIT, "touch", ["touch", m], dict(os.environ))),
        ],
    )
    def test_spawn_family_is_blocked_before_forking(
        self, name: str, call: Callable[[str], object], marker: Path, violations: Violations
    ) -> None:
        """Every os.spawn* variant is refused before it forks."""
        _assert_blocked(lambda: call(str(marker)), marker, violations, target=TOUCH, action="spawn")

    def test_posix_spawn_is_blocked(self, marker: Path, violations: Violations) -> None:
        """os.posix_spawn is refused."""
        _assert_blocked(
            lambda: os.posix_spawn(TOUCH, ["touch", str(marker)], os.environ),
            marker,
            violations,
            target=TOUCH,
            action="spawn",
        )

    def test_posix_spawnp_resolves_on_path_and_is_blocked(
        self, marker: Path, violations: Violations
    ) -> None:
        """os.posix_spawnp is judged by the program it finds on PATH and refused."""
        _assert_blocked(
            lambda: os.posix_spawnp("touch", ["touch", str(marker)], os.environ),
            marker,
            violations,
            target=TOUCH,
            action="spawn",
        )


class TestPtyAndMultiprocessing:
    def test_pty_spawn_is_blocked_before_forking(
        self, marker: Path, violations: Violations
    ) -> None:
        """pty.spawn is judged by the program it would run and refused before forkpty."""
        _assert_blocked(
            lambda: pty.spawn(["touch", str(marker)]),
            marker,
            violations,
            target=TOUCH,
            action="spawn",
        )

    @pytest.mark.parametrize("method", ["spawn", "forkserver"])
    def test_multiprocessing_process_is_blocked(
        self, method: str, marker: Path, violations: Violations
    ) -> None:
        """A multiprocessing Process (spawn, forkserver) is judged as the Python it runs."""
        context = multiprocessing.get_context(method)
        process = context.Process(target=_write_marker, args=(str(marker),))
        _assert_blocked(
            process.start,
            marker,
            violations,
            target=os.path.abspath(sys.executable),
            action="spawn",
        )
        assert process.pid is None


class TestNoFreeRideOnAnAllowedCall:
    @pytest.mark.parametrize(
        "start",
        [
            lambda argv: subprocess.run(argv, check=True),
            lambda argv: os.spawnv(os.P_WAIT, TOUCH, argv),
            lambda argv: os.waitpid(os.posix_spawn(TOUCH, argv, os.environ), 0),
        ],
        ids=["Popen", "spawnv", "posix_spawn"],
    )
    def test_code_run_by_an_allowed_call_is_still_judged(
        self, start: Callable[[list[object]], object], marker: Path, tmp_path: Path
    ) -> None:
        """A __fspath__ that starts a shell while an allowed call reads it is refused."""
        sneaky_marker = tmp_path / "sneaky.marker"

        class Sneaky:
            def __fspath__(self) -> str:
                os.system(f"touch {sneaky_marker}")
                return str(marker)

        with (
            guard(subprocess=Subprocess("block", allow=[TOUCH])),
            pytest.raises(ProcessViolation) as caught,
        ):
            start([TOUCH, Sneaky()])
        assert caught.value.target == "/bin/sh"
        assert not sneaky_marker.exists()
        assert not marker.exists()
