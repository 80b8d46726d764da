//! `diff` of tasks and loop lag: the loop lag of two sets of traces, and
//! each coroutine's (or route's, `--by route`) tasks, compared.
//!
//! Each is a rate tested as the gate tests a group's rates
//! ([`crate::stats`], quasi-Poisson): loop lag as the mean ready-wait per
//! slice whose readiness is known (µs, dispersed as the ready-waits
//! themselves: a few long waits vary more than many short ones); a
//! coroutine's ready-wait and wall time as their mean per timed task. Rises
//! are Holm-adjusted over every rise test (lag and rows together), falls
//! over every fall test. Something `regressed` when a rate rose beyond
//! chance (adjusted p <= 1 - `--confidence`) and by at least
//! `--min-increase`, a task's mean also by `--min-route-change-ms`;
//! `improved` likewise for a fall; a coroutine with timed tasks on one side
//! only is `new` or `gone`. Nothing here is scaled to the machine's speed:
//! ready-waits grow on a slower or busier machine, so compare recordings
//! made on one machine in one state. The gate (`--fail-on`) does not look
//! at tasks or loop lag (said in the report).

use crate::diff::{DiffOptions, LagDiff, Status, TaskDiffRow, TaskSideValues, TasksDiff};
use crate::durations::Durations;
use crate::stats::{self, RateSample};
use crate::tasks::{LagSummary, TaskGroup, TaskTimes};
use std::collections::BTreeSet;

fn ms(ns: u64) -> f64 {
    (ns as f64 / 1e3).round() / 1e3
}

/// The mean of `durations` over `count`, in ms to 3 decimals.
fn mean_ms(durations: &Durations, count: u64) -> f64 {
    if count == 0 {
        return 0.0;
    }
    (durations.total_ns() as f64 / count as f64 / 1e3).round() / 1e3
}

fn p95_ms(durations: &Durations) -> f64 {
    if durations.count() == 0 {
        return 0.0;
    }
    ms(durations.percentiles_ns(&[0.95])[0])
}

/// Times as a rate test sees them: µs, dispersed as themselves, per `count`.
fn sample(durations: &Durations, count: u64) -> RateSample {
    RateSample { total: durations.total_ns() as f64 / 1e3, sum_sq: durations.sum_sq_us2() as f64, side_slices: count }
}

fn side_values(group: &TaskGroup) -> TaskSideValues {
    let timed = group.wall.count();
    TaskSideValues {
        tasks: group.tasks,
        timed,
        wall_ms: mean_ms(&group.wall, timed),
        ready_wait_ms: mean_ms(&group.ready_wait, timed),
        loop_ms: mean_ms(&group.loop_time, timed),
        wall_p95_ms: p95_ms(&group.wall),
        ready_wait_p95_ms: p95_ms(&group.ready_wait),
    }
}

/// The raw p-values of one comparison: (rise, fall), `None` untested.
type Tests = [Option<f64>; 2];

fn tests(base: &RateSample, new: &RateSample) -> Tests {
    [Some(stats::rate_rise(base, new)), Some(stats::rate_fall(base, new))]
}

