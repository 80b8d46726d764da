"""`aiocop-analyze export --format parquet` on a real deployment, checked in DuckDB.

A FastAPI app under uvicorn with two workers, recorded with its context (a
provider gives each request's route), driven by a load generator over four
routes and stopped by SIGTERM. Its traces are exported, and the queries of
docs/queries/ (the ones the README shows) run over the files in DuckDB: the
row counts are `info`'s, the Loop time groups and the blocking I/O ranking
are the report's to the microsecond, and the blocking events per route are
the requests the load generator had answered.
"""

import asyncio
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import duckdb
import pytest
from test_deployments import _get, child_pids, free_port, wait_until_serving

ANALYZE = str(Path(sys.executable).with_name("aiocop-analyze"))
QUERIES = Path(__file__).resolve().parent.parent / "docs" / "queries"

APP = textwrap.dedent(
    """
    import contextvars
    import os
    import time

    import aiocop
    from fastapi import FastAPI

    DATA = os.environ["APP_DATA"]
    ROUTE = contextvars.ContextVar("route", default="-")
    aiocop.register_context_provider(lambda: {"route": ROUTE.get()})


    class RouteMiddleware:
        # The route first: FastAPI's first request reads source files (blocking) before the endpoint.

        def __init__(self, app):
            self.app = app

        async def __call__(self, scope, receive, send):
            if scope["type"] == "http":
                ROUTE.set("/io/{n}" if scope["path"].startswith("/io/") else scope["path"])
            await self.app(scope, receive, send)


    app = FastAPI()
    app.add_middleware(RouteMiddleware)

    @app.get("/clean")
    async def clean():
        return {"ok": True}

    @app.get("/io/{n}")
    async def io(n: int):
        open(os.path.join(DATA, f"req-{n}"), "w").close()  # blocking I/O on the loop
        return {"n": n}

    @app.get("/sleep")
    async def sleep():
        time.sleep(0.001)  # blocking the loop
        return {"slept": True}

    @app.get("/cpu")
    async def cpu():
        deadline = time.perf_counter() + 0.003
        while time.perf_counter() < deadline:
            pass
        return {"spun": True}
    """
)

PATHS = ["/clean", "/io/{n}", "/sleep", "/cpu"]


