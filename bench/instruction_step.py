"""One workload for bench/instructions.py: python instruction_step.py MODE WORKLOAD STEPS.

MODE: none (no monitor), monitor (aiocop's default setup; works with aiocop 1.2.1 too), record (monitor,
and recording to a temporary trace). WORKLOAD: pure (`await asyncio.sleep(0)`), open+read (open and
read a 1 KB file, then sleep(0)), tasks (100 tasks taking pure steps in turn, as a server's
connections do) or callbacks (a method that schedules itself again with call_soon, as a protocol's
callbacks run: no task). 3,000 warm-up steps, then STEPS measured ones.
"""

import asyncio
import os
import sys
import tempfile

mode, workload, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
WARMUP_STEPS = 3000
tmp = tempfile.mkdtemp()
path = os.path.join(tmp, "catalog.json")
with open(path, "w") as f:
    f.write("x" * 1000)

if mode != "none":
    import aiocop

    aiocop.patch_audit_functions()
    aiocop.start_blocking_io_detection(trace_depth=20)
    aiocop.detect_slow_tasks(threshold_ms=30, on_slow_task=lambda event: None)


async def pure(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def open_read(n: int) -> None:
    for _ in range(n):
        with open(path, "rb") as f:
            f.read()
        await asyncio.sleep(0)


async def tasks(n: int) -> None:
    await asyncio.gather(*(pure(n // TASKS) for _ in range(TASKS)))


TASKS = 100


class Ticker:
    def __init__(self, steps: int) -> None:
        self.loop = asyncio.get_running_loop()
        self.left = steps
        self.done = self.loop.create_future()

    def tick(self) -> None:
        self.left -= 1
        if self.left > 0:
            self.loop.call_soon(self.tick)
        else:
            self.done.set_result(None)


async def callbacks(n: int) -> None:
    ticker = Ticker(n)
    ticker.loop.call_soon(ticker.tick)
    await ticker.done


async def main() -> None:
    run = {"pure": pure, "open+read": open_read, "tasks": tasks, "callbacks": callbacks}[workload]
    if mode != "none":
        aiocop.activate()
    if mode == "record":
        # Started before the warm-up, so that the measured steps see the recorder's steady state.
        aiocop.start_recording(os.path.join(tmp, "trace.bin"), flush_interval_s=60)
    await run(WARMUP_STEPS)
    await run(steps)
    if mode == "record":
        summary = aiocop.stop_recording()
        assert summary["slices"] >= steps and summary["dropped"] == 0, summary


asyncio.run(main())
