//! The first stage: each chunk of a file, on any thread, folded into a
//! partial aggregate keyed by ids, never by text.
//!
//! A chunk alone has ids but maybe not their text (each id is defined once
//! per file, in the first chunk that uses it), so slices are aggregated by
//! their *signature* ([`crate::signature`]): the sorted `(event, stack)` pairs of their blocking
//! events, whether they ran over the threshold, and, for `--by task` and
//! `--by context:KEY`, the string id that keys them. Slices with the same
//! signature resolve to the same keys with the same scores, so keeping a
//! count, their elapsed times and one example per signature is enough for
//! [`crate::resolve`] to compute every group exactly once the file's
//! dictionary is whole, however the chunks were split between threads.
//! The number of signatures grows with the program's code paths, not with
//! the trace's length.
//!
//! CPU-blocking slices (over the threshold, no blocking event) are keyed by
//! their most frequent CPU sample's stack (the first of the most frequent,
//! in sample order).
//!
//! Every slice in the window also gives its time to the loop's
//! ([`crate::loop_time`]) and is followed by a [`StallTracker`]
//! ([`crate::stalls`]): a pure slice costs an add in a table and a
//! comparison with the previous slice's end.

use crate::durations::Durations;
use crate::group::NO_STACK;
use crate::loop_time::LoopAggregate;
use crate::signature::{CpuSignature, IoSignature, IoSignatureRef, SampleSignature, SignatureMap, Slot};
use crate::stalls::{ChunkRuns, StallOptions, StallTracker};
use aiocop_trace::records::{AllowedEvents, Chunk, LoopIterations, SampleTime, SliceRecord, StackId, StringId};
use aiocop_trace::{Dictionary, PureSlice, ReadError, SliceVisitor, TraceFile};
use rayon::prelude::*;
use std::collections::BTreeMap;

/// What, besides the events, keys a slice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extra {
    None,
    /// `--by task`: the slice's `what`.
    What,
    /// `--by context:KEY`: the value of the key with this string id (the
    /// file defines the key once; `None` if it never does).
    Context(Option<StringId>),
}

/// How slices are taken in.
#[derive(Clone, Copy, Debug)]
pub struct ChunkOptions {
    pub extra: Extra,
    /// `--threshold-ms`: re-evaluates `exceeded`; `None` keeps the recorded flag.
    pub threshold_ns: Option<u64>,
    /// Slices starting in `[since_ns, until_ns)` after the trace's start count.
    pub since_ns: u64,
    pub until_ns: u64,
    /// `--long-ms`: slices at least this long are the ones a stack should explain.
    pub long_ns: u64,
    /// The `import` event's index in the file's event table: its argument
    /// (the module imported) is part of a signature, so that a lazy import's
    /// row can name it.
    pub import_event: Option<u16>,
    pub stalls: StallOptions,
    /// The trace's format may list loop iterations (1.3 and later): stalls
    /// are cut at polls where a chunk lists them.
    pub iterations_possible: bool,
    /// Keep the loop's busy time per [`BUSY_BUCKET_NS`] of the trace (the
    /// HTML report's chart); off, it costs a slice one predictable branch.
    pub busy_series: bool,
    /// Recording's sampling interval (the header's): a sample whose request
    /// waited over twice this long was in native code.
    pub sample_interval_ns: u64,
}

/// The busy time over a trace is kept per this many nanoseconds of it.
pub const BUSY_BUCKET_NS: u64 = 100_000_000;

impl Default for ChunkOptions {
    fn default() -> Self {
        ChunkOptions {
            extra: Extra::None,
            threshold_ns: None,
            since_ns: 0,
            until_ns: u64::MAX,
            long_ns: (crate::loop_time::DEFAULT_LONG_MS * 1e6) as u64,
            import_event: None,
            stalls: StallOptions::default(),
            iterations_possible: false,
            busy_series: false,
            sample_interval_ns: 0,
        }
    }
}

/// Buffers reused from one slice to the next.
#[derive(Debug, Default)]
struct Scratch {
    /// `(event, stack, args)` of a slice's events, sorted by event and stack.
    events: Vec<(u16, StackId, StringId)>,
    /// The same, without the arguments: the signature's events.
    pairs: Vec<(u16, StackId)>,
    /// The arguments of its `import` events.
    imports: Vec<StringId>,
}

#[derive(Clone, Debug)]
pub struct IoStats {
    pub slices: u64,
    pub durations: Durations,
    /// The time of those of them at least `--long-ms` long.
    pub long_ns: u64,
    /// The earliest slice: its start and its events' argument ids, in
    /// signature order.
    pub example_start_ns: u64,
    pub example_args: Box<[StringId]>,
}

