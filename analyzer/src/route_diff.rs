//! `diff --by route`: the Routes tables of two releases compared route by
//! route (as [`crate::routes`] counts them): loop milliseconds per request
//! and blocking events per request, with the requests behind them.
//!
//! Both are rates per request, tested as the gate tests a group's rates
//! ([`crate::stats`]): given a route's total on both sides, the new side's
//! share of it against its share of the route's requests, the total first
//! divided by its dispersion (quasi-Poisson). Loop time is taken at one
//! speed: the new side's requests weigh the median ratio of every route's
//! loop time per request (new over base, with 3 routes or more): a run on
//! a busier machine makes every request slower, beyond chance for any
//! test, and is not a change of one route (a change that slows every route
//! alike is the groups' and the flame graph's to show, not this table's). Loop time's dispersion is
//! that of the requests' own times (`Σ t² / Σ t`, in µs: a route of a few
//! long requests varies more than one of many short ones), events' that of
//! the route's slices. Rises are Holm-adjusted over every route's rise
//! tests, falls over every fall test; a route is `regressed` when a rate
//! rose beyond chance (adjusted p <= 1 - `--confidence`) and by at least
//! `--min-increase` (loop time: beyond the machine's band, below, and by
//! `--min-route-change-ms` at the new side's speed), `improved` when one
//! fell so and none rose, `new` or `gone` when one side has no request of
//! it, else `unchanged`. `--fail-on route` (or `any`) fails the gate on a
//! regressed route ([`gate`]); `regressed` stays the groups'.
//!
//! Chance is not all that moves loop time between two recordings: a
//! machine busier in one does not slow every route alike (a long CPU-bound
//! request is preempted more than a short one), and that unevenness does
//! not shrink with more requests. So a route's loop time changed only
//! beyond the band in which the other routes moved ([`stats::MachineSpread`]):
//! as far as the farthest of them from their median, at least as far as
//! that median from 1 and [`stats::MACHINE_ALLOWANCE`] (1.5x), by
//! `--min-increase` more; with no other route on both sides, loop time is
//! not judged.

use crate::diff::{trim, DiffOptions, RouteDiffRow, RouteSideValues, Status};
use crate::routes::{RouteStats, Routes};
use crate::stats::{self, RateSample};
use std::collections::BTreeSet;

fn per_request(total: f64, requests: u64) -> f64 {
    if requests == 0 {
        0.0
    } else {
        (total / requests as f64 * 1000.0).round() / 1000.0
    }
}

fn side_values(stats: &RouteStats) -> RouteSideValues {
    let mut own = stats.request_ns.clone();
    own.sort_unstable();
    let p95_ns = own.get(((own.len() as f64 * 0.95).ceil() as usize).clamp(1, own.len().max(1)) - 1).copied();
    RouteSideValues {
        requests: stats.requests,
        loop_ms_per_request: per_request(stats.busy_ns as f64 / 1e6, stats.requests),
        p95_ms: p95_ns.map_or(0.0, |ns| ns as f64 / 1e6),
        events_per_request: per_request(stats.events as f64, stats.requests),
        busy_ms: stats.busy_ns as f64 / 1e6,
        events: stats.events,
    }
}

/// How much slower (above 1) or faster the new side ran every route: the
/// median over the routes on both sides of their loop time per request's
/// ratio, new over base; 1 with fewer than 3 such routes. A run on a busier
/// machine makes every request slower, beyond chance for any test, which is
/// not a change of one route; the median is not moved by one route that did change.
fn speed_ratio(base: &Routes, new: &Routes) -> f64 {
    let per_request = |s: &RouteStats| s.busy_ns as f64 / s.requests as f64;
    let mut ratios: Vec<f64> = base
        .iter()
        .filter_map(|(name, b)| Some((b, new.get(name)?)))
        .filter(|(b, n)| b.requests > 0 && n.requests > 0 && b.busy_ns > 0 && n.busy_ns > 0)
        .map(|(b, n)| per_request(n) / per_request(b))
        .collect();
    if ratios.len() < 3 {
        return 1.0;
    }
    ratios.sort_by(f64::total_cmp);
    let middle = ratios.len() / 2;
    if ratios.len() % 2 == 1 {
        ratios[middle]
    } else {
        (ratios[middle - 1] + ratios[middle]) / 2.0
    }
}

