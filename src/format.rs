//! The byte layout of a trace file: the fixed file header, the fixed frame
//! header, their limits, and the payload codec shared by the writer and the
//! reader. `docs/trace-format.md` describes the same layout for people.
//!
//! ```text
//! file   := file_header frame(header) frame(chunk)* frame(footer)?
//!
//! file_header (16 bytes, little-endian)
//!   0..8    magic          b"AIOCOPTR"
//!   8..10   format major   u16   (readers refuse another major)
//!   10..12  format minor   u16   (readers accept a newer minor)
//!   12..16  reserved       zero  (ignored by readers)
//!
//! frame_header (16 bytes, little-endian), then payload_len bytes of payload
//!   0       kind           u8    1 = trace header, 2 = chunk, 3 = footer
//!   1       codec          u8    1 = zstd
//!   2..4    reserved       zero
//!   4..8    payload_len    u32   bytes of payload that follow
//!   8..12   raw_len        u32   bytes of the payload once decompressed
//!   12..16  crc32          u32   CRC-32 (IEEE) of the payload as stored
//!
//! payload := zstd(bincode(TraceHeader | Chunk | TraceFooter))
//!            bincode 2, serde, standard config: little-endian, varint ints
//! ```
//!
//! Every frame stands alone: a reader can decode chunks in any order or in
//! parallel, and a file cut short by a crash is readable up to its last whole
//! frame. Every length read from a file is checked against a limit here
//! before anything is allocated for it.

use crate::records::{Chunk, TraceFooter, TraceHeader};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The first 8 bytes of every trace.
pub const MAGIC: [u8; 8] = *b"AIOCOPTR";

/// Bumped by a change that older readers cannot read: any change to the
/// payload structs (bincode is not self-describing) or to the fixed headers.
/// Readers refuse any other major.
pub const FORMAT_MAJOR: u16 = 1;

/// Bumped by a change that older readers can safely ignore: a new frame kind
/// (skipped by older readers) or data appended at the end of a payload
/// (ignored by older readers). Readers accept a newer minor, and say so.
pub const FORMAT_MINOR: u16 = 5;

/// Bytes in the file header: magic, major, minor, reserved.
pub const FILE_HEADER_LEN: usize = 16;
/// Bytes in the file header's reserved tail (written zero).
pub const FILE_HEADER_RESERVED_LEN: usize = 4;
/// Bytes in a frame header: kind, codec, reserved, payload_len, raw_len, crc32.
pub const FRAME_HEADER_LEN: usize = 16;

/// The largest stored payload a reader accepts (64 MiB).
pub const MAX_PAYLOAD_LEN: u32 = 64 << 20;
/// The largest decompressed payload a reader accepts (256 MiB).
pub const MAX_RAW_LEN: u32 = 256 << 20;

/// bincode accounts each decoded integer at its in-memory width (at most 8
/// bytes) although a varint stores it in as little as 1 byte, and a string at
/// its length: decoding `n` raw bytes never accounts for more than `8 n`.
pub const DECODE_BYTES_PER_RAW_BYTE: usize = 8;

/// The most bincode may allocate while decoding one payload (256 MiB). The
/// budget of a payload is `8 * raw_len` rounded up to a power of four, capped
/// here, so a crafted length inside a small payload cannot allocate much.
pub const MAX_DECODE_BYTES: usize = MAX_RAW_LEN as usize;

/// The largest raw payload a writer produces (32 MiB): one whose decoding
/// provably fits [`MAX_DECODE_BYTES`]. A larger chunk is split.
pub const MAX_WRITTEN_RAW_LEN: u32 = (MAX_DECODE_BYTES / DECODE_BYTES_PER_RAW_BYTE) as u32;

/// What a frame holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// The [`TraceHeader`], once, right after the file header.
    Header = 1,
    /// A [`Chunk`].
    Chunk = 2,
    /// The [`TraceFooter`], last, written by a clean stop only.
    Footer = 3,
}

impl FrameKind {
    /// The kind a frame header's byte names, if this build knows it.
    pub fn from_byte(byte: u8) -> Option<FrameKind> {
        match byte {
            1 => Some(FrameKind::Header),
            2 => Some(FrameKind::Chunk),
            3 => Some(FrameKind::Footer),
            _ => None,
        }
    }
}

/// How a payload is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Codec {
    /// zstd, the only codec written so far.
    Zstd = 1,
}

