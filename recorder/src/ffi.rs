//! CPython functions that pyo3-ffi does not declare.
//!
//! All of them are outside the limited API, which is why the extension is
//! built per Python version rather than abi3.

use pyo3::ffi::PyObject;
use std::os::raw::{c_char, c_int, c_void};

pub type AuditHook = unsafe extern "C" fn(event: *const c_char, args: *mut PyObject, user_data: *mut c_void) -> c_int;

extern "C" {
    /// Adds a hook called for every audit event, on every thread. Hooks can
    /// never be removed.
    pub fn PySys_AddAuditHook(hook: AuditHook, user_data: *mut c_void) -> c_int;

    /// Raises an audit event; `format` is a `Py_BuildValue` format for the
    /// event's argument tuple.
    pub fn PySys_Audit(event: *const c_char, format: *const c_char, ...) -> c_int;

    /// A bound method: `function` called with `instance` prepended.
    pub fn PyMethod_New(function: *mut PyObject, instance: *mut PyObject) -> *mut PyObject;
}
