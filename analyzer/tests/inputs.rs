//! Inputs, bad inputs, `info`, outputs and exit codes of the built binary.

mod common;

use aiocop_trace::format::FORMAT_MINOR;
use aiocop_trace::TraceFile;
use common::*;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn json_of(output: &std::process::Output) -> Value {
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(output));
    serde_json::from_str(&stdout(output)).expect("JSON")
}

fn totals_slices(output: &std::process::Output) -> u64 {
    json_of(output)["totals"]["slices"].as_u64().unwrap()
}

/// Asserts exit code 2 and exactly one stderr line, `aiocop-analyze: <message>`.
fn assert_unusable(output: &std::process::Output, message: &str) {
    assert_eq!(output.status.code(), Some(2), "stdout: {}", stdout(output));
    assert_eq!(stderr(output), format!("aiocop-analyze: {message}\n"));
    assert_eq!(stdout(output), "");
}

fn edited(source: &Path, target: PathBuf, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut bytes = fs::read(source).unwrap();
    edit(&mut bytes);
    fs::write(&target, bytes).unwrap();
    target
}

#[test]
fn directories_globs_and_repeated_files() {
    let dir = test_dir("inputs");
    let (one, two) = write_fleet(&dir);
    fs::write(dir.join("README.txt"), "not a trace").unwrap();
    fs::create_dir(dir.join("nested")).unwrap();
    fs::copy(&one, dir.join("nested/web-1.bin.4243")).unwrap();

    // A directory: every trace inside, recursively, whatever its name; not the README.
    let output = run([path(&dir), "--format", "json"]);
    let report = json_of(&output);
    assert_eq!(report["totals"]["traces"], 3);
    let paths: Vec<&str> = report["traces"].as_array().unwrap().iter().map(|t| t["path"].as_str().unwrap()).collect();
    assert_eq!(paths, [path(&dir.join("nested/web-1.bin.4243")), path(&one), path(&two)]);
    // A quoted glob; a file named twice is read once.
    let pattern = format!("{}/web-*.bin", path(&dir));
    assert_eq!(json_of(&run([&pattern, path(&one), "--format", "json"]))["totals"]["traces"], 2);
    let braces = format!("{}/web-{{1,2}}.bin", path(&dir));
    assert_eq!(totals_slices(&run([&braces, "--format", "json"])), 9);
    assert_eq!(totals_slices(&run([path(&one), path(&one), "--format", "json"])), 7);
}

#[test]
fn missing_paths_empty_directories_and_unmatched_patterns() {
    let dir = test_dir("missing");
    let missing = dir.join("nope.bin");
    assert_unusable(&run([path(&missing)]), &format!("'{}': no such file or directory", path(&missing)));
    fs::create_dir(dir.join("empty")).unwrap();
    fs::write(dir.join("empty/notes.txt"), "x").unwrap();
    let empty = dir.join("empty");
    assert_unusable(&run([path(&empty)]), &format!("'{}': no aiocop trace in this directory", path(&empty)));
    let pattern = format!("{}/*.bin", path(&dir));
    assert_unusable(&run([&pattern]), &format!("'{pattern}': no file matches this pattern"));
}

