"""End to end: record real programs, then read the traces with the `aiocop-analyze` executable.

The workload makes known blocking calls at known lines, so the report's
ranking, counts, keys and severities are known exactly.
"""

import csv
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import analyze, report_json

WORKLOAD = textwrap.dedent(
    """
    import asyncio, os, socket, time
    import aiocop

    def read_config(path):
        with open(path) as f:  # LINE_OPEN
            return f.read()

    def stat_many(path):
        for _ in range(5):
            os.stat(path)  # LINE_STAT

    def connect(port):
        with socket.create_connection(("127.0.0.1", port), timeout=1):  # LINE_CONNECT
            pass

    def spin():
        deadline = time.perf_counter() + 0.06
        while time.perf_counter() < deadline:  # LINE_SPIN
            pass

    async def main(path, port):
        aiocop.activate()
        await asyncio.sleep(0)
        for _ in range(3):
            read_config(path)
            await asyncio.sleep(0)
        time.sleep(0.035)  # LINE_SLEEP
        await asyncio.sleep(0)
        stat_many(path)
        await asyncio.sleep(0)
        connect(port)
        await asyncio.sleep(0)
        spin()
        await asyncio.sleep(0)

    import sys
    path, port, trace = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    socket.getaddrinfo("127.0.0.1", port)  # warm the resolver's imports outside the loop
    with aiocop.recording(trace, label="v9"):
        asyncio.run(main(path, port))
    """
)


def line_of(marker: str) -> int:
    return next(n for n, line in enumerate(WORKLOAD.splitlines(), start=1) if marker in line)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("analyze")
    script, config, trace = tmp / "app.py", tmp / "app.cfg", tmp / "trace.bin"
    script.write_text(WORKLOAD)
    config.write_text("x")
    with __import__("socket").create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        result = subprocess.run(
            [sys.executable, str(script), str(config), str(port), str(trace)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 0, result.stderr
    return script, trace


def app_groups(report: dict, script: Path) -> list[dict]:
    return [g for g in report["groups"] if g["key"].startswith(str(script))]


def test_report_ranks_entry_points_by_severity_with_exact_counts(recorded):
    script, trace = recorded
    report = report_json(str(trace))
    groups = app_groups(report, script)
    assert [
        (g["key"], g["slices"], g["events"], g["severity_score"], g["severity_level"], g["exceeded"]) for g in groups
    ] == [
        (f"{script}:{line_of('LINE_SLEEP')}:main", 1, 1, 50, "high", 1),
        (f"{script}:{line_of('LINE_OPEN')}:read_config", 3, 3, 30, "medium", 0),
        (f"{script}:{line_of('LINE_STAT')}:stat_many", 1, 5, 5, "low", 0),
    ]
    sleep = groups[0]
    assert sleep["top_events"] == [{"event": "time.sleep", "count": 1}]
    assert 35 <= sleep["max_ms"] == sleep["total_ms"] == sleep["p50_ms"] < 1000
    assert sleep["example_trace"].startswith(f"{script}:{line_of('LINE_SLEEP')}:main")
    # The blocking connect's innermost frame is in socket.py, not in the app.
    [connect] = [
        g
        for g in report["groups"]
        if g["key"].startswith("socket.py:") and g["top_events"][0]["event"] == "socket.socket.connect"
    ]
    assert connect["severity_score"] == 50

    totals = report["totals"]
    # 3 opens, 1 sleep, 5 stats, the connect's getaddrinfo and connect.
    assert (totals["blocking_slices"], totals["events"]) == (6, 11)
    assert totals["exceeded"] == 2  # the sleep and the spin
    assert totals["cpu_blocking"] == 1 and totals["dropped"] == 0
    assert totals["slices"] >= 9  # main's steps, and asyncio.run's own callbacks
    [cpu] = report["cpu_groups"]
    assert cpu["key"] == f"{script}:{line_of('LINE_SPIN')}:spin" and cpu["slices"] == 1
    assert report["traces"][0]["label"] == "v9"


def test_app_frame_points_at_the_app_line_behind_library_calls(recorded):
    script, trace = recorded
    report = report_json("--by", "app-frame", str(trace))
    keys = [g["key"] for g in report["groups"]]
    assert f"{script}:{line_of('LINE_CONNECT')}:connect" in keys


def test_by_event_and_filters(recorded):
    script, trace = recorded
    by_event = {g["key"]: g for g in report_json("--by", "event", str(trace))["groups"]}
    assert by_event["os.stat"]["events"] == 5 and by_event["open"]["events"] >= 3
    high = report_json("--min-severity", "high", str(trace))["groups"]
    assert {g["severity_level"] for g in high} == {"high"}
    exceeded = app_groups(report_json("--exceeded-only", str(trace)), script)
    assert [g["key"] for g in exceeded] == [f"{script}:{line_of('LINE_SLEEP')}:main"]
    ignored = app_groups(report_json("--ignore", "*read_config*", str(trace)), script)
    assert all("read_config" not in g["key"] for g in ignored) and len(ignored) == 2


def test_every_format_lists_the_same_ranking(recorded):
    script, trace = recorded
    keys = [g["key"] for g in report_json(str(trace))["groups"]]
    rows = list(csv.DictReader(io.StringIO(analyze("--format", "csv", str(trace)).stdout)))
    assert [row["key"] for row in rows] == keys
    markdown = analyze("--format", "markdown", str(trace)).stdout
    table = analyze("--format", "table", str(trace)).stdout
    sleep_key, open_key = f"{script}:{line_of('LINE_SLEEP')}:main", f"{script}:{line_of('LINE_OPEN')}:read_config"
    for text in (markdown, table):
        assert sleep_key in text and open_key in text and text.index(sleep_key) < text.index(open_key)


def test_info_describes_the_file(recorded):
    _, trace = recorded
    result = analyze("info", "--format", "json", str(trace))
    assert result.returncode == 0, result.stderr
    [info] = json.loads(result.stdout)["traces"]
    assert info["cut_short"] is False and info["label"] == "v9" and info["chunks"] >= 1
    assert (info["blocking_slices"], info["events"], info["exceeded"]) == (6, 11, 2)
    assert info["footer"]["slices"] == info["slices"]


def test_unusable_input_exits_2_with_one_line_naming_the_file(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(os.urandom(300))
    for path in (junk, tmp_path / "missing.bin"):
        result = analyze(str(path))
        assert result.returncode == 2
        assert str(path) in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert "Traceback" not in result.stderr and "panicked" not in result.stderr
