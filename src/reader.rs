//! Reads a trace: opens it by its headers and an index of its frames, then
//! decodes chunks on demand, in any order, from any number of threads.
//!
//! Opening reads the file header, decodes the header frame, and walks the
//! frame headers (16 bytes each, not the payloads) to index the chunks and
//! find the footer. A file opened from a path is never held whole in memory:
//! each chunk's payload is read with a positioned read when it is asked for.
//!
//! Nothing read from a file is trusted: every length is checked against the
//! limits of `format.rs` and against the file's size before anything is
//! allocated for it, every payload's checksum is checked before it is
//! decompressed, and decompression is bounded by the declared raw size.
//! Malformed input gives a [`ReadError`], never a panic.
//!
//! Memory is counted in a [`MemoryBudget`] (see `budget.rs`) shared by
//! every file and thread of a read: a chunk's buffers and what decoding it
//! allocates while it is read, the definitions it hands over (kept until the
//! file is closed, as a dictionary of the file keeps them), and each open
//! file's header and index. A read
//! the budget cannot hold fails with [`ReadError::OverMemoryLimit`].
//!
//! A file that ends early (a crash, a kill, a reader racing the writer) is
//! not an error: [`TraceFile::cut_short`] says so and the whole chunks before
//! the cut are all there is.

use crate::budget::{MemoryBudget, OverBudget, Parked, Reservation, RETAINED_BUFFER_BYTES};
use crate::chunk_decoder::{self, SliceVisitor};
use crate::error::{FrameRef, ReadError};
use crate::format::{
    decode_payload, Codec, FileHeader, FrameHeader, FrameKind, Payload, DECODE_BYTES_PER_RAW_BYTE, FILE_HEADER_LEN,
    FORMAT_MAJOR, FORMAT_MINOR, FRAME_HEADER_LEN, MAGIC, MAX_PAYLOAD_LEN, MAX_RAW_LEN,
};
use crate::records::{Chunk, Frame, FrameId, FrameName, SliceRecord, StackId, StringId, TraceFooter, TraceHeader};
use rustc_hash::FxHashMap;
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Where a chunk's frame is in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkInfo {
    /// Offset of the frame header from the start of the file.
    pub offset: u64,
    /// A [`crate::format::Codec`] as a byte.
    pub codec: u8,
    /// Length of the payload as stored, in bytes.
    pub payload_len: u32,
    /// Length of the payload decompressed, in bytes.
    pub raw_len: u32,
    /// CRC-32 of the stored payload.
    pub crc32: u32,
}

impl ChunkInfo {
    fn frame_header(&self) -> FrameHeader {
        FrameHeader {
            kind: FrameKind::Chunk as u8,
            codec: self.codec,
            payload_len: self.payload_len,
            raw_len: self.raw_len,
            crc32: self.crc32,
        }
    }
}

/// A zstd context and the buffers it reads from and decompresses into, kept
/// by each reading thread from one frame to the next: creating a context and
/// faulting in fresh buffers for every chunk cost about 5% of a report.
struct Decompression {
    context: io::Result<zstd::bulk::Decompressor<'static>>,
    /// The compressed payload, read from a file.
    payload: Vec<u8>,
    raw: Vec<u8>,
}

impl Decompression {
    fn new() -> Self {
        Decompression { context: zstd::bulk::Decompressor::new(), payload: Vec::new(), raw: Vec::new() }
    }

    /// This thread's, or a new one if it is out (a visitor reading another
    /// chunk on the same thread).
    fn take() -> Decompression {
        DECOMPRESSION.with(Cell::take).unwrap_or_else(Decompression::new)
    }

    /// Back to this thread, for the next frame, without a buffer larger than
    /// [`RETAINED_BUFFER_BYTES`]: the budget counted it for its chunk only.
    fn put_back(mut self) {
        for buffer in [&mut self.payload, &mut self.raw] {
            if buffer.capacity() > RETAINED_BUFFER_BYTES {
                *buffer = Vec::new();
            }
        }
        DECOMPRESSION.with(|cell| cell.set(Some(self)));
    }
}

thread_local! {
    static DECOMPRESSION: Cell<Option<Decompression>> = const { Cell::new(None) };
}

/// The bytes of a trace: a file read piecewise, or a buffer.
enum Source {
    File { file: File, len: u64 },
    Bytes(Vec<u8>),
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File { len, .. } => write!(f, "File({len} bytes)"),
            Source::Bytes(bytes) => write!(f, "Bytes({} bytes)", bytes.len()),
        }
    }
}

impl Source {
    fn len(&self) -> u64 {
        match self {
            Source::File { len, .. } => *len,
            Source::Bytes(bytes) => bytes.len() as u64,
        }
    }

