//! The second stage: a file's aggregate, keyed by its ids, resolved through
//! its whole dictionary to groups keyed by text, which merge across files.
//! What a key is comes from [`crate::keys`]; the report, diff and views
//! read the groups made here.
//!
//! For each slice signature (see [`crate::aggregate`]), each blocking event
//! that no `--ignore` glob drops gets its key; the slice *appears in* the
//! group of each distinct key, once, with as its score there the sum of the
//! weights (from the trace header's `event_table`) of its events with that
//! key. A group adds up its slices, their events and scores; its worst level
//! is the highest level of those per-slice scores.
//!
//! Keys of events inside a lazy import (`--by entry-point` and `app-frame`)
//! are those of the frame that imported, with the module named:
//! `app.py:12:handler (import numpy)`, the module being the argument of the
//! slice's outermost `import` event at that frame. A stack cut at the trace
//! depth before its importer takes the slice's outermost import.
//!
//! The same keys give the loop's time ([`crate::loop_time`]) and the stalls'
//! top groups ([`crate::stalls`]).

use crate::aggregate::{FileAggregate, IoStats};
use crate::durations::Durations;
use crate::group::{IgnoreSet, StackFacts, StackResolver, NO_STACK};
use crate::identity::PathContext;
use crate::keys::{GroupBy, KeySource};
use crate::signature::{CpuSignature, IoSignature, SampleSignature, Slot};
use crate::stalls::{file_stalls, ChunkRuns};
use aiocop_trace::apportion;
use aiocop_trace::records::{StackId, StringId, TraceHeader};
use aiocop_trace::severity::WEIGHT_MODERATE;
use aiocop_trace::{level_from_score, SeverityLevel};
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;

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

/// Where a group's loop time came from.
pub mod via {
    pub const EVENTS: u8 = 1;
    pub const SAMPLES: u8 = 2;
    pub const WHAT_RAN: u8 = 4;
    /// Some of its samples waited in C code it called (`[native]`).
    pub const NATIVE: u8 = 8;
}

/// The part of a sampled slice's time one key gets.
struct SamplePart {
    key: String,
    /// Samples at the key, and their part of the slice ([`crate::signature::SampleShare::share`]).
    samples: u64,
    share: u64,
    /// A stack there, for the example.
    stack: StackId,
    /// Some of them waited in native code.
    native: bool,
}

/// One row of the Loop time table, before ranking.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoopGroup {
    pub busy_ns: u64,
    /// Of which from slices with blocking events.
    pub io_ns: u64,
    /// Slices that gave it time.
    pub slices: u64,
    /// CPU samples at its key.
    pub samples: u64,
    /// [`via`] flags.
    pub via: u8,
    /// The stack that gave it the most time: (ns, file, first start, trace).
    pub example: Option<(u64, usize, u64, String)>,
}

impl LoopGroup {
    fn add(&mut self, other: LoopGroup) {
        self.busy_ns = self.busy_ns.saturating_add(other.busy_ns);
        self.io_ns = self.io_ns.saturating_add(other.io_ns);
        self.slices += other.slices;
        self.samples += other.samples;
        self.via |= other.via;
        if let Some(theirs) = other.example {
            let better = self.example.as_ref().is_none_or(|mine| {
                (std::cmp::Reverse(theirs.0), theirs.1, theirs.2, &theirs.3)
                    < (std::cmp::Reverse(mine.0), mine.1, mine.2, &mine.3)
            });
            if better {
                self.example = Some(theirs);
            }
        }
    }
}

