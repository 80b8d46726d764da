//! `aiocop._native`: the hot path of the aiocop Python package.
//!
//! What runs for every event-loop callback or audit event lives here: the
//! C-level audit hook and its event filter (`hook`), the per-thread record
//! of the running slice (`slice`), native stack capture with interning
//! (`stacks`), callback timing (`monitor`), the wrappers that add audit
//! events to functions that lack them (`audited`) and the CPU sampling
//! watchdog (`sampler`). Reading a trace back in Python is `reading`. Turning a slice into user-facing objects is
//! `emit`; writing every slice to a trace file is `recording`, which gets
//! each slice from the monitor as a value described by `describe` (naming
//! what ran with `what_ran`). The Python package (`python/aiocop`) keeps the public API and
//! calls into this module; the event table and scoring come from the
//! `aiocop-trace` crate.

mod allow;
mod audited;
mod call_soon;
mod clock;
mod config;
mod context;
mod describe;
mod eager_tasks;
mod emit;
mod eval_breaker;
mod exit_guard;
mod ffi;
mod frame_reader;
mod handle_slots;
mod hook;
mod iterations;
mod monitor;
mod reading;
mod recording;
mod redact;
mod routes;
mod sampler;
mod signals;
mod sigterm;
mod slice;
mod stacks;
mod task_state;
mod task_timing;
mod trace_file;
mod what_ran;

use pyo3::prelude::*;

/// Installs the audit hook (once per process). True if this call did.
#[pyfunction]
fn install_audit_hook(py: Python<'_>) -> PyResult<bool> {
    hook::install()
        .map_err(|message| PyErr::take(py).unwrap_or_else(|| pyo3::exceptions::PyRuntimeError::new_err(message)))
}

/// Hands the native side the Python objects it reports through.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn configure(
    raise_on_violations: Py<PyAny>,
    slow_task_event: Py<PyAny>,
    high_severity_exception: Py<PyAny>,
    callbacks: Bound<'_, PyAny>,
    providers: Bound<'_, PyAny>,
    capture_context: Py<PyAny>,
    report_error: Py<PyAny>,
    logger: Py<PyAny>,
    object_new: Py<PyAny>,
    own_source_prefix: String,
) {
    stacks::set_own_prefix(own_source_prefix);
    config::CALLBACKS.set(callbacks);
    config::PROVIDERS.set(providers);
    config::set_python_side(config::PythonSide {
        raise_on_violations,
        slow_task_event,
        high_severity_exception,
        capture_context,
        report_error,
        logger,
        object_new,
    });
}

#[pyfunction]
fn set_monitoring_active(active: bool) {
    config::set_monitoring_active(active);
}

#[pyfunction]
fn is_monitoring_active() -> bool {
    config::monitoring_active()
}

#[pyfunction]
fn set_threshold_ns(threshold_ns: u64) {
    config::set_threshold_ns(threshold_ns);
}

#[pyfunction]
fn threshold_ns() -> u64 {
    config::threshold_ns()
}

#[pyfunction]
fn set_trace_depth(depth: usize) {
    config::set_trace_depth(depth);
}

#[pyfunction]
fn trace_depth() -> usize {
    config::trace_depth()
}

/// Points the native side at new lists of slow-task callbacks and context
/// providers (code assigned `aiocop.core.callbacks._slow_task_callbacks` or
/// `_context_providers`, as aiocop 1.2.1 allows).
#[pyfunction]
fn set_callback_lists(callbacks: Bound<'_, pyo3::types::PyList>, providers: Bound<'_, pyo3::types::PyList>) {
    config::CALLBACKS.set(callbacks.into_any());
    config::PROVIDERS.set(providers.into_any());
}

/// aiocop 1.2.1's `state._exception_raised`: whether the running monitored
/// callback raised HighSeverityBlockingIoException already.
#[pyfunction]
fn exception_raised() -> bool {
    config::exception_raised()
}

#[pyfunction]
fn set_exception_raised(raised: bool) {
    config::set_exception_raised(raised);
}

