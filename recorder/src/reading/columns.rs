//! A trace's slices as columns, one set per chunk, for Arrow record
//! batches (`aiocop.trace.TraceReader.batches()`).
//!
//! Each column is a `bytes` object holding Arrow's own layout (little-endian
//! values, bit-packed booleans and validity), which pyarrow wraps with
//! `Array.from_buffers` without looking at the rows; `what` and `task` are
//! dictionary-encoded: `int32` indices into the batch's own list of
//! distinct strings. No Python object is made per row, so a batch costs
//! the decoding and a copy of each column.

use super::ChunkCursor;
use aiocop_trace::records::{SliceRecord, StringId};
use aiocop_trace::{PureSlice, SliceVisitor};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use rustc_hash::FxHashMap;
use std::borrow::Cow;

/// One pass over a trace, a dict of column buffers per chunk read.
#[pyclass(module = "aiocop._native")]
pub struct ColumnIter {
    cursor: ChunkCursor,
    columns: Columns,
}

impl ColumnIter {
    pub fn new(cursor: ChunkCursor) -> ColumnIter {
        ColumnIter { cursor, columns: Columns::default() }
    }
}

#[pymethods]
impl ColumnIter {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// The next chunk's columns: `rows`, then one `bytes` per column, and
    /// for `what` and `task` the offsets and data of the distinct strings
    /// their indices name (`what_offsets`, `what_data`).
    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let (cursor, columns) = (&mut self.cursor, &mut self.columns);
        let more = py.detach(|| {
            columns.clear();
            columns.start_unix_ns = cursor.trace.header().start_unix_ns;
            cursor.read_next(columns, Columns::clear)
        });
        if !more {
            return Ok(None);
        }
        self.columns.to_dict(py, &self.cursor).map(Some)
    }

    /// What could not be read, once the pass is over.
    fn warning(&self) -> Option<String> {
        self.cursor.warning()
    }
}

/// A chunk's slices, column by column, as Arrow lays them out.
#[derive(Default)]
struct Columns {
    /// The trace's start on the wall clock, added to each start.
    start_unix_ns: u64,
    rows: usize,
    start_ns: Vec<u64>,
    start_unix: Vec<i64>,
    duration_ns: Vec<u64>,
    what: Vec<StringId>,
    task: Vec<StringId>,
    task_valid: Bits,
    thread: Vec<u32>,
    exceeded: Bits,
    score: Vec<i64>,
    events: Vec<u32>,
    dropped_events: Vec<u32>,
    samples: Vec<u32>,
    /// Where each row's context pairs start in `context` (one more than the rows).
    context_offsets: Vec<i32>,
    /// Every row's context (key, value) string ids, resolved once the
    /// chunk's definitions are in the dictionary.
    context: Vec<(StringId, StringId)>,
}

impl Columns {
    /// Empties the columns, keeping their memory for the next chunk (a
    /// new allocation per chunk was a fifth of the time, faulting pages in).
    fn clear(&mut self) {
        self.rows = 0;
        for column in [&mut self.start_ns, &mut self.duration_ns] {
            column.clear();
        }
        self.start_unix.clear();
        for column in [
            &mut self.what,
            &mut self.task,
            &mut self.thread,
            &mut self.events,
            &mut self.dropped_events,
            &mut self.samples,
        ] {
            column.clear();
        }
        self.score.clear();
        self.context_offsets.clear();
        self.context_offsets.push(0);
        self.context.clear();
        self.task_valid.clear();
        self.exceeded.clear();
    }

    #[inline(always)]
    fn push(&mut self, start_ns: u64, duration_ns: u64, what: StringId, task: Option<StringId>, thread: u32) {
        self.rows += 1;
        self.start_ns.push(start_ns);
        self.start_unix.push(i64::try_from(self.start_unix_ns.saturating_add(start_ns)).unwrap_or(i64::MAX));
        self.duration_ns.push(duration_ns);
        self.what.push(what);
        self.task.push(task.unwrap_or(0));
        self.task_valid.push(task.is_some());
        self.thread.push(thread);
    }

