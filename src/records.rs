//! What a trace holds: its header, the records of monitored callback slices
//! with their blocking events, the interned strings, frames and stacks they
//! refer to, and the footer.
//!
//! Every id (string, frame, stack) is defined once per file, in the first
//! chunk that uses it, before or together with the records that refer to it.
//! Timestamps inside a chunk are deltas, so that the varint encoding keeps a
//! pure `await asyncio.sleep(0)` slice to a few bytes.
//!
//! bincode is not self-describing: any change to these structs must bump
//! `FORMAT_MAJOR` (see `format.rs`), and the golden-bytes test pins them.

use serde::{Deserialize, Serialize};

/// Names a string defined in a chunk (`Chunk::strings`).
pub type StringId = u32;
/// Names a frame defined in a chunk (`Chunk::frames`).
pub type FrameId = u32;
/// Names a stack defined in a chunk (`Chunk::stacks`).
pub type StackId = u32;

/// Written once, first in the file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct TraceHeader {
    /// The version of aiocop that recorded.
    pub aiocop_version: String,
    /// The Python that ran the program (`"3.11.7"`).
    pub python_version: String,
    /// The platform the program ran on.
    pub platform: String,
    /// The host name (empty when redacted).
    pub host: String,
    /// The recording process's id.
    pub pid: u32,
    /// The program's command line (empty when redacted).
    pub argv: Vec<String>,
    /// Wall clock at the start, nanoseconds since the Unix epoch.
    pub start_unix_ns: u64,
    /// The monotonic clock at the start; slice times count from here.
    pub start_monotonic_ns: u64,
    /// Names the release or build recorded (`"v1.4.2"`, a git sha).
    pub label: Option<String>,
    /// The slow-callback threshold in force, in nanoseconds.
    pub threshold_ns: u64,
    /// Frames kept per captured stack at most.
    pub trace_depth: u32,
    /// The audited events and their weights in force, in event-index order,
    /// so that a trace can be re-scored offline.
    pub event_table: Vec<EventSpec>,
    /// Whether context provider values were recorded.
    pub records_context: bool,
    /// Since format 1.1: who wrote the trace (defaults in a 1.0 trace).
    pub process: Appended<ProcessInfo>,
    /// Since format 1.1: how recording sampled stacks (zeros in a 1.0 trace,
    /// or with recording's sampling off).
    pub sampling: Appended<SamplingInfo>,
    /// Since format 1.2: whether secrets were kept out of the trace
    /// (not redacted in older traces).
    pub redaction: Appended<Redaction>,
}

/// What `--redact` kept out of a trace (format 1.2).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct Redaction {
    /// Recorded with `--redact`: `argv` and the root command reduced to the
    /// program's name, `sys.path` and the host name left empty, each
    /// event's argument summary replaced by a hash (keyed per recording, so
    /// equal arguments still group within one trace but cannot be guessed
    /// back), and context values left out but for `kept_context_keys`.
    pub redacted: bool,
    /// The context keys whose values were still recorded.
    pub kept_context_keys: Vec<String>,
}

/// Recording's own stack sampling (format 1.1): every slice that ran at
/// least `after_ns` got a sample about every `interval_ns`, each standing
/// for that much of the loop's time. Apart from the monitor's CPU samples
/// of slow slices, whose arming rules are aiocop 1.2.1's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct SamplingInfo {
    /// 0: recording did not sample.
    pub after_ns: u64,
    /// Time each sample stands for, in nanoseconds.
    pub interval_ns: u64,
}

/// Which process of a deployment wrote a trace (format 1.1).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct ProcessInfo {
    /// The parent's pid when recording started (0: unknown).
    pub parent_pid: u32,
    /// The command line of the process the user started (`uvicorn app:app
    /// --workers 2`), which a worker's own `argv` does not tell.
    pub root_command: Vec<String>,
    /// How the process came to record: `main` (started by the user),
    /// `fork child`, `spawn child` (multiprocessing spawn), `forkserver`
    /// and `forkserver child` (multiprocessing forkserver), `subprocess` (a
    /// Python program another recorded process ran), or empty when unknown.
    pub role: String,
    /// The process's `sys.path` when recording started, so that paths can be
    /// shown relative to the entry they were imported from.
    pub sys_path: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
