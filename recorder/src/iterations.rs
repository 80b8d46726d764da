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
//! # Why on the class, and what a stand-in on the hot path costs
//!
//! A native stand-in called once per loop iteration (or per callback, as
//! for `call_soon`) is paid on the loop's thread and on the writer's. The
//! costs, counted with callgrind on `bench/instruction_step.py`'s `pure`
//! workload (one callback per iteration, the worst case), per step:
//!
//! - **Where the stand-in lives** mattered most. Set on the *instance*
//!   (`selector.select = stand_in`, as first done), it shadowed the class's
//!   method: CPython's specialising interpreter no longer turns
//!   `self._selector.select` into a cached lookup, and adding the attribute
//!   turned the selector's inline attribute values into a dict, so every
//!   attribute read of the selector went the slow way too (dictionary
//!   probes, `_PyType_Lookup`, `_PyObject_GetMethod`: several hundred
//!   instructions a step). A method descriptor on the class
//!   (`PyDescr_NewMethod`) keeps both specialised. Swapping the instance's
//!   `__class__` for a subclass is no better: it too turns the values into
//!   a dict (+850 instructions a call in a micro-benchmark, on 3.11).
//! - **Calling Python code from native code** costs a fresh entry into the
//!   interpreter (`_PyEval_Vector`, frame set-up, `initialize_locals`,
//!   result check: about 250 instructions) where a Python-to-Python call is
//!   inlined. Unavoidable when the original is a Python function; call the
//!   plain function with `self` prepended in a stack buffer rather than a
//!   bound method (which copies the arguments again).
//! - **The hand-off** (two clock reads, a thread number, a push under the
//!   buffer's lock) is about 150 instructions; read nothing from Python
//!   objects per call.
//! - **The writer** pays for every recorded item again: encoding and zstd,
//!   about 10 bytes of poorly compressible deltas a poll, and sorting.
//!   About 550 instructions a poll before the polls of a chunk were kept in
//!   order as they come (they almost always are) instead of copied and
//!   sorted.
//!
//! uvloop runs libuv's loop in compiled code: no Python call marks its
//! iterations, so its traces have none and the analyzer cuts stalls by the
//! gaps between slices, as for traces older than format 1.3.

use crate::monitor::{vectorcall, vectorcall_arguments, MethodDefinition};
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
    /// The original `select` of `class` or of the nearest base class that
    /// has aiocop's.
    fn original_for(&self, mut class: *mut ffi::PyTypeObject) -> Option<*mut ffi::PyObject> {
        while !class.is_null() {
            if let Some((_, original)) = self.classes.iter().find(|(c, _)| *c == class as usize) {
                return Some(original.as_ptr());
            }
            // SAFETY: a live type's base is a live type or null.
            class = unsafe { (*class).tp_base };
        }
        None
    }
}

/// Times each poll of `selector` while recording (see the module's doc);
/// false if it already was. The class's `select` becomes aiocop's the
/// first time one of its selectors is timed.
pub fn time_selector(selector: &Bound<'_, PyAny>) -> PyResult<bool> {
    let class = selector.get_type();
    let class_ptr = class.as_type_ptr();
    let known = {
        let timed = TIMED.lock().map_err(|_| pyo3::exceptions::PyRuntimeError::new_err("aiocop: poisoned"))?;
        if timed.selectors.contains(&(selector.as_ptr() as usize)) {
            return Ok(false);
        }
        timed.original_for(class_ptr).is_some()
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

/// Arguments of `select` passed on in a buffer on the stack, `self` first.
const STACK_ARGUMENTS: usize = 4;

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
    let mut on_stack = [std::ptr::null_mut(); STACK_ARGUMENTS];
    let mut on_heap = Vec::new();
    let with_self: &mut [*mut ffi::PyObject] = if passed.len() < STACK_ARGUMENTS {
        &mut on_stack[..passed.len() + 1]
    } else {
        on_heap.resize(passed.len() + 1, std::ptr::null_mut());
        &mut on_heap
    };
    with_self[0] = selector;
    with_self[1..].copy_from_slice(passed);
    let positional = nargs as usize + 1;
    if !(timed && recording::is_active()) {
        return vectorcall(py, original, with_self, positional, kwnames);
    }
    let start_ns = clock::now_ns();
    let result = vectorcall(py, original, with_self, positional, kwnames);
    let wait_ns = clock::now_ns().saturating_sub(start_ns);
    recording::record_poll(start_ns, wait_ns, what_ran::thread_number());
    result
}
