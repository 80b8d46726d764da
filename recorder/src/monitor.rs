//! Timing of every callback an event loop runs.
//!
//! Two ways in, one core (`run_slice`):
//! - Stock asyncio runs every ready handle through `Handle._run`: timers,
//!   `call_soon`, and I/O readiness callbacks (a protocol's `data_received`,
//!   `add_reader` callbacks) that never pass through `call_soon`. aiocop
//!   replaces `Handle._run` with `run_handle`, which times the original.
//! - Other loops (uvloop) run handles in compiled code, so their
//!   `call_soon`, `call_later`, `call_at` and `call_soon_threadsafe` are
//!   replaced on the loop instance (`schedule_patch`) by functions that
//!   schedule each callback through `run_monitored`, as aiocop 1.2.1 wraps
//!   them.

use crate::context::{capture_context, has_context_providers, take_provider_interrupt};
use crate::emit::{self, FinishedSlice};
use crate::handle_slots::{self, Slot};
use crate::task_timing::{self, Ready, ReadyRule, TimerDue};
use crate::what_ran::{self, Ran};
use crate::{clock, config, describe, exit_guard, recording, routes, sampler, slice};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyType};
use pyo3::{intern, PyTraverseError, PyVisit};
use std::sync::{Mutex, OnceLock};

/// Addresses of the stock asyncio loops being monitored; a handful at most.
static MONITORED_LOOPS: Mutex<Vec<usize>> = Mutex::new(Vec::new());
/// `asyncio.events.Handle._run` as it was before aiocop replaced it.
static ORIGINAL_HANDLE_RUN: OnceLock<Py<PyAny>> = OnceLock::new();

pub fn set_loop_monitored(address: usize, monitored: bool) {
    if let Ok(mut loops) = MONITORED_LOOPS.lock() {
        loops.retain(|a| *a != address);
        if monitored {
            loops.push(address);
        }
    }
}

/// Recording mode: every stock asyncio loop is monitored.
static MONITOR_ALL_LOOPS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn set_monitor_all_loops(all: bool) {
    MONITOR_ALL_LOOPS.store(all, std::sync::atomic::Ordering::Relaxed);
}

fn is_loop_monitored(address: usize) -> bool {
    MONITOR_ALL_LOOPS.load(std::sync::atomic::Ordering::Relaxed)
        || MONITORED_LOOPS.lock().is_ok_and(|loops| loops.contains(&address))
}

/// Replaces `handle_class._run` (once) with a method descriptor calling
/// `run_handle`. A method descriptor, like a C type's own methods, is called
/// by the interpreter without creating a bound method per call.
pub fn install_handle_run(py: Python<'_>, handle_class: &Bound<'_, PyType>) -> PyResult<bool> {
    let original = handle_class.getattr("_run")?;
    if ORIGINAL_HANDLE_RUN.set(original.unbind()).is_err() {
        return Ok(false);
    }
    handle_slots::learn(handle_class);
    let definition = Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: c"_run".as_ptr(),
        ml_meth: ffi::PyMethodDefPointer {
            PyCFunction: pyo3::impl_::trampoline::get_trampoline_function!(noargs, handle_run_entry),
        },
        ml_flags: ffi::METH_NOARGS,
        // The first lines are the signature `inspect.signature` reads (`__text_signature__`).
        ml_doc: c"_run($self)\n--\n\nRun the handle's callback; timed by aiocop when its loop is monitored.".as_ptr(),
    }));
    // SAFETY: the type is alive, the definition is leaked so it lives forever;
    // PyDescr_NewMethod returns a new reference or NULL.
    let descriptor =
        unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyDescr_NewMethod(handle_class.as_type_ptr(), definition))? };
    handle_class.setattr("_run", descriptor)?;
    Ok(true)
}

