"""Violation lines: shape, Lambda keys, EMF metric, hostile targets, the cap, failures."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import socket
import subprocess
import sys
from typing import Any

import pytest

from lambdaguard import Network, Violation, guard, report
from tests.helpers import FakeLambdaContext, connect, counting_listener, events, violation_lines


def lookup(name: str | bytes) -> None:
    socket.getaddrinfo(name, 443)


class TestLineShape:
    def test_violation_line_has_the_contract_keys(self, capsys: pytest.CaptureFixture[str]) -> None:
        """One JSON line with policy, mode, action, target and the user's file:line."""
        with counting_listener() as listener, guard(network="block"):
            with pytest.raises(Violation) as caught:
                connect(listener.port)
        (line,) = events(capsys.readouterr().out)
        body = line["lambdaguard"]
        assert {k: body[k] for k in ("policy", "mode", "action", "target")} == {
            "policy": "network",
            "mode": "block",
            "action": "connect",
            "target": f"127.0.0.1:{listener.port}",
        }
        # The location is the caller's line, not socket.py; the stack still shows socket.py.
        assert body["location"].rsplit(":", 1)[0].endswith("tests/helpers.py")
        assert body["stack"][0].rsplit(":", 1)[0].endswith("socket.py")
        assert any(frame.startswith(__file__ + ":") for frame in body["stack"])
        assert (caught.value.policy, caught.value.mode, caught.value.target) == (
            "network",
            "block",
            f"127.0.0.1:{listener.port}",
        )

    def test_location_is_the_first_frame_outside_lambdaguard(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A direct call from user code is located at that line of user code."""
        with guard(network="block"), pytest.raises(Violation):
            socket.getaddrinfo("blocked.example", 80)
        line_no = sys._getframe().f_lineno - 1
        (line,) = events(capsys.readouterr().out)
        assert line["lambdaguard"]["location"] == f"{__file__}:{line_no}"

    def test_location_skips_the_standard_library(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A blocked urllib call is located at the line that called urlopen, not inside urllib."""
        import urllib.request

        with guard(network="block"), pytest.raises(Violation):
            urllib.request.urlopen("http://blocked.example/", timeout=5)
        line_no = sys._getframe().f_lineno - 1
        (line,) = events(capsys.readouterr().out)
        assert line["lambdaguard"]["location"] == f"{__file__}:{line_no}"

    def test_emf_metric_is_in_the_same_line(self, capsys: pytest.CaptureFixture[str]) -> None:
        """The line is also one data point of LambdaGuard/Violations by Policy and Mode."""
        with guard(network="alert"):
            # The name does not exist; the alert was written before the lookup failed.
            with contextlib.suppress(OSError):
                lookup("alerted.invalid")
        (line,) = events(capsys.readouterr().out)
        directive = line["_aws"]["CloudWatchMetrics"][0]
        assert directive == {
            "Namespace": "LambdaGuard",
            "Dimensions": [["Policy", "Mode"]],
            "Metrics": [{"Name": "Violations", "Unit": "Count"}],
        }
        assert isinstance(line["_aws"]["Timestamp"], int)
        assert (line["Policy"], line["Mode"], line["Violations"]) == ("network", "alert", 1)

    @pytest.mark.parametrize(
        "name",
        [
            'quote"and\nnewline.example',
            "tab\tand\\back.example",
            b"\xff\xfe-not-utf8.example",
            "snow\u2603.example",
        ],
        ids=["quote-newline", "tab-backslash", "bytes-not-utf8", "non-ascii"],
    )
    def test_hostile_targets_still_give_one_valid_json_line(
        self, name: str | bytes, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Quotes, newlines and bytes that are not UTF-8 never break the line."""
        with guard(network="block"), pytest.raises(Violation):
            lookup(name)
        out = capsys.readouterr().out
        assert out.count("\n") == 1
        (line,) = violation_lines(out)
        assert line["lambdaguard"]["action"] == "resolve"

    def test_long_targets_are_bounded(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A 100 kB target is cut, so a hostile input cannot make a huge log line."""
        with guard(network="block"), pytest.raises(Violation):
            lookup("a" * 100_000)
        out = capsys.readouterr().out
        assert len(out) < 8_000
        assert "more]" in events(out)[0]["lambdaguard"]["target"]


class TestLambdaKeys:
    def test_handler_lines_carry_powertools_keys(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """function_name, request id, memory, ARN, cold start and X-Ray trace id, as powertools names them."""
        monkeypatch.setenv(
            "_X_AMZN_TRACE_ID",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        )
        monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "payments")
        monkeypatch.setattr(report, "_cold_start", True)
        monkeypatch.setattr(report, "start_pending", True)

        @guard(network="block")
        def handler(event: dict[str, Any], context: FakeLambdaContext) -> None:
            with pytest.raises(Violation):
                lookup("blocked.example")

        handler({}, FakeLambdaContext(aws_request_id="req-1"))
        handler({}, FakeLambdaContext(aws_request_id="req-2"))
        first, second = events(capsys.readouterr().out)
        assert {
            k: first[k] for k in ("function_name", "function_request_id", "cold_start", "service")
        } == {
            "function_name": "test-function",
            "function_request_id": "req-1",
            "cold_start": True,
            "service": "payments",
        }
        assert first["function_memory_size"] == 256
        assert first["function_arn"].endswith(":function:test-function")
        assert first["xray_trace_id"] == "1-5759e988-bd862e3fe1be46a994272793"
        assert (second["function_request_id"], second["cold_start"]) == ("req-2", False)
        assert first["level"] == "ERROR"

    def test_users_own_powertools_logger_is_used(self) -> None:
        """guard(logger=Logger(...)) writes the line through that logger, with its keys."""
        from aws_lambda_powertools import Logger

        stream = io.StringIO()
        logger = Logger(service="checkout", logger_handler=logging.StreamHandler(stream))
        with guard(network="block", logger=logger), pytest.raises(Violation):
            lookup("blocked.example")
        (line,) = violation_lines(stream.getvalue())
        assert line["service"] == "checkout"
        assert line["lambdaguard"]["target"] == "blocked.example:443"
        assert (line["Policy"], line["Violations"]) == ("network", 1)


class TestBounded:
    def test_flood_is_capped_per_invocation_with_a_summary(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """1,000 blocked lookups give 5 lines and one summary of 995; the next call starts afresh."""
        monkeypatch.setenv("LAMBDAGUARD_REPORT_LIMIT", "5")

        @guard(network="block")
        def handler(event: dict[str, Any], context: FakeLambdaContext) -> int:
            blocked = 0
            for _ in range(1000):
                try:
                    lookup("flood.example")
                except Violation:
                    blocked += 1
            return blocked

        assert handler({}, FakeLambdaContext()) == 1000
        out = capsys.readouterr().out
        assert len(events(out)) == 5
        (summary,) = events(out, "suppressed")
        assert summary["lambdaguard"]["suppressed"] == 995
        assert (summary["Policy"], summary["Mode"], summary["Violations"]) == (
            "network",
            "block",
            995,
        )

        assert handler({}, FakeLambdaContext()) == 1000
        assert len(events(capsys.readouterr().out)) == 5

    def test_nested_guarded_calls_share_one_invocation(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A guarded helper called by a guarded handler does not reset the budget."""
        monkeypatch.setenv("LAMBDAGUARD_REPORT_LIMIT", "3")

        @guard(network="block")
        def helper() -> None:
            with pytest.raises(Violation):
                lookup("nested.example")

        @guard(network="block")
        def handler(event: object, context: object) -> None:
            for _ in range(10):
                helper()

        handler({}, FakeLambdaContext())
        out = capsys.readouterr().out
        assert len(events(out)) == 3
        assert events(out, "suppressed")[0]["lambdaguard"]["suppressed"] == 7


class TestInvocations:
    """Which invocation a line belongs to: its Lambda keys and its budget."""

    def test_guards_and_relaxations_inside_a_handler_report_with_its_keys(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A with-guard, a relaxation and a guarded helper inside a handler write the handler's request id."""

        @guard(network="block")
        def helper() -> None:
            with pytest.raises(Violation):
                lookup("helper.example")

        outer = guard(tmp="block")

        @outer
        def handler(event: object, context: object) -> str:
            with guard(network="block"), pytest.raises(Violation):
                lookup("inner.example")
            with outer.relaxed(tmp="alert"):
                helper()
            return "done"

        assert handler({}, FakeLambdaContext(aws_request_id="req-outer")) == "done"
        lines = violation_lines(capsys.readouterr().out)
        assert [line["lambdaguard"]["event"] for line in lines] == [
            "violation",
            "relaxed",
            "violation",
        ]
        assert {line["function_request_id"] for line in lines} == {"req-outer"}

    def test_next_invocation_does_not_see_the_last_ones_suppressed_count(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Each invocation's summary counts only its own suppressed lines."""
        monkeypatch.setenv("LAMBDAGUARD_REPORT_LIMIT", "2")

        @guard(network="block")
        def handler(event: dict[str, int], context: object) -> None:
            for _ in range(event["attempts"]):
                with pytest.raises(Violation):
                    lookup("budget.example")

        handler({"attempts": 5}, FakeLambdaContext(aws_request_id="req-a"))
        handler({"attempts": 4}, FakeLambdaContext(aws_request_id="req-b"))
        summaries = events(capsys.readouterr().out, "suppressed")
        assert [(s["function_request_id"], s["lambdaguard"]["suppressed"]) for s in summaries] == [
            ("req-a", 3),
            ("req-b", 2),
        ]

    def test_threads_started_by_a_handler_share_its_invocation(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Lines from the handler's threads carry its keys and count against its one budget."""
        import threading

        monkeypatch.setenv("LAMBDAGUARD_REPORT_LIMIT", "3")

        def work() -> None:
            for _ in range(3):
                with contextlib.suppress(Violation):
                    lookup("threaded.example")

        @guard(network="block")
        def handler(event: object, context: object) -> None:
            threads = [threading.Thread(target=work) for _ in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(10)

        handler({}, FakeLambdaContext(aws_request_id="req-threads"))
        out = capsys.readouterr().out
        lines = events(out)
        assert len(lines) == 3
        assert {line["function_request_id"] for line in lines} == {"req-threads"}
        (summary,) = events(out, "suppressed")
        assert (summary["function_request_id"], summary["lambdaguard"]["suppressed"]) == (
            "req-threads",
            3,
        )

    def test_concurrent_async_invocations_keep_their_own_keys(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Interleaved coroutine handlers in one thread each write their own request id."""
        import asyncio

        @guard(network="block")
        async def handler(event: dict[str, str], context: FakeLambdaContext) -> None:
            for _ in range(3):
                await asyncio.sleep(0)
                with pytest.raises(Violation):
                    lookup(f"{context.aws_request_id}.example")

        async def main() -> None:
            await asyncio.gather(
                *(handler({}, FakeLambdaContext(aws_request_id=f"req-{i}")) for i in range(4))
            )

        asyncio.run(main())
        lines = events(capsys.readouterr().out)
        assert len(lines) == 12
        for line in lines:
            assert line["lambdaguard"]["target"] == f"{line['function_request_id']}.example:443"

    def test_handler_called_inside_a_with_block_is_its_own_invocation(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Only the handler's line carries the request id; the block's own line has none."""

        @guard(tmp="block")
        def handler(event: object, context: object) -> None:
            with pytest.raises(Violation):
                lookup("in-handler.example")

        with guard(network="block"):
            handler({}, FakeLambdaContext(aws_request_id="req-in-block"))
            with pytest.raises(Violation):
                lookup("in-block.example")
        inside, outside = events(capsys.readouterr().out)
        assert inside["function_request_id"] == "req-in-block"
        assert "function_request_id" not in outside

    def test_lines_suppressed_outside_invocations_are_summarised_when_one_begins(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Past the outside budget, the next invocation first writes the count it suppressed."""
        with guard(network="block"):
            for _ in range(report.DEFAULT_LIMIT + 3):
                with contextlib.suppress(Violation):
                    lookup("outside.example")

        @guard(network="block")
        def handler(event: object, context: object) -> None:
            with pytest.raises(Violation):
                lookup("handler.example")

        assert len(events(capsys.readouterr().out)) == report.DEFAULT_LIMIT
        handler({}, FakeLambdaContext(aws_request_id="req-after"))
        lines = violation_lines(capsys.readouterr().out)
        assert [line["lambdaguard"]["event"] for line in lines] == ["suppressed", "violation"]
        assert lines[0]["lambdaguard"]["suppressed"] == 3
        assert "function_request_id" not in lines[0]
        assert lines[1]["function_request_id"] == "req-after"

    def test_an_argument_whose_attributes_raise_changes_nothing(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A non-context argument whose __getattr__ raises: the line is written without keys, the result unchanged."""

        class Hostile:
            def __getattr__(self, name: str) -> object:
                raise RuntimeError(f"no {name}")

        @guard(network="block")
        def handler(event: object, context: object) -> str:
            with pytest.raises(Violation):
                lookup("hostile.example")
            return "done"

        before = report.failures()
        assert handler({}, Hostile()) == "done"
        (line,) = events(capsys.readouterr().out)
        assert "function_request_id" not in line
        assert report.failures() == before


class TestNeverBreaksTheHandler:
    def test_failure_to_log_is_swallowed_and_counted(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A broken stdout neither hides the Violation nor changes the handler's result."""

        class BrokenStream(io.StringIO):
            def write(self, s: str) -> int:
                raise OSError("disk full")

        monkeypatch.setattr(sys, "stdout", BrokenStream())
        before = report.failures()

        @guard(network="block")
        def handler(event: object, context: object) -> str:
            with pytest.raises(Violation):
                lookup("blocked.example")
            return "done"

        assert handler({}, FakeLambdaContext()) == "done"
        assert report.failures() == before + 1

    def test_reporting_does_not_trip_its_own_guards(self) -> None:
        """A user's log handler that ships lines over TCP still works under network='block'."""
        import logging.handlers

        from aws_lambda_powertools import Logger

        with counting_listener() as shipper:
            handler = logging.handlers.SocketHandler("127.0.0.1", shipper.port)
            logger = Logger(service="shipped", logger_handler=handler)
            with guard(network="block", logger=logger), pytest.raises(Violation):
                lookup("blocked.example")
            handler.close()
            # The shipper got the line: the reporter's own connect was not judged.
            assert shipper.wait_for(1) == 1


def test_import_is_cheap_and_lazy() -> None:
    """`import lambdaguard` loads neither wrapt nor powertools; activation loads only wrapt's C types."""
    code = (
        "import sys, lambdaguard\n"
        "watch = ('wrapt', 'wrapt._wrappers', 'aws_lambda_powertools', 'asyncio', 'inspect')\n"
        "print(sorted(m for m in watch if m in sys.modules))\n"
        "with lambdaguard.guard(network='block'): pass\n"
        "print(sorted(m for m in watch if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.splitlines() == ["[]", "['wrapt._wrappers']"]


def test_violation_pickles_with_its_fields() -> None:
    """Violations cross process pools intact."""
    import pickle

    from lambdaguard import FileViolation

    for exc in (
        Violation("network", "block", "connect", "1.2.3.4:443"),
        FileViolation("tmp", "block", "open", "/tmp/x"),
    ):
        clone = pickle.loads(pickle.dumps(exc))
        assert (type(clone), clone.policy, clone.action, clone.target, str(clone)) == (
            type(exc),
            exc.policy,
            exc.action,
            exc.target,
            str(exc),
        )
    assert isinstance(
        pickle.loads(pickle.dumps(FileViolation("tmp", "block", "open", "/tmp/x"))), PermissionError
    )


def test_network_rule_repr_round_trips() -> None:
    """repr(rule) is what relaxation lines print."""
    assert (
        repr(Network("block", allow=["a.example:443"]))
        == "Network('block', allow=['a.example:443'])"
    )
    assert json.loads(json.dumps(repr(Network("alert")))) == "Network('alert')"


def test_documented_logs_insights_query_names_real_fields(capsys: pytest.CaptureFixture[str]) -> None:
    """Every field the Logs Insights queries in docs/logs.md use exists in a real violation line."""
    import re
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "logs.md").read_text()
    section = doc.split("## Logs Insights: list violations", 1)[1].split("## The metric", 1)[0]
    fields = set(re.findall(r"\b(?:function_name|lambdaguard\.[a-z_]+)\b", section))
    assert {"function_name", "lambdaguard.event", "lambdaguard.target"} <= fields

    @guard(network="block")
    def handler(event: object, context: FakeLambdaContext) -> None:
        with pytest.raises(Violation):
            lookup("blocked.example")

    handler({}, FakeLambdaContext())
    (line,) = events(capsys.readouterr().out)
    for field in fields:
        value: Any = line
        for part in field.split("."):
            value = value[part]
        assert value not in (None, "")
    assert line["lambdaguard"]["event"] == "violation"  # the filter value in the queries


def test_line_keys_follow_powertools_order(capsys: pytest.CaptureFixture[str]) -> None:
    """The writer's keys come in powertools Logger's order, then lambdaguard's and the EMF keys."""

    @guard(network="block")
    def handler(event: object, context: FakeLambdaContext) -> None:
        with pytest.raises(Violation):
            lookup("blocked.example")

    handler({}, FakeLambdaContext())
    (line,) = events(capsys.readouterr().out)
    assert list(line) == [
        "level",
        "location",
        "message",
        "timestamp",
        "service",
        "cold_start",
        "function_name",
        "function_memory_size",
        "function_arn",
        "function_request_id",
        "lambdaguard",
        "_aws",
        "Policy",
        "Mode",
        "Violations",
    ]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\+0000", line["timestamp"])


def test_guarding_a_bare_handler_imports_no_typing_or_dataclasses() -> None:
    """Activation keeps the cold-start floor: no typing, dataclasses, json, socket or subprocess loaded."""
    code = (
        "import sys, lambdaguard\n"
        "with lambdaguard.guard(network='block', tmp='block', subprocess='block', handler_source='block'):\n"
        "    pass\n"
        "print(sorted(m for m in ('typing', 'dataclasses', 'inspect', 'json', 'subprocess', 'tempfile',"
        " 'concurrent.futures.process', 'asyncio', 'socket') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    # Not even inspect: wrapt's package (whose decorators import it) is never imported.
    assert out.strip() == "[]"


def _lambdaguard_and_wrapt_path() -> str:
    """A PYTHONPATH with just lambdaguard and wrapt, for a start without site-packages."""
    import importlib.util

    import lambdaguard

    wrapt = importlib.util.find_spec("wrapt")
    assert wrapt is not None
    assert wrapt.submodule_search_locations
    wrapt_parent = os.path.dirname(next(iter(wrapt.submodule_search_locations)))
    return os.pathsep.join([os.path.dirname(os.path.dirname(lambdaguard.__file__)), wrapt_parent])


class TestLineEncoding:
    """The line encoder is json.dumps(ensure_ascii=True, separators=(',', ':'), default=str)."""

    class _Shown:
        def __str__(self) -> str:
            return "shown\u2603"

    class _Text(str):
        pass

    VALUES: tuple[object, ...] = (
        "plain",
        'quote " backslash \\ newline \n tab \t nul \x00 snowman \u2603 astral \U0001f600',
        _Text("a str subclass"),
        {"nested": {"list": [1, -2, 3.25, None, True, False], "tuple": ("a", "b")}},
        {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf"), "big": 10**30},
        {"object": _Shown(), "bytes": b"raw"},
        [],
        {},
    )

    def test_encoder_matches_json_dumps(self) -> None:
        """Every kind of value a line can hold encodes exactly as json.dumps encodes it."""
        from lambdaguard import report

        encode = report._make_encoder()
        for value in self.VALUES:
            expected = json.dumps(value, ensure_ascii=True, separators=(",", ":"), default=str)
            assert encode(value) == expected, value

    def test_fallback_without_c_encoder_matches_too(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without the _json C module, json's own encoder is used, with the same output."""
        from lambdaguard import report

        monkeypatch.setitem(sys.modules, "_json", None)  # makes `from _json import` fail
        encode = report._make_encoder()
        assert getattr(encode, "__self__", None).__class__.__name__ == "JSONEncoder"
        for value in self.VALUES:
            expected = json.dumps(value, ensure_ascii=True, separators=(",", ":"), default=str)
            assert encode(value) == expected, value

    def test_writing_a_line_imports_neither_json_nor_re(self) -> None:
        """A guarded bare handler's first violation costs no json, re or inspect (nor, on 3.13, collections)."""
        code = (
            "import sys\n"
            "already = set(sys.modules)  # a venv's .pth files may have loaded re already\n"
            "import lambdaguard\n"
            "try:\n"
            "    with lambdaguard.guard(network='block', tmp='block', subprocess='block',"
            " handler_source='block'):\n"
            "        open('/tmp/lambdaguard-never-written', 'w')\n"
            "except lambdaguard.FileViolation:\n"
            "    pass\n"
            "new = set(sys.modules) - already\n"
            "watched = ['json', 're', 'enum', 'inspect']\n"
            "if sys.version_info >= (3, 13):  # before 3.13, threading imports them anyway\n"
            "    watched += ['functools', 'collections']\n"
            "print(sorted(m for m in watched if m in new), file=sys.stderr)\n"
        )
        done = subprocess.run(
            [sys.executable, "-S", "-c", code],  # -S: no site, so no .pth file preloads re
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONPATH": _lambdaguard_and_wrapt_path()},
        )
        assert '"policy":"tmp"' in done.stdout
        # enum is the one left: Mode is an Enum by contract.
        assert done.stderr.strip() == "['enum']"
