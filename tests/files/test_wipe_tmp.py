"""guard(wipe_tmp=...): warm invocations do not inherit each other's /tmp files.

The tests wipe a scratch directory (``wipe_tmp=<path>``) instead of the real /tmp, which
other processes on the machine share; ``wipe_tmp=True`` means exactly that path, "/tmp".
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from lambdaguard import ConfigError, guard, wipe
from tests.files.conftest import violation_lines
from tests.helpers import FakeLambdaContext


def _notices(out: str) -> list[dict[str, object]]:
    return [
        json.loads(line)["lambdaguard"]
        for line in out.splitlines()
        if line.startswith("{") and json.loads(line)["lambdaguard"].get("event") == "wipe_tmp"
    ]


class TestWarmInvocations:
    def test_second_invocation_sees_nothing_the_first_left(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Files and directories made by one invocation are gone; older ones remain."""
        (tmp_path / "older.txt").write_text("from the init phase")
        (tmp_path / "older-dir").mkdir()
        seen: list[list[str]] = []

        @guard(wipe_tmp=str(tmp_path))
        def handler(event: dict[str, str], context: object) -> None:
            seen.append(sorted(os.listdir(tmp_path)))
            (tmp_path / f"upload-{event['n']}.bin").write_bytes(b"x" * 10)
            (tmp_path / "work" / "deep").mkdir(parents=True, exist_ok=True)
            (tmp_path / "work" / "deep" / "f").write_text("y")
            (tmp_path / "older-dir" / "new-inside-old").write_text("z")

        handler({"n": "1"}, None)
        handler({"n": "2"}, None)
        assert seen == [["older-dir", "older.txt"], ["older-dir", "older.txt"]]
        assert sorted(os.listdir(tmp_path)) == ["older-dir", "older.txt"]
        assert os.listdir(tmp_path / "older-dir") == []
        assert (tmp_path / "older.txt").read_text() == "from the init phase"
        notices = _notices(capsys.readouterr().out)
        assert len(notices) == 2
        assert notices[0]["removed"] == 3
        assert (notices[0]["files"], notices[0]["directories"]) == (3, 2)

    def test_wipe_happens_when_the_handler_raises(self, tmp_path: Path) -> None:
        """A failing invocation's files are removed too, and its exception propagates."""

        @guard(wipe_tmp=str(tmp_path))
        def handler(event: object, context: object) -> None:
            (tmp_path / "partial.json").write_text("{")
            raise RuntimeError("handler failed")

        with pytest.raises(RuntimeError, match="handler failed"):
            handler({}, None)
        assert list(tmp_path.iterdir()) == []

    def test_async_handler_is_wiped_too(self, tmp_path: Path) -> None:
        """A coroutine handler gets the same wipe after it completes."""

        @guard(wipe_tmp=str(tmp_path))
        async def handler(event: object, context: object) -> str:
            (tmp_path / "async.txt").write_text("a")
            return "done"

        assert asyncio.run(handler({}, None)) == "done"
        assert list(tmp_path.iterdir()) == []

    def test_nested_guarded_helper_leaves_the_wipe_to_the_handler(self, tmp_path: Path) -> None:
        """A guarded helper's files survive until the outermost handler returns."""

        @guard(wipe_tmp=str(tmp_path))
        def download() -> Path:
            target = tmp_path / "download.bin"
            target.write_bytes(b"data")
            return target

        @guard(wipe_tmp=str(tmp_path))
        def handler(event: object, context: object) -> bytes:
            return download().read_bytes()

        assert handler({}, None) == b"data"
        assert list(tmp_path.iterdir()) == []

    def test_changed_old_file_is_kept(self, tmp_path: Path) -> None:
        """A file that existed before is left, even if the invocation changed it."""
        (tmp_path / "state.db").write_text("v1")

        @guard(wipe_tmp=str(tmp_path))
        def handler(event: object, context: object) -> None:
            (tmp_path / "state.db").write_text("v2")

        handler({}, None)
        assert (tmp_path / "state.db").read_text() == "v2"

    def test_replaced_old_file_is_removed(self, tmp_path: Path) -> None:
        """Deleting an old file and creating another under its name counts as new."""
        (tmp_path / "swap").write_text("old")
        keep = os.open(tmp_path / "swap", os.O_RDONLY)  # keeps the old inode from being reused

        @guard(wipe_tmp=str(tmp_path))
        def handler(event: object, context: object) -> None:
            os.remove(tmp_path / "swap")
            (tmp_path / "swap").write_text("planted")

        try:
            handler({}, None)
        finally:
            os.close(keep)
        assert not (tmp_path / "swap").exists()

    def test_symlink_created_in_tmp_is_removed_not_followed(
        self, tmp_path: Path, outside_dir: Path
    ) -> None:
        """A link the invocation planted is removed; what it points to is untouched."""
        (outside_dir / "precious").write_text("keep me")
        wiped = tmp_path / "scratch"
        wiped.mkdir()

        @guard(wipe_tmp=str(wiped))
        def handler(event: object, context: object) -> None:
            (wiped / "link").symlink_to(outside_dir)
            (wiped / "dirlink").symlink_to(outside_dir, target_is_directory=True)

        handler({}, None)
        assert list(wiped.iterdir()) == []
        assert (outside_dir / "precious").read_text() == "keep me"


class TestWipeAndPolicy:
    def test_the_wipe_does_not_trip_the_tmp_policy(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Under tmp="alert" the handler's writes are reported; the wipe's removals are not."""

        @guard(tmp="alert", wipe_tmp=str(tmp_path))
        def handler(event: object, context: object) -> None:
            (tmp_path / "f").write_text("x")

        handler({}, None)
        assert list(tmp_path.iterdir()) == []
        lines = violation_lines(capsys.readouterr().out)
        assert [v.get("action") for v in lines if v.get("event") == "violation"] == ["write"]
        assert [v.get("event") for v in lines] == ["violation", "wipe_tmp"]

    def test_the_wipe_line_belongs_to_the_invocation(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The wipe's line, written after the scope is left, carries the handler's request id."""

        @guard(wipe_tmp=str(tmp_path))
        def handler(event: object, context: object) -> None:
            (tmp_path / "f").write_text("x")

        handler({}, FakeLambdaContext(aws_request_id="req-wiped"))
        handler({}, FakeLambdaContext(aws_request_id="req-wiped-again"))
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [(line["lambdaguard"]["event"], line["function_request_id"]) for line in lines] == [
            ("wipe_tmp", "req-wiped"),
            ("wipe_tmp", "req-wiped-again"),
        ]

    def test_nothing_created_means_no_log_line(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An invocation that leaves /tmp as it found it logs nothing."""

        @guard(wipe_tmp=str(tmp_path))
        def handler(event: object, context: object) -> int:
            return 1

        assert handler({}, None) == 1
        assert capsys.readouterr().out == ""


class TestConfiguration:
    def test_true_means_slash_tmp_and_false_means_off(self) -> None:
        """wipe_tmp=True wipes /tmp; False (the default) wipes nothing."""
        assert wipe.root_for(True) == "/tmp"
        assert wipe.root_for(False) is None

    @pytest.mark.parametrize("value", ["relative/dir", 1, b"/tmp"])
    def test_bad_value_is_a_config_error(self, value: object) -> None:
        """Anything but a bool or an absolute path is refused when the guard is built."""
        with pytest.raises(ConfigError) as caught:
            guard(wipe_tmp=value)  # type: ignore[arg-type]
        assert str(caught.value) == (
            f"guard(wipe_tmp={value!r}): accepted: True (wipe /tmp), False, or the absolute "
            "path of the directory to wipe."
        )