#[derive(Clone, Debug)]
pub struct CpuStats {
    pub slices: u64,
    pub samples: u64,
    pub durations: Durations,
    pub first_start_ns: u64,
}

/// Counts that need no key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Slices in the time window.
    pub slices: u64,
    /// Of those, over the (possibly re-evaluated) threshold.
    pub exceeded: u64,
    /// Slices the recorder dropped (it fell behind): they have no time, so
    /// the window does not apply to them.
    pub dropped_slices: u64,
    /// Blocking events past the 50 kept per slice, in window slices.
    pub dropped_events: u64,
    /// The start of the first slice and the end of the last, of all slices
    /// whatever the window, from the trace's start.
    pub first_start_ns: Option<u64>,
    pub last_end_ns: u64,
    pub chunks_read: u64,
    /// The time of the slices in the window: the loop's busy time.
    pub busy_ns: u64,
    /// Of that, in slices at least `--long-ms` long.
    pub long_ns: u64,
    /// CPU samples in window slices.
    pub samples: u64,
    /// Blocking events an allow-list allowed (format 1.3), in every slice
    /// read (the time window and `--ignore` do not apply).
    pub allowed: AllowedCounts,
    /// Of those, samples with the time they were taken (format 1.3).
    pub timed_samples: u64,
    /// Of those, samples with the loop thread's CPU time over their wait
    /// (format 1.4): the others are marked native by the wall clock.
    pub cpu_timed_samples: u64,
    /// With [`ChunkOptions::busy_series`]: the busy time per bucket of
    /// [`BUSY_BUCKET_NS`] from the trace's start, as `(bucket, ns)` in the
    /// order slices came (a slice's time split between the buckets it spans).
    pub busy_series: Vec<(u32, u64)>,
}

/// The earlier of two optional start times, either one if the other is unknown.
pub(crate) fn earliest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Counts {
    /// Counts a slice that starts `start_ns` after the trace's start. Returns
    /// whether it ran over the threshold, or `None` if it is outside the
    /// window (then only the trace's time span counts it).
    #[inline(always)]
    fn add_slice(&mut self, start_ns: u64, slice: &SliceRecord, options: &ChunkOptions) -> Option<bool> {
        self.add(start_ns, slice.duration_ns, slice.exceeded, slice.dropped_events, options)
    }

    /// [`Counts::add_slice`] from the fields it needs; `recorded_exceeded`
    /// is the slice's flag, which `--threshold-ms` overrides.
    #[inline(always)]
    fn add(
        &mut self,
        start_ns: u64,
        duration_ns: u64,
        recorded_exceeded: bool,
        dropped_events: u32,
        options: &ChunkOptions,
    ) -> Option<bool> {
        let end_ns = start_ns.saturating_add(duration_ns);
        self.first_start_ns = Some(self.first_start_ns.map_or(start_ns, |s| s.min(start_ns)));
        self.last_end_ns = self.last_end_ns.max(end_ns);
        if start_ns < options.since_ns || start_ns >= options.until_ns {
            return None;
        }
        let exceeded = options.threshold_ns.map_or(recorded_exceeded, |threshold| duration_ns >= threshold);
        self.busy_ns = self.busy_ns.saturating_add(duration_ns);
        if duration_ns >= options.long_ns {
            self.long_ns = self.long_ns.saturating_add(duration_ns);
        }
        self.slices += 1;
        self.exceeded += u64::from(exceeded);
        self.dropped_events += u64::from(dropped_events);
        if options.busy_series {
            self.add_busy(start_ns, duration_ns);
        }
        Some(exceeded)
    }

    /// Adds a slice's time to the buckets it spans.
    #[cold]
    fn add_busy(&mut self, start_ns: u64, duration_ns: u64) {
        let (mut at_ns, end_ns) = (start_ns, start_ns.saturating_add(duration_ns));
        while at_ns < end_ns {
            let bucket = at_ns / BUSY_BUCKET_NS;
            let part_ns = end_ns.min((bucket + 1) * BUSY_BUCKET_NS) - at_ns;
            let bucket = u32::try_from(bucket).unwrap_or(u32::MAX);
            match self.busy_series.last_mut() {
                Some((last, ns)) if *last == bucket => *ns += part_ns,
                _ => self.busy_series.push((bucket, part_ns)),
            }
            at_ns += part_ns;
        }
    }

    fn merge(&mut self, other: &Counts) {
        self.slices += other.slices;
        self.exceeded += other.exceeded;
        self.dropped_slices += other.dropped_slices;
        self.dropped_events += other.dropped_events;
        self.first_start_ns = earliest(self.first_start_ns, other.first_start_ns);
        self.last_end_ns = self.last_end_ns.max(other.last_end_ns);
        self.chunks_read += other.chunks_read;
        self.busy_ns = self.busy_ns.saturating_add(other.busy_ns);
        self.long_ns = self.long_ns.saturating_add(other.long_ns);
        self.samples += other.samples;
        self.allowed.merge(&other.allowed);
        self.timed_samples += other.timed_samples;
        self.cpu_timed_samples += other.cpu_timed_samples;
        self.busy_series.extend_from_slice(&other.busy_series);
    }
}

