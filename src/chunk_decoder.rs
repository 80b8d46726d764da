//! Decodes a chunk payload one slice at a time, without building the
//! chunk's `Vec<SliceRecord>`.
//!
//! The bytes are those of bincode 2's derive and standard configuration
//! (`format.rs`), which the writer produces (`chunk_encoder.rs`); this
//! module reads exactly that encoding, by hand, because a report reads tens
//! of millions of slices and bincode's generic decoder spent about 80 ns on
//! each (building and dropping a 120-byte record, checking an allocation
//! budget per field). Here a pure `await asyncio.sleep(0)` slice is handed
//! over as a few numbers, and any other is decoded into one record reused
//! for the whole chunk.
//!
//! The encoding, as bincode writes it:
//! - an unsigned integer is one byte below 251, or a marker byte (251, 252,
//!   253) followed by 2, 4 or 8 little-endian bytes; a marker too wide for
//!   the field is an error, as in bincode;
//! - a signed integer is the unsigned encoding of its zigzag;
//! - `bool` and an `Option`'s tag are one byte, 0 or 1;
//! - a `Vec` or `String` is its length as a `u64`, then its elements;
//! - a struct or tuple is its fields in order.
//!
//! Tests check that bincode and this decoder agree on random chunks and on
//! the golden bytes, so the writer and this reader cannot drift.
//! Nothing read is trusted: a length is checked against the bytes left
//! before anything is allocated for it.

use crate::records::{
    AllowedEvent, Chunk, EagerFirstStep, EagerTask, EagerTasks, EventRecord, Frame, FrameName, PollRecord, ReadyWait,
    SampleCpu, SampleTime, SampleTiming, SliceRecord, SliceSampleCpu, SliceSampleTimes, StringId, TaskCreated,
    TaskEnded, TaskTiming,
};

/// Why a payload could not be decoded, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// Offset in the decompressed payload.
    pub offset: usize,
    /// What is wrong there.
    pub problem: &'static str,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {} of its decompressed payload", self.problem, self.offset)
    }
}

type Result<T> = std::result::Result<T, DecodeError>;

/// Asked before the decoder allocates `bytes` (definitions, a slice's
/// events and samples): `false` stops the decoding with
/// [`OVER_MEMORY_LIMIT`]. The reader counts them in its memory budget.
pub type Allocate<'a> = &'a dyn Fn(usize) -> bool;

/// The problem of a decoding stopped by its [`Allocate`].
pub const OVER_MEMORY_LIMIT: &str = "it needs more memory than the limit allows";

/// An [`Allocate`] that allows everything.
pub fn unlimited(_bytes: usize) -> bool {
    true
}

const U16_MARKER: u8 = 251;
const U32_MARKER: u8 = 252;
const U64_MARKER: u8 = 253;

/// The fewest bytes a `SliceRecord` takes: eleven fields of at least one byte.
const MIN_SLICE_BYTES: usize = 11;

/// A pure slice: not over the threshold, no blocking events, samples or
/// context. Most slices are pure (`await asyncio.sleep(0)`), so the decoder
/// hands them over as these numbers, without filling a [`SliceRecord`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PureSlice {
    /// From the previous slice's start (or the chunk's base for the first).
    pub start_delta_ns: u64,
    /// How long the callback ran.
    pub duration_ns: u64,
    /// What ran (see [`SliceRecord::what`]).
    pub what: StringId,
    /// The task's name, for a task's steps.
    pub task: Option<StringId>,
    /// The per-file number of the thread that ran it.
    pub thread: u32,
}

impl PureSlice {
    /// The record this slice stands for.
    pub fn to_record(self) -> SliceRecord {
        SliceRecord {
            start_delta_ns: self.start_delta_ns,
            duration_ns: self.duration_ns,
            what: self.what,
            task: self.task,
            thread: self.thread,
            ..SliceRecord::default()
        }
    }
}

