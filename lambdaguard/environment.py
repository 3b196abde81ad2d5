"""Build a policy layer from code arguments and ``LAMBDAGUARD_*`` environment variables.

Precedence, per policy keyword (DESIGN.md "Configuration by environment"):

    mode:        argument in code  >  LAMBDAGUARD_<POLICY>        >  "allow"
    allow-list:  rule object's     >  LAMBDAGUARD_<POLICY>_ALLOW  >  none
    LAMBDAGUARD_DRY_RUN=true turns every "block" into "alert", whatever the code says.

The environment is read once, when the layer is built; later changes to ``os.environ``
never touch a layer already in force. Every bad value raises ConfigError naming the
variable (or argument), the value and what is accepted. A ``LAMBDAGUARD_*`` variable that
is neither a policy nor a setting listed in :data:`SETTINGS` is an error too, so that a typo
(``LAMBDAGUARD_NETWROK=block``) never silently leaves a policy off.
"""

from __future__ import annotations

import os

from lambdaguard import policies as _policies  # noqa: F401  (registers the rule classes)
from lambdaguard.errors import ConfigError
from lambdaguard.policy import RULE_CLASSES, Mode, Policy, Rule, policy_names

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms of cold start)
if TYPE_CHECKING:
    from collections.abc import Mapping

PREFIX = "LAMBDAGUARD_"

# Settings that are not policies. Each is documented in docs/environment.md.
SETTINGS: dict[str, str] = {
    "LAMBDAGUARD_DRY_RUN": "true/false: every block becomes an alert",
    "LAMBDAGUARD_REPORT_LIMIT": "violation lines per invocation before the rest are summarised",
    "LAMBDAGUARD_HANDLER": "the real handler, for zero-code activation (module.function)",
    "LAMBDAGUARD_SUBPROCESS_INHERIT": "true/false: allowed children carry the policy in force",
    "LAMBDAGUARD_INHERITED_POLICY": "set by lambdaguard in an allowed child: its carried policy",
    "LAMBDAGUARD_WIPE_TMP": "true/false or a directory: decorated handlers wipe what a call left",
    "LAMBDAGUARD_TMP_ACCESS": "read-write/write: what the tmp policy governs (default read-write)",
}

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def mode_variable(policy: str) -> str:
    return f"{PREFIX}{policy.upper()}"


def allow_variable(policy: str) -> str:
    return f"{PREFIX}{policy.upper()}_ALLOW"


def known_variables() -> frozenset[str]:
    names = set(SETTINGS)
    for policy in RULE_CLASSES:
        names.add(mode_variable(policy))
        names.add(allow_variable(policy))
    return frozenset(names)


def check_variable_names(environ: Mapping[str, str]) -> None:
    """Refuse any LAMBDAGUARD_* variable that is neither a policy nor a known setting."""
    known = known_variables()
    for name in environ:
        if name.startswith(PREFIX) and name not in known:
            raise ConfigError(
                f"{name}={environ[name]!r} is not a lambdaguard variable; accepted: "
                f"{', '.join(sorted(known))}."
            )


def read_flag(environ: Mapping[str, str], name: str) -> bool:
    raw = environ.get(name)
    if raw is None:
        return False
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean; accepted: true, false, 1, 0, yes, no.")


def read_positive_int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if raw is None:
        return default
    value = raw.strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    raise ConfigError(f"{name}={raw!r} is not a positive whole number; accepted: 1, 2, 3, ...")


def build_policy(
    arguments: Mapping[str, object],
    *,
    caller: str,
    environ: Mapping[str, str] | None = None,
) -> Policy:
    """One layer from ``arguments`` (policy keyword -> mode, string or rule) and the environment.

    ``caller`` names the API for error messages, e.g. ``"guard"`` or ``"configure"``.
    """
    env = os.environ if environ is None else environ
    unknown = set(arguments) - set(RULE_CLASSES)
    if unknown:
        bad = sorted(unknown)[0]
        raise ConfigError(
            f"{caller}({bad}=...): {bad!r} is not a policy; accepted: {policy_names()}."
        )
    check_variable_names(env)
    dry_run = read_flag(env, "LAMBDAGUARD_DRY_RUN")

    rules: dict[str, Rule] = {}
    for name, rule_class in RULE_CLASSES.items():
        rule = _build_rule(name, rule_class, arguments.get(name), env, caller)
        if dry_run and rule.mode is Mode.BLOCK:
            rule = rule.with_mode(Mode.ALERT)
        rules[name] = rule
    return Policy(rules)


def build_relaxation(arguments: Mapping[str, object], *, caller: str) -> dict[str, Rule]:
    """The rules named in a ``relaxed(...)`` call: code only, the environment is not read.

    A relaxation states exactly what the code wants for the policies it names; reading
    LAMBDAGUARD_* here would let a variable quietly change what a relaxation grants.
    """
    unknown = set(arguments) - set(RULE_CLASSES)
    if unknown:
        bad = sorted(unknown)[0]
        raise ConfigError(
            f"{caller}({bad}=...): {bad!r} is not a policy; accepted: {policy_names()}."
        )
    return {
        name: _coerce(name, RULE_CLASSES[name], value, None, caller)
        for name, value in arguments.items()
        if value is not None
    }


def _build_rule(
    name: str,
    rule_class: type[Rule],
    value: object,
    env: Mapping[str, str],
    caller: str,
) -> Rule:
    mode_var, allow_var = mode_variable(name), allow_variable(name)
    env_allow = env.get(allow_var)
    if value is not None:
        return _coerce(name, rule_class, value, env_allow, caller)
    if mode_var in env:
        return rule_class.from_sources(
            env[mode_var], env_allow, mode_source=mode_var, allow_source=allow_var
        )
    # An allow-list with no mode changes nothing, but a malformed one is still an error.
    return rule_class.from_sources(
        Mode.ALLOW, env_allow, mode_source=mode_var, allow_source=allow_var
    )


def _coerce(
    name: str, rule_class: type[Rule], value: object, env_allow: str | None, caller: str
) -> Rule:
    if isinstance(value, Rule):
        if not isinstance(value, rule_class):
            raise ConfigError(
                f"{caller}({name}={value!r}): a {type(value).__name__} rule cannot set the "
                f"{name!r} policy; accepted: a mode string, a lambdaguard.Mode or a "
                f"{rule_class.__name__}(...) rule."
            )
        return value
    if isinstance(value, Mode | str):
        return rule_class.from_sources(
            value,
            env_allow,
            mode_source=f"{caller}({name}=...)",
            allow_source=allow_variable(name),
        )
    raise ConfigError(
        f"{caller}({name}={value!r}): accepted: a mode string ('block', 'alert', 'allow'), "
        f"a lambdaguard.Mode or a {rule_class.__name__}(...) rule."
    )
