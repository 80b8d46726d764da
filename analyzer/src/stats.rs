//! The tests behind `diff`'s statuses: whether a change between two runs is
//! more than their counts can explain.
//!
//! - [`rate_rise`] / [`rate_fall`]: a Poisson rate-ratio test. If a group
//!   happens at the same rate per slice on both sides, then given that it was
//!   seen `k_base + k_new` times in all, `k_new` is binomial with
//!   `p0 = n_new / (n_base + n_new)` (the new side's share of the slices).
//!   The p-value of a rise is `P(X >= k_new)`, of a fall `P(X <= k_new)`.
//!   A count of 0 on the base side (a new group) is tested the same way:
//!   `p = p0^k_new`, so a group seen a handful of times is never more than
//!   chance.
//! - Counts that come in clusters (a slice that makes three calls, or scores
//!   50 at once) vary more than a Poisson count of the same mean, so they are
//!   first divided by their dispersion, `Σ x² / Σ x` over the slices of both
//!   sides (quasi-Poisson): a sum of `m` events per slice is tested as a
//!   count of slices, not of `m` times as many independent events.
//! - [`tail_rise`] / [`tail_fall`]: for elapsed times, Fisher's exact test on
//!   how many slices of each side are above the *pooled* p95 (of both sides'
//!   slices together; or at or above it when ties at the p95 make that the
//!   nearer to 5% of the slices, see `diff::tail_counts`). Unlike comparing
//!   two p95s, it accounts for both sides' sample sizes, and a slow outlier
//!   or two cannot make it.
//! - [`holm`]: a diff tests dozens of rows at once; Holm–Bonferroni
//!   adjusts each p-value so that, when nothing changed, the chance that
//!   *any* test of the diff rejects stays at most `1 - confidence`.

use statrs::distribution::{Binomial, DiscreteCDF, Hypergeometric};

/// What a rate test compares on one side: the total of a measure (events,
/// severity score) over the group's slices, the sum of its squares per
/// slice, and the side's number of slices.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateSample {
    pub total: f64,
    /// Σ over the group's slices of (the measure in that slice)².
    pub sum_sq: f64,
    /// Every slice of the side, with blocking I/O or not: the rate's denominator.
    pub side_slices: u64,
}

/// `Σ x² / Σ x` of both sides together, at least 1: how many times more a
/// count of these varies than a Poisson count with the same mean.
pub fn dispersion(base: &RateSample, new: &RateSample) -> f64 {
    let total = base.total + new.total;
    if total <= 0.0 {
        return 1.0;
    }
    ((base.sum_sq + new.sum_sq) / total).max(1.0)
}

/// The binomial of the rate test, and the new side's count, after dividing
/// both counts by their dispersion. `None` if a side has no slices.
fn conditional(base: &RateSample, new: &RateSample) -> Option<(u64, u64, f64)> {
    if base.side_slices == 0 || new.side_slices == 0 {
        return None;
    }
    let phi = dispersion(base, new);
    let k_base = (base.total.max(0.0) / phi).round() as u64;
    let k_new = (new.total.max(0.0) / phi).round() as u64;
    let p0 = new.side_slices as f64 / (base.side_slices + new.side_slices) as f64;
    Some((k_base + k_new, k_new, p0))
}

/// The p-value that the new side's rate is higher than the base's (1 when
/// nothing can be said).
pub fn rate_rise(base: &RateSample, new: &RateSample) -> f64 {
    let Some((n, k_new, p0)) = conditional(base, new) else { return 1.0 };
    if k_new == 0 {
        return 1.0;
    }
    binomial(p0, n).map_or(1.0, |b| b.sf(k_new - 1))
}

/// The p-value that the new side's rate is lower than the base's.
pub fn rate_fall(base: &RateSample, new: &RateSample) -> f64 {
    let Some((n, k_new, p0)) = conditional(base, new) else { return 1.0 };
    binomial(p0, n).map_or(1.0, |b| b.cdf(k_new))
}

