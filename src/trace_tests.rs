//! Tests of the trace format through its writer and reader together: round
//! trips, the pinned bytes of a small trace, files cut short at every byte,
//! corruption, other formats, versions, and how small a slice is on disk.

use crate::error::{FrameRef, ReadError, WriteError};
use crate::format::{
    encode_payload, Codec, FrameHeader, FrameKind, FILE_HEADER_LEN, FORMAT_MAJOR, FORMAT_MINOR, FRAME_HEADER_LEN,
    MAX_PAYLOAD_LEN, MAX_RAW_LEN,
};
use crate::reader::{Dictionary, TraceFile};
use crate::records::{
    AllowedEvent, AllowedEvents, Appended, Chunk, EagerFirstStep, EagerTask, EagerTasks, EventRecord, EventSpec, Frame,
    FrameName, LoopIterations, PollRecord, ProcessInfo, ReadyWait, Redaction, SampleCpu, SampleTime, SampleTiming,
    SamplingInfo, SliceRecord, SliceSampleCpu, SliceSampleTimes, TaskCreated, TaskEnded, TaskTiming, TraceFooter,
    TraceHeader, READY_SCHEDULED, READY_TIMER, READY_UNKNOWN, TASK_CANCELLED, TASK_DONE, TASK_RAISED,
};
use crate::writer::TraceWriter;
use std::io::{self, Write};
use std::path::PathBuf;

fn header() -> TraceHeader {
    TraceHeader {
        aiocop_version: "1.3.0".into(),
        python_version: "3.12.1".into(),
        platform: "linux".into(),
        host: "box".into(),
        pid: 4242,
        argv: vec!["app.py".into(), "--serve".into()],
        start_unix_ns: 1_700_000_000_123_456_789,
        start_monotonic_ns: 987_654_321,
        label: Some("v1.4.2".into()),
        threshold_ns: 50_000_000,
        trace_depth: 20,
        event_table: vec![
            EventSpec { name: "time.sleep".into(), weight: 50 },
            EventSpec { name: "open".into(), weight: 10 },
        ],
        records_context: true,
        process: Appended(ProcessInfo {
            parent_pid: 4241,
            root_command: vec!["app.py".into(), "--serve".into(), "--workers".into(), "2".into()],
            role: "spawn child".into(),
            sys_path: vec!["/app/src".into(), "/usr/lib/python3.12".into()],
        }),
        sampling: Appended(SamplingInfo { after_ns: 2_000_000, interval_ns: 1_000_000 }),
        redaction: Appended::default(),
    }
}

/// Three chunks using every field: definitions, events, samples, context,
/// dropped slices and events.
fn chunks() -> Vec<Chunk> {
    let first = Chunk {
        strings: vec![
            (0, "app.handlers.get_user".into()),
            (1, "/app/src/svc/api.py".into()),
            (2, "get_user".into()),
            (3, "/etc/hosts, r, 524288".into()),
            (4, "Task-1".into()),
            (5, "request_id".into()),
            (6, "abc123".into()),
            (9, "svc.api".into()),
        ],
        frames: vec![(0, Frame { file: 1, line: 12, function: 2 }), (1, Frame { file: 1, line: -1, function: 2 })],
        stacks: vec![(0, vec![0, 1]), (1, vec![1])],
        base_offset_ns: 1_000,
        slices: vec![
            SliceRecord { start_delta_ns: 0, duration_ns: 3_000, what: 0, thread: 0, ..SliceRecord::default() },
            SliceRecord {
                start_delta_ns: 20_000,
                duration_ns: 60_000_000,
                what: 0,
                task: Some(4),
                thread: 1,
                exceeded: true,
                events: vec![
                    EventRecord { event: 1, args: 3, offset_ns: 1_500, stack: 0 },
                    EventRecord { event: 0, args: 3, offset_ns: 9_000_000, stack: u32::MAX },
                ],
                dropped_events: 3,
                score: 60,
                samples: vec![1, 0, 1],
                context: vec![(5, 6)],
            },
        ],
        dropped_slices: 0,
        frame_names: Appended(vec![
            (0, FrameName { module: 9, qualname: 2 }),
            (1, FrameName { module: 9, qualname: 2 }),
        ]),
        sample_timing: Appended(SampleTiming {
            slices: vec![SliceSampleTimes {
                slice: 1,
                times: vec![
                    SampleTime { taken_offset_ns: 2_000_000, waited_ns: 0 },
                    SampleTime { taken_offset_ns: 50_000_000, waited_ns: 47_000_000 },
                    SampleTime { taken_offset_ns: 50_000_100, waited_ns: 100 },
                ],
            }],
        }),
        allowed: Appended(AllowedEvents {
            kept: vec![AllowedEvent { slice: 1, event: 0, entry: 9 }],
            dropped: vec![(1, 2)],
        }),
        loop_iterations: Appended(LoopIterations {
            base_offset_ns: 900,
            polls: vec![PollRecord { start_delta_ns: 0, wait_ns: 50, thread: 1 }],
            polling_threads: vec![1],
        }),
        task_timing: Appended(TaskTiming {
            ready: vec![ReadyWait { wait_ns: 30, since: READY_TIMER }, ReadyWait { wait_ns: 0, since: READY_UNKNOWN }],
            created: vec![TaskCreated { slice: 1, created_before_ns: 400, parent: Some(2) }],
            ended: vec![TaskEnded { slice: 1, outcome: TASK_CANCELLED }],
        }),
        sample_cpu: Appended(SampleCpu {
            slices: vec![SliceSampleCpu { slice: 1, ran_ns: vec![1_900_000, 46_000_000, 100] }],
        }),
        eager_tasks: Appended(EagerTasks {
            first_steps: vec![EagerFirstStep { slice: 1, ran_ns: 700 }],
            ended: vec![EagerTask { slice: 0, created_offset_ns: 10, ran_ns: 1_500, what: 0, outcome: TASK_RAISED }],
        }),
    };
    let second = Chunk {
        strings: vec![(7, "asyncio.sleep".into())],
        base_offset_ns: 5_000_000_000,
        slices: (0..50)
            .map(|i| SliceRecord { start_delta_ns: i * 7, duration_ns: 900 + i, what: 7, ..SliceRecord::default() })
            .collect(),
        dropped_slices: 12,
        ..Chunk::default()
    };
    let third = Chunk {
        base_offset_ns: u64::MAX,
        slices: vec![SliceRecord {
            start_delta_ns: u64::MAX,
            duration_ns: u64::MAX,
            what: u32::MAX,
            task: Some(0),
            thread: u32::MAX,
            score: i64::MIN,
            ..SliceRecord::default()
        }],
        ..Chunk::default()
    };
    vec![first, second, third]
}

fn footer() -> TraceFooter {
    TraceFooter { slices: 53, events: 2, dropped_slices: 12, chunks: 3, end_offset_ns: 6_000_000_000 }
}

fn write_trace(header: &TraceHeader, chunks: &[Chunk], footer: Option<&TraceFooter>) -> Vec<u8> {
    let mut writer = TraceWriter::new(Vec::new(), header).unwrap();
    for chunk in chunks {
        writer.write_chunk(chunk).unwrap();
    }
    match footer {
        Some(footer) => writer.finish(footer).unwrap(),
        None => writer.get_ref().clone(),
    }
}

/// The offset where each frame ends, header frame first.
fn frame_ends(bytes: &[u8]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut offset = FILE_HEADER_LEN;
    while offset < bytes.len() {
        let frame = FrameHeader::from_bytes(bytes[offset..offset + FRAME_HEADER_LEN].try_into().unwrap());
        offset += frame.frame_len() as usize;
        ends.push(offset);
    }
    assert_eq!(offset, bytes.len());
    ends
}