    /// `len` bytes at `offset`. Callers check the range against
    /// [`Source::len`] first, so that `len` is never larger than the file.
    fn read(&self, offset: u64, len: usize) -> io::Result<Cow<'_, [u8]>> {
        match self {
            Source::File { .. } => {
                let mut buffer = Vec::new();
                self.read_into(offset, len, &mut buffer)?;
                Ok(Cow::Owned(buffer))
            }
            Source::Bytes(bytes) => in_memory(bytes, offset, len).map(Cow::Borrowed),
        }
    }

    /// [`Source::read`], into `buffer` (reused) if the bytes are in a file.
    fn read_into<'a>(&'a self, offset: u64, len: usize, buffer: &'a mut Vec<u8>) -> io::Result<&'a [u8]> {
        match self {
            Source::File { file, .. } => {
                buffer.clear();
                buffer.resize(len, 0);
                read_exact_at(file, buffer, offset)?;
                Ok(buffer)
            }
            Source::Bytes(bytes) => in_memory(bytes, offset, len),
        }
    }

    fn read_array<const N: usize>(&self, offset: u64) -> io::Result<[u8; N]> {
        let bytes = self.read(offset, N)?;
        <[u8; N]>::try_from(bytes.as_ref())
            .map_err(|_| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end of the trace"))
    }
}

/// `len` bytes at `offset` of a trace held in memory.
fn in_memory(bytes: &[u8], offset: u64, len: usize) -> io::Result<&[u8]> {
    usize::try_from(offset)
        .ok()
        .and_then(|start| bytes.get(start..start.checked_add(len)?))
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end of the trace"))
}

#[cfg(unix)]
fn read_exact_at(file: &File, buffer: &mut [u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buffer, offset)
}

