//! Keys by their hash. A synchronization holds the key of every resource of a large entity
//! type; held as strings, a million keys cost a heap allocation each and a map twice as large.
//! Held as 128-bit hashes, they cost 16 bytes each and no allocation; two different keys
//! share a hash with a probability of about 2^-88 at a million keys. The seed is drawn at
//! random once per store and kept in it (the store's index snapshots hold hashes), so nobody
//! who only writes tables can choose keys that collide.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

/// Hashes keys for one run.
#[derive(Debug, Clone, Copy)]
pub struct KeyHasher {
    seed: u64,
}

impl KeyHasher {
    /// A hasher with a fresh random seed.
    pub fn new() -> Self {
        KeyHasher {
            seed: std::collections::hash_map::RandomState::new().hash_one(0x6964_6c69_6e6b_u64),
        }
    }

    /// A hasher with the given seed (the store's, see `SyncTx::key_seed`).
    pub fn with_seed(seed: u64) -> Self {
        KeyHasher { seed }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn of(&self, key: &str) -> u128 {
        xxhash_rust::xxh3::xxh3_128_with_seed(key.as_bytes(), self.seed)
    }
}

impl Default for KeyHasher {
    fn default() -> Self {
        Self::new()
    }
}

/// A map by key hash: the hash is already uniform, so the map uses its low bits as they are.
pub type Keyed<V> = HashMap<u128, V, BuildHasherDefault<Folded>>;

/// A set of key hashes.
pub type KeySet = std::collections::HashSet<u128, BuildHasherDefault<Folded>>;

/// Folds a `u128` key hash into the map's 64 bits.
#[derive(Debug, Default)]
pub struct Folded(u64);

impl Hasher for Folded {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u128` keys are hashed here; anything else is folded byte by byte.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u128(&mut self, v: u128) {
        self.0 = (v as u64) ^ ((v >> 64) as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_keys_hash_alike_within_a_run_and_differ_across_runs() {
        let (a, b) = (KeyHasher::new(), KeyHasher::new());
        assert_eq!(a.of("E0000001"), a.of("E0000001"));
        assert_ne!(a.of("E0000001"), a.of("E0000002"));
        assert_ne!(a.of("E0000001"), b.of("E0000001"));
        let mut m: Keyed<i64> = Keyed::default();
        m.insert(a.of("x"), 1);
        assert_eq!(m.get(&a.of("x")), Some(&1));
    }
}
