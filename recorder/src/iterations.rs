//! Where each iteration of a stock asyncio loop begins, and how long the
//! loop waited for I/O in it.
//!
//! `BaseEventLoop._run_once` (CPython 3.10 to 3.15 alike) runs one
//! iteration: it computes a timeout, calls `self._selector.select(timeout)`
//! once, then runs the callbacks that were ready. Between two polls of a
//! loop, it ran callbacks without waiting: that is what a stall is.
//!
//! For the stock selectors (`selectors`' epoll, poll, devpoll and kqueue
//! selectors, whose `select` waits in one call of their C poller object's
//! `poll` or `control`), aiocop puts a native method in place of that
//! method on the poller's class (`select.epoll`, ...): the selector's
//! Python `select` calls it, and it calls the C original, so the poll is
//! timed from C to C without entering the interpreter afresh (about 250
//! instructions a poll less than timing the selector's Python `select`
//! from native code). For any other selector (a subclass overriding
//! `select`, `SelectSelector`, a poller class that refuses attributes),
//! the native method goes in place of `select` on the selector's class and
//! calls the class's original. Either way it hands the poll (start, wait,
//! thread) to the recording only for the selectors of loops it was asked
//! to time and while recording: any other selector or poller of the class
//! (`subprocess`'s, code inside a callback that polls a selector of its
//! own) goes straight to the original and records nothing: a poll inside
//! a callback is not the loop's.
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

use crate::monitor::{
    lean_fastcall_method, original_in_mro, vectorcall_arguments, vectorcall_with_self, MethodDefinition,
};
use crate::{clock, recording, what_ran};
use pyo3::ffi;
use pyo3::prelude::*;
use std::sync::Mutex;

/// The classes whose `select` (or poller method) is aiocop's, and the
/// selectors it times.
struct Timed {
    /// (class, its original `select`), by the class's address. Only ever
    /// grows: a class keeps aiocop's `select`, which then holds the
    /// original alive, for the life of the process.
    classes: Vec<(usize, Py<PyAny>)>,
    /// The selectors, by address, of the loops whose iterations are timed
    /// through their class's `select`.
    selectors: Vec<usize>,
    /// (poller class, its original `poll` or `control`), as `classes`.
    poller_classes: Vec<(usize, Py<PyAny>)>,
    /// (selector's address, its poller, the poller's original method), of
    /// the loops whose iterations are timed through their poller. The
    /// poller is held so that its address is no other poller's until the
    /// selector is freed (a selector's `close` drops its poller first); the
    /// original (one of `poller_classes`', kept alive there) is found with
    /// it, without walking its class's method resolution order every poll.
    pollers: Vec<(usize, Py<PyAny>, usize)>,
}

static TIMED: Mutex<Timed> =
    Mutex::new(Timed { classes: Vec::new(), selectors: Vec::new(), poller_classes: Vec::new(), pollers: Vec::new() });

fn poisoned() -> PyErr {
    pyo3::exceptions::PyRuntimeError::new_err("aiocop: poisoned")
}

impl Timed {
    /// The original `select` of the class in `class`'s method resolution
    /// order that has aiocop's: there is at most one (see `time_selector`).
    fn original_for(&self, class: *mut ffi::PyTypeObject) -> Option<*mut ffi::PyObject> {
        original_in_mro(&self.classes, class)
    }