/// The loop's time as a whole.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoopTotals {
    pub busy_ns: u64,
    /// Time in slices at least `--long-ms` long.
    pub long_ns: u64,
    /// Of that, explained by a stack (blocking events or CPU samples).
    pub long_attributed_ns: u64,
    pub samples: u64,
    /// Traces recorded without sampling (their header says so), so
    /// without a single CPU sample. A trace recorded with sampling on that
    /// has no sample simply had no slice long enough to be sampled.
    pub traces_without_samples: u64,
    /// Traces with a loop whose stalls were cut by the gap heuristic.
    pub traces_with_guessed_stalls: u64,
    /// Traces with samples that carry no times (count-weighted).
    pub traces_with_untimed_samples: u64,
    /// Traces with timed samples that carry no CPU times (format 1.3):
    /// native code is told by the wall-clock wait.
    pub traces_with_wall_clock_native: u64,
}

/// A stall, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stall {
    pub file: usize,
    pub thread: u32,
    pub start_ns: u64,
    pub duration_ns: u64,
    pub slices: u64,
    /// Keys by the time they had in it, most first.
    pub top: Vec<(String, u64)>,
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
    /// Events an allow-list allowed (format 1.3), and the kept ones by the
    /// allowing entry's identity.
    pub allowed_events: u64,
    pub allowed_by: BTreeMap<String, u64>,
    /// Recorded time, summed over the traces, within the time window.
    pub duration_ns: u64,
}

/// Groups keyed by text, mergeable across files.
#[derive(Clone, Debug, Default)]
pub struct Analysis {
    pub groups: FxHashMap<String, Group>,
    pub cpu_groups: FxHashMap<String, CpuGroup>,
    pub loop_groups: FxHashMap<String, LoopGroup>,
    pub loop_totals: LoopTotals,
    pub stalls: Vec<Stall>,
    pub totals: Totals,
    /// The loop's busy time per [`crate::aggregate::BUSY_BUCKET_NS`] after
    /// each trace's start, per file (its number), never added up: an idle
    /// gunicorn master averaged with busy workers would hide both. Empty
    /// series unless asked for.
    pub busy_series_ns: Vec<(usize, Vec<u64>)>,
}

/// A key per slice signature, and the per-key part of the slice.
struct KeyPart {
    key: String,
    score: i64,
    events: u64,
    /// The indices (in signature order) of its events.
    members: smallvec::SmallVec<[usize; 2]>,
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

/// Whether two module names are the same module, one a package of the
/// other, or the same module under another root (`shop.x` and `x`).
fn related_modules(a: &str, b: &str) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    short == long
        || long.strip_prefix(short).is_some_and(|rest| rest.starts_with('.'))
        || long.strip_suffix(short).is_some_and(|rest| rest.ends_with('.'))
}

/// The module an `import` event's argument summary names: its first item.
fn imported_module(args: &str) -> &str {
    args.split(", ").next().unwrap_or(args)
}

/// Turns one file's ids into keys.
struct Keyer<'a> {
    header: &'a TraceHeader,
    aggregate: &'a FileAggregate,
    options: ResolveOptions<'a>,
    stacks: StackResolver<'a>,
    /// The key of a slice without the `context:KEY` value.
    missing: String,
}

