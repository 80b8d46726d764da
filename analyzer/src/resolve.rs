//! The second stage: a file's aggregate, keyed by its ids, resolved through
//! its whole dictionary to groups keyed by text, which merge across files.
//!
//! For each slice signature (see [`crate::aggregate`]), each blocking event
//! that no `--ignore` glob drops gets its key; the slice *appears in* the
//! group of each distinct key, once, with as its score there the sum of the
//! weights (from the trace header's `event_table`) of its events with that
//! key. A group adds up its slices, their events and scores; its worst level
//! is the highest level of those per-slice scores.

use crate::aggregate::{CpuSignature, Extra, FileAggregate, IoSignature, IoStats};
use crate::durations::Durations;
use crate::group::{GroupBy, IgnoreSet, StackFacts, StackResolver, NO_STACK};
use crate::identity::PathContext;
use aiocop_trace::records::{StringId, TraceHeader};
use aiocop_trace::severity::WEIGHT_MODERATE;
use aiocop_trace::{level_from_score, SeverityLevel};
use rustc_hash::FxHashMap;

/// How ids become keys.
#[derive(Clone, Copy, Debug)]
pub struct ResolveOptions<'a> {
    pub by: &'a GroupBy,
    pub app_roots: &'a [String],
    pub ignore: Option<&'a IgnoreSet>,
    /// `--exceeded-only`: only slices over the threshold count in groups.
    pub exceeded_only: bool,
    /// Weights by event name that replace each trace's own (`diff` scores
    /// both sides with one table); an event they lack keeps its own.
    pub weights: Option<&'a EventWeights>,
    /// `entry-point`, `app-frame` and `stack` keys by frame identity, without
    /// lines (see [`crate::identity`]): `diff` matches releases by them.
    pub by_identity: bool,
}

/// Event weights by event name.
pub type EventWeights = FxHashMap<String, i64>;

/// One row of the blocking I/O ranking, before sorting.
#[derive(Clone, Debug)]
pub struct Group {
    pub slices: u64,
    pub events: u64,
    pub severity_score: i64,
    pub worst: SeverityLevel,
    pub exceeded: u64,
    pub durations: Durations,
    pub event_counts: FxHashMap<String, u64>,
    pub example: Example,
    pub detail: GroupDetail,
}

/// What `diff` needs of a group besides what a report shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GroupDetail {
    /// The key frame's line (the entry point's, or the app frame's for
    /// `app-frame`) of each of the group's events: events per line.
    pub lines: FxHashMap<i32, u64>,
    /// Slices whose every event at the key came through the import system.
    pub import_slices: u64,
    /// Σ over the group's slices of (its events at the key)², and of (its score there)².
    pub events_sq: f64,
    pub score_sq: f64,
    /// With `by_identity`, the keys as a report shows them (with lines), by events.
    pub shown: FxHashMap<String, u64>,
}

impl GroupDetail {
    fn merge(&mut self, other: GroupDetail) {
        for (line, count) in other.lines {
            *self.lines.entry(line).or_default() += count;
        }
        self.import_slices += other.import_slices;
        self.events_sq += other.events_sq;
        self.score_sq += other.score_sq;
        for (shown, count) in other.shown {
            *self.shown.entry(shown).or_default() += count;
        }
    }
}

/// One blocking event shown for a group: the heaviest event at the group's
/// key of its highest-scoring slice (the earliest such slice on a tie).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Example {
    pub slice_score: i64,
    pub file: usize,
    pub start_ns: u64,
    pub trace: String,
    /// `name(arguments)`.
    pub event: String,
}

impl Example {
    fn better_than(&self, other: &Example) -> bool {
        (std::cmp::Reverse(self.slice_score), self.file, self.start_ns, &self.trace, &self.event)
            < (std::cmp::Reverse(other.slice_score), other.file, other.start_ns, &other.trace, &other.event)
    }
}

/// One row of the CPU-blocking ranking, before sorting.
#[derive(Clone, Debug)]
pub struct CpuGroup {
    pub slices: u64,
    pub samples: u64,
    pub durations: Durations,
    /// The most frequent sample's stack of the longest slice's signature
    /// (the earliest on a tie): (max elapsed, file, first start, trace).
    pub example: (u64, usize, u64, String),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub traces: u64,
    pub slices: u64,
    pub blocking_slices: u64,
    pub exceeded: u64,
    pub cpu_blocking: u64,
    pub events: u64,
    pub dropped_slices: u64,
    pub dropped_events: u64,
    /// Recorded time, summed over the traces, within the time window.
    pub duration_ns: u64,
}

