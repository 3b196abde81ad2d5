"""lambdaguard: a runtime guard for Python AWS Lambda functions.

Scoped policies on what the function's code and dependencies may do (network, /tmp,
child processes, reading the function's own source), each in ``block``, ``alert`` or
``allow`` mode, reported as one JSON line per violation with a CloudWatch metric.

    from lambdaguard import guard

    @guard(network="block", tmp="block", subprocess="block", handler_source="block")
    def handler(event, context): ...

See docs/quickstart.md. This module holds the public API only.
"""


from lambdaguard.errors import (
    ConfigError,
    FileViolation,
    NetworkViolation,
    ProcessViolation,
    Violation,
)
from lambdaguard.policies import HandlerSource, Network, Subprocess, Tmp
from lambdaguard.policy import Mode
from lambdaguard.scope import Baseline, configure, guard

__version__ = "0.1.0"

__all__ = [
    "Baseline",
    "ConfigError",
    "FileViolation",
    "HandlerSource",
    "Mode",
    "Network",
    "NetworkViolation",
    "ProcessViolation",
    "Subprocess",
    "Tmp",
    "Violation",
    "configure",
    "guard",
]

# Tracebacks and reprs say lambdaguard.Violation, not lambdaguard.errors.Violation.
for _name in __all__:
    _obj = globals()[_name]
    try:  # noqa: SIM105  # not contextlib.suppress: contextlib is ~1 ms of cold start
        _obj.__module__ = "lambdaguard"
    except (AttributeError, TypeError):  # a value, not a class or function
        pass
del _name, _obj
