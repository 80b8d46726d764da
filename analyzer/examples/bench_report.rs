//! How fast a report is read, against the floor of reading a trace at all.
//!
//! ```text
//! cargo run --release -p aiocop-analyze --example bench_report -- [SLICES] [TRACE]
//! ```
//!
//! Writes a trace of SLICES slices (default 10,000,000; in chunks of 65,536
//! like the recorder's, steps of 100 tasks in turn, 1 in 50 with a blocking
//! event on one of 40 stacks, 1 in 500 slow and CPU-sampled) to TRACE
//! (default a temporary file), then
//! times, with 1 and 2 threads: decompressing every chunk without decoding
//! it (the floor), decompressing and decoding it slice by slice, that and
//! aggregating it as a report does, and a whole `aiocop-analyze` report. Prints the peak
//! resident memory of the process at the end (Linux).
//!
//! ```text
//! cargo run --release -p aiocop-analyze --example bench_report -- fleet TRACES SLICES DIR
//! ```
//!
//! Writes TRACES such traces of SLICES slices each into DIR instead, as a
//! fleet's workers would (`bench/fleet_export.py` exports them): each its
//! own pid, host (`web-0` to `web-9`) and label (`v1`, `v2`), its blocking
//! slices with a `route` context value (one of 8).

use aiocop_analyze::aggregate::{fold_chunks, ChunkOptions, FileAggregate};
use aiocop_trace::records::{Chunk, EventRecord, EventSpec, Frame, SliceRecord, TraceFooter, TraceHeader};
use aiocop_trace::{TraceFile, TraceWriter, BLOCKING_EVENTS};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::time::Instant;

const SLICES_PER_CHUNK: u64 = 65_536;
/// Tasks taking steps in turn, named by strings from this id on.
const TASKS: u32 = 100;
const FIRST_TASK: u32 = 43;
/// With routes: the string ids of the key `route` and of its 8 values.
const ROUTE_KEY: u32 = FIRST_TASK + TASKS;
const ROUTES: u32 = 8;

fn bench_header() -> TraceHeader {
    TraceHeader {
        aiocop_version: "bench".to_owned(),
        python_version: "3.12".to_owned(),
        threshold_ns: 10_000_000,
        trace_depth: 20,
        event_table: BLOCKING_EVENTS.iter().map(|e| EventSpec { name: e.name.to_owned(), weight: e.weight }).collect(),
        ..TraceHeader::default()
    }
}

/// Worker `index` of a fleet: its own pid, one of 10 hosts, one of 2 labels.
fn fleet_header(index: u32) -> TraceHeader {
    TraceHeader {
        pid: 10_000 + index,
        host: format!("web-{}", index % 10),
        label: Some(format!("v{}", 1 + index % 2)),
        start_unix_ns: 1_765_000_000_000_000_000 + u64::from(index) * 1_000_000,
        records_context: true,
        ..bench_header()
    }
}

fn write_trace(path: &Path, slices: u64, header: &TraceHeader) {
    let routes = header.records_context;
    let mut writer = TraceWriter::new(std::fs::File::create(path).expect("create the trace"), header).expect("header");
    let mut written = 0u64;
    let mut start_ns = 0u64;
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut random = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    while written < slices {
        let mut chunk = Chunk::default();
        if written == 0 {
            // 40 stacks of 10 frames over 20 files.
            chunk.strings = (0..40).map(|i| (i, format!("/srv/app/src/module_{i}.py"))).collect();
            chunk.strings.push((40, "handler".to_owned()));
            chunk.strings.push((41, "what".to_owned()));
            chunk.strings.push((42, "/etc/hosts, r".to_owned()));
            chunk.strings.extend((0..TASKS).map(|t| (FIRST_TASK + t, format!("Task-{t}"))));
            if routes {
                chunk.strings.push((ROUTE_KEY, "route".to_owned()));
                chunk.strings.extend((0..ROUTES).map(|r| (ROUTE_KEY + 1 + r, format!("/api/r{r}"))));
            }
            chunk.frames = (0..400).map(|i| (i, Frame { file: i % 20, line: i as i32, function: 40 })).collect();
            chunk.stacks = (0..40).map(|s| (s, (0..10).map(|k| s * 10 + k).collect())).collect();
        }
        chunk.base_offset_ns = start_ns;
        let in_chunk = SLICES_PER_CHUNK.min(slices - written);
        for i in 0..in_chunk {
            let r = random();
            let delta = if i == 0 { 0 } else { 4_000 + (r & 0xff) };
            start_ns += delta;
            let mut slice = SliceRecord {
                start_delta_ns: delta,
                duration_ns: 2_000 + (r >> 8 & 0x3f),
                what: 41,
                task: Some(FIRST_TASK + (r >> 48) as u32 % TASKS),
                thread: 1,
                ..SliceRecord::default()
            };
            if r % 50 == 0 {
                let event = (r >> 16) as usize % BLOCKING_EVENTS.len();
                slice.events =
                    vec![EventRecord { event: event as u16, args: 42, offset_ns: 500, stack: (r >> 24) as u32 % 40 }];
                slice.score = BLOCKING_EVENTS[event].weight;
                slice.duration_ns += 50_000;
                if routes {
                    slice.context = vec![(ROUTE_KEY, ROUTE_KEY + 1 + (r >> 56) as u32 % ROUTES)];
                }
            }
            if r % 500 == 1 {
                slice.duration_ns = 12_000_000 + (r >> 8 & 0xfffff);
                slice.exceeded = true;
                slice.samples = vec![(r >> 32) as u32 % 40, (r >> 40) as u32 % 40];
            }
            chunk.slices.push(slice);
        }
        written += in_chunk;
        writer.write_chunk(&chunk).expect("write a chunk");
    }
    let footer =
        TraceFooter { slices, chunks: writer.chunks_written(), end_offset_ns: start_ns, ..TraceFooter::default() };
    writer.finish(&footer).expect("footer");
}

