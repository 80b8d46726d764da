//! Turns a finished slice into what users see: a `SlowTaskEvent` for the
//! registered callbacks, and `HighSeverityBlockingIoException` when they
//! asked for it.
//!
//! This is the only place strings are built from captured events, and it
//! only runs for slices that did blocking I/O or overran the threshold, and
//! only when someone is listening.

use crate::config::{self, PythonSide};
use crate::slice::{RawEvent, Slice};
use crate::stacks::{self, StackId};
use aiocop_trace::severity::THRESHOLD_HIGH;
use aiocop_trace::{level_from_score, SeverityLevel, BLOCKING_EVENTS};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};
use pyo3::{intern, PyTraverseError, PyVisit};

/// Characters of each argument shown in `BlockingEventInfo.event`.
const MAX_ARG_CHARS: usize = 100;

pub struct FinishedSlice<'py> {
    pub elapsed_ns: u64,
    pub slice: Slice,
    pub samples: Vec<StackId>,
    pub context: Option<Bound<'py, PyDict>>,
}

/// Reports the slice. Returns an error only to raise
/// `HighSeverityBlockingIoException`; anything else that goes wrong is
/// logged and swallowed, never raised into the application.
pub fn emit(py: Python<'_>, finished: FinishedSlice<'_>) -> PyResult<()> {
    let Some(side) = config::python_side() else { return Ok(()) };
    match build_and_deliver(py, side, finished) {
        Ok(None) => Ok(()),
        Ok(Some(exception)) => Err(exception),
        Err(error) => {
            config::log_warning(py, &format!("error while reporting a monitored callback: {error}"));
            Ok(())
        }
    }
}

fn build_and_deliver(py: Python<'_>, side: &PythonSide, finished: FinishedSlice<'_>) -> PyResult<Option<PyErr>> {
    let threshold_ns = config::threshold_ns();
    let exceeded = finished.elapsed_ns >= threshold_ns;
    let slice = finished.slice;
    let io = slice.total_events > 0;
    // Events an allow-list allowed are reported but never raised for.
    let raise = io
        && exceeded
        && slice.should_raise
        && slice.unallowed_score() >= THRESHOLD_HIGH
        && !config::exception_raised();
    let listening = config::len_of(py, &config::CALLBACKS) > 0;
    if !(io || exceeded) || !(listening || raise) {
        return Ok(None);
    }
    let elapsed_ms = finished.elapsed_ns as f64 / 1e6;
    let threshold_ms = threshold_ns as f64 / 1e6;
    let score = if io { slice.score } else { 0 };
    let level = match level_from_score(score) {
        SeverityLevel::Low => intern!(py, "low"),
        SeverityLevel::Medium => intern!(py, "medium"),
        SeverityLevel::High => intern!(py, "high"),
    };
    let dropped = slice.dropped_events();
    let report = Bound::new(py, PendingReport { events: slice.events, samples: finished.samples })?;
    // The exception shows the events, so they are formatted now; otherwise
    // only when a callback first reads them.
    let events = if raise { Some(report.borrow().blocking_events(py)?) } else { None };
    if listening {
        let event = side.object_new.call1(py, (side.slow_task_event.clone_ref(py),))?.into_bound(py);
        // Filled through its __dict__: the frozen dataclass's __init__ sets each
        // field with object.__setattr__ and would cost more than all the rest.
        let fields = event.getattr(intern!(py, "__dict__"))?.cast_into::<PyDict>()?;
        fields.set_item(intern!(py, "elapsed_ms"), elapsed_ms)?;
        fields.set_item(intern!(py, "threshold_ms"), threshold_ms)?;
        fields.set_item(intern!(py, "exceeded_threshold"), exceeded)?;
        fields.set_item(intern!(py, "severity_score"), score)?;
        fields.set_item(intern!(py, "severity_level"), level)?;
        fields.set_item(
            intern!(py, "reason"),
            if io { intern!(py, "io_blocking") } else { intern!(py, "cpu_blocking") },
        )?;
        fields.set_item(intern!(py, "context"), finished.context.clone().unwrap_or_else(|| PyDict::new(py)))?;
        fields.set_item(intern!(py, "dropped_blocking_events"), dropped)?;
        match &events {
            Some(events) => {
                fields.set_item(intern!(py, "blocking_events"), events)?;
                fields.set_item(intern!(py, "cpu_stack_samples"), report.borrow().cpu_stack_samples(py)?)?;
            }
            // SlowTaskEvent.__getattr__ formats the missing fields from it on first access.
            None => fields.set_item(intern!(py, "_aiocop_pending"), &report)?,
        }
        invoke_callbacks(py, side, &event)?;
    }
    let Some(events) = events else { return Ok(None) };
    config::set_exception_raised(true);
    let exception = side.high_severity_exception.call1(py, (score, level, elapsed_ms, threshold_ms, events))?;
    Ok(Some(PyErr::from_value(exception.into_bound(py))))
}

