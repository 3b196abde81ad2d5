"""Report violations and relaxations: one JSON line each, bounded, never raising.

A violation line is a powertools-Logger-shaped JSON object (``level``, ``message``,
``timestamp``, ``service``, ``cold_start``, ``function_*``, ``xray_trace_id``) with:

* ``"lambdaguard"``: policy, mode, action, target, location (first frame outside
  lambdaguard), stack, and any details from the sensor;
* an embedded-metric-format (EMF) directive (``"_aws"``), so the same line is also one
  data point of the CloudWatch metric ``LambdaGuard/Violations`` with the dimensions
  ``Policy`` and ``Mode``. One line, one log record, one metric value: nothing to flush.

Why not powertools' Logger for every line: importing it costs 50-60 ms of cold start
(docs/performance.md). lambdaguard writes the same keys itself with ``json`` and only goes
through powertools when the user hands in their own ``Logger`` (``guard(logger=...)`` or
``configure(logger=...)``); then the line carries that logger's keys and settings.

Bounded: each invocation (the outermost call of a guarded handler) writes at most
``LAMBDAGUARD_REPORT_LIMIT`` violation lines (default 100); the rest are counted and, when
the invocation ends, summarised in one line per policy and mode, whose metric value is the
number suppressed, so the metric still counts every violation.

Never raising: a failure to format or write a line is swallowed and counted
(:func:`failures`), since the guard must never break the handler it protects.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from lambdaguard import _internal
from lambdaguard._frames import user_frames

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms of cold start)
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    from lambdaguard.policy import Event, Mode, Policy, Rule

DEFAULT_LIMIT = 100
TARGET_LIMIT = 1024  # characters of a target kept in a line; the rest is cut and marked
METRIC_NAMESPACE = "LambdaGuard"
METRIC_NAME = "Violations"

_lock = threading.Lock()
_failures = 0
_cold_start = True


def failures() -> int:
    """How many lines could not be written since the process started."""
    return _failures


def safe_text(value: object, limit: int = TARGET_LIMIT) -> str:
    """Any target as printable text: bytes decoded with escapes, lone surrogates escaped.

    json.dumps then escapes quotes and control characters, so a hostile target still
    gives exactly one valid JSON line.
    """
    if isinstance(value, bytes | bytearray | memoryview):
        text = bytes(value).decode("utf-8", "backslashreplace")
    else:
        text = str(value).encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > limit:
        text = text[:limit] + f"...[{len(text) - limit} more]"
    return text


# --- invocations -------------------------------------------------------------------------------


class Invocation:
    """One call of a guarded handler: its Lambda context and its reporting budget.

    Made when the invocation first reports something (lambdaguard.scope.invocation_of),
    not when it begins: a guarded call that reports nothing never makes one. The state
    its call pushed keeps the handler's arguments until then.
    """

    written = 0
    suppressed: dict[tuple[str, str], int] | None = None  # made on the first suppression
    _keys: dict[str, Any] | None = None
    fragment: str | None = None  # JSON of the keys this invocation's lines share

    def __init__(self, args: tuple[Any, ...], limit: int, cold_start: bool) -> None:
        self.args = args  # the handler's positional arguments, where its context is
        self.limit = limit
        self.cold_start = cold_start

    @property
    def keys(self) -> dict[str, Any]:
        # Read from the context when the first line is written, not on every invocation.
        if self._keys is None:
            self._keys = _lambda_keys(_lambda_context(self.args))
        return self._keys


def _take_cold_start() -> bool:
    """True for the first invocation in this process (the Lambda cold start), then False."""
    global _cold_start
    if not _cold_start:
        return False
    with _lock:
        first, _cold_start = _cold_start, False
    return first


# What a Lambda event (or a missing context) is made of: never a Lambda context object.
_PLAIN_DATA = frozenset({dict, list, str, bytes, int, float, bool, tuple})


def _lambda_context(args: tuple[Any, ...]) -> Any:
    """The Lambda context among a handler's arguments, or None."""
    # (event, context) for a function; (self, event, context) for a method. The event
    # and a missing context are plain data: skipping them spares a failed getattr (an
    # AttributeError raised and caught) per argument.
    count = len(args)
    for index in (1, 2, 0):
        if index < count:
            candidate = args[index]
            if candidate is None or type(candidate) in _PLAIN_DATA:
                continue
            try:
                request_id = getattr(candidate, "aws_request_id", None)
            except Exception:  # a hostile __getattr__: not a context, and never our failure
                request_id = None
            if request_id is not None:
                return candidate
    return None