/// Loop time as a rate test sees it: µs, dispersed as the requests' own
/// times, against `weight`: the route's requests times the other routes'
/// µs per request (so that a machine busier in one run, every request
/// slower, is not a change), or its requests alone without other routes.
fn loop_sample(stats: Option<&RouteStats>, weight: u64) -> RateSample {
    let requests = weight;
    let Some(stats) = stats else { return RateSample { total: 0.0, sum_sq: 0.0, side_slices: requests } };
    let own_us: f64 = stats.request_ns.iter().map(|&ns| ns as f64 / 1000.0).sum();
    let own_sq: f64 = stats.request_ns.iter().map(|&ns| (ns as f64 / 1000.0).powi(2)).sum();
    let busy_us = stats.busy_ns as f64 / 1000.0;
    // The busy time's squares, in the proportion of the requests' own times.
    let sum_sq = if own_us > 0.0 { own_sq * busy_us / own_us } else { busy_us * busy_us };
    RateSample { total: busy_us, sum_sq, side_slices: requests }
}

fn events_sample(stats: Option<&RouteStats>, requests: u64) -> RateSample {
    let (total, sum_sq) = stats.map_or((0.0, 0.0), |s| (s.events as f64, s.events_sq as f64));
    RateSample { total, sum_sq, side_slices: requests }
}

/// `ln(new / base)` of a route's loop time per request, when both sides served it.
fn loop_log_ratio(base: Option<&RouteStats>, new: Option<&RouteStats>) -> Option<f64> {
    let per_request = |s: &RouteStats| s.busy_ns as f64 / s.requests as f64;
    let (b, n) = (base?, new?);
    (b.requests > 0 && n.requests > 0 && b.busy_ns > 0 && n.busy_ns > 0).then(|| (per_request(n) / per_request(b)).ln())
}

/// Each route's band of the machine's change: the spread of the other
/// routes' log ratios, at least as wide as their change and as
/// [`stats::MACHINE_ALLOWANCE`] (see [`stats::MachineSpread`]); `None`
/// without another route on both sides.
fn machine_bands(log_ratios: &[Option<f64>]) -> Vec<Option<stats::MachineSpread>> {
    (0..log_ratios.len())
        .map(|i| {
            let peers: Vec<f64> =
                log_ratios.iter().enumerate().filter(|&(j, _)| j != i).filter_map(|(_, &x)| x).collect();
            stats::MachineSpread::of(&peers).map(|spread| spread.at_least_the_change().at_least_the_allowance())
        })
        .collect()
}

