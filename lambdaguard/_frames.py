"""Find the code location that caused an operation, and the stack around it.

``location`` is the first frame that is neither lambdaguard's own nor the Python standard
library's: for ``subprocess.run(...)`` or ``urllib.request.urlopen(...)`` that is the line
of the function's code (or of the dependency) that made the call, not a line inside
``subprocess.py`` or ``socket.py``. When every frame outside lambdaguard is standard
library (code run by the interpreter itself), it is the first frame outside lambdaguard.
``stack`` lists the frames outside lambdaguard, standard library included, innermost
first, so nothing between the call and the operation is hidden.
"""

from __future__ import annotations

import os
import sys
from types import FrameType

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms of cold start)
if TYPE_CHECKING:
    from collections.abc import Callable

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
# wrapt's pure-Python fallback adds frames between the caller and our wrapper; they are
# part of the patch machinery, not of the user's code.
_WRAPT_PART = os.sep + "wrapt" + os.sep
# The standard library's directory, found from a module that always lives there.
_STDLIB_DIR = os.path.dirname(os.path.abspath(os.__file__)) + os.sep
_THIRD_PARTY_PARTS = (os.sep + "site-packages" + os.sep, os.sep + "dist-packages" + os.sep)
STACK_DEPTH = 8
SEARCH_DEPTH = 64  # frames walked to find the location; bounded for deep recursion


_MACHINERY, _STDLIB, _USER = 1, 2, 3
# filename -> kind: a reported violation walks a dozen frames, and classifying a filename
# is a few string scans. Bounded, so a process that generates code (exec with unique
# names) cannot grow it without limit.
_kinds: dict[str, int] = {}
_KINDS_LIMIT = 4096


def _is_machinery(filename: str) -> bool:
    return filename.startswith(_PACKAGE_DIR) or _WRAPT_PART in filename


def _is_stdlib(filename: str) -> bool:
    if filename.startswith("<frozen "):
        return True
    return filename.startswith(_STDLIB_DIR) and not any(
        part in filename for part in _THIRD_PARTY_PARTS
    )


def _classify(filename: str) -> int:
    kind = _MACHINERY if _is_machinery(filename) else _STDLIB if _is_stdlib(filename) else _USER
    if len(_kinds) < _KINDS_LIMIT:
        _kinds[filename] = kind
    return kind


def user_frames(
    _getframe: Callable[[int], FrameType] = sys._getframe,  # only for tests: avoids monkeypatching
) -> tuple[str, list[str]]:
    """``(location, stack)``: see the module docstring. ``location`` is ``<unknown>`` if none."""
    frame: FrameType | None = _getframe(1)
    stack: list[str] = []
    location = ""
    walked = 0
    while frame is not None and walked < SEARCH_DEPTH:
        walked += 1
        filename = frame.f_code.co_filename
        kind = _kinds.get(filename) or _classify(filename)
        if kind != _MACHINERY:
            where = f"{filename}:{frame.f_lineno}"
            if len(stack) < STACK_DEPTH:
                stack.append(where)
            if kind == _USER and not location:
                location = where
            if location and len(stack) >= STACK_DEPTH:
                break
        frame = frame.f_back
    return location or (stack[0] if stack else "<unknown>"), stack
