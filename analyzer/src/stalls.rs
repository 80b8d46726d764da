//! Stalls: stretches of at least the threshold in which a loop ran
//! callbacks without polling for I/O in between.
//!
//! Slices of one thread (one loop) follow each other in the trace in the
//! order they ran, and are cut into *runs*; a run at least as long as the
//! threshold, from its first slice's start to its last one's end, is a
//! stall: one long callback, or one long loop iteration of many callbacks.
//!
//! - Exact, from format 1.3 on, for loops whose iterations the recorder
//!   sees (stock asyncio): the chunk lists each poll of the loop's selector
//!   (`LoopIterations`), and a run is the slices between two polls: one
//!   iteration. Ten 20 ms slices in one iteration are one 200 ms stall; a
//!   busy server that polls between requests has none.
//! - The gap heuristic, for older traces and loops whose iterations are
//!   not visible (uvloop): two consecutive slices belong to the same run
//!   when the second starts at most the gap tolerance
//!   ([`DEFAULT_STALL_GAP_NS`]) after the first ends. It cannot tell a loop
//!   that never polled from one that polled and found work at once, so
//!   back-to-back requests can chain into a "stall".
//!
//! A chunk's polls come after its slices in the payload: a tracker that
//! reads slices as they are decoded holds them ([`StallTracker::hold`])
//! until the polls are known.
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
use aiocop_trace::records::{LoopIterations, StringId};

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
    polls: PollsSeen,
}

/// What a chunk says of a thread's polls around its runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct PollsSeen {
    /// The chunk lists polls of the thread: its runs are iterations.
    exact: bool,
    /// The loop polled before the chunk's first slice of the thread.
    before_first: bool,
    /// The loop polled after the chunk's last slice of the thread.
    after_last: bool,
}

/// One thread's runs while its chunk is read.
#[derive(Debug)]
struct OpenRuns {
    /// The first run, once another has started.
    first: Option<Run>,
    stalls: Vec<Run>,
    /// The run going on.
    open: Run,
    /// The starts of the thread's polls in the chunk, in order, and the
    /// next one not yet passed.
    polls: Vec<u64>,
    next_poll: usize,
    /// The thread's loop polls are recorded: its runs are iterations.
    exact: bool,
    before_first: bool,
    /// The loop polled since the open run's last slice: the next slice
    /// starts a new run.
    polled: bool,
}

impl OpenRuns {
    fn new(open: Run, polls: Vec<u64>, exact: bool) -> OpenRuns {
        let exact = exact || !polls.is_empty();
        let mut runs = OpenRuns {
            first: None,
            stalls: Vec::new(),
            open,
            polls,
            next_poll: 0,
            exact,
            before_first: false,
            polled: false,
        };
        runs.before_first = runs.passed_a_poll(runs.open.start_ns);
        runs.polled = false;
        runs
    }

    /// Whether a slice starting at `start_ns` goes on the open run: no poll
    /// since (exact), or a gap of at most `gap_ns` (heuristic).
    #[inline(always)]
    fn continued_by(&mut self, start_ns: u64, gap_ns: u64) -> bool {
        if !self.exact {
            return self.open.continued_by(start_ns, gap_ns);
        }
        !self.passed_a_poll(start_ns)
    }

    /// Passes the polls that started before `start_ns`; true if the loop
    /// polled since the open run's last slice.
    #[inline(always)]
    fn passed_a_poll(&mut self, start_ns: u64) -> bool {
        while self.polls.get(self.next_poll).is_some_and(|&poll_ns| poll_ns <= start_ns) {
            self.next_poll += 1;
            self.polled = true;
        }
        self.polled
    }

    /// Starts a new open run; returns the one that ended.
    fn replace_open(&mut self, next: Run) -> Run {
        self.polled = false;
        std::mem::replace(&mut self.open, next)
    }

    fn finish(self) -> ThreadRuns {
        let polls = PollsSeen {
            exact: self.exact,
            before_first: self.before_first,
            after_last: self.next_poll < self.polls.len(),
        };
        match self.first {
            None => ThreadRuns { first: self.open, stalls: self.stalls, last: None, polls },
            Some(first) => ThreadRuns { first, stalls: self.stalls, last: Some(self.open), polls },
        }
    }
}

/// The runs of one chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkRuns {
    pub index: usize,
    options: StallOptions,
    threads: Vec<ThreadRuns>,
    /// Threads that polled in the chunk but ran no slice in it.
    polled_only: Vec<u32>,
}

impl ChunkRuns {
    /// Whether the chunk lists loop iterations: its stalls are exact.
    pub fn has_iterations(&self) -> bool {
        !self.polled_only.is_empty() || self.threads.iter().any(|runs| runs.polls.exact)
    }

