"""Per-step cost in instructions (valgrind's callgrind), side by side: no monitor, this aiocop
(monitoring only, and monitoring while recording), and aiocop 1.2.1 from PyPI.

Run from the repository root, after `make build` (needs valgrind; about 6 minutes on 2 cores):

    .venv/bin/python bench/instructions.py

Wall-clock timings on small shared machines drift by 10-20 % between runs; instruction counts drift much
less. A measurement runs `instruction_step.py` under callgrind twice, with 2,000 and 6,000 measured steps
after the same warm-up, and divides the difference by 4,000: the instructions one step costs on the loop's
thread, start-up and shutdown cancelled out. A fixed hash seed and no address randomisation keep repeated
runs within about 30 instructions without recording; with it, the writer thread (which valgrind runs in
turns with the loop's) makes the loop thread's count vary by about 150, so each cell is the median of 3
measurements (`--repeats`). The last column counts what recording adds on all threads, the writer's
encoding and compression included.

Printed (markdown): per workload, instructions per step of each mode; the monitor's overhead (monitor -
none); what recording adds (recording - monitor) and its ratio to the monitor's overhead (target <=
0.30); (monitor + recording) overhead as a fraction of aiocop 1.2.1's (target < 0.10); and what
recording adds on all threads.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from run import ensure_ref_python

STEP_PY = Path(__file__).resolve().parent / "instruction_step.py"
WORKLOADS = ["pure", "open+read", "tasks"]
STEPS = (2000, 6000)


def instructions(python: str, mode: str, workload: str, steps: int, out_dir: str) -> tuple[int, int]:
    """(loop thread, all threads) instructions of one callgrind run."""
    prefix = os.path.join(out_dir, f"{mode}.{workload}.{steps}")
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    command = ["setarch", "-R", "valgrind", "--tool=callgrind", "--separate-threads=yes"]
    command += [f"--callgrind-out-file={prefix}", python, "-I", str(STEP_PY), mode, workload, str(steps)]
    subprocess.run(command, check=True, capture_output=True, env=env)
    totals = {}
    for path in Path(out_dir).glob(f"{Path(prefix).name}-*"):
        match = re.search(r"^totals: (\d+)", path.read_text(errors="replace"), re.MULTILINE)
        totals[path.name] = int(match.group(1)) if match else 0
    main = next(count for name, count in totals.items() if name.endswith("-01"))
    return main, sum(totals.values())


def per_step(python: str, mode: str, workload: str, out_dir: str) -> tuple[float, float]:
    """Instructions per step (loop thread, all threads)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        short, long = pool.map(lambda n: instructions(python, mode, workload, n, out_dir), STEPS)
    steps = STEPS[1] - STEPS[0]
    return (long[0] - short[0]) / steps, (long[1] - short[1]) / steps


def median_per_step(python: str, mode: str, workload: str, out_dir: str, repeats: int) -> tuple[float, float]:
    """The median of `repeats` measurements: with the recorder's writer thread, which valgrind runs in
    turns with the loop's, the loop thread's count varies by about 150 instructions from run to run."""
    runs = [per_step(python, mode, workload, out_dir) for _ in range(repeats)]
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref-python", help="an interpreter with aiocop 1.2.1 (default: bench/.venv-aiocop121)")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per cell, of which the median")
    args = parser.parse_args()
    ours = sys.executable
    reference = args.ref_python or ensure_ref_python("asyncio")
    modes = [("none", ours, "none"), ("monitor", ours, "monitor"), ("recording", ours, "record")]
    modes.append(("aiocop 1.2.1", reference, "monitor"))
    print(
        "| workload | none | monitor | recording | aiocop 1.2.1 | monitor overhead | recording adds "
        "| recording / monitor (<= 0.30) | (monitor + recording) / 1.2.1 (< 0.10) | recording adds, all threads |"
    )
    print("|:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    with tempfile.TemporaryDirectory() as out_dir:
        for workload in WORKLOADS:
            cost, all_threads = {}, {}
            for name, python, mode in modes:
                print(f"{workload}: {name} ...", file=sys.stderr, flush=True)
                cost[name], all_threads[name] = median_per_step(python, mode, workload, out_dir, args.repeats)
            monitor = cost["monitor"] - cost["none"]
            recording = cost["recording"] - cost["monitor"]
            reference_overhead = cost["aiocop 1.2.1"] - cost["none"]
            cells = [f"{cost[name]:,.0f}" for name, _, _ in modes]
            cells += [f"{monitor:,.0f}", f"{recording:,.0f}", f"{recording / monitor:.2f}"]
            cells.append(f"{(monitor + recording) / reference_overhead:.3f}")
            cells.append(f"{all_threads['recording'] - all_threads['monitor']:,.0f}")
            print(f"| {workload} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
