"""Per-step cost in instructions (valgrind's callgrind), side by side: no monitor, this aiocop
(monitoring only, and monitoring while recording), and aiocop 1.2.1 from PyPI.

Run from the repository root, after `make build` (needs valgrind; about 8 minutes on 2 cores):

    .venv/bin/python bench/instructions.py

Wall-clock timings on small shared machines drift by 10-20 % between runs; instruction counts drift much
less. A measurement runs `instruction_step.py` under callgrind twice, with 2,000 and 6,000 measured steps
after the same warm-up, and divides the difference by 4,000: the instructions one step costs on the loop's
thread, start-up and shutdown cancelled out. No address randomisation and a fixed hash seed make a
measurement repeatable; each cell is the median of 3 (`--repeats`), with hash seeds 0, 1 and 2.

Two things still move the loop thread's count by up to about 100 instructions a step: the writer thread,
which valgrind runs in turns with the loop's, and the interpreter's own dictionaries, laid out by the hash
seed and a little differently in each mode (CPython probes them a few times more or less per step): hence
the median over seeds. What recording adds is also counted inside aiocop's native module alone (with the
dynamic linker's thread-local look-ups it calls), which neither moves: that count is what the target
compares.

With --iteration-timing [PYTHON ...], prints instead what timing loop iterations (exact stalls) adds to
recording, for each interpreter given (default: this one; give two builds to compare them in one run):
recording started before the loop is made, as `python -m aiocop record` does (each poll of the loop's
selector is timed), against recording started inside the running loop (not timed), on the loop's thread and
on all threads (the writer's encoding and compression of the polls included).

Printed (markdown): per workload, instructions per step of each mode; the monitor's overhead (monitor -
none); what recording adds (recording - monitor), on the whole loop thread and in aiocop's code, and the
latter's ratio to the monitor's overhead (target <= 0.30); (monitor + recording) overhead as a fraction
of aiocop 1.2.1's (target < 0.10); and what recording adds on all threads, the writer's encoding and
compression included.
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
from typing import NamedTuple

from run import ensure_ref_python

STEP_PY = Path(__file__).resolve().parent / "instruction_step.py"
WORKLOADS = ["pure", "open+read", "tasks", "callbacks"]
STEPS = (2000, 6000)


class Count(NamedTuple):
    """Instructions of a run, or per step: on the loop's thread, on all threads, and on the loop's thread in
    aiocop's native module (with the dynamic linker's thread-local look-ups it calls)."""

    loop: float
    all_threads: float
    in_aiocop: float


def in_aiocop(callgrind_out: Path) -> int:
    """Instructions of one thread's profile spent in aiocop's native module."""
    listing = subprocess.run(
        ["callgrind_annotate", "--threshold=100", str(callgrind_out)], check=True, capture_output=True, text=True
    ).stdout
    total = 0
    for match in re.finditer(r"^\s*([\d,]+) \([^)]*\)\s+(\S.*)$", listing, re.MULTILINE):
        count, where = int(match.group(1).replace(",", "")), match.group(2)
        if "/aiocop/_native" in where or "__tls_get_addr" in where:
            total += count
    return total


def instructions(python: str, mode: str, workload: str, steps: int, seed: int, out_dir: str) -> Count:
    """The instructions of one callgrind run."""
    prefix = os.path.join(out_dir, f"{mode}.{workload}.{steps}")
    env = {**os.environ, "PYTHONHASHSEED": str(seed)}
    command = ["setarch", "-R", "valgrind", "--tool=callgrind", "--separate-threads=yes"]
    command += [f"--callgrind-out-file={prefix}", python, "-I", str(STEP_PY), mode, workload, str(steps)]
    run = subprocess.run(command, capture_output=True, text=True, env=env)
    if run.returncode != 0:
        # Say which run failed and why (its Python traceback, not valgrind's banner).
        said = [line for line in run.stderr.splitlines() if not line.startswith("==")]
        which = f"{python} {mode} {workload} {steps} (hash seed {seed})"
        sys.exit(f"instructions: {which} failed: " + "\n".join(said[-15:]))
    totals = {}
    for path in Path(out_dir).glob(f"{Path(prefix).name}-*"):
        match = re.search(r"^totals: (\d+)", path.read_text(errors="replace"), re.MULTILINE)
        totals[path] = int(match.group(1)) if match else 0
    main = next(path for path in totals if path.name.endswith("-01"))
    return Count(totals[main], sum(totals.values()), in_aiocop(main))


def per_step(python: str, mode: str, workload: str, seed: int, out_dir: str) -> Count:
    """Instructions per step."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        short, long = pool.map(lambda n: instructions(python, mode, workload, n, seed, out_dir), STEPS)
    steps = STEPS[1] - STEPS[0]
    return Count(*((b - a) / steps for a, b in zip(short, long, strict=True)))


