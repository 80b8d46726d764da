"""A recording is safe to leave on: it never writes through a symlink, makes
private files, never hangs the program (a FIFO nobody reads, a reader that
stops reading, SIGTERM), and two recordings on one path keep both whole.
"""

import asyncio
import fcntl
import logging
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import aiocop
import pytest
from conftest import analyze, run_monitored

# Steps with a blocking call each, for a given number of seconds, then an
# optional sleep outside the loop.
STEPS = textwrap.dedent(
    """
    import asyncio, os, sys, time

    async def main(seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            os.stat(".")
            await asyncio.sleep(0)

    asyncio.run(main(float(sys.argv[1])))
    time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 0)
    """
)

VICTIM_BYTES = b"precious, not a trace\n"


@pytest.fixture
def steps(tmp_path: Path) -> Path:
    program = tmp_path / "steps.py"
    program.write_text(STEPS)
    return program


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(VICTIM_BYTES)
    return victim


def finish(process: subprocess.Popen[str], timeout_s: float) -> str:
    """The process's stderr once it exits; killed if it has not within `timeout_s`."""
    try:
        return process.communicate(timeout=timeout_s)[1]
    finally:
        process.kill()
        process.wait()


def record_command(output: Path | str, *options: str) -> list[str]:
    return [sys.executable, "-m", "aiocop", "record", "-o", str(output), *options, "--"]


def record_a_few_slices(path: Path | str, **options: object) -> str:
    """Records a few slices in this process; returns the path start_recording said."""
    written = aiocop.start_recording(path, flush_interval_s=0.05, **options)  # type: ignore[arg-type]
    try:

        async def body() -> None:
            for _ in range(10):
                await asyncio.sleep(0)

        run_monitored(body)
    finally:
        aiocop.stop_recording()
    return written


# 1. No symlink trap.


def assert_recorded_beside(path: Path, steps: Path, reason: str) -> None:
    """`record -o path` leaves what is at `path` alone, records to `<path>.<pid>` and says why, once."""
    process = subprocess.Popen(
        [*record_command(path), str(steps), "0.2"], stderr=subprocess.PIPE, text=True, cwd=path.parent
    )
    stderr = finish(process, 60)
    assert process.returncode == 0, stderr
    aside = f"{path}.{process.pid}"
    assert stderr.count("\n") == 1 and reason in stderr and aside in stderr, stderr
    assert aiocop.read_trace(aside)["cut_short"] is False


def test_a_symlink_at_the_record_path_is_left_alone_and_the_recording_goes_beside_it(tmp_path, steps, victim):
    path = tmp_path / "trace.bin"
    path.symlink_to(victim)
    assert_recorded_beside(path, steps, "is a symbolic link")
    assert victim.read_bytes() == VICTIM_BYTES


def test_a_symlink_at_a_pid_path_is_left_alone(tmp_path, victim, caplog):
    template = tmp_path / "trace-{pid}.bin"
    expanded = tmp_path / f"trace-{os.getpid()}.bin"
    expanded.symlink_to(victim)
    with caplog.at_level(logging.WARNING, logger="aiocop"):
        written = record_a_few_slices(template)
    assert victim.read_bytes() == VICTIM_BYTES
    assert written == f"{expanded}.{os.getpid()}"
    assert any(written in record.getMessage() for record in caplog.records), caplog.text
    assert len(aiocop.read_trace(written)["slices"]) > 0


def test_a_symlink_at_the_fallback_path_is_left_alone_and_start_says_why(tmp_path, victim):
    path = tmp_path / "trace.bin"
    aside = tmp_path / f"trace.bin.{os.getpid()}"
    # Another recording holds the path (its lock), so the fallback is tried.
    with open(path, "wb") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        aside.symlink_to(victim)
        with pytest.raises(OSError) as raised:
            record_a_few_slices(path)
    message = str(raised.value)
    assert str(path) in message and str(aside) in message and "symbolic link" in message, message
    assert victim.read_bytes() == VICTIM_BYTES
    assert not aiocop.is_recording()


def test_an_old_trace_is_replaced_by_a_new_file_not_written_through(tmp_path):
    path = tmp_path / "trace.bin"
    path.write_bytes(b"AIOCOPTR an old trace, cut short")
    other_name = tmp_path / "hard-link"
    os.link(path, other_name)
    record_a_few_slices(path)
    assert other_name.read_bytes() == b"AIOCOPTR an old trace, cut short"
    assert aiocop.read_trace(path)["cut_short"] is False


def test_a_users_file_given_as_the_output_is_kept_and_the_recording_goes_beside_it(tmp_path, steps):
    # `-o notes.txt` by mistake (or AIOCOP_RECORD naming a script) once
    # removed the file: only a trace, or an empty file, is ever replaced.
    notes = tmp_path / "notes.txt"
    notes.write_bytes(VICTIM_BYTES)
    assert_recorded_beside(notes, steps, "is not an aiocop trace")
    assert notes.read_bytes() == VICTIM_BYTES


# 2. Private by default.


