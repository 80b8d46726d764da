//! The writer thread: turns the buffered slices into chunks, compresses and
//! writes them (format and writer: the `aiocop-trace` crate).
//!
//! Place in the flow (record -> trace file): the end. Every flush interval
//! (or when the buffer is half full, or at stop) it takes the buffer's
//! slices (`buffer`) and the task announcements (`registry`), defines in
//! the chunk the strings, frames and stacks the file has not seen yet, and
//! writes it; at stop, it writes the footer. A failed write stops the
//! recording, logged once; what was written stays readable.

use super::buffer::{self, PendingPoll, PendingSlice, SliceDetail, INITIAL_BUFFER_SLICES};
use super::registry;
use super::settings::{self, Settings};
use crate::stacks::{self, StackId};
use crate::{clock, config, trace_file};
use aiocop_trace::records::{
    AllowedEvent, Chunk, EagerFirstStep, EagerTask, EventRecord, Frame, FrameName, LoopIterations, PollRecord,
    ReadyWait, SliceRecord, SliceSampleCpu, SliceSampleTimes, TaskCreated, TaskEnded, TraceFooter, TraceHeader,
    READY_UNKNOWN,
};
use aiocop_trace::writer::TraceWriter;
use pyo3::ffi;
use pyo3::prelude::*;
use rustc_hash::FxHashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// What a writer has written so far, for a stop that gives up on it.
#[derive(Default)]
pub(super) struct WriterProgress {
    /// The stop gave up waiting: the writer must not touch the buffer, the
    /// logger or the recording state again.
    pub abandoned: AtomicBool,
    pub slices: AtomicU64,
    pub events: AtomicU64,
    pub dropped_slices: AtomicU64,
    /// Slices taken from the buffer and not written yet.
    pub in_flight: AtomicU64,
}

/// Where the writer thread writes: the trace file, opened at start, its
/// header written when there is first something to write.
pub(super) struct Output {
    /// The file being written (`<path>.<pid>` if moved aside).
    pub path: String,
    /// Why, if so: said once, through the logger, once started.
    pub moved_aside: Option<String>,
    header: TraceHeader,
    /// The file until the writer has it.
    file: Option<File>,
    /// A regular file this recording created: removed if nothing is written.
    created: bool,
    writer: Option<TraceWriter<File>>,
    /// The monitor clock at the start of the recording: chunk bases count from it.
    base_ns: u64,
}

