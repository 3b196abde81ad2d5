"""Carry the policy in force into an allowed child process, through its environment.

With ``Subprocess(..., inherit=True)`` (or ``LAMBDAGUARD_SUBPROCESS_INHERIT=true``), an
allowed child gets ``LAMBDAGUARD_INHERITED_POLICY`` in its environment: the policy layers in
force when it was started, as JSON. A Python child with lambdaguard installed picks it up at
startup, before any of its own code runs, through ``lambdaguard_inherit.pth``::

    import os; os.environ.get("LAMBDAGUARD_INHERITED_POLICY") and __import__(
        "lambdaguard._inherit")._inherit.activate_at_startup()      (one line in the file)

``site`` runs that line in every interpreter; when the variable is absent it costs one dict
lookup and imports nothing. When it is present, each carried layer becomes a ``configure()``
baseline layer of the child: the child has no handle to loosen it, and the variable stays in
its environment, so grandchildren carry it too.

JSON, not pickle: the variable is read by every Python process that has lambdaguard
installed, and unpickling text from the environment would run whatever it names.
"""

from __future__ import annotations

import os
import sys

from lambdaguard.errors import ConfigError
from lambdaguard.policy import RULE_CLASSES, Mode, Policy

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms of cold start)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

VARIABLE = "LAMBDAGUARD_INHERITED_POLICY"
_VERSION = 1


def layers_in_force() -> tuple[Policy, ...]:
    """The layers an operation here must pass: the baseline (with this context's
    relaxations of it) and the scoped layers, outermost first."""
    from lambdaguard import scope

    state = scope.current_state()
    overrides = state.overrides if state is not None else {}
    base = tuple(
        policy.replaced(overrides[owner]) if owner in overrides else policy
        for owner, policy in scope._baseline_layers
    )
    scoped = tuple(policy for _, policy in state.layers) if state is not None else ()
    return base + scoped


def requested(layers: tuple[Policy, ...]) -> bool:
    """True if any layer's ``subprocess`` rule asks for its policy to be inherited."""
    return any(getattr(layer.rules.get("subprocess"), "inherit", False) for layer in layers)


def encode(layers: tuple[Policy, ...]) -> str:
    """The value of LAMBDAGUARD_INHERITED_POLICY for these layers."""
    out: list[dict[str, Any]] = []
    for layer in layers:
        rules: dict[str, Any] = {}
        for name, rule in layer.rules.items():
            inherit = bool(getattr(rule, "inherit", False))
            if rule.mode is Mode.ALLOW and not inherit:
                continue  # an allow rule changes nothing; keep the variable short
            entry: dict[str, Any] = {"mode": rule.mode.value, "allow": list(rule.allow)}
            if name == "subprocess":
                entry["inherit"] = inherit
                entry["path"] = getattr(rule, "path", os.defpath)
            rules[name] = entry
        if rules:
            out.append(rules)
    import json  # lazily: only a policy actually carried into a child needs it

    return json.dumps({"version": _VERSION, "layers": out}, separators=(",", ":"))


def decode(raw: str) -> list[dict[str, Any]]:
    """Parse the variable; ConfigError names it and says what went wrong."""
    try:
        import json

        data = json.loads(raw)
    except ValueError:
        data = None
    layers = (
        data.get("layers") if isinstance(data, dict) and data.get("version") == _VERSION else None
    )
    if not isinstance(layers, list) or not all(isinstance(x, dict) for x in layers):
        raise ConfigError(
            f"{VARIABLE}={raw[:200]!r} is not a policy lambdaguard carried; accepted: the value "
            "lambdaguard itself sets for an allowed child (Subprocess(inherit=True))."
        )
    return layers


def activate(environ: Mapping[str, str] | None = None) -> int:
    """Put the carried layers in force as baseline layers; return how many there were."""
    from lambdaguard.policies.processes import Subprocess
    from lambdaguard.scope import configure

    env = os.environ if environ is None else environ
    raw = env.get(VARIABLE)
    if not raw:
        return 0
    count = 0
    for layer in decode(raw):
        rules: dict[str, Any] = {}
        for name, entry in layer.items():
            rule_class = RULE_CLASSES.get(name)
            if rule_class is None or not isinstance(entry, dict):
                raise ConfigError(
                    f"{VARIABLE}: {name!r} is not a policy this lambdaguard knows; accepted: "
                    f"{', '.join(sorted(RULE_CLASSES))}."
                )
            rule = rule_class.from_sources(
                str(entry.get("mode")),
                entry.get("allow"),
                mode_source=f"{VARIABLE} ({name} mode)",
                allow_source=f"{VARIABLE} ({name} allow-list)",
            )
            if isinstance(rule, Subprocess):
                rule = rule.restored(
                    path=str(entry.get("path", os.defpath)), inherit=bool(entry.get("inherit"))
                )
            rules[name] = rule
        configure(**rules)
        count += 1
    return count


def activate_at_startup() -> None:
    """Called from lambdaguard_inherit.pth. A child that was started to run under a policy
    must not run without it: if the policy cannot be restored, the child stops here."""
    try:
        activate()
    except Exception as exc:
        sys.stderr.write(f"lambdaguard: cannot restore the inherited policy: {exc}\n")
        sys.stderr.flush()
        os._exit(70)  # EX_SOFTWARE; SystemExit would be swallowed by site's .pth handling
