//! Describes a finished slice for the recording: the value the monitor
//! hands to `recording::record_slice`.
//!
//! Place in the flow (record -> trace file): between the monitor, which
//! timed the slice, and the recording, which buffers and writes it. What
//! ran is named by `what_ran`; the arguments of blocking events and the
//! context (if recorded) are redacted and turned into shared string ids
//! here, so the recording receives plain ids and numbers and never calls
//! back into the monitor or `what_ran`.

use crate::recording::registry::NO_TASK;
use crate::recording::{self, DescribedEvent, DescribedSlice, SliceDetail, TaskCreation};
use crate::slice::Slice;
use crate::stacks::StackId;
use crate::task_timing::{Ready, READY_SCHEDULED};
use crate::what_ran::{self, Ran};
use aiocop_trace::records::SampleTime;
use aiocop_trace::records::{TASK_CANCELLED, TASK_DONE, TASK_RAISED};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// The slice facts a description needs, borrowed from the monitor.
pub struct SliceFacts<'a, 'py> {
    pub ran: Ran<'a, 'py>,
    pub start_ns: u64,
    pub duration_ns: u64,
    pub exceeded: bool,
    pub slice: &'a Slice,
    pub samples: &'a [StackId],
    /// When recording's samples were taken, one per sample (none for the
    /// monitor's).
    pub sample_times: &'a [SampleTime],
    /// The loop thread's CPU time over each of those samples' waits.
    pub sample_cpu: &'a [u64],
    pub context: Option<&'a Bound<'py, PyDict>>,
    /// The route of the request it served, if any (see `crate::routes`).
    pub route: &'a crate::routes::SliceRoute,
    /// When its callback became ready (see `crate::task_timing`).
    pub ready: Ready,
    /// The task whose step or wake-up ran (its address; 0: none), and
    /// whether the callback was a step (a task's first one is).
    pub task_object: usize,
    pub step: bool,
}

/// The slice as the recording keeps it, with its detail if it has one
/// (blocking events, samples or context). Never raises.
///
/// Inlined into the monitor, so that the facts of the common slice (no
/// events, no samples, no context) are never copied.
#[inline]
pub fn for_recording(py: Python<'_>, facts: &SliceFacts<'_, '_>) -> (DescribedSlice, Option<SliceDetail>) {
    let described = what_ran::describe(py, &facts.ran);
    let slice = DescribedSlice {
        start_ns: facts.start_ns,
        duration_ns: facts.duration_ns,
        what: described.what,
        task: described.task,
        thread: described.thread,
        exceeded: facts.exceeded,
        ready_ns: facts.ready.ready_ns,
        ready_since: facts.ready.since,
    };
    let lifecycle = match described.task {
        NO_TASK => TaskLifecycle::default(),
        _ => task_lifecycle(py, facts, described.new_task),
    };
    let interesting = facts.slice.total_events > 0 || facts.exceeded;
    if interesting
        || !facts.samples.is_empty()
        || facts.context.is_some()
        || facts.route.is_some()
        || lifecycle.is_some()
    {
        let mut detail = detail(py, facts);
        (detail.created, detail.ended) = (lifecycle.created, lifecycle.ended);
        return (slice, Some(detail));
    }
    (slice, None)
}

/// What a task's step says of its life: its creation (at its first step,
/// scheduled by `Task.__init__`'s `call_soon`), its end (it is done after
/// the step).
#[derive(Default)]
struct TaskLifecycle {
    created: Option<TaskCreation>,
    ended: Option<u8>,
}

impl TaskLifecycle {
    fn is_some(&self) -> bool {
        self.created.is_some() || self.ended.is_some()
    }
}

#[inline]
fn task_lifecycle(py: Python<'_>, facts: &SliceFacts<'_, '_>, new_task: bool) -> TaskLifecycle {
    let first_step = new_task && facts.step && facts.ready.since == READY_SCHEDULED;
    let created = first_step
        .then(|| TaskCreation { created_ns: facts.ready.ready_ns, parent: what_ran::token_of(facts.ready.parent) });
    TaskLifecycle { created, ended: task_outcome(py, facts.task_object) }
}

/// How the task at `task` ended, if it is done: `_state` (a C task's and a
/// Python one's alike) then `_exception`; read without `exception()`,
/// which would mark an exception as retrieved and silence asyncio's "never
/// retrieved" warning.
fn task_outcome(py: Python<'_>, task: usize) -> Option<u8> {
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

/// What a slice with blocking events, samples or context adds.
#[inline(never)]
fn detail(py: Python<'_>, facts: &SliceFacts<'_, '_>) -> SliceDetail {
    let events = facts
        .slice
        .events
        .iter()
        .map(|event| DescribedEvent {
            event: event.event_index,
            args: recording::shared_string_id(&crate::redact::event_args(crate::emit::format_args(
                event.args.bind(py),
            ))),
            offset_ns: event.at_ns.saturating_sub(facts.start_ns),
            stack: event.stack,
            allowed_by: event.allowed_by.as_deref().map(recording::shared_string_id),
        })
        .collect();
    let context = match (facts.context, recording::records_context()) {
        (Some(context), true) => crate::redact::context(
            context.iter().filter_map(|(k, v)| Some((k.str().ok()?.to_string(), v.str().ok()?.to_string()))).collect(),
        ),
        _ => Vec::new(),
    };
    SliceDetail {
        events,
        dropped_events: facts.slice.dropped_events(),
        allowed_dropped_events: facts.slice.allowed_dropped_events(),
        score: facts.slice.score,
        samples: facts.samples.to_vec(),
        sample_times: facts.sample_times.to_vec(),
        sample_cpu: facts.sample_cpu.to_vec(),
        context,
        route: facts.route.route,
        requests_started: facts.route.started.clone(),
        created: None,
        ended: None,
    }
}