/// Blocking events an allow-list allowed when they were recorded (format
/// 1.3): counted and shown, never left out of a report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedCounts {
    /// Every allowed event, those past the 50 kept in a slice included.
    pub events: u64,
    /// The kept ones by the identity of the entry that allowed them (a
    /// string id of the file: the chunk defining it may be folded by
    /// another thread, so it is resolved to text with the whole dictionary).
    pub by_entry: BTreeMap<StringId, u64>,
}

impl AllowedCounts {
    /// Counts a chunk's allowed events.
    fn add_chunk(&mut self, allowed: &AllowedEvents) {
        for event in &allowed.kept {
            *self.by_entry.entry(event.entry).or_default() += 1;
        }
        self.events += allowed.kept.len() as u64 + allowed.dropped.iter().map(|&(_, n)| u64::from(n)).sum::<u64>();
    }

    pub fn merge(&mut self, other: &AllowedCounts) {
        self.events += other.events;
        for (entry, count) in &other.by_entry {
            *self.by_entry.entry(*entry).or_default() += count;
        }
    }
}

/// A file's chunks folded together, keyed by its ids.
#[derive(Debug, Default)]
pub struct FileAggregate {
    pub io: SignatureMap<IoSignature, IoStats>,
    pub cpu: SignatureMap<CpuSignature, CpuStats>,
    /// Slices without blocking events, for the loop's time.
    pub loop_time: LoopAggregate,
    /// Each chunk's runs of slices, joined into stalls once all are read.
    pub runs: Vec<ChunkRuns>,
    pub counts: Counts,
    pub dictionary: Dictionary,
    /// Chunks that could not be read, and the error of the first of them.
    pub unreadable: u64,
    pub first_error: Option<(usize, ReadError)>,
    /// The memory limit refused a chunk: the read is over.
    pub over_memory_limit: Option<ReadError>,
    scratch: Scratch,
}

impl FileAggregate {
    /// Reads chunk `index` of `trace` one slice at a time into the aggregate,
    /// or counts its error. A chunk whose payload fails to decode after its
    /// checksum matched (crafted, or written by a buggy writer) keeps the
    /// slices decoded before the error and still counts as unreadable.
    pub fn add_from(&mut self, trace: &TraceFile, index: usize, options: &ChunkOptions) {
        let mut visitor = ChunkVisitor {
            aggregate: self,
            options: *options,
            counts: Counts::default(),
            // Format 1.3's polls come after the slices: held until read.
            stalls: if options.iterations_possible {
                StallTracker::hold(options.stalls)
            } else {
                StallTracker::new(options.stalls)
            },
        };
        let visited = trace.visit_chunk(index, &mut visitor);
        let (counts, stalls) = (visitor.counts, visitor.stalls);
        self.counts.merge(&counts);
        let no_polls = LoopIterations::default();
        let polls = visited.as_ref().map_or(&no_polls, |chunk| &*chunk.loop_iterations);
        self.runs.push(stalls.finish_with(index, polls));
        self.add_definitions_or_error(index, visited);
    }

    /// Adds chunk `index` as read: its slices, or its error.
    pub fn add(&mut self, index: usize, chunk: Result<Chunk, ReadError>, options: &ChunkOptions) {
        match chunk {
            Ok(chunk) => self.add_chunk_at(index, &chunk, options),
            Err(error) => self.add_definitions_or_error(index, Err(error)),
        }
    }

    /// Adds a whole chunk, as decoded.
    /// Adds a whole chunk, as decoded; it counts as the chunk after those
    /// added so far (for joining runs into stalls).
    pub fn add_chunk(&mut self, chunk: &Chunk, options: &ChunkOptions) {
        let index = self.counts.chunks_read as usize + self.unreadable as usize;
        self.add_chunk_at(index, chunk, options);
    }

