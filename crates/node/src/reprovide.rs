//! The keys this node provides (by 8-byte id, [`KeyId`]: the full [`ProvideKey`] comes from the node's
//! [`crate::KeyBook`] when a query starts), when each is next due for a network provide, and the compact history
//! file of last-provided times that lets a restart re-provide keys by age (each on its own 12 h cycle) instead of
//! all of them at once. The schedule's keys are also our provider records: the record store answers from them
//! (`crate::provider_store`). Pure bookkeeping with the clock passed in (unix seconds), so the
//! schedule is unit-tested without a network.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cid::multihash::Multihash;
use cid::Cid;

/// How often every provided key is provided to the network again (provider records live 22–48 h at peers).
pub const REPROVIDE_INTERVAL: Duration = Duration::from_secs(12 * 60 * 60);
/// A provide query that failed is tried again after this long (not at once: no retry storm without peers).
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(60 * 60);
/// The history file opens with this line; entries follow, [`HISTORY_ENTRY_BYTES`] each.
const HISTORY_MAGIC: &[u8] = b"pkgseed provided v1\n";
/// 8 bytes of the key's digest (little endian) and the last-provided time in unix seconds (u32, little endian).
const HISTORY_ENTRY_BYTES: usize = 12;

/// Unix seconds now.
pub fn unix_now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The multicodec code of sha2-256.
const SHA2_256: u64 = 0x12;

/// A provided key: the multihash of a CID (IPFS provider records are keyed by multihash, so a CIDv0 and a CIDv1
/// of one file share it). Every root CID pkgseed computes is sha2-256, held inline as its 32-byte digest; other
/// multihashes (the sha2-512 checksum CIDs of registries that publish sha512) are held whole on the heap. The
/// schedule does not hold keys, only their ids ([`KeyId`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProvideKey {
    Sha256([u8; 32]),
    /// The multihash's bytes (code, length, digest); never a sha2-256 one.
    Other(Box<[u8]>),
}

impl ProvideKey {
    pub fn of_cid(cid: &Cid) -> ProvideKey {
        ProvideKey::of_multihash(cid.hash())
    }

    pub fn of_multihash(multihash: &Multihash<64>) -> ProvideKey {
        match <[u8; 32]>::try_from(multihash.digest()) {
            Ok(digest) if multihash.code() == SHA2_256 => ProvideKey::Sha256(digest),
            _ => ProvideKey::Other(multihash.to_bytes().into_boxed_slice()),
        }
    }

    /// The key of a Kademlia record (multihash bytes); `None` when they are not a multihash.
    pub fn of_record_key(key: &[u8]) -> Option<ProvideKey> {
        Multihash::<64>::from_bytes(key)
            .ok()
            .map(|multihash| ProvideKey::of_multihash(&multihash))
    }

    /// The multihash's bytes: what Kademlia keys provider records by.
    pub fn multihash_bytes(&self) -> Vec<u8> {
        match self {
            ProvideKey::Sha256(digest) => Multihash::<64>::wrap(SHA2_256, digest)
                .expect("32 bytes fit a multihash")
                .to_bytes(),
            ProvideKey::Other(bytes) => bytes.to_vec(),
        }
    }

    fn digest(&self) -> &[u8] {
        match self {
            ProvideKey::Sha256(digest) => digest,
            // Built from a parsed multihash: the digest is its tail, after the code and length varints.
            ProvideKey::Other(bytes) => {
                let multihash = Multihash::<64>::from_bytes(bytes).expect("a valid multihash");
                &bytes[bytes.len() - multihash.digest().len()..]
            }
        }
    }

    /// The key's id ([`KeyId`]) in the schedule and the history file: the first 8 bytes of its multihash digest
    /// (little endian). Digests are uniformly random: for 100k keys a collision is about one in 10^9.
    pub fn id(&self) -> KeyId {
        let mut id = [0u8; 8];
        let digest = self.digest();
        let n = digest.len().min(8);
        id[..n].copy_from_slice(&digest[..n]);
        u64::from_le_bytes(id)
    }
}

/// Shown as the CIDv1 (raw codec) of the multihash, so log lines can be pasted into IPFS tools.
impl std::fmt::Display for ProvideKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match Multihash::<64>::from_bytes(&self.multihash_bytes()) {
            Ok(multihash) => write!(f, "{}", Cid::new_v1(0x55, multihash)),
            Err(_) => write!(f, "(invalid multihash)"),
        }
    }
}

/// Unix seconds as stored per key: u32 lasts until 2106 (the history file stores them so too).
fn secs32(secs: u64) -> u32 {
    u32::try_from(secs).unwrap_or(u32::MAX)
}