/// Takes a chunk's slices in order, each with its start (nanoseconds from
/// the trace's start: the chunk's base plus the deltas so far).
pub trait SliceVisitor {
    /// A slice with nothing but its numbers (most of them).
    fn pure_slice(&mut self, start_ns: u64, slice: PureSlice);
    /// Any other slice, whole.
    fn slice(&mut self, start_ns: u64, slice: &SliceRecord);
    /// Any other slice, whole, with the times of its samples (format 1.3;
    /// empty when they are untimed: see [`crate::sample_weights`]) and the
    /// loop thread's CPU time over each one's wait (format 1.4; empty when
    /// unknown: see [`crate::waited_in_native_code`]). By default,
    /// [`slice`](Self::slice) without them.
    #[inline(always)]
    fn timed_slice(&mut self, start_ns: u64, slice: &SliceRecord, sample_times: &[SampleTime], sample_cpu: &[u64]) {
        let _ = (sample_times, sample_cpu);
        self.slice(start_ns, slice);
    }
}

/// A closure takes every slice as a record, pure ones too.
impl<F: FnMut(u64, &SliceRecord)> SliceVisitor for F {
    #[inline(always)]
    fn pure_slice(&mut self, start_ns: u64, slice: PureSlice) {
        self(start_ns, &slice.to_record());
    }

    #[inline(always)]
    fn slice(&mut self, start_ns: u64, slice: &SliceRecord) {
        self(start_ns, slice);
    }
}

/// Decodes the payload of a chunk: its definitions into the returned
/// [`Chunk`] (with `slices` left empty), and each slice to `visitor`.
/// Returns the chunk and the bytes it used; a payload written by a newer
/// minor version may carry more after them.
///
/// On an error, the slices before it have been passed to `visitor`.
#[inline]
pub fn decode_chunk(raw: &[u8], visitor: &mut impl SliceVisitor) -> Result<(Chunk, usize)> {
    decode_chunk_within(raw, visitor, &unlimited)
}

/// [`decode_chunk`], asking `allocate` before each allocation.
#[inline]
pub fn decode_chunk_within(
    raw: &[u8],
    visitor: &mut impl SliceVisitor,
    allocate: Allocate<'_>,
) -> Result<(Chunk, usize)> {
    let mut definitions = Cursor { bytes: raw, pos: 0 };
    let mut chunk = decode_definitions(&mut definitions, allocate)?;
    // A cursor of its own for the loop over slices, lent to no function
    // that is not inlined, so that its position stays in a register.
    let mut cursor = Cursor { bytes: raw, pos: definitions.pos };
    let slice_count = cursor.len(MIN_SLICE_BYTES)?;
    let mut slice = SliceRecord::default();
    let mut start_ns = chunk.base_offset_ns;
    // The sample times come after the slices: read ahead for them at the
    // first sampled slice (most chunks have none).
    let mut sample_times = SampleTimesAhead::default();
    for index in 0..slice_count {
        let start_delta_ns = cursor.u64()?;
        let duration_ns = cursor.u64()?;
        let what = cursor.u32()?;
        start_ns = start_ns.saturating_add(start_delta_ns);
        if let Some((task, thread)) = cursor.pure_slice_rest() {
            visitor.pure_slice(start_ns, PureSlice { start_delta_ns, duration_ns, what, task, thread });
        } else {
            (slice.start_delta_ns, slice.duration_ns, slice.what) = (start_delta_ns, duration_ns, what);
            cursor.pos = decode_slice_rest(raw, cursor.pos, &mut slice, allocate)?;
            let (times, cpu) = if slice.samples.is_empty() {
                (&[][..], &[][..])
            } else {
                sample_times.of_slice(raw, cursor.pos, (index, slice_count), allocate)?
            };
            visitor.timed_slice(start_ns, &slice, times, cpu);
        }
    }
    chunk.dropped_slices = cursor.u64()?;
    decode_appended(&mut cursor, &mut chunk, allocate)?;
    Ok((chunk, cursor.pos))
}

