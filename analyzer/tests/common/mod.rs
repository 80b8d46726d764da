//! Writes real traces with `aiocop_trace::TraceWriter`, with slices and
//! events at known frames, and runs the built `aiocop-analyze` on them.

#![allow(dead_code)]

use aiocop_trace::records::{
    Chunk, EventRecord, EventSpec, Frame, ReadyWait, SampleTime, SliceRecord, SliceSampleCpu, SliceSampleTimes,
    TaskCreated, TaskEnded, TraceFooter, TraceHeader, READY_SCHEDULED, READY_UNKNOWN,
};
use aiocop_trace::{TraceWriter, BLOCKING_EVENTS};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const MS: u64 = 1_000_000;

/// A frame as recorded: (file, line, function).
pub type At<'a> = (&'a str, i32, &'a str);

/// A slice to write.
#[derive(Clone, Debug, Default)]
pub struct Slice<'a> {
    pub start_ns: u64,
    pub duration_ns: u64,
    pub what: &'a str,
    /// (event name, arguments, stack innermost first)
    pub events: Vec<(&'a str, &'a str, Vec<At<'a>>)>,
    pub samples: Vec<Vec<At<'a>>>,
    /// When recording took each sample (format 1.3); empty: untimed.
    pub sample_times: Vec<SampleTime>,
    /// The loop thread's CPU time over each sample's wait (format 1.4).
    pub sample_cpu: Vec<u64>,
    pub context: Vec<(&'a str, &'a str)>,
    /// The recorder's number for the thread; 0 is written as 1.
    pub thread: u32,
    /// The task whose step it is, by name (default: `Task-1` for a slice
    /// with events or over the threshold, else none).
    pub task: Option<&'a str>,
    /// How long it waited for the loop once ready (format 1.4 task timing).
    pub ready_wait_ns: Option<u64>,
    /// It is its task's first step, the task created this long before.
    pub created_before_ns: Option<u64>,
    /// It is its task's last step, which ended so (`TASK_*`).
    pub ended: Option<u8>,
}

/// Builds a trace chunk by chunk, interning strings, frames and stacks per
/// file as the recorder does: each id is defined in the first chunk that
/// uses it. `id_base` shifts every id, so that two files give the same text
/// different ids.
pub struct TraceBuilder {
    pub header: TraceHeader,
    id_base: u32,
    strings: HashMap<String, u32>,
    frames: HashMap<(u32, i32, u32), u32>,
    stacks: HashMap<Vec<u32>, u32>,
    chunks: Vec<Chunk>,
    previous_start: Option<u64>,
    slices: u64,
    events: u64,
    dropped: u64,
}

pub fn header(label: Option<&str>, host: &str, threshold_ms: u64) -> TraceHeader {
    TraceHeader {
        aiocop_version: "1.3.0".to_owned(),
        python_version: "3.12.1".to_owned(),
        platform: "linux".to_owned(),
        host: host.to_owned(),
        pid: 4242,
        argv: vec!["app.py".to_owned(), "--serve".to_owned()],
        start_unix_ns: 1_714_564_800_000_000_000,
        start_monotonic_ns: 77,
        label: label.map(str::to_owned),
        threshold_ns: threshold_ms * MS,
        trace_depth: 20,
        event_table: BLOCKING_EVENTS.iter().map(|e| EventSpec { name: e.name.to_owned(), weight: e.weight }).collect(),
        records_context: true,
        process: Default::default(),
        sampling: Default::default(),
        redaction: Default::default(),
    }
}

impl TraceBuilder {
    pub fn new(header: TraceHeader, id_base: u32) -> TraceBuilder {
        TraceBuilder {
            header,
            id_base,
            strings: HashMap::new(),
            frames: HashMap::new(),
            stacks: HashMap::new(),
            chunks: vec![Chunk::default()],
            previous_start: None,
            slices: 0,
            events: 0,
            dropped: 0,
        }
    }

    fn chunk(&mut self) -> &mut Chunk {
        self.chunks.last_mut().expect("there is always a chunk")
    }

    pub fn new_chunk(&mut self) -> &mut Self {
        self.chunks.push(Chunk::default());
        self.previous_start = None;
        self
    }

    pub fn drop_slices(&mut self, count: u64) -> &mut Self {
        self.chunk().dropped_slices += count;
        self.dropped += count;
        self
    }

    fn string(&mut self, text: &str) -> u32 {
        if let Some(&id) = self.strings.get(text) {
            return id;
        }
        let id = self.id_base + self.strings.len() as u32;
        self.strings.insert(text.to_owned(), id);
        self.chunk().strings.push((id, text.to_owned()));
        id
    }

    fn frame(&mut self, (file, line, function): At) -> u32 {
        let frame = Frame { file: self.string(file), line, function: self.string(function) };
        let key = (frame.file, frame.line, frame.function);
        if let Some(&id) = self.frames.get(&key) {
            return id;
        }
        let id = self.id_base + 500 + self.frames.len() as u32;
        self.frames.insert(key, id);
        self.chunk().frames.push((id, frame));
        id
    }