fn best_of<F: FnMut()>(runs: usize, mut f: F) -> f64 {
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `fleet TRACES SLICES DIR`: the traces of a fleet, written in parallel.
fn write_fleet(mut args: impl Iterator<Item = String>) {
    let traces: u32 = args.next().expect("TRACES").parse().expect("TRACES is a number");
    let slices: u64 = args.next().expect("SLICES").parse().expect("SLICES is a number");
    let dir = PathBuf::from(args.next().expect("DIR"));
    std::fs::create_dir_all(&dir).expect("create DIR");
    let start = Instant::now();
    (0..traces).into_par_iter().for_each(|index| {
        write_trace(&dir.join(format!("worker-{index:04}.bin")), slices, &fleet_header(index));
    });
    println!("{traces} traces of {slices} slices written in {:.1} s", start.elapsed().as_secs_f64());
}

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("fleet") {
        args.next();
        return write_fleet(args);
    }
    let slices: u64 = args.next().map_or(10_000_000, |s| s.parse().expect("SLICES is a number"));
    let path: PathBuf = args.next().map_or_else(|| std::env::temp_dir().join("aiocop-bench-report.bin"), PathBuf::from);
    let start = Instant::now();
    write_trace(&path, slices, &bench_header());
    let trace = TraceFile::open(&path).expect("open the trace");
    println!(
        "{slices} slices, {} chunks, {:.1} MB on disk, {:.1} MB raw; written in {:.1} s",
        trace.chunk_count(),
        trace.file_len() as f64 / 1e6,
        trace.raw_bytes() as f64 / 1e6,
        start.elapsed().as_secs_f64()
    );
    let mut report_times = Vec::new();
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a pool");
        let floor = best_of(3, || {
            pool.install(|| {
                (0..trace.chunk_count()).into_par_iter().for_each(|i| {
                    trace.decompress_chunk(i).expect("decompress");
                })
            })
        });
        let decode = best_of(3, || {
            pool.install(|| {
                (0..trace.chunk_count()).into_par_iter().for_each(|i| {
                    trace
                        .visit_chunk(i, &mut |start_ns, slice: &SliceRecord| {
                            std::hint::black_box((start_ns, slice));
                        })
                        .expect("decode");
                })
            })
        });
        let aggregate = best_of(3, || {
            pool.install(|| {
                fold_chunks(
                    trace.chunk_count(),
                    FileAggregate::default,
                    |aggregate, index| aggregate.add_from(&trace, index, &ChunkOptions::default()),
                    FileAggregate::merge,
                );
            })
        });
        println!("{threads} thread(s): decompress and decode {decode:.3} s, and aggregate {aggregate:.3} s");
        let path = path.to_str().expect("a UTF-8 path");
        let threads_arg = threads.to_string();
        let report = best_of(3, || {
            let code = aiocop_analyze::main_with_args(["aiocop-analyze", path, "-o", "/dev/null", "-j", &threads_arg]);
            assert_eq!(code, 0);
        });
        report_times.push(report);
        println!(
            "{threads} thread(s): decompress only {floor:.3} s, report {report:.3} s ({:.2}x the floor, {:.1} M slices/s)",
            report / floor,
            slices as f64 / report / 1e6
        );
    }
    println!("speed-up from 1 to 2 threads: {:.2}x", report_times[0] / report_times[1]);
    if let Some(kib) = peak_rss_kib() {
        println!("peak resident memory: {:.1} MB", kib as f64 / 1024.0);
    }
}
