"""The ``tmp`` and ``handler_source`` policies: rule classes and path matching."""

from __future__ import annotations

import fnmatch

from lambdaguard.policy import Event, Rule, register


@register
class Tmp(Rule):
    """The ``tmp`` policy: reading and writing files under /tmp."""

    policy = "tmp"

    def permits(self, event: Event) -> bool:
        return any(fnmatch.fnmatchcase(event.target, pattern) for pattern in self.allow)


@register
class HandlerSource(Rule):
    """The ``handler_source`` policy: reading the function's own code other than by import."""

    policy = "handler_source"

    def permits(self, event: Event) -> bool:
        return any(fnmatch.fnmatchcase(event.target, pattern) for pattern in self.allow)
