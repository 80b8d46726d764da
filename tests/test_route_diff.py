"""Routes in every format and in ``diff``, the differential flame graph's colours,
and tables that fit a terminal: end to end, on real recordings read back by the
real ``aiocop-analyze``.

A FastAPI app under uvicorn (the app and load generator of test_routes.py) is
recorded four times: twice with the same build (an A/A pair), once more with
that build on one CPU shared with a busy process (the machine's speed changed,
unevenly for code of different shapes), and once with ``/cpu`` doing three
times the work (a real regression). ``diff --by route`` must call the A/A
pairs unchanged, the busy one either way round, and the slower route, only it,
regressed; ``diff --fail-on route`` must fail on the slower route alone and
pass the others; the differential flame graph must be red where ``/cpu`` got
slower and say, for the A/A pair, what its colours are worth. The demo app's recording and the FastAPI one are drawn
on terminals 80, 100 and 120 columns wide: every line fits, and no key is cut
inside a name.
"""

import csv
import io
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import analyze, report_json
from test_analyze_terminal import assert_fits, run_on_terminal
from test_routes import PATHS, free_port, served

ROOT = Path(__file__).resolve().parent.parent

# The routes of test_routes.py, their CPU as a fixed amount of work, not a
# deadline: on a machine busier in one run every function is slower alike,
# where a deadline-bound loop would take the same time and shift the shares.
APP = textwrap.dedent(
    """
    import asyncio
    import json
    import os

    from fastapi import APIRouter, FastAPI
    from fastapi.responses import PlainTextResponse

    app = FastAPI()
    api = APIRouter(prefix="/api")
    CPU_WORK = 40_000


    def work(n):
        return sum(i * i for i in range(n))


    @app.get("/cpu")
    async def cpu():
        return PlainTextResponse(str(work(CPU_WORK)))


    @app.get("/block")
    async def block():
        with open(__file__) as f:  # blocking file I/O, no sleep: its time is CPU too
            f.read(10)
        os.stat(__file__)
        return PlainTextResponse("ok")


    @app.get("/render/{page}")
    async def render(page: str):
        return PlainTextResponse(json.dumps({"page": page, "rows": [work(2_000) for _ in range(10)]}))


    @api.get("/items/{item_id}")
    async def item(item_id: int):
        await asyncio.create_task(spawned())
        return PlainTextResponse(str(item_id))


    async def spawned():
        work(2_000)


    app.include_router(api)
    """
)
# The same build, but /cpu does three times the work.
SLOWER_APP = APP.replace("CPU_WORK = 40_000", "CPU_WORK = 120_000")
assert SLOWER_APP != APP


def record_fastapi(tmp: Path, app_source: str, busy_beside: bool = False) -> tuple[list[str], dict[str, int]]:
    """Record the app under load; with `busy_beside`, on one CPU shared with two busy processes."""
    pytest.importorskip("fastapi")
    port = free_port()
    command = ["-m", "uvicorn", "app:app", "--port", str(port), "--log-level", "warning"]
    if not busy_beside:
        return served(tmp, app_source, command, port, list(PATHS))
    cpu = {min(os.sched_getaffinity(0))}
    hogs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], preexec_fn=lambda: os.sched_setaffinity(0, cpu))
        for _ in range(2)
    ]
    try:
        return served(tmp, app_source, command, port, list(PATHS), cpus=cpu)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> dict[str, tuple[list[str], dict[str, int]]]:
    """A, A again (same build), A on a CPU shared with a busy process, and B (/cpu three times as dear)."""
    return {
        name: record_fastapi(tmp_path_factory.mktemp(name), source, busy_beside=name == "a_busy")
        for name, source in [("a", APP), ("a2", APP), ("a_busy", APP), ("b", SLOWER_APP)]
    }