    fn is_timed(&self, selector: usize) -> bool {
        self.selectors.contains(&selector) || self.pollers.iter().any(|(timed, _, _)| *timed == selector)
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
    if TIMED.lock().map_err(|_| poisoned())?.is_timed(selector.as_ptr() as usize) {
        return Ok(false);
    }
    if let Some((poller, definition)) = stock_poller(selector)? {
        if time_poller(selector, &poller, definition)? {
            return Ok(true);
        }
    }
    time_select(selector)
}

/// Times `selector` through its class's `select` (see `time_selector`).
fn time_select(selector: &Bound<'_, PyAny>) -> PyResult<bool> {
    let class = selector.get_type();
    let class_ptr = class.as_type_ptr();
    let known = {
        let timed = TIMED.lock().map_err(|_| poisoned())?;
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
    let mut timed = TIMED.lock().map_err(|_| poisoned())?;
    if let Some(original) = replaced {
        timed.classes.push((class_ptr as usize, original));
    }
    timed.selectors.push(selector.as_ptr() as usize);
    Ok(true)
}

/// Puts aiocop's `select` on `class`; returns the original.
fn put_timed_select(_py: Python<'_>, class: &Bound<'_, pyo3::types::PyType>) -> PyResult<Py<PyAny>> {
    // SAFETY: `original` is a live object. Called with the selector
    // prepended, it must be a plain function.
    put_stand_in(class, &SELECT_DEFINITION, |original| unsafe { ffi::PyFunction_Check(original) } != 0)
}

/// Puts the method `definition` defines on `class`, in place of the method
/// of its name, which `callable_with_self` must accept; returns the original.
fn put_stand_in(
    class: &Bound<'_, pyo3::types::PyType>,
    definition: &'static MethodDefinition,
    callable_with_self: impl Fn(*mut ffi::PyObject) -> bool,
) -> PyResult<Py<PyAny>> {
    // SAFETY: the definition is static and never mutated.
    let name = unsafe { std::ffi::CStr::from_ptr((*definition.0.get()).ml_name) }
        .to_str()
        .map_err(|_| pyo3::exceptions::PyValueError::new_err("a method name is not UTF-8"))?;
    let original = class.getattr(name)?;
    if !callable_with_self(original.as_ptr()) {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!("{}.{name} cannot be timed", class.name()?)));
    }
    // SAFETY: the definition is static and never mutated; the class is live.
    let descriptor = unsafe {
        Bound::from_owned_ptr_or_err(class.py(), ffi::PyDescr_NewMethod(class.as_type_ptr(), definition.0.get()))?
    };
    class.setattr(name, &descriptor)?;
    Ok(original.unbind())
}

/// The kinds of poller object the stock selectors wait in: the name of
/// the poller's class in the `select` module, and aiocop's stand-in for the
/// method that waits (its name is the method's).
const STOCK_POLLERS: [(&str, &MethodDefinition); 4] = [
    ("epoll", &EPOLL_POLL_DEFINITION),
    ("poll", &POLL_POLL_DEFINITION),
    ("devpoll", &POLL_POLL_DEFINITION),
    ("kqueue", &KQUEUE_CONTROL_DEFINITION),
];

/// The poller of a selector whose `select` is the `selectors` module's own
/// (so that each call waits in one call of the poller's method), with the
/// stand-in for that method; None for any other selector.
fn stock_poller<'py>(selector: &Bound<'py, PyAny>) -> PyResult<Option<(Bound<'py, PyAny>, &'static MethodDefinition)>> {
    let py = selector.py();
    let select = selector.get_type().getattr("select")?;
    if select.getattr("__module__").ok().and_then(|module| module.extract::<String>().ok()).as_deref()
        != Some("selectors")
    {
        return Ok(None); // an override: it may not wait in the poller
    }
    let Ok(poller) = selector.getattr(pyo3::intern!(py, "_selector")) else { return Ok(None) };
    let poller_class = poller.get_type();
    if poller_class.module()?.to_str()? != "select" {
        return Ok(None);
    }
    let name = poller_class.qualname()?;
    let kind = STOCK_POLLERS.iter().find(|(kind, _)| name.to_str().is_ok_and(|name| name == *kind));
    Ok(kind.map(|(_, definition)| (poller, *definition)))
}

/// Times `selector`'s polls through its poller's class; false if that
/// class does not take aiocop's method (then its `select` is timed).
fn time_poller(
    selector: &Bound<'_, PyAny>,
    poller: &Bound<'_, PyAny>,
    definition: &'static MethodDefinition,
) -> PyResult<bool> {
    let class = poller.get_type();
    let class_ptr = class.as_type_ptr();
    let known = original_in_mro(&TIMED.lock().map_err(|_| poisoned())?.poller_classes, class_ptr).is_some();
    // Python code runs outside the lock: a finalizer it triggers may take it.
    let replaced = if known {
        None
    } else {
        match put_stand_in(&class, definition, |original| {
            // SAFETY: a type check of a live object.
            unsafe { ffi::PyObject_TypeCheck(original, std::ptr::addr_of_mut!(ffi::PyMethodDescr_Type)) != 0 }
        }) {
            Ok(original) => Some(original),
            Err(_) => return Ok(false), // an immutable class, or its method is not the C one
        }
    };
    let mut timed = TIMED.lock().map_err(|_| poisoned())?;
    if let Some(original) = replaced {
        timed.poller_classes.push((class_ptr as usize, original));
    }
    let Some(original) = original_in_mro(&timed.poller_classes, class_ptr) else { return Ok(false) };
    timed.pollers.push((selector.as_ptr() as usize, poller.clone().unbind(), original as usize));
    Ok(true)
}

