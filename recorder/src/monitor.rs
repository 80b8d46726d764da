//! Timing of every callback an event loop runs.
//!
//! Two ways in, one core (`run_slice`):
//! - Stock asyncio runs every ready handle through `Handle._run`: timers,
//!   `call_soon`, and I/O readiness callbacks (a protocol's `data_received`,
//!   `add_reader` callbacks) that never pass through `call_soon`. aiocop
//!   replaces `Handle._run` with `run_handle`, which times the original.
//! - Other loops (uvloop) run handles in compiled code, so their
//!   `call_soon`, `call_later`, `call_at` and `call_soon_threadsafe` are
//!   replaced on the loop instance by a `SchedulePatch`, which wraps each
//!   callback in a `MonitoredCallback`, as aiocop 1.2.1 does.

use crate::emit::{self, FinishedSlice};
use crate::{clock, config, sampler, slice};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple, PyType};
use pyo3::{intern, PyTraverseError, PyVisit};
use std::sync::{Mutex, OnceLock};

/// Addresses of the stock asyncio loops being monitored; a handful at most.
static MONITORED_LOOPS: Mutex<Vec<usize>> = Mutex::new(Vec::new());
/// `asyncio.events.Handle._run` as it was before aiocop replaced it.
static ORIGINAL_HANDLE_RUN: OnceLock<Py<PyAny>> = OnceLock::new();

pub fn set_loop_monitored(address: usize, monitored: bool) {
    if let Ok(mut loops) = MONITORED_LOOPS.lock() {
        loops.retain(|a| *a != address);
        if monitored {
            loops.push(address);
        }
    }
}

fn is_loop_monitored(address: usize) -> bool {
    MONITORED_LOOPS.lock().is_ok_and(|loops| loops.contains(&address))
}

/// Replaces `handle_class._run` (once) with a method descriptor calling
/// `run_handle`. A method descriptor, like a C type's own methods, is called
/// by the interpreter without creating a bound method per call.
pub fn install_handle_run(py: Python<'_>, handle_class: &Bound<'_, PyType>) -> PyResult<bool> {
    let original = handle_class.getattr("_run")?;
    if ORIGINAL_HANDLE_RUN.set(original.unbind()).is_err() {
        return Ok(false);
    }
    let definition = Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: c"_run".as_ptr(),
        ml_meth: ffi::PyMethodDefPointer {
            PyCFunction: pyo3::impl_::trampoline::get_trampoline_function!(noargs, handle_run_entry),
        },
        ml_flags: ffi::METH_NOARGS,
        ml_doc: c"Run the handle's callback; timed by aiocop when its loop is monitored.".as_ptr(),
    }));
    // SAFETY: the type is alive, the definition is leaked so it lives forever;
    // PyDescr_NewMethod returns a new reference or NULL.
    let descriptor =
        unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyDescr_NewMethod(handle_class.as_type_ptr(), definition))? };
    handle_class.setattr("_run", descriptor)?;
    Ok(true)
}

/// The C entry point of the `_run` descriptor. pyo3's trampoline marks the
/// thread as attached (so references are released at once, not deferred),
/// turns a panic into a Python exception and an `Err` into a raised one.
unsafe fn handle_run_entry(py: Python<'_>, handle: *mut ffi::PyObject) -> PyResult<*mut ffi::PyObject> {
    // SAFETY: the interpreter passes a live `self`.
    let handle = unsafe { Bound::from_borrowed_ptr(py, handle) };
    run_handle(py, &handle).map(Py::into_ptr)
}

/// Runs the handle, timing it when its loop is monitored and monitoring is
/// active.
fn run_handle(py: Python<'_>, handle: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    let original = ORIGINAL_HANDLE_RUN
        .get()
        .ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("aiocop: Handle._run was not saved"))?;
    if !config::monitoring_active() {
        return original.call1(py, (handle,));
    }
    let event_loop = handle.getattr(intern!(py, "_loop"))?;
    if !is_loop_monitored(event_loop.as_ptr() as usize) {
        return original.call1(py, (handle,));
    }
    run_slice(py, Some(handle), || original.call1(py, (handle,)))
}

