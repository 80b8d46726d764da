"""Reading a trace back, streaming: ``aiocop.open_trace(path)``.

A trace is decoded natively a chunk at a time (the same reader as
``aiocop-analyze``), so memory stays flat however long it is. Its slices
come as typed objects, or as Arrow record batches when ``pyarrow`` is
installed (one per chunk, built from column buffers without a Python object
per row), and as a polars or pandas data frame when those are installed::

    with aiocop.open_trace("trace.bin") as trace:
        print(trace.header.label, trace.header.start_unix_ns)
        for s in trace.slices():
            if s.events:
                print(s.start_unix_ns, s.duration_ns, s.what, [e.name for e in s.events])
        frame = trace.to_polars()       # or to_pandas(), to_arrow(), batches()

Every start is absolute: ``start_ns`` after the trace's start (the
header's ``start_monotonic_ns``) and ``start_unix_ns`` since the epoch.

Bad input is read as the analyzer reads it: a file that is not a readable
trace raises ``ValueError`` naming it; a damaged chunk is skipped, the rest
read, and one warning (the ``aiocop`` logger) says what was not read when
the pass ends. So does a trace cut short (no footer).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

from aiocop import _native
from aiocop._native import Event, Frame, Slice, TraceFooter, TraceHeader

if TYPE_CHECKING:
    import pandas
    import polars
    import pyarrow

__all__ = [
    "open_trace",
    "read_trace",
    "TraceReader",
    "TraceHeader",
    "TraceFooter",
    "Slice",
    "Event",
    "Frame",
    "SLICE_COLUMNS",
    "slice_schema",
]

logger = logging.getLogger(__name__)

# The columns of batches(), to_arrow(), to_polars() and to_pandas(), one row a slice:
# name, Arrow type (as pyarrow names it), meaning.
SLICE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("start_ns", "uint64", "start, ns after the trace's start"),
    ("start_unix_ns", "timestamp[ns, tz=UTC]", "start on the wall clock, ns since the epoch"),
    ("duration_ns", "uint64", "how long the callback ran"),
    ("what", "dictionary<int32, string>", "what ran: the coroutine's or callback's qualname"),
    ("task", "dictionary<int32, string>", "the task's name; null for a callback outside a task"),
    ("thread", "uint32", "the loop thread's number in the trace"),
    ("exceeded", "bool", "ran at least the header's threshold"),
    ("score", "int64", "the weight of its blocking events"),
    ("events", "uint32", "its blocking events kept (the first 50), as the report counts them"),
    ("dropped_events", "uint32", "its blocking events past the first 50, counted only"),
    ("samples", "uint32", "its stack samples"),
    ("context", "map<string, string>", "context provider values recorded with it (route, ...)"),
)


def open_trace(path: str | os.PathLike[str]) -> TraceReader:
    """Open the trace at ``path`` for reading; see :class:`TraceReader`.

    Raises ValueError with a one-line message naming the file if it is not
    a readable trace (another kind of file, another format major, a header
    cut short) or cannot be read.
    """
    return TraceReader(path)


class TraceReader:
    """An opened trace: its header and footer now, its slices as they are read.

    Each call of :meth:`slices`, :meth:`batches` or the conversions is a new
    pass from the first chunk. A reader is a context manager; leaving it
    closes the file once no pass is using it.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._trace: _native.OpenTrace | None = _native.OpenTrace(os.fspath(path))
        self.header: TraceHeader = self._trace.header
        """Who recorded, when and how (format version, label, pid, host, start, threshold, ...)."""
        self.footer: TraceFooter | None = self._trace.footer
        """The footer's counts; None if the trace was cut short (no clean stop)."""
        self.path: str = self._trace.path
        self.cut_short: bool = self._trace.cut_short
        self.chunk_count: int = self._trace.chunk_count

    def slices(self) -> Iterator[Slice]:
        """Every slice, in the order recorded, as a :class:`Slice`."""
        passing = self._open().slices()
        yield from passing
        self._warn(passing.warning())

    __iter__ = slices

    def batches(self) -> Iterator[pyarrow.RecordBatch]:
        """Every slice, as one Arrow record batch per chunk (columns: ``SLICE_COLUMNS``). Needs pyarrow."""
        pa = _require("pyarrow", "batches()")
        schema = slice_schema()
        passing = self._open().columns()
        for columns in passing:
            yield _record_batch(pa, schema, columns)
        self._warn(passing.warning())

    def to_arrow(self) -> pyarrow.Table:
        """Every slice in one Arrow table (held in memory: about 50 bytes a slice). Needs pyarrow."""
        pa = _require("pyarrow", "to_arrow()")
        return pa.Table.from_batches(self.batches(), schema=slice_schema())

    def to_polars(self) -> polars.DataFrame:
        """Every slice in a polars DataFrame (held in memory). Needs polars and pyarrow."""
        pl = _require("polars", "to_polars()")
        frame: polars.DataFrame = pl.from_arrow(self.to_arrow(), rechunk=False)
        return frame

    def to_pandas(self) -> pandas.DataFrame:
        """Every slice in a pandas DataFrame (held in memory; ``what``, ``task`` categorical).

        Needs pandas and pyarrow.
        """
        _require("pandas", "to_pandas()")
        frame: pandas.DataFrame = self.to_arrow().to_pandas()
        return frame

    def close(self) -> None:
        """Let go of the file (a pass still going on keeps it until it ends)."""
        self._trace = None

    def __enter__(self) -> TraceReader:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<TraceReader {self.path!r}: {self.chunk_count} chunks{', cut short' if self.cut_short else ''}>"

    def _open(self) -> _native.OpenTrace:
        if self._trace is None:
            raise ValueError(f"the trace '{self.path}' was closed")
        return self._trace

    def _warn(self, warning: str | None) -> None:
        if warning is not None:
            logger.warning("%s", warning)


