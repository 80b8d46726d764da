"""What recording's stack sampling costs: CPU-heavy slices and pure steps, sampling on vs. off.

Run from the repository root, after `make build` (any of the venvs):

    .venv/bin/python bench/sampling_cost.py            # ~1 min
    .venv/bin/python bench/sampling_cost.py --quick

Each repeat runs, interleaved, fresh processes of this file in `--child`
mode, recording with sampling on (`sample_after_ms=2, sample_interval_ms=1`,
the defaults) and off (`sample_after_ms=0`):
  cpu   200 slices of fixed pure-Python work of 5 to 15 ms each (a fixed
        number of loop iterations, so that time taken from the loop thread
        shows as longer slices): the median over repeats of the mean slice
        time, and the ratio on / off (target: at most 1.02);
  pure  50,000 steps of `await asyncio.sleep(0)`: µs per step, and what
        sampling adds (target: at most 0.05 µs).
It also reports the share of the cpu slices' time that has samples.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CPU_SLICES = 200
PURE_STEPS = 50_000


def calibrate_iterations_per_ms() -> float:
    start = time.perf_counter()
    spin(200_000)
    return 200_000 / ((time.perf_counter() - start) * 1000)


def spin(iterations: int) -> int:
    total = 0
    for i in range(iterations):
        total += i & 7
    return total


async def cpu_workload(iterations: list[int]) -> float:
    durations = []
    for n in iterations:
        start = time.perf_counter()
        spin(n)
        durations.append(time.perf_counter() - start)
        await asyncio.sleep(0)
    return statistics.fmean(durations) * 1000


async def pure_workload(steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        await asyncio.sleep(0)
    return (time.perf_counter() - start) / steps * 1e6


def child(sample_after_ms: float, trace: str, iterations: list[int]) -> None:
    import aiocop

    aiocop.patch_audit_functions()
    aiocop.start_blocking_io_detection()
    aiocop.detect_slow_tasks(threshold_ms=30)
    aiocop.start_recording(trace, sample_after_ms=sample_after_ms, sample_interval_ms=1.0)

    async def main() -> dict[str, float]:
        aiocop.activate()
        await asyncio.sleep(0)
        await pure_workload(2_000)  # warm-up
        return {"cpu_ms": await cpu_workload(iterations), "pure_us": await pure_workload(PURE_STEPS)}

    result = asyncio.run(main())
    aiocop.stop_recording()
    slices = [s for s in aiocop.read_trace(trace)["slices"] if s["duration_ns"] >= 4_000_000]
    sampled = sum(s["duration_ns"] for s in slices if s["samples"]) / max(1, sum(s["duration_ns"] for s in slices))
    print(json.dumps({**result, "sampled_share": sampled}))


def run_child(sample_after_ms: float, directory: str, iterations: list[int]) -> dict[str, float]:
    trace = str(Path(directory) / f"t-{sample_after_ms}.bin")
    command = [sys.executable, __file__, "--child", str(sample_after_ms), trace, json.dumps(iterations)]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="--repeats 3")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(float(args.child[0]), args.child[1], json.loads(args.child[2]))
        return
    repeats = 3 if args.quick else args.repeats
    per_ms = calibrate_iterations_per_ms()
    # 5 to 15 ms of work each, the same for every run.
    iterations = [int(per_ms * (5 + (i * 7919) % 11)) for i in range(CPU_SLICES)]
    runs: dict[str, list[dict[str, float]]] = {"on": [], "off": []}
    with tempfile.TemporaryDirectory() as directory:
        for _ in range(repeats):
            runs["on"].append(run_child(2.0, directory, iterations))
            runs["off"].append(run_child(0.0, directory, iterations))
    median = {mode: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for mode, rs in runs.items()}
    cpu_ratio = median["on"]["cpu_ms"] / median["off"]["cpu_ms"]
    pure_added = median["on"]["pure_us"] - median["off"]["pure_us"]
    print(f"Python {sys.version.split()[0]}, {repeats} repeats, medians")
    print(f"{'':6} {'cpu slice ms':>13} {'pure step us':>13} {'cpu time sampled':>17}")
    for mode in ("off", "on"):
        m = median[mode]
        print(f"{mode:6} {m['cpu_ms']:13.3f} {m['pure_us']:13.3f} {m['sampled_share']:17.1%}")
    print(f"sampling: cpu slices x{cpu_ratio:.3f} (target <= 1.02), pure step {pure_added:+.3f} us (target <= 0.05)")


if __name__ == "__main__":
    main()
