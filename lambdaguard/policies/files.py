"""The ``tmp`` and ``handler_source`` policies: rule classes and path matching.

Both rules judge a :class:`FileTarget`: the path as the kernel will see it (``real``,
symbolic links and ``/proc/self/...`` resolved by lambdaguard.sensors.files) and the path as
written, made absolute and normalised (``lexical``). A rule governs an operation when
*either* form lies in its area, so a link stored in /tmp and a link pointing into /tmp both
count. docs/files.md explains where and why paths are resolved.

Allow-list entries are path globs (docs/files.md has the table)::

    /tmp/cache/**        the directory and everything under it
    /tmp/*.json          ``*`` and ``?`` stay within one path component
    /tmp/**/out.txt      ``**/`` is any number of directories (zero too)
    config/*.json        handler_source only: relative to the task root

What counts as the author's code (``handler_source``): every file under the task root
(``LAMBDA_TASK_ROOT``, default ``/var/task``) except the top-level entries that an
installed distribution claims in its ``*.dist-info/RECORD`` (what ``pip install -t .``
writes), and the ``*.dist-info`` directories themselves. The handler's own module or
package (from Lambda's ``_HANDLER``) is always the author's code. Bundled dependencies read their
own data files (botocore does, to build a client); those reads are theirs, not a read of
the function's source.
"""

from __future__ import annotations

import os
import sys
import threading

from lambdaguard import _internal
from lambdaguard.errors import ConfigError
from lambdaguard.policy import Event, Mode, Rule, register

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms of cold start)
if TYPE_CHECKING:
    import re
    from collections.abc import Iterable

# tmp access settings: what the policy governs.
READ_WRITE = "read-write"  # reads and writes (FunctionShield's read_write_tmp)
WRITE = "write"  # writes only; reads under /tmp go ahead
ACCESS_VALUES = (READ_WRITE, WRITE)
ACCESS_VARIABLE = "LAMBDAGUARD_TMP_ACCESS"

TASK_ROOT_VARIABLE = "LAMBDA_TASK_ROOT"
HANDLER_VARIABLE = "_HANDLER"  # Lambda's own: "app.handler", "pkg.module.fn", "dir/app.fn"
DEFAULT_TASK_ROOT = "/var/task"

GLOB_HELP = (
    "accepted: absolute path globs such as /tmp/cache/** "
    "(* and ? within one path component, ** across components)"
)


class FileTarget:
    """A path an operation touches, in the two forms a rule judges.

    A slotted class, not a dataclass: importing dataclasses costs ~10 ms of cold start.
    """

    __slots__ = ("lexical", "real", "write")

    def __init__(self, real: str, lexical: str, write: bool) -> None:
        self.real = real  # resolved: symbolic links, /proc/self/..., dir_fd and the cwd applied
        self.lexical = lexical  # absolute and normalised, as written; no link followed
        self.write = write  # the operation changes something (create, write, delete, ...)

    def __repr__(self) -> str:
        return f"FileTarget({self.real!r}, {self.lexical!r}, write={self.write!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FileTarget):
            return NotImplemented
        return (self.real, self.lexical, self.write) == (other.real, other.lexical, other.write)

    def __hash__(self) -> int:
        return hash((self.real, self.lexical, self.write))

    def forms(self) -> tuple[str, ...]:
        return (self.real,) if self.real == self.lexical else (self.real, self.lexical)


def under(path: str, root: str) -> bool:
    """True if ``path`` is ``root`` or lies below it (both absolute and normalised)."""
    if root == "/":
        return path.startswith("/")
    return path == root or path.startswith(root + "/")


class _Area:
    """A set of root directories, tested with one C-level ``startswith`` (the hot path)."""

    def __init__(self, roots: tuple[str, ...]) -> None:
        self.roots = frozenset(roots)
        self.prefixes = tuple("/" if root == "/" else root + "/" for root in roots)

    def contains(self, path: str) -> bool:
        return path.startswith(self.prefixes) or path in self.roots


# --- allow-list globs -----------------------------------------------------------------------


_WILDCARDS = ("*", "?")