/// Runs one callback as a monitored slice and reports it.
///
/// `handle` is given when the caller runs outside the handle's
/// `contextvars.Context` (stock asyncio's `Handle._run`): context providers
/// then run inside that context.
pub fn run_slice(
    py: Python<'_>,
    handle: Option<&Bound<'_, PyAny>>,
    run: impl FnOnce() -> PyResult<Py<PyAny>>,
) -> PyResult<Py<PyAny>> {
    let providers = has_context_providers(py);
    let context = providers
        .then(|| handle.and_then(|h| h.getattr(intern!(py, "_context")).ok()).filter(|c| !c.is_none()))
        .flatten();
    let context = context.as_ref();
    let before = providers.then(|| capture_context(py, context)).flatten();

    let outer = slice::begin();
    let start_ns = clock::now_ns();
    sampler::slice_started(start_ns);
    let result = run();
    let elapsed_ns = clock::now_ns() - start_ns;
    let samples = sampler::slice_finished(start_ns);
    let finished = slice::end(outer);

    if finished.total_events == 0 && elapsed_ns < config::threshold_ns() {
        return result;
    }
    let after = providers.then(|| capture_context(py, context)).flatten();
    let report = FinishedSlice { elapsed_ns, slice: finished, samples, context: merge_contexts(py, before, after) };
    match (emit::emit(py, report), result) {
        (Err(violation), Ok(_)) => Err(violation),
        (_, result) => result,
    }
}

fn has_context_providers(py: Python<'_>) -> bool {
    config::python_side().is_some_and(|side| side.providers.bind(py).len().is_ok_and(|n| n > 0))
}

fn capture_context<'py>(py: Python<'py>, context: Option<&Bound<'py, PyAny>>) -> Option<Bound<'py, PyDict>> {
    let capture = config::python_side()?.capture_context.bind(py);
    let captured = match context {
        Some(context) => context.call_method1(intern!(py, "run"), (capture,)),
        None => capture.call0(),
    };
    match captured {
        Ok(value) => value.cast_into::<PyDict>().ok(),
        Err(error) => {
            config::log_warning(py, &format!("error while capturing context: {error}"));
            None
        }
    }
}

/// `{**before, **{k: v for k, v in after.items() if v is not None}}`.
fn merge_contexts<'py>(
    py: Python<'py>,
    before: Option<Bound<'py, PyDict>>,
    after: Option<Bound<'py, PyDict>>,
) -> Option<Bound<'py, PyDict>> {
    let merged = before.unwrap_or_else(|| PyDict::new(py));
    for (key, value) in after.iter().flat_map(|after| after.iter()) {
        if !value.is_none() {
            let _ = merged.set_item(key, value);
        }
    }
    Some(merged)
}

/// A callback and its arguments, run as a monitored slice when called.
#[pyclass(module = "aiocop._native")]
pub struct MonitoredCallback {
    callback: Option<Py<PyAny>>,
    args: Option<Py<PyTuple>>,
}

#[pymethods]
impl MonitoredCallback {
    fn __call__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let (Some(callback), Some(args)) = (&self.callback, &self.args) else { return Ok(py.None()) };
        let call = || callback.call1(py, args.bind(py));
        if !config::monitoring_active() {
            return call();
        }
        run_slice(py, None, call)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        match &self.callback {
            Some(callback) => Ok(callback.bind(py).repr()?.to_string()),
            None => Ok("<MonitoredCallback (cleared)>".to_owned()),
        }
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(callback) = &self.callback {
            visit.call(callback)?;
        }
        if let Some(args) = &self.args {
            visit.call(args)?;
        }
        Ok(())
    }

    fn __clear__(&mut self) {
        self.callback = None;
        self.args = None;
    }
}

/// Stands in for a loop's `call_soon` (and kin): wraps the callback and its
/// arguments into a `MonitoredCallback`, then schedules that through the
/// original method with the same leading arguments and keywords.
#[pyclass(module = "aiocop._native")]
pub struct SchedulePatch {
    original: Option<Py<PyAny>>,
    /// Position of the callback among the positional arguments: 0 for
    /// `call_soon`, 1 for `call_later(delay, ...)` and `call_at(when, ...)`.
    callback_index: usize,
}

#[pymethods]
impl SchedulePatch {
    #[new]
    fn new(original: Py<PyAny>, callback_index: usize) -> Self {
        Self { original: Some(original), callback_index }
    }

    #[pyo3(signature = (*args, **kwargs))]
    fn __call__(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let Some(original) = &self.original else { return Ok(py.None()) };
        let index = self.callback_index;
        if args.len() <= index {
            return original.call(py, args, kwargs);
        }
        let callback = args.get_item(index)?.unbind();
        let callback_args = args.get_slice(index + 1, args.len()).unbind();
        let wrapped = Py::new(py, MonitoredCallback { callback: Some(callback), args: Some(callback_args) })?;
        let mut leading: Vec<Bound<'_, PyAny>> = args.get_slice(0, index).iter().collect();
        leading.push(wrapped.into_bound(py).into_any());
        original.call(py, PyTuple::new(py, leading)?, kwargs)
    }

    #[getter]
    fn __wrapped__(&self, py: Python<'_>) -> Py<PyAny> {
        self.original.as_ref().map_or_else(|| py.None(), |o| o.clone_ref(py))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(original) = &self.original {
            visit.call(original)?;
        }
        Ok(())
    }

    fn __clear__(&mut self) {
        self.original = None;
    }
}
