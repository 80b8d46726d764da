//! Where each iteration of a stock asyncio loop begins, and how long the
//! loop waited for I/O in it.
//!
//! `BaseEventLoop._run_once` (CPython 3.10 to 3.15 alike) runs one
//! iteration: it computes a timeout, calls `self._selector.select(timeout)`
//! once, then runs the callbacks that were ready. aiocop replaces `select`
//! on the loop's own selector instance (never the class: `subprocess` and
//! other code use the selectors module too) with a builtin that times the
//! original call and hands the poll to the recording. Between two polls of
//! a loop, it ran callbacks without waiting: that is what a stall is.
//!
//! uvloop runs libuv's loop in compiled code: no Python call marks its
//! iterations, so its traces have none and the analyzer cuts stalls by the
//! gaps between slices, as for traces older than format 1.3.

use crate::monitor::{new_builtin, vectorcall, vectorcall_arguments, MethodDefinition};
use crate::{clock, recording, what_ran};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::{PyTraverseError, PyVisit};

/// What the stand-in `select` of a selector holds: the original, bound.
#[pyclass(module = "aiocop._native", frozen)]
pub struct TimedSelect {
    original: Py<PyAny>,
}

#[pymethods]
impl TimedSelect {
    #[getter]
    fn __wrapped__(&self, py: Python<'_>) -> Py<PyAny> {
        self.original.clone_ref(py)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.original)
    }
}

/// A stand-in for a selector's bound `select`, which records each call as a
/// loop iteration's poll while recording.
pub fn timed_select<'py>(py: Python<'py>, original: Py<PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let target = Bound::new(py, TimedSelect { original })?;
    new_builtin(py, &SELECT_DEFINITION, target.as_any())
}

static SELECT_DEFINITION: MethodDefinition = MethodDefinition(std::cell::UnsafeCell::new(ffi::PyMethodDef {
    ml_name: c"select".as_ptr(),
    ml_meth: ffi::PyMethodDefPointer {
        PyCFunctionFastWithKeywords: pyo3::impl_::trampoline::get_trampoline_function!(
            fastcall_cfunction_with_keywords,
            select_entry
        ),
    },
    ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
    ml_doc: c"The selector's select, timed by aiocop as one loop iteration's poll.".as_ptr(),
}));

/// The C entry point of a timed `select`.
///
/// # Safety
/// Called by the interpreter only, with the vectorcall convention: `target`
/// the function's `self` (a `TimedSelect`), `args` holding `nargs`
/// positional arguments then one value per name in `kwnames` (null if none).
unsafe fn select_entry(
    py: Python<'_>,
    target: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<*mut ffi::PyObject> {
    // SAFETY: `self` of this function is always a TimedSelect.
    let target = unsafe { Bound::from_borrowed_ptr(py, target) };
    let original = target.cast::<TimedSelect>()?.get().original.as_ptr();
    let positional = nargs as usize;
    // SAFETY: as this function's.
    let all = unsafe { vectorcall_arguments(args, nargs, kwnames) };
    if !recording::is_active() {
        return vectorcall(py, original, all, positional, kwnames);
    }
    let start_ns = clock::now_ns();
    let result = vectorcall(py, original, all, positional, kwnames);
    let end_ns = clock::now_ns();
    let wait_ns = end_ns.saturating_sub(start_ns);
    recording::record_poll(start_ns, wait_ns, what_ran::thread_number());
    crate::task_timing::poll_ended(end_ns);
    result
}
