"""`native` marks C code, not a busy machine.

A recording sample is taken at the loop thread's next eval-breaker check after
the watchdog asks for it. A request that waits over two sampling intervals
waited either in C code holding the GIL (a sort: no check until it returns)
or for the loop thread to get a CPU back (a loaded machine). Only the first is
native code: the recorder keeps the loop thread's CPU time over each wait
(format 1.4), and the analyzer marks `native` only a wait the thread ran
through. Here the recorded program shares one CPU with two busy processes, so
its loop thread is descheduled for several milliseconds at a time, as on a
loaded server; the trace is read back by the ``aiocop-analyze`` executable.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import analyze, report_json

# Slices of ~30 ms of pure Python (`spin`), then slices of a sort (`sort`): C
# code holding the GIL, called from `sort`. Each ends with a short sleep.
PROGRAM = textwrap.dedent(
    """
    import asyncio, random, time

    DATA = [random.random() for _ in range(150_000)]
    KEPT = []

    def spin():
        end = time.perf_counter() + 0.03
        n = 0
        while time.perf_counter() < end:
            n += 1
        return n

    def sort():
        KEPT.append(sorted(DATA))

    async def main():
        for _ in range(15):
            spin()
            await asyncio.sleep(0.002)
        for _ in range(5):
            sort()
            await asyncio.sleep(0.002)

    asyncio.run(main())
    """
)

HOG = "while True: pass"


def on_one_cpu() -> None:
    """Runs the process on the first CPU it may use, with whatever else runs there."""
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def record_on_a_loaded_cpu(tmp_path: Path) -> Path:
    """Records PROGRAM on one CPU that two busy processes share with it."""
    script, trace = tmp_path / "app.py", tmp_path / "app.bin"
    script.write_text(PROGRAM)
    hogs = [subprocess.Popen([sys.executable, "-c", HOG], preexec_fn=on_one_cpu) for _ in range(2)]
    try:
        result = subprocess.run(
            [sys.executable, "-m", "aiocop", "record", "-o", str(trace), "--", str(script)],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
            preexec_fn=on_one_cpu,
        )
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert result.returncode == 0, result.stderr
    return trace


def groups_by_function(trace: Path) -> dict:
    report = report_json("--by", "function", "--top", "0", str(trace))
    assert "traces_with_wall_clock_native" not in report["loop_time"]
    return {g["key"].rsplit(":", 1)[-1]: g for g in report["loop_time"]["groups"] if ".py:" in g["key"]}


needs_affinity = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")


@needs_affinity
def test_a_sort_on_a_loaded_cpu_is_native(tmp_path: Path) -> None:
    trace = record_on_a_loaded_cpu(tmp_path)
    groups = groups_by_function(trace)
    # The sort ran C code all through its requests' waits, at a third of a CPU.
    assert "native" in groups["sort"]["via"], groups["sort"]
    assert "Native marked by the wall clock" not in analyze(str(trace)).stdout


# By the wall clock 35-40% of `spin`'s samples waited over two intervals here (the old marker). By
# CPU time, on 3.11 about half the runs still marked 0-2 of them native: samples taken with the GIL
# (the pending call late) count the loop thread's CPU time from a switch interval (100 us on 3.11)
# after the ask, but on a CPU this loaded the watchdog wakes to ask the loop thread to drop the GIL
# only after that thread's time slice, 3-4 ms of Python (the decoded waits ran 2.86 or 3.86 ms: whole
# ticks less the 0.1 ms; 3.12+ subtract the program's 5 ms interval, so passed). When the loop thread
# took a pending call's sample meanwhile (it reached a check), such a sample now shares that one's
# CPU time, taken promptly here and after the C call for a sort.
@needs_affinity
def test_pure_python_on_a_loaded_cpu_is_not_native(tmp_path: Path) -> None:
    groups = groups_by_function(record_on_a_loaded_cpu(tmp_path))
    # The loop thread waited for the CPU many times over two intervals while
    # it ran `spin`; none of that is C code.
    assert groups["spin"]["samples"] >= 15, groups
    assert groups["spin"]["via"] == ["samples"], groups["spin"]


def test_a_1_3_trace_marks_native_by_the_wall_clock_and_the_report_says_so_once() -> None:
    # A format 1.3 trace of tests/test_sample_weights.py's `sorted` program
    # (3.12): its samples carry times but no CPU times.
    old = Path(__file__).parent / "data" / "format-1.3-sorted.aiocop"
    report = analyze("--by", "function", str(old))
    assert report.returncode == 0, report.stderr
    assert report.stdout.count("Native marked by the wall clock: the trace's samples carry no CPU times") == 1
    groups = report_json("--by", "function", str(old))["loop_time"]["groups"]
    (work,) = [g for g in groups if g["key"].endswith(":work")]
    assert work["via"] == ["samples", "native"], work


def test_a_1_4_trace_written_before_cpu_times_marks_native_by_the_wall_clock_and_says_so_once() -> None:
    # Format 1.4 as first written, with task timing but before the samples' CPU times (chunk slot 5):
    # src/trace_tests.rs's GOLDEN_TRACE_1_4_WITHOUT_CPU. Told apart by the field's absence, not the version.
    old = Path(__file__).parent / "data" / "format-1.4-without-cpu-times.aiocop"
    report = analyze(str(old))
    assert report.returncode == 0, report.stderr
    assert report.stdout.count("Native marked by the wall clock: the trace's samples carry no CPU times") == 1
    data = report_json(str(old))
    assert data["traces"][0]["format_version"] == "1.4"
    assert data["loop_time"]["traces_with_wall_clock_native"] == 1
    assert data["tasks"]["traces_without_task_timing"] == 0, "its task timing is read"