/// One audited event of the header's event table.
pub struct EventSpec {
    /// The audit event's name.
    pub name: String,
    /// The weight it added to a slice's score.
    pub weight: i64,
}

/// A source location: file, line and function, as string ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct Frame {
    /// The source file's path.
    pub file: StringId,
    /// The line being run.
    pub line: i32,
    /// The function's name.
    pub function: StringId,
}

/// One independently decodable unit of the file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct Chunk {
    /// Ids first used in this chunk, with their values.
    pub strings: Vec<(StringId, String)>,
    /// Frames first used in this chunk.
    pub frames: Vec<(FrameId, Frame)>,
    /// Frames innermost first.
    pub stacks: Vec<(StackId, Vec<FrameId>)>,
    /// Start of the first slice, nanoseconds after the header's
    /// `start_monotonic_ns`; each slice's `start_delta_ns` counts from the
    /// previous slice's start.
    pub base_offset_ns: u64,
    /// The slices, in the order they were recorded.
    pub slices: Vec<SliceRecord>,
    /// Slices dropped (not recorded) since the previous chunk, because the
    /// writer fell behind.
    pub dropped_slices: u64,
    /// Since format 1.1: the module and qualified name of the frames this
    /// chunk defines (a frame defined by a 1.0 writer has none). After the
    /// slices, where a 1.0 reader ignores it.
    pub frame_names: Appended<Vec<(FrameId, FrameName)>>,
    /// Since format 1.3: when recording's samples were asked for and taken,
    /// so that each weighs the time it stands for (`crate::weights`). After
    /// the frame names, where a 1.2 reader ignores it.
    pub sample_timing: Appended<SampleTiming>,
    /// Since format 1.3: the blocking events an allow-list allowed (none in
    /// an older chunk, or without an allow-list).
    pub allowed: Appended<AllowedEvents>,
    /// Since format 1.3: where each loop iteration of this chunk's time
    /// began and how long the loop waited for I/O in it (empty in older
    /// traces, and for loops whose iterations are not visible: uvloop).
    pub loop_iterations: Appended<LoopIterations>,
    /// Since format 1.4: how long each slice waited for the loop once
    /// ready, and which tasks began and ended in this chunk (empty in older
    /// traces).
    pub task_timing: Appended<TaskTiming>,
    /// Since format 1.4: how long the loop thread ran on a CPU while each
    /// of recording's samples waited to be taken (empty in older traces).
    pub sample_cpu: Appended<SampleCpu>,
    /// Since format 1.5: eager tasks (3.12+), whose first step ran inside
    /// the `create_task` that made them (empty in older traces).
    pub eager_tasks: Appended<EagerTasks>,
}

/// Eager tasks of a chunk (format 1.5). An eager task's first step runs at
/// once inside `create_task`, within its creator's slice: that step has no
/// slice of its own, and its time is in its creator's (the loop's time is
/// not counted twice). A task that ends in that step has no slice at all.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct EagerTasks {
    /// Eager tasks that suspended in their first step, with their next
    /// slice (its creation is in `TaskTiming::created` with that slice).
    pub first_steps: Vec<EagerFirstStep>,
    /// Eager tasks that ended in their first step, in slice order.
    pub ended: Vec<EagerTask>,
}

/// The eager first step of a task that then suspended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct EagerFirstStep {
    /// The index in the chunk's `slices` of the task's first slice (its
    /// second step, or a wake-up).
    pub slice: u32,
    /// How long the eager first step ran (from `create_task` being called
    /// to its return), inside its creator's slice.
    pub ran_ns: u64,
}