impl Codec {
    /// The codec a frame header's byte names, if this build knows it.
    pub fn from_byte(byte: u8) -> Option<Codec> {
        match byte {
            1 => Some(Codec::Zstd),
            _ => None,
        }
    }
}

/// The fixed header at the start of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileHeader {
    /// The format's major version: a reader refuses any other.
    pub major: u16,
    /// The format's minor version: a newer one is read, with a warning.
    pub minor: u16,
}

impl FileHeader {
    /// The header this build writes.
    pub const CURRENT: FileHeader = FileHeader { major: FORMAT_MAJOR, minor: FORMAT_MINOR };

    /// The header's bytes as written: magic, versions, reserved zeros.
    pub fn to_bytes(self) -> [u8; FILE_HEADER_LEN] {
        let mut bytes = [0u8; FILE_HEADER_LEN];
        bytes[0..8].copy_from_slice(&MAGIC);
        bytes[8..10].copy_from_slice(&self.major.to_le_bytes());
        bytes[10..12].copy_from_slice(&self.minor.to_le_bytes());
        // 12..16 reserved, zero.
        bytes
    }

    /// `None` if the magic is wrong; the version is not checked here.
    pub fn from_bytes(bytes: &[u8; FILE_HEADER_LEN]) -> Option<FileHeader> {
        let [m0, m1, m2, m3, m4, m5, m6, m7, a0, a1, i0, i1, ..] = *bytes;
        if [m0, m1, m2, m3, m4, m5, m6, m7] != MAGIC {
            return None;
        }
        Some(FileHeader { major: u16::from_le_bytes([a0, a1]), minor: u16::from_le_bytes([i0, i1]) })
    }
}

/// The fixed header in front of every payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// A [`FrameKind`] as a byte; kept raw so that a reader can skip kinds
    /// added by a newer minor version.
    pub kind: u8,
    /// A [`Codec`] as a byte.
    pub codec: u8,
    /// Length of the payload as stored (compressed), in bytes.
    pub payload_len: u32,
    /// Length of the payload decompressed, in bytes.
    pub raw_len: u32,
    /// CRC-32 of the stored payload.
    pub crc32: u32,
}

impl FrameHeader {
    /// The header's bytes as written, little-endian.
    pub fn to_bytes(self) -> [u8; FRAME_HEADER_LEN] {
        let mut bytes = [0u8; FRAME_HEADER_LEN];
        bytes[0] = self.kind;
        bytes[1] = self.codec;
        // 2..4 reserved, zero.
        bytes[4..8].copy_from_slice(&self.payload_len.to_le_bytes());
        bytes[8..12].copy_from_slice(&self.raw_len.to_le_bytes());
        bytes[12..16].copy_from_slice(&self.crc32.to_le_bytes());
        bytes
    }

    /// Reads the fields as they are; the caller checks them.
    pub fn from_bytes(bytes: &[u8; FRAME_HEADER_LEN]) -> FrameHeader {
        let [kind, codec, _, _, p0, p1, p2, p3, r0, r1, r2, r3, c0, c1, c2, c3] = *bytes;
        FrameHeader {
            kind,
            codec,
            payload_len: u32::from_le_bytes([p0, p1, p2, p3]),
            raw_len: u32::from_le_bytes([r0, r1, r2, r3]),
            crc32: u32::from_le_bytes([c0, c1, c2, c3]),
        }
    }

    /// The frame's size on disk, header included.
    pub fn frame_len(&self) -> u64 {
        FRAME_HEADER_LEN as u64 + u64::from(self.payload_len)
    }
}

/// The types a frame payload can hold.
pub trait Payload: Serialize + DeserializeOwned + bincode::Encode + bincode::Decode<()> {
    /// The frame kind this payload is written as.
    const KIND: FrameKind;

    /// The raw bytes of this payload: bincode's.
    fn raw_bytes(&self) -> Result<Vec<u8>, bincode::error::EncodeError> {
        bincode::encode_to_vec(self, bincode_config())
    }
}

impl Payload for TraceHeader {
    const KIND: FrameKind = FrameKind::Header;
}

impl Payload for Chunk {
    const KIND: FrameKind = FrameKind::Chunk;

    /// bincode's bytes, by the hand-written encoder a recorder can afford for
    /// every slice (`chunk_encoder.rs`).
    fn raw_bytes(&self) -> Result<Vec<u8>, bincode::error::EncodeError> {
        let mut raw = Vec::new();
        crate::chunk_encoder::encode_chunk(self, &mut raw);
        Ok(raw)
    }
}