/// The class attribute standing for `SlowTaskEvent.blocking_events` and
/// `cpu_stack_samples`. It is a non-data descriptor, so Python consults it
/// only when the instance's `__dict__` lacks the field: for events made here,
/// which carry a `PendingReport` instead. It formats the field, stores it in
/// the instance (later reads are plain attribute reads), and drops the
/// pending report once both fields are formatted.
#[pyclass(module = "aiocop._native", frozen)]
pub struct FormattedOnRead {
    samples: bool,
}

#[pymethods]
impl FormattedOnRead {
    #[new]
    fn new(field: &str) -> PyResult<Self> {
        match field {
            "blocking_events" => Ok(Self { samples: false }),
            "cpu_stack_samples" => Ok(Self { samples: true }),
            _ => Err(pyo3::exceptions::PyValueError::new_err(format!("no formatted field named {field:?}"))),
        }
    }

    fn __get__<'py>(
        &self,
        instance: Option<Bound<'py, PyAny>>,
        _owner: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let name = if self.samples { "cpu_stack_samples" } else { "blocking_events" };
        let missing = || pyo3::exceptions::PyAttributeError::new_err(name);
        let instance = instance.filter(|i| !i.is_none()).ok_or_else(missing)?;
        let py = instance.py();
        let fields = instance.getattr(intern!(py, "__dict__"))?.cast_into::<PyDict>()?;
        let pending_key = intern!(py, "_aiocop_pending");
        let pending = fields.get_item(pending_key)?.ok_or_else(missing)?;
        let pending = pending.cast::<PendingReport>()?.get();
        let value = if self.samples { pending.cpu_stack_samples(py)? } else { pending.blocking_events(py)? };
        let (key, other_key) = if self.samples {
            (intern!(py, "cpu_stack_samples"), intern!(py, "blocking_events"))
        } else {
            (intern!(py, "blocking_events"), intern!(py, "cpu_stack_samples"))
        };
        fields.set_item(key, &value)?;
        if fields.contains(other_key)? {
            fields.del_item(pending_key)?;
        }
        Ok(value.into_any())
    }
}

/// What a slice captured, kept unformatted: the events' arguments and
/// interned stacks, and the CPU samples' stacks. Strings are built only when
/// a user reads `SlowTaskEvent.blocking_events` or `cpu_stack_samples`.
#[pyclass(module = "aiocop._native", frozen)]
pub struct PendingReport {
    events: Vec<RawEvent>,
    samples: Vec<StackId>,
}

#[pymethods]
impl PendingReport {
    /// `BlockingEventInfo` dicts, in the order the events happened.
    fn blocking_events<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.events.iter().map(|e| format_event(py, e)).collect::<PyResult<Vec<_>>>()?)
    }

    /// Each kept event as `(name, argument summary, weight, frames)`, the
    /// frames `(filename, line, module, qualname)` innermost first: what an
    /// allow-list matches and what a test failure shows.
    #[allow(clippy::type_complexity)]
    fn event_details(&self, py: Python<'_>) -> Vec<(&'static str, String, i64, Vec<(String, i32, String, String)>)> {
        self.events
            .iter()
            .map(|event| {
                let spec = &BLOCKING_EVENTS[event.event_index as usize];
                let frames = event.stack.map(stacks::named_frames_of).unwrap_or_default();
                (spec.name, format_args(event.args.bind(py)), spec.weight, frames)
            })
            .collect()
    }

    /// `CpuStackSample` dicts, one per distinct stack, most frequent first.
    fn cpu_stack_samples<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        format_samples(py, &self.samples)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.events.iter().try_for_each(|event| visit.call(&event.args))
    }
}

/// Calls every registered callback with the event; one that raises is
/// reported (logged the first time, always counted) and the others still run.
fn invoke_callbacks(py: Python<'_>, side: &PythonSide, event: &Bound<'_, PyAny>) -> PyResult<()> {
    // A snapshot, so a callback may unregister itself.
    let Some(registered) = config::CALLBACKS.get(py) else { return Ok(()) };
    let registered = registered.cast::<PyList>()?;
    let callbacks = registered.get_slice(0, registered.len());
    for callback in callbacks.iter() {
        if let Err(error) = crate::exit_guard::call1(py, &callback.clone().unbind(), event) {
            // Reported through the program's logging, which may block: guarded too.
            let arguments = PyTuple::new(
                py,
                [
                    PyString::new(py, "slow task callback").into_any(),
                    callback,
                    error.into_value(py).into_bound(py).into_any(),
                ],
            )?;
            crate::exit_guard::call(py, &side.report_error, &arguments, None)?;
        }
    }
    Ok(())
}

