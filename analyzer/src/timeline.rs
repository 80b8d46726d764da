//! The timeline: a recording as Chrome trace event JSON, which
//! ui.perfetto.dev, chrome://tracing and speedscope open.
//!
//! Each trace is a process (`pid`, named by its command, role and label in
//! `process_name` metadata); each loop thread a track (`tid`, `thread_name`),
//! or with [`Tracks::Task`] each task. A slice is a complete (`X`) event
//! named by what ran; its blocking events and CPU samples are instant (`i`)
//! events on its track; stalls ([`crate::stalls`]) are complete events on a
//! track beside their thread's, spanning their slices. Times are
//! microseconds from the earliest trace's start on the wall clock, so that
//! a fleet's workers line up.
//!
//! The file is written as it is read, and memory stays flat with the
//! trace's length: chunks are decoded a window at a time (in parallel),
//! their definitions added to the file's dictionary, their slices walked
//! once in order (tracks, stalls, `--min-ms`), then rendered to JSON in
//! parallel and written in order. What is kept from one window to the next
//! is the dictionary (strings, frames, stacks: it grows with the program's
//! code paths and, with task names, its tasks), the text of the stacks seen
//! and, with `--tracks task`, one number per task.

use crate::error::AnalyzeError;
use crate::group::{IgnoreSet, StackResolver};
use crate::identity::PathContext;
use crate::stalls::{file_stalls, ChunkRuns, StallOptions, StallTracker};
use aiocop_trace::reader::CountedChunk;
use aiocop_trace::records::{Chunk, SampleTime, SliceRecord, StackId, StringId, TraceHeader};
use aiocop_trace::{Dictionary, MemoryBudget, ReadError, TraceFile};
use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

/// `--tracks`: one track per loop thread, or per task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Tracks {
    Thread,
    Task,
}

/// Task tracks are numbered from here, above any loop thread's number.
const FIRST_TASK_TID: u32 = 1 << 20;
/// A loop thread's stalls are on a track of their own, this plus its number:
/// a stall as long as its one slice would otherwise nest ambiguously with it.
const STALL_TID_BASE: u32 = 1 << 30;

/// What is read of each trace and how it is laid out.
#[derive(Clone, Copy, Debug)]
pub struct TimelineOptions<'a> {
    pub tracks: Tracks,
    /// Slices starting in `[since_ns, until_ns)` after their trace's start.
    pub since_ns: u64,
    pub until_ns: u64,
    /// Slices shorter than this are left out (`--min-ms`).
    pub min_ns: u64,
    /// `--threshold-ms`: who overran, and how long a stall is; `None`: each trace's own.
    pub threshold_ns: Option<u64>,
    pub stall_gap_ns: u64,
    pub ignore: Option<&'a IgnoreSet>,
    /// Chunks decoded at once.
    pub window: usize,
}

/// What was written, for the notes on stderr and for tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimelineCounts {
    pub traces: u64,
    /// Slices in the window, written or left out by `--min-ms`.
    pub slices: u64,
    pub short_slices: u64,
    pub events: u64,
    pub samples: u64,
    pub stalls: u64,
}

/// One trace event. Field order is the viewers' usual one.
#[derive(Serialize)]
struct Event<'a, A> {
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    cat: &'a str,
    ph: &'static str,
    ts: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    dur: Option<f64>,
    pid: u32,
    tid: u32,
    /// An instant event's scope: `t`, its thread's track.
    #[serde(skip_serializing_if = "Option::is_none")]
    s: Option<&'static str>,
    args: A,
}

#[derive(Serialize)]
struct NameArgs<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct SortArgs {
    sort_index: u64,
}

#[derive(Serialize)]
struct SliceArgs<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    task: Option<&'a str>,
    score: i64,
    overran: bool,
}

#[derive(Serialize)]
struct BlockingArgs<'a> {
    args: &'a str,
    weight: i64,
    /// Innermost frame first, `path:line:function`.
    stack: &'a [String],
}

#[derive(Serialize)]
struct SampleArgs<'a> {
    stack: &'a [String],
}

#[derive(Serialize)]
struct StallArgs {
    slices: u64,
}