def _lambda_keys(context: Any) -> dict[str, Any]:
    if context is None:
        return {}
    keys: dict[str, Any] = {}
    for key, attribute in (
        ("function_name", "function_name"),
        ("function_memory_size", "memory_limit_in_mb"),
        ("function_arn", "invoked_function_arn"),
        ("function_request_id", "aws_request_id"),
    ):
        value = getattr(context, attribute, None)
        if value is not None:
            keys[key] = value
    return keys


# Work outside any guarded handler (module import, with-blocks in scripts) is reported
# against this process-level pseudo-invocation. It has no end, so its budget is a window:
# at most `limit` lines per OUTSIDE_WINDOW seconds, the suppressed count flushed when the
# window rolls over or when a real invocation starts.
OUTSIDE_WINDOW = 60.0
OUTSIDE = Invocation((), DEFAULT_LIMIT, True)
_outside_window_start = time.monotonic()

# Which invocation is running is kept by lambdaguard.scope, in the state a guarded call
# pushes (one ContextVar set per call, not two): see scope.invocation_of.

# True while the next invocation to begin has work to do first: take the cold start, or
# summarise lines suppressed outside any invocation. A guarded call reads this one flag
# and calls start_invocation() only when it is set.
start_pending = True


def start_invocation() -> bool:
    """An invocation begins: summarise what was suppressed outside any invocation.

    Returns True for the first invocation in this process (the Lambda cold start).
    """
    global start_pending
    start_pending = False
    if OUTSIDE.suppressed:
        flush_suppressed(OUTSIDE)
    return _cold_start and _take_cold_start()


def _current_invocation() -> Invocation:
    from lambdaguard.scope import current_invocation

    return current_invocation()


def _roll_outside_window() -> None:
    global _outside_window_start
    now = time.monotonic()
    if now - _outside_window_start < OUTSIDE_WINDOW:
        return
    _outside_window_start = now
    flush_suppressed(OUTSIDE)
    OUTSIDE.written = 0


def reset_for_tests() -> None:
    """Give the outside-any-invocation budget a fresh window. For lambdaguard.testing only."""
    global _outside_window_start
    OUTSIDE.written = 0
    OUTSIDE.suppressed = None
    _outside_window_start = time.monotonic()


def flush_suppressed(inv: Invocation) -> None:
    """Summarise what ``inv`` suppressed: one line per policy and mode (at its end)."""
    with _lock:
        pending, inv.suppressed = inv.suppressed, None
    if not pending:
        return
    for (policy, mode), count in sorted(pending.items()):
        _emit(
            "WARNING",
            f"lambdaguard suppressed {count} {policy} {mode} violation lines this invocation",
            {"event": "suppressed", "policy": policy, "mode": mode, "suppressed": count},
            metric=(policy, mode, count),
            inv=inv,
        )


# --- what gets reported ------------------------------------------------------------------------


