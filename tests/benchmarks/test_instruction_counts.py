"""benchmarks/instructions.py: reading callgrind's dumps and turning them into per-call counts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import instructions  # benchmarks/ is not a package: it is found by its path
import run

N = instructions.SEGMENTS


def write_dump(directory: Path, name: str, part: int, count: int) -> None:
    """A dump as callgrind 3.19 writes it with --dump-before (its header and totals)."""
    (directory / name).write_text(
        "# callgrind format\nversion: 1\ncreator: callgrind-3.19.0\npid: 4242\n"
        "cmd:  python -c \\nimport os\\nos.getpgrp()\\n\n"
        f"part: {part}\n\n\ndesc: I1 cache: \ndesc: D1 cache: \ndesc: LL cache: \n\n"
        "desc: Trigger: --dump-before=getpgrp\n\npositions: line\nevents: Ir\n"
        f"summary: {count}\n\n\nob=(2) ???\nfl=(52) ???\n0 {count}\n\ntotals: {count}\n"
    )


class TestSegmentCounts:
    def test_dumps_are_read_in_numeric_order_of_their_part(self, tmp_path: Path) -> None:
        """Part 10 comes after part 9, not after part 1: the order is numeric."""
        for part in range(1, 12):
            write_dump(tmp_path, f"cg.4242.{part}", part, part * 100)
        assert instructions.segment_counts(str(tmp_path), 4242) == [
            part * 100 for part in range(1, 12)
        ]

    def test_other_processes_and_the_final_dump_are_left_out(self, tmp_path: Path) -> None:
        """A forked child's dumps and the one written at exit are not segments."""
        write_dump(tmp_path, "cg.4242.1", 1, 7)
        write_dump(tmp_path, "cg.4242", 2, 999)
        write_dump(tmp_path, "cg.4243.1", 1, 555)
        assert instructions.segment_counts(str(tmp_path), 4242) == [7]

    def test_a_dump_without_a_summary_line_is_an_error(self, tmp_path: Path) -> None:
        """A truncated dump fails the run instead of counting as zero instructions."""
        (tmp_path / "cg.4242.1").write_text("# callgrind format\nversion: 1\n")
        with pytest.raises(RuntimeError, match=r"cg\.4242\.1"):
            instructions.segment_counts(str(tmp_path), 4242)


class TestPerCall:
    def test_a_segment_less_the_marker_alone_over_its_calls(self) -> None:
        """Each segment's count less the marker's own, over its calls; settling parts aside."""
        plan = [("open_read", "open_read", "pristine", 50)]
        counts = [10**8, 1_000]
        for i in range(N):
            counts += [99_999, 1_000 + 50 * (21_000 + i)]  # settling, then the segment
        assert instructions.per_call(plan, counts) == {
            ("open_read", "pristine"): [21_000.0 + i for i in range(N)]
        }

    def test_items_take_their_own_dumps_in_plan_order(self) -> None:
        """The second item's warm-up, marker and segments follow the first item's."""
        plan = [("connect", "connect", "noscope", 10), ("connect", "connect", "scope", 10)]
        counts = [5, 100, *[7, 100 + 10 * 20_000] * N, 5, 100, *[7, 100 + 10 * 27_000] * N]
        got = instructions.per_call(plan, counts)
        assert got[("connect", "noscope")] == [20_000.0] * N
        assert got[("connect", "scope")] == [27_000.0] * N

    def test_a_blocked_invocation_is_counted_per_attempt(self) -> None:
        """An invocation makes BLOCKED_ATTEMPTS attempts; the count is per attempt."""
        attempts = instructions.BLOCKED_ATTEMPTS
        plan = [("blocked_tmp_open", "blocked_tmp_open", "scope", 1)]
        counts = [5, 100, *[7, 100 + attempts * 280_000] * N]
        assert instructions.per_call(plan, counts) == {
            ("blocked_tmp_open", "scope"): [280_000.0] * N
        }

    def test_a_missing_dump_is_an_error(self) -> None:
        """Fewer dumps than the plan asks for (a marker call lost) fails the run."""
        plan = [("open_read", "open_read", "pristine", 50)]
        with pytest.raises(RuntimeError, match="expected"):
            instructions.per_call(plan, [1] * (2 * N + 1))


class TestPlans:
    def test_two_rows_on_one_operation_share_the_pristine_count(self) -> None:
        """open_read and open_read_after_child are compared with one pristine open."""
        rows = [row for row in run.HOT_ROWS if row[1] == "open_read"]
        plans = instructions.plans(rows, decorator=False, blocked=[], scale=1.0)
        assert [item[:3] for item in plans["pristine"]] == [
            ("open_read", "open_read", "pristine")
        ]
        assert {item[0] for item in plans["spawned"]} == {"open_read_after_child"}

    def test_the_decorator_and_blocked_rows_run_in_the_lambdaguard_worker(self) -> None:
        """No pristine worker is started when only lambdaguard's own costs are asked."""
        plans = instructions.plans([], decorator=True, blocked=["network_lookup"], scale=1.0)
        assert list(plans) == ["lambdaguard"]
        assert [item[1] for item in plans["lambdaguard"]] == [
            "decorator_bare", "decorator_guarded", "blocked_network_lookup"
        ]


class TestCells:
    def test_added_and_ratio_are_against_the_unguarded_count(self) -> None:
        """The added columns subtract the unguarded count, the ratios divide by it."""
        cells = run.instruction_cells(
            "connect", {"pristine": 20_000.0, "noscope": 21_000.0, "scope": 30_000.0}
        )
        assert cells == ["20,000", "21,000", "30,000", "+1,000", "+10,000", "1.050x", "1.500x"]

    def test_the_decorator_row_has_no_ratio(self) -> None:
        """A trivial handler's count is no baseline for a ratio: the cell is a dash."""
        cells = run.instruction_cells("decorator", {"pristine": 900.0, "scope": 17_000.0})
        assert cells == ["900", "—", "17,000", "—", "+16,100", "—", "—"]
