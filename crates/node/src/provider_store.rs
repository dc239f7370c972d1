//! Kademlia's record store, sized for one provider key per artifact. libp2p-kad's `MemoryStore` keeps each
//! provider key's records in an inline array with room for 20 providers: about 3 KB per key before the hash map's
//! slack, so 10k provided keys held ~50 MB and 100k would hold ~400 MB. Here our own provider records are not
//! stored at all: they are the keys of the reprovide schedule (`crate::reprovide::Schedule`, shared with the
//! announcer), answered while not paused as plain records (no addresses, no expiry: what `start_providing` stores;
//! Kademlia fills in our addresses when it answers), so each provided key costs its 16-byte schedule entry (a key
//! asked for is ours when its id is scheduled and the node's `KeyBook` names the key itself). Other providers' records
//! are plain vectors with their own bound, and value records go to an inner `MemoryStore`. Everything else
//! behaves as `MemoryStore` does (in-place update of a provider's record, at most `max_providers_per_key`
//! providers per key, newcomers ignored when full).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use connexa::prelude::dht::{
    store::{Error, MemoryStore, MemoryStoreConfig, RecordStore, Result},
    ProviderRecord, Record, RecordKey,
};
use rust_ipfs::PeerId;

use crate::dht::DhtShared;
use crate::reprovide::ProvideKey;

pub struct CompactStore {
    local: PeerId,
    /// Our plain provider records: the keys its schedule holds.
    schedule: Arc<DhtShared>,
    /// Paused: our own records are not answered (GET_PROVIDERS no longer names us); the schedule keeps the keys.
    own_records_hidden: bool,
    /// Other peers' provider records (server mode).
    others: HashMap<RecordKey, Vec<ProviderRecord>>,
    values: MemoryStore,
    max_other_keys: usize,
    max_providers_per_key: usize,
}

pub struct CompactStoreLimits {
    pub max_other_keys: usize,
    pub max_records: usize,
}

impl CompactStore {
    pub fn new(
        local: PeerId,
        schedule: Arc<DhtShared>,
        limits: CompactStoreLimits,
    ) -> CompactStore {
        let values_config = MemoryStoreConfig {
            max_records: limits.max_records,
            ..Default::default()
        };
        let max_providers_per_key = values_config.max_providers_per_key;
        CompactStore {
            local,
            schedule,
            own_records_hidden: false,
            others: HashMap::new(),
            values: MemoryStore::with_config(local, values_config),
            max_other_keys: limits.max_other_keys,
            max_providers_per_key,
        }
    }

    /// Paused (hidden) or not: our own provider records are answered only while not hidden.
    pub fn set_own_records_hidden(&mut self, hidden: bool) {
        self.own_records_hidden = hidden;
    }

    fn provides(&self, key: &RecordKey) -> bool {
        !self.own_records_hidden
            && ProvideKey::of_record_key(key.as_ref())
                .is_some_and(|key| self.schedule.is_provided(&key))
    }

    fn own_record(&self, key: RecordKey) -> ProviderRecord {
        ProviderRecord::new(key, self.local, Vec::new())
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
        if record.provider == self.local {
            // `start_providing` stores ours as its query starts; the key enters the schedule as the query is
            // handed over, and the schedule alone says what we provide.
            return Ok(());
        }
        let keys = self.others.len();
        let full = keys >= self.max_other_keys;
        let max_providers = self.max_providers_per_key;
        let own_count = usize::from(self.provides(&record.key));
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
        let own = self.provides(key).then(|| self.own_record(key.clone()));
        own.into_iter()
            .chain(self.others.get(key).into_iter().flatten().cloned())
            .collect()
    }

