"""Files sensors: patches and audit-event handlers for the ``tmp`` and ``handler_source`` policies.

Patched (Python API)                        Why a patch and not only the audit hook
os.open, posix.open                         the ``open`` audit event carries no ``dir_fd``
os.mkfifo, os.mknod (and posix.*)           no audit event at all
linecache.getlines                          cached source lines are served without a read

Audit event (CPython's arguments)            Action
open (path, mode, flags)                     read / write (from flags): builtins.open,
                                             io.open, pathlib, io.FileIO, io.open_code,
                                             os.open, logging. builtins.open is left to
                                             the hook: FileIO raises this event before
                                             the system call with the path io.open
                                             converted and the exact flags, so a patch
                                             would only add a wrapper to every open
os.remove (path, dir_fd)                     remove (also os.unlink)
os.rename (src, dst, src_dir_fd, dst_dir_fd) rename (also os.replace, shutil.move)
os.mkdir / os.rmdir (path, [mode,] dir_fd)   mkdir / rmdir
os.listdir / os.scandir (path)               list (pathlib, glob, os.walk, shutil)
os.chmod (path, mode, dir_fd)                chmod (also fchmod: path is the fd)
os.chown (path, uid, gid, dir_fd)            chown (also fchown, shutil.chown)
os.truncate (path, length)                   truncate (also ftruncate: path is the fd)
os.link (src, dst, src_dir_fd, dst_dir_fd)   link
os.symlink (src, dst, dir_fd)                symlink (the new link's location is judged)
os.utime (path, times, ns, dir_fd)           utime
os.setxattr / os.removexattr                 xattr (a write)
os.getxattr / os.listxattr                   xattr (a read)
sqlite3.connect (database)                   sqlite (a write: sqlite creates the file)
mmap.__new__ (fileno, length, access, off)   mmap (the file behind the descriptor)
shutil.copyfile/copymode/copystat/copytree,  decided only to block early; in alert mode the
shutil.move/rmtree/chown/make_archive/       low-level events above report each operation
shutil.unpack_archive, tempfile.mkstemp/     once, so these add no second line
mkdtemp

Every path goes through :func:`locate` (bytes, path-like objects, descriptors, ``dir_fd``,
the current directory, ``..``, symbolic links and ``/proc/self/...``) into the resolved
and the written form that each rule judges (policies/files.py). Resolutions that cannot
have changed are remembered (see "path resolution" below and docs/files.md, "The hot
path"), and so are "open" events already permitted under the same policy view.

Imports are not reads of the author's source: the import system reads modules from
``importlib._bootstrap_external`` on its way to compiling them (``get_code``) and lists
directories to find them (``_fill_cache``); :func:`_by_import_system` recognises those
frames, and only ``handler_source`` exempts them (importing from /tmp is still a read).
"""

from __future__ import annotations

import os
import stat
import sys
import threading
from types import FrameType

from lambdaguard import _internal
from lambdaguard._frames import _is_machinery
from lambdaguard.decide import decide, enforce
from lambdaguard.policies.files import FileRule, FileTarget
from lambdaguard.policy import Active, Event, Mode, Rule
from lambdaguard.scope import current
from lambdaguard.sensors._patching import patch, proceed, register_post_import

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms of cold start)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any
    Wrapper = Callable[[Callable[..., Any], Any, tuple[Any, ...], dict[str, Any]], Any]
    AuditHandler = Callable[[tuple[Any, ...], Active], None]
    Stamp = tuple[int, int, int]  # st_dev, st_ino, st_ctime_ns

TMP = "tmp"
HANDLER_SOURCE = "handler_source"
POLICIES = (TMP, HANDLER_SOURCE)


