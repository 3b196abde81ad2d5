"""Carry the current scope into work started from it: threads, pools, executors.

asyncio tasks copy the context themselves. Everything else starts with an empty context,
which would run guarded work unguarded, so lambdaguard patches the places where work is
handed over:

* ``threading.Thread.start`` and ``_thread.start_new_thread``: the new thread runs in a
  copy of the starting thread's context;
* ``ThreadPoolExecutor.submit`` (and so ``loop.run_in_executor``): each submission runs in
  a copy of the submitter's context. It is the submission that carries the scope, not the
  pool: a worker thread that ran guarded work runs later unguarded work unguarded;
* ``ProcessPoolExecutor.submit``: the submission carries the policy layers in force,
  pickled, and re-enters them in the worker process.

Forked children inherit the forking thread's context with the rest of the process.
Nothing is copied when no scope is active, so unguarded code pays one ContextVar read.
"""

from __future__ import annotations

import _thread
import contextvars
import threading

from lambdaguard.policy import Policy
from lambdaguard.scope import ScopeState, _scope, current_state
from lambdaguard.sensors._patching import patch, register_post_import

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms of cold start)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def _in_scope() -> bool:
    return current_state() is not None


def _thread_start(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if instance is not None and _in_scope():
        context = contextvars.copy_context()
        run = instance.run
        # An instance attribute wins over the class's run(), also in subclasses.
        instance.run = lambda: context.run(run)
    return wrapped(*args, **kwargs)


def _start_new_thread(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if _in_scope() and args:
        context = contextvars.copy_context()
        function = args[0]
        args = (lambda *a, **k: context.run(function, *a, **k), *args[1:])
    return wrapped(*args, **kwargs)


def _outside_scope(wrapped: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``wrapped`` with no scope in this context.

    A thread pool starts its worker threads lazily, inside submit(). Those workers must
    not inherit the submitter's scope, or every later submission, guarded or not, would
    run guarded: it is the submission that carries the scope, not the pool. (Process
    pools are handled by ScopedCall instead, because starting their workers must still
    be judged under the submitter's subprocess policy.)
    """
    token = _scope.set(None)
    try:
        return wrapped(*args, **kwargs)
    finally:
        _scope.reset(token)


def _thread_pool_submit(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if not _in_scope() or not args:
        return wrapped(*args, **kwargs)
    context = contextvars.copy_context()
    return _outside_scope(wrapped, context.run, *args, **kwargs)


class ScopedCall:
    """A process-pool submission that runs under exactly its submitter's policy.

    Every submission is wrapped, guarded or not: a worker forked from a guarded submitter
    inherits that submitter's scope, and an unguarded submission must not run under it.
    With no layers the worker's scope is cleared; with layers they are re-entered (a
    spawned worker has no baseline of its own, so baseline layers travel too).
    """

    def __init__(self, function: Callable[..., Any], layers: tuple[Policy, ...]) -> None:
        self.function = function
        self.layers = layers

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        state = None
        if self.layers:
            from lambdaguard.sensors import ensure_installed

            ensure_installed()
            owner = object()
            layered = tuple((owner, policy) for policy in self.layers)
            state = ScopeState(layered, {}, None, None, owner)
        token = _scope.set(state)
        try:
            return self.function(*args, **kwargs)
        finally:
            _scope.reset(token)


def _layers_in_force() -> tuple[Policy, ...]:
    from lambdaguard import scope

    state = current_state()
    if state is None:
        return tuple(policy for _, policy in scope._baseline_layers)
    base = tuple(
        policy.replaced(state.overrides[owner]) if owner in state.overrides else policy
        for owner, policy in scope._baseline_layers
    )
    return base + tuple(policy for _, policy in state.layers)


def _process_pool_submit(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if not args:
        return wrapped(*args, **kwargs)
    # Not _outside_scope: starting the worker processes is itself judged by the subprocess
    # policy of the submitter's scope. ScopedCall fixes what the worker runs under.
    return wrapped(ScopedCall(args[0], _layers_in_force()), *args[1:], **kwargs)


_installed = False
_lock = threading.Lock()


def install() -> None:
    global _installed
    with _lock:
        if _installed:
            return
        patch(threading, "Thread.start", _thread_start)
        patch(_thread, "start_new_thread", _start_new_thread)
        # Patched when first imported (now, if they already are): importing
        # concurrent.futures.process just to patch it would pull multiprocessing, pickle
        # and logging into every cold start, about 30 ms.
        register_post_import(
            "concurrent.futures.thread",
            lambda module: patch(module, "ThreadPoolExecutor.submit", _thread_pool_submit),
        )
        register_post_import(
            "concurrent.futures.process",
            lambda module: patch(module, "ProcessPoolExecutor.submit", _process_pool_submit),
        )
        _installed = True
