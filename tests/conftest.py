"""Shared fixtures: every test starts with no baseline and no scope."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lambdaguard import scope


@pytest.fixture(autouse=True)
def _no_policy_in_force() -> Iterator[None]:
    scope.reset_for_tests()
    yield
    scope.reset_for_tests()