#[test]
fn files_that_are_not_traces() {
    let dir = test_dir("not-traces");
    let (one, _) = write_fleet(&dir);
    let empty = dir.join("empty.bin");
    fs::write(&empty, b"").unwrap();
    assert_unusable(&run([path(&empty)]), &format!("'{}' is empty, not an aiocop trace", path(&empty)));

    // Random bytes, from a fixed seed.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let noise = dir.join("noise.bin");
    fs::write(&noise, &random).unwrap();
    assert_unusable(
        &run([path(&noise)]),
        &format!("'{}' does not look like an aiocop trace (bad magic)", path(&noise)),
    );

    let png = dir.join("picture.png");
    fs::write(&png, b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01").unwrap();
    assert_unusable(
        &run([path(&png)]),
        &format!("'{}' does not look like an aiocop trace (bad magic; it looks like a PNG image)", path(&png)),
    );
    let report = dir.join("report.json");
    fs::write(&report, stdout(&run([path(&one), "--format", "json"]))).unwrap();
    assert_unusable(
        &run([path(&report)]),
        &format!(
            "'{}' does not look like an aiocop trace (bad magic; it looks like JSON (an aiocop report?))",
            path(&report)
        ),
    );

    // Every unusable input is named; the run fails.
    let output = run([path(&empty), path(&one), path(&png)]);
    assert_eq!(output.status.code(), Some(2));
    let lines: Vec<String> = stderr(&output).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].starts_with(&format!("aiocop-analyze: '{}' is empty", path(&empty))));
    assert!(lines[1].starts_with(&format!("aiocop-analyze: '{}' does not look like", path(&png))));
}

#[test]
fn format_versions() {
    let dir = test_dir("versions");
    let (one, _) = write_fleet(&dir);
    let newer_major = edited(&one, dir.join("major.bin"), |b| b[8..10].copy_from_slice(&2u16.to_le_bytes()));
    assert_unusable(
        &run([path(&newer_major)]),
        &format!(
            "'{}' is trace format 2.{FORMAT_MINOR}, newer than this build of aiocop reads (format 1.x): upgrade aiocop to read it",
            path(&newer_major)
        ),
    );
    let older_major = edited(&one, dir.join("old.bin"), |b| b[8..10].copy_from_slice(&0u16.to_le_bytes()));
    assert_eq!(run([path(&older_major)]).status.code(), Some(2));

    // A newer minor reads, with a warning.
    let newer_minor =
        edited(&one, dir.join("minor.bin"), |b| b[10..12].copy_from_slice(&(FORMAT_MINOR + 1).to_le_bytes()));
    let output = run([path(&newer_minor), "--format", "json"]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        stderr(&output),
        format!(
            "aiocop-analyze: warning: '{}' is trace format 1.{}, newer than this build reads (1.{FORMAT_MINOR}): what it adds is skipped\n",
            path(&newer_minor),
            FORMAT_MINOR + 1
        )
    );
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(
        (report["totals"]["slices"].as_u64(), report["traces"][0]["format_version"].as_str()),
        (Some(7), Some(format!("1.{}", FORMAT_MINOR + 1).as_str()))
    );
}

/// Worker 1's chunk frames: (start, end) byte offsets, and the file's length.
fn chunk_frames(trace: &Path) -> (Vec<(u64, u64)>, u64) {
    let file = TraceFile::open(trace).unwrap();
    let frames = (0..file.chunk_count())
        .map(|i| {
            let info = file.chunk_info(i).unwrap();
            (info.offset, info.offset + 16 + u64::from(info.payload_len))
        })
        .collect();
    (frames, file.file_len())
}

#[test]
fn a_file_cut_at_any_byte_is_an_error_or_a_warning_never_a_crash() {
    let dir = test_dir("cut");
    let (one, _) = write_fleet(&dir);
    let (frames, len) = chunk_frames(&one);
    let header_end = frames[0].0;
    let bytes = fs::read(&one).unwrap();
    let cut = dir.join("cut.bin");
    // Slices per chunk in worker 1: 3, 2, 2.
    let slices_before = |whole: usize| [0, 3, 5, 7][whole];
    for at in 0..=len {
        fs::write(&cut, &bytes[..at as usize]).unwrap();
        let output = run([path(&cut), "--format", "json"]);
        let name = path(&cut);
        if at == 0 {
            assert_unusable(&output, &format!("'{name}' is empty, not an aiocop trace"));
        } else if at < 16 {
            assert_unusable(
                &output,
                &format!("'{name}' ends inside its file header ({at} bytes): it is not a complete aiocop trace"),
            );
        } else if at < header_end {
            assert_unusable(
                &output,
                &format!("'{name}' ends inside its header frame ({at} bytes): it is not a complete aiocop trace"),
            );
        } else if at < len {
            let whole = frames.iter().filter(|(_, end)| *end <= at).count();
            assert_eq!(output.status.code(), Some(0), "cut at {at}: {}", stderr(&output));
            let chunks = if whole == 1 { "1 readable chunk".to_owned() } else { format!("{whole} readable chunks") };
            assert_eq!(
                stderr(&output),
                format!(
                    "aiocop-analyze: warning: '{name}': it was cut short (no footer: the recording did not stop \
                     cleanly, or is still going on); using its {chunks}\n"
                ),
                "cut at {at}"
            );
            let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
            assert_eq!(report["totals"]["slices"], slices_before(whole), "cut at {at}");
            assert_eq!(report["traces"][0]["cut_short"], true);
        } else {
            assert_eq!(output.status.code(), Some(0));
            assert_eq!(stderr(&output), "");
        }
    }
}

