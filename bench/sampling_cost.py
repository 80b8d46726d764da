"""What recording's stack sampling costs: CPU-heavy slices and pure steps, sampling on vs. off.

Run from the repository root, after `make build` (any of the venvs):

    .venv/bin/python bench/sampling_cost.py                # wall clock, ~2 min
    .venv/bin/python bench/sampling_cost.py --callgrind    # instructions, ~8 min (needs valgrind)
    .venv/bin/python bench/sampling_cost.py --callgrind --sample-frames read   # samples read by the watchdog

The wall-clock mode runs 5 processes (`--repeats`), each recording 6 rounds
with sampling on (`sample_after_ms=2, sample_interval_ms=1`, the defaults)
and 6 off (`sample_after_ms=0`), alternating, since a process's speed alone
differs from another's by far more than the target:
  cpu   100 slices of fixed pure-Python work of 5 to 15 ms each (a fixed
        number of loop iterations, so that time taken from the loop thread
        shows as longer slices): the mean slice time, wall clock and the
        loop thread's CPU time, and the ratio on / off (target: at most
        1.02), per process and the median over processes;
  pure  50,000 steps of `await asyncio.sleep(0)`: µs per step, and what
        sampling adds (target: at most 0.05 µs).
It also reports the share of the cpu slices' time that has samples.

Wall clock on these small shared machines moves by more than the target
whenever anything else runs, so `--callgrind` counts instead the loop
thread's instructions (valgrind's callgrind, runs of 10 and 30 cpu slices
and of 2,000 and 6,000 pure steps, the difference of the two cancelling
start-up and shutdown): the instructions one sample costs, and what that
makes at one sample per millisecond of native speed (the instructions of a
native millisecond of the same work, from this machine's calibration).
Under valgrind a program runs ~50x slower, so a slice gets ~50x more samples
per unit of work; the count per sample is what carries over. It does not see
time the loop thread spends waiting (a GIL hand-off), only work.

With `--sample-frames read` the samples are read from the loop thread's
frames by the watchdog thread: a sample then costs the loop thread nothing
but recording it, and the watchdog `read_sample` (inclusive, over every
thread's profile; callgrind counts the instructions around each
process_vm_readv, not the kernel's copy).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from instructions import in_aiocop

CPU_SLICES = 200
PURE_STEPS = 50_000
# Rounds per mode in each process of the wall-clock mode.
ROUNDS = 6
CALLGRIND_SLICES = (10, 30)
CALLGRIND_STEPS = (2_000, 6_000)
# How the samples are taken (the recording setting; --sample-frames sets it for the children).
SAMPLE_FRAMES = os.environ.get("AIOCOP_SAMPLE_FRAMES", "pending")


def calibrate_iterations_per_ms() -> float:
    """Iterations of `spin` per millisecond of this thread's CPU time (so that other work on the machine,
    which takes the CPU away, does not count)."""
    start = time.thread_time()
    spin(1_000_000)
    return 1_000_000 / ((time.thread_time() - start) * 1000)


def spin(iterations: int) -> int:
    total = 0
    for i in range(iterations):
        total += i & 7
    return total


async def cpu_workload(iterations: list[int]) -> dict[str, float]:
    """Mean wall-clock and loop-thread CPU ms per slice."""
    wall, cpu = [], []
    for n in iterations:
        start, start_cpu = time.perf_counter(), time.thread_time()
        spin(n)
        wall.append(time.perf_counter() - start)
        cpu.append(time.thread_time() - start_cpu)
        await asyncio.sleep(0)
    return {"cpu_ms": statistics.fmean(wall) * 1000, "cpu_thread_ms": statistics.fmean(cpu) * 1000}


async def pure_workload(steps: int, clock: Callable[[], float] = time.perf_counter) -> float:
    start = clock()
    for _ in range(steps):
        await asyncio.sleep(0)
    return (clock() - start) / steps * 1e6


def start_monitoring() -> None:
    """The default monitor, as both modes run it."""
    import aiocop

    aiocop.patch_audit_functions()
    aiocop.start_blocking_io_detection()
    aiocop.detect_slow_tasks(threshold_ms=30)


def sampled_share(slices: list[dict]) -> float:
    """The share of the time in slices of 4 ms or more that has a sample."""
    long_slices = [s for s in slices if s["duration_ns"] >= 4_000_000]
    sampled = sum(s["duration_ns"] for s in long_slices if s["samples"])
    return sampled / max(1, sum(s["duration_ns"] for s in long_slices))


def child(sample_after_ms: float, trace: str, iterations: list[int], pure_steps: int) -> None:
    import aiocop

    start_monitoring()
    aiocop.start_recording(trace, sample_after_ms=sample_after_ms, sample_interval_ms=1.0, sample_frames=SAMPLE_FRAMES)

    async def main() -> dict[str, float]:
        aiocop.activate()
        await asyncio.sleep(0)
        await pure_workload(2_000)  # warm-up
        result = await cpu_workload(iterations) if iterations else {}
        return {**result, "pure_us": await pure_workload(pure_steps)} if pure_steps else result

    result = asyncio.run(main())
    aiocop.stop_recording()
    slices = aiocop.read_trace(trace)["slices"]
    samples = sum(len(s["samples"]) for s in slices)
    _, by_pending_call, with_the_gil = aiocop._native.recording_sample_counts()
    frames = aiocop._native.frame_read_counts()
    counts = {"samples": samples, "by_pending_call": by_pending_call, "with_the_gil": with_the_gil}
    counts |= {"read": frames["read"], "read_fell_back": frames["fell_back"]}
    print(json.dumps({**result, "sampled_share": sampled_share(slices), **counts}))


def child_command(sample_after_ms: float, trace: str, iterations: list[int], pure_steps: int) -> list[str]:
    return [sys.executable, __file__, "--child", str(sample_after_ms), trace, json.dumps(iterations), str(pure_steps)]


def workload_iterations(per_ms: float, count: int) -> list[int]:
    """5 to 15 ms of work each, the same for every run."""
    return [int(per_ms * (5 + (i * 7919) % 11)) for i in range(count)]


def alternating_child(directory: str, iterations: list[int]) -> None:
    """Records ROUNDS times with sampling on and ROUNDS times off, alternating in one process (a process's
    speed alone moves from one process to the next by up to 60% on these VMs, in two modes: only runs in one
    process compare), and prints each mode's per-round cpu slice means and pure step times."""
    import aiocop

    start_monitoring()
    rounds: dict[str, list[dict[str, float]]] = {"on": [], "off": []}

    async def one_round(mode: str, index: int) -> None:
        trace = str(Path(directory) / f"{mode}-{index}.bin")
        aiocop.start_recording(trace, sample_after_ms=2.0 if mode == "on" else 0.0, sample_interval_ms=1.0)
        await pure_workload(2_000)  # warm-up
        result = {**await cpu_workload(iterations), "pure_us": await pure_workload(PURE_STEPS)}
        aiocop.stop_recording()
        rounds[mode].append({**result, "sampled_share": sampled_share(aiocop.read_trace(trace)["slices"])})

    async def main() -> None:
        aiocop.activate()
        for index in range(ROUNDS):
            for mode in ("on", "off") if index % 2 else ("off", "on"):
                await one_round(mode, index)

    asyncio.run(main())
    print(json.dumps(rounds))


