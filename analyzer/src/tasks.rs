//! The Tasks table and loop lag: how each task's wall time splits into
//! time on the loop, time ready but waiting for the loop, and time waiting
//! for I/O or other tasks; and how long ready callbacks waited to run.
//!
//! From format 1.4's `TaskTiming` (see `aiocop_trace::records`):
//! - a task's **wall** time runs from its creation (its first step
//!   scheduled) to the end of its last step; only tasks whose creation and
//!   end are both in the trace have one;
//! - its **loop** time is the sum of its slices, its **ready-wait** the sum
//!   of their ready-waits, **waiting** the rest of the wall time;
//! - **loop lag** is every slice's ready-wait whose readiness is known
//!   (`READY_UNKNOWN` ones are left out), per trace and per second.
//!
//! A pass of its own over each file, in chunk order (a task's slices must
//! be met in the order they ran).
//!
//! Eager tasks (format 1.5): an eager task's first step ran inside its
//! creator's slice; that step's time is the task's loop time, taken from its
//! creator's (the loop's own time counts it once, in the creator's slice).
//! A task that ended in that step has no slice: it is counted and timed from
//! its record (wall = loop = the step).
//!
//! In a time window (`--since`/`--until`, from each trace's start): loop lag
//! is of the slices that start in it; a task counts when one of its slices
//! starts in it, and is timed only when it lies wholly inside: created at or
//! after `--since` and its last step started before `--until`. A task that
//! straddles an edge is counted, not timed, as one created before the
//! recording or still running at its end.

use crate::durations::Durations;
use aiocop_trace::records::{
    EagerTask, EagerTasks, SliceRecord, StringId, TaskTiming, READY_UNKNOWN, TASK_CANCELLED, TASK_RAISED,
};
use aiocop_trace::{PureSlice, SliceVisitor, TraceFile};
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::BTreeMap;

/// Tasks by coroutine (or route), and loop lag, keyed by text: mergeable
/// across files.
#[derive(Clone, Debug, Default)]
pub struct TaskTimes {
    pub groups: BTreeMap<String, TaskGroup>,
    /// Every slice's ready-wait whose readiness is known.
    pub lag: Durations,
    /// Loop lag per second of each trace (the second from its start).
    pub lag_by_second: BTreeMap<u64, Durations>,
    /// Traces read that carry task timing (format 1.4 and later).
    pub timed_traces: u64,
    pub untimed_traces: u64,
}

impl TaskTimes {
    pub fn merge(&mut self, other: TaskTimes) {
        for (key, group) in other.groups {
            self.groups.entry(key).or_default().merge(&group);
        }
        self.lag.merge(&other.lag);
        for (second, lag) in other.lag_by_second {
            self.lag_by_second.entry(second).or_default().merge(&lag);
        }
        self.timed_traces += other.timed_traces;
        self.untimed_traces += other.untimed_traces;
    }
}

/// The tasks of one coroutine (or route).
#[derive(Clone, Debug, Default)]
pub struct TaskGroup {
    /// Tasks seen (any of their slices).
    pub tasks: u64,
    /// Tasks whose creation and end are in the trace: those with a wall time.
    pub wall: Durations,
    /// Of the same tasks.
    pub loop_time: Durations,
    pub ready_wait: Durations,
    pub waiting: Durations,
    pub cancelled: u64,
    pub raised: u64,
    /// Of `tasks`, those whose first step ran eagerly inside their creator's
    /// slice, and of those, the ones that ended in it (no slice of their own).
    pub eager: u64,
    pub ended_eagerly: u64,
}

impl TaskGroup {
    fn merge(&mut self, other: &TaskGroup) {
        self.tasks += other.tasks;
        self.wall.merge(&other.wall);
        self.loop_time.merge(&other.loop_time);
        self.ready_wait.merge(&other.ready_wait);
        self.waiting.merge(&other.waiting);
        self.cancelled += other.cancelled;
        self.raised += other.raised;
        self.eager += other.eager;
        self.ended_eagerly += other.ended_eagerly;
    }
}

/// What a task has so far.
#[derive(Clone, Copy, Debug, Default)]
struct OpenTask {
    /// What ran at its first slice seen (its coroutine), or its route.
    key: StringId,
    created_ns: Option<u64>,
    /// One of its slices started in the time window.
    in_window: bool,
    loop_ns: u64,
    ready_ns: u64,
    /// Its first step ran eagerly, inside its creator's slice.
    eager: bool,
}

