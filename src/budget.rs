//! One memory budget for a whole read: every file, every decoding thread,
//! both sides of a diff. A chunk's buffers (its stored and decompressed
//! payload) and what its decoder allocates are counted while it is read;
//! the definitions a reader keeps (strings, frames, stacks, for its
//! dictionary) and each open file's header stay counted until the file is
//! closed.
//!
//! A thread that asks for more than is free waits while other threads hold
//! memory that they will give back; when nothing held can come back (every
//! other holder waits too, or nobody holds any), the request is refused, and
//! so is every request after it: the read is over, and says which chunk
//! needed what. So `-j 32` never fails where `-j 1` would not, and never
//! needs more than the limit.
//!
//! What is not counted: each reading thread's reused buffers, kept between
//! chunks only up to [`RETAINED_BUFFER_BYTES`] each, its zstd context, and
//! what the analysis built from the slices (bounded by the distinct keys,
//! that is by the definitions). The analyzer's documentation gives the
//! margin this adds.

use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// The analyzer's default limit (`--max-memory`): 1 GiB.
pub const DEFAULT_MEMORY_LIMIT: u64 = 1 << 30;

/// A reading thread keeps its payload buffers between chunks (creating them
/// for every chunk cost 5% of a report) only up to this size each; larger
/// ones are freed after their chunk, so what a thread keeps uncounted is
/// small. A recorder's chunk (65,536 slices at most) is about 1 MiB raw.
pub const RETAINED_BUFFER_BYTES: usize = 2 << 20;

/// The memory a read may use, shared by every thread and file of it.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: u64,
    state: Mutex<State>,
    released: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// Bytes counted now: held by reservations, and kept.
    used: u64,
    /// Reservations alive, and how many of them wait to grow.
    holders: usize,
    waiting_holders: usize,
    /// The first refusal ends the read: every request after it is refused.
    refused: bool,
}

/// Memory the budget could not give.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverBudget {
    /// What was asked for.
    pub needed: u64,
    /// Counted when it was asked for.
    pub in_use: u64,
    /// The budget's limit.
    pub limit: u64,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Arc<MemoryBudget> {
        Arc::new(MemoryBudget { limit, state: Mutex::default(), released: Condvar::new() })
    }

    /// A budget that never refuses (a reader opened without one).
    pub fn unlimited() -> Arc<MemoryBudget> {
        MemoryBudget::new(u64::MAX)
    }

    /// Its limit, in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes counted now.
    pub fn in_use(&self) -> u64 {
        self.lock().used
    }

    /// Whether a request was refused: the read is over.
    pub fn refused(&self) -> bool {
        self.lock().refused
    }

    /// `bytes`, held until the reservation is dropped (or grown, or part of
    /// it kept). Waits while other holders may give memory back.
    pub fn reserve(self: &Arc<Self>, bytes: u64) -> Result<Reservation, OverBudget> {
        self.acquire(bytes, Asker::New)?;
        Ok(Reservation { budget: Arc::clone(self), bytes })
    }

    /// `bytes` for a [`Parked`] reservation (a file's header and index,
    /// held while it is open). Waits as [`MemoryBudget::reserve`].
    pub fn park(self: &Arc<Self>, bytes: u64) -> Result<Parked, OverBudget> {
        self.acquire(bytes, Asker::Parked)?;
        Ok(Parked { budget: Arc::clone(self), bytes })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves consistent counts: go on.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts `bytes` more, for `asker`.
    fn acquire(&self, bytes: u64, asker: Asker) -> Result<(), OverBudget> {
        let holding = asker == Asker::Holder;
        let mut state = self.lock();
        loop {
            if !state.refused && state.used.checked_add(bytes).is_some_and(|total| total <= self.limit) {
                state.used += bytes;
                state.holders += usize::from(asker == Asker::New);
                return Ok(());
            }
            let others_running = state.holders - state.waiting_holders - usize::from(holding);
            if state.refused || bytes > self.limit || others_running == 0 {
                state.refused = true;
                self.released.notify_all();
                return Err(OverBudget { needed: bytes, in_use: state.used, limit: self.limit });
            }
            state.waiting_holders += usize::from(holding);
            state = self.released.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
            state.waiting_holders -= usize::from(holding);
        }
    }
}

impl MemoryBudget {
    /// Gives back `bytes` that were kept ([`Reservation::keep`]) by someone
    /// who knows they are freed now (a file closed with its dictionary).
    pub fn release(&self, bytes: u64) {
        let mut state = self.lock();
        state.used -= bytes.min(state.used);
        self.released.notify_all();
    }
}

/// Who asks for memory, which decides whether it may wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Asker {
    /// A new [`Reservation`]: becomes a holder, whom others may wait for.
    New,
    /// A holder growing its reservation.
    Holder,
    /// A [`Parked`] reservation: counted, but not a holder (nobody waits for it).
    Parked,
}

/// Memory counted in a [`MemoryBudget`] until this is dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<MemoryBudget>,
    bytes: u64,
}

