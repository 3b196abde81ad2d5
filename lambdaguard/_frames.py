"""Find the code location that caused an operation: the first frame outside lambdaguard."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from types import FrameType

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
# wrapt's pure-Python fallback adds frames between the caller and our wrapper; they are
# part of the patch machinery, not of the user's code.
_MACHINERY = (_PACKAGE_DIR, os.sep + "wrapt" + os.sep)
STACK_DEPTH = 8


def _is_machinery(filename: str) -> bool:
    return filename.startswith(_PACKAGE_DIR) or _MACHINERY[1] in filename


def user_frames(
    depth: int = STACK_DEPTH,
    _getframe: Callable[[int], FrameType] = sys._getframe,  # only for tests: avoids monkeypatching
) -> list[str]:
    """``file:line`` of up to ``depth`` frames outside lambdaguard, innermost first.

    The first is the contract's ``location``. lambdaguard's own frames (sensors, the
    decorator's wrapper) are left out wherever they stand in the stack.
    """
    frame: FrameType | None = _getframe(1)
    out: list[str] = []
    while frame is not None and len(out) < depth:
        filename = frame.f_code.co_filename
        if not _is_machinery(filename):
            out.append(f"{filename}:{frame.f_lineno}")
        frame = frame.f_back
    return out