/// One slice, as the task pass needs it, held until the chunk's task
/// timing (after its slices) is read.
#[derive(Clone, Copy, Debug)]
struct SeenSlice {
    start_ns: u64,
    duration_ns: u64,
    what: StringId,
    task: Option<StringId>,
    route: Option<StringId>,
}

/// Slices of a chunk held until its task timing is read: twice what the
/// recorder puts in a chunk. A bigger chunk (crafted, or of another
/// writer) is left out of the task timing, so that memory stays bounded.
const MAX_SLICES_HELD: usize = 1 << 17;

/// Takes a chunk's slices; the task timing joins them after.
struct TaskVisitor {
    route_key: Option<StringId>,
    slices: Vec<SeenSlice>,
    /// The chunk had more than `MAX_SLICES_HELD` slices.
    too_many: bool,
}

impl TaskVisitor {
    #[inline]
    fn hold(&mut self, slice: SeenSlice) {
        if self.slices.len() < MAX_SLICES_HELD {
            self.slices.push(slice);
        } else {
            self.too_many = true;
        }
    }
}

impl SliceVisitor for TaskVisitor {
    #[inline]
    fn pure_slice(&mut self, start_ns: u64, slice: PureSlice) {
        let PureSlice { duration_ns, what, task, .. } = slice;
        self.hold(SeenSlice { start_ns, duration_ns, what, task, route: None });
    }

    fn slice(&mut self, start_ns: u64, slice: &SliceRecord) {
        let route = self.route_key.and_then(|key| slice.context.iter().find(|(k, _)| *k == key).map(|p| p.1));
        let SliceRecord { duration_ns, what, task, .. } = *slice;
        self.hold(SeenSlice { start_ns, duration_ns, what, task, route });
    }
}

/// A file's tasks, keyed by string ids until its end.
struct FileTasks {
    by_route: bool,
    /// The time window, from the trace's start: `[since_ns, until_ns)`.
    since_ns: u64,
    until_ns: u64,
    open: FxHashMap<StringId, OpenTask>,
    groups: FxHashMap<StringId, TaskGroup>,
    lag: Durations,
    lag_by_second: BTreeMap<u64, Durations>,
    /// The string ids that key groups: only their text is kept (a file's
    /// strings include a name per task).
    keys: FxHashSet<StringId>,
    names: FxHashMap<StringId, String>,
}

impl Default for FileTasks {
    fn default() -> FileTasks {
        FileTasks {
            by_route: false,
            since_ns: 0,
            until_ns: u64::MAX,
            open: FxHashMap::default(),
            groups: FxHashMap::default(),
            lag: Durations::default(),
            lag_by_second: BTreeMap::new(),
            keys: FxHashSet::default(),
            names: FxHashMap::default(),
        }
    }
}

impl FileTasks {
    fn in_window(&self, start_ns: u64) -> bool {
        (self.since_ns..self.until_ns).contains(&start_ns)
    }

    /// Keeps the text of the keys among a chunk's definitions.
    fn add_names(&mut self, strings: &[(StringId, String)]) {
        for (id, text) in strings {
            if self.keys.contains(id) {
                self.names.insert(*id, text.clone());
            }
        }
    }

