//! The typed objects a trace reads back as: its header and footer, and each
//! slice with its blocking events and stack samples, their frames resolved.
//!
//! Each is a frozen native class (stubs in `python/aiocop/_native.pyi`,
//! re-exported by `aiocop.trace`). A slice's fields are made when it is
//! handed out; strings, frames and stacks are made once per pass and
//! shared by every slice that names them ([`PyObjects`]), so that a pure
//! slice costs one object and a few reference counts.

use aiocop_trace::records::{EventRecord, SliceRecord, StackId, StringId, TraceFooter, TraceHeader};
use aiocop_trace::{Dictionary, TraceFile};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use rustc_hash::FxHashMap;

/// A trace's header: who recorded, when, with which settings.
#[pyclass(module = "aiocop._native", name = "TraceHeader", frozen, get_all)]
pub struct Header {
    format_version: (u16, u16),
    aiocop_version: String,
    python_version: String,
    platform: String,
    host: String,
    pid: u32,
    argv: Vec<String>,
    start_unix_ns: u64,
    start_monotonic_ns: u64,
    label: Option<String>,
    threshold_ns: u64,
    trace_depth: u32,
    event_table: Vec<(String, i64)>,
    records_context: bool,
    parent_pid: u32,
    root_command: Vec<String>,
    role: String,
    sys_path: Vec<String>,
    sample_after_ns: u64,
    sample_interval_ns: u64,
    redacted: bool,
    kept_context_keys: Vec<String>,
}

impl Header {
    pub fn from_trace(trace: &TraceFile) -> Header {
        let header: &TraceHeader = trace.header();
        Header {
            format_version: trace.format_version(),
            aiocop_version: header.aiocop_version.clone(),
            python_version: header.python_version.clone(),
            platform: header.platform.clone(),
            host: header.host.clone(),
            pid: header.pid,
            argv: header.argv.clone(),
            start_unix_ns: header.start_unix_ns,
            start_monotonic_ns: header.start_monotonic_ns,
            label: header.label.clone(),
            threshold_ns: header.threshold_ns,
            trace_depth: header.trace_depth,
            event_table: header.event_table.iter().map(|e| (e.name.clone(), e.weight)).collect(),
            records_context: header.records_context,
            parent_pid: header.process.parent_pid,
            root_command: header.process.root_command.clone(),
            role: header.process.role.clone(),
            sys_path: header.process.sys_path.clone(),
            sample_after_ns: header.sampling.after_ns,
            sample_interval_ns: header.sampling.interval_ns,
            redacted: header.redaction.redacted,
            kept_context_keys: header.redaction.kept_context_keys.clone(),
        }
    }
}

#[pymethods]
impl Header {
    fn __repr__(&self) -> String {
        let (major, minor) = self.format_version;
        format!(
            "TraceHeader(format {major}.{minor}, aiocop {}, Python {}, pid {}, host {:?}, label {:?}, start_unix_ns {})",
            self.aiocop_version, self.python_version, self.pid, self.host, self.label, self.start_unix_ns
        )
    }
}

/// A trace's footer, written by a clean stop.
#[pyclass(module = "aiocop._native", name = "TraceFooter", frozen, get_all)]
pub struct Footer {
    slices: u64,
    events: u64,
    dropped_slices: u64,
    chunks: u64,
    end_offset_ns: u64,
}

impl From<&TraceFooter> for Footer {
    fn from(footer: &TraceFooter) -> Footer {
        Footer {
            slices: footer.slices,
            events: footer.events,
            dropped_slices: footer.dropped_slices,
            chunks: footer.chunks,
            end_offset_ns: footer.end_offset_ns,
        }
    }
}

#[pymethods]
impl Footer {
    fn __repr__(&self) -> String {
        format!(
            "TraceFooter(slices={}, events={}, dropped_slices={}, chunks={}, end_offset_ns={})",
            self.slices, self.events, self.dropped_slices, self.chunks, self.end_offset_ns
        )
    }
}

/// A source location of a stack.
#[pyclass(module = "aiocop._native", frozen, get_all)]
pub struct Frame {
    file: Py<PyString>,
    line: i32,
    function: Py<PyString>,
    /// Since format 1.1; `None` in older traces.
    module: Option<Py<PyString>>,
    qualname: Option<Py<PyString>>,
}

