"""The Subprocess rule: construction, configuration errors and equality."""

from __future__ import annotations

import pytest

from lambdaguard import ConfigError, Subprocess, guard


class TestRule:
    def test_inherit_must_be_a_boolean(self) -> None:
        """inherit="yes" is refused with a message naming the argument and what is accepted."""
        with pytest.raises(ConfigError) as caught:
            Subprocess("block", inherit="yes")  # type: ignore[arg-type]
        assert str(caught.value) == (
            "Subprocess(inherit=...): 'yes' is not a boolean; accepted: True, False or None "
            "(read LAMBDAGUARD_SUBPROCESS_INHERIT)."
        )

    def test_inherit_variable_is_read_when_the_rule_is_built(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """LAMBDAGUARD_SUBPROCESS_INHERIT is read at build time, and a later change is ignored."""
        monkeypatch.setenv("LAMBDAGUARD_SUBPROCESS_INHERIT", "true")
        rule = Subprocess("block")
        monkeypatch.setenv("LAMBDAGUARD_SUBPROCESS_INHERIT", "false")
        assert rule.inherit is True
        assert Subprocess("block", inherit=False).inherit is False

    def test_bad_inherit_variable_is_a_config_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A bad LAMBDAGUARD_SUBPROCESS_INHERIT fails when the policy is built."""
        monkeypatch.setenv("LAMBDAGUARD_SUBPROCESS_INHERIT", "maybe")
        with pytest.raises(ConfigError) as caught:
            guard(subprocess="block")
        assert "LAMBDAGUARD_SUBPROCESS_INHERIT='maybe' is not a boolean" in str(caught.value)

    def test_nul_in_an_entry_is_a_config_error(self) -> None:
        """An entry with a NUL byte is refused, naming where it came from."""
        with pytest.raises(ConfigError, match=r"LAMBDAGUARD_SUBPROCESS_ALLOW: allow-list entry"):
            Subprocess.from_sources(
                "block",
                "/bin/x\0y",
                mode_source="LAMBDAGUARD_SUBPROCESS",
                allow_source="LAMBDAGUARD_SUBPROCESS_ALLOW",
            )

    def test_repr_shows_the_allow_list_and_inherit(self) -> None:
        """The repr reads like the call that made the rule."""
        assert repr(Subprocess("block", allow=["git"], inherit=True)) == (
            "Subprocess('block', allow=['git'], inherit=True)"
        )

    def test_rules_differing_in_inherit_are_not_equal(self) -> None:
        """inherit is part of a rule's identity."""
        assert Subprocess("block", inherit=True) != Subprocess("block", inherit=False)
        assert Subprocess("block", allow=["git"]) == Subprocess("block", allow="git")
