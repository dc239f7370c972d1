//! Where a provided key's full multihash comes from. The reprovide schedule keeps 8 bytes per key (its id, the
//! digest's first 8 bytes: `crate::reprovide::KeyId`), so a node seeding 100k artifacts does not hold 200k whole
//! keys at idle; the key is looked up by id when a provide query starts and when a peer asks for our records. The
//! engine's book is its index (which already holds every announced CID); [`MemoryKeyBook`], the default, remembers
//! what is announced.

use std::collections::HashMap;
use std::sync::Mutex;

use cid::multihash::Multihash;

use crate::reprovide::{KeyId, ProvideKey};

/// Names the multihashes of provided keys by id.
pub trait KeyBook: Send + Sync + 'static {
    /// The multihashes whose digest starts with `id`'s 8 bytes (little endian) among the keys that may be
    /// provided: one as a rule, none when the key is gone, more only when ids collide. `None`: cannot tell now
    /// (the index is being compacted, or failed); the caller asks again later. Called on the swarm's task: it
    /// must not wait.
    fn multihashes_with_id(&self, id: KeyId) -> Option<Vec<Multihash<64>>>;

    /// Keys being announced. A book backed by storage that holds them already does nothing.
    fn remember(&self, _keys: &[ProvideKey]) {}

    /// Keys withdrawn. A book backed by storage that drops them itself does nothing.
    fn forget(&self, _keys: &[ProvideKey]) {}
}

/// A book that keeps every announced key in memory (nodes without an index: tests, tools).
#[derive(Default)]
pub struct MemoryKeyBook {
    keys: Mutex<HashMap<KeyId, Vec<ProvideKey>>>,
}

impl KeyBook for MemoryKeyBook {
    fn multihashes_with_id(&self, id: KeyId) -> Option<Vec<Multihash<64>>> {
        let keys = self.keys.lock().unwrap();
        Some(
            keys.get(&id)
                .into_iter()
                .flatten()
                .filter_map(|key| Multihash::from_bytes(&key.multihash_bytes()).ok())
                .collect(),
        )
    }

    fn remember(&self, keys: &[ProvideKey]) {
        let mut book = self.keys.lock().unwrap();
        for key in keys {
            let same_id = book.entry(key.id()).or_default();
            if !same_id.contains(key) {
                same_id.push(key.clone());
            }
        }
    }

    fn forget(&self, keys: &[ProvideKey]) {
        let mut book = self.keys.lock().unwrap();
        for key in keys {
            if let Some(same_id) = book.get_mut(&key.id()) {
                same_id.retain(|k| k != key);
                if same_id.is_empty() {
                    book.remove(&key.id());
                }
            }
        }
    }
}

/// The keys `book` names for `id` (`None`: cannot tell now).
pub(crate) fn keys_with_id(book: &dyn KeyBook, id: KeyId) -> Option<Vec<ProvideKey>> {
    let multihashes = book.multihashes_with_id(id)?;
    Some(
        multihashes
            .iter()
            .map(ProvideKey::of_multihash)
            .filter(|key| key.id() == id)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_book_names_remembered_keys_by_id_until_forgotten() {
        let book = MemoryKeyBook::default();
        let mut colliding = [5u8; 32];
        colliding[31] = 6;
        let (a, b, c) = (
            ProvideKey::Sha256([5; 32]),
            ProvideKey::Sha256(colliding),
            ProvideKey::Sha256([7; 32]),
        );
        assert_eq!(a.id(), b.id());
        book.remember(&[a.clone(), b.clone(), c.clone(), a.clone()]);
        assert_eq!(
            keys_with_id(&book, a.id()),
            Some(vec![a.clone(), b.clone()])
        );
        assert_eq!(keys_with_id(&book, c.id()), Some(vec![c.clone()]));
        book.forget(std::slice::from_ref(&a));
        assert_eq!(keys_with_id(&book, a.id()), Some(vec![b.clone()]));
        book.forget(&[b, c.clone()]);
        assert_eq!(keys_with_id(&book, a.id()), Some(vec![]));
        assert_eq!(keys_with_id(&book, c.id()), Some(vec![]));
    }
}