def diff_json(base: list[str], new: list[str], *args: str) -> dict:
    result = analyze("diff", base[0], new[0], *args, "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def routes_of(diff: dict) -> dict[str, dict]:
    return {row["route"]: row for row in diff["routes"]}


def test_a_like_recording_of_the_same_build_changes_no_route(recordings):
    (a, a_counts), (a2, a2_counts) = recordings["a"], recordings["a2"]
    diff = diff_json(a, a2, "--by", "route")
    assert diff["schema_minor"] == 3
    routes = routes_of(diff)
    for path, route in PATHS.items():
        row = routes[route]
        assert row["status"] == "unchanged", row
        # The counts behind the rates: the requests the load generator got answers for.
        assert (row["base"]["requests"], row["new"]["requests"]) == (a_counts[path], a2_counts[path]), row


@pytest.mark.parametrize("order", ["quiet_then_busy", "busy_then_quiet"])
def test_the_same_build_on_a_busier_machine_changes_no_route(recordings, order):
    (a, a_counts), (busy, busy_counts) = recordings["a"], recordings["a_busy"]
    (base, base_counts), (new, new_counts) = ((a, a_counts), (busy, busy_counts))[:: 1 if order[0] == "q" else -1]
    diff = diff_json(base, new, "--by", "route")
    # The busy process beside one recording did slow the loop's CPU-bound code...
    cpu = routes_of(diff)["GET /cpu"]
    slowed = cpu["new"]["loop_ms_per_request"] / cpu["base"]["loop_ms_per_request"]
    assert (slowed > 1.25) if order[0] == "q" else (slowed < 0.8), cpu
    for path, route in PATHS.items():
        row = routes_of(diff)[route]
        # ...but no route by more than the others: none changed.
        assert row["status"] == "unchanged", row
        assert (row["base"]["requests"], row["new"]["requests"]) == (base_counts[path], new_counts[path]), row
        assert row["machine_band"]["peers"] == len(PATHS) - 1, row


def test_a_slower_route_is_regressed_and_only_it(recordings):
    (a, _), (b, b_counts) = recordings["a"], recordings["b"]
    routes = routes_of(diff_json(a, b, "--by", "route"))
    cpu = routes["GET /cpu"]
    assert cpu["status"] == "regressed", cpu
    assert cpu["loop_rise_p_value"] < 0.01, cpu
    # Three times the work; the machine's speed varies between runs (up to 2.4x seen here).
    assert cpu["new"]["loop_ms_per_request"] > cpu["base"]["loop_ms_per_request"], cpu
    assert cpu["new"]["requests"] == b_counts["/cpu"]
    others = {route: row["status"] for route, row in routes.items() if route != "GET /cpu" and route in PATHS.values()}
    assert set(others.values()) == {"unchanged"}, others
    # The other way round it is an improvement.
    assert routes_of(diff_json(b, a, "--by", "route"))["GET /cpu"]["status"] == "improved"


def gate_on_routes(base: list[str], new: list[str], *args: str) -> tuple[int, dict, str]:
    """`diff --fail-on route` as a CI job runs it (no --by): exit code, JSON and stderr."""
    result = analyze("diff", base[0], new[0], "--fail-on", "route", *args, "--format", "json")
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout), result.stderr


def test_the_gate_fails_on_a_slower_route_when_asked_to_look_at_routes(recordings):
    (a, _), (b, b_counts) = recordings["a"], recordings["b"]
    code, diff, stderr = gate_on_routes(a, b)
    assert code == 1, stderr
    assert diff["gate"]["failed"] and diff["gate"]["routes_judged"] == len(PATHS), diff["gate"]
    # /cpu three times the work, no blocking event added: one reason, /cpu's, with its counts.
    (line,) = [line for line in stderr.splitlines() if line.startswith("aiocop-analyze: gate: ")]
    assert line.startswith("aiocop-analyze: gate: regressed route 'GET /cpu': loop ms per request "), stderr
    assert f" -> {b_counts['/cpu']} requests, at confidence 0.99" in line, line
    assert "outside the band the other routes set" in line, line
    # `regressed` is the groups': no group got a blocking event more, so it passes.
    assert analyze("diff", a[0], b[0], "--fail-on", "regressed", "--fail-on", "new").returncode == 0
    # `any` takes routes in.
    assert analyze("diff", a[0], b[0], "--fail-on", "any").returncode == 1


@pytest.mark.parametrize("pair", ["a_a2", "a_busy", "busy_a"])
def test_the_gate_on_routes_passes_the_same_build(recordings, pair):
    base, new = {"a_a2": ("a", "a2"), "a_busy": ("a", "a_busy"), "busy_a": ("a_busy", "a")}[pair]
    code, diff, stderr = gate_on_routes(recordings[base][0], recordings[new][0])
    assert code == 0, stderr
    assert diff["gate"]["routes_judged"] == len(PATHS) and diff["gate"]["reasons"] == [], diff["gate"]