    /// Adds chunk number `index`, as decoded.
    pub fn add_chunk_at(&mut self, index: usize, chunk: &Chunk, options: &ChunkOptions) {
        let mut start_ns = chunk.base_offset_ns;
        let mut stalls = StallTracker::new(options.stalls);
        stalls.set_polls(&chunk.loop_iterations);
        for (index, slice) in chunk.slices.iter().enumerate() {
            start_ns = start_ns.saturating_add(slice.start_delta_ns);
            if let Some(exceeded) = self.counts.add_slice(start_ns, slice, options) {
                let times = (chunk.sample_timing.of_slice(index), chunk.sample_cpu.of_slice(index));
                let slot = self.add_window_slice(slice, times, start_ns, exceeded, options);
                stalls.add(slice.thread, start_ns, slice.duration_ns, slot);
            }
        }
        self.runs.push(stalls.finish(index));
        self.add_definitions(chunk);
    }

    /// The chunk's definitions and counts, its slices aside.
    fn add_definitions(&mut self, chunk: &Chunk) {
        self.dictionary.add(chunk);
        self.counts.allowed.add_chunk(&chunk.allowed);
        self.counts.chunks_read += 1;
        self.counts.dropped_slices += chunk.dropped_slices;
    }

    fn add_definitions_or_error(&mut self, index: usize, chunk: Result<Chunk, ReadError>) {
        match chunk {
            Ok(chunk) => self.add_definitions(&chunk),
            Err(error) if error.is_over_memory_limit() => {
                self.over_memory_limit.get_or_insert(error);
            }
            Err(error) => {
                self.unreadable += 1;
                if self.first_error.as_ref().is_none_or(|(first, _)| index < *first) {
                    self.first_error = Some((index, error));
                }
            }
        }
    }

    /// Takes a slice in the window that is not pure (a few in a hundred:
    /// kept out of the loop over slices); returns where its time goes.
    /// `times`: when its samples were taken (empty: untimed), and the loop
    /// thread's CPU time over each one's wait (empty: unknown).
    #[inline(never)]
    fn add_window_slice(
        &mut self,
        slice: &SliceRecord,
        (times, cpu_ns): (&[SampleTime], &[u64]),
        start_ns: u64,
        exceeded: bool,
        options: &ChunkOptions,
    ) -> Slot {
        self.counts.samples += slice.samples.len() as u64;
        if times.len() == slice.samples.len() {
            self.counts.timed_samples += times.len() as u64;
            if cpu_ns.len() == times.len() {
                self.counts.cpu_timed_samples += cpu_ns.len() as u64;
            }
        }
        if exceeded || !slice.events.is_empty() {
            if let Some(slot) = self.add_keyed_slice(slice, times, start_ns, exceeded, options) {
                return slot;
            }
        }
        let long = slice.duration_ns >= options.long_ns;
        if slice.samples.is_empty() {
            // `--by context:KEY` (and `route`): a slice with the value is its
            // value's, sampled or not; the others are what ran.
            let ran = match options.extra {
                Extra::Context(_) => self.extra_of(slice, options).unwrap_or(slice.what),
                _ => slice.what,
            };
            self.loop_time.add_ran(ran, slice.duration_ns);
            Slot::Ran(ran)
        } else {
            let extra = self.extra_of(slice, options);
            let signature = SampleSignature::of(
                &slice.samples,
                (times, cpu_ns),
                slice.duration_ns,
                options.sample_interval_ns,
                extra,
            );
            self.loop_time.add_sampled(signature.clone(), start_ns, slice.duration_ns, long);
            Slot::Sampled(signature)
        }
    }

    fn extra_of(&self, slice: &SliceRecord, options: &ChunkOptions) -> Option<StringId> {
        match options.extra {
            Extra::None => None,
            Extra::What => Some(slice.what),
            Extra::Context(key) => {
                key.and_then(|key| slice.context.iter().find(|(k, _)| *k == key).map(|(_, value)| *value))
            }
        }
    }

