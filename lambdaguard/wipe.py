"""``guard(wipe_tmp=True)``: remove what an invocation created under /tmp, keep the rest.

Lambda reuses a warm execution environment for the next invocation, /tmp included, so one
invocation's files (another tenant's upload, a decrypted secret) would otherwise be there
for the next. Before the guarded call, :func:`snapshot` records every entry under the
directory (path -> device and inode, links not followed); after it, also when it raises,
:func:`wipe` removes every entry that is new (a path not in the snapshot, or the same path
now naming another file) and leaves the rest, even when its content changed. A new
directory goes with everything in it. One ``report.notice`` line summarises the removal.

The wipe is lambdaguard's own work (``_internal.own_work``): a tmp policy in force never
trips over it. Links are removed, never followed, so a link planted in /tmp cannot steer
the wipe outside it. Cost: one scan of the directory tree before and one after each
invocation (docs/files.md).
"""

from __future__ import annotations

import contextvars
import os
import shutil
import stat
import sys
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

from lambdaguard import _internal, report
from lambdaguard.errors import ConfigError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms of cold start)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

DEFAULT_ROOT = "/tmp"
PATHS_IN_LOG = 20

Snapshot = dict[str, tuple[int, int]]


def root_for(value: object) -> str | None:
    """The directory ``guard(wipe_tmp=...)`` wipes: True -> /tmp, a path -> it, False -> none."""
    if value is None or value is False:
        return None
    if value is True:
        return DEFAULT_ROOT
    if isinstance(value, str | os.PathLike):
        path = os.fspath(value)
        if isinstance(path, str) and os.path.isabs(path):
            return os.path.normpath(path)
    raise ConfigError(
        f"guard(wipe_tmp={value!r}): accepted: True (wipe /tmp), False, or the absolute path "
        "of the directory to wipe."
    )


def snapshot(root: str) -> Snapshot:
    """Every entry under ``root``: path -> (device, inode). Links are not followed."""
    seen: Snapshot = {}
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    seen[entry.path] = (info.st_dev, info.st_ino)
                    if stat.S_ISDIR(info.st_mode):
                        stack.append(entry.path)
        except OSError:
            continue
    return seen


@dataclass
class Removal:
    """What one wipe removed."""

    entries: list[str] = field(default_factory=list)  # new top-level entries removed
    files: int = 0
    directories: int = 0
    bytes: int = 0
    errors: int = 0


def wipe(root: str, before: Snapshot) -> Removal:
    """Remove every entry under ``root`` that is not in ``before``; return what went."""
    removal = Removal()
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as scan:
                entries = list(scan)
        except OSError:
            continue
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            is_dir = stat.S_ISDIR(info.st_mode)
            if before.get(entry.path) == (info.st_dev, info.st_ino):
                if is_dir:
                    stack.append(entry.path)
                continue
            _remove(entry.path, is_dir, info.st_size, removal)
    return removal


def _remove(path: str, is_dir: bool, size: int, removal: Removal) -> None:
    if is_dir:
        files, directories, total = _measure(path)

        def failed(*_: object) -> None:
            removal.errors += 1

        # rmtree never follows links (it uses the fd-based walk where the OS has one).
        if sys.version_info >= (3, 12):
            shutil.rmtree(path, onexc=failed)
        else:
            shutil.rmtree(path, onerror=failed)
        removal.files += files
        removal.directories += directories + 1
        removal.bytes += total
    else:
        try:
            os.unlink(path)
        except OSError:
            removal.errors += 1
            return
        removal.files += 1
        removal.bytes += size
    removal.entries.append(path)


def _measure(path: str) -> tuple[int, int, int]:
    """Files, subdirectories and bytes in a directory about to be removed (for the log)."""
    files = directories = total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        directories += len(dirnames)
        files += len(filenames)
        for name in filenames:
            with suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return files, directories, total


# Roots already being wiped around the current invocation in this context: a guarded
# helper called from a guarded handler must not wipe files the handler still needs; the
# outermost call's wipe covers everything the invocation created.
_wiping: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar(
    "lambdaguard_wiping", default=frozenset()
)


@contextmanager
def around_invocation(
    root: str | None, invocation: Callable[[], report.Invocation] | None = None
) -> Iterator[None]:
    """Snapshot ``root`` before the block and wipe what the block created after it.

    Only the outermost guarded call wipes a given root; nested ones share its wipe.
    ``invocation``: the invocation the summary line belongs to (it is written outside
    the guarded call's scope); by default the one running here.
    """
    outer = _wiping.get()
    if root is None or root in outer:
        yield
        return
    with _internal.own_work():
        before = snapshot(root)
    token = _wiping.set(outer | {root})
    try:
        yield
    finally:
        _wiping.reset(token)
        with _internal.own_work():
            try:
                removal = wipe(root, before)
            except Exception:
                removal = Removal(errors=1)
            if removal.entries or removal.errors:
                _log(root, removal, None if invocation is None else invocation())


def _log(root: str, removal: Removal, invocation: report.Invocation | None) -> None:
    report.notice(
        f"lambdaguard wiped {root}: removed {len(removal.entries)} new entries "
        f"({removal.files} files, {removal.directories} directories, {removal.bytes} bytes)",
        {
            "event": "wipe_tmp",
            "root": root,
            "removed": len(removal.entries),
            "files": removal.files,
            "directories": removal.directories,
            "bytes": removal.bytes,
            "errors": removal.errors,
            "paths": removal.entries[:PATHS_IN_LOG],
        },
        invocation,
    )
