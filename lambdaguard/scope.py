"""Where policy is in force: ``guard`` scopes, the ``configure`` baseline, and relaxations.

State lives in two places:

* the process-wide **baseline** (``configure``): module globals, seen at once by every
  thread, including threads already running (FunctionShield's model);
* the **scoped** layers (``guard``): a ``ContextVar`` holding an immutable
  :class:`ScopeState`, so each thread and each asyncio task sees its own scopes. asyncio
  copies the context into every task; lambdaguard.propagation carries it into threads and
  pool submissions.

Each ScopeState caches the merged :class:`~lambdaguard.policy.Active` view of baseline plus
scoped layers, keyed by the baseline's version, so the sensors' hot path
(:func:`current`) is a ContextVar read and an integer compare.

Loosening only goes through the object that set a policy: ``g.relaxed(...)`` replaces the
rules of *g's own* layers for the duration of a ``with`` block; every other layer still
applies, so code inside a blocked scope gains nothing by opening ``guard(network="allow")``.
"""

from __future__ import annotations

import contextvars
import os
import threading
from types import TracebackType

from lambdaguard import _internal, report
from lambdaguard.environment import build_policy, build_relaxation, read_flag, read_positive_int
from lambdaguard.errors import ConfigError
from lambdaguard.policy import Active, Mode, Policy, Rule, merge

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms of cold start)
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from contextlib import AbstractContextManager
    from typing import Any, TypeVar

    F = TypeVar("F", bound=Callable[..., Any])


PolicyValue = Mode | str | Rule | None

# --- the process-wide baseline -------------------------------------------------------------

_baseline_lock = threading.Lock()
_baseline_layers: tuple[tuple[Baseline, Policy], ...] = ()
_baseline_version = 0
_baseline_active: Active | None = None


def _set_baseline(layers: tuple[tuple[Baseline, Policy], ...]) -> None:
    global _baseline_layers, _baseline_version, _baseline_active
    # Compute first, publish after: a reader on another thread sees either the old or the
    # new (layers, active) pair, and the version bump invalidates every cached merge.
    active = merge(policy for _, policy in layers)
    _baseline_layers = layers
    _baseline_active = active
    _baseline_version += 1


# --- scoped state --------------------------------------------------------------------------


class ScopeState:
    """The scoped layers in force in one context. Immutable once published.

    A state pushed by the outermost call of a decorated handler also begins an
    *invocation* (report.py: one reporting budget and one set of Lambda keys): it keeps the
    call's arguments, and the invocation itself is made at its first report (the one slot
    written after publication, once, under a lock). Every state pushed inside it reaches it
    through ``parent``; see :func:`invocation_of`.
    """

    __slots__ = (
        "_active",
        "_version",
        "invocation",
        "invocation_args",
        "layers",
        "logger",
        "overrides",
        "owner",
        "parent",
    )

    def __init__(
        self,
        layers: tuple[tuple[object, Policy], ...],
        overrides: Mapping[Baseline, Mapping[str, Rule]],
        logger: Any,
        parent: ScopeState | None,
        owner: object,
    ) -> None:
        self.layers = layers  # (owner, policy), outermost first
        self.overrides = overrides  # baseline handle -> rules relaxed in this context
        self.logger = logger  # a powertools Logger handed in by the innermost guard, or None
        self.parent = parent
        self.owner = owner  # the guard or relaxation that pushed this state
        self._version = -1
        self._active: Active | None = None
        # The handler's positional arguments when this state begins an invocation, else None.
        self.invocation_args: tuple[Any, ...] | None = None
        self.invocation: report.Invocation | None = None  # made at its first report

    def active(self) -> Active | None:
        if self._version != _baseline_version:
            version = _baseline_version
            base = [
                policy.replaced(self.overrides[owner]) if owner in self.overrides else policy
                for owner, policy in _baseline_layers
            ]
            # Benign race: two threads sharing this state may both compute; same result.
            self._active = _merged((*base, *(policy for _, policy in self.layers)))
            self._version = version
        return self._active