def violation(event: Event, verdict: Mode) -> None:
    """Report one alerted or blocked operation, within this invocation's budget."""
    global start_pending
    inv = _current_invocation()
    if inv is OUTSIDE:
        _roll_outside_window()
    with _lock:
        if inv.written >= inv.limit:
            key = (event.policy, verdict.value)
            if inv.suppressed is None:
                inv.suppressed = {}
                if inv is OUTSIDE:
                    start_pending = True  # the next invocation to begin summarises them
            inv.suppressed[key] = inv.suppressed.get(key, 0) + 1
            return
        inv.written += 1
    try:
        mode: str = verdict.value  # once: an Enum member's .value is a descriptor call
        location, frames = user_frames()
        payload: dict[str, Any] = {
            "event": "violation",
            "policy": event.policy,
            "mode": mode,
            "action": event.action,
            "target": safe_text(event.target),
            "location": location,
            "stack": frames,
        }
        if event.details:
            payload["details"] = {k: _safe_value(v) for k, v in event.details.items()}
        verb = "blocked" if mode == "block" else "alerted on"
        message = f"lambdaguard {verb} {event.policy} {event.action} {payload['target']}"
        level = "ERROR" if mode == "block" else "WARNING"
    except Exception:
        _count_failure()
        return
    _emit(level, message, payload, metric=(event.policy, mode, 1), inv=inv)


def relaxation(owner: object, before: Policy, rules: Mapping[str, Rule]) -> None:
    """Report a deliberate loosening (``relaxed``, ``Baseline.update``, ``Baseline.remove``)."""
    try:
        location, frames = user_frames()
        changes = {
            name: {
                "from": _rule_text(before.rules.get(name)),
                "to": _rule_text(rule),
            }
            for name, rule in rules.items()
        }
        payload = {
            "event": "relaxed",
            "by": safe_text(repr(owner), 300),
            "changes": changes,
            "location": location,
            "stack": frames,
        }
    except Exception:
        _count_failure()
        return
    _emit("WARNING", "lambdaguard policy relaxed", payload, metric=None, inv=_current_invocation())


def notice(message: str, payload: dict[str, Any], inv: Invocation | None = None) -> None:
    """Report something that is neither a violation nor a relaxation (e.g. a /tmp wipe).

    ``inv``: the invocation it belongs to, when that is not the one running here.
    """
    _emit(
        "INFO", message, payload, metric=None, inv=_current_invocation() if inv is None else inv
    )


def _rule_text(rule: Rule | None) -> str:
    return "allow" if rule is None else repr(rule)


def _safe_value(value: Any) -> Any:
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_safe_value(v) for v in value[:64]]
    return safe_text(value)


# --- writing -----------------------------------------------------------------------------------


def _count_failure() -> None:
    global _failures
    with _lock:
        _failures += 1


def _emit(
    level: str,
    message: str,
    payload: dict[str, Any],
    *,
    metric: tuple[str, str, int] | None,
    inv: Invocation,
) -> None:
    with _internal.own_work():
        try:
            from lambdaguard.scope import current_logger

            logger = current_logger()
            if logger is not None:
                _emit_through(logger, level, message, payload, metric)
                return
            line = _line(level, message, payload, metric, inv)
            stream = sys.stdout
            with _lock:
                stream.write(line)
                stream.flush()
        except Exception:
            _count_failure()


def _emit_through(
    logger: Any,
    level: str,
    message: str,
    payload: dict[str, Any],
    metric: tuple[str, str, int] | None,
) -> None:
    """Write through a user's powertools Logger: its keys and settings, our fields as extra."""
    extra: dict[str, Any] = {"lambdaguard": payload}
    if metric is not None:
        policy, mode, count = metric
        extra.update(_emf(policy, mode, count))
    log = {"ERROR": logger.error, "INFO": logger.info}.get(level, logger.warning)
    log(message, extra=extra)


def _emf(policy: str, mode: str, count: int) -> dict[str, Any]:
    return {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": METRIC_NAMESPACE,
                    "Dimensions": [["Policy", "Mode"]],
                    "Metrics": [{"Name": METRIC_NAME, "Unit": "Count"}],
                }
            ],
        },
        "Policy": policy,
        "Mode": mode,
        METRIC_NAME: count,
    }


