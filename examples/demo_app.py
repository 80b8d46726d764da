"""A small asyncio service with deliberate blocking calls, monitored by aiocop.

It serves a line-based protocol on 127.0.0.1, a client sends it a few
requests, and every request handler makes one mistake that freezes the event
loop (or none, for /health). The run is recorded to a trace file; at the
end it prints what the slow-task callback saw and what the trace holds.
`make demo` then prints the trace's report with `aiocop-analyze`.

Run it with `make demo`, or `.venv/bin/python examples/demo_app.py [TRACE]`
(default: demo-trace.bin).
"""

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time

import aiocop

CONFIG_PATH = os.path.join(tempfile.gettempdir(), f"aiocop-demo-{os.getpid()}.cfg")
ROUNDS = 3


def read_config() -> str:
    with open(CONFIG_PATH) as config:  # blocking file I/O on the loop
        return config.read()


async def handle_profile() -> str:
    return read_config()


async def handle_report() -> str:
    time.sleep(0.04)  # a sleep that should have been asyncio.sleep
    return "report ready"


async def handle_lookup(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=1):  # a blocking connect
        return "peer reachable"


async def handle_export() -> str:
    subprocess.run(["true"], check=True)  # a subprocess started from the loop
    return "exported"


async def handle_render() -> str:
    deadline = time.perf_counter() + 0.05
    while time.perf_counter() < deadline:  # CPU-bound work on the loop
        pass
    return "rendered"


async def handle_health() -> str:
    await asyncio.sleep(0)
    return "ok"


async def serve(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer_port: int, finished: asyncio.Event
) -> None:
    routes = {
        "/profile": handle_profile,
        "/report": handle_report,
        "/lookup": lambda: handle_lookup(peer_port),
        "/export": handle_export,
        "/render": handle_render,
        "/health": handle_health,
    }
    while line := await reader.readline():
        handler = routes.get(line.decode().strip())
        reply = await handler() if handler else "not found"
        writer.write(reply.strip().encode() + b"\n")  # one line per reply
        await writer.drain()
    writer.close()
    finished.set()


async def main() -> list[aiocop.SlowTaskEvent]:
    events: list[aiocop.SlowTaskEvent] = []
    aiocop.register_slow_task_callback(events.append)
    aiocop.activate()

    peer = socket.create_server(("127.0.0.1", 0))
    peer_port = peer.getsockname()[1]
    finished = asyncio.Event()
    server = await asyncio.start_server(lambda r, w: serve(r, w, peer_port, finished), "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
    for _ in range(ROUNDS):
        for path in ("/profile", "/report", "/lookup", "/export", "/render", "/health"):
            writer.write(path.encode() + b"\n")
            await writer.drain()
            await reader.readline()
    writer.close()
    await finished.wait()
    server.close()
    await server.wait_closed()
    peer.close()
    aiocop.deactivate()
    return events


def print_trace_summary(path: str, summary: aiocop.RecordingSummary) -> None:
    trace = aiocop.read_trace(path)
    slow = [s for s in trace["slices"] if s["exceeded"]]
    blocking = [s for s in trace["slices"] if s["events"]]
    print(
        f"\nrecorded {summary['slices']} slices ({len(blocking)} with blocking I/O, {len(slow)} over "
        f"{trace['header']['threshold_ns'] / 1e6:g} ms) and {summary['events']} blocking events "
        f"to {path}: {summary['bytes']} bytes, {summary['dropped']} dropped"
    )


if __name__ == "__main__":
    trace_path = sys.argv[1] if len(sys.argv) > 1 else "demo-trace.bin"
    with open(CONFIG_PATH, "w") as config:
        config.write("greeting = hello\n")
    aiocop.patch_audit_functions()
    aiocop.start_blocking_io_detection(trace_depth=20)
    aiocop.detect_slow_tasks(threshold_ms=30)
    aiocop.start_recording(trace_path, label="demo")
    try:
        found = asyncio.run(main())
    finally:
        recorded = aiocop.stop_recording()
        os.remove(CONFIG_PATH)
    levels = ", ".join(f"{lvl}: {sum(e.severity_level == lvl for e in found)}" for lvl in ("high", "medium", "low"))
    print(f"the slow-task callback saw {len(found)} blocking slices ({levels})")
    if recorded is not None:
        print_trace_summary(trace_path, recorded)
    sys.exit(0 if found else 1)