/// Groups keyed by text, mergeable across files.
#[derive(Clone, Debug, Default)]
pub struct Analysis {
    pub groups: FxHashMap<String, Group>,
    pub cpu_groups: FxHashMap<String, CpuGroup>,
    pub totals: Totals,
}

/// A key per slice signature, and the per-key part of the slice.
struct KeyPart {
    key: String,
    score: i64,
    events: u64,
    names: Vec<String>,
    /// Index (in signature order) of the heaviest event with this key.
    heaviest: usize,
    heaviest_weight: i64,
    /// Events per line of the key frame.
    lines: smallvec::SmallVec<[(i32, u64); 2]>,
    /// Whether every event with this key came through the import system.
    through_import: bool,
    /// With `by_identity`: events per key as a report shows it.
    shown: smallvec::SmallVec<[(String, u64); 1]>,
}

impl Analysis {
    /// Resolves `aggregate`, the whole of file number `file`, and adds it.
    pub fn add_file(&mut self, file: usize, header: &TraceHeader, aggregate: &FileAggregate, options: ResolveOptions) {
        let dictionary = &aggregate.dictionary;
        let used_stacks = aggregate.io.keys().flat_map(|s| s.events.iter().map(|&(_, stack)| stack));
        // Format 1.1 headers add the process's sys.path; 1.0 has none.
        let sys_path = &header.process.sys_path;
        let paths = PathContext::new(dictionary, used_stacks.chain(aggregate.cpu.keys().map(|s| s.stack)), sys_path);
        let mut stacks = StackResolver::new(dictionary, options.app_roots, options.ignore, &paths);
        let weight = |event: u16| match header.event_table.get(usize::from(event)) {
            Some(spec) => options.weights.and_then(|w| w.get(&spec.name)).copied().unwrap_or(spec.weight),
            None => WEIGHT_MODERATE,
        };
        let name = |event: u16| {
            header.event_table.get(usize::from(event)).map_or_else(|| format!("<event {event}>"), |e| e.name.clone())
        };
        let string =
            |id: StringId| dictionary.string(id).map_or_else(|| format!("<unknown string {id}>"), str::to_owned);
        let missing = match options.by {
            GroupBy::Context(key) => format!("<no {key}>"),
            _ => String::new(),
        };
        let extra_key = |extra: Option<StringId>| extra.map_or_else(|| missing.clone(), string);

        for (signature, stats) in &aggregate.io {
            let mut parts: Vec<KeyPart> = Vec::new();
            for (index, &(event, stack)) in signature.events.iter().enumerate() {
                let facts = stacks.facts(stack);
                if facts.ignored {
                    continue;
                }
                let key = match options.by {
                    GroupBy::Event => name(event),
                    GroupBy::Task | GroupBy::Context(_) => extra_key(signature.extra),
                    by => frame_key(by, facts, options.by_identity).to_owned(),
                };
                let line = match options.by {
                    GroupBy::AppFrame => facts.app_line,
                    _ => facts.entry_line,
                };
                let through_import = facts.through_import;
                let shown = match options.by {
                    GroupBy::EntryPoint | GroupBy::AppFrame | GroupBy::Stack if options.by_identity => {
                        Some(frame_key(options.by, facts, false).to_owned())
                    }
                    _ => None,
                };
                let weight = weight(event);
                let part = match parts.iter_mut().position(|p| p.key == key) {
                    Some(at) => &mut parts[at],
                    None => {
                        parts.push(KeyPart {
                            key,
                            score: 0,
                            events: 0,
                            names: Vec::new(),
                            heaviest: index,
                            heaviest_weight: weight,
                            lines: smallvec::SmallVec::new(),
                            through_import: true,
                            shown: smallvec::SmallVec::new(),
                        });
                        parts.last_mut().expect("just pushed")
                    }
                };
                // Weights come from the file: a crafted one must not overflow.
                part.score = part.score.saturating_add(weight);
                part.events += 1;
                part.names.push(name(event));
                part.through_import &= through_import;
                if let Some(line) = line {
                    match part.lines.iter_mut().find(|(l, _)| *l == line) {
                        Some((_, count)) => *count += 1,
                        None => part.lines.push((line, 1)),
                    }
                }
                if let Some(shown) = shown {
                    match part.shown.iter_mut().find(|(s, _)| *s == shown) {
                        Some((_, count)) => *count += 1,
                        None => part.shown.push((shown, 1)),
                    }
                }
                if weight > part.heaviest_weight {
                    part.heaviest = index;
                    part.heaviest_weight = weight;
                }
            }
            if parts.is_empty() {
                continue; // every event is ignored: known and accepted
            }
            self.totals.blocking_slices += stats.slices;
            self.totals.events += parts.iter().map(|p| p.events).sum::<u64>() * stats.slices;
            if options.exceeded_only && !signature.exceeded {
                continue;
            }
            for part in parts {
                let example = example(file, signature, stats, &part, &mut stacks, &name, &string);
                self.add_group(part, signature, stats, example);
            }
        }

        for (signature, stats) in &aggregate.cpu {
            let CpuSignature { stack, extra } = signature;
            let facts = stacks.facts(*stack);
            let key = if *stack == NO_STACK && !matches!(options.by, GroupBy::Task | GroupBy::Context(_)) {
                "<no samples>".to_owned()
            } else {
                match options.by {
                    GroupBy::Task | GroupBy::Context(_) => extra_key(*extra),
                    // The most sampled frame stands for the event.
                    GroupBy::Event => frame_key(&GroupBy::EntryPoint, facts, options.by_identity).to_owned(),
                    by => frame_key(by, facts, options.by_identity).to_owned(),
                }
            };
            let trace = if *stack == NO_STACK { "<no samples>".to_owned() } else { facts.trace.clone() };
            self.totals.cpu_blocking += stats.slices;
            let example = (stats.durations.max_ns(), file, stats.first_start_ns, trace);
            let group = self.cpu_groups.entry(key).or_insert_with(|| CpuGroup {
                slices: 0,
                samples: 0,
                durations: Durations::new(),
                example: example.clone(),
            });
            group.slices += stats.slices;
            group.samples += stats.samples;
            group.durations.merge(&stats.durations);
            if better_cpu_example(&example, &group.example) {
                group.example = example;
            }
        }

        let (counts, totals) = (&aggregate.counts, &mut self.totals);
        totals.traces += 1;
        totals.slices += counts.slices;
        totals.exceeded += counts.exceeded;
        totals.dropped_slices += counts.dropped_slices;
        totals.dropped_events += counts.dropped_events;
    }

