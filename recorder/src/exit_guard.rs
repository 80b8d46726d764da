//! Calls into Python that a finalizing interpreter cannot unwind through
//! aiocop's frames.
//!
//! On CPython 3.11 to 3.13 a daemon thread that wants the GIL back while the
//! interpreter finalizes is ended by `pthread_exit()`, which unwinds its
//! stack (gh-87135); crossing one of aiocop's `extern "C"` entry points, that
//! unwind aborts the whole process. A daemon thread running a monitored loop
//! whose callback blocks, or calling an audited `time.sleep`, is inside such
//! a frame most of the time. Every call into Python code that may release
//! the GIL goes through `csrc/exit_guard.c`, which parks such a thread for
//! good instead (as CPython 3.14 does itself), before the unwind reaches
//! aiocop's frames.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

extern "C" {
    fn aiocop_guarded_vectorcall(
        callable: *mut ffi::PyObject,
        args: *const *mut ffi::PyObject,
        nargsf: usize,
        kwnames: *mut ffi::PyObject,
    ) -> *mut ffi::PyObject;
    fn aiocop_guarded_call(
        callable: *mut ffi::PyObject,
        args: *mut ffi::PyObject,
        kwargs: *mut ffi::PyObject,
    ) -> *mut ffi::PyObject;
}

/// `function(*args)` by the vectorcall convention: `positional` positional
/// arguments then one per name in `kwnames` (null if none). A new reference.
pub fn vectorcall(
    py: Python<'_>,
    function: *mut ffi::PyObject,
    args: &[*mut ffi::PyObject],
    positional: usize,
    kwnames: *mut ffi::PyObject,
) -> PyResult<*mut ffi::PyObject> {
    // SAFETY: `args` holds live borrowed references laid out as vectorcall
    // expects; the GIL is held (`py`).
    let result = unsafe { aiocop_guarded_vectorcall(function, args.as_ptr(), positional, kwnames) };
    if result.is_null() {
        Err(PyErr::fetch(py))
    } else {
        Ok(result)
    }
}

/// `function()`.
pub fn call0(py: Python<'_>, function: &Py<PyAny>) -> PyResult<Py<PyAny>> {
    let result = vectorcall(py, function.as_ptr(), &[], 0, std::ptr::null_mut())?;
    // SAFETY: a new, non-null reference.
    Ok(unsafe { Bound::from_owned_ptr(py, result) }.unbind())
}

/// `function(argument)`.
pub fn call1(py: Python<'_>, function: &Py<PyAny>, argument: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    let result = vectorcall(py, function.as_ptr(), &[argument.as_ptr()], 1, std::ptr::null_mut())?;
    // SAFETY: a new, non-null reference.
    Ok(unsafe { Bound::from_owned_ptr(py, result) }.unbind())
}

/// `function(*args, **kwargs)`.
pub fn call(
    py: Python<'_>,
    function: &Py<PyAny>,
    args: &Bound<'_, PyTuple>,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<Py<PyAny>> {
    let kwargs = kwargs.map_or(std::ptr::null_mut(), |k| k.as_ptr());
    // SAFETY: live objects, the GIL held; a new reference or NULL with an exception set.
    let result = unsafe { aiocop_guarded_call(function.as_ptr(), args.as_ptr(), kwargs) };
    if result.is_null() {
        Err(PyErr::fetch(py))
    } else {
        // SAFETY: a new, non-null reference.
        Ok(unsafe { Bound::from_owned_ptr(py, result) }.unbind())
    }
}
