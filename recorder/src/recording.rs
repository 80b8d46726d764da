//! Recording: every monitored slice, with its blocking events, into a trace
//! file (format and writer: the `aiocop-trace` crate).
//!
//! The hot path (`record_slice`, called after every monitored callback)
//! builds a small `PendingSlice` (ids and numbers, named by `what_ran`;
//! strings only for the arguments of blocking events) and appends it to a
//! bounded buffer under a lock held for a push; the few slices with more to
//! say (blocking events, samples, context) append a `SliceDetail` to a
//! second vector of the buffer. Nothing the hot path allocates per slice is
//! freed by the writer: memory one thread allocates and another frees misses
//! the allocator's per-thread caches, which cost more than the rest of a
//! slice.
//!
//! A background thread wakes every flush interval, swaps the buffer with
//! the one it wrote last time, emptied (in a steady state neither side
//! allocates), turns it into chunks (defining the strings, frames and
//! stacks the file has not seen yet), compresses and writes them. If the
//! writer falls behind and the buffer is full, slices are dropped and
//! counted, never waited for.
//!
//! Task names: a slice carries its task's token, not its name. The first
//! time a task runs in a recording, `what_ran` announces its name with the
//! token; the writer defines the name in the file at the task's first slice
//! and forgets it when `what_ran` forgets the task (dead, or past its
//! bound). So neither side keeps a table of every name a server ever made.
//!
//! Locks: the buffer lock and the stack registry lock are held for short,
//! bounded work only, and never while waiting for the GIL; before a fork
//! both are taken and released after it on both sides, so the child never
//! inherits one locked by a thread that does not exist there.

use crate::stacks::{self, StackId};
use crate::{clock, config, trace_file, what_ran};
use aiocop_trace::records::{
    Appended, Chunk, EventRecord, EventSpec, Frame, FrameName, ProcessInfo, Redaction, SamplingInfo, SliceRecord,
    TraceFooter, TraceHeader,
};
use aiocop_trace::writer::TraceWriter;
use aiocop_trace::BLOCKING_EVENTS;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use rustc_hash::FxHashMap;
use std::cell::RefCell;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Whether slices are being recorded; read on every slice.
static ACTIVE: AtomicBool = AtomicBool::new(false);

pub fn is_active() -> bool {
    ACTIVE.load(Relaxed)
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

/// A slice as the hot path leaves it for the writer: 32 bytes; the rest,
/// for the slices that have more, in `Buffer::details`.
#[derive(Clone, Copy)]
struct PendingSlice {
    start_ns: u64,
    duration_ns: u64,
    what: u32,
    /// The task's token (see `announce_task`), or `NO_TASK`.
    task: u32,
    thread: u32,
    exceeded: bool,
    /// Its detail is the next one in `Buffer::details`.
    has_detail: bool,
}

/// The token of no task: the slice ran a plain callback.
pub const NO_TASK: u32 = u32::MAX;

impl PendingSlice {
    fn new(facts: &SliceFacts<'_, '_>, described: &what_ran::Described, has_detail: bool) -> Self {
        Self {
            start_ns: facts.start_ns,
            duration_ns: facts.duration_ns,
            what: described.what,
            task: described.task,
            thread: described.thread,
            exceeded: facts.exceeded,
            has_detail,
        }
    }
}

/// What only slices that did blocking I/O, were sampled, overran or carry
/// context have.
#[derive(Default)]
struct SliceDetail {
    /// Inline for the usual one event, so such a slice costs one allocation.
    events: smallvec::SmallVec<[PendingEvent; 1]>,
    dropped_events: u32,
    score: i64,
    samples: Vec<StackId>,
    context: Vec<(String, String)>,
}

struct PendingEvent {
    event: u16,
    /// A shared string id.
    args: u32,
    offset_ns: u64,
    stack: Option<StackId>,
}

#[derive(Default)]
struct Buffer {
    slices: Vec<PendingSlice>,
    /// The details of the slices with `has_detail`, in the same order.
    details: Vec<SliceDetail>,
    /// Tasks named since the last flush, by token; each is announced before
    /// its first slice is pushed, to each recording once.
    announced: Vec<(u32, Arc<str>)>,
    /// Tokens of tasks the recorder forgot (dead, or past its bound): the
    /// writer may forget their names once this flush is written.
    forgotten: Vec<u32>,
    dropped: u64,
    stop: bool,
}

/// Slices the buffer has room for from the start (8 MiB of address space,
/// resident only as slices fill it), so that the first flush interval of a
/// recording does not grow it on the hot path: a loop makes up to about
/// 400,000 slices a second, and each doubling copies the buffer.
const INITIAL_BUFFER_SLICES: usize = 1 << 18;

static BUFFER: Mutex<Buffer> = Mutex::new(Buffer {
    slices: Vec::new(),
    details: Vec::new(),
    announced: Vec::new(),
    forgotten: Vec::new(),
    dropped: 0,
    stop: false,
});

/// Announced task names a flush keeps at most (a writer stalled while a
/// program makes tasks); past it, their slices are recorded without a name.
const MAX_ANNOUNCED_PER_FLUSH: usize = 1 << 20;

/// Tells the writer the name of the task with `token`, before its first
/// slice of the current recording.
pub fn announce_task(token: u32, name: Arc<str>) {
    if let Ok(mut buffer) = BUFFER.lock() {
        if buffer.announced.len() < MAX_ANNOUNCED_PER_FLUSH {
            buffer.announced.push((token, name));
        }
    }
}

/// Tells the writer that no slice will name these tasks any more.
pub fn forget_tasks(tokens: impl Iterator<Item = u32>) {
    if let Ok(mut buffer) = BUFFER.lock() {
        if buffer.forgotten.len() < MAX_ANNOUNCED_PER_FLUSH {
            buffer.forgotten.extend(tokens);
        }
    }
}

/// Counts recordings started in this process (0: none yet): a task
/// announced to an earlier one is announced again.
static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub fn generation() -> u64 {
    GENERATION.load(Relaxed)
}

static WAKE_WRITER: Condvar = Condvar::new();
static MAX_BUFFERED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1 << 20);