# Merged views by the exact layers they merge. A decorated handler enters a new ScopeState
# on every invocation; reusing the Active of the same layers keeps the merge off the
# per-invocation path and keeps each Active's memo of allowed operations warm (decide.py).
_MERGED_LIMIT = 256
_merged_cache: dict[tuple[Policy, ...], Active | None] = {}


def _merged(layers: tuple[Policy, ...]) -> Active | None:
    try:
        return _merged_cache[layers]
    except KeyError:
        pass
    active = merge(layers)
    if len(_merged_cache) >= _MERGED_LIMIT:
        _merged_cache.clear()
    _merged_cache[layers] = active
    return active


_scope: contextvars.ContextVar[ScopeState | None] = contextvars.ContextVar(
    "lambdaguard_scope", default=None
)


def current() -> Active | None:
    """The merged policy in force here, or None when nothing can object to anything.

    This is the sensors' hot path: keep it to a ContextVar read and a compare.
    """
    state = _scope.get()
    if state is None:
        return _baseline_active
    return state.active()


def current_state() -> ScopeState | None:
    return _scope.get()


_invocation_lock = threading.Lock()


def invocation_of(state: ScopeState | None) -> report.Invocation:
    """The invocation work under ``state`` belongs to, for reporting.

    That is the invocation begun by the nearest state, ``state`` or a parent, that began
    one (only the outermost call of a guarded handler does); outside every invocation,
    report's process-level pseudo-invocation. Found only when something is reported, so
    a guarded call that reports nothing never makes one.
    """
    while state is not None:
        args = state.invocation_args
        if args is not None:
            found = state.invocation
            if found is None:
                owner = state.owner
                limit = owner._report_limit if isinstance(owner, guard) else report.DEFAULT_LIMIT
                made = report.Invocation(args, limit, False)
                # Threads started by the handler share this state: one invocation for all.
                with _invocation_lock:
                    found = state.invocation
                    if found is None:
                        found = state.invocation = made
            return found
        state = state.parent
    return report.OUTSIDE


def current_invocation() -> report.Invocation:
    """The invocation running here (report.py writes its lines against it)."""
    return invocation_of(_scope.get())


def current_logger() -> Any:
    state = _scope.get()
    if state is not None and state.logger is not None:
        return state.logger
    return _default_logger


_default_logger: Any = None


def _push(state: ScopeState) -> None:
    _scope.set(state)


def _pop(owner: object, what: str) -> None:
    state = _scope.get()
    if state is None or state.owner is not owner:
        raise RuntimeError(
            f"lambdaguard: {what} exited in a different order than it was entered, or in a "
            "different thread or task; scopes must nest like with-blocks."
        )
    _scope.set(state.parent)


_sensors_installed = False


def _activate_sensors(policy: Policy) -> None:
    # Sensors (patches and the audit hook) are installed on the first layer that can
    # object to anything; an all-"allow" guard costs nothing and installs nothing.
    global _sensors_installed
    if _sensors_installed or policy.is_inert():
        return
    from lambdaguard.sensors import ensure_installed

    ensure_installed()
    _sensors_installed = True


def _policy_arguments(
    network: PolicyValue,
    tmp: PolicyValue,
    subprocess: PolicyValue,
    handler_source: PolicyValue,
    more: Mapping[str, object],
) -> dict[str, object]:
    given: dict[str, object] = {
        "network": network,
        "tmp": tmp,
        "subprocess": subprocess,
        "handler_source": handler_source,
        **more,
    }
    return {name: value for name, value in given.items() if value is not None}


# --- relaxation ------------------------------------------------------------------------------


