//! `diff`: the traces of two releases (base and new, each one or more
//! files, read and merged as a report reads them) compared group by group,
//! and the gate a CI job fails on. It promises that an unchanged build
//! passes `--fail-on regressed --fail-on new` with a chance of at least
//! `--confidence` (0.99), and says for every row why it has its status.
//!
//! Rows are matched across releases by *identity* (see
//! [`crate::identity`]): for `--by entry-point`, `function`, `app-frame` and
//! `stack`, frames without their lines and with their paths made relative,
//! so a moved line or another deployment directory is the same group. Each
//! side keeps the lines it was seen at, most frequent first.
//!
//! Two runs never have the same length, so a group's events and severity
//! score are compared *per 1,000 slices* of their side. A group on one side
//! only is `new` or `gone`. A group on both is:
//!
//! - `regressed` when one of its measures rose beyond chance and by at least
//!   `--min-increase` (20%): events per 1k slices and severity per 1k
//!   slices by the rate test of [`crate::stats`] (a Poisson rate-ratio test,
//!   quasi-Poisson for calls that come several to a slice); its p95, only
//!   when both sides have `--min-slices-p95` (50) slices of it, by Fisher's
//!   exact test on the slices above the pooled p95, and only by at least
//!   `--min-p95-change-ms` (10 ms) too. Beyond chance: the test's p-value,
//!   Holm-adjusted over every rise test of the diff, is at most
//!   `1 - --confidence`;
//! - `improved` when none rose so, and one fell so (the same tests the other
//!   way, adjusted over every fall test of the diff);
//! - `unchanged` otherwise.
//!
//! One-time work is neither tested nor gated (unless `--gate-one-time`): a
//! group all of whose slices' events came through the import system
//! (first-call imports), or seen in at most 2 slices on each side; and
//! `--skip-first-s` leaves out each trace's warm-up.
//!
//! The gate (`--fail-on`) looks at rows with at least `--min-count` (5)
//! blocking slices on the new side that are not one-time work: `regressed`
//! fails on a regressed row, `new` on a new group whose rate test (against a
//! count of 0 on the base side) is beyond chance, `new-high` on any new group
//! whose worst level is high (as before: a severity level, not a test).
//!
//! Rows are ordered most severe first: by how much their severity per 1,000
//! slices rose (new and regressed groups first, improved and gone ones
//! last), then by status, then by key.
//!
//! Both sides are scored with one event table, the new side's (or the
//! base's with `--rescore base`), matched by event name, so that a change of
//! weights between releases is not mistaken for a change of behaviour; the
//! changes are reported.

use crate::keys::GroupBy;
use crate::read::Side;
use crate::report::{ms, Elapsed, TotalsView, TraceFacts};
use crate::resolve::{EventWeights, Group};
use crate::stats::{self, RateSample, TailCounts};
use aiocop_trace::frame::TRACE_SEPARATOR;
use aiocop_trace::records::EventSpec;
use aiocop_trace::SeverityLevel;
use clap::ValueEnum;
use rustc_hash::FxHashMap;
use serde::Serialize;
use std::collections::BTreeSet;

/// Bumped when a field of the diff's JSON changes meaning or goes away.
pub const DIFF_SCHEMA_VERSION: u32 = 2;
/// Bumped when the diff's JSON gains a field: 1 added `routes` (`--by route`),
/// 2 `tasks` (loop lag and tasks compared, [`crate::task_diff`]) and each
/// route's `machine_band`, 3 `gate.routes_judged` (`--fail-on route`).
pub const DIFF_SCHEMA_MINOR: u32 = 3;

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
    /// A new group whose worst level is high, however rare.
    NewHigh,
    /// A new group seen more often than chance explains.
    New,
    /// A regressed group (worse beyond chance, and by --min-increase).
    Regressed,
    /// A regressed route: its loop time per request rose beyond chance,
    /// beyond the band the other routes moved in and by --min-increase and
    /// --min-route-change-ms, or its blocking events per request beyond
    /// chance and by --min-increase (read whatever --by).
    Route,
    /// Any of new, regressed and route.
    Any,
}

impl FailOn {
    pub fn as_str(self) -> &'static str {
        match self {
            FailOn::NewHigh => "new-high",
            FailOn::New => "new",
            FailOn::Regressed => "regressed",
            FailOn::Route => "route",
            FailOn::Any => "any",
        }
    }

    /// Whether it fails on routes, which are then read whatever `--by`.
    pub fn gates_routes(self) -> bool {
        matches!(self, FailOn::Route | FailOn::Any)
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
    /// The chance that an unchanged build passes the gate: each family of
    /// tests (rises, falls) is held at `1 - confidence` over the whole diff.
    pub confidence: f64,
    /// p95s are compared only when both sides have at least this many slices.
    pub min_slices_p95: u64,
    /// A route's loop ms per request rises (or falls) from this many
    /// milliseconds too ([`crate::route_diff`]).
    pub min_route_change_ms: f64,
    /// One-time work (first-call imports, groups of at most 2 slices a side)
    /// is tested and gates like the rest.
    pub gate_one_time: bool,
    /// Keys are frame identities (`--by entry-point`, `function`,
    /// `app-frame`, `stack`): see `pair_groups`.
    pub frame_keys: bool,
}

