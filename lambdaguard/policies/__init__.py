"""One module per policy keyword: its rule class, allow-list syntax and matching.

Importing this package registers every rule class in ``lambdaguard.policy.RULE_CLASSES``.
"""

from lambdaguard.policies.files import HandlerSource, Tmp
from lambdaguard.policies.network import Network
from lambdaguard.policies.processes import Subprocess

__all__ = ["HandlerSource", "Network", "Subprocess", "Tmp"]