/// Nanoseconds as the format's microseconds.
fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// A stack as the events show it.
#[derive(Debug)]
struct StackText {
    /// `path:line:function`, innermost first.
    frames: Vec<String>,
    /// The innermost frame's function: a sample's name.
    innermost: String,
    ignored: bool,
}

/// Where events go: the output, and whether an event was written yet (the
/// array's first has no comma before it).
pub struct JsonSink<'w> {
    out: &'w mut (dyn Write + Send),
    name: String,
    started: bool,
}

impl<'w> JsonSink<'w> {
    /// `name` is the output's, for messages.
    pub fn new(out: &'w mut (dyn Write + Send), name: &str) -> JsonSink<'w> {
        JsonSink { out, name: name.to_owned(), started: false }
    }

    fn error(&self, source: std::io::Error) -> AnalyzeError {
        if source.kind() == std::io::ErrorKind::BrokenPipe {
            AnalyzeError::BrokenPipe
        } else {
            AnalyzeError::Output { path: self.name.clone(), source }
        }
    }

    fn write_raw(&mut self, bytes: &[u8]) -> Result<(), AnalyzeError> {
        self.out.write_all(bytes).map_err(|e| self.error(e))
    }

    /// Events rendered by [`render_event`]: each starts with a comma, but
    /// the array's first.
    fn write_events(&mut self, rendered: &[u8]) -> Result<(), AnalyzeError> {
        let mut bytes = rendered;
        if !self.started {
            if rendered.is_empty() {
                return Ok(());
            }
            self.write_raw(b"{\"traceEvents\":[\n")?;
            bytes = rendered.strip_prefix(b",\n").unwrap_or(rendered);
            self.started = true;
        }
        self.write_raw(bytes)
    }

    /// Closes the array and the object, and flushes.
    pub fn finish(mut self) -> Result<(), AnalyzeError> {
        if !self.started {
            self.write_raw(b"{\"traceEvents\":[")?;
        }
        self.write_raw(b"\n],\"displayTimeUnit\":\"ms\"}\n")?;
        self.out.flush().map_err(|e| self.error(e))
    }
}

/// Appends `,\n` and the event's JSON to `buffer`.
fn render_event<A: Serialize>(buffer: &mut Vec<u8>, event: &Event<'_, A>) {
    buffer.extend_from_slice(b",\n");
    serde_json::to_writer(&mut *buffer, event).expect("an event serializes: its keys are strings");
}

fn metadata<A: Serialize>(buffer: &mut Vec<u8>, name: &str, pid: u32, tid: u32, args: A) {
    render_event(buffer, &Event { name, cat: "", ph: "M", ts: 0.0, dur: None, pid, tid, s: None, args });
}

/// A trace as a process: what names it.
pub fn process_name(header: &TraceHeader) -> String {
    let (own, root) = (header.argv.join(" "), header.process.root_command.join(" "));
    let child = !header.process.role.is_empty() && header.process.role != "main";
    // A worker's own argv is its runtime's (`-c from multiprocessing.spawn
    // import spawn_main; ...`): the command the user started says which
    // deployment it belongs to.
    let mut name = if (child || own.is_empty()) && !root.is_empty() {
        root
    } else if !own.is_empty() {
        own
    } else {
        format!("pid {}", header.pid)
    };
    if child {
        name.push_str(&format!(" ({})", header.process.role));
    }
    if let Some(label) = &header.label {
        name.push_str(&format!(" [{label}]"));
    }
    name
}

/// One trace being written.
struct FileWriter<'a> {
    trace: &'a TraceFile,
    options: &'a TimelineOptions<'a>,
    pid: u32,
    /// The trace's start, from the earliest trace's.
    base_ns: u64,
    dictionary: Dictionary,
    stacks: FxHashMap<StackId, StackText>,
    threads: FxHashSet<u32>,
    tasks: FxHashMap<StringId, u32>,
    stall_options: StallOptions,
    /// Each walked chunk's runs, joined into stalls at the end.
    runs: Vec<ChunkRuns>,
    counts: TimelineCounts,
    unreadable: u64,
    first_error: Option<ReadError>,
}

