"""Type stub for the compiled audit gate (lambdaguard/_audit_gate.c)."""

from collections.abc import Callable, Iterable, Mapping
from types import ModuleType
from typing import Any

def install(
    watched: Iterable[str],
    always: Iterable[str],
    hook: Callable[[str, tuple[Any, ...]], None],
    scope_var: Any,
    scope_module: ModuleType,
    memos: Mapping[str, tuple[Any, ...]] = ...,
) -> None: ...
def memo_allows(event: str, args: tuple[Any, ...], view: object) -> bool: ...
