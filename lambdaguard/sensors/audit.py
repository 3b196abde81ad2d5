"""The PEP 578 audit hook: the backstop that sees what the patches cannot.

Invariant: every guarded operation that reaches CPython's C code raises an audit event,
and for each event we care about, the hook decides it unless a patch already has.

Things that don't work:

* Only patches: code can import ``_socket``, ``posix`` or ``_posixsubprocess`` directly,
  keep a reference taken before the patch (``from socket import getaddrinfo``), or put
  the original function back. None of those go through a patch.
* Only the audit hook: it sees C-level arguments only (no ``dir_fd`` on ``open``, no
  chance to close a socket before raising), and it runs for *every* audit event in the
  process, so it must stay nearly free.
* Deciding twice: a patched call reaches the C code and raises the same audit event; a
  naive hook would decide and report the operation a second time.

Solution: patches decide first and mark the one audit event name they have decided as
quiet for the duration of the original call (lambdaguard._internal); the hook skips that
event. The hook cannot be removed once added (PEP 578), so its fast path is one dict
lookup on the event name and a return; events of interest then check whether any policy
is active, whether the operation is one these rules already allowed (an area's
``AUDIT_KNOWN_ALLOWED``: its memo of allow verdicts under the same merged view, read
without touching a thread-local: network's remembered connects and lookups, files'
remembered opens), the quiet mark and the busy mark (lambdaguard's own work). A patch
whose verdict is in that memo calls the original without a quiet mark: the hook finds the
same verdict in the memo, which is cheaper than writing and reading the mark.

In front of ``_hook`` sits the compiled gate (``lambdaguard/_audit_gate.c``) where it was
built: CPython calls a hook for every audit event in the process, and a Python hook pays a
frame and a ``str`` per event even to return at once. The gate returns in C for an event
no area watches, and for a watched one while no policy is in force (unless an observer
must see it), and for an operation found in an area's allow memo (``GATE_MEMOS``: the
same memo its ``AUDIT_KNOWN_ALLOWED`` reads, read in C); everything else reaches
``_hook`` unchanged. Without the gate,
``sys.addaudithook(_hook)`` does the same work in Python.

Cases that still fail: native code that issues system calls itself (a C extension calling
``connect(2)`` directly raises no audit event), and anything that runs before
``import lambdaguard`` activates the hook. docs/threat-model.md lists them.
"""

from __future__ import annotations

import sys
from types import ModuleType

from lambdaguard import _internal, scope
from lambdaguard.policy import Active

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms of cold start)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any
    AuditHandler = Callable[[tuple[Any, ...], Active], None]
    AuditObserver = Callable[[tuple[Any, ...]], None]
    KnownAllowed = Callable[[tuple[Any, ...], Active], bool]


_handlers: dict[str, AuditHandler] = {}
# Observers see every occurrence of their event, in scope or not, quiet or busy: they keep
# a sensor's memory honest (sensors/files.py forgets link-free paths when a link may have
# been made). They must not raise. Only a few rare events have one.
_observers: dict[str, tuple[AuditObserver, ...]] = {}
# event -> known_allowed(args, active): True when these rules allowed this exact operation
# before (sensors/network.py, sensors/files.py). Sound only because it reads an allow memo,
# which holds nothing but allow verdicts of the same merged rules. Asked before the
# thread-local marks and outside the busy mark, so it must be cheap, never raise, never run
# user code and never raise an audit event of its own: a True answer only skips a handler
# that would have let the event through.
_known_allowed: dict[str, KnownAllowed] = {}
# event -> the shape of its known_allowed reader for the compiled gate, which reads the same
# memo in C (``GATE_MEMOS`` of an area; the shapes are described in _audit_gate.c). Each is
# a second implementation of a reader above, so install() accepts one only beside its
# Python reader, and tests/core/test_audit_gate.py compares the two on the same inputs.
_gate_memos: dict[str, tuple[Any, ...]] = {}
# What the hook reads: event -> (handler, observers or None, known_allowed or None), so that
# every audit event in the process costs one dict lookup, and a watched one a tuple unpack.
_table: dict[
    str, tuple[AuditHandler, tuple[AuditObserver, ...] | None, KnownAllowed | None]
] = {}
_hook_added = False
_gate: Any = None  # lambdaguard._audit_gate once it is the hook, else None
_scope_get = scope._scope.get


