"""`--redact`: a trace that can be shared without the secrets of the run (issue 17 item 2).

`script.py --password hunter2` recorded with --redact: `hunter2` is nowhere
in the trace's bytes, decompressed or not, nor in any report made from it;
without --redact it is (so these tests can see it when it is there).
"""

import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import aiocop
import pytest
from conftest import analyze

SECRET = "hunter2"

# Puts the secret in every place a trace could take it from: the command
# line, a file path, a subprocess's arguments, a context value; and keeps
# the environment it passes on to its children.
PROGRAM = textwrap.dedent(
    """
    import asyncio, json, os, subprocess, sys
    import aiocop

    secret, directory = sys.argv[2], sys.argv[3]
    aiocop.register_context_provider(lambda: {"route": "/login", "password": secret})

    async def main():
        open(os.path.join(directory, secret + ".txt"), "w").close()
        subprocess.run(["true", "--password", secret])
        with open(os.path.join(directory, "environment.json"), "w") as file:
            json.dump(dict(os.environ), file)

    asyncio.run(main())
    """
)


def record(tmp_path: Path, *options: str) -> Path:
    script = tmp_path / "script.py"
    script.write_text(PROGRAM)
    trace = tmp_path / "trace.bin"
    environment = {key: value for key, value in os.environ.items() if not key.startswith("AIOCOP_")}
    result = subprocess.run(
        [sys.executable, "-m", "aiocop", "record", "-o", str(trace), "--record-context", *options, "--"]
        + [str(script), "--password", SECRET, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
    )
    assert result.returncode == 0, result.stderr
    return trace


def decompressed_payloads(trace: Path) -> bytes:
    """Every frame's payload, decompressed by the zstd command (see docs/trace-format.md for the layout)."""
    data = trace.read_bytes()
    payloads = []
    offset = 16  # the file header
    while offset + 16 <= len(data):
        (payload_len,) = struct.unpack_from("<I", data, offset + 4)
        payloads.append(data[offset + 16 : offset + 16 + payload_len])
        offset += 16 + payload_len
    result = subprocess.run(["zstd", "-d", "-c"], input=b"".join(payloads), capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def every_report(trace: Path, tmp_path: Path) -> dict[str, str]:
    """The trace as every report format of aiocop-analyze shows it."""
    reports = {}
    for name, arguments in {
        "table": ["report", "--format", "table"],
        "json": ["report", "--format", "json"],
        "csv": ["report", "--format", "csv"],
        "markdown": ["report", "--format", "markdown"],
        "info": ["info"],
        "info json": ["info", "--format", "json"],
        "timeline": ["timeline"],
        "flamegraph": ["flamegraph"],
        "event table": ["report", "--by", "event", "--format", "json"],
        "context table": ["report", "--by", "context:route", "--format", "json"],
    }.items():
        result = analyze(*arguments, str(trace))
        assert result.returncode == 0, (name, result.stderr)
        reports[name] = result.stdout
    html = tmp_path / "report.html"
    result = analyze("report", "--format", "html", "-o", str(html), str(trace))
    assert result.returncode == 0, result.stderr
    reports["html"] = html.read_text()
    return reports


def test_a_redacted_trace_holds_no_secret_in_its_bytes_nor_in_any_report(tmp_path):
    trace = record(tmp_path, "--redact", "--redact-keep-context", "route")

    assert SECRET.encode() not in trace.read_bytes()
    if shutil.which("zstd"):
        assert SECRET.encode() not in decompressed_payloads(trace)
    read_back = aiocop.read_trace(trace)
    assert SECRET not in json.dumps(read_back)
    for name, report in every_report(trace, tmp_path).items():
        assert SECRET not in report, name

    header = read_back["header"]
    assert header["argv"] == ["script.py"]
    assert header["host"] == "" and header["sys_path"] == []
    assert header["root_command"] == ["script.py"]
    assert header["redacted"] is True and header["kept_context_keys"] == ["route"]
    contexts = [slice_["context"] for slice_ in read_back["slices"] if slice_["context"]]
    assert contexts and all(context == {"route": "/login"} for context in contexts), contexts
    args = [event["args"] for slice_ in read_back["slices"] for event in slice_["events"]]
    assert args and all(arg.startswith("#") for arg in args), args

    environment = json.loads((tmp_path / "environment.json").read_text())
    assert SECRET not in json.dumps(environment), "the root command passed on to children is the program's name only"
    assert environment["AIOCOP_REDACT"] == "1"


def test_info_says_a_trace_is_redacted_and_what_a_trace_holds_when_it_is_not(tmp_path):
    (tmp_path / "redacted").mkdir()
    (tmp_path / "plain").mkdir()
    redacted = record(tmp_path / "redacted", "--redact")
    plain = record(tmp_path / "plain")

    redacted_info = analyze("info", str(redacted)).stdout
    assert "holds:" in redacted_info and "redacted (--redact)" in redacted_info
    [info] = json.loads(analyze("info", "--format", "json", str(redacted)).stdout)["traces"]
    assert info["redacted"] is True and info["format_version"] == "1.5"

    plain_info = analyze("info", str(plain)).stdout
    assert "not redacted: the command lines with their arguments" in plain_info
    # The secret is there without --redact: what the first test looks for can be found.
    assert SECRET in plain_info
    assert SECRET.encode() in decompressed_payloads(plain) if shutil.which("zstd") else True
    assert SECRET in json.dumps(aiocop.read_trace(plain))


@pytest.mark.parametrize("bad", [["--redact-keep-context", ""]])
def test_an_empty_kept_context_key_is_refused_in_one_line(tmp_path, bad):
    result = subprocess.run(
        [sys.executable, "-m", "aiocop", "record", "-o", str(tmp_path / "t.bin"), "--redact", *bad, "--", "x.py"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert "--redact-keep-context" in line


def test_the_api_and_the_environment_take_redact_too(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(PROGRAM)
    trace = tmp_path / "env.bin"
    environment = {key: value for key, value in os.environ.items() if not key.startswith("AIOCOP_")}
    environment |= {"AIOCOP_RECORD": str(trace), "AIOCOP_REDACT": "1", "AIOCOP_RECORD_CONTEXT": "1"}
    result = subprocess.run(
        [sys.executable, str(script), "--password", SECRET, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
    )
    assert result.returncode == 0, result.stderr
    read_back = aiocop.read_trace(trace)
    assert read_back["header"]["argv"] == ["script.py"]
    assert SECRET not in json.dumps(read_back)

    with pytest.raises(ValueError, match="^redact "):
        aiocop.start_recording(tmp_path / "api.bin", redact="yes")
