//! Process-wide settings, written by the Python layer's setup functions and
//! read on the hot path with single atomic loads.

use pyo3::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::OnceLock;

static MONITORING_ACTIVE: AtomicBool = AtomicBool::new(false);
static THRESHOLD_NS: AtomicU64 = AtomicU64::new(30_000_000);
static TRACE_DEPTH: AtomicUsize = AtomicUsize::new(20);

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
    /// The live list of registered slow-task callbacks.
    pub callbacks: Py<PyAny>,
    /// The live list of registered context providers.
    pub providers: Py<PyAny>,
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

/// Logs a warning through the `aiocop` logger; errors while logging are
/// dropped, since there is nowhere left to report them.
pub fn log_warning(py: Python<'_>, message: &str) {
    if let Some(side) = python_side() {
        let _ = side.logger.call_method1(py, "warning", ("%s", message));
    }
}