impl Default for DiffOptions {
    fn default() -> Self {
        DiffOptions {
            min_increase: 0.2,
            min_p95_change_ms: DEFAULT_MIN_P95_CHANGE_MS,
            min_count: DEFAULT_MIN_COUNT,
            fail_on: Vec::new(),
            all: false,
            confidence: DEFAULT_CONFIDENCE,
            min_slices_p95: DEFAULT_MIN_SLICES_P95,
            min_route_change_ms: DEFAULT_MIN_ROUTE_CHANGE_MS,
            gate_one_time: false,
            frame_keys: false,
        }
    }
}

pub const DEFAULT_CONFIDENCE: f64 = 0.99;
/// A route's loop time per request moves by less with the machine's load alone.
pub const DEFAULT_MIN_ROUTE_CHANGE_MS: f64 = 1.0;
pub const DEFAULT_MIN_SLICES_P95: u64 = 50;
/// A p95 moves by less with the machine's load alone: in the A/A pairs of
/// `bench/gate_calibration.py` on a shared 2-core machine, sub-millisecond
/// slices' p95s rose by up to 5 ms, beyond chance for any test, as every
/// slice of a run recorded while the machine was busier does.
pub const DEFAULT_MIN_P95_CHANGE_MS: f64 = 10.0;
/// Fewer blocking slices than this on the new side never gate: below it, a
/// test can only pass by a group doing the same thing in every slice.
pub const DEFAULT_MIN_COUNT: u64 = 5;
/// A group seen in at most this many slices on each side is one-time work.
pub const ONE_TIME_MAX_SLICES: u64 = 2;

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
    /// The lines the key frame was seen at, most events first (empty for
    /// keys that are not frames).
    pub lines: Vec<i32>,
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

/// What a test compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Measure {
    #[serde(rename = "events_per_1k")]
    EventsPer1k,
    #[serde(rename = "severity_per_1k")]
    SeverityPer1k,
    #[serde(rename = "p95_ms")]
    P95Ms,
}

impl Measure {
    fn text(self) -> &'static str {
        match self {
            Measure::EventsPer1k => "events per 1k slices",
            Measure::SeverityPer1k => "severity per 1k slices",
            Measure::P95Ms => "p95",
        }
    }

    fn pick(self, values: &SideValues) -> f64 {
        match self {
            Measure::EventsPer1k => values.events_per_1k,
            Measure::SeverityPer1k => values.severity_per_1k,
            Measure::P95Ms => values.p95_ms,
        }
    }
}

/// One test of a row: the p-values, Holm-adjusted over the whole diff, that
/// the measure rose and that it fell (`None`: that side of the test was not
/// made, as a fall for a new group).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TestResult {
    pub measure: Measure,
    pub rise_p_value: Option<f64>,
    pub fall_p_value: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DiffRow {
    /// The group as a report shows it (from the new side; the base's for a
    /// gone group): `path:line:function` for frame keys.
    pub key: String,
    /// What rows are matched by across releases: the key without lines (see
    /// [`crate::identity`]), or the key itself for keys that are not frames.
    pub identity: String,
    pub status: Status,
    /// `None` (JSON null) for a new group.
    pub base: Option<SideValues>,
    /// `None` (JSON null) for a gone group.
    pub new: Option<SideValues>,
    pub change: Change,
    /// The adjusted p-value the status rests on: the smallest of the row's
    /// tests in its direction (falls for improved and gone, rises
    /// otherwise); `None` when the row was not tested.
    pub p_value: Option<f64>,
    pub tests: Vec<TestResult>,
    /// Why the row is one-time work, not tested and not gated by default:
    /// `first-call import` or `at most 2 slices a side`.
    pub one_time: Option<&'static str>,
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
    /// The settings the statuses were decided with.
    pub confidence: f64,
    pub min_increase_pct: f64,
    pub min_p95_change_ms: f64,
    pub min_slices_p95: u64,
    pub skip_first_s: f64,
    pub gate_one_time: bool,
    /// How many tests each family (rises, falls) held its confidence over.
    pub rise_tests: usize,
    pub fall_tests: usize,
    pub failed: bool,
    /// One line per row (group or route) that fails it.
    pub reasons: Vec<String>,
    /// With a `--fail-on` that looks at routes, how many routes were on
    /// both sides with their loop time judged (another route beside them),
    /// the gate's counts behind a pass; `None` when the gate does not look
    /// at routes.
    pub routes_judged: Option<usize>,
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
    pub schema_minor: u32,
    pub by: String,
    /// `--by route`: every route of either side ([`crate::route_diff`]);
    /// empty for other keys.
    pub routes: Vec<RouteDiffRow>,
    /// Schema minor 2: loop lag and tasks of both sides compared.
    pub tasks: TasksDiff,
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
    /// Set when no group is on both sides: what may be wrong.
    pub warning: Option<String>,
    pub gate: Gate,
    pub options: DiffOptionsView,
    #[serde(skip)]
    pub group_by: GroupBy,
    /// `--format csv`: the groups, or the routes.
    #[serde(skip)]
    pub csv_table: crate::report::CsvTable,
    /// `--format html`: the differential flame graph of the new side against the base, ...
    #[serde(skip)]
    pub flame_graph_svg: Option<String>,
    /// ... and the new side's report (its loop time, stalls and examples).
    #[serde(skip)]
    pub new_side: Option<Box<crate::report::Report>>,
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

/// Keys ordered by how often they were seen, most first (then by key).
fn most_frequent_first<K: Ord + Clone>(counts: &FxHashMap<K, u64>) -> Vec<K> {
    let mut keys: Vec<(&K, u64)> = counts.iter().map(|(k, &n)| (k, n)).collect();
    keys.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    keys.into_iter().map(|(k, _)| k.clone()).collect()
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
        lines: most_frequent_first(&group.detail.lines),
        level: group.worst,
    }
}

