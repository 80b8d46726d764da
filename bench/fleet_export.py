"""Fleet scale: many traces exported to Parquet, then the report's Loop time in DuckDB.

    .venv/bin/python bench/fleet_export.py [--traces 1000] [--slices 100000] [--threads 2] [--dir DIR]

Writes TRACES synthetic traces of SLICES slices each (analyzer/examples/bench_report.rs's
generator: steps of 100 tasks, 1 in 50 with a blocking event on one of 40 stacks and a
`route`, 1 in 500 slow and sampled; 10 hosts, 2 labels), then times and measures, each in a
process of its own:

1. `aiocop-analyze export --format parquet`: wall time, slices per second, peak RSS, bytes
   of Parquet per slice against bytes of trace per slice;
2. the Loop time query of docs/queries/loop_time.sql in DuckDB over the export;
3. `aiocop-analyze`'s own report of the same traces (JSON), whose Loop time groups the
   query must give (checked: the script fails if they differ).

The defaults are the issue's fleet (1,000 traces, 100 M slices: about 1.5 GB of traces);
on a shared machine, run it smaller (`--traces 50 --slices 100000`) and say so.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
QUERIES = ROOT / "docs" / "queries"
ANALYZE = str(Path(sys.executable).with_name("aiocop-analyze"))


def timed(command: list[str]) -> tuple[float, float, str]:
    """Runs `command`: (wall seconds, its peak RSS in MB, its stdout)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(command, stdout=out, stderr=err)
        # wait4: this process's own resource use, not that of every child so far.
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        elapsed = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        if process.returncode != 0:
            sys.exit(f"{' '.join(command)} failed: {err.read().decode()}")
        return elapsed, usage.ru_maxrss / 1024, out.read().decode()


def directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--traces", type=int, default=1000)
    parser.add_argument("--slices", type=int, default=100_000, help="slices per trace")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dir", type=Path, help="where to write (default: a temporary directory, removed)")
    parser.add_argument("--reuse", action="store_true", help="use the traces already in DIR/traces")
    args = parser.parse_args()
    work = args.dir or Path(tempfile.mkdtemp(prefix="aiocop-fleet-"))
    traces, tables = work / "traces", work / "tables"
    try:
        writer = ["cargo", "run", "--quiet", "--release", "-p", "aiocop-analyze", "--example", "bench_report"]
        if not args.reuse:
            fleet = ["fleet", str(args.traces), str(args.slices), str(traces)]
            subprocess.run([*writer, "--", *fleet], check=True, cwd=ROOT)
        slices = args.traces * args.slices
        trace_bytes = directory_bytes(traces)

        # Each measured step in a process of its own, its peak RSS its own.
        threads = ["-j", str(args.threads)]
        export = [ANALYZE, "export", "-q", "-o", str(tables), "--overwrite", *threads, str(traces)]
        export_s, export_rss_mb, _ = timed(export)
        parquet_bytes = directory_bytes(tables)

        connection = duckdb.connect()
        connection.execute(f"SET threads = {args.threads}")
        connection.execute((QUERIES / "setup.sql").read_text().replace("EXPORT", str(tables)))
        start = time.perf_counter()
        rows = connection.execute((QUERIES / "loop_time.sql").read_text()).fetchall()
        duckdb_s = time.perf_counter() - start

        report_s, _, report = timed([ANALYZE, str(traces), "--format", "json", "--top", "0", "-q", *threads])
        groups = {g["key"]: g["busy_ms"] for g in json.loads(report)["loop_time"]["groups"]}
        agree = dict(rows) == groups

        print(
            f"{args.traces} traces, {slices:,} slices, {trace_bytes / 1e6:.1f} MB of traces "
            f"({trace_bytes / slices:.2f} bytes/slice); {args.threads} threads"
        )
        print(
            f"export:   {export_s:.2f} s, {slices / export_s / 1e6:.2f} M slices/s, peak RSS {export_rss_mb:.0f} MB; "
            f"{parquet_bytes / 1e6:.1f} MB of Parquet ({parquet_bytes / slices:.2f} bytes/slice, "
            f"{parquet_bytes / trace_bytes:.2f}x the traces)"
        )
        print(f"DuckDB Loop time query: {duckdb_s:.2f} s ({len(rows)} groups)")
        print(
            f"aiocop-analyze report:  {report_s:.2f} s; its Loop time groups and the query's "
            f"{'agree' if agree else 'DIFFER'}"
        )
        if not agree:
            sys.exit(1)
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