#[test]
fn damaged_chunks_are_skipped_with_a_warning() {
    let dir = test_dir("damaged");
    let (one, two) = write_fleet(&dir);
    let (frames, _) = chunk_frames(&one);
    // A flipped byte in chunk 1's payload: its checksum no longer matches.
    let flipped = edited(&one, dir.join("flipped.bin"), |b| b[frames[1].0 as usize + 20] ^= 0x40);
    let output = run([path(&flipped), "--format", "json"]);
    assert_eq!(output.status.code(), Some(0));
    let warning = stderr(&output);
    let prefix = format!("aiocop-analyze: warning: '{}': chunk 1 is corrupt: its checksum is 0x", path(&flipped));
    assert!(warning.starts_with(&prefix), "{warning}");
    assert!(warning.ends_with("; using its 2 readable chunks\n"), "{warning}");
    assert_eq!(warning.lines().count(), 1);
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    // Chunk 1 held s4 (CPU) and s5 (socket connect).
    assert_eq!(report["totals"]["slices"], 5);
    assert_eq!(report["totals"]["cpu_blocking"], 0);
    assert_eq!(report["traces"][0]["unreadable_chunks"], 1);
    let keys: Vec<&str> = report["groups"].as_array().unwrap().iter().map(|g| g["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["shop/handlers.py:42:get_user", "shop/config.py:7:load", "__init__.py:1200:emit"]);

    // Every chunk of a file damaged: nothing to report from it.
    let (frames, _) = chunk_frames(&two);
    let ruined = edited(&two, dir.join("ruined.bin"), |b| {
        for (start, _) in &frames {
            b[*start as usize + 20] ^= 0x40;
        }
    });
    let output = run([path(&ruined)]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(message.starts_with(&format!("aiocop-analyze: '{}': chunk 0 is corrupt", path(&ruined))), "{message}");
    assert!(message.ends_with("; no chunk of it could be read (it has 2)\n"), "{message}");
}

#[test]
fn an_absurd_length_field_is_refused_without_allocating_it() {
    let dir = test_dir("absurd");
    let (one, _) = write_fleet(&dir);
    let (frames, _) = chunk_frames(&one);
    // In the first chunk's frame: nothing after the header is readable.
    let at = frames[0].0 as usize;
    let absurd = edited(&one, dir.join("absurd.bin"), |b| b[at + 4..at + 8].copy_from_slice(&u32::MAX.to_le_bytes()));
    let output = run(["--format", "json", path(&absurd)]);
    assert_eq!(output.status.code(), Some(2), "stderr: {}", stderr(&output));
    assert!(stderr(&output).contains("declares a payload length of 4294967295 bytes"), "{}", stderr(&output));
    // In a later chunk's frame: the chunks before it are reported, with a warning.
    let at = frames[1].0 as usize;
    let later = edited(&one, dir.join("later.bin"), |b| b[at + 4..at + 8].copy_from_slice(&u32::MAX.to_le_bytes()));
    let output = run(["--format", "json", path(&later)]);
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));
    assert!(stderr(&output).contains("damaged frame"), "{}", stderr(&output));
    assert!(stderr(&output).contains("declares a payload length of 4294967295 bytes"), "{}", stderr(&output));
    assert_eq!(stderr(&output).lines().count(), 1);
    assert!(totals_slices(&output) > 0);
}

#[test]
fn info_describes_each_trace() {
    let dir = test_dir("info");
    let (one, two) = write_fleet(&dir);
    let output = run(["info", path(&one)]);
    assert_eq!(output.status.code(), Some(0));
    let file = TraceFile::open(&one).unwrap();
    let (file_len, compressed, raw) = (file.file_len(), file.compressed_bytes(), file.raw_bytes());
    assert_eq!(
        stdout(&output),
        format!(
            "'{}'
  format:      1.{FORMAT_MINOR}, complete
  recorded by: aiocop 1.3.0, Python 3.12.1 on linux, host web-1, pid 4242
  command:     app.py --serve
  label:       v1
  started:     2024-05-01T12:00:00.000Z
  threshold:   100 ms; stacks of up to 20 frames; context values recorded
  slices:      7: 3 over the threshold, 4 with blocking I/O, 2 dropped by the recorder
  events:      5 blocking events, 0 more past 50 in a slice; 3 CPU samples
  time span:   first slice at 0.100 s, last one ends at 2.501 s; recorded for 3.000 s
  chunks:      3, 0 unreadable
  size:        {file_len} bytes; chunks {compressed} bytes compressed, {raw} raw ({:.1}x)
  definitions: 29 strings, 14 frames, 7 stacks
  holds:       not redacted: the command lines with their arguments, host name, sys.path, the arguments of blocking calls (file paths, hosts, subprocess arguments), context provider values, source paths and function names; record with --redact to leave secrets out
",
            path(&one),
            raw as f64 / compressed as f64
        )
    );

    // JSON, for a whole file and one cut inside its last chunk.
    let (frames, _) = chunk_frames(&two);
    let cut = dir.join("cut.bin");
    fs::write(&cut, &fs::read(&two).unwrap()[..frames[1].1 as usize - 1]).unwrap();
    let output = run(["info", path(&two), path(&cut), "--format", "json"]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        stderr(&output),
        format!(
            "aiocop-analyze: warning: '{}': it was cut short (no footer: the recording did not stop cleanly, or is \
             still going on); using its 1 readable chunk\n",
            path(&cut)
        )
    );
    let info: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let whole = &info["traces"][0];
    assert_eq!(whole["path"], path(&two));
    assert_eq!(whole["label"], "v2");
    assert_eq!(whole["slices"], 2);
    assert_eq!(whole["events"], 2);
    assert_eq!(whole["chunks"], 2);
    assert_eq!(whole["cut_short"], false);
    assert_eq!(
        whole["footer"],
        serde_json::json!({"slices": 2, "events": 2, "dropped_slices": 0, "chunks": 2, "end_s": 1.0})
    );
    assert_eq!(whole["first_slice_s"], 0.2);
    assert_eq!(whole["last_end_s"], 0.403);
    assert_eq!(whole["duration_s"], 1.0);
    let cut = &info["traces"][1];
    assert_eq!(
        (cut["cut_short"].as_bool(), cut["chunks"].as_u64(), cut["slices"].as_u64()),
        (Some(true), Some(1), Some(1))
    );
    assert_eq!(cut["footer"], Value::Null);
    assert_eq!(cut["duration_s"], 0.31);
}

#[test]
fn output_to_a_file_or_stdout() {
    let dir = test_dir("output");
    let (one, _) = write_fleet(&dir);
    let target = dir.join("report.csv");
    let output = run([path(&one), "--format", "csv", "-o", path(&target)]);
    assert_eq!((output.status.code(), stdout(&output), stderr(&output)), (Some(0), String::new(), String::new()));
    let to_stdout = run([path(&one), "--format", "csv", "-o", "-"]);
    assert_eq!(fs::read_to_string(&target).unwrap(), stdout(&to_stdout));
    assert!(stdout(&to_stdout).starts_with("rank,key,"));
    let nowhere = dir.join("no/such/dir/report.csv");
    let output = run([path(&one), "-o", path(&nowhere)]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).starts_with(&format!("aiocop-analyze: cannot write '{}': ", path(&nowhere))));
}

