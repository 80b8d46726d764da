"""Samples weigh the time they stand for: no safepoint bias when C code holds the GIL.

Recording's samples run at the loop thread's next eval-breaker check, which
C code holding the GIL (a sort, the C JSON encoder, a regex, ``str.join``,
pydantic-core) delays until it returns. Each sample weighs the time since
the previous one of its slice, so a long C call's time goes to the Python
function that called it, not to whatever runs after it; and a sample whose
request waited over two intervals shows a ``[native]`` frame under its
caller. Real programs run under ``python -m aiocop record``; the traces are
read back by the ``aiocop-analyze`` executable.
"""

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import analyze, report_json

# Each slice: 20-40 ms (on a quiet machine) of one C call made from `work`, then `finish` (a little
# Python) and a short sleep. `SETUP` builds the call's input once.
PROGRAM = textwrap.dedent(
    """
    import asyncio, json, re, sys, time

    {setup}

    def work():
        return {call}

    def finish(result):
        total = 0
        for _ in range(50):
            total += 1
        return total

    async def main():
        for _ in range(10):
            finish(work())
            await asyncio.sleep(0.005)

    asyncio.run(main())
    """
)

PYDANTIC_SETUP = """
from pydantic import BaseModel

class Item(BaseModel):
    name: str
    price: float
    tags: list[str]

class Order(BaseModel):
    items: list[Item]

PAYLOAD = {"items": [{"name": f"item{i}", "price": i * 1.5, "tags": ["a", "b", "c"]} for i in range(20_000)]}
# Kept: freeing 20,000 models is C code too, run as `finish` returns, where no
# eval-breaker check follows until `asyncio.sleep` (whose time it would be).
ORDERS = []
"""

# (name, setup, the call in `work`, --by): the C work sits right under `work`
# for `function`; json.dumps runs C under json's own frames: `app-frame`.
# Each call's result is dropped as `finish` returns; freeing a big one is more C code, run as
# `finish` returns, where no eval-breaker check follows until the next await: its time lands on
# the next check (`main` on 3.11, the first line of `asyncio.tasks:sleep` on 3.12 and later),
# which no sample taken by the loop thread can place better (reading the frames from the
# watchdog could). Freeing the sort's 150,000-item list takes 0.5-1 ms (1-2% of the sort; the
# refcounts of floats scattered in memory), up to 3.7% of the slices with a loaded machine's
# scheduling on top: so `sorted`'s result is kept, as the pydantic models are, and the test
# weighs the sort alone.
C_CALLS = [
    (
        "sorted",
        "import random; DATA = [random.random() for _ in range(150_000)]; KEPT = []",
        "KEPT.append(sorted(DATA))",
        "function",
    ),
    ("json.dumps", "DATA = [{'k': i, 'v': [i] * 8} for i in range(30_000)]", "json.dumps(DATA)", "app-frame"),
    ("re.sub", "TEXT = 'ab' * 1_000_000; PATTERN = re.compile('b')", "PATTERN.sub('c', TEXT)", "function"),
    ("str.join", "PARTS = ['xy'] * 3_000_000", "''.join(PARTS)", "function"),
    ("pydantic", PYDANTIC_SETUP, "ORDERS.append(Order.model_validate(PAYLOAD))", "app-frame"),
]


def record(tmp_path: Path, setup: str, call: str) -> Path:
    script, trace = tmp_path / "app.py", tmp_path / "app.bin"
    script.write_text(PROGRAM.format(setup=textwrap.indent(setup, "").strip(), call=call))
    result = subprocess.run(
        [sys.executable, "-m", "aiocop", "record", "-o", str(trace), "--", str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    return trace


def shares(report: dict, suffix: str) -> float:
    """The share of the loop's busy time of the groups whose key ends with `suffix`."""
    return sum(g["share"] for g in report["loop_time"]["groups"] if g["key"].endswith(suffix))


@pytest.mark.parametrize(("name", "setup", "call", "by"), C_CALLS, ids=[c[0] for c in C_CALLS])
def test_a_long_c_call_counts_to_the_function_that_called_it(tmp_path, name, setup, call, by):
    if name == "pydantic" and importlib.util.find_spec("pydantic") is None:
        pytest.skip("pydantic is not installed")
    trace = record(tmp_path, setup, call)
    report = report_json("--by", by, "--top", "0", str(trace))
    assert report["loop_time"]["samples"] > 0, "the slices were sampled"
    groups = {g["key"]: round(g["share"], 3) for g in report["loop_time"]["groups"]}
    work, after = shares(report, "work"), shares(report, "finish") + shares(report, "sleep")
    assert work >= 0.95, f"{name}: {groups}"
    assert after <= 0.03, f"{name}: {groups}"
    # The time was in C code called from `work`, and the report says so.
    (work_row,) = [g for g in report["loop_time"]["groups"] if g["key"].endswith("work")]
    assert "native" in work_row["via"], work_row
    assert "count-weighted" not in analyze(str(trace)).stdout


def test_the_flame_graph_puts_the_c_call_in_a_native_frame_under_its_caller(tmp_path):
    name, setup, call, _ = C_CALLS[0]
    trace = record(tmp_path, setup, call)
    folded = tmp_path / "flame.folded"
    result = analyze("flamegraph", "--format", "folded", "-o", str(folded), str(trace))
    assert result.returncode == 0, result.stderr
    lines = [line.rsplit(" ", 1) for line in folded.read_text().splitlines()]
    total = sum(int(ns) for _, ns in lines)
    native = sum(int(ns) for stack, ns in lines if stack.endswith(";[native]") and "work" in stack.split(";")[-2])
    assert native >= 0.9 * total, lines


def test_an_old_trace_is_count_weighted_and_the_report_says_so_once():
    # A format 1.2 trace, recorded before samples carried their times.
    old = Path(__file__).parent / "data" / "format-1.2-samples.aiocop"
    report = analyze(str(old))
    assert report.returncode == 0, report.stderr
    assert report.stdout.count("Samples count-weighted: the trace's samples carry no times") == 1
