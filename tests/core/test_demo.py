"""`make demo` shows blocked and alerted violations as JSON lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).parents[2] / "examples" / "demo.py"


def test_demo_blocks_each_payload_and_alerts() -> None:
    """The demo prints one valid JSON line per blocked payload, an alert line and a flood summary."""
    result = subprocess.run([sys.executable, str(DEMO)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    bodies = [json.loads(line)["lambdaguard"] for line in result.stdout.splitlines() if line.startswith("{")]
    blocked = {(b["policy"], b["action"]) for b in bodies if b["event"] == "violation" and b["mode"] == "block"}
    assert {("network", "connect"), ("network", "resolve"), ("tmp", "write"), ("subprocess", "run")} <= blocked
    # The demo's folder plays the task root; in a checkout under /tmp the tmp policy,
    # checked first, is the one that refuses reading the handler's source.
    source_reads = [b for b in bodies if b["event"] == "violation" and b["action"] == "read"]
    assert [(b["policy"] in ("handler_source", "tmp"), b["target"]) for b in source_reads] == [(True, str(DEMO.resolve()))]
    assert any(b["event"] == "violation" and b["mode"] == "alert" for b in bodies)
    assert [b["suppressed"] for b in bodies if b["event"] == "suppressed"] == [9997]
    assert "/tmp payload exists: False; shell ran: False" in result.stdout