/// The smallest p-values the rate tests could give these totals, a rise's
/// (all of them on the new side) and a fall's (all on the base's): a test
/// whose smallest p-value is above the level can never reject, and leaving
/// it out of a Holm family keeps the family's error rate (Tarone, 1990).
pub fn rate_floor(base: &RateSample, new: &RateSample) -> (f64, f64) {
    let Some((n, _, p0)) = conditional(base, new) else { return (1.0, 1.0) };
    let n = i32::try_from(n).unwrap_or(i32::MAX);
    (p0.powi(n), (1.0 - p0).powi(n))
}

fn binomial(p: f64, n: u64) -> Option<Binomial> {
    Binomial::new(p.clamp(0.0, 1.0), n).ok()
}

/// Slices of each side above a threshold (the pooled p95), out of all of
/// the group's slices on that side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TailCounts {
    pub base_above: u64,
    pub base_slices: u64,
    pub new_above: u64,
    pub new_slices: u64,
}

impl TailCounts {
    /// Under "same distribution", the new side's count above is
    /// hypergeometric: `new_slices` drawn from all slices, of which
    /// `base_above + new_above` are above.
    fn distribution(&self) -> Option<Hypergeometric> {
        let population = self.base_slices + self.new_slices;
        let above = self.base_above + self.new_above;
        Hypergeometric::new(population, above.min(population), self.new_slices).ok()
    }
}

/// The p-value that more of the new side's slices are slow (one-sided Fisher).
pub fn tail_rise(counts: &TailCounts) -> f64 {
    match counts.distribution() {
        Some(h) if counts.new_above > 0 => h.sf(counts.new_above - 1).clamp(0.0, 1.0),
        _ => 1.0,
    }
}

/// The p-value that fewer of the new side's slices are slow.
pub fn tail_fall(counts: &TailCounts) -> f64 {
    counts.distribution().map_or(1.0, |h| h.cdf(counts.new_above).clamp(0.0, 1.0))
}

/// Holm–Bonferroni adjusted p-values, in the order given: the `i`-th
/// smallest of `m` is multiplied by `m - i` (counting from 0), and each is
/// at least the one before it in that order. A test rejects at level `alpha`
/// for the whole family when its adjusted p-value is at most `alpha`.
pub fn holm(p_values: &[f64]) -> Vec<f64> {
    let m = p_values.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p_values[a].total_cmp(&p_values[b]));
    let mut adjusted = vec![1.0; m];
    let mut running = 0.0_f64;
    for (rank, &index) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * p_values[index]).min(1.0));
        adjusted[index] = running;
    }
    adjusted
}

/// How many robust standard deviations (MAD x 1.4826) of the peers' changes
/// a row's change must stand beyond to be more than the machine's: 3, the
/// usual robust outlier rule.
pub const MACHINE_SPREAD_SDS: f64 = 3.0;

/// The least ratio, either way, that a row's change must pass against its
/// peers' before it can be its own and not the machine's: a change of load
/// between two recordings moves code of one shape against another by this
/// much without any peer showing it. Measured on a 2-core machine with a
/// busy process on the server's CPU in one of two recordings of one
/// FastAPI build: its CPU-bound route slowed 1.42x while the two others
/// moved 0.98x and 0.83x (1.58x against their median); reported before, a
/// route +50% against the others. With `--min-increase` (20%) on top, a
/// change is called from 1.8x against the peers.
pub const MACHINE_ALLOWANCE: f64 = 1.5;

/// The median absolute deviation's scale to a normal standard deviation.
const MAD_TO_SD: f64 = 1.4826;

fn median(values: &mut [f64]) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    match values.len() {
        0 => None,
        n if n % 2 == 1 => Some(values[middle]),
        _ => Some((values[middle - 1] + values[middle]) / 2.0),
    }
}

/// What a change of the machine's speed between two recordings does to rows
/// that did not change (routes, stacks), read from the rows' peers: their
/// log ratios (`ln(new / base)`) spread around a `center` (the machine's
/// change for them all), and a row's own change counts only beyond
/// `center ± allowance`: as far as the farthest peer, but no farther than
/// [`MACHINE_SPREAD_SDS`] robust standard deviations of the peers (so that,
/// among many rows, two that really changed do not hide each other; with
/// two or three peers, their whole range). A machine twice as busy
/// does not slow every kind of code alike (a long CPU-bound slice is
/// preempted more than a short one), and no count of requests or samples
/// makes that unevenness smaller: it is not chance a test of counts knows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MachineSpread {
    /// The peers' median log ratio.
    pub center: f64,
    /// Half the width, in log ratio, of the band that a row's change must leave.
    pub allowance: f64,
    /// How many peers the spread was read from.
    pub peers: usize,
}