/// Every route of either side, most loop time per request added first.
pub fn compare_routes(base: &Routes, new: &Routes, options: &DiffOptions) -> Vec<RouteDiffRow> {
    let names: BTreeSet<&String> = base.keys().chain(new.keys()).collect();
    let speed = speed_ratio(base, new);
    let log_ratios: Vec<Option<f64>> =
        names.iter().map(|name| loop_log_ratio(base.get(*name), new.get(*name))).collect();
    let mut bands = machine_bands(&log_ratios).into_iter();
    let mut rows = Vec::with_capacity(names.len());
    // Per route: (loop rise, loop fall, events rise, events fall), raw.
    let mut raw: Vec<[Option<f64>; 4]> = Vec::with_capacity(names.len());
    for name in names {
        let (b, n) = (base.get(name).filter(|s| s.requests > 0), new.get(name).filter(|s| s.requests > 0));
        let both = b.is_some() && n.is_some();
        let (b_requests, n_requests) = (b.map_or(0, |s| s.requests), n.map_or(0, |s| s.requests));
        // The new side's requests count `speed` times as much loop time (in
        // thousandths, the weights being whole numbers).
        let weights = (b_requests * 1000, (n_requests as f64 * 1000.0 * speed).round() as u64);
        let (lb, ln) = (loop_sample(b, weights.0), loop_sample(n, weights.1));
        let (eb, en) = (events_sample(b, b_requests), events_sample(n, n_requests));
        let test = |rise: bool, base: &RateSample, new: &RateSample| {
            both.then(|| if rise { stats::rate_rise(base, new) } else { stats::rate_fall(base, new) })
        };
        raw.push([test(true, &lb, &ln), test(false, &lb, &ln), test(true, &eb, &en), test(false, &eb, &en)]);
        rows.push(RouteDiffRow {
            route: name.clone(),
            status: match (b, n) {
                (None, _) => Status::New,
                (_, None) => Status::Gone,
                _ => Status::Unchanged,
            },
            base: b.map(side_values),
            new: n.map(side_values),
            loop_rise_p_value: None,
            loop_fall_p_value: None,
            events_rise_p_value: None,
            events_fall_p_value: None,
            relative_cost: (b.map(|_| 1.0), n.map(|_| speed)),
            machine_band: bands.next().flatten().filter(|_| both),
        });
    }
    adjust(&mut rows, &raw);
    for row in &mut rows {
        row.status = status(row, options);
    }
    let added = |row: &RouteDiffRow| {
        row.new.as_ref().map_or(0.0, |v| v.loop_ms_per_request)
            - row.base.as_ref().map_or(0.0, |v| v.loop_ms_per_request)
    };
    rows.sort_by(|a, b| added(b).total_cmp(&added(a)).then_with(|| a.route.cmp(&b.route)));
    rows
}

/// Holm over every rise test of the routes together, and every fall test.
fn adjust(rows: &mut [RouteDiffRow], raw: &[[Option<f64>; 4]]) {
    let family = |at: [usize; 2]| -> Vec<f64> {
        let all: Vec<f64> = raw.iter().flat_map(|tests| at.map(|i| tests[i])).flatten().collect();
        stats::holm(&all)
    };
    let (mut rises, mut falls) = (family([0, 2]).into_iter(), family([1, 3]).into_iter());
    for (row, tests) in rows.iter_mut().zip(raw) {
        // The same order as `family` took them: loop then events, rises and falls apart.
        row.loop_rise_p_value = tests[0].and_then(|_| rises.next());
        row.events_rise_p_value = tests[2].and_then(|_| rises.next());
        row.loop_fall_p_value = tests[1].and_then(|_| falls.next());
        row.events_fall_p_value = tests[3].and_then(|_| falls.next());
    }
}

fn status(row: &RouteDiffRow, options: &DiffOptions) -> Status {
    let (Some(base), Some(new)) = (&row.base, &row.new) else { return row.status };
    let alpha = 1.0 - options.confidence;
    let beyond = |p: Option<f64>| p.is_some_and(|p| p <= alpha);
    let rose = |from: f64, to: f64| to > 0.0 && to >= from * (1.0 + options.min_increase);
    // Loop time moved only when it left the band of the machine's change
    // (the other routes', by --min-increase more; never without another
    // route), and by --min-route-change-ms at the new side's speed.
    let (loop_b, loop_n) = (base.loop_ms_per_request, new.loop_ms_per_request);
    let log_ratio = if loop_b > 0.0 && loop_n > 0.0 { (loop_n / loop_b).ln() } else { 0.0 };
    let ms_at_new_speed = (loop_n - loop_b * row.relative_cost.1.unwrap_or(1.0)).abs();
    let enough_ms = ms_at_new_speed >= options.min_route_change_ms;
    let band = row.machine_band;
    let loop_rose = enough_ms && band.is_some_and(|b| b.rose_beyond(log_ratio, options.min_increase));
    let loop_fell = enough_ms && band.is_some_and(|b| b.fell_beyond(log_ratio, options.min_increase));
    let (events_b, events_n) = (base.events_per_request, new.events_per_request);
    if (beyond(row.loop_rise_p_value) && loop_rose) || (beyond(row.events_rise_p_value) && rose(events_b, events_n)) {
        Status::Regressed
    } else if (beyond(row.loop_fall_p_value) && loop_fell)
        || (beyond(row.events_fall_p_value) && rose(events_n, events_b))
    {
        Status::Improved
    } else {
        Status::Unchanged
    }
}

