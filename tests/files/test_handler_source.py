"""The handler_source policy: the author's code cannot be read, but it can be imported.

Each scenario runs in its own interpreter with LAMBDA_TASK_ROOT pointing at a task root
laid out like a deployment package (the author's modules plus boto3 and its dependencies
as `pip install -t .` puts them), first on sys.path, as in Lambda.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.files.conftest import Outcome, run_scenario

SECRET = "author-secret-7f3a"


def in_task_root(task_root: Path, body: str, *, policy: str = '"block"') -> Outcome:
    """Run ``body`` inside ``guard(handler_source=...)`` with the task root set up as in Lambda."""
    indented = "\n".join("    " + line for line in body.strip("\n").splitlines())
    code = (
        "import os, sys\n"
        "sys.path.insert(0, os.environ['LAMBDA_TASK_ROOT'])\n"
        "from lambdaguard import guard, HandlerSource\n"
        "import app\n"
        f"with guard(handler_source={policy}):\n"
        f"{indented}\n"
    )
    return run_scenario(code, env={"LAMBDA_TASK_ROOT": str(task_root)}, cwd=task_root)


def _blocked_reads(outcome: Outcome) -> list[tuple[str, str]]:
    return [
        (v["action"], Path(v["target"]).name)
        for v in outcome.violations
        if v["policy"] == "handler_source" and v["mode"] == "block"
    ]


class TestReadingIsBlocked:
    @pytest.mark.parametrize(
        "read",
        [
            "open('app.py').read()",
            "open(os.path.join(os.environ['LAMBDA_TASK_ROOT'], 'app.py'), 'rb').read()",
            "__import__('pathlib').Path(app.__file__).read_text()",
            "__import__('io').FileIO(app.__file__).read()",
            "os.read(os.open(app.__file__, os.O_RDONLY), 4096)",
            "open('/proc/self/root' + app.__file__).read()",
            "open('/proc/self/cwd/app.py').read()",
            "open('pkg/../app.py').read()",
            "__import__('io').open_code(app.__file__).read()",
            "app.__loader__.get_data(app.__file__)",
        ],
    )
    def test_direct_reads_of_the_handler_return_nothing(self, task_root: Path, read: str) -> None:
        """Every way of opening the handler's source raises before any byte is read."""
        outcome = in_task_root(
            task_root,
            f"""
try:
    data = {read}
except PermissionError as error:
    data = type(error).__name__
result(str(data))
""",
        )
        assert outcome.result == "FileViolation"
        assert SECRET not in outcome.stdout
        assert _blocked_reads(outcome) == [("read", "app.py")]

    def test_the_authors_bytecode_is_source_too(self, task_root: Path) -> None:
        """The compiled app.pyc in the task root's __pycache__ is as protected as app.py."""
        outcome = in_task_root(
            task_root,
            """
from importlib.util import cache_from_source
try:
    result(len(open(cache_from_source(app.__file__), "rb").read()))
except PermissionError as error:
    result(type(error).__name__)
""",
        )
        assert outcome.result == "FileViolation"

    def test_shutil_copy_of_the_handler_writes_no_copy(
        self, task_root: Path, outside_dir: Path
    ) -> None:
        """Copying the source elsewhere is a read: no copy appears."""
        outcome = in_task_root(
            task_root,
            f"""
import shutil
try:
    shutil.copy(app.__file__, {str(outside_dir / "copy.py")!r})
    result("copied")
except PermissionError:
    result("blocked")
""",
        )
        assert outcome.result == "blocked"
        assert not (outside_dir / "copy.py").exists()

    def test_linecache_and_inspect_give_no_source(self, task_root: Path) -> None:
        """linecache.getlines and inspect.getsource raise; a cached copy is not served either."""
        outcome = in_task_root(
            task_root,
            """
import inspect, linecache
got = []
for attempt in (lambda: linecache.getlines(app.__file__), lambda: inspect.getsource(app)):
    try:
        got.append(attempt())
    except PermissionError as error:
        got.append(type(error).__name__)
result(got)
""",
        )
        assert outcome.result == ["FileViolation", "FileViolation"]
        assert SECRET not in outcome.stdout

    def test_source_already_in_linecache_is_not_served(self, task_root: Path) -> None:
        """Lines cached before the guard (a traceback at import) are still refused inside it."""
        code = (
            "import os, sys, linecache\n"
            "sys.path.insert(0, os.environ['LAMBDA_TASK_ROOT'])\n"
            "import app\n"
            "linecache.getlines(app.__file__)\n"
            "from lambdaguard import guard\n"
            "with guard(handler_source='block'):\n"
            "    try:\n"
            "        result(linecache.getline(app.__file__, 2))\n"
            "    except PermissionError as error:\n"
            "        result(type(error).__name__)\n"
        )
        outcome = run_scenario(code, env={"LAMBDA_TASK_ROOT": str(task_root)}, cwd=task_root)
        assert outcome.result == "FileViolation"

    def test_linecache_imported_after_activation_is_patched(self, task_root: Path) -> None:
        """linecache is not imported just to patch it; imported later, it is patched at once."""
        code = (
            "import os, sys\n"
            "at_startup = 'linecache' in sys.modules  # 3.13's site imports it already\n"
            "sys.path.insert(0, os.environ['LAMBDA_TASK_ROOT'])\n"
            "import app\n"
            "from lambdaguard import guard\n"
            "with guard(handler_source='block'):\n"
            "    imported_by_guard = 'linecache' in sys.modules and not at_startup\n"
            "    import linecache\n"
            "    try:\n"
            "        got = linecache.getline(app.__file__, 2)\n"
            "    except PermissionError as error:\n"
            "        got = type(error).__name__\n"
            "result([imported_by_guard, got])\n"
        )
        outcome = run_scenario(code, env={"LAMBDA_TASK_ROOT": str(task_root)}, cwd=task_root)
        assert outcome.result == [False, "FileViolation"]
        assert SECRET not in outcome.stdout

    def test_linecache_lookup_along_sys_path_is_judged_by_the_file_read(
        self, task_root: Path
    ) -> None:
        """A bare name that linecache finds on sys.path is judged where it is read."""
        code = (
            "import os, sys, linecache\n"
            "sys.path.insert(0, os.environ['LAMBDA_TASK_ROOT'])\n"
            "os.chdir('/')\n"
            "from lambdaguard import guard\n"
            "with guard(handler_source='block'):\n"
            "    try:\n"
            "        result(linecache.getlines('app.py'))\n"
            "    except PermissionError as error:\n"
            "        result(type(error).__name__)\n"
        )
        outcome = run_scenario(code, env={"LAMBDA_TASK_ROOT": str(task_root)}, cwd=task_root)
        assert outcome.result in ([], "FileViolation")
        assert SECRET not in outcome.stdout
        assert _blocked_reads(outcome) == [("read", "app.py")]

    def test_loader_get_source_is_a_read_not_an_import(self, task_root: Path) -> None:
        """Asking the module's loader for its source text is blocked like open()."""
        outcome = in_task_root(
            task_root,
            """
try:
    result(app.__loader__.get_source("app"))
except ImportError as error:  # get_source turns the OSError into ImportError
    result([type(error).__name__, type(error.__cause__).__name__])
""",
        )
        assert outcome.result == ["ImportError", "FileViolation"]
        assert SECRET not in outcome.stdout

    def test_mmap_of_the_handler_is_blocked(self, task_root: Path) -> None:
        """Mapping the source through a descriptor opened before the guard is refused."""
        code = (
            "import os, sys, mmap\n"
            "sys.path.insert(0, os.environ['LAMBDA_TASK_ROOT'])\n"
            "fd = os.open('app.py', os.O_RDONLY)\n"
            "from lambdaguard import guard\n"
            "with guard(handler_source='block'):\n"
            "    try:\n"
            "        result(bytes(mmap.mmap(fd, 0, access=mmap.ACCESS_READ)[:]).decode())\n"
            "    except PermissionError as error:\n"
            "        result(type(error).__name__)\n"
        )
        outcome = run_scenario(code, env={"LAMBDA_TASK_ROOT": str(task_root)}, cwd=task_root)
        assert outcome.result == "FileViolation"
        assert SECRET not in outcome.stdout

    def test_listing_the_task_root_or_the_authors_package_is_blocked(self, task_root: Path) -> None:
        """os.listdir of the task root or of the author's package reveals no names."""
        outcome = in_task_root(
            task_root,
            """
got = []
for path in (".", os.environ["LAMBDA_TASK_ROOT"], "pkg"):
    try:
        got.append(os.listdir(path))
    except PermissionError as error:
        got.append(type(error).__name__)
result(got)
""",
        )
        assert outcome.result == ["FileViolation"] * 3


