//! Slice signatures: what slices are keyed by in the first stage of reading,
//! by ids, before a file's dictionary is whole. [`crate::aggregate`] keeps
//! slices with blocking events by [`IoSignature`] and CPU-blocking ones by
//! [`CpuSignature`]; [`crate::loop_time`] keeps sampled slices by
//! [`SampleSignature`]; a stall ([`crate::stalls`]) remembers its slices as
//! [`Slot`]s. [`crate::resolve`] turns each signature into text keys once.
//! A leaf: it uses nothing of the crate, so the stages that share
//! signatures do not use each other for them.

use aiocop_trace::records::{SampleTime, StackId, StringId};
use smallvec::SmallVec;

/// Slices that did blocking I/O and resolve to the same keys.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IoSignature {
    pub exceeded: bool,
    pub extra: Option<StringId>,
    /// What ran: where the slice's time goes if every event is ignored.
    pub what: StringId,
    /// `(event index, stack id)`, sorted. Inline for the usual one or two
    /// events, so that comparing a signature in the map reads no other memory.
    pub events: SignatureEvents,
    /// The argument ids of its `import` events, in signature order.
    pub imports: SignatureImports,
}

pub type SignatureImports = smallvec::SmallVec<[StringId; 1]>;

pub type SignatureEvents = smallvec::SmallVec<[(u16, StackId); 2]>;

/// An [`IoSignature`] in borrowed scratch space: it hashes and compares as
/// the signature it stands for, so that looking up a known signature
/// allocates nothing.
#[derive(Hash)]
pub(crate) struct IoSignatureRef<'a> {
    pub exceeded: bool,
    pub extra: Option<StringId>,
    pub what: StringId,
    pub events: &'a [(u16, StackId)],
    pub imports: &'a [StringId],
}

impl hashbrown::Equivalent<IoSignature> for IoSignatureRef<'_> {
    fn equivalent(&self, key: &IoSignature) -> bool {
        self.exceeded == key.exceeded
            && self.extra == key.extra
            && self.what == key.what
            && *self.events == *key.events
            && *self.imports == *key.imports
    }
}

impl From<&IoSignatureRef<'_>> for IoSignature {
    fn from(signature: &IoSignatureRef<'_>) -> IoSignature {
        IoSignature {
            exceeded: signature.exceeded,
            extra: signature.extra,
            what: signature.what,
            events: signature.events.into(),
            imports: signature.imports.into(),
        }
    }
}

/// A map keyed by signatures.
pub type SignatureMap<K, V> = hashbrown::HashMap<K, V, rustc_hash::FxBuildHasher>;

/// CPU-blocking slices with the same most frequent sample and extra key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CpuSignature {
    /// The most frequent sample's stack; [`NO_STACK`](crate::group::NO_STACK) if the slice has no samples.
    pub stack: StackId,
    pub extra: Option<StringId>,
}

/// A slice's CPU samples, by stack: sorted by stack, then `native`.
pub type SampleCounts = SmallVec<[SampleShare; 2]>;

/// The samples of one stack in a slice, and the part of the slice's time
/// they stand for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SampleShare {
    pub stack: StackId,
    /// Their requests waited in C code called from the stack's innermost
    /// frame ([`aiocop_trace::waited_in_native_code`]).
    pub native: bool,
    pub count: u32,
    /// Their part of the slice: of [`SHARE_UNITS`] for timed samples
    /// ([`aiocop_trace::sample_weights`]); for untimed ones (before format
    /// 1.3), their count, each sample an equal part.
    pub share: u32,
}

/// A timed slice's time is split into this many parts between its samples:
/// fine enough (0.4%) to follow the weights, coarse enough that slices of
/// the same stacks share a signature.
pub const SHARE_UNITS: u64 = 256;

/// Sampled slices (no blocking event) that resolve to the same keys.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SampleSignature {
    pub samples: SampleCounts,
    /// `--by task` and `--by context:KEY`: the id keying the slice.
    pub extra: Option<StringId>,
}

/// One CPU sample's part of its slice, as the report counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SampleCut {
    /// Of [`SHARE_UNITS`] for a timed sample; 1 for an untimed one.
    pub share: u32,
    /// Its request waited in C code ([`aiocop_trace::waited_in_native_code`]).
    pub native: bool,
}

/// Each sample's [`SampleCut`], in sample order, for a slice of
/// `duration_ns` with `sample_count` samples, their times (empty: untimed)
/// and the loop thread's CPU time over each one's wait (empty: unknown,
/// before format 1.4); `interval_ns` is recording's sampling interval. The
/// one place shares are decided: the report's signatures and the export's
/// `share` and `native` columns both come from here.
pub fn sample_cuts(
    duration_ns: u64,
    sample_count: usize,
    times: &[SampleTime],
    cpu_ns: &[u64],
    interval_ns: u64,
) -> Vec<SampleCut> {
    if times.len() != sample_count {
        return vec![SampleCut { share: 1, native: false }; sample_count];
    }
    let weights = aiocop_trace::sample_weights(duration_ns, sample_count, times);
    let native = aiocop_trace::samples_native(sample_count, times, cpu_ns, interval_ns);
    aiocop_trace::apportion(SHARE_UNITS, &weights)
        .into_iter()
        .zip(native)
        .map(|(share, native)| SampleCut { share: share as u32, native })
        .collect()
}

impl SampleSignature {
    /// The signature of a slice of `duration_ns` with these samples, their
    /// times (empty: untimed) and CPU times (empty: unknown); `interval_ns`
    /// is recording's sampling interval, which says which waited in native
    /// code.
    pub fn of(
        samples: &[StackId],
        (times, cpu_ns): (&[SampleTime], &[u64]),
        duration_ns: u64,
        interval_ns: u64,
        extra: Option<StringId>,
    ) -> SampleSignature {
        let cuts = sample_cuts(duration_ns, samples.len(), times, cpu_ns, interval_ns);
        let mut counts = SampleCounts::new();
        for (&stack, &SampleCut { share, native }) in samples.iter().zip(&cuts) {
            match counts.iter_mut().find(|s| s.stack == stack && s.native == native) {
                Some(found) => {
                    found.count += 1;
                    found.share += share;
                }
                None => counts.push(SampleShare { stack, native, count: 1, share }),
            }
        }
        counts.sort_unstable();
        SampleSignature { samples: counts, extra }
    }
}

/// Where one slice's time goes, by ids: what a stall remembers of its
/// slices, resolved to keys once the file's dictionary is whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Slot {
    Io(IoSignature),
    Sampled(SampleSignature),
    Ran(StringId),
    /// A stall's slices past the distinct slots it keeps.
    Other,
}