/// Tasks and loop lag of `base` and `new` compared (see the module's doc).
pub fn compare_tasks(base: &TaskTimes, new: &TaskTimes, by_route: bool, options: &DiffOptions) -> TasksDiff {
    let both_lag = base.lag.count() > 0 && new.lag.count() > 0;
    let lag_tests = match both_lag {
        true => tests(&sample(&base.lag, base.lag.count()), &sample(&new.lag, new.lag.count())),
        false => [None, None],
    };
    let keys: BTreeSet<&String> = base.groups.keys().chain(new.groups.keys()).collect();
    let mut rows = Vec::new();
    // Per row: (ready-wait rise, fall), (wall rise, fall).
    let mut raw: Vec<[Tests; 2]> = Vec::new();
    for key in keys {
        let timed = |times: &TaskTimes| times.groups.get(key).filter(|g| g.wall.count() > 0).cloned();
        let (b, n) = (timed(base), timed(new));
        if b.is_none() && n.is_none() {
            continue;
        }
        let row_tests = match (&b, &n) {
            (Some(b), Some(n)) => {
                let (bt, nt) = (b.wall.count(), n.wall.count());
                [
                    tests(&sample(&b.ready_wait, bt), &sample(&n.ready_wait, nt)),
                    tests(&sample(&b.wall, bt), &sample(&n.wall, nt)),
                ]
            }
            _ => [[None, None], [None, None]],
        };
        raw.push(row_tests);
        rows.push(TaskDiffRow {
            key: key.clone(),
            status: match (&b, &n) {
                (None, _) => Status::New,
                (_, None) => Status::Gone,
                _ => Status::Unchanged,
            },
            base: b.as_ref().map(side_values),
            new: n.as_ref().map(side_values),
            ready_wait_rise_p_value: None,
            ready_wait_fall_p_value: None,
            wall_rise_p_value: None,
            wall_fall_p_value: None,
        });
    }
    let loop_lag = adjust(&mut rows, &raw, lag_tests).map(|[rise, fall]| {
        let (b, n) = (LagSummary::of(&base.lag), LagSummary::of(&new.lag));
        let (base_mean_ms, new_mean_ms) = (mean_ms(&base.lag, base.lag.count()), mean_ms(&new.lag, new.lag.count()));
        let status = change(options, (rise, fall), (base_mean_ms, new_mean_ms), 0.0);
        LagDiff { status, base: b, new: n, base_mean_ms, new_mean_ms, rise_p_value: rise, fall_p_value: fall }
    });
    for row in &mut rows {
        row.status = row_status(row, options);
    }
    let added =
        |row: &TaskDiffRow| row.new.as_ref().map_or(0.0, |v| v.wall_ms) - row.base.as_ref().map_or(0.0, |v| v.wall_ms);
    rows.sort_by(|a, b| added(b).total_cmp(&added(a)).then_with(|| a.key.cmp(&b.key)));
    TasksDiff { by: if by_route { "route" } else { "coroutine" }, loop_lag, rows, rows_not_shown: 0 }
}

/// Holm over every rise test (the lag's first, then each row's ready-wait
/// and wall), and every fall test; sets the rows' p-values and returns the
/// lag's adjusted (rise, fall) when it was tested.
fn adjust(rows: &mut [TaskDiffRow], raw: &[[Tests; 2]], lag: Tests) -> Option<[f64; 2]> {
    let family = |at: usize| -> Vec<f64> {
        let rows = raw.iter().flat_map(|[ready, wall]| [ready[at], wall[at]]);
        stats::holm(&std::iter::once(lag[at]).chain(rows).flatten().collect::<Vec<f64>>())
    };
    let (mut rises, mut falls) = (family(0).into_iter(), family(1).into_iter());
    let lag = match lag {
        [Some(_), Some(_)] => Some([rises.next()?, falls.next()?]),
        _ => None,
    };
    for (row, [ready, wall]) in rows.iter_mut().zip(raw) {
        // The same order as `family` took them.
        row.ready_wait_rise_p_value = ready[0].and_then(|_| rises.next());
        row.wall_rise_p_value = wall[0].and_then(|_| rises.next());
        row.ready_wait_fall_p_value = ready[1].and_then(|_| falls.next());
        row.wall_fall_p_value = wall[1].and_then(|_| falls.next());
    }
    lag
}

/// Regressed (improved) when the rise (fall) is beyond chance, by
/// `--min-increase` and by at least `min_change_ms`.
fn change(
    options: &DiffOptions,
    (rise, fall): (f64, f64),
    (base_ms, new_ms): (f64, f64),
    min_change_ms: f64,
) -> Status {
    let alpha = 1.0 - options.confidence;
    let rose =
        |from: f64, to: f64| to > 0.0 && to >= from * (1.0 + options.min_increase) && (to - from) >= min_change_ms;
    if rise <= alpha && rose(base_ms, new_ms) {
        Status::Regressed
    } else if fall <= alpha && rose(new_ms, base_ms) {
        Status::Improved
    } else {
        Status::Unchanged
    }
}