impl<'a> FileWriter<'a> {
    /// Walks a window's slices in order: tracks met for the first time
    /// (their metadata, into `meta`), stalls, stacks, counts.
    fn walk(&mut self, chunk: &Chunk, meta: &mut Vec<u8>) {
        let mut stalls = StallTracker::new(self.stall_options);
        stalls.set_polls(&chunk.loop_iterations);
        self.walk_slices(chunk, meta, &mut stalls);
        self.runs.push(stalls.finish(self.runs.len()));
    }

    fn walk_slices(&mut self, chunk: &Chunk, meta: &mut Vec<u8>, stalls: &mut StallTracker) {
        let mut start_ns = chunk.base_offset_ns;
        for slice in &chunk.slices {
            start_ns = start_ns.saturating_add(slice.start_delta_ns);
            if start_ns < self.options.since_ns || start_ns >= self.options.until_ns {
                continue;
            }
            self.counts.slices += 1;
            stalls.add_ran(slice.thread, start_ns, slice.duration_ns, slice.what);
            if self.threads.insert(slice.thread) {
                let name = format!("loop thread {}", slice.thread);
                metadata(meta, "thread_name", self.pid, slice.thread, NameArgs { name: &name });
                let sort_index = 2 * u64::from(slice.thread);
                metadata(meta, "thread_sort_index", self.pid, slice.thread, SortArgs { sort_index });
            }
            if slice.duration_ns < self.options.min_ns {
                self.counts.short_slices += 1;
                continue;
            }
            if let (Tracks::Task, Some(task)) = (self.options.tracks, slice.task) {
                if !self.tasks.contains_key(&task) {
                    let tid = FIRST_TASK_TID + self.tasks.len() as u32;
                    self.tasks.insert(task, tid);
                    let name = self.dictionary.string(task).unwrap_or("<unknown task>").to_owned();
                    metadata(meta, "thread_name", self.pid, tid, NameArgs { name: &name });
                    let index = u64::from(tid);
                    metadata(meta, "thread_sort_index", self.pid, tid, SortArgs { sort_index: index });
                }
            }
            for stack in slice.events.iter().map(|e| e.stack).chain(slice.samples.iter().copied()) {
                if !self.stacks.contains_key(&stack) {
                    let text = stack_text(&self.dictionary, self.options.ignore, stack);
                    self.stacks.insert(stack, text);
                }
            }
            let kept_events = slice.events.iter().filter(|e| !self.stacks[&e.stack].ignored).count();
            self.counts.events += kept_events as u64;
            self.counts.samples += slice.samples.len() as u64;
        }
    }

    /// The events of a chunk walked before, as JSON (on any thread).
    fn render(&self, chunk: &Chunk) -> Vec<u8> {
        let mut buffer = Vec::with_capacity(chunk.slices.len() * 128);
        let mut start_ns = chunk.base_offset_ns;
        for (index, slice) in chunk.slices.iter().enumerate() {
            start_ns = start_ns.saturating_add(slice.start_delta_ns);
            if start_ns < self.options.since_ns
                || start_ns >= self.options.until_ns
                || slice.duration_ns < self.options.min_ns
            {
                continue;
            }
            self.render_slice(&mut buffer, start_ns, slice, chunk.sample_timing.of_slice(index));
        }
        buffer
    }

    fn string(&self, id: StringId) -> &str {
        self.dictionary.string(id).unwrap_or("<unknown string>")
    }

