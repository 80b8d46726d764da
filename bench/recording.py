"""What recording costs: per-step overhead on top of monitoring, writer throughput, bytes on disk.

Run from the repository root, after `make build`:

    .venv/bin/python bench/recording.py            # ~2 min
    .venv/bin/python bench/recording.py --quick

Three modes per repeat, interleaved, each a fresh `python -I bench/workloads.py`:
  none       no monitor
  monitor    this aiocop, detection only (the default setup of bench/run.py)
  recording  the same, and recording: started before the warm-up, with a flush every 0.1 s, and the
             warm-up run on past three flushes, so that the timed steps see the recorder's steady state
             (its buffers are first written, page by page, in its first intervals: a one-time cost)

Reported per workload: µs per step for each mode; the monitor's overhead
(monitor - none) and what recording adds on top (recording - monitor), with
their ratio (target: <= 0.30); and, from the trace files, bytes on disk per
slice, and what a blocking event adds to its slice (bytes beyond those of as
many pure slices, per event). Writer throughput: slices written per second
of wall time, from start_recording() to the return of stop_recording() (which
waits for the writer to drain), with no slice dropped, on the pure workload
(as fast as one loop makes slices); and the writer alone: a second recording
of the pure workload with a flush interval longer than the run, so that
stop_recording() encodes, compresses and writes its whole buffer, and slices
/ the time it takes is what the writer can take.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

WORKLOADS_PY = Path(__file__).resolve().parent / "workloads.py"
MODES = ["none", "monitor", "recording"]
TARGET_RATIO = 0.30


def run(mode: str, steps: int, record_dir: str) -> dict[str, Any]:
    cmd = [sys.executable, "-I", str(WORKLOADS_PY), "--steps", str(steps), "--warmup", str(max(100, steps // 10))]
    if mode != "none":
        cmd.append("--monitor")
    if mode == "recording":
        cmd += ["--record", record_dir]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"workload run failed: {' '.join(cmd)}\n{proc.stderr}")
    return json.loads(proc.stdout)["results"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--quick", action="store_true", help="--steps 2000 --repeats 3")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.repeats = 2_000, 3

    samples: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as record_dir:
        for repeat in range(args.repeats):
            for mode in MODES[repeat % 3 :] + MODES[: repeat % 3]:
                samples[mode].append(run(mode, args.steps, record_dir))
                print(f"[{repeat + 1}/{args.repeats}] {mode}", file=sys.stderr, flush=True)

    print(
        "| workload | none µs | monitor µs | recording µs | monitor overhead µs | recording adds µs "
        "| ratio (target ≤ 0.30) | bytes/slice | bytes/event | dropped |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    pure_summary = samples["recording"][-1]["pure"]["recording"]
    pure_bytes_per_slice = pure_summary["bytes"] / max(pure_summary["slices"], 1)
    for name in samples["none"][0]:
        median = {m: statistics.median(r[name]["ns_per_step"] for r in samples[m]) / 1000 for m in MODES}
        monitor_overhead = median["monitor"] - median["none"]
        recording_adds = median["recording"] - median["monitor"]
        ratio = recording_adds / monitor_overhead if monitor_overhead > 0 else float("nan")
        summary = samples["recording"][-1][name]["recording"]
        per_slice = summary["bytes"] / max(summary["slices"], 1)
        # What an event adds to its slice: the bytes beyond those of as many pure slices.
        extra_bytes = summary["bytes"] - summary["slices"] * pure_bytes_per_slice
        per_event = f"{extra_bytes / summary['events']:.2f}" if summary["events"] > summary["slices"] / 100 else "-"
        mark = " ✗" if ratio > TARGET_RATIO else ""
        print(
            f"| {name} | {median['none']:.2f} | {median['monitor']:.2f} | {median['recording']:.2f} "
            f"| {monitor_overhead:.2f} | {recording_adds:.2f} | {ratio:.2f}{mark} | {per_slice:.2f} "
            f"| {per_event} | {summary['dropped']} |"
        )

    pure = [r["pure"] for r in samples["recording"]]
    rates = [r["recording"]["slices"] / (r["recording_ns"] / 1e9) for r in pure if r["recording"]["dropped"] == 0]
    if rates:
        print(f"\nwriter throughput (pure workload, no slice dropped): {statistics.median(rates):,.0f} slices/s")
    else:
        print("\nwriter throughput: slices were dropped in every run; the writer did not keep up")
    drains = [r["drain_slices_per_s"] for r in pure]
    print(f"writer alone (stop_recording() writing {pure[-1]['steps']:,} buffered slices): ", end="")
    print(f"{statistics.median(drains):,.0f} slices/s")


if __name__ == "__main__":
    main()
