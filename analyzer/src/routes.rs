//! `--by route`: the Routes table, requests and their loop time per route.
//!
//! The recorder names the route of every slice of a request's task (and of
//! the tasks it spawns) with the context value `route`, and writes one
//! `route.start` (whose value is the route) in the slice that routed each
//! request (see `aiocop.core.routes`). So:
//! - a route's **requests** are its `route.start` values: one per request
//!   the framework routed, whatever task served it (a keep-alive connection
//!   serving many, as Sanic's does, counts each);
//! - a request's **loop time** is the time of the slices of the task that
//!   routed it, from its `route.start` to the next one in that task or the
//!   trace's end; p50 and p95 are over those. Tasks a request spawned carry
//!   its route but not its identity: their time counts in the route's busy
//!   time, its share and its mean per request, not in p50/p95;
//! - **events per request** and the **severity** (summed score, worst level
//!   of a slice) come from every slice with the route.
//!
//! A pass of its own over each file, in chunk order (a request's slices
//! must be met in the order they ran), made only for `--by route`.

use crate::resolve::find_string;
use aiocop_trace::records::{SliceRecord, StringId};
use aiocop_trace::{level_from_score, PureSlice, SeverityLevel, SliceVisitor, TraceFile};
use rustc_hash::FxHashMap;

/// One route's requests and time, keyed by text: mergeable across files.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RouteStats {
    pub requests: u64,
    /// Every slice with the route, spawned tasks' included.
    pub busy_ns: u64,
    pub slices: u64,
    pub events: u64,
    /// Σ over the slices of (their events)²: how the events come clustered.
    pub events_sq: u64,
    pub score: i64,
    /// The worst level of a slice with blocking events, if any had one.
    pub worst: Option<SeverityLevel>,
    /// Each request's own loop time (its task's slices).
    pub request_ns: Vec<u64>,
}

impl RouteStats {
    pub fn merge(&mut self, other: RouteStats) {
        self.requests += other.requests;
        self.busy_ns = self.busy_ns.saturating_add(other.busy_ns);
        self.slices += other.slices;
        self.events += other.events;
        self.events_sq = self.events_sq.saturating_add(other.events_sq);
        self.score = self.score.saturating_add(other.score);
        self.worst = self.worst.max(other.worst);
        self.request_ns.extend(other.request_ns);
    }
}

/// Routes by name.
pub type Routes = FxHashMap<String, RouteStats>;

/// The request a task is serving: its route (string id) and time so far.
struct OpenRequest {
    route: StringId,
    ns: u64,
}

/// Takes a file's slices in order; keyed by string ids until the end.
struct RouteVisitor {
    route_key: Option<StringId>,
    start_key: Option<StringId>,
    since_ns: u64,
    until_ns: u64,
    by_route: FxHashMap<StringId, RouteStats>,
    open: FxHashMap<StringId, OpenRequest>,
}

impl RouteVisitor {
    fn close(&mut self, request: OpenRequest) {
        self.by_route.entry(request.route).or_default().request_ns.push(request.ns);
    }
}

impl SliceVisitor for RouteVisitor {
    #[inline]
    fn pure_slice(&mut self, _start_ns: u64, _slice: PureSlice) {}

    fn slice(&mut self, start_ns: u64, slice: &SliceRecord) {
        if start_ns < self.since_ns || start_ns >= self.until_ns {
            return;
        }
        let value = |key: Option<StringId>| slice.context.iter().filter(move |(k, _)| Some(*k) == key).map(|p| p.1);
        if let Some(task) = slice.task {
            for started in value(self.start_key) {
                if let Some(previous) = self.open.insert(task, OpenRequest { route: started, ns: 0 }) {
                    self.close(previous);
                }
                self.by_route.entry(started).or_default().requests += 1;
            }
        }
        let Some(route) = value(self.route_key).next() else { return };
        if let Some(request) = slice.task.and_then(|task| self.open.get_mut(&task)).filter(|r| r.route == route) {
            request.ns = request.ns.saturating_add(slice.duration_ns);
        }
        let stats = self.by_route.entry(route).or_default();
        stats.busy_ns = stats.busy_ns.saturating_add(slice.duration_ns);
        stats.slices += 1;
        let events = slice.events.len() as u64 + u64::from(slice.dropped_events);
        stats.events += events;
        stats.events_sq = stats.events_sq.saturating_add(events * events);
        if events > 0 {
            stats.score = stats.score.saturating_add(slice.score);
            stats.worst = stats.worst.max(Some(level_from_score(slice.score)));
        }
    }
}