#[pymethods]
impl Frame {
    /// `short/path.py:line:function`, as the analyzer and `BlockingEventInfo.trace` show it.
    fn __str__(&self, py: Python<'_>) -> String {
        aiocop_trace::frame::format_frame(
            self.file.bind(py).to_str().unwrap_or("?"),
            i64::from(self.line),
            self.function.bind(py).to_str().unwrap_or("?"),
        )
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!("Frame({:?})", self.__str__(py))
    }
}

/// A blocking event of a slice.
#[pyclass(module = "aiocop._native", frozen, get_all)]
pub struct Event {
    name: Py<PyString>,
    args: Py<PyString>,
    offset_ns: u64,
    weight: i64,
    stack: Py<PyTuple>,
}

#[pymethods]
impl Event {
    fn __repr__(&self, py: Python<'_>) -> String {
        format!("Event({}({}) at +{} ns)", self.name.bind(py), self.args.bind(py), self.offset_ns)
    }
}

/// One monitored callback run.
#[pyclass(module = "aiocop._native", frozen)]
pub struct Slice {
    #[pyo3(get)]
    start_ns: u64,
    #[pyo3(get)]
    start_unix_ns: u64,
    #[pyo3(get)]
    duration_ns: u64,
    #[pyo3(get)]
    what: Py<PyString>,
    #[pyo3(get)]
    task: Option<Py<PyString>>,
    #[pyo3(get)]
    thread: u32,
    #[pyo3(get)]
    exceeded: bool,
    #[pyo3(get)]
    score: i64,
    #[pyo3(get)]
    dropped_events: u32,
    #[pyo3(get)]
    events: Py<PyTuple>,
    #[pyo3(get)]
    samples: Py<PyTuple>,
    /// The nanoseconds of the slice each sample stands for, in order: the
    /// weights the analyzer uses (equal shares for untimed samples).
    #[pyo3(get)]
    sample_weights_ns: Py<PyTuple>,
    /// Whether each sample's request waited in C code holding the GIL,
    /// called from its innermost frame: the analyzer's `native` (by the
    /// loop thread's CPU time where the trace has it, else the wall clock).
    #[pyo3(get)]
    sample_native: Py<PyTuple>,
    context: Vec<(Py<PyString>, Py<PyString>)>,
}

#[pymethods]
impl Slice {
    /// When it returned, ns after the trace's start.
    #[getter]
    fn end_ns(&self) -> u64 {
        self.start_ns.saturating_add(self.duration_ns)
    }

    /// Context provider values recorded with it (a new dict each time).
    #[getter]
    fn context<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (key, value) in &self.context {
            dict.set_item(key.bind(py), value.bind(py))?;
        }
        Ok(dict)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "Slice({} at {} ns, {} ns, {} event(s), {} sample(s))",
            self.what.bind(py),
            self.start_ns,
            self.duration_ns,
            self.events.bind(py).len(),
            self.samples.bind(py).len()
        )
    }
}

/// The Python objects of one pass, made once each: strings by id, frames
/// and stacks by id, event names and weights by index.
pub struct PyObjects {
    strings: FxHashMap<StringId, Py<PyString>>,
    frames: FxHashMap<u32, Py<Frame>>,
    stacks: FxHashMap<StackId, Py<PyTuple>>,
    event_names: Vec<Py<PyString>>,
    event_weights: Vec<i64>,
    empty: Py<PyTuple>,
}

impl PyObjects {
    pub fn new(py: Python<'_>, header: &TraceHeader) -> PyObjects {
        PyObjects {
            strings: FxHashMap::default(),
            frames: FxHashMap::default(),
            stacks: FxHashMap::default(),
            event_names: header.event_table.iter().map(|e| PyString::new(py, &e.name).unbind()).collect(),
            event_weights: header.event_table.iter().map(|e| e.weight).collect(),
            empty: PyTuple::empty(py).unbind(),
        }
    }