/// The routes that fail a gate that looks at routes (`--fail-on route` or
/// `any`), one reason each, in row order; and how many routes were judged
/// (on both sides, with another route beside them to read the machine's
/// change from). Empty, and `None`, when the gate does not look at routes.
pub fn gate(rows: &[RouteDiffRow], options: &DiffOptions) -> (Vec<String>, Option<usize>) {
    if !options.fail_on.iter().any(|fail_on| fail_on.gates_routes()) {
        return (Vec::new(), None);
    }
    let judged = rows.iter().filter(|row| row.machine_band.is_some()).count();
    let reasons = rows.iter().filter(|row| row.status == Status::Regressed).map(|row| reason(row, options)).collect();
    (reasons, Some(judged))
}

/// What a diff says when its gate was asked for routes (`--fail-on route`;
/// `any` asks for whatever there is) and judged none: the traces hold no
/// route on both sides (not recorded from a web app, recorded before routes
/// were, or one route alone), so no route can fail it.
pub fn nothing_to_gate(routes_judged: Option<usize>, options: &DiffOptions) -> Option<String> {
    let asked = options.fail_on.contains(&crate::diff::FailOn::Route);
    (asked && routes_judged == Some(0)).then(|| {
        "--fail-on route judged no route: none was served on both sides beside another route (routes are \
         recorded from Starlette/FastAPI, aiohttp, Sanic, Litestar and Django apps; one route alone cannot \
         be told from a change of the machine)"
            .to_owned()
    })
}

