//! Reading a trace back in Python, a chunk at a time: the native half of
//! `aiocop.open_trace()` (`python/aiocop/trace.py`).
//!
//! An [`OpenTrace`] holds the opened file (`aiocop_trace::TraceFile`: its
//! header, footer and chunk index, not its payloads). Each pass over it is
//! an iterator of its own with a [`ChunkCursor`], which decodes one chunk at
//! a time, with the GIL released, and keeps what resolves ids (the
//! dictionary of strings, frames and stacks: it grows with the program's
//! code paths and task names, not with the trace's length). So memory stays
//! flat however long the trace: a chunk's slices (65,536 at most as the
//! recorder writes them) are all that is held of them at once.
//!
//! [`SliceIter`] hands out typed objects (`objects.rs`), [`ColumnIter`] one
//! set of column buffers per chunk (`columns.rs`), which the Python side
//! wraps into Arrow record batches without a Python object per row.
//!
//! Bad input reads as the analyzer reads it: a file that is not a trace
//! fails to open with a one-line `ValueError` naming it; a damaged chunk is
//! skipped and counted, and at the end of the pass [`ChunkCursor::warning`]
//! says, in one line, what could not be read.

mod columns;
mod objects;

use aiocop_trace::format::FORMAT_MINOR;
use aiocop_trace::{SliceVisitor, TraceFile};
use objects::PyObjects;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use std::path::Path;
use std::sync::Arc;

pub use columns::ColumnIter;
pub use objects::{Event, Footer, Frame, Header, Slice};

/// Replaces `decoded` with the slices of the next chunks that hold any: a
/// chunk may hold none (the writer splits an oversized chunk's definitions
/// into a chunk of their own; polls or a dropped count may come alone).
/// False once the trace is read.
fn read_next_slices(cursor: &mut ChunkCursor, decoded: &mut Vec<Decoded>) -> bool {
    let interval_ns = cursor.trace.header().sampling.interval_ns;
    decoded.clear();
    while decoded.is_empty() {
        let mut collect = Collect { slices: decoded, interval_ns };
        if !cursor.read_next(&mut collect, |c| c.slices.clear()) {
            return false;
        }
    }
    true
}

/// An opened trace: `aiocop._native.OpenTrace(path)`.
#[pyclass(module = "aiocop._native", frozen)]
pub struct OpenTrace {
    trace: Arc<TraceFile>,
    header: Py<Header>,
    footer: Option<Py<Footer>>,
}

#[pymethods]
impl OpenTrace {
    /// Opens `path`: reads its header and indexes its chunks. Raises
    /// ValueError with one line naming the file if it is not a readable trace.
    #[new]
    fn open(py: Python<'_>, path: &str) -> PyResult<OpenTrace> {
        let trace = py.detach(|| TraceFile::open(Path::new(path))).map_err(|e| PyValueError::new_err(e.to_string()))?;
        let header = Py::new(py, Header::from_trace(&trace))?;
        let footer = trace.footer().map(|footer| Py::new(py, Footer::from(footer))).transpose()?;
        Ok(OpenTrace { trace: Arc::new(trace), header, footer })
    }

    #[getter]
    fn header(&self, py: Python<'_>) -> Py<Header> {
        self.header.clone_ref(py)
    }

    #[getter]
    fn footer(&self, py: Python<'_>) -> Option<Py<Footer>> {
        self.footer.as_ref().map(|f| f.clone_ref(py))
    }

    #[getter]
    fn path(&self) -> &str {
        self.trace.path()
    }

    #[getter]
    fn cut_short(&self) -> bool {
        self.trace.cut_short()
    }

    #[getter]
    fn chunk_count(&self) -> usize {
        self.trace.chunk_count()
    }

    /// A new pass over the slices, as objects.
    fn slices(&self) -> SliceIter {
        SliceIter { cursor: ChunkCursor::new(self.trace.clone()), decoded: Vec::new(), next: 0, objects: None }
    }

    /// A new pass over the slices, a dict of column buffers per chunk.
    fn columns(&self) -> ColumnIter {
        ColumnIter::new(ChunkCursor::new(self.trace.clone()))
    }
}

