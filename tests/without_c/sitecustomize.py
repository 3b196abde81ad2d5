"""Hide lambdaguard's optional C extensions from every interpreter this directory reaches.

``make pytest-without-c`` puts this directory on ``PYTHONPATH``, so the test process and
every scenario it starts in a fresh interpreter import this first: the audit hook is then
the Python ``_hook`` and the socket patches are the plain Python functions, as on a
machine without a C compiler. The same suite must pass both ways: the extensions change
the cost, never a verdict.
"""

import sys

sys.modules["lambdaguard._audit_gate"] = None  # type: ignore[assignment]
sys.modules["lambdaguard._socket_fastpath"] = None  # type: ignore[assignment]
