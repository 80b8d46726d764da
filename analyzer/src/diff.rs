//! `diff`: the traces of two releases (base and new, each one or more
//! files, read and merged as a report reads them) compared group by group,
//! and the gate a CI job fails on.
//!
//! Two runs never have the same length, so a group's blocking slices,
//! events and severity score are compared *per 1,000 slices* of their side.
//! A group present on one side only is `new` or `gone`. A group on both is
//! `regressed` when its severity or events per 1,000 slices, or its p95
//! elapsed time, rose by at least `--min-increase` (20% by default; a p95
//! also by at least `--min-p95-change-ms`, 1 ms by default, since the times
//! of slices of a few microseconds double with noise);
//! `improved` when none rose that much and one fell that much (the old
//! value is at least `1 + min_increase` times the new one); `unchanged`
//! otherwise. Rows are ordered most severe first: by how much their
//! severity per 1,000 slices rose (new and regressed groups first, improved
//! and gone ones last), then by status, then by key.
//!
//! Both sides are scored with one event table, the new side's (or the
//! base's with `--rescore base`), matched by event name, so that a change of
//! weights between releases is not mistaken for a change of behaviour; the
//! changes are reported.

use crate::app::Side;
use crate::group::GroupBy;
use crate::report::{ms, Elapsed, TotalsView, TraceFacts};
use crate::resolve::{EventWeights, Group};
use aiocop_trace::records::EventSpec;
use aiocop_trace::SeverityLevel;
use clap::ValueEnum;
use serde::Serialize;
use std::collections::BTreeSet;

/// Bumped when a field of the diff's JSON changes meaning or goes away.
pub const DIFF_SCHEMA_VERSION: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    New,
    Regressed,
    Unchanged,
    Improved,
    Gone,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::Regressed => "regressed",
            Status::Unchanged => "unchanged",
            Status::Improved => "improved",
            Status::Gone => "gone",
        }
    }

    /// Whether it is a change for the worse.
    pub fn is_worse(self) -> bool {
        matches!(self, Status::New | Status::Regressed)
    }
}

/// `--fail-on`: what fails the gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    /// A new group whose worst level is high.
    NewHigh,
    /// Any new group.
    New,
    /// Any regressed group.
    Regressed,
    /// Any new or regressed group.
    Any,
}

impl FailOn {
    pub fn as_str(self) -> &'static str {
        match self {
            FailOn::NewHigh => "new-high",
            FailOn::New => "new",
            FailOn::Regressed => "regressed",
            FailOn::Any => "any",
        }
    }

    fn matches(self, row: &DiffRow) -> bool {
        match self {
            FailOn::NewHigh => {
                row.status == Status::New && row.new.as_ref().is_some_and(|n| n.level == SeverityLevel::High)
            }
            FailOn::New => row.status == Status::New,
            FailOn::Regressed => row.status == Status::Regressed,
            FailOn::Any => row.status.is_worse(),
        }
    }
}

/// `--rescore`: whose event table scores both sides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ScoreWith {
    Base,
    New,
}

impl ScoreWith {
    pub fn as_str(self) -> &'static str {
        match self {
            ScoreWith::Base => "base",
            ScoreWith::New => "new",
        }
    }
}

/// How rows get their status and which fail the gate.
#[derive(Clone, Debug)]
pub struct DiffOptions {
    /// A rise (or fall) counts from this fraction: 0.2 for 20%.
    pub min_increase: f64,
    /// A p95 rise (or fall) counts from this many milliseconds too.
    pub min_p95_change_ms: f64,
    /// The gate ignores rows with fewer blocking slices on the new side.
    pub min_count: u64,
    pub fail_on: Vec<FailOn>,
    /// Unchanged rows are shown too.
    pub all: bool,
}

/// A group's values on one side.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SideValues {
    /// Slices with blocking I/O at the key.
    pub slices: u64,
    pub events: u64,
    pub severity_score: i64,
    pub severity_level: &'static str,
    /// Of `slices`, those over the threshold.
    pub exceeded: u64,
    pub slices_per_1k: f64,
    pub events_per_1k: f64,
    pub severity_per_1k: f64,
    /// Percentage of `slices` over the threshold.
    pub exceeded_pct: f64,
    pub p95_ms: f64,
    pub max_ms: f64,
    #[serde(skip)]
    pub level: SeverityLevel,
}

/// New minus base; a side without the group counts as zero for the rates,
/// and has no elapsed times to compare (`None`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Change {
    pub slices_per_1k: f64,
    pub events_per_1k: f64,
    pub severity_per_1k: f64,
    pub exceeded_pct: Option<f64>,
    pub p95_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DiffRow {
    pub key: String,
    pub status: Status,
    /// `None` (JSON null) for a new group.
    pub base: Option<SideValues>,
    /// `None` (JSON null) for a gone group.
    pub new: Option<SideValues>,
    pub change: Change,
}