/// Walks a trace's chunks in order, skipping (and counting) those that
/// cannot be read, and keeps the definitions of those read.
pub struct ChunkCursor {
    trace: Arc<TraceFile>,
    next_chunk: usize,
    dictionary: aiocop_trace::Dictionary,
    chunks_read: u64,
    unreadable: u64,
    first_error: Option<String>,
    dropped_slices: u64,
}

impl ChunkCursor {
    fn new(trace: Arc<TraceFile>) -> ChunkCursor {
        ChunkCursor {
            trace,
            next_chunk: 0,
            dictionary: aiocop_trace::Dictionary::new(),
            chunks_read: 0,
            unreadable: 0,
            first_error: None,
            dropped_slices: 0,
        }
    }

    /// Decodes the next readable chunk's slices into `visitor` and adds its
    /// definitions to the dictionary; `false` when there is none left. A
    /// chunk that fails part way is skipped whole: `forget` is called to
    /// drop the slices it gave `visitor` before failing.
    fn read_next<V: SliceVisitor>(&mut self, visitor: &mut V, forget: impl Fn(&mut V)) -> bool {
        while self.next_chunk < self.trace.chunk_count() {
            let index = self.next_chunk;
            self.next_chunk += 1;
            match self.trace.visit_chunk(index, visitor) {
                Ok(chunk) => {
                    self.dictionary.add(&chunk);
                    self.dropped_slices += chunk.dropped_slices;
                    self.chunks_read += 1;
                    return true;
                }
                Err(error) => {
                    forget(visitor);
                    self.unreadable += 1;
                    self.first_error.get_or_insert_with(|| error.to_string());
                }
            }
        }
        false
    }

    fn finished(&self) -> bool {
        self.next_chunk >= self.trace.chunk_count()
    }

    /// Nanoseconds since the epoch of a time `offset_ns` after the trace's start.
    fn unix_ns(&self, offset_ns: u64) -> u64 {
        self.trace.header().start_unix_ns.saturating_add(offset_ns)
    }

    /// Once the pass is over: one line saying what of the file could not
    /// be read (a newer minor's additions, a cut, damage, unreadable
    /// chunks), or `None` if it was all read.
    fn warning(&self) -> Option<String> {
        if !self.finished() {
            return None;
        }
        let trace = &self.trace;
        let mut problems = Vec::new();
        let (major, minor) = trace.format_version();
        if minor > FORMAT_MINOR {
            problems.push(format!(
                "it is trace format {major}.{minor}, newer than this aiocop reads ({major}.{FORMAT_MINOR}): what it adds is skipped"
            ));
        }
        let quoted = format!("'{}'", trace.path());
        let without_path = |message: String| {
            message
                .strip_prefix(&quoted)
                .map(|rest| rest.trim_start_matches(':').trim_start().to_owned())
                .unwrap_or(message)
        };
        if let Some(damage) = trace.damage() {
            problems.push(format!("it is read only up to a damaged frame ({})", without_path(damage.to_string())));
        } else if trace.cut_short() {
            problems.push(
                "it was cut short (no footer: the recording did not stop cleanly, or is still going on)".to_owned(),
            );
        }
        if let Some(error) = &self.first_error {
            let more = match self.unreadable {
                0 | 1 => String::new(),
                n => format!(" (and {} more unreadable chunk{})", n - 1, if n == 2 { "" } else { "s" }),
            };
            problems.push(format!("{}{more}", without_path(error.clone())));
        }
        if problems.is_empty() {
            return None;
        }
        let read = self.chunks_read;
        Some(format!(
            "{quoted}: {}; read its {read} readable chunk{}",
            problems.join("; "),
            if read == 1 { "" } else { "s" }
        ))
    }
}

/// A decoded slice: its start (ns after the trace's start), its record, the
/// nanoseconds each of its samples stands for, and whether each waited in
/// native code.
type Decoded = (u64, aiocop_trace::records::SliceRecord, Vec<u64>, Vec<bool>);

/// Collects a chunk's slices with their starts, sample weights and native
/// marks, for a trace sampled every `interval_ns`.
struct Collect<'a> {
    slices: &'a mut Vec<Decoded>,
    interval_ns: u64,
}

