//! The per-thread record of the callback slice being run: which blocking
//! events it raised, with their stacks.
//!
//! A thread records only between `begin` and `end`, which wrap the user's
//! callback and nothing else: aiocop's own work (context providers, user
//! callbacks, formatting) runs outside that window, so it is never reported
//! as the application's. The one exception, the context providers called at
//! a slice's first blocking event, is timed, and its time is taken off the
//! slice's (`Slice::provider_ns`).

use crate::allow;
use crate::config;
use crate::stacks::{self, StackId};
use aiocop_trace::BLOCKING_EVENTS;
use pyo3::ffi;
use pyo3::prelude::*;
use std::cell::{Cell, RefCell};

/// Events kept per slice with their stacks, as in aiocop 1.2.1; later
/// events are still counted and scored.
pub const MAX_EVENTS_PER_SLICE: usize = 50;

pub struct RawEvent {
    pub event_index: u16,
    pub args: Py<PyAny>,
    pub stack: Option<StackId>,
    /// When it happened, on the monitor's clock.
    pub at_ns: u64,
    /// The identity of the allow-list entry that allowed it, if one did.
    pub allowed_by: Option<std::sync::Arc<str>>,
}

#[derive(Default)]
pub struct Slice {
    pub events: Vec<RawEvent>,
    /// Every blocking event, kept or not.
    pub total_events: u32,
    /// Summed weight of every blocking event, kept or not.
    pub score: i64,
    /// Blocking events an allow-list allowed, kept or not.
    pub allowed_events: u32,
    /// Summed weight of those: `raise_on_violations` ignores it.
    pub allowed_score: i64,
    /// `raise_on_violations` was on in the context that raised an event.
    pub should_raise: bool,
    /// What the context providers returned at the first blocking event, if
    /// any are registered: a value that exists only while the blocking call
    /// runs (a tracing span opened and closed inside the callback).
    pub first_event_context: Option<Py<pyo3::types::PyDict>>,
    /// Time the context providers took inside the slice (at its first
    /// blocking event), to be taken off the slice's duration.
    pub provider_ns: u64,
}

impl Slice {
    pub fn dropped_events(&self) -> u32 {
        self.total_events - self.events.len() as u32
    }

    /// Allowed events among the dropped ones.
    pub fn allowed_dropped_events(&self) -> u32 {
        self.allowed_events - self.events.iter().filter(|e| e.allowed_by.is_some()).count() as u32
    }

    /// The score of the events no allow-list allowed.
    pub fn unallowed_score(&self) -> i64 {
        self.score - self.allowed_score
    }
}

thread_local! {
    /// True while this thread runs a monitored callback. Read first by the
    /// audit hook, so that events outside any slice cost one load. Cleared
    /// while an event is being recorded, which keeps the hook from
    /// re-entering itself (a garbage-collected `__del__` opening a file).
    static RECORDING: Cell<bool> = const { Cell::new(false) };
    static CURRENT: RefCell<Slice> = RefCell::new(Slice::default());
}

/// The slice interrupted by a nested one (a loop run inside a callback).
pub struct Outer {
    was_recording: bool,
    slice: Slice,
}

pub fn is_recording() -> bool {
    RECORDING.get()
}

pub fn begin() -> Outer {
    let slice =
        CURRENT.with(|current| current.try_borrow_mut().map(|mut s| std::mem::take(&mut *s)).unwrap_or_default());
    Outer { was_recording: RECORDING.replace(true), slice }
}

pub fn end(outer: Outer) -> Slice {
    RECORDING.set(outer.was_recording);
    CURRENT.with(|current| match current.try_borrow_mut() {
        Ok(mut slice) => std::mem::replace(&mut *slice, outer.slice),
        Err(_) => Slice::default(),
    })
}

/// Forgets the events recorded so far in this thread's slice.
pub fn reset_events() {
    CURRENT.with(|current| {
        if let Ok(mut slice) = current.try_borrow_mut() {
            *slice = Slice::default();
        }
    });
}

/// Records one blocking event in this thread's slice. Called from the audit
/// hook with the GIL held; never panics and never raises.
pub fn record(py: Python<'_>, event_index: u16, args: *mut ffi::PyObject) {
    RECORDING.set(false);
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| record_event(py, event_index, args)));
    RECORDING.set(true);
}

fn record_event(py: Python<'_>, event_index: u16, args: *mut ffi::PyObject) {
    let weight = BLOCKING_EVENTS[event_index as usize].weight;
    let Some((keep, already_raising, first)) = with_slice(|slice| {
        slice.total_events += 1;
        slice.score += weight;
        (slice.events.len() < MAX_EVENTS_PER_SLICE, slice.should_raise, slice.total_events == 1)
    }) else {
        return;
    };
    // Under the hook's re-entrancy guard: the providers' own I/O is not
    // recorded.
    let at_ns = crate::clock::now_ns();
    let (first_event_context, provider_ns) = if first {
        let context = crate::context::capture_current_context(py);
        (context, crate::clock::now_ns() - at_ns)
    } else {
        (None, 0)
    };
    let raise_now = !already_raising && raise_on_violations_is_set(py);
    let stack = keep.then(|| stacks::capture_current(py, config::trace_depth())).flatten();
    // With an allow-list in force every event's stack is matched, kept or
    // not, and deeper than the recorded one: an entry naming the handler
    // must allow what a lazy import 30 frames below it does.
    let allowed_by = allow::is_active()
        .then(|| allow::allowing(stacks::capture_current(py, allow::MATCH_DEPTH), event_index))
        .flatten();
    let event = keep.then(|| RawEvent {
        event_index,
        // SAFETY: the hook's argument tuple is a live borrowed reference.
        args: unsafe { Bound::from_borrowed_ptr(py, args) }.unbind(),
        at_ns,
        stack,
        allowed_by: allowed_by.clone(),
    });
    with_slice(|slice| {
        if allowed_by.is_some() {
            slice.allowed_events += 1;
            slice.allowed_score += weight;
        }
        slice.should_raise |= raise_now;
        slice.provider_ns += provider_ns;
        if first_event_context.is_some() {
            slice.first_event_context = first_event_context.map(Bound::unbind);
        }
        if let Some(event) = event {
            if slice.events.len() < MAX_EVENTS_PER_SLICE {
                slice.events.push(event);
            }
        }
    });
}

fn with_slice<R>(f: impl FnOnce(&mut Slice) -> R) -> Option<R> {
    CURRENT.with(|current| current.try_borrow_mut().ok().map(|mut slice| f(&mut slice)))
}

/// Reads the `raise_on_violations` ContextVar in the current context.
fn raise_on_violations_is_set(py: Python<'_>) -> bool {
    let Some(side) = config::python_side() else { return false };
    let mut value: *mut ffi::PyObject = std::ptr::null_mut();
    // SAFETY: GIL held; on success `value` is a new reference.
    unsafe {
        if ffi::PyContextVar_Get(side.raise_on_violations.as_ptr(), std::ptr::null_mut(), &mut value) != 0 {
            ffi::PyErr_Clear();
            return false;
        }
        let value = Bound::from_owned_ptr_or_opt(py, value);
        value.is_some_and(|v| v.is(&*pyo3::types::PyBool::new(py, true)))
    }
}