    /// Whether some thread's runs were cut by the gap heuristic.
    pub fn has_guessed_runs(&self) -> bool {
        self.threads.iter().any(|runs| !runs.polls.exact)
    }
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
    /// Each thread's poll starts, for threads not yet seen in a slice.
    polls: Vec<(u32, Vec<u64>)>,
    /// Threads whose polls are recorded (see `LoopIterations::polling_threads`).
    polling_threads: Vec<u32>,
    /// The slices held until the chunk's polls are read (see [`Self::hold`]).
    held: Option<Vec<(u32, u64, u64, Slot)>>,
    /// The chunk had more slices than a tracker holds: its polls are not
    /// used, and its runs are cut by the gap heuristic (said to be guessed).
    gave_up_holding: bool,
}

/// Slices a tracker holds at most (2 MiB). The recorder writes at most
/// 65,536 slices a chunk (its `MAX_SLICES_PER_CHUNK`), so only a foreign or
/// crafted chunk has more; holding all of its slices would take memory the
/// reader's budget does not count (32 bytes for a pure slice of 3 or 4).
const MAX_HELD_SLICES: usize = 1 << 16;

impl StallTracker {
    pub fn new(options: StallOptions) -> StallTracker {
        StallTracker {
            options,
            threads: Vec::new(),
            current: 0,
            spare: Vec::new(),
            polls: Vec::new(),
            polling_threads: Vec::new(),
            held: None,
            gave_up_holding: false,
        }
    }

    /// A tracker for a chunk whose polls are read after its slices (format
    /// 1.3 and later, decoded slice by slice): it holds the slices, and
    /// [`Self::finish_with`] cuts them once the polls are known.
    pub fn hold(options: StallOptions) -> StallTracker {
        StallTracker { held: Some(Vec::new()), ..StallTracker::new(options) }
    }

    /// Takes the chunk's polls; before any slice.
    pub fn set_polls(&mut self, iterations: &LoopIterations) {
        self.polling_threads.clone_from(&iterations.polling_threads);
        let mut start_ns = iterations.base_offset_ns;
        for poll in &iterations.polls {
            start_ns = start_ns.saturating_add(poll.start_delta_ns);
            match self.polls.iter_mut().find(|(thread, _)| *thread == poll.thread) {
                Some((_, starts)) => starts.push(start_ns),
                None => self.polls.push((poll.thread, vec![start_ns])),
            }
        }
    }

    /// The poll starts of `thread` (empty if it did not poll), taken.
    fn take_polls(&mut self, thread: u32) -> Vec<u64> {
        match self.polls.iter().position(|(t, _)| *t == thread) {
            Some(at) => self.polls.swap_remove(at).1,
            None => Vec::new(),
        }
    }

    /// Takes the next slice of the chunk, a pure one (its time goes to what
    /// ran): most slices, so a few compares and adds.
    #[inline(always)]
    pub fn add_ran(&mut self, thread: u32, start_ns: u64, duration_ns: u64, what: StringId) {
        if self.held.is_some() && self.holds((thread, start_ns, duration_ns, Slot::Ran(what))).is_none() {
            return;
        }
        if let Some(runs) = self.threads.get_mut(self.current) {
            if runs.open.thread == thread && runs.continued_by(start_ns, self.options.gap_ns) {
                runs.open.extend(start_ns, duration_ns);
                runs.open.add_ran(what, duration_ns);
                return;
            }
        }
        self.add_slow(thread, start_ns, duration_ns, Slot::Ran(what));
    }

    /// Takes the next slice of the chunk.
    #[inline]
    pub fn add(&mut self, thread: u32, start_ns: u64, duration_ns: u64, mut slot: Slot) {
        if self.held.is_some() {
            match self.holds((thread, start_ns, duration_ns, slot)) {
                None => return,
                Some((_, _, _, not_held)) => slot = not_held,
            }
        }
        if let Some(runs) = self.threads.get_mut(self.current) {
            if runs.open.thread == thread && runs.continued_by(start_ns, self.options.gap_ns) {
                runs.open.extend(start_ns, duration_ns);
                runs.open.add_slot(slot, duration_ns);
                return;
            }
        }
        self.add_slow(thread, start_ns, duration_ns, slot);
    }

    /// Holds the slice until the polls are read (None), unless the chunk
    /// has more slices than a tracker holds: then the held ones are cut by
    /// the gap heuristic, and the slice is given back to be cut as well.
    #[inline(never)]
    fn holds(&mut self, slice: (u32, u64, u64, Slot)) -> Option<(u32, u64, u64, Slot)> {
        let Some(held) = &mut self.held else { return Some(slice) };
        if held.len() < MAX_HELD_SLICES {
            held.push(slice);
            return None;
        }
        let held = self.held.take().unwrap_or_default();
        self.gave_up_holding = true;
        for (thread, start_ns, duration_ns, slot) in held {
            self.add(thread, start_ns, duration_ns, slot);
        }
        Some(slice)
    }

