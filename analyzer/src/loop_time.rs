//! Where the loop's time went: every slice's time, attributed to the groups
//! of the report's `--by` key.
//!
//! Each slice in the time window gives its whole duration to groups, so the
//! groups' busy times add up to the loop's busy time exactly (in
//! nanoseconds):
//!
//! - a slice with blocking events (not all dropped by `--ignore`) goes to
//!   the keys of its events, split by how many events each key has;
//! - otherwise, a slice with CPU samples is split across its samples' keys
//!   by their weights ([`aiocop_trace::sample_weights`]: the time since the
//!   previous sample of the slice; an equal share each before format 1.3);
//! - any other slice goes to what ran: its task's coroutine qualname or its
//!   callback's qualname (and so does a slice whose every event is ignored).
//!
//! A group's `io` time is the time it got from slices with blocking events
//! (the whole slice: the blocking call and what ran around it); its `cpu`
//! time is the rest, from slices without blocking I/O, the loop thread
//! running Python. A slice's time is *explained by a stack* when it comes
//! from events or samples; "what ran" names a coroutine, not a line.
//!
//! The first stage, here, keys slices by ids as [`crate::aggregate`] does:
//! slices with events by their [`IoSignature`](crate::signature::IoSignature) (kept in
//! [`crate::aggregate`]), sampled ones by their [`SampleSignature`], the others by
//! their `what` string id in a table indexed by it, so that the pure slices
//! (most of them) cost an add each. [`crate::resolve`] turns them into text
//! keys with [`aiocop_trace::apportion`], which splits a time by weights without losing a
//! nanosecond.

use crate::signature::{SampleSignature, SignatureMap};
use aiocop_trace::records::StringId;

/// `what` ids up to this index a table; past it (a crafted file), a map.
const RAN_TABLE_MAX: usize = 1 << 20;

/// The `--long-ms` default: slices at least this long are the ones a stack
/// should explain.
pub const DEFAULT_LONG_MS: f64 = 2.0;

/// The time of some slices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BusyStats {
    pub slices: u64,
    pub busy_ns: u64,
    /// Σ over the slices of (duration in µs)²: how much their time varies
    /// (the differential flame graph's test, [`crate::flamegraph`]).
    pub busy_sq_us2: u64,
    /// The start of the earliest of them.
    pub first_start_ns: u64,
}

impl BusyStats {
    #[inline(always)]
    fn add(&mut self, start_ns: u64, duration_ns: u64) {
        if self.slices == 0 || start_ns < self.first_start_ns {
            self.first_start_ns = start_ns;
        }
        self.slices += 1;
        self.busy_ns = self.busy_ns.saturating_add(duration_ns);
        self.busy_sq_us2 = self.busy_sq_us2.saturating_add(squared_us(duration_ns));
    }

    fn merge(&mut self, other: &BusyStats) {
        if other.slices == 0 {
            return;
        }
        if self.slices == 0 || other.first_start_ns < self.first_start_ns {
            self.first_start_ns = other.first_start_ns;
        }
        self.slices += other.slices;
        self.busy_ns = self.busy_ns.saturating_add(other.busy_ns);
        self.busy_sq_us2 = self.busy_sq_us2.saturating_add(other.busy_sq_us2);
    }
}

/// A duration's square, in µs² (a day-long slice still fits in a `u64`).
#[inline(always)]
pub fn squared_us(duration_ns: u64) -> u64 {
    let us = duration_ns / 1000;
    us.saturating_mul(us)
}

/// The time of slices with neither events nor samples, of one `what`: two
/// adds a slice (most slices are these).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RanStats {
    pub slices: u64,
    pub busy_ns: u64,
    /// As [`BusyStats::busy_sq_us2`].
    pub busy_sq_us2: u64,
}

impl RanStats {
    #[inline(always)]
    fn add(&mut self, duration_ns: u64) {
        self.slices += 1;
        self.busy_ns = self.busy_ns.saturating_add(duration_ns);
        self.busy_sq_us2 = self.busy_sq_us2.saturating_add(squared_us(duration_ns));
    }

    fn merge(&mut self, other: &RanStats) {
        self.slices += other.slices;
        self.busy_ns = self.busy_ns.saturating_add(other.busy_ns);
        self.busy_sq_us2 = self.busy_sq_us2.saturating_add(other.busy_sq_us2);
    }
}

/// Loop time of one file's chunks, keyed by ids (the slices with events are
/// in [`crate::aggregate::FileAggregate::io`]).
#[derive(Debug, Default)]
pub struct LoopAggregate {
    /// Slices with neither events nor samples, indexed by their `what`.
    pub ran: Vec<RanStats>,
    /// The same, for `what` ids past `RAN_TABLE_MAX`.
    pub ran_far: SignatureMap<StringId, RanStats>,
    /// Sampled slices without events, and how many of them were long.
    pub sampled: SignatureMap<SampleSignature, (BusyStats, u64)>,
}

