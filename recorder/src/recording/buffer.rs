//! The slice buffer: where the hot path leaves described slices for the
//! writer thread.
//!
//! Place in the flow (record -> trace file): after a slice is described,
//! before the writer turns it into a chunk. `record_slice`, called after
//! every recorded callback with the slice described (`crate::describe`),
//! appends a small `PendingSlice` (ids and
//! numbers; strings only for the arguments of blocking events) to a bounded
//! buffer under a lock held for a push; the few slices with more to say
//! (blocking events, samples, context) append a `SliceDetail` to a second
//! vector. Nothing the hot path allocates per slice is freed by the writer:
//! memory one thread allocates and another frees misses the allocator's
//! per-thread caches, which cost more than the rest of a slice.
//!
//! The writer wakes every flush interval, or early when the buffer is half
//! full, and swaps the buffer with the one it wrote last time, emptied (in
//! a steady state neither side allocates). If the writer falls behind and
//! the buffer is full, slices are dropped and counted, never waited for.

use crate::stacks::StackId;
use aiocop_trace::records::SampleTime;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// A slice as the monitor hands it to the recording, described (see
/// `crate::describe`): ids and numbers only.
#[derive(Clone, Copy)]
pub struct DescribedSlice {
    pub start_ns: u64,
    pub duration_ns: u64,
    /// The shared string id of what ran.
    pub what: u32,
    /// The task's token (see `registry::announce_task`), or `NO_TASK`.
    pub task: u32,
    pub thread: u32,
    pub exceeded: bool,
    /// When its callback became ready (`crate::task_timing`; 0: unknown).
    pub ready_ns: u64,
    /// Why: one of the `READY_*` constants.
    pub ready_since: u8,
}

/// A slice as the hot path leaves it for the writer: 40 bytes; the rest,
/// for the slices that have more, in `Buffer::details`. A `DescribedSlice`
/// with `has_detail` beside it, flat: nested, its padding would not be
/// reused and each buffered slice would take 40 bytes.
#[derive(Clone, Copy)]
pub(super) struct PendingSlice {
    pub start_ns: u64,
    pub duration_ns: u64,
    pub what: u32,
    /// The task's token (see `registry::announce_task`), or `NO_TASK`.
    pub task: u32,
    pub thread: u32,
    pub exceeded: bool,
    /// Its detail is the next one in `Buffer::details`.
    pub has_detail: bool,
    pub ready_since: u8,
    pub ready_ns: u64,
}

const _: () = assert!(std::mem::size_of::<PendingSlice>() == 40);

impl PendingSlice {
    #[inline]
    fn new(slice: DescribedSlice, has_detail: bool) -> Self {
        let DescribedSlice { start_ns, duration_ns, what, task, thread, exceeded, ready_ns, ready_since } = slice;
        Self { start_ns, duration_ns, what, task, thread, exceeded, has_detail, ready_since, ready_ns }
    }
}

/// What only slices that did blocking I/O, were sampled, overran or carry
/// context have.
#[derive(Default)]
pub struct SliceDetail {
    /// Inline for the usual one event, so such a slice costs one allocation.
    pub events: smallvec::SmallVec<[DescribedEvent; 1]>,
    pub dropped_events: u32,
    /// Of the dropped events, those an allow-list allowed.
    pub allowed_dropped_events: u32,
    pub score: i64,
    pub samples: Vec<StackId>,
    /// When each of `samples` was taken, if they are recording's own.
    pub sample_times: Vec<SampleTime>,
    /// The loop thread's CPU time over each of those samples' waits.
    pub sample_cpu: Vec<u64>,
    /// Redacted (key, value) pairs, if the recording keeps context.
    pub context: Vec<(String, String)>,
    /// The shared string id of the route of the request the slice served
    /// (`crate::routes`), recorded as its context value `route`.
    pub route: Option<u32>,
    /// The routes of the requests routed during the slice, each recorded
    /// as a context value `route.start`.
    pub requests_started: RouteIds,
    /// The slice is the first step of a task created while recording.
    pub created: Option<TaskCreation>,
    /// The slice is the last step of a task, which ended so (`TASK_*`).
    pub ended: Option<u8>,
    /// The slice is the first of an eager task, whose first step ran this
    /// long inside its creator's slice (format 1.5).
    pub eager_first_step_ns: Option<u64>,
    /// Eager tasks that ended in their first step, inside this slice.
    pub ended_eagerly: Vec<EndedEagerly>,
}