def mode_of(path: Path | str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def run_with_umask_0(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: os.umask(0),  # noqa: PLW1509 (no threads are started before exec)
        **kwargs,  # type: ignore[call-overload]
    )


def test_trace_files_are_private_whatever_the_umask(tmp_path, steps):
    path = tmp_path / "trace.bin"
    result = run_with_umask_0([*record_command(path), str(steps), "0.1"])
    assert result.returncode == 0, result.stderr
    assert mode_of(path) == 0o600


def test_file_mode_widens_from_the_command_line(tmp_path, steps):
    path = tmp_path / "trace.bin"
    result = run_with_umask_0([*record_command(path, "--file-mode", "640"), str(steps), "0.1"])
    assert result.returncode == 0, result.stderr
    assert mode_of(path) == 0o640


def test_file_mode_widens_from_the_environment(tmp_path, steps):
    path = tmp_path / "trace.bin"
    env = {**os.environ, "AIOCOP_RECORD": str(path), "AIOCOP_FILE_MODE": "644"}
    result = run_with_umask_0([sys.executable, str(steps), "0.1"], env=env)
    assert (result.returncode, result.stderr) == (0, "")
    assert mode_of(path) == 0o644


def test_file_mode_widens_from_the_api(tmp_path):
    path = tmp_path / "trace.bin"
    record_a_few_slices(path, file_mode=0o640)
    assert mode_of(path) == 0o640


def test_a_bad_file_mode_on_the_command_line_exits_2_naming_it(tmp_path, steps):
    result = subprocess.run(
        [*record_command(tmp_path / "t.bin", "--file-mode", "rw-r"), str(steps), "0.1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--file-mode" in result.stderr and "'rw-r'" in result.stderr
    assert list(tmp_path.glob("t.bin*")) == []


def test_a_bad_file_mode_from_the_api_is_a_value_error_naming_it(tmp_path):
    with pytest.raises(ValueError, match="file_mode"):
        aiocop.start_recording(tmp_path / "t.bin", file_mode=0o1777)
    assert not aiocop.is_recording()
    assert list(tmp_path.iterdir()) == []


# 4. No hang.


def make_fifo(tmp_path: Path) -> Path:
    fifo = tmp_path / "trace.fifo"
    os.mkfifo(fifo)
    return fifo


def test_record_to_a_fifo_nobody_reads_refuses_at_once(tmp_path, steps):
    fifo = make_fifo(tmp_path)
    started = time.monotonic()
    result = subprocess.run([*record_command(fifo), str(steps), "0.1"], capture_output=True, text=True, timeout=30)
    assert time.monotonic() - started < 10
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert str(fifo) in result.stderr and "FIFO that no process is reading" in result.stderr


def test_aiocop_record_naming_a_fifo_nobody_reads_warns_and_the_program_runs(tmp_path, steps):
    fifo = make_fifo(tmp_path)
    env = {**os.environ, "AIOCOP_RECORD": str(fifo)}
    result = subprocess.run([sys.executable, "-c", "print('ran')"], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and result.stdout == "ran\n"
    assert result.stderr.count("\n") == 1 and "FIFO that no process is reading" in result.stderr, result.stderr


def open_stalling_reader(fifo: Path) -> int:
    """A reader of `fifo` with the smallest pipe, which the test reads a little from, then never again."""
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    fcntl.fcntl(reader, fcntl.F_SETPIPE_SZ, 4096)
    return reader


def read_a_little(reader: int, deadline_s: float = 10) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            if os.read(reader, 64):
                return
        except BlockingIOError:
            pass
        time.sleep(0.01)
    raise AssertionError("the recording wrote nothing to the FIFO")


def test_a_fifo_reader_that_stops_reading_holds_exit_2_s_at_most(tmp_path, steps):
    fifo = make_fifo(tmp_path)
    reader = open_stalling_reader(fifo)
    try:
        started = time.monotonic()
        process = subprocess.Popen(
            [*record_command(fifo, "--flush-interval", "0.05"), str(steps), "1"],
            stderr=subprocess.PIPE,
            text=True,
        )
        read_a_little(reader)
        stderr = finish(process, 30)
        elapsed = time.monotonic() - started
    finally:
        os.close(reader)
    assert process.returncode == 0, stderr
    # Start-up, 1 s of steps, then at most 2 s waiting for the writer.
    assert elapsed < 8, elapsed
    warnings = [line for line in stderr.splitlines() if "did not finish within 2 s" in line]
    assert len(warnings) == 1 and "slices not written" in warnings[0], stderr


def test_sigterm_ends_a_process_whose_fifo_reader_stopped_reading(tmp_path, steps):
    fifo = make_fifo(tmp_path)
    reader = open_stalling_reader(fifo)
    try:
        process = subprocess.Popen(
            [*record_command(fifo, "--flush-interval", "0.05"), str(steps), "60"],
            stderr=subprocess.DEVNULL,
        )
        read_a_little(reader)
        time.sleep(1)  # the pipe fills, the writer blocks
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            returncode = process.wait(timeout=15)
        finally:
            process.kill()
        elapsed = time.monotonic() - signalled
    finally:
        os.close(reader)
    assert returncode == -signal.SIGTERM
    assert elapsed < 5, elapsed


# 5. Never clobbered.


def test_two_recordings_started_on_one_path_0_4_s_apart_are_both_whole(tmp_path, steps):
    path = tmp_path / "same.bin"
    command = [*record_command(path), str(steps), "0.3", "1"]
    first = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    time.sleep(0.4)
    second = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    stderrs = [finish(first, 60), finish(second, 60)]
    assert (first.returncode, second.returncode) == (0, 0), stderrs
    files = sorted(str(p) for p in tmp_path.glob("same.bin*"))
    pids = {first.pid, second.pid}
    assert str(path) in files and len(files) == 2, files
    (aside,) = [f for f in files if f != str(path)]
    assert int(aside.rsplit(".", 1)[1]) in pids
    recorded_pids = set()
    for trace in files:
        info = analyze("info", trace)
        assert info.returncode == 0, info.stderr
        assert "complete" in info.stdout, info.stdout
        read = aiocop.read_trace(trace)
        assert read["cut_short"] is False and read["footer"]["slices"] == len(read["slices"]) > 100
        recorded_pids.add(read["header"]["pid"])
    assert recorded_pids == pids