/// Stops timing the selector at `address` (it is being freed).
pub fn untime_selector(address: usize) {
    let released: Vec<_> = match TIMED.lock() {
        Ok(mut timed) => {
            timed.selectors.retain(|&a| a != address);
            let (released, kept) = std::mem::take(&mut timed.pollers).into_iter().partition(|(a, _, _)| *a == address);
            timed.pollers = kept;
            released
        }
        Err(_) => Vec::new(),
    };
    drop(released); // outside the lock: freeing a poller may run Python code
}

// The doc's first lines are the signature `inspect.signature` reads (`__text_signature__`).
static SELECT_DEFINITION: MethodDefinition = lean_fastcall_method!(
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
        let timed = TIMED.lock().map_err(|_| poisoned())?;
        // SAFETY: `selector` is a live object.
        let original = timed.original_for(unsafe { ffi::Py_TYPE(selector) });
        (original, timed.selectors.contains(&(selector as usize)))
    };
    // SAFETY: as this function's.
    unsafe { call_timed(py, original.ok_or("select"), timed, selector, args, nargs, kwnames) }
}

/// The C entry point of aiocop's `poll` (or `control`), a method of a
/// stock selector's poller class.
///
/// # Safety
/// As `select_entry`'s, with `poller` an instance of a class `time_poller`
/// gave aiocop's method.
unsafe fn poller_entry(
    py: Python<'_>,
    poller: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<*mut ffi::PyObject> {
    let (original, timed) = {
        let timed = TIMED.lock().map_err(|_| poisoned())?;
        match timed.pollers.iter().find(|(_, timed, _)| timed.as_ptr() == poller) {
            Some(&(_, _, original)) => (Some(original as *mut ffi::PyObject), true),
            // SAFETY: `poller` is a live object.
            None => (original_in_mro(&timed.poller_classes, unsafe { ffi::Py_TYPE(poller) }), false),
        }
    };
    // SAFETY: as this function's.
    unsafe { call_timed(py, original.ok_or("poll"), timed, poller, args, nargs, kwnames) }
}

/// Calls `original` with `instance` prepended to the arguments; if `timed`
/// and while recording, hands the call to the recording as a poll. An
/// `original` not found (`Err`: the method's name) is a TypeError.
///
/// # Safety
/// `args`, `nargs` and `kwnames` as the vectorcall convention has them.
unsafe fn call_timed(
    py: Python<'_>,
    original: Result<*mut ffi::PyObject, &str>,
    timed: bool,
    instance: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<*mut ffi::PyObject> {
    let original = original.map_err(|method| {
        pyo3::exceptions::PyTypeError::new_err(format!("aiocop's {method}() called on an object it did not patch"))
    })?;
    // SAFETY: the caller's promise.
    let passed = unsafe { vectorcall_arguments(args, nargs, kwnames) };
    if !(timed && recording::is_active()) {
        return vectorcall_with_self(py, original, instance, passed, nargs, kwnames);
    }
    let start_ns = clock::now_ns();
    let result = vectorcall_with_self(py, original, instance, passed, nargs, kwnames);
    let end_ns = clock::now_ns();
    let wait_ns = end_ns.saturating_sub(start_ns);
    recording::record_poll(start_ns, wait_ns, what_ran::thread_number());
    crate::task_timing::poll_ended(end_ns);
    result
}

// The stand-ins for the pollers' methods, with their originals' signatures.
static EPOLL_POLL_DEFINITION: MethodDefinition = lean_fastcall_method!(
    c"poll",
    poller_entry,
    c"poll($self, /, timeout=None, maxevents=-1)\n--\n\nThe epoll object's poll, timed by aiocop as one loop iteration's poll."
);
static POLL_POLL_DEFINITION: MethodDefinition = lean_fastcall_method!(
    c"poll",
    poller_entry,
    c"poll($self, timeout=None, /)\n--\n\nThe poll object's poll, timed by aiocop as one loop iteration's poll."
);
static KQUEUE_CONTROL_DEFINITION: MethodDefinition = lean_fastcall_method!(
    c"control",
    poller_entry,
    c"control($self, changelist, maxevents, timeout=None, /)\n--\n\nThe kqueue's control, timed by aiocop as one loop iteration's poll."
);
