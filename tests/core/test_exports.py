"""The public API: exactly the names the contract lists, importable from the top level."""

from __future__ import annotations

import types

import lambdaguard

CONTRACT = {
    "Mode",
    "Network",
    "Tmp",
    "Subprocess",
    "guard",
    "configure",
    "Violation",
    "ConfigError",
}


def test_contract_names_are_exported() -> None:
    """Every name DESIGN.md promises is in lambdaguard.__all__ and importable."""
    assert set(lambdaguard.__all__) >= CONTRACT
    for name in lambdaguard.__all__:
        assert getattr(lambdaguard, name) is not None


def test_all_has_no_private_or_missing_names() -> None:
    """__all__ lists public names only, each defined; it fails when the list drifts."""
    assert sorted(lambdaguard.__all__) == lambdaguard.__all__
    assert all(not name.startswith("_") for name in lambdaguard.__all__)
    public = {
        n
        for n in dir(lambdaguard)
        if not n.startswith("_") and not isinstance(getattr(lambdaguard, n), types.ModuleType)
    }
    assert public == set(lambdaguard.__all__)


def test_exported_objects_say_lambdaguard() -> None:
    """Tracebacks read lambdaguard.Violation, not lambdaguard.errors.Violation."""
    for name in lambdaguard.__all__:
        assert getattr(lambdaguard, name).__module__ == "lambdaguard"


def test_config_error_is_a_value_error_and_violations_have_the_contract_bases() -> None:
    """ConfigError is a ValueError; file and process violations are PermissionErrors; network ones are not OSErrors."""
    assert issubclass(lambdaguard.ConfigError, ValueError)
    assert issubclass(lambdaguard.FileViolation, PermissionError)
    assert issubclass(lambdaguard.ProcessViolation, PermissionError)
    assert not issubclass(lambdaguard.NetworkViolation, OSError)
    assert issubclass(lambdaguard.NetworkViolation, lambdaguard.Violation)