    fn add_group(&mut self, part: KeyPart, signature: &IoSignature, stats: &IoStats, example: Example) {
        let level = level_from_score(part.score);
        let group = self.groups.entry(part.key).or_insert_with(|| Group {
            slices: 0,
            events: 0,
            severity_score: 0,
            worst: level,
            exceeded: 0,
            durations: Durations::new(),
            event_counts: FxHashMap::default(),
            example: example.clone(),
            detail: GroupDetail::default(),
        });
        group.slices += stats.slices;
        group.events += part.events * stats.slices;
        let detail = &mut group.detail;
        let slices = stats.slices as f64;
        detail.events_sq += (part.events as f64).powi(2) * slices;
        detail.score_sq += (part.score as f64).powi(2) * slices;
        if part.through_import {
            detail.import_slices += stats.slices;
        }
        for &(line, events) in &part.lines {
            *detail.lines.entry(line).or_default() += events * stats.slices;
        }
        for (shown, events) in part.shown {
            *detail.shown.entry(shown).or_default() += events * stats.slices;
        }
        group.severity_score = group.severity_score.saturating_add(part.score.saturating_mul(stats.slices as i64));
        group.worst = group.worst.max(level);
        if signature.exceeded {
            group.exceeded += stats.slices;
        }
        group.durations.merge(&stats.durations);
        for name in part.names {
            *group.event_counts.entry(name).or_default() += stats.slices;
        }
        if example.better_than(&group.example) {
            group.example = example;
        }
    }