/// A task that ended in its eager first step: it has no slice of its own.
/// Its creator's slice (`slice`) tells its thread, its parent (that slice's
/// task) and its route (that slice's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct EagerTask {
    /// The index in the chunk's `slices` of the slice it ran in.
    pub slice: u32,
    /// When it was created, from that slice's start.
    pub created_offset_ns: u64,
    /// Its whole life, the eager step.
    pub ran_ns: u64,
    /// Its coroutine's qualname, as `SliceRecord::what` names a step.
    pub what: StringId,
    /// One of the `TASK_*` constants.
    pub outcome: u8,
}

/// Task timing of a chunk (format 1.4): each slice's ready-wait (the loop
/// lag it met), and the tasks whose first or last step is among its slices.
///
/// A task's wall time is from its creation to the end of its last step;
/// its slices' durations are its time on the loop, their ready-waits its
/// time ready but waiting for the loop, the rest its time waiting for I/O
/// or other tasks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct TaskTiming {
    /// One per slice, in slice order; empty when the recording did not
    /// time readiness.
    pub ready: Vec<ReadyWait>,
    /// Tasks whose first step is a slice of this chunk.
    pub created: Vec<TaskCreated>,
    /// Tasks whose last step is a slice of this chunk.
    pub ended: Vec<TaskEnded>,
}

/// How long a slice's callback waited between becoming ready and running.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct ReadyWait {
    /// Nanoseconds from ready to the slice's start (0 if `since` is unknown).
    pub wait_ns: u64,
    /// What made it ready: one of the `READY_*` constants.
    pub since: u8,
}

/// Unknown: the callback was scheduled before the loop was watched, or
/// from another thread on a loop whose polls are not seen (uvloop).
pub const READY_UNKNOWN: u8 = 0;
/// `call_soon` (a task's step, a future's callback): ready when scheduled.
pub const READY_SCHEDULED: u8 = 1;
/// A timer (`call_later`, `call_at`, `asyncio.sleep`): ready when due.
pub const READY_TIMER: u8 = 2;
/// An I/O callback or a callback queued from another thread: ready at the
/// latest when the loop's poll of its iteration ended.
pub const READY_POLL: u8 = 3;

/// A task's creation, recorded with its first step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct TaskCreated {
    /// The index in the chunk's `slices` of the task's first step.
    pub slice: u32,
    /// From the creation (its first step scheduled) to that step's start.
    pub created_before_ns: u64,
    /// The task (its `SliceRecord::task` string) that was running when it
    /// was created, if one was and it had a slice in the trace.
    pub parent: Option<StringId>,
}

/// A task's end, at the end of its last step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct TaskEnded {
    /// The index in the chunk's `slices` of the task's last step.
    pub slice: u32,
    /// One of the `TASK_*` constants.
    pub outcome: u8,
}

/// The task returned.
pub const TASK_DONE: u8 = 0;
/// The task was cancelled.
pub const TASK_CANCELLED: u8 = 1;
/// The task raised an exception.
pub const TASK_RAISED: u8 = 2;

/// When the samples of a chunk's slices were taken (format 1.3): only for
/// slices whose samples are recording's own (the monitor's carry no time).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct SampleTiming {
    /// In slice order; a slice not listed has untimed samples.
    pub slices: Vec<SliceSampleTimes>,
}

impl SampleTiming {
    /// The times of the samples of slice `index` of the chunk (empty: untimed).
    pub fn of_slice(&self, index: usize) -> &[SampleTime] {
        match self.slices.binary_search_by_key(&index, |timed| timed.slice as usize) {
            Ok(found) => &self.slices[found].times,
            Err(_) => &[],
        }
    }
}

/// The times of one slice's samples, one per sample in `samples` order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct SliceSampleTimes {
    /// The slice's index in its chunk's `slices`.
    pub slice: u32,
    /// One per sample, in the order of the slice's `samples`.
    pub times: Vec<SampleTime>,
}