/// Opens a file damaged after its trace header: readable up to the damage.
fn open_damaged(bytes: Vec<u8>, name: &str) -> TraceFile {
    let trace = TraceFile::from_bytes(bytes, name).expect("readable up to the damage");
    assert!(trace.cut_short());
    assert_one_line(trace.damage().expect("the damage is reported"), name);
    trace
}

fn open_err(bytes: Vec<u8>, name: &str) -> ReadError {
    let error = TraceFile::from_bytes(bytes, name).unwrap_err();
    assert_one_line(&error, name);
    error
}

fn assert_one_line(error: &ReadError, name: &str) {
    let message = error.to_string();
    assert!(!message.contains('\n'), "{message:?}");
    assert!(message.contains(&format!("'{name}'")), "{message:?} does not name {name}");
    assert_eq!(error.path(), name);
}

/// A file in the temporary directory, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str) -> TempFile {
        let name = format!("aiocop-trace-test-{}-{tag}.aiocop", std::process::id());
        TempFile(std::env::temp_dir().join(name))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn header_chunks_and_footer_round_trip_exactly() {
    let bytes = write_trace(&header(), &chunks(), Some(&footer()));
    let temp = TempFile::new("round-trip");
    std::fs::write(&temp.0, &bytes).unwrap();
    let from_file = TraceFile::open(&temp.0).unwrap();
    let from_bytes = TraceFile::from_bytes(bytes.clone(), "memory.aiocop").unwrap();
    assert_eq!(from_file.path(), temp.0.display().to_string());
    assert_eq!(from_bytes.path(), "memory.aiocop");
    for trace in [&from_file, &from_bytes] {
        assert_eq!(trace.header(), &header());
        assert_eq!(trace.footer(), Some(&footer()));
        assert!(!trace.cut_short());
        assert_eq!(trace.format_version(), (FORMAT_MAJOR, FORMAT_MINOR));
        assert_eq!(trace.chunk_count(), 3);
        assert_eq!(trace.chunks().collect::<Result<Vec<_>, _>>().unwrap(), chunks());
        assert_eq!(trace.file_len(), bytes.len() as u64);
        let infos: Vec<_> = (0..3).map(|i| trace.chunk_info(i).unwrap()).collect();
        assert_eq!(trace.compressed_bytes(), infos.iter().map(|c| u64::from(c.payload_len)).sum::<u64>());
        for (index, info) in infos.iter().enumerate() {
            assert_eq!(trace.decompress_chunk(index).unwrap(), info.raw_len as usize);
            assert_eq!(info.raw_len as usize, encode_payload(&chunks()[index]).unwrap().len());
        }
        assert!(trace.chunk_info(3).is_none());
        let error = trace.read_chunk(3).unwrap_err();
        assert!(matches!(error, ReadError::NoSuchChunk { index: 3, count: 3, .. }), "{error}");
        assert_one_line(&error, trace.path());
    }
}

#[test]
fn a_visitor_may_read_other_chunks_while_it_visits_one() {
    // Each thread reuses one decompression buffer: a chunk read from inside
    // the visit of another must get buffers of its own, not the ones in use.
    let bytes = write_trace(&header(), &chunks(), Some(&footer()));
    let trace = TraceFile::from_bytes(bytes, "nested.aiocop").unwrap();
    let mut visited = Vec::new();
    let mut nested = Vec::new();
    let definitions = trace
        .visit_chunk(0, &mut |_, slice: &SliceRecord| {
            visited.push(slice.clone());
            nested.push(trace.read_chunk(1).unwrap());
        })
        .unwrap();
    assert_eq!(visited, chunks()[0].slices);
    assert!(nested.iter().all(|chunk| *chunk == chunks()[1]));
    assert_eq!(definitions.strings, chunks()[0].strings);
    // And the buffers work on after it.
    assert_eq!(trace.read_chunk(2).unwrap(), chunks()[2]);
}

/// Collects which slices a visitor was given as pure and which as records.
#[derive(Default)]
struct Sorted {
    pure: Vec<(u64, crate::PureSlice)>,
    full: Vec<(u64, SliceRecord)>,
}

impl crate::SliceVisitor for Sorted {
    fn pure_slice(&mut self, start_ns: u64, slice: crate::PureSlice) {
        self.pure.push((start_ns, slice));
    }

    fn slice(&mut self, start_ns: u64, slice: &SliceRecord) {
        self.full.push((start_ns, slice.clone()));
    }
}

#[test]
fn pure_slices_come_as_numbers_and_the_rest_as_records() {
    let pure = |start_delta_ns, what, thread| SliceRecord {
        start_delta_ns,
        duration_ns: 40_000,
        what,
        thread,
        ..SliceRecord::default()
    };
    let chunk = Chunk {
        base_offset_ns: 1_000,
        slices: vec![
            pure(0, 1, 2),
            SliceRecord { exceeded: true, ..pure(10, 1, 2) },
            SliceRecord { task: Some(3), ..pure(10, 1, 2) },
            SliceRecord { task: Some(70_000), ..pure(10, 1, 2) },
            // A thread number past one byte takes the slow path, and is still right.
            pure(10, 4, 70_000),
            SliceRecord { samples: vec![1], ..pure(10, 4, 2) },
            pure(10, 5, 250),
        ],
        ..Chunk::default()
    };
    let bytes = write_trace(&header(), std::slice::from_ref(&chunk), Some(&footer()));
    let trace = TraceFile::from_bytes(bytes, "pure.aiocop").unwrap();
    let mut sorted = Sorted::default();
    trace.visit_chunk(0, &mut sorted).unwrap();
    let pure: Vec<(u64, SliceRecord)> = sorted.pure.iter().map(|(start, slice)| (*start, slice.to_record())).collect();
    let at = |n: usize| (1_000 + 10 * n as u64, chunk.slices[n].clone());
    assert_eq!(pure, [at(0), at(2), at(3), at(6)]);
    assert_eq!(sorted.full, [at(1), at(4), at(5)]);
}

#[test]
fn the_writer_counts_what_it_writes() {
    let mut writer = TraceWriter::new(Vec::new(), &header()).unwrap();
    let after_header = writer.bytes_written();
    assert_eq!(after_header, writer.get_ref().len() as u64);
    let mut total = after_header;
    for chunk in chunks() {
        total += writer.write_chunk(&chunk).unwrap();
        assert_eq!(writer.bytes_written(), total);
    }
    assert_eq!(writer.chunks_written(), 3);
    let bytes = writer.finish(&footer()).unwrap();
    assert!(bytes.len() as u64 > total);
    assert_eq!(frame_ends(&bytes).len(), 1 + 3 + 1);
}

#[test]
fn an_empty_recording_is_a_header_and_a_footer() {
    let bytes = write_trace(&header(), &[], Some(&TraceFooter::default()));
    let trace = TraceFile::from_bytes(bytes, "empty.aiocop").unwrap();
    assert_eq!((trace.chunk_count(), trace.cut_short(), trace.compressed_bytes()), (0, false, 0));
    assert_eq!(trace.footer(), Some(&TraceFooter::default()));
}

