"""What differs between the supported Pythons (3.11 to 3.15), each run by `make test`."""

import asyncio
import json
import subprocess
import sys
import textwrap
import time

import pytest
from aiocop.core import python_support
from conftest import run_monitored


@pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.eager_task_factory is new in 3.12")
def test_an_eager_tasks_first_step_is_attributed_to_the_code_that_created_it(slow_tasks, tmp_path):
    target = tmp_path / "eager"

    async def eager_worker() -> None:
        target.write_text("x")  # runs inside create_task(), in the creator's slice
        await asyncio.sleep(0)

    async def creator() -> None:
        asyncio.get_running_loop().set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]
        task = asyncio.create_task(eager_worker())
        await task

    run_monitored(creator)

    event = slow_tasks.single_event_with(str(target))
    [info] = [i for i in event.blocking_events if str(target) in i["event"]]
    functions = [frame.rsplit(":", 1)[-1] for frame in info["trace"].split(" <- ")]
    assert functions.index("eager_worker") < functions.index("creator"), functions
    assert event.reason == "io_blocking"


def test_time_sleep_is_one_event_on_every_version(slow_tasks):
    async def body() -> None:
        time.sleep(0.001)

    run_monitored(body)

    [(event, info)] = slow_tasks.blocking_named("time.sleep")
    assert len(event.blocking_events) == 1
    assert event.severity_score == 50


@pytest.mark.skipif(sys.version_info < (3, 13), reason="the interpreter raises time.sleep itself from 3.13")
def test_on_3_13_the_interpreters_own_time_sleep_event_is_counted_once(slow_tasks):
    # The interpreter raises the event natively (checked in a process of its
    # own: an audit hook cannot be removed) ...
    probe = textwrap.dedent(
        """
        import sys, time
        seen = []
        sys.addaudithook(lambda event, args: seen.append(event) if event == "time.sleep" else None)
        time.sleep(0)
        print(len(seen))
        """
    )
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip() == "1"

    # ... and aiocop, which patches time.sleep on older versions, counts it once.
    async def body() -> None:
        time.sleep(0.001)
        time.sleep(0.001)

    run_monitored(body)

    [event] = {id(e): e for e, _ in slow_tasks.blocking_named("time.sleep")}.values()
    assert [i["event"] for i in event.blocking_events] == ["time.sleep(0.001)", "time.sleep(0.001)"]
    assert event.severity_score == 100


MAIN_THREAD_BUSY_LOOP = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from aiocop import _native

    async def main():
        for _ in range(20):
            end = time.perf_counter() + 0.01
            while time.perf_counter() < end:
                pass
            await asyncio.sleep(0.001)

    asyncio.run(main())
    print(json.dumps([_native.main_thread_sampling_method(), *_native.recording_sample_counts()]), file=sys.stderr)
    """
)


def test_recordings_samples_of_a_main_thread_loop_are_pending_calls_on_every_version(tmp_path):
    """3.13, 3.14 and 3.15 run a pending call queued by the watchdog at the main thread's next eval-breaker
    check by themselves; 3.11 and 3.12 once the watchdog sets the eval breaker. Samples take the GIL only when
    a pending call comes late."""
    (tmp_path / "loop.py").write_text(MAIN_THREAD_BUSY_LOOP)
    record = [sys.executable, "-m", "aiocop", "record", "-o", str(tmp_path / "t.bin"), "--", "loop.py"]
    result = subprocess.run(record, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    method, queued, sampled_by_pending_calls, sampled_with_the_gil = json.loads(result.stderr.splitlines()[-1])
    assert method == ("pending call" if sys.version_info >= (3, 13) else "pending call, eval breaker set")
    assert queued >= sampled_by_pending_calls >= 20  # 20 slices of 10 ms, each sampled after its first 2
    # A pending call not run within two intervals (a busy machine delays the loop thread) is followed by a
    # sample with the GIL, by design (sampler.rs, ask_the_loop_thread): seen 2 of ~150 on 3.14 in a full run.
    assert sampled_with_the_gil <= 0.1 * sampled_by_pending_calls, (sampled_by_pending_calls, sampled_with_the_gil)


def test_this_python_is_one_aiocop_was_tested_on_so_nothing_is_turned_off():
    assert python_support.OLDEST_SUPPORTED <= sys.version_info[:2] <= python_support.NEWEST_TESTED
    assert python_support.turned_off(sys.version_info[:2]) == []


def test_a_newer_python_than_the_tested_ones_says_once_at_import_what_is_turned_off():
    # The Python side's view of the version, the one the message is about, as a newer Python would show it.
    probe = textwrap.dedent(
        """
        import logging, sys
        logging.basicConfig(format="%(name)s %(levelname)s %(message)s")
        sys.version_info = (3, 99, 0, "final", 0)
        import aiocop, aiocop.core.recorder
        """
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "aiocop WARNING aiocop was tested up to Python 3.15, not on 3.99: turned off: recording's samples of the "
        "main thread through pending calls (they take the GIL instead)"
    ]


def test_a_free_threaded_build_is_refused_in_one_line_naming_the_build_to_use():
    assert python_support.free_threaded_refusal(False, (3, 14)) is None
    refusal = python_support.free_threaded_refusal(True, (3, 14))
    assert refusal is not None and "\n" not in refusal
    assert "free-threaded CPython (3.14t)" in refusal and "python3.14" in refusal
