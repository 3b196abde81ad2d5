"""Process sensors: every way to start or become another program, and the audit backstop.

Patched (Python API)                          Audit event (backstop)         action
subprocess.Popen.__init__ (run, call,         subprocess.Popen               run
  check_output, getoutput, os.popen,
  asyncio.create_subprocess_exec/_shell)
os.system                                     os.system                      system
os.execv / execve / execvp / execvpe          os.exec                        exec
  (execl* go through these)
os.spawnv / spawnve / spawnvp / spawnvpe      os.fork (POSIX spawn* fork)    spawn
  (spawnl* go through these)
os.posix_spawn / posix_spawnp                 os.posix_spawn                 spawn
pty.spawn                                     pty.spawn                      spawn
_posixsubprocess.fork_exec                    (none: see below)              spawn
os.fork / os.forkpty (and pty.fork)           os.fork / os.forkpty           fork
multiprocessing BaseProcess.start (every      (fork: os.fork; spawn and      fork / spawn
  start method; Pool and ProcessPoolExecutor    forkserver: none)
  workers start this way)

Each route is judged by the program the child would run (lambdaguard.policies.processes):
the resolved executable, with the argument vector in the violation line's details, bounded
and with secret-looking values masked (``sensors._masking.mask_argv``).

An allowed operation is carried out with the programs it was decided for marked "through"
on this thread: the calls it makes on its way down (Popen -> fork_exec or posix_spawn,
spawnv -> fork -> execv in the child) are not decided a second time, but anything else that
runs meanwhile (a ``__fspath__`` or ``__reduce__`` of the caller's making) still is. After a
fork, the child keeps that mark only for routes whose child goes straight on to exec the
decided program (spawn*, pty.spawn); a plain fork's child starts with a clean slate.

The common call, ``subprocess.run(["name" or "/abs/path", ...])`` with no executable,
shell, cwd or env, is allowed by a short path (``_plainly_allowed``/``_run_allowed``): on a
fork-exec-wait loop, every Python frame on the way costs about three times its warm price,
so that path keeps to a few, and remembers per merged policy view the verdicts that no rule
needed the file system for. It only ever says yes; everything else takes the full decision.
Both paths hand Popen the executable they judged, so the child runs that file rather than
searching PATH again. The os routes that search PATH themselves (exec*p, spawn*p,
posix_spawnp, and pty.spawn, whose child runs execlp) do the same: the patch searches
once, as the original would (``_searched``), and calls the non-searching form (execv,
execve, spawnv, spawnve, posix_spawn) with the judged path and the caller's argv, so no
other file on PATH is let through.

``_posixsubprocess.fork_exec`` raises no audit event in CPython 3.10-3.13, and neither does
a forkserver forking a new child; lambdaguard wraps the module attribute (which
``multiprocessing`` calls) and ``BaseProcess.start``, so code that took a reference to the
original before lambdaguard was activated is not seen. docs/processes.md lists this.
"""

from __future__ import annotations

import errno
import os
import sys
import threading

# collections.abc's Mapping without running collections/__init__ (~2 ms of a 3.13 cold start)
from _collections_abc import Mapping

from lambdaguard import _internal, scope
from lambdaguard.decide import blocked, check, remember_allowed
from lambdaguard.policies.processes import ProcessTarget, Subprocess, resolve
from lambdaguard.policy import Active, Event, Mode, Rule
from lambdaguard.scope import current
from lambdaguard.sensors._patching import patch, proceed, register_post_import

# Loaded on first use, not here, so that a cold start that never starts a child or reports
# one pays for neither (tests/core/test_deferred_modules.py): lambdaguard._inherit (carrying
# a policy into a child: imported by _carried(), which every carrying path goes through
# first), sensors._masking (a violation line's argv), sensors._layout (Popen's parameters).

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms of cold start)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any
    Wrapper = Callable[[Callable[..., Any], Any, tuple[Any, ...], dict[str, Any]], Any]

    from lambdaguard.sensors._layout import Layout

POLICY = "subprocess"
SHELL = "/bin/sh"  # what os.system, os.popen and shell=True run on POSIX
FORK = "<fork>"  # the "through" mark for a fork that is part of an allowed operation

# --- turning call arguments into text -----------------------------------------------------------


def _text(value: object) -> str:
    """A path or argument as text, whatever type the caller used.

    An error from a ``__fspath__`` propagates, as it would from the original call (which
    calls it too); anything else that is not a path is shown with ``str()``.
    """
    if type(value) is str:  # the common case, first: this runs for every argument
        return value
    if isinstance(value, str | bytes) or hasattr(value, "__fspath__"):
        return os.fsdecode(value)
    try:
        return str(value)
    except Exception:
        return "<unprintable>"


def _argv(value: object) -> list[str]:
    if isinstance(value, str | bytes) or hasattr(value, "__fspath__"):
        return [_text(value)]
    try:
        items = list(value)  # type: ignore[call-overload]
    except TypeError:  # not iterable: the original raises its own error
        return [_text(value)]
    return [item if type(item) is str else _text(item) for item in items]


def _search_path(env: object) -> str:
    """The PATH a call with ``env`` (None: this process's) searches, as one string."""
    if env is None:
        # What os.get_exec_path(None) returns, joined, without its warnings dance:
        # os.environ cannot hold a b"PATH" key.
        return os.environ.get("PATH", os.defpath)
    try:
        return os.pathsep.join(os.get_exec_path(env))  # type: ignore[arg-type]
    except Exception:
        return os.environ.get("PATH", os.defpath)


