"""Records the seed corpus of the `reader` and `pipeline` fuzz targets: a few
small real traces (a few KB each) made by the real recorder, each with
something the others lack, so that the fuzzer starts from every kind of
chunk content and mutates from there. Run after `make build`:

    .venv/bin/python fuzz/make_seeds.py

It rewrites fuzz/seeds/*.aiocop. The traces are committed, so `fuzz/run`
needs no Python; rerun this after a trace format change.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

SEEDS = Path(__file__).resolve().parent / "seeds"

# Each program runs a few milliseconds of asyncio: blocking calls from named
# tasks (events with stacks and arguments), a CPU burn (samples), a lazy
# import, and a context provider, in a few chunks (a short flush interval).
PROGRAMS = {
    "blocking": """
import asyncio, os, time
async def reader(path):
    with open(path, "rb") as f:
        f.read()
    time.sleep(0.002)
async def main():
    for i in range(3):
        await asyncio.gather(*(asyncio.create_task(reader(os.__file__), name=f"reader-{i}-{j}") for j in range(2)))
asyncio.run(main())
""",
    "cpu": """
import asyncio
def burn(ms):
    import time
    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        sum(range(100))
async def main():
    for _ in range(3):
        burn(6)
        await asyncio.sleep(0)
asyncio.run(main())
""",
    "context": """
import asyncio, aiocop, time
aiocop.register_context_provider(lambda: {"user": "alice", "route": "/cart"})
async def handler():
    import json  # a lazy import inside a slice
    time.sleep(0.001)
    await asyncio.sleep(0)
async def main():
    await asyncio.gather(*(handler() for _ in range(4)))
asyncio.run(main())
""",
}

OPTIONS = {
    "blocking": ["--label", "v1", "--threshold-ms", "1"],
    "cpu": ["--threshold-ms", "2", "--sample-after-ms", "1", "--sample-interval-ms", "0.5"],
    "context": ["--record-context", "--threshold-ms", "0.5", "--flush-interval", "0.01"],
}


def main() -> None:
    SEEDS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        for name, source in PROGRAMS.items():
            script = Path(scratch) / f"{name}.py"
            script.write_text(source)
            out = SEEDS / f"{name}.aiocop"
            out.unlink(missing_ok=True)
            command = [sys.executable, "-m", "aiocop", "record", "-o", str(out), *OPTIONS[name], "--", str(script)]
            subprocess.run(command, check=True)
            print(f"{out.name}: {out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