def generate_load(port: int, seconds: float, concurrency: int = 6) -> Counter:
    """Request the four routes in turn for `seconds`: the requests answered 200, by route."""

    async def main() -> Counter:
        answered: Counter = Counter()
        deadline = time.monotonic() + seconds
        counter = iter(range(1_000_000))

        async def client() -> None:
            while time.monotonic() < deadline:
                n = next(counter)
                route = PATHS[n % len(PATHS)]
                try:
                    if await asyncio.wait_for(_get(port, route.replace("{n}", str(n))), 5):
                        answered[route] += 1
                except (TimeoutError, OSError):
                    await asyncio.sleep(0.05)

        await asyncio.gather(*(client() for _ in range(concurrency)))
        return answered

    return asyncio.run(main())


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """Two uvicorn workers recorded under load: (traces dir, export dir, answered by route)."""
    root = tmp_path_factory.mktemp("export")
    (root / "app.py").write_text(APP)
    data = root / "data"
    data.mkdir()
    traces = root / "traces"
    traces.mkdir()
    port = free_port()
    command = [sys.executable, "-m", "aiocop", "record", "--record-context", "--label", "v1", "-o"]
    command += [str(traces / "w.bin"), "--", "-m", "uvicorn", "app:app", "--workers", "2", "--port", str(port)]
    command += ["--log-level", "warning"]
    env = {**os.environ, "APP_DATA": str(data)}
    server = subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until_serving(port, server)
        deadline = time.monotonic() + 20
        while len(child_pids(server.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        # The warm-up request of wait_until_serving is /clean, answered but not counted.
        answered = generate_load(port, seconds=3)
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
    out = root / "tables"
    exported = subprocess.run([ANALYZE, "export", "--format", "parquet", "-o", str(out), str(traces)], **TEXT)
    assert exported.returncode == 0, exported.stderr
    assert exported.stderr.startswith("aiocop-analyze: exported 2 traces ("), exported.stderr
    return traces, out, answered


TEXT = {"capture_output": True, "text": True, "timeout": 120}


def query(out: Path, name: str) -> list[tuple]:
    """The rows of docs/queries/NAME.sql over the export at `out`."""
    connection = duckdb.connect()
    connection.execute((QUERIES / "setup.sql").read_text().replace("EXPORT", str(out)))
    return connection.execute((QUERIES / f"{name}.sql").read_text()).fetchall()


def sql(out: Path, text: str) -> list[tuple]:
    connection = duckdb.connect()
    connection.execute((QUERIES / "setup.sql").read_text().replace("EXPORT", str(out)))
    return connection.execute(text).fetchall()


def report(traces: Path) -> dict:
    result = subprocess.run([ANALYZE, str(traces), "--format", "json", "--top", "0"], **TEXT)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_row_counts_are_infos(deployment):
    traces, out, _ = deployment
    result = subprocess.run([ANALYZE, "info", str(traces), "--format", "json"], **TEXT)
    assert result.returncode == 0, result.stderr
    infos = json.loads(result.stdout)["traces"]
    assert len(infos) == 2
    counted = sql(
        out,
        """
        SELECT t.path, t.label, t.host, t.slices, t.events, t.samples,
               (SELECT count(*) FROM slices s WHERE s.trace_id = t.trace_id),
               (SELECT count(*) FROM events e WHERE e.trace_id = t.trace_id),
               (SELECT count(*) FROM samples p WHERE p.trace_id = t.trace_id)
        FROM traces t ORDER BY t.path
        """,
    )
    by_path = {row[0]: row[1:] for row in counted}
    for info in infos:
        label, host, slices, events, samples, slice_rows, event_rows, sample_rows = by_path[info["path"]]
        assert (label, host) == ("v1", info["host"])
        assert slices == slice_rows == info["slices"] > 0
        assert events == event_rows == info["events"] > 0
        assert samples == sample_rows == info["cpu_samples"]


def test_the_loop_time_query_gives_the_reports_groups_and_milliseconds(deployment):
    traces, out, _ = deployment
    expected = report(traces)["loop_time"]["groups"]
    rows = query(out, "loop_time")
    assert {key: ms for key, ms in rows} == {g["key"]: g["busy_ms"] for g in expected}
    # The top groups in the report's order.
    assert [key for key, _ in rows[:5]] == [g["key"] for g in expected[:5]]


def test_the_tasks_table_counts_the_reports_tasks_and_their_slices_time(deployment):
    traces, out, _ = deployment
    expected = {row["key"]: row["tasks"] for row in report(traces)["tasks"]["rows"]}
    counted = sql(out, "SELECT coroutine, count(*) FROM tasks GROUP BY coroutine")
    assert dict(counted) == expected
    assert sum(expected.values()) > 0
    # Each task's loop time and slice count are its slices' in the slices table.
    mismatched = sql(
        out,
        """
        SELECT t.trace_id, t.task, t.loop_ns, t.slice_count, s.loop_ns, s.slices
        FROM tasks t FULL JOIN (
            SELECT trace_id, task, sum(duration_ns) AS loop_ns, count(*) AS slices
            FROM slices WHERE task IS NOT NULL GROUP BY trace_id, task
        ) s ON t.trace_id = s.trace_id AND t.task = s.task
        WHERE t.loop_ns IS DISTINCT FROM s.loop_ns OR t.slice_count IS DISTINCT FROM s.slices
        """,
    )
    assert mismatched == []
    # Tasks created and ended under load split their wall time, and the
    # requests' tasks ended done, their ready-waits the slices' known ones.
    timed = sql(
        out,
        """
        SELECT count(*), count(*) FILTER (WHERE wall_ns = loop_ns + ready_wait_ns + waiting_ns),
               count(*) FILTER (WHERE ended_offset_ns - created_offset_ns = wall_ns
                                AND outcome IS NOT NULL AND first_step >= created)
        FROM tasks WHERE wall_ns IS NOT NULL
        """,
    )[0]
    assert timed[0] > 0 and timed[1] == timed[0] and timed[2] == timed[0], timed
    ready = sql(
        out,
        """
        SELECT sum(t.ready_wait_ns), (SELECT sum(coalesce(ready_wait_ns, 0)) FROM slices WHERE task IS NOT NULL)
        FROM tasks t
        """,
    )[0]
    assert ready[0] == ready[1] > 0, ready


def test_the_blocking_query_gives_the_reports_ranking(deployment):
    traces, out, _ = deployment
    expected = [
        (g["key"], g["slices"], g["events"], g["severity_score"], g["exceeded"], g["total_ms"])
        for g in report(traces)["groups"]
    ]
    assert expected, "the app's blocking calls are in the report"
    assert query(out, "blocking") == expected


def test_blocking_events_per_route_are_the_requests_answered(deployment):
    _, out, answered = deployment
    rows = sql(
        out,
        """
        SELECT s.route, e.event, count(*) FROM events e JOIN slices s USING (trace_id, slice_index)
        WHERE (e.event = 'open' AND e.args LIKE '%req-%') OR e.event = 'time.sleep'
        GROUP BY ALL ORDER BY ALL
        """,
    )
    assert answered["/io/{n}"] > 10 and answered["/sleep"] > 10, answered
    assert rows == [("/io/{n}", "open", answered["/io/{n}"]), ("/sleep", "time.sleep", answered["/sleep"])]
    # The query a report cannot answer runs, with a row per blocking route and host.
    p95 = query(out, "p95_by_route")
    assert {(route, label) for route, label, *_ in p95} >= {("/io/{n}", "v1"), ("/sleep", "v1")}


def test_polars_reads_the_export_as_it_is(deployment):
    """The README's polars lines, run: the Hive partitions become columns and every row is there."""
    polars = pytest.importorskip("polars")
    traces, out, _ = deployment
    result = subprocess.run([ANALYZE, "info", str(traces), "--format", "json"], **TEXT)
    infos = json.loads(result.stdout)["traces"]
    slices = polars.scan_parquet(str(out / "slices" / "**" / "*.parquet"), hive_partitioning=True).collect()
    assert slices.height == sum(info["slices"] for info in infos)
    assert set(slices["label"].unique()) == {"v1"}
    assert set(slices["host"].unique()) == {info["host"] for info in infos}
    samples = polars.scan_parquet(str(out / "samples" / "**" / "*.parquet"), hive_partitioning=True).collect()
    per_slice = samples.group_by(["trace_id", "slice_index"]).agg(polars.col("weight_ns").sum())
    durations = slices.join(per_slice, on=["trace_id", "slice_index"]).select(["duration_ns", "weight_ns"])
    assert durations.height > 0 and (durations["duration_ns"] == durations["weight_ns"]).all()


def spark_missing() -> str | None:
    """Why Spark cannot run here, or None: pyspark and a Java runtime (17 or later) are both needed."""
    if importlib.util.find_spec("pyspark") is None:
        return "pyspark is not installed: make build installs it into .venv (requirements-spark.txt)"
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        return "no Java runtime for Spark (java on the PATH or JAVA_HOME): apt-get install openjdk-17-jre-headless"
    return None


SPARK_READ = textwrap.dedent(
    """
    import json, sys
    from pyspark.sql import SparkSession

    out, query = sys.argv[1], sys.argv[2]
    spark = (
        SparkSession.builder.master("local[1]")
        .appName("aiocop-export-test")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        # Spark refuses INT64 TIMESTAMP(NANOS) columns unless it takes them as bigint nanoseconds.
        .config("spark.sql.legacy.parquet.nanosAsLong", "true")
        # A label or host that looks like a number stays text (Spark would read label=2024 as an int).
        .config("spark.sql.sources.partitionColumnTypeInference.enabled", "false")
        .getOrCreate()
    )
    for table in ("slices", "events", "samples", "traces"):
        spark.read.parquet(f"{out}/{table}").createOrReplaceTempView(table)
    counted = spark.sql("SELECT label, host, count(*) FROM slices GROUP BY label, host").collect()
    rows = spark.sql(open(query).read()).collect()
    spark.stop()
    print(json.dumps({"counted": [list(r) for r in counted], "loop_time": [list(r) for r in rows]}))
    """
)


def test_spark_reads_the_export_and_its_loop_time_query_gives_the_reports(deployment):
    """The README's Spark lines, run: each table read with spark.read.parquet on its directory (the
    Hive partitions become columns), and docs/queries/loop_time.spark.sql, the Loop time query in
    Spark's SQL, gives the report's groups and milliseconds.

    Spark runs in a Python of its own: pytest's has aiocop's detection on (conftest), and a daemon
    thread in a patched time.sleep at exit (pyspark leaves one) aborts the interpreter there."""
    reason = spark_missing()
    if reason:
        pytest.skip(reason)
    traces, out, _ = deployment
    query = QUERIES / "loop_time.spark.sql"
    spark = subprocess.run([sys.executable, "-c", SPARK_READ, str(out), str(query)], **{**TEXT, "timeout": 900})
    assert spark.returncode == 0, spark.stderr[-3000:]
    read = json.loads(spark.stdout.splitlines()[-1])
    infos = json.loads(subprocess.run([ANALYZE, "info", str(traces), "--format", "json"], **TEXT).stdout)["traces"]
    assert {(label, host) for label, host, _ in read["counted"]} == {("v1", info["host"]) for info in infos}
    assert sum(count for *_, count in read["counted"]) == sum(info["slices"] for info in infos)
    expected = report(traces)["loop_time"]["groups"]
    rows = read["loop_time"]
    assert {key: ms for key, ms in rows} == {g["key"]: g["busy_ms"] for g in expected}
    assert [key for key, _ in rows[:5]] == [g["key"] for g in expected[:5]]