class _Operation:
    """One decided-or-to-decide process operation. Not changed once built.

    A plain class with slots: one is built on every guarded call, and a frozen dataclass
    costs about 2 µs to build.
    """

    __slots__ = ("action", "also", "argv", "executable", "name", "route", "search")

    def __init__(
        self,
        action: str,
        route: str,
        name: str,  # the program as the caller gave it
        executable: str | None,  # resolved absolute path, or None when not found
        argv: list[str] | None,
        also: frozenset[str] = frozenset(),  # more "through" marks (FORK, a caller's list)
        search: str | None = None,  # the PATH ``name`` was searched on; None: a path
    ) -> None:
        self.action = action
        self.route = route
        self.name = name
        self.executable = executable
        self.argv = argv
        self.also = also
        self.search = search

    def adding(self, *marks: str) -> _Operation:
        return _Operation(
            self.action,
            self.route,
            self.name,
            self.executable,
            self.argv,
            self.also | frozenset(marks),
            self.search,
        )

    def event(self) -> Event:
        target = ProcessTarget(self.executable, self.name, self.search)
        return Event(POLICY, self.action, str(target), target, _Details(self))

    def marks(self) -> frozenset[str]:
        """What the operation may do on its way down without being decided again."""
        key = self.key()
        return self.also | ({key} if key is not None else set())

    def key(self) -> str | None:
        return FORK if self.action == "fork" else self.executable


class _Details(Mapping[str, object]):
    """An event's details, masked and bounded only if the event is reported: most decided
    operations are allowed, and masking is the costly part of building them."""

    def __init__(self, operation: _Operation) -> None:
        self._operation = operation
        self._built: dict[str, Any] | None = None

    def _get(self) -> dict[str, Any]:
        if self._built is None:
            op = self._operation
            built: dict[str, Any] = {"route": op.route, "executable": op.executable or op.name}
            if op.argv is not None:
                with _internal.own_work():  # lambdaguard's own module: see _internal.own_work
                    from lambdaguard.sensors._masking import mask_argv

                built["argv"] = mask_argv(op.argv)
            self._built = built
        return self._built

    def __getitem__(self, key: str) -> Any:
        return self._get()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())


def _program(
    action: str, route: str, name: object, argv: object, *, search: str | None, cwd: object = None
) -> _Operation:
    """An operation that runs ``name``: searched on ``search`` (a PATH) or, if None, a path."""
    text = _text(name)
    cwd_text = _text(cwd) if cwd is not None else None
    if search is not None:
        executable = resolve(text, path=search, cwd=cwd_text)
    else:
        base = cwd_text if cwd_text is not None else os.getcwd()
        executable = os.path.normpath(os.path.join(base, text)) if text else None
    argv_list = _argv(argv) if argv is not None else None
    searched = search if search is not None and os.sep not in text else None
    return _Operation(action, route, text, executable, argv_list, search=searched)


def _searched(action: str, route: str, name: str, argv: object, search: str) -> _Operation:
    """The operation of a PATH-searching exec, spawn or posix_spawnp: ``name`` searched on
    ``search`` as the original would search it, so that the file judged is the file the
    original would have found (and the one then exec'd: see ``_exec_like``).

    The search is resolve()'s, which is os.execvp's (os._execvpe: each entry of
    ``os.get_exec_path(env)`` in turn, an empty entry meaning the working directory, a name
    with a slash not searched) and glibc's posix_spawnp's, with one exception made up
    here: resolve() follows shutil.which, for which PATH='' finds nothing, while
    ``''.split(':')`` is ``['']`` for os.execvp and glibc reads it as one empty entry too:
    the working directory.
    """
    operation = _program(action, route, name, argv, search=search)
    if operation.executable is None and search == "" and name and os.sep not in name:
        operation = _Operation(
            action,
            route,
            name,
            resolve(name, path=os.curdir),
            operation.argv,
            search=operation.search,
        )
    return operation


def _unfound(name: str) -> str:
    """What to hand the non-searching form when the search found nothing: a path that
    execs nothing and fails as the original's search fails, ENOENT ("" always does; a name
    with a NUL byte is refused with the original's ValueError before any exec)."""
    return name if "\0" in name else ""


def _fork(route: str) -> _Operation:
    return _Operation("fork", route, sys.executable, sys.executable, None)


# --- per-thread state: what an allowed operation may do on its way down ---------------------------

_local = threading.local()

# "execv", "spawnv", "posix_spawn", ... -> that function as it was before lambdaguard
# patched it (install fills this in before patching anything).
_plain: dict[str, Callable[..., Any]] = {}
_scope_get = scope._scope.get  # scope.current()'s read, for the inlined copies


def _through() -> frozenset[str]:
    return _local.__dict__.get("through", frozenset())  # type: ignore[no-any-return]


def _carry() -> str | None:
    return _local.__dict__.get("carry")