def wall_clock(repeats: int) -> None:
    iterations = workload_iterations(calibrate_iterations_per_ms(), CPU_SLICES // 2)
    # Each process's medians per mode; what sampling does is compared within a process.
    processes: list[dict[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as directory:
        for _ in range(repeats):
            command = [sys.executable, __file__, "--alternating", directory, json.dumps(iterations)]
            rounds = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
            processes.append(
                {mode: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for mode, rs in rounds.items()}
            )
    ratios = {key: [p["on"][key] / p["off"][key] for p in processes] for key in ("cpu_ms", "cpu_thread_ms")}
    ratios["pure_us"] = [p["on"]["pure_us"] - p["off"]["pure_us"] for p in processes]
    print(f"Python {sys.version.split()[0]}, {repeats} processes of {ROUNDS} rounds per mode, medians")
    print(f"{'':6} {'cpu slice ms':>13} {'(thread cpu)':>13} {'pure step us':>13} {'cpu time sampled':>17}")
    for mode in ("off", "on"):
        m = {key: statistics.median(p[mode][key] for p in processes) for key in processes[0][mode]}
        print(
            f"{mode:6} {m['cpu_ms']:13.3f} {m['cpu_thread_ms']:13.3f} {m['pure_us']:13.3f} {m['sampled_share']:17.1%}"
        )
    per_process = ", ".join(f"x{ratio:.3f}" for ratio in ratios["cpu_ms"])
    print(
        f"sampling: cpu slices x{statistics.median(ratios['cpu_ms']):.3f} wall (per process: {per_process}), "
        f"x{statistics.median(ratios['cpu_thread_ms']):.3f} loop-thread CPU (target <= 1.02); "
        f"pure step {statistics.median(ratios['pure_us']):+.3f} us (target <= 0.05)"
    )


def inclusive_instructions(callgrind_out: str, function: str) -> int:
    """Instructions spent in `function` and what it called, in one thread's profile."""
    listing = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", callgrind_out],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    pattern = rf"^\s*([\d,]+) \([^)]*\)\s+\S*:{re.escape(function)} "
    return sum(int(match.group(1).replace(",", "")) for match in re.finditer(pattern, listing, re.MULTILINE))


def loop_thread_instructions(command: list[str], out_dir: str, name: str) -> tuple[int, dict[str, float]]:
    """The loop thread's instructions of one run under callgrind, and the child's result (with, for
    samples taken by pending calls, the instructions the interpreter's make_pending_calls took)."""
    prefix = os.path.join(out_dir, name)
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    valgrind = ["setarch", "-R", "valgrind", "--tool=callgrind", "--separate-threads=yes"]
    run = subprocess.run(
        [*valgrind, f"--callgrind-out-file={prefix}", *command], capture_output=True, text=True, env=env
    )
    if run.returncode != 0:
        raise SystemExit(f"sampling_cost: {name} under callgrind exited {run.returncode}:\n{run.stderr[-3000:]}")
    main_thread = Path(f"{prefix}-01").read_text(errors="replace")
    match = re.search(r"^totals: (\d+)", main_thread, re.MULTILINE)
    assert match, f"no totals in {prefix}-01"
    result = json.loads(run.stdout.strip().splitlines()[-1])
    result["pending_call_instructions"] = inclusive_instructions(f"{prefix}-01", "make_pending_calls")
    result["in_aiocop"] = in_aiocop(Path(f"{prefix}-01"))
    threads = sorted(Path(out_dir).glob(f"{name}-*"))
    result["read_instructions"] = sum(inclusive_instructions(str(thread), "read_sample") for thread in threads)
    return int(match.group(1)), result


def callgrind() -> None:
    per_ms = calibrate_iterations_per_ms()
    pure_us = statistics.median(asyncio.run(pure_workload(20_000, time.thread_time)) for _ in range(3))
    counts: dict[tuple[str, str, int], tuple[int, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as out_dir:
        trace = str(Path(out_dir) / "t.bin")
        for mode, after in (("off", 0.0), ("on", 2.0)):
            for n in CALLGRIND_SLICES:
                command = child_command(after, trace, workload_iterations(per_ms, n), 0)
                print(f"{mode}: {n} cpu slices ...", file=sys.stderr, flush=True)
                counts[mode, "cpu", n] = loop_thread_instructions(command, out_dir, f"{mode}.cpu.{n}")
            for n in CALLGRIND_STEPS:
                print(f"{mode}: {n} pure steps ...", file=sys.stderr, flush=True)
                command = child_command(after, trace, [], n)
                counts[mode, "pure", n] = loop_thread_instructions(command, out_dir, f"{mode}.pure.{n}")

    def added(mode: str, workload: str, sizes: tuple[int, int]) -> tuple[int, float]:
        """Instructions and samples of the larger run minus the smaller."""
        (small, small_result), (large, large_result) = (counts[mode, workload, n] for n in sizes)
        return large - small, large_result["samples"] - small_result["samples"]

    def in_aiocop_of(mode: str, workload: str, sizes: tuple[int, int]) -> float:
        """Instructions in aiocop's native module of the larger run minus the smaller."""
        small, large = (counts[mode, workload, n][1]["in_aiocop"] for n in sizes)
        return large - small

    off_cpu, _ = added("off", "cpu", CALLGRIND_SLICES)
    on_cpu, on_samples = added("on", "cpu", CALLGRIND_SLICES)
    extra_ms = sum(workload_iterations(per_ms, CALLGRIND_SLICES[1])[CALLGRIND_SLICES[0] :]) / per_ms
    per_native_ms = off_cpu / extra_ms
    per_sample = (on_cpu - off_cpu) / max(1, on_samples)
    large = counts["on", "cpu", CALLGRIND_SLICES[1]][1]
    pending_per_sample = large["pending_call_instructions"] / max(1, large["by_pending_call"])
    steps = CALLGRIND_STEPS[1] - CALLGRIND_STEPS[0]
    off_pure, _ = added("off", "pure", CALLGRIND_STEPS)
    on_pure, _ = added("on", "pure", CALLGRIND_STEPS)
    pure_added = (on_pure - off_pure) / steps
    in_aiocop_added = {mode: in_aiocop_of(mode, "pure", CALLGRIND_STEPS) for mode in ("off", "on")}
    pure_added_in_aiocop = (in_aiocop_added["on"] - in_aiocop_added["off"]) / steps
    ns_per_instruction = pure_us * 1000 / (off_pure / steps)
    print(f"Python {sys.version.split()[0]}, callgrind, loop thread")
    print(f"cpu: {per_native_ms:,.0f} instructions per native ms of work; {on_samples:.0f} samples under valgrind")
    print(
        f"  {large['by_pending_call']} samples by pending call, {large['with_the_gil']} with the GIL; "
        f"a pending call's sample costs {pending_per_sample:,.0f} instructions (make_pending_calls, inclusive): "
        f"at 1 per ms, x{1 + pending_per_sample / per_native_ms:.4f} (target <= 1.02)"
    )
    if large["read"]:
        reads = large["read"] + large["read_fell_back"]
        print(
            f"  {large['read']} samples read by the watchdog ({large['read_fell_back']} reads fell back): "
            f"{large['read_instructions'] / max(1, reads):,.0f} instructions per read (read_sample, inclusive)"
        )
    print(
        f"  the whole loop thread, on - off: {per_sample:+,.0f} instructions per sample, "
        f"x{1 + per_sample / per_native_ms:.4f} at 1 per ms (this difference has a noise of ~10,000 per sample)"
    )
    print(
        f"pure: {off_pure / steps:,.0f} instructions per step off; on, {pure_added_in_aiocop:+,.1f} in aiocop's code "
        f"(~{pure_added_in_aiocop * ns_per_instruction / 1000:+.4f} us at {pure_us:.3f} us per step; target <= 0.05), "
        f"{pure_added:+,.0f} on the whole loop thread (a noise of a few hundred)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="processes, each comparing both modes")
    parser.add_argument("--quick", action="store_true", help="--repeats 2")
    parser.add_argument("--callgrind", action="store_true", help="count instructions instead of timing")
    parser.add_argument(
        "--sample-frames", choices=("pending", "read", "validate"), help="how samples are taken (default: pending)"
    )
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--alternating", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sample_frames:
        os.environ["AIOCOP_SAMPLE_FRAMES"] = args.sample_frames  # for the children
    if args.alternating:
        alternating_child(args.alternating[0], json.loads(args.alternating[1]))
    elif args.child:
        child(float(args.child[0]), args.child[1], json.loads(args.child[2]), int(args.child[3]))
    elif args.callgrind:
        callgrind()
    else:
        wall_clock(2 if args.quick else args.repeats)


if __name__ == "__main__":
    main()
