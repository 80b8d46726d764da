//! Stalls: stretches of at least the threshold in which a loop ran
//! callbacks without getting back to waiting for I/O, rebuilt from the
//! slices' timestamps.
//!
//! Slices of one thread (one loop) follow each other in the trace in the
//! order they ran. Two consecutive slices belong to the same *run* when the
//! second starts at most the gap tolerance ([`DEFAULT_STALL_GAP_NS`]) after
//! the first ends: the loop went on to its next callback, not back to its
//! selector to wait. A run at least as long as the threshold, from its first
//! slice's start to its last one's end, is a stall: one long callback, one
//! long loop iteration of many ready callbacks, or callbacks back to back.
//!
//! Chunks are read in parallel, in any order, and a run may cross a chunk's
//! edge. So each chunk keeps, per thread, its first run (which may continue
//! the previous chunk's last), the stalls wholly inside it, and its last run
//! (which may go on in the next); [`file_stalls`] joins them in chunk order.
//! A run remembers where its time went as [`Slot`]s, resolved to keys with
//! the file's dictionary: at most [`SLOTS_KEPT`] distinct ones, chosen as
//! the Space-Saving algorithm (Metwally et al., 2005) chooses frequent
//! items, so that the largest stay named; the time of the others is kept
//! whole as `other_ns`.

use crate::signature::Slot;
use aiocop_trace::records::StringId;

/// The gap tolerance, from real recordings on a 2-core machine (see
/// `docs/analyzer-report.md`, "Stalls"): between callbacks the loop runs
/// without waiting, the recorder sees a few µs (asyncio: p50 1.6 µs within
/// an iteration, 8 µs across a trip through the selector that found work
/// ready; uvloop: 1 to 2 µs for both), and up to about 60 µs when the
/// machine preempts the loop's thread; a uvicorn server waiting for its
/// next request leaves 150 µs or more. Within-iteration and
/// across-iteration gaps overlap on both loops, so a stall is a stretch in
/// which the loop never waited, whether in one iteration or several.
pub const DEFAULT_STALL_GAP_NS: u64 = 100_000;

/// Distinct slots a run keeps; a stall's top groups are its few largest.
/// Few, because a slice of a run looks for its slot among them.
pub const SLOTS_KEPT: usize = 12;

/// How runs are cut and which are stalls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StallOptions {
    /// A run at least this long is a stall (the trace's threshold, or `--threshold-ms`).
    pub threshold_ns: u64,
    /// The largest gap between two slices of one run.
    pub gap_ns: u64,
}

impl Default for StallOptions {
    fn default() -> Self {
        StallOptions { threshold_ns: u64::MAX, gap_ns: DEFAULT_STALL_GAP_NS }
    }
}

/// Slices of one thread, back to back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    pub thread: u32,
    pub start_ns: u64,
    pub end_ns: u64,
    pub slices: u64,
    /// Where the time of its slices went: `(slot, its nanoseconds, its
    /// rank)`, the rank being its nanoseconds plus those of the slot it took
    /// the place of (Space-Saving's count with its error).
    pub slots: Vec<(Slot, u64, u64)>,
    /// The time of slices whose slots were not kept.
    pub other_ns: u64,
    /// The slot the last slice went to: mostly the next one's too.
    last_slot: usize,
}

impl Run {
    fn new(thread: u32, start_ns: u64, duration_ns: u64, slot: Slot, mut slots: Vec<(Slot, u64, u64)>) -> Run {
        slots.clear();
        slots.push((slot, duration_ns, duration_ns));
        let end_ns = start_ns.saturating_add(duration_ns);
        Run { thread, start_ns, end_ns, slices: 1, slots, other_ns: 0, last_slot: 0 }
    }

    pub fn duration_ns(&self) -> u64 {
        self.end_ns - self.start_ns
    }

    /// Takes a slice that continues the run.
    #[inline(always)]
    fn extend(&mut self, start_ns: u64, duration_ns: u64) {
        self.end_ns = self.end_ns.max(start_ns.saturating_add(duration_ns));
        self.slices += 1;
    }

