//! aiocop's `call_soon` for stock asyncio loops, which stamps, while
//! recording, when each handle was scheduled and by which task (see
//! `crate::task_timing`, which keeps the stamps).
//!
//! It is a native method put on the base-most class in the loop's method
//! resolution order that defines `call_soon` (`BaseEventLoop` for the stock
//! loops), which calls that class's original and stamps the handle only for loops
//! it was asked to stamp (`stamp_call_soon`) and while recording; any other
//! loop of the class goes straight to the original. A subclass overriding
//! `call_soon` and calling `super().call_soon` reaches aiocop's, which finds
//! the original through the method resolution order (never itself); an
//! override that does not call `super()` is not stamped.
//!
//! On the class, not the instance, for the reason given in
//! `crate::iterations`: an instance attribute keeps CPython from
//! specialising attribute and method loads on the loop, which cost about
//! 1,700 instructions a step on the `pure` workload.

use crate::monitor::{
    lean_fastcall_method, original_in_mro, vectorcall_arguments, vectorcall_with_self, MethodDefinition,
};
use pyo3::ffi;
use pyo3::prelude::*;
use std::sync::Mutex;

/// The classes whose `call_soon` is aiocop's, and the loops it stamps.
struct Stamped {
    /// (class, its original `call_soon`), by the class's address. Only ever
    /// grows: a class keeps aiocop's `call_soon`, which then holds the
    /// original alive, for the life of the process.
    classes: Vec<(usize, Py<PyAny>)>,
    /// The loops, by address, whose handles are stamped, each with the
    /// original `call_soon` it calls (one of `classes`', kept alive there):
    /// found with the loop, without walking its class's method resolution
    /// order on every call.
    loops: Vec<(usize, usize)>,
}

static STAMPED: Mutex<Stamped> = Mutex::new(Stamped { classes: Vec::new(), loops: Vec::new() });

fn poisoned() -> PyErr {
    pyo3::exceptions::PyRuntimeError::new_err("aiocop: poisoned")
}

/// Stamps the handles `loop_`'s `call_soon` returns while recording (see
/// the module's doc); false if it already was. The class in its method
/// resolution order that defines `call_soon` gets aiocop's the first time
/// one of its loops is stamped (see `put_stamping_call_soon`).
pub fn stamp_call_soon(loop_: &Bound<'_, PyAny>) -> PyResult<bool> {
    let class_ptr = loop_.get_type().as_type_ptr();
    let known = {
        let stamped = STAMPED.lock().map_err(|_| poisoned())?;
        if stamped.loops.iter().any(|&(stamped, _)| stamped == loop_.as_ptr() as usize) {
            return Ok(false);
        }
        original_in_mro(&stamped.classes, class_ptr).is_some()
    };
    // Python code runs outside the lock: a finalizer it triggers may take it.
    let replaced = if known { None } else { Some(put_stamping_call_soon(loop_)?) };
    let mut stamped = STAMPED.lock().map_err(|_| poisoned())?;
    if let Some(class_and_original) = replaced {
        stamped.classes.push(class_and_original);
    }
    let original = original_in_mro(&stamped.classes, class_ptr)
        .ok_or_else(|| pyo3::exceptions::PyTypeError::new_err("the loop's call_soon is not aiocop's"))?;
    stamped.loops.push((loop_.as_ptr() as usize, original as usize));
    Ok(true)
}

/// Puts aiocop's `call_soon` on the base-most class of `loop_`'s method
/// resolution order that derives from `BaseEventLoop` and defines it (for
/// stock loops, `BaseEventLoop`): overrides in subclasses calling `super()`
/// reach it, and a class with aiocop's `call_soon` then never derives from
/// another such class, so aiocop's always finds its own original; returns
/// that class and its original.
fn put_stamping_call_soon(loop_: &Bound<'_, PyAny>) -> PyResult<(usize, Py<PyAny>)> {
    let py = loop_.py();
    let base_event_loop = py.import("asyncio")?.getattr("BaseEventLoop")?;
    let defines_call_soon = |class: &Bound<'_, pyo3::types::PyType>| -> PyResult<bool> {
        Ok(class.is_subclass(&base_event_loop)? && class.getattr("__dict__")?.contains("call_soon")?)
    };
    let mut defining = None;
    for class in loop_.get_type().mro().iter().rev() {
        let class = class.cast_into::<pyo3::types::PyType>()?;
        if defines_call_soon(&class)? {
            defining = Some(class);
            break;
        }
    }
    let defining = defining
        .ok_or_else(|| pyo3::exceptions::PyTypeError::new_err("the loop is not a BaseEventLoop with call_soon"))?;
    let original = defining.getattr("call_soon")?;
    // SAFETY: `original` is a live object.
    if unsafe { ffi::PyFunction_Check(original.as_ptr()) } == 0 {
        // Called with the loop prepended, it must be a plain function.
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "{}.call_soon is not a function",
            defining.name()?
        )));
    }
    // SAFETY: the definition is static and never mutated; the class is live.
    let descriptor = unsafe {
        Bound::from_owned_ptr_or_err(py, ffi::PyDescr_NewMethod(defining.as_type_ptr(), CALL_SOON_DEFINITION.0.get()))?
    };
    defining.setattr("call_soon", &descriptor)?;
    Ok((defining.as_type_ptr() as usize, original.unbind()))
}

/// Stops stamping the loop at `address` (it is being freed).
pub fn unstamp_call_soon(address: usize) {
    if let Ok(mut stamped) = STAMPED.lock() {
        stamped.loops.retain(|&(a, _)| a != address);
    }
}

// The doc's first lines are the signature `inspect.signature` reads (`__text_signature__`).
static CALL_SOON_DEFINITION: MethodDefinition = lean_fastcall_method!(
    c"call_soon",
    call_soon_entry,
    c"call_soon($self, callback, *args, context=None)\n--\n\nThe loop's call_soon; aiocop notes when each handle was scheduled."
);

/// The C entry point of aiocop's `call_soon`, a method of the loop's class.
///
/// # Safety
/// Called by the interpreter only, with the vectorcall convention: `loop_`
/// an instance of a class whose method resolution order holds the class
/// `stamp_call_soon` gave aiocop's `call_soon`, `args` holding `nargs`
/// positional arguments then one value per name in `kwnames` (null if none).
unsafe fn call_soon_entry(
    py: Python<'_>,
    loop_: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<*mut ffi::PyObject> {
    let (original, stamped) = {
        let stamped = STAMPED.lock().map_err(|_| poisoned())?;
        match stamped.loops.iter().find(|&&(stamped, _)| stamped == loop_ as usize) {
            Some(&(_, original)) => (Some(original as *mut ffi::PyObject), true),
            // SAFETY: `loop_` is a live object.
            None => (original_in_mro(&stamped.classes, unsafe { ffi::Py_TYPE(loop_) }), false),
        }
    };
    let Some(original) = original else {
        return Err(pyo3::exceptions::PyTypeError::new_err("aiocop's call_soon() called on a loop it did not patch"));
    };
    // SAFETY: as this function's.
    let passed = unsafe { vectorcall_arguments(args, nargs, kwnames) };
    let handle = vectorcall_with_self(py, original, loop_, passed, nargs, kwnames)?;
    if stamped && crate::recording::is_active() {
        crate::task_timing::stamp(handle);
    }
    Ok(handle)
}