def _after_fork_in_child() -> None:
    # A plain fork's child is new code, decided afresh; a spawn's child goes straight on to
    # exec the program that was decided (see the module docstring).
    if not _local.__dict__.get("keep", False):
        _local.through = frozenset()
        _local.__dict__.pop("exec_as", None)  # pty.spawn's, for its own child only
    carry = _carry()
    if carry is not None:
        with _internal.own_work():  # lambdaguard's own module: see _internal.own_work
            from lambdaguard import _inherit

        os.environ[_inherit.VARIABLE] = carry


# --- the decision, shared by every patch --------------------------------------------------


class _Plan:
    __slots__ = ("carry", "rules")

    def __init__(self, rules: tuple[Rule, ...] | None, carry: str | None) -> None:
        self.rules = rules  # None: the subprocess policy is "allow" everywhere here
        self.carry = carry  # the LAMBDAGUARD_INHERITED_POLICY value for an allowed child


# (scope state, baseline version, value): the last answer of _carried(). Scope states are
# immutable and every change to the baseline bumps its version, so the pair says exactly
# when the layers in force, and so the value, are the same as last time.
_last_carried: tuple[object, int, str | None] | None = None


def _carried() -> str | None:
    """The LAMBDAGUARD_INHERITED_POLICY value for a child started here, or None if no
    layer in force asks for inheritance; remembered for the last scope state asked in."""
    global _last_carried
    # The version is read before the layers: a value computed from layers newer than its
    # label is recomputed on the next call; an old value never carries a newer label.
    version = scope._baseline_version
    state = scope.current_state()
    last = _last_carried
    if last is not None and last[0] is state and last[1] == version:
        return last[2]
    with _internal.own_work():  # lambdaguard's own module: see _internal.own_work
        from lambdaguard import _inherit

    layers = _inherit.layers_in_force()
    value = _inherit.encode(layers) if _inherit.requested(layers) else None
    _last_carried = (state, version, value)
    return value


def _plan(active: Active | None) -> _Plan | None:
    """What a patch has to do here, or None to call the original straight away."""
    if active is None or _internal.busy():
        return None
    rules = active.rules.get(POLICY)
    carry = _carried()
    if rules is None and carry is None:
        return None
    return _Plan(rules, carry)


def _decide(plan: _Plan, operation: _Operation) -> bool:
    """Decide the operation (raising if blocked); False if it is part of one already allowed."""
    key = operation.key()
    if key is not None and key in _through():
        return False
    if key is not None and key == _local.__dict__.get("expect"):
        # The audit hook has just decided this operation one level up (the caller went
        # around a patch, e.g. the original Popen.__init__): carry it out, unreported.
        del _local.expect
        return True
    if plan.rules is not None:
        event = operation.event()
        if check(event, plan.rules) is Mode.BLOCK:
            raise blocked(event)
    return True


# The audit events whose first argument is the program, the path object the caller passed.
_PROGRAM_FIRST = frozenset({"os.exec", "os.posix_spawn"})


def _own_copy(text: str) -> str:
    """``text`` as a str object of lambdaguard's own, that no other code holds.

    Popen is handed the judged executable as this object and raises its audit event with
    it, so the quiet mark can recognise that call's own event by identity: user code that
    runs inside Popen before the event (a ``fileno()`` of a stdin object) cannot present
    the same object, even with an equal, interned string.
    """
    return text[:1] + text[1:] if len(text) > 1 else text


def _carry_out(
    operation: _Operation,
    plan: _Plan,
    audit_event: str,
    wrapped: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    keep_in_child: bool = False,
    program: object = None,
) -> Any:
    """Call the original with the operation's programs marked "through" on this thread.

    ``program``: the object the original raises its audit event with first (Popen's own
    copy of the executable); for "os.exec"/"os.posix_spawn" it is the path in ``args``.
    """
    saved = dict(_local.__dict__)
    _local.through = _through() | operation.marks()
    _local.keep = keep_in_child
    _local.carry = plan.carry
    if program is None and audit_event in _PROGRAM_FIRST and args:
        program = args[0]
    same = None
    if program is not None:
        # Only this call's own event is quiet: user code can run inside the original before
        # its event (C converting the env calls a value's __fspath__; Popen calls fileno()
        # on stdin objects), and an operation started from there must be decided. The
        # event carries the very object the original was given.
        same = lambda event_args: bool(event_args) and event_args[0] is program  # noqa: E731
    try:
        return proceed(audit_event, wrapped, args, kwargs, same=same)
    finally:
        _local.__dict__.clear()
        _local.__dict__.update(saved)


def _with_carrier(env: object, carry: str | None) -> Any:
    """``env`` (None: this process's) with the inherited policy added, as a new dict."""
    if carry is None:
        return env
    with _internal.own_work():  # lambdaguard's own module: see _internal.own_work
        from lambdaguard import _inherit

    base: Mapping[Any, Any] = os.environ if env is None else env  # type: ignore[assignment]
    out = dict(base.items())
    key: str | bytes = _inherit.VARIABLE
    if any(isinstance(k, bytes) for k in out):
        key = os.fsencode(_inherit.VARIABLE)
        out[key] = os.fsencode(carry)
    else:
        out[key] = carry
    return out


# --- subprocess.Popen ---------------------------------------------------------------------------

# The parameters of Popen the decision reads. Binding with inspect.Signature.bind costs
# more than the rest of the decision together, so they are picked out by hand, from a
# layout of the patched __init__'s signature worked out once.
_POPEN_READS = ("args", "executable", "shell", "cwd", "env")