    /// Ends the row's context (pairs pushed to `context` before it).
    #[inline(always)]
    fn end_context(&mut self) {
        self.context_offsets.push(i32::try_from(self.context.len()).unwrap_or(i32::MAX));
    }

    /// The columns as a dict of `bytes`, the string ids made into indices
    /// into lists of the distinct strings.
    fn to_dict<'py>(&self, py: Python<'py>, cursor: &ChunkCursor) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        dict.set_item("rows", self.rows)?;
        dict.set_item("start_ns", bytes(py, &self.start_ns))?;
        dict.set_item("start_unix_ns", bytes(py, &self.start_unix))?;
        dict.set_item("duration_ns", bytes(py, &self.duration_ns))?;
        for (name, ids, valid) in [("what", &self.what, None), ("task", &self.task, Some(&self.task_valid))] {
            let column = dictionary_encoded(py, cursor, ids, valid)?;
            dict.set_item(name, column.indices)?;
            dict.set_item(format!("{name}_offsets"), column.values.0)?;
            dict.set_item(format!("{name}_data"), column.values.1)?;
        }
        dict.set_item("task_valid", PyBytes::new(py, &self.task_valid.bytes))?;
        dict.set_item("thread", bytes(py, &self.thread))?;
        dict.set_item("exceeded", PyBytes::new(py, &self.exceeded.bytes))?;
        dict.set_item("score", bytes(py, &self.score))?;
        dict.set_item("events", bytes(py, &self.events))?;
        dict.set_item("dropped_events", bytes(py, &self.dropped_events))?;
        dict.set_item("samples", bytes(py, &self.samples))?;
        // The context as an Arrow map: offsets, then keys and values as strings.
        dict.set_item("context", bytes(py, &self.context_offsets))?;
        let text = |id: StringId| match cursor.dictionary.string(id) {
            Some(text) => Cow::Borrowed(text),
            None => Cow::Owned(format!("<unknown string {id}>")),
        };
        let keys = self.context.iter().map(|(key, _)| text(*key));
        let (offsets, data) = string_array(py, keys);
        dict.set_item("context_keys_offsets", offsets)?;
        dict.set_item("context_keys_data", data)?;
        let (offsets, data) = string_array(py, self.context.iter().map(|(_, value)| text(*value)));
        dict.set_item("context_values_offsets", offsets)?;
        dict.set_item("context_values_data", data)?;
        Ok(dict)
    }
}

impl SliceVisitor for Columns {
    #[inline(always)]
    fn pure_slice(&mut self, start_ns: u64, slice: PureSlice) {
        self.push(start_ns, slice.duration_ns, slice.what, slice.task, slice.thread);
        self.exceeded.push(false);
        self.score.push(0);
        self.events.push(0);
        self.dropped_events.push(0);
        self.samples.push(0);
        self.end_context();
    }

    fn slice(&mut self, start_ns: u64, slice: &SliceRecord) {
        self.push(start_ns, slice.duration_ns, slice.what, slice.task, slice.thread);
        self.exceeded.push(slice.exceeded);
        self.score.push(slice.score);
        self.events.push(u32::try_from(slice.events.len()).unwrap_or(u32::MAX));
        self.dropped_events.push(slice.dropped_events);
        self.samples.push(u32::try_from(slice.samples.len()).unwrap_or(u32::MAX));
        self.context.extend_from_slice(&slice.context);
        self.end_context();
    }
}

/// Booleans bit-packed least significant bit first, as Arrow packs them.
#[derive(Default)]
struct Bits {
    bytes: Vec<u8>,
    len: usize,
}

impl Bits {
    #[inline(always)]
    fn push(&mut self, bit: bool) {
        if self.len.is_multiple_of(8) {
            self.bytes.push(0);
        }
        if bit {
            *self.bytes.last_mut().expect("a byte was pushed for this bit") |= 1 << (self.len % 8);
        }
        self.len += 1;
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.len = 0;
    }

    fn get(&self, index: usize) -> bool {
        self.bytes[index / 8] & (1 << (index % 8)) != 0
    }
}