    fn stack(&mut self, frames: &[At]) -> u32 {
        let ids: Vec<u32> = frames.iter().map(|&at| self.frame(at)).collect();
        if let Some(&id) = self.stacks.get(&ids) {
            return id;
        }
        let id = self.id_base + 700 + self.stacks.len() as u32;
        self.stacks.insert(ids.clone(), id);
        self.chunk().stacks.push((id, ids));
        id
    }

    pub fn slice(&mut self, slice: Slice) -> &mut Self {
        let what = self.string(slice.what);
        let mut score = 0;
        let events: Vec<EventRecord> = slice
            .events
            .iter()
            .map(|(name, args, stack)| {
                let event = BLOCKING_EVENTS.iter().position(|e| e.name == *name).expect("a known event") as u16;
                score += BLOCKING_EVENTS[event as usize].weight;
                EventRecord { event, args: self.string(args), offset_ns: 1_000, stack: self.stack(stack) }
            })
            .collect();
        let samples: Vec<u32> = slice.samples.iter().map(|stack| self.stack(stack)).collect();
        let context: Vec<(u32, u32)> = slice.context.iter().map(|(k, v)| (self.string(k), self.string(v))).collect();
        let exceeded = slice.duration_ns >= self.header.threshold_ns;
        let interesting = exceeded || !events.is_empty();
        let task = match slice.task {
            Some(name) => Some(self.string(name)),
            None if interesting => Some(self.string("Task-1")),
            None => None,
        };
        self.task_timing(&slice);
        let start_delta_ns = match self.previous_start {
            None => {
                self.chunk().base_offset_ns = slice.start_ns;
                0
            }
            Some(previous) => slice.start_ns - previous,
        };
        self.previous_start = Some(slice.start_ns);
        self.slices += 1;
        self.events += events.len() as u64;
        if !slice.sample_times.is_empty() {
            let at = self.chunk().slices.len() as u32;
            self.chunk().sample_timing.slices.push(SliceSampleTimes { slice: at, times: slice.sample_times.clone() });
        }
        if !slice.sample_cpu.is_empty() {
            let at = self.chunk().slices.len() as u32;
            self.chunk().sample_cpu.slices.push(SliceSampleCpu { slice: at, ran_ns: slice.sample_cpu.clone() });
        }
        self.chunk().slices.push(SliceRecord {
            start_delta_ns,
            duration_ns: slice.duration_ns,
            what,
            task,
            thread: slice.thread.max(1),
            exceeded,
            events,
            dropped_events: 0,
            score,
            samples,
            context,
        });
        self
    }

    /// The slice's task timing, if it has any: a ready-wait for every slice
    /// of the chunk once one has it (unknown for the others).
    fn task_timing(&mut self, slice: &Slice) {
        let at = self.chunk().slices.len();
        let timing = &mut self.chunk().task_timing;
        if slice.ready_wait_ns.is_some() || !timing.ready.is_empty() {
            let unknown = ReadyWait { wait_ns: 0, since: READY_UNKNOWN };
            timing.ready.resize(at, unknown);
            let wait = slice.ready_wait_ns.map(|wait_ns| ReadyWait { wait_ns, since: READY_SCHEDULED });
            timing.ready.push(wait.unwrap_or(unknown));
        }
        if let Some(created_before_ns) = slice.created_before_ns {
            timing.created.push(TaskCreated { slice: at as u32, created_before_ns, parent: None });
        }
        if let Some(outcome) = slice.ended {
            timing.ended.push(TaskEnded { slice: at as u32, outcome });
        }
    }

    /// Writes the trace to `path`; with a footer ending at `end_ns` if given.
    pub fn write(&self, path: &Path, end_ns: Option<u64>) -> PathBuf {
        let file = std::fs::File::create(path).expect("create the trace");
        let mut writer = TraceWriter::new(file, &self.header).expect("write the header");
        for chunk in &self.chunks {
            writer.write_chunk(chunk).expect("write a chunk");
        }
        if let Some(end_offset_ns) = end_ns {
            let footer = TraceFooter {
                slices: self.slices,
                events: self.events,
                dropped_slices: self.dropped,
                chunks: self.chunks.len() as u64,
                end_offset_ns,
            };
            writer.finish(&footer).expect("write the footer");
        }
        path.to_path_buf()
    }
}

/// A fresh directory for one test.
pub fn test_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the test directory");
    dir
}

pub const HANDLERS: &str = "/srv/app/src/shop/handlers.py";
pub const CONFIG: &str = "/srv/app/src/shop/config.py";
pub const TASKS: &str = "/srv/app/src/shop/tasks.py";
pub const CLIENT: &str = "/srv/app/src/shop/client.py";
pub const COMPUTE: &str = "/srv/app/src/shop/compute.py";
pub const SOCKET: &str = "/usr/lib/python3.12/socket.py";
pub const LOGGING: &str = "/usr/lib/python3.12/logging/__init__.py";
pub const JSON: &str = "/usr/lib/python3.12/json/encoder.py";

pub fn sleep_stack() -> Vec<At<'static>> {
    vec![(HANDLERS, 42, "get_user"), (HANDLERS, 10, "handle_request")]
}