/// A key's id: the first 8 bytes of its multihash digest ([`ProvideKey::id`]). The schedule and the history file
/// hold only ids; the full key comes from the [`crate::KeyBook`] when a provide query starts.
pub type KeyId = u64;

/// One key's times in 8 bytes (a schedule entry is 16 with its id, where a whole key and its times took 56).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct KeyTimes {
    /// The last provide that reached the network with our addresses in it (unix s); 0: none known.
    last_ok_secs: u32,
    /// When the key is next handed to the network (unix s, rounded down to a multiple of 4), with two marks in the
    /// low bits: [`WITHOUT_ADDRS`] and [`WITHOUT_PEERS`].
    due_and_marks: u32,
}

/// Handed over while no external address was confirmed: its records went out without addresses.
const WITHOUT_ADDRS: u32 = 0b01;
/// Held back while the routing table was empty (only the local record is stored): provided once a peer is.
const WITHOUT_PEERS: u32 = 0b10;
const MARKS: u32 = WITHOUT_ADDRS | WITHOUT_PEERS;

impl KeyTimes {
    fn new(last_ok_secs: u32, due_secs: u32, marks: u32) -> KeyTimes {
        KeyTimes {
            last_ok_secs,
            due_and_marks: (due_secs & !MARKS) | marks,
        }
    }

    fn due_secs(self) -> u32 {
        self.due_and_marks & !MARKS
    }

    fn with_due(self, due_secs: u32) -> KeyTimes {
        KeyTimes::new(self.last_ok_secs, due_secs, self.due_and_marks & MARKS)
    }

    fn has(self, mark: u32) -> bool {
        self.due_and_marks & mark != 0
    }
}

/// Every provided key's id with its times, plus the history loaded at start that keys not yet announced can claim.
/// Two keys whose ids collide (for 200k keys about one chance in 10^9) share one entry: the book names both when
/// it is due, and withdrawing one stops the other's records until it is announced again.
#[derive(Debug)]
pub struct Schedule {
    keys: HashMap<KeyId, KeyTimes>,
    /// From the history file; an entry is claimed (removed) when its key is announced after the start.
    history: HashMap<KeyId, u64>,
    /// A lower bound of every key's due time (exact after [`Schedule::take_due`]); `u32::MAX` with no keys.
    earliest_due_secs: u32,
    /// A last-provided time changed since the history was last taken for saving.
    dirty: bool,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            keys: HashMap::new(),
            history: HashMap::new(),
            earliest_due_secs: u32::MAX,
            dirty: false,
        }
    }
}

impl Schedule {
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn contains(&self, id: KeyId) -> bool {
        self.keys.contains_key(&id)
    }