    /// Adds another file's (or set of files') analysis.
    pub fn merge(&mut self, other: Analysis) {
        for (key, theirs) in other.groups {
            match self.groups.get_mut(&key) {
                None => {
                    self.groups.insert(key, theirs);
                }
                Some(mine) => {
                    mine.slices += theirs.slices;
                    mine.events += theirs.events;
                    mine.severity_score = mine.severity_score.saturating_add(theirs.severity_score);
                    mine.worst = mine.worst.max(theirs.worst);
                    mine.exceeded += theirs.exceeded;
                    mine.durations.merge(&theirs.durations);
                    for (name, count) in theirs.event_counts {
                        *mine.event_counts.entry(name).or_default() += count;
                    }
                    if theirs.example.better_than(&mine.example) {
                        mine.example = theirs.example;
                    }
                    mine.detail.merge(theirs.detail);
                }
            }
        }
        for (key, theirs) in other.cpu_groups {
            match self.cpu_groups.get_mut(&key) {
                None => {
                    self.cpu_groups.insert(key, theirs);
                }
                Some(mine) => {
                    mine.slices += theirs.slices;
                    mine.samples += theirs.samples;
                    mine.durations.merge(&theirs.durations);
                    if better_cpu_example(&theirs.example, &mine.example) {
                        mine.example = theirs.example;
                    }
                }
            }
        }
        let (mine, theirs) = (&mut self.totals, other.totals);
        mine.traces += theirs.traces;
        mine.slices += theirs.slices;
        mine.blocking_slices += theirs.blocking_slices;
        mine.exceeded += theirs.exceeded;
        mine.cpu_blocking += theirs.cpu_blocking;
        mine.events += theirs.events;
        mine.dropped_slices += theirs.dropped_slices;
        mine.dropped_events += theirs.dropped_events;
        mine.duration_ns = mine.duration_ns.saturating_add(theirs.duration_ns);
    }
}

/// The key of a frame-keyed `--by` (entry-point, function, app-frame, stack).
fn frame_key<'f>(by: &GroupBy, facts: &'f StackFacts, by_identity: bool) -> &'f str {
    match (by, by_identity) {
        (GroupBy::Function, _) | (GroupBy::EntryPoint, true) => &facts.entry_identity,
        (GroupBy::AppFrame, true) => &facts.app_identity,
        (GroupBy::AppFrame, false) => &facts.app_frame,
        (GroupBy::Stack, true) => &facts.trace_identity,
        (GroupBy::Stack, false) => &facts.trace,
        _ => &facts.entry_point,
    }
}

/// The longest, then the earliest.
fn better_cpu_example(a: &(u64, usize, u64, String), b: &(u64, usize, u64, String)) -> bool {
    (std::cmp::Reverse(a.0), a.1, a.2, &a.3) < (std::cmp::Reverse(b.0), b.1, b.2, &b.3)
}

fn example(
    file: usize,
    signature: &IoSignature,
    stats: &IoStats,
    part: &KeyPart,
    stacks: &mut StackResolver,
    name: &impl Fn(u16) -> String,
    string: &impl Fn(StringId) -> String,
) -> Example {
    let (event, stack) = signature.events[part.heaviest];
    let args = stats.example_args.get(part.heaviest).map_or_else(String::new, |&id| string(id));
    Example {
        slice_score: part.score,
        file,
        start_ns: stats.example_start_ns,
        trace: stacks.facts(stack).trace.clone(),
        event: format!("{}({args})", name(event)),
    }
}

/// The string id of `key` among a chunk's definitions, for `--by context:KEY`.
pub fn find_string(chunk_strings: &[(StringId, String)], key: &str) -> Option<StringId> {
    chunk_strings.iter().find(|(_, text)| text == key).map(|(id, _)| *id)
}

