"""The compiled audit gate: what reaches the Python hook, and the fallback without it.

The gate is process-wide and cannot be removed, so every scenario runs in a fresh
interpreter. The gate is exercised directly with a counting hook and event names of the
test's own (sys.audit raises any name), then through lambdaguard as users meet it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap


def run(code: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


GATE_SCENARIO = """
import contextvars, json, sys, types
from lambdaguard import _audit_gate

calls = []
def hook(event, args):
    if event.startswith("test."):
        calls.append(event)
    if event == "test.refused":
        raise PermissionError("refused by the hook")

scope_var = contextvars.ContextVar("scope", default=None)
scope_module = types.ModuleType("fake_scope")
scope_module._baseline_active = None
_audit_gate.install(["test.watched", "test.refused"], ["test.observed"], hook, scope_var, scope_module)

def fire(*names):
    del calls[:]
    for name in names:
        sys.audit(name, 1)
    return list(calls)

out = {}
out["no policy"] = fire("test.unwatched", "test.watched", "test.observed")
token = scope_var.set(object())
out["scope"] = fire("test.unwatched", "test.watched", "test.observed")
scope_var.reset(token)
scope_module._baseline_active = object()
out["baseline"] = fire("test.unwatched", "test.watched")
try:
    sys.audit("test.refused")
    out["refused"] = "went ahead"
except PermissionError as error:
    out["refused"] = str(error)
_audit_gate.install(["test.other"], [], hook, scope_var, scope_module)
out["reinstalled"] = fire("test.watched", "test.other")
try:
    _audit_gate.install([1], [], hook, scope_var, scope_module)
except TypeError as error:
    out["bad name"] = str(error)
out["after bad name"] = fire("test.other", "test.watched")
print(json.dumps(out))
"""


class TestGate:
    def test_the_gate_is_built_and_in_front_of_the_hook(self) -> None:
        """Where lambdaguard is installed from source with a compiler, the hook is the C gate."""
        out = run(
            "import json, lambdaguard\n"
            "from lambdaguard.sensors import audit\n"
            "with lambdaguard.guard(network='block'): pass\n"
            "print(json.dumps({'kind': audit.hook_kind()}))\n"
        )
        assert out == {"kind": "c"}

    def test_only_watched_events_with_a_policy_in_force_reach_python(self) -> None:
        """Unwatched events never reach the hook; watched ones only with a scope or a baseline, or when observed."""
        out = run(GATE_SCENARIO)
        assert out["no policy"] == ["test.observed"]
        assert out["scope"] == ["test.watched", "test.observed"]
        assert out["baseline"] == ["test.watched"]

    def test_what_the_hook_raises_fails_the_operation(self) -> None:
        """An exception from the Python hook propagates out of the audited operation, as with sys.addaudithook."""
        assert run(GATE_SCENARIO)["refused"] == "refused by the hook"

    def test_installing_again_replaces_the_names_and_keeps_one_hook(self) -> None:
        """A second install watches only the new names, each event still reaches the hook once."""
        out = run(GATE_SCENARIO)
        assert out["reinstalled"] == ["test.other"]

    def test_a_bad_name_is_refused_and_leaves_nothing_watched(self) -> None:
        """A non-str event name raises TypeError naming the argument; the half-built table is emptied."""
        out = run(GATE_SCENARIO)
        assert out["bad name"] == "install(): event names must be str"
        assert out["after bad name"] == []


class TestWithoutTheGate:
    def test_the_python_hook_guards_alone_where_the_gate_is_missing(self) -> None:
        """Without the compiled gate the hook is Python, and still blocks and reports a raw connect once."""
        out = run(
            """
            import sys
            sys.modules["lambdaguard._audit_gate"] = None  # as if it had not been compiled
            import io, json, _socket, lambdaguard
            from lambdaguard.sensors import audit
            lines = io.StringIO()
            real, sys.stdout = sys.stdout, lines
            try:
                with lambdaguard.guard(network="block"):
                    sock = _socket.socket()
                    try:
                        sock.connect(("127.0.0.1", 9))
                        verdict = "connected"
                    except lambdaguard.NetworkViolation:
                        verdict = "blocked"
                    except OSError:
                        verdict = "refused by the kernel"
            finally:
                sys.stdout = real
            reported = [line for line in lines.getvalue().splitlines() if '"violation"' in line]
            print(json.dumps({"kind": audit.hook_kind(), "verdict": verdict, "lines": len(reported)}))
            """
        )
        assert out == {"kind": "python", "verdict": "blocked", "lines": 1}

    def test_the_gate_and_the_python_hook_decide_alike(self) -> None:
        """The same blocked open under /tmp is refused, with one line and no file, with the gate and without."""
        if os.path.exists("/tmp/lambdaguard-gate-test-never-written"):
            os.remove("/tmp/lambdaguard-gate-test-never-written")
        scenario = """
            import sys
            {prelude}
            import io, json, lambdaguard
            from lambdaguard.sensors import audit
            lines = io.StringIO()
            real, sys.stdout = sys.stdout, lines
            try:
                with lambdaguard.guard(tmp="block"):
                    try:
                        open("/tmp/lambdaguard-gate-test-never-written", "w")
                        verdict = "written"
                    except lambdaguard.FileViolation:
                        verdict = "blocked"
            finally:
                sys.stdout = real
            reported = [line for line in lines.getvalue().splitlines() if '"violation"' in line]
            print(json.dumps({{"kind": audit.hook_kind(), "verdict": verdict, "lines": len(reported)}}))
            """
        with_gate = run(scenario.format(prelude=""))
        without = run(scenario.format(prelude='sys.modules["lambdaguard._audit_gate"] = None'))
        assert with_gate == {"kind": "c", "verdict": "blocked", "lines": 1}
        assert without == {"kind": "python", "verdict": "blocked", "lines": 1}
        # The forbidden effect is absent either way: no file was created.
        assert not os.path.exists("/tmp/lambdaguard-gate-test-never-written")
