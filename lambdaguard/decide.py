"""The one decision point: every sensor's event goes through :func:`check`.

    sensor (patch or audit hook) -> Event -> check(event, rules)
        -> decide: the strictest mode among the rules that do not permit the event
        -> report: one JSON line for alert and block (lambdaguard.report)
        -> the sensor raises blocked(event) for block, after its own cleanup

Per-policy matching lives in each rule's ``permits`` (lambdaguard.policies).
"""

from __future__ import annotations

from lambdaguard import report
from lambdaguard.errors import Violation, violation_for
from lambdaguard.policy import Active, Event, Mode, Rule

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms of cold start)
if TYPE_CHECKING:
    from collections.abc import Hashable

ALLOWED_MEMO_LIMIT = 1024


def decide(event: Event, rules: tuple[Rule, ...]) -> Mode:
    """The verdict for one event: the strictest mode among the rules that do not permit it."""
    verdict = Mode.ALLOW
    for rule in rules:
        if rule.mode.strictness > verdict.strictness and not rule.permits(event):
            verdict = rule.mode
    return verdict


def check(event: Event, rules: tuple[Rule, ...], verdict: Mode | None = None) -> Mode:
    """Decide ``event`` and report it if it is alerted or blocked; return the verdict.

    ``verdict``: ``decide(event, rules)`` when the sensor has already made it (not twice).
    """
    if verdict is None:
        verdict = decide(event, rules)
    if verdict is not Mode.ALLOW:
        report.violation(event, verdict)
    return verdict


def blocked(event: Event) -> Violation:
    """The exception for a blocked event (already reported by :func:`check`)."""
    return violation_for(event.policy, Mode.BLOCK.value, event.action, event.target)


def enforce(event: Event, rules: tuple[Rule, ...], verdict: Mode | None = None) -> None:
    """Check ``event`` and raise if it is blocked: for sensors with no cleanup to do first."""
    if check(event, rules, verdict) is Mode.BLOCK:
        raise blocked(event)


def allowed_before(active: Active, key: Hashable) -> bool:
    """Whether the operation ``key`` was decided ``allow`` under these merged rules before.

    A memo of allow verdicts only, for sensors on hot paths (connect, lookups). Sound
    because a verdict is a function of the rules (immutable) and the operation (the key
    must capture everything ``permits`` reads). The one input that changes is the record
    of resolved names: it grows, which can turn a block into an allow but never an allow
    into a block (when it forgets its oldest entries, an allow already memoised stays).
    Alerts and blocks are never memoised: each is reported.
    """
    return key in active.allowed


def remember_allowed(active: Active, key: Hashable) -> None:
    allowed = active.allowed
    if len(allowed) >= ALLOWED_MEMO_LIMIT:
        allowed.clear()
    allowed[key] = True