pub fn config_stack() -> Vec<At<'static>> {
    vec![(CONFIG, 7, "load"), (HANDLERS, 11, "handle_request")]
}

/// The fleet: worker 1 (three chunks, 7 slices, 2 dropped, 3 s) and
/// worker 2 (two chunks, 2 slices, 1 s), with different ids for the same text.
///
/// | slice | file | start | ms  | what            | events (stack)                               | endpoint |
/// | s1    | 1    | 0.1 s | 150 | handle_request  | time.sleep (get_user), open (config load)    | /users   |
/// | s2    | 1    | 0.3 s | 2   | refresh_config  | open (config load <- tasks)                  | /config  |
/// | s3    | 1    | 0.5 s | 0.05| tick            |                                              |          |
/// | s4    | 1    | 1.0 s | 300 | build_report    | none; samples crunch, crunch, json encode    | /report  |
/// | s5    | 1    | 1.5 s | 120 | handle_request  | socket connect (socket.py <- client.fetch)   | /users   |
/// | s6    | 1    | 2.0 s | 5   | handle_request  | os.stat (logging emit <- get_user)           | /users   |
/// | s7    | 1    | 2.5 s | 1   | tick            |                                              |          |
/// | s1'   | 2    | 0.2 s | 110 | handle_request  | time.sleep (get_user)                        | /users   |
/// | s2'   | 2    | 0.4 s | 3   | handle_request  | open (config load)                           | /config  |
pub fn write_fleet(dir: &Path) -> (PathBuf, PathBuf) {
    let mut one = TraceBuilder::new(header(Some("v1"), "web-1", 100), 0);
    one.slice(Slice {
        start_ns: 100 * MS,
        duration_ns: 150 * MS,
        what: "handle_request",
        events: vec![("time.sleep", "0.12", sleep_stack()), ("open", "/etc/shop.toml, r", config_stack())],
        context: vec![("endpoint", "/users")],
        ..Slice::default()
    })
    .slice(Slice {
        start_ns: 300 * MS,
        duration_ns: 2 * MS,
        what: "refresh_config",
        events: vec![("open", "/etc/shop.toml, r", vec![(CONFIG, 7, "load"), (TASKS, 5, "refresh_config")])],
        context: vec![("endpoint", "/config")],
        ..Slice::default()
    })
    .slice(Slice { start_ns: 500 * MS, duration_ns: 50_000, what: "tick", ..Slice::default() })
    .new_chunk()
    .slice(Slice {
        start_ns: 1_000 * MS,
        duration_ns: 300 * MS,
        what: "build_report",
        samples: vec![
            vec![(COMPUTE, 30, "crunch"), (HANDLERS, 20, "report")],
            vec![(COMPUTE, 30, "crunch"), (HANDLERS, 20, "report")],
            vec![(JSON, 200, "encode"), (HANDLERS, 21, "report")],
        ],
        context: vec![("endpoint", "/report")],
        ..Slice::default()
    })
    .slice(Slice {
        start_ns: 1_500 * MS,
        duration_ns: 120 * MS,
        what: "handle_request",
        events: vec![(
            "socket.socket.connect",
            "('10.0.0.5', 6379)",
            vec![(SOCKET, 850, "create_connection"), (CLIENT, 12, "fetch"), (HANDLERS, 43, "get_user")],
        )],
        context: vec![("endpoint", "/users")],
        ..Slice::default()
    })
    .new_chunk()
    .slice(Slice {
        start_ns: 2_000 * MS,
        duration_ns: 5 * MS,
        what: "handle_request",
        events: vec![("os.stat", "/var/log/shop.log", vec![(LOGGING, 1200, "emit"), (HANDLERS, 44, "get_user")])],
        context: vec![("endpoint", "/users")],
        ..Slice::default()
    })
    .slice(Slice { start_ns: 2_500 * MS, duration_ns: MS, what: "tick", ..Slice::default() })
    .drop_slices(2);
    let first = one.write(&dir.join("web-1.bin"), Some(3_000 * MS));

    let mut two = TraceBuilder::new(header(Some("v2"), "web-2", 100), 10_000);
    // Defined in another order than in worker 1, so ids differ twice over.
    two.slice(Slice {
        start_ns: 200 * MS,
        duration_ns: 110 * MS,
        what: "handle_request",
        events: vec![("time.sleep", "0.1", sleep_stack())],
        context: vec![("endpoint", "/users")],
        ..Slice::default()
    })
    .new_chunk()
    .slice(Slice {
        start_ns: 400 * MS,
        duration_ns: 3 * MS,
        what: "handle_request",
        events: vec![("open", "/etc/shop.toml, r", config_stack())],
        context: vec![("endpoint", "/config")],
        ..Slice::default()
    });
    let second = two.write(&dir.join("web-2.bin"), Some(1_000 * MS));
    (first, second)
}

/// Runs the built binary.
pub fn run<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(env!("CARGO_BIN_EXE_aiocop-analyze"))
        .args(args)
        .env_remove("NO_COLOR")
        .env("TERM", "xterm")
        .output()
        .expect("run aiocop-analyze")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("UTF-8 stdout")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("UTF-8 stderr")
}