/// `regressed route 'GET /cpu': loop ms per request 3.1 -> 9.4 (x3.0, p <
/// 0.001; the other routes moved 0.67x to 1.5x), 812 -> 790 requests, at
/// confidence 0.99`: the measures that rose, with the counts behind them.
fn reason(row: &RouteDiffRow, options: &DiffOptions) -> String {
    let (Some(base), Some(new)) = (&row.base, &row.new) else { return format!("route '{}'", row.route) };
    let alpha = 1.0 - options.confidence;
    let mut measures = Vec::new();
    let ratio = |from: f64, to: f64| if from > 0.0 { format!("x{:.1}, ", to / from) } else { String::new() };
    if let Some(p) = row.loop_rise_p_value.filter(|&p| p <= alpha) {
        let band = row.machine_band.map(|b| b.band()).map_or(String::new(), |(low, high)| {
            format!("; outside the band the other routes set, {}x to {}x", trim(low), trim(high))
        });
        let (from, to) = (base.loop_ms_per_request, new.loop_ms_per_request);
        measures.push(format!(
            "loop ms per request {} -> {} ({}{}{band})",
            trim(from),
            trim(to),
            ratio(from, to),
            stats::p_text(p)
        ));
    }
    if let Some(p) = row.events_rise_p_value.filter(|&p| p <= alpha) {
        let (from, to) = (base.events_per_request, new.events_per_request);
        measures.push(format!(
            "blocking events per request {} -> {} ({}{})",
            trim(from),
            trim(to),
            ratio(from, to),
            stats::p_text(p)
        ));
    }
    format!(
        "regressed route '{}': {}, {} -> {} requests, at confidence {}",
        row.route,
        measures.join(", "),
        base.requests,
        new.requests,
        options.confidence
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `requests` requests of `ms` each (their own task's), one event every `every` requests.
    fn route(requests: u64, ms: f64, events: u64) -> RouteStats {
        let ns = (ms * 1e6) as u64;
        RouteStats {
            requests,
            busy_ns: ns * requests,
            slices: requests,
            events,
            events_sq: events,
            score: 0,
            worst: None,
            request_ns: vec![ns; requests as usize],
        }
    }

    fn options() -> DiffOptions {
        DiffOptions { confidence: 0.99, min_increase: 0.2, ..DiffOptions::default() }
    }

    fn routes(list: &[(&str, RouteStats)]) -> Routes {
        list.iter().map(|(name, stats)| ((*name).to_owned(), stats.clone())).collect()
    }

    #[test]
    fn a_slower_route_is_regressed_and_a_like_one_unchanged() {
        let base =
            routes(&[("GET /a", route(400, 5.0, 0)), ("GET /b", route(400, 1.0, 400)), ("GET /old", route(9, 1.0, 0))]);
        let new = routes(&[
            ("GET /a", route(380, 10.0, 0)),
            ("GET /b", route(410, 1.05, 405)),
            ("GET /new", route(9, 1.0, 0)),
        ]);
        let rows = compare_routes(&base, &new, &options());
        let status: Vec<(&str, Status)> = rows.iter().map(|r| (r.route.as_str(), r.status)).collect();
        assert_eq!(
            status,
            [
                ("GET /a", Status::Regressed),
                ("GET /new", Status::New),
                ("GET /b", Status::Unchanged),
                ("GET /old", Status::Gone)
            ]
        );
        let a = &rows[0];
        assert_eq!(
            (a.base.as_ref().unwrap().loop_ms_per_request, a.new.as_ref().unwrap().loop_ms_per_request),
            (5.0, 10.0)
        );
        assert!(a.p_value().unwrap() < 0.001, "{a:?}");
        assert!(rows[2].loop_rise_p_value.unwrap() > 0.01, "{:?}", rows[2]);
    }

    #[test]
    fn more_events_per_request_beyond_chance_is_a_regression_and_fewer_an_improvement() {
        let base = routes(&[("GET /a", route(300, 1.0, 300)), ("GET /b", route(300, 1.0, 600))]);
        let new = routes(&[("GET /a", route(300, 1.0, 600)), ("GET /b", route(300, 1.0, 300))]);
        let rows = compare_routes(&base, &new, &options());
        let by_name = |name: &str| rows.iter().find(|r| r.route == name).unwrap().status;
        assert_eq!((by_name("GET /a"), by_name("GET /b")), (Status::Regressed, Status::Improved));
    }

    /// The three routes of a FastAPI app as two recordings measured them:
    /// (requests, loop ms per request) of /checkout, /report and /io.
    fn app(checkout: (u64, f64), report: (u64, f64), io: (u64, f64)) -> Routes {
        routes(&[
            ("GET /checkout", route(checkout.0, checkout.1, 0)),
            ("GET /report", route(report.0, report.1, 0)),
            ("GET /io", route(io.0, io.1, 0)),
        ])
    }

    fn status_of(rows: &[RouteDiffRow], name: &str) -> Status {
        rows.iter().find(|r| r.route == name).unwrap().status
    }

    #[test]
    fn the_same_build_beside_a_busy_process_changes_no_route() {
        // Measured: the second recording shared the server's CPU with a busy
        // process; the CPU-bound /checkout slowed 1.42x, the others did not.
        let quiet = app((1655, 2.971), (507, 1.017), (300, 0.446));
        let busy = app((1088, 4.225), (554, 0.994), (275, 0.369));
        for (base, new) in [(&quiet, &busy), (&busy, &quiet)] {
            let rows = compare_routes(base, new, &options());
            assert!(rows.iter().all(|r| r.status == Status::Unchanged), "{rows:#?}");
            // Beyond chance by the counts alone: the band is what holds it.
            let checkout = rows.iter().find(|r| r.route == "GET /checkout").unwrap();
            let p = checkout.loop_rise_p_value.unwrap().min(checkout.loop_fall_p_value.unwrap());
            assert!(p < 1e-6, "{checkout:?}");
            assert_eq!(checkout.machine_band.unwrap().peers, 2);
        }
    }

    #[test]
    fn three_times_the_work_is_regressed_whichever_recording_was_busy() {
        // Measured: /checkout doing 3x the work, the base recorded beside a
        // busy process (every route slower there), the new one quiet.
        let busy_a = app((1775, 2.869), (580, 0.684), (353, 0.723));
        let quiet_b = app((826, 6.746), (253, 0.904), (201, 0.289));
        let rows = compare_routes(&busy_a, &quiet_b, &options());
        assert_eq!(status_of(&rows, "GET /checkout"), Status::Regressed, "{rows:#?}");
        assert_eq!(
            (status_of(&rows, "GET /report"), status_of(&rows, "GET /io")),
            (Status::Unchanged, Status::Unchanged)
        );
        assert_eq!(status_of(&compare_routes(&quiet_b, &busy_a, &options()), "GET /checkout"), Status::Improved);
        // Both quiet: 4.1x against routes that moved 0.93x and 1.72x.
        let quiet_a = app((3193, 1.645), (793, 0.525), (406, 0.312));
        assert_eq!(status_of(&compare_routes(&quiet_a, &quiet_b, &options()), "GET /checkout"), Status::Regressed);
    }

    #[test]
    fn the_gate_fails_on_a_regressed_route_only_when_asked_to_look_at_routes() {
        use crate::diff::FailOn;
        let busy_a = app((1775, 2.869), (580, 0.684), (353, 0.723));
        let quiet_b = app((826, 6.746), (253, 0.904), (201, 0.289));
        let rows = compare_routes(&busy_a, &quiet_b, &options());
        let gate_on = |fail_on: Vec<FailOn>| gate(&rows, &DiffOptions { fail_on, ..options() });
        let (reasons, judged) = gate_on(vec![FailOn::Route]);
        assert_eq!(judged, Some(3));
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(
            reasons[0]
                .starts_with("regressed route 'GET /checkout': loop ms per request 2.869 -> 6.746 (x2.4, p < 0.001"),
            "{reasons:?}"
        );
        assert!(reasons[0].ends_with(", 1775 -> 826 requests, at confidence 0.99"), "{reasons:?}");
        assert_eq!(gate_on(vec![FailOn::Any]).0, reasons);
        // `regressed` stays the groups': routes are neither read nor judged.
        assert_eq!(gate_on(vec![FailOn::Regressed, FailOn::New]), (Vec::new(), None));
        // The same build beside a busy process: judged, and passed.
        let quiet = app((1655, 2.971), (507, 1.017), (300, 0.446));
        let busy = app((1088, 4.225), (554, 0.994), (275, 0.369));
        let same = compare_routes(&quiet, &busy, &options());
        let on_routes = DiffOptions { fail_on: vec![FailOn::Route], ..options() };
        assert_eq!(gate(&same, &on_routes), (Vec::new(), Some(3)));
        assert_eq!(nothing_to_gate(Some(3), &on_routes), None);
        assert!(nothing_to_gate(Some(0), &on_routes).unwrap().starts_with("--fail-on route judged no route"));
        let on_any = DiffOptions { fail_on: vec![FailOn::Any], ..options() };
        assert_eq!(nothing_to_gate(Some(0), &on_any), None);
    }

    #[test]
    fn a_lone_routes_loop_time_is_not_judged() {
        // Nothing tells a machine twice as slow from a route twice as dear.
        let rows = compare_routes(
            &routes(&[("GET /a", route(400, 5.0, 0))]),
            &routes(&[("GET /a", route(400, 10.0, 0))]),
            &options(),
        );
        assert_eq!((rows[0].status, rows[0].machine_band), (Status::Unchanged, None));
    }

    #[test]
    fn a_handful_of_requests_is_never_beyond_chance() {
        let base = routes(&[("GET /a", route(3, 5.0, 0))]);
        let new = routes(&[("GET /a", route(3, 15.0, 0))]);
        assert_eq!(compare_routes(&base, &new, &options())[0].status, Status::Unchanged);
    }
}
