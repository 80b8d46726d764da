//! Differential: the hand-written chunk decoder (`src/chunk_decoder.rs`)
//! and bincode's derive must agree on every payload: the same chunk and the
//! same bytes used when either succeeds, and neither may panic. And for every
//! chunk bincode decodes, the hand-written encoder (`src/chunk_encoder.rs`)
//! must write the bytes bincode's encoder writes.
#![no_main]

use aiocop_trace::chunk_decoder::decode_chunk;
use aiocop_trace::chunk_encoder::encode_chunk;
use aiocop_trace::format::{bincode_config, decode_payload};
use aiocop_trace::records::{Chunk, SliceRecord};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|raw: &[u8]| {
    let mut slices = Vec::new();
    let ours = decode_chunk(raw, &mut |_, slice: &SliceRecord| slices.push(slice.clone())).map(|(mut chunk, used)| {
        chunk.slices = slices;
        (chunk, used)
    });
    let theirs = decode_payload::<Chunk>(raw);
    match (ours, theirs) {
        (Ok(ours), Ok(theirs)) => assert_eq!(ours, theirs),
        (Err(_), Err(_)) => {}
        (ours, theirs) => panic!("the decoders disagree: ours {ours:?}, bincode's {theirs:?}"),
    }
    if let Ok((chunk, _)) = decode_payload::<Chunk>(raw) {
        let mut encoded = Vec::new();
        encode_chunk(&chunk, &mut encoded);
        assert_eq!(encoded, bincode::encode_to_vec(&chunk, bincode_config()).unwrap(), "the encoders disagree");
    }
});