def median_per_step(python: str, mode: str, workload: str, out_dir: str, repeats: int) -> Count:
    """The median of `repeats` measurements, each with another hash seed: the interpreter's dictionaries are
    laid out by it, which moves a step's count by up to about 100 instructions, one way or the other."""
    runs = [per_step(python, mode, workload, seed, out_dir) for seed in range(repeats)]
    return Count(*(statistics.median(values) for values in zip(*runs, strict=True)))


def iteration_timing(pythons: list[str], workloads: list[str], repeats: int) -> None:
    """Prints what timing loop iterations adds to recording, per interpreter and workload."""
    print(
        "| interpreter | workload | recording | recording, iterations timed | adds on the loop thread "
        "| adds on all threads |"
    )
    print("|:--|:--|--:|--:|--:|--:|")
    with tempfile.TemporaryDirectory() as out_dir:
        for python in pythons:
            for workload in workloads:
                cost = {}
                for mode in ("record", "record-iterations"):
                    print(f"{python} {workload}: {mode} ...", file=sys.stderr, flush=True)
                    cost[mode] = median_per_step(python, mode, workload, out_dir, repeats)
                plain, timed = cost["record"], cost["record-iterations"]
                cells = [python, workload, f"{plain.loop:,.0f}", f"{timed.loop:,.0f}"]
                cells += [f"{timed.loop - plain.loop:,.0f}", f"{timed.all_threads - plain.all_threads:,.0f}"]
                print("| " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref-python", help="an interpreter with aiocop 1.2.1 (default: bench/.venv-aiocop121)")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per cell, of which the median")
    parser.add_argument(
        "--iteration-timing",
        nargs="*",
        metavar="PYTHON",
        help="instead, what timing loop iterations adds to recording, with each interpreter (default: this one)",
    )
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS, help="for --iteration-timing (default: pure)")
    args = parser.parse_args()
    if args.iteration_timing is not None:
        iteration_timing(args.iteration_timing or [sys.executable], args.workloads or ["pure"], args.repeats)
        return
    ours = sys.executable
    reference = args.ref_python or ensure_ref_python("asyncio")
    modes = [("none", ours, "none"), ("monitor", ours, "monitor"), ("recording", ours, "record")]
    modes.append(("aiocop 1.2.1", reference, "monitor"))
    print(
        "| workload | none | monitor | recording | aiocop 1.2.1 | monitor overhead | recording adds "
        "| recording adds in aiocop's code | that / monitor overhead (<= 0.30) "
        "| (monitor + recording) / 1.2.1 (< 0.10) | recording adds, all threads |"
    )
    print("|:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    with tempfile.TemporaryDirectory() as out_dir:
        for workload in WORKLOADS:
            cost = {}
            for name, python, mode in modes:
                print(f"{workload}: {name} ...", file=sys.stderr, flush=True)
                cost[name] = median_per_step(python, mode, workload, out_dir, args.repeats)
            monitor = cost["monitor"].loop - cost["none"].loop
            recording = cost["recording"].loop - cost["monitor"].loop
            recording_in_aiocop = cost["recording"].in_aiocop - cost["monitor"].in_aiocop
            reference_overhead = cost["aiocop 1.2.1"].loop - cost["none"].loop
            cells = [f"{cost[name].loop:,.0f}" for name, _, _ in modes]
            cells += [f"{monitor:,.0f}", f"{recording:,.0f}", f"{recording_in_aiocop:,.0f}"]
            cells.append(f"{recording_in_aiocop / monitor:.2f}")
            cells.append(f"{(monitor + recording) / reference_overhead:.3f}")
            cells.append(f"{cost['recording'].all_threads - cost['monitor'].all_threads:,.0f}")
            print(f"| {workload} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