def test_a_gate_on_routes_that_judged_none_says_so(demo_trace):
    # The demo app serves no route: the gate passes, and says it judged none.
    result = analyze("diff", str(demo_trace), str(demo_trace), "--fail-on", "route")
    assert result.returncode == 0, result.stderr
    assert "Warning: --fail-on route judged no route" in result.stdout, result.stdout
    assert "0 routes judged): passed" in result.stdout, result.stdout


def test_the_route_diff_in_table_markdown_html_and_csv(recordings):
    (a, _), (b, _) = recordings["a"], recordings["b"]
    table = analyze("diff", a[0], b[0], "--by", "route").stdout
    assert re.search(r"│ regressed ┆ GET /cpu\s*┆\s*[\d.]+ → [\d.]+ \(\+\d+%\) ┆", table), table
    markdown = analyze("diff", a[0], b[0], "--by", "route", "--format", "markdown").stdout
    assert re.search(r"\| \*\*regressed\*\* \| `GET /cpu` \| [\d.]+ → [\d.]+ \(\+\d+%\) \|", markdown), markdown
    html = analyze("diff", a[0], b[0], "--by", "route", "--format", "html").stdout
    assert 'id="routes"' in html and "GET /cpu" in html
    text = analyze("diff", a[0], b[0], "--by", "route", "--format", "csv", "--csv-table", "routes").stdout
    rows = {row["route"]: row for row in csv.DictReader(io.StringIO(text))}
    assert rows["GET /cpu"]["status"] == "regressed"
    assert float(rows["GET /cpu"]["new_loop_ms_per_request"]) > float(rows["GET /cpu"]["base_loop_ms_per_request"])
    # A diff's CSV holds groups, routes or tasks, nothing else.
    refused = analyze("diff", a[0], b[0], "--format", "csv", "--csv-table", "stalls")
    assert refused.returncode == 2 and "--csv-table" in refused.stderr and "Traceback" not in refused.stderr


def test_the_routes_table_in_markdown_html_and_csv_is_the_jsons(recordings):
    a, _ = recordings["a"]
    routes = report_json("--by", "route", *a)["routes"]
    assert {r["route"] for r in routes} >= set(PATHS.values())
    markdown = analyze("--by", "route", "--format", "markdown", *a).stdout
    for row in routes:
        assert f"| {row['rank']} | `{row['route']}` | {row['requests']} |" in markdown, markdown
    html = analyze("--by", "route", "--format", "html", *a).stdout
    assert 'id="routes"' in html and "GET /render/{page}" in html
    text = analyze("--by", "route", "--format", "csv", "--csv-table", "routes", *a).stdout
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["route"], int(r["requests"])) for r in rows] == [(r["route"], r["requests"]) for r in routes]


def frame_fills(svg: str) -> set[str]:
    """The fills of the flame graph's frames (black is text, the background a gradient)."""
    return set(re.findall(r'<rect x="[^"]*" y="[^"]*" width="[^"]*" height="[^"]*" fill="(rgb\([^)]*\))"', svg))


def titles_coloured(svg: str) -> list[str]:
    """The titles of the frames not drawn white."""
    frames = re.findall(r'<g><title>([^<]*)</title><rect [^>]*fill="(rgb\([^)]*\))"', svg)
    return [title for title, fill in frames if fill != "rgb(250,250,250)"]


def flame_diff(base: list[str], new: list[str]) -> str:
    result = analyze("flamegraph", *new, "--diff", *base)
    assert result.returncode == 0, result.stderr
    return result.stdout


def legend_of(svg: str) -> list[str]:
    """The lines written under a differential flame graph's frames."""
    return re.findall(r'<text class="legend" x="10" y="\d+">([^<]*)</text>', svg)


def unstacked_pct(trace: list[str]) -> float:
    """The share of a recording's busy time on what ran with no stack under it, from its folded stacks."""
    result = analyze("flamegraph", *trace, "--format", "folded")
    assert result.returncode == 0, result.stderr
    lines = [line.rsplit(" ", 1) for line in result.stdout.splitlines()]
    total = sum(int(ns) for _, ns in lines)
    return round(100 * sum(int(ns) for stack, ns in lines if ";" not in stack) / total, 1)


