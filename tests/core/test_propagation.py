"""Work started from a scope stays in it: threads, pools, asyncio tasks, run_in_executor."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import socket
import stat
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import pytest

from lambdaguard import Violation, configure, guard
from tests.helpers import connect, counting_listener


def attempt(port: int) -> str:
    """Try one connection; say whether it was blocked. Module-level: it is pickled to workers."""
    try:
        connect(port)
    except Violation:
        return "blocked"
    return "connected"


class TestThreads:
    def test_thread_started_in_scope_is_guarded(self) -> None:
        """A threading.Thread started inside a scope runs inside it."""
        results: list[str] = []
        with counting_listener() as listener:
            with guard(network="block"):
                t = threading.Thread(target=lambda: results.append(attempt(listener.port)))
                t.start()
            t.join(5)
            assert results == ["blocked"]
            assert listener.accepted == 0

    def test_thread_subclass_with_own_run_is_guarded(self) -> None:
        """A Thread subclass overriding run() is carried into the scope too."""
        with counting_listener() as listener:

            class Worker(threading.Thread):
                result = ""

                def run(self) -> None:
                    self.result = attempt(listener.port)

            with guard(network="block"):
                w = Worker()
                w.start()
            w.join(5)
            assert w.result == "blocked"

    def test_thread_started_outside_is_not_guarded(self) -> None:
        """A thread started outside any scope is unaffected by a scope opened elsewhere."""
        results: list[str] = []
        ready = threading.Event()
        with counting_listener() as listener:
            t = threading.Thread(
                target=lambda: (ready.wait(5), results.append(attempt(listener.port)))
            )
            t.start()
            with guard(network="block"):
                ready.set()
                t.join(5)
            assert results == ["connected"]

    def test_raw_start_new_thread_is_guarded(self) -> None:
        """_thread.start_new_thread, used by code that avoids threading, is carried too."""
        import _thread

        results: list[str] = []
        done = threading.Event()
        with counting_listener() as listener:
            with guard(network="block"):
                _thread.start_new_thread(
                    lambda: (results.append(attempt(listener.port)), done.set()), ()
                )
            done.wait(5)
            assert results == ["blocked"]


class TestPools:
    def test_submission_carries_the_scope_not_the_pool(self) -> None:
        """One worker thread runs a guarded submission guarded and a later one unguarded."""
        with counting_listener() as listener, ThreadPoolExecutor(max_workers=1) as pool:
            with guard(network="block"):
                inside = pool.submit(attempt, listener.port).result(5)
            outside = pool.submit(attempt, listener.port).result(5)
            assert (inside, outside) == ("blocked", "connected")
            assert listener.wait_for(1) == 1

    def test_process_pool_submission_carries_the_scope(self) -> None:
        """A pool created outside any scope runs a guarded submission guarded, in its worker."""
        with counting_listener() as listener, ProcessPoolExecutor(max_workers=1) as pool:
            assert pool.submit(attempt, listener.port).result(30) == "connected"
            with guard(network="block"):
                inside = pool.submit(attempt, listener.port).result(30)
            after = pool.submit(attempt, listener.port).result(30)
            assert (inside, after) == ("blocked", "connected")

    # os.fork warns when other threads run (3.12+); the listener thread is ours and idle.
    @pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
    def test_worker_forked_by_a_guarded_submission_runs_later_work_unguarded(self) -> None:
        """The first submission is guarded and starts the worker; the next, unguarded, is not blocked."""
        context = multiprocessing.get_context("fork")
        with counting_listener() as listener, ProcessPoolExecutor(1, mp_context=context) as pool:
            with guard(network="block"):
                inside = pool.submit(attempt, listener.port).result(30)
            after = pool.submit(attempt, listener.port).result(30)
            assert (inside, after) == ("blocked", "connected")

    def test_baseline_reaches_a_spawned_worker(self) -> None:
        """A configure() baseline travels with each submission into a spawn-method worker."""
        context = multiprocessing.get_context("spawn")
        with counting_listener() as listener, ProcessPoolExecutor(1, mp_context=context) as pool:
            assert pool.submit(attempt, listener.port).result(60) == "connected"
            handle = configure(network="block")
            try:
                assert pool.submit(attempt, listener.port).result(60) == "blocked"
            finally:
                handle.remove()

    def test_violation_raised_in_a_process_worker_crosses_back(self) -> None:
        """A Violation raised in a worker pickles back to the submitter with its fields."""
        with counting_listener() as listener, ProcessPoolExecutor(max_workers=1) as pool:
            with guard(network="block"):
                future = pool.submit(connect, listener.port)
            with pytest.raises(Violation) as caught:
                future.result(30)
        assert (caught.value.policy, caught.value.action) == ("network", "connect")


class TestAsyncio:
    def test_tasks_and_executor_interleave_without_leaks(self) -> None:
        """Guarded and unguarded tasks run at once; each sees exactly its own policy."""
        with counting_listener() as listener:

            async def unguarded() -> str:
                await asyncio.sleep(random.random() / 100)
                _, writer = await asyncio.open_connection("127.0.0.1", listener.port)
                writer.close()
                return "connected"

            @guard(network="block")
            async def guarded() -> str:
                await asyncio.sleep(random.random() / 100)
                try:
                    await asyncio.open_connection("127.0.0.1", listener.port)
                except Violation:
                    return "blocked"
                return "connected"

            @guard(network="block")
            async def guarded_executor() -> str:
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(None, attempt, listener.port)

            async def main() -> list[str]:
                coros = []
                for i in range(60):
                    coros.append([unguarded, guarded, guarded_executor][i % 3]())
                return list(await asyncio.gather(*coros))

            results = asyncio.run(main())
            expected = ["connected", "blocked", "blocked"] * 20
            assert results == expected
            assert listener.wait_for(20) == 20

    def test_many_threads_interleaving_guarded_and_unguarded_work(self) -> None:
        """16 threads alternate guarded and unguarded attempts; no leak either way."""
        results: dict[int, list[str]] = {}
        with counting_listener() as listener:

            def worker(index: int) -> None:
                mine: list[str] = []
                for round_ in range(20):
                    if (index + round_) % 2:
                        with guard(network="block"):
                            mine.append(attempt(listener.port))
                    else:
                        mine.append(attempt(listener.port))
                results[index] = mine

            threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            for index, mine in results.items():
                assert mine == ["blocked" if (index + r) % 2 else "connected" for r in range(20)]
            assert len(results) == 16
            assert listener.wait_for(160) == 160


class TestPatchedFunctionsStillPickle:
    def test_patched_functions_cross_a_process_pool(self, tmp_path: Path) -> None:
        """pool.submit(os.mkfifo, path) and friends work after lambdaguard patched them."""
        from lambdaguard.sensors import ensure_installed

        ensure_installed()
        fifo = tmp_path / "fifo"
        with ProcessPoolExecutor(max_workers=1) as pool:
            pool.submit(os.mkfifo, fifo).result(30)
            infos = pool.submit(socket.getaddrinfo, "127.0.0.1", 80).result(30)
        assert stat.S_ISFIFO(fifo.stat().st_mode)
        assert infos[0][4][0] == "127.0.0.1"

    def test_a_patched_function_unpickles_as_that_process_own(self) -> None:
        """A patched function pickles by name: the receiving side gets its own os.remove."""
        import pickle

        from lambdaguard.sensors import ensure_installed

        ensure_installed()
        for function in (os.remove, socket.getaddrinfo, open):
            assert pickle.loads(pickle.dumps(function)) is function
