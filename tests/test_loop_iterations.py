"""End to end: loop iterations recorded (format 1.3), and stalls cut at them.

A stock asyncio loop polls its selector once per iteration; the recorder
times each poll, and the analyzer cuts stalls there: a stall is an
iteration whose callbacks ran at least the threshold. uvloop's iterations
are not visible, and its stalls (like those of traces before 1.3) are still
cut by the gap heuristic, which the report says once.
"""

import asyncio
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import analyze, report_json
from test_loop_time import SHAPES, record, stall_shapes_problem
from test_web_loop_time import free_port, wait_for_server

GUESSED = "Stalls guessed: the trace does not record its loop's iterations"


def test_an_asyncio_trace_records_each_iteration_and_its_wait(tmp_path):
    # Twenty iterations that each wait about 20 ms for a timer.
    script = textwrap.dedent(
        """
        import asyncio

        async def main():
            for _ in range(20):
                await asyncio.sleep(0.02)

        asyncio.run(main())
        """
    )
    trace = record(tmp_path, script)
    data = trace.read_bytes()
    assert data[8:12] == b"\x01\x00\x04\x00", "format 1.4"
    report = report_json(str(trace))
    assert report["stalls"] == []
    assert GUESSED not in analyze(str(trace)).stdout


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_the_two_stall_shapes_are_still_one_stall_each_and_uvloop_says_its_stalls_are_guessed(tmp_path, loop):
    # uvloop's stalls are still cut by gaps (see test_loop_time for why a
    # run may be split on a loaded machine); asyncio's are iterations, which
    # preemption cannot split, but it can stretch the hundred 1 ms callbacks
    # past the ten 20 ms steps: up to five recordings, each checked in full.
    for attempt in range(5):
        trace = record(tmp_path, SHAPES, loop, name=f"app{attempt}.py")
        report = report_json(str(trace))
        problem = stall_shapes_problem(report)
        if problem is None:
            break
    assert problem is None, problem
    table = analyze(str(trace)).stdout
    if loop == "asyncio":
        assert GUESSED not in table
        ten, hundred = report["stalls"]
        # One iteration each: the ten tasks' steps, the hundred callbacks,
        # and what else was ready in that iteration (gather's callbacks).
        assert 10 <= ten["slices"] < 15 and 100 <= hundred["slices"] < 110, report["stalls"]
    else:
        assert table.count("Stalls guessed:") == 1, table
        assert GUESSED in table


SERVER = textwrap.dedent(
    """
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route


    async def clean(request):
        return PlainTextResponse("ok")


    app = Starlette(routes=[Route("/clean", clean)])
    """
)
CONNECTIONS = 16
LOAD_SECONDS = 3.0


async def hammer(port: int) -> int:
    """CONNECTIONS keep-alive connections asking for /clean back to back; the answers counted."""
    await wait_for_server(port, timeout_s=10)
    deadline = time.monotonic() + LOAD_SECONDS
    answered = 0

    async def connection() -> None:
        nonlocal answered
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.monotonic() < deadline:
            writer.write(b"GET /clean HTTP/1.1\r\nHost: test\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 200"), head
            await asyncio.wait_for(reader.readexactly(2), 10)
            answered += 1
        writer.close()

    await asyncio.gather(*(connection() for _ in range(CONNECTIONS)))
    return answered


def serve_and_hammer(tmp_path, name: str) -> tuple[dict, str]:
    """Records the server under load; its JSON report and its table."""
    trace, port = tmp_path / f"{name}.bin", free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "aiocop", "record", "-o", str(trace), "--"]
        + ["-m", "uvicorn", "server:app", "--port", str(port), "--loop", "asyncio", "--log-level", "warning"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        answered = asyncio.run(hammer(port))
    finally:
        server.send_signal(signal.SIGINT)
        try:
            _, stderr = server.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            _, stderr = server.communicate()
    assert server.returncode == 0, stderr
    assert answered > 500, answered
    return report_json(str(trace)), analyze(str(trace)).stdout


def test_a_saturated_server_on_a_clean_route_has_no_stall(tmp_path):
    pytest.importorskip("starlette")
    pytest.importorskip("uvicorn")
    (tmp_path / "server.py").write_text(SERVER)
    # The loop is busy most of the time, running request after request,
    # but it polls its selector between them, and an iteration runs at most
    # the few requests of the sixteen connections: no stall of requests.
    # (The gap heuristic, on a trace of this test: 12 "stalls", 678 ms, the
    # longest 93 ms over 1,283 slices.) A stall of one slice is one callback
    # over the threshold: uvicorn imports its protocol modules lazily in
    # its first step (about 30 ms here). On a loaded machine the scheduler
    # can take the loop's thread away for 30 ms in the middle of one
    # iteration, which then is a stall: up to three recordings.
    for attempt in range(3):
        report, table = serve_and_hammer(tmp_path, f"server{attempt}")
        assert report["loop_time"]["busy_ms"] > 0.3 * LOAD_SECONDS * 1000, report["loop_time"]
        assert GUESSED not in table
        # Whatever the machine does, a stall is one iteration: never more
        # than the sixteen connections' requests (a few slices each).
        assert all(stall["slices"] <= 4 * CONNECTIONS for stall in report["stalls"]), report["stalls"][:3]
        of_requests = [stall for stall in report["stalls"] if stall["slices"] > 1]
        if not of_requests:
            break
    assert of_requests == [], of_requests[:3]
