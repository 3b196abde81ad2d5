"""Code a typical cold start does not need is loaded on first use, and works when it is.

Each scenario runs in a fresh interpreter: which modules are loaded, and when, is the point.
The deferred modules: ``lambdaguard._inherit`` (carrying a policy into a child),
``lambdaguard.sensors._masking`` (a process violation line's argv) and
``lambdaguard.sensors._layout`` (Popen's parameters, bound by hand).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

DEFERRED = (
    "lambdaguard._inherit",
    "lambdaguard.sensors._masking",
    "lambdaguard.sensors._layout",
)

TOUCH = os.path.abspath(shutil.which("touch") or "/usr/bin/touch")


def run_scenario(body: str, tmp_path: Path) -> dict[str, object]:
    """Run ``body`` in a fresh interpreter; it prints one JSON object as its last line."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LAMBDAGUARD_")}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(body)],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        text=True,
        env=environment,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def loaded() -> str:
    """Scenario code: the deferred modules loaded so far, as a Python expression."""
    return f"[m for m in {DEFERRED!r} if m in sys.modules]"


class TestTheColdPathLoadsNothingDeferred:
    def test_a_typical_guarded_invocation_loads_no_deferred_module(self, tmp_path: Path) -> None:
        """Every policy on, every sensor area patched, one blocked open: none of the deferred modules is loaded."""
        target = tmp_path / "blocked.txt"
        out = run_scenario(
            f"""
            import io, json, multiprocessing, socket, subprocess, sys
            import lambdaguard
            from lambdaguard import sensors
            guard = lambdaguard.guard(
                network="block", tmp="block", subprocess="block", handler_source="block"
            )
            def handler(event, context):
                try:
                    open({str(target)!r}, "w")
                except PermissionError:
                    return "refused"
                return "opened"
            out, sys.stdout = sys.stdout, io.StringIO()
            verdict = guard(handler)({{}}, None)
            line, sys.stdout = sys.stdout.getvalue(), out
            print(json.dumps({{"verdict": verdict, "installed": sensors.installed(),
                "lines": line.count("\\n"), "loaded": {loaded()}}}))
            """,
            tmp_path,
        )
        assert out == {"verdict": "refused", "installed": True, "lines": 1, "loaded": []}
        assert not target.exists()