class _Relaxation:
    """``with owner.relaxed(...)``: the owner's own layers use other rules in this block."""

    def __init__(self, owner: guard | Baseline, rules: dict[str, Rule]) -> None:
        self._owner = owner
        self._rules = rules

    def __enter__(self) -> _Relaxation:
        parent = _scope.get()
        layers = parent.layers if parent is not None else ()
        overrides: Mapping[Baseline, Mapping[str, Rule]] = (
            parent.overrides if parent is not None else {}
        )
        owner = self._owner
        if isinstance(owner, Baseline):
            current_policy = owner.policy_in_force()
            if current_policy is None:
                raise RuntimeError(
                    "lambdaguard: relaxed() on a configure() handle that was removed."
                )
            previous = overrides.get(owner, {})
            overrides = {**overrides, owner: {**previous, **self._rules}}
            before = current_policy.replaced(previous)
        else:
            mine = [policy for layer_owner, policy in layers if layer_owner is owner]
            if not mine:
                raise RuntimeError(
                    "lambdaguard: relaxed() only loosens a guard that is in force here; "
                    "use it inside the guard's with-block or decorated function."
                )
            before = mine[-1]
            layers = tuple((o, p.replaced(self._rules) if o is owner else p) for o, p in layers)
        report.relaxation(self._owner, before, self._rules)
        logger = parent.logger if parent is not None else None
        _push(ScopeState(layers, overrides, logger, parent, self))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _pop(self, "relaxed()")


# --- guard -------------------------------------------------------------------------------------


