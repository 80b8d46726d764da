"""What differs between the supported Pythons (3.11, 3.12, 3.13), each run by `make test`."""

import asyncio
import subprocess
import sys
import textwrap
import time

import pytest
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