impl<'a> Keyer<'a> {
    fn new(
        header: &'a TraceHeader,
        aggregate: &'a FileAggregate,
        options: ResolveOptions<'a>,
        paths: &'a PathContext,
    ) -> Keyer<'a> {
        let missing = options.by.missing_key();
        let stacks = StackResolver::new(&aggregate.dictionary, options.app_roots, options.ignore, paths);
        Keyer { header, aggregate, options, stacks, missing }
    }

    fn weight(&self, event: u16) -> i64 {
        match self.header.event_table.get(usize::from(event)) {
            Some(spec) => self.options.weights.and_then(|w| w.get(&spec.name)).copied().unwrap_or(spec.weight),
            None => WEIGHT_MODERATE,
        }
    }

    fn name(&self, event: u16) -> String {
        self.header.event_table.get(usize::from(event)).map_or_else(|| format!("<event {event}>"), |e| e.name.clone())
    }

    fn string(&self, id: StringId) -> String {
        self.aggregate.dictionary.string(id).map_or_else(|| format!("<unknown string {id}>"), str::to_owned)
    }

    fn extra_key(&self, extra: Option<StringId>) -> String {
        extra.map_or_else(|| self.missing.clone(), |id| self.string(id))
    }

    /// Whether `--by` keys by frames, where the lazy-import rule applies.
    fn by_frame(&self) -> bool {
        self.options.by.is_frame()
    }

    /// The frame key of a stack at `--by` (entry point, function or app
    /// frame), by identity for `function` and when matching releases.
    fn frame_key(&self, facts: &StackFacts) -> String {
        self.options.by.stack_key(facts, self.options.by_identity).to_owned()
    }

    /// The key of a CPU sample's stack (for `--by event`, its innermost frame).
    fn sample_key(&mut self, stack: StackId, extra: Option<StringId>) -> String {
        let by_frame = self.by_frame();
        let facts = self.stacks.facts(stack);
        match self.options.by.spec().source {
            KeySource::Slice => return self.extra_key(extra),
            // For `--by event`, the most sampled frame stands for the event.
            KeySource::Stack | KeySource::Event => {
                return self.options.by.stack_key(facts, self.options.by_identity).to_owned()
            }
            KeySource::Frame(_) => {}
        }
        let facts = facts.clone();
        let key = self.frame_key(&facts);
        match (&facts.import, by_frame) {
            (Some(import), true) if import.has_importer => {
                format!("{key} (import {})", import.module_hint.as_deref().unwrap_or("?"))
            }
            _ => key,
        }
    }

    /// The parts of a slice with this signature, one per key of its events
    /// that no `--ignore` glob drops, in order of first appearance.
    fn io_parts(&mut self, signature: &IoSignature) -> Vec<KeyPart> {
        // The slice's outermost imports, (importer key, module): its `import`
        // events not made from a module being imported (the module is their
        // argument), then the modules its stacks inside imports run outermost
        // (`importlib.import_module` raises no `import` event).
        let mut outer_imports: Vec<(String, String)> = Vec::new();
        // Each event's own module, for the outermost `import` events.
        let mut own_module: Vec<Option<String>> = vec![None; signature.events.len()];
        if self.by_frame() {
            let mut imports = signature.imports.iter();
            let mut hinted = Vec::new();
            for (index, &(event, stack)) in signature.events.iter().enumerate() {
                let is_import = self.name(event) == "import";
                let args = if is_import { imports.next().copied() } else { None };
                let facts = self.stacks.facts(stack).clone();
                match (&facts.import, args) {
                    (None, Some(args)) => {
                        let module = imported_module(&self.string(args)).to_owned();
                        outer_imports.push((self.frame_key(&facts), module.clone()));
                        own_module[index] = Some(module);
                    }
                    (Some(import), _) if import.has_importer => {
                        if let Some(hint) = &import.module_hint {
                            hinted.push((self.frame_key(&facts), hint.clone()));
                        } else if let Some(args) = args {
                            // Made by the machinery itself for the module it was asked for.
                            let module = imported_module(&self.string(args)).to_owned();
                            outer_imports.push((self.frame_key(&facts), module.clone()));
                            own_module[index] = Some(module);
                        }
                    }
                    _ => {}
                }
            }
            // A module loads once a slice: an event inside the import of one
            // the slice's outermost imports name is part of that import, even
            // where its stack, cut at the trace depth, ends before the
            // importer's app frame (and so has another key).
            for pair in hinted {
                if !outer_imports.iter().any(|(_, module)| related_modules(module, &pair.1)) {
                    outer_imports.push(pair);
                }
            }
            // `import xml.dom.minidom` raises an event for `xml`, `xml.dom`
            // and `xml.dom.minidom` at one frame: one import, named in full.
            let full_names: Vec<String> = outer_imports
                .iter()
                .map(|(key, module)| {
                    let longer = outer_imports.iter().filter(|(k, m)| {
                        k == key && m.strip_prefix(module.as_str()).is_some_and(|rest| rest.starts_with('.'))
                    });
                    longer.map(|(_, m)| m).max_by_key(|m| m.len()).unwrap_or(module).clone()
                })
                .collect();
            for own in own_module.iter_mut().flatten() {
                if let Some(at) = outer_imports.iter().position(|(_, m)| m == own) {
                    own.clone_from(&full_names[at]);
                }
            }
            for ((_, module), full) in outer_imports.iter_mut().zip(full_names) {
                *module = full;
            }
        }
        let mut parts: Vec<KeyPart> = Vec::new();
        for (index, &(event, stack)) in signature.events.iter().enumerate() {
            let facts = self.stacks.facts(stack).clone();
            if facts.ignored {
                continue;
            }
            let key = match self.options.by.spec().source {
                KeySource::Frame(_) => self.event_frame_key(&facts, own_module[index].as_deref(), &outer_imports),
                KeySource::Stack => self.options.by.stack_key(&facts, self.options.by_identity).to_owned(),
                KeySource::Event => self.name(event),
                KeySource::Slice => self.extra_key(signature.extra),
            };
            let line = self.options.by.line(&facts);
            let shown = (self.options.by_identity && self.options.by.shows_identity_otherwise())
                .then(|| shown_key(self.options.by, &facts, &key));
            let weight = self.weight(event);
            let part = match parts.iter_mut().position(|p| p.key == key) {
                Some(at) => &mut parts[at],
                None => {
                    parts.push(KeyPart {
                        key,
                        score: 0,
                        events: 0,
                        members: smallvec::SmallVec::new(),
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
            part.members.push(index);
            part.names.push(self.name(event));
            part.through_import &= facts.through_import;
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
        parts
    }

    /// The key of an event at `--by entry-point` or `app-frame`: its frame,
    /// or, inside a lazy import, the importer's with the module named.
    /// `own_module` is set for an outermost `import` event.
    fn event_frame_key(
        &self,
        facts: &StackFacts,
        own_module: Option<&str>,
        outer_imports: &[(String, String)],
    ) -> String {
        if let Some(module) = own_module {
            return format!("{} (import {module})", self.frame_key(facts));
        }
        let Some(import) = &facts.import else { return self.frame_key(facts) };
        let hint = import.module_hint.as_deref();
        if import.has_importer {
            let key = self.frame_key(facts);
            let module = match hint {
                // The outermost import it is part of (keyed where that one
                // was: see `io_parts`), or its own outermost module.
                Some(hint) => match outer_imports.iter().find(|(_, m)| related_modules(m, hint)) {
                    Some((outer_key, module)) => return format!("{outer_key} (import {module})"),
                    None => hint,
                },
                // Loading the outermost module itself (its `.pyc`, its finder).
                None => outer_imports.iter().find(|(k, _)| *k == key).map_or("?", |(_, m)| m.as_str()),
            };
            return format!("{key} (import {module})");
        }
        // Cut at the trace depth inside the import: the slice's outermost
        // import it belongs to.
        let matching = hint.and_then(|hint| outer_imports.iter().find(|(_, m)| related_modules(m, hint)));
        match matching.or(outer_imports.first()) {
            Some((key, module)) => format!("{key} (import {module})"),
            None => format!("<import of {}, importer not recorded>", hint.unwrap_or("?")),
        }
    }

    /// How a sampled slice's time splits, by key.
    fn sample_parts(&mut self, signature: &SampleSignature) -> Vec<SamplePart> {
        let mut parts: Vec<SamplePart> = Vec::new();
        for share in &signature.samples {
            let key = self.sample_key(share.stack, signature.extra);
            let part = match parts.iter_mut().find(|p| p.key == key) {
                Some(part) => part,
                None => {
                    parts.push(SamplePart { key, samples: 0, share: 0, stack: share.stack, native: false });
                    parts.last_mut().expect("just pushed")
                }
            };
            part.samples += u64::from(share.count);
            part.share += u64::from(share.share);
            part.native |= share.native;
        }
        parts
    }

    /// Where `ns` of a slot's time goes, by key.
    fn slot_keys(&mut self, slot: &Slot, ns: u64) -> Vec<(String, u64)> {
        match slot {
            Slot::Io(signature) => {
                let parts = self.io_parts(signature);
                if parts.is_empty() {
                    return vec![(self.string(signature.what), ns)];
                }
                let weights: Vec<u64> = parts.iter().map(|p| p.events).collect();
                parts.into_iter().map(|p| p.key).zip(apportion(ns, &weights)).collect()
            }
            Slot::Sampled(signature) => {
                let parts = self.sample_parts(signature);
                let weights: Vec<u64> = parts.iter().map(|p| p.share).collect();
                parts.into_iter().map(|p| p.key).zip(apportion(ns, &weights)).collect()
            }
            Slot::Ran(what) => vec![(self.string(*what), ns)],
            Slot::Other => vec![("<other>".to_owned(), ns)],
        }
    }
}

/// The report's keys of one trace's events and samples, slice by slice,
/// with no `--ignore` or `--app-root`: what `export` writes as their
/// `entry_point` (see [`crate::tables`]).
pub struct SliceKeys<'a> {
    keyer: Keyer<'a>,
}

impl<'a> SliceKeys<'a> {
    /// `aggregate` holds the trace's dictionary (the definitions read so far).
    pub fn new(
        header: &'a TraceHeader,
        aggregate: &'a FileAggregate,
        by: &'a GroupBy,
        paths: &'a PathContext,
    ) -> SliceKeys<'a> {
        let options = ResolveOptions {
            by,
            app_roots: &[],
            ignore: None,
            exceeded_only: false,
            weights: None,
            by_identity: false,
        };
        SliceKeys { keyer: Keyer::new(header, aggregate, options, paths) }
    }

    /// The key of each of a slice's events, in the slice's order, as the
    /// report keys them: a slice's lazy imports need all of its events.
    pub fn event_keys(&mut self, events: &[aiocop_trace::records::EventRecord], what: StringId) -> Vec<String> {
        // The signature's order: by (event, stack), as the aggregate sorts them.
        let mut order: Vec<usize> = (0..events.len()).collect();
        order.sort_by_key(|&i| (events[i].event, events[i].stack));
        let is_import = |i: usize| self.keyer.name(events[i].event) == "import";
        let imports = order.iter().filter(|&&i| is_import(i)).map(|&i| events[i].args).collect();
        let signature = IoSignature {
            exceeded: false,
            extra: None,
            what,
            events: order.iter().map(|&i| (events[i].event, events[i].stack)).collect(),
            imports,
        };
        let mut keys = vec![String::new(); events.len()];
        for part in self.keyer.io_parts(&signature) {
            for &at in &part.members {
                keys[order[at]].clone_from(&part.key);
            }
        }
        keys
    }

    /// The key of a CPU sample's stack, as the report's Loop time keys it.
    pub fn sample_key(&mut self, stack: StackId) -> String {
        self.keyer.sample_key(stack, None)
    }
}

impl Analysis {
    /// Resolves `aggregate`, the whole of file number `file`, and adds it.
    pub fn add_file(&mut self, file: usize, header: &TraceHeader, aggregate: &FileAggregate, options: ResolveOptions) {
        let used_stacks = aggregate.io.keys().flat_map(|s| s.events.iter().map(|&(_, stack)| stack));
        // Format 1.1 headers add the process's sys.path; 1.0 has none.
        let sys_path = &header.process.sys_path;
        let paths =
            PathContext::new(&aggregate.dictionary, used_stacks.chain(aggregate.cpu.keys().map(|s| s.stack)), sys_path);
        let mut keyer = Keyer::new(header, aggregate, options, &paths);
        let mut loop_groups: FxHashMap<String, LoopGroup> = FxHashMap::default();
        let mut add_loop = |key: String, group: LoopGroup| loop_groups.entry(key).or_default().add(group);
        let mut long_attributed_ns: u64 = 0;

        for (signature, stats) in &aggregate.io {
            let parts = keyer.io_parts(signature);
            let busy_ns = stats.durations.total_ns();
            if parts.is_empty() {
                // Every event is ignored (known and accepted): the time goes to what ran.
                let group = LoopGroup { busy_ns, slices: stats.slices, via: via::WHAT_RAN, ..LoopGroup::default() };
                add_loop(keyer.string(signature.what), group);
                continue;
            }
            long_attributed_ns = long_attributed_ns.saturating_add(stats.long_ns);
            let weights: Vec<u64> = parts.iter().map(|p| p.events).collect();
            for (part, part_ns) in parts.iter().zip(apportion(busy_ns, &weights)) {
                let (_, stack) = signature.events[part.heaviest];
                let trace = keyer.stacks.facts(stack).trace.clone();
                let group = LoopGroup {
                    busy_ns: part_ns,
                    io_ns: part_ns,
                    slices: stats.slices,
                    samples: 0,
                    via: via::EVENTS,
                    example: Some((part_ns, file, stats.example_start_ns, trace)),
                };
                add_loop(part.key.clone(), group);
            }
            self.totals.blocking_slices += stats.slices;
            self.totals.events += parts.iter().map(|p| p.events).sum::<u64>() * stats.slices;
            if options.exceeded_only && !signature.exceeded {
                continue;
            }
            for part in parts {
                let example = example(file, signature, stats, &part, &mut keyer);
                self.add_group(part, signature, stats, example);
            }
        }

        for (signature, (stats, long_ns)) in &aggregate.loop_time.sampled {
            long_attributed_ns = long_attributed_ns.saturating_add(*long_ns);
            let parts = keyer.sample_parts(signature);
            let weights: Vec<u64> = parts.iter().map(|p| p.share).collect();
            for (part, part_ns) in parts.into_iter().zip(apportion(stats.busy_ns, &weights)) {
                let trace = keyer.stacks.facts(part.stack).trace.clone();
                let group = LoopGroup {
                    busy_ns: part_ns,
                    io_ns: 0,
                    slices: stats.slices,
                    samples: part.samples * stats.slices,
                    via: if part.native { via::SAMPLES | via::NATIVE } else { via::SAMPLES },
                    example: Some((part_ns, file, stats.first_start_ns, trace)),
                };
                add_loop(part.key, group);
            }
        }
        for (what, stats) in aggregate.loop_time.ran() {
            let group =
                LoopGroup { busy_ns: stats.busy_ns, slices: stats.slices, via: via::WHAT_RAN, ..LoopGroup::default() };
            add_loop(keyer.string(what), group);
        }
        for (key, group) in loop_groups {
            self.loop_groups.entry(key).or_default().add(group);
        }

        for (signature, stats) in &aggregate.cpu {
            let CpuSignature { stack, extra } = signature;
            let key = if *stack == NO_STACK && !options.by.is_slice_key() {
                "<no samples>".to_owned()
            } else {
                keyer.sample_key(*stack, *extra)
            };
            let trace =
                if *stack == NO_STACK { "<no samples>".to_owned() } else { keyer.stacks.facts(*stack).trace.clone() };
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

        for run in file_stalls(aggregate.runs.clone()) {
            let mut top: Vec<(String, u64)> = Vec::new();
            for (slot, ns) in run.time_by_slot() {
                for (key, part_ns) in keyer.slot_keys(slot, ns) {
                    match top.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, total)) => *total += part_ns,
                        None => top.push((key, part_ns)),
                    }
                }
            }
            top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            self.stalls.push(Stall {
                file,
                thread: run.thread,
                start_ns: run.start_ns,
                duration_ns: run.duration_ns(),
                slices: run.slices,
                top,
            });
        }

        let (counts, totals) = (&aggregate.counts, &mut self.totals);
        totals.traces += 1;
        totals.slices += counts.slices;
        totals.exceeded += counts.exceeded;
        totals.dropped_slices += counts.dropped_slices;
        totals.dropped_events += counts.dropped_events;
        totals.allowed_events += counts.allowed.events;
        for (&entry, &count) in &counts.allowed.by_entry {
            let entry = aggregate.dictionary.string(entry).unwrap_or("?");
            *totals.allowed_by.entry(entry.to_owned()).or_default() += count;
        }
        let loop_totals = &mut self.loop_totals;
        loop_totals.busy_ns = loop_totals.busy_ns.saturating_add(counts.busy_ns);
        loop_totals.long_ns = loop_totals.long_ns.saturating_add(counts.long_ns);
        loop_totals.long_attributed_ns = loop_totals.long_attributed_ns.saturating_add(long_attributed_ns);
        loop_totals.samples += counts.samples;
        let recorded_without_sampling = header.sampling.after_ns == 0;
        loop_totals.traces_without_samples += u64::from(counts.samples == 0 && recorded_without_sampling);
        loop_totals.traces_with_guessed_stalls += u64::from(aggregate.runs.iter().any(ChunkRuns::has_guessed_runs));
        loop_totals.traces_with_untimed_samples += u64::from(counts.samples > counts.timed_samples);
        loop_totals.traces_with_wall_clock_native += u64::from(counts.timed_samples > counts.cpu_timed_samples);
        let mut series = Vec::new();
        for &(bucket, ns) in &counts.busy_series {
            add_at(&mut series, bucket as usize, ns);
        }
        self.busy_series_ns.push((file, series));
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
        for (key, theirs) in other.loop_groups {
            self.loop_groups.entry(key).or_default().add(theirs);
        }
        let (mine, theirs) = (&mut self.loop_totals, other.loop_totals);
        mine.busy_ns = mine.busy_ns.saturating_add(theirs.busy_ns);
        mine.long_ns = mine.long_ns.saturating_add(theirs.long_ns);
        mine.long_attributed_ns = mine.long_attributed_ns.saturating_add(theirs.long_attributed_ns);
        mine.samples += theirs.samples;
        mine.traces_without_samples += theirs.traces_without_samples;
        mine.traces_with_guessed_stalls += theirs.traces_with_guessed_stalls;
        mine.traces_with_untimed_samples += theirs.traces_with_untimed_samples;
        mine.traces_with_wall_clock_native += theirs.traces_with_wall_clock_native;
        self.stalls.extend(other.stalls);
        let (mine, theirs) = (&mut self.totals, other.totals);
        mine.traces += theirs.traces;
        mine.slices += theirs.slices;
        mine.blocking_slices += theirs.blocking_slices;
        mine.exceeded += theirs.exceeded;
        mine.cpu_blocking += theirs.cpu_blocking;
        mine.events += theirs.events;
        mine.dropped_slices += theirs.dropped_slices;
        mine.dropped_events += theirs.dropped_events;
        mine.allowed_events += theirs.allowed_events;
        for (entry, count) in theirs.allowed_by {
            *mine.allowed_by.entry(entry).or_default() += count;
        }
        mine.duration_ns = mine.duration_ns.saturating_add(theirs.duration_ns);
        self.busy_series_ns.extend(other.busy_series_ns);
    }
}

