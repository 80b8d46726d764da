//! How a task ended, read from its state after a step (`_state`, then
//! `_exception`), for the task timing of `describe` and `eager_tasks`.

use aiocop_trace::records::{TASK_CANCELLED, TASK_DONE, TASK_RAISED};
use pyo3::prelude::*;

/// How the task at `task` ended, if it is done: `_state` (a C task's and a
/// Python one's alike) then `_exception`; read without `exception()`,
/// which would mark an exception as retrieved and silence asyncio's "never
/// retrieved" warning.
pub fn task_outcome(py: Python<'_>, task: usize) -> Option<u8> {
    if task == 0 {
        return None;
    }
    // SAFETY: the task is kept alive by the callback bound to it, which the
    // monitor holds for the slice.
    let task = unsafe { Bound::from_borrowed_ptr(py, task as *mut pyo3::ffi::PyObject) };
    if let Some(true) = still_pending(&task) {
        return None;
    }
    let state = task.getattr(pyo3::intern!(py, "_state")).ok()?;
    let pending = pyo3::intern!(py, "PENDING");
    if state.is(pending) || state.eq(pending).unwrap_or(true) {
        learn_state_getter(&task, &state);
        return None;
    }
    if state.eq(pyo3::intern!(py, "CANCELLED")).unwrap_or(false) {
        return Some(TASK_CANCELLED);
    }
    let raised = task.getattr(pyo3::intern!(py, "_exception")).is_ok_and(|exception| !exception.is_none());
    Some(if raised { TASK_RAISED } else { TASK_DONE })
}

/// The C getter of `_state` of one task type (`_asyncio.Task`), and the
/// object it returns for a pending task (a static string): asked after
/// every task step, it costs a call and a compare where an attribute
/// look-up costs about 150 instructions.
struct StateGetter {
    task_type: usize,
    get: pyo3::ffi::getter,
    closure: usize,
    pending: usize,
}

static STATE_GETTER: std::sync::OnceLock<StateGetter> = std::sync::OnceLock::new();

/// Whether `task` is pending, read through the learnt getter; None if its
/// type is not the one learnt (or the getter failed).
#[inline]
fn still_pending(task: &Bound<'_, PyAny>) -> Option<bool> {
    let getter = STATE_GETTER.get()?;
    // SAFETY: a type check of a live object.
    if unsafe { pyo3::ffi::Py_TYPE(task.as_ptr()) } as usize != getter.task_type {
        return None;
    }
    // SAFETY: the getter of this exact type's `_state`, called as its
    // descriptor would be; it returns a new reference, or NULL with an error.
    let state = unsafe { (getter.get)(task.as_ptr(), getter.closure as *mut std::ffi::c_void) };
    if state.is_null() {
        // SAFETY: the getter set an error; it is dropped here.
        unsafe { pyo3::ffi::PyErr_Clear() };
        return None;
    }
    let pending = state as usize == getter.pending;
    // SAFETY: the new reference the getter returned.
    unsafe { pyo3::ffi::Py_DECREF(state) };
    Some(pending)
}

/// Learns the getter of `_state` of `task`'s type if it is a C getset
/// descriptor, with `pending` as what it returns for a pending task.
#[cold]
fn learn_state_getter(task: &Bound<'_, PyAny>, pending: &Bound<'_, PyAny>) {
    if STATE_GETTER.get().is_some() {
        return;
    }
    let task_type = task.get_type();
    let Ok(descriptor) = task_type.getattr(pyo3::intern!(task.py(), "_state")) else { return };
    // SAFETY: the type object of a getset descriptor is a static type.
    let is_getset = unsafe { pyo3::ffi::Py_TYPE(descriptor.as_ptr()) == &raw mut pyo3::ffi::PyGetSetDescr_Type };
    if !is_getset {
        return;
    }
    // SAFETY: a getset descriptor's d_getset points to its type's static
    // PyGetSetDef, which lives as long as the type (a static C type here).
    let definition = unsafe { &*(*(descriptor.as_ptr() as *mut pyo3::ffi::PyGetSetDescrObject)).d_getset };
    let Some(get) = definition.get else { return };
    let _ = STATE_GETTER.set(StateGetter {
        task_type: task_type.as_ptr() as usize,
        get,
        closure: definition.closure as usize,
        pending: pending.as_ptr() as usize,
    });
}
