//! Small in-memory caches that spare the store a round trip per request: sessions (by token
//! hash) and connections' schema states. Each entry lives at most [`MAX_AGE`], so a change
//! made by another process sharing the store shows up within that time; changes made by this
//! server (sign-out, a schema refresh, a new configuration) drop the entries at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an entry is trusted without asking the store again.
pub const MAX_AGE: Duration = Duration::from_secs(1);

/// At most this many entries: past it, the cache starts over (bounded memory).
const CAPACITY: usize = 20_000;

/// Values by key, each for at most [`MAX_AGE`].
#[derive(Debug)]
pub struct Recent<V> {
    entries: Mutex<HashMap<String, (Instant, V)>>,
}

impl<V> Default for Recent<V> {
    fn default() -> Self {
        Recent {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<V: Clone> Recent<V> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, V)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The value of `key` when it was put less than [`MAX_AGE`] ago.
    pub fn get(&self, key: &str) -> Option<V> {
        let map = self.lock();
        map.get(key)
            .filter(|(at, _)| at.elapsed() < MAX_AGE)
            .map(|(_, v)| v.clone())
    }

    pub fn put(&self, key: String, value: V) {
        let mut map = self.lock();
        if map.len() >= CAPACITY {
            map.retain(|_, (at, _)| at.elapsed() < MAX_AGE);
            if map.len() >= CAPACITY {
                map.clear();
            }
        }
        map.insert(key, (Instant::now(), value));
    }

    pub fn remove(&self, key: &str) {
        self.lock().remove(key);
    }

    pub fn clear(&self) {
        self.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_kept_until_removed_or_too_old() {
        let c: Recent<u32> = Recent::default();
        c.put("a".into(), 1);
        assert_eq!(c.get("a"), Some(1));
        c.remove("a");
        assert_eq!(c.get("a"), None);
        c.put("b".into(), 2);
        c.clear();
        assert_eq!(c.get("b"), None);
        c.put("c".into(), 3);
        std::thread::sleep(MAX_AGE + Duration::from_millis(50));
        assert_eq!(
            c.get("c"),
            None,
            "an entry older than MAX_AGE is not trusted"
        );
    }
}
