"""End to end: record two releases of a small app with `python -m aiocop record`, then compare them with
`aiocop-analyze diff`.

From v1 to v2: the config read is fixed (gone), the audit log stats three times as often (regressed), the
cache check stats a third as often (improved), the throttle's sleep is untouched (unchanged), a rate limiter's
sleep is added (new, high severity). v2 serves twice as many requests, so only rates per 1,000 slices can be
compared.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ANALYZE = shutil.which("aiocop-analyze", path=os.path.dirname(sys.executable))

APP = textwrap.dedent(
    """
    import asyncio, os, sys, time

    version, requests, config = sys.argv[1], int(sys.argv[2]), sys.argv[3]

    def load_config():
        with open(config) as f:  # LINE_CONFIG
            return f.read()

    def audit_log():
        for _ in range(1 if version == "v1" else 3):
            os.stat(config)  # LINE_AUDIT

    def cache_check():
        for _ in range(3 if version == "v1" else 1):
            os.stat(config)  # LINE_CACHE

    def throttle():
        time.sleep(0.02)  # LINE_THROTTLE

    def rate_limit():
        time.sleep(0.002)  # LINE_RATE_LIMIT

    async def request():
        # As many steps a request in both versions, so that rates compare.
        if version == "v1":
            load_config()
        await asyncio.sleep(0)
        audit_log()
        await asyncio.sleep(0)
        cache_check()
        await asyncio.sleep(0)
        throttle()
        await asyncio.sleep(0)
        if version == "v2":
            rate_limit()

    async def main():
        for _ in range(requests):
            await request()

    asyncio.run(main())
    """
)


def line_of(marker: str) -> int:
    return next(n for n, line in enumerate(APP.splitlines(), start=1) if marker in line)


@pytest.fixture(scope="module")
def releases(tmp_path_factory) -> tuple[Path, Path, Path]:
    tmp = tmp_path_factory.mktemp("diff")
    app, config = tmp / "app.py", tmp / "app.cfg"
    app.write_text(APP)
    config.write_text("x")
    traces = []
    for version, requests in (("v1", 40), ("v2", 80)):
        trace = tmp / f"{version}.bin"
        command = [sys.executable, "-m", "aiocop", "record", "-o", str(trace), "--label", version, "--"]
        result = subprocess.run(
            [*command, str(app), version, str(requests), str(config)], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        traces.append(trace)
    return app, traces[0], traces[1]


# What changes between the two releases is how often each call is made; their times (microseconds for a
# stat, 20 ms for a sleep) move with the machine's load, so p95 changes count only past 10 ms here.
P95_FLOOR = ("--min-p95-change-ms", "10")


def diff(*args: str) -> subprocess.CompletedProcess:
    assert ANALYZE, "pip install of the package provides the aiocop-analyze executable"
    return subprocess.run([ANALYZE, "diff", *args, *P95_FLOOR], capture_output=True, text=True, timeout=60)


def diff_json(base: Path, new: Path, *args: str) -> dict:
    result = diff(str(base), str(new), "--by", "app-frame", "--format", "json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def app_rows(report: dict, app: Path) -> dict[str, dict]:
    return {row["key"]: row for row in report["rows"] if row["key"].startswith(str(app))}


def test_every_status_of_the_release(releases):
    app, base, new = releases
    rows = app_rows(diff_json(base, new, "--all"), app)
    statuses = {key.removeprefix(f"{app}:"): row["status"] for key, row in rows.items()}
    assert statuses == {
        f"{line_of('LINE_CONFIG')}:load_config": "gone",
        f"{line_of('LINE_AUDIT')}:audit_log": "regressed",
        f"{line_of('LINE_CACHE')}:cache_check": "improved",
        f"{line_of('LINE_THROTTLE')}:throttle": "unchanged",
        f"{line_of('LINE_RATE_LIMIT')}:rate_limit": "new",
    }
    # Without --all, the unchanged row is left out and counted.
    default = diff_json(base, new)
    assert f"{app}:{line_of('LINE_THROTTLE')}:throttle" not in [row["key"] for row in default["rows"]]
    assert default["rows_not_shown"] >= 1


def test_numbers_are_per_thousand_slices_of_each_side(releases):
    app, base, new = releases
    report = diff_json(base, new, "--all")
    base_slices, new_slices = report["base"]["totals"]["slices"], report["new"]["totals"]["slices"]
    # Four steps a request (the last runs on into the next request), and asyncio.run's own callbacks.
    assert 160 <= base_slices < 180 and 320 <= new_slices < 340
    expected_events = {  # (base, new) events of each app line
        "load_config": (40, None),
        "audit_log": (40, 240),
        "cache_check": (120, 80),
        "throttle": (40, 80),
        "rate_limit": (None, 80),
    }
    weights = {"load_config": 10, "audit_log": 1, "cache_check": 1, "throttle": 50, "rate_limit": 50}
    for key, row in app_rows(report, app).items():
        function = key.rsplit(":", 1)[1]
        sides = zip(("base", "new"), (base_slices, new_slices), expected_events[function], strict=True)
        for side, slices, events in sides:
            if events is None:
                assert row[side] is None
                continue
            values = row[side]
            assert values["events"] == events
            assert values["events_per_1k"] == round(events * 1000 / slices, 3)
            assert values["severity_per_1k"] == round(events * weights[function] * 1000 / slices, 3)
            assert values["slices_per_1k"] == round(values["slices"] * 1000 / slices, 3)
    throttle = app_rows(report, app)[f"{app}:{line_of('LINE_THROTTLE')}:throttle"]
    assert 20 <= throttle["base"]["p95_ms"] < 100 and 20 <= throttle["new"]["p95_ms"] < 100
    assert throttle["change"]["severity_per_1k"] == round(
        throttle["new"]["severity_per_1k"] - throttle["base"]["severity_per_1k"], 3
    )
    assert (report["base"]["labels"], report["new"]["labels"]) == (["v1"], ["v2"])
    assert report["event_table_changes"] == [] and report["scored_with"] == "new"


@pytest.mark.parametrize(
    ("gate", "exit_code", "reasons"),
    [
        ([], 0, []),
        (["--fail-on", "new-high"], 1, ["new high group 'app.py:rate_limit' (line {rate_limit})"]),
        (["--fail-on", "new"], 1, ["new high group 'app.py:rate_limit' (line {rate_limit})"]),
        (["--fail-on", "regressed"], 1, ["regressed 'app.py:audit_log' (line {audit})"]),
        (
            ["--fail-on", "any"],
            1,
            ["new high group 'app.py:rate_limit' (line {rate_limit})", "regressed 'app.py:audit_log' (line {audit})"],
        ),
        (["--fail-on", "new-high", "--min-count", "81"], 0, []),
        (["--fail-on", "regressed", "--min-increase", "1000%"], 0, []),
    ],
)
def test_each_fail_on_mode_gates_with_one_line_per_reason(releases, gate, exit_code, reasons):
    app, base, new = releases
    result = diff(str(base), str(new), "--by", "app-frame", "--format", "json", *gate)
    assert result.returncode == exit_code, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == len(reasons)
    for expected, line in zip(sorted(reasons), sorted(lines), strict=True):
        prefix = "aiocop-analyze: gate: " + expected.format(
            rate_limit=line_of("LINE_RATE_LIMIT"), audit=line_of("LINE_AUDIT")
        )
        assert line.startswith(prefix), line
    assert json.loads(result.stdout)["gate"]["failed"] is (exit_code == 1)


def test_markdown_is_a_pull_request_comment(releases):
    app, base, new = releases
    result = diff(str(base), str(new), "--by", "app-frame", "--format", "markdown")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:4] == [
        "**aiocop diff**: Base v1 → new v2, by app frame",
        "",
        "| status | app frame | severity per 1k slices | events per 1k slices | p95 ms | max ms | % over threshold |",
        "|:--|:--|--:|--:|--:|--:|--:|",
    ]
    app_lines = [line for line in lines if str(app) in line]
    # Most added severity per 1k slices first: the new sleeps (+12,500), the audit log's stats (250 -> 750),
    # the cache check's (750 -> 250), the config read's opens (2,500 -> none).
    assert [re.match(r"\| ([*a-z]+) \| `[^`]*:(\w+)` \|", line).groups() for line in app_lines] == [
        ("**new**", "rate_limit"),
        ("**regressed**", "audit_log"),
        ("improved", "cache_check"),
        ("gone", "load_config"),
    ]
    rate_limit = app_lines[0].split(" | ")
    assert rate_limit[2].startswith("– → ") and rate_limit[3].startswith("– → ")
    assert "- Groups: 1 new, 1 regressed, 1 improved, 1 gone, " in result.stdout
    assert "- Both sides scored with the new side's event weights, the same on both sides" in result.stdout


def test_unusable_input_exits_2_with_one_line_naming_the_file(releases, tmp_path):
    _, base, _ = releases
    junk = tmp_path / "junk.bin"
    junk.write_bytes(os.urandom(300))
    cut = tmp_path / "cut.bin"
    cut.write_bytes(base.read_bytes()[:20])
    for bad in (junk, tmp_path / "missing.bin", cut):
        result = diff(str(base), str(bad))
        assert result.returncode == 2, result.stderr
        assert str(bad) in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert "Traceback" not in result.stderr and "panicked" not in result.stderr