impl Payload for TraceFooter {
    const KIND: FrameKind = FrameKind::Footer;
}

/// The bincode configuration of every payload: little-endian, varint.
pub fn bincode_config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// The payload's raw (uncompressed) bytes.
pub fn encode_payload<T: Payload>(value: &T) -> Result<Vec<u8>, bincode::error::EncodeError> {
    value.raw_bytes()
}

/// Decodes a raw payload. Returns the value and the bytes it used; a payload
/// of a newer minor version may carry more after them.
///
/// bincode allocates a string by its length field before reading it, so the
/// decode runs under an allocation budget proportional to `raw.len()` (see
/// [`decode_budget`]): a legitimate payload never needs more, and a crafted
/// length fails cleanly instead of allocating gigabytes.
pub fn decode_payload<T: Payload>(raw: &[u8]) -> Result<(T, usize), bincode::error::DecodeError> {
    macro_rules! with_budget {
        ($($budget:literal),*) => {
            match decode_budget(raw.len()) {
                $(budget if budget <= $budget => {
                    bincode::decode_from_slice(raw, bincode_config().with_limit::<$budget>())
                })*
                _ => bincode::decode_from_slice(raw, bincode_config().with_limit::<MAX_DECODE_BYTES>()),
            }
        };
    }
    with_budget!(0x10_0000, 0x40_0000, 0x100_0000, 0x400_0000)
}

/// The allocation budget for decoding `raw_len` bytes: `8 * raw_len` rounded
/// up to a power of four of at least 1 MiB, at most [`MAX_DECODE_BYTES`].
pub fn decode_budget(raw_len: usize) -> usize {
    let needed = raw_len.saturating_mul(DECODE_BYTES_PER_RAW_BYTE);
    let mut budget: usize = 1 << 20;
    while budget < needed && budget < MAX_DECODE_BYTES {
        budget = budget.saturating_mul(4);
    }
    budget.min(MAX_DECODE_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_sizes_add_up() {
        assert_eq!(MAGIC.len() + 2 + 2 + FILE_HEADER_RESERVED_LEN, FILE_HEADER_LEN);
        assert_eq!(1 + 1 + 2 + 4 + 4 + 4, FRAME_HEADER_LEN);
        const { assert!(MAX_PAYLOAD_LEN <= MAX_RAW_LEN) };
        assert_eq!(MAX_WRITTEN_RAW_LEN as usize * DECODE_BYTES_PER_RAW_BYTE, MAX_DECODE_BYTES);
    }

    #[test]
    fn headers_round_trip() {
        let file = FileHeader { major: 1, minor: 7 };
        assert_eq!(FileHeader::from_bytes(&file.to_bytes()), Some(file));
        assert_eq!(&file.to_bytes()[..], b"AIOCOPTR\x01\x00\x07\x00\x00\x00\x00\x00");
        let frame = FrameHeader { kind: 2, codec: 1, payload_len: 0x0102_0304, raw_len: 5, crc32: 0xdead_beef };
        assert_eq!(FrameHeader::from_bytes(&frame.to_bytes()), frame);
        assert_eq!(frame.to_bytes(), [2, 1, 0, 0, 4, 3, 2, 1, 5, 0, 0, 0, 0xef, 0xbe, 0xad, 0xde]);
        assert_eq!(FileHeader::from_bytes(b"AIOCOPTX\x01\x00\x00\x00\x00\x00\x00\x00"), None);
    }

    #[test]
    fn decode_budgets_grow_with_the_payload_and_stop_at_the_cap() {
        assert_eq!(decode_budget(0), 1 << 20);
        assert_eq!(decode_budget(100), 1 << 20);
        assert_eq!(decode_budget(128 << 10), 1 << 20);
        assert_eq!(decode_budget((128 << 10) + 1), 4 << 20);
        assert_eq!(decode_budget(MAX_WRITTEN_RAW_LEN as usize), MAX_DECODE_BYTES);
        assert_eq!(decode_budget(usize::MAX), MAX_DECODE_BYTES);
    }

    #[test]
    fn a_crafted_string_length_fails_within_the_budget() {
        // A chunk whose first string claims 2^40 bytes: bincode would try to
        // allocate that much without the budget.
        let mut raw = Vec::new();
        raw.push(1); // one string definition
        raw.push(0); // id 0
        raw.push(253); // u64 varint follows
        raw.extend_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(decode_payload::<Chunk>(&raw).is_err());
    }
}
