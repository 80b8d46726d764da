"""How much of a real server's long-slice time recording's samples explain, and how each slice is sampled.

Run from the repository root, after `make build` (needs wrk; any of the venvs):

    .venv/bin/python bench/sampling_coverage.py          # ~15 s

Starts a FastAPI app under uvicorn, recorded by `python -m aiocop record` with the default sampling (every
slice of 2 ms or more, about every millisecond), whose route burns 5 to 15 ms of CPU per request, and drives
it with wrk for 8 s (2 connections). Then reads the trace back and prints: how the main thread's slices were
sampled (`aiocop._native.main_thread_sampling_method()` in the server), the share of the time in slices of
2 ms or more that has a sample (target: at least 95%), and the samples per slice for the route's 10-14 ms
slices.
"""

from __future__ import annotations

import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

APP = textwrap.dedent(
    """
    import time
    from pathlib import Path
    from fastapi import FastAPI
    from aiocop import _native

    app = FastAPI()
    counter = iter(range(10**9))

    def crunch(ms):
        end = time.perf_counter() + ms / 1000
        n = 0
        while time.perf_counter() < end:
            n += 1
        return n

    @app.get("/cpu")
    async def cpu():
        if not Path("method.txt").exists():  # once: the route is CPU only
            Path("method.txt").write_text(_native.main_thread_sampling_method())
        return {"n": crunch(5 + next(counter) % 11)}
    """
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_serving(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/cpu", timeout=2).read()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the server did not start")


def main() -> None:
    import aiocop

    if not shutil.which("wrk"):
        raise SystemExit("needs wrk (apt-get install wrk)")
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / "app.py").write_text(APP)
        port, trace_path = free_port(), Path(directory) / "t.bin"
        command = [sys.executable, "-m", "aiocop", "record", "-o", str(trace_path), "--"]
        command += ["-m", "uvicorn", "app:app", "--port", str(port), "--log-level", "warning"]
        server = subprocess.Popen(command, cwd=directory)
        try:
            wait_until_serving(port)
            load = ["wrk", "-t1", "-c2", "-d8s", f"http://127.0.0.1:{port}/cpu"]
            subprocess.run(load, check=True, capture_output=True)
        finally:
            server.terminate()
            server.wait(timeout=30)
        method = (Path(directory) / "method.txt").read_text()
        trace = aiocop.read_trace(trace_path)
    long_slices = [s for s in trace["slices"] if s["duration_ns"] >= 2_000_000]
    total = sum(s["duration_ns"] for s in long_slices)
    sampled = sum(s["duration_ns"] for s in long_slices if s["samples"])
    route = [len(s["samples"]) for s in long_slices if 10_000_000 <= s["duration_ns"] < 14_000_000]
    quartiles = statistics.quantiles(route, n=4) if len(route) > 1 else [0, 0, 0]
    print(f"Python {sys.version.split()[0]}: main thread sampled by {method}")
    share = sampled / max(1, total)
    print(f"  {len(long_slices)} slices of 2 ms or more, {total / 1e9:.2f} s; {share:.1%} with a sample")
    q1, median, q3 = (f"{q:.0f}" for q in quartiles)
    print(f"  samples per 10-14 ms slice ({len(route)}): quartiles {q1} / {median} / {q3}")


if __name__ == "__main__":
    main()