/// Decodes what later minor versions appended after the dropped count:
/// an older chunk ends before some of it, which then stays empty.
fn decode_appended(cursor: &mut Cursor<'_>, chunk: &mut Chunk, allocate: Allocate<'_>) -> Result<()> {
    // Format 1.1 appended the frame names; a 1.0 chunk ends here.
    if cursor.pos < cursor.bytes.len() {
        chunk.frame_names.0 =
            cursor.vec(allocate, 3, |c| Ok((c.u32()?, FrameName { module: c.u32()?, qualname: c.u32()? })))?;
    }
    // Format 1.3 appended the sample times; a 1.2 chunk ends here.
    if cursor.pos < cursor.bytes.len() {
        chunk.sample_timing.0 = SampleTiming {
            slices: cursor.vec(allocate, 2, |c| {
                let slice = c.u32()?;
                let times =
                    c.vec(allocate, 2, |c| Ok(SampleTime { taken_offset_ns: c.u64()?, waited_ns: c.u64()? }))?;
                Ok(SliceSampleTimes { slice, times })
            })?,
        };
    }
    // Then 1.3's allowed events.
    if cursor.pos < cursor.bytes.len() {
        chunk.allowed.kept =
            cursor.vec(allocate, 3, |c| Ok(AllowedEvent { slice: c.u32()?, event: c.u32()?, entry: c.u32()? }))?;
        chunk.allowed.dropped = cursor.vec(allocate, 2, |c| Ok((c.u32()?, c.u32()?)))?;
    }
    // Then 1.3's loop iterations.
    if cursor.pos < cursor.bytes.len() {
        chunk.loop_iterations.base_offset_ns = cursor.u64()?;
        chunk.loop_iterations.polls = cursor
            .vec(allocate, 3, |c| Ok(PollRecord { start_delta_ns: c.u64()?, wait_ns: c.u64()?, thread: c.u32()? }))?;
        chunk.loop_iterations.polling_threads = cursor.vec(allocate, 1, Cursor::u32)?;
    }
    // Format 1.4 appended the task timing; a 1.3 chunk ends here.
    if cursor.pos < cursor.bytes.len() {
        chunk.task_timing.0 = decode_task_timing(cursor, allocate)?;
    }
    // Then 1.4's samples' CPU times; a 1.4 chunk written before them ends
    // here, and its samples are judged by the wall clock.
    if cursor.pos < cursor.bytes.len() {
        chunk.sample_cpu.0 = SampleCpu {
            slices: cursor.vec(allocate, 2, |c| {
                Ok(SliceSampleCpu { slice: c.u32()?, ran_ns: c.vec(allocate, 1, Cursor::u64)? })
            })?,
        };
    }
    // Format 1.5 appended the eager tasks; a 1.4 chunk ends here.
    if cursor.pos < cursor.bytes.len() {
        chunk.eager_tasks.0 = decode_eager_tasks(cursor, allocate)?;
    }
    Ok(())
}

fn optional_id(cursor: &mut Cursor<'_>) -> Result<Option<u32>> {
    Ok(if cursor.flag()? { Some(cursor.u32()?) } else { None })
}

fn decode_eager_tasks(cursor: &mut Cursor<'_>, allocate: Allocate<'_>) -> Result<EagerTasks> {
    let first_steps = cursor.vec(allocate, 2, |c| Ok(EagerFirstStep { slice: c.u32()?, ran_ns: c.u64()? }))?;
    let ended = cursor.vec(allocate, 5, |c| {
        Ok(EagerTask {
            slice: c.u32()?,
            created_offset_ns: c.u64()?,
            ran_ns: c.u64()?,
            what: c.u32()?,
            outcome: c.byte()?,
        })
    })?;
    Ok(EagerTasks { first_steps, ended })
}

fn decode_task_timing(cursor: &mut Cursor<'_>, allocate: Allocate<'_>) -> Result<TaskTiming> {
    let ready = cursor.vec(allocate, 2, |c| Ok(ReadyWait { wait_ns: c.u64()?, since: c.byte()? }))?;
    let created = cursor.vec(allocate, 3, |c| {
        let (slice, created_before_ns) = (c.u32()?, c.u64()?);
        let parent = optional_id(c)?;
        Ok(TaskCreated { slice, created_before_ns, parent })
    })?;
    let ended = cursor.vec(allocate, 2, |c| Ok(TaskEnded { slice: c.u32()?, outcome: c.byte()? }))?;
    Ok(TaskTiming { ready, created, ended })
}