/// An eager first step, as the task's constructor ran it (`crate::eager_tasks`).
#[derive(Clone, Copy, Debug)]
pub struct EagerStart {
    /// When `create_task` was called, on `clock::now_ns`'s scale.
    pub created_ns: u64,
    /// How long the constructor (the step) took.
    pub ran_ns: u64,
    /// The address of the task running when it was created (0: none).
    pub parent: usize,
}

/// A task that ended in its eager first step, told with the slice it ran in.
#[derive(Clone, Copy, Debug)]
pub struct EndedEagerly {
    pub start: EagerStart,
    /// A shared string id: its coroutine's qualname.
    pub what: u32,
    /// One of the `TASK_*` constants.
    pub outcome: u8,
}

/// A task's creation, told with its first step.
#[derive(Clone, Copy, Debug)]
pub struct TaskCreation {
    /// When its first step was scheduled, on `clock::now_ns`'s scale.
    pub created_ns: u64,
    /// The token of the task running then (`NO_TASK`: none or unknown).
    pub parent: u32,
}

/// Shared string ids of routes: those of the requests routed in one slice
/// (one, almost always).
pub type RouteIds = smallvec::SmallVec<[u32; 1]>;

/// One blocking event of a slice, described.
pub struct DescribedEvent {
    /// Its index in the event table.
    pub event: u16,
    /// A shared string id: its arguments, redacted.
    pub args: u32,
    /// When, from the start of the slice.
    pub offset_ns: u64,
    pub stack: Option<StackId>,
    /// A shared string id: the identity of the allow-list entry that
    /// allowed it, if one did.
    pub allowed_by: Option<u32>,
}

/// One poll of a stock asyncio loop's selector: where a loop iteration
/// began and how long the loop waited for I/O in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingPoll {
    pub start_ns: u64,
    pub wait_ns: u64,
    pub thread: u32,
    /// The slices buffered before it: it goes in the chunk with the slice
    /// at this index (or the last chunk, if none).
    pub after_slices: u32,
}

#[derive(Default)]
pub(super) struct Buffer {
    slices: Vec<PendingSlice>,
    /// Polls, in the order they ended, with where they fall among `slices`.
    polls: Vec<PendingPoll>,
    /// The details of the slices with `has_detail`, in the same order.
    details: Vec<SliceDetail>,
    dropped: u64,
    stop: bool,
}

/// Slices the buffer has room for from the start (8 MiB of address space,
/// resident only as slices fill it), so that the first flush interval of a
/// recording does not grow it on the hot path: a loop makes up to about
/// 400,000 slices a second, and each doubling copies the buffer.
pub(super) const INITIAL_BUFFER_SLICES: usize = 1 << 18;
/// Polls the buffer has room for from the start: a loop under load polls
/// once every few slices.
pub(super) const INITIAL_BUFFER_POLLS: usize = 1 << 16;

static BUFFER: Mutex<Buffer> =
    Mutex::new(Buffer { slices: Vec::new(), polls: Vec::new(), details: Vec::new(), dropped: 0, stop: false });

static WAKE_WRITER: Condvar = Condvar::new();
static MAX_BUFFERED: AtomicUsize = AtomicUsize::new(1 << 20);