/// Strings the hot path refers to by id (what ran, task names, argument
/// summaries): it assigns the ids, the writer defines them in the file. A
/// repeated string costs a hash look-up and no allocation, and is never
/// freed by another thread than the one that allocated it.
#[derive(Default)]
struct SharedStrings {
    ids: FxHashMap<Box<str>, u32>,
    values: Vec<Arc<str>>,
}

static SHARED_STRINGS: Mutex<Option<SharedStrings>> = Mutex::new(None);

/// Distinct strings kept at most (argument summaries of programs that open
/// a new path every time); later ones are all recorded as `OVERFLOW_TEXT`.
const MAX_SHARED_STRINGS: usize = 500_000;
const OVERFLOW_TEXT: &str = "<more distinct values than aiocop keeps>";

pub fn shared_string_id(text: &str) -> u32 {
    let Ok(mut guard) = SHARED_STRINGS.lock() else { return 0 };
    let shared = guard.get_or_insert_with(SharedStrings::default);
    if let Some(&id) = shared.ids.get(text) {
        return id;
    }
    let text = if shared.values.len() >= MAX_SHARED_STRINGS { OVERFLOW_TEXT } else { text };
    if let Some(&id) = shared.ids.get(text) {
        return id;
    }
    let id = shared.values.len() as u32;
    shared.values.push(Arc::from(text));
    shared.ids.insert(text.into(), id);
    id
}

/// The shared strings from `first` on, for the writer.
fn shared_strings_since(first: usize) -> Vec<Arc<str>> {
    SHARED_STRINGS
        .lock()
        .ok()
        .and_then(|guard| guard.as_ref().map(|shared| shared.values.get(first..).unwrap_or_default().to_vec()))
        .unwrap_or_default()
}

struct RunningRecorder {
    settings: Settings,
    /// The file being written (`<path>.<pid>` if moved aside).
    path: String,
    /// Why, if so: said once, through the logger, once started.
    moved_aside: Option<String>,
    /// What the writer thread reports when it ends.
    done: mpsc::Receiver<WriterOutcome>,
    progress: Arc<WriterProgress>,
}

/// What a writer has written so far, for a stop that gives up on it.
#[derive(Default)]
struct WriterProgress {
    /// The stop gave up waiting: the writer must not touch the buffer, the
    /// logger or the recording state again.
    abandoned: AtomicBool,
    slices: AtomicU64,
    events: AtomicU64,
    dropped_slices: AtomicU64,
    /// Slices taken from the buffer and not written yet.
    in_flight: AtomicU64,
}

/// How long stopping (at exit, on SIGTERM) waits for the writer to write
/// what is buffered and the footer; past it, a writer that cannot make
/// progress (a FIFO whose reader stopped reading, a hung file system) is
/// given up on, and what it did not write is counted and logged once.
pub const STOP_WAIT: Duration = Duration::from_secs(2);

static RECORDER: Mutex<Option<RunningRecorder>> = Mutex::new(None);

/// What the monitored callback was, for `SliceRecord::what`.
pub enum Ran<'a, 'py> {
    /// A stock asyncio handle: its `_callback` ran.
    Handle(&'a Bound<'py, PyAny>),
    /// The callback itself (uvloop).
    Callback(&'a Bound<'py, PyAny>),
}