impl SliceVisitor for Collect<'_> {
    fn pure_slice(&mut self, start_ns: u64, slice: aiocop_trace::PureSlice) {
        self.slices.push((start_ns, slice.to_record(), Vec::new(), Vec::new()));
    }

    fn slice(&mut self, start_ns: u64, slice: &aiocop_trace::records::SliceRecord) {
        self.timed_slice(start_ns, slice, &[], &[]);
    }

    fn timed_slice(
        &mut self,
        start_ns: u64,
        slice: &aiocop_trace::records::SliceRecord,
        sample_times: &[aiocop_trace::records::SampleTime],
        sample_cpu: &[u64],
    ) {
        let count = slice.samples.len();
        let weights = aiocop_trace::sample_weights(slice.duration_ns, count, sample_times);
        let native = aiocop_trace::samples_native(count, sample_times, sample_cpu, self.interval_ns);
        self.slices.push((start_ns, slice.clone(), weights, native));
    }
}

/// One pass over a trace's slices, each an [`objects::Slice`].
#[pyclass(module = "aiocop._native")]
pub struct SliceIter {
    cursor: ChunkCursor,
    /// The current chunk's slices and their starts.
    decoded: Vec<Decoded>,
    next: usize,
    /// Made on the first slice (it needs the GIL).
    objects: Option<PyObjects>,
}

#[pymethods]
impl SliceIter {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<Py<Slice>>> {
        if self.next == self.decoded.len() {
            self.next = 0;
            let (cursor, decoded) = (&mut self.cursor, &mut self.decoded);
            if !py.detach(|| read_next_slices(cursor, decoded)) {
                return Ok(None);
            }
        }
        let (start_ns, record, weights, native) = &self.decoded[self.next];
        self.next += 1;
        let objects = match &mut self.objects {
            Some(objects) => objects,
            None => self.objects.insert(PyObjects::new(py, self.cursor.trace.header())),
        };
        let at = (*start_ns, self.cursor.unix_ns(*start_ns));
        let slice = objects.slice(py, &self.cursor.dictionary, at, record, (weights, native))?;
        Py::new(py, slice).map(Some)
    }

    /// What could not be read, once the pass is over (see [`ChunkCursor::warning`]).
    fn warning(&self) -> Option<String> {
        self.cursor.warning()
    }

    /// Slices the recorder dropped (the writer fell behind) before the chunks read so far.
    #[getter]
    fn dropped_slices(&self) -> u64 {
        self.cursor.dropped_slices
    }

    /// Chunks read so far.
    #[getter]
    fn chunks_read(&self) -> u64 {
        self.cursor.chunks_read
    }

    /// Chunks skipped so far because they could not be read.
    #[getter]
    fn unreadable_chunks(&self) -> u64 {
        self.cursor.unreadable
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiocop_trace::records::{Chunk, SliceRecord, TraceHeader};
    use aiocop_trace::TraceWriter;

    /// A trace whose chunks hold: one slice; definitions only; nothing; two slices.
    fn trace_with_chunks_without_slices(path: &Path) {
        let slice = |duration_ns| SliceRecord { duration_ns, ..SliceRecord::default() };
        let chunks = [
            Chunk { strings: vec![(0, "main".into())], slices: vec![slice(10)], ..Chunk::default() },
            Chunk { strings: vec![(1, "only a definition".into())], ..Chunk::default() },
            Chunk { dropped_slices: 3, ..Chunk::default() },
            Chunk { base_offset_ns: 100, slices: vec![slice(20), slice(30)], ..Chunk::default() },
        ];
        let mut writer = TraceWriter::new(std::fs::File::create(path).unwrap(), &TraceHeader::default()).unwrap();
        for chunk in &chunks {
            writer.write_chunk(chunk).unwrap();
        }
    }

    #[test]
    fn chunks_without_slices_are_passed_over_not_taken_for_slices() {
        let path = std::env::temp_dir().join(format!("aiocop-reading-{}.bin", std::process::id()));
        trace_with_chunks_without_slices(&path);
        let trace = Arc::new(TraceFile::open(&path).unwrap());
        let (mut cursor, mut decoded) = (ChunkCursor::new(trace), Vec::new());
        let mut durations = Vec::new();
        while read_next_slices(&mut cursor, &mut decoded) {
            assert!(!decoded.is_empty());
            durations.extend(decoded.iter().map(|(_, slice, _, _)| slice.duration_ns));
        }
        std::fs::remove_file(&path).unwrap();
        assert_eq!(durations, [10, 20, 30]);
    }
}