impl Output {
    /// Creates the trace file of a recording with `settings` (with `{pid}`
    /// expanded). Fails, creating nothing, if it cannot be created, or if a
    /// FIFO or a device cannot take the header.
    pub fn open(settings: &Settings) -> Result<Self, String> {
        let path = settings::expand_path(&settings.path_template, std::process::id());
        let created = trace_file::create_published(|| trace_file::create_locked(&path, settings.file_mode))
            .map_err(|e| format!("cannot record to '{path}': {e}"))?;
        let moved_aside = created.moved_aside.map(|reason| {
            format!("aiocop: '{path}' {reason}; this process ({}) records to '{}'", std::process::id(), created.path)
        });
        let base_ns = clock::now_ns();
        let header = settings::trace_header(settings, base_ns);
        let mut output = Output {
            path: created.path,
            moved_aside,
            header,
            file: Some(created.file),
            created: created.created,
            writer: None,
            base_ns,
        };
        if !output.created {
            // A FIFO or a device: its header is written now, still without
            // blocking, so that one that cannot take it (/dev/full, a full
            // FIFO) fails here; then the writer thread's writes may block.
            let writer = output.writer().map_err(|e| format!("cannot record to '{path}': {e}"))?;
            trace_file::make_blocking(writer.get_ref()).map_err(|e| format!("cannot record to '{path}': {e}"))?;
        }
        Ok(output)
    }

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

/// A running writer thread: what it reports when it ends, and its progress.
pub(super) struct Spawned {
    pub done: mpsc::Receiver<WriterOutcome>,
    pub progress: Arc<WriterProgress>,
}

/// Starts the writer thread on `output`, flushing every `flush_interval`.
pub(super) fn spawn(output: Output, flush_interval: Duration) -> Result<Spawned, String> {
    let progress = Arc::new(WriterProgress::default());
    let writer_progress = progress.clone();
    let (report_done, done) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("aiocop-recorder".into())
        .spawn(move || {
            let outcome = write_loop(output, flush_interval, &writer_progress);
            let _ = report_done.send(outcome);
        })
        .map_err(|e| format!("cannot start the aiocop recorder thread: {e}"))?;
    Ok(Spawned { done, progress })
}

/// Logs a warning through the `aiocop` logger, from any thread.
pub(super) fn log_warning(message: &str) {
    // SAFETY: only reads the interpreter's state.
    if unsafe { ffi::Py_IsInitialized() } != 0 {
        Python::attach(|py| config::log_warning(py, message));
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
    /// The stop gave up waiting for the writer (see `session::STOP_WAIT`).
    pub gave_up: bool,
}

/// The writer thread: every flush interval (or at stop), turns the buffer
/// into a chunk and writes it; at stop, writes the footer.
fn write_loop(mut output: Output, flush_interval: Duration, progress: &WriterProgress) -> WriterOutcome {
    crate::signals::block_in_this_thread();
    let base_ns = output.base_ns;
    let mut file_state = FileState::new(base_ns);
    let mut outcome = WriterOutcome::default();
    // The writer's half of a double buffer: swapped with the hot path's
    // every interval, written, emptied, so that in a steady state neither
    // side allocates.
    let mut slices: Vec<PendingSlice> = Vec::new();
    let mut polls: Vec<PendingPoll> = Vec::new();
    let mut details: Vec<SliceDetail> = Vec::new();
    loop {
        let Some(taken) = buffer::wait_and_take(
            flush_interval,
            &mut slices,
            &mut polls,
            &mut details,
            || progress.abandoned.load(Relaxed),
            |taking| progress.in_flight.store(taking as u64, Relaxed),
        ) else {
            if progress.abandoned.load(Relaxed) {
                return outcome; // the buffer may be a newer recording's
            }
            break;
        };
        // After the slices: every task they name was announced before them.
        let tasks = registry::take_task_changes();
        let (dropped, stop) = (taken.dropped, taken.stop);
        outcome.dropped_slices += dropped;
        progress.dropped_slices.store(outcome.dropped_slices, Relaxed);
        file_state.tasks.extend(tasks.announced.into_iter().map(|(token, name)| (token, (name, None))));
        let (slices_used, details_used) = (slices.len(), details.len());
        let mut parts = slices.chunks(MAX_SLICES_PER_CHUNK).peekable();
        let mut part_details = details.drain(..);
        let mut part_polls = PollsByPart { polls: &polls, next: 0 };
        let mut dropped = Some(dropped).filter(|&d| d > 0);
        let mut part_start = 0;
        while parts.peek().is_some() || dropped.is_some() || part_polls.any_left() {
            let part = parts.next().unwrap_or_default();
            part_start += part.len();
            let last = parts.peek().is_none();
            let mut chunk = file_state.chunk(part, &mut part_details, dropped.take().unwrap_or(0));
            chunk.loop_iterations.0 = file_state.iterations(part_polls.up_to(part_start, last));
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
        for token in tasks.forgotten {
            file_state.tasks.remove(&token);
        }
        empty_for_reuse(&mut slices, slices_used);
        let polls_used = polls.len();
        empty_for_reuse(&mut polls, polls_used);
        empty_for_reuse(&mut details, details_used);
        if stop {
            break;
        }
    }
    finish(output, outcome, progress)
}

/// Writes the footer (or, if nothing was recorded, removes the file this
/// recording created).
fn finish(mut output: Output, mut outcome: WriterOutcome, progress: &WriterProgress) -> WriterOutcome {
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
        end_offset_ns: clock::now_ns().saturating_sub(output.base_ns),
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
    settings::set_active(false);
    let message = format!("aiocop stopped recording to '{path}': {error}; the trace is readable up to this point");
    log_warning(&message);
    outcome.error = Some(message);
    outcome.path = Some(path.to_owned());
    outcome
}
/// The context key of a slice's route (`GET /items/{item_id}`).
pub const ROUTE_KEY: &str = "route";
/// The context key of the route of a request routed during a slice (one
/// pair per request).
pub const ROUTE_START_KEY: &str = "route.start";

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
    /// The threads whose loops' polls were written (a few).
    polling_threads: Vec<u32>,
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
            polling_threads: Vec::new(),
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
        let new_shared = registry::shared_strings_since(self.shared.len());
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
            chunk.task_timing.ready.push(ready_wait(slice));
            if let Some(mut detail) = slice.has_detail.then(|| details.next()).flatten() {
                let (times, ran_ns) =
                    (std::mem::take(&mut detail.sample_times), std::mem::take(&mut detail.sample_cpu));
                let index = chunk.slices.len() as u32;
                if !times.is_empty() {
                    chunk.sample_timing.slices.push(SliceSampleTimes { slice: index, times });
                }
                if !ran_ns.is_empty() {
                    chunk.sample_cpu.slices.push(SliceSampleCpu { slice: index, ran_ns });
                }
                self.add_task_lifecycle(&mut chunk, slice.start_ns, &detail);
                self.add_detail(&mut chunk, &mut record, detail);
            }
            chunk.slices.push(record);
            previous = slice.start_ns;
        }
        chunk
    }