/// Replaces `handle_class._run` with the native timing wrapper (once).
#[pyfunction]
fn install_handle_run(py: Python<'_>, handle_class: &Bound<'_, pyo3::types::PyType>) -> PyResult<bool> {
    monitor::install_handle_run(py, handle_class)
}

/// A stand-in for a loop's scheduling method (`call_soon` and kin) that
/// wraps each callback so that it is timed; `callback_index` is where the
/// callback is among the positional arguments.
#[pyfunction]
fn schedule_patch<'py>(py: Python<'py>, original: Py<PyAny>, callback_index: usize) -> PyResult<Bound<'py, PyAny>> {
    monitor::schedule_patch(py, original, callback_index)
}

/// Records each poll of a stock asyncio loop's selector, while recording,
/// as the start of a loop iteration and its wait for I/O; false if the
/// selector already was timed. Puts aiocop's `select` on its class.
#[pyfunction]
fn time_selector(selector: &Bound<'_, PyAny>) -> PyResult<bool> {
    iterations::time_selector(selector)
}

/// Stops timing the selector of `id()` `selector_id` (it is being freed).
#[pyfunction]
fn untime_selector(selector_id: usize) {
    iterations::untime_selector(selector_id);
}

/// Notes, while recording, when each handle a stock asyncio loop's
/// `call_soon` returns was scheduled and by which task (its ready-wait and a
/// new task's creation); false if the loop already was stamped. Puts
/// aiocop's `call_soon` on the loop's class that defines it.
#[pyfunction]
fn stamp_call_soon(loop_: &Bound<'_, PyAny>) -> PyResult<bool> {
    call_soon::stamp_call_soon(loop_)
}

/// Stops stamping the loop of `id()` `loop_id` (it is being freed).
#[pyfunction]
fn unstamp_call_soon(loop_id: usize) {
    call_soon::unstamp_call_soon(loop_id);
}

/// Lets recordings see eager tasks (3.12+) made by `task_type`
/// (`_asyncio.Task`); false if it already did (see `eager_tasks`).
#[pyfunction]
fn watch_eager_tasks(task_type: &Bound<'_, pyo3::types::PyType>) -> PyResult<bool> {
    eager_tasks::watch_eager_tasks(task_type)
}

/// Marks a stock asyncio loop, by `id()`, as monitored or not.
#[pyfunction]
fn set_loop_monitored(loop_id: usize, monitored: bool) {
    monitor::set_loop_monitored(loop_id, monitored);
}

#[pyfunction]
#[pyo3(signature = (interval_ms, arm_after_ms, idle_interval_ms, max_samples_per_slice, trace_depth))]
fn start_sampler(
    interval_ms: f64,
    arm_after_ms: Option<f64>,
    idle_interval_ms: Option<f64>,
    max_samples_per_slice: usize,
    trace_depth: usize,
) -> bool {
    let arguments = (interval_ms, arm_after_ms, idle_interval_ms, max_samples_per_slice, trace_depth);
    let started = sampler::start(sampler_settings_of(arguments));
    if started {
        if let Ok(mut kept) = SAMPLER_ARGUMENTS.lock() {
            *kept = Some(arguments);
        }
    }
    started
}

fn sampler_settings_of(arguments: SamplerArguments) -> sampler::Settings {
    let (interval_ms, arm_after_ms, idle_interval_ms, max_samples_per_slice, trace_depth) = arguments;
    let ns = |ms: f64| (ms.max(0.0) * 1e6) as u64;
    sampler::Settings {
        interval_ns: ns(interval_ms),
        arm_after_ns: arm_after_ms.map(ns),
        idle_interval_ns: idle_interval_ms.map(ns),
        max_samples_per_slice,
        trace_depth,
    }
}

