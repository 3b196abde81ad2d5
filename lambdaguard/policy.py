"""The policy model: modes, rule objects, one layer of policy, and merging layers.

A *rule* is one policy keyword's setting (``Network("block", allow=[...])``). A *layer*
(:class:`Policy`) is what one ``guard(...)`` or ``configure(...)`` call contributes: a rule
per policy keyword. Several layers are active at once (the baseline plus nested scopes);
:func:`merge` folds them into an :class:`Active` view once, at scope entry, so that the hot
path reads a dict and never re-merges.

Semantics of several layers (DESIGN.md "Scopes"): an operation must pass every layer. For
each layer whose mode is not ``allow``, the operation is checked against that layer's
allow-list; the strictest resulting mode wins. That is exactly "allow-lists intersect":
an operation goes ahead unreported only if every non-allow layer allow-lists it.
"""

from __future__ import annotations

import enum

from lambdaguard.errors import ConfigError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms of cold start)
if TYPE_CHECKING:
    from collections.abc import Hashable, Iterable, Mapping
    from typing import Any, ClassVar


class Mode(str, enum.Enum):
    """What happens to an operation a policy governs."""

    ALLOW = "allow"  # nothing happens
    ALERT = "alert"  # the operation is logged and goes ahead
    BLOCK = "block"  # the operation fails with a Violation and is logged

    @property
    def strictness(self) -> int:
        return _STRICTNESS[self]

    def __str__(self) -> str:
        return self.value


_STRICTNESS = {Mode.ALLOW: 0, Mode.ALERT: 1, Mode.BLOCK: 2}
MODE_NAMES = ", ".join(repr(m.value) for m in Mode)


def parse_mode(value: object, *, source: str) -> Mode:
    """Turn ``"block"`` / ``Mode.BLOCK`` (any case, surrounding blanks ignored) into a Mode.

    ``source`` names where the value came from, for the error message.
    """
    if isinstance(value, Mode):
        return value
    if isinstance(value, str):
        try:
            return Mode(value.strip().lower())
        except ValueError:
            pass
    raise ConfigError(
        f"{source}: {value!r} is not a mode; accepted: {MODE_NAMES} (or a lambdaguard.Mode)."
    )