/// The C entry point of the `_run` descriptor. pyo3's trampoline marks the
/// thread as attached (so references are released at once, not deferred),
/// turns a panic into a Python exception and an `Err` into a raised one.
///
/// # Safety
/// Called by the interpreter only, through the descriptor, with the GIL
/// held and `handle` a live object.
unsafe fn handle_run_entry(py: Python<'_>, handle: *mut ffi::PyObject) -> PyResult<*mut ffi::PyObject> {
    // SAFETY: the interpreter passes a live `self`.
    let handle = unsafe { Bound::from_borrowed_ptr(py, handle) };
    run_handle(py, &handle).map(Py::into_ptr)
}

/// Runs the handle, timing it when its loop is monitored and monitoring is
/// active.
fn run_handle(py: Python<'_>, handle: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    let original = ORIGINAL_HANDLE_RUN
        .get()
        .ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("aiocop: Handle._run was not saved"))?;
    if !config::monitoring_active() {
        return exit_guard::call1(py, original, handle);
    }
    if !MONITOR_ALL_LOOPS.load(std::sync::atomic::Ordering::Relaxed)
        && !handle_slots::read(handle, Slot::Loop).is_some_and(|l| is_loop_monitored(l.as_ptr() as usize))
    {
        return exit_guard::call1(py, original, handle);
    }
    let ready = if recording::is_active() { task_timing::ready_of_handle(py, handle) } else { Ready::UNKNOWN };
    run_slice(py, Ran::Handle(handle), ready, || exit_guard::call1(py, original, handle))
}

/// Runs one callback as a monitored slice, records it when recording, and
/// reports it.
///
/// For `Ran::Handle` (stock asyncio's `Handle._run`) the caller runs outside
/// the handle's `contextvars.Context`: context providers then run inside it.
/// `ready`: when the callback became ready (unknown when not recording).
pub fn run_slice(
    py: Python<'_>,
    ran: Ran<'_, '_>,
    ready: Ready,
    run: impl FnOnce() -> PyResult<Py<PyAny>>,
) -> PyResult<Py<PyAny>> {
    let providers = has_context_providers(py);
    let context = match ran {
        Ran::Handle(handle) if providers => handle.getattr(intern!(py, "_context")).ok().filter(|c| !c.is_none()),
        _ => None,
    };
    let context = context.as_ref();
    let before = providers.then(|| capture_context(py, context)).flatten();
    if let Some(interrupt) = providers.then(take_provider_interrupt).flatten() {
        return Err(interrupt);
    }

    // What ran is read before it runs: a handle that cancels itself while
    // running (Twisted's timers under daphne) sets its callback to None.
    let callback_before = match ran {
        Ran::Handle(handle) if recording::is_active() => handle_slots::read(handle, Slot::Callback),
        _ => None,
    };

    // The task this callback steps, if any: the parent of tasks it creates.
    let task_object = match (&ran, &callback_before) {
        (_, Some(callback)) => what_ran::task_of_callback(callback.as_ptr()),
        (Ran::Callback(callback), None) if recording::is_active() => what_ran::task_of_callback(callback.as_ptr()),
        _ => 0,
    };
    let recording_now = recording::is_active();
    let outer_running = recording_now.then(|| task_timing::enter(task_object, &ready));

    let outer = slice::begin();
    config::set_exception_raised(false);
    let start_ns = clock::now_ns();
    sampler::slice_started(start_ns);
    routes::slice_started();
    let result = run();
    if let Some(outer) = outer_running {
        task_timing::leave(outer);
    }
    let wall_ns = clock::now_ns() - start_ns;
    let sampler::SliceSamples { monitor: samples, recording: recording_samples, recording_times, recording_cpu } =
        sampler::slice_finished(py, start_ns);
    let finished = slice::end(outer);
    // The providers called at the first blocking event ran inside the
    // window: their time is theirs, not the application's.
    let elapsed_ns = wall_ns.saturating_sub(finished.provider_ns);

    let exceeded = elapsed_ns >= config::threshold_ns();
    let interesting = finished.total_events > 0 || exceeded;
    let after = (interesting && providers).then(|| capture_context(py, context)).flatten();
    let merged = if interesting {
        merge_contexts(py, before, after)
    } else if recording::records_context() && recording::is_active() {
        // A recording that keeps context gives it to every slice, so that
        // `--by context:KEY` divides all of the loop's time (a test run's by test).
        before
    } else {
        None
    };
    let merged = match finished.first_event_context.as_ref() {
        Some(at_first_event) => Some(fill_missing(at_first_event.bind(py).clone(), merged)),
        None => merged,
    };
    if recording::is_active() {
        let recording_samples_taken = sampler::recording_sampling().0 != 0;
        let route = routes::slice_route(py, &ran);
        let step = match (&callback_before, &ran) {
            (Some(callback), _) => what_ran::is_step_wrapper(callback.as_ptr()),
            (None, Ran::Callback(callback)) => what_ran::is_step_wrapper(callback.as_ptr()),
            _ => false,
        };
        let facts = describe::SliceFacts {
            ready,
            task_object,
            step,
            ran: match &callback_before {
                Some(callback) => Ran::Callback(callback),
                None => ran,
            },
            route: &route,
            start_ns,
            duration_ns: elapsed_ns,
            exceeded,
            slice: &finished,
            // Recording's own samples where it takes them, else the monitor's.
            samples: if recording_samples_taken { &recording_samples } else { &samples },
            sample_times: if recording_samples_taken { &recording_times } else { &[] },
            sample_cpu: if recording_samples_taken { &recording_cpu } else { &[] },
            context: merged.as_ref(),
        };
        let (described, detail) = describe::for_recording(py, &facts);
        recording::record_slice(described, detail);
    }
    let outcome = if interesting {
        let report = FinishedSlice { elapsed_ns, slice: finished, samples, context: merged };
        match (emit::emit(py, report), result) {
            (Err(violation), Ok(_)) => Err(violation),
            (_, result) => result,
        }
    } else {
        result
    };
    // Only slices that ran providers can have one pending (one registered
    // inside this slice raises it from the next): the hot path stays as it was.
    match providers.then(take_provider_interrupt).flatten() {
        Some(interrupt) => Err(interrupt),
        None => outcome,
    }
}

