"""End to end: the pictures of a real recording (``aiocop-analyze timeline``
and ``aiocop-analyze flamegraph``).

A real asyncio program records itself with ``aiocop.start_recording()`` in a
fresh interpreter; the trace is read back with ``aiocop.read_trace()`` (the
recording's slices, events and stacks) and with the ``aiocop-analyze``
executable (the report's loop time), and each picture is checked
against them.
"""

import gzip
import json
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ElementTree
from collections import defaultdict
from pathlib import Path

import aiocop
import pytest
from conftest import analyze, report_json

PROGRAM = textwrap.dedent(
    """
    import asyncio, sys, time
    import aiocop

    def spin(seconds):
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            pass

    def read_config(path):
        with open(path) as f:
            return f.read()

    async def handler(path):
        read_config(path)
        time.sleep(0.02)
        await asyncio.sleep(0)

    async def crunch():
        spin(0.03)

    async def main(path):
        aiocop.activate()
        await asyncio.sleep(0)
        for _ in range(4):
            await asyncio.create_task(handler(path), name="handler-task")
            await asyncio.create_task(crunch(), name="crunch-task")
        for _ in range(200):
            await asyncio.sleep(0)

    trace, config = sys.argv[1], sys.argv[2]
    aiocop.start_recording(trace, label="v1.4.2", flush_interval_s=0.05)
    asyncio.run(main(config))
    aiocop.stop_recording()
    """
)


