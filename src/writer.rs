//! Writes a trace: the file header and the header frame at once, then one
//! frame per chunk, then the footer (see `format.rs` for the layout).
//!
//! Each frame is built whole in memory and handed to `out` in one
//! `write_all`, then `out` is flushed, so that a crash leaves at most one
//! partial frame at the end, which readers recognise as a file cut short.
//! After a failed write the writer refuses to write more: appending after a
//! partial frame would make everything after it unreadable.

use crate::error::WriteError;
use crate::format::{
    encode_payload, Codec, FileHeader, FrameHeader, Payload, FILE_HEADER_LEN, FRAME_HEADER_LEN, MAX_PAYLOAD_LEN,
    MAX_WRITTEN_RAW_LEN,
};
use crate::records::{
    AllowedEvent, AllowedEvents, Appended, Chunk, EagerTasks, LoopIterations, PollRecord, SampleCpu, SampleTiming,
    SliceRecord, TaskTiming, TraceFooter, TraceHeader,
};
use std::fmt;
use std::io::Write;

/// The zstd level of every frame: 1 compresses a chunk of slices within 1%
/// of 3 (zstd's default) in 60% of the time (31 against 52 ns a slice of
/// 100 interleaved tasks), and the writer compresses every slice a program
/// runs.
pub const ZSTD_LEVEL: i32 = 1;

/// Writes one trace to `out`.
pub struct TraceWriter<W: Write> {
    out: W,
    compressor: zstd::bulk::Compressor<'static>,
    bytes_written: u64,
    chunks_written: u64,
    poisoned: bool,
    /// [`MAX_WRITTEN_RAW_LEN`], lowered by tests to exercise splitting.
    max_raw_len: u32,
}

impl<W: Write> fmt::Debug for TraceWriter<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceWriter")
            .field("bytes_written", &self.bytes_written)
            .field("chunks_written", &self.chunks_written)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

/// A payload that does not fit in one frame.
struct Oversized {
    len: u64,
    max: u64,
}

impl<W: Write> TraceWriter<W> {
    /// Writes the file header and the header frame, and flushes, so that even
    /// a trace that records nothing says what it is.
    pub fn new(out: W, header: &TraceHeader) -> Result<Self, WriteError> {
        Self::with_level(out, header, ZSTD_LEVEL)
    }

    /// [`TraceWriter::new`] with another zstd level (1 to 22; benchmarks).
    pub fn with_level(out: W, header: &TraceHeader, level: i32) -> Result<Self, WriteError> {
        let compressor = zstd::bulk::Compressor::new(level)
            .map_err(|source| WriteError::Compress { what: "the trace header", source })?;
        let mut writer = TraceWriter {
            out,
            compressor,
            bytes_written: 0,
            chunks_written: 0,
            poisoned: false,
            max_raw_len: MAX_WRITTEN_RAW_LEN,
        };
        let mut bytes = Vec::with_capacity(FILE_HEADER_LEN + FRAME_HEADER_LEN + 256);
        bytes.extend_from_slice(&FileHeader::CURRENT.to_bytes());
        match writer.encode_frame(header, "the trace header", &mut bytes)? {
            Ok(()) => {}
            Err(Oversized { len, max }) => return Err(WriteError::TooLarge { what: "the trace header", len, max }),
        }
        writer.emit(&bytes)?;
        Ok(writer)
    }

    /// Compresses and writes `chunk` as one frame, then flushes `out`.
    /// Returns the bytes written.
    ///
    /// A chunk too large for one frame (more than [`MAX_WRITTEN_RAW_LEN`]
    /// encoded) is written as several: its slices split in halves, its
    /// definitions in the first part, until every part fits. Each part counts
    /// in [`chunks_written`](Self::chunks_written).
    pub fn write_chunk(&mut self, chunk: &Chunk) -> Result<u64, WriteError> {
        if self.poisoned {
            return Err(WriteError::Poisoned);
        }
        let mut bytes = Vec::new();
        let mut frames = 0;
        self.encode_chunk(chunk, &mut bytes, &mut frames)?;
        self.emit(&bytes)?;
        self.chunks_written += frames;
        Ok(bytes.len() as u64)
    }