/// Adds `ns` to `series[index]`, growing it as needed.
fn add_at(series: &mut Vec<u64>, index: usize, ns: u64) {
    if series.len() <= index {
        series.resize(index + 1, 0);
    }
    series[index] += ns;
}

/// How a report shows `key`, a key by identity: the frame with its path and
/// line, and what the key adds to the frame (a lazy import's module).
fn shown_key(by: &GroupBy, facts: &StackFacts, key: &str) -> String {
    let shown = by.stack_key(facts, false);
    match key.strip_prefix(by.stack_key(facts, true)) {
        Some(added) => format!("{shown}{added}"),
        None => key.to_owned(),
    }
}

/// The longest, then the earliest.
fn better_cpu_example(a: &(u64, usize, u64, String), b: &(u64, usize, u64, String)) -> bool {
    (std::cmp::Reverse(a.0), a.1, a.2, &a.3) < (std::cmp::Reverse(b.0), b.1, b.2, &b.3)
}

fn example(file: usize, signature: &IoSignature, stats: &IoStats, part: &KeyPart, keyer: &mut Keyer) -> Example {
    let (event, stack) = signature.events[part.heaviest];
    let args = stats.example_args.get(part.heaviest).map_or_else(String::new, |&id| keyer.string(id));
    Example {
        slice_score: part.score,
        file,
        start_ns: stats.example_start_ns,
        trace: keyer.stacks.facts(stack).trace.clone(),
        event: event_text(&keyer.name(event), &args),
    }
}

