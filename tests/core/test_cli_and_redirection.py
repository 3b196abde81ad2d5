"""The lambdaguard command and zero-code activation through LAMBDAGUARD_HANDLER."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lambdaguard.cli import main


def run_python(code: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=cwd,
        timeout=60,
    )


class TestHandlerRedirection:
    def test_real_handler_runs_guarded_with_policy_from_environment(self, tmp_path: Path) -> None:
        """handler=lambdaguard.lambda_handler.handler + LAMBDAGUARD_HANDLER=app.handler guards app.handler."""
        (tmp_path / "app.py").write_text(
            "import socket\n"
            "def handler(event, context):\n"
            "    try:\n"
            "        socket.getaddrinfo('exfil.example', 443)\n"
            "    except Exception as exc:\n"
            "        return type(exc).__name__ + ':' + str(event['n'])\n"
        )
        code = (
            "import sys; sys.path.insert(0, '.')\n"
            "from lambdaguard.lambda_handler import handler\n"
            "print('RESULT', handler({'n': 7}, None))\n"
        )
        result = run_python(
            code, {"LAMBDAGUARD_HANDLER": "app.handler", "LAMBDAGUARD_NETWORK": "block"}, tmp_path
        )
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[-1] == "RESULT NetworkViolation:7"
        assert json.loads(lines[0])["lambdaguard"]["target"] == "exfil.example:443"

    @pytest.mark.parametrize(
        ("value", "message"),
        [
            (None, "LAMBDAGUARD_HANDLER is not set; accepted: the real handler as module.function"),
            ("nodots", "LAMBDAGUARD_HANDLER='nodots' is not module.function; accepted:"),
            (
                "app.missing",
                "LAMBDAGUARD_HANDLER='app.missing': module 'app' has no function 'missing'",
            ),
        ],
    )
    def test_bad_handler_setting_fails_init_clearly(
        self, tmp_path: Path, value: str | None, message: str
    ) -> None:
        """A missing or wrong LAMBDAGUARD_HANDLER is a ConfigError at init, naming the variable."""
        (tmp_path / "app.py").write_text("def handler(event, context):\n    return 1\n")
        env = {} if value is None else {"LAMBDAGUARD_HANDLER": value}
        clean = {k: v for k, v in os.environ.items() if k != "LAMBDAGUARD_HANDLER"}
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; sys.path.insert(0, '.'); import lambdaguard.lambda_handler",
            ],
            capture_output=True,
            text=True,
            env={**clean, **env},
            cwd=tmp_path,
            timeout=60,
        )
        assert result.returncode == 1
        assert f"lambdaguard.ConfigError: {message}" in result.stderr


class TestCommand:
    def test_check_prints_the_policy_from_the_environment(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`lambdaguard check` shows what a bare guard() would enforce."""
        monkeypatch.setenv("LAMBDAGUARD_NETWORK", "block")
        monkeypatch.setenv("LAMBDAGUARD_NETWORK_ALLOW", "*.amazonaws.com:443")
        assert main(["check"]) == 0
        out = capsys.readouterr().out
        assert "network          block  allow: *.amazonaws.com:443" in out
        assert "tmp              allow  allow: -" in out

    def test_check_reports_a_bad_variable_and_fails(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`lambdaguard check` exits 2 with the ConfigError message."""
        monkeypatch.setenv("LAMBDAGUARD_TMP", "nope")
        assert main(["check"]) == 2
        assert "LAMBDAGUARD_TMP: 'nope' is not a mode" in capsys.readouterr().err

    def test_report_counts_violations_across_functions(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`lambdaguard report` counts lines per function and target, suppressed ones included."""

        def line(function: str, target: str, event: str = "violation", suppressed: int = 0) -> str:
            body = {
                "event": event,
                "policy": "network",
                "mode": "block",
                "action": "connect",
                "target": target,
            }
            if suppressed:
                body["suppressed"] = suppressed  # type: ignore[assignment]
            return json.dumps({"function_name": function, "lambdaguard": body})

        log = tmp_path / "export.log"
        log.write_text(
            "\n".join(
                [
                    "2026-11-28T10:00:00Z " + line("orders", "1.2.3.4:443"),
                    line("orders", "1.2.3.4:443"),
                    "START RequestId: abc",
                    line("billing", "5.6.7.8:80"),
                    line("billing", "-", event="suppressed", suppressed=40),
                ]
            )
        )
        assert main(["report", str(log)]) == 0
        rows = capsys.readouterr().out.splitlines()
        assert rows[1].split() == ["40", "billing", "network", "block", "(suppressed)", "-"]
        assert rows[2].split() == ["2", "orders", "network", "block", "connect", "1.2.3.4:443"]
        assert rows[3].split() == ["1", "billing", "network", "block", "connect", "5.6.7.8:80"]

    def test_console_script_is_installed(self) -> None:
        """The `lambdaguard` console script runs."""
        exe = Path(sys.executable).with_name("lambdaguard")
        result = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True)
        assert result.stdout.strip() == "lambdaguard 0.1.0"
