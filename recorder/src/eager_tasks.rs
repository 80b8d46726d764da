//! Eager tasks (CPython 3.12+): tasks whose first step runs at once inside
//! the `create_task` that makes them, within their creator's slice, with no
//! `call_soon` and no slice of their own (format 1.5, `EagerTasks`).
//!
//! How CPython makes them (`Lib/asyncio/tasks.py`, `base_events.py`,
//! `Modules/_asynciomodule.c`, 3.12 to 3.15): `Task(coro, loop=...,
//! eager_start=True)` runs the first step in its constructor when the loop
//! is running. It is asked for by a task factory (`asyncio.eager_task_factory`,
//! `asyncio.create_eager_task_factory(...)`), which `loop.create_task` calls
//! when one is set, by constructing `Task(..., eager_start=True)` directly
//! (aiohttp's request handlers on 3.12+, Home Assistant), and on 3.14 by
//! `create_task(..., eager_start=True)`.
//!
//! Every one of these goes through `_asyncio.Task`'s constructor with
//! `eager_start=True`: while recording, aiocop's `tp_init` for the type
//! (`watch_eager_tasks`) times that constructor and tells, from the task's
//! state afterwards, whether its first step ran:
//! - the task is done: it ended eagerly. It is told with its creator's
//!   slice (the slice running on this thread), whose time holds its step;
//! - its coroutine is suspended (`cr_suspended`): it started and waits.
//!   Its creation and eager step are told with its first slice.
//!
//! A task made without `eager_start` pays one dictionary look-up at its
//! creation; the slice path reads one flag (`ANY_EAGER`) until an eager
//! task is seen.

use crate::clock;
pub use crate::recording::{EagerStart, EndedEagerly};
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple, PyWeakrefReference};
use rustc_hash::FxHashMap;
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::OnceLock;

/// Eager tasks that suspended, kept until their first slice (a task
/// destroyed while pending never has one: past this many, all are forgotten).
const MAX_SUSPENDED: usize = 1 << 14;
/// Eager tasks that ended in one slice, at most (a slice creating more
/// tells this many).
const MAX_ENDED: usize = 1 << 16;

struct ThreadEager {
    /// By task address, with a weak reference so that a task that died and
    /// whose address was reused is never taken for it.
    suspended: FxHashMap<usize, (Py<PyWeakrefReference>, EagerStart)>,
    /// Ended in the slice running on this thread.
    ended: Vec<EndedEagerly>,
}

thread_local! {
    static THREAD: RefCell<ThreadEager> = RefCell::new(ThreadEager {
        suspended: FxHashMap::default(),
        ended: Vec::new(),
    });
}

/// Set once an eager task was seen: until then the slice path asks nothing.
static ANY_EAGER: AtomicBool = AtomicBool::new(false);

#[inline]
pub fn any_seen() -> bool {
    ANY_EAGER.load(Relaxed)
}

/// The eager first step of the task at `task`, if it was eager and this
/// is its first slice.
pub fn first_step_of(task: usize) -> Option<EagerStart> {
    if task == 0 {
        return None;
    }
    THREAD.with(|state| {
        let mut state = state.try_borrow_mut().ok()?;
        let (weak, start) = state.suspended.remove(&task)?;
        // SAFETY: a live weak reference, held here.
        let alive = unsafe { (*weak.as_ptr().cast::<pyo3::ffi::PyWeakReference>()).wr_object } as usize == task;
        drop(state);
        // Dropped under the GIL (the caller holds it); a weak reference's
        // deallocation runs no Python code.
        drop(weak);
        alive.then_some(start)
    })
}

/// The tasks that ended eagerly in the slice ending on this thread.
pub fn take_ended() -> Vec<EndedEagerly> {
    THREAD.with(|state| state.try_borrow_mut().map(|mut state| std::mem::take(&mut state.ended)).unwrap_or_default())
}

/// `_asyncio.Task`'s own `tp_init`, once `watch_eager_tasks` put aiocop's
/// in its place.
static ORIGINAL_INIT: OnceLock<ffi::initproc> = OnceLock::new();

/// Makes `task_type` (`_asyncio.Task`) tell a recording the tasks whose
/// first step its constructor runs: its `tp_init` (`Task.__init__`, which
/// `Task(...)` reaches through `type_call`: the type has no vectorcall, in
/// 3.12 to 3.15) becomes one that calls the original and, while recording,
/// when `eager_start` is true, times the call. Every way CPython offers goes
/// through it: `eager_task_factory`, `create_eager_task_factory`, 3.14's
/// `create_task(..., eager_start=True)`, and `Task(..., eager_start=True)`
/// as aiohttp's request handlers on 3.12+ are made. A subclass of `Task`
/// written in Python that calls `super().__init__` goes around it (through
/// the type's `__init__` descriptor): its eager tasks are not seen.
///
/// A task made without `eager_start` pays a dictionary look-up. False if the
/// type's `tp_init` was put in place already.
pub fn watch_eager_tasks(task_type: &Bound<'_, pyo3::types::PyType>) -> PyResult<bool> {
    let type_ptr = task_type.as_type_ptr();
    // SAFETY: reads a slot of a live type.
    let current = unsafe { (*type_ptr).tp_init };
    let Some(current) = current else {
        return Err(pyo3::exceptions::PyTypeError::new_err("the task type has no __init__"));
    };
    if current as usize == eager_aware_init as *const () as usize {
        return Ok(false);
    }
    if task_type.name()?.to_str()? != "Task" || task_type.module()?.to_str()? != "_asyncio" {
        return Err(pyo3::exceptions::PyTypeError::new_err("only _asyncio.Task is watched"));
    }
    if ORIGINAL_INIT.set(current).is_err() {
        return Ok(false); // another interpreter's type: watched once only
    }
    // SAFETY: the GIL is held; `type_call` reads `tp_init` at each call and
    // nothing caches it (the type has no vectorcall). The type is never
    // freed (the `_asyncio` module keeps it), so the slot stays aiocop's.
    unsafe { (*type_ptr).tp_init = Some(eager_aware_init) };
    Ok(true)
}

