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
from lambdaguard.policy import Event, Mode, Rule


def decide(event: Event, rules: tuple[Rule, ...]) -> Mode:
    """The verdict for one event: the strictest mode among the rules that do not permit it."""
    verdict = Mode.ALLOW
    for rule in rules:
        if rule.mode.strictness > verdict.strictness and not rule.permits(event):
            verdict = rule.mode
    return verdict


def check(event: Event, rules: tuple[Rule, ...]) -> Mode:
    """Decide ``event`` and report it if it is alerted or blocked; return the verdict."""
    verdict = decide(event, rules)
    if verdict is not Mode.ALLOW:
        report.violation(event, verdict)
    return verdict


def blocked(event: Event) -> Violation:
    """The exception for a blocked event (already reported by :func:`check`)."""
    return violation_for(event.policy, Mode.BLOCK.value, event.action, event.target)


def enforce(event: Event, rules: tuple[Rule, ...]) -> None:
    """Check ``event`` and raise if it is blocked: for sensors with no cleanup to do first."""
    if check(event, rules) is Mode.BLOCK:
        raise blocked(event)
