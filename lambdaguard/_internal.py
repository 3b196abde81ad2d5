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
from collections.abc import Iterator
from contextlib import contextmanager

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
