"""Scopes: decorator and context manager, nesting, relaxation, the configure() baseline."""

from __future__ import annotations

import asyncio
import os
import socket
import threading

import pytest

from lambdaguard import Mode, Network, Violation, configure, guard
from tests.helpers import connect, counting_listener, events


class TestGuardForms:
    def test_decorator_blocks_inside_and_not_outside(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A decorated function is guarded while it runs; the caller before and after is not."""
        with counting_listener() as listener:

            @guard(network="block")
            def handler() -> None:
                connect(listener.port)

            with pytest.raises(Violation):
                handler()
            connect(listener.port)
            assert listener.wait_for(1) == 1
        assert len(events(capsys.readouterr().out)) == 1

    def test_decorated_functions_keep_their_identity(self) -> None:
        """Name, qualname, docstring, annotations, attributes and __wrapped__ survive, as with functools.wraps."""
        import asyncio
        import functools

        def handler(event: dict[str, int], context: object) -> int:
            """The handler's own docstring."""
            return event["n"]

        handler.marker = "kept"  # type: ignore[attr-defined]

        async def async_handler(event: dict[str, int], context: object) -> int:
            """The async handler's docstring."""
            return event["n"]

        for original in (handler, async_handler):
            decorated = guard(network="block")(original)
            reference = functools.wraps(original)(lambda *a: None)
            for name in ("__module__", "__name__", "__qualname__", "__doc__", "__annotations__"):
                assert getattr(decorated, name) == getattr(reference, name), name
            assert decorated.__wrapped__ is original
        assert guard(network="block")(handler).marker == "kept"
        assert guard(network="block")(handler)({"n": 3}, None) == 3
        assert asyncio.run(guard(network="block")(async_handler)({"n": 4}, None)) == 4

    def test_context_manager_blocks_inside_only(self) -> None:
        """A with-block is guarded; the code after it is not."""
        with counting_listener() as listener:
            with guard(network="block"), pytest.raises(Violation):
                connect(listener.port)
            connect(listener.port)
            assert listener.wait_for(1) == 1

    def test_coroutine_function_is_guarded_while_it_runs(self) -> None:
        """An async handler is guarded across its awaits."""
        with counting_listener() as listener:

            @guard(network="block")
            async def handler() -> str:
                await asyncio.sleep(0)
                await asyncio.open_connection("127.0.0.1", listener.port)
                return "unreachable"

            with pytest.raises(Violation):
                asyncio.run(handler())
            assert listener.accepted == 0

    def test_async_with_is_supported(self) -> None:
        """`async with guard(...)` scopes like `with`."""
        with counting_listener() as listener:

            async def body() -> None:
                async with guard(network="block"):
                    await asyncio.open_connection("127.0.0.1", listener.port)

            with pytest.raises(Violation):
                asyncio.run(body())
            assert listener.accepted == 0

    def test_method_decorator_binds_self(self) -> None:
        """A decorated method still receives self and returns its value."""

        class Service:
            factor = 3

            @guard(network="block")
            def handle(self, value: int) -> int:
                return value * self.factor

        assert Service().handle(2) == 6

    def test_return_value_and_exception_are_untouched(self) -> None:
        """Whatever the handler returns or raises reaches the caller unchanged."""
        sentinel = object()
        error = KeyError("mine")

        @guard(network="block")
        def returns() -> object:
            return sentinel

        @guard(network="block")
        def raises() -> None:
            raise error

        assert returns() is sentinel
        with pytest.raises(KeyError) as caught:
            raises()
        assert caught.value is error

    def test_generator_function_is_refused(self) -> None:
        """Decorating a generator function is a clear TypeError, not a silently unguarded body."""
        with pytest.raises(TypeError, match="generator function"):

            @guard(network="block")
            def gen() -> object:
                yield 1

    def test_exits_out_of_order_are_an_error(self) -> None:
        """Exiting an outer guard before the inner one is refused."""
        outer, inner = guard(network="block"), guard(network="block")
        outer.__enter__()
        inner.__enter__()
        with pytest.raises(RuntimeError, match="different order"):
            outer.__exit__(None, None, None)
        inner.__exit__(None, None, None)
        outer.__exit__(None, None, None)


class TestNesting:
    def test_inner_allow_does_not_loosen_outer_block(self) -> None:
        """Code inside a blocked scope gains nothing by opening guard(network='allow')."""
        with counting_listener() as listener:
            with guard(network="block"), guard(network="allow"), pytest.raises(Violation):
                connect(listener.port)
            assert listener.accepted == 0

    @pytest.mark.parametrize(
        ("outer", "inner"),
        [("alert", "block"), ("block", "alert")],
        ids=["alert>block", "block>alert"],
    )
    def test_strictest_mode_wins(self, outer: str, inner: str) -> None:
        """block beats alert in whichever layer it stands."""
        with counting_listener() as listener:
            with guard(network=outer), guard(network=inner), pytest.raises(Violation):
                connect(listener.port)
            assert listener.accepted == 0

    def test_allow_lists_intersect(self) -> None:
        """Only what every blocking layer allow-lists goes ahead."""
        with counting_listener() as a, counting_listener() as b, counting_listener() as c:
            outer = Network("block", allow=[f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"])
            inner = Network("block", allow=[f"127.0.0.1:{b.port}", f"127.0.0.1:{c.port}"])
            with guard(network=outer), guard(network=inner):
                connect(b.port)
                for blocked in (a, c):
                    with pytest.raises(Violation):
                        connect(blocked.port)
            assert (a.accepted, b.wait_for(1), c.accepted) == (0, 1, 0)


class TestRelaxed:
    def test_relaxed_loosens_only_inside_and_is_logged(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """g.relaxed(network='allow') lets connections through in its block and logs a line."""
        g = guard(network="block")
        with counting_listener() as listener:
            with g:
                with g.relaxed(network="allow"):
                    connect(listener.port)
                with pytest.raises(Violation):
                    connect(listener.port)
            assert listener.wait_for(1) == 1
        relaxed = events(capsys.readouterr().out, "relaxed")
        assert len(relaxed) == 1
        assert relaxed[0]["lambdaguard"]["changes"]["network"] == {
            "from": "Network('block')",
            "to": "Network('allow')",
        }
        assert relaxed[0]["lambdaguard"]["location"].startswith(__file__)

    def test_relaxing_the_outer_guard_leaves_the_inner_in_force(self) -> None:
        """Relaxation goes through the object that set a policy, and only that one."""
        outer = guard(network="block")
        with counting_listener() as listener:
            with outer, guard(network="block"), outer.relaxed(network="allow"):
                with pytest.raises(Violation):
                    connect(listener.port)
            assert listener.accepted == 0

    def test_relaxed_outside_its_guard_is_an_error(self) -> None:
        """A guard that is not in force here has nothing to relax."""
        g = guard(network="block")
        with pytest.raises(RuntimeError, match="in force here"), g.relaxed(network="allow"):
            pass

    def test_relaxed_to_an_allow_list(self) -> None:
        """A relaxation can swap a blanket block for an allow-list."""
        g = guard(network="block")
        with counting_listener() as ok, counting_listener() as other:
            with g, g.relaxed(network=Network("block", allow=[f"127.0.0.1:{ok.port}"])):
                connect(ok.port)
                with pytest.raises(Violation):
                    connect(other.port)
            assert (ok.wait_for(1), other.accepted) == (1, 0)


class TestConfigureBaseline:
    def test_baseline_reaches_threads_already_running(self) -> None:
        """configure() applies to every thread from then on, including running ones."""
        go, done = threading.Event(), threading.Event()
        outcome: list[str] = []
        with counting_listener() as listener:

            def worker() -> None:
                go.wait(5)
                try:
                    connect(listener.port)
                    outcome.append("connected")
                except Violation:
                    outcome.append("blocked")
                done.set()

            thread = threading.Thread(target=worker)
            thread.start()
            configure(network="block")
            go.set()
            done.wait(5)
            thread.join(5)
            assert outcome == ["blocked"]
            assert listener.accepted == 0

    def test_configure_again_only_tightens(self) -> None:
        """A second configure(network='allow') does not undo the first one's block."""
        with counting_listener() as listener:
            configure(network="block")
            configure(network="allow")
            with pytest.raises(Violation):
                connect(listener.port)
            assert listener.accepted == 0

    def test_handle_relaxed_update_and_remove_loosen_and_are_logged(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Loosening the baseline goes through its handle, and each loosening is logged."""
        with counting_listener() as listener:
            handle = configure(network="block")
            with handle.relaxed(network="allow"):
                connect(listener.port)
            with pytest.raises(Violation):
                connect(listener.port)
            handle.update(network="alert")
            connect(listener.port)
            handle.remove()
            connect(listener.port)
            assert listener.wait_for(3) == 3
        out = capsys.readouterr().out
        assert len(events(out, "relaxed")) == 3
        modes = [line["lambdaguard"]["mode"] for line in events(out)]
        assert modes == ["block", "alert"]

    def test_scoped_guard_adds_to_the_baseline(self) -> None:
        """A guard(tmp=...) inside a network baseline still blocks the network."""
        with counting_listener() as listener:
            configure(network="block")
            with guard(tmp="allow"), pytest.raises(Violation):
                connect(listener.port)
            assert listener.accepted == 0


class TestEnvironmentIsReadOnce:
    def test_changing_environ_later_never_loosens(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A guard built under LAMBDAGUARD_NETWORK=block stays blocking after the variable goes."""
        monkeypatch.setenv("LAMBDAGUARD_NETWORK", "block")
        g = guard()
        monkeypatch.delenv("LAMBDAGUARD_NETWORK")
        monkeypatch.setenv("LAMBDAGUARD_DRY_RUN", "true")
        with counting_listener() as listener:
            with g, pytest.raises(Violation):
                connect(listener.port)
            assert listener.accepted == 0
        assert g.policy.rules["network"].mode is Mode.BLOCK


class TestOutsideEveryScope:
    def test_no_lines_and_no_change_after_the_scope(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Once every scope has exited, socket behaviour is as if lambdaguard were not there."""
        with guard(network="block"):
            pass
        with counting_listener() as listener:
            sock = socket.create_connection(("127.0.0.1", listener.port), timeout=5)
            assert isinstance(sock, socket.socket)
            sock.close()
            # A refused connection is still an ordinary OSError, not a Violation.
            closed = socket.socket()
            closed.bind(("127.0.0.1", 0))
            port = closed.getsockname()[1]
            closed.close()
            with pytest.raises(ConnectionRefusedError):
                connect(port)
            assert listener.wait_for(1) == 1
        assert capsys.readouterr().out == ""


# os.fork warns when other threads run (3.12+); the listener thread is ours and idle.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_forked_child_stays_in_scope() -> None:
    """A child forked inside a scope is still guarded (it inherits the forking context)."""
    with counting_listener() as listener, guard(network="block"):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 0
            try:
                connect(listener.port)
                code = 1
            except Violation:
                code = 7
            os._exit(code)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 7
    assert listener.accepted == 0
