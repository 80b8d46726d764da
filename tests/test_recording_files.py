"""Which files a recording leaves, whatever runs it: one per process that runs a loop, never clobbered.

Also the start-up hook's manners (silent, once per process, a clear warning
for a bad path) and the visible CPU watchdog thread.
"""

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import aiocop
import pytest
from conftest import run_monitored

LOOP_PROGRAM = textwrap.dedent(
    """
    import asyncio, os, sys, time

    async def main(seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            os.stat(".")  # a blocking call per step
            await asyncio.sleep(0.001)

    asyncio.run(main(float(sys.argv[1])))
    sys.exit(int(sys.argv[2]) if len(sys.argv) > 2 else 0)
    """
)


def write_program(tmp_path: Path, source: str = LOOP_PROGRAM) -> Path:
    program = tmp_path / "program.py"
    program.write_text(source)
    return program


def run_with_environment(program: Path, trace: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AIOCOP_RECORD": trace}
    # sys.executable is the venv's python (made with `python -m venv`), in
    # which `site` reads site-packages, and so the start-up hook, twice.
    return subprocess.run(
        [sys.executable, str(program), *args], env=env, capture_output=True, text=True, timeout=60, cwd=program.parent
    )


def test_the_start_up_hook_in_a_venv_starts_one_recording_and_prints_nothing(tmp_path):
    program = write_program(tmp_path)
    result = run_with_environment(program, str(tmp_path / "t.bin"), "0.2")
    assert result.returncode == 0
    assert result.stderr == ""
    assert result.stdout == ""
    trace = aiocop.read_trace(tmp_path / "t.bin")
    assert trace["cut_short"] is False
    assert trace["header"]["role"] == "main"
    assert any(e["event"] == "os.stat" for s in trace["slices"] for e in s["events"])


def test_a_process_that_runs_no_loop_leaves_no_file(tmp_path):
    program = write_program(tmp_path, "import os\nos.stat('.')\n")
    result = run_with_environment(program, str(tmp_path / "t.bin"))
    assert (result.returncode, result.stderr) == (0, "")
    assert list(tmp_path.glob("t.bin*")) == []


def test_a_recording_that_got_no_slice_leaves_no_file(tmp_path):
    path = tmp_path / "t.bin"
    aiocop.start_recording(path)
    try:
        assert path.exists(), "the file is created (and locked) at start, so no other recording can take the path"
        assert path.stat().st_size == 0, "its header is written with the first slice"
    finally:
        summary = aiocop.stop_recording()
    assert summary is not None and summary["slices"] == 0 and summary["bytes"] == 0
    assert not path.exists()


def test_the_header_is_written_with_the_first_slice(tmp_path):
    path = tmp_path / "t.bin"
    aiocop.start_recording(path, flush_interval_s=0.05)
    try:

        async def body() -> None:
            await asyncio.sleep(0)

        run_monitored(body)
        deadline = time.monotonic() + 5
        while path.stat().st_size == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert path.stat().st_size > 0
    finally:
        aiocop.stop_recording()
    assert aiocop.read_trace(path)["cut_short"] is False


def test_two_processes_given_one_path_each_keep_their_recording_whole(tmp_path):
    program = write_program(tmp_path)
    path = str(tmp_path / "shared.bin")
    command = [sys.executable, "-m", "aiocop", "record", "-o", path, "--flush-interval", "0.1", "--"]
    first = subprocess.Popen([*command, str(program), "1.5"], stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    deadline = time.monotonic() + 10
    while not Path(path).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    second = subprocess.Popen([*command, str(program), "0.5"], stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    second_stderr = second.communicate(timeout=30)[1]
    first_stderr = first.communicate(timeout=30)[1]
    assert (first.returncode, second.returncode) == (0, 0)
    assert first_stderr == ""
    # The second one found the path locked: it says so once and writes beside it.
    aside = f"{path}.{second.pid}"
    assert second_stderr.count("\n") == 1 and path in second_stderr and aside in second_stderr, second_stderr
    assert "is being recorded by another process" in second_stderr
    for trace_path, pid in [(path, first.pid), (aside, second.pid)]:
        trace = aiocop.read_trace(trace_path)
        assert trace["cut_short"] is False and trace["header"]["pid"] == pid
        assert trace["footer"]["slices"] == len(trace["slices"]) > 100


def test_an_aiocop_record_path_that_cannot_be_written_warns_once_and_the_program_runs(tmp_path):
    program = write_program(tmp_path)
    missing = str(tmp_path / "no" / "such" / "dir" / "t.bin")
    result = run_with_environment(program, missing, "0.1", "3")
    assert result.returncode == 3, "the program's own exit status"
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and missing in lines[0] and "No such file or directory" in lines[0], result.stderr


def test_record_with_a_path_in_a_missing_directory_exits_2_with_one_line(tmp_path):
    program = write_program(tmp_path)
    missing = str(tmp_path / "missing" / "t.bin")
    result = subprocess.run(
        [sys.executable, "-m", "aiocop", "record", "-o", missing, "--", str(program), "0.1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and missing in result.stderr
    assert not (tmp_path / "missing").exists()


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_the_cpu_watchdog_is_a_visible_thread_again_in_a_forked_child():
    [watchdog] = [t for t in threading.enumerate() if t.name == "aiocop-cpu-sampler"]
    assert watchdog.daemon and watchdog.is_alive()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        names = [t.name for t in threading.enumerate()]
        os.write(write_end, str(names.count("aiocop-cpu-sampler")).encode())
        os._exit(0)
    os.close(write_end)
    listed_in_child = os.read(read_end, 100).decode()
    os.waitpid(pid, 0)
    assert listed_in_child == "1"


def test_aiocops_threads_leave_the_processs_signals_to_the_programs_threads(tmp_path):
    """A SIGTERM a thread of aiocop's took would only be noted for the main thread, and a main
    thread blocked in a multiprocessing lock would never run the handler: aiocop's threads block them."""
    program = write_program(tmp_path, LOOP_PROGRAM.replace("sys.exit(", "time.sleep(30)\nsys.exit("))
    env = {**os.environ, "AIOCOP_RECORD": str(tmp_path / "t.bin")}
    process = subprocess.Popen([sys.executable, str(program), "0.1"], env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 10
        threads: list[Path] = []
        while time.monotonic() < deadline:
            threads = [task for task in Path(f"/proc/{process.pid}/task").iterdir() if task.name != str(process.pid)]
            if len(threads) >= 2 and (tmp_path / "t.bin").exists():
                break
            time.sleep(0.05)
        assert len(threads) >= 2, "the recorder's writer and the CPU watchdog run"
        sigterm = 1 << (15 - 1)
        for task in threads:
            blocked = int(
                next(line for line in (task / "status").read_text().splitlines() if line.startswith("SigBlk:")).split()[
                    1
                ],
                16,
            )
            assert blocked & sigterm, f"thread {task.name} ({(task / 'comm').read_text().strip()}) takes SIGTERM"
        # So SIGTERM reaches the main thread, and the trace is written out before it dies of it.
        process.terminate()
        assert process.wait(timeout=10) == -15
    finally:
        if process.poll() is None:
            process.kill()
    assert aiocop.read_trace(tmp_path / "t.bin")["cut_short"] is False