    /// Keys a slice in the window that did blocking I/O or ran over the
    /// threshold; returns its slot if it did blocking I/O.
    fn add_keyed_slice(
        &mut self,
        slice: &SliceRecord,
        times: &[SampleTime],
        start_ns: u64,
        exceeded: bool,
        options: &ChunkOptions,
    ) -> Option<Slot> {
        let extra = self.extra_of(slice, options);
        if !slice.events.is_empty() {
            let Scratch { events, pairs, imports } = &mut self.scratch;
            events.clear();
            events.extend(slice.events.iter().map(|e| (e.event, e.stack, e.args)));
            // Stable: among equal (event, stack) pairs the example keeps the
            // arguments in the order the slice made the calls.
            events.sort_by_key(|&(event, stack, _)| (event, stack));
            pairs.clear();
            pairs.extend(events.iter().map(|&(event, stack, _)| (event, stack)));
            imports.clear();
            if let Some(import) = options.import_event {
                imports.extend(events.iter().filter(|&&(event, _, _)| event == import).map(|&(_, _, args)| args));
            }
            let args = || events.iter().map(|&(_, _, args)| args).collect();
            let signature = IoSignatureRef { exceeded, extra, what: slice.what, events: pairs, imports };
            let stats = self.io.entry_ref(&signature).or_insert_with(|| IoStats {
                slices: 0,
                durations: Durations::new(),
                long_ns: 0,
                example_start_ns: start_ns,
                example_args: args(),
            });
            stats.slices += 1;
            stats.durations.record(slice.duration_ns);
            if slice.duration_ns >= options.long_ns {
                stats.long_ns = stats.long_ns.saturating_add(slice.duration_ns);
            }
            if start_ns < stats.example_start_ns {
                stats.example_start_ns = start_ns;
                stats.example_args = args();
            }
            return Some(Slot::Io(IoSignature::from(&signature)));
        } else if exceeded {
            let heaviest = heaviest_stack(&slice.samples, times, slice.duration_ns);
            let signature = CpuSignature { stack: heaviest.unwrap_or(NO_STACK), extra };
            let stats = self.cpu.entry(signature).or_insert_with(|| CpuStats {
                slices: 0,
                samples: 0,
                durations: Durations::new(),
                first_start_ns: start_ns,
            });
            stats.slices += 1;
            stats.samples += slice.samples.len() as u64;
            stats.durations.record(slice.duration_ns);
            stats.first_start_ns = stats.first_start_ns.min(start_ns);
        }
        None
    }

    /// Folds `other` (other chunks of the same file) into `self`.
    pub fn merge(mut self, other: FileAggregate) -> FileAggregate {
        for (signature, theirs) in other.io {
            match self.io.entry(signature) {
                hashbrown::hash_map::Entry::Vacant(entry) => {
                    entry.insert(theirs);
                }
                hashbrown::hash_map::Entry::Occupied(mut entry) => {
                    let mine = entry.get_mut();
                    mine.slices += theirs.slices;
                    mine.durations.merge(&theirs.durations);
                    mine.long_ns = mine.long_ns.saturating_add(theirs.long_ns);
                    if theirs.example_start_ns < mine.example_start_ns {
                        mine.example_start_ns = theirs.example_start_ns;
                        mine.example_args = theirs.example_args;
                    }
                }
            }
        }
        for (signature, theirs) in other.cpu {
            match self.cpu.entry(signature) {
                hashbrown::hash_map::Entry::Vacant(entry) => {
                    entry.insert(theirs);
                }
                hashbrown::hash_map::Entry::Occupied(mut entry) => {
                    let mine = entry.get_mut();
                    mine.slices += theirs.slices;
                    mine.samples += theirs.samples;
                    mine.durations.merge(&theirs.durations);
                    mine.first_start_ns = mine.first_start_ns.min(theirs.first_start_ns);
                }
            }
        }
        self.loop_time.merge(other.loop_time);
        self.runs.extend(other.runs);
        self.counts.merge(&other.counts);
        self.dictionary.merge(other.dictionary);
        self.unreadable += other.unreadable;
        self.over_memory_limit = self.over_memory_limit.or(other.over_memory_limit);
        if let Some((index, error)) = other.first_error {
            if self.first_error.as_ref().is_none_or(|(first, _)| index < *first) {
                self.first_error = Some((index, error));
            }
        }
        self
    }
}

/// Folds chunks `0..count` into one value: one accumulator per thread of the
/// current rayon pool, each taking the next chunk that no thread has taken
/// yet. As balanced as work stealing, and there are only as many
/// accumulators to merge as threads (rayon's `fold` makes one per split,
/// and merging two aggregates of thousands of signatures is not free).
pub fn fold_chunks<A: Send>(
    count: usize,
    init: impl Fn() -> A + Sync,
    add: impl Fn(&mut A, usize) + Sync,
    merge: impl Fn(A, A) -> A + Sync,
) -> A {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let workers = rayon::current_num_threads().clamp(1, count.max(1));
    (0..workers)
        .into_par_iter()
        .map(|_| {
            let mut accumulator = init();
            loop {
                let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if index >= count {
                    break accumulator;
                }
                add(&mut accumulator, index);
            }
        })
        .reduce(&init, &merge)
}

/// Takes a chunk's slices into an aggregate: counts them all, keys the few
/// that did blocking I/O or overran.
struct ChunkVisitor<'a> {
    aggregate: &'a mut FileAggregate,
    /// A copy, which the compiler knows no store in the loop can change.
    options: ChunkOptions,
    /// Apart from the aggregate's, so that the loop over a chunk's slices,
    /// which are mostly pure, keeps them in registers.
    counts: Counts,
    stalls: StallTracker,
}

