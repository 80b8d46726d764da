"""Benchmark workloads, run once per measurement in a fresh subprocess by bench/run.py.

    python -I bench/workloads.py [--monitor] [--loop asyncio|uvloop] [--steps N] [--warmup N]

Every workload is a coroutine that runs N *steps*; a step is one trip through the
event loop (it ends with ``await asyncio.sleep(0)``), i.e. exactly one callback
that aiocop's patched loop wraps and monitors.

With --monitor, aiocop (whichever one this interpreter imports) is set up the
default way -- patch_audit_functions(), start_blocking_io_detection(trace_depth=20),
detect_slow_tasks(threshold_ms=30, on_slow_task=<callback>) with CPU sampling on --
and activate()d inside the running loop. The callback only counts its calls, so the
driver can check that both implementations see the same blocking events.

Prints one JSON object on stdout: {"meta": {...}, "results": {workload: {...}}}.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

Workload = Callable[[int, str], Awaitable[None]]

# Steps per workload = --steps * scale: the pure step is ~30x cheaper than the others,
# so it gets more of them to reach a comparable timing window.
STEP_SCALE: dict[str, int] = {"pure": 5, "stat": 1, "open+read": 1, "handler": 1, "tasks": 5, "callbacks": 5}

# With --record: the flush interval, short so that the recorder reaches its steady state within the warm-up.
RECORD_FLUSH_S = 0.1

# Tasks of the `tasks` workload, each taking pure steps in turn, as a server's connections do.
TASKS = 100

REQUEST_BODY = json.dumps(
    {
        "user_id": 42,
        "items": [{"sku": "a-1", "qty": 2, "price": 9.5}, {"sku": "b-2", "qty": 1, "price": 20.0}],
        "coupon": "SPRING",
        "note": "leave at the door",
    }
)


async def pure(steps: int, path: str) -> None:
    for _ in range(steps):
        await asyncio.sleep(0)


async def stat(steps: int, path: str) -> None:
    for _ in range(steps):
        os.stat(path)
        await asyncio.sleep(0)


async def open_read(steps: int, path: str) -> None:
    for _ in range(steps):
        with open(path, "rb") as f:
            f.read()
        await asyncio.sleep(0)


def _subtotal(items: list[dict[str, Any]]) -> float:
    return sum(item["qty"] * item["price"] for item in items)


def _discount(coupon: str | None, amount: float) -> float:
    return round(amount * 0.1, 2) if coupon else 0.0


async def handler(steps: int, path: str) -> None:
    for _ in range(steps):
        request = json.loads(REQUEST_BODY)
        subtotal = _subtotal(request["items"])
        response = {
            "user_id": request["user_id"],
            "n_items": len(request["items"]),
            "subtotal": subtotal,
            "discount": _discount(request.get("coupon"), subtotal),
            "catalog_mtime": os.stat(path).st_mtime,
        }
        json.dumps(response)
        await asyncio.sleep(0)


async def tasks(steps: int, path: str) -> None:
    await asyncio.gather(*(pure(steps // TASKS, path) for _ in range(TASKS)))


class Ticker:
    """A method that schedules itself again with call_soon, as a protocol's callbacks run: no task."""

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


async def callbacks(steps: int, path: str) -> None:
    ticker = Ticker(steps)
    ticker.loop.call_soon(ticker.tick)
    await ticker.done


WORKLOADS: dict[str, Workload] = {
    "pure": pure,
    "stat": stat,
    "open+read": open_read,
    "handler": handler,
    "tasks": tasks,
    "callbacks": callbacks,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--monitor", action="store_true", help="set up and activate aiocop")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument("--steps", type=int, default=20_000, help="base steps per workload (see STEP_SCALE)")
    parser.add_argument("--warmup", type=int, default=2_000, help="untimed steps per workload before timing")
    parser.add_argument("--workloads", nargs="+", choices=list(WORKLOADS), default=list(WORKLOADS))
    parser.add_argument("--callback", choices=["count", "read"], default="count")
    parser.add_argument("--record", metavar="DIR", help="with --monitor: record each workload to DIR/<name>.bin")
    args = parser.parse_args()

    slow_task_calls = 0
    text_read = 0

    def on_slow_task(event: Any) -> None:
        nonlocal slow_task_calls, text_read
        slow_task_calls += 1
        if args.callback == "read":
            # What a logging callback does: every event's strings are used.
            for info in event.blocking_events:
                text_read += len(info["event"]) + len(info["trace"]) + len(info["entry_point"])

    meta: dict[str, Any] = {"python": sys.version, "executable": sys.executable, "loop": args.loop}
    if args.monitor:
        import aiocop

        aiocop.patch_audit_functions()
        aiocop.start_blocking_io_detection(trace_depth=20)
        aiocop.detect_slow_tasks(threshold_ms=30, on_slow_task=on_slow_task)
        meta |= {"aiocop_version": aiocop.__version__, "aiocop_file": aiocop.__file__}

    loop_factory = None
    if args.loop == "uvloop":
        import uvloop

        loop_factory = uvloop.new_event_loop
        meta["uvloop_version"] = uvloop.__version__

    results: dict[str, dict[str, float | int]] = {}

    async def run_all(path: str) -> None:
        nonlocal slow_task_calls
        if args.monitor:
            aiocop.activate()  # patches the running loop
        for name in args.workloads:
            workload, steps = WORKLOADS[name], args.steps * STEP_SCALE[name]
            warmup_steps = args.warmup * STEP_SCALE[name]
            if args.record:
                recording_started = time.perf_counter_ns()
                aiocop.start_recording(os.path.join(args.record, f"{name}.bin"), flush_interval_s=RECORD_FLUSH_S)
                # The steady state: the recorder's buffers are first written in its first flush intervals,
                # a one-time cost (page faults) that the warm-up takes.
                while time.perf_counter_ns() - recording_started < 3 * RECORD_FLUSH_S * 1e9:
                    await workload(warmup_steps, path)
            await workload(warmup_steps, path)
            gc.collect()
            slow_task_calls = 0
            t0 = time.perf_counter_ns()
            await workload(steps, path)
            elapsed = time.perf_counter_ns() - t0
            results[name] = {"steps": steps, "ns_per_step": elapsed / steps, "events_per_step": slow_task_calls / steps}
            if args.record:
                summary = aiocop.stop_recording()
                results[name] |= {"recording": summary, "recording_ns": time.perf_counter_ns() - recording_started}
                results[name] |= await writer_alone(workload, steps, path, args.record)

    async def writer_alone(workload: Workload, steps: int, path: str, record_dir: str) -> dict[str, float]:
        """Slices per second the writer encodes, compresses and writes: a buffer of `steps` slices, all written
        by stop_recording() (the flush interval is longer than the run)."""
        aiocop.start_recording(os.path.join(record_dir, "drain.bin"), flush_interval_s=60)
        await workload(steps, path)
        t0 = time.perf_counter_ns()
        summary = aiocop.stop_recording()
        return {"drain_slices_per_s": summary["slices"] / ((time.perf_counter_ns() - t0) / 1e9)}

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "catalog.json")
        with open(path, "w") as f:
            f.write(REQUEST_BODY * 8)  # ~1 KiB
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(run_all(path))

    json.dump({"meta": meta, "results": results}, sys.stdout)


if __name__ == "__main__":
    main()
