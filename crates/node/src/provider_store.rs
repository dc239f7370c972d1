//! Kademlia's record store, sized for one provider key per artifact. libp2p-kad's `MemoryStore` keeps each
//! provider key's records in an inline array with room for 20 providers: about 3 KB per key before the hash map's
//! slack, so 10k provided keys held ~50 MB and 100k would hold ~400 MB. Here our own plain provider records (what
//! `start_providing` stores: no addresses, no expiry; Kademlia fills in our addresses when it answers) are a set of
//! keys, other providers' records are plain vectors, each kind with its own bound, and value records go to an inner
//! `MemoryStore`. Everything else behaves as `MemoryStore` does (in-place update of a provider's record, at most
//! `max_providers_per_key` providers per key, newcomers ignored when full).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use connexa::prelude::dht::{
    store::{Error, MemoryStore, MemoryStoreConfig, RecordStore, Result},
    ProviderRecord, Record, RecordKey,
};
use rust_ipfs::PeerId;

pub struct CompactStore {
    local: PeerId,
    /// Our provider records that carry only their key.
    own: HashSet<RecordKey>,
    /// Every other provider record: other peers' (server mode), and ours if one ever carries addresses or an
    /// expiry.
    others: HashMap<RecordKey, Vec<ProviderRecord>>,
    values: MemoryStore,
    max_own_keys: usize,
    max_other_keys: usize,
    max_providers_per_key: usize,
}

pub struct CompactStoreLimits {
    pub max_own_keys: usize,
    pub max_other_keys: usize,
    pub max_records: usize,
}

impl CompactStore {
    pub fn new(local: PeerId, limits: CompactStoreLimits) -> CompactStore {
        let values_config = MemoryStoreConfig {
            max_records: limits.max_records,
            ..Default::default()
        };
        let max_providers_per_key = values_config.max_providers_per_key;
        CompactStore {
            local,
            own: HashSet::new(),
            others: HashMap::new(),
            values: MemoryStore::with_config(local, values_config),
            max_own_keys: limits.max_own_keys,
            max_other_keys: limits.max_other_keys,
            max_providers_per_key,
        }
    }

    fn is_plain_own(&self, record: &ProviderRecord) -> bool {
        record.provider == self.local && record.addresses.is_empty() && record.expires.is_none()
    }

    fn own_record(&self, key: &RecordKey) -> ProviderRecord {
        ProviderRecord::new(key.clone(), self.local, Vec::new())
    }

    fn remove_other(&mut self, key: &RecordKey, provider: &PeerId) {
        if let Some(records) = self.others.get_mut(key) {
            records.retain(|r| &r.provider != provider);
            if records.is_empty() {
                self.others.remove(key);
            }
        }
    }
}

impl RecordStore for CompactStore {
    type RecordsIter<'a> = <MemoryStore as RecordStore>::RecordsIter<'a>;
    type ProvidedIter<'a> = Box<dyn Iterator<Item = Cow<'a, ProviderRecord>> + 'a>;