def _hook(event: str, args: tuple[Any, ...]) -> None:
    entry = _table.get(event)
    if entry is None:
        return
    handler, observers, known_allowed = entry
    if observers is not None:
        for observe in observers:
            observe(args)
    # No scope is the common case: settle it before the thread-local marks. This is
    # scope.current() inlined, and ScopeState.active() too (its cached view while the
    # baseline version holds): the hook runs for every watched event in the process.
    state = _scope_get()
    active = (
        scope._baseline_active
        if state is None
        else state._active
        if state._version == scope._baseline_version
        else state.active()
    )
    if active is None:
        return
    # An operation these rules allowed before is allowed again, whoever asks: the hook would
    # decide the same, so it need not look at the thread's marks (an allowed connect or
    # lookup through a patch sets no quiet mark; see sensors/network.py).
    if known_allowed is not None and known_allowed(args, active):
        return
    if _internal.is_quiet(event, args) or _internal.busy():
        return
    # The handler's own work (resolving a path opens it with O_PATH, reporting writes a
    # line) raises audit events too; marked busy, the hook lets them through instead of
    # judging them again, so a handler can never recurse into itself.
    outer = _internal.mark_busy()
    try:
        handler(args, active)
    finally:
        _internal.restore_busy(outer)


def _ignore(args: tuple[Any, ...], active: Active) -> None:
    """The handler of an event that only has observers."""


def install(modules: Iterable[ModuleType]) -> None:
    """Add the audit hook (once per process) with every area's handlers."""
    global _hook_added, _gate
    for module in modules:
        _handlers.update(getattr(module, "AUDIT_HANDLERS", {}))
        _known_allowed.update(getattr(module, "AUDIT_KNOWN_ALLOWED", {}))
        _gate_memos.update(getattr(module, "GATE_MEMOS", {}))
        for event, observer in getattr(module, "AUDIT_OBSERVERS", {}).items():
            if observer not in _observers.get(event, ()):
                _observers[event] = (*_observers.get(event, ()), observer)
    for event in _observers:
        _handlers.setdefault(event, _ignore)
    unpaired = set(_gate_memos) - set(_known_allowed)
    if unpaired:
        raise RuntimeError(f"lambdaguard: GATE_MEMOS without a Python reader: {sorted(unpaired)}")
    _table.clear()
    _table.update(
        {
            event: (handler, _observers.get(event), _known_allowed.get(event))
            for event, handler in _handlers.items()
        }
    )
    if not _hook_added:
        _gate = _compiled_gate()
        if _gate is None:
            sys.addaudithook(_hook)
        _hook_added = True
    if _gate is not None:
        # The C gate answers unwatched events, watched ones while no policy is in force,
        # and operations in an allow memo, without a Python frame; it calls _hook for the
        # rest (_audit_gate.c).
        # Called again (new areas), it takes the new names and keeps its one hook.
        _gate.install(_table, _observers, _hook, scope._scope, scope, _gate_memos)


def _compiled_gate() -> Any:
    """lambdaguard._audit_gate, or None where it was not compiled (the hook is then Python)."""
    try:
        from lambdaguard import _audit_gate
    except ImportError:
        return None
    return _audit_gate


def hook_kind() -> str:
    """``"c"`` when the compiled gate is in front of the hook, ``"python"`` otherwise."""
    return "c" if _gate is not None else "python"


def watched_events() -> frozenset[str]:
    return frozenset(_handlers)
