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

    static mut PyMethod_Type: pyo3::ffi::PyTypeObject;
}

/// A bound method's object layout (`Include/cpython/classobject.h`, the
/// same from 3.8 on): read directly, as `PyMethod_GET_FUNCTION` does.
#[repr(C)]
pub struct PyMethodObject {
    pub ob_base: PyObject,
    pub im_func: *mut PyObject,
    pub im_self: *mut PyObject,
}

#[allow(non_snake_case)]
/// Whether `object` is exactly a bound method (of a Python function).
///
/// # Safety
/// `object` must be a live object.
pub unsafe fn PyMethod_Check(object: *mut PyObject) -> c_int {
    // SAFETY: the caller passes a live object, whose type pointer is read.
    c_int::from(unsafe { pyo3::ffi::Py_TYPE(object) } == &raw mut PyMethod_Type)
}