/// `at_first_event`, with the keys it lacks or has as None taken from
/// `around` (the values from before and after the callback).
fn fill_missing<'py>(at_first_event: Bound<'py, PyDict>, around: Option<Bound<'py, PyDict>>) -> Bound<'py, PyDict> {
    for (key, value) in around.iter().flat_map(|around| around.iter()) {
        let missing = at_first_event.get_item(&key).ok().flatten().is_none_or(|v| v.is_none());
        if missing {
            let _ = at_first_event.set_item(key, value);
        }
    }
    at_first_event
}

/// `{**before, **{k: v for k, v in after.items() if v is not None}}`.
fn merge_contexts<'py>(
    py: Python<'py>,
    before: Option<Bound<'py, PyDict>>,
    after: Option<Bound<'py, PyDict>>,
) -> Option<Bound<'py, PyDict>> {
    let merged = before.unwrap_or_else(|| PyDict::new(py));
    for (key, value) in after.iter().flat_map(|after| after.iter()) {
        if !value.is_none() {
            let _ = merged.set_item(key, value);
        }
    }
    Some(merged)
}

/// What a patched scheduling method (`call_soon` and kin) of a loop holds:
/// the original method and where its callback argument is.
#[pyclass(module = "aiocop._native", frozen)]
pub struct ScheduleTarget {
    original: Py<PyAny>,
    /// Position of the callback among the positional arguments: 0 for
    /// `call_soon`, 1 for `call_later(delay, ...)` and `call_at(when, ...)`.
    callback_index: usize,
    /// When the callback becomes ready, told to the recording.
    ready: ReadyRule,
}

#[pymethods]
impl ScheduleTarget {
    #[getter]
    fn __wrapped__(&self, py: Python<'_>) -> Py<PyAny> {
        self.original.clone_ref(py)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.original)
    }
}

