"""aiocop's Loop time beside CPython's own sampling profiler (Tachyon) on the same FastAPI workload.

Run on CPython 3.15 (Tachyon is `python -m profiling.sampling`), after `make build-3.15`, in the sid root:

    tools/sid-root.sh run 3.15 sh -c 'pip install -q --no-deps --force-reinstall /wheels/aiocop-*.whl \
        && python bench/tachyon_side_by_side.py'     # ~40 s; needs wrk

Starts a FastAPI app under uvicorn twice, each driven by wrk for `SECONDS` (2 connections): once recorded
by `python -m aiocop record` (default sampling), once profiled by Tachyon (`run --collapsed --mode cpu`,
which reads the stack from outside the process). Its `/cpu` route sorts a list (C code holding the GIL),
encodes it with the C JSON encoder, then returns; `/io` only awaits. Prints, for the top functions of each,
their share of the loop's busy time side by side: aiocop's by `aiocop-analyze --by function` (each
sample weighing the time since the previous one), Tachyon's by the innermost Python frame of its samples
taken inside a loop callback (`Handle._run`), idle time in the selector left out. Target: every top group
within 3 percentage points of Tachyon's.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

SECONDS = 10
TOP = 8

APP = textwrap.dedent(
    """
    import asyncio, json, random
    from fastapi import FastAPI
    from fastapi.responses import PlainTextResponse

    app = FastAPI()
    DATA = [random.random() for _ in range(100_000)]

    def rank():
        return sorted(DATA)

    def encode(values):
        return json.dumps(values[:20_000])

    @app.get("/cpu", response_class=PlainTextResponse)
    async def cpu():
        return encode(rank())

    @app.get("/io")
    async def io():
        await asyncio.sleep(0.002)
        return {"ok": True}
    """
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_serving(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/io", timeout=2).read()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the server did not start")


def cpu_seconds(stat_path: Path) -> float:
    """A process's or thread's user + system CPU time, from its /proc stat file."""
    fields = stat_path.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def aiocop_threads_cpu(pid: int) -> float:
    """CPU seconds of aiocop's own threads in the server (the sampling watchdog, the trace writer)."""
    total = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        if (task / "comm").read_text().startswith("aiocop"):
            total += cpu_seconds(task / "stat")
    return total


def serve_under_load(prefix: list[str], directory: Path, cost: Callable[[int], float]) -> float:
    """Runs uvicorn under `prefix`, drives both routes with wrk, then stops it with SIGINT; returns
    `cost(pid)` of the process started, read just before it is stopped: what the profiler cost in CPU
    seconds over the load."""
    port = free_port()
    # asyncio's loop, whose callbacks run under `Handle._run`, in both runs.
    command = [*prefix, "-m", "uvicorn", "app:app", "--loop", "asyncio", "--port", str(port), "--log-level", "warning"]
    server = subprocess.Popen(command, cwd=directory, stdout=subprocess.DEVNULL)
    try:
        wait_until_serving(port)
        loads = [
            subprocess.Popen(
                ["wrk", "-t1", "-c1", f"-d{SECONDS}s", f"http://127.0.0.1:{port}/{route}"], stdout=subprocess.DEVNULL
            )
            for route in ("cpu", "io")
        ]
        for load in loads:
            load.wait()
        return cost(server.pid)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()


def aiocop_shares(directory: Path) -> tuple[dict[str, float], float]:
    trace = directory / "t.bin"
    # `record` runs the program in its own process (runpy): the pid is the server's.
    cost = serve_under_load(
        [sys.executable, "-m", "aiocop", "record", "-o", str(trace), "--"], directory, aiocop_threads_cpu
    )
    analyze = shutil.which("aiocop-analyze") or str(Path(sys.executable).parent / "aiocop-analyze")
    report = subprocess.run(
        [analyze, "--by", "function", "--top", "0", "--format", "json", str(trace)],
        capture_output=True,
        text=True,
        check=True,
    )
    groups = json.loads(report.stdout)["loop_time"]["groups"]
    # Keys are `module:qualname` (`app:rank`); compare by the function's name.
    shares: dict[str, float] = collections.Counter()
    for group in groups:
        shares[group["key"].rsplit(":", 1)[-1].rsplit(".", 1)[-1]] += group["share"]
    return shares, cost


def tachyon_shares(directory: Path) -> tuple[dict[str, float], float]:
    out = directory / "tachyon.txt"
    prefix = [sys.executable, "-m", "profiling.sampling", "run", "--collapsed", "--mode", "cpu", "-o", str(out)]
    # Tachyon's process is the sampler; the program runs in a child of it.
    cost = serve_under_load(prefix, directory, lambda pid: cpu_seconds(Path(f"/proc/{pid}/stat")))
    if not out.exists():
        raise SystemExit("Tachyon wrote no collapsed stacks")
    counts: dict[str, int] = collections.Counter()
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")[1:]  # after `tid:N`, outermost first
        # Inside a loop callback: the loop's own frames down to Handle._run left out, as aiocop does.
        runs = [i for i, frame in enumerate(frames) if frame.startswith("events.py:_run:") or ":Handle._run:" in frame]
        if not runs or len(frames) <= runs[-1] + 1:
            continue
        # `file:function:line`, or a special frame such as `<GC>`.
        parts = frames[-1].split(":")
        innermost = parts[1] if len(parts) >= 3 else frames[-1]
        counts[innermost.rsplit(".", 1)[-1]] += int(count)
    total = sum(counts.values()) or 1
    return {name: count / total for name, count in counts.items()}, cost


def main() -> None:
    if sys.version_info < (3, 15):
        raise SystemExit("needs CPython 3.15 (Tachyon)")
    if not shutil.which("wrk"):
        raise SystemExit("needs wrk (apt-get install wrk)")
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        (directory / "app.py").write_text(APP)
        ours, our_cost = aiocop_shares(directory)
        theirs, their_cost = tachyon_shares(directory)
    names = sorted(set(ours) | set(theirs), key=lambda n: -max(ours.get(n, 0), theirs.get(n, 0)))[:TOP]
    print(f"Python {sys.version.split()[0]}, FastAPI under uvicorn, wrk {SECONDS} s on /cpu and /io")
    print(f"{'function':<32} {'aiocop':>8} {'Tachyon':>8} {'diff pp':>8}")
    for name in names:
        a, t = ours.get(name, 0.0), theirs.get(name, 0.0)
        print(f"{name:<32} {a:>8.1%} {t:>8.1%} {100 * (a - t):>+8.1f}")
    print(
        f"CPU of the profiler over the {SECONDS} s of load: aiocop's threads (watchdog, writer) "
        f"{our_cost / SECONDS:.1%} of a core; Tachyon's sampler process {their_cost / SECONDS:.1%}"
    )


if __name__ == "__main__":
    main()
