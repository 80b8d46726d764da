"""Per-step overhead of our native aiocop vs. the pure-Python aiocop 1.2.1.

Run from the repository root, after `make` has installed the package into .venv:

    .venv/bin/python bench/run.py                  # default run, ~1-2 min
    .venv/bin/python bench/run.py --quick          # smoke run, a few seconds
    .venv/bin/python bench/run.py --loop uvloop --json /tmp/bench.json

Three modes, each measured in its own subprocess (`python -I bench/workloads.py`):
  none          no monitor                        (interpreter: --ours-python)
  ours          the aiocop importable by --ours-python (default: this interpreter)
  aiocop-1.2.1  PyPI aiocop 1.2.1 from --ref-python (default: bench/.venv-aiocop121,
                created with `<this python> -m venv` + `pip install aiocop==1.2.1` if missing)
Both monitored modes use aiocop's default setup (audit patches, blocking-IO hook with
trace_depth=20, detect_slow_tasks(threshold_ms=30) with CPU sampling, activate()).

Workloads (see workloads.py) run N steps; a step is one trip through the event loop:
  pure       await asyncio.sleep(0)
  stat       os.stat(path)                       + sleep(0)   -> 1 blocking event/step
  open+read  open() and read a ~1 KiB file       + sleep(0)   -> 1 blocking event/step
  handler    json.loads, dict, 2 helpers, json.dumps, os.stat + sleep(0) -> 1 event/step
  tasks      100 tasks taking pure steps in turn, as a server's connections do
  callbacks  a method that schedules itself again with call_soon (no task), as a protocol's do

Every cell is the median over --repeats of µs per step; modes are interleaved within each
repeat (in rotating order) so machine noise hits all of them alike. "overhead" is a mode's
median minus the `none` median, i.e. what the monitor adds to each step; "ratio" is
ours_overhead / ref_overhead (target: <= 0.10). "events" is slow-task callbacks per step
(ours/ref): both must see the same blocking events or the comparison is meaningless.
Progress goes to stderr, the markdown table to stdout, and --json PATH gets all samples.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
WORKLOADS_PY = BENCH_DIR / "workloads.py"
REF_VENV = BENCH_DIR / ".venv-aiocop121"
REF_SPEC = "aiocop==1.2.1"
MODES = ["none", "ours", "aiocop-1.2.1"]
TARGET_RATIO = 0.10


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def import_error(python: str, module: str) -> str | None:
    """The last line of the error `python -I -c "import module"` fails with, or None if it imports."""
    proc = subprocess.run([python, "-I", "-c", f"import {module}"], capture_output=True, text=True)
    return (proc.stderr.strip().splitlines() or ["failed"])[-1] if proc.returncode else None


def ensure_ref_python(loop: str) -> str:
    """Create bench/.venv-aiocop121 (with uvloop if needed) unless it already exists."""
    python = REF_VENV / "bin" / "python"
    if not python.exists():
        log(f"creating {REF_VENV} with {sys.executable} -m venv ...")
        subprocess.run([sys.executable, "-m", "venv", str(REF_VENV)], check=True)
    if import_error(str(python), "aiocop"):
        log(f"installing {REF_SPEC} into {REF_VENV} ...")
        subprocess.run([str(python), "-m", "pip", "install", "-q", REF_SPEC], check=True)
    if loop == "uvloop" and import_error(str(python), "uvloop"):
        log(f"installing uvloop into {REF_VENV} ...")
        subprocess.run([str(python), "-m", "pip", "install", "-q", "uvloop"], check=True)
    return str(python)


def run_mode(python: str, monitor: bool, args: argparse.Namespace) -> dict[str, Any]:
    """One measurement: every workload once, in a fresh interpreter."""
    cmd = [python, "-I", str(WORKLOADS_PY), "--loop", args.loop, "--steps", str(args.steps)]
    cmd += ["--warmup", str(max(100, args.steps // 10))] + (["--monitor"] if monitor else [])
    cmd += ["--callback", args.callback]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"workload run failed: {' '.join(cmd)}\n{proc.stderr}")
    return json.loads(proc.stdout)


def fmt_us(ns: float) -> str:
    return f"{ns / 1000:.2f}"


def summarize(samples: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Median ns/step per workload and mode, overheads vs. none, and the ours/ref ratio."""
    summary: dict[str, Any] = {}
    for name in samples["none"][0]["results"]:
        row: dict[str, Any] = {"steps": samples["none"][0]["results"][name]["steps"]}
        for mode in MODES:
            ns = [run["results"][name]["ns_per_step"] for run in samples[mode]]
            events = [run["results"][name]["events_per_step"] for run in samples[mode]]
            row[mode] = {"median_ns": statistics.median(ns), "samples_ns": ns, "events_per_step": max(events)}
        ours = row["ours"]["median_ns"] - row["none"]["median_ns"]
        ref = row["aiocop-1.2.1"]["median_ns"] - row["none"]["median_ns"]
        row["overhead_ns"] = {"ours": ours, "aiocop-1.2.1": ref}
        row["ratio"] = ours / ref if ref > 0 else None
        summary[name] = row
    return summary