/// A chunk's sample times and CPU times, read ahead of the slice loop once
/// a slice needs them.
#[derive(Default)]
struct SampleTimesAhead {
    timing: Option<(SampleTiming, SampleCpu)>,
    /// The first entries that may be of a slice not visited yet (entries
    /// are in slice order): of the times, and of the CPU times.
    next: (usize, usize),
}

impl SampleTimesAhead {
    /// The times and CPU times of slice `index` (of `count`), whose record
    /// ends at `pos`.
    #[inline(never)]
    fn of_slice(
        &mut self,
        raw: &[u8],
        pos: usize,
        (index, count): (usize, usize),
        allocate: Allocate<'_>,
    ) -> Result<(&[SampleTime], &[u64])> {
        if self.timing.is_none() {
            self.timing = Some(read_ahead(raw, pos, count - index - 1, allocate)?);
        }
        let Some((timing, cpu)) = &self.timing else { return Ok((&[], &[])) };
        let times = entry_of_slice(&timing.slices, &mut self.next.0, index, |t| t.slice).map_or(&[][..], |t| &t.times);
        let cpu = entry_of_slice(&cpu.slices, &mut self.next.1, index, |t| t.slice).map_or(&[][..], |t| &t.ran_ns);
        Ok((times, cpu))
    }
}

/// The entry of slice `index` among `entries` (in slice order), from
/// `next` on, which moves past the entries of earlier slices.
fn entry_of_slice<'a, T>(
    entries: &'a [T],
    next: &mut usize,
    index: usize,
    slice_of: impl Fn(&T) -> u32,
) -> Option<&'a T> {
    while entries.get(*next).is_some_and(|entry| (slice_of(entry) as usize) < index) {
        *next += 1;
    }
    entries.get(*next).filter(|entry| slice_of(entry) as usize == index)
}

/// Skips the `slices_left` slices from `pos` and the fields after them, and
/// decodes the chunk's sample times (empty before format 1.3) and CPU
/// times (empty before 1.4).
fn read_ahead(raw: &[u8], pos: usize, slices_left: usize, allocate: Allocate<'_>) -> Result<(SampleTiming, SampleCpu)> {
    let mut cursor = Cursor { bytes: raw, pos };
    let mut scratch = SliceRecord::default();
    for _ in 0..slices_left {
        // The start delta, duration and what ran.
        cursor.u64()?;
        cursor.u64()?;
        cursor.u32()?;
        if cursor.pure_slice_rest().is_none() {
            cursor.pos = decode_slice_rest(raw, cursor.pos, &mut scratch, allocate)?;
        }
    }
    cursor.u64()?;
    let mut appended = Chunk::default();
    decode_appended(&mut cursor, &mut appended, allocate)?;
    Ok((appended.sample_timing.0, appended.sample_cpu.0))
}

/// Decodes the fields of a slice after `what` into `slice`, from `pos`;
/// returns the position after them. Out of line, with a cursor of its own:
/// few slices need it.
#[inline(never)]
fn decode_slice_rest(bytes: &[u8], pos: usize, slice: &mut SliceRecord, allocate: Allocate<'_>) -> Result<usize> {
    let mut cursor = Cursor { bytes, pos };
    slice.task = if cursor.flag()? { Some(cursor.u32()?) } else { None };
    slice.thread = cursor.u32()?;
    slice.exceeded = cursor.flag()?;
    cursor.refill(allocate, &mut slice.events, 4, |c| {
        Ok(EventRecord { event: c.u16()?, args: c.u32()?, offset_ns: c.u64()?, stack: c.u32()? })
    })?;
    slice.dropped_events = cursor.u32()?;
    slice.score = cursor.i64()?;
    cursor.refill(allocate, &mut slice.samples, 1, Cursor::u32)?;
    cursor.refill(allocate, &mut slice.context, 2, |c| Ok((c.u32()?, c.u32()?)))?;
    Ok(cursor.pos)
}