def slice_schema() -> pyarrow.Schema:
    """The Arrow schema of :meth:`TraceReader.batches` (see ``SLICE_COLUMNS``). Needs pyarrow."""
    pa = _require("pyarrow", "slice_schema()")
    strings = pa.dictionary(pa.int32(), pa.string())
    types = {
        "start_ns": pa.uint64(),
        "start_unix_ns": pa.timestamp("ns", tz="UTC"),
        "duration_ns": pa.uint64(),
        "what": strings,
        "task": strings,
        "thread": pa.uint32(),
        "exceeded": pa.bool_(),
        "score": pa.int64(),
        "events": pa.uint32(),
        "dropped_events": pa.uint32(),
        "samples": pa.uint32(),
        "context": pa.map_(pa.string(), pa.string()),
    }
    return pa.schema([pa.field(name, types[name], nullable=name == "task") for name, _, _ in SLICE_COLUMNS])


def _record_batch(pa: Any, schema: pyarrow.Schema, columns: dict[str, Any]) -> pyarrow.RecordBatch:
    """A batch of the column buffers one chunk decoded to (reading/columns.rs), without copying them."""
    rows = columns["rows"]
    arrays = []
    for field in schema:
        name = field.name
        if pa.types.is_map(field.type):
            offsets = pa.Array.from_buffers(pa.int32(), rows + 1, [None, pa.py_buffer(columns[name])])
            keys, values = (_strings(pa, columns, f"{name}_{part}") for part in ("keys", "values"))
            arrays.append(pa.MapArray.from_arrays(offsets, keys, values))
        elif pa.types.is_dictionary(field.type):
            valid = pa.py_buffer(columns[f"{name}_valid"]) if f"{name}_valid" in columns else None
            indices = pa.Array.from_buffers(pa.int32(), rows, [valid, pa.py_buffer(columns[name])])
            arrays.append(pa.DictionaryArray.from_arrays(indices, _strings(pa, columns, name)))
        else:
            arrays.append(pa.Array.from_buffers(field.type, rows, [None, pa.py_buffer(columns[name])]))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _strings(pa: Any, columns: dict[str, Any], name: str) -> Any:
    """The string array whose offsets and bytes are ``columns[name + "_offsets"]`` and ``[name + "_data"]``."""
    offsets, data = columns[f"{name}_offsets"], columns[f"{name}_data"]
    # Not pa.array(list of str): its first use costs 50 MB of resident memory.
    return pa.Array.from_buffers(pa.string(), len(offsets) // 4 - 1, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _require(module: str, what: str) -> Any:
    """The module, or ImportError saying what needs it and how to get it."""
    import importlib

    needed = ["pyarrow"] if module == "pyarrow" else [module, "pyarrow"]
    try:
        for name in needed:
            importlib.import_module(name)
    except ImportError as error:
        raise ImportError(f"TraceReader.{what} needs {' and '.join(needed)}: pip install {' '.join(needed)}") from error
    return importlib.import_module(module)


def read_trace(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The whole trace as dicts, in memory: for tests and small traces. Prefer :func:`open_trace`.

    Built on :func:`open_trace`, which streams with flat memory and gives
    typed objects, Arrow batches and data frames; this keeps the dicts of
    earlier releases: ``header``, ``footer`` (None if cut short),
    ``cut_short``, ``chunks`` (read), ``dropped`` and ``slices``. Each slice
    has its absolute start, ``start_ns`` (after the trace's start) and
    ``start_unix_ns``, and ``start_delta_ns`` from the previous slice's
    start (the first's from the trace's start), so that summed deltas give
    the start; its events and samples have their stacks as
    ``path:line:function`` strings. Raises ValueError with a one-line
    message for a file that is not a readable trace.
    """
    reader = TraceReader(path)
    passing = reader._open().slices()
    slices = []
    previous_start_ns = 0
    for recorded in passing:
        slice_dict = _slice_dict(recorded)
        slice_dict["start_delta_ns"] = recorded.start_ns - previous_start_ns
        previous_start_ns = recorded.start_ns
        slices.append(slice_dict)
    reader._warn(passing.warning())
    return {
        "header": _header_dict(reader.header),
        "footer": _footer_dict(reader.footer),
        "cut_short": reader.cut_short,
        "chunks": passing.chunks_read,
        "dropped": passing.dropped_slices,
        "slices": slices,
    }


def _slice_dict(recorded: Slice) -> dict[str, Any]:
    return {
        "start_ns": recorded.start_ns,
        "start_unix_ns": recorded.start_unix_ns,
        "duration_ns": recorded.duration_ns,
        "what": recorded.what,
        "task": recorded.task,
        "thread": recorded.thread,
        "exceeded": recorded.exceeded,
        "score": recorded.score,
        "dropped_events": recorded.dropped_events,
        "events": [
            {"event": e.name, "args": e.args, "offset_ns": e.offset_ns, "stack": [str(f) for f in e.stack]}
            for e in recorded.events
        ],
        "samples": [[str(f) for f in stack] for stack in recorded.samples],
        "sample_weights_ns": list(recorded.sample_weights_ns),
        "sample_native": list(recorded.sample_native),
        "event_frame_names": [[_frame_name(f) for f in e.stack] for e in recorded.events],
        "context": recorded.context,
    }


def _frame_name(frame: Frame) -> str:
    """``module:qualname``, or ``?`` where the trace did not record them (format 1.0)."""
    return "?" if frame.module is None or frame.qualname is None else f"{frame.module}:{frame.qualname}"


_HEADER_FIELDS = (
    "aiocop_version python_version platform host pid argv start_unix_ns start_monotonic_ns label threshold_ns "
    "trace_depth event_table records_context parent_pid root_command role sys_path sample_after_ns "
    "sample_interval_ns redacted kept_context_keys"
).split()


def _header_dict(header: TraceHeader) -> dict[str, Any]:
    return {name: getattr(header, name) for name in _HEADER_FIELDS}


def _footer_dict(footer: TraceFooter | None) -> dict[str, int] | None:
    if footer is None:
        return None
    names = ("slices", "events", "dropped_slices", "chunks", "end_offset_ns")
    return {name: getattr(footer, name) for name in names}