/// Puts these sampler settings in force, started or not (aiocop 1.2.1's
/// `cpu_sampler` globals assigned): as `start_sampler()`'s arguments.
#[pyfunction]
#[pyo3(signature = (interval_ms, arm_after_ms, idle_interval_ms, max_samples_per_slice, trace_depth))]
fn replace_sampler_settings(
    interval_ms: f64,
    arm_after_ms: Option<f64>,
    idle_interval_ms: Option<f64>,
    max_samples_per_slice: usize,
    trace_depth: usize,
) {
    let arguments = (interval_ms, arm_after_ms, idle_interval_ms, max_samples_per_slice, trace_depth);
    sampler::replace_settings(sampler_settings_of(arguments));
    if let Ok(mut kept) = SAMPLER_ARGUMENTS.lock() {
        *kept = Some(arguments);
    }
}

/// How recording samples slices on the main thread: "pending call" (3.13),
/// "pending call, eval breaker set" (3.11, 3.12), or a fallback taking the
/// GIL ("GIL, switch interval lowered" on 3.11, "GIL").
#[pyfunction]
fn main_thread_sampling_method() -> &'static str {
    sampler::main_thread_sampling_method()
}

/// Recording's samples so far in this process: pending calls queued, the
/// samples they took, and the samples taken with the GIL.
#[pyfunction]
fn recording_sample_counts() -> (u64, u64, u64) {
    sampler::recording_sample_counts()
}

/// How recording's samples are taken: "pending" (pending calls, the GIL
/// off the main thread), "read" (the watchdog reads the loop thread's
/// frames, falling back to those), or "validate" (reads, and checks each
/// against a pending call's stack of the same slice: see
/// `frame_read_counts`). Where frames cannot be read, one warning says why
/// and samples are taken as with "pending".
#[pyfunction]
fn set_sample_frames(py: Python<'_>, mode: &str) -> PyResult<()> {
    let mode = match mode {
        "pending" => sampler::FRAMES_OFF,
        "read" => sampler::FRAMES_READ,
        "validate" => sampler::FRAMES_VALIDATE,
        _ => {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "sample_frames must be 'pending', 'read' or 'validate', not {mode:?}"
            )))
        }
    };
    sampler::set_frame_reading(py, mode);
    Ok(())
}

/// Frame reads in this process: samples `read`, reads that `fell_back` to
/// another way, samples read then `dropped` (a code object in them never
/// learnt, or not the one read); when checking ("validate"), pending calls
/// whose stack `agreed` or `disagreed` with the one read earlier in the
/// slice (the thread may have moved on), and reads of the loop thread's own
/// frames at those calls that were `self_exact` or `self_inexact`.
#[pyfunction]
fn frame_read_counts() -> std::collections::HashMap<&'static str, u64> {
    sampler::frame_read_counts().into_iter().collect()
}

/// Reads the calling thread's frames as the watchdog reads the loop
/// thread's (process_vm_readv and the interpreter's layout) and returns
/// them as (filename, line, function), innermost first, with the stack the
/// interpreter's own API gives: for checking the layout. None where frames
/// cannot be read.
#[pyfunction]
#[allow(clippy::type_complexity)]
fn read_own_frames(
    py: Python<'_>,
    depth: usize,
) -> PyResult<Option<(Vec<(String, i32, String)>, Vec<(String, i32, String)>)>> {
    let version = py.version_info();
    let Ok(layout) = frame_reader::init((version.major, version.minor)) else { return Ok(None) };
    // SAFETY: we hold the GIL, so this thread's state is current.
    let thread_state = unsafe { pyo3::ffi::PyThreadState_Get() } as u64;
    let expected = stacks::capture_current(py, depth).map(stacks::frames_of).unwrap_or_default();
    let read = layout
        .read_stack(thread_state, depth + stacks::OWN_FRAME_MARGIN)
        .map_err(|error| pyo3::exceptions::PyOSError::new_err(format!("{error:?}")))?;
    let stack = stacks::intern_remote(py, &read.frames, depth).map(stacks::frames_of).unwrap_or_default();
    Ok(Some((stack, expected)))
}