impl SliceVisitor for ChunkVisitor<'_> {
    #[inline(always)]
    fn pure_slice(&mut self, start_ns: u64, slice: PureSlice) {
        match self.counts.add(start_ns, slice.duration_ns, false, 0, &self.options) {
            None => return,
            Some(true) => {
                // Over a threshold given with `--threshold-ms`: CPU-blocking.
                self.aggregate.add_keyed_slice(&slice.to_record(), &[], start_ns, true, &self.options);
            }
            Some(false) => {}
        }
        self.aggregate.loop_time.add_ran(slice.what, slice.duration_ns);
        self.stalls.add_ran(slice.thread, start_ns, slice.duration_ns, slice.what);
    }

    #[inline(always)]
    fn slice(&mut self, start_ns: u64, slice: &SliceRecord) {
        self.timed_slice(start_ns, slice, &[], &[]);
    }

    #[inline(always)]
    fn timed_slice(&mut self, start_ns: u64, slice: &SliceRecord, sample_times: &[SampleTime], sample_cpu: &[u64]) {
        if let Some(exceeded) = self.counts.add_slice(start_ns, slice, &self.options) {
            let times = (sample_times, sample_cpu);
            let slot = self.aggregate.add_window_slice(slice, times, start_ns, exceeded, &self.options);
            self.stalls.add(slice.thread, start_ns, slice.duration_ns, slot);
        }
    }
}

