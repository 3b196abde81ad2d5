"""Fixtures for the file policies: scratch directories in and out of /tmp, a task root
laid out like a deployment package, and a runner for scenarios that need their own
interpreter (a task root on sys.path, TMPDIR or LAMBDA_TASK_ROOT read at rule build)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# The dependencies `pip install -t . boto3` puts into a deployment package.
BUNDLED = ("boto3", "botocore", "jmespath", "s3transfer", "dateutil", "urllib3", "six.py")
BUNDLED_DISTRIBUTIONS = (
    "boto3",
    "botocore",
    "jmespath",
    "s3transfer",
    "python_dateutil",
    "urllib3",
    "six",
)

APP_SOURCE = '''\
"""The function author's handler module (a secret lives in its source)."""
SECRET = "author-secret-7f3a"

def handler(event, context):
    return SECRET
'''


@pytest.fixture
def outside_dir() -> Iterator[Path]:
    """A writable scratch directory outside /tmp (so outside the tmp policy)."""
    base = "/var/tmp" if os.path.isdir("/var/tmp") and not os.path.islink("/var/tmp") else None
    if base is None or os.path.realpath(base).startswith("/tmp"):
        pytest.fail("these tests need a writable directory outside /tmp (/var/tmp)")
    path = Path(tempfile.mkdtemp(prefix="lambdaguard-outside-", dir=base))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def task_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A task root like `pip install -t . boto3` plus the author's modules and data."""
    root = tmp_path_factory.mktemp("task")
    site = Path(__import__("botocore").__file__).parent.parent
    for name in BUNDLED:
        source = site / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, root / name)
    for dist in BUNDLED_DISTRIBUTIONS:
        (found,) = site.glob(f"{dist}-*.dist-info")
        shutil.copytree(found, root / found.name)
    (root / "app.py").write_text(APP_SOURCE)
    (root / "lazy_helper.py").write_text('VALUE = "lazy-ok"\n')
    (root / "pkg").mkdir()
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "logic.py").write_text(
        'def f():\n    return "logic-secret-91"\n\n'
        'def g():\n    raise ValueError("boom")  # g-secret\n'
    )
    (root / "config").mkdir()
    (root / "config" / "settings.json").write_text('{"setting": "config-value"}')
    return root


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str

    @property
    def violations(self) -> list[dict[str, Any]]:
        """The "lambdaguard" objects of every JSON line on stdout."""
        out = []
        for line in self.stdout.splitlines():
            if line.startswith("{"):
                record = json.loads(line)
                if "lambdaguard" in record:
                    out.append(record["lambdaguard"])
        return out

    @property
    def result(self) -> Any:
        """The scenario's last non-JSON stdout line, decoded as JSON (its RESULT)."""
        lines = [line for line in self.stdout.splitlines() if line.startswith("RESULT ")]
        assert lines, f"no RESULT line\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"
        return json.loads(lines[-1][len("RESULT ") :])


def run_scenario(
    code: str, *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Outcome:
    """Run ``code`` in a fresh interpreter; it prints ``RESULT <json>`` via ``result(...)``.

    ``env`` adds to a copy of this process's environment.
    """
    prelude = (
        "import json as _json\n"
        "def result(value):\n"
        "    print('RESULT ' + _json.dumps(value), flush=True)\n"
    )
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("LAMBDAGUARD_")}
    full_env.update(env or {})
    done = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        env=full_env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return Outcome(done.returncode, done.stdout, done.stderr)


def violation_lines(text: str) -> list[dict[str, Any]]:
    """The "lambdaguard" objects of the JSON lines in captured output."""
    return [json.loads(line)["lambdaguard"] for line in text.splitlines() if line.startswith("{")]
