"""Zero-code activation by handler redirection, as observability vendors do it.

Set the function's handler to ``lambdaguard.lambda_handler.handler`` and the variable
``LAMBDAGUARD_HANDLER`` to the real one (``app.handler``, exactly as the Lambda Handler
setting would name it). At init, this module imports the real handler and wraps it in a
bare ``guard()``, so the whole policy comes from ``LAMBDAGUARD_*`` variables. A missing or
malformed ``LAMBDAGUARD_HANDLER`` fails the init with a ConfigError that says what to set.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from lambdaguard.errors import ConfigError
from lambdaguard.scope import guard

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms of cold start)
if TYPE_CHECKING:
    from collections.abc import Callable

VARIABLE = "LAMBDAGUARD_HANDLER"
_ACCEPTED = "accepted: the real handler as module.function, e.g. 'app.handler' or 'pkg/app.handler'"


def load_handler(spec: str | None) -> Callable[..., Any]:
    """Import the handler named by ``spec`` (``module.function``) and return it guarded."""
    if not spec or not spec.strip():
        raise ConfigError(f"{VARIABLE} is not set; {_ACCEPTED}.")
    module_name, _, function_name = spec.strip().rpartition(".")
    if not module_name or not function_name:
        raise ConfigError(f"{VARIABLE}={spec!r} is not module.function; {_ACCEPTED}.")
    if module_name.startswith("lambdaguard.lambda_handler"):
        raise ConfigError(f"{VARIABLE}={spec!r} points back at lambdaguard itself; {_ACCEPTED}.")
    module = importlib.import_module(module_name.replace("/", "."))
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ConfigError(
            f"{VARIABLE}={spec!r}: module {module_name!r} has no function {function_name!r}; "
            f"{_ACCEPTED}."
        )
    guarded: Callable[..., Any] = guard()(function)
    return guarded


handler = load_handler(os.environ.get(VARIABLE))
