//! Rows of the `tasks` table (schema 1.2): one per task a trace of format
//! 1.4 or later saw (any of its slices), with its times as analyzer/src/tasks.rs
//! splits them for the report's Tasks table: loop (its slices), ready-wait
//! (their known ready-waits) and waiting (the rest of its wall time).
//!
//! A task is held from its first slice to its end (or the trace's end):
//! what is held is the tasks running at once, never the trace's.

use super::rows::TraceContext;
use super::schema::{timestamp_type, Table};
use aiocop_trace::records::{StringId, TaskCreated, TASK_CANCELLED, TASK_DONE, TASK_RAISED};
use arrow_array::builder::{Int64Builder, StringBuilder, TimestampNanosecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use rustc_hash::FxHashMap;
use std::sync::Arc;

/// What a task has so far, in string ids and nanoseconds since the trace's start.
#[derive(Clone, Copy, Debug)]
struct OpenTask {
    coroutine: StringId,
    parent: Option<StringId>,
    route: Option<StringId>,
    created_ns: Option<u64>,
    first_step_ns: Option<u64>,
    loop_ns: u64,
    ready_wait_ns: u64,
    slice_count: u64,
}

/// One slice of a task, as the table needs it.
pub struct TaskSlice {
    pub task: StringId,
    pub what: StringId,
    pub route: Option<StringId>,
    /// Since the trace's start.
    pub start_ns: u64,
    pub duration_ns: u64,
    /// Its ready-wait, when known.
    pub ready_wait_ns: Option<u64>,
}

/// Tasks being followed through a trace, and the rows of those ended.
pub struct TaskRows {
    open: FxHashMap<StringId, OpenTask>,
    rows: usize,
    trace_id: StringBuilder,
    task: StringBuilder,
    coroutine: StringBuilder,
    parent: StringBuilder,
    route: StringBuilder,
    created: TimestampNanosecondBuilder,
    created_offset_ns: Int64Builder,
    first_step: TimestampNanosecondBuilder,
    first_step_offset_ns: Int64Builder,
    ended: TimestampNanosecondBuilder,
    ended_offset_ns: Int64Builder,
    outcome: StringBuilder,
    wall_ns: Int64Builder,
    loop_ns: Int64Builder,
    ready_wait_ns: Int64Builder,
    waiting_ns: Int64Builder,
    slice_count: Int64Builder,
}

fn timestamps() -> TimestampNanosecondBuilder {
    TimestampNanosecondBuilder::new().with_data_type(timestamp_type())
}

fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn outcome_name(outcome: u8) -> &'static str {
    match outcome {
        TASK_DONE => "done",
        TASK_CANCELLED => "cancelled",
        TASK_RAISED => "raised",
        _ => "unknown",
    }
}

impl Default for TaskRows {
    fn default() -> Self {
        TaskRows {
            open: FxHashMap::default(),
            rows: 0,
            trace_id: StringBuilder::new(),
            task: StringBuilder::new(),
            coroutine: StringBuilder::new(),
            parent: StringBuilder::new(),
            route: StringBuilder::new(),
            created: timestamps(),
            created_offset_ns: Int64Builder::new(),
            first_step: timestamps(),
            first_step_offset_ns: Int64Builder::new(),
            ended: timestamps(),
            ended_offset_ns: Int64Builder::new(),
            outcome: StringBuilder::new(),
            wall_ns: Int64Builder::new(),
            loop_ns: Int64Builder::new(),
            ready_wait_ns: Int64Builder::new(),
            waiting_ns: Int64Builder::new(),
            slice_count: Int64Builder::new(),
        }
    }
}

impl TaskRows {
    /// Rows held, of tasks ended.
    pub fn rows_held(&self) -> usize {
        self.rows
    }