/// Writes the trace out when SIGTERM's default action would kill the
/// process, then dies of it as before (see `sigterm`); returns whether it
/// was installed (SIGTERM had its default action).
#[pyfunction]
fn stop_recording_on_sigterm() -> bool {
    sigterm::install()
}

/// Marks the CPU sampler started or not (1.2.1's `_sampler_started` assigned).
#[pyfunction]
fn set_sampler_started(started: bool) {
    sampler::set_started(started);
}

/// The body of the `aiocop-cpu-sampler` thread: samples until
/// `stop_sampler()`, without the GIL.
#[pyfunction]
fn run_sampler(py: Python<'_>) {
    sampler::run(py);
}

/// Whether a watchdog thread should run (the monitor samples, or recording
/// does) and none does yet.
#[pyfunction]
fn watchdog_thread_needed() -> bool {
    sampler::watchdog_thread_needed()
}

#[pyfunction]
fn is_sampler_started() -> bool {
    sampler::is_started()
}

/// What start_sampler() was called with, the first time it started sampling:
/// (interval_ms, arm_after_ms, idle_interval_ms, max_samples_per_slice,
/// trace_depth); None before.
#[pyfunction]
fn sampler_settings() -> Option<SamplerArguments> {
    SAMPLER_ARGUMENTS.lock().ok().and_then(|arguments| *arguments)
}

type SamplerArguments = (f64, Option<f64>, Option<f64>, usize, usize);
static SAMPLER_ARGUMENTS: std::sync::Mutex<Option<SamplerArguments>> = std::sync::Mutex::new(None);

/// Publishes a slice starting now, on this thread, to the CPU sampler, as
/// every monitored callback does; returns its start (its id) on the
/// monitor's clock.
#[pyfunction]
fn sampler_slice_started() -> u64 {
    let start_ns = clock::now_ns();
    sampler::slice_started(start_ns);
    start_ns
}

/// Withdraws the slice that `sampler_slice_started()` published and returns
/// the stacks sampled during it, innermost frame first.
#[pyfunction]
fn sampler_slice_finished(py: Python<'_>, start_ns: u64) -> Vec<Vec<(String, i32, String)>> {
    sampler::slice_finished(py, start_ns).monitor.into_iter().map(stacks::frames_of).collect()
}

/// Feeds one audit event to the native audit hook, as CPython would: it is
/// recorded if it is a blocking event and this thread runs a monitored
/// callback.
#[pyfunction]
fn audit_event(event: &str, args: &Bound<'_, pyo3::types::PyTuple>) {
    if !slice::is_recording() {
        return;
    }
    if let Some(index) = aiocop_trace::events::event_index(event.as_bytes()) {
        slice::record(args.py(), index, args.as_ptr());
    }
}

/// Puts an allow-list in force: (identity, allowed event indices) per
/// entry, checked by `aiocop.core.allowlist`; an empty list turns it off.
#[pyfunction]
fn set_allowlist(entries: Vec<(String, Vec<u16>)>) -> PyResult<()> {
    allow::set(entries).map_err(pyo3::exceptions::PyValueError::new_err)
}

/// How many events each entry of the allow-list in force allowed.
#[pyfunction]
fn allowlist_fired() -> Vec<u64> {
    allow::fired()
}

#[pyfunction]
fn stop_sampler() {
    sampler::stop();
}

/// Forgets the blocking events recorded so far in this thread's slice.
#[pyfunction]
fn reset_blocking_events() {
    slice::reset_events();
}

/// The audited event table: (name, weight, source) with source one of
/// "native", "patched", "patched-before-3.13".
#[pyfunction]
fn blocking_events() -> Vec<(&'static str, i64, &'static str)> {
    use aiocop_trace::EventSource;
    aiocop_trace::BLOCKING_EVENTS
        .iter()
        .map(|e| {
            let source = match e.source {
                EventSource::Native => "native",
                EventSource::Patched => "patched",
                EventSource::PatchedBeforePy313 => "patched-before-3.13",
            };
            (e.name, e.weight, source)
        })
        .collect()
}