/// The exact bytes of a small known trace. They change only with the format:
/// if this test fails, either the change was a mistake, or it was meant and
/// then `FORMAT_MAJOR` (or, for a compatible addition, `FORMAT_MINOR`) must
/// be bumped, `docs/trace-format.md` updated, the old golden trace kept as a
/// reading test (as `GOLDEN_TRACE_1_0` is), and the hex regenerated
/// deliberately (the failure prints the new one). A zstd upgrade may change
/// the compressed bytes alone: then `golden_payloads_are_pinned` still
/// passes and `GOLDEN_TRACE` still reads (`the_golden_trace_still_reads`),
/// and regenerating the hex is all there is to do.
const GOLDEN_TRACE: &str = "\
41494f434f5054520100050000000000010100006e00000065000000e4cc865a28b52ffd206529030005312e332e3004\
332e3132056c696e75780168070104612e7079fc00ca9a3bfb881300640201046f70656e1400060207757669636f726e\
076170703a6170700b737061776e206368696c6401062f612f737263fc80841e00fc40420f00010105726f7574650201\
000097000000ab000000c53b651828b52ffd20ab75040042491f2980454907c1c8c4b02a090d23834c0e98cab669865f\
ff230d123447c1d23434050153838810420849328d1193896f927c0a40de9bfc3764cbfe27b9226765b1b05fc9a4e592\
ff73fdf642cb5affde4eb0026eb2af4cd03b83f746f458482f2220941c467bee3a3410d7a459c472aa09a29ee8723cd0\
33b89a20ca3510040006104484a306d49988563d0103010000120000000900000098906e4c28b52ffd20094900000201\
0101fc80380100";

/// A trace of format 1.4 (with the CPU times), before the eager tasks.
const GOLDEN_TRACE_1_4: &str = "\
41494f434f5054520100040000000000010100006e00000065000000e4cc865a28b52ffd206529030005312e332e3004\
332e3132056c696e75780168070104612e7079fc00ca9a3bfb881300640201046f70656e1400060207757669636f726e\
076170703a6170700b737061776e206368696c6401062f612f737263fc80841e00fc40420f00010105726f7574650201\
000083000000970000008e4ac7e728b52ffd2097d5030052481b2690354907c166cabec4ceeaa88ffdb1e1db1ac69b1a\
96dd9d964b43aafa2a3f238e4608213bc90f80fcfbbde57f215bfc77e4881c8b4a591f32c98824ffa5faed841653ffde\
3e80026ed9550cf48eec7e608c591469a9c8d0182a3163035a9ee6392e112ddc73829fe639aa4a030038aa40dd8e68d5\
1303010000120000000900000098906e4c28b52ffd200949000002010101fc80380100";

/// A trace of format 1.4 written before the samples' CPU times (slot 5):
/// main's 1.4 until they were added, read as a trace without them.
const GOLDEN_TRACE_1_4_WITHOUT_CPU: &str = "\
41494f434f5054520100040000000000010100006e00000065000000e4cc865a28b52ffd206529030005312e332e3004\
332e3132056c696e75780168070104612e7079fc00ca9a3bfb881300640201046f70656e1400060207757669636f726e\
076170703a6170700b737061776e206368696c6401062f612f737263fc80841e00fc40420f00010105726f7574650201\
00007d00000091000000edd4ee3228b52ffd2091a50300f2c71923a027e9fbc17ffd2df17fab8b236e2dcecd480baa8e\
e63642f13e7d0927374208d94906fddef27f902dfe3372438ec5a4acdf80a4e391ff52fd76418ba97f6f0f40915b7615\
95de91dd0b8c310b222d15119a4225665c40cbd33cc71da2847b0ef0d33c473509030038aa40dd8e68d5130301000012\
0000000900000098906e4c28b52ffd200949000002010101fc80380100";

/// A trace of format 1.3, before the task timing and the CPU times.
const GOLDEN_TRACE_1_3: &str = "\
41494f434f5054520100030000000000010100006e00000065000000e4cc865a28b52ffd206529030005312e332e3004\
332e3132056c696e75780168070104612e7079fc00ca9a3bfb881300640201046f70656e1400060207757669636f726e\
076170703a6170700b737061776e206368696c6401062f612f737263fc80841e00fc40420f00010105726f7574650201\
00007600000081000000c103caa228b52ffd20816d0300f2061822a027e9fbc17ffd2df17fab8b236e2dcecd480baa8e\
e6b646f1d59770442364939d64ff8cdc905f2fe9ea3720e978e4afb0df3e682ff5efed0228b292553d40efb7ee85b598\
0591144604458189f916d0f234cd618728c11a0bfc34cdc12601030038aa40dd8e68d513030100001200000009000000\
98906e4c28b52ffd200949000002010101fc80380100";

/// A trace of format 1.2, before the sample times, the allowed events and
/// the loop iterations.
const GOLDEN_TRACE_1_2: &str = "\
41494f434f5054520100020000000000010100006e00000065000000e4cc865a28b52ffd206529030005312e332e3004\
332e3132056c696e75780168070104612e7079fc00ca9a3bfb881300640201046f70656e1400060207757669636f726e\
076170703a6170700b737061776e206368696c6401062f612f737263fc80841e00fc40420f00010105726f7574650201\
00005e0000005d0000007b37c29f28b52ffd205dad02000285121eb015a6031c866118062f2044849c846095242a52e4\
824282518436d93205246fbf83c771dbfb15b8458d623202eec5d2ab8e61907c0483c8a18a0977da4a0c15de01251468\
5b89e52502007114222e450603010000120000000900000098906e4c28b52ffd200949000002010101fc80380100";

/// A trace of format 1.1, before the redaction record.
const GOLDEN_TRACE_1_1: &str = "\
41494f434f505452010001000000000001010000660000005d0000005ac626cd28b52ffd205de9020005312e332e3004\
332e3132056c696e75780168070104612e7079fc00ca9a3bfb881300640201046f70656e1400060207757669636f726e\
076170703a6170700b737061776e206368696c6401062f612f737263fc80841e00fc40420f00020100005e0000005d00\
00007b37c29f28b52ffd205dad02000285121eb015a6031c866118062f2044849c846095242a52e4824282518436d932\
05246fbf83c771dbfb15b8458d623202eec5d2ab8e61907c0483c8a18a0977da4a0c15de012514685b89e52502007114\
222e450603010000120000000900000098906e4c28b52ffd200949000002010101fc80380100";

/// The decompressed payloads of [`GOLDEN_TRACE`] (header, chunk, footer):
/// the bincode encoding itself, independent of zstd.
const GOLDEN_PAYLOADS: [&str; 3] = [
    "05312e332e3004332e3132056c696e75780168070104612e7079fc00ca9a3bfb881300640201046f70656e1400060207757669636f726e076170703a6170700b737061776e206368696c6401062f612f737263fc80841e00fc40420f00010105726f757465",
    "0800046d61696e010e2f612f7372632f6d61696e2e70790201660304782c207204046d61696e0503672e6606066d61696e2e2a070566657463680100010602010001000a020005000000000000000000fb2c01fc701101000001000101010003020000140100000101000405010101fbc8affbe0ab01010006000702000201fb3601fb9001010101020000fb1801010101fb2c0100010100010101fbf8a70101fb8403010132fbd0070700",
    "02010101fc80380100",
];

/// A trace of format 1.0, before the process information and frame names.
const GOLDEN_TRACE_1_0: &str = "\
41494f434f505452010000000000000001010000360000002d00000086ed2ee828b52ffd202d69010005312e332e3004\
332e3132056c696e75780168070104612e7079fc00ca9a3bfb881300640201046f70656e140002010000570000004e00\
00001df07a0c28b52ffd204e7102000400046d61696e010e2f612f7372632f6d61696e2e70790201660304782c207201\
00010602010001000a020005000000000000000000fb2c01fc7011010000010001010100030200001401000001030100\
00120000000900000098906e4c28b52ffd200949000002010101fc80380100";

fn golden_parts() -> (TraceHeader, Chunk, TraceFooter) {
    let (header, mut chunk, footer) = golden_parts_1_4();
    chunk.strings.push((7, "fetch".into()));
    chunk.eager_tasks = Appended(EagerTasks {
        first_steps: vec![EagerFirstStep { slice: 1, ran_ns: 900 }],
        ended: vec![EagerTask { slice: 1, created_offset_ns: 50, ran_ns: 2_000, what: 7, outcome: TASK_DONE }],
    });
    (header, chunk, footer)
}

