//! `export --format parquet`: the files of the fleet's traces read back
//! with the parquet crate: their schema as every engine sees it (types and
//! nullability pinned), their partitions, their rows, and bad input.

mod common;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampNanosecondType};
use arrow_array::{Array, RecordBatch};
use common::*;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::reader::{FileReader, SerializedFileReader};
use std::fs;
use std::path::{Path, PathBuf};

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Every `.parquet` file under `dir`, sorted.
fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The rows of one table, every file's batches concatenated, in file order.
fn rows(out: &Path, table: &str) -> RecordBatch {
    let mut batches = Vec::new();
    let mut schema = None;
    for file in parquet_files(&out.join(table)) {
        let reader = ParquetRecordBatchReaderBuilder::try_new(fs::File::open(&file).unwrap()).unwrap();
        schema = Some(reader.schema().clone());
        batches.extend(reader.build().unwrap().map(Result::unwrap));
    }
    arrow_select::concat::concat_batches(&schema.unwrap(), &batches).unwrap()
}

fn ints(batch: &RecordBatch, column: &str) -> Vec<i64> {
    batch.column_by_name(column).unwrap().as_primitive::<Int64Type>().values().to_vec()
}

fn strings(batch: &RecordBatch, column: &str) -> Vec<Option<String>> {
    let array = batch.column_by_name(column).unwrap().as_string::<i32>();
    (0..array.len()).map(|i| array.is_valid(i).then(|| array.value(i).to_owned())).collect()
}

fn export(out: &Path, inputs: &[&Path], extra: &[&str]) -> std::process::Output {
    let mut args = vec!["export", "--format", "parquet", "-o", path(out)];
    args.extend(extra);
    args.extend(inputs.iter().map(|p| path(p)));
    run(args)
}

