"""What an allowed operation lets through is that operation, and nothing made on its way.

``os.execve`` and ``os.posix_spawn`` convert the environment in C (a value's
``__fspath__`` is called) before they raise their audit event. lambdaguard's patch has
already decided the call and marked its event quiet; an exec made from inside that
``__fspath__`` must still be decided. And a caller's own PATH search handed to
``_posixsubprocess.fork_exec`` as a list of candidates is cut to the one judged: the child
would try each in turn. Each case runs in a fresh interpreter, since an exec replaces it.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TRUE = os.path.realpath(shutil.which("true") or "/bin/true")


def run_fresh(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (an exec replaces it); it must exit 0."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LAMBDAGUARD_")}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, env=environment, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    return done

SCENARIO = """
import os, posix, lambdaguard
seen, marker = {seen!r}, {marker!r}

class Sneaky:
    def __fspath__(self):
        # Runs inside the allowed call, after lambdaguard decided it, before C's audit event.
        try:
            {nested}
            outcome = "not blocked"
        except lambdaguard.ProcessViolation:
            outcome = "blocked"
        with open(seen, "w") as f:
            f.write(outcome)
        return "value"

with lambdaguard.guard(subprocess=lambdaguard.Subprocess("block", allow=[{true!r}])):
    {call}
"""

NESTED = {
    "posix.execv": "posix.execv('/bin/sh', ['sh', '-c', 'touch ' + marker])",
    "posix.posix_spawn": (
        "os.waitpid(posix.posix_spawn('/bin/sh', ['sh', '-c', 'touch ' + marker], {}), 0)"
    ),
}
CALLS = {
    "os.execve": "os.execve({true!r}, [{true!r}], {{'SNEAKY': Sneaky()}})",
    "os.posix_spawn": (
        "os.waitpid(os.posix_spawn({true!r}, [{true!r}], {{'SNEAKY': Sneaky()}}), 0)"
    ),
}


@pytest.mark.parametrize("call", sorted(CALLS))
@pytest.mark.parametrize("nested", sorted(NESTED))
def test_an_exec_from_inside_an_allowed_call_is_still_decided(
    tmp_path: Path, call: str, nested: str
) -> None:
    """A shell started from an env value's __fspath__ during an allowed execve or posix_spawn is blocked and never runs."""
    seen, marker = tmp_path / "seen", tmp_path / "sneaked"
    code = SCENARIO.format(
        seen=str(seen),
        marker=str(marker),
        true=TRUE,
        nested=NESTED[nested],
        call=CALLS[call].format(true=TRUE),
    )
    run_fresh(code)
    assert seen.read_text() == "blocked"
    assert not marker.exists()


FORK_EXEC_SCENARIO = """
import _posixsubprocess, os, subprocess, lambdaguard
first, second, marker = {first!r}, {second!r}, {marker!r}
with lambdaguard.guard(subprocess=lambdaguard.Subprocess("block", allow=[first])):
    patched = _posixsubprocess.fork_exec  # lambdaguard's patch, installed by the guard

    def caller_searched(args, executable_list, *rest):
        # A caller that did its own PATH search hands fork_exec every candidate.
        return patched(args, [os.fsencode(first), os.fsencode(second)], *rest)

    subprocess._fork_exec = caller_searched  # the name Popen calls
    try:
        # preexec_fn keeps Popen on fork_exec (3.13 would otherwise posix_spawn).
        subprocess.run([first, "-c", "touch " + marker], preexec_fn=lambda: None)
        print("ran")
    except OSError as error:
        print("refused by the kernel", error.errno)
"""


def test_fork_exec_hands_the_child_only_the_judged_candidate(tmp_path: Path) -> None:
    """An allowed first candidate the kernel cannot run (no #!) fails the call; the unjudged second one never runs."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.write_text("not a program\n")  # executable, but no #! line: execve gives ENOEXEC
    first.chmod(0o755)
    second.symlink_to("/bin/sh")
    marker = tmp_path / "second-ran"
    code = FORK_EXEC_SCENARIO.format(first=str(first), second=str(second), marker=str(marker))
    done = run_fresh(code)
    assert done.stdout.strip().splitlines()[-1] == f"refused by the kernel {errno.ENOEXEC}"
    assert not marker.exists()


POPEN_SCENARIO = """
import os, subprocess
original_init = subprocess.Popen.__init__  # a reference kept before lambdaguard patched it
import lambdaguard
true, marker, cwd = {true!r}, {marker!r}, {cwd!r}

class SneakyStdin:
    def fileno(self):
        # Popen asks this before it raises its audit event, inside the allowed call.
        try:
            nested = subprocess.Popen.__new__(subprocess.Popen)
            original_init(nested, [{touch!r}, marker])  # not on the allow-list
            nested.wait()
            print("nested ran")
        except lambdaguard.ProcessViolation:
            print("nested blocked")
        return 0

with lambdaguard.guard(subprocess=lambdaguard.Subprocess("block", allow=[true, "/bin/sh"])):
    subprocess.run({command}, stdin=SneakyStdin(), **{extra})
"""

TOUCH = os.path.realpath(shutil.which("touch") or "/usr/bin/touch")
POPEN_CASES = {
    "plain path": ("[true]", "{}"),
    "full decision": ("[true]", "{'cwd': cwd}"),
    "shell": ("true", "{'shell': True}"),
}


@pytest.mark.parametrize("case", sorted(POPEN_CASES))
def test_a_popen_started_inside_an_allowed_popen_is_still_decided(
    tmp_path: Path, case: str
) -> None:
    """A program started through a kept original Popen.__init__ from a stdin's fileno() during an allowed run is blocked and never runs."""
    marker = tmp_path / "sneaked"
    command, extra = POPEN_CASES[case]
    code = POPEN_SCENARIO.format(
        true=TRUE, touch=TOUCH, marker=str(marker), cwd=str(tmp_path), command=command, extra=extra
    )
    done = run_fresh(code)
    assert "nested blocked" in done.stdout.splitlines()
    assert not marker.exists()
