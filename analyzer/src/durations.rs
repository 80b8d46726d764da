//! The elapsed times of a group's slices: count, total, minimum and maximum
//! exactly, percentiles from a mergeable histogram.
//!
//! `pN` is the smallest recorded time that at least N% of the slices do not
//! exceed: the k-th smallest, k = ceil(N% of the count), at least 1.
//!
//! A group of up to 256 slices keeps its times in a list and its percentiles
//! are exact. A larger one keeps an HDR histogram of microseconds with 3
//! significant digits (hdrhistogram): partial results from chunks decoded
//! on different threads merge exactly, memory does not grow with the number
//! of slices, and a percentile is within 0.1% of the recorded time (kept
//! within the exact minimum and maximum). Which of the two a group uses
//! depends only on its count, so a report never depends on how the slices
//! were split between chunks or threads.

use hdrhistogram::Histogram;

/// Values kept in a list before a histogram is worth its size.
const EXACT_LIMIT: usize = 256;
const SIGNIFICANT_DIGITS: u8 = 3;

#[derive(Clone, Debug)]
enum Sketch {
    /// Nanoseconds, unsorted; at most `EXACT_LIMIT`.
    Exact(Vec<u64>),
    /// Microseconds.
    Histogram(Box<Histogram<u64>>),
}

impl Default for Sketch {
    fn default() -> Self {
        Sketch::Exact(Vec::new())
    }
}

/// Elapsed times, in nanoseconds as recorded.
#[derive(Clone, Debug, Default)]
pub struct Durations {
    count: u64,
    total_ns: u64,
    min_ns: u64,
    max_ns: u64,
    sketch: Sketch,
}

fn new_histogram() -> Histogram<u64> {
    // Auto-resizing, from 1 µs: it grows to the largest value recorded only.
    Histogram::new(SIGNIFICANT_DIGITS).expect("3 significant digits is a valid histogram precision")
}

/// Records `micros`, growing the histogram as needed. Only a value past
/// hdrhistogram's limit (`i64::MAX / 2` µs, 146,000 years) is clamped.
fn record(histogram: &mut Histogram<u64>, micros: u64) {
    if histogram.record(micros).is_err() {
        histogram.saturating_record(micros);
    }
}

/// A histogram of `values_ns`, in microseconds.
fn histogram_of(values_ns: &[u64]) -> Histogram<u64> {
    let mut histogram = new_histogram();
    for &value in values_ns {
        record(&mut histogram, value / 1000);
    }
    histogram
}

fn add_histogram(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    // An auto-resizing histogram accepts any other; should that ever fail,
    // re-record the values one bucket at a time rather than lose them.
    if into.add(from).is_err() {
        for value in from.iter_recorded() {
            if into.record_n(value.value_iterated_to(), value.count_at_value()).is_err() {
                into.saturating_record_n(value.value_iterated_to(), value.count_at_value());
            }
        }
    }
}

impl Durations {
    pub fn new() -> Durations {
        Durations::default()
    }

    pub fn record(&mut self, duration_ns: u64) {
        if self.count == 0 {
            self.min_ns = duration_ns;
            self.max_ns = duration_ns;
        } else {
            self.min_ns = self.min_ns.min(duration_ns);
            self.max_ns = self.max_ns.max(duration_ns);
        }
        self.count += 1;
        self.total_ns = self.total_ns.saturating_add(duration_ns);
        match &mut self.sketch {
            Sketch::Exact(values) if values.len() < EXACT_LIMIT => values.push(duration_ns),
            Sketch::Exact(values) => {
                let mut histogram = histogram_of(values);
                record(&mut histogram, duration_ns / 1000);
                self.sketch = Sketch::Histogram(Box::new(histogram));
            }
            Sketch::Histogram(histogram) => record(histogram, duration_ns / 1000),
        }
    }