# The originals, taken before any patch: resolution must not go through our own sensors.
_os_open = os.open
_os_close = os.close
_readlink = os.readlink
_lstat = os.lstat
_getcwd = os.getcwd
_O_PATH = getattr(os, "O_PATH", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_ST_RDONLY = getattr(os, "ST_RDONLY", 1)


# --- path resolution ------------------------------------------------------------------------

# Two memories of resolutions, so that a path seen before costs a dict lookup, not a walk.
#
# ``_stable``: path as written (absolute, unnormalised) -> its resolved path, kept only for
# paths whose resolution cannot change: a directory with no link in it on a read-only file
# system, and the entries of such a directory that are not links (nothing can be created,
# removed or replaced there). In Lambda that is everything outside /tmp: the runtime, /opt
# layers, site-packages and the task root.
_stable: dict[str, str] = {}
_STABLE_LIMIT = 8192
_VOLATILE = ("/proc/", "/dev/")  # pseudo file systems: their entries come and go

# ``_plain``: absolute, normalised paths on *writable* file systems that were found free of
# links (every component a real directory or file, so the path is its own resolution).
# Such a path can only come to lead elsewhere when a link is put at one of its components:
# by ``symlink`` at that name, or by ``rename``/``link`` onto that name (a link, or a
# directory that holds links, moved into place); mounting needs privileges we leave out.
# The audit hook sees every one of those made by Python code in this process, whether a
# scope is active or not (``AUDIT_OBSERVERS``): the destination's last component is marked
# changed for good and the memory is emptied, so no path through that name is trusted
# again. What the hook cannot see (native code, another process, code that ran before the
# hook) can read and write /tmp and the task root directly anyway, so a stale entry gives
# it nothing it did not have. A child process is the exception (the subprocess allow-list
# may let through a program that can make links but not read), so the first process this
# process starts switches this memory off for good (``_child_started``); remembered opens
# are then stamped and re-checked instead (``_decided``). docs/files.md has the argument.
_plain: dict[str, None] = {}
_PLAIN_LIMIT = 8192
_CHANGED_LIMIT = 1024
_changed: set[str] = set()  # names a link may have been put at since the start
_plain_lock = threading.RLock()
_plain_state = {"on": True}


def fd_path(fd: int) -> str | None:
    """The path behind a file descriptor (Linux ``/proc/self/fd``), or None."""
    try:
        return _readlink(f"/proc/self/fd/{fd}")
    except (OSError, ValueError):
        return None


def _open_o_path(path: str) -> int | None:
    """An ``O_PATH`` descriptor for ``path`` (the caller closes it), or None if it cannot be had.

    Our own open raises the "open" audit event: it is marked quiet, as a patch would.
    """
    previous = _internal.set_quiet("open")
    try:
        return _os_open(path, _O_PATH | _O_CLOEXEC)
    except (OSError, ValueError):
        return None
    finally:
        _internal.restore_quiet(previous)


def _kernel_path(path: str) -> str | None:
    """Where the kernel's own path walk lands (every link and /proc magic link followed).

    One ``open(O_PATH)`` and one readlink: the same walk the real operation will make,
    whatever the path's depth, and without reading or blocking on the file (FIFOs).
    """
    if not _O_PATH:
        return os.path.realpath(path) if os.path.exists(path) else None
    fd = _open_o_path(path)
    if fd is None:
        return None
    try:
        return fd_path(fd)
    finally:
        _os_close(fd)


def _remember(path: str, real: str) -> None:
    if len(_stable) >= _STABLE_LIMIT:
        _stable.clear()
    _stable[path] = real


def _keep(path: str) -> None:
    """Remember ``path`` (absolute, normalised, found free of links) in ``_plain``."""
    if not _plain_state["on"] or path.startswith(_VOLATILE):
        return
    # Under the lock that a change takes to mark its name and empty the memory: either the
    # change comes first (and its mark refuses this path) or it empties the memory after.
    with _plain_lock:
        if not _plain_state["on"] or not _changed.isdisjoint(path.split("/")):
            return
        if len(_plain) >= _PLAIN_LIMIT:
            _plain.clear()
        _plain[path] = None


# The "open" events already found permitted under one Active view: the same file opened
# again in the same scope costs one dict lookup, made by the audit hook itself before it
# marks the thread busy (``AUDIT_KNOWN_ALLOWED``). Keyed by the event's own arguments
# ``(path, mode, flags)``, for absolute link-free paths only. A verdict is a pure function of
# the path's two forms and the view's immutable rules, so an entry holds as long as the
# path's resolution does; what vouches for that is the entry's value:
#
# * ``None``: the path is in ``_stable`` or ``_plain`` (see above), whose own rules keep it
#   honest; ``forget`` empties this memo with ``_plain``.
# * a stamp ``(st_dev, st_ino, st_ctime_ns)``, once a child process has been started (and
#   ``_plain`` is off): one ``stat`` of the path must still find that very file before the
#   entry is used. The stamp is taken from a descriptor of the path whose kernel path is the
#   path itself, so it names the file that was at that path, link-free, when it was judged.
#   A child can move that file elsewhere and lead the path to it through a link (the file
#   keeps its inode; renaming it changes its ctime on Linux file systems, moving a
#   directory above it does not): the open then reaches the very file that was permitted,
#   which the handler could equally have opened before the move. A child cannot put
#   another file behind the path without changing the stamp (another inode, or the same
#   inode number reused by a file created later, which has a later ctime).
#
# One tuple, replaced whole, so that a thread never reads one view's memo as another's.
_decided: tuple[Active | None, dict[tuple[Any, ...], Stamp | None]] = (None, {})
_DECIDED_LIMIT = 4096
_stat = os.stat
_fstat = os.fstat


def _settled_open(args: tuple[Any, ...], active: Active) -> bool:
    """True if this very "open" event was permitted under ``active`` before (audit.py asks).

    Runs for every open in scope, before the busy mark: no user code (only a plain ``str``
    path is looked up, so no object's own ``__eq__`` or ``__hash__`` runs on the path), no
    audit event (``stat`` raises none), never raises.
    """
    view, seen = _decided
    if view is not active or len(args) != 3 or type(args[0]) is not str:
        return False
    stamp = seen.get(args, False)
    if stamp is None:
        return True
    if stamp is False:
        return False
    try:
        found = _stat(args[0])
    except (OSError, ValueError):
        return False
    return stamp == (found.st_dev, found.st_ino, found.st_ctime_ns)


def _identity(path: str) -> Stamp | None:
    """The stamp of the file at ``path`` if the kernel's own walk of ``path`` is ``path``.

    One ``open(O_PATH)`` whose ``fstat`` and ``/proc/self/fd`` link describe the same file at
    the same instant: a link anywhere on the way, or a swap during the check, gives another
    kernel path and no stamp.
    """
    if not _O_PATH:
        return None
    fd = _open_o_path(path)
    if fd is None:
        return None
    try:
        found = _fstat(fd)
    except OSError:
        found = None
    try:
        return None if found is None or fd_path(fd) != path else (
            found.st_dev, found.st_ino, found.st_ctime_ns
        )
    finally:
        _os_close(fd)


def _stampable(path: str) -> bool:
    """Whether an open of ``path`` is stamped rather than vouched for by ``_plain``/``_stable``."""
    return (
        not _plain_state["on"]
        and path.startswith("/")
        and not path.startswith(_VOLATILE)
        and _clean(path)
        and _stable.get(path) != path
    )


def _remember_decision(
    active: Active, args: tuple[Any, ...], real: str, stamp: Stamp | None
) -> None:
    """Remember a permitted open; ``stamp``: from ``_identity`` before the decision, if any."""
    global _decided
    path = args[0]
    if real != path or not path.startswith("/") or path.startswith(_VOLATILE) or not _clean(path):
        return  # judged through a link, relative or unnormalised: decide it again next time
    stamped = not _plain_state["on"] and _stable.get(path) != path
    if stamped and stamp is None:
        return  # no file at the path yet (a create), or a link on the way: nothing to stamp
    # The decision may have been made from a walk just before another thread made the
    # path link-free and remembered it; it still holds: a path in memory is judged on its
    # one form (real == written), and a verdict that permitted (real, written) permitted
    # the written form, whatever real was.
    with _plain_lock:
        if not stamped and path not in _plain and _stable.get(path) != path:
            return  # resolved by a walk that nothing keeps honest: decide it again next time
        memo = _decided
        if memo[0] is not active:
            memo = _decided = (active, {})
        if len(memo[1]) >= _DECIDED_LIMIT:
            memo[1].clear()
        memo[1][args] = stamp


def _child_started() -> None:
    """A child process may make links this process never sees: ``_plain`` goes off for good.

    The first child empties both memories; from then on a remembered open is stamped and
    checked with one ``stat`` at each use (``_settled_open``), so later children change
    nothing that a stamp does not catch.
    """
    global _decided
    if not _plain_state["on"]:
        return
    with _plain_lock:
        # Off only once both are empty: a thread that finds it off may start its own child.
        _plain.clear()
        _decided = (None, {})
        _plain_state["on"] = False


def forget(name: str | None) -> None:
    """A link may now stand at ``name`` (a last path component): never trust a path through it.

    ``None`` (or a name that is not one component) switches the memory off for good.
    """
    global _decided
    with _plain_lock:
        if name is None or name in ("", ".", "..") or len(_changed) >= _CHANGED_LIMIT:
            _plain_state["on"] = False
        else:
            _changed.add(name)
        _plain.clear()
        _decided = (None, {})


def _clean(path: str) -> bool:
    """True if the absolute ``path`` is already normalised (``os.path.normpath`` is a no-op)."""
    return not (
        "//" in path or "/./" in path or "/../" in path or path.endswith(("/", "/.", "/.."))
    )


def _real_dir(parent: str) -> str:
    cached = _stable.get(parent)
    if cached is not None:
        return cached
    if parent in _plain:
        return parent
    real = _kernel_path(parent)
    if real is None:
        # Missing directory: the operation will fail or create it; realpath resolves what
        # exists of it and keeps the rest as written.
        return os.path.realpath(parent)
    # Only a link-free directory qualifies (no link, so no /proc magic link, can retarget it).
    if real == os.path.normpath(parent) and not real.startswith(_VOLATILE):
        if _read_only(real):
            _remember(parent, real)
        elif real == parent:
            _keep(parent)
    return real


def _read_only(path: str) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & _ST_RDONLY)
    except OSError:
        return False


