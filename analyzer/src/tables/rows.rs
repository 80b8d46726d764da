//! Rows of the slices, events and samples tables, gathered from a trace's
//! slices into Arrow builders and handed over as record batches, one per
//! chunk or so: what is held is a batch, never a trace.

use super::schema::{context_builder, string_list_builder, timestamp_type, Table};
use crate::group::NO_STACK;
use crate::identity::{frame_facts, frame_identity, PathContext};
use crate::resolve::SliceKeys;
use crate::signature::sample_cuts;
use aiocop_trace::records::{SampleTime, SliceRecord, StackId, StringId, TraceHeader};
use aiocop_trace::Dictionary;
use arrow_array::builder::{
    BooleanBuilder, Int64Builder, ListBuilder, MapBuilder, StringBuilder, TimestampNanosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use rustc_hash::FxHashMap;
use std::sync::Arc;

/// The context key whose value is the `route` column (issue 22's routes
/// travel as this context value).
pub const ROUTE_KEY: &str = "route";

/// What a trace's rows share: its id, its header and what its ids mean.
pub struct TraceContext<'a> {
    pub trace_id: &'a str,
    pub header: &'a TraceHeader,
    pub dictionary: &'a Dictionary,
}

impl TraceContext<'_> {
    pub fn string(&self, id: StringId) -> String {
        self.dictionary.string(id).map_or_else(|| format!("<unknown string {id}>"), str::to_owned)
    }

    fn event_name(&self, event: u16) -> (String, i64) {
        match self.header.event_table.get(usize::from(event)) {
            Some(spec) => (spec.name.clone(), spec.weight),
            None => (format!("<event {event}>"), 0),
        }
    }
}

/// A stack's frames as its rows show them.
pub struct StackRow {
    /// `path:line:function`, innermost first.
    pub frames: Vec<String>,
    /// `module:qualname` (or `relative/path.py:function` without a name).
    pub identities: Vec<String>,
}

/// Each stack of a trace, resolved once. Stacks are defined before the
/// records that use them, so a stack resolved at its first use is final.
#[derive(Default)]
pub struct Stacks {
    rows: FxHashMap<StackId, Arc<StackRow>>,
}

impl Stacks {
    pub fn get(&mut self, stack: StackId, dictionary: &Dictionary, paths: &PathContext) -> Arc<StackRow> {
        self.rows.entry(stack).or_insert_with(|| Arc::new(resolve(stack, dictionary, paths))).clone()
    }
}

fn resolve(stack: StackId, dictionary: &Dictionary, paths: &PathContext) -> StackRow {
    let ids = dictionary.stack(stack).unwrap_or(&[]);
    let frames = ids.iter().map(|&frame| dictionary.format_frame(frame)).collect();
    let identities = ids
        .iter()
        .map(|&frame| {
            frame_facts(dictionary, frame)
                .map_or_else(|| dictionary.format_frame(frame), |facts| frame_identity(&facts, paths))
        })
        .collect();
    StackRow { frames, identities }
}

fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Rows of the three per-slice tables, for the slices added since the last take.
pub struct SliceRows {
    slices: SliceColumns,
    events: EventColumns,
    samples: SampleColumns,
    /// The string id of the context key `route` in this trace, once defined.
    route_key: Option<StringId>,
}

struct SliceColumns {
    rows: usize,
    trace_id: StringBuilder,
    slice_index: Int64Builder,
    pid: Int64Builder,
    thread: Int64Builder,
    start: TimestampNanosecondBuilder,
    start_offset_ns: Int64Builder,
    duration_ns: Int64Builder,
    what: StringBuilder,
    task: StringBuilder,
    route: StringBuilder,
    context: MapBuilder<StringBuilder, StringBuilder>,
    exceeded: BooleanBuilder,
    score: Int64Builder,
    event_count: Int64Builder,
    dropped_events: Int64Builder,
    sample_count: Int64Builder,
    ready_wait_ns: Int64Builder,
}

struct StackColumns {
    stack_id: Int64Builder,
    entry_point: StringBuilder,
    frames: ListBuilder<StringBuilder>,
    identities: ListBuilder<StringBuilder>,
}

struct EventColumns {
    rows: usize,
    trace_id: StringBuilder,
    slice_index: Int64Builder,
    event_index: Int64Builder,
    event: StringBuilder,
    event_id: Int64Builder,
    weight: Int64Builder,
    args: StringBuilder,
    offset_ns: Int64Builder,
    time: TimestampNanosecondBuilder,
    stack: StackColumns,
}

struct SampleColumns {
    rows: usize,
    trace_id: StringBuilder,
    slice_index: Int64Builder,
    sample_index: Int64Builder,
    stack: StackColumns,
    weight_ns: Int64Builder,
    share: Int64Builder,
    native: BooleanBuilder,
}