/// `short/path.py:line:function`, as in every trace and entry point.
#[pyfunction]
fn format_frame(filename: &str, line: i64, function: &str) -> String {
    aiocop_trace::frame::format_frame(filename, line, function)
}

/// The audit arguments as shown in `BlockingEventInfo.event`.
#[pyfunction]
fn format_audit_args(args: &Bound<'_, PyAny>) -> String {
    emit::format_args(args)
}

/// The caller's stack, innermost first, captured and interned as the audit
/// hook does it: (filename, line, function) per frame, and the stack's id.
#[pyfunction]
#[pyo3(signature = (depth = 20))]
fn capture_stack(py: Python<'_>, depth: usize) -> (Vec<(String, i32, String)>, Option<u32>) {
    let stack = stacks::capture_current(py, depth);
    (stack.map(stacks::frames_of).unwrap_or_default(), stack)
}

/// (distinct frames, distinct stacks) interned so far.
#[pyfunction]
fn interned_sizes() -> (usize, usize) {
    stacks::sizes()
}

// `start_recording`'s signature spells the default file mode out.
const _: () = assert!(trace_file::DEFAULT_FILE_MODE == 0o600);

/// Starts recording every monitored slice to `path` (`{pid}` expands to
/// the process id), a file created with the permission bits `file_mode`.
/// Raises OSError naming the path if it cannot be written.
#[pyfunction]
#[pyo3(signature = (path, *, label, flush_interval_s, max_buffered_slices, record_context, sample_after_ms, sample_interval_ms, aiocop_version, python_version, platform, host, argv, parent_pid, root_command, role, sys_path, redact = false, redact_keep_context = Vec::new(), file_mode = 0o600))]
#[allow(clippy::too_many_arguments)]
fn start_recording(
    py: Python<'_>,
    path: String,
    label: Option<String>,
    flush_interval_s: f64,
    max_buffered_slices: usize,
    record_context: bool,
    sample_after_ms: f64,
    sample_interval_ms: f64,
    aiocop_version: String,
    python_version: String,
    platform: String,
    host: String,
    argv: Vec<String>,
    parent_pid: u32,
    root_command: Vec<String>,
    role: String,
    sys_path: Vec<String>,
    redact: bool,
    redact_keep_context: Vec<String>,
    file_mode: u32,
) -> PyResult<String> {
    if file_mode & !0o777 != 0 {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "file_mode must be permission bits from 0o000 to 0o777, not {file_mode:#o}"
        )));
    }
    let flush_interval = flush_interval(flush_interval_s)?;
    for (name, ms) in [("sample_after_ms", sample_after_ms), ("sample_interval_ms", sample_interval_ms)] {
        if !(ms.is_finite() && ms >= 0.0) {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "{name} must be 0 or more milliseconds, not {ms}"
            )));
        }
    }
    let ns = |ms: f64| (ms * 1e6) as u64;
    let sampling = aiocop_trace::records::SamplingInfo {
        after_ns: ns(sample_after_ms),
        interval_ns: if sample_after_ms > 0.0 { ns(sample_interval_ms).max(1_000_000) } else { 0 },
    };
    let settings = recording::Settings {
        path_template: path,
        label,
        flush_interval,
        max_buffered_slices,
        record_context,
        file_mode,
        aiocop_version,
        python_version,
        platform,
        host,
        argv,
        process: aiocop_trace::records::ProcessInfo { parent_pid, root_command, role, sys_path },
        sampling,
        redaction: aiocop_trace::records::Redaction { redacted: redact, kept_context_keys: redact_keep_context },
    };
    let path = recording::start(settings).map_err(pyo3::exceptions::PyOSError::new_err)?;
    sampler::set_recording_sampling(py, sampling.after_ns, sampling.interval_ns);
    Ok(path)
}