    /// Takes a chunk's slices with its task timing and eager tasks.
    fn add_chunk(&mut self, slices: &[SeenSlice], timing: &TaskTiming, eager: &EagerTasks) {
        let mut created = timing.created.iter().peekable();
        let mut ended = timing.ended.iter().peekable();
        let mut eager_steps = eager.first_steps.iter().peekable();
        let mut ended_eagerly = eager.ended.iter().peekable();
        for (index, slice) in slices.iter().enumerate() {
            let ready = timing.ready.get(index).filter(|ready| ready.since != READY_UNKNOWN);
            let ready_ns = ready.map_or(0, |ready| ready.wait_ns);
            let in_window = self.in_window(slice.start_ns);
            if ready.is_some() && in_window {
                self.lag.record(ready_ns);
                self.lag_by_second.entry(slice.start_ns / 1_000_000_000).or_default().record(ready_ns);
            }
            // Eager steps run inside their creator's slice: they are the
            // created tasks' time, not the creator's.
            let mut eager_children_ns = 0u64;
            while let Some(child) = ended_eagerly.next_if(|e| e.slice as usize == index) {
                eager_children_ns = eager_children_ns.saturating_add(child.ran_ns);
                self.add_ended_eagerly(slice, child);
            }
            let creation = created.next_if(|c| c.slice as usize == index);
            let end = ended.next_if(|e| e.slice as usize == index);
            let eager_step_ns = eager_steps.next_if(|e| e.slice as usize == index).map(|e| e.ran_ns);
            if let (Some(ran_ns), Some(parent)) = (eager_step_ns, creation.and_then(|c| c.parent)) {
                self.take_from_creator(parent, ran_ns);
            }
            let Some(task) = slice.task else { continue };
            let key = if self.by_route { slice.route } else { Some(slice.what) };
            if let Some(key) = key {
                self.keys.insert(key);
            }
            let open = self
                .open
                .entry(task)
                .or_insert_with(|| OpenTask { key: key.unwrap_or(u32::MAX), ..Default::default() });
            if open.key == u32::MAX {
                open.key = key.unwrap_or(u32::MAX);
            }
            if let Some(creation) = creation {
                open.created_ns = Some(slice.start_ns.saturating_sub(creation.created_before_ns));
            }
            open.in_window |= in_window;
            if let Some(ran_ns) = eager_step_ns {
                open.eager = true;
                open.loop_ns = open.loop_ns.saturating_add(ran_ns);
            }
            open.loop_ns = open.loop_ns.saturating_add(slice.duration_ns.saturating_sub(eager_children_ns));
            open.ready_ns = open.ready_ns.saturating_add(ready_ns);
            if let Some(end) = end {
                let open = self.open.remove(&task).unwrap_or_default();
                // Its end counts only inside the window: one after it is not seen.
                let end = in_window.then_some((slice.start_ns + slice.duration_ns, end.outcome));
                self.close(open, end);
            }
        }
    }

    /// The eager step of a task that suspended in it ran inside a slice of
    /// its creator (`parent`), still running: that time is not the creator's.
    fn take_from_creator(&mut self, parent: StringId, ran_ns: u64) {
        if let Some(creator) = self.open.get_mut(&parent) {
            creator.loop_ns = creator.loop_ns.saturating_sub(ran_ns);
        }
    }

    /// A task that ended in its eager first step, inside `slice`: its own
    /// life, keyed by its coroutine (or its creator's route).
    fn add_ended_eagerly(&mut self, slice: &SeenSlice, task: &EagerTask) {
        let created_ns = slice.start_ns.saturating_add(task.created_offset_ns);
        let key = if self.by_route { slice.route } else { Some(task.what) };
        if let Some(key) = key {
            self.keys.insert(key);
        }
        let open = OpenTask {
            key: key.unwrap_or(u32::MAX),
            created_ns: Some(created_ns),
            in_window: self.in_window(created_ns),
            loop_ns: task.ran_ns,
            ready_ns: 0,
            eager: true,
        };
        let end = open.in_window.then_some((created_ns.saturating_add(task.ran_ns), task.outcome));
        self.close(open, end);
        if let Some(group) = self.groups.get_mut(&open.key).filter(|_| open.in_window) {
            group.ended_eagerly += 1;
        }
    }

    /// Counts a task seen in the window; with its wall time if it was
    /// created and ended in it.
    fn close(&mut self, task: OpenTask, end: Option<(u64, u8)>) {
        if !task.in_window {
            return;
        }
        let group = self.groups.entry(task.key).or_default();
        group.tasks += 1;
        group.eager += u64::from(task.eager);
        let Some((end_ns, outcome)) = end else { return };
        group.cancelled += u64::from(outcome == TASK_CANCELLED);
        group.raised += u64::from(outcome == TASK_RAISED);
        let Some(created_ns) = task.created_ns.filter(|&created_ns| created_ns >= self.since_ns) else { return };
        let wall_ns = end_ns.saturating_sub(created_ns);
        group.wall.record(wall_ns);
        group.loop_time.record(task.loop_ns);
        group.ready_wait.record(task.ready_ns);
        group.waiting.record(wall_ns.saturating_sub(task.loop_ns).saturating_sub(task.ready_ns));
    }
}

