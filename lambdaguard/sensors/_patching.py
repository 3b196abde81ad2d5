"""How a patch is applied, in one place, and the call-through helper.

A patch is a wrapt ``FunctionWrapper``: it keeps the patched object's name, signature and
descriptor behaviour (a patched method still binds like a method), which a plain closure
would not. The type comes from wrapt's C extension, loaded on first activation without
the rest of wrapt's package (``_wrapt`` says why), so ``import lambdaguard`` stays cheap.
"""

from __future__ import annotations

import importlib
import types

from lambdaguard import _internal
from lambdaguard.sensors import _post_import, _wrapt

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms of cold start)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def patch(owner: object, attribute: str, wrapper: Callable[..., Any]) -> None:
    """Wrap ``owner.attribute`` (dotted for class attributes, e.g. ``"socket.connect"``)."""
    parent, name, original = _resolve(owner, attribute)
    patched = _wrapper_class()(original, wrapper)
    # Where the patch lives, so that the patched function pickles by that name.
    if isinstance(owner, types.ModuleType):
        patched._self_where = (owner.__name__, attribute)
    else:
        owner_type: Any = owner
        patched._self_where = (owner_type.__module__, f"{owner_type.__qualname__}.{attribute}")
    setattr(parent, name, patched)


def _resolve(owner: object, attribute: str) -> tuple[object, str, object]:
    """``(parent, name, original)`` for a dotted attribute path, as wrapt's resolve_path.

    On a class the attribute is read from the ``__dict__`` of the class in the MRO that
    defines it, not with getattr: getattr would bind a method or run a descriptor, and
    the patch must wrap the plain function (or C method descriptor) itself.
    """
    parent: object = owner
    names = attribute.split(".")
    original = _lookup_unbound(parent, names[0])
    for name in names[1:]:
        parent = original
        original = _lookup_unbound(parent, name)
    return parent, names[-1], original


def _lookup_unbound(parent: object, name: str) -> object:
    if isinstance(parent, type):
        for klass in parent.__mro__:
            if name in klass.__dict__:
                return klass.__dict__[name]
    return getattr(parent, name)


def lookup(module: str, path: str) -> Any:
    """What ``module.path`` is in this process: the unpickling side of a patched function."""
    found: Any = importlib.import_module(module)
    for part in path.split("."):
        found = getattr(found, part)
    return found


_picklable: type | None = None


def _wrapper_class() -> type:
    global _picklable
    if _picklable is not None:
        return _picklable
    function_wrapper: Any = _wrapt.types()[0]

    class PicklableFunctionWrapper(function_wrapper):  # type: ignore[misc]
        # wrapt's proxies refuse to pickle. A patched function must still pickle as the
        # function it stands for (pool.submit(os.remove, path), multiprocessing targets):
        # by the name it was patched under, so the receiving process gets its own
        # os.remove, patched or not.
        def __reduce_ex__(self, protocol: object) -> tuple[Any, ...]:
            return (lookup, self._self_where)

    _picklable = PicklableFunctionWrapper
    return _picklable


def register_post_import(module_name: str, hook: Callable[[Any], None]) -> None:
    """Run ``hook(module)`` when ``module_name`` is imported, or now if it already is."""
    _post_import.register(module_name, hook)


def proceed(
    audit_event: str,
    wrapped: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    same: _internal.QuietMatch | None = None,
) -> Any:
    """Call the original after a patch has decided; the audit hook skips ``audit_event``.

    The original raises the same audit event on its way into C; marking it quiet keeps
    one operation from being decided and reported twice. ``same(audit_args)`` says which
    event is that operation's own: pass it whenever user code can run inside the original
    before its audit event (see ``_internal.is_quiet``).
    """
    previous = _internal.set_quiet(audit_event, same)
    try:
        return wrapped(*args, **kwargs)
    finally:
        _internal.restore_quiet(previous)