    /// `sample_times`: when its samples were taken (empty: untimed).
    fn render_slice(&self, buffer: &mut Vec<u8>, start_ns: u64, slice: &SliceRecord, sample_times: &[SampleTime]) {
        let tid = match (self.options.tracks, slice.task) {
            (Tracks::Task, Some(task)) => self.tasks.get(&task).copied().unwrap_or(slice.thread),
            _ => slice.thread,
        };
        let at = |offset_ns: u64| us(self.base_ns.saturating_add(start_ns).saturating_add(offset_ns));
        let overran = self.options.threshold_ns.map_or(slice.exceeded, |threshold| slice.duration_ns >= threshold);
        let args = SliceArgs { task: slice.task.map(|t| self.string(t)), score: slice.score, overran };
        let (pid, name) = (self.pid, self.string(slice.what));
        let cat = if overran { "slice,overran" } else { "slice" };
        let dur = Some(us(slice.duration_ns));
        render_event(buffer, &Event { name, cat, ph: "X", ts: at(0), dur, pid, tid, s: None, args });
        let event_table = &self.trace.header().event_table;
        for event in &slice.events {
            let stack = &self.stacks[&event.stack];
            if stack.ignored {
                continue;
            }
            let spec = event_table.get(usize::from(event.event));
            let name = spec.map_or("<unknown event>", |e| e.name.as_str());
            let args = BlockingArgs {
                args: self.string(event.args),
                weight: spec.map_or(0, |e| e.weight),
                stack: &stack.frames,
            };
            let ts = at(event.offset_ns.min(slice.duration_ns));
            render_event(
                buffer,
                &Event { name, cat: "blocking", ph: "i", ts, dur: None, pid, tid, s: Some("t"), args },
            );
        }
        let sampling = *self.trace.header().sampling;
        let count = slice.samples.len() as u64;
        for (k, sample) in (0u64..).zip(&slice.samples) {
            let stack = &self.stacks[sample];
            // Timed (format 1.3): when it was taken. Else recording's sampler
            // is due `after_ns` into the slice, then every `interval_ns`; the
            // monitor's samples carry no time: spread evenly.
            let offset_ns = if sample_times.len() == slice.samples.len() {
                sample_times[k as usize].taken_offset_ns.min(slice.duration_ns)
            } else if sampling.after_ns > 0 {
                sampling.after_ns.saturating_add(k.saturating_mul(sampling.interval_ns)).min(slice.duration_ns)
            } else {
                (u128::from(slice.duration_ns) * u128::from(k + 1) / u128::from(count + 1)) as u64
            };
            let (name, args) = (stack.innermost.as_str(), SampleArgs { stack: &stack.frames });
            let ts = at(offset_ns);
            render_event(buffer, &Event { name, cat: "sample", ph: "i", ts, dur: None, pid, tid, s: Some("t"), args });
        }
    }

    /// The stalls, once every slice is walked.
    fn render_stalls(&mut self, buffer: &mut Vec<u8>) {
        let mut stalls = file_stalls(std::mem::take(&mut self.runs));
        stalls.sort_by_key(|run| (run.thread, run.start_ns));
        let mut tracks = FxHashSet::default();
        for run in stalls {
            self.counts.stalls += 1;
            let tid = STALL_TID_BASE.saturating_add(run.thread);
            if tracks.insert(tid) {
                let name = format!("stalls, loop thread {}", run.thread);
                metadata(buffer, "thread_name", self.pid, tid, NameArgs { name: &name });
                let sort_index = 2 * u64::from(run.thread) + 1;
                metadata(buffer, "thread_sort_index", self.pid, tid, SortArgs { sort_index });
            }
            let name = format!("stall {:.1} ms", run.duration_ns() as f64 / 1e6);
            let event = Event {
                name: &name,
                cat: "stall",
                ph: "X",
                ts: us(self.base_ns.saturating_add(run.start_ns)),
                dur: Some(us(run.duration_ns())),
                pid: self.pid,
                tid,
                s: None,
                args: StallArgs { slices: run.slices },
            };
            render_event(buffer, &event);
        }
    }
}

fn stack_text(dictionary: &Dictionary, ignore: Option<&IgnoreSet>, stack: StackId) -> StackText {
    let paths = PathContext::default();
    let ignored = StackResolver::new(dictionary, &[], ignore, &paths).facts(stack).ignored;
    let ids = dictionary.stack(stack).unwrap_or(&[]);
    let frames: Vec<String> = ids.iter().map(|&frame| dictionary.format_frame(frame)).collect();
    let innermost = ids
        .first()
        .and_then(|&frame| dictionary.frame(frame))
        .and_then(|frame| dictionary.string(frame.function))
        .map_or_else(|| "<no stack>".to_owned(), str::to_owned);
    StackText { frames, innermost, ignored }
}

/// A trace written: its counts and warnings.
pub struct FileOutcome {
    pub path: PathBuf,
    pub counts: TimelineCounts,
    pub warnings: Vec<String>,
}

