//! Random chunks for the tests of the chunk encoder and decoder: values
//! around every varint width boundary, pure slices (the decoder's fast path)
//! and slices with every field set.

use crate::records::{
    AllowedEvent, AllowedEvents, Appended, Chunk, EagerFirstStep, EagerTask, EagerTasks, EventRecord, Frame, FrameName,
    LoopIterations, PollRecord, ReadyWait, SampleCpu, SampleTime, SampleTiming, SliceRecord, SliceSampleCpu,
    SliceSampleTimes, TaskCreated, TaskEnded, TaskTiming,
};

/// A small xorshift generator: reproducible chunks without a crate.
pub struct Random(pub u64);

impl Random {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Values around every varint width boundary, and extremes.
    pub fn wide(&mut self) -> u64 {
        let bits = self.next() % 65;
        let value = if bits == 64 { self.next() } else { self.next() & ((1u64 << bits) - 1) };
        match self.next() % 8 {
            0 => 250 + self.next() % 3,
            1 => u64::MAX - self.next() % 2,
            _ => value,
        }
    }

    pub fn below(&mut self, n: u64) -> usize {
        (self.next() % n) as usize
    }
}

/// A slice with every field random.
fn random_slice(random: &mut Random) -> SliceRecord {
    SliceRecord {
        exceeded: random.next().is_multiple_of(2),
        events: (0..random.below(3))
            .map(|_| EventRecord {
                event: random.wide() as u16,
                args: random.wide() as u32,
                offset_ns: random.wide(),
                stack: random.wide() as u32,
            })
            .collect(),
        dropped_events: random.wide() as u32,
        score: random.wide() as i64,
        samples: (0..random.below(3)).map(|_| random.wide() as u32).collect(),
        context: (0..random.below(2)).map(|_| (random.wide() as u32, random.wide() as u32)).collect(),
        ..pure_slice(random)
    }
}

/// A slice the decoder's fast path takes (unless its thread number
/// needs more than one byte).
fn pure_slice(random: &mut Random) -> SliceRecord {
    SliceRecord {
        start_delta_ns: random.wide(),
        duration_ns: random.wide(),
        what: random.wide() as u32,
        task: (random.next().is_multiple_of(2)).then(|| random.wide() as u32),
        thread: random.wide() as u32,
        ..SliceRecord::default()
    }
}

pub fn random_chunk(random: &mut Random) -> Chunk {
    Chunk {
        strings: (0..random.below(4)).map(|i| (random.wide() as u32, format!("s{i}é\u{1F40D}"))).collect(),
        frames: (0..random.below(4))
            .map(|_| {
                let frame =
                    Frame { file: random.wide() as u32, line: random.wide() as i32, function: random.wide() as u32 };
                (random.wide() as u32, frame)
            })
            .collect(),
        stacks: (0..random.below(3))
            .map(|_| (random.wide() as u32, (0..random.below(4)).map(|_| random.wide() as u32).collect()))
            .collect(),
        base_offset_ns: random.wide(),
        slices: (0..random.below(20))
            .map(|_| if random.next().is_multiple_of(2) { pure_slice(random) } else { random_slice(random) })
            .collect(),
        dropped_slices: random.wide(),
        frame_names: Appended(
            (0..random.below(3))
                .map(|_| {
                    (random.wide() as u32, FrameName { module: random.wide() as u32, qualname: random.wide() as u32 })
                })
                .collect(),
        ),
        sample_timing: Appended(SampleTiming {
            slices: (0..random.below(3))
                .map(|_| SliceSampleTimes {
                    slice: random.wide() as u32,
                    times: (0..random.below(3))
                        .map(|_| SampleTime { taken_offset_ns: random.wide(), waited_ns: random.wide() })
                        .collect(),
                })
                .collect(),
        }),
        allowed: Appended(AllowedEvents {
            kept: (0..random.below(3))
                .map(|_| AllowedEvent {
                    slice: random.wide() as u32,
                    event: random.wide() as u32,
                    entry: random.wide() as u32,
                })
                .collect(),
            dropped: (0..random.below(2)).map(|_| (random.wide() as u32, random.wide() as u32)).collect(),
        }),
        loop_iterations: Appended(LoopIterations {
            base_offset_ns: random.wide(),
            polls: (0..random.below(4))
                .map(|_| PollRecord {
                    start_delta_ns: random.wide(),
                    wait_ns: random.wide(),
                    thread: random.wide() as u32,
                })
                .collect(),
            polling_threads: (0..random.below(3)).map(|_| random.wide() as u32).collect(),
        }),
        task_timing: Appended(TaskTiming {
            ready: (0..random.below(4))
                .map(|_| ReadyWait { wait_ns: random.wide(), since: random.wide() as u8 })
                .collect(),
            created: (0..random.below(3))
                .map(|_| TaskCreated {
                    slice: random.wide() as u32,
                    created_before_ns: random.wide(),
                    parent: (random.below(2) == 1).then(|| random.wide() as u32),
                })
                .collect(),
            ended: (0..random.below(3))
                .map(|_| TaskEnded { slice: random.wide() as u32, outcome: random.wide() as u8 })
                .collect(),
        }),
        sample_cpu: Appended(SampleCpu {
            slices: (0..random.below(3))
                .map(|_| SliceSampleCpu {
                    slice: random.wide() as u32,
                    ran_ns: (0..random.below(3)).map(|_| random.wide()).collect(),
                })
                .collect(),
        }),
        eager_tasks: Appended(EagerTasks {
            first_steps: (0..random.below(3))
                .map(|_| EagerFirstStep { slice: random.wide() as u32, ran_ns: random.wide() })
                .collect(),
            // At least one, so that cuts inside it are tried.
            ended: (0..1 + random.below(2))
                .map(|_| EagerTask {
                    slice: random.wide() as u32,
                    created_offset_ns: random.wide(),
                    ran_ns: random.wide(),
                    what: random.wide() as u32,
                    outcome: random.wide() as u8,
                })
                .collect(),
        }),
    }
}
