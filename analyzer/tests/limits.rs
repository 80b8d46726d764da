//! Hostile and special inputs: crafted traces that decompress or decode to
//! gigabytes stay within `--max-memory` whatever the threads (peak RSS of
//! the real binary, measured by `/usr/bin/time`), special files are refused
//! as such, a footer that lies is not believed, and decode errors are said
//! in words.

mod common;

use aiocop_trace::format::{FrameHeader, FrameKind, MAX_RAW_LEN};
use aiocop_trace::records::TraceFooter;
use aiocop_trace::TraceWriter;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What the process holds beyond the budget: its code and heap before
/// reading (about 10 MiB), and per thread its zstd context and reused
/// buffers (two, up to `aiocop_trace::budget::RETAINED_BUFFER_BYTES`, 2 MiB,
/// each) and stack. `-j 32` on this margin is the analyzer's documented one.
const MARGIN_BYTES: u64 = (64 << 20) + 32 * (5 << 20);

/// A trace of `header` and then `chunks` raw chunk payloads (each
/// compressed and checksummed here, so that any bytes can be a chunk).
fn crafted_trace(path: &Path, chunks: &[&[u8]]) -> PathBuf {
    let mut bytes = Vec::new();
    TraceWriter::new(&mut bytes, &header(None, "crafted", 10)).expect("a header");
    // The same payload is compressed once (they are slow to compress).
    let mut frames: Vec<(usize, Vec<u8>)> = Vec::new();
    for raw in chunks {
        match frames.iter().find(|(ptr, _)| *ptr == raw.as_ptr() as usize) {
            Some((_, frame)) => bytes.extend_from_slice(frame),
            None => {
                let frame = frame(FrameKind::Chunk, raw);
                bytes.extend_from_slice(&frame);
                frames.push((raw.as_ptr() as usize, frame));
            }
        }
    }
    std::fs::write(path, bytes).expect("write the crafted trace");
    path.to_path_buf()
}

/// A frame of `kind` holding `raw`, compressed and checksummed.
fn frame(kind: FrameKind, raw: &[u8]) -> Vec<u8> {
    let payload = zstd::bulk::compress(raw, 1).expect("compress");
    let header = FrameHeader {
        kind: kind as u8,
        codec: 1,
        payload_len: payload.len() as u32,
        raw_len: raw.len() as u32,
        crc32: crc32fast::hash(&payload),
    };
    let mut frame = header.to_bytes().to_vec();
    frame.extend_from_slice(&payload);
    frame
}

/// The largest chunk a reader accepts, holding only pure slices (11 zero
/// bytes each): legal, and cheap to visit, but 256 MiB once decompressed.
fn maximal_chunk_of_slices() -> Vec<u8> {
    let slices = (MAX_RAW_LEN as u64 - 16) / 11;
    let mut raw = vec![0u8, 0, 0, 0, 253]; // no strings, frames, stacks; base 0; a u64 count
    raw.extend_from_slice(&slices.to_le_bytes());
    raw.resize(raw.len() + slices as usize * 11 + 2, 0); // the slices, dropped 0, no frame names
    raw
}

/// A chunk defining string 0 as `len` bytes of 'a': legal, and as large
/// decompressed as decoded.
fn chunk_of_one_string(len: usize) -> Vec<u8> {
    let mut raw = vec![1u8, 0, 253]; // one string, id 0, a u64 length
    raw.extend_from_slice(&(len as u64).to_le_bytes());
    raw.resize(raw.len() + len, b'a');
    raw.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // frames, stacks, base, slices, dropped, frame names
    raw
}

