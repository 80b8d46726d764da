//! The analyzer's whole pipeline (aggregate, loop time, stalls, the report
//! in every format, diff, info, timeline, flame graph) on arbitrary bytes
//! as a trace file. Seeded with real traces (`fuzz/seeds`), whose checksums
//! pass under the fuzzer whatever the mutation, so mutated chunks reach the
//! views.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    aiocop_trace_fuzz::run_pipeline(data);
});
