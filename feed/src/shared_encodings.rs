//! Encode once, share with every subscriber: a cache of encoded events
//! keyed by (seq, format), bounded by bytes.
//!
//! Subscribers near the head of the log ask for the same events at about
//! the same time; the first encodes, the rest clone an `Arc`. The cache
//! holds at most a configured number of bytes (event bytes plus a fixed
//! per-entry overhead), whatever the size of the events, the number of
//! subscribers or how far behind any of them is. When it is full the
//! lowest seqs go first: readers at the head are the ones that share. A
//! slow subscriber whose events have left the cache encodes them itself.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tidefeed_engine::Seq;

use crate::encode::{EncodedEvent, Format};

/// Shards by seq, so readers of consecutive events rarely share a lock.
const SHARDS: usize = 16;

/// What an entry costs beyond its bytes: the map node, the key and the
/// `Arc` header, rounded up.
pub(crate) const ENTRY_OVERHEAD: usize = 96;

/// Bytes an entry is charged.
fn cost(bytes: &EncodedEvent) -> usize {
    bytes.len().saturating_add(ENTRY_OVERHEAD)
}

#[derive(Default)]
struct Shard {
    entries: BTreeMap<(Seq, Format), EncodedEvent>,
    /// Sum of `cost` over `entries`; never above the shard's budget once
    /// an insert returns.
    bytes: usize,
}

pub(crate) struct SharedEncodings {
    shards: Vec<Mutex<Shard>>,
    shard_budget: usize,
}

impl SharedEncodings {
    /// A cache of at most `max_bytes`. Each of its shards holds an equal
    /// share, so an event costing more than `max_bytes / 16` is never
    /// cached (each reader encodes it).
    pub(crate) fn new(max_bytes: usize) -> SharedEncodings {
        SharedEncodings {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            shard_budget: max_bytes / SHARDS,
        }
    }

    fn shard(&self, seq: Seq) -> &Mutex<Shard> {
        &self.shards[(seq % SHARDS as u64) as usize]
    }

    /// The cached encoding of `seq` in `format`, or `encode()`'s, cached
    /// if it succeeds and fits.
    pub(crate) fn get_or_encode<E>(
        &self,
        seq: Seq,
        format: Format,
        encode: impl FnOnce() -> Result<EncodedEvent, E>,
    ) -> Result<EncodedEvent, E> {
        let shard = self.shard(seq);
        if let Some(bytes) = shard
            .lock()
            .expect("encodings lock poisoned")
            .entries
            .get(&(seq, format))
        {
            return Ok(bytes.clone());
        }
        // Encoded outside the lock: two racing subscribers may both encode
        // the same event once; neither waits on the other.
        let bytes = encode()?;
        let charge = cost(&bytes);
        if charge > self.shard_budget {
            return Ok(bytes);
        }
        let mut shard = shard.lock().expect("encodings lock poisoned");
        if let Some(old) = shard.entries.insert((seq, format), bytes.clone()) {
            shard.bytes -= cost(&old);
        }
        shard.bytes += charge;
        // NOTE: the new entry is inserted before evicting, so when it has
        // the lowest seq of a full shard it is the one that goes: a reader
        // far behind never pushes out what the readers at the head share.
        while shard.bytes > self.shard_budget {
            let (_, evicted) = shard.entries.pop_first().expect("bytes > 0 means entries");
            shard.bytes -= cost(&evicted);
        }
        Ok(bytes)
    }

    /// Bytes charged for the cached entries, summed from the entries.
    #[cfg(test)]
    fn cached_bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                let shard = shard.lock().unwrap();
                shard.entries.values().map(cost).sum::<usize>()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn event(len: usize) -> EncodedEvent {
        Arc::from(vec![b'x'; len])
    }

    #[test]
    fn an_event_is_encoded_once_while_it_is_cached() {
        let cache = SharedEncodings::new(1 << 20);
        let mut encodings = 0;
        for _ in 0..3 {
            let bytes = cache
                .get_or_encode(7, Format::Native, || {
                    encodings += 1;
                    Ok::<_, ()>(Arc::from(&b"seven"[..]))
                })
                .unwrap();
            assert_eq!(&*bytes, b"seven");
        }
        assert_eq!(encodings, 1);
        // Another format is another entry.
        let dbz = cache
            .get_or_encode(7, Format::Debezium, || Ok::<_, ()>(Arc::from(&b"dbz"[..])))
            .unwrap();
        assert_eq!(&*dbz, b"dbz");
        let again = cache
            .get_or_encode(7, Format::Native, || Ok::<_, ()>(Arc::from(&b"again"[..])))
            .unwrap();
        assert_eq!(&*again, b"seven");
        // A failed encoding is not cached.
        assert_eq!(
            cache.get_or_encode(9, Format::Native, || Err("bad")),
            Err("bad")
        );
        let later = cache
            .get_or_encode(9, Format::Native, || Ok::<_, ()>(Arc::from(&b"nine"[..])))
            .unwrap();
        assert_eq!(&*later, b"nine");
    }

    #[test]
    fn large_events_never_take_the_cache_past_its_byte_bound() {
        const BOUND: usize = 1 << 20;
        let cache = SharedEncodings::new(BOUND);
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for seq in 1..=2_000u64 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Up to 96 KiB, around the shard budget of 64 KiB, and now and
            // then a tiny one.
            let len = if seq % 5 == 0 {
                10
            } else {
                (state % (96 << 10)) as usize
            };
            let format = if seq % 2 == 0 {
                Format::Native
            } else {
                Format::Debezium
            };
            let bytes = cache
                .get_or_encode(seq, format, || Ok::<_, ()>(event(len)))
                .unwrap();
            assert_eq!(bytes.len(), len, "the caller gets the event, cached or not");
            let cached = cache.cached_bytes();
            assert!(cached <= BOUND, "after seq {seq}: {cached} bytes cached");
        }
        assert!(cache.cached_bytes() > BOUND / 4, "the cache is used");
        // The newest small event is still shared; the oldest have gone.
        let mut encoded = false;
        cache
            .get_or_encode(2_000, Format::Native, || {
                encoded = true;
                Ok::<_, ()>(event(10))
            })
            .unwrap();
        assert!(!encoded, "the newest event is cached");
        cache
            .get_or_encode(5, Format::Debezium, || {
                encoded = true;
                Ok::<_, ()>(event(10))
            })
            .unwrap();
        assert!(encoded, "the oldest event was evicted");
    }

    #[test]
    fn a_reader_far_behind_does_not_evict_the_head() {
        let cache = SharedEncodings::new(SHARDS * (3 * (1000 + ENTRY_OVERHEAD)));
        // Fill shard 0 with three events at the head.
        for seq in [160, 176, 192] {
            cache
                .get_or_encode(seq, Format::Native, || Ok::<_, ()>(event(1000)))
                .unwrap();
        }
        // An old seq of the same shard is encoded but not kept.
        cache
            .get_or_encode(16, Format::Native, || Ok::<_, ()>(event(1000)))
            .unwrap();
        for seq in [160, 176, 192] {
            let mut encoded = false;
            cache
                .get_or_encode(seq, Format::Native, || {
                    encoded = true;
                    Ok::<_, ()>(event(1000))
                })
                .unwrap();
            assert!(!encoded, "seq {seq} was evicted by an older one");
        }
    }
}