/// Writes the timeline of the traces at `paths` whose label `label`
/// matches (all without one) to `sink`, one after the other, each opened
/// only while it is written; within one, chunks are decoded
/// `options.window` at a time on the current rayon pool.
pub fn write_traces(
    paths: &[PathBuf],
    label: Option<&globset::GlobMatcher>,
    budget: &Arc<MemoryBudget>,
    options: &TimelineOptions<'_>,
    sink: &mut JsonSink<'_>,
) -> Result<Vec<FileOutcome>, AnalyzeError> {
    // Headers first: which traces to write, and the earliest start.
    let mut chosen = Vec::new();
    let mut skipped_labels = Vec::new();
    let mut earliest_ns = u64::MAX;
    for path in paths {
        let trace = TraceFile::open_within(path, budget.clone())?;
        let header = trace.header();
        if let Some(matcher) = label {
            if !header.label.as_deref().is_some_and(|l| matcher.is_match(l)) {
                skipped_labels.push(header.label.clone().unwrap_or_else(|| "none".to_owned()));
                continue;
            }
        }
        earliest_ns = earliest_ns.min(header.start_unix_ns);
        chosen.push(path);
    }
    if chosen.is_empty() {
        if let Some(matcher) = label {
            skipped_labels.sort();
            skipped_labels.dedup();
            let pattern = matcher.glob().glob().to_owned();
            return Err(AnalyzeError::NoLabelMatch { pattern, labels: skipped_labels.join(", ") });
        }
    }
    let mut pids: FxHashSet<u32> = FxHashSet::default();
    let mut outcomes = Vec::new();
    for (index, path) in chosen.into_iter().enumerate() {
        let trace = TraceFile::open_within(path, budget.clone())?;
        // Two traces of one pid (another host, a pid reused): each its own process.
        let mut pid = trace.header().pid;
        while !pids.insert(pid) {
            pid = pid.wrapping_add(1_000_000 + index as u32);
        }
        let base_ns = trace.header().start_unix_ns.saturating_sub(earliest_ns);
        let (counts, warnings) = write_trace(&trace, index, pid, base_ns, options, sink)?;
        outcomes.push(FileOutcome { path: path.clone(), counts, warnings });
    }
    Ok(outcomes)
}

