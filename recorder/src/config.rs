//! Process-wide settings, written by the Python layer's setup functions and
//! read on the hot path with single atomic loads.

use pyo3::ffi;
use pyo3::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::OnceLock;

static MONITORING_ACTIVE: AtomicBool = AtomicBool::new(false);
static THRESHOLD_NS: AtomicU64 = AtomicU64::new(30_000_000);
static TRACE_DEPTH: AtomicUsize = AtomicUsize::new(20);
/// aiocop 1.2.1's `state._exception_raised`: cleared when a monitored
/// callback starts, set when its HighSeverityBlockingIoException is raised;
/// a callback that finds it set (code assigned it) raises nothing.
static EXCEPTION_RAISED: AtomicBool = AtomicBool::new(false);

pub fn monitoring_active() -> bool {
    MONITORING_ACTIVE.load(Relaxed)
}

pub fn set_monitoring_active(active: bool) {
    MONITORING_ACTIVE.store(active, Relaxed);
}

pub fn threshold_ns() -> u64 {
    THRESHOLD_NS.load(Relaxed)
}

pub fn set_threshold_ns(threshold_ns: u64) {
    THRESHOLD_NS.store(threshold_ns, Relaxed);
}

pub fn exception_raised() -> bool {
    EXCEPTION_RAISED.load(Relaxed)
}

pub fn set_exception_raised(raised: bool) {
    EXCEPTION_RAISED.store(raised, Relaxed);
}

pub fn trace_depth() -> usize {
    TRACE_DEPTH.load(Relaxed)
}

pub fn set_trace_depth(depth: usize) {
    TRACE_DEPTH.store(depth, Relaxed);
}

/// The Python objects the native side works with, handed over once by
/// `aiocop.core` when it is imported.
pub struct PythonSide {
    /// `aiocop.core.state.raise_on_violations`, the ContextVar.
    pub raise_on_violations: Py<PyAny>,
    pub slow_task_event: Py<PyAny>,
    pub high_severity_exception: Py<PyAny>,
    /// `aiocop.core.callbacks._capture_context`.
    pub capture_context: Py<PyAny>,
    /// `aiocop.core.callbacks._report_error(kind, function, error)`.
    pub report_error: Py<PyAny>,
    /// The `aiocop` logger.
    pub logger: Py<PyAny>,
    pub object_new: Py<PyAny>,
}

static PYTHON_SIDE: OnceLock<PythonSide> = OnceLock::new();

pub fn set_python_side(side: PythonSide) {
    let _ = PYTHON_SIDE.set(side);
}

pub fn python_side() -> Option<&'static PythonSide> {
    PYTHON_SIDE.get()
}

/// A list the Python side may replace: `aiocop.core.callbacks._slow_task_callbacks`
/// and `_context_providers` are module globals in aiocop 1.2.1, and code
/// assigns new lists to them. The pointer holds a strong reference; it is
/// read on the hot path with one load.
pub struct ReplaceableList(AtomicPtr<ffi::PyObject>);

impl ReplaceableList {
    const fn new() -> Self {
        Self(AtomicPtr::new(std::ptr::null_mut()))
    }

    /// The current list, or None before `aiocop.core` configured it.
    pub fn get<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        // SAFETY: a non-null pointer holds a strong reference, which only
        // `set` releases; both run with the GIL held, so it cannot be
        // released between this load and the new reference taken here.
        unsafe { Bound::from_borrowed_ptr_or_opt(py, self.0.load(Relaxed)) }
    }

    pub fn set(&self, list: Bound<'_, PyAny>) {
        let old = self.0.swap(list.into_ptr(), Relaxed);
        if !old.is_null() {
            // SAFETY: the GIL is held (the caller has a Bound) and `old` was a strong reference.
            unsafe { ffi::Py_DECREF(old) };
        }
    }
}

/// The live list of registered slow-task callbacks.
pub static CALLBACKS: ReplaceableList = ReplaceableList::new();
/// The live list of registered context providers.
pub static PROVIDERS: ReplaceableList = ReplaceableList::new();

/// The number of items in `list`, 0 when it is not configured or not sized.
pub fn len_of(py: Python<'_>, list: &ReplaceableList) -> usize {
    list.get(py).and_then(|list| list.len().ok()).unwrap_or(0)
}

/// Logs a warning through the `aiocop` logger; errors while logging are
/// dropped, since there is nowhere left to report them. Through the exit
/// guard: the program's handlers may block (a file, a socket).
pub fn log_warning(py: Python<'_>, message: &str) {
    if let Some(side) = python_side() {
        let arguments = pyo3::types::PyTuple::new(py, ["%s", message]);
        let warning = side.logger.bind(py).getattr("warning");
        if let (Ok(warning), Ok(arguments)) = (warning, arguments) {
            let _ = crate::exit_guard::call(py, &warning.unbind(), &arguments, None);
        }
    }
}
