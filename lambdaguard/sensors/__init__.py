"""Sensors: where guarded operations are seen. Installed once, on first activation.

Two layers feed the same decision point (lambdaguard.decide):

* patches (wrapt) on the Python APIs: they see the call as Python code made it and can
  clean up (close a socket) before raising; one module per area;
* the PEP 578 audit hook (sensors/audit.py): the backstop for code that goes around the
  patches (``_socket``, ``posix``, ``_posixsubprocess``, restored originals).

Each area module exposes ``install()`` (apply its patches) and ``AUDIT_HANDLERS``
(audit event name -> handler); the audit hook is the union of those tables.
"""

from __future__ import annotations

import importlib
import threading
from types import ModuleType

from lambdaguard import _internal

# The areas, in install order. Each is a module in this package.
AREAS = ("network", "files", "processes")

_installed = False
_lock = threading.Lock()


def area_modules() -> list[ModuleType]:
    return [importlib.import_module(f"lambdaguard.sensors.{name}") for name in AREAS]


def ensure_installed() -> None:
    """Install propagation, patches and the audit hook, once per process, thread-safely."""
    global _installed
    if _installed:
        return
    with _lock:
        if _installed:
            return
        with _internal.own_work():
            from lambdaguard import propagation
            from lambdaguard.sensors import audit

            propagation.install()
            modules = area_modules()
            for module in modules:
                module.install()
            audit.install(modules)
        _installed = True


def installed() -> bool:
    return _installed