    /// Another thread's slice, or the start of a new run.
    #[inline(never)]
    fn add_slow(&mut self, thread: u32, start_ns: u64, duration_ns: u64, slot: Slot) {
        let Some(at) = self.threads.iter().position(|runs| runs.open.thread == thread) else {
            let open = Run::new(thread, start_ns, duration_ns, slot, self.spare.pop().unwrap_or_default());
            let polls = self.take_polls(thread);
            let exact = self.polling_threads.contains(&thread);
            self.threads.push(OpenRuns::new(open, polls, exact));
            self.current = self.threads.len() - 1;
            return;
        };
        self.current = at;
        let runs = &mut self.threads[at];
        if runs.continued_by(start_ns, self.options.gap_ns) {
            runs.open.extend(start_ns, duration_ns);
            runs.open.add_slot(slot, duration_ns);
            return;
        }
        let next = Run::new(thread, start_ns, duration_ns, slot, self.spare.pop().unwrap_or_default());
        let ended = runs.replace_open(next);
        if runs.first.is_none() {
            runs.first = Some(ended);
        } else if ended.duration_ns() >= self.options.threshold_ns {
            runs.stalls.push(ended);
        } else {
            self.spare.push(ended.slots);
        }
    }

    pub fn finish(mut self, index: usize) -> ChunkRuns {
        if let Some(held) = self.held.take() {
            for (thread, start_ns, duration_ns, slot) in held {
                self.add(thread, start_ns, duration_ns, slot);
            }
        }
        let polled_only = self.polls.iter().map(|(thread, _)| *thread).collect();
        let threads = self.threads.into_iter().map(OpenRuns::finish).collect();
        ChunkRuns { index, options: self.options, threads, polled_only }
    }

    /// Finishes a tracker made by [`Self::hold`], with the chunk's polls.
    pub fn finish_with(mut self, index: usize, iterations: &LoopIterations) -> ChunkRuns {
        if !self.gave_up_holding {
            self.set_polls(iterations);
        }
        self.finish(index)
    }
}

/// A run still open at the end of the chunks joined so far.
struct Going {
    run: Run,
    /// Its thread's runs are iterations (the last chunk listed its polls).
    exact: bool,
    /// The loop polled after it: the next slice starts another run.
    polled_after: bool,
}

/// The stalls of one file, from its chunks' runs (in any order, all cut
/// with the same options), joined in chunk order; in no particular order.
pub fn file_stalls(mut chunks: Vec<ChunkRuns>) -> Vec<Run> {
    let Some(options) = chunks.first().map(|chunk| chunk.options) else { return Vec::new() };
    chunks.sort_by_key(|chunk| chunk.index);
    let mut open: Vec<Going> = Vec::new();
    let mut stalls = Vec::new();
    let close = |run: Run, stalls: &mut Vec<Run>| {
        if run.duration_ns() >= options.threshold_ns {
            stalls.push(run);
        }
    };
    for chunk in chunks {
        for thread in chunk.polled_only {
            if let Some(going) = open.iter_mut().find(|going| going.run.thread == thread) {
                (going.exact, going.polled_after) = (true, true);
            }
        }
        for runs in chunk.threads {
            let ThreadRuns { first, stalls: inside, last, polls } = runs;
            let thread = first.thread;
            let at = open.iter().position(|going| going.run.thread == thread);
            let mut going = match at {
                Some(at) if joins(&open[at], &first, polls, options.gap_ns) => {
                    let mut run = open.swap_remove(at).run;
                    run.absorb(first);
                    run
                }
                Some(at) => {
                    close(open.swap_remove(at).run, &mut stalls);
                    first
                }
                None => first,
            };
            if let Some(last) = last {
                close(going, &mut stalls);
                stalls.extend(inside);
                going = last;
            }
            open.push(Going { run: going, exact: polls.exact, polled_after: polls.after_last });
        }
    }
    for going in open {
        close(going.run, &mut stalls);
    }
    stalls
}