class TestDeferredModulesWorkWhenFirstUsed:
    def test_a_first_process_violation_masks_its_argv(self, tmp_path: Path) -> None:
        """The first blocked child loads the masking code: the line shows the argv masked and the program never ran."""
        marker = tmp_path / "ran.marker"
        out = run_scenario(
            f"""
            import io, json, subprocess, sys
            import lambdaguard
            before = {loaded()}
            out, sys.stdout = sys.stdout, io.StringIO()
            try:
                with lambdaguard.guard(subprocess="block"):
                    subprocess.run([{TOUCH!r}, "--password=hunter2", {str(marker)!r}])
            except lambdaguard.ProcessViolation:
                verdict = "blocked"
            else:
                verdict = "ran"
            line, sys.stdout = sys.stdout.getvalue(), out
            argv = json.loads(line.splitlines()[0])["lambdaguard"]["details"]["argv"]
            print(json.dumps({{"before": before, "verdict": verdict, "argv": argv,
                "after": {loaded()}}}))
            """,
            tmp_path,
        )
        assert out["before"] == []
        assert out["verdict"] == "blocked"
        assert out["argv"] == [TOUCH, "--password=***", str(marker)]
        assert "lambdaguard.sensors._masking" in out["after"]  # type: ignore[operator]
        assert not marker.exists()

    def test_a_first_popen_binds_its_parameters_with_the_layout(self, tmp_path: Path) -> None:
        """The first Popen decided loads the layout: keyword arguments are read right, allowed and blocked alike."""
        allowed, refused = tmp_path / "allowed.marker", tmp_path / "refused.marker"
        out = run_scenario(
            f"""
            import json, subprocess, sys
            import lambdaguard
            from lambdaguard import Subprocess
            before = {loaded()}
            verdicts = []
            with lambdaguard.guard(subprocess=Subprocess("block", allow=[{TOUCH!r}])):
                subprocess.Popen(args=[{TOUCH!r}, {str(allowed)!r}]).wait()
                try:
                    subprocess.Popen(
                        args=["/bin/sh", "-c", "touch " + {str(refused)!r}], cwd="/"
                    ).wait()
                    verdicts.append("ran")
                except lambdaguard.ProcessViolation:
                    verdicts.append("blocked")
            print(json.dumps({{"before": before, "verdicts": verdicts, "after": {loaded()}}}))
            """,
            tmp_path,
        )
        assert out["before"] == []
        assert out["verdicts"] == ["blocked"]
        assert "lambdaguard.sensors._layout" in out["after"]  # type: ignore[operator]
        assert allowed.exists()
        assert not refused.exists()

    def test_a_first_carried_policy_reaches_the_child(self, tmp_path: Path) -> None:
        """The first child started under inherit=True loads the carrier, and the child enforces the policy."""
        marker = tmp_path / "ran.marker"
        child = (
            "import subprocess\n"
            "try:\n"
            f"    subprocess.run([{TOUCH!r}, {str(marker)!r}], check=True)\n"
            "except PermissionError as exc:\n"
            "    print('child refused', type(exc).__name__)\n"
        )
        out = run_scenario(
            f"""
            import json, subprocess, sys
            import lambdaguard
            from lambdaguard import Subprocess
            before = {loaded()}
            rule = Subprocess("block", allow=[sys.executable], inherit=True)
            with lambdaguard.guard(subprocess=rule):
                done = subprocess.run(
                    [sys.executable, "-c", {child!r}], capture_output=True, text=True
                )
            print(json.dumps({{"before": before, "child": done.stdout, "after": {loaded()}}}))
            """,
            tmp_path,
        )
        assert out["before"] == []
        assert "child refused ProcessViolation" in str(out["child"])
        assert "lambdaguard._inherit" in out["after"]  # type: ignore[operator]
        assert not marker.exists()


class TestDeferredModulesAreLambdaguardsOwnReads:
    def test_loading_them_inside_a_tmp_scope_works_when_lambdaguard_lives_under_tmp(
        self, tmp_path: Path
    ) -> None:
        """A copy of lambdaguard under /tmp, tmp blocked: the first process operations still load their modules, and nothing but the blocked child is reported."""
        package = Path(__file__).resolve().parents[2] / "lambdaguard"
        shutil.copytree(package, tmp_path / "lambdaguard", ignore=shutil.ignore_patterns("__pycache__"))
        marker = tmp_path / "ran.txt"
        out = run_scenario(
            f"""
            import sys
            sys.dont_write_bytecode = True  # every module is read from its source, under /tmp
            sys.path.insert(0, {str(tmp_path)!r})
            import io, json, subprocess
            import lambdaguard
            assert lambdaguard.__file__.startswith({str(tmp_path)!r}), lambdaguard.__file__
            lines, real = io.StringIO(), sys.stdout
            out = {{}}
            sys.stdout = lines
            try:
                with lambdaguard.guard(
                    tmp="block",
                    subprocess=lambdaguard.Subprocess("block", allow=[{TOUCH!r}], inherit=True),
                ):
                    subprocess.run([{TOUCH!r}, {str(marker)!r}], check=True)
                    try:
                        subprocess.run(["/bin/sh", "-c", "echo --password=hunter2"])
                        out["shell"] = "ran"
                    except lambdaguard.ProcessViolation:
                        out["shell"] = "blocked"
            finally:
                sys.stdout = real
            out["reported"] = [
                json.loads(line)["lambdaguard"]["policy"]
                for line in lines.getvalue().splitlines() if '"violation"' in line
            ]
            out["loaded"] = {loaded()}
            print(json.dumps(out))
            """,
            tmp_path,
        )
        assert out == {"shell": "blocked", "reported": ["subprocess"], "loaded": list(DEFERRED)}
        assert marker.exists()