/// What `--by` needs from each chunk besides its events.
pub fn extra_for(by: &GroupBy, context_key_id: Option<StringId>) -> Extra {
    match by {
        GroupBy::Task => Extra::What,
        GroupBy::Context(_) => Extra::Context(context_key_id),
        _ => Extra::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::ChunkOptions;
    use aiocop_trace::records::{Chunk, EventRecord, EventSpec, Frame, SliceRecord};

    /// Events: 0 open (10), 1 time.sleep (50), 2 os.stat (1).
    fn header() -> TraceHeader {
        let spec = |name: &str, weight| EventSpec { name: name.to_owned(), weight };
        TraceHeader {
            event_table: vec![spec("open", 10), spec("time.sleep", 50), spec("os.stat", 1)],
            ..TraceHeader::default()
        }
    }

    const STRINGS: [&str; 10] = [
        "/srv/app/a.py",
        "load",
        "/srv/app/b.py",
        "save",
        "/usr/lib/python3.12/shutil.py",
        "copy",
        "/srv/app/c.py",
        "main",
        "cfg.json",
        "endpoint",
    ];

    /// Stacks: 0 = a.py:1:load <- c.py:9:main; 1 = b.py:2:save <- c.py:9:main;
    /// 2 = shutil.py:3:copy <- b.py:2:save <- c.py:9:main; 3 = a.py:1:load <- b.py:2:save.
    fn definitions() -> Chunk {
        let frame = |file: u32, line| Frame { file, line, function: file + 1 };
        Chunk {
            strings: STRINGS.iter().enumerate().map(|(i, s)| (i as u32, (*s).to_owned())).collect(),
            frames: vec![(0, frame(0, 1)), (1, frame(2, 2)), (2, frame(4, 3)), (3, frame(6, 9))],
            stacks: vec![(0, vec![0, 3]), (1, vec![1, 3]), (2, vec![2, 1, 3]), (3, vec![0, 1])],
            ..Chunk::default()
        }
    }

    fn event(event: u16, stack: u32) -> EventRecord {
        EventRecord { event, args: 8, offset_ns: 0, stack }
    }

    fn slice(duration_ms: u64, exceeded: bool, events: Vec<EventRecord>) -> SliceRecord {
        SliceRecord {
            start_delta_ns: 1_000_000,
            duration_ns: duration_ms * 1_000_000,
            exceeded,
            events,
            ..SliceRecord::default()
        }
    }

    fn analyse(chunk: Chunk, by: &GroupBy, ignore: &[String], exceeded_only: bool) -> Analysis {
        let mut aggregate = FileAggregate::default();
        aggregate.add_chunk(&definitions(), &ChunkOptions::default());
        aggregate.add_chunk(&chunk, &ChunkOptions { extra: extra_for(by, Some(9)), ..ChunkOptions::default() });
        let ignore = IgnoreSet::new(ignore).unwrap();
        let mut analysis = Analysis::default();
        let options = ResolveOptions {
            by,
            app_roots: &[],
            ignore: ignore.as_ref(),
            exceeded_only,
            weights: None,
            by_identity: false,
        };
        analysis.add_file(0, &header(), &aggregate, options);
        analysis
    }

    fn summary(analysis: &Analysis) -> Vec<(String, u64, u64, i64, SeverityLevel, u64)> {
        let mut rows: Vec<_> = analysis
            .groups
            .iter()
            .map(|(key, g)| (key.clone(), g.slices, g.events, g.severity_score, g.worst, g.exceeded))
            .collect();
        rows.sort();
        rows
    }

    fn workload() -> Chunk {
        Chunk {
            slices: vec![
                // open twice at a.py (20) and a sleep at b.py (50): slow
                slice(120, true, vec![event(0, 0), event(1, 1), event(0, 0)]),
                // one open at a.py, reached from b.py this time (stack 3)
                slice(5, false, vec![event(0, 3)]),
                // shutil copy (stdlib) called from b.py
                slice(7, false, vec![event(0, 2), event(2, 2)]),
                // CPU-bound and slow
                slice(200, true, vec![]),
            ],
            ..Chunk::default()
        }
    }

    #[test]
    fn entry_points_count_each_slice_once_with_its_score_there() {
        let analysis = analyse(workload(), &GroupBy::EntryPoint, &[], false);
        assert_eq!(
            summary(&analysis),
            [
                ("/srv/app/a.py:1:load".to_owned(), 2, 3, 30, SeverityLevel::Medium, 1),
                ("/srv/app/b.py:2:save".to_owned(), 1, 1, 50, SeverityLevel::High, 1),
                ("shutil.py:3:copy".to_owned(), 1, 2, 11, SeverityLevel::Medium, 0),
            ]
        );
        let a = &analysis.groups["/srv/app/a.py:1:load"];
        assert_eq!(a.durations.total_ns(), 125_000_000);
        assert_eq!(a.event_counts.get("open"), Some(&3));
        // The slow slice scores 20 there, the other 10: the example is the slow one's.
        assert_eq!(a.example.slice_score, 20);
        assert_eq!(a.example.trace, "/srv/app/a.py:1:load <- /srv/app/c.py:9:main");
        assert_eq!(a.example.event, "open(cfg.json)");
        assert_eq!(
            analysis.totals,
            Totals {
                traces: 1,
                slices: 4,
                blocking_slices: 3,
                exceeded: 2,
                cpu_blocking: 1,
                events: 6,
                ..Totals::default()
            }
        );
        assert_eq!(analysis.cpu_groups["<no samples>"].slices, 1);
    }

    #[test]
    fn app_frames_skip_the_standard_library() {
        let analysis = analyse(workload(), &GroupBy::AppFrame, &[], false);
        let keys: Vec<_> = summary(&analysis).into_iter().map(|row| (row.0, row.1, row.3)).collect();
        assert_eq!(keys, [("/srv/app/a.py:1:load".to_owned(), 2, 30), ("/srv/app/b.py:2:save".to_owned(), 2, 61)]);
    }

    #[test]
    fn events_tasks_stacks_and_context_keys() {
        let rows = |by: GroupBy| -> Vec<(String, u64, u64, i64)> {
            summary(&analyse(workload(), &by, &[], false)).into_iter().map(|r| (r.0, r.1, r.2, r.3)).collect()
        };
        assert_eq!(
            rows(GroupBy::Event),
            [("open".to_owned(), 3, 4, 40), ("os.stat".to_owned(), 1, 1, 1), ("time.sleep".to_owned(), 1, 1, 50)]
        );
        // `what` is string 0 for every slice here.
        assert_eq!(rows(GroupBy::Task), [("/srv/app/a.py".to_owned(), 3, 6, 91)]);
        assert_eq!(rows(GroupBy::Context("endpoint".to_owned())), [("<no endpoint>".to_owned(), 3, 6, 91)]);
        assert_eq!(rows(GroupBy::Stack)[0], ("/srv/app/a.py:1:load <- /srv/app/b.py:2:save".to_owned(), 1, 1, 10));
    }

    #[test]
    fn ignored_events_leave_groups_and_totals() {
        let analysis = analyse(workload(), &GroupBy::EntryPoint, &["*/shutil.py".to_owned()], false);
        assert_eq!(summary(&analysis).len(), 2);
        assert_eq!((analysis.totals.blocking_slices, analysis.totals.events), (2, 4));
        // A slice with ignored I/O is not CPU-blocking.
        assert_eq!(analysis.totals.cpu_blocking, 1);
        // Ignoring by function drops both stacks through b.py's save frame.
        let analysis = analyse(workload(), &GroupBy::EntryPoint, &["*:save".to_owned()], false);
        assert_eq!(summary(&analysis), [("/srv/app/a.py:1:load".to_owned(), 1, 2, 20, SeverityLevel::Medium, 1)]);
    }

    #[test]
    fn exceeded_only_keeps_slow_slices_in_groups_but_not_in_totals() {
        let analysis = analyse(workload(), &GroupBy::EntryPoint, &[], true);
        assert_eq!(
            summary(&analysis),
            [
                ("/srv/app/a.py:1:load".to_owned(), 1, 2, 20, SeverityLevel::Medium, 1),
                ("/srv/app/b.py:2:save".to_owned(), 1, 1, 50, SeverityLevel::High, 1),
            ]
        );
        assert_eq!(analysis.totals.blocking_slices, 3);
    }

    #[test]
    fn files_merge_by_text_key() {
        let mut all = analyse(workload(), &GroupBy::EntryPoint, &[], false);
        let mut second = analyse(workload(), &GroupBy::EntryPoint, &[], false);
        for group in second.groups.values_mut() {
            group.example.file = 1;
        }
        all.merge(second);
        let a = &all.groups["/srv/app/a.py:1:load"];
        assert_eq!((a.slices, a.events, a.severity_score, a.durations.count()), (4, 6, 60, 4));
        assert_eq!(a.example.file, 0);
        assert_eq!((all.totals.traces, all.totals.slices, all.totals.cpu_blocking), (2, 8, 2));
    }

    #[test]
    fn unknown_event_indexes_weigh_as_moderate() {
        let chunk = Chunk { slices: vec![slice(1, false, vec![event(40, 0)])], ..Chunk::default() };
        let analysis = analyse(chunk, &GroupBy::Event, &[], false);
        assert_eq!(summary(&analysis), [("<event 40>".to_owned(), 1, 1, 10, SeverityLevel::Medium, 0)]);
    }
}