/// Writes one trace as process `pid`, starting `base_ns` after the earliest.
fn write_trace(
    trace: &TraceFile,
    index: usize,
    pid: u32,
    base_ns: u64,
    options: &TimelineOptions<'_>,
    sink: &mut JsonSink<'_>,
) -> Result<(TimelineCounts, Vec<String>), AnalyzeError> {
    let header = trace.header();
    let threshold_ns = options.threshold_ns.unwrap_or(header.threshold_ns);
    let mut file = FileWriter {
        trace,
        options,
        pid,
        base_ns,
        dictionary: Dictionary::new(),
        stacks: FxHashMap::default(),
        threads: FxHashSet::default(),
        tasks: FxHashMap::default(),
        stall_options: StallOptions { threshold_ns, gap_ns: options.stall_gap_ns },
        runs: Vec::new(),
        counts: TimelineCounts { traces: 1, ..TimelineCounts::default() },
        unreadable: 0,
        first_error: None,
    };
    if let (0, Some(damage)) = (trace.chunk_count(), trace.damage()) {
        return Err(AnalyzeError::DamagedBeforeAnyChunk { damage: damage.to_string() });
    }
    let mut meta = Vec::new();
    metadata(&mut meta, "process_name", pid, 0, NameArgs { name: &process_name(header) });
    metadata(&mut meta, "process_sort_index", pid, 0, SortArgs { sort_index: index as u64 });
    sink.write_events(&meta)?;

    let window = options.window.max(1);
    for first in (0..trace.chunk_count()).step_by(window) {
        let last = (first + window).min(trace.chunk_count());
        // Each chunk's slices stay counted in the read's budget until rendered.
        let decoded: Vec<Result<CountedChunk, ReadError>> =
            (first..last).into_par_iter().map(|index| trace.read_chunk_counted(index)).collect();
        let mut chunks = Vec::with_capacity(decoded.len());
        for chunk in decoded {
            match chunk {
                Ok(counted) => {
                    file.dictionary.add(&counted.chunk);
                    chunks.push(counted);
                }
                Err(error) if error.is_over_memory_limit() => return Err(error.into()),
                Err(error) => {
                    file.unreadable += 1;
                    file.first_error.get_or_insert(error);
                }
            }
        }
        let mut meta = Vec::new();
        for counted in &chunks {
            file.walk(&counted.chunk, &mut meta);
        }
        sink.write_events(&meta)?;
        let rendered: Vec<Vec<u8>> = chunks.par_iter().map(|counted| file.render(&counted.chunk)).collect();
        for events in rendered {
            sink.write_events(&events)?;
        }
    }
    let mut stalls = Vec::new();
    file.render_stalls(&mut stalls);
    sink.write_events(&stalls)?;

    if file.unreadable > 0 && file.unreadable == trace.chunk_count() as u64 {
        if let Some(error) = file.first_error.take() {
            return Err(AnalyzeError::NothingReadable { error, chunks: trace.chunk_count() });
        }
    }
    let mut warnings: Vec<String> = crate::read::newer_minor_warning(trace).into_iter().collect();
    let first_error = file.first_error.take().map(|e| e.to_string());
    warnings.extend(crate::read::check_readable(trace, file.unreadable, first_error));
    Ok((file.counts, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiocop_trace::records::{Appended, EventRecord, EventSpec, Frame, ProcessInfo, SamplingInfo};
    use aiocop_trace::TraceWriter;

    #[test]
    fn a_worker_is_named_by_the_command_the_user_started() {
        let process = |role: &str| {
            Appended(ProcessInfo {
                role: role.to_owned(),
                root_command: vec!["uvicorn".to_owned(), "app:app".to_owned()],
                ..ProcessInfo::default()
            })
        };
        let argv = vec!["-c".to_owned(), "from multiprocessing.spawn import spawn_main".to_owned()];
        let worker =
            TraceHeader { pid: 7, argv: argv.clone(), process: process("spawn child"), ..TraceHeader::default() };
        assert_eq!(process_name(&worker), "uvicorn app:app (spawn child)");
        let main = TraceHeader { argv: vec!["app.py".to_owned()], process: process("main"), ..TraceHeader::default() };
        assert_eq!(process_name(&main), "app.py");
        let unknown = TraceHeader { pid: 7, label: Some("v1".to_owned()), ..TraceHeader::default() };
        assert_eq!(process_name(&unknown), "pid 7 [v1]");
    }

    /// A trace of one chunk: strings 0 app.py, 1 get, 2 handler, 3 "Task-1",
    /// 4 "/etc/hosts"; frame 10 app.py:7:get; stack 20 (get).
    fn trace(slices: Vec<SliceRecord>, sampling: SamplingInfo) -> Vec<u8> {
        let header = TraceHeader {
            pid: 99,
            argv: vec!["app.py".to_owned()],
            label: Some("v1".to_owned()),
            threshold_ns: 1_000,
            event_table: vec![EventSpec { name: "open".to_owned(), weight: 10 }],
            sampling: aiocop_trace::records::Appended(sampling),
            ..TraceHeader::default()
        };
        let strings = ["/srv/app.py", "get", "handler", "Task-1", "/etc/hosts"];
        let chunk = Chunk {
            strings: strings.iter().enumerate().map(|(i, s)| (i as u32, (*s).to_owned())).collect(),
            frames: vec![(10, Frame { file: 0, line: 7, function: 1 })],
            stacks: vec![(20, vec![10])],
            base_offset_ns: 5_000,
            slices,
            ..Chunk::default()
        };
        let mut writer = TraceWriter::new(Vec::new(), &header).unwrap();
        writer.write_chunk(&chunk).unwrap();
        writer.finish(&Default::default()).unwrap()
    }

    fn options(tracks: Tracks) -> TimelineOptions<'static> {
        TimelineOptions {
            tracks,
            since_ns: 0,
            until_ns: u64::MAX,
            min_ns: 0,
            threshold_ns: None,
            stall_gap_ns: 100,
            ignore: None,
            window: 2,
        }
    }

    fn events(trace: Vec<u8>, options: &TimelineOptions) -> (Vec<serde_json::Value>, TimelineCounts) {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("aiocop-timeline-{}-{n}.bin", std::process::id()));
        std::fs::write(&path, trace).unwrap();
        let mut out = Vec::new();
        let mut sink = JsonSink::new(&mut out, "out");
        let outcomes =
            write_traces(std::slice::from_ref(&path), None, &MemoryBudget::unlimited(), options, &mut sink).unwrap();
        std::fs::remove_file(&path).unwrap();
        sink.finish().unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        (json["traceEvents"].as_array().unwrap().clone(), outcomes[0].counts.clone())
    }

    fn slice(start_delta_ns: u64, duration_ns: u64) -> SliceRecord {
        SliceRecord { start_delta_ns, duration_ns, what: 2, thread: 1, ..SliceRecord::default() }
    }

    #[test]
    fn slices_events_and_samples_land_at_their_times() {
        let slices = vec![
            SliceRecord {
                events: vec![EventRecord { event: 0, args: 4, offset_ns: 300, stack: 20 }],
                samples: vec![20, 20],
                task: Some(3),
                exceeded: true,
                score: 10,
                ..slice(0, 2_000)
            },
            slice(10_000, 500),
        ];
        let sampling = SamplingInfo { after_ns: 1_000, interval_ns: 500 };
        let (events, counts) = events(trace(slices, sampling), &options(Tracks::Thread));
        let of = |ph: &str| events.iter().filter(|e| e["ph"] == ph).cloned().collect::<Vec<_>>();
        let complete = of("X");
        // Two slices, and the first is a stall of its own (2 µs over a 1 µs threshold).
        assert_eq!(complete.len(), 3, "{complete:?}");
        assert_eq!((complete[0]["name"].as_str(), complete[0]["ts"].as_f64()), (Some("handler"), Some(5.0)));
        assert_eq!(complete[0]["dur"].as_f64(), Some(2.0));
        assert_eq!(complete[0]["args"], serde_json::json!({"task": "Task-1", "score": 10, "overran": true}));
        assert_eq!(complete[1]["ts"].as_f64(), Some(15.0));
        assert_eq!((complete[2]["cat"].as_str(), complete[2]["ts"].as_f64()), (Some("stall"), Some(5.0)));
        let instants = of("i");
        assert_eq!(instants[0]["name"], "open");
        assert_eq!(instants[0]["ts"].as_f64(), Some(5.3));
        assert_eq!(instants[0]["args"]["stack"], serde_json::json!(["/srv/app.py:7:get"]));
        assert_eq!(instants[0]["args"]["args"], "/etc/hosts");
        let samples: Vec<f64> = instants[1..].iter().map(|e| e["ts"].as_f64().unwrap()).collect();
        assert_eq!(samples, [6.0, 6.5]);
        assert_eq!(instants[1]["name"], "get");
        let meta = of("M");
        let names: Vec<&str> = meta.iter().map(|e| e["args"]["name"].as_str().unwrap_or("")).collect();
        assert!(names.contains(&"app.py [v1]") && names.contains(&"loop thread 1"), "{names:?}");
        assert_eq!((counts.slices, counts.events, counts.samples, counts.stalls), (2, 1, 2, 1));
    }

    #[test]
    fn short_slices_and_the_window_are_left_out_and_tasks_get_tracks() {
        let slices = vec![SliceRecord { task: Some(3), ..slice(0, 2_000) }, slice(10_000, 500), slice(10_000, 800)];
        let mut options = options(Tracks::Task);
        options.min_ns = 600;
        options.until_ns = 25_000 + 5_000;
        let (events, counts) = events(trace(slices, SamplingInfo::default()), &options);
        let slices: Vec<_> = events.iter().filter(|e| e["ph"] == "X" && e["cat"] != "stall").collect();
        assert_eq!(slices.len(), 2);
        assert_eq!(slices[0]["tid"].as_u64(), Some(u64::from(FIRST_TASK_TID)));
        assert_eq!(slices[1]["tid"].as_u64(), Some(1));
        assert_eq!((counts.slices, counts.short_slices), (3, 1));
        assert!(events.iter().any(|e| e["name"] == "thread_name" && e["args"]["name"] == "Task-1"));
    }

    #[test]
    fn an_empty_timeline_is_still_json() {
        let mut out = Vec::new();
        JsonSink::new(&mut out, "out").finish().unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(json["traceEvents"], serde_json::json!([]));
    }
}
