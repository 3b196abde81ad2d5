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
import shutil
from collections.abc import Iterable
from dataclasses import dataclass

from lambdaguard.errors import ConfigError
from lambdaguard.policy import Event, Mode, Rule, register

ACCEPTED_ENTRIES = (
    "accepted: an absolute path (/usr/bin/ffmpeg) or a bare program name resolved on PATH (ffmpeg)"
)


@dataclass(frozen=True)
class ProcessTarget:
    """The program a process operation would run.

    ``executable`` is the resolved absolute path, or None when it could not be resolved (a
    name not found on the call's PATH); ``name`` is the program as the caller gave it.
    """

    executable: str | None
    name: str

    def __str__(self) -> str:
        return self.executable if self.executable is not None else self.name


def resolve(name: str, *, path: str | None, cwd: str | None = None) -> str | None:
    """The absolute path ``name`` refers to, as exec would find it; None if not found.

    A name with a slash is a path (relative to ``cwd``, the child's working directory, when
    given); a bare name is searched on ``path`` (a PATH string; None means ``os.defpath``).
    """
    if not name:
        return None
    if os.sep in name:
        base = cwd if cwd is not None else os.getcwd()
        return os.path.normpath(os.path.join(base, name))
    found = shutil.which(name, path=path if path is not None else os.defpath)
    if found is None:
        return None
    return os.path.abspath(found)


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
        executable = os.path.normpath(subject.executable)
        if executable in self._paths:
            return True
        return any(resolve(name, path=self.path) == executable for name in self._names)

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