/// `Task.__init__` while watched (see `watch_eager_tasks`).
///
/// # Safety
/// Called by the interpreter as a `tp_init`, with the GIL, on a task of
/// the watched type: `args` a tuple, `kwds` a dict or null.
unsafe extern "C" fn eager_aware_init(
    task: *mut ffi::PyObject,
    args: *mut ffi::PyObject,
    kwds: *mut ffi::PyObject,
) -> std::os::raw::c_int {
    let Some(original) = ORIGINAL_INIT.get().copied() else { return -1 };
    // SAFETY: as this function's; a null `kwds` means no keywords.
    let eager = !kwds.is_null() && crate::recording::is_active() && unsafe { eager_start_asked(kwds) };
    let (parent, in_slice) = if eager { crate::task_timing::running_task() } else { (0, false) };
    if !in_slice {
        // SAFETY: the original slot, called as the interpreter would.
        return unsafe { original(task, args, kwds) };
    }
    // SAFETY: the interpreter holds the GIL for a tp_init; the task and the
    // arguments are live for the call.
    let py = unsafe { Python::assume_attached() };
    // Taken before the step: a task that ends in its eager step drops its
    // coroutine (its `_coro` is then None; `get_coro()` on it crashes
    // CPython 3.12.1, which aiocop never calls), which names it.
    // SAFETY: as above; `args` is a tuple.
    let coroutine = unsafe { Bound::from_borrowed_ptr(py, args) }.cast_into::<PyTuple>().ok().and_then(|args| {
        args.get_item(0).ok().or_else(|| {
            // SAFETY: `kwds` is a live dict (checked non-null above).
            let kwds = unsafe { Bound::from_borrowed_ptr(py, kwds) };
            kwds.cast::<PyDict>().ok()?.get_item(intern!(py, "coro")).ok().flatten()
        })
    });
    let created_ns = clock::now_ns();
    // SAFETY: as above.
    let status = unsafe { original(task, args, kwds) };
    if status != 0 {
        return status;
    }
    let start = EagerStart { created_ns, ran_ns: clock::now_ns().saturating_sub(created_ns), parent };
    // SAFETY: as above.
    let task = unsafe { Bound::from_borrowed_ptr(py, task) };
    note_if_eager(&task, coroutine.as_ref(), start);
    status
}

/// Whether the keywords of a `Task(...)` call ask for an eager start.
///
/// # Safety
/// `kwds` must be a live dict, with the GIL held.
unsafe fn eager_start_asked(kwds: *mut ffi::PyObject) -> bool {
    // SAFETY: the caller holds the GIL.
    let py = unsafe { Python::assume_attached() };
    // An interned key, its hash cached: a look-up, no string made per task.
    let key = intern!(py, "eager_start");
    // SAFETY: a borrowed look-up in a live dict (errors of hashing are
    // impossible for a str key, and leave null).
    let flag = unsafe { ffi::PyDict_GetItemWithError(kwds, key.as_ptr()) };
    // SAFETY: `flag` is a live borrowed object when not null; an error of
    // truth testing is cleared (the original init then sees the same flag).
    !flag.is_null()
        && match unsafe { ffi::PyObject_IsTrue(flag) } {
            1 => true,
            0 => false,
            _ => {
                // SAFETY: truth testing failed and set an error, dropped here.
                unsafe { ffi::PyErr_Clear() };
                false
            }
        }
}

/// Notes a task just made if its first step ran. Never raises.
fn note_if_eager(task: &Bound<'_, PyAny>, coroutine: Option<&Bound<'_, PyAny>>, start: EagerStart) {
    let py = task.py();
    let done = task.call_method0(intern!(py, "done")).is_ok_and(|done| done.is_truthy().unwrap_or(false));
    if done {
        let outcome =
            crate::task_state::task_outcome(py, task.as_ptr() as usize).unwrap_or(aiocop_trace::records::TASK_DONE);
        let what =
            coroutine.map_or_else(|| crate::recording::shared_string_id("?"), crate::what_ran::coroutine_what_id);
        ANY_EAGER.store(true, Relaxed);
        THREAD.with(|state| {
            if let Ok(mut state) = state.try_borrow_mut() {
                if state.ended.len() < MAX_ENDED {
                    state.ended.push(EndedEagerly { start, what, outcome });
                }
            }
        });
        return;
    }
    let suspended = coroutine
        .and_then(|coroutine| coroutine.getattr(intern!(py, "cr_suspended")).ok())
        .is_some_and(|suspended| suspended.is_truthy().unwrap_or(false));
    if !suspended {
        return; // not started: a plain task, whose first step is scheduled
    }
    let Ok(weak) = PyWeakrefReference::new(task) else { return };
    ANY_EAGER.store(true, Relaxed);
    let forgotten = THREAD.with(|state| {
        let mut state = state.try_borrow_mut().ok()?;
        let forgotten = (state.suspended.len() >= MAX_SUSPENDED).then(|| std::mem::take(&mut state.suspended));
        state.suspended.insert(task.as_ptr() as usize, (weak.unbind(), start));
        forgotten
    });
    // Dropped outside the borrow.
    drop(forgotten);
}