#[test]
fn colour_only_when_asked_or_on_a_terminal() {
    let dir = test_dir("colour");
    let (one, _) = write_fleet(&dir);
    // stdout is a pipe here: no colour by default.
    assert!(!stdout(&run([path(&one)])).contains('\x1b'));
    let coloured = stdout(&run([path(&one), "--color", "always"]));
    assert!(coloured.contains("\x1b[1mExample traces\x1b[0m"));
    // `high` in bold red.
    assert!(
        coloured.contains("\x1b[38;5;9m") || coloured.contains("\x1b[31m") || coloured.contains("\x1b[91m"),
        "{coloured}"
    );
    assert!(!stdout(&run([path(&one), "--color", "never"])).contains('\x1b'));
}

#[test]
fn a_closed_stdout_ends_quietly() {
    let dir = test_dir("pipe");
    // Thousands of entry points: more output than a pipe buffers.
    let mut builder = TraceBuilder::new(header(None, "h", 100), 0);
    let names: Vec<String> = (0..3000).map(|i| format!("handler_{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        builder.slice(Slice {
            start_ns: i as u64 * MS,
            duration_ns: MS,
            what: "w",
            events: vec![("open", "f", vec![(HANDLERS, i as i32, name.as_str())])],
            ..Slice::default()
        });
    }
    let trace = builder.write(&dir.join("many.bin"), Some(4_000 * MS));
    let mut child = Command::new(env!("CARGO_BIN_EXE_aiocop-analyze"))
        .args([path(&trace), "--top", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(stderr(&output), "");
}

#[test]
fn threads_do_not_change_the_report() {
    let dir = test_dir("threads");
    let mut builder = TraceBuilder::new(header(Some("big"), "h", 10), 0);
    let files = ["/srv/app/src/a.py", "/srv/app/src/b.py", "/srv/app/src/c.py"];
    let events = ["open", "time.sleep", "os.stat", "socket.socket.recv"];
    let mut start = 0;
    for chunk in 0..40u64 {
        for i in 0..50u64 {
            let n = chunk * 50 + i;
            start += 1 + n % 7 * MS;
            let events: Vec<_> = (0..n % 3)
                .map(|k| {
                    (
                        events[((n + k) % 4) as usize],
                        "x",
                        vec![(files[((n * 7 + k) % 3) as usize], (n % 5) as i32, "f")],
                    )
                })
                .collect();
            let samples = if events.is_empty() { vec![vec![(files[(n % 3) as usize], 9, "cpu")]] } else { vec![] };
            builder.slice(Slice {
                start_ns: start,
                duration_ns: (n * 7919 % 30) * MS,
                what: "w",
                events,
                samples,
                ..Slice::default()
            });
        }
        builder.new_chunk();
    }
    let trace = builder.write(&dir.join("big.bin"), Some(start + MS));
    let report = |threads: &str| {
        let output = run([path(&trace), "--format", "json", "-j", threads]);
        assert_eq!(output.status.code(), Some(0));
        stdout(&output)
    };
    let one = report("1");
    assert_eq!(report("2"), one);
    assert_eq!(report("7"), one);
    let parsed: Value = serde_json::from_str(&one).unwrap();
    assert_eq!(parsed["totals"]["slices"], 2000);
    assert_eq!(parsed["traces"][0]["chunks"], 41);
}

#[test]
fn usage_errors_version_and_help() {
    let usage = run(["t.bin", "--by", "file"]);
    assert_eq!(usage.status.code(), Some(2));
    assert!(stderr(&usage).contains("invalid value 'file' for '--by <KEY>'"), "{}", stderr(&usage));
    assert_unusable(&run(["t.bin", "--since", "5", "--until", "1"]), "--since 5 is not before --until 1");
    let dir = test_dir("usage");
    let (one, _) = write_fleet(&dir);
    // Each bad pattern names the option it was given to.
    for (option, prefix) in [("--ignore", "--ignore 'a[b'"), ("--label", "--label 'a[b'")] {
        let bad_glob = run([path(&one), option, "a[b"]);
        assert_eq!(bad_glob.status.code(), Some(2));
        assert!(stderr(&bad_glob).starts_with(&format!("aiocop-analyze: {prefix}: not a valid pattern: ")));
    }
    // A negative number is the option's bad value, not an unknown argument;
    // nan once passed --min-route-change-ms and turned the routes' gate off.
    for args in [
        vec!["-j", "-1"],
        vec!["--top", "-1"],
        vec!["--threshold-ms", "-1"],
        vec!["--since", "-1"],
        vec!["diff", "--min-route-change-ms", "nan"],
        vec!["diff", "--min-route-change-ms", "-1"],
        vec!["diff", "--min-count", "-1"],
    ] {
        let option = match args[args.len() - 2] {
            "-j" => "--threads",
            named => named,
        };
        let mut with_traces = args.clone();
        with_traces.push(path(&one));
        if args[0] == "diff" {
            with_traces.push(path(&one));
        }
        let bad = run(&with_traces);
        assert_eq!(bad.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&bad).contains(&format!("invalid value '{}' for '{option}", args[args.len() - 1])),
            "{}",
            stderr(&bad)
        );
    }
    let bad_input = run([&format!("{}/a[b", dir.display())]);
    assert!(stderr(&bad_input).starts_with("aiocop-analyze: trace pattern '"), "{}", stderr(&bad_input));
    assert_unusable(&run([path(&one), "--label", "v9"]), "no trace has a label matching 'v9' (labels: v1)");
    let nothing = run::<[&str; 0], &str>([]);
    assert_eq!(nothing.status.code(), Some(2));
    assert!(stderr(&nothing).contains("Usage: aiocop-analyze"));

    let version = run(["--version"]);
    assert_eq!((version.status.code(), stdout(&version)), (Some(0), "aiocop-analyze 1.3.0\n".to_owned()));
    let help = run(["--help"]);
    assert_eq!(help.status.code(), Some(0));
    let help = stdout(&help);
    for part in ["Examples:", "Exit codes:", "context:KEY", "CPU-blocking slices", "--app-root", "Sort columns"] {
        assert!(help.contains(part), "--help lacks {part}");
    }
    assert!(stdout(&run(["info", "--help"])).contains("aiocop-analyze info traces/ --format json"));
}

