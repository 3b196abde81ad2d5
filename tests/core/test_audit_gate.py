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


# The memos the gate reads in C are second implementations of the sensors' Python readers
# (AUDIT_KNOWN_ALLOWED). Each case below is asked of both, under the same view, after real
# allowed operations have filled the memos: the C answer must never be "allowed" where
# the Python one is not, and must agree on the exact shapes the sensors remember.
MEMO_SCENARIO = """
import json, os, socket, subprocess, sys, tempfile
import lambdaguard
from lambdaguard import _audit_gate, scope
from lambdaguard.sensors import audit, files, network

workdir = tempfile.mkdtemp(prefix="lambdaguard-memo-", dir="/tmp")
kept = os.path.join(workdir, "kept.txt")
with open(kept, "w") as f:
    f.write("x")
{prelude}
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(16)
port = server.getsockname()[1]

class Str(str):
    def __hash__(self):
        return str.__hash__(self)
    def __eq__(self, other):
        return str.__eq__(self, other)

class LyingSocket(socket.socket):
    @property
    def family(self):
        return socket.AF_UNIX

def both(event, args, view):
    c = _audit_gate.memo_allows(event, args, view)
    python = audit._known_allowed[event](args, view)
    return [c, python]

out = {{}}
guard = lambdaguard.guard(
    tmp=lambdaguard.Tmp("block", allow=[workdir + "/**"]),
    network=lambdaguard.Network("block", allow=["127.0.0.1", "localhost"]),
)
with guard:
    view = scope.current()
    with open(kept) as f:
        f.read()
    sock = socket.socket()
    sock.connect(("127.0.0.1", port))
    sock.close()
    socket.getaddrinfo("localhost", port)
    flags = os.O_RDONLY | os.O_CLOEXEC
    out["open exact"] = both("open", (kept, "r", flags), view)
    out["open other flags"] = both("open", (kept, "w", flags | os.O_WRONLY), view)
    out["open str subclass"] = both("open", (Str(kept), "r", flags), view)
    out["open bool flags"] = both("open", (kept, "r", True), view)
    out["open bytes"] = both("open", (kept.encode(), "r", flags), view)
    out["open short"] = both("open", (kept, "r"), view)
    out["open other view"] = both("open", (kept, "r", flags), lambdaguard.policy.merge([]) or object())
    inet = socket.socket()
    lying = LyingSocket()
    address = ("127.0.0.1", port)
    out["connect exact"] = both("socket.connect", (inet, address), view)
    out["connect lying family"] = both("socket.connect", (lying, address), view)
    out["connect not a socket"] = both("socket.connect", (object(), address), view)
    out["connect str subclass host"] = both("socket.connect", (inet, (Str("127.0.0.1"), port)), view)
    out["connect other port"] = both("socket.connect", (inet, ("127.0.0.1", port + 1)), view)
    out["connect as bind"] = both("socket.bind", (inet, address), view)
    out["lookup exact"] = both("socket.getaddrinfo", ("localhost", port, 0, 0, 0, 0), view)
    out["lookup str subclass"] = both("socket.getaddrinfo", (Str("localhost"), port), view)
    out["lookup other host"] = both("socket.getaddrinfo", ("example.com", port), view)
    out["lookup empty"] = both("socket.getaddrinfo", (), view)
    inet.close()
    lying.close()
    {after}
server.close()
print(json.dumps(out))
"""


def memo_run(prelude: str = "", after: str = "") -> dict[str, list[bool]]:
    code = MEMO_SCENARIO.format(
        prelude=textwrap.dedent(prelude), after=textwrap.indent(textwrap.dedent(after), "    ").strip()
    )
    return run(code)  # type: ignore[return-value]