#[cfg(windows)]
fn read_exact_at(file: &File, mut buffer: &mut [u8], mut offset: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buffer.is_empty() {
        match file.seek_read(buffer, offset) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end of the trace")),
            Ok(n) => {
                buffer = &mut buffer[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A chunk read whole, its slices counted in the read's budget until it is dropped.
#[derive(Debug)]
pub struct CountedChunk {
    /// The chunk.
    pub chunk: Chunk,
    _memory: Parked,
}

/// An opened trace: its header, the index of its chunks, and its footer.
///
/// `TraceFile` is `Sync`: [`read_chunk`](Self::read_chunk) takes `&self`, so
/// chunks can be decoded in parallel.
#[derive(Debug)]
pub struct TraceFile {
    name: String,
    source: Source,
    version: (u16, u16),
    header: TraceHeader,
    footer: Option<TraceFooter>,
    chunks: Vec<ChunkInfo>,
    /// A damaged frame header after the trace header: the file is read up
    /// to it, as if it were cut there.
    damage: Option<ReadError>,
    budget: Arc<MemoryBudget>,
    /// The header and the chunk index, counted while the file is open.
    held: Option<Parked>,
    /// The definitions handed over, counted until the file is closed (the
    /// reader's dictionary of a file goes with it).
    kept_bytes: AtomicU64,
}

impl Drop for TraceFile {
    fn drop(&mut self) {
        self.budget.release(*self.kept_bytes.get_mut());
    }
}

/// A dictionary holds a definition in a hash map, whose table holds up to
/// twice its entries, and while it grows the old table too: a chunk's
/// definitions are kept counted at three times their entries' size.
const DICTIONARY_ENTRY_FACTOR: u64 = 3;

/// What keeping `chunk`'s definitions in a dictionary costs, as counted.
fn definitions_bytes(chunk: &Chunk) -> u64 {
    fn entries<T>(values: &[T]) -> u64 {
        std::mem::size_of_val(values) as u64 * DICTIONARY_ENTRY_FACTOR
    }
    let texts: usize = chunk.strings.iter().map(|(_, text)| text.len()).sum();
    let stack_frames: usize = chunk.stacks.iter().map(|(_, frames)| frames.len() * 4).sum();
    entries(&chunk.strings)
        + entries(&chunk.frames)
        + entries(&chunk.stacks)
        + entries(&chunk.frame_names)
        + (texts + stack_frames) as u64
}

/// What a decoded slice holds, as counted (a chunk read whole holds them all).
fn slice_bytes(slice: &SliceRecord) -> usize {
    std::mem::size_of::<SliceRecord>()
        + std::mem::size_of_val(slice.events.as_slice())
        + std::mem::size_of_val(slice.samples.as_slice())
        + std::mem::size_of_val(slice.context.as_slice())
}

/// A frame's reservation, lent to its decoder: it grows the reservation
/// before each allocation and remembers a refusal.
struct Counted {
    reservation: RefCell<Reservation>,
    refusal: Cell<Option<OverBudget>>,
}

impl Counted {
    fn allocate(&self, bytes: usize) -> bool {
        match self.reservation.borrow_mut().grow(bytes as u64) {
            Ok(()) => true,
            Err(refusal) => {
                self.refusal.set(Some(refusal));
                false
            }
        }
    }
}

impl TraceFile {
    /// Reads the file header and the header frame, then scans the frame
    /// headers (not the payloads) to index the chunks, and decodes the
    /// footer if there is one.
    ///
    /// A file cut short is not an error: [`cut_short`](Self::cut_short) says
    /// so and [`chunk_count`](Self::chunk_count) counts the whole chunks
    /// only. A file that ends before its header frame is whole is an error.
    ///
    /// Only a regular file is read: a FIFO, a device or a file that does
    /// not know its size (`/proc`) is refused, without waiting for a FIFO's
    /// writer.
    pub fn open(path: &Path) -> Result<TraceFile, ReadError> {
        TraceFile::open_within(path, MemoryBudget::unlimited())
    }

    /// [`TraceFile::open`], counting what it reads in `budget`.
    pub fn open_within(path: &Path, budget: Arc<MemoryBudget>) -> Result<TraceFile, ReadError> {
        let name = path.display().to_string();
        let io_error = |source| ReadError::Io { path: name.clone(), source };
        let file = open_without_waiting(path).map_err(io_error)?;
        let metadata = file.metadata().map_err(io_error)?;
        if metadata.is_dir() {
            let source = io::Error::new(io::ErrorKind::InvalidInput, "it is a directory");
            return Err(ReadError::Io { path: name, source });
        }
        if let Some(kind) = special_kind(&file, &metadata) {
            return Err(ReadError::NotARegularFile { path: name, kind });
        }
        TraceFile::load(Source::File { file, len: metadata.len() }, name, budget)
    }

    /// [`TraceFile::open`] on bytes in memory; `name` is used in messages.
    pub fn from_bytes(bytes: Vec<u8>, name: &str) -> Result<TraceFile, ReadError> {
        TraceFile::from_bytes_within(bytes, name, MemoryBudget::unlimited())
    }

    /// [`TraceFile::from_bytes`], counting what it decodes in `budget`
    /// (not the bytes given).
    pub fn from_bytes_within(bytes: Vec<u8>, name: &str, budget: Arc<MemoryBudget>) -> Result<TraceFile, ReadError> {
        TraceFile::load(Source::Bytes(bytes), name.to_owned(), budget)
    }

    /// The trace's header.
    pub fn header(&self) -> &TraceHeader {
        &self.header
    }

    /// The footer, written by a clean stop; `None` if the file was cut short.
    pub fn footer(&self) -> Option<&TraceFooter> {
        self.footer.as_ref()
    }

    /// Whether the file lacks its footer: the recording did not stop cleanly
    /// (a crash, a kill) or is still going on. Its whole chunks are readable.
    pub fn cut_short(&self) -> bool {
        self.footer.is_none()
    }

    /// Why the file is read only up to some point, when a damaged frame
    /// header (an absurd length, an unknown kind) rather than the end of
    /// the file stopped the reading.
    pub fn damage(&self) -> Option<&ReadError> {
        self.damage.as_ref()
    }

    /// Whole chunks in the file.
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// `(major, minor)` of the file. The major is this build's; a minor
    /// newer than [`FORMAT_MINOR`] reads fine but may hold things this build
    /// skips, which a caller may want to warn about.
    pub fn format_version(&self) -> (u16, u16) {
        self.version
    }

    /// Sum of the chunks' stored (compressed) payload sizes.
    pub fn compressed_bytes(&self) -> u64 {
        self.chunks.iter().map(|c| u64::from(c.payload_len)).sum()
    }

    /// Sum of the chunks' decompressed payload sizes, as their frame headers declare them.
    pub fn raw_bytes(&self) -> u64 {
        self.chunks.iter().map(|c| u64::from(c.raw_len)).sum()
    }

    /// The size of the file (or buffer) as opened.
    pub fn file_len(&self) -> u64 {
        self.source.len()
    }

    /// Where chunk `index` is, if there is such a chunk.
    pub fn chunk_info(&self, index: usize) -> Option<ChunkInfo> {
        self.chunks.get(index).copied()
    }

    /// Reads, checks the checksum of, decompresses and decodes chunk `index`.
    ///
    /// Its slices are counted in the budget while it is decoded, and its
    /// definitions kept counted (as [`visit_chunk`](Self::visit_chunk)'s);
    /// [`read_chunk_counted`](Self::read_chunk_counted) keeps its slices
    /// counted while they are held.
    pub fn read_chunk(&self, index: usize) -> Result<Chunk, ReadError> {
        self.read_chunk_counted(index).map(|counted| counted.chunk)
    }

    /// [`read_chunk`](Self::read_chunk), with its slices counted in the
    /// budget until the [`CountedChunk`] is dropped.
    pub fn read_chunk_counted(&self, index: usize) -> Result<CountedChunk, ReadError> {
        self.with_chunk_payload(index, |raw, counted| {
            let mut slices_bytes = 0;
            let mut slices = Vec::new();
            let mut collect = |_, slice: &SliceRecord| {
                // Refused: the slices stop here, and the decoder at its next allocation.
                if slices.len() == slices.capacity()
                    && counted.allocate(slices.len().max(64) * size_of::<SliceRecord>())
                {
                    slices.reserve_exact(slices.len().max(64));
                }
                let heap_bytes = slice_bytes(slice) - size_of::<SliceRecord>();
                if slices.len() < slices.capacity() && counted.allocate(heap_bytes) {
                    slices_bytes += heap_bytes;
                    slices.push(slice.clone());
                }
            };
            let mut chunk = self.decode_chunk(index, raw, counted, &mut collect)?;
            let slices_bytes = slices_bytes + slices.capacity() * size_of::<SliceRecord>();
            let memory = counted
                .reservation
                .borrow_mut()
                .park(slices_bytes as u64)
                .map_err(|e| self.over_limit(FrameRef::Chunk(index), e))?;
            chunk.slices = slices;
            Ok(CountedChunk { chunk, _memory: memory })
        })
    }

    /// Reads chunk `index` one slice at a time, without holding its slices:
    /// gives `visitor` each slice and its start (nanoseconds from the trace's
    /// start; a closure `|start_ns, slice: &SliceRecord|` will do), then
    /// returns the chunk's definitions, base offset and dropped count, with
    /// `slices` empty. This is how a report reads.
    ///
    /// On an error after the checksum (a crafted or miswritten payload), the
    /// slices decoded before it have been passed to `visitor`.
    ///
    /// The chunk's definitions stay counted in the budget until the file is
    /// closed: a reader keeps them in its dictionary of the file.
    #[inline(always)]
    pub fn visit_chunk(&self, index: usize, visitor: &mut impl SliceVisitor) -> Result<Chunk, ReadError> {
        self.with_chunk_payload(index, |raw, counted| self.decode_chunk(index, raw, counted, visitor))
    }

    /// Decodes chunk `index` from `raw`, its memory counted by `counted`,
    /// whose definitions it keeps counted.
    #[inline(always)]
    fn decode_chunk(
        &self,
        index: usize,
        raw: &[u8],
        counted: &Counted,
        visitor: &mut impl SliceVisitor,
    ) -> Result<Chunk, ReadError> {
        let which = FrameRef::Chunk(index);
        let (chunk, used) = chunk_decoder::decode_chunk_within(raw, visitor, &|bytes| counted.allocate(bytes))
            .map_err(|e| self.decode_error(which, e))?;
        self.check_all_used(raw.len(), used, which)?;
        let kept = definitions_bytes(&chunk);
        counted.reservation.borrow_mut().keep(kept).map_err(|e| self.over_limit(which, e))?;
        self.kept_bytes.fetch_add(kept, Ordering::Relaxed);
        Ok(chunk)
    }

    /// The definitions (strings, frames, stacks) and base offset of chunk
    /// `index`, without decoding its slices. Counted in the budget while
    /// they are decoded only: drop them soon.
    pub fn read_chunk_definitions(&self, index: usize) -> Result<Chunk, ReadError> {
        self.with_chunk_payload(index, |raw, counted| {
            chunk_decoder::decode_chunk_definitions_within(raw, &|bytes| counted.allocate(bytes))
                .map_err(|e| self.decode_error(FrameRef::Chunk(index), e))
        })
    }

    /// Reads, checks the checksum of and decompresses chunk `index` without
    /// decoding it (the floor for reading it at all); returns its raw size.
    pub fn decompress_chunk(&self, index: usize) -> Result<usize, ReadError> {
        self.with_chunk_payload(index, |raw, _| Ok(raw.len()))
    }

    #[inline(always)]
    fn with_chunk_payload<R>(
        &self,
        index: usize,
        use_payload: impl FnOnce(&[u8], &Counted) -> Result<R, ReadError>,
    ) -> Result<R, ReadError> {
        let info = self.chunk(index)?;
        self.with_frame_payload(info.offset, &info.frame_header(), FrameRef::Chunk(index), use_payload)
    }

    /// Every chunk, in file order.
    pub fn chunks(&self) -> impl Iterator<Item = Result<Chunk, ReadError>> + '_ {
        (0..self.chunks.len()).map(move |index| self.read_chunk(index))
    }

    /// The name used in messages: the path as given to `open`, or the name
    /// given to `from_bytes`.
    pub fn path(&self) -> &str {
        &self.name
    }

    fn chunk(&self, index: usize) -> Result<&ChunkInfo, ReadError> {
        self.chunks.get(index).ok_or_else(|| ReadError::NoSuchChunk {
            path: self.name.clone(),
            index,
            count: self.chunks.len(),
        })
    }

    fn load(source: Source, name: String, budget: Arc<MemoryBudget>) -> Result<TraceFile, ReadError> {
        let len = source.len();
        let io_error = |source| ReadError::Io { path: name.clone(), source };
        if len == 0 {
            return Err(ReadError::Empty { path: name });
        }

        // The file header: magic first, so that a short file of another
        // format says "not a trace" rather than "truncated".
        let head = source.read(0, len.min(FILE_HEADER_LEN as u64) as usize).map_err(io_error)?;
        let magic_len = head.len().min(MAGIC.len());
        if head.get(..magic_len) != MAGIC.get(..magic_len) {
            return Err(ReadError::NotATrace { path: name, looks_like: sniff(&head) });
        }
        let Ok(head) = <[u8; FILE_HEADER_LEN]>::try_from(head.as_ref()) else {
            return Err(ReadError::TruncatedHeader { path: name, part: "its file header", len });
        };
        let Some(FileHeader { major, minor }) = FileHeader::from_bytes(&head) else {
            return Err(ReadError::NotATrace { path: name, looks_like: None });
        };
        if major > FORMAT_MAJOR {
            return Err(ReadError::TooNew { path: name, major, minor });
        }
        if major < FORMAT_MAJOR {
            return Err(ReadError::TooOld { path: name, major, minor });
        }

        let mut trace = TraceFile {
            name,
            source,
            version: (major, minor),
            header: TraceHeader::default(),
            footer: None,
            chunks: Vec::new(),
            damage: None,
            budget,
            held: None,
            kept_bytes: AtomicU64::new(0),
        };

        // The header frame: it must be there, whole.
        let mut offset = FILE_HEADER_LEN as u64;
        let truncated_header =
            |trace: &TraceFile| ReadError::TruncatedHeader { path: trace.name.clone(), part: "its header frame", len };
        let Some(frame) = trace.frame_header_at(offset)? else {
            return Err(truncated_header(&trace));
        };
        if frame.kind != FrameKind::Header as u8 {
            return Err(
                trace.bad_frame(offset, format!("the first frame is of kind {}, not the trace header", frame.kind))
            );
        }
        trace.check_lengths(offset, &frame)?;
        if len - offset < frame.frame_len() {
            return Err(truncated_header(&trace));
        }
        // The header is kept while the file is open: counted at what
        // decoding it may allocate at most.
        let header_bytes = u64::from(frame.raw_len) * DECODE_BYTES_PER_RAW_BYTE as u64;
        trace.held = Some(trace.budget.park(header_bytes).map_err(|e| trace.over_limit(FrameRef::Header, e))?);
        trace.header = trace.decode_frame(offset, &frame, FrameRef::Header)?;
        offset += frame.frame_len();

        // The other frames, by their headers only, up to the footer or the
        // last whole frame. A damaged frame header ends the readable part:
        // the chunks before it are kept, as for a file cut short.
        match trace.index_frames(offset, len, minor) {
            Err(refused) if refused.is_over_memory_limit() => return Err(refused),
            Err(damage) => trace.damage = Some(damage),
            Ok(()) => {}
        }
        Ok(trace)
    }

    fn index_frames(&mut self, mut offset: u64, len: u64, minor: u16) -> Result<(), ReadError> {
        while let Some(frame) = self.frame_header_at(offset)? {
            if frame == (FrameHeader { kind: 0, codec: 0, payload_len: 0, raw_len: 0, crc32: 0 }) {
                // Zeros where a frame should start: a crash can leave the
                // end of a file zero-filled (the size was extended, the data
                // never written). The file ends here.
                break;
            }
            self.check_lengths(offset, &frame)?;
            if len - offset < frame.frame_len() {
                break; // the last frame is partial
            }
            match FrameKind::from_byte(frame.kind) {
                Some(FrameKind::Chunk) => self.index_chunk(ChunkInfo {
                    offset,
                    codec: frame.codec,
                    payload_len: frame.payload_len,
                    raw_len: frame.raw_len,
                    crc32: frame.crc32,
                })?,
                Some(FrameKind::Footer) => {
                    // Anything after the footer is not part of the trace.
                    self.footer = Some(self.decode_frame(offset, &frame, FrameRef::Footer)?);
                    break;
                }
                Some(FrameKind::Header) => return Err(self.bad_frame(offset, "a second trace header".to_owned())),
                None if minor > FORMAT_MINOR => {} // a kind added by a newer minor: skipped
                None => return Err(self.bad_frame(offset, format!("unknown frame kind {}", frame.kind))),
            }
            offset += frame.frame_len();
        }
        Ok(())
    }

    /// Adds a chunk to the index, which the budget counts as it grows (a
    /// file of empty frames indexes 24 bytes for each 16 it holds).
    fn index_chunk(&mut self, info: ChunkInfo) -> Result<(), ReadError> {
        if self.chunks.len() == self.chunks.capacity() {
            let more = self.chunks.len().max(64);
            let bytes = (more * size_of::<ChunkInfo>()) as u64;
            let held = self.held.as_mut().expect("the header's reservation, taken before indexing");
            held.grow(bytes).map_err(|e| ReadError::OverMemoryLimit {
                path: self.name.clone(),
                frame: FrameRef::Chunk(self.chunks.len()),
                problem: e,
            })?;
            self.chunks.reserve_exact(more);
        }
        self.chunks.push(info);
        Ok(())
    }

    /// The frame header at `offset`, or `None` if the file ends before it is whole.
    fn frame_header_at(&self, offset: u64) -> Result<Option<FrameHeader>, ReadError> {
        if self.source.len().saturating_sub(offset) < FRAME_HEADER_LEN as u64 {
            return Ok(None);
        }
        let bytes = self.source.read_array::<FRAME_HEADER_LEN>(offset).map_err(|e| self.io_error(e))?;
        Ok(Some(FrameHeader::from_bytes(&bytes)))
    }

    fn check_lengths(&self, offset: u64, frame: &FrameHeader) -> Result<(), ReadError> {
        let absurd = |field, len: u32, max: u32| ReadError::AbsurdLength {
            path: self.name.clone(),
            offset,
            field,
            len: u64::from(len),
            max: u64::from(max),
        };
        if frame.payload_len > MAX_PAYLOAD_LEN {
            return Err(absurd("payload length", frame.payload_len, MAX_PAYLOAD_LEN));
        }
        if frame.raw_len > MAX_RAW_LEN {
            return Err(absurd("decompressed length", frame.raw_len, MAX_RAW_LEN));
        }
        Ok(())
    }

    /// Decodes a header or footer frame by bincode, which may allocate up to
    /// its decode budget: counted while it decodes.
    fn decode_frame<T: Payload>(&self, offset: u64, frame: &FrameHeader, which: FrameRef) -> Result<T, ReadError> {
        self.with_frame_payload(offset, frame, which, |raw, counted| {
            let decoding = crate::format::decode_budget(raw.len());
            if !counted.allocate(decoding) {
                return Err(self.decode_error(which, chunk_decoder::OVER_MEMORY_LIMIT));
            }
            self.decode(raw, which)
        })
    }

    /// Gives `use_payload` the payload of the frame at `offset`, checked and
    /// decompressed, and the frame's reservation in the budget, which holds
    /// the payload's buffers and grows with what decoding it allocates. The
    /// frame's lengths were checked against the limits and the file's size
    /// when it was indexed.
    #[inline(always)]
    fn with_frame_payload<R>(
        &self,
        offset: u64,
        frame: &FrameHeader,
        which: FrameRef,
        use_payload: impl FnOnce(&[u8], &Counted) -> Result<R, ReadError>,
    ) -> Result<R, ReadError> {
        let Some(Codec::Zstd) = Codec::from_byte(frame.codec) else {
            return Err(ReadError::UnknownCodec { path: self.name.clone(), frame: which, codec: frame.codec });
        };
        let stored = match self.source {
            Source::File { .. } => u64::from(frame.payload_len),
            Source::Bytes(_) => 0, // already in memory, the caller's
        };
        let reservation =
            self.budget.reserve(stored + u64::from(frame.raw_len)).map_err(|e| self.over_limit(which, e))?;
        let counted = Counted { reservation: RefCell::new(reservation), refusal: Cell::new(None) };
        let mut decompression = Decompression::take();
        let decompressed = self.decompress(offset, frame, which, &mut decompression);
        // The payload is used outside the thread's buffers' closure, so that
        // the loop over its slices compiles as if it owned them.
        let result = decompressed.and_then(|()| use_payload(&decompression.raw, &counted));
        decompression.put_back();
        match counted.refusal.get() {
            Some(refusal) => Err(self.over_limit(which, refusal)),
            None => result,
        }
    }

    /// Reads the frame at `offset`, checks it and decompresses its payload
    /// into `decompression.raw`.
    fn decompress(
        &self,
        offset: u64,
        frame: &FrameHeader,
        which: FrameRef,
        decompression: &mut Decompression,
    ) -> Result<(), ReadError> {
        let Decompression { context, payload, raw } = decompression;
        let payload = self
            .source
            .read_into(offset + FRAME_HEADER_LEN as u64, frame.payload_len as usize, payload)
            .map_err(|e| self.io_error(e))?;
        let crc = crc32fast::hash(payload);
        // Under the fuzzer every checksum passes: a mutated payload would
        // almost never match, and the decoders behind the check are what
        // the fuzzer is for.
        if crc != frame.crc32 && !cfg!(fuzzing) {
            return Err(ReadError::ChecksumMismatch {
                path: self.name.clone(),
                frame: which,
                expected: frame.crc32,
                got: crc,
            });
        }
        let decompress_error =
            |problem: String| ReadError::Decompress { path: self.name.clone(), frame: which, problem };
        // The zstd frame states its size; refuse a disagreement before
        // allocating for either.
        if let Ok(Some(content_len)) = zstd::zstd_safe::get_frame_content_size(payload) {
            if content_len != u64::from(frame.raw_len) {
                return Err(decompress_error(format!(
                    "it holds {content_len} bytes, its frame header says {}",
                    frame.raw_len
                )));
            }
        }
        raw.clear();
        raw.reserve(frame.raw_len as usize);
        let context = context.as_mut().map_err(|e| decompress_error(e.to_string()))?;
        context.decompress_to_buffer(payload, raw).map_err(|e| decompress_error(e.to_string().replace('\n', " ")))?;
        if raw.len() != frame.raw_len as usize {
            return Err(decompress_error(format!(
                "it decompresses to {} bytes, its frame header says {}",
                raw.len(),
                frame.raw_len
            )));
        }
        Ok(())
    }

    fn decode<T: Payload>(&self, raw: &[u8], which: FrameRef) -> Result<T, ReadError> {
        let (value, used) = decode_payload::<T>(raw).map_err(|e| self.decode_error(which, in_words(&e)))?;
        self.check_all_used(raw.len(), used, which)?;
        Ok(value)
    }

    /// A newer minor may append to a payload; this build's may not.
    fn check_all_used(&self, raw_len: usize, used: usize, which: FrameRef) -> Result<(), ReadError> {
        let newer_minor = self.version.1 > FORMAT_MINOR;
        if used != raw_len && !newer_minor {
            return Err(self.decode_error(which, format!("{} bytes are left over after it", raw_len - used)));
        }
        Ok(())
    }

    fn decode_error(&self, which: FrameRef, problem: impl fmt::Display) -> ReadError {
        ReadError::Decode { path: self.name.clone(), frame: which, problem: problem.to_string().replace('\n', " ") }
    }

    fn over_limit(&self, which: FrameRef, problem: OverBudget) -> ReadError {
        ReadError::OverMemoryLimit { path: self.name.clone(), frame: which, problem }
    }

    fn io_error(&self, source: io::Error) -> ReadError {
        ReadError::Io { path: self.name.clone(), source }
    }

    fn bad_frame(&self, offset: u64, problem: String) -> ReadError {
        ReadError::BadFrame { path: self.name.clone(), offset, problem }
    }
}

/// What bincode found wrong with a header or footer payload, in words: its
/// own messages are Rust's (`UnexpectedEnd { additional: 9 }`).
fn in_words(error: &bincode::error::DecodeError) -> String {
    use bincode::error::DecodeError as E;
    match error {
        E::UnexpectedEnd { additional } => format!("it ends {additional} bytes before its last value"),
        E::LimitExceeded => "a length in it is larger than its payload can hold".to_owned(),
        E::Utf8 { .. } => "a string in it is not UTF-8".to_owned(),
        E::InvalidIntegerType { .. } => "an integer in it is too wide for its field".to_owned(),
        E::InvalidBooleanValue(byte) => format!("a flag in it is {byte}, neither 0 nor 1"),
        E::UnexpectedVariant { found, .. } => format!("a choice in it is {found}, which no version defined"),
        E::OutsideUsizeRange(len) => format!("a length in it ({len}) is too large"),
        _ => "its bytes are not a valid encoding of it".to_owned(),
    }
}

/// Opens `path` for reading without blocking on a FIFO that has no writer
/// (the FIFO is then refused, as every file that is not a regular one).
#[cfg(unix)]
fn open_without_waiting(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)
}

#[cfg(not(unix))]
fn open_without_waiting(path: &Path) -> io::Result<File> {
    File::open(path)
}

/// What `file` is if it is not a regular file whose size says what it holds:
/// a FIFO, a device, a socket, or a file that says it is empty but is not
/// (`/proc`, `/sys`).
fn special_kind(file: &File, metadata: &std::fs::Metadata) -> Option<&'static str> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let kind = metadata.file_type();
        if kind.is_fifo() {
            return Some("a FIFO (a named pipe, or a shell's process substitution)");
        }
        if kind.is_char_device() {
            return Some("a character device");
        }
        if kind.is_block_device() {
            return Some("a block device");
        }
        if kind.is_socket() {
            return Some("a socket");
        }
    }
    if !metadata.is_file() {
        return Some("not a file");
    }
    if metadata.len() == 0 {
        let mut byte = [0u8; 1];
        if read_exact_at(file, &mut byte, 0).is_ok() {
            return Some("a file whose size is not known until it is read (like those of /proc)");
        }
    }
    None
}