/// When one sample was taken, and how long its request waited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct SampleTime {
    /// From the slice's start to the moment the stack was read.
    pub taken_offset_ns: u64,
    /// From the watchdog asking for the sample to it being taken: the loop
    /// thread runs the request at its next eval-breaker check, which C code
    /// holding the GIL delays (see `crate::weights::waited_in_native_code`).
    pub waited_ns: u64,
}

/// How long the loop thread ran on a CPU while each of recording's samples
/// waited (format 1.4), for the slices listed in `SampleTiming`. A request
/// waits for the loop thread's next eval-breaker check: a thread that ran
/// all along ran C code holding the GIL; one that did not run was waiting
/// for a CPU (a loaded machine) or for I/O with the GIL released. Only the
/// first is native code (`crate::weights::waited_in_native_code`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct SampleCpu {
    /// In slice order; a slice not listed has no CPU times.
    pub slices: Vec<SliceSampleCpu>,
}

impl SampleCpu {
    /// The CPU times of the samples of slice `index` of the chunk (empty: none).
    pub fn of_slice(&self, index: usize) -> &[u64] {
        match self.slices.binary_search_by_key(&index, |timed| timed.slice as usize) {
            Ok(found) => &self.slices[found].ran_ns,
            Err(_) => &[],
        }
    }
}

/// The CPU times of one slice's samples, one per sample in `samples` order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct SliceSampleCpu {
    /// The slice's index in its chunk's `slices`.
    pub slice: u32,
    /// For each sample: the loop thread's CPU time from the request
    /// reaching it (the watchdog asking; with the GIL, the switch interval
    /// later, when the holder is asked to drop it) to the sample.
    pub ran_ns: Vec<u64>,
}

/// Which blocking events of a chunk's slices an allow-list allowed
/// (format 1.3). They are recorded like any other; this marks them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct AllowedEvents {
    /// The allowed events among the slices' kept `events`.
    pub kept: Vec<AllowedEvent>,
    /// (slice index in the chunk, allowed events among its dropped ones).
    pub dropped: Vec<(u32, u32)>,
}

impl AllowedEvents {
    /// Whether nothing was allowed.
    pub fn is_empty(&self) -> bool {
        self.kept.is_empty() && self.dropped.is_empty()
    }
}

/// One allowed event: where it is in the chunk, and by which entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct AllowedEvent {
    /// The slice's index in the chunk's `slices`.
    pub slice: u32,
    /// The event's index in that slice's `events`.
    pub event: u32,
    /// The allowing entry's identity as written (`alembic.*`,
    /// `myapp.config:load_settings`).
    pub entry: StringId,
}

/// The loop iterations a chunk covers (format 1.3): one record per call of
/// a stock asyncio loop's selector (`BaseEventLoop._run_once` polls it
/// once per iteration, then runs the callbacks that were ready). Between
/// two polls of one thread, the loop ran callbacks without waiting: a
/// stall is an iteration whose callbacks ran at least the threshold.
///
/// The recorder puts each poll in the chunk that holds the slices around
/// it: a poll comes after every slice of its thread that started before it
/// in this chunk or earlier ones, and before every later one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct LoopIterations {
    /// Start of the first poll, nanoseconds after the header's
    /// `start_monotonic_ns`; each poll's `start_delta_ns` counts from the
    /// previous poll's start (in the chunk, any thread).
    pub base_offset_ns: u64,
    /// The polls, in the order they started.
    pub polls: Vec<PollRecord>,
    /// Every thread whose loop's polls the recording has seen so far, this
    /// chunk's included: between two polls of such a thread, its slices
    /// are one iteration, even in a chunk that lists none of its polls (one
    /// long iteration).
    pub polling_threads: Vec<u32>,
}

