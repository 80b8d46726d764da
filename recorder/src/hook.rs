//! The C-level audit hook.
//!
//! CPython calls it for every audit event of every thread: dozens per
//! millisecond in a busy program, most of them irrelevant
//! (`object.__getattr__`, `compile`, ...). It answers without entering
//! Python: one thread-local load when no slice is being recorded, a table
//! scan of the event name when one is.

use crate::{ffi as cpython, slice};
use aiocop_trace::events::event_index;
use pyo3::ffi::PyObject;
use pyo3::Python;
use std::ffi::CStr;
use std::os::raw::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicBool, Ordering};

static INSTALLED: AtomicBool = AtomicBool::new(false);

/// The audit hook: records a blocking event in the running slice.
///
/// # Safety
/// Called by CPython only, with the GIL held, `event` a NUL-terminated
/// string (checked for null) and `args` the event's argument tuple.
unsafe extern "C" fn audit_hook(event: *const c_char, args: *mut PyObject, _user_data: *mut c_void) -> c_int {
    if !slice::is_recording() || event.is_null() {
        return 0;
    }
    // SAFETY: a non-null event name from CPython is a NUL-terminated string.
    let name = unsafe { CStr::from_ptr(event) };
    if let Some(index) = event_index(name.to_bytes()) {
        // SAFETY: audit hooks run with the GIL held.
        slice::record(unsafe { Python::assume_attached() }, index, args);
    }
    0
}

/// Installs the hook once per process; later calls do nothing. Returns
/// whether this call installed it.
pub fn install() -> Result<bool, String> {
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return Ok(false);
    }
    // SAFETY: the hook is a plain function that lives as long as the process.
    if unsafe { cpython::PySys_AddAuditHook(audit_hook, std::ptr::null_mut()) } != 0 {
        INSTALLED.store(false, Ordering::SeqCst);
        return Err("PySys_AddAuditHook refused the hook".to_owned());
    }
    Ok(true)
}
