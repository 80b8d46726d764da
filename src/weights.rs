//! How much of its slice's time each CPU sample stands for.
//!
//! Recording's samples are taken by the loop thread itself, at its next
//! eval-breaker check after the watchdog asks (a pending call). While C code
//! holds the GIL (a sort, the C JSON encoder, a regex) there is no check: the
//! request waits, and the sample is taken once the call returns, in the
//! Python code that called it. Giving every sample an equal share of its
//! slice would split the C call's time between its caller and whatever runs
//! after it (a safepoint bias). So a sample weighs the time since the
//! previous sample of its slice (the first: since the slice's start), and
//! a sample whose request waited long while the loop thread ran
//! ([`waited_in_native_code`]) says the time was inside a C call made from
//! the sampled line.
//!
//! Traces before format 1.3 carry no sample times: their samples weigh the
//! same. [`sample_weights`] is the one place this is decided: the analyzer
//! and every export use it.

use crate::records::SampleTime;

/// The nanoseconds of a slice of `duration_ns` that each of its
/// `sample_count` samples stands for, in sample order. They add up to
/// `duration_ns` exactly.
///
/// With `times` (format 1.3, one per sample): each sample gets the time
/// since the previous one (the first, since the slice's start), and the
/// time after the last sample, which no sample saw, is spread over all of
/// them in proportion. Without (`times` empty, or not one per sample: an
/// older trace, or the monitor's untimed samples), each gets an equal share.
pub fn sample_weights(duration_ns: u64, sample_count: usize, times: &[SampleTime]) -> Vec<u64> {
    if sample_count == 0 {
        return Vec::new();
    }
    if times.len() != sample_count {
        return apportion(duration_ns, &vec![1; sample_count]);
    }
    let mut previous_ns = 0;
    let gaps: Vec<u64> = times
        .iter()
        .map(|time| {
            // A sample read after the slice's end (it cannot be) or out of
            // order (clock skew) stands for nothing more.
            let taken_ns = time.taken_offset_ns.clamp(previous_ns, duration_ns);
            let gap = taken_ns - previous_ns;
            previous_ns = taken_ns;
            gap
        })
        .collect();
    apportion(duration_ns, &gaps)
}

/// Whether a sample's request waited in C code that held the GIL, called
/// from the sampled line: the loop thread reached no eval-breaker check for
/// over twice recording's sampling interval while it *ran*.
///
/// `ran_ns` (format 1.4) is the loop thread's CPU time over the wait: a
/// thread the machine did not run (a loaded machine, pure Python waiting
/// for a CPU) or that waited with the GIL released did not run C code, and
/// its wall-clock wait says nothing. Without it (a 1.3 trace) the wall-clock
/// wait decides, as it did then. `false` for an unknown interval.
pub fn waited_in_native_code(time: &SampleTime, ran_ns: Option<u64>, interval_ns: u64) -> bool {
    let limit_ns = interval_ns.saturating_mul(2);
    interval_ns > 0 && ran_ns.unwrap_or(time.waited_ns) > limit_ns
}

/// Whether each of a slice's `sample_count` samples waited in native code
/// ([`waited_in_native_code`]), in sample order: by the loop thread's CPU
/// time where `cpu_ns` has one per sample (format 1.4), else by the
/// wall-clock wait of `times`; all `false` for untimed samples (`times` not
/// one per sample). The analyzer, its exports and the Python reader use it.
pub fn samples_native(sample_count: usize, times: &[SampleTime], cpu_ns: &[u64], interval_ns: u64) -> Vec<bool> {
    if times.len() != sample_count {
        return vec![false; sample_count];
    }
    let cpu_known = cpu_ns.len() == times.len();
    let ran_ns = |index: usize| if cpu_known { cpu_ns.get(index).copied() } else { None };
    times.iter().enumerate().map(|(index, time)| waited_in_native_code(time, ran_ns(index), interval_ns)).collect()
}