    /// A chunk's loop iterations, from its polls.
    fn iterations(&mut self, polls: &[PendingPoll]) -> LoopIterations {
        // Buffered as they ended, which is in start order but when loops on
        // other threads overlap: copied and sorted only then.
        let polls: std::borrow::Cow<'_, [PendingPoll]> = if polls.is_sorted_by_key(|poll| poll.start_ns) {
            polls.into()
        } else {
            let mut sorted = polls.to_vec();
            sorted.sort_by_key(|poll| poll.start_ns);
            sorted.into()
        };
        let base_offset_ns = polls.first().map_or(0, |poll| poll.start_ns.saturating_sub(self.base_ns));
        let mut previous = polls.first().map_or(0, |poll| poll.start_ns);
        let polls: Vec<PollRecord> = polls
            .iter()
            .map(|poll| {
                let start_delta_ns = poll.start_ns.saturating_sub(previous);
                previous = poll.start_ns;
                PollRecord { start_delta_ns, wait_ns: poll.wait_ns, thread: poll.thread }
            })
            .collect();
        for poll in &polls {
            if !self.polling_threads.contains(&poll.thread) {
                self.polling_threads.push(poll.thread);
            }
        }
        LoopIterations { base_offset_ns, polls, polling_threads: self.polling_threads.clone() }
    }

    /// The creation and end of the task whose step is the chunk's next slice
    /// (format 1.4), if it is its first or last.
    fn add_task_lifecycle(&mut self, chunk: &mut Chunk, start_ns: u64, detail: &SliceDetail) {
        let slice = chunk.slices.len() as u32;
        if let Some(created) = detail.created {
            let parent = self.task(chunk, created.parent);
            let created_before_ns = start_ns.saturating_sub(created.created_ns);
            chunk.task_timing.created.push(TaskCreated { slice, created_before_ns, parent });
        }
        if let Some(outcome) = detail.ended {
            chunk.task_timing.ended.push(TaskEnded { slice, outcome });
        }
        if let Some(ran_ns) = detail.eager_first_step_ns {
            chunk.eager_tasks.first_steps.push(EagerFirstStep { slice, ran_ns });
        }
        for ended in &detail.ended_eagerly {
            let what = self.shared(chunk, ended.what);
            let (created_offset_ns, ran_ns) = (ended.start.created_ns.saturating_sub(start_ns), ended.start.ran_ns);
            chunk.eager_tasks.ended.push(EagerTask { slice, created_offset_ns, ran_ns, what, outcome: ended.outcome });
        }
    }

    /// Fills `record`, the chunk's next slice, from `detail`.
    fn add_detail(&mut self, chunk: &mut Chunk, record: &mut SliceRecord, detail: SliceDetail) {
        self.mark_allowed(chunk, &detail);
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
        self.add_route(chunk, record, &detail);
        record.dropped_events = detail.dropped_events;
        record.score = detail.score;
        record.samples = detail.samples;
    }

    /// Marks the allowed events of the chunk's next slice (format 1.3).
    fn mark_allowed(&mut self, chunk: &mut Chunk, detail: &SliceDetail) {
        let slice = chunk.slices.len() as u32;
        for (event, described) in detail.events.iter().enumerate() {
            if let Some(entry) = described.allowed_by {
                let entry = self.shared(chunk, entry);
                chunk.allowed.kept.push(AllowedEvent { slice, event: event as u32, entry });
            }
        }
        if detail.allowed_dropped_events > 0 {
            chunk.allowed.dropped.push((slice, detail.allowed_dropped_events));
        }
    }

    /// The slice's route as its context value `route` (unless a context
    /// provider gave one), and a `route.start` for each request routed in it.
    fn add_route(&mut self, chunk: &mut Chunk, record: &mut SliceRecord, detail: &SliceDetail) {
        if let Some(route) = detail.route {
            let key = self.string(chunk, ROUTE_KEY);
            if !record.context.iter().any(|(k, _)| *k == key) {
                let value = self.shared(chunk, route);
                record.context.push((key, value));
            }
        }
        for &started in &detail.requests_started {
            let key = self.string(chunk, ROUTE_START_KEY);
            let value = self.shared(chunk, started);
            record.context.push((key, value));
        }
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

/// How long a slice waited for the loop once ready (format 1.4).
fn ready_wait(slice: &PendingSlice) -> ReadyWait {
    match slice.ready_ns {
        0 => ReadyWait { wait_ns: 0, since: READY_UNKNOWN },
        ready_ns => ReadyWait { wait_ns: slice.start_ns.saturating_sub(ready_ns), since: slice.ready_since },
    }
}

/// Hands out a flush's polls part by part: each with the slices around it.
struct PollsByPart<'a> {
    polls: &'a [PendingPoll],
    next: usize,
}

