//! The recording's switch and settings: whether slices are being recorded
//! (read on every slice), what `start_recording` was given, and the trace
//! header made from it.
//!
//! Place in the flow (record -> trace file): at the start. The monitor asks
//! `is_active` before describing a slice; `session` sets the flag when the
//! writer thread runs and clears it at stop, and the writer clears it when
//! a write fails; the header is the first thing the writer writes.

use crate::config;
use aiocop_trace::records::{Appended, EventSpec, ProcessInfo, Redaction, SamplingInfo, TraceHeader};
use aiocop_trace::BLOCKING_EVENTS;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Whether slices are being recorded; read on every slice.
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Whether slices are being recorded.
pub fn is_active() -> bool {
    ACTIVE.load(Relaxed)
}

pub(super) fn set_active(active: bool) {
    ACTIVE.store(active, Relaxed);
}

static RECORD_CONTEXT: AtomicBool = AtomicBool::new(false);

/// Whether the current recording keeps what the context providers return.
pub fn records_context() -> bool {
    RECORD_CONTEXT.load(Relaxed)
}

pub(super) fn set_records_context(record: bool) {
    RECORD_CONTEXT.store(record, Relaxed);
}

/// What `start_recording` was given, kept to restart in a forked child.
#[derive(Clone)]
pub struct Settings {
    pub path_template: String,
    pub label: Option<String>,
    pub flush_interval: Duration,
    pub max_buffered_slices: usize,
    pub record_context: bool,
    /// Permission bits of a trace file this recording creates.
    pub file_mode: u32,
    pub aiocop_version: String,
    pub python_version: String,
    pub platform: String,
    pub host: String,
    pub argv: Vec<String>,
    pub process: ProcessInfo,
    pub sampling: SamplingInfo,
    pub redaction: Redaction,
}

/// Expands `{pid}` in a path template.
pub fn expand_path(template: &str, pid: u32) -> String {
    template.replace("{pid}", &pid.to_string())
}

/// The header of a trace recorded with `settings` from `start_monotonic_ns`.
pub(super) fn trace_header(settings: &Settings, start_monotonic_ns: u64) -> TraceHeader {
    TraceHeader {
        aiocop_version: settings.aiocop_version.clone(),
        python_version: settings.python_version.clone(),
        platform: settings.platform.clone(),
        host: settings.host.clone(),
        pid: std::process::id(),
        argv: settings.argv.clone(),
        start_unix_ns: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64),
        start_monotonic_ns,
        label: settings.label.clone(),
        threshold_ns: config::threshold_ns(),
        trace_depth: config::trace_depth() as u32,
        event_table: BLOCKING_EVENTS.iter().map(|e| EventSpec { name: e.name.to_owned(), weight: e.weight }).collect(),
        records_context: settings.record_context,
        process: Appended(settings.process.clone()),
        sampling: Appended(settings.sampling),
        redaction: Appended(settings.redaction.clone()),
    }
}