class TestWhatIsTheAuthors:
    def test_handler_module_stays_protected_when_a_distribution_claims_it(
        self, tmp_path: Path
    ) -> None:
        """`pip install -t .` of the function's own project claims app.py in a RECORD;
        the module Lambda's _HANDLER names is the author's code all the same."""
        root = tmp_path / "root"
        root.mkdir()
        (root / "app.py").write_text(f'SECRET = "{SECRET}"\n')
        (root / "helper.py").write_text("X = 1\n")
        dist = root / "myfunction-1.0.dist-info"
        dist.mkdir()
        (dist / "RECORD").write_text("app.py,,\nhelper.py,,\nmyfunction-1.0.dist-info/RECORD,,\n")
        code = (
            "from lambdaguard import guard\n"
            "got = []\n"
            "with guard(handler_source='block'):\n"
            "    for name in ('app.py', 'helper.py'):\n"
            "        try:\n"
            "            got.append(open(name).read())\n"
            "        except PermissionError as error:\n"
            "            got.append(type(error).__name__)\n"
            "result(got)\n"
        )
        outcome = run_scenario(
            code, env={"LAMBDA_TASK_ROOT": str(root), "_HANDLER": "app.handler"}, cwd=root
        )
        assert outcome.result == ["FileViolation", "X = 1\n"]
        assert SECRET not in outcome.stdout