/// What [`GOLDEN_TRACE_1_4`] holds.
fn golden_parts_1_4() -> (TraceHeader, Chunk, TraceFooter) {
    let (header, mut chunk, footer) = golden_parts_1_4_without_cpu();
    chunk.sample_cpu = Appended(SampleCpu { slices: vec![SliceSampleCpu { slice: 1, ran_ns: vec![43_000] }] });
    (header, chunk, footer)
}

/// What [`GOLDEN_TRACE_1_4_WITHOUT_CPU`] holds.
fn golden_parts_1_4_without_cpu() -> (TraceHeader, Chunk, TraceFooter) {
    let (header, mut chunk, footer) = golden_parts_1_3();
    chunk.task_timing = Appended(TaskTiming {
        ready: vec![ReadyWait { wait_ns: 0, since: READY_UNKNOWN }, ReadyWait { wait_ns: 280, since: READY_SCHEDULED }],
        created: vec![TaskCreated { slice: 1, created_before_ns: 300, parent: None }],
        ended: vec![TaskEnded { slice: 1, outcome: TASK_DONE }],
    });
    (header, chunk, footer)
}

/// What [`GOLDEN_TRACE_1_3`] holds.
fn golden_parts_1_3() -> (TraceHeader, Chunk, TraceFooter) {
    let (header, mut chunk, footer) = golden_parts_1_2();
    chunk.sample_timing = Appended(SampleTiming {
        slices: vec![SliceSampleTimes {
            slice: 1,
            times: vec![SampleTime { taken_offset_ns: 45_000, waited_ns: 44_000 }],
        }],
    });
    chunk.strings.push((6, "main.*".into()));
    chunk.allowed =
        Appended(AllowedEvents { kept: vec![AllowedEvent { slice: 1, event: 0, entry: 6 }], dropped: vec![] });
    chunk.loop_iterations = Appended(LoopIterations {
        base_offset_ns: 7,
        polls: vec![
            PollRecord { start_delta_ns: 0, wait_ns: 2, thread: 1 },
            PollRecord { start_delta_ns: 310, wait_ns: 400, thread: 1 },
        ],
        polling_threads: vec![1],
    });
    (header, chunk, footer)
}

/// What [`GOLDEN_TRACE_1_2`] holds.
fn golden_parts_1_2() -> (TraceHeader, Chunk, TraceFooter) {
    let (mut header, chunk, footer) = golden_parts_1_1();
    header.redaction = Appended(Redaction { redacted: true, kept_context_keys: vec!["route".into()] });
    (header, chunk, footer)
}

/// What [`GOLDEN_TRACE_1_1`] holds.
fn golden_parts_1_1() -> (TraceHeader, Chunk, TraceFooter) {
    let (mut header, mut chunk, footer) = golden_parts_1_0();
    header.process = Appended(ProcessInfo {
        parent_pid: 6,
        root_command: vec!["uvicorn".into(), "app:app".into()],
        role: "spawn child".into(),
        sys_path: vec!["/a/src".into()],
    });
    header.sampling = Appended(SamplingInfo { after_ns: 2_000_000, interval_ns: 1_000_000 });
    chunk.strings.extend([(4, "main".into()), (5, "g.f".into())]);
    chunk.frame_names = Appended(vec![(0, FrameName { module: 4, qualname: 5 })]);
    (header, chunk, footer)
}

/// What [`GOLDEN_TRACE_1_0`] holds.
fn golden_parts_1_0() -> (TraceHeader, Chunk, TraceFooter) {
    let header = TraceHeader {
        aiocop_version: "1.3.0".into(),
        python_version: "3.12".into(),
        platform: "linux".into(),
        host: "h".into(),
        pid: 7,
        argv: vec!["a.py".into()],
        start_unix_ns: 1_000_000_000,
        start_monotonic_ns: 5_000,
        label: None,
        threshold_ns: 100,
        trace_depth: 2,
        event_table: vec![EventSpec { name: "open".into(), weight: 10 }],
        records_context: false,
        process: Appended::default(),
        sampling: Appended::default(),
        redaction: Appended::default(),
    };
    let chunk = Chunk {
        strings: vec![(0, "main".into()), (1, "/a/src/main.py".into()), (2, "f".into()), (3, "x, r".into())],
        frames: vec![(0, Frame { file: 1, line: 3, function: 2 })],
        stacks: vec![(0, vec![0])],
        base_offset_ns: 10,
        slices: vec![
            SliceRecord { start_delta_ns: 0, duration_ns: 5, what: 0, ..SliceRecord::default() },
            SliceRecord {
                start_delta_ns: 300,
                duration_ns: 70_000,
                what: 0,
                task: Some(0),
                thread: 1,
                exceeded: true,
                events: vec![EventRecord { event: 0, args: 3, offset_ns: 2, stack: 0 }],
                dropped_events: 0,
                score: 10,
                samples: vec![0],
                context: vec![],
            },
        ],
        dropped_slices: 1,
        frame_names: Appended::default(),
        sample_timing: Appended::default(),
        allowed: Appended::default(),
        loop_iterations: Appended::default(),
        task_timing: Appended::default(),
        sample_cpu: Appended::default(),
        eager_tasks: Appended::default(),
    };
    let footer = TraceFooter { slices: 2, events: 1, dropped_slices: 1, chunks: 1, end_offset_ns: 80_000 };
    (header, chunk, footer)
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(hex: &str) -> Vec<u8> {
    let hex: Vec<u8> = hex.bytes().filter(u8::is_ascii_hexdigit).collect();
    hex.chunks(2).map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap()).collect()
}

#[test]
fn golden_payloads_are_pinned() {
    let (header, chunk, footer) = golden_parts();
    let raw = [encode_payload(&header).unwrap(), encode_payload(&chunk).unwrap(), encode_payload(&footer).unwrap()];
    let hex: Vec<String> = raw.iter().map(|r| to_hex(r)).collect();
    println!("payloads:\n{}", hex.join("\n"));
    assert_eq!(hex, GOLDEN_PAYLOADS, "the bincode encoding changed: see GOLDEN_TRACE");
}

#[test]
fn golden_trace_bytes_are_pinned() {
    let (header, chunk, footer) = golden_parts();
    let bytes = write_trace(&header, &[chunk], Some(&footer));
    let hex = to_hex(&bytes);
    println!("GOLDEN_TRACE:\n{hex}");
    assert_eq!(hex, to_hex(&from_hex(GOLDEN_TRACE)), "the trace bytes changed: see GOLDEN_TRACE");
}

#[test]
fn a_1_0_trace_still_reads_without_process_information_or_frame_names() {
    let (header, chunk, footer) = golden_parts_1_0();
    let trace = TraceFile::from_bytes(from_hex(GOLDEN_TRACE_1_0), "golden-1.0.aiocop").unwrap();
    assert_eq!(trace.format_version(), (1, 0));
    assert_eq!(trace.header(), &header);
    assert_eq!(trace.read_chunk(0).unwrap(), chunk);
    assert_eq!(trace.footer(), Some(&footer));
}

#[test]
fn a_1_1_trace_still_reads_as_not_redacted() {
    let (header, chunk, footer) = golden_parts_1_1();
    let trace = TraceFile::from_bytes(from_hex(GOLDEN_TRACE_1_1), "golden-1.1.aiocop").unwrap();
    assert_eq!(trace.format_version(), (1, 1));
    assert_eq!(trace.header(), &header);
    assert!(!trace.header().redaction.redacted);
    assert_eq!(trace.read_chunk(0).unwrap(), chunk);
    assert_eq!(trace.footer(), Some(&footer));
}