    pub fn merge(&mut self, other: &Durations) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = other.clone();
            return;
        }
        self.count += other.count;
        self.total_ns = self.total_ns.saturating_add(other.total_ns);
        self.min_ns = self.min_ns.min(other.min_ns);
        self.max_ns = self.max_ns.max(other.max_ns);
        let sketch = std::mem::take(&mut self.sketch);
        self.sketch = match (sketch, &other.sketch) {
            (Sketch::Exact(mut mine), Sketch::Exact(theirs)) if mine.len() + theirs.len() <= EXACT_LIMIT => {
                mine.extend_from_slice(theirs);
                Sketch::Exact(mine)
            }
            (mine, theirs) => {
                let mut histogram = match mine {
                    Sketch::Histogram(histogram) => histogram,
                    Sketch::Exact(values) => Box::new(histogram_of(&values)),
                };
                match theirs {
                    Sketch::Exact(values) => {
                        for &value in values {
                            record(&mut histogram, value / 1000);
                        }
                    }
                    Sketch::Histogram(theirs) => add_histogram(&mut histogram, theirs),
                }
                Sketch::Histogram(histogram)
            }
        };
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn total_ns(&self) -> u64 {
        self.total_ns
    }

    pub fn max_ns(&self) -> u64 {
        self.max_ns
    }

    /// Σ of the times' squares in µs²: exact up to 256 times, else to the
    /// histogram's precision.
    pub fn sum_sq_us2(&self) -> u64 {
        match &self.sketch {
            Sketch::Exact(values) => {
                values.iter().fold(0u64, |sum, &ns| sum.saturating_add(crate::loop_time::squared_us(ns)))
            }
            Sketch::Histogram(histogram) => histogram.iter_recorded().fold(0u64, |sum, value| {
                let us = histogram.median_equivalent(value.value_iterated_to());
                sum.saturating_add(us.saturating_mul(us).saturating_mul(value.count_at_value()))
            }),
        }
    }

    /// How many of the times are above `threshold_ns`: exactly up to 256
    /// times, else to the histogram's precision (microseconds, 3 digits).
    pub fn count_above(&self, threshold_ns: u64) -> u64 {
        match &self.sketch {
            Sketch::Exact(values) => values.iter().filter(|&&value| value > threshold_ns).count() as u64,
            Sketch::Histogram(histogram) => {
                let at_most = histogram.count_between(0, threshold_ns / 1000);
                self.count.saturating_sub(at_most)
            }
        }
    }

    /// The percentiles `quantiles` (0 to 1) in nanoseconds; zeros if empty.
    pub fn percentiles_ns(&self, quantiles: &[f64]) -> Vec<u64> {
        if self.count == 0 {
            return vec![0; quantiles.len()];
        }
        match &self.sketch {
            Sketch::Exact(values) => {
                let mut sorted = values.clone();
                sorted.sort_unstable();
                quantiles
                    .iter()
                    .map(|&quantile| {
                        let rank = (quantile.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
                        sorted[rank.clamp(1, sorted.len()) - 1]
                    })
                    .collect()
            }
            Sketch::Histogram(histogram) => quantiles
                .iter()
                .map(|&quantile| {
                    if quantile >= 1.0 {
                        return self.max_ns;
                    }
                    let micros = histogram.median_equivalent(histogram.value_at_quantile(quantile));
                    micros.saturating_mul(1000).clamp(self.min_ns, self.max_ns)
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(values_ns: &[u64]) -> Durations {
        let mut durations = Durations::new();
        for &value in values_ns {
            durations.record(value);
        }
        durations
    }

    const QUANTILES: [f64; 3] = [0.5, 0.95, 0.99];

    #[test]
    fn one_slice_reports_its_own_time_at_every_percentile() {
        let durations = of(&[10_000_123]);
        assert_eq!(durations.percentiles_ns(&QUANTILES), [10_000_123; 3]);
        assert_eq!((durations.count(), durations.total_ns(), durations.max_ns()), (1, 10_000_123, 10_000_123));
    }

    #[test]
    fn percentiles_of_a_hundred_values_are_the_nth_smallest() {
        // 1 ms, 2 ms, ..., 100 ms
        let values: Vec<u64> = (1..=100).map(|ms| ms * 1_000_000).collect();
        let durations = of(&values);
        assert_eq!(
            durations.percentiles_ns(&[0.5, 0.95, 0.99, 1.0]),
            [50_000_000, 95_000_000, 99_000_000, 100_000_000]
        );
        assert_eq!(durations.total_ns(), 5050 * 1_000_000);
    }

    #[test]
    fn merging_is_the_same_as_recording_everything_in_one_place() {
        let values: Vec<u64> = (0..2000u64).map(|i| (i * 7919 % 5000) * 1_000 + 1_000).collect();
        let whole = of(&values);
        // Split unevenly, so that lists, histograms, and a list into a
        // histogram are all merged.
        for split in [1, 100, 255, 256, 257, 1000, 1999] {
            let (a, b) = values.split_at(split);
            let mut merged = of(a);
            merged.merge(&of(b));
            let mut reversed = of(b);
            reversed.merge(&of(a));
            for candidate in [&merged, &reversed] {
                assert_eq!(candidate.count(), whole.count());
                assert_eq!(candidate.total_ns(), whole.total_ns());
                assert_eq!(candidate.max_ns(), whole.max_ns());
                assert_eq!(candidate.percentiles_ns(&QUANTILES), whole.percentiles_ns(&QUANTILES), "split {split}");
            }
        }
    }

    #[test]
    fn large_groups_use_a_histogram_within_a_thousandth() {
        let values: Vec<u64> = (1..=10_000u64).map(|i| i * 12_345).collect();
        let durations = of(&values);
        assert!(matches!(durations.sketch, Sketch::Histogram(_)));
        let [p50, p99] = durations.percentiles_ns(&[0.5, 0.99])[..] else { unreachable!() };
        let exact_p50 = 5_000 * 12_345;
        let exact_p99 = 9_900 * 12_345;
        assert!(p50.abs_diff(exact_p50) * 1000 <= exact_p50, "{p50} vs {exact_p50}");
        assert!(p99.abs_diff(exact_p99) * 1000 <= exact_p99, "{p99} vs {exact_p99}");
    }

    #[test]
    fn empty_merges_change_nothing() {
        let mut durations = of(&[5_000, 7_000]);
        durations.merge(&Durations::new());
        assert_eq!(durations.percentiles_ns(&[0.5, 1.0]), [5_000, 7_000]);
        let mut empty = Durations::new();
        assert_eq!(empty.percentiles_ns(&QUANTILES), [0, 0, 0]);
        empty.merge(&durations);
        assert_eq!(empty.count(), 2);
    }

    #[test]
    fn absurd_times_from_a_crafted_trace_are_kept_without_panicking() {
        let durations = of(&[u64::MAX; 300]);
        assert_eq!(durations.total_ns(), u64::MAX);
        assert_eq!(durations.percentiles_ns(&QUANTILES), [u64::MAX; 3]);
        let mut mixed = of(&[1_000; 300]);
        mixed.merge(&of(&[u64::MAX; 300]));
        let [p50, p51, p100] = mixed.percentiles_ns(&[0.5, 0.51, 1.0])[..] else { unreachable!() };
        assert_eq!((p50, p100), (1_000, u64::MAX));
        assert!(p51.abs_diff(u64::MAX) <= u64::MAX / 1000, "{p51}");
    }

    #[test]
    fn counts_above_a_time_are_exact_for_small_groups_and_close_for_large_ones() {
        assert_eq!(of(&[900, 300, 1_000_001]).count_above(900), 1);
        assert_eq!(of(&[]).count_above(0), 0);
        let large = of(&(1..=1_000u64).map(|ms| ms * 1_000_000).collect::<Vec<_>>());
        assert_eq!(large.count_above(950_000_000), 50);
        assert_eq!(large.count_above(0), 1_000);
    }

    #[test]
    fn small_groups_are_exact_to_the_nanosecond() {
        let durations = of(&[900, 300, 1_000_001]);
        assert_eq!(
            durations.percentiles_ns(&[0.0, 0.33, 0.34, 0.5, 0.67, 1.0]),
            [300, 300, 900, 900, 1_000_001, 1_000_001]
        );
    }
}