    /// Slice `record`, which started at `(start_ns, start_unix_ns)`: ns
    /// after the trace's start and since the epoch; its samples weigh
    /// `sample_weights_ns`, and `sample_native` says which waited in C code.
    pub fn slice(
        &mut self,
        py: Python<'_>,
        dictionary: &Dictionary,
        (start_ns, start_unix_ns): (u64, u64),
        record: &SliceRecord,
        (sample_weights_ns, sample_native): (&[u64], &[bool]),
    ) -> PyResult<Slice> {
        let events = if record.events.is_empty() {
            self.empty.clone_ref(py)
        } else {
            let events: Vec<Py<Event>> =
                record.events.iter().map(|e| self.event(py, dictionary, e)).collect::<PyResult<_>>()?;
            PyTuple::new(py, events)?.unbind()
        };
        let samples = if record.samples.is_empty() {
            self.empty.clone_ref(py)
        } else {
            let stacks: Vec<Py<PyTuple>> =
                record.samples.iter().map(|s| self.stack(py, dictionary, *s)).collect::<PyResult<_>>()?;
            PyTuple::new(py, stacks)?.unbind()
        };
        let context = record
            .context
            .iter()
            .map(|(k, v)| (self.string(py, dictionary, *k), self.string(py, dictionary, *v)))
            .collect();
        Ok(Slice {
            start_ns,
            start_unix_ns,
            duration_ns: record.duration_ns,
            what: self.string(py, dictionary, record.what),
            task: record.task.map(|t| self.string(py, dictionary, t)),
            thread: record.thread,
            exceeded: record.exceeded,
            score: record.score,
            dropped_events: record.dropped_events,
            events,
            samples,
            sample_weights_ns: self.tuple(py, sample_weights_ns)?,
            sample_native: self.tuple(py, sample_native)?,
            context,
        })
    }

    /// `values` as a tuple (the shared empty one when there are none).
    fn tuple<'py, T: IntoPyObject<'py> + Copy>(&self, py: Python<'py>, values: &[T]) -> PyResult<Py<PyTuple>> {
        if values.is_empty() {
            return Ok(self.empty.clone_ref(py));
        }
        Ok(PyTuple::new(py, values.iter().copied())?.unbind())
    }

    /// String `id` (`<unknown string N>` if the trace never defined it).
    pub fn string(&mut self, py: Python<'_>, dictionary: &Dictionary, id: StringId) -> Py<PyString> {
        self.strings
            .entry(id)
            .or_insert_with(|| match dictionary.string(id) {
                Some(text) => PyString::new(py, text).unbind(),
                None => PyString::new(py, &format!("<unknown string {id}>")).unbind(),
            })
            .clone_ref(py)
    }

    fn event(&mut self, py: Python<'_>, dictionary: &Dictionary, event: &EventRecord) -> PyResult<Py<Event>> {
        let index = usize::from(event.event);
        let name = match self.event_names.get(index) {
            Some(name) => name.clone_ref(py),
            None => PyString::new(py, &format!("<unknown event {index}>")).unbind(),
        };
        let event = Event {
            name,
            args: self.string(py, dictionary, event.args),
            offset_ns: event.offset_ns,
            weight: self.event_weights.get(index).copied().unwrap_or(0),
            stack: self.stack(py, dictionary, event.stack)?,
        };
        Py::new(py, event)
    }

    /// Stack `id`'s frames, innermost first (empty: no stack was captured).
    fn stack(&mut self, py: Python<'_>, dictionary: &Dictionary, id: StackId) -> PyResult<Py<PyTuple>> {
        if let Some(stack) = self.stacks.get(&id) {
            return Ok(stack.clone_ref(py));
        }
        let frame_ids = dictionary.stack(id).unwrap_or_default();
        let frames: Vec<Py<Frame>> =
            frame_ids.iter().map(|f| self.frame(py, dictionary, *f)).collect::<PyResult<_>>()?;
        let stack = PyTuple::new(py, frames)?.unbind();
        self.stacks.insert(id, stack.clone_ref(py));
        Ok(stack)
    }

    fn frame(&mut self, py: Python<'_>, dictionary: &Dictionary, id: u32) -> PyResult<Py<Frame>> {
        if let Some(frame) = self.frames.get(&id) {
            return Ok(frame.clone_ref(py));
        }
        let frame = match dictionary.frame(id) {
            Some(frame) => {
                let name = dictionary.frame_name(id);
                Frame {
                    file: self.string(py, dictionary, frame.file),
                    line: frame.line,
                    function: self.string(py, dictionary, frame.function),
                    module: name.map(|(module, _)| PyString::new(py, module).unbind()),
                    qualname: name.map(|(_, qualname)| PyString::new(py, qualname).unbind()),
                }
            }
            None => Frame {
                file: PyString::new(py, &format!("<unknown frame {id}>")).unbind(),
                line: 0,
                function: PyString::new(py, "?").unbind(),
                module: None,
                qualname: None,
            },
        };
        let frame = Py::new(py, frame)?;
        self.frames.insert(id, frame.clone_ref(py));
        Ok(frame)
    }
}