# function -> (its layout, the keywords a call may use and still take the plain path; None
# when no call may)
_layouts: dict[Any, tuple[Layout, frozenset[str] | None]] = {}


def _popen_layout(wrapped: Callable[..., Any]) -> tuple[Layout, frozenset[str] | None]:
    # ``wrapped`` is the original __init__ bound to the new instance: key on the function.
    function = getattr(wrapped, "__func__", wrapped)
    known = _layouts.get(function)
    if known is None:
        with _internal.own_work():  # lambdaguard's own module: see _internal.own_work
            from lambdaguard.sensors._layout import Layout

        layout = Layout.of(wrapped)
        plain: frozenset[str] | None = layout.names - set(_POPEN_READS)
        if layout.var_positional or layout.var_keyword or layout.position.get("args") != 0:
            plain = None  # not the Popen lambdaguard knows: always the full path
        known = _layouts[function] = (layout, plain)
    return known


def _plain_env(env: Any) -> Any:
    try:
        return dict(env.items())
    except Exception:
        return env  # the original raises its own error for it


def _normalise_popen(arguments: dict[str, Any]) -> dict[str, Any]:
    """Fix every value the decision reads, so that the original runs what was decided: a
    ``__fspath__`` or a mapping asked twice could answer differently the second time.
    Returns the values that changed."""
    changed: dict[str, Any] = {}
    value = arguments["args"]
    if hasattr(value, "__fspath__"):
        changed["args"] = _text(value)
    elif value is not None and not isinstance(value, str | bytes):
        try:  # noqa: SIM105  # not contextlib.suppress: contextlib is ~1 ms of cold start
            changed["args"] = [a if isinstance(a, str | bytes) else _text(a) for a in value]
        except TypeError:  # not iterable: Popen raises its own TypeError
            pass
    for name in ("executable", "cwd"):
        if arguments[name] is not None and not isinstance(arguments[name], str | bytes):
            changed[name] = _text(arguments[name])
    if arguments["env"] is not None:
        changed["env"] = _plain_env(arguments["env"])
    arguments.update(changed)
    return changed


def _popen_operation(arguments: Mapping[str, Any]) -> _Operation:
    argv = _argv(arguments["args"])
    executable = arguments["executable"]
    if arguments["shell"]:
        argv = [SHELL, "-c", *argv]
        if executable is not None:
            argv[0] = _text(executable)
    program = _text(executable) if executable is not None else (argv[0] if argv else "")
    return _program(
        "run",
        "subprocess.Popen",
        program,
        argv,
        search=_search_path(arguments["env"]),
        cwd=arguments["cwd"],
    )