/// Whether `to` is at least `1 + min_increase` times `from` (and above it).
fn rose(from: f64, to: f64, min_increase: f64) -> bool {
    to > from && to >= from * (1.0 + min_increase)
}

/// Whether `measure` moved from `from` to `to` by enough to matter, were it
/// beyond chance: by `--min-increase`, and a p95 by `--min-p95-change-ms` too.
fn moved_enough(measure: Measure, from: f64, to: f64, options: &DiffOptions) -> bool {
    let floor = measure != Measure::P95Ms || (to - from).abs() >= options.min_p95_change_ms;
    floor && rose(from, to, options.min_increase)
}

/// Why a group is one-time work, if it is.
fn one_time(base: Option<&Group>, new: Option<&Group>) -> Option<&'static str> {
    let sides = || base.into_iter().chain(new);
    if sides().all(|g| g.slices > 0 && g.detail.import_slices == g.slices) {
        Some("first-call import")
    } else if sides().all(|g| g.slices <= ONE_TIME_MAX_SLICES) {
        Some("at most 2 slices a side")
    } else {
        None
    }
}

fn rate_sample(group: Option<&Group>, measure: Measure, side_slices: u64) -> RateSample {
    let (total, sum_sq) = match (group, measure) {
        (None, _) => (0.0, 0.0),
        (Some(g), Measure::SeverityPer1k) => (g.severity_score.max(0) as f64, g.detail.score_sq),
        (Some(g), _) => (g.events as f64, g.detail.events_sq),
    };
    RateSample { total, sum_sq, side_slices }
}

/// Slices of each side above the pooled p95 of both; or at or above it,
/// when that is nearer 5% of the slices (many slices can share the p95's
/// time: with a slow tenth of 30 ms, the p95 is 30 ms and none is above).
/// Either way the threshold is a function of the pooled slices alone, so
/// the test stays exact.
fn tail_counts(base: &Group, new: &Group) -> TailCounts {
    let mut pooled = base.durations.clone();
    pooled.merge(&new.durations);
    let p95_ns = pooled.percentiles_ns(&[0.95])[0];
    let counts = |threshold_ns: u64| TailCounts {
        base_above: base.durations.count_above(threshold_ns),
        base_slices: base.durations.count(),
        new_above: new.durations.count_above(threshold_ns),
        new_slices: new.durations.count(),
    };
    let (above, at_or_above) = (counts(p95_ns), counts(p95_ns.saturating_sub(1)));
    let all = pooled.count();
    let informative = |c: &TailCounts| (1..all).contains(&(c.base_above + c.new_above));
    let distance = |c: &TailCounts| ((c.base_above + c.new_above) as f64 - 0.05 * all as f64).abs();
    match (informative(&above), informative(&at_or_above)) {
        (true, true) if distance(&at_or_above) < distance(&above) => at_or_above,
        (false, true) => at_or_above,
        _ => above,
    }
}

/// A row's raw p-values, before the whole diff's adjustment.
struct RawTests {
    measure: Measure,
    rise: Option<f64>,
    fall: Option<f64>,
}

fn raw_tests(base: Option<&Group>, new: Option<&Group>, sides: (u64, u64), options: &DiffOptions) -> Vec<RawTests> {
    let mut tests: Vec<RawTests> = [Measure::EventsPer1k, Measure::SeverityPer1k]
        .into_iter()
        .map(|measure| {
            let (b, n) = (rate_sample(base, measure, sides.0), rate_sample(new, measure, sides.1));
            RawTests {
                measure,
                rise: new.map(|_| stats::rate_rise(&b, &n)),
                fall: base.map(|_| stats::rate_fall(&b, &n)),
            }
        })
        .collect();
    if let (Some(base), Some(new)) = (base, new) {
        if base.slices.min(new.slices) >= options.min_slices_p95 {
            let counts = tail_counts(base, new);
            tests.push(RawTests {
                measure: Measure::P95Ms,
                rise: Some(stats::tail_rise(&counts)),
                fall: Some(stats::tail_fall(&counts)),
            });
        }
    }
    tests
}