    /// Writes the footer frame, flushes, and returns `out`. Syncing to disk,
    /// if wanted, is the caller's (`File::sync_all`).
    pub fn finish(mut self, footer: &TraceFooter) -> Result<W, WriteError> {
        if self.poisoned {
            return Err(WriteError::Poisoned);
        }
        let mut bytes = Vec::new();
        match self.encode_frame(footer, "the trace footer", &mut bytes)? {
            Ok(()) => {}
            Err(Oversized { len, max }) => return Err(WriteError::TooLarge { what: "the trace footer", len, max }),
        }
        self.emit(&bytes)?;
        Ok(self.out)
    }

    /// Bytes written so far, file header included.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// Chunk frames written so far.
    pub fn chunks_written(&self) -> u64 {
        self.chunks_written
    }

    /// The output, to inspect it (not to write to it: that would corrupt the trace).
    pub fn get_ref(&self) -> &W {
        &self.out
    }

    /// Lowers the size at which chunks are split, to test splitting without 32 MiB chunks.
    #[cfg(test)]
    pub(crate) fn set_max_raw_len(&mut self, max_raw_len: u32) {
        self.max_raw_len = max_raw_len;
    }

    fn encode_chunk(&mut self, chunk: &Chunk, bytes: &mut Vec<u8>, frames: &mut u64) -> Result<(), WriteError> {
        match self.encode_frame(chunk, "a chunk", bytes)? {
            Ok(()) => {
                *frames += 1;
                Ok(())
            }
            Err(Oversized { len, max }) => {
                let Some((first, second)) = split_chunk(chunk) else {
                    return Err(WriteError::TooLarge { what: "a chunk", len, max });
                };
                self.encode_chunk(&first, bytes, frames)?;
                self.encode_chunk(&second, bytes, frames)
            }
        }
    }

    /// Appends the frame of `value` to `bytes`, or says it is too large.
    fn encode_frame<T: Payload>(
        &mut self,
        value: &T,
        what: &'static str,
        bytes: &mut Vec<u8>,
    ) -> Result<Result<(), Oversized>, WriteError> {
        let raw = encode_payload(value).map_err(|source| WriteError::Encode { what, source })?;
        let raw_len = match u32::try_from(raw.len()) {
            Ok(len) if len <= self.max_raw_len => len,
            _ => return Ok(Err(Oversized { len: raw.len() as u64, max: u64::from(self.max_raw_len) })),
        };
        let payload = self.compressor.compress(&raw).map_err(|source| WriteError::Compress { what, source })?;
        let payload_len = match u32::try_from(payload.len()) {
            Ok(len) if len <= MAX_PAYLOAD_LEN => len,
            _ => return Ok(Err(Oversized { len: payload.len() as u64, max: u64::from(MAX_PAYLOAD_LEN) })),
        };
        let header = FrameHeader {
            kind: T::KIND as u8,
            codec: Codec::Zstd as u8,
            payload_len,
            raw_len,
            crc32: crc32fast::hash(&payload),
        };
        bytes.reserve(FRAME_HEADER_LEN + payload.len());
        bytes.extend_from_slice(&header.to_bytes());
        bytes.extend_from_slice(&payload);
        Ok(Ok(()))
    }

    fn emit(&mut self, bytes: &[u8]) -> Result<(), WriteError> {
        if self.poisoned {
            return Err(WriteError::Poisoned);
        }
        let result = self.out.write_all(bytes).and_then(|()| self.out.flush());
        if let Err(error) = result {
            self.poisoned = true;
            return Err(WriteError::Io(error));
        }
        self.bytes_written += bytes.len() as u64;
        Ok(())
    }
}