impl MachineSpread {
    /// No change and no spread: a row without peers, before any allowance.
    pub const NONE: MachineSpread = MachineSpread { center: 0.0, allowance: 0.0, peers: 0 };

    /// The spread of `peer_log_ratios`; `None` with no peer (nothing tells
    /// the machine's change from the row's own then).
    pub fn of(peer_log_ratios: &[f64]) -> Option<MachineSpread> {
        let mut values: Vec<f64> = peer_log_ratios.iter().copied().filter(|x| x.is_finite()).collect();
        let center = median(&mut values)?;
        let mut deviations: Vec<f64> = values.iter().map(|x| (x - center).abs()).collect();
        let farthest = deviations.iter().copied().fold(0.0, f64::max);
        let mad = median(&mut deviations).unwrap_or(0.0);
        let allowance = farthest.min(MACHINE_SPREAD_SDS * MAD_TO_SD * mad);
        Some(MachineSpread { center, allowance, peers: values.len() })
    }

    /// The same band, at least as wide as the machine's change itself
    /// (`|center|`): when the whole machine got 1.5x slower, code of another
    /// shape may have been slowed by none of it or twice as much.
    pub fn at_least_the_change(self) -> MachineSpread {
        MachineSpread { allowance: self.allowance.max(self.center.abs()), ..self }
    }

    /// The same band, at least [`MACHINE_ALLOWANCE`] wide either way.
    pub fn at_least_the_allowance(self) -> MachineSpread {
        MachineSpread { allowance: self.allowance.max(MACHINE_ALLOWANCE.ln()), ..self }
    }

    /// Whether `log_ratio` rose beyond the band, by `min_increase` more.
    pub fn rose_beyond(&self, log_ratio: f64, min_increase: f64) -> bool {
        log_ratio > self.center + self.allowance + min_increase.ln_1p()
    }

    /// Whether `log_ratio` fell beyond the band, by `min_increase` more.
    pub fn fell_beyond(&self, log_ratio: f64, min_increase: f64) -> bool {
        log_ratio < self.center - self.allowance - min_increase.ln_1p()
    }

    /// The band's edges as ratios (new over base): `(low, high)`.
    pub fn band(&self) -> (f64, f64) {
        ((self.center - self.allowance).exp(), (self.center + self.allowance).exp())
    }
}