/// A stand-in for `original` (a loop's `call_soon`, `call_later`, ...):
/// `call_soon(callback, *args, context=c)` becomes
/// `original(run_monitored, callback, *args, context=c)`, so the loop runs
/// `run_monitored(callback, *args)`, which times `callback(*args)`.
///
/// Both are builtin functions taking the vectorcall convention: the
/// arguments and keywords pass through as they came, and nothing is
/// allocated per scheduled callback (the loop's handle already stores the
/// arguments).
pub fn schedule_patch<'py>(py: Python<'py>, original: Py<PyAny>, callback_index: usize) -> PyResult<Bound<'py, PyAny>> {
    let name = original.bind(py).getattr(intern!(py, "__name__")).and_then(|n| n.extract::<String>());
    let ready = match (callback_index, name.as_deref()) {
        (0, _) => ReadyRule::Now,
        (_, Ok("call_at")) => ReadyRule::At,
        _ => ReadyRule::AfterDelay,
    };
    let target = Bound::new(py, ScheduleTarget { original, callback_index, ready })?;
    new_builtin(py, &SCHEDULE_DEFINITION, target.as_any())
}

/// The function a patched loop schedules in place of each callback.
pub fn run_monitored_function(py: Python<'_>) -> PyResult<&'static Py<PyAny>> {
    static FUNCTION: OnceLock<Py<PyAny>> = OnceLock::new();
    if let Some(function) = FUNCTION.get() {
        return Ok(function);
    }
    let function = new_builtin(py, &RUN_MONITORED_DEFINITION, &py.None().into_bound(py))?.unbind();
    Ok(FUNCTION.get_or_init(|| function))
}

/// The function a patched loop schedules in place of each callback while
/// recording: `run_monitored_ready(ready_ns, since, parent, callback, *args)`.
fn run_monitored_ready_function(py: Python<'_>) -> PyResult<&'static Py<PyAny>> {
    static FUNCTION: OnceLock<Py<PyAny>> = OnceLock::new();
    if let Some(function) = FUNCTION.get() {
        return Ok(function);
    }
    let function = new_builtin(py, &RUN_MONITORED_READY_DEFINITION, &py.None().into_bound(py))?.unbind();
    Ok(FUNCTION.get_or_init(|| function))
}

/// The original method, among `classes` (class address, its original), of
/// the first class in `class`'s method resolution order that has one: a
/// stand-in put on a class finds what it stands in for, also when called
/// through a subclass's override and `super()`.
pub(crate) fn original_in_mro(
    classes: &[(usize, Py<PyAny>)],
    class: *mut ffi::PyTypeObject,
) -> Option<*mut ffi::PyObject> {
    // SAFETY: a live type's `tp_mro` is a tuple of live types (null
    // only before the type is ready, which an instance's type is).
    let mro = unsafe { (*class).tp_mro };
    if mro.is_null() {
        return None;
    }
    // SAFETY: as above.
    let count = unsafe { ffi::PyTuple_GET_SIZE(mro) };
    (0..count).find_map(|at| {
        // SAFETY: `at` is within the tuple.
        let base = unsafe { ffi::PyTuple_GET_ITEM(mro, at) } as usize;
        classes.iter().find(|(c, _)| *c == base).map(|(_, original)| original.as_ptr())
    })
}

/// Arguments of a class stand-in passed on in a buffer on the stack, `self` first.
const STACK_ARGUMENTS: usize = 4;

/// Calls `original` (a plain function) with `instance` prepended to the
/// arguments a method stand-in received (`passed`: `nargs` positional, then
/// one per name in `kwnames`).
pub(crate) fn vectorcall_with_self(
    py: Python<'_>,
    original: *mut ffi::PyObject,
    instance: *mut ffi::PyObject,
    passed: &[*mut ffi::PyObject],
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<*mut ffi::PyObject> {
    let mut on_stack = [std::ptr::null_mut(); STACK_ARGUMENTS];
    let mut on_heap = Vec::new();
    let with_self: &mut [*mut ffi::PyObject] = if passed.len() < STACK_ARGUMENTS {
        &mut on_stack[..passed.len() + 1]
    } else {
        on_heap.resize(passed.len() + 1, std::ptr::null_mut());
        &mut on_heap
    };
    with_self[0] = instance;
    // One by one: for the one to three arguments of a loop's calls, a
    // `copy_from_slice` is a call of libc's memcpy, which costs more.
    for (to, &from) in with_self[1..].iter_mut().zip(passed) {
        *to = from;
    }
    vectorcall(py, original, with_self, nargs as usize + 1, kwnames)
}

/// A `PyMethodDef` in a static: CPython keeps a pointer to it for as long as
/// the function object lives. It is only read after construction.
pub(crate) struct MethodDefinition(pub(crate) std::cell::UnsafeCell<ffi::PyMethodDef>);
// SAFETY: never mutated from Rust after construction.
unsafe impl Sync for MethodDefinition {}

/// A static `MethodDefinition` for a native entry point called by the
/// vectorcall convention with keywords: `fastcall_method!(c"name", entry, c"doc")`.
macro_rules! fastcall_method {
    ($name:expr, $entry:ident, $doc:expr) => {
        $crate::monitor::MethodDefinition(std::cell::UnsafeCell::new(pyo3::ffi::PyMethodDef {
            ml_name: $name.as_ptr(),
            ml_meth: pyo3::ffi::PyMethodDefPointer {
                PyCFunctionFastWithKeywords: pyo3::impl_::trampoline::get_trampoline_function!(
                    fastcall_cfunction_with_keywords,
                    $entry
                ),
            },
            ml_flags: pyo3::ffi::METH_FASTCALL | pyo3::ffi::METH_KEYWORDS,
            ml_doc: $doc.as_ptr(),
        }))
    };
}

/// As `fastcall_method!`, for the stand-ins the loop calls on every
/// iteration (the poll's, `call_soon`'s), with a C entry point that skips
/// pyo3's trampoline: its attach count, reference pool and frames cost
/// about 80 instructions a call (callgrind), a tenth of what iteration
/// timing adds to a step. Such an entry must neither create nor drop a
/// `Py<T>` (with the attach count not raised, pyo3 would defer the release
/// to its pool); it works on borrowed pointers and returns errors, which
/// `lean_call` hands to the interpreter as the trampoline would.
macro_rules! lean_fastcall_method {
    ($name:expr, $entry:ident, $doc:expr) => {{
        /// # Safety
        /// Called by the interpreter, attached, with the vectorcall convention.
        unsafe extern "C" fn lean_entry(
            instance: *mut pyo3::ffi::PyObject,
            args: *const *mut pyo3::ffi::PyObject,
            nargs: pyo3::ffi::Py_ssize_t,
            kwnames: *mut pyo3::ffi::PyObject,
        ) -> *mut pyo3::ffi::PyObject {
            // SAFETY: the interpreter's promise, passed on.
            $crate::monitor::lean_call(|py| unsafe { $entry(py, instance, args, nargs, kwnames) })
        }
        $crate::monitor::MethodDefinition(std::cell::UnsafeCell::new(pyo3::ffi::PyMethodDef {
            ml_name: $name.as_ptr(),
            ml_meth: pyo3::ffi::PyMethodDefPointer { PyCFunctionFastWithKeywords: lean_entry },
            ml_flags: pyo3::ffi::METH_FASTCALL | pyo3::ffi::METH_KEYWORDS,
            ml_doc: $doc.as_ptr(),
        }))
    }};
}
pub(crate) use lean_fastcall_method;

/// Runs a lean entry point's body (see `lean_fastcall_method!`): its error,
/// or a panic as a RuntimeError, is set on the interpreter and null returned.
#[inline(always)]
pub(crate) fn lean_call(body: impl FnOnce(Python<'_>) -> PyResult<*mut ffi::PyObject>) -> *mut ffi::PyObject {
    // SAFETY: only called from a C entry point the interpreter called, attached.
    let py = unsafe { Python::assume_attached() };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(py)))
        .unwrap_or_else(|_| Err(pyo3::exceptions::PyRuntimeError::new_err("aiocop: a loop stand-in panicked")));
    outcome.unwrap_or_else(|error| {
        error.restore(py);
        std::ptr::null_mut()
    })
}

static SCHEDULE_DEFINITION: MethodDefinition = fastcall_method!(
    c"schedule",
    schedule_entry,
    c"Schedule the callback through aiocop's run_monitored, which times it."
);

static RUN_MONITORED_DEFINITION: MethodDefinition = fastcall_method!(
    c"run_monitored",
    run_monitored_entry,
    c"run_monitored(callback, *args): call callback(*args), timed by aiocop."
);

pub(crate) fn new_builtin<'py>(
    py: Python<'py>,
    definition: &'static MethodDefinition,
    bound_self: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: the definition is static; the function keeps `bound_self` alive.
    unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyCFunction_NewEx(definition.0.get(), bound_self.as_ptr(), std::ptr::null_mut()),
        )
    }
}

