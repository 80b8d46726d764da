"""Bad recording settings never take a program down (issue 17 item 3).

Every setting is checked by one rule set (aiocop.core.settings), whichever
way it comes: the Python API raises a ValueError naming the argument, the
command line exits 2 with one line naming the option, and the environment
read at start-up warns once, naming the variable, and records with that
setting's default while the program runs as if aiocop were not there.
"""

import os
import subprocess
import sys
import textwrap

import aiocop
import pytest
from aiocop.core import autorecord

# A loop that blocks once, so a recording has a slice to write.
PROGRAM = textwrap.dedent(
    """
    import asyncio, time
    async def main():
        time.sleep(0.001)
    asyncio.run(main())
    print("program ran")
    """
)

# (setting, command-line option, environment variable, bad value as text, bad value for the API)
BAD_SETTINGS = [
    ("flush_interval_s", "--flush-interval", "AIOCOP_FLUSH_INTERVAL_S", "1e300", 1e300),
    ("flush_interval_s", "--flush-interval", "AIOCOP_FLUSH_INTERVAL_S", "0", 0.0),
    ("flush_interval_s", "--flush-interval", "AIOCOP_FLUSH_INTERVAL_S", "nan", float("nan")),
    ("threshold_ms", "--threshold-ms", "AIOCOP_THRESHOLD_MS", "-5", -5.0),
    ("threshold_ms", "--threshold-ms", "AIOCOP_THRESHOLD_MS", "nan", float("nan")),
    ("threshold_ms", "--threshold-ms", "AIOCOP_THRESHOLD_MS", "inf", float("inf")),
    ("trace_depth", "--trace-depth", "AIOCOP_TRACE_DEPTH", "-1", -1),
    ("trace_depth", "--trace-depth", "AIOCOP_TRACE_DEPTH", "0", 0),
    ("trace_depth", "--trace-depth", "AIOCOP_TRACE_DEPTH", "deep", "deep"),
    ("sample_after_ms", "--sample-after-ms", "AIOCOP_SAMPLE_AFTER_MS", "-1", -1.0),
    ("sample_after_ms", "--sample-after-ms", "AIOCOP_SAMPLE_AFTER_MS", "1e300", 1e300),
    ("sample_interval_ms", "--sample-interval-ms", "AIOCOP_SAMPLE_INTERVAL_MS", "nan", float("nan")),
    ("max_buffered_slices", "--max-buffered-slices", "AIOCOP_MAX_BUFFERED_SLICES", "0", 0),
    ("max_buffered_slices", "--max-buffered-slices", "AIOCOP_MAX_BUFFERED_SLICES", "1.5", 1.5),
    ("file_mode", "--file-mode", "AIOCOP_FILE_MODE", "1777", 0o1777),
    ("file_mode", "--file-mode", "AIOCOP_FILE_MODE", "-600", -0o600),
    ("file_mode", "--file-mode", "AIOCOP_FILE_MODE", "rw", "rw"),
    ("allowlist", "--allowlist", "AIOCOP_ALLOWLIST", "/nonexistent/aiocop.toml", "/nonexistent/aiocop.toml"),
]


def clean_environment(**variables: str) -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("AIOCOP_")}
    return {**environment, **variables}


def run_program_with(tmp_path, **variables: str) -> subprocess.CompletedProcess[str]:
    """PROGRAM run as `python app.py` with these AIOCOP_* variables (and no others)."""
    script = tmp_path / "app.py"
    script.write_text(PROGRAM)
    return subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=clean_environment(**variables)
    )


