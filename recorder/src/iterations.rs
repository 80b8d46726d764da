//! Where each iteration of a stock asyncio loop begins, and how long the
//! loop waited for I/O in it.
//!
//! `BaseEventLoop._run_once` (CPython 3.10 to 3.15 alike) runs one
//! iteration: it computes a timeout, calls `self._selector.select(timeout)`
//! once, then runs the callbacks that were ready. Between two polls of a
//! loop, it ran callbacks without waiting: that is what a stall is.
//!
//! aiocop puts a native method in place of `select` on the selector's
//! class (`time_selector`), which calls the class's original `select` and,
//! for the selectors of loops it was asked to time and while recording,
//! hands the poll (start, wait, thread) to the recording. Any other
//! selector of that class (`subprocess`, code inside a callback that
//! polls a selector of its own) goes straight to the original and records
//! nothing: a poll inside a callback is not the loop's.
//!
//! On the class, not the instance: an instance attribute shadowing the
//! class's method keeps CPython's specialising interpreter from caching
//! `self._selector.select` and turns the selector's inline attribute values
//! into a dict, which cost several hundred instructions a loop iteration.
//! `docs/native-stand-ins.md` says where a stand-in's instructions go, for
//! whoever writes the next one.
//!
//! uvloop runs libuv's loop in compiled code: no Python call marks its
//! iterations, so its traces have none and the analyzer cuts stalls by the
//! gaps between slices, as for traces older than format 1.3.

use crate::monitor::{fastcall_method, original_in_mro, vectorcall_arguments, vectorcall_with_self, MethodDefinition};
use crate::{clock, recording, what_ran};
use pyo3::ffi;
use pyo3::prelude::*;
use std::sync::Mutex;

/// The classes whose `select` is aiocop's, and the selectors it times.
struct Timed {
    /// (class, its original `select`), by the class's address. Only ever
    /// grows: a class keeps aiocop's `select`, which then holds the
    /// original alive, for the life of the process.
    classes: Vec<(usize, Py<PyAny>)>,
    /// The selectors, by address, of the loops whose iterations are timed.
    selectors: Vec<usize>,
}

static TIMED: Mutex<Timed> = Mutex::new(Timed { classes: Vec::new(), selectors: Vec::new() });

impl Timed {
    /// The original `select` of the class in `class`'s method resolution
    /// order that has aiocop's: there is at most one (see `time_selector`).
    fn original_for(&self, class: *mut ffi::PyTypeObject) -> Option<*mut ffi::PyObject> {
        original_in_mro(&self.classes, class)
    }

    /// Whether a class with aiocop's `select` derives from `class`.
    fn has_subclass_of(&self, class: *mut ffi::PyTypeObject) -> bool {
        // SAFETY: both are live types.
        self.classes.iter().any(|(c, _)| unsafe { ffi::PyType_IsSubtype(*c as *mut ffi::PyTypeObject, class) } != 0)
    }
}

/// Times each poll of `selector` while recording (see the module's doc);
/// false if it already was. The class's `select` becomes aiocop's the
/// first time one of its selectors is timed, unless a class it derives
/// from has it already. Classes with aiocop's `select` never derive from
/// one another, so that aiocop's `select` always knows which original to
/// call (and never calls itself through an override's `super()`): a
/// selector of a base class of such a class is refused (TypeError), and
/// its loop's stalls are guessed.
pub fn time_selector(selector: &Bound<'_, PyAny>) -> PyResult<bool> {
    let class = selector.get_type();
    let class_ptr = class.as_type_ptr();
    let known = {
        let timed = TIMED.lock().map_err(|_| pyo3::exceptions::PyRuntimeError::new_err("aiocop: poisoned"))?;
        if timed.selectors.contains(&(selector.as_ptr() as usize)) {
            return Ok(false);
        }
        if timed.original_for(class_ptr).is_some() {
            true
        } else if timed.has_subclass_of(class_ptr) {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "a subclass of {} has aiocop's select already",
                class.name()?
            )));
        } else {
            false
        }
    };
    // Python code runs outside the lock: a finalizer it triggers may take it.
    let replaced = if known { None } else { Some(put_timed_select(selector.py(), &class)?) };
    let mut timed = TIMED.lock().map_err(|_| pyo3::exceptions::PyRuntimeError::new_err("aiocop: poisoned"))?;
    if let Some(original) = replaced {
        timed.classes.push((class_ptr as usize, original));
    }
    timed.selectors.push(selector.as_ptr() as usize);
    Ok(true)
}

/// Puts aiocop's `select` on `class`; returns the original.
fn put_timed_select(py: Python<'_>, class: &Bound<'_, pyo3::types::PyType>) -> PyResult<Py<PyAny>> {
    let original = class.getattr("select")?;
    // SAFETY: `original` is a live object.
    if unsafe { ffi::PyFunction_Check(original.as_ptr()) } == 0 {
        // Called with the selector prepended, it must be a plain function.
        return Err(pyo3::exceptions::PyTypeError::new_err(format!("{}.select is not a function", class.name()?)));
    }
    // SAFETY: the definition is static and never mutated; the class is live.
    let descriptor = unsafe {
        Bound::from_owned_ptr_or_err(py, ffi::PyDescr_NewMethod(class.as_type_ptr(), SELECT_DEFINITION.0.get()))?
    };
    class.setattr("select", &descriptor)?;
    Ok(original.unbind())
}

/// Stops timing the selector at `address` (it is being freed).
pub fn untime_selector(address: usize) {
    if let Ok(mut timed) = TIMED.lock() {
        timed.selectors.retain(|&a| a != address);
    }
}

// The doc's first lines are the signature `inspect.signature` reads (`__text_signature__`).
static SELECT_DEFINITION: MethodDefinition = fastcall_method!(
    c"select",
    select_entry,
    c"select($self, timeout=None)\n--\n\nThe selector's select, timed by aiocop as one loop iteration's poll."
);

/// The C entry point of aiocop's `select`, a method of the selector's class.
///
/// # Safety
/// Called by the interpreter only, with the vectorcall convention: `selector`
/// an instance of a class `time_selector` gave aiocop's `select`, `args`
/// holding `nargs` positional arguments then one value per name in
/// `kwnames` (null if none).
unsafe fn select_entry(
    py: Python<'_>,
    selector: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<*mut ffi::PyObject> {
    let (original, timed) = {
        let timed = TIMED.lock().map_err(|_| pyo3::exceptions::PyRuntimeError::new_err("aiocop: poisoned"))?;
        // SAFETY: `selector` is a live object.
        let original = timed.original_for(unsafe { ffi::Py_TYPE(selector) });
        (original, timed.selectors.contains(&(selector as usize)))
    };
    let Some(original) = original else {
        return Err(pyo3::exceptions::PyTypeError::new_err("aiocop's select() called on a selector it did not patch"));
    };
    // SAFETY: as this function's.
    let passed = unsafe { vectorcall_arguments(args, nargs, kwnames) };
    if !(timed && recording::is_active()) {
        return vectorcall_with_self(py, original, selector, passed, nargs, kwnames);
    }
    let start_ns = clock::now_ns();
    let result = vectorcall_with_self(py, original, selector, passed, nargs, kwnames);
    let end_ns = clock::now_ns();
    let wait_ns = end_ns.saturating_sub(start_ns);
    recording::record_poll(start_ns, wait_ns, what_ran::thread_number());
    crate::task_timing::poll_ended(end_ns);
    result
}