/// Runs the binary under `/usr/bin/time`: its output, and its peak RSS in bytes.
fn run_measured(args: &[&str]) -> (std::process::Output, u64) {
    let output = Command::new("/usr/bin/time")
        .args(["-f", "peak_rss_kb=%M", env!("CARGO_BIN_EXE_aiocop-analyze")])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("/usr/bin/time runs aiocop-analyze {args:?} (install the time package): {e}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let kb: u64 = stderr
        .lines()
        .find_map(|line| line.strip_prefix("peak_rss_kb="))
        .and_then(|kb| kb.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS in: {stderr}"));
    (output, kb * 1024)
}

fn errors(output: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|line| !line.starts_with("peak_rss_kb=") && !line.starts_with("Command exited"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn maximal_chunks_are_read_within_the_memory_limit_on_32_threads() {
    let dir = test_dir("maximal_chunks");
    let chunk = maximal_chunk_of_slices();
    let trace = crafted_trace(&dir.join("maximal.bin"), &[chunk.as_slice(); 8]);
    assert!(std::fs::metadata(&trace).unwrap().len() < 1 << 20, "the bomb is small on disk");
    let limit: u64 = 512 << 20;
    // Eight 256 MiB chunks at once would take 2 GiB: the budget lets two in at a time.
    let (output, peak) = run_measured(&[path(&trace), "-j", "32", "--max-memory", "512M", "--format", "json"]);
    assert_eq!(output.status.code(), Some(0), "{:?}", errors(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["totals"]["slices"], 8 * ((MAX_RAW_LEN as u64 - 16) / 11));
    assert!(peak < limit + MARGIN_BYTES, "peak RSS {} MiB over the limit and margin", peak >> 20);
}

#[test]
fn huge_legal_strings_are_refused_at_the_memory_limit_with_one_line() {
    let dir = test_dir("huge_strings");
    let chunk = chunk_of_one_string(250_000_000);
    let trace = crafted_trace(&dir.join("strings.bin"), &[chunk.as_slice(); 8]);
    assert!(std::fs::metadata(&trace).unwrap().len() < 1 << 20, "the bomb is small on disk");
    let limit: u64 = 512 << 20;
    let out = dir.join("out");
    let out = path(&out);
    for command in [&["report"][..], &["info"], &["timeline", "-o", out], &["flamegraph", "-o", out]] {
        let mut args = command.to_vec();
        args.extend([path(&trace), "-j", "32", "--max-memory", "512M"]);
        let (output, peak) = run_measured(&args);
        assert_eq!(output.status.code(), Some(2), "{command:?}");
        let errors = errors(&output);
        assert_eq!(errors.len(), 1, "{command:?}: {errors:?}");
        let message = &errors[0];
        assert!(message.starts_with(&format!("aiocop-analyze: '{}': chunk ", path(&trace))), "{message}");
        assert!(message.contains("over the memory limit of 512.0 MiB: raise --max-memory"), "{message}");
        assert!(peak < limit + MARGIN_BYTES, "{command:?}: peak RSS {} MiB over the limit and margin", peak >> 20);
    }
    // Both sides of a diff share one budget.
    let small = crafted_trace(&dir.join("small.bin"), &[chunk_of_one_string(200_000_000).as_slice()]);
    let (output, peak) = run_measured(&["diff", path(&small), path(&small), "-j", "32", "--max-memory", "300M"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(errors(&output)[0].contains("over the memory limit of 300.0 MiB"), "{:?}", errors(&output));
    assert!(peak < (300 << 20) + MARGIN_BYTES, "diff: peak RSS {} MiB", peak >> 20);
}

#[test]
fn a_files_definitions_are_counted_only_until_it_is_closed() {
    // Six files of 60 MB of strings each: 360 MB of definitions in all, but
    // a report or info holds one file's at a time (its dictionary goes with it).
    let dir = test_dir("definitions_per_file");
    let chunk = chunk_of_one_string(60_000_000);
    let files: Vec<PathBuf> =
        (0..6).map(|i| crafted_trace(&dir.join(format!("{i}.bin")), &[chunk.as_slice()])).collect();
    let mut args: Vec<&str> = vec!["info", "-j", "1", "--max-memory", "256M"];
    args.extend(files.iter().map(|f| path(f)));
    let (output, peak) = run_measured(&args);
    assert_eq!(output.status.code(), Some(0), "{:?}", errors(&output));
    assert!(peak < (256 << 20) + MARGIN_BYTES, "peak RSS {} MiB", peak >> 20);
    // Too little for one file: one line, about the file that needed more,
    // not one for each file refused after it.
    args[4] = "100M";
    let (output, _) = run_measured(&args);
    assert_eq!(output.status.code(), Some(2));
    let errors = errors(&output);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("over the memory limit of 100.0 MiB"), "{errors:?}");
}

#[test]
fn special_files_are_not_regular_files_and_a_fifo_does_not_hang() {
    let dir = test_dir("special_files");
    let fifo = dir.join("fifo.bin");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    for (file, kind) in [
        (path(&fifo), "a FIFO"),
        ("/dev/zero", "a character device"),
        ("/proc/self/status", "a file whose size is not known until it is read"),
    ] {
        let output = run([file]);
        assert_eq!(output.status.code(), Some(2), "{file}");
        let message = stderr(&output);
        assert_eq!(
            message.lines().next().unwrap(),
            format!(
                "aiocop-analyze: '{file}' is not a regular file but {kind}{}",
                message.split(kind).nth(1).unwrap().lines().next().unwrap()
            )
        );
        assert!(message.contains("a trace is read from a file"), "{message}");
        assert_eq!(message.lines().count(), 1, "{message}");
    }
    // A shell's pipe: `aiocop-analyze <(cat trace.bin)`.
    let trace = common::TraceBuilder::new(header(None, "web-1", 10), 0)
        .slice(Slice { duration_ns: MS, what: "main", ..Slice::default() })
        .write(&dir.join("t.bin"), Some(10 * MS));
    let output = Command::new("bash")
        .arg("-c")
        .arg(format!("'{}' <(cat '{}')", env!("CARGO_BIN_EXE_aiocop-analyze"), path(&trace)))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("is not a regular file but a FIFO"), "{}", stderr(&output));
}

#[test]
fn a_footer_that_lies_is_not_believed() {
    let dir = test_dir("lying_footer");
    let mut builder = common::TraceBuilder::new(header(None, "web-1", 10), 0);
    for _ in 0..6 {
        builder.new_chunk().slice(Slice { duration_ns: MS, what: "main", ..Slice::default() });
    }
    let trace = builder.write(&dir.join("honest.bin"), None);
    // Append a footer that claims 999,999 chunks and a stop 2^62 ns (146 years) in.
    let mut bytes = std::fs::read(&trace).unwrap();
    let lie = TraceFooter { slices: 6, events: 0, dropped_slices: 0, chunks: 999_999, end_offset_ns: 1 << 62 };
    let mut footer = Vec::new();
    let writer = TraceWriter::new(&mut footer, &header(None, "x", 10)).unwrap();
    let header_len = writer.bytes_written() as usize;
    writer.finish(&lie).unwrap();
    bytes.extend_from_slice(&footer[header_len..]);
    let liar = dir.join("liar.bin");
    std::fs::write(&liar, bytes).unwrap();

    let output = run(["info", path(&liar)]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(!text.contains("4611686018"), "{text}");
    assert!(text.contains("recorded for 0.") || text.contains("recorded for 1."), "{text}");
    assert!(text.contains("chunks:      7,"), "{text}");
    assert_eq!(
        stderr(&output).trim(),
        format!(
            "aiocop-analyze: warning: '{}': its footer does not match its chunks (it counts 999999 chunks where the file \
             holds 7): it is ignored, and the counts and times are the chunks'",
            path(&liar)
        )
    );
    let output = run([path(&liar), "--format", "json"]);
    assert_eq!(output.status.code(), Some(0));
    assert!(stderr(&output).contains("its footer does not match its chunks"), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(report["traces"][0]["duration_s"].as_f64().unwrap() < 1.0, "{}", report["traces"][0]);
}

#[test]
fn a_timeline_that_fails_never_removes_a_file_it_did_not_create() {
    // It removed its output on failure whatever it was: as root,
    // `timeline bad.bin -o /dev/null` deleted /dev/null.
    let dir = test_dir("timeline_keeps_files");
    let bad = dir.join("bad.bin");
    std::fs::write(&bad, b"AIOCOPTR but not a trace").unwrap();
    let existing = dir.join("existing.json");
    std::fs::write(&existing, b"the user's").unwrap();
    let output = run(["timeline", path(&bad), "-o", path(&existing)]);
    assert_eq!(output.status.code(), Some(2));
    assert!(existing.exists(), "a file that was there stays");
    let created = dir.join("created.json");
    let output = run(["timeline", path(&bad), "-o", path(&created)]);
    assert_eq!(output.status.code(), Some(2));
    assert!(!created.exists(), "a file it created is not left half written");
}

/// A file of the file header and a header frame holding `raw`.
fn with_header_payload(path: &Path, raw: &[u8]) -> PathBuf {
    let mut bytes = aiocop_trace::format::FileHeader::CURRENT.to_bytes().to_vec();
    bytes.extend_from_slice(&frame(FrameKind::Header, raw));
    std::fs::write(path, bytes).unwrap();
    path.to_path_buf()
}

#[test]
fn decode_errors_are_said_in_words() {
    let dir = test_dir("decode_errors_in_words");
    let mut huge_length = vec![253u8];
    huge_length.extend_from_slice(&(1u64 << 40).to_le_bytes());
    let cases: [(&str, &[u8], &str); 3] = [
        // The version string claims 5 bytes; 1 is there.
        ("unexpected_end.bin", &[5, b'1'], "it ends 4 bytes before its last value"),
        ("utf8.bin", &[2, 0xff, 0xfe], "a string in it is not UTF-8"),
        ("limit.bin", &huge_length, "a length in it is larger than its payload can hold"),
    ];
    for (name, raw, words) in cases {
        let file = with_header_payload(&dir.join(name), raw);
        let output = run([path(&file)]);
        assert_eq!(output.status.code(), Some(2), "{name}");
        assert_eq!(
            stderr(&output),
            format!("aiocop-analyze: '{}': the header frame cannot be decoded: {words}\n", path(&file))
        );
        for internal in ["{", "Utf8", "UnexpectedEnd", "LimitExceeded", "additional"] {
            assert!(!stderr(&output).contains(internal), "{name}: {}", stderr(&output));
        }
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}
