"""The ``subprocess`` policy: rule class and executable matching."""

from __future__ import annotations

from lambdaguard.policy import Event, Rule, register


@register
class Subprocess(Rule):
    """The ``subprocess`` policy: creating a child process by any route."""

    policy = "subprocess"

    def permits(self, event: Event) -> bool:
        return event.target in self.allow