    /// Adds a pure slice's time to what ran, the last slot's first.
    #[inline(always)]
    fn add_ran(&mut self, what: StringId, ns: u64) {
        if let Some((Slot::Ran(last), total, rank)) = self.slots.get_mut(self.last_slot) {
            if *last == what {
                *total = total.saturating_add(ns);
                *rank = rank.saturating_add(ns);
                return;
            }
        }
        self.add_slot(Slot::Ran(what), ns);
    }

    #[inline(never)]
    fn add_slot(&mut self, slot: Slot, ns: u64) {
        if let Some(at) = self.slots.iter().position(|(s, _, _)| *s == slot) {
            let (_, total, rank) = &mut self.slots[at];
            *total = total.saturating_add(ns);
            *rank = rank.saturating_add(ns);
            self.last_slot = at;
        } else if self.slots.len() < SLOTS_KEPT {
            self.slots.push((slot, ns, ns));
            self.last_slot = self.slots.len() - 1;
        } else {
            // Space-Saving: the new slot takes the place of the lowest ranked,
            // whose time goes to `other_ns`, and its rank.
            let at = (0..self.slots.len()).min_by_key(|&i| self.slots[i].2).expect("full, so not empty");
            let (_, evicted_ns, rank) = std::mem::replace(&mut self.slots[at], (slot, ns, 0));
            self.slots[at].2 = rank.saturating_add(ns);
            self.other_ns = self.other_ns.saturating_add(evicted_ns);
            self.last_slot = at;
        }
    }

    /// Where its time went: its slots, then [`Slot::Other`] for the rest.
    pub fn time_by_slot(&self) -> impl Iterator<Item = (&Slot, u64)> {
        let other = (self.other_ns > 0).then_some((&Slot::Other, self.other_ns));
        self.slots.iter().map(|(slot, ns, _)| (slot, *ns)).chain(other)
    }

    /// Whether a slice starting at `start_ns` goes on this run.
    #[inline(always)]
    fn continued_by(&self, start_ns: u64, gap_ns: u64) -> bool {
        start_ns <= self.end_ns.saturating_add(gap_ns)
    }

    /// Appends `later`, which starts after this run ends.
    fn absorb(&mut self, later: Run) {
        self.end_ns = self.end_ns.max(later.end_ns);
        self.slices += later.slices;
        self.other_ns = self.other_ns.saturating_add(later.other_ns);
        for (slot, ns, _) in later.slots {
            self.add_slot(slot, ns);
        }
    }
}

/// One thread's runs in one chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ThreadRuns {
    /// The first run: it may continue the previous chunk's last.
    first: Run,
    /// Stalls after the first run and before the last.
    stalls: Vec<Run>,
    /// The run still going at the chunk's end, if not the first.
    last: Option<Run>,
}

/// One thread's runs while its chunk is read.
#[derive(Debug)]
struct OpenRuns {
    /// The first run, once another has started.
    first: Option<Run>,
    stalls: Vec<Run>,
    /// The run going on.
    open: Run,
}

impl OpenRuns {
    fn finish(self) -> ThreadRuns {
        match self.first {
            None => ThreadRuns { first: self.open, stalls: self.stalls, last: None },
            Some(first) => ThreadRuns { first, stalls: self.stalls, last: Some(self.open) },
        }
    }
}

/// The runs of one chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkRuns {
    pub index: usize,
    options: StallOptions,
    threads: Vec<ThreadRuns>,
}

/// Follows a chunk's slices in order and cuts them into runs, per thread.
#[derive(Debug)]
pub struct StallTracker {
    options: StallOptions,
    threads: Vec<OpenRuns>,
    /// The thread of the previous slice: mostly the next one's too.
    current: usize,
    /// Buffers of runs that ended short, for the next runs.
    spare: Vec<Vec<(Slot, u64, u64)>>,
}

impl StallTracker {
    pub fn new(options: StallOptions) -> StallTracker {
        StallTracker { options, threads: Vec::new(), current: 0, spare: Vec::new() }
    }

    /// Takes the next slice of the chunk, a pure one (its time goes to what
    /// ran): most slices, so a few compares and adds.
    #[inline(always)]
    pub fn add_ran(&mut self, thread: u32, start_ns: u64, duration_ns: u64, what: StringId) {
        if let Some(runs) = self.threads.get_mut(self.current) {
            let open = &mut runs.open;
            if open.thread == thread && open.continued_by(start_ns, self.options.gap_ns) {
                open.extend(start_ns, duration_ns);
                open.add_ran(what, duration_ns);
                return;
            }
        }
        self.add_slow(thread, start_ns, duration_ns, Slot::Ran(what));
    }