class TestImportsKeepWorking:
    def test_boto3_client_and_lazy_imports_work_inside_a_guarded_handler(
        self, task_root: Path
    ) -> None:
        """A guarded handler lazily imports the author's modules and builds a boto3 client."""
        code = (
            "import os, sys\n"
            "sys.path.insert(0, os.environ['LAMBDA_TASK_ROOT'])\n"
            "from lambdaguard import guard\n"
            "@guard(handler_source='block')\n"
            "def handler(event, context):\n"
            "    import lazy_helper\n"
            "    from pkg import logic\n"
            "    import boto3, botocore\n"
            "    client = boto3.client('s3', region_name='eu-west-1',\n"
            "                          aws_access_key_id='x', aws_secret_access_key='y')\n"
            "    return [lazy_helper.VALUE, logic.f(), type(client).__name__,\n"
            "            os.path.dirname(botocore.__file__)]\n"
            "result(handler({}, None))\n"
        )
        outcome = run_scenario(code, env={"LAMBDA_TASK_ROOT": str(task_root)}, cwd=task_root)
        assert outcome.result == ["lazy-ok", "logic-secret-91", "S3", str(task_root / "botocore")]
        assert outcome.violations == []

    def test_importlib_metadata_of_bundled_dependencies_works(self, task_root: Path) -> None:
        """importlib.metadata lists the task root to find dist-info: import plumbing, allowed."""
        outcome = in_task_root(
            task_root,
            """
import importlib.metadata
result(importlib.metadata.version("botocore") == __import__("botocore").__version__)
""",
        )
        assert outcome.result is True
        assert outcome.violations == []

    def test_bundled_dependency_data_files_are_readable(self, task_root: Path) -> None:
        """Files of a distribution installed into the task root are not the author's code."""
        outcome = in_task_root(
            task_root,
            """
data = open("botocore/data/endpoints.json").read(2)
names = sorted(os.listdir("botocore"))[:1]
result([data, names])
""",
        )
        assert outcome.result[0] == "{\n"
        assert outcome.violations == []


