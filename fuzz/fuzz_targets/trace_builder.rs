//! Structure-aware: builds a valid trace from arbitrary values (a header,
//! chunks of definitions and slices with every field, a footer or none),
//! writes it with the real writer, and reads it back: every chunk must come
//! back as it was written, and every id resolve without a panic. Then each
//! of the analyzer's views runs on it. Random bytes almost never make a
//! trace; these always do, so the fuzzer explores what is in the chunks.
#![no_main]

use aiocop_trace::records::{
    Appended, Chunk, EventRecord, EventSpec, Frame, FrameName, LoopIterations, PollRecord, SliceRecord, TraceFooter, TraceHeader,
};
use aiocop_trace::{Dictionary, TraceFile, TraceWriter};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    label: Option<String>,
    threshold_ns: u64,
    /// Event names (and weights) of the header's table.
    events: Vec<(String, i64)>,
    chunks: Vec<ArbitraryChunk>,
    /// The footer's counts and end; `None`: cut short, as by a crash.
    footer: Option<(u64, u64, u64, u64, u64)>,
}

#[derive(Arbitrary, Debug)]
struct ArbitraryChunk {
    strings: Vec<(u32, String)>,
    frames: Vec<(u32, u32, i32, u32)>,
    stacks: Vec<(u32, Vec<u32>)>,
    base_offset_ns: u64,
    slices: Vec<ArbitrarySlice>,
    dropped_slices: u64,
    frame_names: Vec<(u32, u32, u32)>,
    /// Format 1.3's loop iterations: base, `(start delta, wait, thread)` polls, polling threads.
    loop_iterations: (u64, Vec<(u64, u64, u32)>, Vec<u32>),
}

#[derive(Arbitrary, Debug)]
struct ArbitrarySlice {
    start_delta_ns: u64,
    duration_ns: u64,
    what: u32,
    task: Option<u32>,
    thread: u32,
    exceeded: bool,
    events: Vec<(u16, u32, u64, u32)>,
    dropped_events: u32,
    score: i64,
    samples: Vec<u32>,
    context: Vec<(u32, u32)>,
}

impl ArbitraryChunk {
    fn to_chunk(&self) -> Chunk {
        Chunk {
            strings: self.strings.clone(),
            frames: self.frames.iter().map(|&(id, file, line, function)| (id, Frame { file, line, function })).collect(),
            stacks: self.stacks.clone(),
            base_offset_ns: self.base_offset_ns,
            slices: self.slices.iter().map(ArbitrarySlice::to_record).collect(),
            dropped_slices: self.dropped_slices,
            frame_names: Appended(
                self.frame_names.iter().map(|&(id, module, qualname)| (id, FrameName { module, qualname })).collect(),
            ),
            sample_timing: Appended::default(),
            allowed: Appended::default(),
            loop_iterations: Appended(LoopIterations {
                base_offset_ns: self.loop_iterations.0,
                polls: self
                    .loop_iterations
                    .1
                    .iter()
                    .map(|&(start_delta_ns, wait_ns, thread)| PollRecord { start_delta_ns, wait_ns, thread })
                    .collect(),
                polling_threads: self.loop_iterations.2.clone(),
            }),
            task_timing: Appended::default(),
            sample_cpu: Appended::default(),
            eager_tasks: Appended::default(),
        }
    }
}

impl ArbitrarySlice {
    fn to_record(&self) -> SliceRecord {
        SliceRecord {
            start_delta_ns: self.start_delta_ns,
            duration_ns: self.duration_ns,
            what: self.what,
            task: self.task,
            thread: self.thread,
            exceeded: self.exceeded,
            events: self
                .events
                .iter()
                .map(|&(event, args, offset_ns, stack)| EventRecord { event, args, offset_ns, stack })
                .collect(),
            dropped_events: self.dropped_events,
            score: self.score,
            samples: self.samples.clone(),
            context: self.context.clone(),
        }
    }
}

fuzz_target!(|input: Input| {
    let header = TraceHeader {
        aiocop_version: "fuzz".to_owned(),
        label: input.label.clone(),
        threshold_ns: input.threshold_ns,
        event_table: input.events.iter().map(|(name, weight)| EventSpec { name: name.clone(), weight: *weight }).collect(),
        ..TraceHeader::default()
    };
    let chunks: Vec<Chunk> = input.chunks.iter().map(ArbitraryChunk::to_chunk).collect();
    let mut writer = TraceWriter::new(Vec::new(), &header).expect("a header in memory is written");
    for chunk in &chunks {
        writer.write_chunk(chunk).expect("a small chunk is written");
    }
    let bytes = match input.footer {
        Some((slices, events, dropped_slices, chunks, end_offset_ns)) => writer
            .finish(&TraceFooter { slices, events, dropped_slices, chunks, end_offset_ns })
            .expect("a footer is written"),
        None => writer.get_ref().clone(),
    };

    let trace = TraceFile::from_bytes(bytes.clone(), "fuzz.aiocop").expect("a written trace opens");
    assert_eq!(trace.header(), &header);
    assert_eq!(trace.chunk_count(), chunks.len());
    assert_eq!(trace.cut_short(), input.footer.is_none());
    let mut dictionary = Dictionary::default();
    for (index, written) in chunks.iter().enumerate() {
        let read = trace.read_chunk(index).expect("a written chunk reads");
        assert_eq!(&read, written, "chunk {index} reads back otherwise");
        dictionary.add(&read);
        for slice in &read.slices {
            for stack in slice.events.iter().map(|e| e.stack).chain(slice.samples.iter().copied()) {
                for frame in dictionary.stack(stack).unwrap_or_default() {
                    let _ = dictionary.format_frame(*frame);
                }
            }
        }
    }
    aiocop_trace_fuzz::run_each_view(&bytes);
});