    /// Takes the next slice of the chunk.
    #[inline]
    pub fn add(&mut self, thread: u32, start_ns: u64, duration_ns: u64, slot: Slot) {
        if let Some(runs) = self.threads.get_mut(self.current) {
            let open = &mut runs.open;
            if open.thread == thread && open.continued_by(start_ns, self.options.gap_ns) {
                open.extend(start_ns, duration_ns);
                open.add_slot(slot, duration_ns);
                return;
            }
        }
        self.add_slow(thread, start_ns, duration_ns, slot);
    }

    /// Another thread's slice, or the start of a new run.
    #[inline(never)]
    fn add_slow(&mut self, thread: u32, start_ns: u64, duration_ns: u64, slot: Slot) {
        let Some(at) = self.threads.iter().position(|runs| runs.open.thread == thread) else {
            let open = Run::new(thread, start_ns, duration_ns, slot, self.spare.pop().unwrap_or_default());
            self.threads.push(OpenRuns { first: None, stalls: Vec::new(), open });
            self.current = self.threads.len() - 1;
            return;
        };
        self.current = at;
        let runs = &mut self.threads[at];
        if runs.open.continued_by(start_ns, self.options.gap_ns) {
            runs.open.extend(start_ns, duration_ns);
            runs.open.add_slot(slot, duration_ns);
            return;
        }
        let next = Run::new(thread, start_ns, duration_ns, slot, self.spare.pop().unwrap_or_default());
        let ended = std::mem::replace(&mut runs.open, next);
        if runs.first.is_none() {
            runs.first = Some(ended);
        } else if ended.duration_ns() >= self.options.threshold_ns {
            runs.stalls.push(ended);
        } else {
            self.spare.push(ended.slots);
        }
    }

    pub fn finish(self, index: usize) -> ChunkRuns {
        ChunkRuns { index, options: self.options, threads: self.threads.into_iter().map(OpenRuns::finish).collect() }
    }
}

