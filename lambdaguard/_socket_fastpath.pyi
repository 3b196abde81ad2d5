"""Type stub for the socket patches' compiled fast path (lambdaguard/_socket_fastpath.c)."""

from collections.abc import Callable
from types import ModuleType
from typing import Any

class Forward:
    slow: Callable[..., Any]
    def __init__(
        self,
        original: Callable[..., Any],
        slow: Callable[..., Any],
        ip_hosts: set[str],
        families: frozenset[int],
        family: Any,
        scope_var: Any,
        scope_module: ModuleType,
    ) -> None: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    def __get__(self, obj: object, owner: type | None = None) -> Callable[..., Any]: ...
