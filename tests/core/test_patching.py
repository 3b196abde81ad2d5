"""How patches are made: wrapt's C types without its package, and post-import hooks.

Each scenario runs in a fresh interpreter: what is imported, and when, is the point.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

# Every scenario tries a lookup that network='block' must refuse, so a patch that silently
# failed to apply shows up as "resolved". The wrapt types are checked on
# socket.gethostbyname, a builtin the network sensor patches with wrapt (its hottest
# functions, getaddrinfo and the socket methods, are plain functions).
_BLOCKED_CONNECT = textwrap.dedent(
    """
    import socket
    def attempt():
        try:
            with lambdaguard.guard(network="block"):
                socket.getaddrinfo("blocked.example", 443)
        except lambdaguard.NetworkViolation:
            return "blocked"
        return "resolved"
    """
)


def run_scenario(body: str, env: dict[str, str] | None = None) -> dict[str, object]:
    """Run ``body`` in a fresh interpreter; it prints one JSON object, returned here."""
    full_env = {k: v for k, v in os.environ.items() if k != "WRAPT_DISABLE_EXTENSIONS"}
    full_env.update(env or {})
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(body)],
        capture_output=True,
        text=True,
        env=full_env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


class TestWraptTypes:
    def test_activation_uses_wrapt_c_types_without_importing_the_package(self) -> None:
        """The patches are wrapt's C FunctionWrapper, and neither wrapt's package nor inspect is loaded."""
        out = run_scenario(
            "import sys, json, lambdaguard\n"
            + _BLOCKED_CONNECT
            + "verdict = attempt()\n"
            "c_type = sys.modules['wrapt._wrappers'].FunctionWrapper\n"
            "print(json.dumps({'verdict': verdict, 'c_type': type(socket.gethostbyname).__mro__[1] is c_type,\n"
            "  'wrapt': 'wrapt' in sys.modules, 'inspect': 'inspect' in sys.modules}))\n"
        )
        assert out == {
            "verdict": "blocked",
            "c_type": True,
            "wrapt": False,
            "inspect": False,
        }

    def test_wrapt_imported_later_shares_the_same_types(self) -> None:
        """An application importing wrapt after activation sees lambdaguard's patches as its own FunctionWrappers."""
        out = run_scenario(
            "import sys, json, lambdaguard\n"
            + _BLOCKED_CONNECT
            + "first = attempt()\n"
            "import wrapt\n"
            "print(json.dumps({'first': first, 'again': attempt(),\n"
            "  'isinstance': isinstance(socket.gethostbyname, wrapt.FunctionWrapper),\n"
            "  'same': wrapt.FunctionWrapper is sys.modules['wrapt._wrappers'].FunctionWrapper}))\n"
        )
        assert out == {"first": "blocked", "again": "blocked", "isinstance": True, "same": True}

    def test_wrapt_imported_first_is_used_as_it_is(self) -> None:
        """With wrapt already imported, lambdaguard uses the types wrapt chose."""
        out = run_scenario(
            "import sys, json, wrapt, lambdaguard\n"
            + _BLOCKED_CONNECT
            + "print(json.dumps({'verdict': attempt(),\n"
            "  'isinstance': isinstance(socket.gethostbyname, wrapt.FunctionWrapper)}))\n"
        )
        assert out == {"verdict": "blocked", "isinstance": True}

    def test_wrapt_disable_extensions_falls_back_to_wrapts_python_types(self) -> None:
        """WRAPT_DISABLE_EXTENSIONS is honoured: the pure-Python FunctionWrapper is used, and still blocks."""
        out = run_scenario(
            "import sys, json, lambdaguard\n"
            + _BLOCKED_CONNECT
            + "verdict = attempt()\n"
            "kind = type(socket.gethostbyname).__mro__[1]\n"
            "python_type = sys.modules['wrapt.wrappers'].FunctionWrapper\n"
            "print(json.dumps({'verdict': verdict, 'python_type': kind is python_type,\n"
            "  'extension': 'wrapt._wrappers' in sys.modules}))\n",
            env={"WRAPT_DISABLE_EXTENSIONS": "1"},
        )
        assert out == {"verdict": "blocked", "python_type": True, "extension": False}


class TestPostImportHooks:
    def test_module_imported_after_activation_is_patched_before_anyone_gets_it(self) -> None:
        """socket imported after the first guard is already patched, and `from socket import` gets the patch."""
        out = run_scenario(
            "import sys, json, lambdaguard\n"
            "with lambdaguard.guard(network='block'): pass\n"
            "before = 'socket' in sys.modules\n"
            "from socket import getaddrinfo, gethostbyname\n"
            "try:\n"
            "    with lambdaguard.guard(network='block'):\n"
            "        getaddrinfo('blocked.example', 443)\n"
            "    verdict = 'resolved'\n"
            "except lambdaguard.NetworkViolation:\n"
            "    verdict = 'blocked'\n"
            "print(json.dumps({'before': before, 'verdict': verdict,\n"
            "  'patched': type(gethostbyname).__name__}))\n"
        )
        assert out == {"before": False, "verdict": "blocked", "patched": "PicklableFunctionWrapper"}

    def test_the_module_keeps_its_real_loader(self) -> None:
        """After the hook, a lazily patched module's __loader__ and __spec__.loader are the real loader."""
        out = run_scenario(
            "import sys, json, lambdaguard\n"
            "with lambdaguard.guard(network='block'): pass\n"
            "import socket\n"
            "print(json.dumps({'loader': type(socket.__loader__).__name__,\n"
            "  'spec': type(socket.__spec__.loader).__name__,\n"
            "  'source': socket.__loader__.get_source('socket') is not None}))\n"
        )
        assert out == {"loader": "SourceFileLoader", "spec": "SourceFileLoader", "source": True}

    def test_a_failed_import_is_patched_when_it_is_retried(self, tmp_path: Path) -> None:
        """If a watched module's first import fails, the hook still runs on the import that succeeds."""
        # A package named like a watched module (botocore.httpsession), failing once.
        package = tmp_path / "botocore"
        package.mkdir()
        (package / "__init__.py").write_text("")
        (package / "httpsession.py").write_text(
            "import os\n"
            "if not os.path.exists(os.path.join(os.path.dirname(__file__), 'ok')):\n"
            "    raise ImportError('first attempt fails')\n"
            "class URLLib3Session:\n"
            "    def send(self, request):\n"
            "        return 'sent'\n"
        )
        out = run_scenario(
            "import sys, json, pathlib, lambdaguard\n"
            "with lambdaguard.guard(network='block'): pass\n"
            "try:\n"
            "    import botocore.httpsession\n"
            "    first = 'imported'\n"
            "except ImportError:\n"
            "    first = 'failed'\n"
            f"pathlib.Path({str(package / 'ok')!r}).touch()\n"
            "import botocore.httpsession as hs\n"
            "print(json.dumps({'first': first,\n"
            "  'patched': type(hs.URLLib3Session.__dict__['send']).__name__}))\n",
            env={"PYTHONPATH": str(tmp_path)},
        )
        assert out == {"first": "failed", "patched": "PicklableFunctionWrapper"}