def _as_text(raw: object) -> str | int | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    try:
        path = os.fspath(raw)  # type: ignore[call-overload]
    except TypeError:
        return None
    if isinstance(path, bytes):
        return os.fsdecode(path)
    return path if isinstance(path, str) else None


def _resolve(joined: str, follow: bool, depth: int = 0) -> str:
    cached = _stable.get(joined)
    if cached is not None:
        return cached
    if joined in _plain:
        return joined
    stripped = joined.rstrip("/") or "/"
    if _clean(stripped):
        # os.path.split and join, for a normalised absolute path (the usual case).
        head, _, name = stripped.rpartition("/")
        parent = head or "/"
    else:
        parent, name = os.path.split(stripped)
    if name in ("", ".", ".."):
        return _kernel_path(stripped) or os.path.realpath(stripped)
    real_parent = _real_dir(parent)
    candidate = real_parent + name if real_parent.endswith("/") else real_parent + "/" + name
    stable_parent = parent in _stable
    if not follow:
        return candidate  # the operation acts on the directory entry itself
    try:
        mode = _lstat(candidate).st_mode
    except (OSError, ValueError):
        if stable_parent:
            _remember(joined, candidate)  # nothing can be created in a read-only directory
        return candidate  # does not exist yet: it would be created right here
    if not stat.S_ISLNK(mode):
        if stable_parent:
            _remember(joined, candidate)
        elif candidate == joined and parent in _plain:
            _keep(joined)
        return candidate
    followed = _kernel_path(candidate)
    if followed is not None:
        return followed
    # A dangling link: an O_CREAT open creates the file it points to, so follow it by hand.
    if depth >= 40:
        return candidate
    try:
        target = _readlink(candidate)
    except OSError:
        return candidate
    return _resolve(os.path.join(os.path.dirname(candidate), target), True, depth + 1)