class guard:  # a lower-case name: it reads as a function, as contextlib's classes do
    """Enforce policies in a scope: as a decorator or as a context manager.

    Keyword-only arguments, each a mode (``"block"``, ``"alert"``, ``"allow"`` or a
    :class:`~lambdaguard.Mode`) or a rule object with an allow-list (``Network(...)``,
    ``Tmp(...)``, ``Subprocess(...)``, ``HandlerSource(...)``). A policy not given in code
    comes from ``LAMBDAGUARD_<POLICY>``, else ``"allow"``. The environment is read here,
    once; a bad value raises :class:`~lambdaguard.ConfigError` here.

    Parameters
    ----------
    logger:
        An ``aws_lambda_powertools.Logger`` to write violation lines through, instead of
        lambdaguard's own powertools-shaped JSON writer.
    wipe_tmp:
        ``True``: after each call of the decorated handler (also when it raises), remove
        what that call created under /tmp and keep what was there before; one log line
        summarises it (docs/files.md). An absolute path wipes that directory instead.
        Not given: ``LAMBDAGUARD_WIPE_TMP`` decides. Only for the decorator: a with-block
        is not an invocation, and ``with guard(wipe_tmp=True)`` is a ConfigError.

    Example::

        @guard(network="block", tmp="block")
        def handler(event, context): ...

        with guard(network=Network("block", allow=["*.amazonaws.com:443"])):
            ...
    """

    def __init__(
        self,
        *,
        network: PolicyValue = None,
        tmp: PolicyValue = None,
        subprocess: PolicyValue = None,
        handler_source: PolicyValue = None,
        logger: Any = None,
        wipe_tmp: bool | str | os.PathLike[str] | None = None,
        **policies: PolicyValue,
    ) -> None:
        arguments = _policy_arguments(network, tmp, subprocess, handler_source, policies)
        self._policy = build_policy(arguments, caller="guard")
        self._logger = logger
        self._report_limit = read_positive_int(
            os.environ, "LAMBDAGUARD_REPORT_LIMIT", report.DEFAULT_LIMIT
        )
        self._wipe_in_code = wipe_tmp not in (None, False)
        if wipe_tmp is None:
            wipe_tmp = _wipe_setting(os.environ.get("LAMBDAGUARD_WIPE_TMP"))
        self._wipe_root = _wipe_root_for(wipe_tmp)
        self._outermost = ScopeState(((self, self._policy),), {}, self._logger, None, self)

    @property
    def policy(self) -> Policy:
        """The layer this guard adds: one rule per policy keyword."""
        return self._policy

    def __repr__(self) -> str:
        rules = ", ".join(f"{k}={v!r}" for k, v in self._policy.rules.items())
        return f"guard({rules})"

    # -- context manager --

    def __enter__(self) -> guard:
        if self._wipe_in_code:
            raise ConfigError(
                f"guard(wipe_tmp=...) wipes after each call of a decorated handler; a "
                f"with-block has no invocation to wipe after; accepted: @guard(wipe_tmp=...) "
                f"on the handler, or no wipe_tmp in {self!r}."
            )
        return self._enter()

    def _enter(self) -> guard:
        self._enter_token()
        return self

    def _enter_token(self) -> contextvars.Token[ScopeState | None]:
        if not _sensors_installed:
            _activate_sensors(self._policy)
        parent = _scope.get()
        if parent is None:
            # Outermost: the state is the same every time (it is immutable, and its merge
            # cache is keyed by the baseline version), so it is built once per guard.
            return _scope.set(self._outermost)
        return _scope.set(self._nested_state(parent))

    def _nested_state(self, parent: ScopeState) -> ScopeState:
        """The state of this guard entered inside ``parent``: its layer added, not yet pushed."""
        return ScopeState(
            (*parent.layers, (self, self._policy)),
            parent.overrides,
            self._logger if self._logger is not None else parent.logger,
            parent,
            self,
        )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _pop(self, "guard")

    async def __aenter__(self) -> guard:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    # -- decorator --

    def __call__(self, fn: F) -> F:
        # One signature for plain and coroutine functions: the decorated function keeps its
        # own type, awaitable or not. (No typing.overload: typing is not imported at run
        # time, which spares every cold start ~5 ms.)
        if not callable(fn):
            raise TypeError(f"guard(...) decorates a function or coroutine function, not {fn!r}.")
        kind = _function_kind(fn)
        if kind == "generator":
            raise TypeError(
                f"guard(...) cannot decorate the generator function {fn.__qualname__}: its "
                "body runs after the call returns, outside the scope. Use 'with guard(...)' "
                "inside the generator instead."
            )
        if kind == "coroutine":

            @_internal.wraps(fn)
            async def async_guarded(*args: Any, **kwargs: Any) -> Any:
                state = self._call_state(args)
                try:
                    with _wiping(self._wipe_root, state):
                        token = _scope.set(state)
                        try:
                            return await fn(*args, **kwargs)
                        finally:
                            _scope.reset(token)
                finally:
                    _end_call(state)

            async_guarded.guard = self  # type: ignore[attr-defined]
            # functools.wraps keeps fn's name, signature and annotations: it is fn's type.
            return async_guarded  # type: ignore[return-value]

        # Closure locals: attribute and global lookups add up on a path this hot.
        get, push, reset = _scope.get, _scope.set, _scope.reset
        call_state, wipe_root = self._call_state, self._wipe_root
        template = self._outermost
        layers, overrides, logger = template.layers, template.overrides, template.logger
        new_state = object.__new__
        inert = self._policy.is_inert()  # installs no sensors: nothing to do on a first call

        @_internal.wraps(fn)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            # This is the cost of every invocation of every guarded handler: one ContextVar
            # set and reset, and one object, the state pushed, which also carries the
            # invocation (its arguments; the reporting budget is made at the first report).
            if get() is None and (_sensors_installed or inert) and not report.start_pending:
                # The common case, an outermost call: _call_state's first branch, inlined.
                state: ScopeState = new_state(ScopeState)
                state.layers = layers
                state.overrides = overrides
                state.logger = logger
                state.parent = None
                state.owner = self
                version = template._version  # the version first: a newer view is only redone
                if version != _baseline_version:
                    template.active()
                    version = template._version
                state._version = version
                state._active = template._active
                state.invocation_args = args
                state.invocation = None
            else:
                state = call_state(args)
            if wipe_root is not None:
                return _call_wiping(wipe_root, state, fn, args, kwargs)
            # Explicit calls rather than a with-block, and a ContextVar token rather than
            # the with-block's order check: enter and exit are this frame's own.
            token = push(state)
            try:
                # fn(*args, **{}) would copy the empty dict: handlers are called positionally.
                return fn(*args, **kwargs) if kwargs else fn(*args)
            finally:
                reset(token)
                invocation = state.invocation
                if invocation is not None and invocation.suppressed:
                    report.flush_suppressed(invocation)

        guarded.guard = self  # type: ignore[attr-defined]
        return guarded  # type: ignore[return-value]

    def _call_state(self, args: tuple[Any, ...]) -> ScopeState:
        """The state one call of the decorated function runs in, not yet pushed.

        Unless an invocation is running here already, the state begins one: it keeps the
        call's arguments, and the invocation is made at its first report (invocation_of).
        """
        if not _sensors_installed:
            _activate_sensors(self._policy)
        parent = _scope.get()
        if parent is None:
            template = self._outermost
            state = ScopeState(template.layers, template.overrides, self._logger, None, self)
            # The template's merged view, so that the first sensor need not merge again.
            state._version = template._version
            state._active = template._active
        else:
            state = self._nested_state(parent)
            outer: ScopeState | None = parent
            while outer is not None:
                if outer.invocation_args is not None:
                    return state  # a guarded call inside an invocation shares its budget
                outer = outer.parent
        state.invocation_args = args
        if report.start_pending and report.start_invocation():
            state.invocation = report.Invocation(args, self._report_limit, True)
        return state

    # -- loosening --

    def relaxed(
        self,
        *,
        network: PolicyValue = None,
        tmp: PolicyValue = None,
        subprocess: PolicyValue = None,
        handler_source: PolicyValue = None,
        **policies: PolicyValue,
    ) -> _Relaxation:
        """A with-block in which this guard's own rules for the named policies are replaced.

        Only this guard's layer changes: every other active guard and the baseline still
        apply. The relaxation is logged as a JSON line.
        """
        arguments = _policy_arguments(network, tmp, subprocess, handler_source, policies)
        return _Relaxation(self, build_relaxation(arguments, caller="guard.relaxed"))