/// The stalls of one file, from its chunks' runs (in any order, all cut
/// with the same options), joined in chunk order; in no particular order.
pub fn file_stalls(mut chunks: Vec<ChunkRuns>) -> Vec<Run> {
    let Some(options) = chunks.first().map(|chunk| chunk.options) else { return Vec::new() };
    chunks.sort_by_key(|chunk| chunk.index);
    let mut open: Vec<Run> = Vec::new();
    let mut stalls = Vec::new();
    let close = |run: Run, stalls: &mut Vec<Run>| {
        if run.duration_ns() >= options.threshold_ns {
            stalls.push(run);
        }
    };
    for chunk in chunks {
        for runs in chunk.threads {
            let ThreadRuns { first, stalls: inside, last } = runs;
            let thread = first.thread;
            let at = open.iter().position(|run| run.thread == thread);
            let mut going = match at {
                Some(at) if open[at].continued_by(first.start_ns, options.gap_ns) => {
                    let mut run = open.swap_remove(at);
                    run.absorb(first);
                    run
                }
                Some(at) => {
                    close(open.swap_remove(at), &mut stalls);
                    first
                }
                None => first,
            };
            if let Some(last) = last {
                close(going, &mut stalls);
                stalls.extend(inside);
                going = last;
            }
            open.push(going);
        }
    }
    for run in open {
        close(run, &mut stalls);
    }
    stalls
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn options() -> StallOptions {
        StallOptions { threshold_ns: 30 * MS, gap_ns: 10_000 }
    }

    /// `(thread, start, duration)` slices cut into `chunks` pieces, tracked
    /// chunk by chunk, joined in the order `order` gives.
    fn stalls_of(slices: &[(u32, u64, u64)], cuts: &[usize], order: &[usize]) -> Vec<(u32, u64, u64, u64)> {
        let mut bounds = vec![0];
        bounds.extend_from_slice(cuts);
        bounds.push(slices.len());
        let chunks: Vec<ChunkRuns> = bounds
            .windows(2)
            .enumerate()
            .map(|(index, range)| {
                let mut tracker = StallTracker::new(options());
                for &(thread, start, duration) in &slices[range[0]..range[1]] {
                    tracker.add(thread, start, duration, Slot::Ran(thread));
                }
                tracker.finish(index)
            })
            .collect();
        let shuffled: Vec<ChunkRuns> = order.iter().map(|&i| chunks[i].clone()).collect();
        let mut stalls: Vec<_> = file_stalls(shuffled)
            .into_iter()
            .map(|run| (run.thread, run.start_ns, run.duration_ns(), run.slices))
            .collect();
        stalls.sort();
        stalls
    }

    /// `count` slices of `each` ns on `thread` from `start`, `gap` ns apart.
    fn back_to_back(thread: u32, start: u64, count: u64, each: u64, gap: u64) -> Vec<(u32, u64, u64)> {
        (0..count).map(|i| (thread, start + i * (each + gap), each)).collect()
    }

    #[test]
    fn slices_back_to_back_make_one_stall_and_a_selector_trip_ends_it() {
        // Ten 20 ms slices 2 µs apart: one stall of 200 ms.
        let mut slices = back_to_back(1, 0, 10, 20 * MS, 2_000);
        // Then, after 50 µs (the selector), a hundred 1 ms slices 3 µs apart.
        slices.extend(back_to_back(1, 300 * MS, 100, MS, 3_000));
        // And ten short ones with selector trips between them: no stall.
        slices.extend(back_to_back(1, 600 * MS, 10, 5 * MS, 50_000));
        let expected = vec![(1, 0, 200 * MS + 9 * 2_000, 10), (1, 300 * MS, 100 * MS + 99 * 3_000, 100)];
        assert_eq!(stalls_of(&slices, &[], &[0]), expected);
        // Cut anywhere, chunks joined in any order: the same stalls.
        for cuts in [&[1][..], &[5, 10], &[10, 11, 50, 109], &[3, 4, 5, 6, 100, 115]] {
            let n = cuts.len() + 1;
            let reversed: Vec<usize> = (0..n).rev().collect();
            assert_eq!(stalls_of(&slices, cuts, &reversed), expected, "cut at {cuts:?}");
        }
    }

    #[test]
    fn one_long_slice_is_a_stall_and_threads_are_apart() {
        let mut slices = vec![(1, 0, 40 * MS)];
        // Thread 2 runs 20 ms slices back to back while thread 1 runs short
        // ones with gaps: only thread 2's run is a stall.
        for i in 0..4 {
            slices.push((2, 50 * MS + i * 20 * MS, 20 * MS));
            slices.push((1, 50 * MS + i * 20 * MS, MS));
        }
        assert_eq!(stalls_of(&slices, &[], &[0]), [(1, 0, 40 * MS, 1), (2, 50 * MS, 80 * MS, 4)]);
        assert_eq!(stalls_of(&slices, &[2, 3, 6], &[3, 0, 2, 1]), [(1, 0, 40 * MS, 1), (2, 50 * MS, 80 * MS, 4)]);
    }

    #[test]
    fn a_run_keeps_its_largest_slots_and_counts_the_rest_as_other() {
        let mut tracker = StallTracker::new(options());
        let mut start = 0;
        // Many small slots, then a large one: the large one stays named.
        for what in 0..(SLOTS_KEPT as u32 + 5) {
            tracker.add(1, start, MS, Slot::Ran(what));
            start += MS;
        }
        tracker.add(1, start, 40 * MS, Slot::Ran(99));
        // And a slot seen all along, in small slices, after each other one.
        for _ in 0..20 {
            start += 2 * MS;
            tracker.add(1, start, MS, Slot::Ran(7));
        }
        let stalls = file_stalls(vec![tracker.finish(0)]);
        assert_eq!(stalls.len(), 1);
        let slots: Vec<(&Slot, u64)> = stalls[0].time_by_slot().collect();
        assert_eq!(slots.len(), SLOTS_KEPT + 1);
        assert_eq!(slots.iter().map(|(_, ns)| ns).sum::<u64>(), (SLOTS_KEPT as u64 + 5 + 40 + 20) * MS);
        assert!(slots.contains(&(&Slot::Ran(99), 40 * MS)), "{slots:?}");
        assert!(slots.contains(&(&Slot::Ran(7), 21 * MS)), "{slots:?}");
        assert_eq!(slots.last(), Some(&(&Slot::Other, 6 * MS)));
    }
}