    fn get(&self, key: &RecordKey) -> Option<Cow<'_, Record>> {
        self.values.get(key)
    }

    fn put(&mut self, record: Record) -> Result<()> {
        self.values.put(record)
    }

    fn remove(&mut self, key: &RecordKey) {
        self.values.remove(key)
    }

    fn records(&self) -> Self::RecordsIter<'_> {
        self.values.records()
    }

    fn add_provider(&mut self, record: ProviderRecord) -> Result<()> {
        if self.is_plain_own(&record) {
            if !self.own.contains(&record.key) && self.own.len() >= self.max_own_keys {
                return Err(Error::MaxProvidedKeys);
            }
            // Replaces a fuller record of ours for the key, as MemoryStore updates a provider's record in place.
            self.remove_other(&record.key, &self.local.clone());
            self.own.insert(record.key);
            return Ok(());
        }
        if record.provider == self.local {
            self.own.remove(&record.key);
        }
        let keys = self.others.len();
        let full = keys >= self.max_other_keys;
        let max_providers = self.max_providers_per_key;
        let own_count = usize::from(self.own.contains(&record.key));
        match self.others.get_mut(&record.key) {
            Some(records) => {
                if let Some(existing) = records.iter_mut().find(|r| r.provider == record.provider) {
                    *existing = record;
                } else if records.len() + own_count < max_providers {
                    records.push(record);
                }
            }
            None if full => return Err(Error::MaxProvidedKeys),
            None => {
                if own_count < max_providers {
                    self.others.insert(record.key.clone(), vec![record]);
                }
            }
        }
        Ok(())
    }

    fn providers(&self, key: &RecordKey) -> Vec<ProviderRecord> {
        let own = self.own.contains(key).then(|| self.own_record(key));
        own.into_iter()
            .chain(self.others.get(key).into_iter().flatten().cloned())
            .collect()
    }

    fn provided(&self) -> Self::ProvidedIter<'_> {
        let local = self.local;
        Box::new(
            self.own
                .iter()
                .map(|key| Cow::Owned(self.own_record(key)))
                .chain(
                    self.others
                        .values()
                        .flatten()
                        .filter(move |r| r.provider == local)
                        .map(Cow::Borrowed),
                ),
        )
    }

    fn remove_provider(&mut self, key: &RecordKey, provider: &PeerId) {
        if provider == &self.local {
            self.own.remove(key);
        }
        self.remove_other(key, provider);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_ipfs::Multiaddr;

    fn store(max_own_keys: usize, max_other_keys: usize) -> (CompactStore, PeerId) {
        let local = PeerId::random();
        let limits = CompactStoreLimits {
            max_own_keys,
            max_other_keys,
            max_records: 16,
        };
        (CompactStore::new(local, limits), local)
    }

    fn key(n: u8) -> RecordKey {
        RecordKey::new(&[n; 34])
    }

    /// What `start_providing` stores for us: no addresses, no expiry.
    fn plain(key: RecordKey, local: PeerId) -> ProviderRecord {
        ProviderRecord::new(key, local, Vec::new())
    }

    fn foreign(key: RecordKey, peer: PeerId) -> ProviderRecord {
        let addr: Multiaddr = "/ip4/127.0.0.1/tcp/4001".parse().unwrap();
        ProviderRecord::new(key, peer, vec![addr])
    }

    #[test]
    fn own_records_come_back_as_plain_records_and_go_on_removal() {
        let (mut s, local) = store(10, 10);
        s.add_provider(plain(key(1), local)).unwrap();
        s.add_provider(plain(key(2), local)).unwrap();
        // Storing the same key again is an update, not a second record.
        s.add_provider(plain(key(1), local)).unwrap();
        assert_eq!(s.providers(&key(1)), vec![plain(key(1), local)]);
        let mut provided: Vec<RecordKey> = s.provided().map(|r| r.key.clone()).collect();
        provided.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
        assert_eq!(provided, vec![key(1), key(2)]);
        s.remove_provider(&key(1), &local);
        assert!(s.providers(&key(1)).is_empty());
        assert_eq!(s.provided().count(), 1);
    }

    #[test]
    fn own_and_foreign_keys_have_separate_bounds() {
        let (mut s, local) = store(2, 1);
        s.add_provider(plain(key(1), local)).unwrap();
        s.add_provider(plain(key(2), local)).unwrap();
        assert!(matches!(
            s.add_provider(plain(key(3), local)),
            Err(Error::MaxProvidedKeys)
        ));
        let peer = PeerId::random();
        s.add_provider(foreign(key(4), peer)).unwrap();
        assert!(matches!(
            s.add_provider(foreign(key(5), PeerId::random())),
            Err(Error::MaxProvidedKeys)
        ));
        // A foreign record for a key we provide needs no new key slot; a full foreign table cannot push out ours.
        s.add_provider(plain(key(1), local)).unwrap();
        assert_eq!(s.providers(&key(4)), vec![foreign(key(4), peer)]);
    }

    #[test]
    fn foreign_records_update_in_place_and_stop_at_the_per_key_limit() {
        let (mut s, local) = store(10, 10);
        s.add_provider(plain(key(1), local)).unwrap();
        let first = PeerId::random();
        s.add_provider(foreign(key(1), first)).unwrap();
        let mut updated = foreign(key(1), first);
        updated
            .addresses
            .push("/ip4/127.0.0.1/tcp/4002".parse().unwrap());
        s.add_provider(updated.clone()).unwrap();
        let providers = s.providers(&key(1));
        assert_eq!(providers.len(), 2);
        assert_eq!(providers[1], updated);
        for _ in 0..40 {
            s.add_provider(foreign(key(1), PeerId::random())).unwrap();
        }
        assert_eq!(s.providers(&key(1)).len(), s.max_providers_per_key);
        assert_eq!(
            s.providers(&key(1))[1],
            updated,
            "newcomers are ignored when full"
        );
        s.remove_provider(&key(1), &first);
        assert_eq!(s.providers(&key(1)).len(), s.max_providers_per_key - 1);
        // Foreign records never show as ours.
        assert_eq!(s.provided().count(), 1);
    }

    #[test]
    fn an_own_record_with_addresses_is_kept_whole_and_replaced_by_a_plain_one() {
        let (mut s, local) = store(10, 10);
        let full = foreign(key(1), local);
        s.add_provider(full.clone()).unwrap();
        assert_eq!(s.providers(&key(1)), vec![full.clone()]);
        assert_eq!(
            s.provided().map(|r| r.into_owned()).collect::<Vec<_>>(),
            vec![full]
        );
        s.add_provider(plain(key(1), local)).unwrap();
        assert_eq!(s.providers(&key(1)), vec![plain(key(1), local)]);
        assert_eq!(s.provided().count(), 1);
    }

    #[test]
    fn value_records_go_to_the_inner_store() {
        let (mut s, _) = store(10, 10);
        s.put(Record::new(key(9), b"value".to_vec())).unwrap();
        assert_eq!(s.get(&key(9)).unwrap().value, b"value".to_vec());
        assert_eq!(s.records().count(), 1);
        s.remove(&key(9));
        assert!(s.get(&key(9)).is_none());
    }
}