#[test]
fn a_1_2_trace_still_reads_without_sample_times_allowed_events_or_loop_iterations() {
    let (header, chunk, footer) = golden_parts_1_2();
    let trace = TraceFile::from_bytes(from_hex(GOLDEN_TRACE_1_2), "golden-1.2.aiocop").unwrap();
    assert_eq!(trace.format_version(), (1, 2));
    assert_eq!(trace.header(), &header);
    let read = trace.read_chunk(0).unwrap();
    assert!(read.sample_timing.slices.is_empty());
    assert!(read.allowed.is_empty());
    assert!(read.loop_iterations.polls.is_empty() && read.loop_iterations.polling_threads.is_empty());
    assert_eq!(read, chunk);
    // Visited slice by slice, its sampled slice comes without times.
    let mut times_seen = Vec::new();
    trace.visit_chunk(0, &mut TimesSeen(&mut times_seen)).unwrap();
    assert_eq!(times_seen, [(1, vec![], vec![])]);
    assert_eq!(trace.footer(), Some(&footer));
}

#[test]
fn a_visitor_gets_each_sampled_slice_with_its_sample_times() {
    let (_, chunk, _) = golden_parts();
    let trace = TraceFile::from_bytes(from_hex(GOLDEN_TRACE), "golden.aiocop").unwrap();
    assert_eq!(trace.format_version(), (1, 5));
    let mut times_seen = Vec::new();
    trace.visit_chunk(0, &mut TimesSeen(&mut times_seen)).unwrap();
    assert_eq!(
        times_seen,
        [(1, chunk.sample_timing.slices[0].times.clone(), chunk.sample_cpu.slices[0].ran_ns.clone())]
    );
}

#[test]
fn a_1_3_trace_still_reads_without_task_timing_or_cpu_times() {
    let (header, chunk, footer) = golden_parts_1_3();
    let trace = TraceFile::from_bytes(from_hex(GOLDEN_TRACE_1_3), "golden-1.3.aiocop").unwrap();
    assert_eq!(trace.format_version(), (1, 3));
    assert_eq!(trace.header(), &header);
    let read = trace.read_chunk(0).unwrap();
    assert_eq!(read.task_timing.0, TaskTiming::default());
    assert!(read.sample_cpu.slices.is_empty());
    assert_eq!(read.loop_iterations, chunk.loop_iterations);
    assert_eq!(read, chunk);
    // Visited slice by slice, its sampled slice comes with times, without CPU times.
    let mut times_seen = Vec::new();
    trace.visit_chunk(0, &mut TimesSeen(&mut times_seen)).unwrap();
    assert_eq!(times_seen, [(1, chunk.sample_timing.slices[0].times.clone(), vec![])]);
    assert_eq!(trace.footer(), Some(&footer));
}

#[test]
fn a_1_4_trace_written_before_cpu_times_reads_with_its_task_timing_and_without_them() {
    let (header, chunk, footer) = golden_parts_1_4_without_cpu();
    let trace = TraceFile::from_bytes(from_hex(GOLDEN_TRACE_1_4_WITHOUT_CPU), "golden-1.4.aiocop").unwrap();
    assert_eq!(trace.format_version(), (1, 4));
    assert_eq!(trace.header(), &header);
    let read = trace.read_chunk(0).unwrap();
    assert_eq!(read.task_timing, chunk.task_timing);
    assert!(read.sample_cpu.slices.is_empty());
    assert_eq!(read, chunk);
    let mut times_seen = Vec::new();
    trace.visit_chunk(0, &mut TimesSeen(&mut times_seen)).unwrap();
    assert_eq!(times_seen, [(1, chunk.sample_timing.slices[0].times.clone(), vec![])]);
    assert_eq!(trace.footer(), Some(&footer));
}

#[test]
fn a_1_4_trace_reads_with_its_cpu_times_and_without_eager_tasks() {
    let (header, chunk, footer) = golden_parts_1_4();
    let trace = TraceFile::from_bytes(from_hex(GOLDEN_TRACE_1_4), "golden-1.4.aiocop").unwrap();
    assert_eq!(trace.format_version(), (1, 4));
    assert_eq!(trace.header(), &header);
    let read = trace.read_chunk(0).unwrap();
    assert_eq!(read.sample_cpu, chunk.sample_cpu);
    assert_eq!(read.eager_tasks.0, EagerTasks::default());
    assert_eq!(read, chunk);
    assert_eq!(trace.footer(), Some(&footer));
}

/// Records (slice index, sample times, CPU times) of each sampled slice visited.
struct TimesSeen<'a>(&'a mut Vec<(usize, Vec<SampleTime>, Vec<u64>)>);

impl crate::SliceVisitor for TimesSeen<'_> {
    fn pure_slice(&mut self, _: u64, _: crate::PureSlice) {}
    fn slice(&mut self, _: u64, _: &SliceRecord) {
        unreachable!("the decoder calls timed_slice");
    }
    fn timed_slice(&mut self, start_ns: u64, slice: &SliceRecord, sample_times: &[SampleTime], sample_cpu: &[u64]) {
        if !slice.samples.is_empty() {
            // The golden chunk's sampled slice is its second (start 310).
            assert_eq!(start_ns, 310);
            self.0.push((1, sample_times.to_vec(), sample_cpu.to_vec()));
        }
    }
}

#[test]
fn the_golden_trace_still_reads() {
    let (header, chunk, footer) = golden_parts();
    let trace = TraceFile::from_bytes(from_hex(GOLDEN_TRACE), "golden.aiocop").unwrap();
    assert_eq!(trace.header(), &header);
    assert_eq!(trace.read_chunk(0).unwrap(), chunk);
    assert_eq!(trace.footer(), Some(&footer));
    assert_eq!(trace.chunk_count(), 1);
}

#[test]
fn a_trace_cut_at_every_byte_reads_its_whole_chunks_or_says_why_not() {
    let bytes = write_trace(&header(), &chunks(), Some(&footer()));
    let ends = frame_ends(&bytes);
    let header_end = ends[0];
    let chunk_ends = &ends[1..4];
    let temp = TempFile::new("cut");
    for cut in 0..=bytes.len() {
        let name = format!("cut-at-{cut}.aiocop");
        std::fs::write(&temp.0, &bytes[..cut]).unwrap();
        let from_file = TraceFile::open(&temp.0);
        let from_bytes = TraceFile::from_bytes(bytes[..cut].to_vec(), &name);
        if cut < header_end {
            let error = from_bytes.unwrap_err();
            assert_one_line(&error, &name);
            match cut {
                0 => assert!(matches!(error, ReadError::Empty { .. }), "{error}"),
                _ => assert!(matches!(error, ReadError::TruncatedHeader { .. }), "at {cut}: {error}"),
            }
            let file_error = from_file.unwrap_err();
            assert_eq!(std::mem::discriminant(&file_error), std::mem::discriminant(&error));
            continue;
        }
        let whole = chunk_ends.iter().filter(|&&end| end <= cut).count();
        for trace in [from_bytes.unwrap(), from_file.unwrap()] {
            assert_eq!(trace.cut_short(), cut < bytes.len(), "at {cut}");
            assert_eq!(trace.chunk_count(), whole, "at {cut}");
            assert_eq!(trace.header(), &header());
            for (index, expected) in chunks().iter().take(whole).enumerate() {
                assert_eq!(&trace.read_chunk(index).unwrap(), expected, "at {cut}");
            }
        }
    }
}

#[test]
fn a_zero_filled_tail_ends_the_trace() {
    let mut bytes = write_trace(&header(), &chunks(), None);
    bytes.extend_from_slice(&[0u8; 4096]);
    let trace = TraceFile::from_bytes(bytes, "zeros.aiocop").unwrap();
    assert!(trace.cut_short());
    assert_eq!(trace.chunk_count(), 3);
}