/// One side as the header shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SideView {
    /// The distinct labels of its traces, in input order (`none` for a trace without one).
    pub labels: Vec<String>,
    pub totals: TotalsView,
    pub traces: Vec<TraceFacts>,
}

impl SideView {
    /// The side's name in text: its labels, or its first trace's path.
    pub fn name(&self) -> String {
        if self.labels.iter().any(|l| l != "none") {
            self.labels.join(", ")
        } else {
            self.traces.first().map_or_else(|| "none".to_owned(), |t| t.path.clone())
        }
    }
}

/// An event whose weight differs between the two sides' tables (`None`:
/// the side's table has no such event).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WeightChange {
    pub event: String,
    pub base_weight: Option<i64>,
    pub new_weight: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StatusCounts {
    pub new: usize,
    pub regressed: usize,
    pub unchanged: usize,
    pub improved: usize,
    pub gone: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Gate {
    pub fail_on: Vec<&'static str>,
    pub min_count: u64,
    pub failed: bool,
    /// One line per row that fails it.
    pub reasons: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DiffOptionsView {
    pub min_increase_pct: f64,
    pub min_p95_change_ms: f64,
    pub all: bool,
    pub threshold_ms: Option<f64>,
    pub since_s: Option<f64>,
    pub until_s: Option<f64>,
    pub exceeded_only: bool,
    pub ignore: Vec<String>,
    pub app_roots: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Diff {
    pub schema_version: u32,
    pub by: String,
    pub base: SideView,
    pub new: SideView,
    /// Whose event table scored both sides: `new` or `base`.
    pub scored_with: &'static str,
    pub event_table_changes: Vec<WeightChange>,
    pub counts: StatusCounts,
    /// Shown rows, most severe first.
    pub rows: Vec<DiffRow>,
    /// Unchanged rows left out (without `--all`).
    pub rows_not_shown: usize,
    pub gate: Gate,
    pub options: DiffOptionsView,
    #[serde(skip)]
    pub group_by: GroupBy,
}

/// Rounded to 3 decimals, so that output is stable and what is compared is what is shown.
fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// A fraction (0.2) as a percentage (20), to 3 decimals.
pub fn round_pct(fraction: f64) -> f64 {
    round3(fraction * 100.0)
}

/// `count` per 1,000 of `slices`.
pub fn per_1k(count: f64, slices: u64) -> f64 {
    if slices == 0 {
        0.0
    } else {
        round3(count * 1000.0 / slices as f64)
    }
}

fn side_values(group: &Group, side_slices: u64) -> SideValues {
    let elapsed = Elapsed::of(&group.durations);
    SideValues {
        slices: group.slices,
        events: group.events,
        severity_score: group.severity_score,
        severity_level: group.worst.as_str(),
        exceeded: group.exceeded,
        slices_per_1k: per_1k(group.slices as f64, side_slices),
        events_per_1k: per_1k(group.events as f64, side_slices),
        severity_per_1k: per_1k(group.severity_score as f64, side_slices),
        exceeded_pct: if group.slices == 0 { 0.0 } else { round3(group.exceeded as f64 * 100.0 / group.slices as f64) },
        p95_ms: ms(elapsed.p95_ns),
        max_ms: ms(elapsed.max_ns),
        level: group.worst,
    }
}

/// Whether `to` is at least `1 + min_increase` times `from` (and above it).
fn rose(from: f64, to: f64, min_increase: f64) -> bool {
    to > from && to >= from * (1.0 + min_increase)
}

fn status(base: Option<&SideValues>, new: Option<&SideValues>, options: &DiffOptions) -> Status {
    let (base, new) = match (base, new) {
        (Some(base), Some(new)) => (base, new),
        (None, _) => return Status::New,
        (_, None) => return Status::Gone,
    };
    let p95 = (base.p95_ms, new.p95_ms);
    let p95_moved = (p95.1 - p95.0).abs() >= options.min_p95_change_ms;
    let compared = [
        Some((base.severity_per_1k, new.severity_per_1k)),
        Some((base.events_per_1k, new.events_per_1k)),
        p95_moved.then_some(p95),
    ];
    let min_increase = options.min_increase;
    if compared.iter().flatten().any(|&(b, n)| rose(b, n, min_increase)) {
        Status::Regressed
    } else if compared.iter().flatten().any(|&(b, n)| rose(n, b, min_increase)) {
        Status::Improved
    } else {
        Status::Unchanged
    }
}

fn change(base: Option<&SideValues>, new: Option<&SideValues>) -> Change {
    let rate = |pick: fn(&SideValues) -> f64| round3(new.map_or(0.0, pick) - base.map_or(0.0, pick));
    let both = |pick: fn(&SideValues) -> f64| Some(round3(pick(new?) - pick(base?)));
    Change {
        slices_per_1k: rate(|v| v.slices_per_1k),
        events_per_1k: rate(|v| v.events_per_1k),
        severity_per_1k: rate(|v| v.severity_per_1k),
        exceeded_pct: both(|v| v.exceeded_pct),
        p95_ms: both(|v| v.p95_ms),
        max_ms: both(|v| v.max_ms),
    }
}

/// Every group of either side as a row, most severe first.
pub fn compare(base: &Side, new: &Side, options: &DiffOptions) -> Vec<DiffRow> {
    let keys: BTreeSet<&String> = base.analysis.groups.keys().chain(new.analysis.groups.keys()).collect();
    let (base_slices, new_slices) = (base.analysis.totals.slices, new.analysis.totals.slices);
    let mut rows: Vec<DiffRow> = keys
        .into_iter()
        .map(|key| {
            let base = base.analysis.groups.get(key).map(|g| side_values(g, base_slices));
            let new = new.analysis.groups.get(key).map(|g| side_values(g, new_slices));
            DiffRow {
                key: key.clone(),
                status: status(base.as_ref(), new.as_ref(), options),
                change: change(base.as_ref(), new.as_ref()),
                base,
                new,
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        b.change
            .severity_per_1k
            .total_cmp(&a.change.severity_per_1k)
            .then_with(|| a.status.cmp(&b.status))
            .then_with(|| a.key.cmp(&b.key))
    });
    rows
}

pub fn count_statuses(rows: &[DiffRow]) -> StatusCounts {
    let mut counts = StatusCounts::default();
    for row in rows {
        *match row.status {
            Status::New => &mut counts.new,
            Status::Regressed => &mut counts.regressed,
            Status::Unchanged => &mut counts.unchanged,
            Status::Improved => &mut counts.improved,
            Status::Gone => &mut counts.gone,
        } += 1;
    }
    counts
}

/// `12.5 -> 30 (+140%)`-style text of a row's rise, for a gate's reason.
fn reason(row: &DiffRow) -> String {
    let key = &row.key;
    let Some(new) = &row.new else { return format!("'{key}' is gone") };
    match &row.base {
        None => format!(
            "new {} group '{key}': {} slices, severity {} per 1k slices",
            new.severity_level,
            new.slices,
            trim(new.severity_per_1k)
        ),
        Some(base) => format!(
            "regressed '{key}': severity per 1k slices {} -> {}, events per 1k slices {} -> {}, p95 {} -> {} ms",
            trim(base.severity_per_1k),
            trim(new.severity_per_1k),
            trim(base.events_per_1k),
            trim(new.events_per_1k),
            trim(base.p95_ms),
            trim(new.p95_ms)
        ),
    }
}

/// A number without trailing zeros: `12.5`, `3`.
pub fn trim(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The rows that fail the gate, one reason each, in row order.
pub fn gate(rows: &[DiffRow], options: &DiffOptions) -> Gate {
    let reasons: Vec<String> = rows
        .iter()
        .filter(|row| row.new.as_ref().is_some_and(|n| n.slices >= options.min_count))
        .filter(|row| options.fail_on.iter().any(|fail_on| fail_on.matches(row)))
        .map(reason)
        .collect();
    Gate {
        fail_on: options.fail_on.iter().map(|f| f.as_str()).collect(),
        min_count: options.min_count,
        failed: !reasons.is_empty(),
        reasons,
    }
}

/// The weights of `table` by event name.
pub fn weights_of(table: &[EventSpec]) -> EventWeights {
    table.iter().map(|spec| (spec.name.clone(), spec.weight)).collect()
}

/// Events whose weight differs between the tables, or that one lacks, by name.
pub fn table_changes(base: &[EventSpec], new: &[EventSpec]) -> Vec<WeightChange> {
    let (base, new) = (weights_of(base), weights_of(new));
    let names: BTreeSet<&String> = base.keys().chain(new.keys()).collect();
    names
        .into_iter()
        .filter_map(|name| {
            let (base_weight, new_weight) = (base.get(name).copied(), new.get(name).copied());
            (base_weight != new_weight).then(|| WeightChange { event: name.clone(), base_weight, new_weight })
        })
        .collect()
}

/// The distinct labels of `facts`, in order.
pub fn labels(facts: &[TraceFacts]) -> Vec<String> {
    let mut labels: Vec<String> = Vec::new();
    for label in facts.iter().map(|f| f.label.clone().unwrap_or_else(|| "none".to_owned())) {
        if !labels.contains(&label) {
            labels.push(label);
        }
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(slices: u64, events_per_1k: f64, severity_per_1k: f64, p95_ms: f64) -> SideValues {
        SideValues {
            slices,
            events: slices,
            severity_score: 0,
            severity_level: "low",
            exceeded: 0,
            slices_per_1k: 0.0,
            events_per_1k,
            severity_per_1k,
            exceeded_pct: 0.0,
            p95_ms,
            max_ms: p95_ms,
            level: SeverityLevel::Low,
        }
    }

    fn options(min_increase: f64, min_p95_change_ms: f64) -> DiffOptions {
        DiffOptions { min_increase, min_p95_change_ms, min_count: 1, fail_on: Vec::new(), all: false }
    }

    #[test]
    fn statuses_follow_the_minimum_increase() {
        let base = values(10, 10.0, 100.0, 5.0);
        let status_of = |new: &SideValues, min| status(Some(&base), Some(new), &options(min, 0.0));
        assert_eq!(status_of(&values(10, 10.0, 100.0, 5.0), 0.2), Status::Unchanged);
        assert_eq!(status_of(&values(10, 11.9, 119.0, 5.9), 0.2), Status::Unchanged);
        assert_eq!(status_of(&values(10, 12.0, 100.0, 5.0), 0.2), Status::Regressed);
        assert_eq!(status_of(&values(10, 10.0, 100.0, 6.0), 0.2), Status::Regressed);
        // A rise wins over a fall elsewhere.
        assert_eq!(status_of(&values(10, 1.0, 130.0, 1.0), 0.2), Status::Regressed);
        assert_eq!(status_of(&values(10, 8.3, 100.0, 5.0), 0.2), Status::Improved);
        assert_eq!(status_of(&values(10, 8.4, 90.0, 5.0), 0.2), Status::Unchanged);
        assert_eq!(status_of(&values(10, 10.1, 100.0, 5.0), 0.0), Status::Regressed);
        assert_eq!(status(None, Some(&base), &options(0.2, 0.0)), Status::New);
        assert_eq!(status(Some(&base), None, &options(0.2, 0.0)), Status::Gone);
        // From zero, any rise is one.
        let zero = values(1, 0.0, 0.0, 0.0);
        assert_eq!(status(Some(&zero), Some(&values(1, 0.0, 0.001, 0.0)), &options(0.5, 0.0)), Status::Regressed);
    }

    #[test]
    fn a_p95_change_counts_from_the_minimum_change_in_milliseconds() {
        let status_of = |base_p95, new_p95, floor| {
            status(
                Some(&values(10, 10.0, 100.0, base_p95)),
                Some(&values(10, 10.0, 100.0, new_p95)),
                &options(0.2, floor),
            )
        };
        // Microseconds that grow tenfold with noise are not a regression...
        assert_eq!(status_of(0.019, 0.223, 1.0), Status::Unchanged);
        assert_eq!(status_of(0.223, 0.019, 1.0), Status::Unchanged);
        assert_eq!(status_of(0.019, 0.223, 0.0), Status::Regressed);
        // ...a millisecond more is, when it is also 20% more.
        assert_eq!(status_of(5.0, 6.0, 1.0), Status::Regressed);
        assert_eq!(status_of(6.0, 5.0, 1.0), Status::Improved);
        assert_eq!(status_of(50.0, 51.5, 1.0), Status::Unchanged);
    }

    #[test]
    fn rates_are_per_thousand_slices_to_three_decimals() {
        assert_eq!(per_1k(3.0, 12_000), 0.25);
        assert_eq!(per_1k(1.0, 3), 333.333);
        assert_eq!(per_1k(5.0, 0), 0.0);
        assert_eq!(trim(12.5), "12.5");
        assert_eq!(trim(3.0), "3");
    }

    #[test]
    fn weight_changes_are_listed_by_name() {
        let spec = |name: &str, weight| EventSpec { name: name.to_owned(), weight };
        let base = [spec("open", 10), spec("time.sleep", 50), spec("os.stat", 1)];
        let new = [spec("time.sleep", 50), spec("open", 50), spec("socket.connect", 50)];
        assert_eq!(
            table_changes(&base, &new),
            [
                WeightChange { event: "open".to_owned(), base_weight: Some(10), new_weight: Some(50) },
                WeightChange { event: "os.stat".to_owned(), base_weight: Some(1), new_weight: None },
                WeightChange { event: "socket.connect".to_owned(), base_weight: None, new_weight: Some(50) },
            ]
        );
        assert!(table_changes(&base, &base).is_empty());
    }
}
