//! Ids of orders that reached a terminal status, remembered long after the snapshot cache
//! (500 orders) has let their records go, so an exchange repeat of a finished order (or a stale
//! `open` for it) is dropped instead of coming back as a new order.
//!
//! Compact on purpose: an id is kept as a 64-bit hash (8 bytes, plus the FIFO's 8), so the
//! default 100,000 ids cost under 4 MiB with the set's overhead. A hash collision would drop one
//! update of an unrelated order; with 64-bit hashes over 100,000 ids its odds are about 1 in 10^9.

use std::collections::{HashSet, VecDeque};
use std::hash::{Hash, Hasher};

/// How many finished order ids are remembered.
pub const FINISHED_IDS_KEPT: usize = 100_000;

pub struct FinishedIds {
    cap: usize,
    set: HashSet<u64>,
    /// Insertion order, oldest first, for eviction.
    order: VecDeque<u64>,
}

impl FinishedIds {
    pub fn new(cap: usize) -> Self {
        FinishedIds {
            cap,
            set: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    pub fn insert(&mut self, id: &str) {
        if self.cap == 0 {
            return;
        }
        let h = hash(id);
        if !self.set.insert(h) {
            return;
        }
        self.order.push_back(h);
        while self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }

    pub fn contains(&self, id: &str) -> bool {
        self.set.contains(&hash(id))
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.set.len()
    }
}

/// `DefaultHasher::new()` has fixed keys: the same id always hashes the same in this process.
fn hash(id: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_up_to_the_cap_oldest_out_first() {
        let mut f = FinishedIds::new(3);
        for id in ["a", "b", "c", "a", "d"] {
            f.insert(id);
        }
        assert_eq!(f.len(), 3);
        assert!(!f.contains("a"), "oldest id evicted");
        assert!(f.contains("b") && f.contains("c") && f.contains("d"));
    }
}