static RUN_MONITORED_READY_DEFINITION: MethodDefinition = fastcall_method!(
    c"run_monitored_ready",
    run_monitored_ready_entry,
    c"run_monitored_ready(ready_ns, since, parent, callback, *args): call callback(*args), timed by aiocop."
);

/// The C entry point of a patched scheduling method (see `schedule_patch`).
///
/// # Safety
/// Called by the interpreter only, with the vectorcall convention: `target`
/// the function's `self` (a `ScheduleTarget`), `args` holding `nargs`
/// positional arguments then one value per name in `kwnames` (null if none).
unsafe fn schedule_entry(
    py: Python<'_>,
    target: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<*mut ffi::PyObject> {
    // SAFETY: `self` of this function is always a ScheduleTarget.
    let target = unsafe { Bound::from_borrowed_ptr(py, target) };
    let target = target.cast::<ScheduleTarget>()?.get();
    let positional = nargs as usize;
    // SAFETY: as this function's.
    let all = unsafe { vectorcall_arguments(args, nargs, kwnames) };
    if positional <= target.callback_index {
        return vectorcall(py, target.original.as_ptr(), all, positional, kwnames);
    }
    if recording::is_active() {
        return schedule_with_ready(py, target, all, positional, kwnames);
    }
    let mut forwarded = Vec::with_capacity(all.len() + 1);
    forwarded.extend_from_slice(&all[..target.callback_index]);
    forwarded.push(run_monitored_function(py)?.as_ptr());
    forwarded.extend_from_slice(&all[target.callback_index..]);
    vectorcall(py, target.original.as_ptr(), &forwarded, positional + 1, kwnames)
}

/// While recording: schedules `run_monitored_ready(ready_ns, since, parent,
/// callback, *args)`, so that the slice knows when its callback became ready
/// (a timer's `ready_ns` is a `TimerDue`, set once the loop made its handle).
fn schedule_with_ready(
    py: Python<'_>,
    target: &ScheduleTarget,
    all: &[*mut ffi::PyObject],
    positional: usize,
    kwnames: *mut ffi::PyObject,
) -> PyResult<*mut ffi::PyObject> {
    let first = match target.callback_index {
        0 => None,
        // SAFETY: a live borrowed argument of the call.
        _ => Some(unsafe { Bound::from_borrowed_ptr(py, all[0]) }),
    };
    let ready = task_timing::ready_when_scheduled(target.ready, first.as_ref());
    let due = match target.ready {
        ReadyRule::Now => None,
        _ => Some(Bound::new(py, TimerDue::estimated(ready))?),
    };
    let ready_values = (ready.ready_ns, ready.since, ready.parent).into_pyobject(py)?;
    let mut ready_values: Vec<Bound<'_, PyAny>> = ready_values.iter().collect();
    if let Some(due) = &due {
        ready_values[0] = due.clone().into_any();
    }
    let mut forwarded = Vec::with_capacity(all.len() + 4);
    forwarded.extend_from_slice(&all[..target.callback_index]);
    forwarded.push(run_monitored_ready_function(py)?.as_ptr());
    forwarded.extend(ready_values.iter().map(Bound::as_ptr));
    forwarded.extend_from_slice(&all[target.callback_index..]);
    let handle = vectorcall(py, target.original.as_ptr(), &forwarded, positional + 4, kwnames)?;
    if let Some(due) = due {
        // SAFETY: the new reference the loop returned, borrowed here.
        due.get().learn_from(unsafe { &Bound::from_borrowed_ptr(py, handle) });
    }
    Ok(handle)
}

/// The C entry point of `run_monitored(callback, *args)`.
///
/// # Safety
/// As for `schedule_entry`.
unsafe fn run_monitored_entry(
    py: Python<'_>,
    _self: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<*mut ffi::PyObject> {
    let positional = nargs as usize;
    // SAFETY: as this function's.
    let all = unsafe { vectorcall_arguments(args, nargs, kwnames) };
    let Some((callback, rest)) = all.split_first() else {
        return Err(pyo3::exceptions::PyTypeError::new_err("run_monitored() needs a callback"));
    };
    run_callback(py, *callback, rest, positional - 1, kwnames, Ready::UNKNOWN)
}

/// The C entry point of `run_monitored_ready(ready_ns, since, parent,
/// callback, *args)`.
///
/// # Safety
/// As for `schedule_entry`.
unsafe fn run_monitored_ready_entry(
    py: Python<'_>,
    _self: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<*mut ffi::PyObject> {
    let positional = nargs as usize;
    // SAFETY: as this function's.
    let all = unsafe { vectorcall_arguments(args, nargs, kwnames) };
    if positional < 4 {
        return Err(pyo3::exceptions::PyTypeError::new_err(
            "run_monitored_ready() needs a time, a kind, a task and a callback",
        ));
    }
    // SAFETY: live borrowed references of the call.
    let value = |index: usize| unsafe { Bound::from_borrowed_ptr(py, all[index]) };
    let number = |index: usize| value(index).extract::<u64>().unwrap_or(0);
    let ready = match value(0).cast::<TimerDue>() {
        Ok(due) => due.get().ready(),
        Err(_) => Ready { ready_ns: number(0), since: number(1) as u8, parent: number(2) as usize },
    };
    run_callback(py, all[3], &all[4..], positional - 4, kwnames, ready)
}

/// Calls `callback(*args)` as a monitored slice (if monitoring is active).
fn run_callback(
    py: Python<'_>,
    callback: *mut ffi::PyObject,
    args: &[*mut ffi::PyObject],
    positional: usize,
    kwnames: *mut ffi::PyObject,
    ready: Ready,
) -> PyResult<*mut ffi::PyObject> {
    let call = || vectorcall(py, callback, args, positional, kwnames);
    if !config::monitoring_active() {
        return call();
    }
    // SAFETY: the array holds live borrowed references.
    let callback = unsafe { Bound::from_borrowed_ptr(py, callback) };
    let result = run_slice(py, Ran::Callback(&callback), ready, || {
        // SAFETY: `vectorcall` returns a new, non-null reference on success.
        call().map(|ptr| unsafe { Bound::from_owned_ptr(py, ptr) }.unbind())
    });
    result.map(Py::into_ptr)
}

/// The arguments of a vectorcall: `nargs` positional ones, then one value
/// per name in `kwnames`.
///
/// # Safety
/// As the vectorcall convention promises: `args` holds `nargs` positional
/// arguments then one value per name in `kwnames` (a tuple, or null), live
/// for as long as the slice is used.
pub(crate) unsafe fn vectorcall_arguments<'a>(
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> &'a [*mut ffi::PyObject] {
    // SAFETY: a non-null `kwnames` is the vectorcall's tuple of keyword names.
    let keywords = if kwnames.is_null() { 0 } else { unsafe { ffi::PyTuple_GET_SIZE(kwnames) as usize } };
    // SAFETY: the caller's promise.
    unsafe { std::slice::from_raw_parts(args, nargs as usize + keywords) }
}

/// Every stand-in calls the code it stands for through the exit guard: a
/// daemon thread blocked in it must not unwind through aiocop at exit.
pub(crate) use crate::exit_guard::vectorcall;