/// The task timing of one trace in `[since_ns, until_ns)` from its start
/// (see the module's doc for tasks at the window's edges); `by_route` keys
/// tasks by their route instead of their coroutine (tasks without one go
/// to `<unrouted>`). Chunks that cannot be read are left out (the main
/// read reports them).
pub fn file_tasks(trace: &TraceFile, by_route: bool, since_ns: u64, until_ns: u64) -> TaskTimes {
    let (major, minor) = trace.format_version();
    if (major, minor) < (1, 4) {
        return TaskTimes { untimed_traces: 1, ..TaskTimes::default() };
    }
    let chunks = trace.chunk_count();
    let route_key = (0..chunks)
        .filter_map(|i| {
            trace
                .read_chunk_definitions(i)
                .ok()
                .and_then(|c| crate::resolve::find_string(&c.strings, crate::keys::ROUTE_KEY))
        })
        .min();
    let mut visitor = TaskVisitor { route_key, slices: Vec::new(), too_many: false };
    let mut file = FileTasks { by_route, since_ns, until_ns, ..FileTasks::default() };
    for index in 0..chunks {
        visitor.slices.clear();
        visitor.too_many = false;
        if let Ok(chunk) = trace.visit_chunk(index, &mut visitor) {
            if !visitor.too_many {
                file.add_chunk(&visitor.slices, &chunk.task_timing, &chunk.eager_tasks);
            }
            file.add_names(&chunk.strings);
        }
    }
    for task in std::mem::take(&mut file.open).into_values() {
        file.close(task, None);
    }
    let mut times =
        TaskTimes { timed_traces: 1, lag: file.lag, lag_by_second: file.lag_by_second, ..TaskTimes::default() };
    for (id, group) in file.groups {
        let name = match id {
            u32::MAX if by_route => "<unrouted>".to_owned(),
            _ => file.names.get(&id).cloned().unwrap_or_else(|| format!("<unknown string {id}>")),
        };
        times.groups.entry(name).or_default().merge(&group);
    }
    times
}

/// One row of the Tasks table.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TaskRow {
    /// The coroutine (or route).
    pub key: String,
    /// Tasks seen.
    pub tasks: u64,
    /// Tasks created and ended in the trace: those the times below are of.
    pub timed: u64,
    pub wall_p50_ms: f64,
    pub wall_p95_ms: f64,
    /// Mean time on the loop per timed task.
    pub loop_ms: f64,
    pub ready_wait_p50_ms: f64,
    pub ready_wait_p95_ms: f64,
    /// Mean time waiting for I/O or other tasks (wall - loop - ready-wait).
    pub waiting_ms: f64,
    pub cancelled: u64,
    pub raised: u64,
    /// Of `tasks`, those whose first step ran eagerly inside their creator's
    /// slice (3.12+ eager tasks), and of those, the ones that ended there.
    pub eager: u64,
    pub ended_eagerly: u64,
}

/// The Tasks table: most total wall time first (then by name).
pub fn task_rows(times: &TaskTimes) -> Vec<TaskRow> {
    let mut rows: Vec<(u64, TaskRow)> = times
        .groups
        .iter()
        .map(|(key, group)| {
            let [wall_p50, wall_p95] = percentiles(&group.wall);
            let [ready_p50, ready_p95] = percentiles(&group.ready_wait);
            let timed = group.wall.count();
            let mean = |d: &Durations| if timed == 0 { 0.0 } else { ms(d.total_ns()) / timed as f64 };
            let row = TaskRow {
                key: key.clone(),
                tasks: group.tasks,
                timed,
                wall_p50_ms: ms(wall_p50),
                wall_p95_ms: ms(wall_p95),
                loop_ms: mean(&group.loop_time),
                ready_wait_p50_ms: ms(ready_p50),
                ready_wait_p95_ms: ms(ready_p95),
                waiting_ms: mean(&group.waiting),
                cancelled: group.cancelled,
                raised: group.raised,
                eager: group.eager,
                ended_eagerly: group.ended_eagerly,
            };
            (group.wall.total_ns(), row)
        })
        .collect();
    rows.sort_by(|(a, ra), (b, rb)| b.cmp(a).then_with(|| rb.tasks.cmp(&ra.tasks)).then_with(|| ra.key.cmp(&rb.key)));
    rows.into_iter().map(|(_, row)| row).collect()
}