def locate(
    raw: object, *, dir_fd: int | None = None, follow: bool = True
) -> tuple[str, str] | None:
    """``(real, lexical)`` for a path argument, or None when it names no file (the call fails).

    ``raw``: str, bytes, a path-like object or a file descriptor. Relative paths are taken
    from ``dir_fd`` when given, else from the current directory, as the kernel does.
    ``follow``: whether the operation follows a link in the last component (``open`` and
    ``chmod`` do; ``remove``, ``rename`` and ``mkdir`` act on the entry itself).
    """
    if type(raw) is str:
        if raw in _plain:
            return raw, raw  # the hot path: a link-free absolute path seen before
        text: str | int | None = raw
    else:
        text = _as_text(raw)
    if text is None:
        return None
    if isinstance(text, int):
        real = fd_path(text)
        if real is None or not real.startswith("/"):
            return None  # a pipe, socket or anonymous descriptor: not a path
        return real, real
    if not text or "\0" in text:
        return None
    if text.startswith("/"):
        joined = text
    else:
        base = fd_path(dir_fd) if dir_fd is not None and dir_fd >= 0 else _getcwd()
        if base is None:
            return None  # a bad dir_fd: the call fails with EBADF
        joined = base.rstrip("/") + "/" + text
    lexical = joined if _clean(joined) else os.path.normpath(joined)
    return _resolve(joined, follow), lexical


def resolve(
    raw: object, *, write: bool, dir_fd: int | None = None, follow: bool = True
) -> FileTarget | None:
    """The FileTarget for a path argument, or None when it names no file (see :func:`locate`)."""
    located = locate(raw, dir_fd=dir_fd, follow=follow)
    if located is None:
        return None
    return FileTarget(located[0], located[1], write)


# --- the import system ------------------------------------------------------------------------

_IMPORTLIB = frozenset(
    {
        "_frozen_importlib",
        "_frozen_importlib_external",
        "importlib._bootstrap",
        "importlib._bootstrap_external",
    }
)
# Steps of an import: compiling a module (source or bytecode, and writing the .pyc) and
# filling a path finder's directory cache.
_IMPORT_STEPS = frozenset({"get_code", "_fill_cache"})
_METADATA = ("importlib.metadata", "importlib_metadata")


def _by_import_system(action: str) -> bool:
    """True if the operation is the import system finding or loading a module.

    Walks out from the sensor: past lambdaguard's and wrapt's frames, then through
    importlib's own frames; an import step among them makes it an import. A read by
    ``loader.get_source``/``get_data`` called from elsewhere (linecache, inspect, user
    code) is not an import. importlib.metadata listing sys.path entries is import
    plumbing too (entry points, versions of bundled dependencies).
    """
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and _is_machinery(frame.f_code.co_filename):
        frame = frame.f_back
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module in _IMPORTLIB:
            if frame.f_code.co_name in _IMPORT_STEPS:
                return True
        else:
            return action == "list" and module.startswith(_METADATA)
        frame = frame.f_back
    return False