def markdown(summary: dict[str, Any], loop: str) -> str:
    lines = [
        f"| workload ({loop}) | steps | none µs | ours µs | 1.2.1 µs | ours overhead µs | 1.2.1 overhead µs "
        "| ratio (target ≤ 0.10) | events ours/ref |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in summary.items():
        ratio = "n/a" if row["ratio"] is None else f"{row['ratio']:.3f}"
        if row["ratio"] is not None and row["ratio"] > TARGET_RATIO:
            ratio += " ✗"
        events = f"{row['ours']['events_per_step']:g}/{row['aiocop-1.2.1']['events_per_step']:g}"
        lines.append(
            f"| {name} | {row['steps']} | {fmt_us(row['none']['median_ns'])} | {fmt_us(row['ours']['median_ns'])} "
            f"| {fmt_us(row['aiocop-1.2.1']['median_ns'])} | {fmt_us(row['overhead_ns']['ours'])} "
            f"| {fmt_us(row['overhead_ns']['aiocop-1.2.1'])} | {ratio} | {events} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20_000, help="base steps/workload; pure runs 5x")
    parser.add_argument("--repeats", type=int, default=5, help="measurements per mode; the median is reported")
    parser.add_argument("--quick", action="store_true", help="smoke run: --steps 2000 --repeats 3")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument(
        "--callback",
        choices=["count", "read"],
        default="count",
        help="what the slow-task callback does: count events, or also read every blocking event's strings",
    )
    parser.add_argument("--ours-python", default=sys.executable, help="interpreter whose aiocop is 'ours'")
    parser.add_argument("--ref-python", help="interpreter with aiocop 1.2.1 (default: bench/.venv-aiocop121)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this path")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.repeats = 2_000, 3

    ref_python = args.ref_python or ensure_ref_python(args.loop)
    pythons = {"none": args.ours_python, "ours": args.ours_python, "aiocop-1.2.1": ref_python}
    for mode in ("ours", "aiocop-1.2.1"):
        for module in ["aiocop"] + (["uvloop"] if args.loop == "uvloop" else []):
            if error := import_error(pythons[mode], module):
                sys.exit(f"{mode}: {pythons[mode]} cannot import {module}: {error}")

    samples: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    started = time.monotonic()
    for repeat in range(args.repeats):
        for mode in MODES[repeat % 3 :] + MODES[: repeat % 3]:
            run = run_mode(pythons[mode], mode != "none", args)
            samples[mode].append(run)
            per_step = ", ".join(f"{k} {fmt_us(v['ns_per_step'])}" for k, v in run["results"].items())
            log(f"[{repeat + 1}/{args.repeats}] {mode:>12}: {per_step} µs/step")
    log(f"done in {time.monotonic() - started:.0f}s")

    metas = {mode: samples[mode][0]["meta"] for mode in MODES}
    for mode in ("ours", "aiocop-1.2.1"):
        log(f"{mode}: aiocop {metas[mode]['aiocop_version']} from {metas[mode]['aiocop_file']}")
    if metas["ours"]["python"] != metas["aiocop-1.2.1"]["python"]:
        log(f"WARNING: different interpreters: {metas['ours']['python']!r} vs {metas['aiocop-1.2.1']['python']!r}")

    summary = summarize(samples)
    for name, row in summary.items():
        if row["ours"]["events_per_step"] != row["aiocop-1.2.1"]["events_per_step"]:
            log(f"WARNING: {name}: ours reports a different number of slow-task events than 1.2.1")

    print(markdown(summary, args.loop))
    if args.json:
        config = {"loop": args.loop, "steps": args.steps, "repeats": args.repeats, "target_ratio": TARGET_RATIO}
        args.json.write_text(json.dumps({"config": config, "meta": metas, "workloads": summary}, indent=2))
        log(f"wrote {args.json}")


if __name__ == "__main__":
    main()