/// A `BlockingEventInfo` dict: `event`, `trace`, `entry_point`, `severity`,
/// and `allowed_by` (the allow-list entry's identity) for an allowed event
/// only, so that without an allow-list the dict is aiocop 1.2.1's.
fn format_event<'py>(py: Python<'py>, event: &RawEvent) -> PyResult<Bound<'py, PyDict>> {
    let spec = &BLOCKING_EVENTS[event.event_index as usize];
    let (trace, entry_point) = stacks::describe(py, event.stack);
    let info = PyDict::new(py);
    info.set_item(intern!(py, "event"), format!("{}({})", spec.name, format_args(event.args.bind(py))))?;
    info.set_item(intern!(py, "trace"), trace)?;
    info.set_item(intern!(py, "entry_point"), entry_point)?;
    info.set_item(intern!(py, "severity"), spec.weight)?;
    if let Some(identity) = &event.allowed_by {
        info.set_item(intern!(py, "allowed_by"), identity.as_ref())?;
    }
    Ok(info)
}

/// The audit arguments as aiocop 1.2.1 shows them: each argument's `str()`,
/// cut to 100 characters, joined by ", ". Patched functions raise
/// `(args, kwargs)`; only `args` is shown for those.
pub fn format_args(args: &Bound<'_, PyAny>) -> String {
    let Ok(tuple) = args.cast::<PyTuple>() else {
        let items: PyResult<Vec<Bound<'_, PyAny>>> = args.try_iter().and_then(|items| items.collect());
        return items.map_or_else(|_| FORMAT_ERROR.to_owned(), |items| join_shown(items.iter()));
    };
    let patched_call = tuple.len() == 2
        && tuple.get_borrowed_item(0).is_ok_and(|a| a.is_instance_of::<PyTuple>())
        && tuple.get_borrowed_item(1).is_ok_and(|k| k.is_instance_of::<PyDict>());
    let call_args =
        if patched_call { tuple.get_item(0).ok().and_then(|a| a.cast_into::<PyTuple>().ok()) } else { None };
    let shown = call_args.as_ref().unwrap_or(tuple);
    join_shown(shown.iter_borrowed())
}

const FORMAT_ERROR: &str = "error_formatting_args";

/// Joins the shown arguments, or gives "error_formatting_args" if any
/// `str()` failed, as aiocop 1.2.1 does.
fn join_shown<'py, Item: std::ops::Deref<Target = Bound<'py, PyAny>>>(items: impl Iterator<Item = Item>) -> String {
    let mut text = String::with_capacity(64);
    for (index, item) in items.enumerate() {
        if index > 0 {
            text.push_str(", ");
        }
        if push_shown(&mut text, &item).is_err() {
            return FORMAT_ERROR.to_owned();
        }
    }
    text
}

/// Appends `str(item)` cut to MAX_ARG_CHARS characters. Exact `str` and
/// `int` arguments (paths, modes, flags: most of them) are written without
/// calling `str()`.
fn push_shown(text: &mut String, item: &Bound<'_, PyAny>) -> PyResult<()> {
    use std::fmt::Write;
    if item.is_exact_instance_of::<pyo3::types::PyInt>() {
        if let Ok(number) = item.extract::<i64>() {
            let _ = write!(text, "{number}");
            return Ok(());
        }
    }
    let shown =
        if item.is_exact_instance_of::<PyString>() { item.clone().cast_into::<PyString>()? } else { item.str()? };
    let shown = shown.to_str()?;
    // A string of at most MAX_ARG_CHARS bytes has at most as many characters.
    let cut = if shown.len() <= MAX_ARG_CHARS { None } else { shown.char_indices().nth(MAX_ARG_CHARS) };
    match cut {
        Some((cut, _)) => text.push_str(&shown[..cut]),
        None => text.push_str(shown),
    }
    Ok(())
}

/// `CpuStackSample` dicts, one per distinct stack, most frequent first.
fn format_samples<'py>(py: Python<'py>, samples: &[StackId]) -> PyResult<Bound<'py, PyList>> {
    let mut counts: Vec<(StackId, usize)> = Vec::new();
    for stack in samples {
        match counts.iter_mut().find(|(s, _)| s == stack) {
            Some((_, count)) => *count += 1,
            None => counts.push((*stack, 1)),
        }
    }
    counts.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
    let list = PyList::empty(py);
    for (stack, count) in counts {
        let (trace, entry_point) = stacks::describe(py, Some(stack));
        let sample = PyDict::new(py);
        sample.set_item(intern!(py, "trace"), trace)?;
        sample.set_item(intern!(py, "entry_point"), entry_point)?;
        sample.set_item(intern!(py, "count"), count)?;
        list.append(sample)?;
    }
    Ok(list)
}