/// What a file that is not a trace seems to be, for the message.
fn sniff(head: &[u8]) -> Option<&'static str> {
    const KNOWN: &[(&[u8], &str)] = &[
        (b"\x89PNG", "a PNG image"),
        (b"\x28\xb5\x2f\xfd", "zstd-compressed data"),
        (b"\x1f\x8b", "gzip-compressed data"),
        (b"PK\x03\x04", "a zip archive"),
        (b"\x7fELF", "an executable (ELF)"),
        (b"SQLite format 3", "an SQLite database"),
        (b"{", "JSON (an aiocop report?)"),
        (b"[", "JSON"),
    ];
    let trimmed = head.trim_ascii_start();
    KNOWN.iter().find(|(magic, _)| head.starts_with(magic) || trimmed.starts_with(magic)).map(|(_, what)| *what)
}

/// The strings, frames and stacks a trace defines, gathered from its chunks
/// (each chunk defines the ids it is the first to use), to resolve ids.
///
/// A file defines each id once; if a damaged or crafted one defines an id
/// twice, the first definition added wins.
#[derive(Clone, Debug, Default)]
pub struct Dictionary {
    strings: FxHashMap<StringId, String>,
    frames: FxHashMap<FrameId, Frame>,
    stacks: FxHashMap<StackId, Vec<FrameId>>,
    frame_names: FxHashMap<FrameId, FrameName>,
}