#[test]
fn info_and_the_report_name_the_process_and_the_command_it_belongs_to() {
    let dir = test_dir("process");
    let mut header = header(Some("v1"), "web-1", 100);
    header.process.0 = aiocop_trace::records::ProcessInfo {
        parent_pid: 4241,
        root_command: vec!["uvicorn".to_owned(), "app:app".to_owned(), "--workers".to_owned(), "2".to_owned()],
        role: "spawn child".to_owned(),
        sys_path: vec!["/srv/app".to_owned()],
    };
    let mut builder = TraceBuilder::new(header, 0);
    builder.slice(Slice { start_ns: 1_000, duration_ns: 2_000, ..Slice::default() });
    let trace = builder.write(&dir.join("worker.bin"), Some(10_000));
    let info = stdout(&run(["info", path(&trace)]));
    assert!(info.contains("\n  process:     spawn child of pid 4241, for: uvicorn app:app --workers 2\n"), "{info}");
    let report = stdout(&run([path(&trace)]));
    assert!(report.contains("pid 4242 (spawn child of pid 4241)"), "{report}");
    let json = json_of(&run(["info", path(&trace), "--format", "json"]));
    assert_eq!(json["traces"][0]["role"], "spawn child");
    assert_eq!(json["traces"][0]["root_command"][0], "uvicorn");
}