/// A column of numbers as `bytes`, little-endian.
fn bytes<'py, T: Copy + ToLe>(py: Python<'py>, values: &[T]) -> Bound<'py, PyBytes> {
    PyBytes::new_with(py, std::mem::size_of_val(values), |buffer| {
        for (chunk, value) in buffer.chunks_exact_mut(size_of::<T>()).zip(values) {
            value.write_le(chunk);
        }
        Ok(())
    })
    .expect("filling a new bytes object does not fail")
}

/// Numbers a column holds, written little-endian whatever the machine.
trait ToLe {
    fn write_le(&self, out: &mut [u8]);
}

macro_rules! to_le {
    ($($t:ty),*) => {$(
        impl ToLe for $t {
            #[inline(always)]
            fn write_le(&self, out: &mut [u8]) {
                out.copy_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}
to_le!(u32, i32, u64, i64);

/// A dictionary-encoded column: `int32` indices, and the buffers of the
/// `string` array of the distinct values they index.
struct DictionaryColumn<'py> {
    indices: Bound<'py, PyBytes>,
    values: (Bound<'py, PyBytes>, Bound<'py, PyBytes>),
}

/// String ids as `int32` indices into the distinct strings, in order of
/// first use; rows `valid` says are null get index 0. Distinct by text: a
/// recorder may define the same text under several ids (task names).
fn dictionary_encoded<'py>(
    py: Python<'py>,
    cursor: &ChunkCursor,
    ids: &[StringId],
    valid: Option<&Bits>,
) -> PyResult<DictionaryColumn<'py>> {
    let mut index_of_id: FxHashMap<StringId, i32> = FxHashMap::default();
    let mut index_of_text: FxHashMap<Cow<'_, str>, i32> = FxHashMap::default();
    let mut indices = Vec::with_capacity(ids.len());
    for (row, id) in ids.iter().enumerate() {
        if valid.is_some_and(|v| !v.get(row)) {
            indices.push(0);
            continue;
        }
        let index = *index_of_id.entry(*id).or_insert_with(|| {
            let text = match cursor.dictionary.string(*id) {
                Some(text) => Cow::Borrowed(text),
                None => Cow::Owned(format!("<unknown string {id}>")),
            };
            let next = i32::try_from(index_of_text.len()).unwrap_or(i32::MAX);
            *index_of_text.entry(text).or_insert(next)
        });
        indices.push(index);
    }
    let mut values: Vec<(i32, Cow<'_, str>)> = index_of_text.into_iter().map(|(text, index)| (index, text)).collect();
    values.sort_unstable_by_key(|(index, _)| *index);
    Ok(DictionaryColumn {
        indices: bytes(py, &indices),
        values: string_array(py, values.into_iter().map(|(_, text)| text)),
    })
}

/// Strings as an Arrow `string` array's buffers: `int32` offsets (one more
/// than the strings) and the UTF-8 bytes, one after the other.
fn string_array<'a, 'py>(
    py: Python<'py>,
    texts: impl Iterator<Item = Cow<'a, str>>,
) -> (Bound<'py, PyBytes>, Bound<'py, PyBytes>) {
    let mut offsets = vec![0i32];
    let mut data = Vec::new();
    for text in texts {
        data.extend_from_slice(text.as_bytes());
        offsets.push(i32::try_from(data.len()).unwrap_or(i32::MAX));
    }
    (bytes(py, &offsets), PyBytes::new(py, &data))
}

#[cfg(test)]
mod tests {
    use super::Bits;

    #[test]
    fn bits_pack_least_significant_first_as_arrow_reads_them() {
        let mut bits = Bits::default();
        for bit in [true, false, true, true, false, false, false, false, false, true] {
            bits.push(bit);
        }
        assert_eq!(bits.bytes, [0b0000_1101, 0b0000_0010]);
        assert!(bits.get(9) && !bits.get(8) && bits.get(0));
        bits.clear();
        bits.push(true);
        assert_eq!((bits.bytes.as_slice(), bits.len), ([1u8].as_slice(), 1));
    }
}