/// The Parquet schema of each table as DuckDB, Spark and polars see it:
/// physical and logical types, REQUIRED or OPTIONAL.
#[test]
fn schema_pins_types_and_nullability_and_says_its_version() {
    let dir = test_dir("tables-schema");
    let (one, _) = write_fleet(&dir);
    let out = dir.join("out");
    let output = export(&out, &[&one], &["--quiet"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let expected = [
        (
            "slices",
            "REQUIRED BYTE_ARRAY trace_id (STRING); REQUIRED INT64 slice_index; REQUIRED INT64 pid; \
             REQUIRED INT64 thread; REQUIRED INT64 start (TIMESTAMP(NANOS,true)); REQUIRED INT64 start_offset_ns; \
             REQUIRED INT64 duration_ns; REQUIRED BYTE_ARRAY what (STRING); OPTIONAL BYTE_ARRAY task (STRING); \
             OPTIONAL BYTE_ARRAY route (STRING); OPTIONAL group context (MAP) { REPEATED group key_value { \
             REQUIRED BYTE_ARRAY key (STRING); REQUIRED BYTE_ARRAY value (STRING); } } \
             REQUIRED BOOLEAN exceeded; REQUIRED INT64 score; REQUIRED INT64 event_count; \
             REQUIRED INT64 dropped_events; REQUIRED INT64 sample_count; OPTIONAL INT64 ready_wait_ns;",
        ),
        (
            "events",
            "REQUIRED BYTE_ARRAY trace_id (STRING); REQUIRED INT64 slice_index; REQUIRED INT64 event_index; \
             REQUIRED BYTE_ARRAY event (STRING); REQUIRED INT64 event_id; REQUIRED INT64 weight; REQUIRED BYTE_ARRAY args (STRING); \
             REQUIRED INT64 offset_ns; REQUIRED INT64 time (TIMESTAMP(NANOS,true)); OPTIONAL INT64 stack_id; \
             REQUIRED BYTE_ARRAY entry_point (STRING); REQUIRED group frames (LIST) { REPEATED group list { \
             REQUIRED BYTE_ARRAY item (STRING); } } REQUIRED group identities (LIST) { REPEATED group list { \
             REQUIRED BYTE_ARRAY item (STRING); } }",
        ),
        (
            "samples",
            "REQUIRED BYTE_ARRAY trace_id (STRING); REQUIRED INT64 slice_index; REQUIRED INT64 sample_index; \
             OPTIONAL INT64 stack_id; REQUIRED BYTE_ARRAY entry_point (STRING); REQUIRED group frames (LIST) { \
             REPEATED group list { REQUIRED BYTE_ARRAY item (STRING); } } REQUIRED group identities (LIST) { \
             REPEATED group list { REQUIRED BYTE_ARRAY item (STRING); } } REQUIRED INT64 weight_ns; \
             REQUIRED INT64 share; REQUIRED BOOLEAN native;",
        ),
        (
            "traces",
            "REQUIRED BYTE_ARRAY trace_id (STRING); REQUIRED BYTE_ARRAY path (STRING); REQUIRED INT64 file_bytes; \
             REQUIRED BYTE_ARRAY format_version (STRING); REQUIRED BYTE_ARRAY aiocop_version (STRING); \
             REQUIRED BYTE_ARRAY python_version (STRING); REQUIRED BYTE_ARRAY platform (STRING); \
             REQUIRED INT64 pid; REQUIRED INT64 parent_pid; REQUIRED BYTE_ARRAY role (STRING); \
             REQUIRED group root_command (LIST) { REPEATED group list { REQUIRED BYTE_ARRAY item (STRING); } } \
             REQUIRED group argv (LIST) { REPEATED group list { REQUIRED BYTE_ARRAY item (STRING); } } \
             REQUIRED INT64 start (TIMESTAMP(NANOS,true)); REQUIRED INT64 threshold_ns; REQUIRED INT64 trace_depth; \
             REQUIRED BOOLEAN records_context; REQUIRED INT64 sampling_after_ns; \
             REQUIRED INT64 sampling_interval_ns; REQUIRED BOOLEAN redacted; REQUIRED BOOLEAN cut_short; \
             OPTIONAL INT64 footer_slices; OPTIONAL INT64 footer_events; OPTIONAL INT64 footer_dropped_slices; \
             OPTIONAL INT64 footer_chunks; OPTIONAL INT64 end_offset_ns; REQUIRED INT64 chunks; \
             REQUIRED INT64 unreadable_chunks; REQUIRED INT64 slices; REQUIRED INT64 events; REQUIRED INT64 samples; \
             REQUIRED INT64 dropped_slices;",
        ),
        (
            "tasks",
            "REQUIRED BYTE_ARRAY trace_id (STRING); REQUIRED BYTE_ARRAY task (STRING); \
             REQUIRED BYTE_ARRAY coroutine (STRING); OPTIONAL BYTE_ARRAY parent (STRING); \
             OPTIONAL BYTE_ARRAY route (STRING); OPTIONAL INT64 created (TIMESTAMP(NANOS,true)); \
             OPTIONAL INT64 created_offset_ns; OPTIONAL INT64 first_step (TIMESTAMP(NANOS,true)); \
             OPTIONAL INT64 first_step_offset_ns; OPTIONAL INT64 ended (TIMESTAMP(NANOS,true)); \
             OPTIONAL INT64 ended_offset_ns; OPTIONAL BYTE_ARRAY outcome (STRING); OPTIONAL INT64 wall_ns; \
             REQUIRED INT64 loop_ns; REQUIRED INT64 ready_wait_ns; OPTIONAL INT64 waiting_ns; \
             REQUIRED INT64 slice_count;",
        ),
    ];
    for (table, columns) in expected {
        let files = parquet_files(&out.join(table));
        assert_eq!(files.len(), 1, "{table}");
        let reader = SerializedFileReader::new(fs::File::open(&files[0]).unwrap()).unwrap();
        let metadata = reader.metadata().file_metadata();
        let mut printed = Vec::new();
        parquet::schema::printer::print_schema(&mut printed, metadata.schema());
        let printed = String::from_utf8(printed).unwrap();
        let printed = printed.split_whitespace().collect::<Vec<_>>().join(" ");
        let body = printed.strip_prefix("message arrow_schema { ").and_then(|s| s.strip_suffix(" }")).unwrap();
        assert_eq!(body, columns, "{table}");
        let key_values: Vec<(String, Option<String>)> =
            metadata.key_value_metadata().unwrap().iter().map(|kv| (kv.key.clone(), kv.value.clone())).collect();
        assert!(key_values.contains(&("aiocop.schema_version".to_owned(), Some("1.2".to_owned()))), "{key_values:?}");
        assert!(key_values.contains(&("aiocop.table".to_owned(), Some(table.to_owned()))), "{key_values:?}");
        // Strings dictionary-encoded, pages zstd-compressed.
        for column in reader.metadata().row_group(0).columns() {
            assert_eq!(column.compression(), parquet::basic::Compression::ZSTD(Default::default()), "{table}");
        }
        let trace_id = reader.metadata().row_group(0).column(0);
        assert!(trace_id.dictionary_page_offset().is_some(), "{table}: trace_id is dictionary-encoded");
    }
}

#[test]
fn the_fleet_exports_as_partitioned_tables_with_absolute_times() {
    let dir = test_dir("tables-fleet");
    let (one, two) = write_fleet(&dir);
    let out = dir.join("out");
    let output = export(&out, &[&one, &two], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let summary = stderr(&output);
    assert!(summary.starts_with("aiocop-analyze: exported 2 traces (9 slices, 7 events, 3 samples) to "), "{summary}");
    assert_eq!(summary.lines().count(), 1);

    let files: Vec<String> =
        parquet_files(&out).iter().map(|f| f.strip_prefix(&out).unwrap().display().to_string()).collect();
    let start = 1_714_564_800_000_000_000u64;
    for table in ["events", "samples", "slices", "traces"] {
        assert!(files.contains(&format!("{table}/label=v1/host=web-1/4242-{start}.parquet")), "{files:?}");
        assert!(files.contains(&format!("{table}/label=v2/host=web-2/4242-{start}.parquet")), "{files:?}");
    }

    let slices = rows(&out, "slices");
    assert_eq!(slices.num_rows(), 9);
    // Files in path order: web-1's seven slices, then web-2's two.
    assert_eq!(ints(&slices, "slice_index"), [0, 1, 2, 3, 4, 5, 6, 0, 1]);
    let offsets_ms: Vec<i64> = ints(&slices, "start_offset_ns").iter().map(|ns| ns / MS as i64).collect();
    assert_eq!(offsets_ms, [100, 300, 500, 1000, 1500, 2000, 2500, 200, 400]);
    let starts = slices.column_by_name("start").unwrap().as_primitive::<TimestampNanosecondType>();
    assert_eq!(starts.value(3), (start + 1_000 * MS) as i64, "chunk 1's first slice, absolute");
    assert_eq!(strings(&slices, "trace_id")[0].as_deref(), Some(format!("web-1:4242:{start}").as_str()));
    assert_eq!(strings(&slices, "what")[3].as_deref(), Some("build_report"));
    assert_eq!(strings(&slices, "route"), vec![None; 9], "no context key `route` in the fleet");
    assert_eq!(ints(&slices, "sample_count"), [0, 0, 0, 3, 0, 0, 0, 0, 0]);
    let context = slices.column_by_name("context").unwrap().as_map();
    let endpoint = context.value(0);
    assert_eq!(endpoint.column(0).as_string::<i32>().value(0), "endpoint");
    assert_eq!(endpoint.column(1).as_string::<i32>().value(0), "/users");
    assert!(context.is_valid(2) && context.value(2).is_empty(), "a slice without context values");

    let events = rows(&out, "events");
    assert_eq!(events.num_rows(), 7);
    assert_eq!(ints(&events, "slice_index"), [0, 0, 1, 4, 5, 0, 1]);
    let entry_points: Vec<String> = strings(&events, "entry_point").into_iter().map(Option::unwrap).collect();
    assert_eq!(
        entry_points,
        [
            "shop/handlers.py:42:get_user",
            "shop/config.py:7:load",
            "shop/config.py:7:load",
            "socket.py:850:create_connection",
            "__init__.py:1200:emit",
            "shop/handlers.py:42:get_user",
            "shop/config.py:7:load",
        ]
    );
    let frames = events.column_by_name("frames").unwrap().as_list::<i32>();
    let first: Vec<String> = frames.value(0).as_string::<i32>().iter().map(|f| f.unwrap().to_owned()).collect();
    assert_eq!(first, ["shop/handlers.py:42:get_user", "shop/handlers.py:10:handle_request"]);
    let times = events.column_by_name("time").unwrap().as_primitive::<TimestampNanosecondType>();
    assert_eq!(times.value(0), (start + 100 * MS + 1_000) as i64, "the slice's start plus the event's offset");

    // The build_report slice's 300 ms split evenly over its three samples.
    let samples = rows(&out, "samples");
    assert_eq!(ints(&samples, "weight_ns"), [100 * MS as i64; 3]);
    // Untimed: each sample is one part of its slice, none known to wait in C code.
    assert_eq!(ints(&samples, "share"), [1; 3]);
    let native = samples.column_by_name("native").unwrap().as_boolean();
    assert_eq!(native.iter().collect::<Vec<_>>(), [Some(false); 3]);
    assert_eq!(ints(&samples, "slice_index"), [3, 3, 3]);

    let traces = rows(&out, "traces");
    assert_eq!(ints(&traces, "slices"), [7, 2]);
    assert_eq!(ints(&traces, "dropped_slices"), [2, 0]);
    assert_eq!(ints(&traces, "chunks"), [3, 2]);
    let footer = traces.column_by_name("footer_slices").unwrap().as_primitive::<Int64Type>();
    assert_eq!((footer.value(0), footer.value(1)), (7, 2));
}

#[test]
fn a_damaged_chunk_is_skipped_with_one_warning_and_the_rest_written() {
    let dir = test_dir("tables-damaged");
    let (one, _) = write_fleet(&dir);
    let info = aiocop_trace::TraceFile::open(&one).unwrap().chunk_info(1).unwrap();
    let mut bytes = fs::read(&one).unwrap();
    bytes[info.offset as usize + 20] ^= 0x40;
    let flipped = dir.join("flipped.bin");
    fs::write(&flipped, bytes).unwrap();
    let out = dir.join("out");
    let output = export(&out, &[&flipped], &["--quiet"]);
    assert_eq!(output.status.code(), Some(0));
    let warning = stderr(&output);
    let prefix = format!("aiocop-analyze: warning: '{}': chunk 1 is corrupt: its checksum is 0x", path(&flipped));
    assert!(warning.starts_with(&prefix), "{warning}");
    assert!(warning.ends_with("; using its 2 readable chunks\n"), "{warning}");
    assert_eq!(warning.lines().count(), 1);
    // Chunk 1 held s4 and s5; the other five slices are written.
    let slices = rows(&out, "slices");
    assert_eq!(slices.num_rows(), 5);
    let traces = rows(&out, "traces");
    assert_eq!(ints(&traces, "unreadable_chunks"), [1]);
    // The footer still says what was recorded: its chunk count is the file's.
    let footer = traces.column_by_name("footer_slices").unwrap().as_primitive::<Int64Type>();
    assert_eq!((footer.value(0), ints(&traces, "slices")[0]), (7, 5));
}

#[test]
fn a_trace_with_nothing_readable_leaves_no_file() {
    let dir = test_dir("tables-ruined");
    let (_, two) = write_fleet(&dir);
    let trace = aiocop_trace::TraceFile::open(&two).unwrap();
    let mut bytes = fs::read(&two).unwrap();
    for index in 0..trace.chunk_count() {
        bytes[trace.chunk_info(index).unwrap().offset as usize + 20] ^= 0x40;
    }
    let ruined = dir.join("ruined.bin");
    fs::write(&ruined, bytes).unwrap();
    let out = dir.join("out");
    let output = export(&out, &[&ruined], &[]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(message.starts_with(&format!("aiocop-analyze: '{}': chunk 0 is corrupt", path(&ruined))), "{message}");
    assert_eq!(message.lines().count(), 1, "{message}");
    assert_eq!(parquet_files(&out), Vec::<PathBuf>::new());
}

/// Strings are dictionary-encoded, and ints and times are not: their
/// values are mostly distinct (keys, starts, durations), and each of their
/// dictionaries filled to the page limit, held for the row group with its
/// hash table, before the writer fell back to plain pages, which made the
/// export's memory grow with the trace (70 MB for 1 M slices, 111 MB for 12 M).
#[test]
fn strings_are_dictionary_encoded_and_ints_and_times_are_not() {
    let dir = test_dir("tables-encodings");
    let (one, two) = write_fleet(&dir);
    let out = dir.join("out");
    assert_eq!(export(&out, &[&one, &two], &["--quiet"]).status.code(), Some(0));
    for table in ["slices", "events", "samples"] {
        let file = &parquet_files(&out.join(table))[0];
        let metadata = SerializedFileReader::new(fs::File::open(file).unwrap()).unwrap().metadata().clone();
        let group = metadata.row_group(0);
        for column in group.columns() {
            let name = column.column_path().string();
            let dictionary = column.dictionary_page_offset().is_some();
            let text = matches!(column.column_type(), parquet::basic::Type::BYTE_ARRAY);
            assert_eq!(dictionary, text, "{table}.{name}: dictionary {dictionary}");
        }
    }
}

/// A trace that fails does not silence the others: the files of a trace
/// with a damaged chunk are written, so its warning is said beside the error.
#[test]
fn the_warnings_of_the_traces_written_are_said_when_another_fails() {
    let dir = test_dir("tables-one-fails");
    let (one, two) = write_fleet(&dir);
    let damaged = |source: &Path, name: &str, chunks: std::ops::Range<usize>| {
        let trace = aiocop_trace::TraceFile::open(source).unwrap();
        let mut bytes = fs::read(source).unwrap();
        for index in chunks {
            bytes[trace.chunk_info(index).unwrap().offset as usize + 20] ^= 0x40;
        }
        let damaged = dir.join(name);
        fs::write(&damaged, bytes).unwrap();
        damaged
    };
    let flipped = damaged(&one, "flipped.bin", 1..2);
    let ruined = damaged(&two, "ruined.bin", 0..aiocop_trace::TraceFile::open(&two).unwrap().chunk_count());
    let out = dir.join("out");
    let output = export(&out, &[&flipped, &ruined], &["--quiet"]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    let lines: Vec<&str> = message.lines().collect();
    assert_eq!(lines.len(), 2, "{message}");
    let warning = format!("aiocop-analyze: warning: '{}': chunk 1 is corrupt", path(&flipped));
    assert!(lines[0].starts_with(&warning), "{message}");
    assert!(lines[1].starts_with(&format!("aiocop-analyze: '{}': chunk 0 is corrupt", path(&ruined))), "{message}");
    // The trace the warning is about was written, without its damaged chunk.
    assert_eq!(rows(&out, "slices").num_rows(), 5);
}

#[test]
fn a_directory_that_is_not_empty_is_refused_unless_overwrite() {
    let dir = test_dir("tables-overwrite");
    let (one, two) = write_fleet(&dir);
    let out = dir.join("out");
    fs::create_dir(&out).unwrap();
    fs::write(out.join("notes.txt"), "mine").unwrap();
    let output = export(&out, &[&one], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr(&output),
        format!(
            "aiocop-analyze: '{}': the output directory is not empty; give an empty or new one, or --overwrite to \
             replace its tables\n",
            path(&out)
        )
    );
    assert_eq!(parquet_files(&out), Vec::<PathBuf>::new());

    assert_eq!(export(&out, &[&one, &two], &["--overwrite", "-q"]).status.code(), Some(0));
    assert_eq!(rows(&out, "slices").num_rows(), 9);
    // Again, one trace: the tables replaced, not added to; the user's file kept.
    assert_eq!(export(&out, &[&two], &["--overwrite", "-q"]).status.code(), Some(0));
    assert_eq!(rows(&out, "slices").num_rows(), 2);
    assert_eq!(fs::read_to_string(out.join("notes.txt")).unwrap(), "mine");

    // A directory of the user's that shares a table's name (a project's
    // `tasks/` package) is neither removed nor written into.
    let _ = fs::remove_dir_all(out.join("tasks"));
    fs::create_dir(out.join("tasks")).unwrap();
    fs::write(out.join("tasks").join("__init__.py"), "def job(): pass\n").unwrap();
    let output = export(&out, &[&one], &["--overwrite", "-q"]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr(&output),
        format!(
            "aiocop-analyze: '{}': not written by an export; --overwrite replaces exported tables only (move it, or \
             give another directory)\n",
            path(&out.join("tasks").join("__init__.py"))
        )
    );
    assert_eq!(fs::read_to_string(out.join("tasks").join("__init__.py")).unwrap(), "def job(): pass\n");
    assert_eq!(rows(&out, "slices").num_rows(), 2, "nothing removed before the refusal");

    // A file where the directory should be.
    let output = export(&out.join("notes.txt"), &[&one], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("the output must be a directory"), "{}", stderr(&output));
}

/// Timed samples (format 1.3) carry the report's split of their slice: the
/// `share` (256ths, from the sample times) and `native` the report groups
/// and splits sampled slices by, so that a query over the export gives the
/// report's Loop time (docs/queries/loop_time.sql).
#[test]
fn timed_samples_carry_the_shares_and_native_flags_the_report_splits_by() {
    use aiocop_trace::records::{SampleTime, SamplingInfo};
    let dir = test_dir("tables-shares");
    let mut header = header(Some("v1"), "web-1", 100);
    *header.sampling = SamplingInfo { after_ns: 10 * MS, interval_ns: MS };
    let mut trace = TraceBuilder::new(header, 0);
    // A 45 ms C call from `encode`, its sample taken as it returns (its request
    // waited 40 ms), then `build` sampled at once: twice.
    for start_ns in [100 * MS, 200 * MS] {
        trace.slice(Slice {
            start_ns,
            duration_ns: 46 * MS,
            what: "build_report",
            samples: vec![vec![("shop/report.py", 12, "encode")], vec![("shop/report.py", 30, "build")]],
            sample_times: vec![
                SampleTime { taken_offset_ns: 45 * MS, waited_ns: 40 * MS },
                SampleTime { taken_offset_ns: 45 * MS + MS / 2, waited_ns: 0 },
            ],
            ..Slice::default()
        });
    }
    let file = trace.write(&dir.join("timed.bin"), Some(300 * MS));
    let out = dir.join("out");
    let output = export(&out, &[&file], &["--quiet"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    let samples = rows(&out, "samples");
    assert_eq!(ints(&samples, "weight_ns"), [45_494_505, 505_495, 45_494_505, 505_495]);
    assert_eq!(ints(&samples, "share"), [253, 3, 253, 3], "the weights in 256ths");
    let native = samples.column_by_name("native").unwrap().as_boolean();
    assert_eq!(native.iter().collect::<Vec<_>>(), [Some(true), Some(false), Some(true), Some(false)]);

    // The report splits the two slices' 92 ms by those shares, not by count:
    // 92 ms x 253/256 and x 3/256.
    let report = run([path(&file), "--format", "json", "--top", "0"]);
    assert_eq!(report.status.code(), Some(0), "{}", stderr(&report));
    let report: serde_json::Value = serde_json::from_str(&stdout(&report)).unwrap();
    let groups: Vec<(String, f64)> = report["loop_time"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["key"].as_str().unwrap().to_owned(), g["busy_ms"].as_f64().unwrap()))
        .collect();
    let entry_points: Vec<String> = strings(&samples, "entry_point").into_iter().map(Option::unwrap).collect();
    assert_eq!(groups, [(entry_points[0].clone(), 90.922), (entry_points[1].clone(), 1.078)]);
}

/// A sample's request that waited while the loop thread did not run (a
/// loaded machine) is no native code: with the loop thread's CPU time over
/// each wait (format 1.4), `native` says whether it ran C code all along.
/// Without (a 1.3 trace), the wall-clock wait decides, and the report says
/// so once.
#[test]
fn native_is_told_by_the_loop_threads_cpu_time_when_the_trace_has_it() {
    use aiocop_trace::records::{SampleTime, SamplingInfo};
    let dir = test_dir("tables-native-cpu");
    let write = |name: &str, sample_cpu: Vec<u64>| {
        let mut header = header(Some("v1"), "web-1", 100);
        *header.sampling = SamplingInfo { after_ns: 2 * MS, interval_ns: MS };
        let mut trace = TraceBuilder::new(header, 0);
        // Both samples waited 9 ms: `sort`'s while the thread ran (9 ms of
        // CPU), `spin`'s while it waited for a CPU (0.2 ms of CPU).
        trace.slice(Slice {
            start_ns: 100 * MS,
            duration_ns: 20 * MS,
            what: "handle",
            samples: vec![vec![("app.py", 3, "sort")], vec![("app.py", 9, "spin")]],
            sample_times: vec![
                SampleTime { taken_offset_ns: 10 * MS, waited_ns: 9 * MS },
                SampleTime { taken_offset_ns: 20 * MS, waited_ns: 9 * MS },
            ],
            sample_cpu,
            ..Slice::default()
        });
        trace.write(&dir.join(name), Some(300 * MS))
    };
    let via = |file: &Path| {
        let report = run([path(file), "--by", "function", "--format", "json", "--top", "0"]);
        assert_eq!(report.status.code(), Some(0), "{}", stderr(&report));
        let report: serde_json::Value = serde_json::from_str(&stdout(&report)).unwrap();
        let mut via: Vec<(String, serde_json::Value)> = report["loop_time"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| (g["key"].as_str().unwrap().to_owned(), g["via"].clone()))
            .collect();
        via.sort_by(|a, b| a.0.cmp(&b.0));
        (via, report["loop_time"]["traces_with_wall_clock_native"].clone())
    };
    let with_cpu = write("cpu.bin", vec![9 * MS, MS / 5]);
    let (groups, wall_clock) = via(&with_cpu);
    assert_eq!(
        groups,
        [
            ("app.py:sort".into(), serde_json::json!(["samples", "native"])),
            ("app.py:spin".into(), serde_json::json!(["samples"]))
        ]
    );
    assert!(wall_clock.is_null(), "{wall_clock}");
    let out = dir.join("out");
    let output = export(&out, &[&with_cpu], &["--quiet"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let native = rows(&out, "samples").column_by_name("native").unwrap().as_boolean().clone();
    assert_eq!(native.iter().collect::<Vec<_>>(), [Some(true), Some(false)]);
    let table = stdout(&run([path(&with_cpu)]));
    assert!(!table.contains("Native marked by the wall clock"), "{table}");

    // No CPU times: both waited over two intervals, both are marked, and
    // the report says why once.
    let without_cpu = write("wall.bin", vec![]);
    let (groups, wall_clock) = via(&without_cpu);
    assert!(groups.iter().all(|(_, via)| via == &serde_json::json!(["samples", "native"])), "{groups:?}");
    assert_eq!(wall_clock, 1);
    let table = stdout(&run([path(&without_cpu)]));
    assert_eq!(
        table.matches("Native marked by the wall clock: the trace's samples carry no CPU times").count(),
        1,
        "{table}"
    );
}