# --- deciding -------------------------------------------------------------------------------


def _in_force(active: Active | None) -> bool:
    return active is not None and (TMP in active.rules or HANDLER_SOURCE in active.rules)


def judge(
    active: Active,
    action: str,
    raw: object,
    *,
    write: bool,
    dir_fd: int | None = None,
    follow: bool = True,
    only_block: bool = False,
    details: dict[str, Any] | None = None,
    located: tuple[str, str] | None = None,
) -> str | None:
    """Decide one path operation for each file policy in force; raise if one blocks it.

    ``only_block``: a high-level event (shutil, tempfile) whose low-level operations are
    judged and reported one by one; it is reported only when it is blocked, so that alert
    mode gives one line per operation, not two.

    ``located``: ``(real, lexical)`` when the caller has resolved ``raw`` already.

    Returns the resolved path when every rule permitted the operation without a report,
    else None.
    """
    if located is None:
        located = locate(raw, dir_fd=dir_fd, follow=follow)
    if located is None:
        return None
    real, lexical = located
    permitted = True
    for policy in POLICIES:
        rules = active.rules.get(policy)
        # Most paths (site-packages, the runtime) are nowhere near /tmp or the task root,
        # and an allow-listed path has its verdict remembered by the rule: both are settled
        # before any event is built.
        if rules is None or _permitted(rules, real, lexical, write):
            continue
        permitted = False
        target = FileTarget(real, lexical, write)
        event = Event(policy, action, real, target, _details(raw, target, details))
        verdict = decide(event, rules)
        if verdict is Mode.ALLOW or (only_block and verdict is not Mode.BLOCK):
            continue
        if policy == HANDLER_SOURCE and _by_import_system(action):
            continue
        enforce(event, rules, verdict)
    return real if permitted else None


def _permitted(rules: tuple[Rule, ...], real: str, lexical: str, write: bool) -> bool:
    # The registry only ever puts Tmp and HandlerSource rules under these keywords. A plain
    # loop: no generator object on the hot path.
    file_rules: tuple[FileRule, ...] = rules  # type: ignore[assignment]
    for rule in file_rules:
        if rule.concerns(real, lexical, write) and not rule.permits_paths(real, lexical, write):
            return False
    return True


def _details(
    raw: object, target: FileTarget, extra: dict[str, Any] | None
) -> dict[str, Any] | None:
    details = dict(extra) if extra else {}
    if target.lexical != target.real:
        details["path_as_written"] = target.lexical
    if isinstance(raw, int):
        details["fd"] = raw
    details["access"] = "write" if target.write else "read"
    return details


def _active() -> Active | None:
    active = current()
    if not _in_force(active) or _internal.busy():
        return None
    return active


# --- patches --------------------------------------------------------------------------------