#[test]
fn a_flipped_bit_in_a_chunk_is_a_checksum_error_naming_the_chunk() {
    let clean = write_trace(&header(), &chunks(), Some(&footer()));
    let ends = frame_ends(&clean);
    let payload_start = ends[1] + FRAME_HEADER_LEN; // chunk 1's payload
    for offset in [payload_start, payload_start + 5, ends[2] - 1] {
        for bit in 0..8 {
            let mut bytes = clean.clone();
            bytes[offset] ^= 1 << bit;
            let trace = TraceFile::from_bytes(bytes, "flipped.aiocop").unwrap();
            assert_eq!(trace.read_chunk(0).unwrap(), chunks()[0]);
            assert_eq!(trace.read_chunk(2).unwrap(), chunks()[2]);
            let error = trace.read_chunk(1).unwrap_err();
            let ReadError::ChecksumMismatch { frame: FrameRef::Chunk(1), expected, got, .. } = error else {
                panic!("{error}")
            };
            assert_ne!(expected, got);
            assert_one_line(&error, "flipped.aiocop");
            assert!(error.to_string().contains("chunk 1 is corrupt"), "{error}");
            assert!(trace.decompress_chunk(1).is_err());
        }
    }
}

#[test]
fn a_flipped_bit_in_the_header_frame_fails_open_and_in_the_footer_loses_only_the_footer() {
    let clean = write_trace(&header(), &chunks(), Some(&footer()));
    let ends = frame_ends(&clean);
    let mut bytes = clean.clone();
    bytes[FILE_HEADER_LEN + FRAME_HEADER_LEN + 3] ^= 0x10;
    let error = open_err(bytes, "h.aiocop");
    assert!(matches!(error, ReadError::ChecksumMismatch { frame: FrameRef::Header, .. }), "{error}");
    let mut bytes = clean.clone();
    bytes[ends[4] - 1] ^= 0x01;
    let trace = open_damaged(bytes, "f.aiocop");
    let damage = trace.damage().unwrap();
    assert!(matches!(damage, ReadError::ChecksumMismatch { frame: FrameRef::Footer, .. }), "{damage}");
    assert_eq!(trace.chunks().collect::<Result<Vec<_>, _>>().unwrap(), chunks());
}

fn set_u32(bytes: &mut [u8], offset: usize, value: u32) {
    bytes[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
}

#[test]
fn an_absurd_frame_length_is_refused_without_allocating() {
    let clean = write_trace(&header(), &chunks(), Some(&footer()));
    let ends = frame_ends(&clean);
    // payload_len and raw_len of the header frame, then of chunk 1.
    for (frame_start, field_offset, max) in [
        (FILE_HEADER_LEN, 4, MAX_PAYLOAD_LEN),
        (FILE_HEADER_LEN, 8, MAX_RAW_LEN),
        (ends[1], 4, MAX_PAYLOAD_LEN),
        (ends[1], 8, MAX_RAW_LEN),
    ] {
        for len in [u32::MAX, max + 1] {
            let mut bytes = clean.clone();
            set_u32(&mut bytes, frame_start + field_offset, len);
            let (got_len, got_max, offset) = if frame_start == FILE_HEADER_LEN {
                // In the trace header's frame: nothing is readable.
                let error = open_err(bytes, "absurd.aiocop");
                let ReadError::AbsurdLength { len, max, offset, .. } = error else { panic!("{error}") };
                (len, max, offset)
            } else {
                // In a later frame: the chunks before it stay readable.
                let trace = TraceFile::from_bytes(bytes, "absurd.aiocop").expect("readable up to the damage");
                assert!(trace.cut_short());
                assert_eq!(trace.chunk_count(), 1);
                let Some(ReadError::AbsurdLength { len, max, offset, .. }) = trace.damage() else {
                    panic!("{:?}", trace.damage().map(ToString::to_string))
                };
                (*len, *max, *offset)
            };
            assert_eq!((got_len, got_max, offset), (u64::from(len), u64::from(max), frame_start as u64));
        }
    }
}

#[test]
fn a_length_past_the_end_of_the_file_is_a_cut() {
    let clean = write_trace(&header(), &chunks(), Some(&footer()));
    let ends = frame_ends(&clean);
    let mut bytes = clean.clone();
    set_u32(&mut bytes, ends[2] + 4, MAX_PAYLOAD_LEN);
    let trace = TraceFile::from_bytes(bytes, "long.aiocop").unwrap();
    assert!(trace.cut_short());
    assert_eq!(trace.chunk_count(), 2);
}

#[test]
fn a_raw_length_the_payload_disagrees_with_is_a_decompression_error() {
    let clean = write_trace(&header(), &chunks(), Some(&footer()));
    let ends = frame_ends(&clean);
    let info = TraceFile::from_bytes(clean.clone(), "x").unwrap().chunk_info(0).unwrap();
    for raw_len in [0, info.raw_len - 1, info.raw_len + 1, MAX_RAW_LEN] {
        let mut bytes = clean.clone();
        set_u32(&mut bytes, ends[0] + 8, raw_len);
        let trace = TraceFile::from_bytes(bytes, "raw.aiocop").unwrap();
        let error = trace.read_chunk(0).unwrap_err();
        assert!(matches!(error, ReadError::Decompress { frame: FrameRef::Chunk(0), .. }), "{error}");
        assert_one_line(&error, "raw.aiocop");
    }
}

#[test]
fn an_unknown_codec_is_named() {
    let mut bytes = write_trace(&header(), &chunks(), Some(&footer()));
    let ends = frame_ends(&bytes);
    bytes[ends[0] + 1] = 9;
    let trace = TraceFile::from_bytes(bytes, "codec.aiocop").unwrap();
    let error = trace.read_chunk(0).unwrap_err();
    assert!(matches!(error, ReadError::UnknownCodec { codec: 9, frame: FrameRef::Chunk(0), .. }), "{error}");
    assert!(trace.read_chunk(1).is_ok());
}

#[test]
fn other_files_are_not_traces() {
    let error = open_err(Vec::new(), "empty.aiocop");
    assert!(matches!(error, ReadError::Empty { .. }), "{error}");

    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01".to_vec();
    let error = open_err(png, "image.png");
    assert!(matches!(error, ReadError::NotATrace { looks_like: Some("a PNG image"), .. }), "{error}");
    assert_eq!(
        error.to_string(),
        "'image.png' does not look like an aiocop trace (bad magic; it looks like a PNG image)"
    );

    let zstd_frame = zstd::encode_all(&b"AIOCOPTR and more"[..], 3).unwrap();
    let error = open_err(zstd_frame, "trace.aiocop.zst");
    assert!(matches!(error, ReadError::NotATrace { looks_like: Some("zstd-compressed data"), .. }), "{error}");

    let error = open_err(b"  {\"slices\": []}".to_vec(), "report.json");
    assert!(matches!(error, ReadError::NotATrace { looks_like: Some(_), .. }), "{error}");

    let error = open_err(b"hello".to_vec(), "hello.txt");
    assert_eq!(error.to_string(), "'hello.txt' does not look like an aiocop trace (bad magic)");

    // Random bytes, many times over: an error, never a panic.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for round in 0..200 {
        let len = (round * 37) % 700 + 1;
        let bytes: Vec<u8> = (0..len).map(|_| (xorshift(&mut state) >> 24) as u8).collect();
        let error = open_err(bytes, "random.bin");
        assert!(matches!(error, ReadError::NotATrace { .. }), "{error}");
    }
}