def test_the_differential_flame_graph_of_an_a_a_pair_says_what_its_colours_are_worth(recordings):
    # Two recordings of one build on a shared machine: /cpu's 2-4 ms requests
    # fall under the 2 ms sampling limit in one and past it in the other as
    # the load changes, moving time between run_asgi and app:work; no test of
    # the stacks can tell that from a change. The picture says what its
    # colours are worth, with the counts behind them, where it is seen.
    (a, _), (a2, _) = recordings["a"], recordings["a2"]
    svg = flame_diff(a, a2)
    legend = legend_of(svg)
    assert len(legend) == 4, legend
    counts = re.search(r"Coloured: (\d+) of (\d+) stacks? tested \(of (\d+) on either side", legend[0])
    assert counts, legend
    coloured, tested, stacks = map(int, counts.groups())
    assert coloured <= tested <= stacks, legend
    assert f"Coloured: {coloured} of {tested} stack" in svg  # the subtitle, at the top
    assert f"quasi-Poisson rate test, Holm-adjusted over the {tested} tested, confidence 0.99" in legend[1], legend
    # It does not claim an A/A pair is white: chance colours none, a change of load does.
    assert legend[2].startswith("By chance alone an A/A pair colours no stack (99 pairs of 100); a change of the")
    assert legend[2].endswith("A/A pairs measured on a loaded machine coloured 0-8."), legend
    # The shares it gives are the recordings' own, and it says when they differ.
    base_pct, new_pct = unstacked_pct(a), unstacked_pct(a2)
    assert legend[3].startswith(f"Time with no stack under what ran: base {base_pct:g}%, new {new_pct:g}%"), legend
    low, high = min(base_pct, new_pct), max(base_pct, new_pct)
    differ = high > 1.2 * low and high - low >= 5
    assert ("these differ by more than 20%, time moved between what ran and its stacks" in legend[3]) == differ
    # What it counts is what it draws.
    assert (frame_fills(svg) == {"rgb(250,250,250)"}) == (coloured == 0), (coloured, titles_coloured(svg))


def test_the_differential_flame_graph_of_a_slower_route_is_red_there(recordings):
    (a, _), (b, _) = recordings["a"], recordings["b"]
    svg = flame_diff(a, b)
    coloured = titles_coloured(svg)
    red = [
        title
        for title, fill in re.findall(r'<g><title>([^<]*)</title><rect [^>]*fill="(rgb\([^)]*\))"', svg)
        if fill.startswith("rgb(255,")
    ]
    # /cpu's handler (app:cpu) works three times as long: red there.
    assert any(title.startswith(("app:cpu", "app:work")) for title in red), coloured


@pytest.fixture(scope="module")
def demo_trace(tmp_path_factory) -> Path:
    trace = tmp_path_factory.mktemp("demo") / "demo-trace.bin"
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo_app.py"), str(trace)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return trace


# A cut word: an ellipsis followed by a letter or digit (`…nts.py`, `(import …auto)`).
CUT = re.compile(r"…[A-Za-z0-9_]")


def assert_nothing_cut(text: str) -> None:
    cut = [line for line in text.splitlines() if CUT.search(line)]
    assert not cut, "names cut:\n" + "\n".join(cut) + "\n\n" + text


def widest_line_of_each_table(text: str) -> dict[str, int]:
    """The widest line of each table (a run of lines drawn with box characters), by the line before it."""
    widths: dict[str, int] = {}
    title = ""
    for line in text.splitlines():
        if line[:1] in "┌╭├│└╰":
            widths[title] = max(widths.get(title, 0), len(line))
        else:
            title = line[:40] or title
    return widths


@pytest.mark.parametrize("columns", [80, 100, 120])
@pytest.mark.parametrize("by", ["entry-point", "app-frame", "stack", "route"])
def test_every_table_fits_the_terminal_and_no_name_is_cut(recordings, demo_trace, columns, by):
    a, _ = recordings["a"]
    b, _ = recordings["b"]
    # A diff's cells (`12.177 → 30.473 (+150%)`) wrap between words, an arrow
    # kept with its number, so that its keys keep their names at every width.
    runs = [["--by", by, str(demo_trace)], ["--by", by, *a], ["diff", a[0], b[0], "--by", by, "--all"]]
    for args in runs:
        text = run_on_terminal(args, columns, cwd=Path("/"))
        assert_fits(text, columns)
        widths = widest_line_of_each_table(text)
        assert widths and max(widths.values()) <= columns, widths
        # At 80 columns the Blocking I/O table's numbers and event lists leave
        # a key fewer columns than some names take: fitting comes first there.
        if columns >= 100 or args[0] == "diff":
            assert_nothing_cut(text)