/// An example event as the report shows it: `name(args)`, an `import`
/// event with its module and file only. Its audit arguments go on with
/// `sys.path`, `sys.meta_path` and `sys.path_hooks`, the interpreter's
/// state, not the call's: each starts with `[`.
fn event_text(name: &str, args: &str) -> String {
    let args = match name {
        "import" => args.find(", [").map_or(args, |state| &args[..state]),
        _ => args,
    };
    format!("{name}({args})")
}

/// The string id of `key` among a chunk's definitions, for `--by context:KEY`.
pub fn find_string(chunk_strings: &[(StringId, String)], key: &str) -> Option<StringId> {
    chunk_strings.iter().find(|(_, text)| text == key).map(|(id, _)| *id)
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
        aggregate.add_chunk(&chunk, &ChunkOptions { extra: by.extra(Some(9)), ..ChunkOptions::default() });
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
    fn only_traces_recorded_without_sampling_miss_samples() {
        let without_samples = |header: &TraceHeader| {
            let mut aggregate = FileAggregate::default();
            aggregate.add_chunk(&definitions(), &ChunkOptions::default());
            aggregate.add_chunk(&workload(), &ChunkOptions::default());
            let mut analysis = Analysis::default();
            let options = ResolveOptions {
                by: &GroupBy::EntryPoint,
                app_roots: &[],
                ignore: None,
                exceeded_only: false,
                weights: None,
                by_identity: false,
            };
            analysis.add_file(0, header, &aggregate, options);
            analysis.loop_totals.traces_without_samples
        };
        // No sample in either: one was recorded without sampling, the
        // other sampled but had no slice long enough (a gunicorn master).
        assert_eq!(without_samples(&header()), 1);
        let mut sampled = header();
        sampled.sampling = aiocop_trace::records::Appended(aiocop_trace::records::SamplingInfo {
            after_ns: 2_000_000,
            interval_ns: 1_000_000,
        });
        assert_eq!(without_samples(&sampled), 0);
    }

    #[test]
    fn import_examples_leave_out_the_interpreters_state() {
        let args =
            "numpy, None, ['/srv/app', '/usr/lib/python3.12'], [<class '_frozen_importlib.BuiltinImporter'>, <cl, []";
        assert_eq!(event_text("import", args), "import(numpy, None)");
        assert_eq!(event_text("import", "numpy"), "import(numpy)");
        // Other events keep their lists.
        assert_eq!(
            event_text("subprocess.Popen", "ls, ['ls', '-l'], None"),
            "subprocess.Popen(ls, ['ls', '-l'], None)"
        );
    }

    #[test]
    fn unknown_event_indexes_weigh_as_moderate() {
        let chunk = Chunk { slices: vec![slice(1, false, vec![event(40, 0)])], ..Chunk::default() };
        let analysis = analyse(chunk, &GroupBy::Event, &[], false);
        assert_eq!(summary(&analysis), [("<event 40>".to_owned(), 1, 1, 10, SeverityLevel::Medium, 0)]);
    }
}