/// `p < 0.001`, `p = 0.004`, as a reason shows a p-value.
pub fn p_text(p: f64) -> String {
    if p < 0.001 {
        "p < 0.001".to_owned()
    } else {
        format!("p = {:.3}", p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// splitmix64: small, seedable, good enough to draw test counts.
    struct Rng(u64);

    impl Rng {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn uniform(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
        }

        /// Poisson(mean) by counting exponential gaps in one unit of time.
        fn poisson(&mut self, mean: f64) -> u64 {
            let (mut count, mut time) = (0, 0.0);
            loop {
                time += -(1.0 - self.uniform()).ln() / mean;
                if time > 1.0 {
                    return count;
                }
                count += 1;
            }
        }
    }

    fn sample(total: u64, per_slice: f64, side_slices: u64) -> RateSample {
        RateSample { total: total as f64 * per_slice, sum_sq: total as f64 * per_slice * per_slice, side_slices }
    }

    const ALPHA: f64 = 0.01;
    const SEEDS: u64 = 1_000;

    /// The exact chance that the rise test rejects at `alpha` when both
    /// sides have the rate `rate_per_slice`: the sum over every total count
    /// `N` (Poisson) of the binomial tail past the test's critical count.
    fn exact_size(rate_per_slice: f64, base_slices: u64, new_slices: u64, alpha: f64) -> f64 {
        use statrs::distribution::{Discrete, Poisson};
        let mean = rate_per_slice * (base_slices + new_slices) as f64;
        let total = Poisson::new(mean).unwrap();
        let p0 = new_slices as f64 / (base_slices + new_slices) as f64;
        let most = (mean + 12.0 * mean.sqrt()) as u64 + 5;
        (0..most)
            .map(|n| {
                let binomial = Binomial::new(p0, n).unwrap();
                // The smallest count whose tail is at most alpha, and that tail.
                let tail = (0..=n).map(|k| if k == 0 { 1.0 } else { binomial.sf(k - 1) }).find(|&t| t <= alpha);
                total.pmf(n) * tail.unwrap_or(0.0)
            })
            .sum()
    }

    /// Runs of different lengths, rare and common groups.
    const UNCHANGED: [(f64, u64, u64); 4] =
        [(0.005, 40_000, 55_000), (0.05, 4_000, 4_000), (0.001, 100_000, 30_000), (0.2, 1_000, 1_500)];

    #[test]
    fn an_unchanged_rate_rises_by_chance_at_most_one_time_in_a_hundred() {
        // Exactly, whatever the seed...
        for (rate, base_slices, new_slices) in UNCHANGED {
            let size = exact_size(rate, base_slices, new_slices, ALPHA);
            assert!(size <= ALPHA, "{size} at {rate} per slice");
        }
        // ...and drawn: 1,000 seeds of each case, through `rate_rise` itself.
        let mut rng = Rng(7);
        let mut false_alarms = 0;
        for (rate, base_slices, new_slices) in UNCHANGED {
            false_alarms += (0..SEEDS)
                .filter(|_| {
                    let base = rng.poisson(rate * base_slices as f64);
                    let new = rng.poisson(rate * new_slices as f64);
                    rate_rise(&sample(base, 1.0, base_slices), &sample(new, 1.0, new_slices)) <= ALPHA
                })
                .count();
        }
        let draws = SEEDS * UNCHANGED.len() as u64;
        assert!(false_alarms as f64 <= ALPHA * draws as f64, "{false_alarms} false alarms in {draws}");
    }

    #[test]
    fn clustered_counts_are_tested_as_clusters() {
        // Slices of 5 events each: Poisson slices, five times the events.
        let mut rng = Rng(11);
        let (base_slices, new_slices) = (10_000, 10_000);
        let false_alarms = (0..SEEDS)
            .filter(|_| {
                let base = rng.poisson(0.02 * base_slices as f64);
                let new = rng.poisson(0.02 * new_slices as f64);
                rate_rise(&sample(base, 5.0, base_slices), &sample(new, 5.0, new_slices)) <= ALPHA
            })
            .count();
        assert!(false_alarms as f64 <= ALPHA * SEEDS as f64, "{false_alarms}");
        // Without the dispersion, the same counts alarm far more often: the
        // correction is what keeps them quiet.
        let mut rng = Rng(11);
        let naive = (0..SEEDS)
            .filter(|_| {
                let base = rng.poisson(0.02 * base_slices as f64) * 5;
                let new = rng.poisson(0.02 * new_slices as f64) * 5;
                rate_rise(&sample(base, 1.0, base_slices), &sample(new, 1.0, new_slices)) <= ALPHA
            })
            .count();
        assert!(naive > 3 * false_alarms.max(10), "{naive} vs {false_alarms}");
    }

    #[test]
    fn a_doubled_rate_with_200_events_a_side_is_caught() {
        // 200 events in 10,000 slices, then 400 in 10,000; and the same
        // rate doubled in runs of different lengths.
        for (base_slices, new_slices) in [(10_000, 10_000), (10_000, 5_000), (8_000, 20_000)] {
            let mut rng = Rng(3);
            let rate = 200.0 / base_slices as f64;
            let caught = (0..SEEDS)
                .filter(|_| {
                    let base = rng.poisson(rate * base_slices as f64);
                    let new = rng.poisson(2.0 * rate * new_slices as f64);
                    // Corrected as if for 50 tests at once.
                    50.0 * rate_rise(&sample(base, 1.0, base_slices), &sample(new, 1.0, new_slices)) <= ALPHA
                })
                .count();
            assert!(caught as f64 >= 0.99 * SEEDS as f64, "{caught} of {SEEDS} caught ({base_slices}, {new_slices})");
        }
        // Exactly 200 and 400.
        assert!(rate_rise(&sample(200, 1.0, 10_000), &sample(400, 1.0, 10_000)) < 1e-12);
        assert!(rate_fall(&sample(400, 1.0, 10_000), &sample(200, 1.0, 10_000)) < 1e-12);
    }

    #[test]
    fn new_groups_need_enough_slices_to_be_more_than_chance() {
        let none = RateSample { total: 0.0, sum_sq: 0.0, side_slices: 1_000 };
        // Equal runs: p = 0.5^k.
        let p = |k| rate_rise(&none, &sample(k, 1.0, 1_000));
        assert!((p(1) - 0.5).abs() < 1e-9 && (p(7) - 0.5f64.powi(7)).abs() < 1e-9);
        assert!(p(2) > ALPHA && p(7) < ALPHA);
        assert_eq!(rate_rise(&none, &none), 1.0);
        assert_eq!(rate_rise(&sample(5, 1.0, 0), &sample(5, 1.0, 10)), 1.0);
    }

    #[test]
    fn the_tail_test_accounts_for_both_sample_sizes() {
        let counts = |base_above, base_slices, new_above, new_slices| TailCounts {
            base_above,
            base_slices,
            new_above,
            new_slices,
        };
        // 5% above on both sides: nothing.
        assert!(tail_rise(&counts(5, 100, 5, 100)) > 0.4);
        // A third of the new side is slow: a rise.
        assert!(tail_rise(&counts(3, 100, 30, 100)) < 1e-6);
        assert!(tail_fall(&counts(30, 100, 3, 100)) < 1e-6);
        // One slow slice more is never enough.
        assert!(tail_rise(&counts(0, 50, 1, 50)) > 0.4);
        assert_eq!(tail_rise(&counts(0, 50, 0, 50)), 1.0);

        // A/A over 1,000 seeds: same distribution, random draws above the pooled 95th.
        let mut rng = Rng(5);
        let false_alarms = (0..SEEDS)
            .filter(|_| {
                let draw = |rng: &mut Rng, n| (0..n).filter(|_| rng.uniform() < 0.05).count() as u64;
                let (base_above, new_above) = (draw(&mut rng, 200), draw(&mut rng, 300));
                tail_rise(&counts(base_above, 200, new_above, 300)) <= ALPHA
            })
            .count();
        assert!(false_alarms as f64 <= ALPHA * SEEDS as f64, "{false_alarms}");
    }

    #[test]
    fn holm_multiplies_the_smallest_by_the_family_size_and_keeps_the_order() {
        let adjusted = holm(&[0.01, 0.04, 0.03, 0.005]);
        let expected = [0.03, 0.06, 0.06, 0.02];
        for (a, e) in adjusted.iter().zip(expected) {
            assert!((a - e).abs() < 1e-12, "{adjusted:?}");
        }
        assert_eq!(holm(&[0.9, 0.8]), [1.0, 1.0]);
        assert_eq!(holm(&[0.3, 0.2]), [0.4, 0.4]);
        assert!(holm(&[]).is_empty());
    }

    #[test]
    fn the_whole_diff_holds_its_confidence_over_many_rows() {
        // 40 unchanged rows per diff, 1,000 diffs: at most 1% of the diffs
        // may have any row below the family's level.
        let mut rng = Rng(13);
        let failed = (0..SEEDS)
            .filter(|_| {
                let p: Vec<f64> = (0..40)
                    .map(|row| {
                        let rate = 0.001 * (row + 1) as f64;
                        let base = rng.poisson(rate * 20_000.0);
                        let new = rng.poisson(rate * 20_000.0);
                        rate_rise(&sample(base, 1.0, 20_000), &sample(new, 1.0, 20_000))
                    })
                    .collect();
                holm(&p).iter().any(|&q| q <= ALPHA)
            })
            .count();
        assert!(failed as f64 <= ALPHA * SEEDS as f64, "{failed} of {SEEDS} diffs failed");
    }

    /// The log ratios of `rows` rows that did not change, on a machine whose
    /// speed changed by `speed` between the recordings, each kind of code
    /// slowed unevenly (a factor drawn within `unevenness` of the speed),
    /// each measured with a few percent of noise.
    fn unchanged_rows(rng: &mut Rng, rows: usize, speed: f64, unevenness: f64) -> Vec<f64> {
        (0..rows)
            .map(|_| speed.ln() + unevenness.ln() * (2.0 * rng.uniform() - 1.0) + 0.03 * (2.0 * rng.uniform() - 1.0))
            .collect()
    }

    #[test]
    fn a_row_moved_with_its_peers_by_the_machine_is_within_the_band() {
        // A machine as fast or 2.4x slower, that slows code unevenly (within
        // 1.25x either way, so two rows up to 1.56x apart, as measured):
        // every unchanged row, tested against the others, stays in.
        let mut rng = Rng(17);
        for (rows, speed) in [3, 4, 6, 12].into_iter().flat_map(|rows| [(rows, 1.0), (rows, 2.4), (rows, 0.5)]) {
            for _ in 0..200 {
                let ratios = unchanged_rows(&mut rng, rows, speed, 1.25);
                for i in 0..rows {
                    let peers: Vec<f64> = ratios.iter().enumerate().filter(|&(j, _)| j != i).map(|(_, &x)| x).collect();
                    let spread = MachineSpread::of(&peers).unwrap().at_least_the_change().at_least_the_allowance();
                    assert!(
                        !spread.rose_beyond(ratios[i], 0.2) && !spread.fell_beyond(ratios[i], 0.2),
                        "{i} of {ratios:?}: {spread:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_row_three_times_as_dear_leaves_the_band_of_peers_that_moved_alike() {
        let mut rng = Rng(19);
        for speed in [1.0, 1.3, 0.8] {
            for rows in [3, 5, 12] {
                let mut ratios = unchanged_rows(&mut rng, rows, speed, 1.05);
                ratios[0] += 3f64.ln();
                let spread = MachineSpread::of(&ratios[1..]).unwrap().at_least_the_change().at_least_the_allowance();
                assert!(spread.rose_beyond(ratios[0], 0.2), "{ratios:?}: {spread:?}");
                // And a third of the cost is a fall beyond it.
                assert!(spread.fell_beyond(ratios[0] - 2.0 * 3f64.ln(), 0.2), "{ratios:?}: {spread:?}");
            }
        }
    }

    #[test]
    fn the_band_is_the_peers_spread_at_least_their_change_and_nothing_without_peers() {
        assert_eq!(MachineSpread::of(&[]), None);
        let one = MachineSpread::of(&[2f64.ln()]).unwrap();
        assert_eq!((one.center, one.allowance, one.peers), (2f64.ln(), 0.0, 1));
        // Alone, a peer's change is the band: 2x slower, a row may be 1x to 4x.
        let (low, high) = one.at_least_the_change().band();
        assert!((low - 1.0).abs() < 1e-9 && (high - 4.0).abs() < 1e-9, "{low} {high}");
        // Peers at 0, ±0.1: as far as the farthest.
        let spread = MachineSpread::of(&[-0.1, 0.0, 0.1]).unwrap();
        assert!((spread.allowance - 0.1).abs() < 1e-9, "{spread:?}");
        assert!(!spread.rose_beyond(0.1 + 0.18, 0.2) && spread.rose_beyond(0.1 + 0.19, 0.2));
        // Eleven peers, one far off (a row that changed too): 3 robust
        // standard deviations of them (MAD 0.1), not as far as that one.
        let mut peers = vec![-0.1, 0.1, -0.1, 0.1, -0.1, 0.1, 0.0, -0.1, 0.1, 0.0];
        peers.push(1.1);
        let spread = MachineSpread::of(&peers).unwrap();
        assert!((spread.allowance - 0.44478).abs() < 1e-9, "{spread:?}");
    }

    #[test]
    fn p_values_read_as_reasons_show_them() {
        assert_eq!(p_text(0.0004), "p < 0.001");
        assert_eq!(p_text(0.0042), "p = 0.004");
    }
}