/// The slice facts `record_slice` needs, borrowed from the monitor.
pub struct SliceFacts<'a, 'py> {
    pub ran: Ran<'a, 'py>,
    pub start_ns: u64,
    pub duration_ns: u64,
    pub exceeded: bool,
    pub slice: &'a crate::slice::Slice,
    pub samples: &'a [StackId],
    pub context: Option<&'a Bound<'py, PyDict>>,
}

/// Appends one slice to the buffer. Never raises, never blocks on the writer.
///
/// Inlined into the monitor, so that the facts of the common slice (no
/// events, no samples, no context) are never copied.
#[inline]
pub fn record_slice(py: Python<'_>, facts: SliceFacts<'_, '_>) {
    let interesting = facts.slice.total_events > 0 || facts.exceeded;
    if interesting || !facts.samples.is_empty() || facts.context.is_some() {
        return record_detailed_slice(py, facts);
    }
    let described = what_ran::describe(py, &facts.ran);
    let Some(mut buffer) = buffer_with_room() else { return };
    buffer.slices.push(PendingSlice::new(&facts, &described, false));
    wake_writer_if_half_full(&buffer);
}

/// `record_slice` for a slice with blocking events, samples or context.
#[inline(never)]
fn record_detailed_slice(py: Python<'_>, facts: SliceFacts<'_, '_>) {
    let described = what_ran::describe(py, &facts.ran);
    let events = facts
        .slice
        .events
        .iter()
        .map(|event| PendingEvent {
            event: event.event_index,
            args: shared_string_id(&crate::redact::event_args(crate::emit::format_args(event.args.bind(py)))),
            offset_ns: event.at_ns.saturating_sub(facts.start_ns),
            stack: event.stack,
        })
        .collect();
    let context = match (facts.context, RECORD_CONTEXT.load(Relaxed)) {
        (Some(context), true) => crate::redact::context(
            context.iter().filter_map(|(k, v)| Some((k.str().ok()?.to_string(), v.str().ok()?.to_string()))).collect(),
        ),
        _ => Vec::new(),
    };
    let detail = SliceDetail {
        events,
        dropped_events: facts.slice.dropped_events(),
        score: facts.slice.score,
        samples: facts.samples.to_vec(),
        context,
    };
    let Some(mut buffer) = buffer_with_room() else { return };
    buffer.slices.push(PendingSlice::new(&facts, &described, true));
    buffer.details.push(detail);
    wake_writer_if_half_full(&buffer);
}

/// The buffer, locked, if it has room for one more slice; if not, the
/// slice is counted as dropped.
fn buffer_with_room() -> Option<MutexGuard<'static, Buffer>> {
    let mut buffer = BUFFER.lock().ok()?;
    if buffer.slices.len() >= MAX_BUFFERED.load(Relaxed) {
        buffer.dropped += 1;
        return None;
    }
    Some(buffer)
}

/// Half full before the flush interval: wake the writer early.
fn wake_writer_if_half_full(buffer: &Buffer) {
    if buffer.slices.len() == wake_writer_at(MAX_BUFFERED.load(Relaxed)) {
        WAKE_WRITER.notify_one();
    }
}

/// The writer is woken before its interval when the buffer is half full.
fn wake_writer_at(max_buffered: usize) -> usize {
    (max_buffered / 2).max(1)
}

static RECORD_CONTEXT: AtomicBool = AtomicBool::new(false);

/// Expands `{pid}` in a path template.
pub fn expand_path(template: &str, pid: u32) -> String {
    template.replace("{pid}", &pid.to_string())
}

/// Starts recording to `settings.path_template` (with `{pid}` expanded).
/// Fails, recording nothing, if the file cannot be created or written.
pub fn start(settings: Settings) -> Result<String, String> {
    let mut recorder = RECORDER.lock().map_err(|_| "aiocop recorder state is poisoned".to_owned())?;
    if recorder.is_some() {
        return Err("aiocop is already recording; call stop_recording() first".to_owned());
    }
    let mut running = spawn_writer(settings)?;
    let path = running.path.clone();
    let moved_aside = running.moved_aside.take();
    *recorder = Some(running);
    drop(recorder); // a logging handler may ask for the recording's path
    if let Some(notice) = moved_aside {
        log_warning(&notice);
    }
    Ok(path)
}

