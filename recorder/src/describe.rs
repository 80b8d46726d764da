//! Describes a finished slice for the recording: the value the monitor
//! hands to `recording::record_slice`.
//!
//! Place in the flow (record -> trace file): between the monitor, which
//! timed the slice, and the recording, which buffers and writes it. What
//! ran is named by `what_ran`; the arguments of blocking events and the
//! context (if recorded) are redacted and turned into shared string ids
//! here, so the recording receives plain ids and numbers and never calls
//! back into the monitor or `what_ran`.

use crate::recording::{self, DescribedEvent, DescribedSlice, SliceDetail};
use crate::slice::Slice;
use crate::stacks::StackId;
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
    };
    let interesting = facts.slice.total_events > 0 || facts.exceeded;
    if interesting || !facts.samples.is_empty() || facts.context.is_some() || facts.route.is_some() {
        return (slice, Some(detail(py, facts)));
    }
    (slice, None)
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
    }
}