/// Splits a chunk in two that say the same: the slices in halves (the second
/// half's base moved to keep every slice's start), or, for a chunk of at most
/// one slice, its definitions (strings, then frames, then stacks) in halves,
/// the first half alone in a chunk before the rest. `None` if there is
/// nothing left to split.
fn split_chunk(chunk: &Chunk) -> Option<(Chunk, Chunk)> {
    if chunk.slices.len() >= 2 {
        let (head, tail) = chunk.slices.split_at(chunk.slices.len() / 2);
        let mut tail: Vec<SliceRecord> = tail.to_vec();
        // A slice starts at the chunk's base plus the deltas up to its own;
        // the second half's first slice keeps the first slice's delta
        // (normally 0), and the base absorbs the rest.
        let first_delta = head.first().map_or(0, |s| s.start_delta_ns);
        let tail_start = head
            .iter()
            .chain(tail.first())
            .fold(chunk.base_offset_ns, |start, slice| start.saturating_add(slice.start_delta_ns));
        if let Some(first) = tail.first_mut() {
            first.start_delta_ns = first_delta;
        }
        // Sample times name their slice by its index in the chunk.
        let head_len = head.len() as u32;
        let (head_times, tail_times) = split_by_slice(&chunk.sample_timing.slices, head_len, |t| &mut t.slice);
        let (head_cpu, tail_cpu) = split_by_slice(&chunk.sample_cpu.slices, head_len, |t| &mut t.slice);
        let (head_allowed, tail_allowed) = split_allowed(&chunk.allowed, head.len() as u32);
        let (head_polls, tail_polls) = split_polls(&chunk.loop_iterations, tail_start);
        let (head_tasks, tail_tasks) = split_task_timing(&chunk.task_timing, head.len() as u32);
        let (head_eager, tail_eager) = split_eager_tasks(&chunk.eager_tasks, head_len);
        let first = Chunk {
            strings: chunk.strings.clone(),
            frames: chunk.frames.clone(),
            stacks: chunk.stacks.clone(),
            base_offset_ns: chunk.base_offset_ns,
            slices: head.to_vec(),
            dropped_slices: chunk.dropped_slices,
            frame_names: chunk.frame_names.clone(),
            sample_timing: Appended(SampleTiming { slices: head_times }),
            allowed: Appended(head_allowed),
            loop_iterations: Appended(head_polls),
            task_timing: Appended(head_tasks),
            sample_cpu: Appended(SampleCpu { slices: head_cpu }),
            eager_tasks: Appended(head_eager),
        };
        let second = Chunk {
            base_offset_ns: tail_start.saturating_sub(first_delta),
            slices: tail,
            dropped_slices: 0,
            sample_timing: Appended(SampleTiming { slices: tail_times }),
            allowed: Appended(tail_allowed),
            loop_iterations: Appended(tail_polls),
            task_timing: Appended(tail_tasks),
            sample_cpu: Appended(SampleCpu { slices: tail_cpu }),
            eager_tasks: Appended(tail_eager),
            ..Chunk::default()
        };
        return Some((first, second));
    }
    let definitions = chunk.strings.len() + chunk.frames.len() + chunk.stacks.len();
    if definitions < 2 {
        return None;
    }
    // Frame names may come in either half: a reader merges definitions.
    let mut first =
        Chunk { dropped_slices: chunk.dropped_slices, frame_names: chunk.frame_names.clone(), ..Chunk::default() };
    let mut second = Chunk {
        base_offset_ns: chunk.base_offset_ns,
        slices: chunk.slices.clone(),
        sample_timing: chunk.sample_timing.clone(),
        allowed: chunk.allowed.clone(),
        loop_iterations: chunk.loop_iterations.clone(),
        task_timing: chunk.task_timing.clone(),
        sample_cpu: chunk.sample_cpu.clone(),
        eager_tasks: chunk.eager_tasks.clone(),
        ..Chunk::default()
    };
    let mut to_first = definitions / 2;
    let take = |n: &mut usize, len: usize| {
        let taken = (*n).min(len);
        *n -= taken;
        taken
    };
    let strings = take(&mut to_first, chunk.strings.len());
    let frames = take(&mut to_first, chunk.frames.len());
    let stacks = take(&mut to_first, chunk.stacks.len());
    let (a, b) = chunk.strings.split_at(strings);
    (first.strings, second.strings) = (a.to_vec(), b.to_vec());
    let (a, b) = chunk.frames.split_at(frames);
    (first.frames, second.frames) = (a.to_vec(), b.to_vec());
    let (a, b) = chunk.stacks.split_at(stacks);
    (first.stacks, second.stacks) = (a.to_vec(), b.to_vec());
    Some((first, second))
}