/// The flush interval in range (the Python settings' rule, checked again
/// here so that no value can reach `Duration`'s panicking conversions).
fn flush_interval(seconds: f64) -> PyResult<std::time::Duration> {
    const RANGE_S: std::ops::RangeInclusive<f64> = 0.01..=3600.0;
    match std::time::Duration::try_from_secs_f64(seconds) {
        Ok(interval) if RANGE_S.contains(&seconds) => Ok(interval),
        _ => Err(pyo3::exceptions::PyValueError::new_err(format!(
            "flush_interval_s must be a number of seconds from 0.01 to 3600, not {seconds}"
        ))),
    }
}

/// Stops recording; returns what was written, or None if not recording.
#[pyfunction]
fn stop_recording(py: Python<'_>) -> PyResult<Option<Bound<'_, pyo3::types::PyDict>>> {
    let Some((path, outcome)) = recording::stop(py) else { return Ok(None) };
    sampler::set_recording_sampling(py, 0, 0);
    let summary = pyo3::types::PyDict::new(py);
    summary.set_item("path", path)?;
    summary.set_item("slices", outcome.slices)?;
    summary.set_item("events", outcome.events)?;
    summary.set_item("dropped", outcome.dropped_slices)?;
    summary.set_item("chunks", outcome.chunks)?;
    summary.set_item("bytes", outcome.bytes)?;
    summary.set_item("error", outcome.error)?;
    Ok(Some(summary))
}

#[pyfunction]
fn is_recording() -> bool {
    recording::is_active()
}

/// The path being recorded to, if any.
#[pyfunction]
fn recording_path() -> Option<String> {
    recording::current_path()
}

#[pyfunction]
fn before_fork() {
    recording::before_fork();
}

#[pyfunction]
fn after_fork_in_parent() {
    recording::after_fork_in_parent();
}

/// Returns the child's new trace path if the parent was recording.
#[pyfunction]
fn after_fork_in_child() -> Option<String> {
    sigterm::after_fork_in_child();
    what_ran::restart_thread_numbers();
    let path = recording::after_fork_in_child();
    sampler::after_fork_in_child();
    path
}

/// Whether every stock asyncio loop is monitored, not only those patched by
/// activate() (recording mode).
#[pyfunction]
fn set_monitor_all_loops(all: bool) {
    monitor::set_monitor_all_loops(all);
}

/// Gives the native side the `ContextVar` that holds a task's route (once).
#[pyfunction]
fn set_route_var(var: Bound<'_, PyAny>) -> PyResult<()> {
    routes::set_route_var(var)
}

/// Sets the current context's route (`GET /items/{item_id}`) and counts one
/// request routed in the running slice.
#[pyfunction]
fn set_route(route: Bound<'_, pyo3::types::PyString>) -> PyResult<()> {
    routes::set_route(route.as_any())
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(install_audit_hook, m)?)?;
    m.add_function(wrap_pyfunction!(configure, m)?)?;
    m.add_function(wrap_pyfunction!(set_allowlist, m)?)?;
    m.add_function(wrap_pyfunction!(allowlist_fired, m)?)?;
    m.add_function(wrap_pyfunction!(set_monitoring_active, m)?)?;
    m.add_function(wrap_pyfunction!(is_monitoring_active, m)?)?;
    m.add_function(wrap_pyfunction!(set_threshold_ns, m)?)?;
    m.add_function(wrap_pyfunction!(threshold_ns, m)?)?;
    m.add_function(wrap_pyfunction!(set_trace_depth, m)?)?;
    m.add_function(wrap_pyfunction!(trace_depth, m)?)?;
    m.add_function(wrap_pyfunction!(set_callback_lists, m)?)?;
    m.add_function(wrap_pyfunction!(exception_raised, m)?)?;
    m.add_function(wrap_pyfunction!(set_exception_raised, m)?)?;
    m.add_function(wrap_pyfunction!(sampler_settings, m)?)?;
    m.add_function(wrap_pyfunction!(sampler_slice_started, m)?)?;
    m.add_function(wrap_pyfunction!(sampler_slice_finished, m)?)?;
    m.add_function(wrap_pyfunction!(audit_event, m)?)?;
    m.add_function(wrap_pyfunction!(install_handle_run, m)?)?;
    m.add_function(wrap_pyfunction!(set_loop_monitored, m)?)?;
    m.add_function(wrap_pyfunction!(start_sampler, m)?)?;
    m.add_function(wrap_pyfunction!(run_sampler, m)?)?;
    m.add_function(wrap_pyfunction!(replace_sampler_settings, m)?)?;
    m.add_function(wrap_pyfunction!(set_sampler_started, m)?)?;
    m.add_function(wrap_pyfunction!(stop_recording_on_sigterm, m)?)?;
    m.add_function(wrap_pyfunction!(main_thread_sampling_method, m)?)?;
    m.add_function(wrap_pyfunction!(recording_sample_counts, m)?)?;
    m.add_function(wrap_pyfunction!(set_sample_frames, m)?)?;
    m.add_function(wrap_pyfunction!(frame_read_counts, m)?)?;
    m.add_function(wrap_pyfunction!(read_own_frames, m)?)?;
    m.add_function(wrap_pyfunction!(watchdog_thread_needed, m)?)?;
    m.add_function(wrap_pyfunction!(is_sampler_started, m)?)?;
    m.add_function(wrap_pyfunction!(start_recording, m)?)?;
    m.add_function(wrap_pyfunction!(stop_recording, m)?)?;
    m.add_function(wrap_pyfunction!(is_recording, m)?)?;
    m.add_function(wrap_pyfunction!(recording_path, m)?)?;
    m.add_function(wrap_pyfunction!(before_fork, m)?)?;
    m.add_function(wrap_pyfunction!(after_fork_in_parent, m)?)?;
    m.add_function(wrap_pyfunction!(after_fork_in_child, m)?)?;
    m.add_function(wrap_pyfunction!(set_monitor_all_loops, m)?)?;
    m.add_function(wrap_pyfunction!(set_route_var, m)?)?;
    m.add_function(wrap_pyfunction!(set_route, m)?)?;
    m.add_function(wrap_pyfunction!(stop_sampler, m)?)?;
    m.add_function(wrap_pyfunction!(reset_blocking_events, m)?)?;
    m.add_function(wrap_pyfunction!(blocking_events, m)?)?;
    m.add_function(wrap_pyfunction!(format_frame, m)?)?;
    m.add_function(wrap_pyfunction!(format_audit_args, m)?)?;
    m.add_function(wrap_pyfunction!(capture_stack, m)?)?;
    m.add_function(wrap_pyfunction!(interned_sizes, m)?)?;
    m.add_class::<audited::AuditedFunction>()?;
    m.add_function(wrap_pyfunction!(schedule_patch, m)?)?;
    m.add_function(wrap_pyfunction!(time_selector, m)?)?;
    m.add_function(wrap_pyfunction!(untime_selector, m)?)?;
    m.add_function(wrap_pyfunction!(stamp_call_soon, m)?)?;
    m.add_function(wrap_pyfunction!(unstamp_call_soon, m)?)?;
    m.add_function(wrap_pyfunction!(watch_eager_tasks, m)?)?;
    m.add_class::<emit::FormattedOnRead>()?;
    m.add_class::<emit::PendingReport>()?;
    m.add_class::<monitor::ScheduleTarget>()?;
    m.add_class::<reading::OpenTrace>()?;
    m.add_class::<reading::SliceIter>()?;
    m.add_class::<reading::ColumnIter>()?;
    m.add_class::<reading::Header>()?;
    m.add_class::<reading::Footer>()?;
    m.add_class::<reading::Slice>()?;
    m.add_class::<reading::Event>()?;
    m.add_class::<reading::Frame>()?;
    m.add("MAX_EVENTS_PER_SLICE", slice::MAX_EVENTS_PER_SLICE)?;
    // run_monitored(callback, *args): what a patched loop schedules in place of each callback.
    m.add("run_monitored", monitor::run_monitored_function(m.py())?.clone_ref(m.py()))?;
    Ok(())
}
