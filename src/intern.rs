//! Gives each distinct value a small dense id, once.
//!
//! The recorder interns frames and stacks so that an event refers to its
//! stack by id and no string is built until someone asks for one; traces
//! store each string, frame and stack once and refer to it by id.

use rustc_hash::FxHashMap as HashMap;
use std::hash::Hash;

/// Maps values to ids `0, 1, 2, ...` in first-seen order and back.
#[derive(Debug)]
pub struct Interner<T: Eq + Hash + Clone> {
    ids: HashMap<T, u32>,
    values: Vec<T>,
}

impl<T: Eq + Hash + Clone> Default for Interner<T> {
    fn default() -> Self {
        Self { ids: HashMap::default(), values: Vec::new() }
    }
}

impl<T: Eq + Hash + Clone> Interner<T> {
    /// The id of `value`, assigning the next one if it is new.
    pub fn intern(&mut self, value: &T) -> u32 {
        if let Some(&id) = self.ids.get(value) {
            return id;
        }
        let id = u32::try_from(self.values.len()).expect("more than u32::MAX interned values");
        self.values.push(value.clone());
        self.ids.insert(value.clone(), id);
        id
    }

    /// The value with `id`, if interned.
    pub fn get(&self, id: u32) -> Option<&T> {
        self.values.get(id as usize)
    }

    /// How many values are interned.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether nothing is interned.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_share_one_id_and_ids_are_dense() {
        let mut stacks: Interner<Vec<u32>> = Interner::default();
        let a = stacks.intern(&vec![1, 2, 3]);
        let b = stacks.intern(&vec![4]);
        let again = stacks.intern(&vec![1, 2, 3]);
        assert_eq!((a, b, again), (0, 1, 0));
        assert_eq!(stacks.len(), 2);
        assert_eq!(stacks.get(1), Some(&vec![4]));
        assert_eq!(stacks.get(2), None);
    }
}
