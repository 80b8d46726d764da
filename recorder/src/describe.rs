//! Describes a finished slice for the recording: the value the monitor
//! hands to `recording::record_slice`.
//!
//! Place in the flow (record -> trace file): between the monitor, which
//! timed the slice, and the recording, which buffers and writes it. What
//! ran is named by `what_ran`; the arguments of blocking events and the
//! context (if recorded) are redacted and turned into shared string ids
//! here, so the recording receives plain ids and numbers and never calls
//! back into the monitor or `what_ran`.

use crate::eager_tasks::{self, EndedEagerly};
use crate::recording::registry::NO_TASK;
use crate::recording::{self, DescribedEvent, DescribedSlice, SliceDetail, TaskCreation};
use crate::slice::Slice;
use crate::stacks::StackId;
use crate::task_state::task_outcome;
use crate::task_timing::{Ready, READY_SCHEDULED};
use crate::what_ran::{self, Ran};
use aiocop_trace::records::SampleTime;
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
    let mut lifecycle = match described.task {
        NO_TASK => TaskLifecycle::default(),
        _ => task_lifecycle(py, facts, described.new_task),
    };
    if eager_tasks::any_seen() {
        lifecycle.ended_eagerly = eager_tasks::take_ended();
    }
    let interesting = facts.slice.total_events > 0 || facts.exceeded;
    if interesting
        || !facts.samples.is_empty()
        || facts.context.is_some()
        || facts.route.is_some()
        || lifecycle.is_some()
    {
        let mut detail = detail(py, facts);
        (detail.created, detail.ended) = (lifecycle.created, lifecycle.ended);
        (detail.eager_first_step_ns, detail.ended_eagerly) = (lifecycle.eager_first_step_ns, lifecycle.ended_eagerly);
        return (slice, Some(detail));
    }
    (slice, None)
}

/// What a task's step says of its life: its creation (at its first step,
/// scheduled by `Task.__init__`'s `call_soon`), its end (it is done after
/// the step).
/// An eager task's creation is that of its eager first step, told with its
/// first slice; tasks that ended eagerly are told with the slice they ran in.
#[derive(Default)]
struct TaskLifecycle {
    created: Option<TaskCreation>,
    ended: Option<u8>,
    eager_first_step_ns: Option<u64>,
    ended_eagerly: Vec<EndedEagerly>,
}

impl TaskLifecycle {
    fn is_some(&self) -> bool {
        self.created.is_some() || self.ended.is_some() || !self.ended_eagerly.is_empty()
    }
}

#[inline]
fn task_lifecycle(py: Python<'_>, facts: &SliceFacts<'_, '_>, new_task: bool) -> TaskLifecycle {
    let ended = task_outcome(py, facts.task_object);
    let eager = (new_task && eager_tasks::any_seen()).then(|| eager_tasks::first_step_of(facts.task_object)).flatten();
    if let Some(start) = eager {
        let created = TaskCreation { created_ns: start.created_ns, parent: what_ran::token_of(start.parent) };
        return TaskLifecycle {
            created: Some(created),
            ended,
            eager_first_step_ns: Some(start.ran_ns),
            ..Default::default()
        };
    }
    let first_step = new_task && facts.step && facts.ready.since == READY_SCHEDULED;
    let created = first_step
        .then(|| TaskCreation { created_ns: facts.ready.ready_ns, parent: what_ran::token_of(facts.ready.parent) });
    TaskLifecycle { created, ended, ..Default::default() }
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
        eager_first_step_ns: None,
        ended_eagerly: Vec::new(),
    }
}
