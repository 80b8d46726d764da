//! Feeds arbitrary bytes to the trace reader as a whole file: opening it,
//! reading every chunk and resolving every id must return errors, never
//! panic or allocate by an untrusted size.
#![no_main]

use aiocop_trace::reader::{Dictionary, TraceFile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(trace) = TraceFile::from_bytes(data.to_vec(), "fuzz.aiocop") else { return };
    let mut dictionary = Dictionary::default();
    for chunk in trace.chunks().flatten() {
        dictionary.add(&chunk);
        for slice in &chunk.slices {
            for event in &slice.events {
                if let Some(frames) = dictionary.stack(event.stack) {
                    for frame in frames {
                        let _ = dictionary.format_frame(*frame);
                    }
                }
            }
        }
    }
});
