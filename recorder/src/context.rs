//! Context providers: what the program's registered providers return
//! around a slice and at its first blocking event.
//!
//! Place in the flow (record -> trace file): beside the monitor and the
//! slice record, both of which ask for context here; it calls only into
//! the Python side (`config`), so neither calls the other for it.

use crate::config;
use crate::exit_guard;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyDict;

std::thread_local! {
    /// A KeyboardInterrupt or SystemExit a context provider raised in this
    /// thread's slice, raised from the slice once it is recorded, as Ctrl-C
    /// in the callback itself would be.
    static PROVIDER_INTERRUPT: std::cell::RefCell<Option<PyErr>> = const { std::cell::RefCell::new(None) };
}

/// The KeyboardInterrupt or SystemExit a provider raised in this thread's
/// slice, if any, to be raised from the slice.
pub fn take_provider_interrupt() -> Option<PyErr> {
    PROVIDER_INTERRUPT.with(|pending| pending.try_borrow_mut().ok().and_then(|mut pending| pending.take()))
}

/// What the context providers return now, in the current context, if any
/// are registered (for the first blocking event of a slice).
pub fn capture_current_context(py: Python<'_>) -> Option<Bound<'_, PyDict>> {
    has_context_providers(py).then(|| capture_context(py, None)).flatten()
}

/// Whether the program registered any context provider.
pub fn has_context_providers(py: Python<'_>) -> bool {
    config::len_of(py, &config::PROVIDERS) > 0
}

/// What the providers return, run inside `context` (a handle's
/// `contextvars.Context`) if given; None if they failed (logged).
pub fn capture_context<'py>(py: Python<'py>, context: Option<&Bound<'py, PyAny>>) -> Option<Bound<'py, PyDict>> {
    let capture = &config::python_side()?.capture_context;
    // Through the exit guard: a provider is the program's code and may block,
    // in a daemon thread the interpreter ends at exit.
    let captured = match context {
        Some(context) => {
            context.getattr(intern!(py, "run")).and_then(|run| exit_guard::call1(py, &run.unbind(), capture.bind(py)))
        }
        None => exit_guard::call0(py, capture),
    }
    .map(|value| value.into_bound(py));
    match captured {
        Ok(value) => value.cast_into::<PyDict>().ok(),
        // `_capture_context` lets only these through, as the program's own code would.
        Err(error)
            if error.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py)
                || error.is_instance_of::<pyo3::exceptions::PySystemExit>(py) =>
        {
            PROVIDER_INTERRUPT.with(|pending| {
                if let Ok(mut pending) = pending.try_borrow_mut() {
                    pending.get_or_insert(error);
                }
            });
            None
        }
        Err(error) => {
            config::log_warning(py, &format!("error while capturing context: {error}"));
            None
        }
    }
}