/// The stack of `samples` that stands for the most of a slice of
/// `duration_ns` ([`aiocop_trace::sample_weights`]: the most frequent one
/// when `times` is empty); the first of them in sample order on a tie.
/// Samples per slice are few, and so are the distinct stacks among them.
pub fn heaviest_stack(samples: &[StackId], times: &[SampleTime], duration_ns: u64) -> Option<StackId> {
    let weights = aiocop_trace::sample_weights(duration_ns.max(samples.len() as u64), samples.len(), times);
    let mut totals: Vec<(StackId, u64)> = Vec::new();
    for (&stack, weight) in samples.iter().zip(weights) {
        match totals.iter_mut().find(|(s, _)| *s == stack) {
            Some((_, total)) => *total += weight,
            None => totals.push((stack, weight)),
        }
    }
    // `max_by_key` keeps the last of equal maxima: reverse to keep the first.
    totals.iter().rev().max_by_key(|(_, total)| *total).map(|(stack, _)| *stack)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::SignatureImports;
    use aiocop_trace::records::{AllowedEvent, Appended, EventRecord};

    #[test]
    fn busy_time_is_split_between_the_buckets_a_slice_spans() {
        let options = ChunkOptions { busy_series: true, ..ChunkOptions::default() };
        let mut counts = Counts::default();
        let ms = 1_000_000;
        counts.add(10 * ms, 20 * ms, false, 0, &options);
        counts.add(90 * ms, 250 * ms, false, 0, &options);
        assert_eq!(counts.busy_series, [(0, 30 * ms), (1, 100 * ms), (2, 100 * ms), (3, 40 * ms)]);
        let mut off = Counts::default();
        off.add(10 * ms, 20 * ms, false, 0, &ChunkOptions::default());
        assert!(off.busy_series.is_empty());
    }

    fn event(event: u16, stack: StackId, args: StringId) -> EventRecord {
        EventRecord { event, args, offset_ns: 0, stack }
    }

    fn slice(start_delta_ns: u64, duration_ns: u64, exceeded: bool, events: Vec<EventRecord>) -> SliceRecord {
        SliceRecord { start_delta_ns, duration_ns, exceeded, events, ..SliceRecord::default() }
    }

    #[test]
    fn the_heaviest_sample_is_the_most_frequent_untimed_and_prefers_the_first_on_ties() {
        let most_frequent = |samples: &[StackId]| heaviest_stack(samples, &[], 1_000);
        assert_eq!(most_frequent(&[]), None);
        assert_eq!(most_frequent(&[4, 5, 5, 4]), Some(4));
        assert_eq!(most_frequent(&[4, 5, 5]), Some(5));
        assert_eq!(most_frequent(&[9]), Some(9));
        // Timed: one sample after a 45 ms C call outweighs two quick ones.
        let taken = |offsets: &[u64]| -> Vec<SampleTime> {
            offsets.iter().map(|&taken_offset_ns| SampleTime { taken_offset_ns, waited_ns: 0 }).collect()
        };
        assert_eq!(heaviest_stack(&[4, 5, 5], &taken(&[45_000, 45_100, 45_200]), 45_300), Some(4));
    }

    #[test]
    fn slices_with_the_same_events_in_any_order_share_a_signature() {
        let chunk = Chunk {
            base_offset_ns: 1_000,
            slices: vec![
                slice(0, 10, false, vec![event(1, 7, 100), event(0, 8, 101)]),
                slice(50, 20, true, vec![event(0, 8, 102), event(1, 7, 103)]),
                slice(50, 30, false, vec![event(0, 8, 104), event(1, 7, 105)]),
                slice(50, 5, false, vec![]),
            ],
            dropped_slices: 3,
            allowed: Appended(AllowedEvents {
                kept: vec![
                    AllowedEvent { slice: 0, event: 1, entry: 40 },
                    AllowedEvent { slice: 2, event: 0, entry: 40 },
                    AllowedEvent { slice: 2, event: 1, entry: 41 },
                ],
                dropped: vec![(1, 2)],
            }),
            ..Chunk::default()
        };
        let mut aggregate = FileAggregate::default();
        aggregate.add_chunk(&chunk, &ChunkOptions::default());
        assert_eq!(aggregate.io.len(), 2);
        let quiet = &aggregate.io[&IoSignature {
            exceeded: false,
            extra: None,
            what: 0,
            events: [(0, 8), (1, 7)].into(),
            imports: SignatureImports::new(),
        }];
        assert_eq!((quiet.slices, quiet.durations.total_ns()), (2, 40));
        assert_eq!((quiet.example_start_ns, &*quiet.example_args), (1_000, &[101, 100][..]));
        let slow = &aggregate.io[&IoSignature {
            exceeded: true,
            extra: None,
            what: 0,
            events: [(0, 8), (1, 7)].into(),
            imports: SignatureImports::new(),
        }];
        assert_eq!((slow.slices, slow.example_start_ns), (1, 1_050));
        assert!(aggregate.cpu.is_empty());
        assert_eq!(
            aggregate.counts,
            Counts {
                slices: 4,
                exceeded: 1,
                dropped_slices: 3,
                dropped_events: 0,
                first_start_ns: Some(1_000),
                last_end_ns: 1_155,
                chunks_read: 1,
                busy_ns: 65,
                long_ns: 0,
                samples: 0,
                allowed: AllowedCounts { events: 5, by_entry: BTreeMap::from([(40, 2), (41, 1)]) },
                timed_samples: 0,
                cpu_timed_samples: 0,
                busy_series: Vec::new(),
            }
        );
    }

    #[test]
    fn the_window_and_a_new_threshold_decide_what_counts() {
        let chunk = Chunk {
            base_offset_ns: 0,
            slices: vec![
                slice(0, 100, false, vec![]),
                slice(1_000, 300, true, vec![]),
                slice(1_000, 200, false, vec![event(0, 1, 2)]),
                slice(1_000, 900, true, vec![]),
            ],
            ..Chunk::default()
        };
        // Starts 0, 1000, 2000, 3000; window [1000, 3000).
        let options =
            ChunkOptions { threshold_ns: Some(250), since_ns: 1_000, until_ns: 3_000, ..ChunkOptions::default() };
        let mut aggregate = FileAggregate::default();
        aggregate.add_chunk(&chunk, &options);
        assert_eq!((aggregate.counts.slices, aggregate.counts.exceeded), (2, 1));
        assert_eq!((aggregate.counts.first_start_ns, aggregate.counts.last_end_ns), (Some(0), 3_900));
        assert_eq!(aggregate.cpu.len(), 1);
        // 200 ns is under the new threshold of 250 ns.
        assert!(aggregate.io.keys().all(|signature| !signature.exceeded));

        // A threshold of 0 makes every slice slow, without samples.
        let mut aggregate = FileAggregate::default();
        aggregate.add_chunk(&chunk, &ChunkOptions { threshold_ns: Some(0), ..ChunkOptions::default() });
        assert_eq!(aggregate.counts.exceeded, 4);
        let cpu = &aggregate.cpu[&CpuSignature { stack: NO_STACK, extra: None }];
        assert_eq!((cpu.slices, cpu.samples, cpu.durations.max_ns()), (3, 0, 900));
    }

    #[test]
    fn task_and_context_keys_split_signatures() {
        let with_context = |what: StringId, context: Vec<(StringId, StringId)>| SliceRecord {
            what,
            context,
            ..slice(0, 1, false, vec![event(0, 1, 2)])
        };
        let chunk = Chunk {
            slices: vec![
                with_context(40, vec![(5, 6), (7, 8)]),
                with_context(41, vec![(7, 9)]),
                with_context(40, vec![(5, 6)]),
            ],
            ..Chunk::default()
        };
        let extras = |extra| {
            let mut aggregate = FileAggregate::default();
            aggregate.add_chunk(&chunk, &ChunkOptions { extra, ..ChunkOptions::default() });
            let mut extras: Vec<(Option<StringId>, u64)> =
                aggregate.io.iter().map(|(s, stats)| (s.extra, stats.slices)).collect();
            extras.sort();
            extras
        };
        // Signatures also keep what ran (40 twice, 41 once).
        assert_eq!(extras(Extra::None), [(None, 1), (None, 2)]);
        assert_eq!(extras(Extra::What), [(Some(40), 2), (Some(41), 1)]);
        assert_eq!(extras(Extra::Context(Some(7))), [(None, 1), (Some(8), 1), (Some(9), 1)]);
        assert_eq!(extras(Extra::Context(None)), [(None, 1), (None, 2)]);
    }

    #[test]
    fn context_keys_take_the_loop_time_of_slices_without_events() {
        // Slices with neither events nor samples, one with the key 7 (value 8), one without it.
        let chunk = Chunk {
            slices: vec![
                SliceRecord { what: 40, context: vec![(7, 8)], ..slice(0, 100, false, vec![]) },
                SliceRecord { what: 41, context: vec![(5, 6)], ..slice(200, 50, false, vec![]) },
            ],
            ..Chunk::default()
        };
        let ran = |extra| {
            let mut aggregate = FileAggregate::default();
            aggregate.add_chunk(&chunk, &ChunkOptions { extra, ..ChunkOptions::default() });
            let mut ran: Vec<(StringId, u64)> = aggregate.loop_time.ran().map(|(what, s)| (what, s.busy_ns)).collect();
            ran.sort();
            ran
        };
        assert_eq!(ran(Extra::Context(Some(7))), [(8, 100), (41, 50)], "the value where the slice has the key");
        assert_eq!(ran(Extra::None), [(40, 100), (41, 50)]);
    }

    #[test]
    fn merging_chunks_in_any_order_gives_the_same_aggregate() {
        let chunks: Vec<Chunk> = (0..4u64)
            .map(|i| Chunk {
                base_offset_ns: i * 10_000,
                slices: vec![
                    slice(0, 100 + i, i % 2 == 0, vec![event(0, 1, i as u32)]),
                    SliceRecord { samples: vec![3, 3, 4], ..slice(10, 5_000, true, vec![]) },
                ],
                dropped_slices: i,
                ..Chunk::default()
            })
            .collect();
        let fold = |order: &[usize]| {
            order.iter().fold(FileAggregate::default(), |all, &i| {
                let mut one = FileAggregate::default();
                one.add(i, Ok(chunks[i].clone()), &ChunkOptions::default());
                all.merge(one)
            })
        };
        let summary = |aggregate: &FileAggregate| {
            let mut io: Vec<_> = aggregate
                .io
                .iter()
                .map(|(s, stats)| {
                    (
                        s.exceeded,
                        stats.slices,
                        stats.durations.total_ns(),
                        stats.example_start_ns,
                        stats.example_args.clone(),
                    )
                })
                .collect();
            io.sort();
            let cpu: Vec<_> = aggregate
                .cpu
                .iter()
                .map(|(s, stats)| (s.stack, stats.slices, stats.samples, stats.first_start_ns))
                .collect();
            (io, cpu, aggregate.counts.clone())
        };
        let forward = summary(&fold(&[0, 1, 2, 3]));
        assert_eq!(forward, summary(&fold(&[3, 1, 0, 2])));
        assert_eq!(forward.0, [(false, 2, 204, 10_000, Box::from([1])), (true, 2, 202, 0, Box::from([0]))]);
        assert_eq!(forward.1, [(3, 4, 12, 10)]);
        assert_eq!(forward.2.dropped_slices, 6);
    }

    #[test]
    fn fold_chunks_takes_every_chunk_once_on_any_number_of_threads() {
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            for count in [0, 1, 2, 100] {
                let mut taken = pool.install(|| {
                    fold_chunks(
                        count,
                        Vec::new,
                        |taken: &mut Vec<usize>, index| taken.push(index),
                        |mut a, b| {
                            a.extend(b);
                            a
                        },
                    )
                });
                taken.sort_unstable();
                assert_eq!(taken, (0..count).collect::<Vec<_>>(), "{threads} threads, {count} chunks");
            }
        }
    }

    #[test]
    fn unreadable_chunks_are_counted_and_the_first_is_kept() {
        let error = |index| ReadError::NoSuchChunk { path: "t".to_owned(), index, count: 0 };
        let mut a = FileAggregate::default();
        a.add(5, Err(error(5)), &ChunkOptions::default());
        let mut b = FileAggregate::default();
        b.add(2, Err(error(2)), &ChunkOptions::default());
        b.add(9, Err(error(9)), &ChunkOptions::default());
        let merged = a.merge(b);
        assert_eq!(merged.unreadable, 3);
        assert_eq!(merged.first_error.map(|(index, _)| index), Some(2));
    }
}
