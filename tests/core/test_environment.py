"""LAMBDAGUARD_* variables: precedence, DRY_RUN, and one test per bad value."""

from __future__ import annotations

import pytest

from lambdaguard import ConfigError, Mode, Network, Tmp, Violation, guard
from tests.helpers import connect, counting_listener


def network_rule(g: guard) -> Network:
    rule = g.policy.rules["network"]
    assert isinstance(rule, Network)
    return rule


class TestPrecedence:
    def test_bare_guard_takes_its_policy_from_the_environment(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """@guard() with LAMBDAGUARD_NETWORK=block blocks the network."""
        monkeypatch.setenv("LAMBDAGUARD_NETWORK", "block")
        with counting_listener() as listener:
            with guard(), pytest.raises(Violation):
                connect(listener.port)
            assert listener.accepted == 0

    def test_code_beats_environment_per_policy(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """guard(network='alert') wins over LAMBDAGUARD_NETWORK=block."""
        monkeypatch.setenv("LAMBDAGUARD_NETWORK", "block")
        assert network_rule(guard(network="alert")).mode is Mode.ALERT

    def test_environment_fills_the_policies_code_does_not_name(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """guard(tmp='block') with LAMBDAGUARD_NETWORK=block blocks both."""
        monkeypatch.setenv("LAMBDAGUARD_NETWORK", "block")
        g = guard(tmp="block")
        assert (g.policy.rules["tmp"].mode, g.policy.rules["network"].mode) == (
            Mode.BLOCK,
            Mode.BLOCK,
        )

    def test_default_is_allow(self) -> None:
        """With no argument and no variable every policy is allow."""
        assert {rule.mode for rule in guard().policy.rules.values()} == {Mode.ALLOW}

    def test_environment_allow_list_applies_to_a_mode_given_in_code(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """guard(network='block') takes its allow-list from LAMBDAGUARD_NETWORK_ALLOW."""
        monkeypatch.setenv("LAMBDAGUARD_NETWORK_ALLOW", "*.amazonaws.com:443, 10.0.0.0/8")
        assert network_rule(guard(network="block")).allow == ("*.amazonaws.com:443", "10.0.0.0/8")

    def test_rule_object_allow_list_beats_environment(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A rule object's own allow-list is not replaced by the variable."""
        monkeypatch.setenv("LAMBDAGUARD_NETWORK_ALLOW", "10.0.0.0/8")
        rule = network_rule(guard(network=Network("block", allow=["api.example.com:443"])))
        assert rule.allow == ("api.example.com:443",)

    def test_modes_accept_any_case_and_the_enum(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """' Block ', 'BLOCK' and Mode.BLOCK mean the same."""
        monkeypatch.setenv("LAMBDAGUARD_TMP", " Block ")
        g = guard(network=Mode.BLOCK, subprocess="ALERT")
        modes = {name: rule.mode for name, rule in g.policy.rules.items()}
        assert (modes["network"], modes["tmp"], modes["subprocess"]) == (
            Mode.BLOCK,
            Mode.BLOCK,
            Mode.ALERT,
        )


class TestDryRun:
    def test_dry_run_turns_code_blocks_into_alerts(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """LAMBDAGUARD_DRY_RUN=true wins over guard(network='block'): logged, not blocked."""
        monkeypatch.setenv("LAMBDAGUARD_DRY_RUN", "true")
        with counting_listener() as listener:
            with guard(network="block"):
                connect(listener.port)
            assert listener.wait_for(1) == 1

    def test_dry_run_false_changes_nothing(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """LAMBDAGUARD_DRY_RUN=false leaves block as block."""
        monkeypatch.setenv("LAMBDAGUARD_DRY_RUN", "false")
        assert network_rule(guard(network="block")).mode is Mode.BLOCK


class TestBadValues:
    """Each bad value raises ConfigError (a ValueError) naming the input, value and what is accepted."""

    def test_unknown_mode_in_variable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("LAMBDAGUARD_NETWORK", "blok")
        with pytest.raises(ConfigError) as caught:
            guard()
        assert str(caught.value) == (
            "LAMBDAGUARD_NETWORK: 'blok' is not a mode; accepted: 'allow', 'alert', 'block' "
            "(or a lambdaguard.Mode)."
        )
        assert isinstance(caught.value, ValueError)

    def test_unknown_mode_in_code(self) -> None:
        with pytest.raises(ConfigError) as caught:
            guard(network="deny")
        assert str(caught.value) == (
            "guard(network=...): 'deny' is not a mode; accepted: 'allow', 'alert', 'block' "
            "(or a lambdaguard.Mode)."
        )

    def test_malformed_cidr(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("LAMBDAGUARD_NETWORK", "block")
        monkeypatch.setenv("LAMBDAGUARD_NETWORK_ALLOW", "10.0.0.0/33")
        with pytest.raises(ConfigError) as caught:
            guard()
        assert str(caught.value).startswith(
            "LAMBDAGUARD_NETWORK_ALLOW: allow-list entry '10.0.0.0/33' is not a valid CIDR "
            "block; accepted: host, host:port,"
        )

    def test_malformed_port(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("LAMBDAGUARD_NETWORK_ALLOW", "api.example.com:99999")
        with pytest.raises(ConfigError) as caught:
            guard()
        assert str(caught.value).startswith(
            "LAMBDAGUARD_NETWORK_ALLOW: allow-list entry 'api.example.com:99999' has port "
            "'99999'; a port is a whole number from 1 to 65535; accepted: host,"
        )

    def test_malformed_allow_entry_in_code(self) -> None:
        with pytest.raises(ConfigError) as caught:
            Network("block", allow=["bad host!"])
        assert str(caught.value).startswith(
            "Network(allow=...): allow-list entry 'bad host!' is not a host name, address or block;"
        )

    def test_allow_entry_that_is_not_a_string(self) -> None:
        with pytest.raises(ConfigError) as caught:
            Network("block", allow=[443])  # type: ignore[list-item]
        assert str(caught.value) == (
            "Network(allow=...): allow-list entry 443 is not a string; accepted: a list of "
            "strings or one comma-separated string."
        )

    def test_unknown_variable_is_a_typo_not_a_silent_allow(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("LAMBDAGUARD_NETWROK", "block")
        with pytest.raises(ConfigError) as caught:
            guard()
        message = str(caught.value)
        assert message.startswith(
            "LAMBDAGUARD_NETWROK='block' is not a lambdaguard variable; accepted: "
        )
        assert "LAMBDAGUARD_NETWORK," in message

    def test_unknown_policy_keyword(self) -> None:
        with pytest.raises(ConfigError) as caught:
            guard(netwrk="block")
        assert str(caught.value) == (
            "guard(netwrk=...): 'netwrk' is not a policy; accepted: handler_source, network, "
            "subprocess, tmp."
        )

    def test_rule_of_the_wrong_policy(self) -> None:
        with pytest.raises(ConfigError) as caught:
            guard(network=Tmp("block"))
        assert str(caught.value) == (
            "guard(network=Tmp('block')): a Tmp rule cannot set the 'network' policy; "
            "accepted: a mode string, a lambdaguard.Mode or a Network(...) rule."
        )

    def test_value_of_the_wrong_type(self) -> None:
        with pytest.raises(ConfigError) as caught:
            guard(network=True)  # type: ignore[arg-type]
        assert str(caught.value) == (
            "guard(network=True): accepted: a mode string ('block', 'alert', 'allow'), a "
            "lambdaguard.Mode or a Network(...) rule."
        )

    def test_bad_dry_run(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("LAMBDAGUARD_DRY_RUN", "maybe")
        with pytest.raises(ConfigError) as caught:
            guard()
        assert str(caught.value) == (
            "LAMBDAGUARD_DRY_RUN='maybe' is not a boolean; accepted: true, false, 1, 0, yes, no."
        )

    def test_bad_report_limit(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("LAMBDAGUARD_REPORT_LIMIT", "0")
        with pytest.raises(ConfigError) as caught:
            guard()
        assert str(caught.value) == (
            "LAMBDAGUARD_REPORT_LIMIT='0' is not a positive whole number; accepted: 1, 2, 3, ..."
        )

    def test_error_is_raised_at_decoration_not_at_call(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A bad value fails when the handler module is imported, not on the first request."""
        monkeypatch.setenv("LAMBDAGUARD_SUBPROCESS", "sometimes")
        with pytest.raises(ConfigError, match="LAMBDAGUARD_SUBPROCESS"):

            @guard(network="block")
            def handler() -> None:
                pass


def test_every_accepted_variable_is_documented() -> None:
    """docs/environment.md lists every LAMBDAGUARD_* name lambdaguard accepts, and no other."""
    import re
    from pathlib import Path

    from lambdaguard.environment import known_variables

    doc = (Path(__file__).parents[2] / "docs" / "environment.md").read_text()
    documented = set(re.findall(r"`(LAMBDAGUARD_[A-Z_]+)`", doc))
    documented.discard("LAMBDAGUARD_")
    policy_rows = {"LAMBDAGUARD_<POLICY>_ALLOW"}
    accepted = {name for name in known_variables() if not name.endswith("_ALLOW")}
    assert accepted <= documented
    assert documented - accepted <= policy_rows
