"""The ``subprocess`` policy: what a child process is, allow-list entries, and matching.

Allow-list entries (docs/processes.md has the full rules)::

    /usr/bin/ffmpeg     an absolute path: exactly that file may be run
    ffmpeg              a name: whatever ``ffmpeg`` resolves to on PATH when the operation is
                        decided (the PATH the rule saw when it was built, not a later one)

Every route is judged by the program the child *runs*: ``run("ls")`` by the ``ls`` found on
the call's PATH, ``run("ls", shell=True)`` and ``os.system("ls")`` by ``/bin/sh`` (allowing a
shell allows every command), ``os.fork()`` and ``multiprocessing`` by the Python interpreter.

Paths are compared after ``os.path.abspath`` (``.`` and ``..`` folded) but symbolic links are
*not* followed: a multi-call binary (busybox, coreutils' single binary) chooses what to be
from the name it was started by, so allowing ``/bin/ls -> busybox`` must not allow
``/tmp/sh -> busybox``.

The PATH used to resolve a name entry is captured when the rule is built: changing
``os.environ["PATH"]`` afterwards never loosens a rule in force (DESIGN.md "Scopes"). The
file system is looked at when the operation is decided, so a tool installed after the rule
was built (unpacked from a layer, say) is still found.
"""

from __future__ import annotations

import os

from lambdaguard.errors import ConfigError
from lambdaguard.policy import Event, Mode, Rule, register

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms of cold start)
if TYPE_CHECKING:
    from collections.abc import Iterable

ACCEPTED_ENTRIES = (
    "accepted: an absolute path (/usr/bin/ffmpeg) or a bare program name resolved on PATH (ffmpeg)"
)


class ProcessTarget:
    """The program a process operation would run.

    ``executable`` is the resolved absolute path, or None when it could not be resolved (a
    name not found on the call's PATH); ``name`` is the program as the caller gave it;
    ``search`` is the PATH ``name`` was searched on (None: ``name`` was taken as a path).

    A plain slotted class, not a dataclass: one is built on every guarded operation, and
    importing dataclasses costs cold start (policies/network.py says the same).
    """

    __slots__ = ("executable", "name", "search")

    def __init__(self, executable: str | None, name: str, search: str | None = None) -> None:
        self.executable = executable
        self.name = name
        self.search = search

    def __repr__(self) -> str:
        return f"ProcessTarget({self.executable!r}, {self.name!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ProcessTarget):
            return NotImplemented
        return (self.executable, self.name) == (other.executable, other.name)

    def __hash__(self) -> int:
        return hash((self.executable, self.name))

    def __str__(self) -> str:
        return self.executable if self.executable is not None else self.name


# (PATH, name) -> the files a search tries, in order: (as joined, as abspath would give it,
# or None when that depends on the working directory). Pure string work, so caching it
# cannot go stale; the file system is asked afresh on every search.
_search_lists: dict[tuple[str, str], tuple[tuple[str, str | None], ...]] = {}
_SEARCH_LISTS_LIMIT = 256


def _search_list(name: str, path: str) -> tuple[tuple[str, str | None], ...]:
    key = (path, name)
    found = _search_lists.get(key)
    if found is None:
        seen: set[str] = set()
        candidates: list[tuple[str, str | None]] = []
        for directory in path.split(os.pathsep):
            if directory in seen:  # a repeated directory cannot change the outcome
                continue
            seen.add(directory)
            candidate = os.path.join(directory, name)
            absolute = os.path.normpath(candidate) if os.path.isabs(candidate) else None
            candidates.append((candidate, absolute))
        found = tuple(candidates)
        if len(_search_lists) >= _SEARCH_LISTS_LIMIT:
            _search_lists.clear()  # names come from callers: keep the cache bounded
        _search_lists[key] = found
    return found


def resolve(name: str, *, path: str | None, cwd: str | None = None) -> str | None:
    """The absolute path ``name`` refers to, as exec would find it; None if not found.

    A name with a slash is a path (relative to ``cwd``, the child's working directory, when
    given); a bare name is searched on ``path`` (a PATH string; None means ``os.defpath``;
    its relative entries are read from ``cwd`` too, as the child reads them):
    the first file in a PATH directory that is not a directory and is executable, as
    ``shutil.which`` finds it (an empty PATH finds nothing). Every call asks the file
    system: a program installed or made executable since the last call is seen.
    """
    if not name:
        return None
    if os.sep in name:
        base = cwd if cwd is not None else os.getcwd()
        return os.path.normpath(os.path.join(base, name))
    if path is None:
        path = os.defpath
    if not path or "\0" in name:
        return None  # as shutil.which: PATH='' matches nothing (PATH=':' is the cwd)
    for candidate, absolute in _search_list(name, path):
        if absolute is None and cwd is not None:
            # A relative PATH entry: the child searches it from its own working directory.
            candidate = os.path.join(cwd, candidate)
        # Two access() calls rather than stat(): most candidates are absent, and access()
        # says so without raising. "candidate/" resolves only if candidate is a directory.
        if os.access(candidate, os.X_OK) and not os.access(candidate + os.sep, os.F_OK):
            return absolute if absolute is not None else os.path.abspath(candidate)
    return None


