"""Run a hook right after a module is imported: how lambdaguard patches lazily.

A bare handler never imports ``socket`` or ``subprocess``; importing them just to patch
them would cost milliseconds of every cold start. Instead the sensors register a hook
per module name, and the hook patches the module the moment it has been executed, before
the importer gets it back, so no code ever holds an unpatched ``socket.getaddrinfo``.

This is wrapt's ``register_post_import_hook`` (PEP 369 style) in a few lines: wrapt's own
lives in its package, whose ``__init__`` costs ~10 ms (see ``_wrapt``). The mechanism is
the same: a finder first on ``sys.meta_path`` answers for watched names only, asks the
finders after it for the real spec, and hands back that spec with its loader wrapped so
that ``exec_module`` runs the hooks after the module's own code.

The audit hook does not depend on any of this: a module imported some other way
(``importlib.reload``, a custom loader without ``exec_module``) is still guarded by it.
"""

from __future__ import annotations

import sys
import threading
from importlib.machinery import ModuleSpec
from types import ModuleType

from lambdaguard.sensors import _wrapt

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms of cold start)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Hook = Callable[[ModuleType], None]

_hooks: dict[str, list[Hook]] = {}
_lock = threading.RLock()
_finder: _PostImportFinder | None = None


def register(module_name: str, hook: Hook) -> None:
    """Run ``hook(module)`` when ``module_name`` is imported, or now if it already is."""
    global _finder
    with _lock:
        module = sys.modules.get(module_name)
        if module is None:
            _hooks.setdefault(module_name, []).append(hook)
            if _finder is None:
                _finder = _PostImportFinder()
                sys.meta_path.insert(0, _finder)
    if module is not None:
        hook(module)


def _module_executed(module: ModuleType) -> None:
    with _lock:
        hooks = _hooks.pop(module.__name__, [])
    for hook in hooks:
        hook(module)


class _PostImportFinder:
    """The ``sys.meta_path`` entry: wraps the loader of a watched module, nothing else."""

    def __init__(self) -> None:
        self._finding = threading.local()

    def find_spec(
        self, fullname: str, path: Any = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname not in _hooks:
            return None  # the common case: one dict lookup per import
        finding: set[str] = self._finding.__dict__.setdefault("names", set())
        if fullname in finding:
            return None  # our own search below reached us again
        finding.add(fullname)
        try:
            spec = _spec_from_others(self, fullname, path, target)
        finally:
            finding.discard(fullname)
        loader = getattr(spec, "loader", None)
        if spec is None or loader is None or not hasattr(loader, "exec_module"):
            return spec  # a legacy loader: left alone, the audit hook still guards it
        if not isinstance(loader, _loader_class()):
            spec.loader = _loader_class()(loader)
        return spec


def _spec_from_others(
    finder: _PostImportFinder, fullname: str, path: Any, target: ModuleType | None
) -> ModuleSpec | None:
    """What the rest of ``sys.meta_path`` finds for ``fullname``, as the import would."""
    for other in list(sys.meta_path):
        if other is finder:
            continue
        find = getattr(other, "find_spec", None)
        if find is None:
            continue
        spec: ModuleSpec | None = find(fullname, path, target)
        if spec is not None:
            return spec
    return None


_loader_type: type | None = None


def _loader_class() -> type:
    """A proxy for the real loader that runs the hooks after ``exec_module``.

    It is a wrapt ObjectProxy, so everything else a loader offers (``get_resource_reader``,
    ``get_source``, ``is_package``) reaches the real one, and once the module has run, its
    ``__loader__`` and ``__spec__.loader`` are the real loader again.
    """
    global _loader_type
    if _loader_type is None:
        object_proxy: Any = _wrapt.types()[1]

        class PostImportLoader(object_proxy):  # type: ignore[misc]
            def create_module(self, spec: ModuleSpec) -> ModuleType | None:
                create = getattr(self.__wrapped__, "create_module", None)
                created: ModuleType | None = None if create is None else create(spec)
                return created

            def exec_module(self, module: ModuleType) -> None:
                real = self.__wrapped__
                if getattr(module, "__loader__", None) is self:
                    module.__loader__ = real
                spec = getattr(module, "__spec__", None)
                if spec is not None and spec.loader is self:
                    spec.loader = real
                real.exec_module(module)
                _module_executed(module)

        _loader_type = PostImportLoader
    return _loader_type
