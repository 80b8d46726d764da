"""Recording every process of a real deployment, as users run one.

A FastAPI app served by uvicorn with two workers and by gunicorn with uvicorn
workers, driven by a small load generator and stopped by SIGTERM to the
parent; multiprocessing pools of each start method whose workers run
asyncio. Every process that runs a loop leaves one complete trace, read back
by the real CLI; processes that run none leave no file.
"""

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import aiocop
import pytest

ANALYZE = str(Path(sys.executable).with_name("aiocop-analyze"))

APP = textwrap.dedent(
    """
    import os
    from fastapi import FastAPI

    app = FastAPI()
    DATA = os.environ["APP_DATA"]

    @app.get("/clean")
    async def clean():
        return {"ok": True}

    @app.get("/io/{n}")
    async def io(n: int):
        open(os.path.join(DATA, f"req-{n}"), "w").close()  # blocking I/O on the loop
        return {"n": n}
    """
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def _get(port: int, path: str) -> bool:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    response = await reader.read()
    writer.close()
    return response.startswith(b"HTTP/1.1 200")


def generate_load(port: int, seconds: float, concurrency: int = 6) -> list[int]:
    """Request /clean and /io/N for `seconds`; the Ns of the /io requests answered 200."""

    async def main() -> list[int]:
        answered: list[int] = []
        deadline = time.monotonic() + seconds
        counter = iter(range(1_000_000))

        async def client() -> None:
            while time.monotonic() < deadline:
                n = next(counter)
                path = f"/io/{n}" if n % 2 else "/clean"
                try:
                    if await asyncio.wait_for(_get(port, path), 5) and n % 2:
                        answered.append(n)
                except (TimeoutError, OSError):
                    await asyncio.sleep(0.05)

        await asyncio.gather(*(client() for _ in range(concurrency)))
        return answered

    return asyncio.run(main())


def wait_until_serving(port: int, server: subprocess.Popen, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert server.poll() is None, server.communicate()
        try:
            if asyncio.run(_get(port, "/clean")):
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("the server did not start")


def child_pids(pid: int) -> set[int]:
    """The children of `pid` that serve: not multiprocessing's resource tracker."""
    children = {int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    return {child for child in children if b"resource_tracker" not in command_line(child)}


def command_line(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def serve_load_and_stop(tmp_path: Path, server_command: list[str], workers: int) -> tuple[list[int], set[int], str]:
    """Record a server under load, stop it with SIGTERM to its parent.

    Returns the /io requests answered, the pids of the processes that served
    (the parent's children that accepted connections) and the server's stderr.
    """
    (tmp_path / "app.py").write_text(APP)
    data = tmp_path / "data"
    data.mkdir()
    port = free_port()
    trace = str(tmp_path / "traces" / "w.bin")
    command = [sys.executable, "-m", "aiocop", "record", "-o", trace, "--", *server_command]
    command = [word.replace("PORT", str(port)) for word in command]
    (tmp_path / "traces").mkdir()
    env = {**os.environ, "APP_DATA": str(data)}
    server = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until_serving(port, server)
        deadline = time.monotonic() + 20
        while len(child_pids(server.pid)) < workers and time.monotonic() < deadline:
            time.sleep(0.1)
        workers_seen = child_pids(server.pid)
        answered = generate_load(port, seconds=2.5)
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
    return answered, workers_seen, stderr.decode()


def info(path: Path) -> dict:
    output = subprocess.run([ANALYZE, "info", str(path), "--format", "json"], capture_output=True, text=True)
    assert output.returncode == 0, output.stderr
    return json.loads(output.stdout)["traces"][0]


def opened_requests(trace_path: Path) -> list[int]:
    trace = aiocop.read_trace(trace_path)
    paths = [e["args"] for s in trace["slices"] for e in s["events"] if e["event"] == "open"]
    return [int(match.group(1)) for path in paths if (match := re.search(r"req-(\d+)", path))]


def requests_in_complete_worker_traces(paths: list[Path], role: str, root_program: str) -> list[int]:
    """The /io requests the traces hold, checking that each is whole and says who wrote it."""
    recorded: list[int] = []
    for path in paths:
        described = info(path)
        assert described["cut_short"] is False, f"{path.name} has no footer"
        assert described["role"] == role
        assert described["root_command"][:2] == ["-m", root_program]
        assert described["parent_pid"] != described["pid"]
        recorded += opened_requests(path)
    return recorded


def test_uvicorn_with_two_workers_leaves_one_complete_trace_per_worker(tmp_path):
    answered, workers, stderr = serve_load_and_stop(
        tmp_path,
        ["-m", "uvicorn", "app:app", "--workers", "2", "--port", "PORT", "--log-level", "warning"],
        workers=2,
    )
    assert len(answered) > 20, stderr
    traces = sorted((tmp_path / "traces").iterdir())
    # The supervisor and multiprocessing's resource tracker run no event
    # loop: no file. Each spawned worker: one, named after its pid (no {pid}
    # in the path).
    assert {p.name for p in traces} == {f"w.bin.{pid}" for pid in workers}, (traces, workers, stderr)
    recorded = requests_in_complete_worker_traces(traces, "spawn child", "uvicorn")
    assert sorted(recorded) == sorted(answered), "every answered blocking request is in a trace, once"
    report = subprocess.run([ANALYZE, *map(str, traces), "--format", "json"], capture_output=True, text=True)
    assert report.returncode == 0, report.stderr
    keys = [group["key"] for group in json.loads(report.stdout)["groups"]]
    assert any(key.endswith(":io") for key in keys), keys


def test_gunicorn_with_uvicorn_workers_leaves_one_complete_trace_per_worker(tmp_path):
    answered, workers, stderr = serve_load_and_stop(
        tmp_path,
        ["-m", "gunicorn", "app:app", "-w", "2", "-k", "uvicorn.workers.UvicornWorker", "-b", "127.0.0.1:PORT"],
        workers=2,
    )
    assert len(answered) > 20, stderr
    traces = {p.name: p for p in (tmp_path / "traces").iterdir()}
    worker_names = {f"w.bin.{pid}" for pid in workers}
    assert worker_names <= set(traces), (traces, workers)
    recorded = requests_in_complete_worker_traces([traces[name] for name in worker_names], "fork child", "gunicorn")
    assert sorted(recorded) == sorted(answered)
    # gunicorn's arbiter (the process started, so its file is the path
    # itself) runs an asyncio loop of its own, its control socket server, in
    # a thread: that is the only other trace, and it is whole.
    assert set(traces) - worker_names <= {"w.bin"}
    if "w.bin" in traces:
        described = info(traces["w.bin"])
        assert described["role"] == "main" and described["cut_short"] is False
        whats = {s["what"] for s in aiocop.read_trace(traces["w.bin"])["slices"]}
        assert not any(what.endswith("io") for what in whats), whats


POOL = textwrap.dedent(
    """
    import asyncio, multiprocessing, os, sys, time

    async def work(path):
        with open(path, "w") as f:  # blocking I/O on the worker's loop
            f.write(str(os.getpid()))
        await asyncio.sleep(0)

    def job(path):
        asyncio.run(work(path))
        time.sleep(0.2)  # so that every worker of the pool takes a job
        return os.getpid()

    if __name__ == "__main__":
        context = multiprocessing.get_context(sys.argv[1])
        with context.Pool(2) as pool:
            pids = pool.map(job, [os.path.join(sys.argv[2], f"job-{i}") for i in range(4)], chunksize=1)
        print(" ".join(map(str, sorted(set(pids)))))
    """
)


@pytest.mark.parametrize("start_method", ["spawn", "forkserver", "fork"])
def test_multiprocessing_pool_workers_running_asyncio_each_record(tmp_path, start_method):
    (tmp_path / "pool.py").write_text(POOL)
    (tmp_path / "traces").mkdir()
    (tmp_path / "out").mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "aiocop", "record", "-o", str(tmp_path / "traces" / "p-{pid}.bin"), "--"]
        + ["pool.py", start_method, str(tmp_path / "out")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    worker_pids = set(map(int, result.stdout.split()))
    traces = {int(p.stem.split("-")[1]): p for p in (tmp_path / "traces").iterdir()}
    # The parent, the resource tracker and the forkserver run no loop: no file.
    assert set(traces) == worker_pids
    expected_role = {"spawn": "spawn child", "forkserver": "forkserver child", "fork": "fork child"}[start_method]
    for path in traces.values():
        described = info(path)
        assert described["cut_short"] is False
        assert described["role"] == expected_role
        opens = [e["args"] for s in aiocop.read_trace(path)["slices"] for e in s["events"] if e["event"] == "open"]
        assert any("job-" in args for args in opens), opens


PROCESS_ENDING_IN_OS_EXIT = textwrap.dedent(
    """
    import asyncio, multiprocessing, sys

    async def work(path):
        open(path, "w").close()
        await asyncio.sleep(0)

    def child(path):
        asyncio.run(work(path))

    if __name__ == "__main__":
        process = multiprocessing.get_context("fork").Process(target=child, args=(sys.argv[1],))
        process.start()  # the child ends in os._exit() after multiprocessing's exit handler
        process.join()
        sys.exit(process.exitcode)
    """
)


def test_a_process_ending_in_os_exit_after_multiprocessing_exit_handling_writes_its_footer(tmp_path):
    (tmp_path / "main.py").write_text(PROCESS_ENDING_IN_OS_EXIT)
    result = subprocess.run(
        [sys.executable, "-m", "aiocop", "record", "-o", str(tmp_path / "t.bin"), "--flush-interval", "30"]
        + ["--", "main.py", str(tmp_path / "made")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    [trace] = list(tmp_path.glob("t.bin.*"))
    assert not (tmp_path / "t.bin").exists(), "the parent runs no loop"
    # Nothing was flushed before the exit (30 s interval): all of it comes
    # from the stop in multiprocessing's exit handler.
    assert info(trace)["cut_short"] is False
    assert any("made" in args for args in (e["args"] for s in aiocop.read_trace(trace)["slices"] for e in s["events"]))


def test_a_subprocess_running_python_records_to_a_file_of_its_own(tmp_path):
    (tmp_path / "child.py").write_text("import asyncio\nasyncio.run(asyncio.sleep(0))\n")
    parent = textwrap.dedent(
        """
        import asyncio, subprocess, sys
        async def main():
            await asyncio.sleep(0)
        asyncio.run(main())
        subprocess.run([sys.executable, "child.py"], check=True)
        """
    )
    (tmp_path / "parent.py").write_text(parent)
    result = subprocess.run(
        [sys.executable, "-m", "aiocop", "record", "-o", str(tmp_path / "t.bin"), "--", "parent.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    [child_trace] = list(tmp_path.glob("t.bin.*"))
    parent_info, child_info = info(tmp_path / "t.bin"), info(child_trace)
    assert parent_info["role"] == "main"
    assert child_info["role"] == "subprocess"
    assert child_info["parent_pid"] == parent_info["pid"]
    assert child_info["root_command"] == ["parent.py"]
