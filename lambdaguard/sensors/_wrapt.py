"""wrapt's C proxy types, without running wrapt's package ``__init__``.

The patches are wrapt ``FunctionWrapper`` objects. wrapt 1.x keeps them in a C extension,
``wrapt._wrappers``, that depends on nothing; but ``import wrapt`` also runs the package's
``__init__``, whose decorator helpers import ``inspect`` (and with it ``ast``, ``dis``,
``tokenize``, ``enum``, ``re``): about 10 ms of a bare Lambda cold start, for code
lambdaguard never calls.

So the extension is loaded by itself, under its own name ``wrapt._wrappers`` in
``sys.modules``. When the application imports wrapt later, wrapt's ``__wrapt__`` module
imports ``._wrappers``, finds it there, and uses these very types: ``isinstance(patched,
wrapt.FunctionWrapper)`` holds, and tools that wrap on top of lambdaguard's patches
(tracers) see what they would see if lambdaguard had imported wrapt itself.

Everything unusual falls back to ``import wrapt``: the package already imported,
``WRAPT_DISABLE_EXTENSIONS`` set (wrapt then uses its pure-Python types, and so do we),
no compiled extension found (a pure-Python wheel), or the extension failing to load.
"""

from __future__ import annotations

import os
import sys
from importlib.machinery import PathFinder
from types import ModuleType

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms of cold start)
if TYPE_CHECKING:
    from typing import Any

EXTENSION = "wrapt._wrappers"


def _extension_alone() -> ModuleType | None:
    """Load ``wrapt._wrappers`` without its package, or None if that is not the safe way."""
    if EXTENSION in sys.modules:
        return sys.modules[EXTENSION]
    if "wrapt" in sys.modules or os.environ.get("WRAPT_DISABLE_EXTENSIONS"):
        return None  # wrapt decides for itself; use what it decided
    package = PathFinder.find_spec("wrapt")
    locations = None if package is None else package.submodule_search_locations
    if not locations:
        return None
    spec = PathFinder.find_spec(EXTENSION, list(locations))
    if spec is None or spec.loader is None or not spec.origin or spec.origin.endswith(".py"):
        return None  # no compiled extension here: the pure-Python wheel
    try:
        module = spec.loader.create_module(spec)
        if module is None:
            return None
        spec.loader.exec_module(module)
    except Exception:  # a broken or foreign build: let wrapt's own import report it
        return None
    module.__spec__ = spec
    module.__loader__ = spec.loader
    module.__package__ = "wrapt"
    sys.modules[EXTENSION] = module
    return module


def types() -> tuple[type, type]:
    """``(FunctionWrapper, ObjectProxy)`` from the C extension, or from wrapt itself."""
    extension = _extension_alone()
    source: Any = extension
    if extension is None:
        import wrapt

        source = wrapt
    return source.FunctionWrapper, source.ObjectProxy