/// The routes of one trace, in `[since_ns, until_ns)` from its start;
/// empty for a trace recorded without routes. Chunks that cannot be read
/// are left out (the main read reports them).
pub fn file_routes(trace: &TraceFile, since_ns: u64, until_ns: u64) -> Routes {
    let chunks = trace.chunk_count();
    let key_id = |key: &str| {
        (0..chunks)
            .filter_map(|i| trace.read_chunk_definitions(i).ok().and_then(|c| find_string(&c.strings, key)))
            .min()
    };
    let route_key = key_id(crate::keys::ROUTE_KEY);
    if route_key.is_none() {
        return Routes::default();
    }
    let start_key = key_id(crate::keys::ROUTE_START_KEY);
    let mut visitor = RouteVisitor {
        route_key,
        start_key,
        since_ns,
        until_ns,
        by_route: FxHashMap::default(),
        open: FxHashMap::default(),
    };
    let mut names = aiocop_trace::Dictionary::new();
    for index in 0..chunks {
        if let Ok(chunk) = trace.visit_chunk(index, &mut visitor) {
            names.add(&chunk);
        }
    }
    for request in std::mem::take(&mut visitor.open).into_values() {
        visitor.close(request);
    }
    let mut routes = Routes::default();
    for (id, stats) in visitor.by_route {
        let name = names.string(id).map_or_else(|| format!("<unknown string {id}>"), str::to_owned);
        routes.entry(name).or_default().merge(stats);
    }
    routes
}

/// One row of the Routes table.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RouteRow {
    pub rank: usize,
    pub route: String,
    pub requests: u64,
    /// The route's busy time over its requests (spawned tasks included).
    pub loop_ms_per_request: f64,
    /// Of each request's own task.
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub busy_ms: f64,
    /// Of the loop's busy time in the traces read.
    pub busy_share: f64,
    pub events_per_request: f64,
    pub severity_score: i64,
    /// The worst level of its slices with blocking events; None without any.
    pub worst: Option<&'static str>,
}

/// The Routes table: every route, most loop time per request first (then
/// by name), `<unrouted>` requests never; `busy_ns` is the loop's busy time.
pub fn route_rows(routes: Routes, busy_ns: u64) -> Vec<RouteRow> {
    let mut rows: Vec<RouteRow> = routes
        .into_iter()
        .map(|(route, mut stats)| {
            stats.request_ns.sort_unstable();
            let per_request = |total: f64| if stats.requests == 0 { 0.0 } else { total / stats.requests as f64 };
            RouteRow {
                rank: 0,
                requests: stats.requests,
                loop_ms_per_request: per_request(ms(stats.busy_ns)),
                p50_ms: ms(percentile(&stats.request_ns, 0.5)),
                p95_ms: ms(percentile(&stats.request_ns, 0.95)),
                busy_ms: ms(stats.busy_ns),
                busy_share: if busy_ns == 0 { 0.0 } else { stats.busy_ns as f64 / busy_ns as f64 },
                events_per_request: per_request(stats.events as f64),
                severity_score: stats.score,
                worst: stats.worst.map(SeverityLevel::as_str),
                route,
            }
        })
        .collect();
    rows.sort_by(|a, b| b.loop_ms_per_request.total_cmp(&a.loop_ms_per_request).then_with(|| a.route.cmp(&b.route)));
    for (index, row) in rows.iter_mut().enumerate() {
        row.rank = index + 1;
    }
    rows
}

/// Nanoseconds as milliseconds.
fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// The nearest-rank percentile of sorted values; 0 for none.
fn percentile(sorted: &[u64], quantile: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(requests: u64, busy_ms: u64, events: u64, request_ms: &[u64]) -> RouteStats {
        RouteStats {
            requests,
            busy_ns: busy_ms * 1_000_000,
            slices: requests,
            events,
            events_sq: events,
            score: 0,
            worst: None,
            request_ns: request_ms.iter().map(|ms| ms * 1_000_000).collect(),
        }
    }

    #[test]
    fn routes_rank_by_loop_time_per_request_with_percentiles_of_their_requests() {
        let mut routes = Routes::default();
        routes.insert("GET /cheap".to_owned(), stats(100, 100, 0, &[1; 100]));
        routes.insert("GET /dear".to_owned(), stats(10, 200, 30, &[10, 10, 10, 10, 10, 20, 20, 20, 20, 50]));
        let rows = route_rows(routes, 400_000_000);
        assert_eq!(rows.iter().map(|r| r.route.as_str()).collect::<Vec<_>>(), ["GET /dear", "GET /cheap"]);
        let dear = &rows[0];
        assert_eq!((dear.rank, dear.requests, dear.loop_ms_per_request), (1, 10, 20.0));
        assert_eq!((dear.p50_ms, dear.p95_ms), (10.0, 50.0));
        assert_eq!((dear.busy_share, dear.events_per_request), (0.5, 3.0));
        assert_eq!(rows[1].loop_ms_per_request, 1.0);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        assert_eq!(percentile(&[], 0.5), 0);
        assert_eq!(percentile(&[7], 0.95), 7);
        assert_eq!(percentile(&[1, 2, 3, 4], 0.5), 2);
        assert_eq!(percentile(&[1, 2, 3, 4], 0.95), 4);
    }
}