#[test]
fn a_short_prefix_of_the_magic_is_a_truncated_header() {
    for len in 1..FILE_HEADER_LEN {
        let bytes = write_trace(&header(), &[], None)[..len].to_vec();
        let error = open_err(bytes, "short.aiocop");
        assert!(matches!(error, ReadError::TruncatedHeader { part: "its file header", .. }), "{error}");
    }
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Random bytes after a valid file header and header frame, and random bit
/// flips anywhere: errors or a readable trace, never a panic.
#[test]
fn garbage_after_a_valid_start_never_panics() {
    let clean = write_trace(&header(), &chunks(), Some(&footer()));
    let header_end = frame_ends(&clean)[0];
    let mut state: u64 = 12345;
    for round in 0..300 {
        let mut bytes = clean.clone();
        if round % 2 == 0 {
            bytes.truncate(header_end);
            let len = xorshift(&mut state) % 400;
            bytes.extend((0..len).map(|_| xorshift(&mut state) as u8));
        } else {
            for _ in 0..(1 + round % 5) {
                let at = (xorshift(&mut state) % bytes.len() as u64) as usize;
                bytes[at] ^= 1 << (xorshift(&mut state) % 8);
            }
        }
        match TraceFile::from_bytes(bytes, "garbage.aiocop") {
            Ok(trace) => {
                for chunk in trace.chunks() {
                    if let Err(error) = chunk {
                        assert_one_line(&error, "garbage.aiocop");
                    }
                }
            }
            Err(error) => assert_one_line(&error, "garbage.aiocop"),
        }
    }
}

fn with_version(mut bytes: Vec<u8>, major: u16, minor: u16) -> Vec<u8> {
    bytes[8..10].copy_from_slice(&major.to_le_bytes());
    bytes[10..12].copy_from_slice(&minor.to_le_bytes());
    bytes
}

/// A frame by hand: `raw` compressed as the writer would, for payloads this
/// build does not write (additions of a newer minor version).
fn frame(kind: u8, raw: &[u8]) -> Vec<u8> {
    let payload = zstd::bulk::compress(raw, 3).unwrap();
    let header = FrameHeader {
        kind,
        codec: Codec::Zstd as u8,
        payload_len: payload.len() as u32,
        raw_len: raw.len() as u32,
        crc32: crc32fast::hash(&payload),
    };
    let mut bytes = header.to_bytes().to_vec();
    bytes.extend_from_slice(&payload);
    bytes
}

#[test]
fn a_newer_minor_opens_and_skips_what_it_added() {
    // A newer minor may add frame kinds and append to payloads.
    let mut bytes = write_trace(&header(), &chunks()[..1], None);
    bytes.extend(frame(9, b"something new"));
    let mut raw = encode_payload(&chunks()[1]).unwrap();
    raw.extend_from_slice(b"appended field");
    bytes.extend(frame(FrameKind::Chunk as u8, &raw));
    bytes.extend(frame(FrameKind::Footer as u8, &encode_payload(&footer()).unwrap()));

    let newer = with_version(bytes.clone(), FORMAT_MAJOR, FORMAT_MINOR + 1);
    let trace = TraceFile::from_bytes(newer, "newer.aiocop").unwrap();
    assert_eq!(trace.format_version(), (FORMAT_MAJOR, FORMAT_MINOR + 1));
    assert_eq!(trace.chunks().collect::<Result<Vec<_>, _>>().unwrap(), chunks()[..2]);
    assert_eq!(trace.footer(), Some(&footer()));

    // The same from a file of this build's minor is corruption: read up to it.
    let trace = open_damaged(bytes.clone(), "same.aiocop");
    let damage = trace.damage().unwrap();
    assert!(matches!(damage, ReadError::BadFrame { .. }), "{damage}");
    assert!(damage.to_string().contains("unknown frame kind 9"), "{damage}");
    assert_eq!(trace.chunk_count(), 1);
    let ends = frame_ends(&bytes);
    let mut without_kind_9 = bytes[..ends[1]].to_vec();
    without_kind_9.extend_from_slice(&bytes[ends[2]..]);
    let trace = TraceFile::from_bytes(without_kind_9, "same.aiocop").unwrap();
    let error = trace.read_chunk(1).unwrap_err();
    assert!(matches!(error, ReadError::Decode { frame: FrameRef::Chunk(1), .. }), "{error}");
    assert!(error.to_string().contains("14 bytes are left over"), "{error}");
}

#[test]
fn another_major_is_refused_saying_which() {
    let bytes = write_trace(&header(), &chunks(), Some(&footer()));
    let error = open_err(with_version(bytes.clone(), FORMAT_MAJOR + 1, 0), "new.aiocop");
    assert!(matches!(error, ReadError::TooNew { major, .. } if major == FORMAT_MAJOR + 1), "{error}");
    assert_eq!(
        error.to_string(),
        format!(
            "'new.aiocop' is trace format {}.0, newer than this build of aiocop reads (format {FORMAT_MAJOR}.x): upgrade aiocop to read it",
            FORMAT_MAJOR + 1
        )
    );
    let error = open_err(with_version(bytes, FORMAT_MAJOR - 1, 3), "old.aiocop");
    assert!(matches!(error, ReadError::TooOld { minor: 3, .. }), "{error}");
}

#[test]
fn a_second_header_or_a_chunk_first_is_corrupt() {
    let bytes = write_trace(&header(), &chunks(), Some(&footer()));
    let ends = frame_ends(&bytes);
    let mut chunk_first = bytes[..FILE_HEADER_LEN].to_vec();
    chunk_first.extend_from_slice(&bytes[ends[0]..]);
    let error = open_err(chunk_first, "a.aiocop");
    assert!(matches!(error, ReadError::BadFrame { offset: 16, .. }), "{error}");
    let mut two_headers = bytes[..ends[0]].to_vec();
    two_headers.extend_from_slice(&bytes[FILE_HEADER_LEN..]);
    let trace = open_damaged(two_headers, "b.aiocop");
    assert!(matches!(trace.damage(), Some(ReadError::BadFrame { .. })));
    assert_eq!(trace.chunk_count(), 0);
}

#[test]
fn a_missing_or_unreadable_file_names_its_path() {
    let error = TraceFile::open(std::path::Path::new("/nonexistent/dir/x.aiocop")).unwrap_err();
    assert!(matches!(error, ReadError::Io { .. }), "{error}");
    assert_one_line(&error, "/nonexistent/dir/x.aiocop");
    let dir = std::env::temp_dir();
    let error = TraceFile::open(&dir).unwrap_err();
    assert_one_line(&error, &dir.display().to_string());
}

/// Fails every write after `budget` bytes, like a full disk.
struct FullDisk {
    written: Vec<u8>,
    budget: usize,
}

impl Write for FullDisk {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = self.budget - self.written.len();
        if room == 0 {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "no space left on device"));
        }
        let n = buf.len().min(room);
        self.written.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn after_a_failed_write_the_writer_writes_nothing_more() {
    let clean = write_trace(&header(), &chunks(), None);
    let ends = frame_ends(&clean);
    let budget = ends[1] + 10; // room for chunk 0 and part of chunk 1
    let mut writer = TraceWriter::new(FullDisk { written: Vec::new(), budget }, &header()).unwrap();
    writer.write_chunk(&chunks()[0]).unwrap();
    let error = writer.write_chunk(&chunks()[1]).unwrap_err();
    assert!(matches!(error, WriteError::Io(_)), "{error}");
    assert!(!error.to_string().contains('\n'));
    let error = writer.write_chunk(&chunks()[2]).unwrap_err();
    assert!(matches!(error, WriteError::Poisoned), "{error}");
    assert_eq!(writer.chunks_written(), 1);
    let written = writer.get_ref().written.clone();
    assert!(matches!(writer.finish(&footer()), Err(WriteError::Poisoned)));
    let trace = TraceFile::from_bytes(written, "full.aiocop").unwrap();
    assert!(trace.cut_short());
    assert_eq!(trace.read_chunk(0).unwrap(), chunks()[0]);
    assert_eq!(trace.chunk_count(), 1);
}