impl LoopAggregate {
    /// A slice with neither events nor samples.
    #[inline(always)]
    pub fn add_ran(&mut self, what: StringId, duration_ns: u64) {
        match self.ran.get_mut(what as usize) {
            Some(stats) => stats.add(duration_ns),
            None => self.add_ran_slow(what, duration_ns),
        }
    }

    #[inline(never)]
    fn add_ran_slow(&mut self, what: StringId, duration_ns: u64) {
        let index = what as usize;
        if index < RAN_TABLE_MAX {
            self.ran.resize(index + 1, RanStats::default());
            self.ran[index].add(duration_ns);
        } else {
            self.ran_far.entry(what).or_default().add(duration_ns);
        }
    }

    /// A slice with samples and no events; `long` if it lasted `--long-ms` or more.
    pub fn add_sampled(&mut self, signature: SampleSignature, start_ns: u64, duration_ns: u64, long: bool) {
        let (stats, long_ns) = self.sampled.entry(signature).or_default();
        stats.add(start_ns, duration_ns);
        if long {
            *long_ns = long_ns.saturating_add(duration_ns);
        }
    }

    /// The slices with neither events nor samples, by `what`.
    pub fn ran(&self) -> impl Iterator<Item = (StringId, &RanStats)> {
        let near = self.ran.iter().enumerate().filter(|(_, s)| s.slices > 0).map(|(what, s)| (what as StringId, s));
        near.chain(self.ran_far.iter().map(|(&what, s)| (what, s)))
    }

    pub fn merge(&mut self, other: LoopAggregate) {
        if other.ran.len() > self.ran.len() {
            self.ran.resize(other.ran.len(), RanStats::default());
        }
        for (mine, theirs) in self.ran.iter_mut().zip(&other.ran) {
            mine.merge(theirs);
        }
        for (what, theirs) in other.ran_far {
            self.ran_far.entry(what).or_default().merge(&theirs);
        }
        for (signature, (theirs, long_ns)) in other.sampled {
            let (mine, mine_long_ns) = self.sampled.entry(signature).or_default();
            mine.merge(&theirs);
            *mine_long_ns = mine_long_ns.saturating_add(long_ns);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::SampleShare;
    use aiocop_trace::records::{SampleTime, StackId};

    #[test]
    fn sample_signatures_count_each_stack_in_any_order() {
        let untimed = |samples: &[StackId], extra| SampleSignature::of(samples, (&[], &[]), 1_000, 1_000, extra);
        assert_eq!(untimed(&[7, 3, 7], None), untimed(&[3, 7, 7], None));
        let share = |stack, count, share| SampleShare { stack, native: false, count, share };
        assert_eq!(&untimed(&[7, 3, 7], Some(1)).samples[..], &[share(3, 1, 1), share(7, 2, 2)]);
    }

    #[test]
    fn timed_samples_share_their_slice_by_the_time_each_stands_for() {
        // A 45 ms sort sampled as it returns (its request waited 44 ms: in
        // C code), then two quick samples in the code after it.
        let time = |taken_offset_ns, waited_ns| SampleTime { taken_offset_ns, waited_ns };
        let times = [time(45_000_000, 44_000_000), time(45_100_000, 100_000), time(45_200_000, 100_000)];
        let signature = SampleSignature::of(&[3, 7, 7], (&times, &[]), 45_300_000, 1_000_000, None);
        let share = |stack, native, count, share| SampleShare { stack, native, count, share };
        assert_eq!(&signature.samples[..], &[share(3, true, 1, 255), share(7, false, 2, 1)]);
    }

    #[test]
    fn ran_slices_add_up_by_what_in_the_table_or_past_it() {
        let mut a = LoopAggregate::default();
        a.add_ran(3, 10);
        a.add_ran(3, 5);
        a.add_ran(u32::MAX, 1);
        let mut b = LoopAggregate::default();
        b.add_ran(9, 2);
        b.add_ran(3, 1);
        a.merge(b);
        let mut ran: Vec<_> = a.ran().map(|(what, s)| (what, *s)).collect();
        ran.sort_by_key(|(what, _)| *what);
        let stats = |slices, busy_ns| RanStats { slices, busy_ns, busy_sq_us2: 0 };
        assert_eq!(ran, [(3, stats(3, 16)), (9, stats(1, 2)), (u32::MAX, stats(1, 1))]);
        let mut long = LoopAggregate::default();
        long.add_ran(3, 2_000_000);
        long.add_ran(3, 1_000_000);
        assert_eq!(long.ran().next().unwrap().1.busy_sq_us2, 4_000_000 + 1_000_000);
    }
}