fn spawn_writer(settings: Settings) -> Result<RunningRecorder, String> {
    let path = expand_path(&settings.path_template, std::process::id());
    let created = trace_file::create_published(|| trace_file::create_locked(&path, settings.file_mode))
        .map_err(|e| format!("cannot record to '{path}': {e}"))?;
    let moved_aside = created.moved_aside.map(|reason| {
        format!("aiocop: '{path}' {reason}; this process ({}) records to '{}'", std::process::id(), created.path)
    });
    let base_ns = clock::now_ns();
    let header = trace_header(&settings, base_ns);
    let path = created.path.clone();
    let mut output =
        Output { path: created.path, header, file: Some(created.file), created: created.created, writer: None };
    if !output.created {
        // A FIFO or a device: its header is written now, still without
        // blocking, so that one that cannot take it (/dev/full, a full
        // FIFO) fails here; then the writer thread's writes may block.
        let writer = output.writer().map_err(|e| format!("cannot record to '{path}': {e}"))?;
        trace_file::make_blocking(writer.get_ref()).map_err(|e| format!("cannot record to '{path}': {e}"))?;
    }
    let max_buffered = settings.max_buffered_slices.max(1);
    if let Ok(mut buffer) = BUFFER.lock() {
        let slices = Vec::with_capacity(INITIAL_BUFFER_SLICES.min(max_buffered));
        *buffer = Buffer { slices, ..Buffer::default() };
    }
    // After the buffer is emptied: names announced from here on are this recording's.
    GENERATION.fetch_add(1, Relaxed);
    MAX_BUFFERED.store(max_buffered, Relaxed);
    RECORD_CONTEXT.store(settings.record_context, Relaxed);
    crate::redact::start(&settings.redaction);
    let flush_interval = settings.flush_interval;
    let progress = Arc::new(WriterProgress::default());
    let writer_progress = progress.clone();
    let (report_done, done) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("aiocop-recorder".into())
        .spawn(move || {
            let outcome = write_loop(output, flush_interval, base_ns, &writer_progress);
            let _ = report_done.send(outcome);
        })
        .map_err(|e| format!("cannot start the aiocop recorder thread: {e}"))?;
    ACTIVE.store(true, Relaxed);
    Ok(RunningRecorder { settings, path, moved_aside, done, progress })
}

/// Where the writer thread writes: the trace file, opened at start, its
/// header written when there is first something to write.
struct Output {
    path: String,
    header: TraceHeader,
    /// The file until the writer has it.
    file: Option<File>,
    /// A regular file this recording created: removed if nothing is written.
    created: bool,
    writer: Option<TraceWriter<File>>,
}

impl Output {
    fn writer(&mut self) -> Result<&mut TraceWriter<File>, String> {
        if let Some(file) = self.file.take() {
            self.writer = Some(TraceWriter::new(file, &self.header).map_err(|e| e.to_string())?);
        }
        self.writer.as_mut().ok_or_else(|| "the trace file is closed".to_owned())
    }

    fn fd(&self) -> i32 {
        let file = self.file.as_ref().or(self.writer.as_ref().map(|w| w.get_ref()));
        file.map_or(-1, |f| f.as_raw_fd())
    }
}

impl Drop for Output {
    /// The descriptor is unpublished before the file closes, so that the
    /// fork handler never closes a number the program reuses.
    fn drop(&mut self) {
        trace_file::unpublish(self.fd());
    }
}

/// Logs a warning through the `aiocop` logger, from any thread.
fn log_warning(message: &str) {
    // SAFETY: only reads the interpreter's state.
    if unsafe { ffi::Py_IsInitialized() } != 0 {
        Python::attach(|py| config::log_warning(py, message));
    }
}

