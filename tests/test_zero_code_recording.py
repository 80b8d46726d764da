"""Recording an unmodified program: `python -m aiocop record` and AIOCOP_RECORD.

The recorded programs never import aiocop: every loop they create, on any
thread, asyncio or uvloop, must be monitored and recorded anyway.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import aiocop
import pytest

PROGRAM = textwrap.dedent(
    """
    import asyncio, sys, threading, time
    import uvloop

    def in_a_thread(path):
        async def thread_main():
            with open(path, "w") as f:  # blocking open on a loop in a thread
                f.write(" ".join(sys.argv[1:]))
            await asyncio.sleep(0)
        asyncio.run(thread_main())

    async def uv_main():
        time.sleep(0.04)  # blocking sleep on a uvloop loop
        await asyncio.sleep(0)

    thread = threading.Thread(target=in_a_thread, args=(sys.argv[1],))
    thread.start()
    thread.join()
    uvloop.run(uv_main())
    sys.exit(int(sys.argv[2]))
    """
)


def events_by_thread(trace: dict) -> dict[int, set[str]]:
    seen: dict[int, set[str]] = {}
    for slice_ in trace["slices"]:
        seen.setdefault(slice_["thread"], set()).update(e["event"] for e in slice_["events"])
    return seen


def assert_both_loops_recorded(trace: dict, written: Path) -> None:
    by_thread = events_by_thread(trace)
    assert any("open" in events for events in by_thread.values()), by_thread
    assert any("time.sleep" in events for events in by_thread.values()), by_thread
    [opening_thread] = [t for t, events in by_thread.items() if "open" in events]
    [sleeping_thread] = [t for t, events in by_thread.items() if "time.sleep" in events]
    assert opening_thread != sleeping_thread, "the thread's loop and the main uvloop loop are told apart"
    opens = [e for s in trace["slices"] for e in s["events"] if e["event"] == "open"]
    assert any(e["args"].startswith(str(written)) for e in opens)
    assert trace["cut_short"] is False


def test_python_m_aiocop_record_runs_a_script_unmodified(tmp_path):
    script = tmp_path / "app.py"
    script.write_text(PROGRAM)
    trace = tmp_path / "trace.bin"
    written = tmp_path / "out.txt"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "aiocop",
            "record",
            "-o",
            str(trace),
            "--label",
            "v2",
            "--threshold-ms",
            "25",
            "--",
            str(script),
            str(written),
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3, result.stderr  # the program's own exit status
    assert written.read_text() == f"{written} 3", "the program saw its own argv"
    read = aiocop.read_trace(trace)
    assert read["header"]["label"] == "v2" and read["header"]["threshold_ns"] == 25_000_000
    assert read["header"]["argv"][0] == str(script)
    assert_both_loops_recorded(read, written)


def test_python_m_aiocop_record_runs_a_module(tmp_path):
    (tmp_path / "service.py").write_text(PROGRAM)
    trace = tmp_path / "module.bin"
    written = tmp_path / "module-out.txt"
    result = subprocess.run(
        [sys.executable, "-m", "aiocop", "record", "-o", str(trace), "--", "-m", "service", str(written), "0"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert_both_loops_recorded(aiocop.read_trace(trace), written)


def test_aiocop_record_environment_variable_records_at_start_up(tmp_path):
    script = tmp_path / "app.py"
    script.write_text(PROGRAM)
    written = tmp_path / "env-out.txt"
    result = subprocess.run(
        [sys.executable, str(script), str(written), "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "AIOCOP_RECORD": str(tmp_path / "env-{pid}.bin"), "AIOCOP_LABEL": "from-env"},
    )
    assert result.returncode == 0, result.stderr
    [trace] = list(tmp_path.glob("env-*.bin"))
    read = aiocop.read_trace(trace)
    assert trace.name == f"env-{read['header']['pid']}.bin"
    assert read["header"]["label"] == "from-env"
    assert_both_loops_recorded(read, written)


def test_without_the_environment_variable_nothing_is_recorded(tmp_path):
    script = tmp_path / "app.py"
    script.write_text("import sys; print('aiocop' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "AIOCOP_RECORD"}
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env)
    assert result.stdout.strip() == "False", "the start-up hook must not even import aiocop"


def test_record_to_an_unwritable_path_exits_2_with_the_path(tmp_path):
    script = tmp_path / "app.py"
    script.write_text("print('ran')")
    target = tmp_path / "missing" / "trace.bin"
    result = subprocess.run(
        [sys.executable, "-m", "aiocop", "record", "-o", str(target), "--", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert str(target) in result.stderr and "ran" not in result.stdout


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (["nosuch.py"], "can't open file 'nosuch.py': no such file or directory"),
        (["-m", "nosuch_module.server"], "no module named 'nosuch_module'"),
        (["a_directory"], "can't find '__main__.py' in directory 'a_directory'"),
    ],
)
def test_a_script_or_module_that_is_not_there_is_one_line_and_no_trace(tmp_path, target, message):
    # It was a traceback through runpy and aiocop's own frames.
    (tmp_path / "a_directory").mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "aiocop", "record", "-o", "trace.bin", "--", *target],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert (result.returncode, result.stderr) == (2, f"python -m aiocop record: {message}\n")
    assert sorted(os.listdir(tmp_path)) == ["a_directory"]