    pub fn ids(&self) -> impl Iterator<Item = KeyId> + '_ {
        self.keys.keys().copied()
    }

    /// Loads the history entries (replacing any loaded before).
    pub fn set_history(&mut self, entries: impl IntoIterator<Item = (KeyId, u64)>) {
        self.history = entries.into_iter().collect();
    }

    /// A key announced after the start (the index's keys, or a new artifact's): when the history says it was
    /// provided less than [`REPROVIDE_INTERVAL`] ago, it becomes provided now (its provider record answers at once),
    /// due when its own cycle ends, and `true` is returned. Otherwise `false`: provide it now.
    pub fn claim_recent(&mut self, id: KeyId, now_secs: u64) -> bool {
        if self.keys.contains_key(&id) {
            return false;
        }
        let Some(last_ok_secs) = self.history.remove(&id) else {
            return false;
        };
        if self.history.len() < self.history.capacity() / 4 {
            // Claimed as the start announces the index: do not keep the loaded file's capacity at idle.
            self.history.shrink_to_fit();
        }
        let due_secs = last_ok_secs.saturating_add(REPROVIDE_INTERVAL.as_secs());
        if last_ok_secs > now_secs || due_secs <= now_secs {
            // Too old (or from a clock that went back): due now, provided through the queue.
            return false;
        }
        self.set(id, KeyTimes::new(secs32(last_ok_secs), secs32(due_secs), 0));
        true
    }

    /// A provide query started for the key: next due one interval from now (the query's outcome may change that).
    pub fn handed_over(&mut self, id: KeyId, with_addrs: bool, now_secs: u64) {
        let last_ok_secs = self.keys.get(&id).map_or(0, |t| t.last_ok_secs);
        let marks = if with_addrs { 0 } else { WITHOUT_ADDRS };
        let due_secs = secs32(now_secs.saturating_add(REPROVIDE_INTERVAL.as_secs()));
        self.set(id, KeyTimes::new(last_ok_secs, due_secs, marks));
    }

    /// No DHT peer to provide the key to (the routing table is empty): only its local record answers. Due again as
    /// after a failed query, and provided at once when a peer enters the table ([`Schedule::take_without_peers`]).
    pub fn held_without_peers(&mut self, id: KeyId, now_secs: u64) {
        let last_ok_secs = self.keys.get(&id).map_or(0, |t| t.last_ok_secs);
        let due_secs = secs32(now_secs.saturating_add(RETRY_AFTER_FAILURE.as_secs()));
        self.set(id, KeyTimes::new(last_ok_secs, due_secs, WITHOUT_PEERS));
    }

    /// A provide query ended. Success with our addresses in the records is remembered (and saved); a failure is
    /// retried after [`RETRY_AFTER_FAILURE`]. A key withdrawn meanwhile stays withdrawn.
    pub fn finished(&mut self, id: KeyId, ok: bool, now_secs: u64) {
        let Some(times) = self.keys.get(&id).copied() else {
            return;
        };
        if ok {
            if !times.has(WITHOUT_ADDRS) {
                self.keys.get_mut(&id).expect("present").last_ok_secs = secs32(now_secs);
                self.dirty = true;
            }
        } else {
            let retry = secs32(now_secs.saturating_add(RETRY_AFTER_FAILURE.as_secs()));
            self.set(id, times.with_due(retry.min(times.due_secs())));
        }
    }

    pub fn remove(&mut self, id: KeyId) {
        if self.keys.remove(&id).is_some_and(|t| t.last_ok_secs != 0) {
            self.dirty = true;
        }
    }

    /// Keys whose cycle has ended, to be queued. Each is pushed one interval ahead meanwhile (set again when it is
    /// handed over), so a key waiting in the queue is not taken twice.
    pub fn take_due(&mut self, now_secs: u64) -> Vec<KeyId> {
        let now = secs32(now_secs);
        let next = secs32(now_secs.saturating_add(REPROVIDE_INTERVAL.as_secs()));
        let mut due = Vec::new();
        let mut earliest = u32::MAX;
        for (&id, times) in &mut self.keys {
            if times.due_secs() <= now {
                *times = times.with_due(next);
                due.push(id);
            }
            earliest = earliest.min(times.due_secs());
        }
        self.earliest_due_secs = earliest;
        due
    }

    /// When the next key falls due (unix s), if any key is provided.
    pub fn next_due_secs(&self) -> Option<u64> {
        (!self.keys.is_empty()).then_some(u64::from(self.earliest_due_secs))
    }

    /// Keys whose records went out without our addresses (handed over before the first external address was
    /// confirmed); they are no longer marked so, and their queries go again once.
    pub fn take_without_addrs(&mut self) -> Vec<KeyId> {
        self.take_marked(WITHOUT_ADDRS)
    }

    /// Keys held back while the routing table was empty; they are no longer marked so, and are provided now.
    pub fn take_without_peers(&mut self) -> Vec<KeyId> {
        self.take_marked(WITHOUT_PEERS)
    }

    fn take_marked(&mut self, mark: u32) -> Vec<KeyId> {
        self.keys
            .iter_mut()
            .filter_map(|(&id, times)| {
                let marked = times.has(mark);
                times.due_and_marks &= !mark;
                marked.then_some(id)
            })
            .collect()
    }

    /// Whether a last-provided time changed since the last [`Schedule::take_history`].
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// What the history file should hold now: every key's last good provide, and history entries not claimed yet
    /// that are still within their cycle (an older one says nothing a missing one does not).
    pub fn take_history(&mut self, now_secs: u64) -> Vec<(KeyId, u64)> {
        self.dirty = false;
        let horizon = now_secs.saturating_sub(REPROVIDE_INTERVAL.as_secs());
        let mut entries: HashMap<KeyId, u64> = self
            .history
            .iter()
            .filter(|(_, &secs)| secs > horizon)
            .map(|(&id, &secs)| (id, secs))
            .collect();
        for (&id, times) in &self.keys {
            if times.last_ok_secs != 0 {
                let entry = entries.entry(id).or_default();
                *entry = (*entry).max(u64::from(times.last_ok_secs));
            }
        }
        entries.into_iter().collect()
    }

    fn set(&mut self, id: KeyId, times: KeyTimes) {
        self.earliest_due_secs = self.earliest_due_secs.min(times.due_secs());
        self.keys.insert(id, times);
    }
}