/// Splits `total` in proportion to `weights`, in whole units, so that the
/// parts add up to `total` exactly: each part is rounded down, and the units
/// left over go one each to the parts with the largest remainders (the
/// first of equal ones). All weights 0: everything to the first part.
pub fn apportion(total: u64, weights: &[u64]) -> Vec<u64> {
    let sum: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    if weights.is_empty() {
        return Vec::new();
    }
    if sum == 0 {
        let mut parts = vec![0; weights.len()];
        parts[0] = total;
        return parts;
    }
    let mut parts = Vec::with_capacity(weights.len());
    let mut remainders = Vec::with_capacity(weights.len());
    for (index, &weight) in weights.iter().enumerate() {
        let exact = u128::from(total) * u128::from(weight);
        parts.push((exact / sum) as u64);
        remainders.push((exact % sum, index));
    }
    let given: u64 = parts.iter().sum();
    let mut left = total - given;
    // Largest remainder first; on a tie, the first part.
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, index) in &remainders {
        if left == 0 {
            break;
        }
        parts[index] += 1;
        left -= 1;
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(offsets_ns: &[u64]) -> Vec<SampleTime> {
        offsets_ns.iter().map(|&taken_offset_ns| SampleTime { taken_offset_ns, waited_ns: 0 }).collect()
    }

    #[test]
    fn a_sample_weighs_the_time_since_the_previous_one() {
        // A 45 ms C call, its sample taken as it returns, then a quick return
        // sampled at once: the call's time is the first sample's.
        assert_eq!(sample_weights(46_000, 2, &taken(&[45_000, 45_500])), [45_495, 505]);
        // The time after the last sample is spread in proportion.
        assert_eq!(sample_weights(40, 2, &taken(&[10, 20])), [20, 20]);
        assert_eq!(sample_weights(30, 3, &taken(&[10, 20, 30])), [10, 10, 10]);
    }

    #[test]
    fn untimed_samples_share_their_slice_equally() {
        assert_eq!(sample_weights(10, 3, &[]), [4, 3, 3]);
        // Times that are not one per sample are not trusted.
        assert_eq!(sample_weights(10, 2, &taken(&[9])), [5, 5]);
        assert_eq!(sample_weights(10, 0, &[]), Vec::<u64>::new());
    }

    #[test]
    fn weights_add_up_to_the_slice_whatever_the_times() {
        for times in [taken(&[50, 10, 70]), taken(&[0, 0]), taken(&[u64::MAX, 5]), taken(&[200])] {
            let weights = sample_weights(100, times.len(), &times);
            assert_eq!(weights.iter().sum::<u64>(), 100, "{times:?}: {weights:?}");
        }
        // Out of order: the late one stands for nothing more.
        assert_eq!(sample_weights(100, 3, &taken(&[50, 10, 100])), [50, 0, 50]);
    }

    #[test]
    fn a_request_that_waited_over_two_intervals_waited_in_native_code() {
        let waited = |waited_ns| SampleTime { taken_offset_ns: 0, waited_ns };
        assert!(waited_in_native_code(&waited(2_000_001), None, 1_000_000));
        assert!(!waited_in_native_code(&waited(2_000_000), None, 1_000_000));
        assert!(!waited_in_native_code(&waited(u64::MAX), None, 0));
    }

    #[test]
    fn a_wait_the_loop_thread_did_not_run_through_is_not_native_code() {
        // 10 ms waited, but the thread ran 0.1 ms of it: the machine ran
        // something else (pure Python on a loaded machine).
        let waited = SampleTime { taken_offset_ns: 0, waited_ns: 10_000_000 };
        assert!(!waited_in_native_code(&waited, Some(100_000), 1_000_000));
        // It ran 9 ms of it without a check: C code holding the GIL.
        assert!(waited_in_native_code(&waited, Some(9_000_000), 1_000_000));
        assert!(!waited_in_native_code(&waited, Some(9_000_000), 0));
    }

    #[test]
    fn a_slices_samples_are_native_by_cpu_time_where_each_has_one_else_by_the_wall_clock() {
        let waited = |waited_ns| SampleTime { taken_offset_ns: 0, waited_ns };
        let times = [waited(10_000_000), waited(10_000_000)];
        assert_eq!(samples_native(2, &times, &[9_000_000, 100_000], 1_000_000), [true, false]);
        // CPU times not one per sample (none: a 1.3 trace, or a 1.4 one written before them).
        assert_eq!(samples_native(2, &times, &[], 1_000_000), [true, true]);
        assert_eq!(samples_native(2, &times, &[100_000], 1_000_000), [true, true]);
        // Untimed samples are never native.
        assert_eq!(samples_native(2, &times[..1], &[], 1_000_000), [false, false]);
    }

    #[test]
    fn apportion_adds_up_exactly_and_follows_the_weights() {
        assert_eq!(apportion(10, &[1, 1, 1]), [4, 3, 3]);
        assert_eq!(apportion(10, &[2, 1, 1]), [5, 3, 2]);
        assert_eq!(apportion(7, &[0, 0]), [7, 0]);
        assert_eq!(apportion(0, &[3, 4]), [0, 0]);
        assert_eq!(apportion(5, &[]), Vec::<u64>::new());
        assert_eq!(
            apportion(u64::MAX, &[u64::MAX, 1]).iter().map(|&p| u128::from(p)).sum::<u128>(),
            u128::from(u64::MAX)
        );
        for total in [1, 999, 1_000_003] {
            for weights in [&[3u64, 5, 7][..], &[1], &[1, 0, 2], &[100, 1]] {
                assert_eq!(apportion(total, weights).iter().sum::<u64>(), total, "{total} by {weights:?}");
            }
        }
    }
}
