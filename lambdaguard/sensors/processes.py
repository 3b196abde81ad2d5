"""Processes sensors: patches and audit-event handlers (see lambdaguard/sensors/__init__.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lambdaguard.policy import Active


def install() -> None:
    """Apply this area's patches (once; called by lambdaguard.sensors.ensure_installed)."""


AUDIT_HANDLERS: dict[str, Callable[[tuple[Any, ...], Active], None]] = {}