impl Dictionary {
    /// An empty dictionary.
    pub fn new() -> Dictionary {
        Dictionary::default()
    }

    /// Adds the definitions of `chunk`.
    pub fn add(&mut self, chunk: &Chunk) {
        for (id, value) in &chunk.strings {
            self.strings.entry(*id).or_insert_with(|| value.clone());
        }
        for (id, frame) in &chunk.frames {
            self.frames.entry(*id).or_insert(*frame);
        }
        for (id, frames) in &chunk.stacks {
            self.stacks.entry(*id).or_insert_with(|| frames.clone());
        }
        for (id, name) in chunk.frame_names.iter() {
            self.frame_names.entry(*id).or_insert(*name);
        }
    }

    /// Adds the definitions of `other` (for example gathered from later
    /// chunks on another thread).
    pub fn merge(&mut self, other: Dictionary) {
        for (id, value) in other.strings {
            self.strings.entry(id).or_insert(value);
        }
        for (id, frame) in other.frames {
            self.frames.entry(id).or_insert(frame);
        }
        for (id, frames) in other.stacks {
            self.stacks.entry(id).or_insert(frames);
        }
        for (id, name) in other.frame_names {
            self.frame_names.entry(id).or_insert(name);
        }
    }

    /// The string with `id`, if defined.
    pub fn string(&self, id: StringId) -> Option<&str> {
        self.strings.get(&id).map(String::as_str)
    }