    /// Only libp2p-kad's provider republication job asks (it is off: the announcer reprovides), so the schedule's
    /// keys are looked up and copied out rather than iterated under its lock.
    fn provided(&self) -> Self::ProvidedIter<'_> {
        let keys = if self.own_records_hidden {
            Vec::new()
        } else {
            self.schedule.provided_keys()
        };
        Box::new(
            keys.into_iter()
                .map(|key| Cow::Owned(self.own_record(RecordKey::new(&key.multihash_bytes())))),
        )
    }

    /// Ours leave with their key's schedule entry (`DhtShared::withdraw`).
    fn remove_provider(&mut self, key: &RecordKey, provider: &PeerId) {
        self.remove_other(key, provider);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reprovide::unix_now_secs;
    use rust_ipfs::Multiaddr;

    fn store(max_other_keys: usize) -> (CompactStore, Arc<DhtShared>, PeerId) {
        let local = PeerId::random();
        let shared = Arc::new(DhtShared::default());
        let limits = CompactStoreLimits {
            max_other_keys,
            max_records: 16,
        };
        (
            CompactStore::new(local, shared.clone(), limits),
            shared,
            local,
        )
    }

    fn key(n: u8) -> RecordKey {
        RecordKey::new(&ProvideKey::Sha256([n; 32]).multihash_bytes())
    }

    /// What the announcer does as a key's provide query starts: Kademlia stores our plain record, the schedule
    /// takes the key.
    fn provide(s: &mut CompactStore, shared: &DhtShared, n: u8) {
        s.add_provider(plain(key(n), s.local)).unwrap();
        let provided = ProvideKey::Sha256([n; 32]);
        shared.book.remember(std::slice::from_ref(&provided));
        shared
            .state
            .lock()
            .unwrap()
            .provided
            .handed_over(provided.id(), true, unix_now_secs());
    }

    /// What `start_providing` stores for us: no addresses, no expiry.
    fn plain(key: RecordKey, local: PeerId) -> ProviderRecord {
        ProviderRecord::new(key, local, Vec::new())
    }

    fn foreign(key: RecordKey, peer: PeerId) -> ProviderRecord {
        let addr: Multiaddr = "/ip4/127.0.0.1/tcp/4001".parse().unwrap();
        ProviderRecord::new(key, peer, vec![addr])
    }

    fn provided_keys(s: &CompactStore) -> Vec<RecordKey> {
        let mut keys: Vec<RecordKey> = s.provided().map(|r| r.key.clone()).collect();
        keys.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
        keys
    }

    #[test]
    fn own_records_are_the_schedule_keys_hidden_while_paused_and_gone_when_withdrawn() {
        let (mut s, shared, local) = store(10);
        provide(&mut s, &shared, 1);
        provide(&mut s, &shared, 2);
        // Storing the same key again is an update, not a second record.
        provide(&mut s, &shared, 1);
        assert_eq!(s.providers(&key(1)), vec![plain(key(1), local)]);
        assert_eq!(provided_keys(&s), vec![key(1), key(2)]);
        s.set_own_records_hidden(true);
        assert!(s.providers(&key(1)).is_empty());
        assert_eq!(s.provided().count(), 0);
        s.set_own_records_hidden(false);
        assert_eq!(s.providers(&key(2)), vec![plain(key(2), local)]);
        shared.withdraw(&[ProvideKey::Sha256([1; 32])]);
        assert!(s.providers(&key(1)).is_empty());
        assert_eq!(provided_keys(&s), vec![key(2)]);
        // A key outside the schedule (or not a multihash) is not ours, whatever Kademlia stored.
        s.add_provider(plain(key(3), local)).unwrap();
        assert!(s.providers(&key(3)).is_empty());
        assert!(s.providers(&RecordKey::new(b"not a multihash")).is_empty());
        // Nor is a key that shares the first 8 digest bytes (the schedule's id) with one of ours.
        let mut same_id = [2u8; 32];
        same_id[31] = 0;
        let same_id = RecordKey::new(&ProvideKey::Sha256(same_id).multihash_bytes());
        assert!(s.providers(&same_id).is_empty());
        assert_eq!(s.providers(&key(2)), vec![plain(key(2), local)]);
    }

    #[test]
    fn foreign_keys_have_their_own_bound() {
        let (mut s, shared, local) = store(1);
        let peer = PeerId::random();
        s.add_provider(foreign(key(4), peer)).unwrap();
        assert!(matches!(
            s.add_provider(foreign(key(5), PeerId::random())),
            Err(Error::MaxProvidedKeys)
        ));
        // A full foreign table cannot push out ours.
        provide(&mut s, &shared, 1);
        assert_eq!(s.providers(&key(1)), vec![plain(key(1), local)]);
        assert_eq!(s.providers(&key(4)), vec![foreign(key(4), peer)]);
    }

    #[test]
    fn foreign_records_update_in_place_and_stop_at_the_per_key_limit() {
        let (mut s, shared, _) = store(10);
        provide(&mut s, &shared, 1);
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
    fn records_naming_us_are_answered_from_the_schedule_only() {
        let (mut s, shared, local) = store(10);
        // Whatever shape a record of ours has, it is not stored: only the schedule's keys are ours.
        s.add_provider(foreign(key(1), local)).unwrap();
        assert!(s.providers(&key(1)).is_empty());
        assert_eq!(s.provided().count(), 0);
        provide(&mut s, &shared, 1);
        assert_eq!(s.providers(&key(1)), vec![plain(key(1), local)]);
        assert_eq!(s.provided().count(), 1);
    }

    #[test]
    fn value_records_go_to_the_inner_store() {
        let (mut s, _, _) = store(10);
        s.put(Record::new(key(9), b"value".to_vec())).unwrap();
        assert_eq!(s.get(&key(9)).unwrap().value, b"value".to_vec());
        assert_eq!(s.records().count(), 1);
        s.remove(&key(9));
        assert!(s.get(&key(9)).is_none());
    }
}