def _os_open_wrapper(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    active = _active()
    if active is None:
        return wrapped(*args, **kwargs)
    path: Any = args[0] if args else kwargs.get("path")
    if not isinstance(path, int | str | bytes):
        # Convert a path-like object once, and hand the original that same text: a second
        # __fspath__ call could name another file than the one judged.
        try:
            path = os.fspath(path)
        except TypeError:
            return wrapped(*args, **kwargs)  # the original raises its own TypeError
        if args:
            args = (path, *args[1:])
        else:
            kwargs = {**kwargs, "path": path}
    flags = args[1] if len(args) > 1 else kwargs.get("flags", 0)
    flags = flags if isinstance(flags, int) else 0
    write = bool(flags & _WRITE_FLAGS)
    judge(
        active,
        "write" if write else "read",
        path,
        write=write,
        dir_fd=kwargs.get("dir_fd"),
        follow=not flags & _O_NOFOLLOW,
    )
    return proceed("open", wrapped, args, kwargs)


def _create_node(action: str) -> Wrapper:
    # mkfifo and mknod raise no audit event: this patch is their only sensor.
    def wrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        active = _active()
        if active is None:
            return wrapped(*args, **kwargs)
        path = args[0] if args else kwargs.get("path")
        judge(active, action, path, write=True, dir_fd=kwargs.get("dir_fd"), follow=False)
        return wrapped(*args, **kwargs)

    return wrapper


# Modules whose linecache use is formatting a traceback or a warning: a blocked read there
# shows no source line instead of raising, so that logging an exception never breaks.
_SOFT_LINECACHE_CALLERS = frozenset({"traceback", "warnings"})


def _getlines(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    active = _active()
    if active is None or (HANDLER_SOURCE not in active.rules and TMP not in active.rules):
        return wrapped(*args, **kwargs)
    filename = args[0] if args else kwargs.get("filename")
    if not isinstance(filename, str) or filename.startswith("<"):
        return wrapped(*args, **kwargs)  # "<string>", "<frozen ...>": not a file
    try:
        # Only a block is decided here (lines may come from the cache, with no read); the
        # read itself, if any, meets the audit hook, which reports it. Not proceed(): a
        # relative name is looked up along sys.path, so the file read may not be the one
        # judged here, and that read must not be quiet.
        judge(active, "linecache", filename, write=False, only_block=True)
    except PermissionError:
        if _called_from(_SOFT_LINECACHE_CALLERS):
            return []
        raise
    try:
        return wrapped(*args, **kwargs)
    except PermissionError:
        if _called_from(_SOFT_LINECACHE_CALLERS):
            return []
        raise


def _patch_linecache(module: Any) -> None:
    patch(module, "getlines", _getlines)


def _called_from(modules: frozenset[str]) -> bool:
    frame: FrameType | None = sys._getframe(2)
    for _ in range(6):
        if frame is None:
            return False
        if frame.f_globals.get("__name__") in modules:
            return True
        frame = frame.f_back
    return False


def install() -> None:
    """Apply this area's patches (once; called by lambdaguard.sensors.ensure_installed)."""
    for owner in _os_modules():
        patch(owner, "open", _os_open_wrapper)
        for name, action in (("mkfifo", "mkfifo"), ("mknod", "mknod")):
            if hasattr(owner, name):
                patch(owner, name, _create_node(action))
    # linecache (with tokenize and re) is not imported just to patch it: ~1-2 ms of a bare
    # cold start. It is patched when something imports it, before that code gets it.
    register_post_import("linecache", _patch_linecache)
    try:
        import _posixsubprocess
    except ImportError:  # not POSIX
        return
    # It raises no audit event; multiprocessing's spawn and forkserver start children here.
    patch(_posixsubprocess, "fork_exec", _starting_a_process)


def _starting_a_process(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    _child_started()  # a child may make links this process never sees (see _plain)
    return wrapped(*args, **kwargs)


def _os_modules() -> Iterable[Any]:
    # posix is where os's functions live; code that imports it directly skips os.* patches.
    yield os
    posix = sys.modules.get("posix") or sys.modules.get("nt")
    if posix is not None and posix is not os:
        yield posix


# --- audit handlers ---------------------------------------------------------------------------


def _dir_fd(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _arg(args: tuple[Any, ...], index: int) -> Any:
    return args[index] if len(args) > index else None


def _audit_open(args: tuple[Any, ...], active: Active) -> None:
    # The sensor for builtins.open, io.open, pathlib and io.FileIO (which raise this event
    # with the path io.open converted, the FileIO mode and the exact flags, before the
    # system call and for descriptors too), and the backstop for os.open. Kept lean: it
    # runs on every open in the process.
    # An open permitted before under this view never reaches here: the audit hook asks
    # _settled_open first.
    if not args:
        return
    path = args[0]
    rules = active.rules
    if TMP not in rules and HANDLER_SOURCE not in rules:
        return
    # Once a child has started, a link-free path's stamp is also its resolution: the kernel
    # walked it to itself. One O_PATH open then stands for the walk (the same system calls)
    # and vouches for the remembered verdict.
    stamp = _identity(path) if type(path) is str and _stampable(path) else None
    flags = args[2] if len(args) > 2 else 0
    if not isinstance(flags, int):
        flags = 0
    write = bool(flags & _WRITE_FLAGS)
    action, follow = ("write" if write else "read"), not flags & _O_NOFOLLOW
    # The event carries no dir_fd: a relative path is taken from the current directory.
    # FileIO (mode given as text) opens relative to the current directory, or through its
    # opener, whose own os.open raises its own event (mode None). The os.open patch, which
    # sees dir_fd, has already decided calls made through it, so a relative os.open event
    # seen only here came by another route (an os.open reference taken before the patch)
    # and may be relative to any open directory. Opening a /tmp directory is a read, so
    # only a write-only tmp rule lets one be open: then the write is judged against each
    # open directory descriptor under /tmp too.
    real = judge(
        active, action, path, write=write, follow=follow,
        located=None if stamp is None else (path, path),
    )
    if write and TMP in rules and _arg(args, 1) is None and _is_relative(path):
        for fd in _open_directory_fds():
            judge(active, action, path, write=write, dir_fd=fd, follow=follow)
    elif (
        real is not None
        and len(args) == 3
        and type(path) is str
        and (args[1] is None or type(args[1]) is str)
        and type(args[2]) is int
    ):
        # Exact built-in parts only: the key is compared in C by the compiled gate, where
        # no object's own __eq__ or __hash__ may run.
        _remember_decision(active, args, real, stamp)


def _is_relative(raw: object) -> bool:
    text = _as_text(raw)
    return isinstance(text, str) and bool(text) and not text.startswith("/")


def _open_directory_fds(limit: int = 256) -> list[int]:
    """Descriptors of this process that are open on a directory (Linux /proc/self/fd)."""
    found: list[int] = []
    with _internal.own_work():
        try:
            names = os.listdir("/proc/self/fd")
        except OSError:
            return found
        for name in names[:limit]:
            try:
                if stat.S_ISDIR(os.stat(int(name)).st_mode):
                    found.append(int(name))
            except (OSError, ValueError):
                continue
    return found


def _audit_path(
    action: str, *, write: bool, dir_fd_at: int | None, follow: bool, only_block: bool = False
) -> AuditHandler:
    def handler(args: tuple[Any, ...], active: Active) -> None:
        if not _in_force(active) or not args:
            return
        path = args[0] if args[0] is not None else "."
        dir_fd = _dir_fd(_arg(args, dir_fd_at)) if dir_fd_at is not None else None
        judge(
            active, action, path, write=write, dir_fd=dir_fd, follow=follow, only_block=only_block
        )

    return handler


def _audit_two(
    action: str,
    *,
    src_write: bool,
    src_follow: bool,
    src_dir_fd_at: int | None = None,
    dst_dir_fd_at: int | None = None,
    only_block: bool = False,
) -> AuditHandler:
    # (src, dst, ...): the destination is always written; the source is read or changed.
    # ``src_follow``: whether the operation follows a link given as the source (link and
    # copy do; rename and move act on the entry).
    def handler(args: tuple[Any, ...], active: Active) -> None:
        if not _in_force(active) or len(args) < 2:
            return
        src_fd = _dir_fd(_arg(args, src_dir_fd_at)) if src_dir_fd_at is not None else None
        dst_fd = _dir_fd(_arg(args, dst_dir_fd_at)) if dst_dir_fd_at is not None else None
        details = {"source": str(args[0]), "destination": str(args[1])}
        if args[0] is not None:
            judge(
                active,
                action,
                args[0],
                write=src_write,
                dir_fd=src_fd,
                follow=src_follow,
                only_block=only_block,
                details=details,
            )
        if args[1] is not None:
            judge(
                active,
                action,
                args[1],
                write=True,
                dir_fd=dst_fd,
                follow=False,
                only_block=only_block,
                details=details,
            )

    return handler


def _audit_symlink(args: tuple[Any, ...], active: Active) -> None:
    # symlink(src, dst, dir_fd): src is the link's text, not a file touched now.
    if _in_force(active) and len(args) >= 2:
        details = {"link_text": str(args[0])}
        judge(
            active,
            "symlink",
            args[1],
            write=True,
            dir_fd=_dir_fd(_arg(args, 2)),
            follow=False,
            details=details,
        )


def _audit_archive(args: tuple[Any, ...], active: Active) -> None:
    # shutil.make_archive(base_name, format, root_dir, base_dir)
    if not _in_force(active) or not args:
        return
    judge(active, "archive", args[0], write=True, follow=False, only_block=True)
    if _arg(args, 2) is not None:
        judge(active, "archive", args[2], write=False, only_block=True)


def _audit_unpack(args: tuple[Any, ...], active: Active) -> None:
    # shutil.unpack_archive(filename, extract_dir, format)
    if not _in_force(active) or not args:
        return
    judge(active, "unpack", args[0], write=False, only_block=True)
    if _arg(args, 1) is not None:
        judge(active, "unpack", args[1], write=True, only_block=True)


def _audit_sqlite(args: tuple[Any, ...], active: Active) -> None:
    if not _in_force(active) or not args:
        return
    database = _as_text(args[0])
    if not isinstance(database, str) or database in ("", ":memory:"):
        return
    # The event does not say whether uri=True was passed (and SQLite may be built to take
    # URIs regardless), so a "file:" name is judged both as a literal path and as a URI.
    judge(active, "sqlite", database, write=True)
    if database.startswith("file:"):
        # The path sits between "file:" (and an optional //authority) and "?", and SQLite
        # decodes %XX escapes in it; mode=memory opens no file.
        path, _, query = database[len("file:") :].partition("?")
        if path.startswith("//"):
            path = "/" + path[2:].partition("/")[2]
        from urllib.parse import unquote  # lazily: sensors install at cold start

        path = unquote(path)
        if "mode=memory" not in query and path and path != ":memory:":
            judge(active, "sqlite", path, write=True)


def _audit_mmap(args: tuple[Any, ...], active: Active) -> None:
    if not _in_force(active) or not args:
        return
    fileno = args[0]
    if not isinstance(fileno, int) or fileno < 0:
        return  # an anonymous mapping
    import mmap

    write = _arg(args, 2) != mmap.ACCESS_READ
    judge(active, "mmap", fileno, write=write)


AUDIT_HANDLERS: dict[str, AuditHandler] = {
    "open": _audit_open,
    "os.remove": _audit_path("remove", write=True, dir_fd_at=1, follow=False),
    "os.rename": _audit_two(
        "rename", src_write=True, src_follow=False, src_dir_fd_at=2, dst_dir_fd_at=3
    ),
    "os.mkdir": _audit_path("mkdir", write=True, dir_fd_at=2, follow=False),
    "os.rmdir": _audit_path("rmdir", write=True, dir_fd_at=1, follow=False),
    "os.listdir": _audit_path("list", write=False, dir_fd_at=None, follow=True),
    "os.scandir": _audit_path("list", write=False, dir_fd_at=None, follow=True),
    "os.chmod": _audit_path("chmod", write=True, dir_fd_at=2, follow=True),
    "os.chown": _audit_path("chown", write=True, dir_fd_at=3, follow=True),
    "os.truncate": _audit_path("truncate", write=True, dir_fd_at=None, follow=True),
    "os.link": _audit_two(
        "link", src_write=True, src_follow=True, src_dir_fd_at=2, dst_dir_fd_at=3
    ),
    "os.symlink": _audit_symlink,
    "os.utime": _audit_path("utime", write=True, dir_fd_at=3, follow=True),
    "os.setxattr": _audit_path("xattr", write=True, dir_fd_at=None, follow=True),
    "os.removexattr": _audit_path("xattr", write=True, dir_fd_at=None, follow=True),
    "os.getxattr": _audit_path("xattr", write=False, dir_fd_at=None, follow=True),
    "os.listxattr": _audit_path("xattr", write=False, dir_fd_at=None, follow=True),
    "sqlite3.connect": _audit_sqlite,
    "mmap.__new__": _audit_mmap,
    # High-level events: block early with a clear action; their low-level operations
    # report one by one in alert mode.
    "shutil.copyfile": _audit_two("copy", src_write=False, src_follow=True, only_block=True),
    "shutil.copymode": _audit_two("copy", src_write=False, src_follow=True, only_block=True),
    "shutil.copystat": _audit_two("copy", src_write=False, src_follow=True, only_block=True),
    "shutil.copytree": _audit_two("copy", src_write=False, src_follow=True, only_block=True),
    "shutil.move": _audit_two("move", src_write=True, src_follow=False, only_block=True),
    "shutil.rmtree": _audit_path("remove", write=True, dir_fd_at=1, follow=False, only_block=True),
    "shutil.chown": _audit_path("chown", write=True, dir_fd_at=None, follow=True, only_block=True),
    "shutil.make_archive": _audit_archive,
    "shutil.unpack_archive": _audit_unpack,
    "tempfile.mkstemp": _audit_path(
        "write", write=True, dir_fd_at=None, follow=False, only_block=True
    ),
    "tempfile.mkdtemp": _audit_path(
        "mkdir", write=True, dir_fd_at=None, follow=False, only_block=True
    ),
}


# Asked by the audit hook before anything else: an open permitted before under this view.
AUDIT_KNOWN_ALLOWED: dict[str, Callable[[tuple[Any, ...], Active], bool]] = {"open": _settled_open}
# The same reader in the compiled gate (lambdaguard/_audit_gate.c, shape "open"): it reads
# ``_decided`` from this module's namespace on each event, so a replaced memo is seen.
GATE_MEMOS = {"open": ("open", globals(), "_decided")}


# --- observers: what keeps the memory of link-free paths honest --------------------------------


def _observe_link(args: tuple[Any, ...]) -> None:
    # symlink(src, dst, ...), rename(src, dst, ...), link(src, dst, ...): a link may now
    # stand at dst (link() without following makes a second name for a link). The source of
    # a rename only loses its entry; whatever takes its place later comes by one of these.
    try:
        text = _as_text(args[1]) if len(args) > 1 else None
    except Exception:  # a hostile __fspath__: trust nothing
        text = None
    forget(text.rstrip("/").rpartition("/")[2] if isinstance(text, str) else None)


def _observe_process(args: tuple[Any, ...]) -> None:
    _child_started()


AUDIT_OBSERVERS: dict[str, Callable[[tuple[Any, ...]], None]] = {
    "os.symlink": _observe_link,
    "os.rename": _observe_link,
    "os.link": _observe_link,
    **dict.fromkeys(
        (
            "subprocess.Popen",
            "os.system",
            "os.spawn",
            "os.posix_spawn",
            "os.fork",
            "os.forkpty",
            "pty.spawn",
        ),
        _observe_process,
    ),
}
