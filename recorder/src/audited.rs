//! Wrappers that make functions without a native audit event raise one
//! (`patch_audit_functions`): `os.stat`, socket methods, `time.sleep`
//! before Python 3.13, ...
//!
//! They raise the event with `(args, kwargs)` as aiocop 1.2.1 does, so other
//! audit hooks see the same thing. Socket methods called on a non-blocking
//! socket (timeout 0.0: asyncio's own transports) raise nothing.

use crate::ffi as cpython;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use pyo3::{intern, PyTraverseError, PyVisit};
use std::ffi::CString;

#[pyclass(module = "aiocop._native")]
pub struct AuditedFunction {
    original: Option<Py<PyAny>>,
    event: CString,
    /// Whether the first argument may be a socket whose timeout decides.
    socket_method: bool,
}

#[pymethods]
impl AuditedFunction {
    #[new]
    fn new(original: Py<PyAny>, event: &str) -> PyResult<Self> {
        let socket_method = event.starts_with("socket.socket.") || event.starts_with("ssl.");
        Ok(Self { original: Some(original), event: CString::new(event)?, socket_method })
    }

    #[pyo3(signature = (*args, **kwargs))]
    fn __call__(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let Some(original) = &self.original else { return Ok(py.None()) };
        if !(self.socket_method && is_non_blocking_socket(py, args)) {
            let kwargs = kwargs.cloned().unwrap_or_else(|| PyDict::new(py));
            // SAFETY: GIL held; "OO" takes two borrowed object references.
            let status =
                unsafe { cpython::PySys_Audit(self.event.as_ptr(), c"OO".as_ptr(), args.as_ptr(), kwargs.as_ptr()) };
            if status < 0 {
                return Err(PyErr::fetch(py));
            }
        }
        crate::exit_guard::call(py, original, args, kwargs)
    }

    /// Binds like a function, so a wrapped method (`socket.socket.connect`)
    /// still receives its instance.
    fn __get__(
        slf: Bound<'_, Self>,
        instance: Option<Bound<'_, PyAny>>,
        _owner: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        match instance {
            Some(instance) if !instance.is_none() => {
                // SAFETY: both are live objects; PyMethod_New returns a new reference or NULL.
                unsafe { Bound::from_owned_ptr_or_err(py, cpython::PyMethod_New(slf.as_ptr(), instance.as_ptr())) }
                    .map(Bound::unbind)
            }
            _ => Ok(slf.into_any().unbind()),
        }
    }

    #[getter]
    fn __wrapped__(&self, py: Python<'_>) -> Py<PyAny> {
        self.original.as_ref().map_or_else(|| py.None(), |o| o.clone_ref(py))
    }

    /// Everything else (`__name__`, `__qualname__`, `__module__`, ...) is the
    /// wrapped function's, as with `functools.wraps`.
    fn __getattr__(&self, py: Python<'_>, name: &Bound<'_, pyo3::types::PyString>) -> PyResult<Py<PyAny>> {
        match &self.original {
            Some(original) => Ok(original.bind(py).getattr(name)?.unbind()),
            None => Err(pyo3::exceptions::PyAttributeError::new_err(name.to_string())),
        }
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let inner = self.original.as_ref().map(|o| o.bind(py).repr().map(|r| r.to_string())).transpose()?;
        Ok(format!("<aiocop audited {}>", inner.unwrap_or_default()))
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

/// True for a first argument whose `gettimeout()` is 0.0.
fn is_non_blocking_socket(py: Python<'_>, args: &Bound<'_, PyTuple>) -> bool {
    let Ok(first) = args.get_item(0) else { return false };
    first
        .call_method0(intern!(py, "gettimeout"))
        .and_then(|timeout| timeout.extract::<Option<f64>>())
        .is_ok_and(|timeout| timeout == Some(0.0))
}