/// Appends one described slice, with its detail if it has one, to the
/// buffer. Never raises, never blocks on the writer.
#[inline]
pub fn record_slice(slice: DescribedSlice, detail: Option<SliceDetail>) {
    let Some(mut buffer) = buffer_with_room() else { return };
    buffer.slices.push(PendingSlice::new(slice, detail.is_some()));
    if let Some(detail) = detail {
        buffer.details.push(detail);
    }
    wake_writer_if_half_full(&buffer);
}

/// Appends one poll of a loop's selector. Never raises, never blocks on
/// the writer; dropped (not counted) when the buffer is full, as a stall
/// then reads as the gap heuristic would cut it.
#[inline]
pub fn record_poll(start_ns: u64, wait_ns: u64, thread: u32) {
    let Ok(mut buffer) = BUFFER.lock() else { return };
    if buffer.polls.len() >= MAX_BUFFERED.load(Relaxed) {
        return;
    }
    let after_slices = buffer.slices.len() as u32;
    buffer.polls.push(PendingPoll { start_ns, wait_ns, thread, after_slices });
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

/// Empties the buffer for a new recording that buffers `max_buffered`
/// slices at most.
pub(super) fn start(max_buffered: usize) {
    if let Ok(mut buffer) = BUFFER.lock() {
        let slices = Vec::with_capacity(INITIAL_BUFFER_SLICES.min(max_buffered));
        *buffer = Buffer { slices, polls: Vec::with_capacity(INITIAL_BUFFER_POLLS), ..Buffer::default() };
    }
    MAX_BUFFERED.store(max_buffered, Relaxed);
}

/// Tells the writer to write what is buffered and stop.
pub(super) fn request_stop() {
    if let Ok(mut buffer) = BUFFER.lock() {
        buffer.stop = true;
    }
    WAKE_WRITER.notify_all();
}

/// What the writer took from the buffer besides the slices.
pub(super) struct Taken {
    /// Slices dropped since the last take.
    pub dropped: u64,
    /// Stop was requested: write these and the footer.
    pub stop: bool,
}

/// Waits for the flush interval (or a full buffer, or a stop), then swaps
/// the buffer's slices and details with the writer's `slices` and
/// `details` (emptied). None if the buffer is unusable, or if `abandoned()`
/// says, under the buffer's lock, that this writer was given up on.
pub(super) fn wait_and_take(
    flush_interval: Duration,
    slices: &mut Vec<PendingSlice>,
    polls: &mut Vec<PendingPoll>,
    details: &mut Vec<SliceDetail>,
    abandoned: impl FnOnce() -> bool,
    taking: impl FnOnce(usize),
) -> Option<Taken> {
    let buffer = BUFFER.lock().ok()?;
    let (mut buffer, _) = WAKE_WRITER
        .wait_timeout_while(buffer, flush_interval, |b| {
            !b.stop && b.slices.len() < wake_writer_at(MAX_BUFFERED.load(Relaxed))
        })
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if abandoned() {
        return None; // the buffer may be a newer recording's
    }
    taking(buffer.slices.len());
    std::mem::swap(&mut buffer.slices, slices);
    std::mem::swap(&mut buffer.polls, polls);
    std::mem::swap(&mut buffer.details, details);
    Some(Taken { dropped: std::mem::take(&mut buffer.dropped), stop: buffer.stop })
}

/// Empties the buffer for a stop that gave up on its writer; `abandon` runs
/// under the buffer's lock, so that the writer never takes a newer
/// recording's slices once it wakes. Returns the slices buffered or
/// dropped and not written.
pub(super) fn abandon(abandon: impl FnOnce()) -> u64 {
    match BUFFER.lock() {
        Ok(mut buffer) => {
            abandon();
            let buffered = buffer.slices.len() as u64 + std::mem::take(&mut buffer.dropped);
            buffer.slices.clear();
            buffer.polls.clear();
            buffer.details.clear();
            buffered
        }
        Err(_) => {
            abandon();
            0
        }
    }
}

/// The buffer's lock, held across a fork (see `fork`).
pub(super) fn hold_for_fork() -> MutexGuard<'static, Buffer> {
    BUFFER.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