def _popen_init(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    # On a fork-exec-wait loop every Python frame costs about three times its warm price,
    # so scope.current(), _carried()'s hit and _popen_layout()'s hit are inlined here.
    state = _scope_get()
    active = scope._baseline_active if state is None else state.active()
    if active is None or _internal.busy():
        return wrapped(*args, **kwargs)
    rules = active.rules.get(POLICY)
    last = _last_carried
    if last is not None and last[0] is state and last[1] == scope._baseline_version:
        carry = last[2]
    else:
        carry = _carried()
    if rules is None and carry is None:
        return wrapped(*args, **kwargs)
    known = _layouts.get(getattr(wrapped, "__func__", wrapped))
    layout, plain_keywords = known if known is not None else _popen_layout(wrapped)
    if (
        rules is not None
        and carry is None
        and len(args) == 1
        and type(args[0]) is list
        and plain_keywords is not None
        and plain_keywords.issuperset(kwargs)
    ):
        # The plain path: run([...]) with no executable, shell, cwd or env. It only ever
        # says yes; anything it cannot allow goes through the full decision below.
        argv: list[Any] = args[0][:]  # decide and run the same list
        executable = _plainly_allowed(active, rules, argv)
        if executable is not None:
            return _run_allowed(executable, wrapped, argv, kwargs)
    plan = _Plan(rules, carry)
    arguments = layout.pick(_POPEN_READS, args, kwargs)
    if arguments is None:
        return wrapped(*args, **kwargs)  # Popen raises its own TypeError; nothing starts
    changed = _normalise_popen(arguments)
    operation = _popen_operation(arguments)
    if not _decide(plan, operation):
        args, kwargs = layout.put(changed, args, kwargs)
        return wrapped(*args, **kwargs)
    if (
        not arguments["shell"]
        and operation.executable is not None
        and os.path.isabs(operation.executable)
    ):
        # Exec the file that was judged, not a second PATH search that could find another
        # (a program placed earlier on PATH meanwhile, a relative PATH entry read from cwd).
        changed["executable"] = program = _own_copy(operation.executable)
    elif arguments["shell"] and arguments["executable"] is None:
        # Popen would run its own "/bin/sh" and raise its event with that object: hand it
        # the shell that was judged, as an object of our own (argv[0] stays "/bin/sh").
        changed["executable"] = program = _own_copy(SHELL)
    else:
        program = None  # a shell the caller named: Popen runs it as given
    if plan.carry is not None:
        changed["env"] = _with_carrier(arguments["env"], plan.carry)
    args, kwargs = layout.put(changed, args, kwargs)
    return _carry_out(
        operation, plan, "subprocess.Popen", wrapped, args, kwargs, program=program
    )


def _plainly_allowed(active: Active, rules: tuple[Rule, ...], argv: list[Any]) -> str | None:
    """The program ``argv`` runs (an absolute path as given, or a name searched on this
    process's PATH) if every rule permits it; None if it is not that simple (not all str,
    a relative path, not found, not permitted).

    A yes that no rule needed the file system for (``permits_as_written``) is remembered
    in ``active``'s memo of allowed operations, keyed by every string it was judged on: the
    path as given, or the name with the PATH it was searched on and the file found there.
    The search itself is never remembered: it is done again on every call.
    """
    for item in argv:
        if type(item) is not str:
            return None
    if not argv:
        return None
    name: str = argv[0]
    key: tuple[str, ...]
    if name[:1] == os.sep:
        # An absolute path is judged as written, . and .. folded: no file system lookup.
        key = (POLICY, name)
        if key in active.allowed:
            return name  # only a path already in normal form is remembered (below)
        executable: str | None = os.path.normpath(name)
        search: str | None = None
    elif os.sep in name:
        return None  # relative to the working directory: the full path
    else:
        search = os.environ.get("PATH", os.defpath)  # what _search_path(None) returns
        executable = resolve(name, path=search)
        if executable is None:
            return None
        key = (POLICY, name, search, executable)
        if key in active.allowed:
            return executable
    target = ProcessTarget(executable, name, search)
    as_written = True
    for rule in rules:
        if type(rule) is Subprocess and rule.permits_as_written(target):
            continue
        as_written = False
        # No details: this event is only asked about, never reported (a refusal is
        # decided, and reported, again by the full path).
        if not rule.permits(Event(POLICY, "run", str(executable), target)):
            return None
    if as_written and (search is not None or executable == name):
        remember_allowed(active, key)
    return executable


def _run_allowed(
    executable: str,
    wrapped: Callable[..., Any],
    argv: list[str],
    kwargs: dict[str, Any],
) -> Any:
    """_decide's bookkeeping and _carry_out for an allowed plain Popen, in one frame.

    Popen is told to exec ``executable``, the file that was judged: its own PATH search
    (or a path with ``..`` that the kernel reads through a link) could find another file.
    """
    program = _own_copy(executable)  # what the event carries: see _own_copy
    if executable != argv[0]:
        kwargs = {**kwargs, "executable": program}
    else:
        argv[0] = program  # our own copy of the list: the child sees the same text
    local = _local.__dict__
    through: frozenset[str] = local.get("through", frozenset())
    if executable in through:
        return wrapped(argv, **kwargs)  # part of an operation already allowed
    if local.get("expect") == executable:
        del local["expect"]  # the audit hook's one-level-up decision, now used up
    saved = local.copy()
    local["through"] = through | {executable}
    local["keep"] = False
    local["carry"] = None
    quiet = _internal.set_quiet(  # proceed(), inlined
        "subprocess.Popen", lambda event_args: bool(event_args) and event_args[0] is program
    )
    try:
        return wrapped(argv, **kwargs)
    finally:
        _internal.restore_quiet(quiet)
        local.clear()
        local.update(saved)


# --- os.system ------------------------------------------------------------------------------------


def _shell_prefix(command: Any, carry: str) -> Any:
    # os.system hands the command to /bin/sh with this process's environment, and setting
    # os.environ here would leak into every other thread's children: export in the shell.
    import shlex

    with _internal.own_work():  # lambdaguard's own module: see _internal.own_work
        from lambdaguard import _inherit

    line = f"{_inherit.VARIABLE}={shlex.quote(carry)}; export {_inherit.VARIABLE}\n"
    if isinstance(command, bytes):
        return os.fsencode(line) + command
    return line + _text(command)


def _system(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    plan = _plan(current())
    if plan is None:
        return wrapped(*args, **kwargs)
    command = args[0] if args else kwargs.get("command")
    operation = _program("system", "os.system", SHELL, [SHELL, "-c", _text(command)], search=None)
    if not _decide(plan, operation):
        return wrapped(*args, **kwargs)
    if plan.carry is not None and command is not None:
        args, kwargs = (_shell_prefix(command, plan.carry),), {}
    return _carry_out(operation, plan, "os.system", wrapped, args, kwargs)


# --- os.exec* and os.spawn* ----------------------------------------------------------------------


def _exec_like(
    action: str,
    route: str,
    *,
    first: int,
    plain: str | None,
    env_at: int | None,
    keep_in_child: bool,
    audit_event: str,
) -> Wrapper:
    """A wrapper for exec*/spawn*: ``first`` is the index of the file argument; ``plain``
    names the non-searching form (execv for execvp, ...) of a PATH-searching one, None for
    a form that does not search."""
    plain_exec = plain is None and action == "exec"  # execv, execve

    def wrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if plain is not None and len(args) > first:
            redirect: tuple[int, str, str] | None = _local.__dict__.get("exec_as")
            if (
                redirect is not None
                and redirect[0] != os.getpid()
                and type(args[first]) is str
                and args[first] == redirect[1]
            ):
                # pty.spawn's child, running os.execlp(argv[0], *argv): exec the program
                # decided in the parent (_pty_spawn), not the result of a new PATH search.
                del _local.exec_as
                return _plain[plain](redirect[2], *args[first + 1 :], **kwargs)
        plan = _plan(current())
        if plan is None or len(args) < first + 2:
            return wrapped(*args, **kwargs)
        if plain_exec and type(args[first]) in (str, bytes) and not args[first]:
            # An empty path execs nothing (ENOENT): it is what a searching form that found
            # nothing hands on (_unfound; a spawnvp child's execv), nothing to decide.
            return wrapped(*args, **kwargs)
        if env_at is not None and len(args) > env_at and args[env_at] is not None:
            args = (*args[:env_at], _plain_env(args[env_at]), *args[env_at + 1 :])
        env = args[env_at] if env_at is not None and len(args) > env_at else None
        # Decide and run the same values: a __fspath__ asked twice could answer differently.
        args = (*args[:first], _text(args[first]), _argv(args[first + 1]), *args[first + 2 :])
        if plain is not None:
            # execvp(e) and spawnvp(e) search the PATH of their env argument, if any.
            operation = _searched(action, route, args[first], args[first + 1], _search_path(env))
        else:
            operation = _program(action, route, args[first], args[first + 1], search=None)
        if action == "spawn":
            operation = operation.adding(FORK)  # POSIX spawn* fork first, then exec
        decided = _decide(plan, operation)
        if plain is not None:
            # Exec the file that was judged, with the non-searching form: the original's own
            # PATH search could find another (one placed earlier on PATH meanwhile, or a
            # later one after the judged file fails to exec). argv[0] stays the caller's.
            wrapped = _plain[plain]
            program = operation.executable or _unfound(operation.name)
            args = (*args[:first], program, *args[first + 1 :])
        if not decided:
            return wrapped(*args, **kwargs)
        if plan.carry is not None:
            if env_at is not None and len(args) > env_at:
                args = (
                    *args[:env_at],
                    _with_carrier(args[env_at], plan.carry),
                    *args[env_at + 1 :],
                )
            elif action == "exec":
                # The process is about to become the child: setting its own environment is
                # setting the child's (restored below if exec fails).
                return _exec_with_carrier(operation, plan, audit_event, wrapped, args, kwargs)
            # spawnv/spawnvp: the forked child sets it (_after_fork_in_child) before exec.
        return _carry_out(
            operation, plan, audit_event, wrapped, args, kwargs, keep_in_child=keep_in_child
        )

    return wrapper


def _exec_with_carrier(
    operation: _Operation,
    plan: _Plan,
    audit_event: str,
    wrapped: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    assert plan.carry is not None
    with _internal.own_work():  # lambdaguard's own module: see _internal.own_work
        from lambdaguard import _inherit

    previous = os.environ.get(_inherit.VARIABLE)
    os.environ[_inherit.VARIABLE] = plan.carry
    try:
        return _carry_out(operation, plan, audit_event, wrapped, args, kwargs)
    finally:
        if previous is None:
            os.environ.pop(_inherit.VARIABLE, None)
        else:
            os.environ[_inherit.VARIABLE] = previous


def _through_path(path: object) -> bool:
    """Whether ``path`` is, as given, a program of an operation allowed on this thread and
    being carried out: what _decide would find, without building the operation. Only an
    absolute path can match (every "through" mark is one, or FORK), so it is already the
    normalised path the operation would be keyed by."""
    through: frozenset[str] | None = _local.__dict__.get("through")
    if not through or type(path) is not str:
        return False
    return path[:1] == os.sep and path in through


def _posix_spawn(route: str, *, searches: bool) -> Wrapper:
    def wrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        active = current()
        if active is None or (args and _through_path(args[0])):
            # 3.13's Popen spawns the program the Popen patch decided: not a new decision.
            return wrapped(*args, **kwargs)
        plan = _plan(active)
        if plan is None or len(args) < 2:
            return wrapped(*args, **kwargs)
        args = (_text(args[0]), _argv(args[1]), *args[2:])
        if searches:
            # posix_spawnp searches the PATH of this process, not of the env argument (glibc).
            operation = _searched("spawn", route, args[0], args[1], _search_path(None))
            # Spawn the file that was judged, with posix_spawn: glibc's own search could
            # find another. argv[0] stays the caller's.
            wrapped = _plain["posix_spawn"]
            if operation.executable is None and "\0" not in operation.name:
                _decide(plan, operation)  # raises if refused
                # As posix_spawnp fails for a name found nowhere on PATH.
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), args[0])
            args = (operation.executable or operation.name, *args[1:])
        else:
            operation = _program("spawn", route, args[0], args[1], search=None)
        if not _decide(plan, operation):
            return wrapped(*args, **kwargs)
        if plan.carry is not None:
            if len(args) > 2:
                args = (*args[:2], _with_carrier(args[2], plan.carry), *args[3:])
            elif "env" in kwargs:
                kwargs = {**kwargs, "env": _with_carrier(kwargs["env"], plan.carry)}
        return _carry_out(operation, plan, "os.posix_spawn", wrapped, args, kwargs)

    return wrapper


# --- fork, pty, _posixsubprocess ----------------------------------------------------------------


def _fork_wrapper(route: str, audit_event: str) -> Wrapper:
    def wrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        plan = _plan(current())
        if plan is None:
            return wrapped(*args, **kwargs)
        operation = _fork(route)
        if not _decide(plan, operation):
            return wrapped(*args, **kwargs)
        return _carry_out(operation, plan, audit_event, wrapped, args, kwargs)

    return wrapper


def _pty_spawn(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    plan = _plan(current())
    if plan is None:
        return wrapped(*args, **kwargs)
    argv = _argv(args[0] if args else kwargs.get("argv"))
    name = argv[0] if argv else ""
    # The child runs os.execlp(argv[0], *argv): os.execvp's search, on this process's PATH.
    operation = _searched("spawn", "pty.spawn", name, argv, _search_path(None)).adding(FORK)
    args, kwargs = (argv, *args[1:]), {k: v for k, v in kwargs.items() if k != "argv"}
    if not _decide(plan, operation):
        return wrapped(*args, **kwargs)
    # The forked child's os.execlp (the execvp patch) execs the judged file rather than
    # searching PATH again; only the child (another pid) takes this, and only once.
    saved = _local.__dict__.get("exec_as")
    _local.exec_as = (os.getpid(), name, operation.executable or _unfound(name))
    try:
        return _carry_out(operation, plan, "pty.spawn", wrapped, args, kwargs, keep_in_child=True)
    finally:
        if saved is None:
            _local.__dict__.pop("exec_as", None)
        else:
            _local.exec_as = saved


def _fork_exec_operation(args: tuple[Any, ...]) -> tuple[_Operation, str | None]:
    """The operation to decide, and the one candidate to hand the child (None: as given).

    The caller's executable list is a PATH search done by the caller, and the child tries
    every entry in turn, going on after any failure (ENOEXEC, EACCES): it is handed only
    the candidate that was judged, as the exec*p routes are.
    """
    argv = _argv(args[0])
    candidates = [_text(c) for c in args[1]] if len(args) > 1 and args[1] else []
    chosen = next(
        (c for c in candidates if os.path.isfile(c) and os.access(c, os.X_OK)),
        candidates[0] if candidates else (argv[0] if argv else ""),
    )
    operation = _program("spawn", "_posixsubprocess.fork_exec", chosen, argv, search=None)
    return operation, chosen if len(candidates) > 1 else None


def _fork_exec(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    carry = _carry()
    plan = _plan(current())
    if plan is None and carry is None:
        return wrapped(*args, **kwargs)
    if len(args) < 6:
        return wrapped(*args, **kwargs)
    operation, only = _fork_exec_operation(args)
    if plan is not None:
        if _decide(plan, operation):  # raises if blocked; False: allowed one level up
            carry = plan.carry
        if only is not None:
            args = (args[0], [os.fsencode(only)], *args[2:])
    if carry is not None:
        # fork_exec takes the environment as a list of b"KEY=VALUE" (index 5; None: inherit).
        env = args[5]
        items = (
            list(env)
            if env is not None
            else [os.fsencode(f"{k}={v}") for k, v in os.environ.items()]
        )
        with _internal.own_work():  # lambdaguard's own module: see _internal.own_work
            from lambdaguard import _inherit

        prefix = os.fsencode(_inherit.VARIABLE + "=")
        items = [i for i in items if not bytes(i).startswith(prefix)] + [
            prefix + os.fsencode(carry)
        ]
        args = (*args[:5], items, *args[6:])
    if plan is None:
        return wrapped(*args, **kwargs)
    return _carry_out(operation, plan, "_posixsubprocess.fork_exec", wrapped, args, kwargs)


# --- multiprocessing -----------------------------------------------------------------------------


def _start_method(process: Any) -> str:
    method = getattr(process, "_start_method", None)
    if method:
        return str(method)
    try:
        from multiprocessing import context

        default = context._default_context
        # No get_start_method(): without allow_none it fixes the default as a side effect.
        actual = default._actual_context or default._default_context  # type: ignore[attr-defined]
        return str(actual.get_start_method())
    except Exception:
        return "unknown"


def _process_start(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    plan = _plan(current())
    if plan is None or instance is None:
        return wrapped(*args, **kwargs)
    method = _start_method(instance)
    if method == "fork":
        executable = sys.executable
        action = "fork"
    else:
        from multiprocessing import spawn

        executable = _text(spawn.get_executable())
        action = "spawn"
    route = f"multiprocessing ({method})"
    operation = _Operation(
        action,
        route,
        executable,
        os.path.abspath(executable),
        [executable],
        frozenset({FORK, sys.executable}),
    )
    if not _decide(plan, operation):
        return wrapped(*args, **kwargs)
    return _carry_out(operation, plan, "", wrapped, args, kwargs)


def _patch_multiprocessing(module: Any) -> None:
    patch(module, "BaseProcess.start", _process_start)


# --- install --------------------------------------------------------------------------------


def _patch_subprocess(module: Any) -> None:
    patch(module, "Popen.__init__", _popen_init)


def _patch_pty(module: Any) -> None:
    # pty.fork catches OSError from os.forkpty and falls back to os.fork: a refused forkpty
    # (a PermissionError) would be tried, and reported, twice. Decide it once here.
    patch(module, "fork", _fork_wrapper("pty.fork", "os.forkpty"))
    patch(module, "spawn", _pty_spawn)


def install() -> None:
    """Apply this area's patches (once; called by lambdaguard.sensors.ensure_installed)."""
    # subprocess and pty are patched when first imported (now, if they already are):
    # importing them here would add ~9 ms (signal, selectors, termios, ...) to the cold
    # start of a handler that never starts a process. Until then the audit hook is the
    # sensor for every route, as it is for code that goes around the patches.
    register_post_import("subprocess", _patch_subprocess)
    register_post_import("pty", _patch_pty)
    patch(os, "system", _system)
    # The non-searching forms, as they are before patching: what a searching form's patch
    # calls with the program it judged.
    for name in ("execv", "execve", "spawnv", "spawnve", "posix_spawn"):
        if hasattr(os, name):
            _plain[name] = getattr(os, name)
    for name, first, plain, env_at in (
        ("execv", 0, None, None),
        ("execve", 0, None, 2),
        ("execvp", 0, "execv", None),
        ("execvpe", 0, "execve", 2),
    ):
        patch(
            os,
            name,
            _exec_like(
                "exec",
                f"os.{name}",
                first=first,
                plain=plain,
                env_at=env_at,
                keep_in_child=False,
                audit_event="os.exec",
            ),
        )
    for name, first, plain, env_at in (
        ("spawnv", 1, None, None),
        ("spawnve", 1, None, 3),
        ("spawnvp", 1, "spawnv", None),
        ("spawnvpe", 1, "spawnve", 3),
    ):
        if hasattr(os, name):
            # POSIX spawn* fork, then exec in the child: the child keeps the "through" mark.
            patch(
                os,
                name,
                _exec_like(
                    "spawn",
                    f"os.{name}",
                    first=first,
                    plain=plain,
                    env_at=env_at,
                    keep_in_child=True,
                    audit_event="os.fork",
                ),
            )
    if hasattr(os, "posix_spawn"):
        patch(os, "posix_spawn", _posix_spawn("os.posix_spawn", searches=False))
        patch(os, "posix_spawnp", _posix_spawn("os.posix_spawnp", searches=True))
    patch(os, "fork", _fork_wrapper("os.fork", "os.fork"))
    if hasattr(os, "forkpty"):
        patch(os, "forkpty", _fork_wrapper("os.forkpty", "os.forkpty"))
    try:
        import _posixsubprocess

        patch(_posixsubprocess, "fork_exec", _fork_exec)
    except ImportError:  # not POSIX
        pass
    register_post_import("multiprocessing.process", _patch_multiprocessing)
    os.register_at_fork(after_in_child=_after_fork_in_child)


# --- the audit backstop ---------------------------------------------------------------------------


def _audit(
    make: Callable[[tuple[Any, ...]], _Operation | None],
    *,
    expect: bool = False,
    program_at: int | None = None,
) -> Callable[[tuple[Any, ...], Active], None]:
    """An audit handler; ``program_at`` is the index of the event argument that is the
    program's path, checked against the "through" marks before anything is built."""

    def handler(args: tuple[Any, ...], active: Active) -> None:
        rules = active.rules.get(POLICY)
        if rules is None:
            return
        if program_at is not None and len(args) > program_at:
            program = args[program_at]
            if _through_path(program) or (type(program) in (str, bytes) and not program):
                return  # part of an allowed operation, or an empty path, which execs nothing
        try:
            operation = make(args)
        except Exception:
            operation = None
        if operation is None:
            return
        key = operation.key()
        if key is not None and (key in _through() or key == _local.__dict__.pop("expect", None)):
            return
        event = operation.event()
        if check(event, rules) is Mode.BLOCK:
            raise blocked(event)
        if expect:
            # Going around the patches, an allowed Popen (3.13: posix_spawn) or pty.spawn
            # (forkpty) raises one more event for the same operation; skip exactly that one.
            _local.expect = FORK if operation.route == "pty.spawn" else key

    return handler


def _audit_popen(args: tuple[Any, ...]) -> _Operation:
    executable, argv, cwd, env = (list(args) + [None] * 4)[:4]
    return _program(
        "run", "subprocess.Popen (audit)", executable, argv, search=_search_path(env), cwd=cwd
    )


def _audit_posix_spawn(args: tuple[Any, ...]) -> _Operation:
    path = _text(args[0])
    search = _search_path(None) if os.sep not in path else None
    return _program(
        "spawn", "os.posix_spawn (audit)", path, args[1] if len(args) > 1 else None, search=search
    )


AUDIT_HANDLERS: dict[str, Callable[[tuple[Any, ...], Active], None]] = {
    "subprocess.Popen": _audit(_audit_popen, expect=True),
    "os.system": _audit(
        lambda a: _program(
            "system", "os.system (audit)", SHELL, [SHELL, "-c", _text(a[0])], search=None
        )
    ),
    "os.exec": _audit(
        lambda a: _program("exec", "os.exec (audit)", a[0], a[1], search=None), program_at=0
    ),
    "os.spawn": _audit(lambda a: _program("spawn", "os.spawn (audit)", a[1], a[2], search=None)),
    "os.posix_spawn": _audit(_audit_posix_spawn, program_at=0),
    "os.fork": _audit(lambda a: _fork("os.fork (audit)")),
    "os.forkpty": _audit(lambda a: _fork("os.forkpty (audit)")),
    "pty.spawn": _audit(
        lambda a: _program(
            "spawn", "pty.spawn (audit)", _argv(a[0])[0], a[0], search=_search_path(None)
        ),
        expect=True,
    ),
}