/// The key a report shows for a group: its most frequent shown form, or its identity.
fn shown_key(group: &Group, identity: &str) -> String {
    most_frequent_first(&group.detail.shown).into_iter().next().unwrap_or_else(|| identity.to_owned())
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

/// Every group of either side as a row, most severe first, with the number
/// of rise and fall tests made.
pub fn compare(base: &Side, new: &Side, options: &DiffOptions) -> (Vec<DiffRow>, usize, usize) {
    let pairs = pair_groups(&base.analysis.groups, &new.analysis.groups, options.frame_keys);
    let sides = (base.analysis.totals.slices, new.analysis.totals.slices);
    let mut raw: Vec<Vec<RawTests>> = Vec::with_capacity(pairs.len());
    let mut rows: Vec<DiffRow> = pairs
        .into_iter()
        .map(|(identity, base_group, new_group)| {
            let identity = &identity;
            let one_time = one_time(base_group, new_group);
            let tested = one_time.is_none() || options.gate_one_time;
            raw.push(if tested { raw_tests(base_group, new_group, sides, options) } else { Vec::new() });
            let base = base_group.map(|g| side_values(g, sides.0));
            let new = new_group.map(|g| side_values(g, sides.1));
            let key = new_group.or(base_group).map_or_else(|| identity.clone(), |g| shown_key(g, identity));
            DiffRow {
                key,
                identity: identity.clone(),
                status: if base.is_none() { Status::New } else { Status::Unchanged },
                change: change(base.as_ref(), new.as_ref()),
                base,
                new,
                p_value: None,
                tests: Vec::new(),
                one_time,
            }
        })
        .collect();
    let (rise_tests, fall_tests) = adjust(&mut rows, &raw);
    for row in &mut rows {
        row.status = status(row, options);
        row.p_value = deciding_p_value(row);
    }
    rows.sort_by(|a, b| {
        b.change
            .severity_per_1k
            .total_cmp(&a.change.severity_per_1k)
            .then_with(|| a.status.cmp(&b.status))
            .then_with(|| a.key.cmp(&b.key))
            .then_with(|| a.identity.cmp(&b.identity))
    });
    (rows, rise_tests, fall_tests)
}

/// A row's identity and its group on each side.
type Pair<'a> = (String, Option<&'a Group>, Option<&'a Group>);

/// The groups of both sides, paired by identity: `(identity, base, new)`.
///
/// With frame keys, an identity on one side only is also paired with one on
/// the other side only when their frames have the same functions and each
/// path of one ends with the other's (`views.py:total` and
/// `shop/views.py:total`: two releases whose app roots were found at
/// different depths, one having blocked only in `shop/`), and neither has
/// another such partner; the row takes the longer identity.
fn pair_groups<'a>(
    base: &'a FxHashMap<String, Group>,
    new: &'a FxHashMap<String, Group>,
    frame_keys: bool,
) -> Vec<Pair<'a>> {
    let identities: BTreeSet<&String> = base.keys().chain(new.keys()).collect();
    let mut pairs: Vec<Pair> = identities.into_iter().map(|id| (id.clone(), base.get(id), new.get(id))).collect();
    let only = |pick: fn(&Pair) -> bool| -> Vec<usize> {
        pairs.iter().enumerate().filter(|(_, pair)| pick(pair)).map(|(at, _)| at).collect()
    };
    let (only_base, only_new) = (only(|p| p.2.is_none()), only(|p| p.1.is_none()));
    // Past a million comparisons, the sides are not two releases of one program.
    if !frame_keys || only_base.len().saturating_mul(only_new.len()) > 1_000_000 {
        return pairs;
    }
    let partners = |at: usize, others: &[usize]| -> Vec<usize> {
        others.iter().copied().filter(|&other| same_but_for_root(&pairs[at].0, &pairs[other].0)).collect()
    };
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for &b in &only_base {
        if let [n] = partners(b, &only_new)[..] {
            if partners(n, &only_base) == [b] {
                merged.push((b, n));
            }
        }
    }
    for &(b, n) in &merged {
        let new_group = pairs[n].2.take();
        pairs[b].2 = new_group;
        if pairs[n].0.len() > pairs[b].0.len() {
            pairs[b].0 = pairs[n].0.clone();
        }
    }
    pairs.retain(|(_, base, new)| base.is_some() || new.is_some());
    pairs
}

/// Whether two frame identities differ only by how much of their paths
/// their app roots took (see [`pair_groups`]).
fn same_but_for_root(a: &str, b: &str) -> bool {
    let suffix = |long: &str, short: &str| {
        long.len() > short.len() && long.ends_with(short) && { long.as_bytes()[long.len() - short.len() - 1] == b'/' }
    };
    let frame = |x: &str, y: &str| match (x.rsplit_once(':'), y.rsplit_once(':')) {
        (Some((px, fx)), Some((py, fy))) => fx == fy && (px == py || suffix(px, py) || suffix(py, px)),
        _ => x == y,
    };
    let (fa, fb): (Vec<&str>, Vec<&str>) = (a.split(TRACE_SEPARATOR).collect(), b.split(TRACE_SEPARATOR).collect());
    a != b && fa.len() == fb.len() && fa.iter().zip(&fb).all(|(x, y)| frame(x, y))
}

/// Holm-adjusts every rise test of the diff together, and every fall test
/// together, and stores them in the rows; returns the size of each family.
fn adjust(rows: &mut [DiffRow], raw: &[Vec<RawTests>]) -> (usize, usize) {
    let family = |pick: fn(&RawTests) -> Option<f64>| -> Vec<f64> {
        let all: Vec<f64> = raw.iter().flatten().filter_map(pick).collect();
        stats::holm(&all)
    };
    let (mut rises, mut falls) = (family(|t| t.rise).into_iter(), family(|t| t.fall).into_iter());
    let (rise_tests, fall_tests) = (rises.len(), falls.len());
    for (row, tests) in rows.iter_mut().zip(raw) {
        row.tests = tests
            .iter()
            .map(|t| TestResult {
                measure: t.measure,
                rise_p_value: t.rise.and_then(|_| rises.next()),
                fall_p_value: t.fall.and_then(|_| falls.next()),
            })
            .collect();
    }
    (rise_tests, fall_tests)
}

