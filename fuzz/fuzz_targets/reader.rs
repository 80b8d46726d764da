//! Feeds arbitrary bytes to the trace reader as a whole file: opening it,
//! reading every chunk and resolving every id must return errors, never
//! panic or allocate by an untrusted size. Seeded with real traces
//! (`fuzz/seeds`); under the fuzzer checksums pass, so mutations reach the
//! decompressor and the chunk decoder.
#![no_main]

use aiocop_trace::reader::{Dictionary, TraceFile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(trace) = TraceFile::from_bytes(data.to_vec(), "fuzz.aiocop") else { return };
    let mut dictionary = Dictionary::default();
    for index in 0..trace.chunk_count() {
        let _ = trace.read_chunk_definitions(index);
        let Ok(chunk) = trace.read_chunk(index) else { continue };
        dictionary.add(&chunk);
        for slice in &chunk.slices {
            for stack in slice.events.iter().map(|e| e.stack).chain(slice.samples.iter().copied()) {
                for frame in dictionary.stack(stack).unwrap_or_default() {
                    let _ = dictionary.format_frame(*frame);
                    let _ = dictionary.frame_name(*frame);
                }
            }
        }
    }
});