impl<'a> PollsByPart<'a> {
    fn any_left(&self) -> bool {
        self.next < self.polls.len()
    }

    /// The polls buffered before slice `end` (all that are left, for the
    /// `last` part).
    fn up_to(&mut self, end: usize, last: bool) -> &'a [PendingPoll] {
        let from = self.next;
        let count = if last {
            self.polls.len() - from
        } else {
            self.polls[from..].iter().take_while(|poll| (poll.after_slices as usize) < end).count()
        };
        self.next += count;
        &self.polls[from..from + count]
    }
}

fn mark(defined: &mut Vec<bool>, id: u32) {
    if defined.len() <= id as usize {
        defined.resize(id as usize + 1, false);
    }
    defined[id as usize] = true;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::registry::NO_TASK;

    fn poll(start_ns: u64, thread: u32, after_slices: u32) -> PendingPoll {
        PendingPoll { start_ns, wait_ns: 10, thread, after_slices }
    }

    #[test]
    fn each_poll_goes_in_the_chunk_of_the_slices_around_it() {
        // Two parts of 3 slices: polls buffered before slice 3 go in the
        // first, the others (and those after the last slice) in the second.
        let polls = [poll(100, 1, 0), poll(200, 1, 2), poll(300, 1, 3), poll(400, 1, 6)];
        let mut parts = PollsByPart { polls: &polls, next: 0 };
        assert_eq!(parts.up_to(3, false), &polls[..2]);
        assert!(parts.any_left());
        assert_eq!(parts.up_to(6, true), &polls[2..]);
        assert!(!parts.any_left());
    }

    #[test]
    fn a_chunks_polls_are_deltas_in_start_order_and_name_every_polling_thread() {
        let mut state = FileState::new(1_000);
        // Buffered as they ended: thread 2's poll started first.
        let first = state.iterations(&[poll(1_500, 1, 0), poll(1_200, 2, 0)]);
        assert_eq!(first.base_offset_ns, 200);
        let deltas: Vec<(u64, u32)> = first.polls.iter().map(|p| (p.start_delta_ns, p.thread)).collect();
        assert_eq!(deltas, [(0, 2), (300, 1)]);
        assert_eq!(first.polling_threads, [2, 1]);
        // A chunk without polls still names the threads that poll.
        let second = state.iterations(&[]);
        assert!(second.polls.is_empty());
        assert_eq!(second.polling_threads, [2, 1]);
    }

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