    /// Adds a task's slice: its first step if `created`, its last if `ended`
    /// (a `TASK_*` outcome). A task is keyed by the coroutine that ran at
    /// its first slice seen, as the report keys it.
    pub fn push(&mut self, trace: &TraceContext, slice: &TaskSlice, created: Option<&TaskCreated>, ended: Option<u8>) {
        let open = self.open.entry(slice.task).or_insert(OpenTask {
            coroutine: slice.what,
            parent: None,
            route: None,
            created_ns: None,
            first_step_ns: None,
            loop_ns: 0,
            ready_wait_ns: 0,
            slice_count: 0,
        });
        if let Some(created) = created {
            open.created_ns = Some(slice.start_ns.saturating_sub(created.created_before_ns));
            open.first_step_ns = Some(slice.start_ns);
            open.parent = created.parent;
        }
        open.route = open.route.or(slice.route);
        open.loop_ns = open.loop_ns.saturating_add(slice.duration_ns);
        open.ready_wait_ns = open.ready_wait_ns.saturating_add(slice.ready_wait_ns.unwrap_or(0));
        open.slice_count += 1;
        if let Some(outcome) = ended {
            let task = self.open.remove(&slice.task).expect("inserted above");
            self.append(trace, slice.task, &task, Some((slice.start_ns.saturating_add(slice.duration_ns), outcome)));
        }
    }

    /// Rows for the tasks not ended when the trace ends.
    pub fn finish_open(&mut self, trace: &TraceContext) {
        let mut open: Vec<(StringId, OpenTask)> = std::mem::take(&mut self.open).into_iter().collect();
        open.sort_by_key(|(id, _)| *id);
        for (id, task) in open {
            self.append(trace, id, &task, None);
        }
    }

    fn append(&mut self, trace: &TraceContext, id: StringId, task: &OpenTask, end: Option<(u64, u8)>) {
        let start_unix_ns = trace.header.start_unix_ns;
        let absolute = |offset_ns: u64| int(start_unix_ns.saturating_add(offset_ns));
        self.rows += 1;
        self.trace_id.append_value(trace.trace_id);
        self.task.append_value(trace.string(id));
        self.coroutine.append_value(trace.string(task.coroutine));
        self.parent.append_option(task.parent.map(|p| trace.string(p)));
        self.route.append_option(task.route.map(|r| trace.string(r)));
        self.created.append_option(task.created_ns.map(absolute));
        self.created_offset_ns.append_option(task.created_ns.map(int));
        self.first_step.append_option(task.first_step_ns.map(absolute));
        self.first_step_offset_ns.append_option(task.first_step_ns.map(int));
        self.ended.append_option(end.map(|(ns, _)| absolute(ns)));
        self.ended_offset_ns.append_option(end.map(|(ns, _)| int(ns)));
        self.outcome.append_option(end.map(|(_, outcome)| outcome_name(outcome)));
        // Wall and waiting only for a task created and ended in the trace.
        let wall_ns = task.created_ns.zip(end).map(|(created, (ended, _))| ended.saturating_sub(created));
        self.wall_ns.append_option(wall_ns.map(int));
        self.loop_ns.append_value(int(task.loop_ns));
        self.ready_wait_ns.append_value(int(task.ready_wait_ns));
        let waiting = wall_ns.map(|wall| wall.saturating_sub(task.loop_ns).saturating_sub(task.ready_wait_ns));
        self.waiting_ns.append_option(waiting.map(int));
        self.slice_count.append_value(int(task.slice_count));
    }

    /// The rows held as one batch, and none held after.
    pub fn take(&mut self) -> RecordBatch {
        self.rows = 0;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.trace_id.finish()),
            Arc::new(self.task.finish()),
            Arc::new(self.coroutine.finish()),
            Arc::new(self.parent.finish()),
            Arc::new(self.route.finish()),
            Arc::new(self.created.finish()),
            Arc::new(self.created_offset_ns.finish()),
            Arc::new(self.first_step.finish()),
            Arc::new(self.first_step_offset_ns.finish()),
            Arc::new(self.ended.finish()),
            Arc::new(self.ended_offset_ns.finish()),
            Arc::new(self.outcome.finish()),
            Arc::new(self.wall_ns.finish()),
            Arc::new(self.loop_ns.finish()),
            Arc::new(self.ready_wait_ns.finish()),
            Arc::new(self.waiting_ns.finish()),
            Arc::new(self.slice_count.finish()),
        ];
        RecordBatch::try_new(Table::Tasks.schema(), columns).expect("the builders follow the table's schema")
    }
}