fn row_status(row: &TaskDiffRow, options: &DiffOptions) -> Status {
    let (Some(base), Some(new)) = (&row.base, &row.new) else { return row.status };
    let p = |p: Option<f64>| p.unwrap_or(1.0);
    let min_ms = options.min_route_change_ms;
    let ready = change(
        options,
        (p(row.ready_wait_rise_p_value), p(row.ready_wait_fall_p_value)),
        (base.ready_wait_ms, new.ready_wait_ms),
        min_ms,
    );
    let wall =
        change(options, (p(row.wall_rise_p_value), p(row.wall_fall_p_value)), (base.wall_ms, new.wall_ms), min_ms);
    match (ready, wall) {
        (Status::Regressed, _) | (_, Status::Regressed) => Status::Regressed,
        (Status::Improved, _) | (_, Status::Improved) => Status::Improved,
        _ => Status::Unchanged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> DiffOptions {
        DiffOptions { confidence: 0.99, min_increase: 0.2, min_route_change_ms: 1.0, ..DiffOptions::default() }
    }

    /// `count` tasks of `wall_ms` wall time, `ready_ms` of it ready-wait; a
    /// loop lag of `count` slices, each waiting `lag_us` (every tenth 10x).
    fn times(key: &str, count: u64, wall_ms: u64, ready_ms: u64, lag_us: u64) -> TaskTimes {
        let mut group = TaskGroup { tasks: count, ..TaskGroup::default() };
        let mut lag = Durations::new();
        for i in 0..count {
            group.wall.record(wall_ms * 1_000_000 + i % 7 * 100_000);
            group.ready_wait.record(ready_ms * 1_000_000 + i % 5 * 10_000);
            group.loop_time.record(1_000_000);
            lag.record(lag_us * 1_000 * if i % 10 == 0 { 10 } else { 1 });
        }
        let mut times = TaskTimes { lag, timed_traces: 1, ..TaskTimes::default() };
        times.groups.insert(key.to_owned(), group);
        times
    }

    #[test]
    fn a_loop_that_blocks_more_is_regressed_and_alike_runs_are_unchanged() {
        let base = times("handle", 400, 55, 1, 200);
        let alike = times("handle", 380, 55, 1, 210);
        let diff = compare_tasks(&base, &alike, false, &options());
        assert_eq!(diff.loop_lag.as_ref().unwrap().status, Status::Unchanged, "{diff:?}");
        assert_eq!(diff.rows[0].status, Status::Unchanged, "{diff:?}");
        // Every request now waits 20 ms more for the loop.
        let blocked = times("handle", 400, 75, 21, 5_000);
        let diff = compare_tasks(&base, &blocked, false, &options());
        let lag = diff.loop_lag.as_ref().unwrap();
        assert_eq!(lag.status, Status::Regressed, "{diff:?}");
        assert!(lag.rise_p_value < 0.001 && lag.new.slices == 400, "{lag:?}");
        assert_eq!(diff.rows[0].status, Status::Regressed, "{diff:?}");
        assert_eq!(diff.rows[0].new.as_ref().map(|v| v.timed), Some(400));
        // And back: improved.
        let diff = compare_tasks(&blocked, &base, false, &options());
        assert_eq!((diff.loop_lag.unwrap().status, diff.rows[0].status), (Status::Improved, Status::Improved));
    }

    #[test]
    fn a_few_tasks_are_never_beyond_chance_and_one_sided_ones_are_new_or_gone() {
        let diff = compare_tasks(&times("a", 3, 5, 1, 100), &times("a", 3, 15, 3, 300), false, &options());
        assert_eq!(diff.rows[0].status, Status::Unchanged, "{diff:?}");
        let diff = compare_tasks(&times("a", 30, 5, 1, 100), &times("b", 30, 5, 1, 100), true, &options());
        let status: Vec<(&str, Status)> = diff.rows.iter().map(|r| (r.key.as_str(), r.status)).collect();
        assert_eq!(status, [("b", Status::New), ("a", Status::Gone)]);
        assert_eq!(diff.by, "route");
    }
}