class TestGateMemos:
    def test_remembered_operations_are_allowed_in_c_as_in_python(self) -> None:
        """An open, a connect and a lookup allowed once are found by both readers, under the same view only."""
        out = memo_run()
        for case in ("open exact", "connect exact", "lookup exact"):
            assert out[case] == [True, True], case
        for case in ("open other view", "open other flags", "connect other port", "connect as bind"):
            assert out[case] == [False, False], case

    def test_the_c_reader_never_allows_what_python_does_not(self) -> None:
        """On every case, an 'allowed' from the C reader is matched by the Python reader."""
        for case, (c, python) in memo_run().items():
            assert python or not c, case

    def test_objects_that_could_run_code_go_to_python(self) -> None:
        """A str subclass path or host, a non-socket, bool flags or bytes: the C reader does not answer."""
        out = memo_run()
        for case in (
            "open str subclass",
            "open bool flags",
            "open bytes",
            "open short",
            "connect not a socket",
            "connect str subclass host",
            "lookup str subclass",
            "lookup other host",
            "lookup empty",
        ):
            assert out[case][0] is False, case

    def test_a_lying_family_property_is_read_past(self) -> None:
        """A socket subclass whose family property claims AF_UNIX is keyed by its real AF_INET, as in Python."""
        assert memo_run()["connect lying family"] == [True, True]

    def test_after_a_child_a_remembered_open_is_stamped_and_a_swap_refused(self) -> None:
        """Once a child has run, the stamp is checked in C: the same file passes, a file swapped in does not."""
        out = memo_run(
            # The sensors are installed at the first guard; the child after that is seen.
            prelude='with lambdaguard.guard(tmp="alert"):\n    pass\nsubprocess.run(["true"], check=True)',
            after="""
            out["stamped"] = type(files._decided[1].get((kept, "r", flags))).__name__
            out["stamped, unchanged"] = both("open", (kept, "r", flags), view)
            swapped = kept + ".new"
            with open(swapped, "w") as f:
                f.write("y")
            subprocess.run(["mv", swapped, kept], check=True)
            out["stamped, swapped"] = both("open", (kept, "r", flags), view)
            """,
        )
        assert out["open exact"] == [True, True]
        assert out["stamped"] == "tuple"
        assert out["stamped, unchanged"] == [True, True]
        assert out["stamped, swapped"] == [False, False]


class TestGateMemoEndToEnd:
    def test_a_remembered_open_skips_python_and_a_new_one_is_still_judged(self) -> None:
        """The second open of an allowed file never reaches the Python hook; a blocked open still does, and is refused."""
        out = run(
            """
            import json, os, sys, tempfile
            import lambdaguard
            from lambdaguard import _audit_gate, scope
            from lambdaguard.sensors import audit

            workdir = tempfile.mkdtemp(prefix="lambdaguard-memo-", dir="/tmp")
            kept = os.path.join(workdir, "kept.txt")
            with open(kept, "w") as f:
                f.write("x")
            guard = lambdaguard.guard(tmp=lambdaguard.Tmp("block", allow=[kept]))
            with guard:
                pass
            calls = []
            def counting(event, args):
                if event == "open":
                    calls.append(args[0])
                return audit._hook(event, args)
            _audit_gate.install(
                audit._table, audit._observers, counting, scope._scope, scope, audit._gate_memos
            )
            forbidden = os.path.join(workdir, "forbidden.txt")
            out = {}
            with guard:
                for _ in range(3):
                    with open(kept) as f:
                        f.read()
                out["allowed opens reaching python"] = calls.count(kept)
                try:
                    open(forbidden, "w")
                    out["forbidden"] = "written"
                except lambdaguard.FileViolation:
                    out["forbidden"] = "blocked"
            out["forbidden exists"] = os.path.exists(forbidden)
            out["forbidden reached python"] = forbidden in calls
            print(json.dumps(out))
            """
        )
        assert out == {
            "allowed opens reaching python": 1,
            "forbidden": "blocked",
            "forbidden exists": False,
            "forbidden reached python": True,
        }

    def test_a_bad_memo_shape_is_refused_with_the_event_named(self) -> None:
        """install() refuses a memo for an unwatched event or of an unknown shape, naming the event."""
        out = run(
            """
            import contextvars, json, types
            from lambdaguard import _audit_gate
            var = contextvars.ContextVar("scope", default=None)
            module = types.ModuleType("fake_scope")
            out = {}
            for name, memos in (
                ("unwatched", {"test.other": ("lookup", "resolve")}),
                ("unknown shape", {"test.watched": ("glob", "x")}),
                ("wrong parts", {"test.watched": ("open", "not a dict", "_decided")}),
            ):
                try:
                    _audit_gate.install(["test.watched"], [], print, var, module, memos)
                    out[name] = "accepted"
                except ValueError as error:
                    out[name] = str(error)
            print(json.dumps(out))
            """
        )
        assert "'test.other'" in out["unwatched"]
        assert "not a watched event" in out["unwatched"]
        assert "'test.watched'" in out["unknown shape"]
        assert "unknown shape" in out["unknown shape"]
        assert "unknown shape or wrong parts" in out["wrong parts"]