/// Decodes only the definitions of a chunk (strings, frames, stacks) and its
/// base offset; `slices` is left empty and `dropped_slices` zero.
pub fn decode_chunk_definitions(raw: &[u8]) -> Result<Chunk> {
    decode_chunk_definitions_within(raw, &unlimited)
}

/// [`decode_chunk_definitions`], asking `allocate` before each allocation.
pub fn decode_chunk_definitions_within(raw: &[u8], allocate: Allocate<'_>) -> Result<Chunk> {
    decode_definitions(&mut Cursor { bytes: raw, pos: 0 }, allocate)
}

fn decode_definitions(cursor: &mut Cursor<'_>, allocate: Allocate<'_>) -> Result<Chunk> {
    let strings = cursor.vec(allocate, 2, |c| Ok((c.u32()?, c.string(allocate)?)))?;
    let frames =
        cursor.vec(allocate, 4, |c| Ok((c.u32()?, Frame { file: c.u32()?, line: c.i32()?, function: c.u32()? })))?;
    let stacks = cursor.vec(allocate, 2, |c| Ok((c.u32()?, c.vec(allocate, 1, Cursor::u32)?)))?;
    let base_offset_ns = cursor.u64()?;
    Ok(Chunk { strings, frames, stacks, base_offset_ns, ..Chunk::default() })
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn error(&self, problem: &'static str) -> DecodeError {
        DecodeError { offset: self.pos, problem }
    }

    #[inline(always)]
    fn byte(&mut self) -> Result<u8> {
        let Some(&byte) = self.bytes.get(self.pos) else {
            return Err(self.error("it ends in the middle of a value"));
        };
        self.pos += 1;
        Ok(byte)
    }

    #[inline(always)]
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let Some(bytes) = self.bytes.get(self.pos..self.pos + N) else {
            return Err(self.error("it ends in the middle of a value"));
        };
        self.pos += N;
        Ok(bytes.try_into().expect("a slice of N bytes"))
    }

    /// An unsigned varint whose marker may be at most `widest`.
    #[inline(always)]
    fn varint(&mut self, widest: u8) -> Result<u64> {
        let byte = self.byte()?;
        if byte < U16_MARKER {
            return Ok(u64::from(byte));
        }
        self.wide_varint(byte, widest)
    }

    /// Durations and time deltas in nanoseconds usually take 2 or 4 bytes
    /// after their marker: this is a hot path too.
    #[inline(always)]
    fn wide_varint(&mut self, marker: u8, widest: u8) -> Result<u64> {
        match marker {
            U16_MARKER => Ok(u64::from(u16::from_le_bytes(self.array()?))),
            U32_MARKER if widest >= U32_MARKER => Ok(u64::from(u32::from_le_bytes(self.array()?))),
            U64_MARKER if widest >= U64_MARKER => Ok(u64::from_le_bytes(self.array()?)),
            _ => {
                self.pos -= 1;
                Err(self.error("an integer is too wide for its field"))
            }
        }
    }

    #[inline(always)]
    fn u64(&mut self) -> Result<u64> {
        self.varint(U64_MARKER)
    }

    #[inline(always)]
    fn u32(&mut self) -> Result<u32> {
        Ok(self.varint(U32_MARKER)? as u32)
    }

    #[inline(always)]
    fn u16(&mut self) -> Result<u16> {
        Ok(self.varint(U16_MARKER)? as u16)
    }

    #[inline(always)]
    fn i64(&mut self) -> Result<i64> {
        let zigzag = self.u64()?;
        Ok((zigzag >> 1) as i64 ^ -((zigzag & 1) as i64))
    }

    fn i32(&mut self) -> Result<i32> {
        let zigzag = self.u32()?;
        Ok((zigzag >> 1) as i32 ^ -((zigzag & 1) as i32))
    }

    #[inline(always)]
    fn flag(&mut self) -> Result<bool> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => {
                self.pos -= 1;
                Err(self.error("a flag is neither 0 nor 1"))
            }
        }
    }

    /// A length of elements of at least `min_element_bytes` each, refused if
    /// the bytes left cannot hold them: nothing is allocated for a length
    /// the payload does not back.
    #[inline(always)]
    fn len(&mut self, min_element_bytes: usize) -> Result<usize> {
        let start = self.pos;
        let len = self.u64()?;
        let left = (self.bytes.len() - self.pos) as u64;
        if len > left / min_element_bytes as u64 {
            self.pos = start;
            return Err(self.error("a length is longer than the rest of the payload"));
        }
        Ok(len as usize)
    }

    /// Asks `allocate` for `count` values of `T`.
    fn allocate<T>(&self, allocate: Allocate<'_>, count: usize) -> Result<()> {
        if count > 0 && !allocate(count.saturating_mul(std::mem::size_of::<T>())) {
            return Err(self.error(OVER_MEMORY_LIMIT));
        }
        Ok(())
    }

    fn string(&mut self, allocate: Allocate<'_>) -> Result<String> {
        let len = self.len(1)?;
        self.allocate::<u8>(allocate, len)?;
        let bytes = &self.bytes[self.pos..self.pos + len];
        let text = std::str::from_utf8(bytes).map_err(|_| self.error("a string is not UTF-8"))?;
        self.pos += len;
        Ok(text.to_owned())
    }

    fn vec<T>(
        &mut self,
        allocate: Allocate<'_>,
        min_element_bytes: usize,
        mut element: impl FnMut(&mut Self) -> Result<T>,
    ) -> Result<Vec<T>> {
        let len = self.len(min_element_bytes)?;
        self.allocate::<T>(allocate, len)?;
        let mut values = Vec::with_capacity(len);
        for _ in 0..len {
            values.push(element(self)?);
        }
        Ok(values)
    }

    /// Refills `values` in place, keeping its allocation for the next slice.
    #[inline(always)]
    fn refill<T>(
        &mut self,
        allocate: Allocate<'_>,
        values: &mut Vec<T>,
        min_element_bytes: usize,
        mut element: impl FnMut(&mut Self) -> Result<T>,
    ) -> Result<()> {
        values.clear();
        let len = self.len(min_element_bytes)?;
        if len > 0 {
            if len > values.capacity() {
                self.allocate::<T>(allocate, len - values.capacity())?;
            }
            values.reserve_exact(len);
            for _ in 0..len {
                values.push(element(self)?);
            }
        }
        Ok(())
    }

    /// The fields after `what` of a pure slice: the task, then seven bytes
    /// all zero but the thread number's (not over the threshold, no events,
    /// samples or context), read in one load. Returns `None`, having read
    /// nothing, for any other slice: it is then decoded field by field.
    #[inline(always)]
    fn pure_slice_rest(&mut self) -> Option<(Option<StringId>, u32)> {
        const AFTER_THREAD: u64 = 0x00ff_ffff_ffff_ff00;
        let start = self.pos;
        let task = match self.bytes.get(self.pos) {
            Some(0) => {
                self.pos += 1;
                None
            }
            Some(1) => {
                self.pos += 1;
                match self.u32() {
                    Ok(task) => Some(task),
                    Err(_) => {
                        self.pos = start;
                        return None;
                    }
                }
            }
            _ => return None,
        };
        // Eight bytes: the seven of the slice and one of whatever follows
        // (at least the chunk's dropped count), masked off.
        let word = self.bytes.get(self.pos..self.pos + 8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
        match word {
            Some(word) if word & AFTER_THREAD == 0 && (word as u8) < U16_MARKER => {
                self.pos += 7;
                Some((task, u32::from(word as u8)))
            }
            _ => {
                self.pos = start;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::encode_payload;
    use crate::test_chunks::{random_chunk, Random};

    fn decode_all(raw: &[u8]) -> Result<(Chunk, usize)> {
        let mut slices = Vec::new();
        let (mut chunk, used) = decode_chunk(raw, &mut |_, slice: &SliceRecord| slices.push(slice.clone()))?;
        chunk.slices = slices;
        Ok((chunk, used))
    }

    #[test]
    fn agrees_with_bincode_on_random_chunks() {
        let mut random = Random(0x2545_f491_4f6c_dd1d);
        for _ in 0..2_000 {
            let chunk = random_chunk(&mut random);
            let raw = encode_payload(&chunk).unwrap();
            let (decoded, used) = decode_all(&raw).unwrap();
            assert_eq!(decoded, chunk);
            assert_eq!(used, raw.len());
            let (by_bincode, _) = crate::format::decode_payload::<Chunk>(&raw).unwrap();
            assert_eq!(by_bincode, decoded);
        }
    }

    #[test]
    fn slices_get_their_start_from_the_base_and_the_deltas() {
        let slice = |start_delta_ns| SliceRecord { start_delta_ns, ..SliceRecord::default() };
        let chunk = Chunk { base_offset_ns: 1_000, slices: vec![slice(0), slice(5), slice(7)], ..Chunk::default() };
        let mut starts = Vec::new();
        decode_chunk(&encode_payload(&chunk).unwrap(), &mut |start, _: &SliceRecord| starts.push(start)).unwrap();
        assert_eq!(starts, [1_000, 1_005, 1_012]);
    }

    #[test]
    fn definitions_alone_stop_before_the_slices() {
        let mut random = Random(7);
        let chunk = random_chunk(&mut random);
        let definitions = decode_chunk_definitions(&encode_payload(&chunk).unwrap()).unwrap();
        assert_eq!(definitions.strings, chunk.strings);
        assert_eq!(definitions.stacks, chunk.stacks);
        assert_eq!(definitions.base_offset_ns, chunk.base_offset_ns);
        assert!(definitions.slices.is_empty());
    }

    #[test]
    fn every_cut_of_a_payload_is_an_error_where_bincode_errs_too() {
        let mut random = Random(11);
        let chunk = random_chunk(&mut random);
        let raw = encode_payload(&chunk).unwrap();
        // Cut where format 1.1's frame names start, the payload is a whole
        // 1.0 chunk; where 1.3's sample times start, a whole 1.2 chunk; where
        // its allowed events and its loop iterations start, a 1.3 chunk
        // without them; where 1.4's task timing starts, a whole 1.3 chunk;
        // where 1.4's CPU times start, a 1.4 chunk written before them;
        // where 1.5's eager tasks start, a whole 1.4 chunk (an empty appended
        // field takes a byte per vector or number: 1 for the sample times, 2
        // for the allowed events, 3 for the iterations, 3 for the task
        // timing, 1 for the CPU times, 2 for the eager tasks).
        let without = |frame_names: bool| Chunk {
            frame_names: if frame_names { chunk.frame_names.clone() } else { Default::default() },
            sample_timing: Default::default(),
            allowed: Default::default(),
            loop_iterations: Default::default(),
            task_timing: Default::default(),
            sample_cpu: Default::default(),
            eager_tasks: Default::default(),
            ..chunk.clone()
        };
        let format_1_0_end = encode_payload(&without(false)).unwrap().len() - 13;
        let format_1_2_end = encode_payload(&without(true)).unwrap().len() - 12;
        let times_end = encode_payload(&Chunk {
            allowed: Default::default(),
            loop_iterations: Default::default(),
            task_timing: Default::default(),
            sample_cpu: Default::default(),
            eager_tasks: Default::default(),
            ..chunk.clone()
        })
        .unwrap()
        .len()
            - 11;
        let allowed_end = encode_payload(&Chunk {
            loop_iterations: Default::default(),
            task_timing: Default::default(),
            sample_cpu: Default::default(),
            eager_tasks: Default::default(),
            ..chunk.clone()
        })
        .unwrap()
        .len()
            - 9;
        let iterations_end = encode_payload(&Chunk {
            task_timing: Default::default(),
            sample_cpu: Default::default(),
            eager_tasks: Default::default(),
            ..chunk.clone()
        })
        .unwrap()
        .len()
            - 6;
        let task_timing_end =
            encode_payload(&Chunk { sample_cpu: Default::default(), eager_tasks: Default::default(), ..chunk.clone() })
                .unwrap()
                .len()
                - 3;
        let cpu_end = encode_payload(&Chunk { eager_tasks: Default::default(), ..chunk.clone() }).unwrap().len() - 2;
        let (whole, _) = decode_all(&raw[..format_1_0_end]).unwrap();
        assert!(whole.frame_names.is_empty());
        let (whole, _) = decode_all(&raw[..format_1_2_end]).unwrap();
        assert_eq!(whole.frame_names, chunk.frame_names);
        assert!(whole.sample_timing.slices.is_empty());
        assert!(whole.allowed.is_empty());
        assert!(whole.loop_iterations.polls.is_empty());
        let (whole, _) = decode_all(&raw[..times_end]).unwrap();
        assert_eq!(whole.sample_timing, chunk.sample_timing);
        let (whole, _) = decode_all(&raw[..allowed_end]).unwrap();
        assert!(whole.loop_iterations.polls.is_empty());
        let (whole, _) = decode_all(&raw[..iterations_end]).unwrap();
        assert_eq!(whole.loop_iterations, chunk.loop_iterations);
        assert!(whole.task_timing.ready.is_empty());
        let (whole, _) = decode_all(&raw[..task_timing_end]).unwrap();
        assert_eq!(whole.task_timing, chunk.task_timing);
        assert!(whole.sample_cpu.slices.is_empty());
        assert!(!chunk.sample_cpu.slices.is_empty(), "the chunk has CPU times to cut");
        let (whole, _) = decode_all(&raw[..cpu_end]).unwrap();
        assert_eq!(whole.sample_cpu, chunk.sample_cpu);
        assert_eq!(whole.eager_tasks.0, EagerTasks::default());
        assert!(!chunk.eager_tasks.ended.is_empty(), "the chunk has eager tasks to cut");
        let whole_cuts =
            [format_1_0_end, format_1_2_end, times_end, allowed_end, iterations_end, task_timing_end, cpu_end];
        for cut in (0..raw.len()).filter(|cut| !whole_cuts.contains(cut)) {
            assert!(decode_all(&raw[..cut]).is_err(), "cut at {cut}");
            assert!(crate::format::decode_payload::<Chunk>(&raw[..cut]).is_err());
        }
    }

    #[test]
    fn malformed_values_are_refused_with_their_offset() {
        // No definitions, base 0, one slice whose `exceeded` flag is 2.
        let flag_two = [0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0];
        assert_eq!(
            decode_all(&flag_two).unwrap_err(),
            DecodeError { offset: 10, problem: "a flag is neither 0 nor 1" }
        );
        // A slice count that the payload cannot hold.
        let too_many = [0, 0, 0, 0, 253, 0, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(decode_all(&too_many).unwrap_err().problem, "a length is longer than the rest of the payload");
        // A string id written as a u64: too wide for a u32, as for bincode.
        let wide_id = [1, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            decode_all(&wide_id).unwrap_err(),
            DecodeError { offset: 1, problem: "an integer is too wide for its field" }
        );
        assert!(crate::format::decode_payload::<Chunk>(&wide_id).is_err());
        // A string that is not UTF-8.
        let latin1 = [1, 0, 1, 0xe9];
        assert_eq!(decode_all(&latin1).unwrap_err().problem, "a string is not UTF-8");
    }

    #[test]
    fn a_crafted_length_allocates_nothing_it_cannot_back() {
        // A chunk whose first string claims 2^40 bytes.
        let mut raw = vec![1, 0, 253];
        raw.extend_from_slice(&(1u64 << 40).to_le_bytes());
        assert_eq!(decode_all(&raw).unwrap_err().problem, "a length is longer than the rest of the payload");
    }
}