/// Whether a chunk's first run of a thread continues the run the previous
/// chunks left open: no poll between them if either chunk listed the
/// thread's polls, else a gap of at most `gap_ns`.
fn joins(going: &Going, first: &Run, polls: PollsSeen, gap_ns: u64) -> bool {
    if going.polled_after || polls.before_first {
        return false;
    }
    going.exact || polls.exact || going.run.continued_by(first.start_ns, gap_ns)
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

    /// As `stalls_of`, with the loop polling at each of `polls` (ns): each
    /// poll goes in the chunk of the first slice after it, as the recorder
    /// puts it, and chunks are read as the analyzer reads a 1.3 trace
    /// (slices held until the polls, after them in the payload, are read).
    fn exact_stalls_of(
        slices: &[(u32, u64, u64)],
        polls: &[(u32, u64)],
        cuts: &[usize],
        order: &[usize],
    ) -> Vec<(u32, u64, u64, u64)> {
        use aiocop_trace::records::PollRecord;
        let mut bounds = vec![0];
        bounds.extend_from_slice(cuts);
        bounds.push(slices.len());
        let chunk_of_poll = |at: u64| {
            let after = slices.iter().filter(|(_, start, _)| *start < at).count();
            bounds.windows(2).position(|range| after < range[1]).unwrap_or(bounds.len() - 2)
        };
        let chunks: Vec<ChunkRuns> = bounds
            .windows(2)
            .enumerate()
            .map(|(index, range)| {
                let mine: Vec<&(u32, u64)> = polls.iter().filter(|(_, at)| chunk_of_poll(*at) == index).collect();
                let base_offset_ns = mine.first().map_or(0, |(_, at)| *at);
                let mut previous = base_offset_ns;
                let records = mine
                    .iter()
                    .map(|&&(thread, at)| {
                        let start_delta_ns = at - previous;
                        previous = at;
                        PollRecord { start_delta_ns, wait_ns: 1_000, thread }
                    })
                    .collect();
                let mut tracker = StallTracker::hold(options());
                for &(thread, start, duration) in &slices[range[0]..range[1]] {
                    tracker.add(thread, start, duration, Slot::Ran(thread));
                }
                let mut polling_threads: Vec<u32> =
                    polls.iter().filter(|(_, at)| chunk_of_poll(*at) <= index).map(|(thread, _)| *thread).collect();
                polling_threads.dedup();
                tracker.finish_with(index, &LoopIterations { base_offset_ns, polls: records, polling_threads })
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

    #[test]
    fn with_polls_a_stall_is_one_iteration_however_small_the_gaps() {
        // Ten 20 ms slices in one iteration, 200 µs apart (the heuristic's
        // gap would cut them): one stall of 200 ms.
        let mut slices = back_to_back(1, 0, 10, 20 * MS, 200_000);
        let mut polls = vec![(1, 0), (1, 205 * MS)];
        // Then a loop under load: 300 requests of 1 ms, 3 µs apart (the
        // heuristic would chain them into one 300 ms stall), with a poll
        // between every three: no stall.
        slices.extend(back_to_back(1, 300 * MS, 300, MS, 3_000));
        polls.extend((0..100).map(|i| (1, 300 * MS + i * 3 * (MS + 3_000) - 1_000)));
        let expected = vec![(1, 0, 200 * MS + 9 * 200_000, 10)];
        assert_eq!(exact_stalls_of(&slices, &polls, &[], &[0]), expected);
        for cuts in [&[1][..], &[5, 10], &[10, 11, 50, 109], &[3, 4, 5, 6, 100, 115, 309]] {
            let n = cuts.len() + 1;
            let reversed: Vec<usize> = (0..n).rev().collect();
            assert_eq!(exact_stalls_of(&slices, &polls, cuts, &reversed), expected, "cut at {cuts:?}");
        }
        // The same slices without polls: the heuristic (gap 10 µs) splits
        // the iteration and chains the requests.
        assert_eq!(stalls_of(&slices, &[], &[0]), [(1, 300 * MS, 300 * MS + 299 * 3_000, 300)]);
    }

    #[test]
    fn a_chunk_with_polls_but_no_slice_of_the_thread_ends_its_run() {
        // Two 20 ms slices, a poll between them in a chunk of its own (the
        // other thread's slices): two short runs, no 40 ms stall.
        let slices = [(1, 0, 20 * MS), (2, 21 * MS, MS), (1, 20 * MS + 5_000, 20 * MS)];
        let polls = [(1, 20 * MS + 1_000)];
        assert_eq!(exact_stalls_of(&slices, &polls, &[1, 2], &[2, 1, 0]), []);
        // Without the poll, the thread's two slices are one stall; thread 2
        // never polled and keeps the heuristic.
        assert_eq!(exact_stalls_of(&slices, &[], &[1, 2], &[0, 1, 2]), [(1, 0, 40 * MS + 5_000, 2)]);
    }

    #[test]
    fn a_chunk_too_big_to_hold_is_cut_by_the_gap_heuristic() {
        // More slices than a tracker holds (a recorder never writes such a
        // chunk), with polls between them: the polls are not used, and the
        // heuristic chains the requests, as for a trace without polls.
        let n = MAX_HELD_SLICES as u64 + 3;
        let slices = back_to_back(1, 0, n, MS, 3_000);
        let polls: Vec<(u32, u64)> = (1..4).map(|i| (1, i * (n / 4) * (MS + 3_000) - 1_000)).collect();
        let stalls = exact_stalls_of(&slices, &polls, &[], &[0]);
        assert_eq!(stalls, [(1, 0, n * MS + (n - 1) * 3_000, n)]);
    }
}
