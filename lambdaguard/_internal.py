"""Per-thread flags that keep lambdaguard's own work out of its own sensors.

``busy``: lambdaguard itself is working (writing a log line, importing powertools,
reading configuration). Sensors let everything through, so the guard never trips over
its own logging and never recurses.

``quiet``: the audit event a patch has already decided. The patch decides an operation,
then calls the original function, which raises the same operation's audit event; the
audit hook skips that one event name so that the operation is decided and reported once.
"""

from __future__ import annotations

import threading

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms of cold start)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any
    QuietMatch = Callable[[tuple[Any, ...]], bool]
    QuietMark = tuple[str, "QuietMatch | None"] | None

_local = threading.local()


def busy() -> bool:
    return _local.__dict__.get("busy", False)  # type: ignore[no-any-return]


class own_work:  # a lower-case name: used like contextlib's context managers
    """Mark lambdaguard's own work on this thread; nested uses are fine.

    Also around the import of a lambdaguard module loaded on first use (sensors/_masking,
    sensors/_layout, _inherit, wipe), which may first be needed inside a scope: the import
    system's read of that file is lambdaguard's, not the user's, and must not be judged by
    the user's policy (a checkout under /tmp is governed by the tmp policy).

    A class, not a ``@contextmanager`` generator: cheaper per use, and no contextlib import.
    """

    __slots__ = ("_outer",)

    def __enter__(self) -> None:
        self._outer: bool = _local.__dict__.get("busy", False)
        _local.busy = True

    def __exit__(self, *exc_info: object) -> None:
        _local.busy = self._outer


# (audit event name, matcher): what the audit hook skips on this thread, if anything.


def is_quiet(event: str, args: tuple[Any, ...]) -> bool:
    """Whether the audit hook should skip this event: the call a patch already decided.

    Without a matcher, any event of the quiet name is skipped. A matcher narrows that to
    the decided call's own arguments, because user code can run between the patch's
    decision and the C function's audit event (a ``str`` subclass's ``encode``, an
    ``__index__``, a finalizer) and must not borrow the mark for an operation of its own.
    """
    mark: QuietMark = _local.__dict__.get("quiet")
    if mark is None or mark[0] != event:
        return False
    same = mark[1]
    return same is None or same(args)


def set_quiet(event: str, same: QuietMatch | None = None) -> QuietMark:
    """Mark ``event`` (with its matcher) quiet on this thread; return the mark to restore.

    The name and its matcher are set and restored together, so a nested mark never
    inherits an outer mark's matcher.
    """
    previous: QuietMark = _local.__dict__.get("quiet")
    _local.quiet = (event, same)
    return previous


def restore_quiet(previous: QuietMark) -> None:
    _local.quiet = previous


def mark_busy() -> bool:
    """Set the busy flag without a context manager (the audit hook's hot path); returns it."""
    outer: bool = _local.__dict__.get("busy", False)
    _local.busy = True
    return outer


def restore_busy(outer: bool) -> None:
    _local.busy = outer


# functools.update_wrapper's assignments (3.12 added __type_params__; a name the wrapped
# object lacks is skipped, as functools does).
_IDENTITY = (
    "__module__",
    "__name__",
    "__qualname__",
    "__doc__",
    "__annotations__",
    "__type_params__",
)


def wraps(wrapped: Callable[..., Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``functools.wraps`` without importing functools.

    On 3.13 ``functools`` imports ``collections`` (with ``keyword``, ``operator``,
    ``reprlib``): about 2 ms of a bare cold start, for three attribute copies.
    """

    def decorate(wrapper: Callable[..., Any]) -> Callable[..., Any]:
        for name in _IDENTITY:
            try:
                value = getattr(wrapped, name)
            except AttributeError:
                continue
            setattr(wrapper, name, value)
        wrapper.__dict__.update(getattr(wrapped, "__dict__", {}))
        wrapper.__wrapped__ = wrapped  # type: ignore[attr-defined]
        return wrapper

    return decorate