/// The task timing of the slices before `at`, and that of the others with
/// their slice indices counted from `at`.
fn split_task_timing(timing: &TaskTiming, at: u32) -> (TaskTiming, TaskTiming) {
    let cut = (at as usize).min(timing.ready.len());
    let (head_created, tail_created) = split_by_slice(&timing.created, at, |c| &mut c.slice);
    let (head_ended, tail_ended) = split_by_slice(&timing.ended, at, |e| &mut e.slice);
    let head = TaskTiming { ready: timing.ready[..cut].to_vec(), created: head_created, ended: head_ended };
    let tail = TaskTiming { ready: timing.ready[cut..].to_vec(), created: tail_created, ended: tail_ended };
    (head, tail)
}

/// The eager tasks of the slices before `at`, and those of the others with
/// their slice indices counted from `at`.
fn split_eager_tasks(eager: &EagerTasks, at: u32) -> (EagerTasks, EagerTasks) {
    let (head_steps, tail_steps) = split_by_slice(&eager.first_steps, at, |e| &mut e.slice);
    let (head_ended, tail_ended) = split_by_slice(&eager.ended, at, |e| &mut e.slice);
    (
        EagerTasks { first_steps: head_steps, ended: head_ended },
        EagerTasks { first_steps: tail_steps, ended: tail_ended },
    )
}

/// Entries that name their slice by its index in the chunk (`slice_of`),
/// split as the slices are at `head_len`: the tail's renumbered from 0.
fn split_by_slice<T: Clone>(entries: &[T], head_len: u32, slice_of: impl Fn(&mut T) -> &mut u32) -> (Vec<T>, Vec<T>) {
    let (mut head, mut tail) = (Vec::new(), Vec::new());
    for mut entry in entries.iter().cloned() {
        let slice = slice_of(&mut entry);
        if *slice < head_len {
            head.push(entry);
        } else {
            *slice -= head_len;
            tail.push(entry);
        }
    }
    (head, tail)
}

/// The allowed events of the slices before `at`, and those of the others
/// with their slice indices counted from `at`.
fn split_allowed(allowed: &AllowedEvents, at: u32) -> (AllowedEvents, AllowedEvents) {
    let (mut head, mut tail) = (AllowedEvents::default(), AllowedEvents::default());
    for event in &allowed.kept {
        match event.slice.checked_sub(at) {
            None => head.kept.push(*event),
            Some(slice) => tail.kept.push(AllowedEvent { slice, ..*event }),
        }
    }
    for &(slice, count) in &allowed.dropped {
        match slice.checked_sub(at) {
            None => head.dropped.push((slice, count)),
            Some(slice) => tail.dropped.push((slice, count)),
        }
    }
    (head, tail)
}

