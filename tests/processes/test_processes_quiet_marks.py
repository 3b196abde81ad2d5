"""An allowed exec's quiet mark covers that exec only, not one made while C prepares it.

``os.execve`` and ``os.posix_spawn`` convert the environment in C (a value's
``__fspath__`` is called) before they raise their audit event. lambdaguard's patch has
already decided the call and marked its event quiet; an exec made from inside that
``__fspath__`` must still be decided. Each case runs in a fresh interpreter, since an exec
replaces it: the scenario writes what it saw to a file before the allowed exec.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TRUE = os.path.realpath(shutil.which("true") or "/bin/true")

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
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LAMBDAGUARD_")}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, env=environment, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert seen.read_text() == "blocked"
    assert not marker.exists()
