//! Encodes a chunk payload: the bytes bincode 2's derive and standard
//! configuration produce for a [`Chunk`] (`format.rs`), written by hand.
//!
//! The recorder's writer encodes every slice a program runs; bincode's
//! generic encoder spent about 75 ns on one (a varint at a time through its
//! writer trait), more than compressing it. The encoding is the one
//! `chunk_decoder.rs` describes; tests check that this encoder and bincode
//! produce the same bytes for random chunks, and the `chunk_codec` fuzz
//! target does for any chunk bincode can decode, so the two cannot drift.

use crate::records::{Chunk, EagerTasks, EventRecord, SampleCpu, SliceRecord, TaskTiming};

const U16_MARKER: u8 = 251;
const U32_MARKER: u8 = 252;
const U64_MARKER: u8 = 253;

/// Appends the payload of `chunk` to `out`.
pub fn encode_chunk(chunk: &Chunk, out: &mut Vec<u8>) {
    // A pure slice takes about 16 bytes.
    out.reserve(16 * chunk.slices.len() + 64);
    let mut out = Encoder { out };
    out.len(chunk.strings.len());
    for (id, text) in &chunk.strings {
        out.u64(u64::from(*id));
        out.len(text.len());
        out.out.extend_from_slice(text.as_bytes());
    }
    out.len(chunk.frames.len());
    for (id, frame) in &chunk.frames {
        out.u64(u64::from(*id));
        out.u64(u64::from(frame.file));
        out.i64(i64::from(frame.line));
        out.u64(u64::from(frame.function));
    }
    out.len(chunk.stacks.len());
    for (id, frames) in &chunk.stacks {
        out.u64(u64::from(*id));
        out.len(frames.len());
        frames.iter().for_each(|&frame| out.u64(u64::from(frame)));
    }
    out.u64(chunk.base_offset_ns);
    out.len(chunk.slices.len());
    chunk.slices.iter().for_each(|slice| out.slice(slice));
    out.u64(chunk.dropped_slices);
    out.len(chunk.frame_names.len());
    for (id, name) in chunk.frame_names.iter() {
        out.u64(u64::from(*id));
        out.u64(u64::from(name.module));
        out.u64(u64::from(name.qualname));
    }
    out.len(chunk.sample_timing.slices.len());
    for timed in &chunk.sample_timing.slices {
        out.u64(u64::from(timed.slice));
        out.len(timed.times.len());
        for time in &timed.times {
            out.u64(time.taken_offset_ns);
            out.u64(time.waited_ns);
        }
    }
    out.len(chunk.allowed.kept.len());
    for allowed in &chunk.allowed.kept {
        out.u64(u64::from(allowed.slice));
        out.u64(u64::from(allowed.event));
        out.u64(u64::from(allowed.entry));
    }
    out.len(chunk.allowed.dropped.len());
    for &(slice, count) in &chunk.allowed.dropped {
        out.u64(u64::from(slice));
        out.u64(u64::from(count));
    }
    out.u64(chunk.loop_iterations.base_offset_ns);
    out.len(chunk.loop_iterations.polls.len());
    for poll in &chunk.loop_iterations.polls {
        out.u64(poll.start_delta_ns);
        out.u64(poll.wait_ns);
        out.u64(u64::from(poll.thread));
    }
    out.len(chunk.loop_iterations.polling_threads.len());
    chunk.loop_iterations.polling_threads.iter().for_each(|&thread| out.u64(u64::from(thread)));
    out.task_timing(&chunk.task_timing);
    out.sample_cpu(&chunk.sample_cpu);
    out.eager_tasks(&chunk.eager_tasks);
}

struct Encoder<'a> {
    out: &'a mut Vec<u8>,
}

