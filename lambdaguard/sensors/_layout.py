"""Where a function's parameters are: binding a call by hand, the way Python would.

The Popen patch reads five of Popen's parameters on every guarded call; binding with
``inspect.Signature.bind`` costs more than the rest of the decision together, so a layout of
the patched ``__init__``'s signature is worked out once, on the first Popen decided, and
used from then on. Loaded then, with ``inspect``, not with the process sensor.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms of cold start)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any


class Layout:
    """Where a function's parameters are: enough to bind a call the way Python would.

    A plain class: importing dataclasses (and with it inspect) at activation costs ~10 ms
    of cold start; inspect itself is imported only when a first Popen is decided.
    """

    __slots__ = ("defaults", "names", "position", "required", "var_keyword", "var_positional")

    def __init__(
        self,
        *,
        position: dict[str, int],  # positional-or-keyword parameter -> index (self excluded)
        names: frozenset[str],  # every parameter a keyword may name
        defaults: dict[str, Any],
        required: tuple[str, ...],
        var_positional: bool,
        var_keyword: bool,
    ) -> None:
        self.position = position
        self.names = names
        self.defaults = defaults
        self.required = required
        self.var_positional = var_positional
        self.var_keyword = var_keyword

    @classmethod
    def of(cls, function: Callable[..., Any]) -> Layout:
        import inspect

        parameters = list(inspect.signature(function).parameters.values())
        kinds = inspect.Parameter
        return cls(
            position={
                p.name: i
                for i, p in enumerate(parameters)
                if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)
            },
            names=frozenset(
                p.name
                for p in parameters
                if p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY)
            ),
            defaults={p.name: p.default for p in parameters if p.default is not p.empty},
            required=tuple(
                p.name
                for p in parameters
                if p.default is p.empty and p.kind not in (kinds.VAR_POSITIONAL, kinds.VAR_KEYWORD)
            ),
            var_positional=any(p.kind is kinds.VAR_POSITIONAL for p in parameters),
            var_keyword=any(p.kind is kinds.VAR_KEYWORD for p in parameters),
        )

    def pick(
        self, names: Iterable[str], args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """The values ``names`` take in a call, defaults included; None if the call does not
        bind (too many, repeated, unknown or missing arguments: the original raises)."""
        count = len(args)
        if count > len(self.position) and not self.var_positional:
            return None
        position = self.position
        for key in kwargs:
            index = position.get(key)
            if index is not None and index < count:
                return None  # given both by position and by keyword
            if index is None and key not in self.names and not self.var_keyword:
                return None
        for name in self.required:
            index = position.get(name)
            if not (index is not None and index < count) and name not in kwargs:
                return None
        values: dict[str, Any] = {}
        for name in names:
            index = position.get(name)
            if index is not None and index < count:
                values[name] = args[index]
            else:
                values[name] = kwargs.get(name, self.defaults.get(name))
        return values

    def put(
        self, values: Mapping[str, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The call with ``values`` in place of the arguments of those names."""
        new_args = list(args)
        new_kwargs = dict(kwargs)
        for name, value in values.items():
            index = self.position.get(name)
            if index is not None and index < len(args):
                new_args[index] = value
            else:
                new_kwargs[name] = value
        return tuple(new_args), new_kwargs
