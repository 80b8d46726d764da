//! `export --format parquet`'s peak memory does not grow with a trace's
//! length: a trace four times longer exports in about the same resident
//! memory, as the files are closed and new parts begun every
//! `PART_SLICES` slices.
//!
//! Millions of slices take minutes in a debug build, so this runs with
//! `cargo test --release -p aiocop-analyze --test export_memory` (part of
//! the bench) and is ignored by a debug `cargo test`.

use aiocop_trace::records::{Chunk, EventRecord, Frame, SliceRecord, TraceFooter, TraceHeader};
use aiocop_trace::{TraceWriter, BLOCKING_EVENTS};
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

const SLICES_PER_CHUNK: u64 = 65_536;
const TASKS: u32 = 100;
const FIRST_TASK: u32 = 50;
const ROUTE_KEY: u32 = FIRST_TASK + TASKS;

/// The first chunk's definitions: 40 stacks of 10 frames over 20 files,
/// 100 task names and 8 routes.
fn definitions() -> Chunk {
    let mut strings: Vec<(u32, String)> = (0..40).map(|i| (i, format!("/srv/app/src/module_{i}.py"))).collect();
    strings.extend([(40, "handler".to_owned()), (41, "what".to_owned()), (42, "/etc/hosts, r".to_owned())]);
    strings.extend((0..TASKS).map(|t| (FIRST_TASK + t, format!("Task-{t}"))));
    strings.push((ROUTE_KEY, "route".to_owned()));
    strings.extend((0..8).map(|r| (ROUTE_KEY + 1 + r, format!("/api/r{r}"))));
    Chunk {
        strings,
        frames: (0..400).map(|i| (i, Frame { file: i % 20, line: i as i32, function: 40 })).collect(),
        stacks: (0..40).map(|s| (s, (0..10).map(|k| s * 10 + k).collect())).collect(),
        ..Chunk::default()
    }
}

/// Slice `r` (a random number) of the shape of a server's: 1 in 50 with a
/// blocking event and a route, 1 in 500 slow and sampled.
fn slice(r: u64, delta_ns: u64) -> SliceRecord {
    let mut slice = SliceRecord {
        start_delta_ns: delta_ns,
        duration_ns: 2_000 + (r >> 8 & 0x3f),
        what: 41,
        task: Some(FIRST_TASK + (r >> 48) as u32 % TASKS),
        thread: 1,
        ..SliceRecord::default()
    };
    if r.is_multiple_of(50) {
        let event = (r >> 16) as usize % BLOCKING_EVENTS.len();
        slice.events =
            vec![EventRecord { event: event as u16, args: 42, offset_ns: 500, stack: (r >> 24) as u32 % 40 }];
        slice.score = BLOCKING_EVENTS[event].weight;
        slice.duration_ns += 50_000;
        slice.context = vec![(ROUTE_KEY, ROUTE_KEY + 1 + (r >> 56) as u32 % 8)];
    }
    if r % 500 == 1 {
        slice.duration_ns = 12_000_000 + (r >> 8 & 0xfffff);
        slice.exceeded = true;
        slice.samples = vec![(r >> 32) as u32 % 40, (r >> 40) as u32 % 40];
    }
    slice
}

/// Writes a trace of `slices` slices, a chunk at a time.
fn write_trace(path: &Path, slices: u64) -> PathBuf {
    let header: TraceHeader = common::header(Some("v1"), "web-1", 10);
    let mut writer = TraceWriter::new(std::fs::File::create(path).unwrap(), &header).unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let (mut written, mut start_ns) = (0, 0);
    while written < slices {
        let mut chunk = if written == 0 { definitions() } else { Chunk::default() };
        chunk.base_offset_ns = start_ns;
        for i in 0..SLICES_PER_CHUNK.min(slices - written) {
            // xorshift: the same trace every run.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let delta_ns = if i == 0 { 0 } else { 4_000 + (state & 0xff) };
            start_ns += delta_ns;
            chunk.slices.push(slice(state, delta_ns));
        }
        written += chunk.slices.len() as u64;
        writer.write_chunk(&chunk).unwrap();
    }
    let footer = TraceFooter { slices, chunks: writer.chunks_written(), end_offset_ns: start_ns, ..Default::default() };
    writer.finish(&footer).unwrap();
    path.to_path_buf()
}