impl Encoder<'_> {
    /// An unsigned integer of any width: bincode's varint depends on the
    /// value only, not on the field's type.
    #[inline(always)]
    fn u64(&mut self, value: u64) {
        if value < u64::from(U16_MARKER) {
            self.out.push(value as u8);
        } else if let Ok(value) = u16::try_from(value) {
            self.out.push(U16_MARKER);
            self.out.extend_from_slice(&value.to_le_bytes());
        } else if let Ok(value) = u32::try_from(value) {
            self.out.push(U32_MARKER);
            self.out.extend_from_slice(&value.to_le_bytes());
        } else {
            self.out.push(U64_MARKER);
            self.out.extend_from_slice(&value.to_le_bytes());
        }
    }

    /// A signed integer: the varint of its zigzag.
    #[inline(always)]
    fn i64(&mut self, value: i64) {
        self.u64(((value << 1) ^ (value >> 63)) as u64);
    }

    #[inline(always)]
    fn len(&mut self, len: usize) {
        self.u64(len as u64);
    }

    #[inline(always)]
    fn flag(&mut self, value: bool) {
        self.out.push(u8::from(value));
    }

    #[inline(always)]
    fn slice(&mut self, slice: &SliceRecord) {
        self.u64(slice.start_delta_ns);
        self.u64(slice.duration_ns);
        self.u64(u64::from(slice.what));
        match slice.task {
            None => self.flag(false),
            Some(task) => {
                self.flag(true);
                self.u64(u64::from(task));
            }
        }
        self.u64(u64::from(slice.thread));
        self.flag(slice.exceeded);
        self.len(slice.events.len());
        slice.events.iter().for_each(|event| self.event(event));
        self.u64(u64::from(slice.dropped_events));
        self.i64(slice.score);
        self.len(slice.samples.len());
        slice.samples.iter().for_each(|&stack| self.u64(u64::from(stack)));
        self.len(slice.context.len());
        for &(key, value) in &slice.context {
            self.u64(u64::from(key));
            self.u64(u64::from(value));
        }
    }

    fn sample_cpu(&mut self, cpu: &SampleCpu) {
        self.len(cpu.slices.len());
        for timed in &cpu.slices {
            self.u64(u64::from(timed.slice));
            self.len(timed.ran_ns.len());
            timed.ran_ns.iter().for_each(|&ran_ns| self.u64(ran_ns));
        }
    }

    fn task_timing(&mut self, timing: &TaskTiming) {
        self.len(timing.ready.len());
        for ready in &timing.ready {
            self.u64(ready.wait_ns);
            self.out.push(ready.since); // a u8 is a byte, not a varint
        }
        self.len(timing.created.len());
        for created in &timing.created {
            self.u64(u64::from(created.slice));
            self.u64(created.created_before_ns);
            self.optional_id(created.parent);
        }
        self.len(timing.ended.len());
        for ended in &timing.ended {
            self.u64(u64::from(ended.slice));
            self.out.push(ended.outcome);
        }
    }

    fn optional_id(&mut self, id: Option<u32>) {
        match id {
            None => self.flag(false),
            Some(id) => {
                self.flag(true);
                self.u64(u64::from(id));
            }
        }
    }

    fn eager_tasks(&mut self, eager: &EagerTasks) {
        self.len(eager.first_steps.len());
        for step in &eager.first_steps {
            self.u64(u64::from(step.slice));
            self.u64(step.ran_ns);
        }
        self.len(eager.ended.len());
        for task in &eager.ended {
            self.u64(u64::from(task.slice));
            self.u64(task.created_offset_ns);
            self.u64(task.ran_ns);
            self.u64(u64::from(task.what));
            self.out.push(task.outcome);
        }
    }

    fn event(&mut self, event: &EventRecord) {
        self.u64(u64::from(event.event));
        self.u64(u64::from(event.args));
        self.u64(event.offset_ns);
        self.u64(u64::from(event.stack));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::bincode_config;
    use crate::test_chunks::{random_chunk, Random};

    fn encoded(chunk: &Chunk) -> Vec<u8> {
        let mut out = Vec::new();
        encode_chunk(chunk, &mut out);
        out
    }

    #[test]
    fn agrees_with_bincode_on_random_chunks() {
        let mut random = Random(0x5851_f42d_4c95_7f2d);
        for _ in 0..2_000 {
            let chunk = random_chunk(&mut random);
            assert_eq!(encoded(&chunk), bincode::encode_to_vec(&chunk, bincode_config()).unwrap(), "{chunk:?}");
        }
    }

    #[test]
    fn appends_to_what_is_there() {
        let chunk = Chunk { base_offset_ns: 300, dropped_slices: 2, ..Chunk::default() };
        let mut out = vec![9];
        encode_chunk(&chunk, &mut out);
        // No definitions, base 300 (a u16 varint), no slices, 2 dropped, no
        // frame names, no sample times, nothing allowed (kept, dropped), no
        // loop iterations (base 0, no polls, no threads), no task timing
        // (ready, created, ended), no CPU times, no eager tasks (first
        // steps, ended).
        assert_eq!(out, [9, 0, 0, 0, 251, 44, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    }
}