fn trace_header(settings: &Settings, start_monotonic_ns: u64) -> TraceHeader {
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

/// Slices per chunk at most, so that a chunk stays well under the format's
/// size limits and readers can spread a big trace over threads.
const MAX_SLICES_PER_CHUNK: usize = 65_536;

/// What the writer thread reports when it ends.
#[derive(Default, Clone)]
pub struct WriterOutcome {
    pub slices: u64,
    pub events: u64,
    pub dropped_slices: u64,
    pub chunks: u64,
    pub bytes: u64,
    pub error: Option<String>,
    /// The file written, if one was: none when there was nothing to write.
    pub path: Option<String>,
    /// The stop gave up waiting for the writer (see [`STOP_WAIT`]).
    pub gave_up: bool,
}

/// The writer thread: every flush interval (or at stop), turns the buffer
/// into a chunk and writes it; at stop, writes the footer.
fn write_loop(mut output: Output, flush_interval: Duration, base_ns: u64, progress: &WriterProgress) -> WriterOutcome {
    crate::signals::block_in_this_thread();
    let mut file_state = FileState::new(base_ns);
    let mut outcome = WriterOutcome::default();
    // The writer's half of a double buffer: swapped with the hot path's
    // every interval, written, emptied, so that in a steady state neither
    // side allocates.
    let mut slices: Vec<PendingSlice> = Vec::new();
    let mut details: Vec<SliceDetail> = Vec::new();
    loop {
        let (dropped, stop, announced, forgotten) = {
            let Ok(buffer) = BUFFER.lock() else { break };
            let (mut buffer, _) = WAKE_WRITER
                .wait_timeout_while(buffer, flush_interval, |b| {
                    !b.stop && b.slices.len() < wake_writer_at(MAX_BUFFERED.load(Relaxed))
                })
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if progress.abandoned.load(Relaxed) {
                return outcome; // the buffer may be a newer recording's
            }
            progress.in_flight.store(buffer.slices.len() as u64, Relaxed);
            std::mem::swap(&mut buffer.slices, &mut slices);
            std::mem::swap(&mut buffer.details, &mut details);
            let announced = std::mem::take(&mut buffer.announced);
            let forgotten = std::mem::take(&mut buffer.forgotten);
            (std::mem::take(&mut buffer.dropped), buffer.stop, announced, forgotten)
        };
        outcome.dropped_slices += dropped;
        progress.dropped_slices.store(outcome.dropped_slices, Relaxed);
        file_state.tasks.extend(announced.into_iter().map(|(token, name)| (token, (name, None))));
        let (slices_used, details_used) = (slices.len(), details.len());
        let mut parts = slices.chunks(MAX_SLICES_PER_CHUNK).peekable();
        let mut part_details = details.drain(..);
        let mut dropped = Some(dropped).filter(|&d| d > 0);
        while parts.peek().is_some() || dropped.is_some() {
            let part = parts.next().unwrap_or_default();
            let chunk = file_state.chunk(part, &mut part_details, dropped.take().unwrap_or(0));
            let written = output.writer().and_then(|writer| writer.write_chunk(&chunk).map_err(|e| e.to_string()));
            if progress.abandoned.load(Relaxed) {
                return outcome; // the stop has counted this chunk as not written
            }
            if let Err(error) = written {
                return fail(outcome, &output.path, &error);
            }
            outcome.slices += chunk.slices.len() as u64;
            outcome.events += chunk.slices.iter().map(|s| s.events.len() as u64).sum::<u64>();
            progress.record_written(&outcome, chunk.slices.len() as u64);
        }
        drop(part_details);
        // After the slices of this flush: a task is forgotten after its last slice.
        for token in forgotten {
            file_state.tasks.remove(&token);
        }
        empty_for_reuse(&mut slices, slices_used);
        empty_for_reuse(&mut details, details_used);
        if stop {
            break;
        }
    }
    if output.writer.is_none() && output.created {
        if let Some(file) = &output.file {
            trace_file::remove_unused(file, &output.path);
        }
        return outcome; // nothing was recorded: no file
    }
    // A FIFO or a device gets a whole (empty) trace even so.
    let writer = match output.writer() {
        Ok(_) => output.writer.take().expect("opened above"),
        Err(error) => return fail(outcome, &output.path, &error),
    };
    outcome.path = Some(output.path.clone());
    outcome.chunks = writer.chunks_written();
    let footer = TraceFooter {
        slices: outcome.slices,
        events: outcome.events,
        dropped_slices: outcome.dropped_slices,
        chunks: outcome.chunks,
        end_offset_ns: clock::now_ns().saturating_sub(base_ns),
    };
    outcome.bytes = writer.bytes_written();
    let fd = writer.get_ref().as_raw_fd();
    let finished = writer.finish(&footer);
    trace_file::unpublish(fd); // before the file closes, at the end of this function
    if progress.abandoned.load(Relaxed) {
        return outcome;
    }
    match finished {
        Ok(file) => {
            outcome.bytes = file.metadata().map_or(outcome.bytes, |m| m.len());
            outcome
        }
        Err(error) => fail(outcome, &output.path, &error.to_string()),
    }
}

impl WriterProgress {
    fn record_written(&self, outcome: &WriterOutcome, chunk_slices: u64) {
        self.slices.store(outcome.slices, Relaxed);
        self.events.store(outcome.events, Relaxed);
        self.in_flight.fetch_sub(chunk_slices.min(self.in_flight.load(Relaxed)), Relaxed);
    }
}

/// Empties a vector the writer has written, keeping its memory for the next
/// interval unless a burst left it much larger than the last interval used.
fn empty_for_reuse<T>(vector: &mut Vec<T>, used: usize) {
    let needed = used.max(INITIAL_BUFFER_SLICES);
    vector.clear();
    if vector.capacity() > 4 * needed {
        vector.shrink_to(needed);
    }
}

/// A write failed (disk full, ...): stop recording, log once, keep what was
/// written readable.
fn fail(mut outcome: WriterOutcome, path: &str, error: &str) -> WriterOutcome {
    ACTIVE.store(false, Relaxed);
    let message = format!("aiocop stopped recording to '{path}': {error}; the trace is readable up to this point");
    log_warning(&message);
    outcome.error = Some(message);
    outcome.path = Some(path.to_owned());
    outcome
}

/// Distinct strings the writer remembers, to define each once per file;
/// past it (context values recorded with `record_context`, unique per
/// request), a new string is defined again at each use, so that the
/// writer's memory stays bounded.
const MAX_REMEMBERED_STRINGS: usize = 1_000_000;

/// The per-file state of the writer: which ids the file defines already.
struct FileState {
    /// File string ids of the strings defined so far (task names aside), up
    /// to `max_remembered`.
    strings: FxHashMap<Box<str>, u32>,
    max_remembered: usize,
    next_string_id: u32,
    /// Names of the tasks slices may still name, by token, with their file
    /// string id once defined. Task names are not deduplicated: a server
    /// names millions of tasks, each once.
    tasks: FxHashMap<u32, (Arc<str>, Option<u32>)>,
    defined_frames: Vec<bool>,
    defined_stacks: Vec<bool>,
    /// File string id of each shared string id, u32::MAX until defined.
    file_ids: Vec<u32>,
    /// The shared strings seen so far.
    shared: Vec<Arc<str>>,
    /// The monitor clock at the start of the recording: chunk bases count from it.
    base_ns: u64,
}

impl FileState {
    fn new(base_ns: u64) -> Self {
        Self {
            strings: FxHashMap::default(),
            max_remembered: MAX_REMEMBERED_STRINGS,
            next_string_id: 0,
            tasks: FxHashMap::default(),
            defined_frames: Vec::new(),
            defined_stacks: Vec::new(),
            file_ids: Vec::new(),
            shared: Vec::new(),
            base_ns,
        }
    }

    /// The file string id of `text`, defining it in `chunk` if the file has
    /// not yet (or no longer remembers it).
    fn string(&mut self, chunk: &mut Chunk, text: &str) -> u32 {
        if let Some(&id) = self.strings.get(text) {
            return id;
        }
        let id = self.define_string(chunk, text);
        if self.strings.len() < self.max_remembered {
            self.strings.insert(text.into(), id);
        }
        id
    }

    /// Defines `text` in `chunk` under a new file string id.
    fn define_string(&mut self, chunk: &mut Chunk, text: &str) -> u32 {
        let id = self.next_string_id;
        self.next_string_id += 1;
        chunk.strings.push((id, text.to_owned()));
        id
    }

    /// The file string id of the name of the task with `token`, defining it
    /// in `chunk` at its first slice; `None` for no task or an unknown one.
    fn task(&mut self, chunk: &mut Chunk, token: u32) -> Option<u32> {
        let (name, id) = self.tasks.get_mut(&token)?;
        if let Some(id) = id {
            return Some(*id);
        }
        let name = name.clone();
        let new_id = self.define_string(chunk, &name);
        self.tasks.get_mut(&token)?.1 = Some(new_id);
        Some(new_id)
    }

    /// A chunk of `slices`, taking their details from `details`.
    fn chunk(
        &mut self,
        slices: &[PendingSlice],
        details: &mut impl Iterator<Item = SliceDetail>,
        dropped: u64,
    ) -> Chunk {
        let mut chunk = Chunk { dropped_slices: dropped, ..Chunk::default() };
        let with_detail = slices.iter().filter(|s| s.has_detail).count();
        let mut details: Vec<SliceDetail> = details.take(with_detail).collect();
        self.define_stacks(&mut chunk, &details);
        let mut details = details.drain(..);
        let new_shared = shared_strings_since(self.shared.len());
        self.shared.extend(new_shared);
        chunk.base_offset_ns = slices.first().map_or(0, |s| s.start_ns.saturating_sub(self.base_ns));
        let mut previous = slices.first().map_or(0, |s| s.start_ns);
        for slice in slices {
            let what = self.shared(&mut chunk, slice.what);
            let mut record = SliceRecord {
                start_delta_ns: slice.start_ns.saturating_sub(previous),
                duration_ns: slice.duration_ns,
                what,
                task: self.task(&mut chunk, slice.task),
                thread: slice.thread,
                exceeded: slice.exceeded,
                ..SliceRecord::default()
            };
            if let Some(detail) = slice.has_detail.then(|| details.next()).flatten() {
                self.add_detail(&mut chunk, &mut record, detail);
            }
            chunk.slices.push(record);
            previous = slice.start_ns;
        }
        chunk
    }

    fn add_detail(&mut self, chunk: &mut Chunk, record: &mut SliceRecord, detail: SliceDetail) {
        record.events = detail
            .events
            .iter()
            .map(|e| EventRecord {
                event: e.event,
                args: self.shared(chunk, e.args),
                offset_ns: e.offset_ns,
                stack: e.stack.unwrap_or(u32::MAX),
            })
            .collect();
        record.context = detail.context.iter().map(|(k, v)| (self.string(chunk, k), self.string(chunk, v))).collect();
        record.dropped_events = detail.dropped_events;
        record.score = detail.score;
        record.samples = detail.samples;
    }

    /// The file string id of a shared string id, defining it in `chunk` first.
    fn shared(&mut self, chunk: &mut Chunk, shared_id: u32) -> u32 {
        if let Some(&id) = self.file_ids.get(shared_id as usize).filter(|&&id| id != u32::MAX) {
            return id;
        }
        let text = self.shared.get(shared_id as usize).cloned();
        let id = self.string(chunk, text.as_deref().unwrap_or("?"));
        if self.file_ids.len() <= shared_id as usize {
            self.file_ids.resize(shared_id as usize + 1, u32::MAX);
        }
        self.file_ids[shared_id as usize] = id;
        id
    }

    /// Defines every stack (and its frames) the slices use that the file
    /// does not define yet, reading the registry under its lock once.
    fn define_stacks(&mut self, chunk: &mut Chunk, details: &[SliceDetail]) {
        let mut wanted: Vec<StackId> = details
            .iter()
            .flat_map(|d| d.events.iter().filter_map(|e| e.stack).chain(d.samples.iter().copied()))
            .filter(|&id| !self.defined_stacks.get(id as usize).copied().unwrap_or(false))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        if wanted.is_empty() {
            return;
        }
        let defined_frames = &self.defined_frames;
        let (stacks, frames) =
            stacks::export(&wanted, |frame| defined_frames.get(frame as usize).copied().unwrap_or(false));
        for (id, exported) in frames {
            let file = self.string(chunk, &exported.filename);
            let function = self.string(chunk, &exported.function);
            chunk.frames.push((id, Frame { file, line: exported.line, function }));
            let module = self.string(chunk, &exported.name.module);
            let qualname = self.string(chunk, &exported.name.qualname);
            chunk.frame_names.push((id, FrameName { module, qualname }));
            mark(&mut self.defined_frames, id);
        }
        for (id, frames) in stacks {
            chunk.stacks.push((id, frames));
            mark(&mut self.defined_stacks, id);
        }
    }
}

fn mark(defined: &mut Vec<bool>, id: u32) {
    if defined.len() <= id as usize {
        defined.resize(id as usize + 1, false);
    }
    defined[id as usize] = true;
}

/// Stops recording: the writer writes what is buffered and the footer.
/// Returns what was written, or None if not recording.
pub fn stop(py: Python<'_>) -> Option<(String, WriterOutcome)> {
    // The writer may need the GIL to log an error: wait without holding it.
    let stopped = py.detach(stop_without_the_gil);
    if let Some(message) = stopped.as_ref().filter(|(_, outcome)| outcome.gave_up).and_then(|(_, o)| o.error.as_ref()) {
        config::log_warning(py, message);
    }
    stopped
}

/// Held for the whole of a stop, so that a second stopper (the SIGTERM
/// waiter, while the program's exit handler stops) returns only once the
/// file is written: it may then end the process.
static STOPPING: Mutex<()> = Mutex::new(());

/// [`stop`], from a thread that does not hold the GIL.
pub fn stop_without_the_gil() -> Option<(String, WriterOutcome)> {
    let _stopping = STOPPING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let running = RECORDER.lock().ok()?.take()?;
    ACTIVE.store(false, Relaxed);
    if let Ok(mut buffer) = BUFFER.lock() {
        buffer.stop = true;
    }
    WAKE_WRITER.notify_all();
    let outcome = match running.done.recv_timeout(STOP_WAIT) {
        Ok(outcome) => outcome,
        Err(mpsc::RecvTimeoutError::Timeout) => give_up_on_writer(&running),
        Err(mpsc::RecvTimeoutError::Disconnected) => WriterOutcome::default(),
    };
    Some((outcome.path.clone().unwrap_or(running.path), outcome))
}

/// The writer did not finish within [`STOP_WAIT`]: leave it blocked (the
/// process may now exit), and count what it has not written.
fn give_up_on_writer(running: &RunningRecorder) -> WriterOutcome {
    let progress = &running.progress;
    let buffered = match BUFFER.lock() {
        Ok(mut buffer) => {
            // Under the buffer's lock, so that the writer never takes a
            // newer recording's slices once it wakes.
            progress.abandoned.store(true, Relaxed);
            let buffered = buffer.slices.len() as u64 + std::mem::take(&mut buffer.dropped);
            buffer.slices.clear();
            buffer.details.clear();
            buffered
        }
        Err(_) => {
            progress.abandoned.store(true, Relaxed);
            0
        }
    };
    let not_written = buffered + progress.in_flight.load(Relaxed);
    let path = &running.path;
    let wait_s = STOP_WAIT.as_secs();
    WriterOutcome {
        slices: progress.slices.load(Relaxed),
        events: progress.events.load(Relaxed),
        dropped_slices: progress.dropped_slices.load(Relaxed) + not_written,
        error: Some(format!(
            "aiocop: writing '{path}' did not finish within {wait_s} s (a reader that stopped reading, or a stalled \
             disk); gave up: {not_written} slices not written, the trace is cut short"
        )),
        path: Some(path.clone()),
        gave_up: true,
        ..WriterOutcome::default()
    }
}

/// The file the current recording writes, if any.
pub fn current_path() -> Option<String> {
    RECORDER.lock().ok()?.as_ref().map(|r| r.path.clone())
}

type HeldLocks = (
    MutexGuard<'static, ()>,
    MutexGuard<'static, ()>,
    MutexGuard<'static, Buffer>,
    MutexGuard<'static, Option<SharedStrings>>,
);

thread_local! {
    static HELD_FOR_FORK: RefCell<Option<HeldLocks>> = const { RefCell::new(None) };
}

/// Before fork: take the locks the writer thread could be holding, so the
/// child gets them unlocked and consistent.
pub fn before_fork() {
    let stopping = STOPPING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let creating = trace_file::hold_for_fork();
    stacks::hold_for_fork();
    let buffer = BUFFER.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let names = SHARED_STRINGS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    HELD_FOR_FORK.with(|held| *held.borrow_mut() = Some((stopping, creating, buffer, names)));
}

pub fn after_fork_in_parent() {
    HELD_FOR_FORK.with(|held| held.borrow_mut().take());
    stacks::release_after_fork();
}

/// In the child: release the locks; if the parent was recording, the child
/// records to a fresh file of its own (its pid in `{pid}`), dropping the
/// parent's buffered slices, which belong to the parent's file.
pub fn after_fork_in_child() -> Option<String> {
    HELD_FOR_FORK.with(|held| {
        if let Some((_, _, mut buffer, _)) = held.borrow_mut().take() {
            *buffer = Buffer::default();
        }
    });
    trace_file::close_inherited();
    stacks::release_after_fork();
    what_ran::restart_thread_numbers();
    let mut recorder = RECORDER.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let parent = recorder.take()?;
    // The parent's writer thread does not exist here: forget the channel
    // it reports on (its state may be mid-update) rather than drop it.
    std::mem::forget(parent.done);
    let mut settings = parent.settings;
    settings.process.parent_pid = std::os::unix::process::parent_id();
    let role = if settings.process.role == "forkserver" { "forkserver child" } else { "fork child" };
    settings.process.role = role.to_owned();
    if !settings.path_template.contains("{pid}") {
        // Never write over the parent's file.
        settings.path_template.push_str(".{pid}");
    }
    ACTIVE.store(false, Relaxed);
    match spawn_writer(settings) {
        Ok(mut running) => {
            let path = running.path.clone();
            let moved_aside = running.moved_aside.take();
            *recorder = Some(running);
            drop(recorder);
            if let Some(notice) = moved_aside {
                log_warning(&notice);
            }
            Some(path)
        }
        Err(message) => Some(format!("error: {message}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_defined_once_until_the_writer_remembers_too_many() {
        let mut state = FileState::new(0);
        state.max_remembered = 2;
        let mut chunk = Chunk::default();
        let ids: Vec<u32> = ["a", "b", "a", "c", "c", "b"].iter().map(|text| state.string(&mut chunk, text)).collect();
        // "a" and "b" are remembered; "c" is defined again at each use.
        assert_eq!(ids, [0, 1, 0, 2, 3, 1]);
        let defined: Vec<(u32, &str)> = chunk.strings.iter().map(|(id, text)| (*id, text.as_str())).collect();
        assert_eq!(defined, [(0, "a"), (1, "b"), (2, "c"), (3, "c")]);
    }

    #[test]
    fn a_task_name_is_defined_at_its_first_slice_and_forgotten_with_the_task() {
        let mut state = FileState::new(0);
        state.tasks.insert(7, (Arc::from("Task-1"), None));
        let mut chunk = Chunk::default();
        let first = state.task(&mut chunk, 7);
        assert_eq!((first, state.task(&mut chunk, 7)), (Some(0), Some(0)));
        assert_eq!(state.task(&mut chunk, NO_TASK), None);
        assert_eq!(state.task(&mut chunk, 8), None, "a task never announced has no name");
        assert_eq!(chunk.strings, [(0, "Task-1".to_owned())]);
        // Task names are not shared with other strings, nor between tasks.
        assert_eq!(state.string(&mut chunk, "Task-1"), 1);
        state.tasks.insert(9, (Arc::from("Task-1"), None));
        assert_eq!(state.task(&mut chunk, 9), Some(2));
    }
}