/// The polls of `iterations` that started before `tail_start_ns`, and the
/// others: each half goes with the slices around it.
fn split_polls(iterations: &LoopIterations, tail_start_ns: u64) -> (LoopIterations, LoopIterations) {
    let threads = iterations.polling_threads.clone();
    let mut head = LoopIterations {
        base_offset_ns: iterations.base_offset_ns,
        polls: Vec::new(),
        polling_threads: threads.clone(),
    };
    let mut tail = LoopIterations { polling_threads: threads, ..LoopIterations::default() };
    let mut start_ns = iterations.base_offset_ns;
    for poll in &iterations.polls {
        let previous_ns = start_ns;
        start_ns = start_ns.saturating_add(poll.start_delta_ns);
        if start_ns < tail_start_ns {
            head.polls.push(*poll);
        } else if tail.polls.is_empty() {
            tail.base_offset_ns = start_ns;
            tail.polls.push(PollRecord { start_delta_ns: 0, ..*poll });
        } else {
            tail.polls.push(PollRecord { start_delta_ns: start_ns - previous_ns, ..*poll });
        }
    }
    (head, tail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::Frame;

    fn slice(start_delta_ns: u64) -> SliceRecord {
        SliceRecord { start_delta_ns, duration_ns: 1, ..SliceRecord::default() }
    }

    fn starts(chunk: &Chunk) -> Vec<u64> {
        let mut start = chunk.base_offset_ns;
        chunk
            .slices
            .iter()
            .map(|s| {
                start += s.start_delta_ns;
                start
            })
            .collect()
    }

    #[test]
    fn splitting_slices_keeps_every_start_and_the_definitions_first() {
        let chunk = Chunk {
            strings: vec![(0, "a".into())],
            base_offset_ns: 1000,
            slices: vec![slice(0), slice(10), slice(20), slice(30), slice(40)],
            dropped_slices: 7,
            ..Chunk::default()
        };
        let (first, second) = split_chunk(&chunk).unwrap();
        assert_eq!(first.strings, chunk.strings);
        assert!(second.strings.is_empty());
        assert_eq!((first.dropped_slices, second.dropped_slices), (7, 0));
        let mut both = starts(&first);
        both.extend(starts(&second));
        assert_eq!(both, starts(&chunk));
        assert_eq!(both, [1000, 1010, 1030, 1060, 1100]);
        assert_eq!(second.base_offset_ns, 1010 + 20);
        assert_eq!(second.slices[0].start_delta_ns, 0);
    }

    #[test]
    fn splitting_slices_keeps_each_allowed_event_with_its_slice() {
        let allowed = |slice, event| AllowedEvent { slice, event, entry: 9 };
        let chunk = Chunk {
            slices: vec![slice(0), slice(10), slice(20), slice(30)],
            allowed: Appended(AllowedEvents {
                kept: vec![allowed(0, 1), allowed(3, 0)],
                dropped: vec![(1, 4), (2, 5)],
            }),
            ..Chunk::default()
        };
        let (first, second) = split_chunk(&chunk).unwrap();
        assert_eq!(*first.allowed, AllowedEvents { kept: vec![allowed(0, 1)], dropped: vec![(1, 4)] });
        assert_eq!(*second.allowed, AllowedEvents { kept: vec![allowed(1, 0)], dropped: vec![(0, 5)] });
    }

    #[test]
    fn splitting_definitions_puts_strings_before_frames_before_stacks() {
        let chunk = Chunk {
            strings: vec![(0, "a".into()), (1, "b".into()), (2, "c".into())],
            frames: vec![(0, Frame { file: 0, line: 1, function: 1 })],
            stacks: vec![(0, vec![0])],
            slices: vec![slice(0)],
            ..Chunk::default()
        };
        let (first, second) = split_chunk(&chunk).unwrap();
        assert_eq!(first.strings.len(), 2);
        assert!(first.frames.is_empty() && first.stacks.is_empty() && first.slices.is_empty());
        assert_eq!(second.strings.len(), 1);
        assert_eq!((second.frames.len(), second.stacks.len(), second.slices.len()), (1, 1, 1));
        assert!(split_chunk(&Chunk { slices: vec![slice(0)], ..Chunk::default() }).is_none());
    }
}
