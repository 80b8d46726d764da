"""How fast ``aiocop.open_trace()`` reads a trace, and in how much memory.

    cargo run --release -p aiocop-analyze --example bench_report -- 10000000 /tmp/big.bin   # writes the trace first
    .venv/bin/python bench/trace_reader.py /tmp/big.bin

Each way of reading runs in a fresh interpreter of its own, so that its
peak resident memory (``ru_maxrss``) is its own: the slices as objects
(``for s in reader.slices()``, touching each one's start and duration), as
Arrow record batches (``reader.batches()``, touching each batch's row
count), and whole into polars (``reader.to_polars()``). Prints the peak RSS of
each, and slices per second of wall clock and of the process's CPU time
(on a loaded machine the wall clock measures the load), beside two baselines: an interpreter that
opened the trace (``opened``), and one that imported pyarrow too
(``pyarrow``).
"""

import argparse
import json
import subprocess
import sys
import time

# Each reader's imports (timed apart from its reading) and its reading.
READERS = {
    "opened": ("", ""),
    "objects": ("", "total = 0\nfor s in reader.slices():\n    total += s.duration_ns"),
    "pyarrow": ("import pyarrow", ""),
    "batches": ("import pyarrow", "rows = 0\nfor batch in reader.batches():\n    rows += batch.num_rows"),
    "polars": ("import pyarrow, polars", "rows = reader.to_polars().height"),
}

CHILD = """
import json, resource, sys, time
import aiocop
{imports}
reader = aiocop.open_trace(sys.argv[1])
rows = None
start, start_cpu = time.perf_counter(), time.process_time()
{body}
seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"seconds": seconds, "cpu_seconds": cpu_seconds, "peak_mb": peak_kib / 1024}}))
"""


def run(trace: str, name: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", CHILD.format(imports=READERS[name][0], body=READERS[name][1]), trace],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trace")
    parser.add_argument("--runs", type=int, default=1, help="runs of each reader; the fastest is shown")
    args = parser.parse_args()
    import aiocop

    reader = aiocop.open_trace(args.trace)
    slices = reader.footer.slices if reader.footer else None
    print(f"{args.trace}: {slices} slices in {reader.chunk_count} chunks")
    for name in READERS:
        runs = [run(args.trace, name) for _ in range(args.runs)]
        best = min(runs, key=lambda r: r["seconds"])
        if slices and READERS[name][1]:
            wall, cpu = best["seconds"], best["cpu_seconds"]
            timing = f"{wall:6.2f} s, {slices / wall / 1e6:5.2f} M slices/s"
            timing += f"; CPU {cpu:6.2f} s, {slices / cpu / 1e6:5.2f} M/s"
        else:
            timing = ""
        print(f"{name:>9}: peak RSS {best['peak_mb']:6.1f} MB  {timing}")
        time.sleep(0.1)


if __name__ == "__main__":
    main()
