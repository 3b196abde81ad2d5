"""The exceptions lambdaguard raises, and why each has the bases it has.

    Exception
    ├── Violation                       an operation was blocked by a policy
    │   ├── NetworkViolation            not an OSError: must not look transient
    │   ├── FileViolation   (+ PermissionError)
    │   └── ProcessViolation (+ PermissionError)
    └── ValueError
        └── ConfigError                 a policy could not be built from its input

See docs/exceptions.md for the same tree with examples.
"""

from __future__ import annotations

import errno

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms of cold start)
if TYPE_CHECKING:
    from typing import Any


class Violation(Exception):
    """An operation was refused by a lambdaguard policy in ``block`` mode.

    Carries ``policy`` (e.g. ``"network"``), ``mode`` (always ``"block"`` when raised),
    ``action`` (e.g. ``"connect"``) and ``target`` (e.g. ``"203.0.113.9:443"``).

    The violation has already been logged as one JSON line when it is raised.
    """

    def __init__(self, policy: str, mode: str, action: str, target: str) -> None:
        self.policy = policy
        self.mode = mode
        self.action = action
        self.target = target
        super().__init__(self._message())

    def _message(self) -> str:
        return f"lambdaguard: {self.policy} policy blocked {self.action} {self.target!r}"

    def __reduce__(self) -> tuple[Any, ...]:
        # Violations cross process pools (a blocked call in a worker is re-raised in the
        # parent), so they must pickle with their fields, not with the formatted message.
        return (type(self), (self.policy, self.mode, self.action, self.target))


class NetworkViolation(Violation):
    """A network operation (connect, DNS lookup, send, bind, listen) was blocked.

    Deliberately *not* an ``OSError``: urllib3, requests, httpx and botocore turn
    ``OSError`` from a connect into a retryable connection error, so a blocked connect
    would become a retry storm with one log line per attempt. A plain ``Exception``
    passes through their retry loops unchanged and fails the call once.
    """


class _PermissionViolation(Violation, PermissionError):
    # PermissionError (errno EACCES) so that code which already copes with a read-only
    # file system or a missing permission degrades gracefully instead of crashing.
    def __init__(self, policy: str, mode: str, action: str, target: str) -> None:
        Violation.__init__(self, policy, mode, action, target)
        # OSError's own fields, set after Violation.__init__ so str(e) stays our message.
        self.errno = errno.EACCES
        self.strerror = self._message()
        self.filename = target

    def __str__(self) -> str:
        return self._message()


class FileViolation(_PermissionViolation):
    """A file operation (open, create, delete, rename, list, ...) was blocked.

    Also a ``PermissionError`` with ``errno.EACCES`` and ``filename`` set to the path.
    """


class ProcessViolation(_PermissionViolation):
    """Starting or becoming another program was blocked.

    Also a ``PermissionError`` with ``errno.EACCES``; ``filename`` is the executable.
    """


class ConfigError(ValueError):
    """A policy could not be built: bad mode, allow-list entry, keyword or variable.

    The message names the input (argument or ``LAMBDAGUARD_*`` variable), the value
    given, and what is accepted. Raised when the policy is built (decoration,
    ``configure()``, scope entry), never later and never silently.
    """


VIOLATION_CLASSES: dict[str, type[Violation]] = {
    "network": NetworkViolation,
    "tmp": FileViolation,
    "handler_source": FileViolation,
    "subprocess": ProcessViolation,
}
"""Which exception a blocked operation of each policy raises; policies register here."""


def violation_for(policy: str, mode: str, action: str, target: str) -> Violation:
    """Build the exception a blocked operation of ``policy`` raises."""
    cls = VIOLATION_CLASSES.get(policy, Violation)
    return cls(policy, mode, action, target)