fn timestamps() -> TimestampNanosecondBuilder {
    TimestampNanosecondBuilder::new().with_data_type(timestamp_type())
}

impl StackColumns {
    fn new() -> Self {
        StackColumns {
            stack_id: Int64Builder::new(),
            entry_point: StringBuilder::new(),
            frames: string_list_builder(),
            identities: string_list_builder(),
        }
    }

    /// A stack, keyed by the report as `entry_point`.
    fn push(&mut self, stack: StackId, row: &StackRow, entry_point: &str) {
        self.stack_id.append_option((stack != NO_STACK).then_some(i64::from(stack)));
        self.entry_point.append_value(entry_point);
        self.frames.append_value(row.frames.iter().map(Some));
        self.identities.append_value(row.identities.iter().map(Some));
    }

    fn finish(&mut self) -> [ArrayRef; 4] {
        [
            Arc::new(self.stack_id.finish()),
            Arc::new(self.entry_point.finish()),
            Arc::new(self.frames.finish()),
            Arc::new(self.identities.finish()),
        ]
    }
}

impl Default for SliceRows {
    fn default() -> Self {
        SliceRows {
            slices: SliceColumns {
                rows: 0,
                trace_id: StringBuilder::new(),
                slice_index: Int64Builder::new(),
                pid: Int64Builder::new(),
                thread: Int64Builder::new(),
                start: timestamps(),
                start_offset_ns: Int64Builder::new(),
                duration_ns: Int64Builder::new(),
                what: StringBuilder::new(),
                task: StringBuilder::new(),
                route: StringBuilder::new(),
                context: context_builder(),
                exceeded: BooleanBuilder::new(),
                score: Int64Builder::new(),
                event_count: Int64Builder::new(),
                dropped_events: Int64Builder::new(),
                sample_count: Int64Builder::new(),
                ready_wait_ns: Int64Builder::new(),
            },
            events: EventColumns {
                rows: 0,
                trace_id: StringBuilder::new(),
                slice_index: Int64Builder::new(),
                event_index: Int64Builder::new(),
                event: StringBuilder::new(),
                event_id: Int64Builder::new(),
                weight: Int64Builder::new(),
                args: StringBuilder::new(),
                offset_ns: Int64Builder::new(),
                time: timestamps(),
                stack: StackColumns::new(),
            },
            samples: SampleColumns {
                rows: 0,
                trace_id: StringBuilder::new(),
                slice_index: Int64Builder::new(),
                sample_index: Int64Builder::new(),
                stack: StackColumns::new(),
                weight_ns: Int64Builder::new(),
                share: Int64Builder::new(),
                native: BooleanBuilder::new(),
            },
            route_key: None,
        }
    }
}

impl SliceRows {
    /// Rows held, of the three tables together.
    pub fn rows_held(&self) -> usize {
        self.slices.rows + self.events.rows + self.samples.rows
    }

