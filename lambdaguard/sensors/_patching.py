"""The few wrapt calls lambdaguard makes, in one place, and the call-through helper.

wrapt is imported here, lazily, on first activation: ``import lambdaguard`` stays cheap.
wrapt's FunctionWrapper keeps the patched object's name, signature and descriptor
behaviour (a patched method still binds like a method), which a plain closure would not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lambdaguard import _internal


def patch(owner: object, attribute: str, wrapper: Callable[..., Any]) -> None:
    """Wrap ``owner.attribute`` (dotted for class attributes, e.g. ``"socket.connect"``)."""
    import wrapt

    wrapt.wrap_function_wrapper(owner, attribute, wrapper)


def register_post_import(module_name: str, hook: Callable[[Any], None]) -> None:
    """Run ``hook(module)`` when ``module_name`` is imported, or now if it already is."""
    import wrapt

    wrapt.register_post_import_hook(hook, module_name)


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
    before its audit event (see ``_internal.quiet_matches``).
    """
    previous = _internal.set_quiet(audit_event)
    previous_same = _internal.set_quiet_match(same)
    try:
        return wrapped(*args, **kwargs)
    finally:
        _internal.set_quiet(previous)
        _internal.set_quiet_match(previous_same)