def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Compile a path glob: ``*``/``?`` within a component, ``**`` across components."""
    import re  # only for an entry with a wildcard: ``re`` costs ~4 ms of cold start

    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("/**", i) and i + 3 == len(pattern):
            out.append("(?:/.*)?")  # "dir/**": the directory itself and all below it
            i += 3
        elif pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


class Glob:
    """One allow-list entry. Matches exactly what ``glob_to_regex(pattern)`` matches.

    The common entries need no regular expression: a plain path is a string compare, and
    ``dir/**`` with no other wildcard is the directory or a path below it. Any other
    wildcard is compiled with ``re`` once, when the rule is built.
    """

    __slots__ = ("_below", "_exact", "_regex")

    def __init__(self, pattern: str) -> None:
        self._exact: str | None = None
        self._below: str | None = None
        self._regex: re.Pattern[str] | None = None
        if not any(w in pattern for w in _WILDCARDS):
            self._exact = pattern
        elif pattern.endswith("/**") and not any(w in pattern[:-3] for w in _WILDCARDS):
            self._exact = pattern[:-3]
            self._below = pattern[:-2]  # the directory and "/"
        else:
            self._regex = glob_to_regex(pattern)

    def match(self, path: str) -> bool:
        if self._regex is not None:
            return self._regex.match(path) is not None
        return path == self._exact or (self._below is not None and path.startswith(self._below))


def _compile_globs(
    entries: tuple[str, ...], *, source: str, base: str | None
) -> tuple[Glob, ...]:
    compiled: list[Glob] = []
    for entry in entries:
        path = entry
        if not path.startswith("/"):
            if base is None:
                raise ConfigError(
                    f"{source}: allow-list entry {entry!r} is not an absolute path; {GLOB_HELP}."
                )
            path = base.rstrip("/") + "/" + path
        if "\0" in path:
            raise ConfigError(f"{source}: allow-list entry {entry!r} contains NUL; {GLOB_HELP}.")
        trailing = "/**" if path.endswith("/**") else ""
        core = path[: -len(trailing)] if trailing else path
        compiled.append(Glob(os.path.normpath(core) + trailing))
    return tuple(compiled)


def _matches(patterns: tuple[Glob, ...], path: str) -> bool:
    return any(p.match(path) for p in patterns)


def _roots(*paths: str) -> tuple[str, ...]:
    """Each path normalised and resolved: both spellings are governed (/tmp may be a link)."""
    out: list[str] = []
    for path in paths:
        for form in (os.path.normpath(path), os.path.realpath(path)):
            if form not in out:
                out.append(form)
    return tuple(out)


# --- memoised verdicts ----------------------------------------------------------------------

# A rule's answer for a path is a pure function of the two path strings, the access and the
# rule's own compiled allow-list (and, for handler_source, of the task root's RECORD files,
# read once per process). So it is remembered per rule: an allow-listed file read in a loop
# costs one dict lookup, not a regular expression per form. Bounded; cleared when full.
_MEMO_LIMIT = 4096


def _memoised(rule: _PathRule, real: str, lexical: str, write: bool) -> bool:
    memo = rule.__dict__.get("_memo")
    if memo is None:
        memo = rule.__dict__["_memo"] = {}
    key = (real, lexical, write)
    verdict = memo.get(key)
    if verdict is None:
        verdict = rule._permits(real, lexical, write)
        if len(memo) >= _MEMO_LIMIT:
            memo.clear()
        memo[key] = verdict
    return verdict


def _state_without_memo(rule: object) -> dict[str, object]:
    # A rule travels to process-pool workers by pickle: its memo stays behind.
    state = dict(rule.__dict__)
    state.pop("_memo", None)
    return state


# --- tmp ------------------------------------------------------------------------------------


def _tempfile_dir() -> str:
    # tempfile is asked only when it could answer something other than /tmp: importing it
    # pulls in shutil, random and hashlib (several ms of cold start), and its first
    # gettempdir() creates and removes a file to probe the directory. Once it has answered,
    # tempfile.tempdir holds the answer: read it. With no TMPDIR, TEMP or TMP set,
    # gettempdir() would pick /tmp (writable in Lambda), which the policy governs anyway,
    # whether or not tempfile is imported yet (boto3 imports it).
    module = sys.modules.get("tempfile")
    known = getattr(module, "tempdir", None)
    if isinstance(known, str | bytes):
        return os.fsdecode(known)
    if not any(os.environ.get(name) for name in ("TMPDIR", "TEMP", "TMP")):
        return "/tmp"
    import tempfile

    # gettempdir() probes candidate directories by creating a file in them the first time;
    # that is lambdaguard's own work and must not trip a tmp policy already in force.
    with _internal.own_work():
        try:
            return tempfile.gettempdir()
        except OSError:
            return "/tmp"


class _PathRule(Rule):
    """What the two file policies share: judging a FileTarget through a memoised ``_permits``."""

    def permits(self, event: Event) -> bool:
        target = event.subject
        if not isinstance(target, FileTarget):
            return True
        return self.permits_paths(target.real, target.lexical, target.write)

    def permits_paths(self, real: str, lexical: str, write: bool) -> bool:
        """Whether this rule lets the path through (its allow-list, its scope); memoised."""
        return _memoised(self, real, lexical, write)

    def _permits(self, real: str, lexical: str, write: bool) -> bool:
        raise NotImplementedError


@register
class Tmp(_PathRule):
    """The ``tmp`` policy: reading and writing files under /tmp.

    Governs /tmp and the directory ``tempfile`` uses (``tempfile.gettempdir()``, which
    follows ``TMPDIR``), both read when the rule is built.

    Parameters
    ----------
    mode:
        ``"block"``, ``"alert"`` or ``"allow"``.
    allow:
        Path globs exempt from the policy, e.g. ``["/tmp/cache/**"]``.
    access:
        ``"read-write"`` (default, FunctionShield's behaviour): reads and writes are
        governed. ``"write"``: only operations that change something are; reads go ahead.
        When not given, ``LAMBDAGUARD_TMP_ACCESS`` decides, else ``"read-write"``.

    Example::

        guard(tmp=Tmp("block", allow=["/tmp/cache/**"], access="write"))
    """

    policy = "tmp"
    access: str
    roots: tuple[str, ...]

    def __init__(
        self,
        mode: Mode | str,
        *,
        allow: Iterable[str] | str | None = None,
        access: str | None = None,
    ) -> None:
        if access is not None:
            self.access = _parse_access(access, source="Tmp(access=...)")
        super().__init__(mode, allow=allow)

    def _compile(self, entries: tuple[str, ...], *, source: str) -> None:
        if "access" not in self.__dict__:
            raw = os.environ.get(ACCESS_VARIABLE)
            self.access = READ_WRITE if raw is None else _parse_access(raw, source=ACCESS_VARIABLE)
        self.roots = _roots("/tmp", _tempfile_dir())
        self._area = _Area(self.roots)
        # Unpacked for concerns(), which runs on every path operation in scope.
        self._prefixes, self._root_set = self._area.prefixes, self._area.roots
        self._reads_exempt = self.access == WRITE
        self._allow = _compile_globs(entries, source=source, base=None)

    def governs(self, path: str) -> bool:
        return self._area.contains(path)

    def concerns(self, real: str, lexical: str, write: bool) -> bool:
        """Cheap pre-check: could this rule object to the path at all?"""
        if not write and self._reads_exempt:
            return False
        prefixes, roots = self._prefixes, self._root_set
        return (
            real.startswith(prefixes)
            or real in roots
            or (lexical is not real and (lexical.startswith(prefixes) or lexical in roots))
        )

    def _permits(self, real: str, lexical: str, write: bool) -> bool:
        if not write and self.access == WRITE:
            return True
        forms = (real,) if real == lexical else (real, lexical)
        return all(_matches(self._allow, form) for form in forms if self.governs(form))

    def __repr__(self) -> str:
        base = super().__repr__()
        if self.access == READ_WRITE:
            return base
        return base[:-1] + f", access={self.access!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Tmp):
            return NotImplemented
        return (self.mode, self.allow, self.access) == (other.mode, other.allow, other.access)

    def __hash__(self) -> int:
        return hash((type(self), self.mode, self.allow, self.access))

    __getstate__ = _state_without_memo


def _parse_access(value: object, *, source: str) -> str:
    if isinstance(value, str) and value.strip().lower() in ACCESS_VALUES:
        return value.strip().lower()
    raise ConfigError(
        f"{source}: {value!r} is not a tmp access setting; accepted: "
        f"{', '.join(repr(v) for v in ACCESS_VALUES)}."
    )


# --- handler_source ---------------------------------------------------------------------------

# Task root (resolved) -> top-level names claimed by installed distributions. Computed on
# first need, once per process: a deployment package does not change while it runs.
_dependency_names: dict[str, frozenset[str]] = {}
_dependency_lock = threading.Lock()


def dependency_names(root: str) -> frozenset[str]:
    """Top-level entries of ``root`` that belong to installed distributions (not the author).

    Read from each ``*.dist-info/RECORD``: its paths' first components (``botocore``,
    ``bin``, ``six.py``), plus the ``.dist-info`` directories themselves.
    """
    names = _dependency_names.get(root)
    if names is not None:
        return names
    with _dependency_lock, _internal.own_work():
        names = _dependency_names.get(root)
        if names is None:
            names = frozenset(_scan_distributions(root))
            _dependency_names[root] = names
    return names


def _scan_distributions(root: str) -> set[str]:
    found: set[str] = set()
    try:
        entries = os.listdir(root)
    except OSError:
        return found
    for entry in entries:
        if not entry.endswith((".dist-info", ".egg-info")):
            continue
        found.add(entry)
        for listing in ("RECORD", "installed-files.txt", "top_level.txt"):
            try:
                with open(os.path.join(root, entry, listing), encoding="utf-8") as f:
                    lines = f.read().splitlines()
            except (OSError, UnicodeDecodeError):
                continue
            for line in lines:
                path = line.split(",", 1)[0].strip()
                if listing == "installed-files.txt":
                    # egg-info paths are relative to the egg-info directory itself.
                    path = os.path.normpath(os.path.join(entry, path))
                first = path.split("/", 1)[0]
                # A shared top-level __pycache__ holds the author's bytecode as well.
                if first in ("", ".", "..", "__pycache__"):
                    continue
                found.add(first)
                if listing == "top_level.txt":
                    found.add(first + ".py")
            break  # the first listing that exists is authoritative
    return found


def handler_entries(handler: str) -> frozenset[str]:
    """The task-root entries holding the handler module named by ``_HANDLER``.

    They are the author's code even when a distribution claims them (``pip install -t .``
    of the function's own project writes a RECORD for it too).
    """
    module = handler.rpartition(".")[0]
    first = module.split(".", 1)[0].split("/", 1)[0]  # up to the first "." or "/"
    return frozenset({first, first + ".py"}) if first else frozenset()


@register
class HandlerSource(_PathRule):
    """The ``handler_source`` policy: reading the function's own code other than by import.

    The task root is ``LAMBDA_TASK_ROOT`` (default ``/var/task``), read when the rule is
    built. Allow-list entries are path globs, absolute or relative to the task root
    (``HandlerSource("block", allow=["config/*.json"])``).
    """

    policy = "handler_source"
    roots: tuple[str, ...]

    __getstate__ = _state_without_memo

    def _compile(self, entries: tuple[str, ...], *, source: str) -> None:
        root = os.environ.get(TASK_ROOT_VARIABLE) or DEFAULT_TASK_ROOT
        self.roots = _roots(os.path.abspath(root))
        self.handler_entries = handler_entries(os.environ.get(HANDLER_VARIABLE, ""))
        self._area = _Area(self.roots)
        self._prefixes, self._root_set = self._area.prefixes, self._area.roots
        patterns: list[Glob] = []
        for form in self.roots:
            patterns.extend(_compile_globs(entries, source=source, base=form))
        self._allow = tuple(patterns)

    def concerns(self, real: str, lexical: str, write: bool) -> bool:
        """Cheap pre-check: could this rule object to the path at all?"""
        prefixes, roots = self._prefixes, self._root_set
        return (
            real.startswith(prefixes)
            or real in roots
            or (lexical is not real and (lexical.startswith(prefixes) or lexical in roots))
        )

    def root_of(self, path: str) -> str | None:
        return next((root for root in self.roots if under(path, root)), None)

    def is_authors(self, path: str) -> bool:
        """True if ``path`` is the function author's code (see the module docstring)."""
        root = self.root_of(path)
        if root is None:
            return False
        rest = path[len(root) :].lstrip("/")
        first = rest.split("/", 1)[0]
        if not first or first in self.handler_entries:
            # The task root itself (listing it lists the code), or the handler's module.
            return True
        return first not in dependency_names(root)

    def _permits(self, real: str, lexical: str, write: bool) -> bool:
        forms = (real,) if real == lexical else (real, lexical)
        return all(_matches(self._allow, form) for form in forms if self.is_authors(form))


# What the files sensors hold under the "tmp" and "handler_source" keywords.
FileRule = Tmp | HandlerSource
