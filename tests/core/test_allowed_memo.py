"""The memo of allowed operations never lets a stricter scope, or an alert, be skipped."""

from __future__ import annotations

import socket

import pytest

from lambdaguard import Network, Violation, guard
from tests.helpers import FakeLambdaContext, connect, counting_listener, events


class TestAllowedMemo:
    def test_allowed_connect_then_nested_block_still_blocks(self) -> None:
        """An address allowed (and memoised) in the outer scope is blocked by a nested guard."""
        with counting_listener() as listener:
            outer = guard(network=Network("block", allow=[f"127.0.0.1:{listener.port}"]))
            with outer:
                connect(listener.port)
                connect(listener.port)
                with guard(network="block"), pytest.raises(Violation):
                    connect(listener.port)
                connect(listener.port)
            assert listener.wait_for(3) == 3

    def test_alerts_are_reported_every_time(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Three alerted connects give three lines: alerts are never memoised."""
        with counting_listener() as listener:
            with guard(network="alert"):
                for _ in range(3):
                    connect(listener.port)
            assert listener.wait_for(3) == 3
        assert len(events(capsys.readouterr().out)) == 3

    def test_memo_survives_invocations_but_not_policy_changes(self) -> None:
        """The same handler re-uses its verdicts; a handler with another policy does not share them."""
        with counting_listener() as listener:
            allowed = Network("block", allow=[f"127.0.0.1:{listener.port}"])

            @guard(network=allowed)
            def permissive(event: object, context: object) -> None:
                connect(listener.port)

            @guard(network=Network("block", allow=["127.0.0.2"]))
            def strict(event: object, context: object) -> None:
                connect(listener.port)

            for _ in range(3):
                permissive({}, FakeLambdaContext())
                with pytest.raises(Violation):
                    strict({}, FakeLambdaContext())
            assert listener.wait_for(3) == 3

    def test_lookup_allowed_by_one_rule_is_judged_again_under_a_stricter_one(self) -> None:
        """An allowed lookup memoised under one guard is refused under a guard that does not allow it."""
        with guard(network=Network("block", allow=["localhost"])):
            socket.getaddrinfo("localhost", 80)
            with guard(network=Network("block", allow=["other.example"])), pytest.raises(Violation):
                socket.getaddrinfo("localhost", 80)
