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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

_local = threading.local()


def busy() -> bool:
    return _local.__dict__.get("busy", False)  # type: ignore[no-any-return]


@contextmanager
def own_work() -> Iterator[None]:
    """Mark lambdaguard's own work on this thread; nested uses are fine."""
    outer = _local.__dict__.get("busy", False)
    _local.busy = True
    try:
        yield
    finally:
        _local.busy = outer


def quiet_event() -> str | None:
    return _local.__dict__.get("quiet")


def set_quiet(event: str | None) -> str | None:
    """Set the audit event name to skip on this thread; returns the previous one to restore."""
    previous = quiet_event()
    _local.quiet = event
    return previous


QuietMatch = Callable[[tuple[Any, ...]], bool]


def quiet_matches(args: tuple[Any, ...]) -> bool:
    """Whether the quiet event with these audit arguments is the call the patch decided.

    Without a matcher, any event of the quiet name is skipped. A matcher narrows that to
    the decided call's own arguments, because user code can run between the patch's
    decision and the C function's audit event (a ``str`` subclass's ``encode``, an
    ``__index__``, a finalizer) and must not borrow the mark for an operation of its own.
    """
    same: QuietMatch | None = _local.__dict__.get("quiet_same")
    return same is None or same(args)


def set_quiet_match(same: QuietMatch | None) -> QuietMatch | None:
    """Set the quiet event's matcher on this thread; returns the previous one to restore."""
    previous: QuietMatch | None = _local.__dict__.get("quiet_same")
    _local.quiet_same = same
    return previous
