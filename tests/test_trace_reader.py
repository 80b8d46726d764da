"""The streaming Python reader, ``aiocop.open_trace()`` (and ``read_trace``, built on it).

Real programs record themselves in fresh interpreters, flushing often so
that their traces have many chunks; what the reader gives is checked
against the ``aiocop-analyze`` executable's ``info`` and ``timeline`` of the
same files. Damaged and foreign files are made from real traces by changing
their bytes.
"""

import importlib.util
import json
import logging
import re
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import aiocop
import pytest
from conftest import analyze

REPO = Path(__file__).resolve().parent.parent

PROGRAM = textwrap.dedent(
    """
    import asyncio, sys, time
    import aiocop

    def read_config(path):
        with open(path) as f:
            return f.read()

    async def handler(i, path):
        if i % 10 == 0:
            read_config(path)
        await asyncio.sleep(0.001)

    async def main(path):
        aiocop.activate()
        await asyncio.sleep(0)
        for i in range(300):
            await asyncio.create_task(handler(i, path), name=f"handler-{i % 3}")

    trace, config = sys.argv[1], sys.argv[2]
    aiocop.register_context_provider(lambda: {"route": "/cart"})
    aiocop.start_recording(trace, label="v2.0", flush_interval_s=0.01, record_context=True)
    asyncio.run(main(config))
    aiocop.stop_recording()
    """
)

# A loop of pure slices, for the memory test: steps of one task, and nothing else.
PURE_STEPS = textwrap.dedent(
    """
    import asyncio, sys
    import aiocop

    async def main(steps):
        aiocop.activate()
        for _ in range(steps):
            await asyncio.sleep(0)

    aiocop.start_recording(sys.argv[1], flush_interval_s=0.05)
    asyncio.run(main(int(sys.argv[2])))
    aiocop.stop_recording()
    """
)