@pytest.mark.parametrize(("name", "option", "variable", "text", "value"), BAD_SETTINGS)
def test_the_command_line_refuses_a_bad_setting_in_one_line_naming_the_option(
    tmp_path, name, option, variable, text, value
):
    script = tmp_path / "app.py"
    script.write_text(PROGRAM)
    trace = tmp_path / "t.bin"
    result = subprocess.run(
        [sys.executable, "-m", "aiocop", "record", "-o", str(trace), f"{option}={text}", "--", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_environment(),
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert option in line and text in line, line
    assert "program ran" not in result.stdout
    assert not trace.exists()


@pytest.mark.parametrize(("name", "option", "variable", "text", "value"), BAD_SETTINGS)
def test_a_bad_environment_variable_warns_once_and_the_program_runs_and_records_with_the_default(
    tmp_path, name, option, variable, text, value
):
    script = tmp_path / "app.py"
    script.write_text(PROGRAM)
    trace = tmp_path / "t.bin"
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_environment(AIOCOP_RECORD=str(trace), **{variable: text}),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "program ran\n"
    assert "Traceback" not in result.stderr and "panicked" not in result.stderr
    [warning] = result.stderr.splitlines()
    assert variable in warning and text in warning and "using the default" in warning, warning
    assert aiocop.read_trace(trace)["slices"], "recording started with the default"


def test_the_flush_interval_that_panicked_at_start_up_lets_python_print(tmp_path):
    """The issue's own command: it used to end in `Fatal Python error: init_import_site`."""
    result = subprocess.run(
        [sys.executable, "-c", "print(1)"],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_environment(AIOCOP_RECORD=str(tmp_path / "x"), AIOCOP_FLUSH_INTERVAL_S="1e300"),
    )
    assert (result.returncode, result.stdout) == (0, "1\n"), result.stderr
    assert "AIOCOP_FLUSH_INTERVAL_S='1e300'" in result.stderr


@pytest.mark.parametrize(("name", "option", "variable", "text", "value"), BAD_SETTINGS)
def test_the_python_api_raises_value_error_naming_the_argument(tmp_path, name, option, variable, text, value):
    trace = tmp_path / "t.bin"
    with pytest.raises(ValueError, match=f"^{name} "):
        autorecord.record_everything(str(trace), **{name: value})
    assert not aiocop.is_recording()
    if name not in ("threshold_ms", "trace_depth"):  # not start_recording()'s business
        with pytest.raises(ValueError, match=f"^{name} "):
            aiocop.start_recording(trace, **{name: value})
        assert not aiocop.is_recording()
    assert not trace.exists()


def test_the_native_recorder_refuses_a_flush_interval_it_cannot_hold_instead_of_panicking(tmp_path):
    """The Rust side checks again: Duration::from_secs_f64(1e300) used to panic."""
    from aiocop import _native

    with pytest.raises(ValueError, match="flush_interval_s"):
        _native.start_recording(
            str(tmp_path / "t.bin"),
            label=None,
            flush_interval_s=1e300,
            max_buffered_slices=10,
            record_context=False,
            sample_after_ms=0.0,
            sample_interval_ms=0.0,
            aiocop_version="0",
            python_version="3",
            platform="p",
            host="h",
            argv=[],
            parent_pid=0,
            root_command=[],
            role="main",
            sys_path=[],
        )


def test_settings_written_to_the_environment_read_back_the_same():
    from aiocop.core import settings

    chosen = settings.RecordingSettings(
        path="/tmp/t-{pid}.bin",
        label="v1",
        flush_interval_s=0.5,
        threshold_ms=12.5,
        trace_depth=7,
        record_context=True,
        sample_after_ms=0.0,
        redact=True,
        redact_keep_context=("request_id", "route"),
    )
    warnings: list[str] = []
    assert settings.from_environment(chosen.to_environment(), warnings.append) == chosen
    assert warnings == []


def test_a_bad_redact_variable_records_nothing_rather_than_the_secrets(tmp_path):
    trace = tmp_path / "t.bin"
    result = run_program_with(tmp_path, AIOCOP_RECORD=str(trace), AIOCOP_REDACT="maybe")
    assert (result.returncode, result.stdout) == (0, "program ran\n"), result.stderr
    [warning] = result.stderr.splitlines()
    assert "AIOCOP_REDACT='maybe'" in warning and "not recording" in warning
    assert not trace.exists()


def test_an_unset_or_empty_record_variable_records_nothing():
    from aiocop.core import settings

    assert settings.from_environment({}, print) is None
    assert settings.from_environment({"AIOCOP_RECORD": ""}, print) is None


# A file name or variable that is not UTF-8 reaches Python with surrogate
# escapes, which the recorder cannot take: it once ended the record command
# in a UnicodeEncodeError traceback, and made AIOCOP_LABEL stop recording.
NOT_UTF8 = os.fsdecode(b"trace-\xff.bin")


def test_a_path_that_is_not_utf8_is_refused_in_one_line_by_the_command_line(tmp_path):
    script = tmp_path / "app.py"
    script.write_text(PROGRAM)
    result = subprocess.run(
        [sys.executable, "-m", "aiocop", "record", "-o", NOT_UTF8, "--", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_environment(),
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("python -m aiocop record: --output must be a non-empty string of UTF-8 text"), line
    assert os.listdir(tmp_path) == ["app.py"]


def test_a_label_variable_that_is_not_utf8_warns_and_records_with_the_default(tmp_path):
    trace = tmp_path / "t.bin"
    result = run_program_with(tmp_path, AIOCOP_RECORD=str(trace), AIOCOP_LABEL=NOT_UTF8)
    assert (result.returncode, result.stdout) == (0, "program ran\n"), result.stderr
    [warning] = result.stderr.splitlines()
    assert warning.startswith("AIOCOP_LABEL=") and "using the default, none" in warning, warning
    assert aiocop.read_trace(trace)["slices"], "recording started with the default"


def test_the_python_api_refuses_a_path_that_is_not_utf8_with_value_error(tmp_path):
    with pytest.raises(ValueError, match="^path must be a non-empty string of UTF-8 text"):
        aiocop.start_recording(str(tmp_path / NOT_UTF8))
    assert not aiocop.is_recording()


def test_a_bad_file_mode_variable_names_the_default_as_it_is_written(tmp_path):
    result = run_program_with(tmp_path, AIOCOP_RECORD=str(tmp_path / "t.bin"), AIOCOP_FILE_MODE="-1")
    [warning] = result.stderr.splitlines()
    assert warning.endswith("using the default, 600"), warning
