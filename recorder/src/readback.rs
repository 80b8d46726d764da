//! Reading a trace back into Python objects with the same reader the
//! analyzer uses (`aiocop_trace::reader`), for tests and small traces.

use aiocop_trace::reader::{Dictionary, TraceFile};
use aiocop_trace::records::{Chunk, TraceHeader};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use std::path::Path;

/// The whole trace as dicts: `header`, `footer` (None if the file was cut
/// short), `cut_short`, `chunks`, `dropped` and `slices`, each slice with its
/// events and stacks resolved to `path:line:function` strings.
pub fn read_trace<'py>(py: Python<'py>, path: &str) -> PyResult<Bound<'py, PyDict>> {
    let trace = TraceFile::open(Path::new(path)).map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
    let chunks: Vec<Chunk> =
        trace.chunks().collect::<Result<_, _>>().map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
    let mut dictionary = Dictionary::default();
    for chunk in &chunks {
        dictionary.add(chunk);
    }
    let result = PyDict::new(py);
    result.set_item("header", header_dict(py, trace.header())?)?;
    let footer = match trace.footer() {
        Some(footer) => {
            let dict = PyDict::new(py);
            dict.set_item("slices", footer.slices)?;
            dict.set_item("events", footer.events)?;
            dict.set_item("dropped_slices", footer.dropped_slices)?;
            dict.set_item("chunks", footer.chunks)?;
            dict.set_item("end_offset_ns", footer.end_offset_ns)?;
            Some(dict)
        }
        None => None,
    };
    result.set_item("footer", footer)?;
    result.set_item("cut_short", trace.cut_short())?;
    result.set_item("chunks", chunks.len())?;
    result.set_item("dropped", chunks.iter().map(|c| c.dropped_slices).sum::<u64>())?;
    let event_names: Vec<&str> = trace.header().event_table.iter().map(|e| e.name.as_str()).collect();
    let slices = PyList::empty(py);
    for chunk in &chunks {
        for slice in &chunk.slices {
            let record = PyDict::new(py);
            record.set_item("start_delta_ns", slice.start_delta_ns)?;
            record.set_item("duration_ns", slice.duration_ns)?;
            record.set_item("what", dictionary.string(slice.what))?;
            record.set_item("task", slice.task.and_then(|t| dictionary.string(t)))?;
            record.set_item("thread", slice.thread)?;
            record.set_item("exceeded", slice.exceeded)?;
            record.set_item("score", slice.score)?;
            record.set_item("dropped_events", slice.dropped_events)?;
            let events = PyList::empty(py);
            for event in &slice.events {
                let dict = PyDict::new(py);
                dict.set_item("event", event_names.get(event.event as usize).copied())?;
                dict.set_item("args", dictionary.string(event.args))?;
                dict.set_item("offset_ns", event.offset_ns)?;
                dict.set_item("stack", stack_strings(&dictionary, event.stack))?;
                events.append(dict)?;
            }
            record.set_item("events", events)?;
            let samples: Vec<Vec<String>> = slice.samples.iter().map(|s| stack_strings(&dictionary, *s)).collect();
            record.set_item("samples", samples)?;
            let names: Vec<Vec<String>> = slice.events.iter().map(|e| stack_names(&dictionary, e.stack)).collect();
            record.set_item("event_frame_names", names)?;
            let context = PyDict::new(py);
            for (key, value) in &slice.context {
                context.set_item(dictionary.string(*key), dictionary.string(*value))?;
            }
            record.set_item("context", context)?;
            slices.append(record)?;
        }
    }
    result.set_item("slices", slices)?;
    Ok(result)
}

fn stack_strings(dictionary: &Dictionary, stack: u32) -> Vec<String> {
    dictionary
        .stack(stack)
        .map(|frames| frames.iter().map(|f| dictionary.format_frame(*f)).collect())
        .unwrap_or_default()
}

/// The frames of a stack as `module:qualname` (format 1.1; `?` where the
/// trace did not record them).
fn stack_names(dictionary: &Dictionary, stack: u32) -> Vec<String> {
    let name = |f: &u32| dictionary.frame_name(*f).map_or_else(|| "?".to_owned(), |(m, q)| format!("{m}:{q}"));
    dictionary.stack(stack).map(|frames| frames.iter().map(name).collect()).unwrap_or_default()
}

fn header_dict<'py>(py: Python<'py>, header: &TraceHeader) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("aiocop_version", &header.aiocop_version)?;
    dict.set_item("python_version", &header.python_version)?;
    dict.set_item("platform", &header.platform)?;
    dict.set_item("host", &header.host)?;
    dict.set_item("pid", header.pid)?;
    dict.set_item("argv", &header.argv)?;
    dict.set_item("start_unix_ns", header.start_unix_ns)?;
    dict.set_item("start_monotonic_ns", header.start_monotonic_ns)?;
    dict.set_item("label", &header.label)?;
    dict.set_item("threshold_ns", header.threshold_ns)?;
    dict.set_item("trace_depth", header.trace_depth)?;
    let table: Vec<(&str, i64)> = header.event_table.iter().map(|e| (e.name.as_str(), e.weight)).collect();
    dict.set_item("event_table", table)?;
    dict.set_item("records_context", header.records_context)?;
    dict.set_item("parent_pid", header.process.parent_pid)?;
    dict.set_item("root_command", &header.process.root_command)?;
    dict.set_item("role", &header.process.role)?;
    dict.set_item("sys_path", &header.process.sys_path)?;
    dict.set_item("sample_after_ns", header.sampling.after_ns)?;
    dict.set_item("sample_interval_ns", header.sampling.interval_ns)?;
    dict.set_item("redacted", header.redaction.redacted)?;
    dict.set_item("kept_context_keys", &header.redaction.kept_context_keys)?;
    Ok(dict)
}