fn status(row: &DiffRow, options: &DiffOptions) -> Status {
    let (base, new) = match (&row.base, &row.new) {
        (Some(base), Some(new)) => (base, new),
        (None, _) => return Status::New,
        (_, None) => return Status::Gone,
    };
    let alpha = 1.0 - options.confidence;
    let beyond = |p: Option<f64>| p.is_some_and(|p| p <= alpha);
    let rose = row
        .tests
        .iter()
        .any(|t| beyond(t.rise_p_value) && moved_enough(t.measure, t.measure.pick(base), t.measure.pick(new), options));
    let fell = row
        .tests
        .iter()
        .any(|t| beyond(t.fall_p_value) && moved_enough(t.measure, t.measure.pick(new), t.measure.pick(base), options));
    if rose {
        Status::Regressed
    } else if fell {
        Status::Improved
    } else {
        Status::Unchanged
    }
}

fn deciding_p_value(row: &DiffRow) -> Option<f64> {
    let falls = matches!(row.status, Status::Improved | Status::Gone);
    row.tests.iter().filter_map(|t| if falls { t.fall_p_value } else { t.rise_p_value }).min_by(|a, b| a.total_cmp(b))
}

/// Whether a new group is seen more than chance would show it: one of its
/// rate tests is beyond the confidence.
fn new_beyond_chance(row: &DiffRow, confidence: f64) -> bool {
    row.tests.iter().any(|t| t.measure != Measure::P95Ms && t.rise_p_value.is_some_and(|p| p <= 1.0 - confidence))
}