class Event:
    """One guarded operation, as a sensor saw it.

    ``target`` is the human-readable string that goes in the log line; ``subject`` is the
    structured form the policy's rule matches against (a ``NetworkTarget``, a path, ...).
    ``details`` are extra log fields (bounded by the sensor that builds them).

    A plain class with slots rather than a dataclass: importing dataclasses pulls in
    inspect, about 10 ms of cold start.
    """

    __slots__ = ("action", "details", "policy", "subject", "target")

    def __init__(
        self,
        policy: str,
        action: str,
        target: str,
        subject: Any = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        self.policy = policy
        self.action = action
        self.target = target
        self.subject = subject
        self.details = details

    def __repr__(self) -> str:
        return f"Event({self.policy!r}, {self.action!r}, {self.target!r})"


class Rule:
    """One policy keyword's setting: a mode and an allow-list.

    Subclasses set ``policy`` (the keyword) and implement :meth:`_compile` (parse the
    allow-list, raising ConfigError that names the entry) and :meth:`permits` (is this
    event on the allow-list?). Rules are immutable and picklable, so that a scope can
    travel to a process-pool worker.
    """

    policy: ClassVar[str] = ""

    mode: Mode
    allow: tuple[str, ...]

    def __init__(self, mode: Mode | str, *, allow: Iterable[str] | str | None = None) -> None:
        name = type(self).__name__
        self._setup(mode, allow, mode_source=f"{name}(mode=...)", allow_source=f"{name}(allow=...)")

    @classmethod
    def from_sources(
        cls,
        mode: Mode | str,
        allow: Iterable[str] | str | None,
        *,
        mode_source: str,
        allow_source: str,
    ) -> Rule:
        """Build a rule whose errors name where its inputs came from (an argument or variable)."""
        rule = cls.__new__(cls)
        rule._setup(mode, allow, mode_source=mode_source, allow_source=allow_source)
        return rule

    def _setup(
        self,
        mode: Mode | str,
        allow: Iterable[str] | str | None,
        *,
        mode_source: str,
        allow_source: str,
    ) -> None:
        self.mode = parse_mode(mode, source=mode_source)
        self.allow = split_allow_list(allow, source=allow_source)
        self._compile(self.allow, source=allow_source)

    def _compile(self, entries: tuple[str, ...], *, source: str) -> None:
        """Parse the allow-list; raise ConfigError naming ``source`` and the bad entry."""

    def permits(self, event: Event) -> bool:
        """True if the event is on this rule's allow-list (or is otherwise exempt)."""
        return False

    def with_mode(self, mode: Mode) -> Rule:
        """The same rule with another mode (DRY_RUN turns block into alert this way)."""
        clone = self.__class__.__new__(self.__class__)
        clone.__dict__.update(self.__dict__)
        clone.mode = mode
        return clone

    def __repr__(self) -> str:
        allow = f", allow={list(self.allow)!r}" if self.allow else ""
        return f"{type(self).__name__}({self.mode.value!r}{allow})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Rule)
        return (self.mode, self.allow) == (other.mode, other.allow)

    def __hash__(self) -> int:
        return hash((type(self), self.mode, self.allow))


def split_allow_list(value: Iterable[str] | str | None, *, source: str) -> tuple[str, ...]:
    """Normalise an allow-list: a comma-separated string or an iterable of strings.

    A single string is split on commas (``allow="a.com"`` does not become ``a``, ``.``, ...).
    Empty entries are dropped; anything that is not a string is an error.
    """
    if value is None:
        return ()
    items: Iterable[object]
    items = value.split(",") if isinstance(value, str) else value
    try:
        entries = list(items)
    except TypeError:
        raise ConfigError(
            f"{source}: {value!r} is not an allow-list; accepted: a list of strings "
            "or one comma-separated string."
        ) from None
    out: list[str] = []
    for entry in entries:
        if not isinstance(entry, str):
            raise ConfigError(
                f"{source}: allow-list entry {entry!r} is not a string; accepted: a list of "
                "strings or one comma-separated string."
            )
        entry = entry.strip()
        if entry:
            out.append(entry)
    return tuple(out)


# Policy keyword -> its rule class. Filled by lambdaguard.policies at import.
RULE_CLASSES: dict[str, type[Rule]] = {}


def register(rule_class: type[Rule]) -> type[Rule]:
    """Class decorator: make ``rule_class`` the rule for its ``policy`` keyword."""
    RULE_CLASSES[rule_class.policy] = rule_class
    return rule_class


def policy_names() -> str:
    return ", ".join(sorted(RULE_CLASSES))


class Policy:
    """One layer: the rule for each policy keyword that one guard or configure() set."""

    __slots__ = ("rules",)

    def __init__(self, rules: Mapping[str, Rule]) -> None:
        self.rules = rules

    def __repr__(self) -> str:
        return f"Policy({dict(self.rules)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Policy, (dict(self.rules),))

    def is_inert(self) -> bool:
        """True if every rule is ``allow`` (the layer can never change a verdict)."""
        return all(rule.mode is Mode.ALLOW for rule in self.rules.values())

    def replaced(self, rules: Mapping[str, Rule]) -> Policy:
        merged = dict(self.rules)
        merged.update(rules)
        return Policy(merged)


class Active:
    """The merged view of every active layer: policy keyword -> rules that can object.

    Only rules whose mode is not ``allow`` are kept; a policy with no such rule is absent,
    which is what the sensors' fast path tests.
    """

    __slots__ = ("allowed", "rules")

    def __init__(self, rules: Mapping[str, tuple[Rule, ...]]) -> None:
        self.rules = rules
        # Memo of operations these rules allowed (see decide.remember_allowed).
        self.allowed: dict[Hashable, bool] = {}


def merge(layers: Iterable[Policy]) -> Active | None:
    """Fold layers into one Active view, or None when nothing can object to anything."""
    merged: dict[str, list[Rule]] = {}
    for layer in layers:
        for name, rule in layer.rules.items():
            if rule.mode is not Mode.ALLOW:
                merged.setdefault(name, []).append(rule)
    if not merged:
        return None
    return Active({name: tuple(rules) for name, rules in merged.items()})