class TestTracebacksAndAllowList:
    def test_traceback_inside_the_guard_has_no_source_lines_but_works(
        self, task_root: Path
    ) -> None:
        """Formatting a traceback reports the read and omits the author's line, never raising."""
        outcome = in_task_root(
            task_root,
            """
import traceback
from pkg import logic
try:
    logic.g()
except ValueError:
    text = traceback.format_exc()
result(text)
""",
        )
        text = outcome.result
        assert 'logic.py", line 5, in g' in text
        assert text.rstrip().endswith("ValueError: boom")
        assert "g-secret" not in outcome.stdout
        assert [(v["action"], Path(v["target"]).name) for v in outcome.violations] == [
            ("linecache", "logic.py")
        ]

    def test_traceback_after_the_guard_shows_source_again(self, task_root: Path) -> None:
        """Outside the scope (where Lambda's runtime formats errors) lines are back."""
        code = (
            "import os, sys, traceback\n"
            "sys.path.insert(0, os.environ['LAMBDA_TASK_ROOT'])\n"
            "from lambdaguard import guard\n"
            "from pkg import logic\n"
            "try:\n"
            "    with guard(handler_source='block'):\n"
            "        logic.g()\n"
            "except ValueError:\n"
            "    result(traceback.format_exc())\n"
        )
        after = run_scenario(code, env={"LAMBDA_TASK_ROOT": str(task_root)}, cwd=task_root)
        assert "g-secret" in after.result
        assert after.violations == []

    def test_warning_shown_inside_the_guard_omits_the_source_line(self, task_root: Path) -> None:
        """A warning raised in the author's code is displayed without its source line."""
        (task_root / "warner.py").write_text(
            "import warnings\ndef w():\n    warnings.warn('careful')  # w-secret\n"
        )
        outcome = in_task_root(task_root, "import warner\nwarner.w()\nresult('ok')")
        assert outcome.result == "ok"
        assert "UserWarning: careful" in outcome.stderr
        assert "w-secret" not in outcome.stderr

    def test_loader_get_code_is_allowed(self, task_root: Path) -> None:
        """get_code returns the code object an import makes; it is not a source read."""
        outcome = in_task_root(
            task_root, "result(app.__loader__.get_code('app').co_filename.endswith('app.py'))"
        )
        assert outcome.result is True
        assert outcome.violations == []

    def test_allow_listed_data_file_is_readable(self, task_root: Path) -> None:
        """HandlerSource(allow=["config/*.json"]) exempts that data file, not the code."""
        outcome = in_task_root(
            task_root,
            """
settings = open("config/settings.json").read()
try:
    open("app.py").read()
    code = "read"
except PermissionError:
    code = "blocked"
result([settings, code])
""",
            policy='HandlerSource("block", allow=["config/*.json"])',
        )
        assert outcome.result == ['{"setting": "config-value"}', "blocked"]

    def test_alert_mode_reads_and_reports(self, task_root: Path) -> None:
        """In alert mode the read goes ahead and one line records it."""
        outcome = in_task_root(
            task_root, "result(open('app.py').read().count('author-secret'))", policy='"alert"'
        )
        assert outcome.result == 1
        assert [(v["mode"], v["action"]) for v in outcome.violations] == [("alert", "read")]

    def test_task_root_defaults_to_var_task(self) -> None:
        """Without LAMBDA_TASK_ROOT the rule governs /var/task."""
        outcome = run_scenario(
            """
            import os
            os.environ.pop("LAMBDA_TASK_ROOT", None)
            from lambdaguard import HandlerSource
            result(list(HandlerSource("block").roots)[:1])
            """
        )
        assert outcome.result == ["/var/task"]