impl Reservation {
    /// Counts `more` bytes; may wait for other holders, as [`MemoryBudget::reserve`].
    pub fn grow(&mut self, more: u64) -> Result<(), OverBudget> {
        self.budget.acquire(more, Asker::Holder)?;
        self.bytes += more;
        Ok(())
    }

    /// Keeps `bytes` counted for the rest of the read (memory that outlives
    /// this reservation: definitions taken into a dictionary), growing the
    /// reservation first if it holds less.
    pub fn keep(&mut self, bytes: u64) -> Result<(), OverBudget> {
        if bytes > self.bytes {
            self.grow(bytes - self.bytes)?;
        }
        self.bytes -= bytes;
        Ok(())
    }

    /// Moves `bytes` of this reservation to a [`Parked`] one, for memory
    /// handed to a caller that holds it a while (a chunk's slices, read
    /// whole), growing this reservation first if it holds less.
    pub fn park(&mut self, bytes: u64) -> Result<Parked, OverBudget> {
        self.keep(bytes)?;
        Ok(Parked { budget: Arc::clone(&self.budget), bytes })
    }

    /// The bytes this reservation holds now.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// Memory counted until this is dropped, held by no running reader: no
/// request waits for it to come back (its holder may be waiting for the
/// very request), so a request it leaves no room for is refused.
#[derive(Debug)]
pub struct Parked {
    budget: Arc<MemoryBudget>,
    bytes: u64,
}

impl Parked {
    /// Counts `more` bytes; waits as [`MemoryBudget::reserve`] (not as a holder).
    pub fn grow(&mut self, more: u64) -> Result<(), OverBudget> {
        self.budget.acquire(more, Asker::Parked)?;
        self.bytes += more;
        Ok(())
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        let mut state = self.budget.lock();
        state.used -= self.bytes;
        self.budget.released.notify_all();
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut state = self.budget.lock();
        state.used -= self.bytes;
        state.holders -= 1;
        self.budget.released.notify_all();
    }
}

/// `bytes` as people read sizes: `1.0 GiB`, `250.0 MiB`, `512 bytes`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

impl fmt::Display for OverBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "needs {} more with {} in use, over the memory limit of {}",
            human_bytes(self.needed),
            human_bytes(self.in_use),
            human_bytes(self.limit)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn reservations_count_until_dropped_and_kept_bytes_stay() {
        let budget = MemoryBudget::new(100);
        let mut first = budget.reserve(60).unwrap();
        first.keep(10).unwrap();
        assert_eq!(budget.in_use(), 60);
        drop(first);
        assert_eq!(budget.in_use(), 10);
        assert!(!budget.refused());
    }

    #[test]
    fn a_request_nothing_can_make_room_for_is_refused_and_ends_the_read() {
        let budget = MemoryBudget::new(100);
        let refusal = budget.reserve(101).unwrap_err();
        assert_eq!(refusal, OverBudget { needed: 101, in_use: 0, limit: 100 });
        assert!(budget.refused());
        assert!(budget.reserve(1).is_err(), "after a refusal every request is refused");
    }

    #[test]
    fn a_holder_growing_past_the_limit_alone_is_refused() {
        let budget = MemoryBudget::new(100);
        let mut held = budget.reserve(80).unwrap();
        assert_eq!(held.grow(30).unwrap_err().needed, 30);
    }

    #[test]
    fn a_thread_waits_for_another_to_give_memory_back() {
        let budget = MemoryBudget::new(100);
        let held = budget.reserve(80).unwrap();
        let waiter = {
            let budget = Arc::clone(&budget);
            std::thread::spawn(move || budget.reserve(50).map(|r| r.bytes()))
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "it waits while 80 bytes are held");
        drop(held);
        assert_eq!(waiter.join().unwrap(), Ok(50));
    }

    /// Two threads that each hold 40 bytes, then want 40 more.
    fn two_growing_holders(budget: &Arc<MemoryBudget>) -> Vec<Result<(), OverBudget>> {
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let budget = Arc::clone(budget);
                std::thread::spawn(move || {
                    let mut held = budget.reserve(40)?;
                    std::thread::sleep(Duration::from_millis(20));
                    held.grow(40)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    }

    #[test]
    fn two_holders_both_growing_do_not_deadlock() {
        let results = two_growing_holders(&MemoryBudget::new(100));
        assert!(results.iter().any(Result::is_err), "one of them cannot have 80 of 100: {results:?}");
    }

    #[test]
    fn a_parked_reservation_is_nobody_to_wait_for() {
        // A file's header is parked while chunks are read: two chunks that
        // both need to grow must not wait for it to be given back.
        let budget = MemoryBudget::new(100);
        let _header = budget.park(10).unwrap();
        let results = two_growing_holders(&budget);
        assert!(results.iter().any(Result::is_err), "{results:?}");
    }

    #[test]
    fn sizes_read_as_people_read_them() {
        assert_eq!(human_bytes(512), "512 bytes");
        assert_eq!(human_bytes(250 << 20), "250.0 MiB");
        assert_eq!(human_bytes(DEFAULT_MEMORY_LIMIT), "1.0 GiB");
    }
}