    /// Adds slice number `index` of the trace, which started `start_ns`
    /// after the trace's start, with its events and samples, keyed by `keys`;
    /// each sample weighs the time it stands for (`sample_times`, format 1.3;
    /// an equal share of the slice without them) and has its share and
    /// `native` as the report counts them (`sample_cpu`, format 1.4: the
    /// loop thread's CPU time over each one's wait); `ready_wait_ns` its
    /// ready-wait when known (format 1.4). Returns the slice's route, if it
    /// has one.
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        trace: &TraceContext,
        stacks: &mut Stacks,
        keys: &mut SliceKeys,
        paths: &PathContext,
        index: u64,
        start_ns: u64,
        slice: &SliceRecord,
        (sample_times, sample_cpu): (&[SampleTime], &[u64]),
        ready_wait_ns: Option<u64>,
    ) -> Option<StringId> {
        let start_unix_ns = int(trace.header.start_unix_ns.saturating_add(start_ns));
        let s = &mut self.slices;
        s.rows += 1;
        s.trace_id.append_value(trace.trace_id);
        s.slice_index.append_value(int(index));
        s.pid.append_value(i64::from(trace.header.pid));
        s.thread.append_value(i64::from(slice.thread));
        s.start.append_value(start_unix_ns);
        s.start_offset_ns.append_value(int(start_ns));
        s.duration_ns.append_value(int(slice.duration_ns));
        s.what.append_value(trace.string(slice.what));
        s.task.append_option(slice.task.map(|task| trace.string(task)));
        if self.route_key.is_none() && !slice.context.is_empty() {
            self.route_key =
                slice.context.iter().map(|&(key, _)| key).find(|&key| trace.dictionary.string(key) == Some(ROUTE_KEY));
        }
        let route = slice.context.iter().find(|&&(key, _)| Some(key) == self.route_key).map(|&(_, value)| value);
        s.route.append_option(route.map(|value| trace.string(value)));
        if trace.header.records_context {
            for &(key, value) in &slice.context {
                s.context.keys().append_value(trace.string(key));
                s.context.values().append_value(trace.string(value));
            }
            s.context.append(true).expect("keys and values are appended in pairs");
        } else {
            s.context.append(false).expect("no keys or values are appended");
        }
        s.exceeded.append_value(slice.exceeded);
        s.score.append_value(slice.score);
        s.event_count.append_value(slice.events.len() as i64);
        s.dropped_events.append_value(i64::from(slice.dropped_events));
        s.sample_count.append_value(slice.samples.len() as i64);
        s.ready_wait_ns.append_option(ready_wait_ns.map(int));

        let event_keys = if slice.events.is_empty() { Vec::new() } else { keys.event_keys(&slice.events, slice.what) };
        for (event_index, (event, key)) in slice.events.iter().zip(&event_keys).enumerate() {
            let e = &mut self.events;
            let (name, weight) = trace.event_name(event.event);
            e.rows += 1;
            e.trace_id.append_value(trace.trace_id);
            e.slice_index.append_value(int(index));
            e.event_index.append_value(event_index as i64);
            e.event.append_value(name);
            e.event_id.append_value(i64::from(event.event));
            e.weight.append_value(weight);
            e.args.append_value(trace.string(event.args));
            e.offset_ns.append_value(int(event.offset_ns));
            e.time.append_value(start_unix_ns.saturating_add(int(event.offset_ns)));
            e.stack.push(event.stack, &stacks.get(event.stack, trace.dictionary, paths), key);
        }
        let weights = aiocop_trace::sample_weights(slice.duration_ns, slice.samples.len(), sample_times);
        let interval_ns = trace.header.sampling.interval_ns;
        let cuts = sample_cuts(slice.duration_ns, slice.samples.len(), sample_times, sample_cpu, interval_ns);
        for (sample_index, ((&stack, weight_ns), cut)) in slice.samples.iter().zip(weights).zip(cuts).enumerate() {
            let p = &mut self.samples;
            p.rows += 1;
            p.trace_id.append_value(trace.trace_id);
            p.slice_index.append_value(int(index));
            p.sample_index.append_value(sample_index as i64);
            p.stack.push(stack, &stacks.get(stack, trace.dictionary, paths), &keys.sample_key(stack));
            p.weight_ns.append_value(int(weight_ns));
            p.share.append_value(i64::from(cut.share));
            p.native.append_value(cut.native);
        }
        route
    }

    /// The rows held as one batch per table (empty ones too), and none held after.
    pub fn take(&mut self) -> [(Table, RecordBatch); 3] {
        let s = &mut self.slices;
        s.rows = 0;
        let slices: Vec<ArrayRef> = vec![
            Arc::new(s.trace_id.finish()),
            Arc::new(s.slice_index.finish()),
            Arc::new(s.pid.finish()),
            Arc::new(s.thread.finish()),
            Arc::new(s.start.finish()),
            Arc::new(s.start_offset_ns.finish()),
            Arc::new(s.duration_ns.finish()),
            Arc::new(s.what.finish()),
            Arc::new(s.task.finish()),
            Arc::new(s.route.finish()),
            Arc::new(s.context.finish()),
            Arc::new(s.exceeded.finish()),
            Arc::new(s.score.finish()),
            Arc::new(s.event_count.finish()),
            Arc::new(s.dropped_events.finish()),
            Arc::new(s.sample_count.finish()),
            Arc::new(s.ready_wait_ns.finish()),
        ];
        let e = &mut self.events;
        e.rows = 0;
        let mut events: Vec<ArrayRef> = vec![
            Arc::new(e.trace_id.finish()),
            Arc::new(e.slice_index.finish()),
            Arc::new(e.event_index.finish()),
            Arc::new(e.event.finish()),
            Arc::new(e.event_id.finish()),
            Arc::new(e.weight.finish()),
            Arc::new(e.args.finish()),
            Arc::new(e.offset_ns.finish()),
            Arc::new(e.time.finish()),
        ];
        events.extend(e.stack.finish());
        let p = &mut self.samples;
        p.rows = 0;
        let mut samples: Vec<ArrayRef> =
            vec![Arc::new(p.trace_id.finish()), Arc::new(p.slice_index.finish()), Arc::new(p.sample_index.finish())];
        samples.extend(p.stack.finish());
        samples.extend([
            Arc::new(p.weight_ns.finish()) as ArrayRef,
            Arc::new(p.share.finish()),
            Arc::new(p.native.finish()),
        ]);
        [(Table::Slices, slices), (Table::Events, events), (Table::Samples, samples)].map(|(table, columns)| {
            let batch = RecordBatch::try_new(table.schema(), columns).expect("the builders follow the table's schema");
            (table, batch)
        })
    }
}