def record(directory: Path, program: str) -> Path:
    script, trace, config = directory / "app.py", directory / "trace.bin", directory / "shop.toml"
    script.write_text(program)
    config.write_text("[shop]\n")
    result = subprocess.run(
        [sys.executable, str(script), str(trace), str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=directory,
    )
    assert result.returncode == 0, result.stderr
    return trace


@pytest.fixture(scope="module")
def trace(tmp_path_factory) -> Path:
    return record(tmp_path_factory.mktemp("views"), PROGRAM)


def timeline_events(trace: Path, out: Path, *args: str) -> tuple[list[dict], str]:
    result = analyze("timeline", str(trace), "-o", str(out), *args)
    assert result.returncode == 0, result.stderr
    opener = gzip.open if out.suffix == ".gz" else open
    with opener(out, "rt") as f:
        return json.load(f)["traceEvents"], result.stderr


def is_slice(event: dict) -> bool:
    return event["ph"] == "X" and event.get("cat") != "stall"


def test_the_timeline_holds_every_slice_with_its_events_at_their_offsets(trace, tmp_path):
    recorded = aiocop.read_trace(str(trace))["slices"]
    events, stderr = timeline_events(trace, tmp_path / "timeline.json")
    assert stderr == ""
    # Each slice is followed by its instants: group them under it.
    slices: list[tuple[dict, list[dict]]] = []
    for event in events:
        if is_slice(event):
            slices.append((event, []))
        elif event["ph"] == "i":
            slices[-1][1].append(event)
    assert len(slices) == len(recorded) > 200
    starts = [s["ts"] for s, _ in slices]
    assert starts == sorted(starts)
    for (event, instants), record in zip(slices, recorded, strict=True):
        assert event["name"] == record["what"]
        assert abs(event["dur"] * 1000 - record["duration_ns"]) < 1
        assert event["args"]["overran"] == record["exceeded"] and event["args"]["score"] == record["score"]
        assert event["args"].get("task") == record["task"]
        blocking = [i for i in instants if i["cat"] == "blocking"]
        assert [(i["name"], i["args"]["args"], i["args"]["stack"]) for i in blocking] == [
            (e["event"], e["args"], e["stack"]) for e in record["events"]
        ]
        for instant, recorded_event in zip(blocking, record["events"], strict=True):
            assert abs((instant["ts"] - event["ts"]) * 1000 - recorded_event["offset_ns"]) < 1
        samples = [i for i in instants if i["cat"] == "sample"]
        assert [i["args"]["stack"] for i in samples] == record["samples"]
        assert all(event["ts"] <= i["ts"] <= event["ts"] + event["dur"] for i in instants)
    opens = [i for _, instants in slices for i in instants if i["name"] == "open"]
    assert len(opens) == 4 and all(i["args"]["stack"][0].endswith(":read_config") for i in opens)
    # Every slice of the threshold (30 ms) or more, a crunch step, is inside a stall.
    stalls = [e for e in events if e.get("cat") == "stall"]
    threshold_us = aiocop.read_trace(str(trace))["header"]["threshold_ns"] / 1000
    long = [s for s, _ in slices if s["dur"] >= threshold_us]
    assert len(long) >= 4 and stalls
    for s in long:
        assert any(t["ts"] <= s["ts"] and s["ts"] + s["dur"] <= t["ts"] + t["dur"] + 0.001 for t in stalls), s
    names = {e["args"]["name"] for e in events if e["name"] in ("process_name", "thread_name")}
    assert any(name.endswith("[v1.4.2]") for name in names) and "loop thread 1" in names, names


def test_min_ms_keeps_the_longer_slices_and_says_how_many_it_left_out(trace, tmp_path):
    recorded = aiocop.read_trace(str(trace))["slices"]
    events, stderr = timeline_events(trace, tmp_path / "timeline.json.gz", "--min-ms", "1")
    kept = [s for s in recorded if s["duration_ns"] >= 1_000_000]
    assert [e["name"] for e in events if is_slice(e)] == [s["what"] for s in kept]
    assert 8 <= len(kept) < len(recorded)
    left_out = len(recorded) - len(kept)
    assert stderr == (
        f"aiocop-analyze: note: --min-ms 1 left out {left_out} of {len(recorded)} slices (shorter than 1 ms)\n"
    )


def test_the_flame_graph_is_svg_naming_the_app_functions_of_samples_and_events(trace, tmp_path):
    out = tmp_path / "flame.svg"
    result = analyze("flamegraph", str(trace), "-o", str(out))
    assert result.returncode == 0, result.stderr
    root = ElementTree.parse(out).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    titles = [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}title")]
    functions = {title.split(" (")[0] for title in titles}
    # Events: open in read_config, time.sleep in handler; samples: spin under crunch.
    assert {"read_config", "handler", "crunch", "spin"} <= functions, functions
    assert any(title.startswith("all (") for title in titles)


def entry_point(frame: str) -> str:
    """A folded frame, ``function (path:line)``, as the report keys it: ``path:line:function``."""
    if frame.endswith(")") and " (" in frame:
        function, at = frame[:-1].split(" (", 1)
        return f"{at}:{function}"
    return frame


def test_the_folded_stacks_add_up_to_the_reports_busy_time_per_key(trace):
    result = analyze("flamegraph", str(trace), "--format", "folded")
    assert result.returncode == 0, result.stderr
    by_key: dict[str, float] = defaultdict(float)
    total_ns = 0
    for line in result.stdout.splitlines():
        stack, ns = line.rsplit(" ", 1)
        by_key[entry_point(stack.split(";")[-1])] += int(ns) / 1e6
        total_ns += int(ns)
    loop_time = report_json(str(trace), "--top", "0")["loop_time"]
    assert abs(total_ns / 1e6 - loop_time["busy_ms"]) < 0.001
    expected = {group["key"]: group["busy_ms"] for group in loop_time["groups"]}
    assert set(by_key) == set(expected)
    for key, busy_ms in expected.items():
        assert abs(by_key[key] - busy_ms) < 0.002, (key, by_key[key], busy_ms)
    # A sampled crunch step's whole time is its samples', in the spin.
    recorded = aiocop.read_trace(str(trace))["slices"]
    sampled_ms = sum(s["duration_ns"] for s in recorded if s["what"] == "crunch" and s["samples"]) / 1e6
    spin_ms = sum(ms for key, ms in by_key.items() if key.endswith(":spin"))
    assert sampled_ms >= 2 * 30 and 0.9 * sampled_ms <= spin_ms <= sampled_ms + 0.001, (spin_ms, sampled_ms)


def test_a_missing_output_directory_is_one_line_and_exit_2(trace, tmp_path):
    for command in ("timeline", "flamegraph"):
        result = analyze(command, str(trace), "-o", str(tmp_path / "missing" / "out"))
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1 and "cannot write" in result.stderr


def test_a_diff_matches_the_frames_of_two_releases_by_identity(trace, tmp_path):
    # The next release: deployed elsewhere, every line moved down by three.
    moved = record(tmp_path, "# release 2\n" * 3 + PROGRAM)
    result = analyze("flamegraph", str(moved), "--diff", str(trace), "--format", "folded")
    assert result.returncode == 0, result.stderr
    lines = {}
    for line in result.stdout.splitlines():
        stack, base_ns, new_ns = line.rsplit(" ", 2)
        lines[stack] = (int(base_ns), int(new_ns))
    # Frames are module:qualname (a script's path for __main__): no line, no directory.
    [read_config] = [stack for stack in lines if stack.endswith(";app.py:read_config")]
    assert read_config == "handler;app.py:handler;app.py:read_config"
    assert all(ns > 0 for ns in lines[read_config])
    spins = [times for stack, times in lines.items() if stack.endswith(";app.py:spin")]
    assert spins and all(base > 0 and new > 0 for base, new in spins)
    svg = analyze("flamegraph", str(moved), "--diff", str(trace), "-o", str(tmp_path / "diff.svg"))
    assert svg.returncode == 0, svg.stderr
    ElementTree.parse(tmp_path / "diff.svg")
