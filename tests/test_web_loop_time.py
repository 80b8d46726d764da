"""End to end on a real web app: a Starlette app under uvicorn, recorded with
``python -m aiocop record``, driven by an asyncio HTTP load generator, stopped
with SIGINT, and read back with ``aiocop-analyze``: the Loop time table says
where the loop's time went.

The app has a clean route, two routes with blocking I/O (sqlite3, open) and
a route that spends about 12 ms of pure CPU per request, under the 30 ms
threshold: no slow-task report and no blocking event ever names it, but its
slices are most of the loop's busy time.
"""

import asyncio
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import analyze, report_json

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

WEBAPP = textwrap.dedent(
    """
    import sqlite3
    import time

    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route


    def crunch(seconds):
        deadline = time.perf_counter() + seconds
        n = 0
        while time.perf_counter() < deadline:
            n += 1
        return n


    async def clean(request):
        return PlainTextResponse("ok")


    async def db(request):
        with sqlite3.connect("web.sqlite3") as connection:  # LINE_SQLITE
            row = connection.execute("select count(*) from sqlite_master").fetchone()
        return PlainTextResponse(str(row[0]))


    async def read_file(request):
        with open(__file__, "rb") as f:  # LINE_OPEN
            size = len(f.read())
        return PlainTextResponse(str(size))


    async def cpu(request):
        return PlainTextResponse(str(crunch(0.012)))


    app = Starlette(routes=[Route("/clean", clean), Route("/db", db), Route("/file", read_file), Route("/cpu", cpu)])
    """
)

PATHS = ["/clean", "/db", "/file", "/cpu"]
LOAD_SECONDS = 4.0
CONNECTIONS = 4


def line_of(marker: str) -> int:
    return next(n for n, line in enumerate(WEBAPP.splitlines(), start=1) if marker in line)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_for_server(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def client(port: int, first: int, deadline: float, counts: dict[str, int]) -> None:
    """One keep-alive connection asking for each path in turn until the deadline."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = first
    while time.monotonic() < deadline:
        path = PATHS[i % len(PATHS)]
        i += 1
        writer.write(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200"), head
        length = next(
            int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
        await asyncio.wait_for(reader.readexactly(length), 5)
        counts[path] = counts.get(path, 0) + 1
    writer.close()


async def drive(port: int) -> dict[str, int]:
    await wait_for_server(port, timeout_s=10)
    counts: dict[str, int] = {}
    deadline = time.monotonic() + LOAD_SECONDS
    await asyncio.gather(*(client(port, c, deadline, counts) for c in range(CONNECTIONS)))
    return counts


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> tuple[Path, Path, dict[str, int]]:
    tmp = tmp_path_factory.mktemp("web")
    (tmp / "webapp.py").write_text(WEBAPP)
    trace, port = tmp / "web.bin", free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "aiocop", "record", "-o", str(trace), "--"]
        + ["-m", "uvicorn", "webapp:app", "--port", str(port), "--log-level", "warning"],
        cwd=tmp,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        counts = asyncio.run(drive(port))
    finally:
        server.send_signal(signal.SIGINT)
        try:
            _, stderr = server.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            _, stderr = server.communicate()
    assert server.returncode == 0, stderr
    return tmp / "webapp.py", trace, counts


def test_the_cpu_route_is_the_top_loop_time_group_and_the_io_routes_have_their_time(served):
    app, trace, counts = served
    assert all(counts.get(path, 0) >= 20 for path in PATHS), counts
    report = report_json("--by", "app-frame", str(trace))
    loop_time = report["loop_time"]
    groups = loop_time["groups"]

    # The CPU route's slices have no blocking I/O and are under the slow
    # threshold: recording's samples (every slice of 2 ms or more) put their
    # time on the function that burns it, most of the loop's busy time.
    # A sample is keyed by the line crunch() was at: the loop's `while` line
    # (the perf_counter() call) and, from 3.14 on, where the compiler puts
    # the loop's JUMP_BACKWARD on its body's last line (`n += 1`; 3.12 and
    # 3.13 put it on the `while` line), the body's line too. Both are eval
    # breaker checks, where the pending call that samples runs. So the route's
    # time is crunch()'s groups together (on 3.14: about 76% and 24%).
    # None is marked `native`: crunch() runs Python, whose samples wait for
    # no C call, even when a loaded machine deschedules the loop thread (the
    # marker counts the loop thread's CPU time over a wait, not the wait).
    top = groups[0]
    cpu_ms = counts["/cpu"] * 12
    from_samples = ["samples"]
    assert top["key"].endswith(":crunch") and top["via"] == from_samples and top["io_ms"] == 0, top
    crunch = [g for g in groups if g["key"].endswith(":crunch")]
    others = [g for g in groups if not g["key"].endswith(":crunch")]
    assert all(g["via"] == from_samples and g["io_ms"] == 0 for g in crunch), crunch
    route_ms = sum(g["busy_ms"] for g in crunch)
    assert top["share"] > 0.5, top
    assert route_ms >= 0.9 * cpu_ms, (crunch, counts)
    # Every other group is far smaller.
    assert route_ms > 5 * max(g["busy_ms"] for g in others)

    # The I/O routes are there with their time, at the app's own lines.
    by_key = {g["key"]: g for g in groups}
    for marker, function, path in [("LINE_SQLITE", "db", "/db"), ("LINE_OPEN", "read_file", "/file")]:
        group = by_key[f"{app}:{line_of(marker)}:{function}"]
        assert group["slices"] == counts[path], (group, counts)
        assert group["via"] == ["events"] and group["io_ms"] == group["busy_ms"] > 0
        assert group["example_trace"].startswith(f"{app}:{line_of(marker)}:{function}")
    severity_keys = [g["key"] for g in report["groups"]]
    assert f"{app}:{line_of('LINE_SQLITE')}:db" in severity_keys

    # Every slice's time is in a group, to the microsecond.
    total = sum(round(g["busy_ms"] * 1000) for g in groups) + round(loop_time["groups_not_shown_busy_ms"] * 1000)
    assert total == round(loop_time["busy_ms"] * 1000)
    # Most of the long slices' time is the CPU route's, and a stack explains
    # at least 95% of it.
    assert loop_time["long_slice_ms"] >= 0.9 * cpu_ms
    assert loop_time["long_slice_attributed_ms"] >= 0.95 * loop_time["long_slice_ms"], loop_time

    # --sort busy puts the route with most loop time first among the blocking ones.
    by_busy = report_json("--by", "app-frame", "--sort", "busy", str(trace))["groups"]
    assert by_busy[0]["busy_ms"] == max(g["busy_ms"] for g in by_busy)


def test_the_table_opens_with_the_loop_time(served):
    app, trace, _ = served
    text = analyze("--by", "app-frame", str(trace)).stdout
    assert text.startswith("Loop time: "), text[:300]
    assert "is explained by a stack" in text.splitlines()[0]
    assert text.index("Loop time") < text.index("Stalls") < text.index("Blocking I/O by app frame")
    assert f"{app}:{line_of('LINE_SQLITE')}:db" in text