@register
class Subprocess(Rule):
    """The ``subprocess`` policy: creating a child process by any route.

    Parameters
    ----------
    mode:
        ``"block"``, ``"alert"`` or ``"allow"`` (or a :class:`~lambdaguard.Mode`).
    allow:
        Programs that may run: absolute paths, or bare names resolved on PATH at decision
        time. A comma-separated string or a list.
    inherit:
        Carry the policy in force into allowed children through the environment
        (``LAMBDAGUARD_INHERITED_POLICY``); a child that is Python with lambdaguard installed
        enforces it from startup. ``None`` (the default) reads
        ``LAMBDAGUARD_SUBPROCESS_INHERIT`` when the rule is built.

    Example::

        guard(subprocess=Subprocess("block", allow=["/usr/bin/ffmpeg", "git"], inherit=True))
    """

    policy = "subprocess"

    inherit: bool
    path: str
    _paths: frozenset[str]
    _names: tuple[str, ...]

    def __init__(
        self,
        mode: Mode | str,
        *,
        allow: Iterable[str] | str | None = None,
        inherit: bool | None = None,
    ) -> None:
        super().__init__(mode, allow=allow)
        if inherit is not None:
            if not isinstance(inherit, bool):
                raise ConfigError(
                    f"Subprocess(inherit=...): {inherit!r} is not a boolean; accepted: True, "
                    "False or None (read LAMBDAGUARD_SUBPROCESS_INHERIT)."
                )
            self.inherit = inherit

    def _compile(self, entries: tuple[str, ...], *, source: str) -> None:
        # Read here, when the rule is built, never later (DESIGN.md: the environment is read
        # when a policy is built). The import is local: lambdaguard.environment imports
        # this package to register the rule classes.
        from lambdaguard.environment import read_flag

        self.inherit = read_flag(os.environ, "LAMBDAGUARD_SUBPROCESS_INHERIT")
        self.path = os.environ.get("PATH", os.defpath)
        paths: set[str] = set()
        names: list[str] = []
        for entry in entries:
            if "\0" in entry:
                raise ConfigError(
                    f"{source}: allow-list entry {entry!r} contains a NUL byte; {ACCEPTED_ENTRIES}."
                )
            if os.path.isabs(entry):
                paths.add(os.path.normpath(entry))
            elif os.sep in entry:
                raise ConfigError(
                    f"{source}: allow-list entry {entry!r} is a relative path, which would "
                    f"depend on the working directory; {ACCEPTED_ENTRIES}."
                )
            else:
                names.append(entry)
        self._paths = frozenset(paths)
        self._names = tuple(names)

    def permits(self, event: Event) -> bool:
        subject = event.subject
        if not isinstance(subject, ProcessTarget) or subject.executable is None:
            return False
        if self.permits_as_written(subject):
            return True
        executable = os.path.normpath(subject.executable)
        return any(resolve(name, path=self.path) == executable for name in self._names)

    def permits_as_written(self, subject: ProcessTarget) -> bool:
        """Whether this rule allows ``subject`` without asking the file system: its path is
        an entry, or its name is an entry and was searched on this rule's own PATH.

        Such a yes depends on nothing but the subject's strings and this rule, which never
        changes, so a sensor may remember it; a no may still become a yes in
        :meth:`permits`, which resolves the name entries.
        """
        executable = subject.executable
        if executable is None:
            return False
        if subject.search == self.path and subject.name in self._names:
            # The caller's name searched on the rule's own PATH: resolving the entry would
            # repeat the search that found ``executable`` (the common case, one search).
            return True
        return executable in self._paths or os.path.normpath(executable) in self._paths

    def restored(self, *, path: str, inherit: bool) -> Subprocess:
        """This rule with another PATH snapshot and inherit flag (for a carried policy)."""
        clone = self.__class__.__new__(self.__class__)
        clone.__dict__.update(self.__dict__)
        clone.path = path
        clone.inherit = inherit
        return clone

    def __repr__(self) -> str:
        allow = f", allow={list(self.allow)!r}" if self.allow else ""
        inherit = ", inherit=True" if self.inherit else ""
        return f"{type(self).__name__}({self.mode.value!r}{allow}{inherit})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Subprocess)
        return (self.mode, self.allow, self.inherit, self.path) == (
            other.mode,
            other.allow,
            other.inherit,
            other.path,
        )

    def __hash__(self) -> int:
        return hash((type(self), self.mode, self.allow, self.inherit, self.path))