/// One loop iteration's poll for I/O (the selector's `select`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct PollRecord {
    /// From the previous poll's start (or `LoopIterations::base_offset_ns`).
    pub start_delta_ns: u64,
    /// How long the selector waited: the loop's idle time in the iteration.
    pub wait_ns: u64,
    /// The per-file number of the loop's thread, as in `SliceRecord::thread`.
    pub thread: u32,
}

/// What names a frame's function across releases, where lines and paths
/// move (format 1.1).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, bincode::Encode, bincode::Decode,
)]
pub struct FrameName {
    /// `__name__` of the frame's globals (`shop.views`).
    pub module: StringId,
    /// The code's `co_qualname` (`CartView.total`).
    pub qualname: StringId,
}

/// One monitored callback run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct SliceRecord {
    /// From the previous slice's start (or the chunk's base for the first).
    pub start_delta_ns: u64,
    /// How long the callback ran.
    pub duration_ns: u64,
    /// What ran: the coroutine's qualname for a task step, the callback's
    /// qualname otherwise.
    pub what: StringId,
    /// The task's name, for a task's steps; `None` for other callbacks.
    pub task: Option<StringId>,
    /// A small per-file number for the thread that ran the slice.
    pub thread: u32,
    /// It ran at least the header's `threshold_ns`.
    pub exceeded: bool,
    /// Its blocking events, the first 50 kept.
    pub events: Vec<EventRecord>,
    /// Blocking events past the kept ones (50 per slice), counted only.
    pub dropped_events: u32,
    /// Weight of every blocking event of the slice, kept or dropped.
    pub score: i64,
    /// CPU samples taken during the slice.
    pub samples: Vec<StackId>,
    /// Context provider values, as strings (only when enabled).
    pub context: Vec<(StringId, StringId)>,
}

/// One blocking event inside a slice.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct EventRecord {
    /// Index into the header's `event_table`.
    pub event: u16,
    /// A short summary of the arguments (`open(/etc/hosts, r, 524288)`
    /// shows `/etc/hosts, r, 524288`).
    pub args: StringId,
    /// From the slice's start.
    pub offset_ns: u64,
    /// Where it was raised (`u32::MAX`: no stack captured).
    pub stack: StackId,
}

/// Data a later minor version appended at the end of a payload: decoded
/// when the payload has bytes left, the default when it ends first (a
/// payload of an earlier minor version).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appended<T>(pub T);

impl<T> std::ops::Deref for Appended<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> std::ops::DerefMut for Appended<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: bincode::Encode> bincode::Encode for Appended<T> {
    fn encode<E: bincode::enc::Encoder>(&self, encoder: &mut E) -> Result<(), bincode::error::EncodeError> {
        self.0.encode(encoder)
    }
}

impl<Context, T: bincode::Decode<Context> + Default> bincode::Decode<Context> for Appended<T> {
    fn decode<D: bincode::de::Decoder<Context = Context>>(
        decoder: &mut D,
    ) -> Result<Self, bincode::error::DecodeError> {
        use bincode::de::read::Reader;
        if decoder.reader().peek_read(1).is_none() {
            return Ok(Appended(T::default()));
        }
        T::decode(decoder).map(Appended)
    }
}

impl<'de, Context, T: bincode::Decode<Context> + Default> bincode::BorrowDecode<'de, Context> for Appended<T> {
    fn borrow_decode<D: bincode::de::BorrowDecoder<'de, Context = Context>>(
        decoder: &mut D,
    ) -> Result<Self, bincode::error::DecodeError> {
        bincode::Decode::decode(decoder)
    }
}

/// Written last by a clean stop; a file cut short by a crash has none.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct TraceFooter {
    /// Slices written.
    pub slices: u64,
    /// Blocking events written.
    pub events: u64,
    /// Slices dropped, over the whole recording.
    pub dropped_slices: u64,
    /// Chunks written.
    pub chunks: u64,
    /// Monotonic clock at the stop, nanoseconds after `start_monotonic_ns`.
    pub end_offset_ns: u64,
}