# The default writer builds the line from JSON fragments rather than one json.dumps of the
# whole record: the EMF directive and the invocation's keys are the same on every line, and
# encoding them once keeps a reported violation well under the 50 us budget
# (docs/performance.md). The result is the same JSON object, key for key.
_EMF_DIRECTIVE = (
    '"CloudWatchMetrics":[{"Namespace":"' + METRIC_NAMESPACE + '",'
    '"Dimensions":[["Policy","Mode"]],"Metrics":[{"Name":"' + METRIC_NAME + '","Unit":"Count"}]}]'
)
_encoder: Any = None
_second = -1
_second_text = ""


def _encode(value: object) -> str:
    global _encoder
    if _encoder is None:
        _encoder = _make_encoder()
    text: str = _encoder(value)
    return text


def _make_encoder() -> Callable[[object], str]:
    """``json.dumps(value, ensure_ascii=True, separators=(",", ":"), default=str)``.

    Built from CPython's C encoder in ``_json`` (the one json.dumps itself runs), so the
    first line of a process does not import the json package, whose decoder imports
    ``re`` and ``enum``: ~3-5 ms of a bare cold start. Where ``_json`` is missing or its
    signature differs, json's own encoder is used: same output, only slower to import.
    """
    try:
        from _json import encode_basestring_ascii, make_encoder

        def encode(value: object) -> str:
            if type(value) is str:
                text: str = encode_basestring_ascii(value)
                return text
            # (markers, default, encoder, indent, key_sep, item_sep, sort_keys, skipkeys,
            # allow_nan): the arguments json.JSONEncoder.iterencode passes.
            iterencode = make_encoder(
                {}, str, encode_basestring_ascii, None, ":", ",", False, False, True
            )
            return "".join(iterencode(value, 0))

        encode("probe")
        encode({"probe": [1, 2.5, None, True]})
    except (ImportError, TypeError):
        import json

        fallback = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), default=str)
        return fallback.encode
    return encode


def _timestamp(now: float) -> str:
    """powertools' default format, UTC; strftime only when the second changes."""
    global _second, _second_text
    second = int(now)
    if second != _second:
        _second_text = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(second))
        _second = second
    return f"{_second_text},{int(now * 1000) % 1000:03d}+0000"


def _invocation_keys(inv: Invocation) -> str:
    """The JSON fragment of the keys every line of this invocation shares (after timestamp)."""
    record: dict[str, Any] = {
        "service": os.environ.get("POWERTOOLS_SERVICE_NAME", "service_undefined"),
        "cold_start": inv.cold_start,
    }
    record.update(inv.keys)
    trace = os.environ.get("_X_AMZN_TRACE_ID", "")
    if trace:
        root = next((p[5:] for p in trace.split(";") if p.startswith("Root=")), trace)
        record["xray_trace_id"] = safe_text(root, 100)
    return _encode(record)[1:-1]


def _line(
    level: str,
    message: str,
    payload: dict[str, Any],
    metric: tuple[str, str, int] | None,
    inv: Invocation,
) -> str:
    now = time.time()
    if inv is OUTSIDE or inv.fragment is None:
        # Outside any invocation the process lives on and the environment may change.
        fragment = _invocation_keys(inv)
        if inv is not OUTSIDE:
            inv.fragment = fragment
    else:
        fragment = inv.fragment
    parts = [
        '{"level":"',
        level,
        '","location":"lambdaguard","message":',
        _encode(message),
        ',"timestamp":"',
        _timestamp(now),
        '",',
        fragment,
        ',"lambdaguard":',
        _encode(payload),
    ]
    if metric is not None:
        policy, mode, count = metric
        parts += [
            ',"_aws":{"Timestamp":',
            str(int(now * 1000)),
            ",",
            _EMF_DIRECTIVE,
            '},"Policy":',
            _encode(policy),
            ',"Mode":',
            _encode(mode),
            ',"',
            METRIC_NAME,
            '":',
            str(int(count)),
        ]
    parts.append("}\n")
    return "".join(parts)