    /// The frame with `id`, if defined.
    pub fn frame(&self, id: FrameId) -> Option<&Frame> {
        self.frames.get(&id)
    }

    /// The module and qualified name of frame `id` (`("shop.views",
    /// "CartView.total")`), if its trace recorded them (format 1.1) and the
    /// dictionary has both strings.
    pub fn frame_name(&self, id: FrameId) -> Option<(&str, &str)> {
        let name = self.frame_names.get(&id)?;
        Some((self.string(name.module)?, self.string(name.qualname)?))
    }

    /// The frames of stack `id`, innermost first.
    pub fn stack(&self, id: StackId) -> Option<&[FrameId]> {
        self.stacks.get(&id).map(Vec::as_slice)
    }

    /// Frame `id` as `short/path.py:line:function` ([`crate::frame::format_frame`]);
    /// an id or string the dictionary lacks shows as `<unknown frame N>` or `<unknown string N>`.
    pub fn format_frame(&self, id: FrameId) -> String {
        let Some(frame) = self.frame(id) else {
            return format!("<unknown frame {id}>");
        };
        let string =
            |id: StringId| self.string(id).map_or_else(|| Cow::Owned(format!("<unknown string {id}>")), Cow::Borrowed);
        crate::frame::format_frame(&string(frame.file), i64::from(frame.line), &string(frame.function))
    }

    /// How many strings, frames and stacks are defined.
    pub fn counts(&self) -> (usize, usize, usize) {
        (self.strings.len(), self.frames.len(), self.stacks.len())
    }

    /// Whether nothing is defined.
    pub fn is_empty(&self) -> bool {
        self.strings.is_empty() && self.frames.is_empty() && self.stacks.is_empty()
    }
}