def _wipe_setting(raw: str | None) -> bool | str:
    """LAMBDAGUARD_WIPE_TMP: a boolean, or the absolute path of the directory to wipe."""
    if raw is not None and raw.strip().startswith("/"):
        return raw.strip()
    try:
        return read_flag(
            {} if raw is None else {"LAMBDAGUARD_WIPE_TMP": raw}, "LAMBDAGUARD_WIPE_TMP"
        )
    except ConfigError:
        raise ConfigError(
            f"LAMBDAGUARD_WIPE_TMP={raw!r} is neither a boolean nor an absolute path; "
            "accepted: true, false, 1, 0, yes, no, or /absolute/directory."
        ) from None


def _wipe_root_for(value: object) -> str | None:
    # lambdaguard.wipe is imported only by guards that wipe: import lambdaguard stays cheap.
    if value is None or value is False:
        return None
    with _internal.own_work():  # lambdaguard's own module: see _internal.own_work
        from lambdaguard import wipe

    return wipe.root_for(value)


class _NoWipe:
    """contextlib.nullcontext without importing contextlib (~1 ms of cold start)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        return None


_NO_WIPE = _NoWipe()


def _wiping(root: str | None, state: ScopeState) -> AbstractContextManager[None]:
    if root is None:
        return _NO_WIPE
    with _internal.own_work():  # lambdaguard's own module: see _internal.own_work
        from lambdaguard import wipe

    # The wipe runs outside the scope (before it is entered, after it is left) but its
    # line belongs to the invocation the call runs in.
    return wipe.around_invocation(root, lambda: invocation_of(state))


def _call_wiping(
    root: str,
    state: ScopeState,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """A call of a decorated function that wipes ``root`` after it (guard(wipe_tmp=...))."""
    try:
        with _wiping(root, state):
            token = _scope.set(state)
            try:
                return fn(*args, **kwargs)
            finally:
                _scope.reset(token)
    finally:
        _end_call(state)


def _end_call(state: ScopeState) -> None:
    """After a decorated call: an invocation it began summarises what it suppressed."""
    invocation = state.invocation
    if invocation is not None and invocation.suppressed:
        report.flush_suppressed(invocation)


_CO_GENERATOR, _CO_COROUTINE, _CO_ASYNC_GENERATOR = 0x20, 0x80, 0x200


def _function_kind(fn: Callable[..., Any]) -> str:
    """Classify fn as "coroutine", "generator" or "plain" without importing inspect (~10 ms)."""
    code = getattr(fn, "__code__", None)
    if code is None:  # a partial, a callable object, a builtin: ask inspect
        import inspect

        if inspect.iscoroutinefunction(fn):
            return "coroutine"
        if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            return "generator"
        return "plain"
    flags = code.co_flags
    if flags & _CO_COROUTINE:
        return "coroutine"
    if flags & (_CO_GENERATOR | _CO_ASYNC_GENERATOR):
        return "generator"
    return "plain"


# --- configure ----------------------------------------------------------------------------------


class Baseline:
    """The handle ``configure(...)`` returns: the only way to loosen that baseline layer."""

    def __init__(self, policy: Policy, logger: Any) -> None:
        self._policy = policy
        self._logger = logger

    def __repr__(self) -> str:
        rules = ", ".join(f"{k}={v!r}" for k, v in self._policy.rules.items())
        return f"<lambdaguard baseline {rules}>"

    def policy_in_force(self) -> Policy | None:
        for owner, policy in _baseline_layers:
            if owner is self:
                return policy
        return None

    def relaxed(
        self,
        *,
        network: PolicyValue = None,
        tmp: PolicyValue = None,
        subprocess: PolicyValue = None,
        handler_source: PolicyValue = None,
        **policies: PolicyValue,
    ) -> _Relaxation:
        """A with-block in which this baseline layer's rules are replaced, in this context only."""
        arguments = _policy_arguments(network, tmp, subprocess, handler_source, policies)
        return _Relaxation(self, build_relaxation(arguments, caller="Baseline.relaxed"))

    def update(
        self,
        *,
        network: PolicyValue = None,
        tmp: PolicyValue = None,
        subprocess: PolicyValue = None,
        handler_source: PolicyValue = None,
        **policies: PolicyValue,
    ) -> None:
        """Replace this layer's rules for the named policies, process-wide. Logged."""
        arguments = _policy_arguments(network, tmp, subprocess, handler_source, policies)
        rules = build_relaxation(arguments, caller="Baseline.update")
        with _baseline_lock:
            before = self.policy_in_force()
            if before is None:
                raise RuntimeError(
                    "lambdaguard: update() on a configure() handle that was removed."
                )
            self._policy = before.replaced(rules)
            _set_baseline(tuple((o, self._policy if o is self else p) for o, p in _baseline_layers))
        _activate_sensors(self._policy)
        report.relaxation(self, before, rules)

    def remove(self) -> None:
        """Take this layer out of the baseline, process-wide. Logged as a relaxation."""
        with _baseline_lock:
            before = self.policy_in_force()
            if before is None:
                return
            _set_baseline(tuple((o, p) for o, p in _baseline_layers if o is not self))
        released = {name: rule.with_mode(Mode.ALLOW) for name, rule in before.rules.items()}
        report.relaxation(self, before, released)


def configure(
    *,
    network: PolicyValue = None,
    tmp: PolicyValue = None,
    subprocess: PolicyValue = None,
    handler_source: PolicyValue = None,
    logger: Any = None,
    **policies: PolicyValue,
) -> Baseline:
    """Add a process-wide baseline layer, in force for every thread from now on.

    Takes the same keywords as :class:`guard`. Calling it again adds another layer, so it
    can only tighten; loosening goes through the returned handle's ``relaxed``,
    ``update`` or ``remove``. ``logger`` becomes the default for violation lines.
    """
    global _default_logger
    arguments = _policy_arguments(network, tmp, subprocess, handler_source, policies)
    handle = Baseline(build_policy(arguments, caller="configure"), logger)
    _activate_sensors(handle._policy)
    with _baseline_lock:
        _set_baseline((*_baseline_layers, (handle, handle._policy)))
        if logger is not None:
            _default_logger = logger
    return handle


def reset_for_tests() -> None:
    """Drop every baseline layer and the scope of this context. For lambdaguard.testing only."""
    global _default_logger
    with _baseline_lock:
        _set_baseline(())
        _default_logger = None
    _scope.set(None)
    report.reset_for_tests()