def run_program(directory: Path, program: str, *args: str) -> None:
    script = directory / "app.py"
    script.write_text(program)
    result = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=120, cwd=directory
    )
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def trace(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("reader")
    (directory / "shop.toml").write_text("[shop]\n")
    run_program(directory, PROGRAM, str(directory / "trace.bin"), str(directory / "shop.toml"))
    return directory / "trace.bin"


def info(trace: Path) -> dict:
    result = analyze("info", "--format", "json", str(trace))
    assert result.returncode == 0, result.stderr
    [facts] = json.loads(result.stdout)["traces"]
    return facts


def timeline_slices(trace: Path, out: Path) -> list[dict]:
    result = analyze("timeline", str(trace), "-o", str(out))
    assert result.returncode == 0, result.stderr
    events = json.loads(out.read_text())["traceEvents"]
    return [e for e in events if e["ph"] == "X" and e.get("cat") != "stall"]


def chunk_payload_offsets(trace: Path) -> list[tuple[int, int]]:
    """(offset, length) of each chunk's payload, by the frame headers (docs/trace-format.md)."""
    data = trace.read_bytes()
    offset, chunks = 16, []
    while offset + 16 <= len(data):
        kind, _codec, payload_len = data[offset], data[offset + 1], struct.unpack_from("<I", data, offset + 4)[0]
        if kind == 2:
            chunks.append((offset + 16, payload_len))
        offset += 16 + payload_len
    return chunks


def test_slices_have_the_analyzers_counts_and_absolute_times_across_many_chunks(trace, tmp_path):
    facts = info(trace)
    reader = aiocop.open_trace(trace)
    assert reader.chunk_count == facts["chunks"] >= 10, "the recording flushed into many chunks"
    slices = list(reader.slices())
    assert len(slices) == facts["slices"] == reader.footer.slices > 600
    # The timeline's times are microseconds from the trace's start (one trace: its own).
    drawn = timeline_slices(trace, tmp_path / "timeline.json")
    assert len(drawn) == len(slices)
    for event, recorded in zip(drawn, slices, strict=True):
        assert round(event["ts"] * 1000) == recorded.start_ns
        assert round(event["dur"] * 1000) == recorded.duration_ns
        assert event["name"] == recorded.what and event["args"].get("task") == recorded.task
        assert recorded.start_unix_ns == reader.header.start_unix_ns + recorded.start_ns
    starts = [s.start_ns for s in slices]
    assert starts == sorted(starts)


def test_the_header_and_each_slice_are_typed_objects(trace):
    facts = info(trace)
    with aiocop.open_trace(str(trace)) as reader:
        header = reader.header
        assert header.label == facts["label"] == "v2.0"
        assert header.pid == facts["pid"] and header.format_version == (1, 5)
        assert header.records_context and dict(header.event_table)["open"] > 0
        assert reader.cut_short is False and "chunks" in repr(reader)
        handlers = [s for s in reader.slices() if s.what == "handler"]
    assert {s.task for s in handlers} == {"handler-0", "handler-1", "handler-2"}
    with_events = [s for s in handlers if s.events]
    assert len(with_events) == 30
    event = with_events[0].events[0]
    assert event.name == "open" and event.args.startswith(str(trace.parent / "shop.toml"))
    assert event.weight == dict(header.event_table)["open"] and with_events[0].score >= event.weight
    innermost = event.stack[0]
    assert (innermost.function, innermost.module, innermost.qualname) == ("read_config", "__main__", "read_config")
    assert str(innermost).endswith(":read_config") and innermost.file.endswith("app.py")
    assert all(s.context == {"route": "/cart"} for s in with_events)
    assert handlers[0].end_ns == handlers[0].start_ns + handlers[0].duration_ns


def test_read_trace_sums_its_deltas_to_the_absolute_starts(trace):
    # Issue 22: start_delta_ns counted from each chunk's unreturned base, so
    # summed deltas went wrong at every chunk boundary.
    read = aiocop.read_trace(trace)
    assert read["chunks"] >= 10 and read["dropped"] == 0
    total = 0
    for recorded in read["slices"]:
        total += recorded["start_delta_ns"]
        assert total == recorded["start_ns"]
        assert recorded["start_unix_ns"] == read["header"]["start_unix_ns"] + recorded["start_ns"]
    assert "open_trace" in aiocop.read_trace.__doc__


def test_a_damaged_chunk_loses_its_slices_only_with_one_warning(trace, tmp_path, caplog):
    damaged = tmp_path / "damaged.bin"
    data = bytearray(trace.read_bytes())
    offset, length = chunk_payload_offsets(trace)[3]
    data[offset + length // 2] ^= 0xFF
    damaged.write_bytes(data)
    report = analyze("--format", "json", str(damaged))
    assert report.returncode == 0 and "checksum" in report.stderr
    expected = json.loads(report.stdout)["totals"]["slices"]
    with caplog.at_level(logging.WARNING, logger="aiocop"):
        slices = list(aiocop.open_trace(damaged).slices())
    assert len(slices) == expected < info(trace)["slices"]
    warnings = [r for r in caplog.records if r.name.startswith("aiocop")]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    message = warnings[0].getMessage()
    assert str(damaged) in message and "chunk 3" in message and "\n" not in message, message


def test_a_file_that_is_not_a_trace_is_a_one_line_error_naming_it(tmp_path):
    foreign = tmp_path / "notes.json"
    foreign.write_text('{"not": "a trace"}')
    for read in (aiocop.open_trace, aiocop.read_trace):
        with pytest.raises(ValueError) as raised:
            read(foreign)
        assert str(foreign) in str(raised.value) and "\n" not in str(raised.value)
    with pytest.raises(ValueError, match="missing.bin"):
        aiocop.open_trace(tmp_path / "missing.bin")


def golden_trace_1_0() -> bytes:
    """The 1.0 trace pinned by the trace crate's tests (src/trace_tests.rs)."""
    source = (REPO / "src" / "trace_tests.rs").read_text()
    body = re.search(r'const GOLDEN_TRACE_1_0: &str = "\\\n(.*?)";', source, re.S)
    assert body, "GOLDEN_TRACE_1_0 is in src/trace_tests.rs"
    return bytes.fromhex(body.group(1).replace("\\\n", "").replace("\n", ""))


def test_a_format_1_0_trace_reads_without_frame_names(tmp_path):
    old = tmp_path / "old.bin"
    old.write_bytes(golden_trace_1_0())
    reader = aiocop.open_trace(old)
    assert reader.header.format_version == (1, 0) and reader.header.role == ""
    first, second = reader.slices()
    assert (first.start_ns, second.start_ns) == (10, 310)
    assert second.start_unix_ns == 1_000_000_000 + 310 and second.task == "main" and second.exceeded
    [frame] = second.events[0].stack
    assert (frame.file, frame.line, frame.function) == ("/a/src/main.py", 3, "f")
    assert frame.module is None and frame.qualname is None
    assert second.samples == ((frame,),)
    assert aiocop.read_trace(old)["dropped"] == 1


HAS_PYARROW = importlib.util.find_spec("pyarrow") is not None
needs_pyarrow = pytest.mark.skipif(
    not HAS_PYARROW, reason="batches need pyarrow (requirements-dev.txt installs it where it has wheels)"
)


@needs_pyarrow
def test_batches_hold_the_same_slices_as_the_objects(trace):
    reader = aiocop.open_trace(trace)
    table = reader.to_arrow()
    slices = list(reader.slices())
    assert table.num_rows == len(slices) and table.schema == aiocop.trace.slice_schema()
    assert len(list(reader.batches())) == reader.chunk_count
    table.validate(full=True)
    columns = table.to_pydict()
    assert columns["start_ns"] == [s.start_ns for s in slices]
    assert [t.value for t in table.column("start_unix_ns")] == [s.start_unix_ns for s in slices]
    assert columns["duration_ns"] == [s.duration_ns for s in slices]
    assert columns["what"] == [s.what for s in slices] and columns["task"] == [s.task for s in slices]
    assert columns["events"] == [len(s.events) for s in slices]
    assert columns["dropped_events"] == [s.dropped_events for s in slices]
    assert columns["samples"] == [len(s.samples) for s in slices]
    assert columns["score"] == [s.score for s in slices] and columns["exceeded"] == [s.exceeded for s in slices]
    assert [dict(pairs) for pairs in columns["context"]] == [s.context for s in slices]
    # With record_context every slice carries the provider's context, not only the 30 that blocked.
    assert all(pairs == [("route", "/cart")] for pairs in columns["context"]), columns["context"][:5]


@needs_pyarrow
def test_polars_and_pandas_frames_of_the_slices(trace):
    polars = pytest.importorskip("polars", reason="to_polars() needs polars")
    pytest.importorskip("pandas", reason="to_pandas() needs pandas")
    reader = aiocop.open_trace(trace)
    slices = list(reader.slices())
    frame = reader.to_polars()
    assert frame.height == len(slices)
    per_task = frame.filter(polars.col("what") == "handler").group_by("task").len().sort("task")
    assert per_task["len"].sum() == sum(1 for s in slices if s.what == "handler")
    pandas_frame = reader.to_pandas()
    assert len(pandas_frame) == len(slices) and int(pandas_frame["events"].sum()) == 30


READ_AND_MEASURE = """
import resource, sys, aiocop
{imports}
reader = aiocop.open_trace(sys.argv[1])
before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rows = 0
{body}
print(rows, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_kib)
"""


def test_reading_a_long_trace_keeps_memory_flat(tmp_path):
    trace = tmp_path / "long.bin"
    run_program(tmp_path, PURE_STEPS, str(trace), "300000")
    slices = info(trace)["slices"]
    assert slices >= 300_000
    readers = {"objects": ("", "for s in reader.slices():\n    rows += 1")}
    if HAS_PYARROW:
        readers["batches"] = ("import pyarrow", "for b in reader.batches():\n    rows += b.num_rows")
    for name, (imports, body) in readers.items():
        result = subprocess.run(
            [sys.executable, "-c", READ_AND_MEASURE.format(imports=imports, body=body), str(trace)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        rows, grown_kib = map(int, result.stdout.split())
        assert rows == slices
        # read_trace() of 1.3.0 held about 1.7 KB a slice (500 MB here); a
        # chunk at a time is a few MB whatever the length.
        assert grown_kib < 40 * 1024, (name, grown_kib)


# Slices of ~30 ms of `sorted()` (C code holding the GIL) then a quick return: timed samples.
SORTING = textwrap.dedent(
    """
    import asyncio, random, sys
    import aiocop

    NUMBERS = [random.random() for _ in range(200_000)]

    async def work():
        aiocop.activate()
        await asyncio.sleep(0)
        for _ in range(8):
            sorted(NUMBERS)
            await asyncio.sleep(0.002)

    aiocop.start_recording(sys.argv[1], sample_after_ms=2, sample_interval_ms=1)
    asyncio.run(work())
    aiocop.stop_recording()
    """
)


def test_sample_weights_and_native_marks_are_the_exports(tmp_path):
    """Each slice's `sample_weights_ns` add up to it and equal the Parquet export's `weight_ns`, sample by sample;
    its `sample_native` are the export's `native` (the report's `[native]`)."""
    duckdb = pytest.importorskip("duckdb")
    run_program(tmp_path, SORTING, str(tmp_path / "trace.bin"))
    trace = tmp_path / "trace.bin"
    sampled = [(i, s) for i, s in enumerate(aiocop.open_trace(trace).slices()) if s.samples]
    assert sampled, "the sorts were sampled"
    for _, recorded in sampled:
        assert len(recorded.sample_weights_ns) == len(recorded.samples)
        assert sum(recorded.sample_weights_ns) == recorded.duration_ns
    assert len({w for _, s in sampled for w in s.sample_weights_ns}) > 1, "timed samples do not weigh alike"
    out = tmp_path / "tables"
    result = analyze("export", "--format", "parquet", "-o", str(out), str(trace))
    assert result.returncode == 0, result.stderr
    exported = duckdb.sql(
        f"SELECT slice_index, sample_index, weight_ns, native FROM read_parquet('{out}/samples/**/*.parquet') "
        "ORDER BY slice_index, sample_index"
    ).fetchall()
    read = [
        (i, k, weight, native)
        for i, s in sampled
        for k, (weight, native) in enumerate(zip(s.sample_weights_ns, s.sample_native, strict=True))
    ]
    assert exported == read
    # The 200,000-float sorts are C code holding the GIL: some of their samples waited in it.
    assert any(native for _, s in sampled for native in s.sample_native)
    assert aiocop.read_trace(trace)["slices"][sampled[0][0]]["sample_native"] == list(sampled[0][1].sample_native)


def test_untimed_samples_weigh_an_equal_share(tmp_path):
    old = tmp_path / "old.bin"
    old.write_bytes(golden_trace_1_0())
    _, second = aiocop.open_trace(old).slices()
    assert second.sample_weights_ns == (second.duration_ns,)
    assert second.sample_native == (False,), "an untimed sample is never native"
    assert aiocop.read_trace(old)["slices"][1]["sample_weights_ns"] == [second.duration_ns]