pub fn encode_history(entries: &[(u64, u64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HISTORY_MAGIC.len() + entries.len() * HISTORY_ENTRY_BYTES);
    out.extend_from_slice(HISTORY_MAGIC);
    for &(id, secs) in entries {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&u32::try_from(secs).unwrap_or(u32::MAX).to_le_bytes());
    }
    out
}

pub fn decode_history(bytes: &[u8]) -> Result<Vec<(u64, u64)>, String> {
    let body = bytes
        .strip_prefix(HISTORY_MAGIC)
        .ok_or("not a pkgseed provide history (bad header)")?;
    if body.len() % HISTORY_ENTRY_BYTES != 0 {
        return Err(format!(
            "truncated provide history ({} bytes after the header)",
            body.len()
        ));
    }
    Ok(body
        .chunks_exact(HISTORY_ENTRY_BYTES)
        .map(|entry| {
            let id = u64::from_le_bytes(entry[..8].try_into().expect("8 bytes"));
            let secs = u32::from_le_bytes(entry[8..].try_into().expect("4 bytes"));
            (id, u64::from(secs))
        })
        .collect())
}

/// Reads the history file; a missing file is an empty history, an unreadable or damaged one is logged and ignored
/// (its keys are then provided at once, as on a first start).
pub fn load_history(path: &Path) -> Vec<(u64, u64)> {
    match std::fs::read(path) {
        Ok(bytes) => decode_history(&bytes).unwrap_or_else(|err| {
            tracing::warn!(path = %path.display(), "ignoring the provide history: {err}");
            Vec::new()
        }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(err) => {
            tracing::warn!(path = %path.display(), "cannot read the provide history: {err}");
            Vec::new()
        }
    }
}

/// Writes the history atomically (a temp file renamed over the old one).
pub fn save_history(path: &Path, entries: &[(u64, u64)]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&encode_history(entries))?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3600;
    const START: u64 = 1_800_000_000;

    fn key(n: u8) -> KeyId {
        ProvideKey::Sha256([n; 32]).id()
    }

    #[test]
    fn keys_are_multihashes_inline_for_sha256_and_whole_otherwise() {
        let sha256 = Multihash::<64>::wrap(0x12, &[7; 32]).unwrap();
        let v1 = Cid::new_v1(0x55, sha256);
        let v0 = Cid::new_v0(sha256).unwrap();
        // Provider records are keyed by multihash: the CIDv0 and CIDv1 of one file are one key.
        assert_eq!(ProvideKey::of_cid(&v1), ProvideKey::of_cid(&v0));
        assert_eq!(ProvideKey::of_cid(&v1), ProvideKey::Sha256([7; 32]));
        assert_eq!(ProvideKey::of_cid(&v1).multihash_bytes(), sha256.to_bytes());
        let sha512 = Multihash::<64>::wrap(0x13, &[9; 64]).unwrap();
        let other = ProvideKey::of_cid(&Cid::new_v1(0x55, sha512));
        assert_eq!(other, ProvideKey::Other(sha512.to_bytes().into()));
        for key in [ProvideKey::of_cid(&v1), other.clone()] {
            assert_eq!(
                ProvideKey::of_record_key(&key.multihash_bytes()),
                Some(key.clone())
            );
        }
        // History ids are the digest's first 8 bytes, as the file has always stored them.
        assert_eq!(ProvideKey::of_cid(&v0).id(), u64::from_le_bytes([7; 8]));
        assert_eq!(other.id(), u64::from_le_bytes([9; 8]));
        assert_eq!(ProvideKey::of_record_key(b"not a multihash"), None);
        assert_eq!(other.to_string(), Cid::new_v1(0x55, sha512).to_string());
    }

    #[test]
    fn a_restart_reprovides_keys_by_age_not_all_at_once() {
        // Before the restart: keys 1..=4 provided with addresses at different times, key 5 never.
        let mut before = Schedule::default();
        let provided_at = [(1, START), (2, START + 3 * HOUR), (3, START + 6 * HOUR)];
        for (n, at) in provided_at {
            before.handed_over(key(n), true, at);
            before.finished(key(n), true, at);
        }
        before.handed_over(key(4), true, START - 20 * HOUR);
        before.finished(key(4), true, START - 20 * HOUR);
        before.handed_over(key(5), true, START);
        before.finished(key(5), false, START);
        let restart = START + 7 * HOUR;
        let saved = encode_history(&before.take_history(restart));
        assert!(!before.is_dirty());

        let mut after = Schedule::default();
        after.set_history(decode_history(&saved).unwrap());
        let restored: Vec<u8> = (1..=5)
            .filter(|&n| after.claim_recent(key(n), restart))
            .collect();
        // 1..=3 were provided within 12 h: kept (local record only); 4 (27 h ago) and 5 (never) go out now.
        assert_eq!(restored, vec![1, 2, 3]);
        assert!(after.take_due(restart).is_empty());
        assert_eq!(after.next_due_secs(), Some(START + 12 * HOUR));
        // Each comes due when its own cycle ends.
        assert!(after.take_due(START + 12 * HOUR - 1).is_empty());
        assert_eq!(after.take_due(START + 12 * HOUR), vec![key(1)]);
        assert_eq!(after.take_due(START + 15 * HOUR), vec![key(2)]);
        assert_eq!(after.next_due_secs(), Some(START + 18 * HOUR));
        assert_eq!(after.take_due(START + 18 * HOUR), vec![key(3)]);
        // A claimed entry is gone: announcing the key again later means providing it.
        assert!(!after.claim_recent(key(7), restart));
    }

    #[test]
    fn failures_retry_after_an_hour_and_are_not_remembered() {
        let mut s = Schedule::default();
        s.handed_over(key(1), true, START);
        s.finished(key(1), false, START + 10);
        assert!(!s.is_dirty());
        assert!(s.take_due(START + HOUR).is_empty());
        assert_eq!(s.take_due(START + 10 + HOUR), vec![key(1)]);
        assert!(s.take_history(START + HOUR).is_empty());
        // Taken keys are not taken again while they wait in the queue.
        assert!(s.take_due(START + 2 * HOUR).is_empty());
    }

    #[test]
    fn keys_provided_without_addresses_are_not_remembered_and_go_again_once() {
        let mut s = Schedule::default();
        s.handed_over(key(1), false, START);
        s.handed_over(key(2), false, START);
        s.finished(key(1), true, START + 5);
        assert!(
            s.take_history(START + 5).is_empty(),
            "no addresses, not a real provide"
        );
        s.handed_over(key(3), true, START + 6);
        let mut again = s.take_without_addrs();
        again.sort();
        let mut expected = vec![key(1), key(2)];
        expected.sort();
        assert_eq!(again, expected);
        assert!(s.take_without_addrs().is_empty(), "only once");
    }

    #[test]
    fn marks_share_the_due_time_word_without_moving_it_later() {
        let mut s = Schedule::default();
        // An odd second: due is kept to a multiple of 4, never later than asked.
        s.held_without_peers(key(1), START + 3);
        s.handed_over(key(2), false, START + 3);
        assert_eq!(s.next_due_secs(), Some(START + HOUR));
        assert!(s.take_due(START + HOUR - 1).is_empty());
        assert_eq!(s.take_due(START + HOUR), vec![key(1)]);
        // Taking a due key keeps its mark; taking the mark keeps its due time.
        assert_eq!(s.take_without_peers(), vec![key(1)]);
        assert!(s.take_without_peers().is_empty());
        assert_eq!(s.take_without_addrs(), vec![key(2)]);
        assert_eq!(s.take_due(START + 12 * HOUR), vec![key(2)]);
        assert!(s.take_due(START + 13 * HOUR - 1).is_empty());
        assert_eq!(s.take_due(START + 13 * HOUR), vec![key(1)]);
    }

    #[test]
    fn withdrawn_keys_leave_the_history_and_stale_entries_are_dropped() {
        let mut s = Schedule::default();
        s.set_history([(key(8), START - 13 * HOUR), (key(9), START - HOUR)]);
        s.handed_over(key(1), true, START);
        s.finished(key(1), true, START);
        s.remove(key(1));
        s.finished(key(1), true, START + 1);
        assert!(!s.contains(key(1)));
        // Key 9's unclaimed entry is still within its cycle and kept; key 8's is older than a cycle.
        assert_eq!(s.take_history(START), vec![(key(9), START - HOUR)]);
    }

    #[test]
    fn the_history_file_round_trips_and_damage_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("provided");
        assert!(load_history(&path).is_empty());
        let entries = vec![(1u64, START), (u64::MAX, START + 1)];
        save_history(&path, &entries).unwrap();
        assert_eq!(load_history(&path), entries);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len() as usize,
            HISTORY_MAGIC.len() + 2 * HISTORY_ENTRY_BYTES
        );
        let bytes = std::fs::read(&path).unwrap();
        assert!(decode_history(&bytes[..bytes.len() - 1])
            .unwrap_err()
            .contains("truncated"));
        assert!(decode_history(b"something else").is_err());
        std::fs::write(&path, b"junk").unwrap();
        assert!(load_history(&path).is_empty());
    }
}