#[test]
fn a_chunk_too_large_for_one_frame_is_split() {
    let chunk = Chunk {
        strings: (0..100).map(|i| (i, format!("string number {i}"))).collect(),
        base_offset_ns: 777,
        slices: (0..1000)
            .map(|i| SliceRecord {
                start_delta_ns: i % 13,
                duration_ns: i,
                what: (i % 100) as u32,
                ..Default::default()
            })
            .collect(),
        dropped_slices: 5,
        ..Chunk::default()
    };
    let mut writer = TraceWriter::new(Vec::new(), &header()).unwrap();
    writer.set_max_raw_len(1000);
    writer.write_chunk(&chunk).unwrap();
    assert!(writer.chunks_written() > 4);
    let parts = writer.chunks_written();
    let bytes = writer.finish(&footer()).unwrap();
    let trace = TraceFile::from_bytes(bytes, "split.aiocop").unwrap();
    assert_eq!(trace.chunk_count() as u64, parts);
    let read: Vec<Chunk> = trace.chunks().collect::<Result<_, _>>().unwrap();
    let mut dictionary = Dictionary::default();
    let (mut slices, mut starts) = (Vec::new(), Vec::new());
    for part in &read {
        assert!(trace.chunk_info(0).unwrap().raw_len <= 1000);
        dictionary.add(part);
        let mut start = part.base_offset_ns;
        for slice in &part.slices {
            start += slice.start_delta_ns;
            starts.push(start);
            slices.push(SliceRecord { start_delta_ns: 0, ..slice.clone() });
        }
    }
    let mut start = chunk.base_offset_ns;
    let expected_starts: Vec<u64> = chunk
        .slices
        .iter()
        .map(|s| {
            start += s.start_delta_ns;
            start
        })
        .collect();
    assert_eq!(starts, expected_starts);
    let expected: Vec<SliceRecord> =
        chunk.slices.iter().map(|s| SliceRecord { start_delta_ns: 0, ..s.clone() }).collect();
    assert_eq!(slices, expected);
    assert_eq!(dictionary.counts(), (100, 0, 0));
    assert_eq!(read.iter().map(|c| c.dropped_slices).sum::<u64>(), 5);

    // A single string too large for a frame cannot be split.
    let mut writer = TraceWriter::new(Vec::new(), &header()).unwrap();
    writer.set_max_raw_len(1000);
    let huge = Chunk { strings: vec![(0, "x".repeat(2000))], ..Chunk::default() };
    let error = writer.write_chunk(&huge).unwrap_err();
    assert!(matches!(error, WriteError::TooLarge { .. }), "{error}");
}

#[test]
fn chunks_can_be_read_in_parallel() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<TraceFile>();
    assert_send_sync::<ReadError>();
    fn assert_send<T: Send>() {}
    assert_send::<TraceWriter<std::fs::File>>();

    let bytes = write_trace(&header(), &chunks(), Some(&footer()));
    let temp = TempFile::new("parallel");
    std::fs::write(&temp.0, &bytes).unwrap();
    let trace = TraceFile::open(&temp.0).unwrap();
    let read: Vec<Chunk> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..3)
            .rev()
            .map(|i| {
                scope.spawn({
                    let trace = &trace;
                    move || trace.read_chunk(i)
                })
            })
            .collect();
        handles.into_iter().rev().map(|h| h.join().unwrap().unwrap()).collect()
    });
    assert_eq!(read, chunks());
}

#[test]
fn the_dictionary_resolves_ids_across_chunks() {
    let mut early = Dictionary::default();
    early.add(&chunks()[0]);
    let mut late = Dictionary::new();
    late.add(&chunks()[1]);
    late.add(&Chunk { strings: vec![(0, "redefined".into())], ..Chunk::default() });
    early.merge(late);
    assert_eq!(early.string(0), Some("app.handlers.get_user"), "the first definition wins");
    assert_eq!(early.string(7), Some("asyncio.sleep"));
    assert_eq!(early.string(99), None);
    assert_eq!(early.frame(0), Some(&Frame { file: 1, line: 12, function: 2 }));
    assert_eq!(early.stack(0), Some(&[0, 1][..]));
    assert_eq!(early.stack(u32::MAX), None);
    assert_eq!(early.format_frame(0), "svc/api.py:12:get_user");
    assert_eq!(early.format_frame(1), "svc/api.py:-1:get_user");
    assert_eq!(early.format_frame(5), "<unknown frame 5>");
    let mut broken = Dictionary::default();
    broken.add(&Chunk { frames: vec![(0, Frame { file: 40, line: 1, function: 41 })], ..Chunk::default() });
    assert_eq!(broken.format_frame(0), "<unknown string 40>:1:<unknown string 41>");
    assert_eq!(early.frame_name(0), Some(("svc.api", "get_user")));
    assert_eq!(broken.frame_name(0), None, "a frame of a 1.0 trace has no name");
    assert_eq!(early.counts(), (9, 2, 2));
    assert!(!early.is_empty() && Dictionary::default().is_empty());
}

/// A chunk of `count` slices of `await asyncio.sleep(0)`: the same callback,
/// one thread, starts a few microseconds apart with jitter, no events.
fn pure_slices(count: usize) -> Vec<SliceRecord> {
    let mut state: u64 = 42;
    (0..count)
        .map(|_| SliceRecord {
            start_delta_ns: 4_000 + xorshift(&mut state) % 256,
            duration_ns: 1_500 + xorshift(&mut state) % 64,
            what: 3,
            ..SliceRecord::default()
        })
        .collect()
}

fn chunk_frame_len(chunk: &Chunk) -> u64 {
    let mut writer = TraceWriter::new(Vec::new(), &header()).unwrap();
    writer.write_chunk(chunk).unwrap()
}

#[test]
fn a_pure_slice_takes_a_few_bytes() {
    const COUNT: usize = 10_000;
    let chunk =
        Chunk { strings: vec![(3, "main.<locals>.spin".into())], slices: pure_slices(COUNT), ..Chunk::default() };
    let frame_len = chunk_frame_len(&chunk);
    let raw_len = encode_payload(&chunk).unwrap().len();
    let per_slice = frame_len as f64 / COUNT as f64;
    println!("pure slices: {frame_len} bytes on disk ({raw_len} raw) for {COUNT}: {per_slice:.2} bytes per slice");
    assert!(per_slice < 4.0, "{per_slice:.2} bytes per pure slice");
}

#[test]
fn a_repeated_stack_costs_a_few_bytes_per_event() {
    const COUNT: usize = 10_000;
    let mut definitions = Chunk {
        strings: vec![
            (0, "/srv/app/src/svc/handlers.py".into()),
            (1, "handler".into()),
            (2, "/etc/hosts, r, 524288".into()),
        ],
        frames: (0..20).map(|i| (i, Frame { file: 0, line: 100 + i as i32, function: 1 })).collect(),
        stacks: vec![(0, (0..20).collect())],
        ..Chunk::default()
    };
    definitions.strings.push((3, "main.<locals>.spin".into()));
    let pure = Chunk { slices: pure_slices(COUNT), ..definitions.clone() };
    let mut state: u64 = 7;
    let with_events = Chunk {
        slices: pure_slices(COUNT)
            .into_iter()
            .map(|slice| SliceRecord {
                events: vec![EventRecord { event: 5, args: 2, offset_ns: 200 + xorshift(&mut state) % 64, stack: 0 }],
                score: 10,
                ..slice
            })
            .collect(),
        ..definitions
    };
    let (pure_len, events_len) = (chunk_frame_len(&pure), chunk_frame_len(&with_events));
    let per_event = (events_len - pure_len) as f64 / COUNT as f64;
    println!(
        "{COUNT} slices with one event on a repeated 20-frame stack: {events_len} bytes, {pure_len} without the events: {per_event:.2} bytes per event"
    );
    assert!(per_event < 3.0, "{per_event:.2} bytes per event");
}
