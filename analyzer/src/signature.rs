//! Slice signatures: what slices are keyed by in the first stage of reading,
//! by ids, before a file's dictionary is whole. [`crate::aggregate`] keeps
//! slices with blocking events by [`IoSignature`] and CPU-blocking ones by
//! [`CpuSignature`]; [`crate::loop_time`] keeps sampled slices by
//! [`SampleSignature`]; a stall ([`crate::stalls`]) remembers its slices as
//! [`Slot`]s. [`crate::resolve`] turns each signature into text keys once.
//! A leaf: it uses nothing of the crate, so the stages that share
//! signatures do not use each other for them.

use aiocop_trace::records::{StackId, StringId};
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

/// A slice's CPU samples: `(stack, count)`, sorted by stack.
pub type SampleCounts = SmallVec<[(StackId, u32); 2]>;

/// Sampled slices (no blocking event) that resolve to the same keys.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SampleSignature {
    pub samples: SampleCounts,
    /// `--by task` and `--by context:KEY`: the id keying the slice.
    pub extra: Option<StringId>,
}

impl SampleSignature {
    pub fn of(samples: &[StackId], extra: Option<StringId>) -> SampleSignature {
        let mut counts = SampleCounts::new();
        for &stack in samples {
            match counts.iter_mut().find(|(s, _)| *s == stack) {
                Some((_, count)) => *count += 1,
                None => counts.push((stack, 1)),
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