impl FailOn {
    fn matches(self, row: &DiffRow, options: &DiffOptions) -> bool {
        let new_high = row.status == Status::New && row.new.as_ref().is_some_and(|n| n.level == SeverityLevel::High);
        let new = row.status == Status::New && new_beyond_chance(row, options.confidence);
        let regressed = row.status == Status::Regressed;
        match self {
            FailOn::NewHigh => new_high,
            FailOn::New => new,
            FailOn::Regressed => regressed,
            FailOn::Route => false,
            FailOn::Any => new || regressed,
        }
    }
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

/// `events per 1k slices 35.1 -> 70.3 (x2.0, p < 0.001)`: one test's part of a reason.
fn measure_text(measure: Measure, base: Option<&SideValues>, new: &SideValues, p: f64) -> String {
    let (from, to) = (base.map_or(0.0, |b| measure.pick(b)), measure.pick(new));
    let unit = if measure == Measure::P95Ms { " ms" } else { "" };
    let ratio = if from > 0.0 { format!("x{:.1}, ", to / from) } else { String::new() };
    format!("{} {} -> {}{unit} ({ratio}{})", measure.text(), trim(from), trim(to), stats::p_text(p))
}

/// The reason a row fails the gate: the numbers, the tests beyond chance
/// and the confidence they were held at.
fn reason(row: &DiffRow, options: &DiffOptions) -> String {
    let key = row_name(row);
    let Some(new) = &row.new else { return format!("{key} is gone") };
    let alpha = 1.0 - options.confidence;
    let beyond: Vec<String> = row
        .tests
        .iter()
        .filter_map(|t| Some((t.measure, t.rise_p_value.filter(|&p| p <= alpha)?)))
        .filter(|&(measure, _)| {
            row.base.as_ref().is_none_or(|b| moved_enough(measure, measure.pick(b), measure.pick(new), options))
        })
        .map(|(measure, p)| measure_text(measure, row.base.as_ref(), new, p))
        .collect();
    let tests = if beyond.is_empty() {
        String::new()
    } else {
        format!("; {} at confidence {}", beyond.join(", "), options.confidence)
    };
    match &row.base {
        None => format!(
            "new {} group {key}: {} slices, severity {} per 1k slices{tests}",
            new.severity_level,
            new.slices,
            trim(new.severity_per_1k)
        ),
        Some(_) => format!("regressed {key}{}", tests.replacen(';', ":", 1)),
    }
}

/// A row as a reason names it: by identity, which is the same in both
/// releases, with the lines it was seen at on the new side (`'app.py:orders'
/// (line 30)`).
fn row_name(row: &DiffRow) -> String {
    let lines = row.new.as_ref().or(row.base.as_ref()).map_or(&[][..], |side| &side.lines[..]);
    let shown: Vec<String> = lines.iter().take(3).map(i32::to_string).collect();
    let more = if lines.len() > 3 { ", …" } else { "" };
    match shown.len() {
        0 => format!("'{}'", row.identity),
        1 => format!("'{}' (line {})", row.identity, shown[0]),
        _ => format!("'{}' (lines {}{more})", row.identity, shown.join(", ")),
    }
}

/// A number without trailing zeros: `12.5`, `3`.
pub fn trim(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The rows that fail the gate, one reason each, in row order: rows with at
/// least `min_count` blocking slices on the new side, not one-time work
/// (unless `gate_one_time`), that match a `--fail-on`.
pub fn gate(rows: &[DiffRow], options: &DiffOptions) -> Vec<String> {
    rows.iter()
        .filter(|row| row.new.as_ref().is_some_and(|n| n.slices >= options.min_count))
        .filter(|row| row.one_time.is_none() || options.gate_one_time)
        .filter(|row| options.fail_on.iter().any(|fail_on| fail_on.matches(row, options)))
        .map(|row| reason(row, options))
        .collect()
}

/// The warning of a diff whose sides have groups but none in common.
pub fn nothing_in_common(rows: &[DiffRow]) -> Option<String> {
    let both = rows.iter().any(|r| r.base.is_some() && r.new.is_some());
    let base = rows.iter().any(|r| r.base.is_some());
    let new = rows.iter().any(|r| r.new.is_some());
    (base && new && !both).then(|| {
        "no group is on both sides: every row is new or gone. Are both sides recordings of the same program, \
         grouped the same way (--by, --app-root)?"
            .to_owned()
    })
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

/// A route's values on one side.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RouteSideValues {
    pub requests: u64,
    /// The route's busy time (tasks its requests spawned included) over its requests.
    pub loop_ms_per_request: f64,
    /// Of each request's own task's loop time.
    pub p95_ms: f64,
    pub events_per_request: f64,
    pub busy_ms: f64,
    pub events: u64,
}

/// One route of a diff (`--by route`, [`crate::route_diff`]).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RouteDiffRow {
    pub route: String,
    pub status: Status,
    /// `None` (JSON null) for a new route.
    pub base: Option<RouteSideValues>,
    /// `None` (JSON null) for a gone route.
    pub new: Option<RouteSideValues>,
    /// Holm-adjusted p-values that loop ms per request rose and fell (`None`: not tested).
    pub loop_rise_p_value: Option<f64>,
    pub loop_fall_p_value: Option<f64>,
    /// Likewise for events per request.
    pub events_rise_p_value: Option<f64>,
    pub events_fall_p_value: Option<f64>,
    /// Each side's loop time per request over its other routes' (`None`:
    /// no other route), what the loop test compares.
    #[serde(skip)]
    pub relative_cost: (Option<f64>, Option<f64>),
    /// The machine's change as the other routes show it (see
    /// [`crate::stats::MachineSpread`]): loop time per request moved only
    /// beyond it. `None`: no other route on both sides, loop time not judged.
    #[serde(rename = "machine_band", serialize_with = "band_ratios")]
    pub machine_band: Option<crate::stats::MachineSpread>,
}

/// A band as JSON shows it: `{"low": 0.8, "high": 1.9, "peers": 3}`,
/// ratios new over base, and how many other routes it was read from.
fn band_ratios<S: serde::Serializer>(band: &Option<crate::stats::MachineSpread>, out: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Band {
        low: f64,
        high: f64,
        peers: usize,
    }
    let shown = band.map(|b| {
        let (low, high) = b.band();
        Band { low: round3(low), high: round3(high), peers: b.peers }
    });
    shown.serialize(out)
}

impl RouteDiffRow {
    /// The adjusted p-value its status rests on, if it was tested.
    pub fn p_value(&self) -> Option<f64> {
        let candidates = match self.status {
            Status::Improved => [self.loop_fall_p_value, self.events_fall_p_value],
            _ => [self.loop_rise_p_value, self.events_rise_p_value],
        };
        candidates.into_iter().flatten().min_by(f64::total_cmp)
    }
}

/// `diff`'s tasks and loop lag ([`crate::task_diff`] compares them).
/// Tasks and loop lag of both sides.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TasksDiff {
    /// What keys a row: `coroutine`, or `route` with `--by route`.
    pub by: &'static str,
    /// `None` when a side has no slice of known readiness.
    pub loop_lag: Option<LagDiff>,
    /// Coroutines (or routes) with timed tasks on a side, most mean wall
    /// time added first.
    pub rows: Vec<TaskDiffRow>,
    /// Unchanged rows left out (without `--all`).
    pub rows_not_shown: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LagDiff {
    pub status: Status,
    pub base: crate::tasks::LagSummary,
    pub new: crate::tasks::LagSummary,
    /// The mean ready-wait per slice: what is tested.
    pub base_mean_ms: f64,
    pub new_mean_ms: f64,
    /// Holm-adjusted p-values that the mean rose and fell.
    pub rise_p_value: f64,
    pub fall_p_value: f64,
}

/// One side's tasks of a coroutine (or route).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TaskSideValues {
    pub tasks: u64,
    /// Tasks created and ended in the traces: what the times are of.
    pub timed: u64,
    /// Means per timed task.
    pub wall_ms: f64,
    pub ready_wait_ms: f64,
    pub loop_ms: f64,
    pub wall_p95_ms: f64,
    pub ready_wait_p95_ms: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TaskDiffRow {
    pub key: String,
    pub status: Status,
    pub base: Option<TaskSideValues>,
    pub new: Option<TaskSideValues>,
    /// Holm-adjusted p-values (`None`: not tested, a side has no timed task).
    pub ready_wait_rise_p_value: Option<f64>,
    pub ready_wait_fall_p_value: Option<f64>,
    pub wall_rise_p_value: Option<f64>,
    pub wall_fall_p_value: Option<f64>,
}

impl TaskDiffRow {
    /// The adjusted p-value its status rests on, if it was tested.
    pub fn p_value(&self) -> Option<f64> {
        let candidates = match self.status {
            Status::Improved => [self.ready_wait_fall_p_value, self.wall_fall_p_value],
            _ => [self.ready_wait_rise_p_value, self.wall_rise_p_value],
        };
        candidates.into_iter().flatten().min_by(f64::total_cmp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durations::Durations;
    use crate::resolve::{Analysis, Example, GroupDetail};

    /// A group of `slices` slices of `events_per_slice` events of weight 10
    /// each, every slice taking `ms` milliseconds.
    fn group(slices: u64, events_per_slice: u64, ms: u64) -> Group {
        let mut durations = Durations::new();
        for _ in 0..slices {
            durations.record(ms * 1_000_000);
        }
        let (events, score) = (slices * events_per_slice, 10 * events_per_slice as i64);
        Group {
            slices,
            events,
            severity_score: score * slices as i64,
            worst: aiocop_trace::level_from_score(score),
            exceeded: 0,
            durations,
            event_counts: FxHashMap::default(),
            example: Example { slice_score: 0, file: 0, start_ns: 0, trace: "t".to_owned(), event: "e()".to_owned() },
            detail: GroupDetail {
                events_sq: (events_per_slice * events_per_slice * slices) as f64,
                score_sq: (score * score) as f64 * slices as f64,
                lines: [(42, events)].into_iter().collect(),
                ..GroupDetail::default()
            },
        }
    }

    fn side(slices: u64, groups: Vec<(&str, Group)>) -> Side {
        let mut analysis = Analysis::default();
        analysis.totals.slices = slices;
        analysis.groups = groups.into_iter().map(|(k, g)| (k.to_owned(), g)).collect();
        Side {
            analysis,
            facts: Vec::new(),
            paths: Vec::new(),
            flame: Default::default(),
            routes: Default::default(),
            tasks: Default::default(),
        }
    }

    fn statuses(base: &Side, new: &Side, options: &DiffOptions) -> Vec<(String, Status)> {
        let mut rows: Vec<(String, Status)> =
            compare(base, new, options).0.into_iter().map(|r| (r.identity, r.status)).collect();
        rows.sort();
        rows
    }

    fn pairs(list: &[(&str, Status)]) -> Vec<(String, Status)> {
        list.iter().map(|(k, s)| (k.to_string(), *s)).collect()
    }

    #[test]
    fn a_row_regresses_only_beyond_chance_and_by_the_minimum_increase() {
        let base = side(
            10_000,
            vec![
                ("doubled", group(200, 1, 1)),
                ("noise", group(200, 1, 1)),
                ("few", group(4, 1, 1)),
                ("half", group(200, 1, 1)),
            ],
        );
        let new = side(
            10_000,
            vec![
                ("doubled", group(400, 1, 1)),
                ("noise", group(230, 1, 1)),
                ("few", group(12, 1, 1)),
                ("half", group(100, 1, 1)),
            ],
        );
        let options = DiffOptions::default();
        assert_eq!(
            statuses(&base, &new, &options),
            pairs(&[
                ("doubled", Status::Regressed),
                ("few", Status::Unchanged), // x3, but 4 -> 12 is within chance
                ("half", Status::Improved),
                ("noise", Status::Unchanged), // +15%: within chance, and under 20%
            ])
        );
        // Significant but small: --min-increase decides.
        let big_base = side(1_000_000, vec![("steady", group(20_000, 1, 1))]);
        let big_new = side(1_000_000, vec![("steady", group(22_000, 1, 1))]);
        assert_eq!(statuses(&big_base, &big_new, &options), pairs(&[("steady", Status::Unchanged)]));
        let ten_pct = DiffOptions { min_increase: 0.05, ..DiffOptions::default() };
        assert_eq!(statuses(&big_base, &big_new, &ten_pct), pairs(&[("steady", Status::Regressed)]));
    }

    #[test]
    fn more_calls_per_slice_is_a_regression_and_clustered_calls_are_not_noise() {
        // The same slices make two calls instead of one.
        let base = side(10_000, vec![("route", group(300, 1, 1))]);
        let new = side(10_000, vec![("route", group(300, 2, 1))]);
        let rows = compare(&base, &new, &DiffOptions::default()).0;
        assert_eq!(rows[0].status, Status::Regressed);
        assert!(rows[0].p_value.unwrap() < 1e-6);
        // Ten calls a slice, in 30 slices against 36: not beyond chance.
        let base = side(10_000, vec![("burst", group(30, 10, 1))]);
        let new = side(10_000, vec![("burst", group(36, 10, 1))]);
        assert_eq!(compare(&base, &new, &DiffOptions::default()).0[0].status, Status::Unchanged);
    }

    #[test]
    fn one_time_work_is_not_tested_unless_asked() {
        let mut import = group(1, 3, 14);
        import.detail.import_slices = 1;
        let mut import_new = group(1, 3, 19);
        import_new.detail.import_slices = 1;
        let base = side(1_000, vec![("import", import), ("once", group(2, 1, 5))]);
        let new = side(1_000, vec![("import", import_new), ("once", group(1, 8, 50))]);
        let rows = compare(&base, &new, &DiffOptions::default()).0;
        let one_time: Vec<(&str, Option<&str>, usize)> =
            rows.iter().map(|r| (r.identity.as_str(), r.one_time, r.tests.len())).collect();
        assert!(one_time.contains(&("import", Some("first-call import"), 0)), "{one_time:?}");
        assert!(one_time.contains(&("once", Some("at most 2 slices a side"), 0)), "{one_time:?}");
        let fail_on_all =
            DiffOptions { fail_on: vec![FailOn::Any, FailOn::NewHigh], min_count: 1, ..DiffOptions::default() };
        assert!(gate(&rows, &fail_on_all).is_empty());
        let tested = DiffOptions { gate_one_time: true, ..fail_on_all };
        assert!(compare(&base, &new, &tested).0.iter().all(|r| !r.tests.is_empty()));
    }

    #[test]
    fn p95s_are_compared_only_from_the_minimum_slices_and_beyond_chance() {
        let slow = |slices, slow_slices| {
            let mut g = group(slices, 1, 2);
            for _ in 0..slow_slices {
                g.durations.record(30 * 1_000_000);
            }
            g.slices += slow_slices;
            g
        };
        let base = side(10_000, vec![("a", slow(100, 0)), ("b", slow(40, 0))]);
        let new = side(10_000, vec![("a", slow(70, 30)), ("b", slow(28, 12))]);
        let rows = compare(&base, &new, &DiffOptions::default()).0;
        let row = |key: &str| rows.iter().find(|r| r.identity == key).unwrap();
        // The same rate; three in ten slices take 30 ms instead of 2.
        assert_eq!(row("a").status, Status::Regressed);
        assert_eq!(
            row("a").tests.iter().map(|t| t.measure).collect::<Vec<_>>(),
            [Measure::EventsPer1k, Measure::SeverityPer1k, Measure::P95Ms]
        );
        // Under 50 slices a side: no p95 test.
        assert_eq!((row("b").status, row("b").tests.len()), (Status::Unchanged, 2));
        let reasons = gate(&rows, &DiffOptions { fail_on: vec![FailOn::Regressed], ..DiffOptions::default() });
        assert_eq!(reasons.len(), 1);
        assert!(
            reasons[0].starts_with("regressed 'a' (line 42): p95 2 -> 30 ms (x15.0, p < 0.001) at confidence 0.99"),
            "{reasons:?}"
        );
    }

    #[test]
    fn a_new_group_gates_as_new_only_beyond_chance() {
        let base = side(1_000, vec![("old", group(100, 1, 1))]);
        let new = side(
            1_000,
            vec![
                ("old", group(100, 1, 1)),
                ("rare", group(4, 1, 1)),
                ("common", group(40, 1, 1)),
                ("heavy", group(4, 5, 1)),
            ],
        );
        let rows = compare(&base, &new, &DiffOptions::default()).0;
        assert!(rows.iter().filter(|r| r.identity != "old").all(|r| r.status == Status::New));
        let fail =
            |fail_on| gate(&rows, &DiffOptions { fail_on: vec![fail_on], min_count: 1, ..DiffOptions::default() });
        let new_reasons = fail(FailOn::New);
        assert_eq!(new_reasons.len(), 1, "{new_reasons:?}");
        assert!(new_reasons[0].starts_with("new medium group 'common' (line 42): 40 slices, severity 400 per 1k slices; events per 1k slices 0 -> 40 (p < 0.001)"), "{new_reasons:?}");
        // new-high keeps its meaning: any new group of high severity.
        let high = fail(FailOn::NewHigh);
        assert_eq!(high.len(), 1);
        assert!(high[0].starts_with("new high group 'heavy' (line 42): 4 slices"), "{high:?}");
    }

    #[test]
    fn identities_that_differ_only_by_their_roots_depth_are_one_row() {
        let base = side(
            10_000,
            vec![("views.py:total", group(100, 1, 1)), ("a/x.py:f", group(100, 1, 1)), ("b/x.py:f", group(100, 1, 1))],
        );
        let new = side(
            10_000,
            vec![
                ("shop/views.py:total", group(100, 1, 1)),
                ("x.py:f", group(100, 1, 1)),
                ("api/views.py:other", group(100, 1, 1)),
            ],
        );
        let frames = DiffOptions { frame_keys: true, ..DiffOptions::default() };
        assert_eq!(
            statuses(&base, &new, &frames),
            pairs(&[
                ("a/x.py:f", Status::Gone), // two partners: left alone
                ("api/views.py:other", Status::New),
                ("b/x.py:f", Status::Gone),
                ("shop/views.py:total", Status::Unchanged),
                ("x.py:f", Status::New),
            ])
        );
        // Not for keys that are not frames.
        assert_eq!(statuses(&base, &new, &DiffOptions::default()).len(), 6);
        assert!(same_but_for_root("c.py:w <- views.py:total", "x/c.py:w <- shop/views.py:total"));
        assert!(!same_but_for_root("c.py:w <- views.py:total", "c.py:w <- shop/views.py:other"));
        assert!(!same_but_for_root("hop/views.py:total", "shop/views.py:total"));
        assert!(!same_but_for_root("shop.views:Cart.total", "views:Cart.total"));
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