/// Loop lag: the ready-waits of slices, as a distribution.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LagSummary {
    /// Slices whose readiness is known (the counts behind the percentiles).
    pub slices: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl LagSummary {
    pub fn of(lag: &Durations) -> LagSummary {
        let values = lag.percentiles_ns(&[0.5, 0.95, 0.99]);
        LagSummary {
            slices: lag.count(),
            p50_ms: ms(values[0]),
            p95_ms: ms(values[1]),
            p99_ms: ms(values[2]),
            max_ms: ms(lag.max_ns()),
        }
    }
}

/// Loop lag in one second of the traces (from each trace's start).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LagSecond {
    pub second: u64,
    #[serde(flatten)]
    pub lag: LagSummary,
}

pub fn lag_by_second(times: &TaskTimes) -> Vec<LagSecond> {
    times.lag_by_second.iter().map(|(&second, lag)| LagSecond { second, lag: LagSummary::of(lag) }).collect()
}

fn percentiles(durations: &Durations) -> [u64; 2] {
    if durations.count() == 0 {
        return [0, 0];
    }
    let values = durations.percentiles_ns(&[0.5, 0.95]);
    [values[0], values[1]]
}

/// Nanoseconds as milliseconds.
fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiocop_trace::records::{ReadyWait, TaskCreated, TaskEnded, READY_SCHEDULED, READY_TIMER, TASK_DONE};

    fn slice(start_ms: u64, duration_ms: u64, task: Option<StringId>) -> SeenSlice {
        SeenSlice { start_ns: start_ms * 1_000_000, duration_ns: duration_ms * 1_000_000, what: 7, task, route: None }
    }

    fn ready(wait_ms: u64, since: u8) -> ReadyWait {
        ReadyWait { wait_ns: wait_ms * 1_000_000, since }
    }

    #[test]
    fn a_task_that_sleeps_then_computes_splits_its_wall_time() {
        // Created at 0, first step at 1 ms (1 ms ready-wait) runs 1 ms and
        // sleeps 50 ms; due at 52, it runs at 53 for 5 ms and returns.
        let slices = [slice(1, 1, Some(3)), slice(10, 2, None), slice(53, 5, Some(3))];
        let timing = TaskTiming {
            ready: vec![ready(1, READY_SCHEDULED), ready(0, READY_UNKNOWN), ready(1, READY_TIMER)],
            created: vec![TaskCreated { slice: 0, created_before_ns: 1_000_000, parent: None }],
            ended: vec![TaskEnded { slice: 2, outcome: TASK_DONE }],
        };
        let mut file = FileTasks::default();
        file.add_chunk(&slices, &timing, &EagerTasks::default());
        let group = &file.groups[&7];
        assert_eq!((group.tasks, group.wall.count()), (1, 1));
        assert_eq!(group.wall.total_ns(), 58_000_000);
        assert_eq!(group.loop_time.total_ns(), 6_000_000);
        assert_eq!(group.ready_wait.total_ns(), 2_000_000);
        assert_eq!(group.waiting.total_ns(), 50_000_000);
        // Loop lag: the two slices whose readiness is known.
        assert_eq!((file.lag.count(), file.lag.max_ns()), (2, 1_000_000));
    }

    #[test]
    fn a_window_times_the_tasks_inside_it_and_counts_those_across_its_edges() {
        // Task 3 from 0 to 12 ms straddles --since 10 ms; task 4 lies inside
        // [10, 30) ms; task 5 starts inside and ends after --until 30 ms;
        // task 6 runs only after it.
        let slices = [
            slice(1, 1, Some(3)),
            slice(11, 1, Some(3)),
            slice(12, 2, Some(4)),
            slice(20, 1, Some(5)),
            slice(25, 1, Some(4)),
            slice(31, 1, Some(5)),
            slice(32, 1, Some(6)),
        ];
        let created = |slice, created_before_ms: u64| TaskCreated {
            slice,
            created_before_ns: created_before_ms * 1_000_000,
            parent: None,
        };
        let end = |slice| TaskEnded { slice, outcome: TASK_DONE };
        let timing = TaskTiming {
            ready: (0..7).map(|_| ready(1, READY_SCHEDULED)).collect(),
            created: vec![created(0, 1), created(2, 1), created(3, 1), created(6, 0)],
            ended: vec![end(1), end(4), end(5), end(6)],
        };
        let mut file = FileTasks { since_ns: 10_000_000, until_ns: 30_000_000, ..FileTasks::default() };
        file.add_chunk(&slices, &timing, &EagerTasks::default());
        let group = &file.groups[&7];
        assert_eq!((group.tasks, group.wall.count()), (3, 1), "tasks 3, 4 and 5 counted, 4 timed");
        // Task 4: created at 11 ms, its last step ends at 26 ms.
        assert_eq!(group.wall.total_ns(), 15_000_000);
        assert_eq!(group.loop_time.total_ns(), 3_000_000);
        // Loop lag: the four slices starting in the window.
        assert_eq!(file.lag.count(), 4);
    }

    #[test]
    fn eager_tasks_are_counted_and_timed_with_their_eager_first_step() {
        // Slice 0 (task 3's first, 4 ms at 10 ms) made two eager tasks: one
        // of `what` 9 ended in its 1 ms step at 11 ms; the other stepped 2 ms
        // from 12 ms, slept, and its first slice (1 ms at 60 ms) ended it.
        // Task 3 ends in a 1 ms slice at 70 ms.
        let slices = [slice(10, 4, Some(3)), slice(60, 1, Some(4)), slice(70, 1, Some(3))];
        let timing = TaskTiming {
            ready: vec![],
            created: vec![
                TaskCreated { slice: 0, created_before_ns: 0, parent: None },
                TaskCreated { slice: 1, created_before_ns: 48_000_000, parent: Some(3) },
            ],
            ended: vec![TaskEnded { slice: 1, outcome: TASK_DONE }, TaskEnded { slice: 2, outcome: TASK_DONE }],
        };
        let eager = EagerTasks {
            first_steps: vec![aiocop_trace::records::EagerFirstStep { slice: 1, ran_ns: 2_000_000 }],
            ended: vec![EagerTask {
                slice: 0,
                created_offset_ns: 1_000_000,
                ran_ns: 1_000_000,
                what: 9,
                outcome: TASK_DONE,
            }],
        };
        let mut file = FileTasks::default();
        file.add_chunk(&slices, &timing, &eager);
        for task in std::mem::take(&mut file.open).into_values() {
            file.close(task, None);
        }
        let ended_eagerly = &file.groups[&9];
        assert_eq!((ended_eagerly.tasks, ended_eagerly.wall.count(), ended_eagerly.eager), (1, 1, 1));
        assert_eq!(ended_eagerly.ended_eagerly, 1);
        assert_eq!((ended_eagerly.wall.total_ns(), ended_eagerly.loop_time.total_ns()), (1_000_000, 1_000_000));
        // The suspended one is keyed by its first slice's what (7 here):
        // created at 12 ms, ended at 61 ms; on the loop 2 + 1 ms. Task 3
        // (what 7 too), 10 to 71 ms, ran 4 + 1 ms of which 3 were its
        // children's eager steps.
        let sevens = &file.groups[&7];
        assert_eq!((sevens.tasks, sevens.eager, sevens.ended_eagerly), (2, 1, 0), "task 3 and task 4");
        assert_eq!(sevens.wall.total_ns(), 49_000_000 + 61_000_000);
        assert_eq!(sevens.loop_time.total_ns(), 3_000_000 + 2_000_000);
    }

    #[test]
    fn a_task_without_its_creation_or_end_is_counted_not_timed() {
        let slices = [slice(1, 1, Some(3)), slice(2, 1, Some(4))];
        let timing = TaskTiming {
            ready: vec![],
            created: vec![TaskCreated { slice: 1, created_before_ns: 0, parent: None }],
            ended: vec![TaskEnded { slice: 0, outcome: TASK_CANCELLED }],
        };
        let mut file = FileTasks::default();
        file.add_chunk(&slices, &timing, &EagerTasks::default());
        for task in std::mem::take(&mut file.open).into_values() {
            file.close(task, None);
        }
        let group = &file.groups[&7];
        assert_eq!((group.tasks, group.wall.count(), group.cancelled), (2, 0, 1));
        assert_eq!(file.lag.count(), 0);
    }
}
