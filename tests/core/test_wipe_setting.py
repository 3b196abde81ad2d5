"""How wipe_tmp is switched on: in code for a decorated handler, or by LAMBDAGUARD_WIPE_TMP."""

from __future__ import annotations

from pathlib import Path

import pytest

from lambdaguard import ConfigError, guard
from tests.helpers import FakeLambdaContext, events


class TestWipeSetting:
    def test_environment_variable_switches_wiping_on_for_decorated_handlers(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """LAMBDAGUARD_WIPE_TMP=<dir> wipes what each invocation created there, and keeps the rest."""
        scratch = tmp_path / "scratch"
        scratch.mkdir()
        (scratch / "old.txt").write_text("from before")
        monkeypatch.setenv("LAMBDAGUARD_WIPE_TMP", str(scratch))

        @guard()
        def handler(event: dict[str, str], context: FakeLambdaContext) -> str:
            (scratch / event["name"]).write_text("left behind")
            return sorted(p.name for p in scratch.iterdir())[-1]

        assert handler({"name": "one.txt"}, FakeLambdaContext()) == "one.txt"
        assert handler({"name": "two.txt"}, FakeLambdaContext()) == "two.txt"
        assert sorted(p.name for p in scratch.iterdir()) == ["old.txt"]
        wipes = events(capsys.readouterr().out, "wipe_tmp")
        assert [(w["lambdaguard"]["root"], w["lambdaguard"]["removed"]) for w in wipes] == [
            (str(scratch), 1),
            (str(scratch), 1),
        ]
        assert (scratch / "old.txt").read_text() == "from before"

    def test_environment_variable_false_leaves_files(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """LAMBDAGUARD_WIPE_TMP=false wipes nothing."""
        monkeypatch.setenv("LAMBDAGUARD_WIPE_TMP", "false")

        @guard()
        def handler(event: object, context: object) -> None:
            (tmp_path / "kept.txt").write_text("x")

        handler({}, FakeLambdaContext())
        assert (tmp_path / "kept.txt").exists()

    def test_bad_environment_value_names_the_variable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A value that is neither a boolean nor an absolute path is a ConfigError."""
        monkeypatch.setenv("LAMBDAGUARD_WIPE_TMP", "sometimes")
        with pytest.raises(ConfigError) as caught:
            guard()
        assert str(caught.value) == (
            "LAMBDAGUARD_WIPE_TMP='sometimes' is neither a boolean nor an absolute path; "
            "accepted: true, false, 1, 0, yes, no, or /absolute/directory."
        )

    def test_with_block_cannot_wipe(self, tmp_path: Path) -> None:
        """with guard(wipe_tmp=...) is refused: a with-block is not an invocation."""
        g = guard(wipe_tmp=str(tmp_path))
        with pytest.raises(ConfigError, match="a with-block has no invocation to wipe after"):
            g.__enter__()

    def test_environment_wipe_does_not_break_with_blocks(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """With LAMBDAGUARD_WIPE_TMP set, plain with-blocks still work (and do not wipe)."""
        monkeypatch.setenv("LAMBDAGUARD_WIPE_TMP", str(tmp_path))
        with guard(network="block"):
            (tmp_path / "inside.txt").write_text("x")
        assert (tmp_path / "inside.txt").exists()