/// Exports `trace` on one thread; the export's peak resident memory, in KiB.
// The child is reaped by wait4, which std cannot give its resource use.
#[allow(clippy::zombie_processes)]
fn export_peak_rss_kib(trace: &Path, out: &Path) -> i64 {
    let child = Command::new(env!("CARGO_BIN_EXE_aiocop-analyze"))
        .args(["export", "-q", "-j", "1", "-o"])
        .args([out, trace])
        .spawn()
        .expect("run aiocop-analyze");
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of the plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, whose pid std gave us, with valid pointers
    // to locals; std's Child is not waited on after this.
    let waited = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(waited, child.id() as libc::pid_t, "wait4: {}", std::io::Error::last_os_error());
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "export failed: {status}");
    usage.ru_maxrss
}

#[test]
#[cfg_attr(debug_assertions, ignore = "millions of slices: run with --release (part of the bench)")]
fn export_peak_memory_is_flat_in_trace_length() {
    let dir = common::test_dir("export-memory");
    let short = write_trace(&dir.join("short.bin"), 2_000_000);
    let long = write_trace(&dir.join("long.bin"), 8_000_000);
    let short_kib = export_peak_rss_kib(&short, &dir.join("short"));
    let long_kib = export_peak_rss_kib(&long, &dir.join("long"));
    // One file per table and trace grew about 3 MB a million slices (+18 MB
    // from 1 to 4 M slices, heaptrack: zstd contexts and pages of the sparse
    // tables' open row groups, held until the file closed). Parts of a
    // bounded number of slices hold what one part needs (about 2 MB apart
    // from 1 to 12 M).
    let grown_kib = long_kib - short_kib;
    eprintln!("peak RSS of the export: 2 M slices {short_kib} KiB, 8 M {long_kib} KiB");
    assert!(grown_kib < 6 * 1024, "2 M slices: {short_kib} KiB, 8 M: {long_kib} KiB, grown {grown_kib} KiB");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The files of `table`'s one partition, by name.
fn file_names(out: &Path, table: &str) -> Vec<String> {
    let dir = out.join(table).join("label=v1").join("host=web-1");
    let mut names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

/// The `slice_index` column of each file of `table`, by file name.
fn keys_by_file(out: &Path, table: &str) -> Vec<(String, Vec<i64>)> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let dir = out.join(table).join("label=v1").join("host=web-1");
    file_names(out, table)
        .into_iter()
        .map(|name| {
            let file = std::fs::File::open(dir.join(&name)).unwrap();
            let reader = ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap();
            let mut keys = Vec::new();
            for batch in reader {
                let batch = batch.unwrap();
                let column = batch.column_by_name("slice_index").unwrap().as_primitive::<Int64Type>();
                keys.extend(column.values().iter().copied());
            }
            (name, keys)
        })
        .collect()
}

#[test]
fn a_long_trace_is_written_in_parts_each_with_its_slices_events_and_samples() {
    let dir = common::test_dir("export-parts");
    let part = aiocop_analyze::tables::PART_SLICES as i64;
    let slices = 2 * part + 1_000;
    let trace = write_trace(&dir.join("long.bin"), slices as u64);
    let out = dir.join("out");
    let output = common::run(["export", "-q", "-j", "1", "-o", out.to_str().unwrap(), trace.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", common::stderr(&output));

    let start = 1_714_564_800_000_000_000u64;
    let parts = [
        format!("4242-{start}.parquet"),
        format!("4242-{start}.part00001.parquet"),
        format!("4242-{start}.part00002.parquet"),
    ];
    for table in ["slices", "events", "samples", "tasks"] {
        assert_eq!(file_names(&out, table), parts, "{table}");
    }
    assert_eq!(file_names(&out, "traces"), [format!("4242-{start}.parquet")], "one row a trace, one file");

    // Part k holds slices [k * PART_SLICES, (k + 1) * PART_SLICES), in order, and their events and samples.
    let slices_by_part = keys_by_file(&out, "slices");
    let all: Vec<i64> = slices_by_part.iter().flat_map(|(_, keys)| keys.iter().copied()).collect();
    assert_eq!(all, (0..slices).collect::<Vec<_>>());
    for table in ["events", "samples"] {
        let rows = keys_by_file(&out, table);
        for (k, (name, keys)) in rows.iter().enumerate() {
            let range = k as i64 * part..((k as i64 + 1) * part).min(slices);
            assert!(!keys.is_empty() && keys.iter().all(|i| range.contains(i)), "{table} {name}: outside {range:?}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
